"""Texts shipped with myopia (written for the project; no download at run time).

- ``prose.txt``: an original prose sample (a few thousand characters of plain narrative
  and expository English) for entropy and calibration measurements next to Shakespeare;
- ``mc_questions.json``: a small multiple-choice question set (four options, one answer)
  for the multiple-choice calibration of ``mode-collapse``.
"""

from __future__ import annotations

import json
from importlib import resources


def read_text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def prose() -> str:
    return read_text("prose.txt")


def mc_questions() -> list[dict]:
    """[{"question", "options": [4 strings], "answer": index}]"""
    return json.loads(read_text("mc_questions.json"))
