"""Runs: spec validation, run directory contents, atomic resume after kill -9, re-rendering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from myopia import UserError
from myopia.runs import resolve_spec, run

PROMPTS = ["Once upon a time, there was a", "The cat", "In the beginning", "She could see", "A bird", "The dog"]


def _overrides(model_dir: str, **kw) -> list[str]:
    base = {
        "models": f'["hf:{model_dir}"]',
        "prompts": json.dumps(PROMPTS[:2]),
        "length": "6",
        "samples": "8",
        "beam_width": "2",
    }
    base.update({k: str(v) for k, v in kw.items()})
    return [f"{k}={v}" for k, v in base.items()]


def test_run_directory(tiny_lm_dir, tmp_path):
    """What every run directory holds (sequence-likelihood as the example; its own tables and
    figures are checked in tests/experiments/sequence_likelihood/)."""
    out = tmp_path / "run"
    r = run("sequence-likelihood", _overrides(tiny_lm_dir), out=out)
    assert r.cells_run == 2 and r.cells_skipped == 0
    results = ("results/continuations.parquet", "results/tokens.parquet")
    for name in ("spec.toml", "manifest.json", "summary.json", "report.html", *results):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["seed"] == 0
    assert manifest["packages"]["torch"] and manifest["started"] and manifest["ended"]
    assert {c["status"] for c in manifest["cells"].values()} == {"done"}
    assert json.loads((out / "summary.json").read_text())["experiment"] == "sequence-likelihood"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<h2>Summary</h2>" in html
    assert html.index("<h2>Summary</h2>") < html.index("<img")


def test_same_command_resumes_without_recomputing(tiny_lm_dir, tmp_path):
    out = tmp_path / "run"
    run("sequence-likelihood", _overrides(tiny_lm_dir), out=out)
    before = json.loads((out / "manifest.json").read_text())["cells"]
    r = run("sequence-likelihood", _overrides(tiny_lm_dir), out=out)
    assert r.cells_run == 0 and r.cells_skipped == 2
    after = json.loads((out / "manifest.json").read_text())["cells"]
    assert {k: v["finished"] for k, v in before.items()} == {k: v["finished"] for k, v in after.items()}


def test_a_different_spec_in_the_same_directory_is_refused(tiny_lm_dir, tmp_path):
    out = tmp_path / "run"
    run("sequence-likelihood", _overrides(tiny_lm_dir), out=out)
    with pytest.raises(UserError, match="different spec"):
        run("sequence-likelihood", _overrides(tiny_lm_dir, samples=9), out=out)


def test_kill_9_mid_run_then_resume(tiny_lm_dir, tmp_path):
    """Kill the run after its first cell; the rerun keeps that cell and finishes the rest."""
    out = tmp_path / "run"
    args = _overrides(tiny_lm_dir, prompts=json.dumps(PROMPTS), length=48, samples=48)
    cmd = [sys.executable, "-m", "myopia", "run", "sequence-likelihood", "--out", str(out)]
    for a in args:
        cmd += ["--set", a]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists():
            cells = json.loads(manifest.read_text())["cells"]
            done = sum(c["status"] == "done" for c in cells.values())
            if done >= 1:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make the cells slower"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = json.loads(manifest.read_text())["cells"]
    finished = {k: v["finished"] for k, v in killed.items() if v["status"] == "done"}
    assert 1 <= len(finished) < len(PROMPTS)
    r = run("sequence-likelihood", args, out=out)
    assert r.cells_skipped == len(finished) and r.cells_run == len(PROMPTS) - len(finished)
    final = json.loads(manifest.read_text())["cells"]
    assert all(final[k]["finished"] == v for k, v in finished.items())
    from myopia._io import read_parquet

    conts = read_parquet(out / "results" / "continuations.parquet")
    assert {c["prompt_index"] for c in conts} == set(range(len(PROMPTS)))


def test_report_rerenders_from_stored_results_only(tiny_lm_dir, tmp_path):
    import shutil

    from myopia.runs import rerender

    model = tmp_path / "model"
    shutil.copytree(tiny_lm_dir, model)
    out = tmp_path / "run"
    run("sequence-likelihood", _overrides(str(model)), out=out)
    (out / "report.html").unlink()
    shutil.rmtree(model)  # the model is gone: re-rendering must not need it
    path, summary = rerender(out)
    assert path.is_file() and summary.cells


def test_model_text_is_escaped_in_the_report(tiny_lm_dir, tmp_path):
    out = tmp_path / "run"
    evil = " <script>alert('x')</script> & <b>bold</b>"
    run("sequence-likelihood", _overrides(tiny_lm_dir, continuations=json.dumps([evil]), length=40), out=out)
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "<b>bold" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["samplez=3"], "unknown field 'samplez'.*accepted: .*samples"),
        (["samples=many"], "invalid spec field 'samples'"),
        (["samples=0"], "invalid spec field 'samples'.*greater than or equal to 1"),
        (['models=["nope"]'], "unknown model 'nope'"),
        (['models=["gguf:/missing.gguf"]'], "gguf file not found"),
        (["seed"], "--set expects key=value"),
    ],
)
def test_spec_mistakes_are_one_line_user_errors(overrides, message):
    with pytest.raises(UserError, match=message) as e:
        resolve_spec("sequence-likelihood", overrides)
    assert "\n" not in str(e.value)


def test_toml_spec_round_trip(tiny_lm_dir, tmp_path):
    out = tmp_path / "run"
    run("sequence-likelihood", _overrides(tiny_lm_dir), out=out)
    exp, spec = resolve_spec(str(out / "spec.toml"))
    _, again = resolve_spec("sequence-likelihood", _overrides(tiny_lm_dir))
    assert spec == again
    bad = tmp_path / "bad.toml"
    bad.write_text('experiment = "sequence-likelihood"\nsamples = "x"\n')
    with pytest.raises(UserError, match="samples"):
        resolve_spec(str(bad))
    with pytest.raises(UserError, match="spec file not found"):
        resolve_spec(str(tmp_path / "missing.toml"))
    with pytest.raises(UserError, match="unknown experiment 'nope'"):
        resolve_spec("nope")


def test_quick_suite_holds_every_experiment_with_a_valid_quick_spec():
    from myopia._toml import toml_literal
    from myopia.experiments import experiment_names, get_experiment
    from myopia.runs import suites

    quick = suites()["quick"]
    assert quick[0] == "sequence-likelihood" and set(quick) <= set(experiment_names())
    for name in quick:
        exp = get_experiment(name)
        overrides = [f"{k}={toml_literal(v)}" for k, v in exp.quick.items()]
        resolve_spec(name, overrides, check=False)  # the quick overrides are valid fields and values


def test_quick_suite_runs_members_into_one_report(tiny_lm_dir, tmp_path, monkeypatch):
    from myopia.runs import _suite, run_suite

    monkeypatch.setattr(_suite, "suites", lambda: {"quick": ["sequence-likelihood"]})
    overrides = [f'models=["hf:{tiny_lm_dir}"]', "samples=4", "length=4", "beam_width=2"]
    res = run_suite("quick", overrides, out=tmp_path / "q")
    assert res.report_path == tmp_path / "q" / "report.html"
    html = res.report_path.read_text()
    assert html.index("<h2>Summary</h2>") < html.index("<h2>sequence-likelihood</h2>")
    for member, r in res.members:
        assert (r.run_dir / "summary.json").is_file() and r.run_dir.parent == tmp_path / "q"
    with pytest.raises(UserError, match="no experiment in suite 'quick' has that field"):
        run_suite("quick", ["nonsense=1"], out=tmp_path / "q2")
