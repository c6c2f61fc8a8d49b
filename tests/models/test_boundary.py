"""Scoring at the token boundary: the three rules of ``LanguageModel.score(boundary=...)``.

- ``lm-eval`` agrees with the reference, lm-evaluation-harness 0.4.13's
  ``HFLM.loglikelihood``, on the same weights, over an edge-case set; the cases where
  lm-eval loses characters are listed with the reason, and the output must name them.
- ``natural`` scores the model's own joint tokens, checked row by row against the issue's
  table on SmolLM2 and against a plain forward pass over the joint tokenization.
- ``exact`` equals a brute-force sum over every tokenization (tiny BPE, tiny model, float64).
"""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from click.testing import CliRunner

from lmfactory import tiny_llama
from myopia import UserError
from myopia._cli import main
from myopia.models import Prompt
from myopia.models._hf import HFModel

# A corpus that makes a byte-level BPE merge as real ones do: newline + indentation, ':"',
# '://', contractions, whitespace runs.
EDGE_CORPUS = [
    "def f(x):\n    return x\n\n\ndef g(y):\n\treturn y  # tab\n",
    "Answer:\nYes\n\nQuestion? \nAnswer: yes\n",
    'A: "1"\nB:"0"\nHe said "hello".\n',
    "Visit https://example.com/a?b=1 or http://example.org/index.html today.\n",
    "Pi is 3.14159, it costs $100. I can't go; they're here, we'll see.\n",
    "Once upon a time, there was a little girl who lived in a village near the forest.\n",
] * 30

EDGE_CASES = [
    ("The cat sat on the", " mat"),  # plain
    ("The cat sat on the ", "mat"),  # trailing space
    ("The cat sat on the  ", "mat"),  # two trailing spaces
    ("Answer:\n", "Yes"),  # newline
    ("Question?\n\n", "Answer: yes"),  # double newline
    ("? \n", "Yes"),  # space then newline
    ("Answer:\t", "Yes"),  # tab
    ("def f(x):\n", "    return x"),  # code indentation after the newline
    ("def f(x):\n    ", "return x"),  # indentation in the context
    ("def g(y):\n", "\treturn y"),  # tab indentation
    ("Visit https://", "example.com/a?b=1"),  # URL
    ("Visit http://example", ".org/index.html"),
    ("Visit https", "://example.com"),
    ("Pi is 3", ".14159"),  # decimals
    ("Pi is 3.", "14159"),
    ("It costs $100", "."),
    ("I can", "'t go"),  # contractions
    ("They", "'re here"),
    ("A:", '"1"'),  # quote merges
    ("B:", '"0"'),
    ('He said "', 'hello"'),
    ("He said", ' "hello".'),
    ("x =", "= 2"),
    ("", "Once upon a time"),  # empty context
    ("Once upon a time, there was a", " little girl"),
]

# Where lm-evaluation-harness's rule loses characters, per tokenizer, and why. Its context
# tokens are the context's own, its scored tokens the joint tokens past their count; when
# the joint text merges the boundary differently the model never sees what lies between.
LMEVAL_DROPS = {
    "edge_lm": {
        ("A:", '"1"'): '"',  # joint 'A', ':"', '1', '"' vs context 'A', ':': scores '1', '"' after ':'
        ("B:", '"0"'): '"',  # the same merge, ':"'
    },
    "smol_tiny": {
        ("A:", '"1"'): '"',  # SmolLM2 merges ':"' as well
        ("B:", '"0"'): '"',
        ("x =", "= 2"): "=",  # joint 'x', ' ==', ' ', '2' vs context 'x', ' =': scores ' ', '2'
    },
}


@pytest.fixture(scope="module")
def edge_dir(tmp_path_factory) -> str:
    from lmfactory import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("edge-bpe"), vocab_size=420, corpus=EDGE_CORPUS)


