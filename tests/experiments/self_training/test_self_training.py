"""self-training end to end on a tiny base: cells, resume, summary, report, one-line errors."""

from __future__ import annotations

import json
import re
import shutil
import sys

import pytest
from click.testing import CliRunner

from myopia import UserError
from myopia._cli import main
from myopia._io import read_parquet
from myopia.experiments.self_training._summary import SelfTrainingHeadline
from myopia.runs import run

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
    h = SelfTrainingHeadline.model_validate(s)  # summary.json is the typed headline
    assert [b.seed for b in h.base] == [0, 1]
    assert all(0 <= b.game[v].exact["one"] <= 1 and b.game[v].sampled["one"].n == 8 for b in h.base for v in b.game)
    assert [f.condition for f in h.final] == ["top-k", "random-k", "rl", "rl-kl", "rl-valid"]  # the spec's order
    top = h.final[0]
    assert top.final["samples_distinct_2"].n == 2 and top.final["samples_distinct_2"].ci_low is not None
    assert top.game_sampled["random_one"].n == 2 * 8  # the sampled check, counted over the seeds
    assert len(h.questions) == 3 and not any(q.verdict == "not run" for q in h.questions)
    assert all("\n" not in q.answer for q in h.questions)
    header, rows = h.table()
    assert header[0] == "condition" and len(rows) == 2 + 5
    html = (out / "report.html").read_text()
    assert "What does the KL penalty change?" in html and "trained on: text" in html
    # the base is a lab checkpoint, kept
    from myopia.models import load_model

    lm = load_model(f"lab:{out / 'work' / 'base-s0' / 'train'}")
    assert lm.name
    again = run("self-training", TINY, out=out)
    assert again.cells_run == 0
    assert json.loads((out / "summary.json").read_text()) == s
    # a cell interrupted after round 0 resumes from there and repeats what the whole run did
    rounds_dir = out / "work" / "top-k__s0" / "rounds"
    shutil.rmtree(rounds_dir / "round-001")
    (rounds_dir / "latest").write_text("round-000\n")
    shutil.rmtree(out / "cells" / "top-k__s0")
    resumed = run("self-training", TINY, out=out)
    assert resumed.cells_run == 1
    assert _untimed(read_parquet(out / "results" / "rounds.parquet")) == _untimed(rounds)


def _untimed(rows: list[dict]) -> list[str]:
    """The rows without their wall-clock seconds, in a fixed order, as text (so NaN equals NaN and
    floats must agree to the bit)."""
    drop = ("train_seconds", "measure_seconds")
    rows = sorted(rows, key=lambda r: (r["condition"], r["seed"], r["round"]))
    return [repr({k: v for k, v in r.items() if k not in drop}) for r in rows]


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


@pytest.mark.parametrize("body, match", [
    ("def f(prompt, completion):\n    raise KeyError('x')\n", "reward 'bad_reward_mod:f' raised KeyError"),
    ("def f(prompt, completion):\n    return [1.0]\n", "must return a finite number"),
    ("g = 1\n", "has no function 'f'"),
])
def test_a_bad_reward_function_is_one_line_and_exit_2(body, match, tmp_path, monkeypatch):
    (tmp_path / "bad_reward_mod.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bad_reward_mod", raising=False)
    r = CliRunner().invoke(main, ["run", "self-training", "--out", str(tmp_path / "run"), "--set", "scale_models=[]",
                                  "--set", 'conditions={x = {condition = "rl", reward = "bad_reward_mod:f"}}'])
    assert r.exit_code == 2 and re.search(match, r.output), r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "run" / "cells").exists()


def test_control_characters_of_model_text_are_shown_not_written():
    from myopia.experiments.self_training._report import visible

    assert visible("a\x00b\n\tc\x07<d>\x7f") == "a\\x00b\n\tc\\x07<d>\\x7f"  # markup is the template's to escape


def test_question_2_takes_the_branch_reward_as_the_neutral_control_where_it_was_run():
    from myopia.experiments.self_training._summary import HEADLINE, ConditionFinal, Interval, _q2

    def cond(name, kind, reward=None, drop=0.0):
        iv = {m: Interval(mean=0.0, ci_low=-0.01, ci_high=0.01, n=3) for m in HEADLINE}
        iv["random_exact_zero"] = Interval(mean=drop, ci_low=drop - 0.01, ci_high=drop + 0.01, n=3)
        return ConditionFinal(condition=name, kind=kind, reward=reward, beta=0.0 if kind == "rl" else None,
                              data=None if kind == "rl" else "replace", rounds=5, seeds=3, final=iv, change=iv,
                              game_sampled={}, round_seconds=iv["text_ece"], measure_seconds=iv["text_ece"])

    finals = [cond("top-k", "top-k", drop=-0.4), cond("random-k", "random-k"),
              cond("rl-valid", "rl", "valid", drop=-0.4)]
    assert _q2(finals).verdict == "in part"  # valid drops the branch too
    assert _q2([*finals, cond("rl-branch", "rl", "branch")]).verdict == "yes"  # branch does not: it is the control
    assert "rl-branch" in _q2([*finals, cond("rl-branch", "rl", "branch")]).answer
