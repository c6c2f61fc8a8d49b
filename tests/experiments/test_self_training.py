"""self-training end to end on a tiny base: cells, resume, summary, report, one-line errors."""

from __future__ import annotations

import json

import pytest

from myopia import UserError
from myopia.experiments import run
from myopia.experiments._io import read_parquet

TINY = [
    'base.task={name = "game", vocab_size = 300, seq_len = 96, share = 0.5}',
    "base.model_overrides={n_layer = 1, d_model = 32, n_head = 2}",
    "base.steps=30",
    "base.batch_size=8",
    "base.chunk=15",
    "base.eval_every=0",
    "base.eval_batches=1",
    "seeds=[0, 1]",
    "shared={rounds = 1, K = 4, k = 1, text_prompts = 3, game_prompts = 2, steps = 2, batch_size = 8, rl_updates = 1, "
    "completion_tokens = 8, prompt_tokens = 6, answer_tokens = 6}",
    'conditions={top-k = {condition = "top-k"}, random-k = {condition = "random-k"}, '
    'rl = {condition = "rl", reward = "predictability"}, '
    'rl-kl = {condition = "rl", reward = "predictability", beta = 1.0}, '
    'rl-valid = {condition = "rl", reward = "valid"}}',
    "heldout_windows=4",
    "heldout_prompts=4",
    "prompt_tokens=6",
    "sample_tokens=8",
    "game_samples=8",
    "scale_models=[]",
]


def test_tiny_run_summary_report_and_resume(game_task, tmp_path):
    out = tmp_path / "run"
    r = run("self-training", TINY, out=out)
    assert r.cells_run == 2 + 5 * 2
    rounds = read_parquet(out / "results" / "rounds.parquet")
    assert len(rounds) == 5 * 2 * 2  # conditions x seeds x rounds 0..1
    assert {row["condition"] for row in rounds} == {"top-k", "random-k", "rl", "rl-kl", "rl-valid"}
    assert all(row["train_text_reward"] is not None for row in rounds if row["condition"] == "rl" and row["round"] > 0)
    top = [row for row in rounds if row["condition"] == "top-k" and row["round"] > 0]
    assert top and all(row["train_text_kept_logprob"] is not None for row in top)
    # round 0 is the same base, measured alike, in every condition of a seed
    zero = {(row["seed"], row["word_exact_one"], row["text_xent_per_char"]) for row in rounds if row["round"] == 0}
    assert len(zero) == 2
    s = json.loads((out / "summary.json").read_text())
    assert [b["seed"] for b in s["base"]] == [0, 1] and all(0 <= b["word_exact_one"] <= 1 for b in s["base"])
    assert {f["condition"] for f in s["final"]} == {"top-k", "random-k", "rl", "rl-kl", "rl-valid"}
    top = next(f for f in s["final"] if f["condition"] == "top-k")
    assert top["final"]["samples_distinct_2"]["n"] == 2 and top["final"]["samples_distinct_2"]["low"] is not None
    assert len(s["questions"]) == 3 and not any(q["answer"].startswith("not run") for q in s["questions"])
    assert all("\n" not in q["answer"] for q in s["questions"])
    html = (out / "report.html").read_text()
    assert "What does the KL penalty change?" in html and "trained on: text" in html
    # the base is a lab checkpoint, kept
    from myopia.models import load_model

    lm = load_model(f"lab:{out / 'work' / 'base-s0' / 'train'}")
    assert lm.name
    again = run("self-training", TINY, out=out)
    assert again.cells_run == 0
    assert json.loads((out / "summary.json").read_text()) == s


@pytest.mark.parametrize("override, match", [
    ('conditions={x = {condition = "rl", reward = "nope"}}', "condition 'x'.*unknown reward 'nope'"),
    ('conditions={x = {condition = "top-k", k = 9, K = 4}}', "condition 'x'.*k=9 is more than K=4"),
    ('conditions={x = {condition = "best"}}', "condition 'x'.*condition"),
    ('base.task={name = "game", zero_word = "", variants = ["word"]}', "no 0-branch"),
])
def test_bad_specs_are_one_line_errors(override, match, tmp_path):
    with pytest.raises(UserError, match=match) as e:
        run("self-training", [override, "scale_models=[]"], out=tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run" / "cells").exists()