@pytest.fixture(scope="module")
def edge_lm(edge_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return HFModel(AutoModelForCausalLM.from_pretrained(edge_dir), AutoTokenizer.from_pretrained(edge_dir))


@pytest.fixture(scope="module")
def smol_tiny(smollm):
    """SmolLM2's real tokenizer on a tiny random Llama: real merges, fast forward passes."""
    return HFModel(tiny_llama(len(smollm.tokenizer)), smollm.tokenizer, name="smol-tiny")


def _plain_logprobs(model, ids: list[int]) -> list[float]:
    """log P(ids[i] | ids[:i]) for i >= 1, from one plain forward pass (float64 softmax)."""
    with torch.no_grad():
        logits = model(torch.tensor([ids]), use_cache=False).logits[0]  # (T, V)
    logp = torch.log_softmax(logits.double(), dim=-1)
    return [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]


# -- the rule's name ------------------------------------------------------------------------
def test_an_unknown_boundary_is_one_line_naming_the_rules(tiny_lm, fake_openai):
    from myopia.models._openai import load_openai

    spec, _ = fake_openai()
    for call in (lambda: tiny_lm.score("a", [" b"], boundary="lm_eval"),
                 lambda: tiny_lm.score_many([("a", " b")], boundary="exactly"),
                 lambda: load_openai(spec).score("a", [" b"], boundary="Natural")):
        with pytest.raises(UserError) as err:
            call()
        assert 'accepted: "natural", "lm-eval", "exact"' in str(err.value) and "\n" not in str(err.value)
    r = CliRunner().invoke(main, ["score", "hf:/nowhere", "a", " b", "--boundary", "lmeval"])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0
    assert "unknown boundary 'lmeval'" in r.output and "Traceback" not in r.output


# -- lm-eval: lm-evaluation-harness is the reference ----------------------------------------------
def _hflm_loglikelihood(lm: HFModel, pairs) -> list[float]:
    """lm-evaluation-harness's numbers for ``pairs`` on ``lm``'s weights and tokenizer.

    ``logits_cache=False``: lm-eval 0.4.13's cache for one-token continuations groups
    requests by context + continuation[:-1] and, when two requests spell the same tokens
    split differently ('Pi is 3.' + '14159' and 'Pi is 3' + '.14159' on the edge tokenizer),
    reads one of them at the wrong position (-8.71 nats instead of the plain forward pass's
    -7.18). That is a batching defect of lm-eval's, not its boundary rule, which is what
    is compared here."""
    pytest.importorskip("lm_eval", reason="lm-eval is the test-lmeval extra (make install)")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    harness = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=8, device="cpu", logits_cache=False)
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=p, idx=i) for i, p in enumerate(pairs)]
    return [lp for lp, _ in harness.loglikelihood(reqs, disable_tqdm=True)]


@pytest.mark.parametrize("which", ["edge_lm", "smol_tiny"])
def test_lmeval_rule_agrees_with_lm_evaluation_harness(which, request):
    lm = request.getfixturevalue(which)
    ref = _hflm_loglikelihood(lm, EDGE_CASES)
    ours = lm.score_many(EDGE_CASES, boundary="lm-eval")
    for (ctx, cont), s, want in zip(EDGE_CASES, ours, ref):
        assert s.logprob == pytest.approx(want, abs=1e-4), (ctx, cont)
        assert s.boundary == "lm-eval" and s.moved == ctx[len(ctx.rstrip()):]
        assert not s.repeated
    assert {p: s.dropped for p, s in zip(EDGE_CASES, ours) if s.dropped} == LMEVAL_DROPS[which]
    # what the model sees is the text with the dropped characters cut out
    for (ctx, cont), s in zip(EDGE_CASES, ours):
        if s.dropped:
            r = lm._split(ctx, cont, 0, "lm-eval")
            seen = lm.tokenizer.decode(r.ctx_ids + r.cont_ids, skip_special_tokens=True)
            assert seen == (ctx + cont).replace(s.dropped, "", 1)


@pytest.fixture(scope="module")
def crossed_lm(tmp_path_factory):
    """A hand-made BPE whose merge 'bc' outranks 'ab': 'ab' alone is one token, 'abc' is
    'a', 'bc', so the joint tokens cross the context's own at the boundary."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<bos>": 0, "<eos>": 1, "<pad>": 2, "a": 3, "b": 4, "c": 5, "d": 6, "bc": 7, "ab": 8}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("b", "c"), ("a", "b")]))
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    return HFModel(tiny_llama(len(vocab), seed=3), hf, name="crossed")


def test_lmeval_repeats_what_its_tokens_cover_twice_and_says_so(crossed_lm):
    """'dab' + 'cd': lm-eval keeps the context's 'd', 'ab' and scores the joint tokens past
    two ('bc', 'd'), so the model reads 'dabbcd' with 'b' twice. The number is lm-eval's."""
    pairs = [("dab", "cd"), ("dab", "d")]
    ours = crossed_lm.score_many(pairs, boundary="lm-eval")
    assert [s.logprob for s in ours] == pytest.approx(_hflm_loglikelihood(crossed_lm, pairs), abs=1e-4)
    assert (ours[0].repeated, ours[0].dropped) == ("b", "") and [t.token for t in ours[0].tokens] == ["bc", "d"]
    assert (ours[1].repeated, ours[1].dropped) == ("", "")


