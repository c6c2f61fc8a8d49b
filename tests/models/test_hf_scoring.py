"""Exactness of the white-box backend's scoring and sampling, against plain forward passes."""

from __future__ import annotations

import math

import pytest
import torch

from myopia import UserError
from myopia.models import Prompt, SamplingParams, load_model

CTX = "Once upon a time, there was a"
CONTS = [" little girl who was born", " a a a a a a a a", " dragon", " king.", " cat sat on the mat and"]


def _reference(lm, ctx_ids: list[int], cont_ids: list[int]):
    """Chain-rule factors from one plain, unbatched forward pass over context + continuation."""
    ids = torch.tensor([ctx_ids + cont_ids])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(ids).logits[0].double(), dim=-1)  # (T, V)
    rows = logp[len(ctx_ids) - 1 : len(ctx_ids) - 1 + len(cont_ids)]  # (L, V)
    lp = rows[torch.arange(len(cont_ids)), torch.tensor(cont_ids)]
    ranks = [int((r > r[t]).sum()) + 1 for r, t in zip(rows, cont_ids)]
    ent = torch.distributions.Categorical(logits=rows).entropy()
    return lp, ranks, ent


@pytest.mark.parametrize("which", ["tiny_lm", "smollm"])
def test_joint_logprob_is_sum_of_chain_rule_factors(which, request):
    lm = request.getfixturevalue(which)
    for s in lm.score(CTX, CONTS):
        _, ctx_ids = lm.encode_context(CTX)
        cont_ids = [t.token_id for t in s.tokens]
        lp, ranks, ent = _reference(lm, ctx_ids, cont_ids)
        assert s.logprob == pytest.approx(float(lp.sum()), abs=1e-4)
        assert [t.logprob for t in s.tokens] == pytest.approx(lp.tolist(), abs=1e-4)
        assert [t.rank for t in s.tokens] == ranks
        assert [t.entropy for t in s.tokens] == pytest.approx(ent.tolist(), abs=1e-4)


@pytest.mark.parametrize("which", ["tiny_lm", "smollm"])
def test_batched_padded_score_equals_unbatched(which, request):
    lm = request.getfixturevalue(which)
    batched = lm.score(CTX, CONTS)  # shared-context path, padded to the longest
    single = [lm.score(CTX, [c])[0] for c in CONTS]  # one forward each
    mixed = lm.score_many([(CTX, c) for c in CONTS[:2]] + [("The cat", " sat"), ("Hello there", " world")])
    for b, s in zip(batched, single):
        assert [t.token_id for t in b.tokens] == [t.token_id for t in s.tokens]
        assert [t.logprob for t in b.tokens] == pytest.approx([t.logprob for t in s.tokens], abs=1e-4)
    assert mixed[0].logprob == pytest.approx(single[0].logprob, abs=1e-4)
    assert mixed[1].logprob == pytest.approx(single[1].logprob, abs=1e-4)
    assert mixed[2].logprob == pytest.approx(lm.score("The cat", [" sat"])[0].logprob, abs=1e-4)


def test_batches_smaller_than_the_request_give_the_same_scores(tiny_lm_dir):
    wide = load_model(f"hf:{tiny_lm_dir}", batch_size=64)
    narrow = load_model(f"hf:{tiny_lm_dir}", batch_size=2)
    a, b = wide.score(CTX, CONTS), narrow.score(CTX, CONTS)
    assert [x.logprob for x in a] == pytest.approx([x.logprob for x in b], abs=1e-4)


def test_boundary_moves_trailing_space_to_the_continuation(smollm):
    """The natural rule: 'a ' + 'little' is tokenized 'a', ' little', so ' little' straddles
    the boundary and is scored, as after 'a' + ' little'; the space is reported as moved."""
    a = smollm.score(CTX + " ", ["little girl"])[0]
    b = smollm.score(CTX, [" little girl"])[0]
    assert [t.token_id for t in a.tokens] == [t.token_id for t in b.tokens]
    assert a.logprob == pytest.approx(b.logprob, abs=1e-5)
    assert "".join(t.token for t in b.tokens) == " little girl"
    assert (a.moved, b.moved, a.boundary) == (" ", "", "natural")


def test_joint_tokenization_of_a_continuation(smollm):
    ids = smollm.continuation_ids(CTX, " a a a")
    assert smollm.tokenizer.decode(ids) == " a a a"
    scored = smollm.score_ids(CTX, [ids, ids[:1]])
    assert scored[0].logprob == pytest.approx(smollm.score(CTX, [" a a a"])[0].logprob, abs=1e-4)


@pytest.mark.parametrize("ctx, cont, moved", [("Q: pick one\nA:", '"1"', ":"), ("x =", "= 2", " ="),
                                              (CTX, " little girl", "")])
