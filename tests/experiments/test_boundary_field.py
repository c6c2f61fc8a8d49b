"""The ``boundary`` spec field of the experiments that score text continuations: an unknown
value is one line naming the accepted rules, exit code 2, before any model is loaded."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from myopia._cli import main


@pytest.mark.parametrize("name, accepted", [
    ("forced-choice", "'natural', 'lm-eval' or 'exact'"),
    ("mode-collapse", "'natural', 'lm-eval' or 'exact'"),
    ("sequence-likelihood", "'natural' or 'lm-eval'"),
])
def test_an_unknown_boundary_is_one_line_and_exit_2(name, accepted, tmp_path):
    r = CliRunner().invoke(main, ["run", name, "--set", 'boundary="lm_eval"', "--out", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    assert r.output.strip().count("\n") == 0 and "Traceback" not in r.output
    assert "boundary" in r.output and accepted in r.output and "lm_eval" in r.output
    assert not (tmp_path / "run").exists()  # nothing half-written