# -- natural: the model's own tokens ----------------------------------------------------------
NATURAL_ROWS = [  # the issue's table on SmolLM2: context, continuation, scored tokens, moved, and
    # whether the context's own tokens begin the joint ones (the literal conditional)
    ("Answer:\n", "Yes", ["Yes"], "", True),  # 'Yes' after the '\n' token
    # GPT-2's pre-tokenizer splits trailing whitespace before a letter ('\n\n' -> '\n', '\n';
    # ' \n' -> ' ', '\n') but not at the end of a text (one token); no token straddles, and
    # natural conditions on the joint tokens, as the model reads the whole text
    ("?\n\n", "Answer: yes", ["Answer", ":", " yes"], "", False),
    ("? \n", "Yes", ["Yes"], "", False),
    ("Answer:\t", "Yes", ["Yes"], "", True),
    ("def f(x):\n", "    return x", ["\n   ", " return", " x"], "\n", False),  # newline + 3 spaces: one token
    ("A:", '"1"', [':"', "1", '"'], ":", False),  # nothing dropped, no unnatural split
    ("Once upon a time, there was a ", "little girl", [" little", " girl"], " ", False),
]


@pytest.mark.parametrize("ctx, cont, tokens, moved, own", NATURAL_ROWS)
def test_natural_scores_the_joint_tokens_of_the_issue_table(smollm, ctx, cont, tokens, moved, own):
    s = smollm.score(ctx, [cont])[0]  # natural is the default
    assert s.boundary == "natural" and [t.token for t in s.tokens] == tokens and s.moved == moved
    joint = smollm.tokenizer(ctx + cont)["input_ids"]
    want = _plain_logprobs(smollm.model, joint)[-len(tokens):]
    assert [t.token_id for t in s.tokens] == joint[-len(tokens):]
    assert [t.logprob for t in s.tokens] == pytest.approx(want, abs=1e-4)
    assert (joint[: len(joint) - len(tokens)] == smollm.tokenizer(ctx)["input_ids"]) == own


def test_natural_conditions_on_the_joint_tokens_inside_the_context(crossed_lm):
    """'dab' + 'cd' is 'd', 'a', 'bc', 'd' jointly: 'a' lies inside the context, 'bc'
    straddles; natural scores 'bc', 'd' after 'd', 'a' (the context alone is 'd', 'ab')."""
    s = crossed_lm.score("dab", ["cd"])[0]
    r = crossed_lm._split("dab", "cd", 0)
    assert [t.token for t in s.tokens] == ["bc", "d"] and s.moved == "b"
    assert r.ctx_ids == [6, 3] and r.cont_ids == [7, 6]
    assert [t.logprob for t in s.tokens] == pytest.approx(_plain_logprobs(crossed_lm.model, [6, 3, 7, 6])[1:], abs=1e-5)


def test_natural_keeps_the_chat_generation_prompt(smollm):
    """SmolLM2's template ends its generation prompt with '\\n'; a continuation that begins
    with newlines would merge with it, but the prompt's tokens stay as rendered and the
    continuation is tokenized on its own."""
    prompt = Prompt("Pick a number between 0 and 9.", chat=True)
    rendered = smollm.render(prompt)
    own = smollm.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    conts = ["\n\n7", "7", " 7"]
    joint = smollm.tokenizer(rendered + "\n\n7", add_special_tokens=False)["input_ids"]
    assert joint[: len(own)] != own  # the '\n' of the prompt merges with the continuation's
    scored = smollm.score(prompt, conts)
    for cont, s in zip(conts, scored):
        r = smollm._split(prompt, cont, 0)
        assert r.ctx_ids == own and s.moved == "" and s.context == rendered
        assert "".join(t.token for t in s.tokens) == cont
        want = _plain_logprobs(smollm.model, own + r.cont_ids)[len(own) - 1:]
        assert [t.logprob for t in s.tokens] == pytest.approx(want, abs=1e-4)
    assert [t.token_id for t in scored[0].tokens] == smollm.tokenizer("\n\n7", add_special_tokens=False)["input_ids"]


