"""Every experiment spec under examples/ (a TOML with an `experiment` key) validates against its
experiment's typed spec, so a renamed or removed field cannot leave a stale example behind."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from myopia.runs import resolve_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPECS = [p for p in sorted(EXAMPLES.glob("*.toml")) if "experiment" in tomllib.loads(p.read_text())]


def test_there_are_experiment_examples():
    assert len(SPECS) >= 5


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_experiment_example_validates(path):
    exp, spec = resolve_spec(str(path), check=False)  # check=False: no model files needed
    assert spec.experiment == exp.name == tomllib.loads(path.read_text())["experiment"]
