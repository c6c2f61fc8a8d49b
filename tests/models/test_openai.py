"""The openai: backend against a scripted fake server (errors, retries, echo modes) and
against the real peer, llama.cpp's server on the bundled SmolLM2 (skipped if absent)."""

from __future__ import annotations

import math
import socket
import time

import pytest
from openai_fakes import UNKNOWN_LOGPROB, free_port, toy_logprob, toy_row, toy_tokens

from myopia._errors import UserError
from myopia.answers import ExactClass, exact_class_probabilities
from myopia.models._base import Prompt, SamplingParams
from myopia.models._openai import OpenAIModel, load_openai, parse_spec


def _model(spec: str, **opts) -> OpenAIModel:
    query = "&".join(f"{k}={v}" for k, v in opts.items())
    return load_openai(spec + (f"?{query}" if query else ""))


# -- spec ------------------------------------------------------------------------------
def test_parse_spec_reads_url_model_and_options():
    cfg = parse_spec("openai:http://127.0.0.1:8080/v1/#smollm2?concurrency=8&api_key_env=K")
    assert (cfg.base_url, cfg.model, cfg.concurrency, cfg.api_key_env) == (
        "http://127.0.0.1:8080/v1", "smollm2", 8, "K")


@pytest.mark.parametrize("spec, needle", [
    ("openai:127.0.0.1:8080#m", "expected openai:BASE_URL#MODEL"),
    ("openai:http://127.0.0.1:8080/v1", "expected openai:BASE_URL#MODEL"),
    ("openai:http://127.0.0.1:8080/v1#", "names no model"),
    ("openai:http://127.0.0.1:8080/v1#m?colour=red", "unknown option(s) colour"),
    ("openai:http://127.0.0.1:8080/v1#m?concurrency=0", "concurrency='0'"),
])
def test_parse_spec_rejects_bad_specs_in_one_line(spec, needle):
    with pytest.raises(UserError) as err:
        parse_spec(spec)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_capabilities_are_black_box():
    model = load_openai("openai:http://127.0.0.1:9/v1#m")
    caps = model.capabilities
    assert (caps.white_box, caps.next_token, caps.score, caps.sample) == (False, False, True, True)
    with pytest.raises(UserError, match="black-box"):
        model.require("white_box", experiment="head-roles")


# -- scoring through echo --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["aligned", "shifted"])
def test_score_reads_echo_logprobs_exactly_in_both_layouts(fake_openai, mode):
    spec, state = fake_openai(echo=mode)
    model = _model(spec)
    context, conts = "x y z", [" a b", " c", " d a c"]
    scored = model.score(context, conts)
    assert model.echo_probe().mode == mode
    for cont, sc in zip(conts, scored):
        toks = toy_tokens(context + cont)
        first = len(toy_tokens(context))
        assert [t.token for t in sc.tokens] == toks[first:]
        want = [toy_logprob(toks, i) for i in range(first, len(toks))]
        assert [t.logprob for t in sc.tokens] == pytest.approx(want, abs=1e-12)
        assert sc.logprob == pytest.approx(math.fsum(want))
        ranks = [1 + sum(v > toy_row(i)[toks[i]] for v in toy_row(i).values())
                 if toks[i] in toy_row(i) else -1 for i in range(first, len(toks))]
        assert [t.rank for t in sc.tokens] == ranks


def test_shifted_echo_is_scored_by_forced_generation_only(fake_openai):
    spec, state = fake_openai(echo="shifted")
    model = _model(spec)
    model.score("x y z", [" a b"])
    paths = [r["path"] for r in state.requests]
    assert paths.count("/v1/completions") == 2 + 2  # the probe's two, then one per token
    forced = [r["body"] for r in state.requests if "logit_bias" in r["body"]]
    assert all(not b.get("echo") and b["logit_bias_type"] == "input_ids" for b in forced)
    assert sorted(b["prompt"] for b in forced) == ["x y z", "x y z a"]  # sent concurrently


def test_shifted_echo_without_a_way_to_force_is_refused(fake_openai):
    spec, _ = fake_openai(echo="shifted", extras=False)
    with pytest.raises(UserError, match="cannot force tokens without /extras/tokenize"):
        _model(spec).score("x y z", [" a"])
    spec, _ = fake_openai(echo="shifted", honour_bias=False)
    with pytest.raises(UserError, match="ignored logit_bias"):
        _model(spec).score("x y z", [" a b"])