# -- exact: brute force over every tokenization -------------------------------------------------
EXACT_CASES = [("A:", '"1"'), ("def f(x):\n", "  x"), ("Pi is 3", ".1"), ("I can", "'t"),
               ("", "ab"), ("The cat", " sat"), ("Answer:\t", "Y")]


def _spellings(tokenizer) -> list[str | None]:
    """Each token's text by decoding it alone (exact for the ASCII strings used here)."""
    special = set(tokenizer.all_special_ids)
    return [None if i in special else tokenizer.decode([i]) for i in range(len(tokenizer))]


def _brute_force_log_q(model, spell: list[str | None], a_ids: list[int], s: str) -> tuple[float, int]:
    """log of the total probability, after ``a_ids``, of every token sequence that covers
    ``s`` (its text starts with s, and all its tokens but the last spell a proper prefix),
    enumerated one by one; and how many there are."""
    terms, count = [], 0

    def walk(path: list[int], pos: int, logp: float) -> None:
        nonlocal count
        with torch.no_grad():
            last = model(torch.tensor([a_ids + path]), use_cache=False).logits[0, -1]
        lp = torch.log_softmax(last.double(), dim=-1)
        for t, text in enumerate(spell):
            if text is None or not text:
                continue
            if text.startswith(s[pos:]):  # covers the rest: the sequence ends here
                terms.append(logp + float(lp[t]))
                count += 1
            elif s[pos:].startswith(text):  # spells the next characters: go on
                walk(path + [t], pos + len(text), logp + float(lp[t]))

    walk([], 0, 0.0)
    top = max(terms)
    return top + math.log(math.fsum(math.exp(v - top) for v in terms)), count


