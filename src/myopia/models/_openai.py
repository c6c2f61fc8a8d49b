"""``openai:BASE_URL#MODEL``: any OpenAI-compatible server that returns log-probs.

Spec grammar (options after ``?`` in the fragment, all optional)::

    openai:http://127.0.0.1:8080/v1#smollm2
    openai:https://host/v1#model-name?api_key_env=MY_KEY&concurrency=4&timeout=60&top_k=20

- ``api_key_env``: the *name* of an environment variable holding the API key; the key is
  read at request time and never stored on the model or written anywhere.
- ``concurrency`` (default 4): requests in flight at once (a thread pool).
- ``timeout`` (s, default 60) and ``retries`` (default 3): per-attempt socket timeout, and
  retries with exponential backoff on 429 / 5xx / refused connections.
- ``top_k`` (default 20): log-probs returned per position (``logprobs: <int>``).
- ``llama_sampling`` (default 1): also send llama.cpp/vLLM sampler fields (``top_k``,
  ``min_p=0``, ``repeat_penalty=1``) so that sampling draws from the model's own
  distribution instead of llama.cpp's truncated defaults; set 0 for strict servers.

What a black-box server gives (``capabilities``): samples, the top-k next-token
log-probs (``next_token_logprobs`` returns dicts, *partial*: not the full vocabulary),
and teacher-forced scoring only where the server's ``echo`` prompt log-probs are
verified against its own generation log-probs (see :mod:`._openai_echo`), or by forced
generation (llama.cpp; after a chat prompt, one-token continuations only).
"""

from __future__ import annotations

import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import parse_qsl, urlsplit

from .._errors import UserError
from ._base import (
    Capabilities,
    Context,
    LanguageModel,
    Prompt,
    Sample,
    SamplingParams,
    ScoredContinuation,
    TokenScore,
    check_boundary,
)
from ._openai_echo import EchoProbe, probe_echo, scored_from_echo
from ._openai_forced import (
    ForcedJob,
    TokenizerEndpoints,
    assemble,
    chat_jobs,
    forced_chat_request,
    forced_request,
    plan_jobs,
    read_forced,
    read_forced_chat,
)
from ._openai_http import JSONClient, RetryPolicy

T = TypeVar("T")
R = TypeVar("R")

SPEC_PREFIX = "openai:"
_OPTIONS = {"api_key_env", "concurrency", "timeout", "retries", "top_k", "llama_sampling"}


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str
    model: str
    api_key_env: str | None = None
    concurrency: int = 4
    timeout_s: float = 60.0
    retries: int = 3
    top_k: int = 20
    llama_sampling: bool = True

    @property
    def spec(self) -> str:
        return f"{SPEC_PREFIX}{self.base_url}#{self.model}"


def parse_spec(spec: str) -> OpenAIConfig:
    """Parse ``openai:BASE_URL#MODEL[?opt=value&...]`` (raises :class:`UserError`)."""
    usage = "expected openai:BASE_URL#MODEL, e.g. openai:http://127.0.0.1:8080/v1#smollm2"
    if not spec.startswith(SPEC_PREFIX):
        raise UserError(f"not an openai: spec: {spec!r}; {usage}")
    url, sep, fragment = spec[len(SPEC_PREFIX):].partition("#")
    parts = urlsplit(url)
    if not sep or parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"bad openai: spec {spec!r}; {usage}")
    model, _, query = fragment.partition("?")
    if not model:
        raise UserError(f"openai: spec {spec!r} names no model after '#'; {usage}")
    opts = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(opts) - _OPTIONS)
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} in openai: spec; "
                        f"accepted: {', '.join(sorted(_OPTIONS))}")
    return OpenAIConfig(
        base_url=url.rstrip("/"),
        model=model,
        api_key_env=opts.get("api_key_env") or None,
        concurrency=_int_opt(opts, "concurrency", 4, 1, 256),
        timeout_s=float(_int_opt(opts, "timeout", 60, 1, 3600)),
        retries=_int_opt(opts, "retries", 3, 0, 10),
        top_k=_int_opt(opts, "top_k", 20, 1, 1000),
        llama_sampling=bool(_int_opt(opts, "llama_sampling", 1, 0, 1)),
    )


