"""Self-training rounds on a tiny lab model: selection, data policies, rewards, resume bit for bit,
one-line errors; and the round measures."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from myopia import UserError
from myopia.lab import ModelSpec, build_model
from myopia.lab.selftrain._measures import (
    distinct_n,
    ends_in_repetition,
    game_measures,
    sample_measures,
    seq_rep,
    text_measures,
)
from myopia.lab.selftrain._rewards import Rollout, get_reward
from myopia.lab.selftrain._rloo import sequence_logprobs
from myopia.lab.selftrain._rounds import SelfTrainConfig, SelfTraining, generator
from myopia.lab.selftrain._select import select

SMALL = dict(K=4, k=2, rounds=3, text_prompts=4, prompt_tokens=6, completion_tokens=8, game_prompts=2,
             answer_tokens=6, steps=3, batch_size=8, rl_updates=2)


@pytest.fixture
def task(game_task):
    return game_task


def _model(task, seed=0):
    m, _ = build_model(ModelSpec(name="llama-tiny", n_layer=1, d_model=32, n_head=2), task, seed=seed)
    return m.eval()


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _measure(task):
    def measure(model, r):
        p = game_measures(model, task, "random", n=0, gen=torch.Generator())
        return {"p_one_random": p["exact_one"]}
    return measure


@pytest.mark.parametrize("overrides", [
    {"condition": "top-k", "data": "accumulate"},
    {"condition": "reward-k", "reward": "predictability", "data": "mix"},
    {"condition": "rl", "reward": "predictability", "beta": 0.1},
])
def test_resume_after_each_round_is_bit_identical(task, tmp_path, overrides):
    cfg = SelfTrainConfig(**{**SMALL, **overrides})
    whole = SelfTraining(cfg, _model(task), _model(task), task, tmp_path / "whole", seed=3, measure=_measure(task))
    records = whole.run()
    assert [r["round"] for r in records] == [0, 1, 2, 3]
    want = _weights(whole.model)
    for _ in range(3):  # a fresh process each time: new objects, weights from the base again
        part = SelfTraining(cfg, _model(task), _model(task), task, tmp_path / "parts", seed=3, measure=_measure(task))
        part.run(stop_after=1)
    got = _weights(part.model)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert part.records() == records  # statistics, examples and measures alike
    assert not torch.equal(want["model.embed_tokens.weight"], _model(task).state_dict()["model.embed_tokens.weight"])
    assert (tmp_path / "whole" / "latest").read_text().strip() == "round-003"
    # every round is a lab checkpoint
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(tmp_path / "whole" / "round-003")
    assert torch.equal(m.state_dict()["model.embed_tokens.weight"], want["model.embed_tokens.weight"])


def test_data_policies_set_the_training_rows(task, tmp_path):
    rows_per_round = (SMALL["text_prompts"] + 2 * SMALL["game_prompts"]) * SMALL["k"]
    for data, want in [("replace", [rows_per_round] * 3), ("accumulate", [rows_per_round * r for r in (1, 2, 3)]),
                       ("mix", [rows_per_round + round(0.25 / 0.75 * rows_per_round)] * 3)]:
        cfg = SelfTrainConfig(**{**SMALL, "condition": "random-k", "data": data, "mix": 0.25})
        recs = SelfTraining(cfg, _model(task), _model(task), task, tmp_path / data).run()
        assert [r["train_rows"] for r in recs[1:]] == want, data


def test_top_k_keeps_the_most_probable_and_reward_k_the_best():
    lp = torch.tensor([[-3.0, -1.0, -2.0, -1.0], [0.0, -5.0, -0.5, -9.0]])
    assert select("top-k", lp, None, 2, torch.Generator()).tolist() == [[1, 3], [0, 2]]  # ties: earlier first
    r = torch.tensor([[0.0, 1.0, 5.0, 2.0], [3.0, 3.0, 1.0, 0.0]])
    assert select("reward-k", lp, r, 1, torch.Generator()).tolist() == [[2], [0]]
    picks = select("random-k", lp, None, 2, torch.Generator().manual_seed(0))
    assert picks.shape == (2, 2) and all(len(set(p.tolist())) == 2 for p in picks)


def test_top_k_rounds_train_on_more_probable_samples_than_drawn(task, tmp_path):
    cfg = SelfTrainConfig(**{**SMALL, "rounds": 1, "condition": "top-k"})
    rec = SelfTraining(cfg, _model(task), _model(task), task, tmp_path).run()[1]
    for kind in ("text", "word", "random"):
        assert rec[kind]["kept_logprob"] > rec[kind]["drawn_logprob"]


def test_beam_decoding_gives_the_best_sequences(task, tmp_path):
    cfg = SelfTrainConfig(**{**SMALL, "rounds": 1, "decoding": "beam", "game_prompts": 0, "text_prompts": 2})
    st = SelfTraining(cfg, _model(task), _model(task), task, tmp_path)
    ps = st.prompt_sets(1)[0]
    beams = st.draw(ps, generator(0))
    sampling = cfg.model_copy(update={"decoding": "sample", "K": 64})
    drawn = SelfTraining(sampling, st.model, st.base, task, tmp_path / "s").draw(ps, generator(0))
    assert beams.logprobs.view(2, 4).max(1).values.ge(drawn.logprobs.view(2, 64).max(1).values - 1e-6).all()


# --- rewards ----------------------------------------------------------------------------------
def _rollout(task, kind="random"):
    m = _model(task)
    st = SelfTraining(SelfTrainConfig(**SMALL), m, _model(task, 1), task, "/tmp/unused")
    ps = [p for p in st.prompt_sets(1) if p.kind == kind][0]
    return st, st.rollout(ps, st.draw(ps, generator(1)))


def test_builtin_rewards(task):
    st, ro = _rollout(task)
    c = ro.completions
    pred = get_reward("predictability", base=st.base)(ro)
    assert torch.allclose(pred, sequence_logprobs(st.base, c.prompt_ids, c.ids, c.mask).double())
    fake = Rollout("random", ["p"] * 4, [" 1\n", " qhzx\n", " qh\n", "oops"], c)
    assert get_reward("valid", letters=(3, 8))(fake).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert get_reward("valid")(Rollout("text", ["p"], ["anything"], c)).tolist() == [1.0]
    # branch: either branch's start, as the exact figures classify it (a malformed letter string counts)
    assert get_reward("branch")(fake).tolist() == [1.0, 1.0, 1.0, 0.0]
    word = Rollout("word", ["p"] * 4, [" 1\n", " zero\n", " zer", " 12\n"], c)
    assert get_reward("branch")(word).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert get_reward("branch")(Rollout("text", ["p"], ["anything"], c)).tolist() == [1.0]
    kw = get_reward("keyword", keyword="love")(Rollout("text", ["p"] * 3, ["my Love is", "lovely", "no"], c))
    assert kw.tolist() == [1.0, 0.0, 0.0]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def length(prompt, completion):\n    return len(completion)\n"
        "def boom(prompt, completion):\n    raise ValueError('nope')\n"
        "def text(prompt, completion):\n    return 'high'\n"
        "def nan(prompt, completion):\n    return float('nan')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_rewards"
    sys.modules.pop("my_rewards", None)


def test_user_reward_by_import_path(task, user_module):
    st, ro = _rollout(task)
    got = get_reward(f"{user_module}:length")(ro)
    assert got.tolist() == [float(len(t)) for t in ro.texts]


@pytest.mark.parametrize("name, match", [
    ("boom", "raised ValueError: nope"),
    ("text", "must return a finite number"),
    ("nan", "must return a finite number"),
])
def test_bad_user_rewards_are_one_line_errors(task, user_module, name, match):
    st, ro = _rollout(task)
    with pytest.raises(UserError, match=match) as e:
        get_reward(f"{user_module}:{name}")(ro)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name, match", [("boom", "raised ValueError: nope"), ("text", "must return a finite number")])
def test_bad_user_rewards_are_refused_before_any_work(user_module, name, match):
    with pytest.raises(UserError, match=match):  # the config tries the function on a game answer
        SelfTrainConfig(condition="reward-k", reward=f"{user_module}:{name}")


@pytest.mark.parametrize("fields, match", [
    ({"condition": "rl", "reward": "novelty"}, "unknown reward 'novelty'"),
    ({"condition": "reward-k", "reward": "no_such_module_xyz:f"}, "cannot import module"),
    ({"condition": "top-k", "k": 5, "K": 4}, "k=5 is more than K=4"),
    ({"condition": "rl", "K": 1, "k": 1}, "K >= 2"),
])
def test_bad_configs_are_one_line_errors(fields, match):
    with pytest.raises(UserError, match=match):
        SelfTrainConfig(**fields)


# --- measures ---------------------------------------------------------------------------------
def test_word_measures():
    assert distinct_n(["a b a b", "c"], 1) == 3 / 5
    assert distinct_n(["a b a b"], 2) == 2 / 3
    assert ends_in_repetition("x y a b a b a b") and ends_in_repetition("so a a a a a a")
    assert not ends_in_repetition("a b a b x") and not ends_in_repetition("a a a a a")  # 5 x "a": "a a" only twice
    assert seq_rep("a b c d a b c d") == 1 - 4 / 5
    assert math.isnan(seq_rep("a b"))


def test_text_measures_match_a_direct_computation(task):
    m = _model(task)
    batch = task.eval_batches(1, 4)[0]
    windows = torch.cat([batch.inputs["input_ids"], batch.targets[:, -1:]], dim=1)  # (4, T+1)
    got = text_measures(m, task.tokenizer, windows)
    with torch.no_grad():
        logp = torch.log_softmax(m(input_ids=windows[:, :-1]).logits.double(), -1)
    ce = -logp.gather(2, windows[:, 1:, None]).mean()
    assert got["xent_per_token"] == pytest.approx(float(ce), rel=1e-9)
    assert got["entropy_per_token"] == pytest.approx(float(-(logp.exp() * logp).sum(-1).mean()), rel=1e-9)
    assert 0 <= got["ece"] <= 1 and got["tokens"] == windows[:, 1:].numel()


def test_sampled_game_answers_agree_with_the_exact_probabilities(task):
    from myopia.stats import wilson_interval

    m = _model(task, seed=4)
    for variant in ("word", "random"):
        g = game_measures(m, task, variant, n=400, gen=generator(7))
        assert g["exact_one"] + g["exact_zero"] + g["exact_other"] == pytest.approx(1.0)
        for name in ("one", "zero", "other"):
            lo, hi = wilson_interval(round(g[f"sampled_{name}"] * 400), 400, z=3.5)
            assert lo <= g[f"exact_{name}"] <= hi, (variant, name, g)


def test_sample_measures(task):
    m = _model(task)
    prompts = task.text_windows("train", [i * 50 for i in range(6)], 6)
    s = sample_measures(m, task.tokenizer, prompts, 10, generator(2))
    assert s["samples"] == 6 and 0 <= s["degenerate_beats_samples"] <= 1 and s["entropy_per_char"] > 0
    assert 0 < s["distinct_1"] <= 1
    json.dumps(s)  # stored in round.json