@pytest.fixture(scope="module")
def edge_lm64(edge_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(edge_dir, dtype=torch.float64)
    return HFModel(model, AutoTokenizer.from_pretrained(edge_dir), name="edge64", exact_tol=0.0)


def test_exact_equals_the_sum_over_every_tokenization(edge_lm64):
    lm, spell = edge_lm64, _spellings(edge_lm64.tokenizer)
    scored = lm.score_many(EXACT_CASES, boundary="exact")
    for (ctx, cont), s in zip(EXACT_CASES, scored):
        r = s.backed_up
        assert ctx.endswith(r) and len(r.encode() + cont.encode()) <= 8
        a_ids = lm.tokenizer(ctx[: len(ctx) - len(r)])["input_ids"] or [lm.prefix_token_id]
        log_qs, n_s = _brute_force_log_q(lm.model, spell, a_ids, r + cont)
        log_qr = _brute_force_log_q(lm.model, spell, a_ids, r)[0] if r else 0.0
        assert s.logprob == pytest.approx(log_qs - log_qr, abs=1e-9), (ctx, cont)
        assert s.sequences == n_s and s.exact_bound == 0.0 and s.boundary == "exact"


def test_exact_leaves_out_only_mass_within_its_bound(edge_dir, edge_lm64):
    """The default search leaves out prefixes whose mass is certified below 1e-6 of each sum."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = HFModel(AutoModelForCausalLM.from_pretrained(edge_dir, dtype=torch.float64),
                 AutoTokenizer.from_pretrained(edge_dir))
    assert lm.exact_tol == 1e-6
    full = edge_lm64.score_many(EXACT_CASES, boundary="exact")
    for f, s in zip(full, lm.score_many(EXACT_CASES, boundary="exact")):
        assert s.exact_bound <= 2e-6
        assert abs(s.logprob - f.logprob) <= s.exact_bound + 1e-12


def test_exact_backs_up_to_a_boundary_no_continuation_changes(edge_lm):
    """The backed-up context's tokens begin the joint tokens of any continuation."""
    rng = random.Random(0)
    alphabet = list("abcxyz019 ._:\"'\n\t/=") + [" the", "://", "    "]
    tok = edge_lm.tokenizer
    for ctx, cont in EXACT_CASES + [("def f(x):\n    return", " x"), ("Visit https://example", ".com")]:
        r = edge_lm.score(ctx, [cont], boundary="exact")[0].backed_up
        a_ids = tok(ctx[: len(ctx) - len(r)])["input_ids"]
        assert tok(ctx)["input_ids"][: len(a_ids)] == a_ids
        for _ in range(200):
            tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
            assert tok(ctx + tail)["input_ids"][: len(a_ids)] == a_ids, (ctx, tail)


def test_exact_on_smollm2_tokens_equals_brute_force(smol_tiny):
    """SmolLM2's real vocabulary (49,152 byte-level tokens, ':"' merges) on a tiny model."""
    lm = HFModel(smol_tiny.model, smol_tiny.tokenizer, name="smol-tiny", exact_tol=0.0)
    spell = _spellings(lm.tokenizer)
    for ctx, cont in [("A:", '"1"'), ("Answer:\n", "Yes")]:
        s = lm.score(ctx, [cont], boundary="exact")[0]
        a_ids = lm.tokenizer(ctx[: len(ctx) - len(s.backed_up)])["input_ids"]
        log_qs = _brute_force_log_q(lm.model, spell, a_ids, s.backed_up + cont)[0]
        log_qr = _brute_force_log_q(lm.model, spell, a_ids, s.backed_up)[0]
        assert s.logprob == pytest.approx(log_qs - log_qr, abs=1e-4)
        assert s.backed_up in (":", "\n")


def test_exact_refuses_what_it_cannot_sum(edge_lm, fake_openai):
    from myopia.models._openai import load_openai

    narrow = HFModel(edge_lm.model, edge_lm.tokenizer, name="narrow", exact_limit=3)
    with pytest.raises(UserError, match="need more than 3 token prefixes each"):
        narrow.score("Once upon a time, there was a", [" little girl who lived"], boundary="exact")
    spec, _ = fake_openai()
    with pytest.raises(UserError, match='boundary "exact" .* black-box server'):
        load_openai(spec).score("x y", [" a"], boundary="exact")


# -- the command line and --json ------------------------------------------------------------
def test_score_json_records_the_rule_and_what_moved(tiny_lm_dir):
    for rule in ("natural", "lm-eval", "exact"):
        r = CliRunner().invoke(main, ["score", f"hf:{tiny_lm_dir}", "Once upon a time, ", "there was",
                                      "--boundary", rule, "--json"])
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        [res] = out["results"]
        assert out["boundary"] == res["boundary"] == rule
        assert {"moved", "dropped", "repeated", "backed_up", "sequences", "tokens"} <= set(res)
        if rule != "exact":
            assert res["moved"] == " " and "".join(t["token"] for t in res["tokens"]) == " there was"
        else:
            assert res["sequences"] > 0 and res["backed_up"].endswith(" ")


# -- the openai: backend (black-box) ----------------------------------------------------------
@pytest.mark.parametrize("mode", ["aligned", "shifted"])  # read from echo / forced generation
def test_openai_natural_and_lmeval_on_the_servers_tokens(fake_openai, mode):
    """The fake server's tokens are optional whitespace + non-space characters, so 'x y' +
    'z w' is 'x', ' yz', ' w': ' yz' straddles, natural scores it and moves ' y'; lm-eval
    would score ' w' after 'x', ' y' (dropping 'z'), a token sequence no text sent to a
    server produces: refused. 'x y ' + 'a c': lm-eval moves the space and agrees with natural."""
    from openai_fakes import toy_logprob, toy_tokens

    from myopia.models._openai import load_openai

    spec, _ = fake_openai(echo=mode)
    model = load_openai(spec)
    [s] = model.score("x y", ["z w"])
    toks = toy_tokens("x yz w")
    assert [t.token for t in s.tokens] == [" yz", " w"] and s.moved == " y" and s.boundary == "natural"
    assert s.logprob == pytest.approx(toy_logprob(toks, 1) + toy_logprob(toks, 2), abs=1e-12)
    with pytest.raises(UserError, match='boundary "lm-eval" on .* drops or repeats characters'):
        model.score("x y", ["z w"], boundary="lm-eval")
    natural = model.score("x y", [" a c"])[0]
    [lmeval] = model.score_many([("x y ", "a c")], boundary="lm-eval")
    assert lmeval.logprob == pytest.approx(natural.logprob, abs=1e-12)
    assert (lmeval.boundary, lmeval.moved, lmeval.continuation, lmeval.context) == ("lm-eval", " ", "a c", "x y ")
    with pytest.raises(UserError, match='boundary "lm-eval" after a chat prompt'):
        model.score(Prompt("hi", chat=True), [" a"], boundary="lm-eval")