def _int_opt(opts: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    if name not in opts:
        return default
    try:
        value = int(opts[name])
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise UserError(f"option {name}={opts[name]!r} in openai: spec must be an integer "
                        f"from {lo} to {hi}")
    return value


def load_openai(spec: str) -> "OpenAIModel":
    """The registry's entry point for ``openai:`` specs. Contacts no server until used."""
    return OpenAIModel(parse_spec(spec))


class OpenAIModel(LanguageModel):
    """A model behind an OpenAI-compatible HTTP API (black-box)."""

    def __init__(self, config: OpenAIConfig, sleep: Callable[[float], None] | None = None):
        self.config = config
        self.name = config.spec
        policy = RetryPolicy(retries=config.retries, timeout_s=config.timeout_s)
        kwargs = {} if sleep is None else {"sleep": sleep}
        self.client = JSONClient(config.base_url, policy, api_key=self._api_key, **kwargs)
        # llama.cpp's /extras/* routes live at the server root, beside /v1
        root = config.base_url[:-3] if config.base_url.endswith("/v1") else config.base_url
        self.root_client = JSONClient(root, policy, api_key=self._api_key, **kwargs)
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency,
                                        thread_name_prefix="myopia-openai")
        self._probe: EchoProbe | None = None
        self._probe_lock = threading.Lock()
        # score: offered, and checked on first use by the echo probe (a server whose prompt
        # log-probs cannot be verified gets a UserError then, never silent numbers);
        # next_token: only the server's top-k, so not the full distribution
        self.capabilities = Capabilities(score=True, next_token=False, sample=True,
                                         white_box=False)

    def __repr__(self) -> str:
        return f"OpenAIModel({self.name!r})"

    # -- plumbing -------------------------------------------------------------------
    def _api_key(self) -> str | None:
        name = self.config.api_key_env
        if name is None:
            return None
        key = os.environ.get(name)
        if not key:
            raise UserError(f"environment variable {name} (named by api_key_env in the "
                            "openai: spec) is not set")
        return key

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items`` with at most ``concurrency`` requests in flight, in order."""
        if len(items) <= 1:
            return [fn(x) for x in items]
        return list(self._pool.map(fn, items))

    def completion(self, prompt: str, **body: Any) -> dict[str, Any]:
        """One raw ``/completions`` request; raises :class:`UserError` on failure."""
        return self.client.post("/completions", {"model": self.config.model, "prompt": prompt,
                                                 **body})

    def chat_completion(self, prompt: Prompt, **body: Any) -> dict[str, Any]:
        """One raw ``/chat/completions`` request for a single user turn."""
        return self.client.post("/chat/completions", {"model": self.config.model,
                                                      "messages": _messages(prompt), **body})

    # -- LanguageModel ---------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return True  # the server applies its own template on /chat/completions

    def render(self, context: Context) -> str:
        """Plain contexts verbatim; chat prompts as the JSON messages sent (the server's
        template is applied remotely and cannot be seen from here)."""
        if isinstance(context, Prompt):
            if context.chat:
                return json.dumps(_messages(context), ensure_ascii=False)
            return context.text
        return context

    def next_token_logprobs(self, contexts: Sequence[Context]) -> list[dict[str, float]]:
        """Partial next-token distributions: for each context, ``{token_text: logprob}``
        for the server's top-k tokens (``?top_k=``), not the whole vocabulary."""
        return self.top_logprobs(contexts, self.config.top_k)

    def top_logprobs(self, contexts: Sequence[Context], k: int) -> list[dict[str, float]]:
        return self.map(lambda c: self._first_top(c, k), list(contexts))

    def sample(self, context: Context, n: int, params: SamplingParams) -> list[Sample]:
        """``n`` completions; draw ``i`` uses seed ``params.seed + i`` (one request each,
        since servers such as llama.cpp ignore ``n``), so draws are reproducible by seed.
        ``token_ids`` are empty: a black-box server does not return them."""
        if n < 1:
            raise UserError(f"number of samples must be at least 1, got {n}")
        if params.min_tokens and not self.config.llama_sampling:
            raise UserError("min_tokens needs llama_sampling=1 in the openai: spec (a field "
                            "of llama.cpp's and vLLM's servers, not of the OpenAI API)")
        rendered = self.render(context)
        return self.map(lambda i: Sample(rendered, self._draw(context, params, params.seed + i),
                                         []), list(range(n)))

    def score(self, context: Context, continuations: Sequence[str],
              boundary: str = "natural") -> list[ScoredContinuation]:
        """Exact per-token log-probs, once a probe has checked the server's ``echo`` prompt
        log-probs against its generation log-probs: read from ``echo`` when they are
        aligned; on llama.cpp's server, whose echo is shifted by one position, by forced
        generation (one request per token, see :mod:`._openai_forced`). After a chat prompt
        (no prompt log-probs there) only one-token continuations, forced as the reply's
        first token. ``token_id`` is -1 on the echo path, ``entropy`` is NaN (only the top-k
        is known), ``rank`` counts within the top-k (-1 outside it).

        The boundary rules on a black-box server: ``natural`` reads the server's own joint
        tokenization (a token that straddles the boundary is scored); ``lm-eval`` moves the
        trailing whitespace and scores the same way where lm-evaluation-harness's two
        tokenizations agree, and is refused where they do not (lm-eval then feeds the model
        a token sequence no text sent to a server produces), and after a chat prompt (the
        template the whitespace would come from is rendered out of sight); ``exact`` is
        refused (it needs the full next-token distribution and the vocabulary)."""
        check_boundary(boundary)
        text = self.render(context)
        if any(not c for c in continuations):
            raise UserError("cannot score an empty continuation")
        if boundary == "exact":
            raise UserError(
                f'boundary "exact" sums over every tokenization with the full next-token '
                f"distribution and the vocabulary; {self.name} is a black-box server that returns "
                f'its top-{self.config.top_k} log-probs only; use boundary "natural" or "lm-eval", '
                "or a white-box model")
        chat = isinstance(context, Prompt) and context.chat
        if chat and boundary == "lm-eval":
            raise UserError(
                f'boundary "lm-eval" after a chat prompt moves the end of the rendered template '
                f"into the continuation, and {self.name} renders its template out of sight; use "
                'boundary "natural" or a plain-text prompt')
        if chat:
            return self._score_chat(context, list(continuations))
        conts = list(continuations)
        if boundary == "lm-eval":  # lm-evaluation-harness moves all trailing whitespace
            stripped = text.rstrip()
            self._check_lmeval(stripped, [text[len(stripped):] + c for c in conts])
            scored = self._score_text(stripped, [text[len(stripped):] + c for c in conts])
            for sc, c in zip(scored, conts):
                sc.context, sc.continuation, sc.boundary = text, c, "lm-eval"
                sc.moved = text[len(stripped):]
            return scored
        return self._score_text(text, conts)

    def _score_text(self, text: str, conts: list[str]) -> list[ScoredContinuation]:
        """The natural rule: the server's joint tokenization, from the straddling token on."""
        k, probe = self.config.top_k, self.echo_probe()
        if probe.mode == "aligned":
            return self.map(lambda c: scored_from_echo(
                self.completion(text + c, max_tokens=1, temperature=0, echo=True, logprobs=k),
                text, c, probe, k, self.name), conts)
        tok = TokenizerEndpoints(self.root_client.post, self.config.model, self.name)
        plans = self.map(lambda ic: plan_jobs(tok, ic[0], text, ic[1], self.name),
                         list(enumerate(conts)))
        jobs = [job for plan in plans for job in plan]
        return assemble(text, conts, jobs, self._forced(jobs, lambda job: read_forced(
            self.client.post("/completions", {"model": self.config.model,
                                              **forced_request(job, k)}), job, self.name)))

    def _check_lmeval(self, stripped: str, conts: list[str]) -> None:
        """lm-eval scores the joint tokens past the count of the context's own tokens; on a
        server that is the natural score only where the context's tokens begin the joint ones."""
        if not stripped:
            raise UserError(f"cannot score on {self.name} with boundary \"lm-eval\": the context is "
                            "empty once its trailing whitespace moves; give a non-empty context")
        ctx, *joints = self.map(self._prompt_tokens, [stripped] + [stripped + c for c in conts])
        for c, joint in zip(conts, joints):
            if joint[: len(ctx)] != ctx:
                raise UserError(
                    f'boundary "lm-eval" on {self.name}: lm-evaluation-harness would score '
                    f"{c!r} after the context's own tokens, which the joint tokenization merges "
                    "differently (it drops or repeats characters there), and no text sent to a "
                    'server produces that token sequence; use boundary "natural"')

    def _prompt_tokens(self, text: str) -> list:
        """The server's tokens of ``text``: ids from /extras/tokenize where the echo is not
        used, else the echoed token texts."""
        if self.echo_probe().mode != "aligned":
            return TokenizerEndpoints(self.root_client.post, self.config.model, self.name).tokenize(text)
        resp = self.completion(text, max_tokens=1, temperature=0, echo=True, logprobs=1)
        lp = _choice(resp, self.name).get("logprobs") or {}
        return [t for t, off in zip(lp.get("tokens") or [], lp.get("text_offset") or []) if off < len(text)]

    def _score_chat(self, prompt: Prompt, conts: list[str]) -> list[ScoredContinuation]:
        tok = TokenizerEndpoints(self.root_client.post, self.config.model, self.name,
                                 why="has no prompt log-probs after a chat prompt and")
        jobs = chat_jobs(tok, conts, self.name)
        k = self.config.top_k
        return assemble(self.render(prompt), conts, jobs, self._forced(jobs, lambda job: (
            read_forced_chat(self.chat_completion(prompt, **forced_chat_request(job, k)), job,
                             self.name))))

    def _forced(self, jobs: list[ForcedJob],
                send: Callable[[ForcedJob], TokenScore]) -> list[TokenScore]:
        """``send`` each distinct (prefix, token) once, concurrently; scores in job order
        (continuations such as ' "1"' and ' "0"' share their first forced token)."""
        first: dict[tuple[str, int], ForcedJob] = {}
        for job in jobs:
            first.setdefault((job.prefix, job.token_id), job)
        got = dict(zip(first, self.map(send, list(first.values()))))
        return [got[(job.prefix, job.token_id)] for job in jobs]

    def score_many(self, requests: Sequence[tuple[Context, str]],
                   boundary: str = "natural") -> list[ScoredContinuation]:
        """Score (context, continuation) pairs: grouped by context, each group in parallel."""
        check_boundary(boundary)
        groups: dict[Context, list[int]] = {}
        for i, (ctx, _) in enumerate(requests):
            groups.setdefault(ctx, []).append(i)
        out: list[ScoredContinuation | None] = [None] * len(requests)
        for ctx, idx in groups.items():
            for i, scored in zip(idx, self.score(ctx, [requests[i][1] for i in idx], boundary)):
                out[i] = scored
        return [s for s in out if s is not None]

    def echo_probe(self) -> EchoProbe:
        """Run (once) the probe that decides whether echo log-probs can be trusted."""
        with self._probe_lock:
            if self._probe is None:
                self._probe = probe_echo(self.completion, self.config.top_k, self.name)
            return self._probe

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- helpers ----------------------------------------------------------------------
    def _sampler_fields(self, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {"temperature": params.temperature,
                                "top_p": 1.0 if params.top_p is None else params.top_p}
        if self.config.llama_sampling:
            body.update(top_k=params.top_k or 0, min_p=0.0, repeat_penalty=1.0)
            if params.min_tokens:
                body["min_tokens"] = params.min_tokens
        elif params.top_k is not None:
            raise UserError("top_k sampling needs llama_sampling=1 in the openai: spec")
        return body

    def _draw(self, context: Context, params: SamplingParams, seed: int) -> str:
        body = {"max_tokens": params.max_tokens, "seed": seed, **self._sampler_fields(params)}
        if isinstance(context, Prompt) and context.chat:
            resp = self.chat_completion(context, **body)
            return _choice(resp, self.name).get("message", {}).get("content") or ""
        return _choice(self.completion(self.render(context), **body), self.name).get("text", "")

    def _first_top(self, context: Context, k: int) -> dict[str, float]:
        greedy = {"max_tokens": 1, "temperature": 0}
        if isinstance(context, Prompt) and context.chat:
            resp = self.chat_completion(context, logprobs=True, top_logprobs=k, **greedy)
            content = (_choice(resp, self.name).get("logprobs") or {}).get("content") or []
            if not content or not content[0].get("top_logprobs"):
                raise _no_logprobs(self.name, "/chat/completions (logprobs=true)")
            return {d["token"]: float(d["logprob"]) for d in content[0]["top_logprobs"]}
        resp = self.completion(self.render(context), logprobs=k, **greedy)
        tops = (_choice(resp, self.name).get("logprobs") or {}).get("top_logprobs") or []
        if not tops or not tops[0]:
            raise _no_logprobs(self.name, f"/completions (logprobs={k})")
        return {str(t): float(v) for t, v in tops[0].items() if v is not None
                and math.isfinite(float(v))}


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    msgs = [] if prompt.system is None else [{"role": "system", "content": prompt.system}]
    return msgs + [{"role": "user", "content": prompt.text}]


def _choice(resp: dict[str, Any], name: str) -> dict[str, Any]:
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UserError(f"server for {name} answered without choices: {str(resp)[:160]}")
    return choices[0]


def _no_logprobs(name: str, what: str) -> UserError:
    return UserError(f"server for {name} returned no log-probs for {what}; myopia needs a "
                     "server that returns them (llama.cpp server, vLLM, or an API with logprobs)")