def test_score_many_keeps_the_order_of_mixed_contexts(fake_openai):
    spec, _ = fake_openai(echo="shifted")
    model = _model(spec)
    pairs = [("x y", " a"), ("z", " b c"), ("x y", " d")]
    got = model.score_many(pairs)
    assert [(s.context, s.continuation) for s in got] == pairs
    assert [s.logprob for s in got] == pytest.approx(
        [model.score(c, [k])[0].logprob for c, k in pairs])


def test_score_refuses_echo_logprobs_that_match_nothing(fake_openai):
    spec, _ = fake_openai(echo="garbage")
    with pytest.raises(UserError, match="scoring through it is refused"):
        _model(spec).score("x y z", [" a"])


def test_score_after_a_chat_prompt_forces_one_token_replies_only(fake_openai):
    spec, state = fake_openai()
    model = _model(spec)
    prompt = Prompt("hi", chat=True)
    scored = model.score(prompt, [" a", " c", " zz"])
    assert [s.logprob for s in scored] == pytest.approx(
        [toy_row(0)[" a"], toy_row(0)[" c"], UNKNOWN_LOGPROB], abs=1e-12)
    assert [t.token for s in scored for t in s.tokens] == [" a", " c", " zz"]
    chat = [r["body"] for r in state.requests if r["path"] == "/v1/chat/completions"]
    assert len(chat) == 3 and all(b["max_tokens"] == 1 and len(b["logit_bias"]) == 1 for b in chat)
    with pytest.raises(UserError, match=r"' a b' after a chat prompt .* it is 2 tokens.*chat = \"never\""):
        model.score(prompt, [" a", " a b"])
    with pytest.raises(UserError, match="empty continuation"):
        model.score("x y", [""])
    spec, _ = fake_openai(extras=False)
    with pytest.raises(UserError, match="no prompt log-probs after a chat prompt and cannot force"):
        _model(spec).score(prompt, [" a"])
    spec, _ = fake_openai(honour_bias=False)
    with pytest.raises(UserError, match="ignored logit_bias"):
        _model(spec).score(prompt, [" zz"])


def test_missing_logprobs_is_a_clear_error(fake_openai):
    spec, _ = fake_openai(logprobs=False)
    model = _model(spec)
    with pytest.raises(UserError, match="returned no log-probs"):
        model.next_token_logprobs(["x y"])
    with pytest.raises(UserError, match="returned no log-probs"):
        model.score("x y", [" a"])
    with pytest.raises(UserError, match="returned no log-probs"):
        model.next_token_logprobs([Prompt("hi", chat=True)])


# -- next token, sampling, chat ----------------------------------------------------------
def test_next_token_logprobs_are_the_servers_top_k(fake_openai):
    spec, state = fake_openai()
    tops = _model(spec, top_k=4).next_token_logprobs(["x y", "x"])
    assert tops[0] == pytest.approx(toy_row(2)) and tops[1] == pytest.approx(toy_row(1))
    assert all(r["body"]["logprobs"] == 4 for r in state.requests)


def test_sample_sends_one_seeded_request_per_draw(fake_openai):
    spec, state = fake_openai()
    model = _model(spec)
    params = SamplingParams(max_tokens=5, temperature=1.0, seed=5)
    first = model.sample("x y", 3, params)
    again = model.sample("x y", 3, params)
    assert [s.text for s in first] == [s.text for s in again]
    assert sorted(r["body"]["seed"] for r in state.requests) == [5, 5, 6, 6, 7, 7]
    body = state.requests[0]["body"]
    # llama.cpp's truncating defaults are switched off: draws come from the model itself
    assert (body["top_k"], body["min_p"], body["repeat_penalty"], body["top_p"]) == (
        0, 0.0, 1.0, 1.0)
    model.sample("x", 1, SamplingParams(min_tokens=3, top_k=5, top_p=0.9))
    assert {k: state.requests[-1]["body"][k] for k in ("min_tokens", "top_k", "top_p")} == {
        "min_tokens": 3, "top_k": 5, "top_p": 0.9}
    strict = _model(spec, llama_sampling=0)
    with pytest.raises(UserError, match="min_tokens needs llama_sampling=1"):
        strict.sample("x", 1, SamplingParams(min_tokens=3))
    strict.sample("x", 1, SamplingParams())
    assert "top_k" not in state.requests[-1]["body"]