def test_scored_tokens_spell_the_continuation(smollm, ctx, cont, moved):
    """The natural rule (this test encoded the old rule, which tokenized a continuation on its
    own where the context's last token merges with it): 'A:' + '"1"' is tokenized 'A', ':"',
    '1', '"', so ':"' is scored and ':' moves. The scored tokens spell moved + continuation,
    and context + scored tokens are exactly the model's tokenization of the joint text;
    continuation_ids (how a generation after the context's own tokens writes the text)
    agrees where nothing moves."""
    scored = smollm.score(ctx, [cont])[0]
    assert scored.moved == moved
    assert "".join(t.token for t in scored.tokens) == moved + cont
    r = smollm._split(ctx, cont, 0)
    assert r.ctx_ids + r.cont_ids == smollm.tokenizer(ctx + cont)["input_ids"]
    assert [t.token_id for t in scored.tokens] == r.cont_ids
    if not moved:
        assert r.cont_ids == smollm.continuation_ids(ctx, cont)


def test_sampling_is_reproducible_by_seed(tiny_lm):
    p = SamplingParams(max_tokens=12, min_tokens=12, seed=7)
    a = tiny_lm.sample(CTX, 6, p)
    b = tiny_lm.sample(CTX, 6, p)
    c = tiny_lm.sample(CTX, 6, SamplingParams(max_tokens=12, min_tokens=12, seed=8))
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert [s.token_ids for s in a] != [s.token_ids for s in c]
    assert all(len(s.token_ids) == 12 for s in a)


def test_greedy_and_top_k_1_follow_the_argmax_chain(tiny_lm):
    g = tiny_lm.sample(CTX, 1, SamplingParams(max_tokens=8, min_tokens=8, temperature=0))[0]
    k1 = tiny_lm.sample(CTX, 3, SamplingParams(max_tokens=8, min_tokens=8, top_k=1, seed=3))
    assert all(s.token_ids == g.token_ids for s in k1)
    scored = tiny_lm.score_ids(CTX, [g.token_ids])[0]
    assert all(t.rank == 1 for t in scored.tokens)


def test_sampling_matches_the_model_distribution(tiny_lm):
    """First-token frequencies of 4000 samples agree with the exact next-token probabilities."""
    n = 4000
    samples = tiny_lm.sample(CTX, n, SamplingParams(max_tokens=1, seed=0))
    probs = tiny_lm.next_token_logprobs([CTX])[0].exp()
    eos = tiny_lm.tokenizer.eos_token_id  # a sample that drew end-of-sequence has no tokens
    first = [s.token_ids[0] if s.token_ids else eos for s in samples]
    counts = torch.bincount(torch.tensor(first), minlength=probs.numel()).double()
    top = probs.argsort(descending=True)[:5]
    for t in top:
        p = float(probs[t])
        assert abs(counts[t] / n - p) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3


def test_top_p_keeps_only_the_nucleus(tiny_lm):
    probs = tiny_lm.next_token_logprobs([CTX])[0].exp()
    order = probs.argsort(descending=True)
    nucleus = set(order[: int((probs[order].cumsum(0) < 0.5).sum()) + 1].tolist())
    s = tiny_lm.sample(CTX, 200, SamplingParams(max_tokens=1, top_p=0.5, seed=1))
    assert {x.token_ids[0] for x in s} <= nucleus


def test_next_token_logprobs_match_score(tiny_lm):
    nt = tiny_lm.next_token_logprobs([CTX, "The cat"])
    s = tiny_lm.score(CTX, [" a"])[0].tokens[0]
    assert float(nt[0, s.token_id]) == pytest.approx(s.logprob, abs=1e-4)
    assert torch.allclose(nt.exp().sum(-1), torch.ones(2, dtype=nt.dtype), atol=1e-4)


def test_chat_prompts_use_the_template(smollm, tiny_lm):
    text = smollm.render(Prompt("hi", chat=True))
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n") and "hi" in text
    assert smollm.score(Prompt("Say hi", chat=True), ["Hello"])[0].context == smollm.render(Prompt("Say hi", chat=True))
    with pytest.raises(UserError, match="no chat template"):
        tiny_lm.render(Prompt("hi", chat=True))


def test_user_mistakes_are_user_errors(tiny_lm):
    with pytest.raises(UserError, match="empty continuation"):
        tiny_lm.score(CTX, [""])
    with pytest.raises(UserError, match="window"):
        tiny_lm.score("word " * 200, [" end"])
    with pytest.raises(UserError, match="unknown model 'nope'.*gemma-3-270m"):
        load_model("nope")
    with pytest.raises(UserError, match="gguf file not found"):
        load_model("gguf:/no/such/file.gguf")
    with pytest.raises(UserError, match="lab model not found"):
        load_model("lab:/no/such/dir")
