"""myopia-gap: t-intervals against numerical integration, per-position loss against the lab's
own evaluation, exact resume inside a cell, runs on precache and on a fine-tuned hf: model."""

from __future__ import annotations

import json

import pytest
import torch

from myopia import UserError
from myopia._io import read_parquet
from myopia.experiments.myopia_gap._summary import MyopiaGapHeadline
from myopia.lab import train_cell
from myopia.runs import resolve_spec, run

TINY_PRECACHE = [
    'settings=["precache"]',
    "precache.seeds=[0, 1]",
    "precache.steps=20",
    "precache.chunk=10",
    "precache.eval_every=10",
    "precache.batch_size=16",
    "precache.eval_batches=2",
    'precache.task={name = "precache", length = 8, k = 2}',
]


@pytest.fixture(scope="module")
def precache_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gap") / "run"
    return run("myopia-gap", TINY_PRECACHE, out=out), out


def test_precache_run(precache_run):
    r, out = precache_run
    assert r.cells_run == 6  # 3 objectives x 2 seeds
    finals = read_parquet(out / "results" / "finals.parquet")
    positions = read_parquet(out / "results" / "positions.parquet")
    curves = read_parquet(out / "results" / "curves.parquet")
    # the per-position loss (measured here) averages to the lab's own held-out loss
    for f in finals:
        pos = [p["loss"] for p in positions if (p["objective"], p["seed"]) == (f["objective"], f["seed"])]
        assert len(pos) == 8
        assert sum(pos) / len(pos) == pytest.approx(f["eval_loss"], rel=1e-6)
        mine = [c for c in curves if (c["objective"], c["seed"]) == (f["objective"], f["seed"])]
        evals = [c["step"] for c in mine if c["eval_loss"] is not None]
        assert evals == [10, 20]
    summary = json.loads((out / "summary.json").read_text())
    s = summary["settings"]["precache"]
    by = {(f["objective"], f["seed"]): f["eval_loss"] for f in finals}
    gaps = [by[("myopic", k)] - by[("ntp", k)] for k in (0, 1)]
    assert s["gap"]["myopic"]["mean"] == pytest.approx(sum(gaps) / 2)
    assert s["final"]["ntp"]["n"] == 2 and s["final"]["ntp"]["ci_low"] <= s["final"]["ntp"]["mean"]
    assert summary["precache_reproduced"] is False  # 20 steps learn nothing
    assert summary["myopic_variants"] == ["myopic"]
    assert "base" not in s  # a lab preset has no "before fine-tuning"
    assert r.summary.settings["precache"].gap["myopic"].mean == s["gap"]["myopic"]["mean"]
    assert len(list((out / "figures").glob("*.png"))) == 4  # curves, gap over training, by position, gap by position
    html = (out / "report.html").read_text()
    assert html.index("<h2>Summary</h2>") < html.index("<img")


def test_interrupted_cell_resumes_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    _, spec = resolve_spec("myopia-gap", TINY_PRECACHE)
    setting = spec.precache
    train_cell(setting, "myopic", 0, tmp_path / "whole", 1, lambda *a, **k: None)

    class Stop(Exception):
        pass

    def stop_after_first_chunk(advance=1, total=None, note=None):
        if advance == 10:
            raise Stop

    with pytest.raises(Stop):
        train_cell(setting, "myopic", 0, tmp_path / "cut", 1, stop_after_first_chunk)
    assert (tmp_path / "cut" / "train" / "checkpoints" / "latest").is_file()
    seen = []
    _, result = train_cell(setting, "myopic", 0, tmp_path / "cut", 1, lambda a=1, total=None, note=None: seen.append(a))
    assert result.resumed_from == 10 and sum(seen) == 20  # 10 found done + 10 trained
    a = load_file(str(tmp_path / "whole" / "train" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "train" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_pretrained_hf_model(tiny_lm_dir, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("".join(f"the {w} sat on the mat and the {w} ran.\n" for w in ("cat", "dog", "king")) * 60)
    task = '{name = "text", path = "%s", seq_len = 16}' % text
    overrides = [
        'settings=["pretrained"]',
        f"pretrained.model=hf:{tiny_lm_dir}",
        f"pretrained.task={task}",
        "pretrained.steps=3",
        "pretrained.eval_every=3",
        "pretrained.batch_size=4",
    ]
    out = tmp_path / "run"
    run("myopia-gap", overrides, out=out)
    summary = json.loads((out / "summary.json").read_text())
    s = summary["settings"]["pretrained"]
    assert set(s["final"]) == {"ntp", "myopic"} and s["base"] > 0
    assert "reproduced" not in s  # a precache figure only
    assert not list((out / "work").rglob("model*.safetensors"))  # keep_weights=false for this setting
    stages = {p["stage"] for p in read_parquet(out / "results" / "positions.parquet")}
    assert stages == {"base", "final"}


def test_headline_round_trips(precache_run):
    """summary.json validates back into the typed headline: the same keys (none added as null)
    and the same end-of-run table."""
    r, out = precache_run
    text = (out / "summary.json").read_text()
    back = MyopiaGapHeadline.model_validate_json(text)
    assert back.model_dump(mode="json") == json.loads(text) == r.summary.model_dump(mode="json")
    assert back.table() == r.summary.table()
    header, rows = back.table()
    assert header == ["setting", "objective", "seeds", "final loss", "95% CI", "gap vs ntp", "gap 95% CI"]
    assert [row[1] for row in rows] == ["ntp", "myopic", "bigram", "reproduced?"]
    assert rows[0][4].startswith("[") and rows[0][5] is None and rows[-1][3] == "NO"  # 20 steps learn nothing


def test_spec_mistakes_are_one_line_errors():
    with pytest.raises(UserError, match="unknown objective 'vanilla'"):
        resolve_spec("myopia-gap", ['precache.objectives=["vanilla"]'])
    with pytest.raises(UserError, match="accepted: precache, shakespeare, pretrained"):
        resolve_spec("myopia-gap", ['settings=["text"]'])
    with pytest.raises(UserError, match="unknown field"):
        resolve_spec("myopia-gap", ["precache.stepz=3"])