def test_chat_prompts_use_chat_completions(fake_openai):
    spec, state = fake_openai()
    model = _model(spec)
    prompt = Prompt("Pick a number", chat=True, system="Be brief.")
    samples = model.sample(prompt, 2, SamplingParams(max_tokens=3, seed=1))
    assert all(len(toy_tokens(s.text)) == 3 for s in samples)
    top = model.next_token_logprobs([prompt])[0]
    assert set(top) == {" a", " b", " c", " d"}
    chat = [r for r in state.requests if r["path"] == "/v1/chat/completions"]
    assert len(chat) == 3
    assert chat[0]["body"]["messages"] == [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Pick a number"}]
    assert '"Pick a number"' in model.render(prompt)


# -- errors, retries, bounded time ---------------------------------------------------------
def test_retries_429_and_5xx_with_exponential_backoff(fake_openai):
    spec, state = fake_openai(fail=[429, 503, 500])
    waits: list[float] = []
    model = OpenAIModel(parse_spec(spec), sleep=waits.append)
    assert model.next_token_logprobs(["x y"])[0]
    assert len(state.requests) == 4 and waits == [0.25, 0.5, 1.0]


def test_gives_up_after_the_retry_budget(fake_openai):
    spec, state = fake_openai(fail=[503] * 10)
    model = OpenAIModel(parse_spec(spec + "?retries=2"), sleep=lambda s: None)
    with pytest.raises(UserError, match="failed after 3 attempts: HTTP 503: scripted 503"):
        model.next_token_logprobs(["x"])
    assert len(state.requests) == 3


def test_client_errors_are_not_retried(fake_openai):
    spec, state = fake_openai(fail=[400])
    with pytest.raises(UserError, match="refused the request: HTTP 400"):
        _model(spec).next_token_logprobs(["x"])
    assert len(state.requests) == 1


def test_server_down_is_a_user_error_within_seconds():
    port = free_port()  # nothing listens there any more
    start = time.monotonic()
    with pytest.raises(UserError, match="cannot connect .*is the server running"):
        load_openai(f"openai:http://127.0.0.1:{port}/v1#m").sample(
            "x", 1, SamplingParams(max_tokens=2))
    assert time.monotonic() - start < 5


def test_a_silent_server_times_out():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        spec = f"openai:http://127.0.0.1:{silent.getsockname()[1]}/v1#m?timeout=1&retries=1"
        start = time.monotonic()
        with pytest.raises(UserError, match="no answer within 1 s"):
            load_openai(spec).next_token_logprobs(["x"])
        assert time.monotonic() - start < 4


def test_requests_run_concurrently_up_to_the_limit(fake_openai):
    spec, state = fake_openai(delay_s=0.5)
    model = _model(spec, concurrency=4)
    start = time.monotonic()
    assert len(model.next_token_logprobs(["x"] * 8)) == 8
    elapsed = time.monotonic() - start
    assert 0.95 < elapsed < 3.0  # 2 waves of 4, not 8 sequential requests (4 s) nor 1 wave


def test_api_key_comes_from_the_named_env_var_and_is_not_kept(fake_openai, monkeypatch):
    spec, state = fake_openai()
    model = _model(spec, api_key_env="MYOPIA_TEST_KEY")
    with pytest.raises(UserError, match="MYOPIA_TEST_KEY .* is not set"):
        model.next_token_logprobs(["x"])
    monkeypatch.setenv("MYOPIA_TEST_KEY", "s3cret-value")
    model.next_token_logprobs(["x"])
    assert state.requests[-1]["auth"] == "Bearer s3cret-value"
    assert "s3cret" not in repr(model) + repr(vars(model)) + repr(model.config)


# -- the real peer: llama.cpp's server on the bundled SmolLM2 -------------------------------
def test_real_server_sampling_is_reproducible_by_seed(llama_server):
    model = load_openai(llama_server)
    params = SamplingParams(max_tokens=8, temperature=1.0, seed=11)
    first = [s.text for s in model.sample("Once upon a time", 3, params)]
    again = [s.text for s in model.sample("Once upon a time", 3, params)]
    assert first == again
    assert len(set(first)) > 1  # different seeds per draw give different draws


def test_real_server_chat_completion(llama_server):
    model = load_openai(llama_server)
    prompt = Prompt("Reply with one word: what colour is the sky?", chat=True)
    [sample] = model.sample(prompt, 1, SamplingParams(max_tokens=8, temperature=0))
    assert sample.text.strip()
    top = model.next_token_logprobs([prompt])[0]
    assert top and all(v <= 0 for v in top.values())
    assert math.fsum(math.exp(v) for v in top.values()) <= 1 + 1e-4


def test_real_server_next_token_top_k_is_a_sub_distribution(llama_server):
    model = load_openai(llama_server + "?top_k=10")
    [top] = model.next_token_logprobs(["The capital of France is"])
    assert len(top) >= 5 and all(v <= 0 for v in top.values())
    assert math.fsum(math.exp(v) for v in top.values()) <= 1 + 1e-4
    [greedy] = model.sample("The capital of France is", 1,
                            SamplingParams(max_tokens=1, temperature=0))
    assert greedy.text == max(top, key=top.get)


def test_real_server_echo_shift_is_detected_and_corrected(llama_server):
    model = load_openai(llama_server)
    probe = model.echo_probe()
    # llama-cpp-python 0.3.36 on SmolLM2 (no BOS): echo log-probs are off by one position
    assert probe.mode == "shifted"
    assert probe.shifted_error < 0.25 and probe.aligned_error > 2.0
    # scores (by forced generation) agree with the server's own generation log-probs, up to
    # llama.cpp's dependence on how the prefix was evaluated (measured 0 or 0.049 nats)
    context = "One, two, three, four, five,"
    resp = model.completion(context, max_tokens=3, temperature=0, logprobs=5)
    gen = resp["choices"][0]["logprobs"]
    [scored] = model.score(context, ["".join(gen["tokens"])])
    assert [t.token for t in scored.tokens] == gen["tokens"]
    assert [t.logprob for t in scored.tokens] == pytest.approx(gen["token_logprobs"], abs=0.1)
    # the echo's own numbers for these tokens are far off: that is the bug being avoided
    echo = model.completion(context + "".join(gen["tokens"]), max_tokens=1, temperature=0,
                            echo=True, logprobs=5)["choices"][0]["logprobs"]
    wrong = echo["token_logprobs"][-len(gen["tokens"]):]
    assert max(abs(a - b) for a, b in zip(wrong, gen["token_logprobs"])) > 1.0


SEED_PROMPT = ("I'd like to try a sort of psychological experiment, if that's alright. I'm "
               "thinking of either the number \"1\" or \"0\"; if you would, please guess which. "
               "If your guess is \"1\", respond with just \"1\", and if your guess is \"0\", "
               "respond with the word \"zero\".\n\nMy guess:")
CLASSES = (ExactClass("one", (" 1", " one")), ExactClass("zero", (" zero", " 0")))


@pytest.mark.slow
def test_forced_choice_probabilities_agree_with_the_local_gguf_backend(llama_server, smollm):
    """The same GGUF file through llama.cpp's server and through the local gguf backend.

    Tolerance: llama.cpp multiplies the Q4_1 weights with activations quantized to 8 bits,
    the local backend runs the dequantized weights in float32. Measured on this prompt and
    two others (36 tokens): per-token |difference| median 0.07 nats, max 0.39 (unlikely
    tokens move most); on this prompt the class log-probs differ by 0.05 nats and "other"
    by 0.02. Tolerances: 0.5 nats per token, 0.15 nats per class, 0.05 for "other". A
    wrong alignment (the echo shift) errs by whole nats (4.4 on " 1" after "The capital of
    France is"), and token ids must match exactly."""
    server = load_openai(llama_server)
    conts = [c for cls in CLASSES for c in cls.continuations]
    remote = {s.continuation: s for s in server.score(SEED_PROMPT, conts)}
    local = {s.continuation: s for s in smollm.score(SEED_PROMPT, conts)}
    for c in conts:  # same tokens, same per-token log-probs
        assert [t.token_id for t in remote[c].tokens] == [t.token_id for t in local[c].tokens]
        assert [t.logprob for t in remote[c].tokens] == pytest.approx(
            [t.logprob for t in local[c].tokens], abs=0.5)
    p_remote = exact_class_probabilities(CLASSES, {c: remote[c].logprob for c in conts})
    p_local = exact_class_probabilities(CLASSES, {c: local[c].logprob for c in conts})
    for name in ("one", "zero"):
        assert p_remote.logprobs[name] == pytest.approx(p_local.logprobs[name], abs=0.15)
    assert p_remote.probabilities["other"] == pytest.approx(p_local.probabilities["other"],
                                                            abs=0.05)


def test_real_server_ranks_and_ids_of_scored_tokens(llama_server):
    model = load_openai(llama_server)
    [paris] = model.score("The capital of France is", [" Paris"])
    assert paris.tokens[0].rank == 1 and paris.tokens[0].token_id >= 0
    assert paris.logprob > math.log(0.5)


def test_the_registry_loads_openai_specs(fake_openai):
    from myopia.models import load_model

    spec, _ = fake_openai()
    model = load_model(spec + "?concurrency=2")
    assert isinstance(model, OpenAIModel) and model.config.concurrency == 2
    assert model.next_token_logprobs(["x"])[0]
