"""multi-token: a tiny run end to end (lab checkpoints with their heads kept in work/, the typed
summary, the report, resume), the Clever-Hans diagnosis on hand-made results, and the one-line
errors of the spec."""

from __future__ import annotations

import json

import pytest

from myopia import UserError
from myopia.experiments import resolve_spec, run
from myopia.experiments._io import read_parquet
from myopia.experiments.multi_token._clever_hans import diagnose, escapes_chance
from myopia.experiments.multi_token._summary import MultiTokenSummary, summarize

TINY = [
    'parts=["path-star", "addition"]',
    "path_star.graphs=[{degree = 2, path_len = 3, n_nodes = 8}]",
    'path_star.objectives=["ntp", "reverse", "mtp-seq:2"]',
    "path_star.seeds=[0, 1]",
    'path_star.task={name = "path-star", n_train = 64, n_test = 16}',
    "path_star.steps=6", "path_star.chunk=3", "path_star.eval_every=3", "path_star.batch_size=8",
    'addition.task={name = "addition", n_digits = 2, min_digits = 1, n_test = 8}',
    'addition.formats=["plain", "pause", "scratchpad", "mtp:2"]',
    "addition.pauses=2", "addition.seeds=[0]",
    "addition.steps=4", "addition.chunk=0", "addition.eval_every=0", "addition.batch_size=8",
]


def test_tiny_run_end_to_end_and_resume(tmp_path):
    out = tmp_path / "run"
    r = run("multi-token", TINY, out=out)
    assert r.cells_run == 3 * 2 + 4  # path-star objectives x seeds, addition formats
    finals = read_parquet(out / "results" / "finals.parquet")
    assert {(f["part"], f["condition"], f["objective"]) for f in finals} >= {
        ("path-star", "G2-3-N8", "mtp-seq:2"), ("addition", "pause", "ntp"), ("addition", "mtp:2", "mtp:2")}
    # each cell is kept as a lab checkpoint, the objective's extra weights beside it
    seq = next(f for f in finals if f["objective"] == "mtp-seq:2")
    assert (out / "work").is_dir() and seq["checkpoint"].startswith(str(out / "work"))
    assert (tmp_path / seq["checkpoint"] / "mtp_seq_modules.safetensors").is_file()
    mtp = next(f for f in finals if f["objective"] == "mtp:2")
    assert json.loads((tmp_path / mtp["checkpoint"] / "spec.json").read_text())["mtp_from_trunk"] is False  # added heads
    heads = read_parquet(out / "results" / "heads.parquet")
    assert {h["objective"] for h in heads} == {"mtp-seq:2", "mtp:2"} and {h["head"] for h in heads} == {2}
    positions = read_parquet(out / "results" / "positions.parquet")
    assert sorted({p["position"] for p in positions}) == [0, 1, 2]
    digits = read_parquet(out / "results" / "digits.parquet")
    assert {(d["condition"], d["n_digits"]) for d in digits} == {(f, n) for f in ("plain", "pause", "scratchpad", "mtp:2") for n in (1, 2)}

    summary = MultiTokenSummary.model_validate(json.loads((out / "summary.json").read_text()))
    ps = {r.objective: r for r in summary.path_star}
    assert set(ps) == {"ntp", "reverse", "mtp-seq:2"} and ps["ntp"].accuracy.n == 2 and ps["ntp"].chance == 0.5
    acc = [f["accuracy"] for f in finals if f["objective"] == "ntp"]
    assert ps["ntp"].accuracy.mean == pytest.approx(sum(acc) / 2)
    assert len(summary.addition) == 8 and summary.names == []
    assert len(list((out / "figures").glob("*.png"))) >= 5
    html = (out / "report.html").read_text()
    assert "Clever Hans" in html and "escape" in html

    again = run("multi-token", TINY, out=out)  # finished cells are neither recomputed nor lost
    assert again.cells_run == 0


def _iv(mean, lo=None, hi=None, n=3):
    return {"mean": mean, "ci_low": lo, "ci_high": hi, "n": n}


def test_diagnosis_tells_the_cheat_from_not_converged():
    half = _iv(0.5, 0.47, 0.53)
    assert diagnose(half, half, _iv(0.99), 2) == "Clever Hans"
    assert diagnose(_iv(0.16, 0.1, 0.2), _iv(0.33), _iv(0.6), 2) == "not converged"  # DESIGN.md's 2,500-step ntp
    assert diagnose(_iv(0.97, 0.95, 0.99), _iv(0.99), _iv(1.0), 2) == "solved"
    assert diagnose(_iv(0.7, 0.6, 0.8), _iv(0.7), _iv(1.0), 2) == "escapes 1/d"
    assert escapes_chance(_iv(0.6, 0.45, 0.75), 2) is False  # the interval reaches 1/d
    assert escapes_chance(_iv(0.6, n=1), 2) is True and escapes_chance(_iv(0.52, n=1), 2) is False  # one seed: a margin


def test_summary_intervals_over_seeds():
    finals = [
        {"part": "path-star", "condition": "G2-4-N20", "objective": "ntp", "seed": s, "degree": 2,
         "accuracy": a, "first_step_accuracy": a, "later_teacher_forced": 1.0}
        for s, a in enumerate([0.49, 0.51, 0.50])
    ]
    s = summarize({"finals": finals}, resolve_spec("multi-token", []))
    (r,) = s.path_star
    assert r.accuracy.mean == pytest.approx(0.5) and r.accuracy.n == 3
    assert r.accuracy.ci_low == pytest.approx(0.5 - 4.303 * 0.01 / 3**0.5)  # t(2) = 4.303, sd = 0.01
    assert r.diagnosis == "Clever Hans" and r.escapes_chance is False


def test_spec_errors_are_one_line():
    with pytest.raises(UserError, match=r"format 'pauses' is none of plain, reversed, pause, scratchpad and not an objective"):
        resolve_spec("multi-token", ['addition.formats=["pauses"]'])
    with pytest.raises(UserError, match=r"mtp:4 takes 3 head layers from the model's 2 layers and leaves none"):
        resolve_spec("multi-token", ["path_star.model_overrides={n_layer = 2}"])
    with pytest.raises(UserError, match=r"unknown part\(s\) graphs"):
        resolve_spec("multi-token", ['parts=["graphs"]'])
    with pytest.raises(UserError, match=r"mtp-seq:0"):
        resolve_spec("multi-token", ['names.objectives=["mtp-seq:0"]'])
    with pytest.raises(UserError, match=r"takes no pause tokens"):
        resolve_spec("multi-token", ['names.task={name = "shakespeare-names", pauses = 2}'])
