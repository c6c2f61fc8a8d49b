"""Scoring with shared-prefix caching equals one plain forward pass per request.

``score_many`` computes shared context prefixes once, batches the rest of the contexts
from that cache (right-padded), and reads continuations off the contexts' caches. The
reference here is the brute force: context + continuation through the model alone,
batch 1, no cache.
"""

from __future__ import annotations

import pytest
import torch

from myopia.models import Prompt, load_model

SHARED = "Once upon a time, there was a little girl who lived in a village near the forest. "
STORY = SHARED + "The cat sat on the mat. "
CONTS = [" The dog", " The dog sat on the log", " a", " She could see", " In"]
TEMPLATE = (
    "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<bos>assistant:{% endif %}"
)


def _reference(lm, ctx_ids: list[int], cont_ids: list[int]):
    """Per-token log-prob, rank, entropy from one unbatched, uncached forward pass."""
    with torch.no_grad():
        logits = lm.model(torch.tensor([ctx_ids + cont_ids]), use_cache=False).logits[0]  # (T, V)
    logp = torch.log_softmax(logits[len(ctx_ids) - 1 : -1].double(), dim=-1)  # (L, V)
    lp = logp[torch.arange(len(cont_ids)), torch.tensor(cont_ids)]
    ranks = [int((row > row[t]).sum()) + 1 for row, t in zip(logp, cont_ids)]
    ent = -(logp.exp() * logp).nan_to_num().sum(-1)
    return lp.tolist(), ranks, ent.tolist()


def _check(lm, requests) -> None:
    scored = lm.score_many(requests)
    assert len(scored) == len(requests)
    for (ctx, cont), s in zip(requests, scored):
        r = lm._split(ctx, cont, 0)
        assert [t.token_id for t in s.tokens] == r.cont_ids
        assert s.continuation == cont and s.context == lm.render(ctx)
        lp, ranks, ent = _reference(lm, r.ctx_ids, r.cont_ids)
        assert [t.logprob for t in s.tokens] == pytest.approx(lp, abs=1e-4)
        assert [t.rank for t in s.tokens] == ranks
        assert [t.entropy for t in s.tokens] == pytest.approx(ent, abs=1e-4)


def _mixed_requests(chat: bool):
    """Every case the planner distinguishes, in one call."""
    reqs = []
    for i, tail in enumerate(["She could see", "A bird sang in the tree.", "The", "def fibonacci(n):"]):
        reqs += [(STORY + tail, c) for c in CONTS[i:]]  # a long shared prefix, several continuations
    reqs += [(STORY, c) for c in CONTS[:2]]  # the shared prefix itself is a context
    reqs += [(SHARED + "In the beginning", " there was a word")]  # shares less: one continuation inline
    reqs += [(SHARED + "In the beginning there", " was")]  # the previous context is a prefix of it
    reqs += [("The cat sat", c) for c in CONTS]  # no shared prefix
    reqs += [("The cat sat", " on")]  # identical context, given again
    reqs += [("Hello", " world"), ("", " Once upon"), ("a", " king")]  # short ones, an empty one
    if chat:
        reqs += [(Prompt(STORY + "Who sat?", chat=True), c) for c in CONTS[:3]]
        reqs += [(Prompt("Who sat?", system=SHARED, chat=True), " The cat")]
    return reqs


@pytest.fixture(scope="module")
def tiny_chat_lm(tmp_path_factory):
    from lmfactory import build_tiny_lm

    path = build_tiny_lm(tmp_path_factory.mktemp("tiny-chat"), chat_template=TEMPLATE)
    return load_model(f"hf:{path}", batch_size=64)


def test_prefix_cached_scores_equal_plain_forward_passes(tiny_chat_lm):
    _check(tiny_chat_lm, _mixed_requests(chat=True))


def test_small_batches_and_single_requests(tiny_lm):
    """batch_size 4 splits contexts and continuation rows over several forward passes."""
    _check(tiny_lm, _mixed_requests(chat=False))
    _check(tiny_lm, [(STORY, " The dog")])
    _check(tiny_lm, [(STORY, c) for c in CONTS])
    assert tiny_lm.score_many([]) == [] and tiny_lm.score_ids(STORY, []) == []


def test_shared_prefix_is_forwarded_once(tiny_chat_lm):
    """The tokens the model sees: each shared prefix once, then only what differs."""
    lm = tiny_chat_lm
    tails = ["She could see", "A bird sang in the tree.", "The", "def fibonacci(n):"]
    requests = [(STORY + t, c) for t in tails for c in CONTS]
    seen = []
    hook = lm.model.register_forward_pre_hook(
        lambda m, args, kw: seen.append(int((kw["input_ids"] != lm._pad_id()).sum())), with_kwargs=True
    )
    try:
        lm.score_many(requests)
    finally:
        hook.remove()
    ctx = [lm.encode_context(STORY + t)[1] for t in tails]
    shared = len(lm.encode_context(STORY)[1]) - 2  # the last tokens of STORY may merge with a tail
    assert seen[0] >= shared  # the shared prefix, batch 1
    assert sum(seen) < sum(len(c) for c in ctx) - 2 * shared  # nowhere near once per context


def test_prefix_groups_nest(tiny_lm):
    """Two families of contexts under one system text: three levels of shared prefix."""
    from myopia.models._hf import _shared_runs

    a = [tuple(tiny_lm.encode_context(STORY + "She could see " + t)[1]) for t in ("the future", "the past", "it")]
    b = [tuple(tiny_lm.encode_context(SHARED + "In the beginning there was " + t)[1]) for t in ("a word", "a king")]
    contexts = sorted(a + b + [(5, 6, 7)])
    runs, rest = _shared_runs(contexts, 0)
    assert rest == [(5, 6, 7)]
    assert [len(m) for _, m in runs] == [5]  # all five share SHARED
    q, members = runs[0]
    inner, rest2 = _shared_runs(members, q)
    assert sorted(len(m) for _, m in inner) == [3] and len(rest2) == 2  # b's two share too little more
    _check(tiny_lm, [(STORY + "She could see " + t, c) for t in ("the future", "the past", "it") for c in CONTS])


def _tiny_gemma(tmp_path, tiny_lm_dir, window: int) -> str:
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    cfg = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=1, head_dim=8, sliding_window=window,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        max_position_embeddings=256, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(1)
    model = Gemma3ForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return str(tmp_path)


@pytest.mark.parametrize("window", [6, 256])
def test_sliding_window_model(window, tmp_path, tiny_lm_dir):
    """Gemma-3 layers attend to the last ``window`` tokens only: contexts much longer than
    a window of 6, or all inside a window of 256 (padded batches, masked holes)."""
    lm = load_model(f"hf:{_tiny_gemma(tmp_path, tiny_lm_dir, window)}", batch_size=8)
    assert lm.window == window
    _check(lm, _mixed_requests(chat=False))


def test_smollm_chat_prompts_share_the_system_prompt(smollm):
    """SmolLM2's template puts its default system prompt before every chat prompt."""
    questions = ["Pick 1 or 0.", "Say 0 or 1, nothing else, please."]
    requests = [(Prompt(q, chat=True), c) for q in questions for c in ["1", " 0", '"1"', '"0"']]
    requests += [("Once upon a time, there was a", " little girl"), (Prompt("Hi", chat=True), "Hello")]
    _check(smollm, requests)
