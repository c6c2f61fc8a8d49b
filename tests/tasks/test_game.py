"""The ``game`` task: transcripts in the training windows, exact branch probabilities (checked
against brute-force enumeration of every token sequence), answer classes, one-line errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from myopia import UserError
from myopia.tasks import get_task, prefix_logprobs, token_bytes
from myopia.tasks._game import branch_classes, classify_answer, valid_answer

# a tiny vocabulary with every awkward case: tokens that are prefixes of others, tokens that run
# past a target (" 1\nX") and a special token (None: ends the text)
TOKENS: list[bytes | None] = [None, b" ", b"1", b"\n", b" 1", b"1\n", b" 1\n", b"z", b" z", b"ze", b"ero",
                              b"e", b"a", b" a", b"\nq", b"1\nab"]


def _tiny_model(vocab: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16)
    model = LlamaForCausalLM(cfg).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0 if p.dim() > 1 else 1.0)  # peaked, unequal distributions
    return model


def _brute_force(model, context: list[int], prefixes: list[str], depth: int) -> dict[str, float]:
    """Sum P(y) over all ``depth``-token sequences y whose text (up to a special token) starts
    with each prefix: every token writes >= 1 byte, so ``depth`` = the longest prefix decides all."""
    seqs = list(itertools.product(range(len(TOKENS)), repeat=depth))
    ids = torch.tensor([context + list(s) for s in seqs])  # (N, C + depth)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.double(), dim=-1)  # (N, C + depth, V)
    c = len(context)
    joint = sum(logp[torch.arange(len(seqs)), c - 1 + j, ids[:, c + j]] for j in range(depth))  # (N,)
    out = {p: 0.0 for p in prefixes}
    for s, lp in zip(seqs, joint.tolist()):
        text = b""
        for t in s:
            if TOKENS[t] is None:
                break
            text += TOKENS[t]
        for p in prefixes:
            if text.startswith(p.encode()):
                out[p] += math.exp(lp)
    return out


def test_prefix_probabilities_equal_brute_force_enumeration():
    model = _tiny_model(len(TOKENS))
    prefixes = [" 1\n", " ze", " a"]
    for context in ([2, 3], [13, 1, 7]):
        got = prefix_logprobs(model, TOKENS, context, prefixes, batch_size=3)
        want = _brute_force(model, context, prefixes, depth=3)
        for p in prefixes:
            assert want[p] > 1e-4  # a real test: each prefix has mass
            assert math.exp(got[p]) == pytest.approx(want[p], rel=1e-9, abs=1e-12), p


def test_prefix_probabilities_count_non_canonical_tokenizations():
    """" 1\\n" is written by (" 1\\n"), (" 1", "\\n"), (" ", "1\\n"), (" ", "1", "\\n"), ... and by
    tokens that run past it (" ", "1\\nab"): all count. The canonical split alone is less."""
    model = _tiny_model(len(TOKENS), seed=1)
    total = math.exp(prefix_logprobs(model, TOKENS, [2], [" 1\n"])[" 1\n"])
    ids = torch.tensor([[2, 6]])  # the single token " 1\n"
    with torch.no_grad():
        one_token = math.exp(float(torch.log_softmax(model(input_ids=ids).logits.double(), -1)[0, 0, 6]))
    assert total > one_token * 1.01


@pytest.fixture
def game(game_task):
    return game_task


def test_token_bytes_of_the_lab_tokenizer_decode_back(game):
    tb = token_bytes(game.tokenizer)
    eos = game.tokenizer.eos_token_id
    assert tb[eos] is None
    for i in range(len(tb)):
        if tb[i] is not None and all(b < 128 for b in tb[i]):
            assert tb[i].decode() == game.tokenizer.decode([i])


def test_training_windows_hold_transcripts_with_both_branches(game):
    b = game.train_batch(step=3, batch_size=64, seed=0)
    again = game.train_batch(step=3, batch_size=64, seed=0)
    assert torch.equal(b.inputs["input_ids"], again.inputs["input_ids"])  # a pure function of (seed, step)
    assert (b.inputs["input_ids"][:, 1:] == b.targets[:, :-1]).all()  # still a shifted window
    texts = [game.tokenizer.decode(r.tolist() + [int(t[-1])]) for r, t in zip(b.inputs["input_ids"], b.targets)]
    answers = {"word": [], "random": []}
    for text in texts:
        for v in answers:
            p = game.prompt_text(v)
            if p in text:
                answers[v].append(text.split(p, 1)[1])
    n = sum(len(a) for a in answers.values())
    assert 16 <= n <= 48  # share 0.5 of 64 rows
    for v, got in answers.items():
        assert got, v
        assert all(valid_answer(v, a, letters=(3, 8)) for a in got), got
        assert {classify_answer(v, a) for a in got} <= {"one", "zero"}


def test_answer_classes():
    assert classify_answer("word", " 1\nmore") == "one"
    assert classify_answer("word", " zero\n") == "zero"
    assert classify_answer("word", " zeros\n") == "other"
    assert classify_answer("word", " 10\n") == "other"
    assert classify_answer("random", " qhz\n") == "zero"
    assert classify_answer("random", " Qhz\n") == "other"
    assert valid_answer("random", " qhz\n", letters=(3, 8)) and not valid_answer("random", " qh\n", letters=(3, 8))
    assert [c.name for c in branch_classes("random")] == ["one", "zero"]


def test_bad_game_configs_are_one_line_errors():
    with pytest.raises(UserError, match="no 0-branch"):
        get_task("game", zero_word="", variants=["word"])
    with pytest.raises(UserError, match="unknown game variant"):
        get_task("game", variants=["none"])
    with pytest.raises(UserError, match="overlap"):
        get_task("game", zero_word="1")
    with pytest.raises(UserError, match="letters"):
        get_task("game", letters=[5, 2])
