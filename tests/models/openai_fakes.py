"""A scripted OpenAI-compatible server on 127.0.0.1 (stdlib ``http.server``) whose toy
model has known log-probs; used by ``tests/models/test_openai.py`` through the
``fake_openai`` fixture."""

from __future__ import annotations

import json
import math
import random
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



VOCAB = [" a", " b", " c", " d"]
UNKNOWN_LOGPROB = -8.0


def toy_tokens(text: str) -> list[str]:
    """The fake server's tokenizer: optional whitespace followed by non-space characters."""
    return re.findall(r"\s*\S+", text)


_IDS: dict[str, int] = {}
_TEXTS: dict[int, str] = {}


def toy_id(token: str) -> int:
    """A stable id per token text (the fake tokenizer's vocabulary grows as it goes)."""
    if token not in _IDS:
        _IDS[token] = len(_IDS) + 1
        _TEXTS[_IDS[token]] = token
    return _IDS[token]


def toy_row(position: int) -> dict[str, float]:
    """The toy model's next-token log-probs (over VOCAB) after ``position`` tokens."""
    weights = [((position + 1) * (j + 2)) % 5 * 0.7 for j in range(len(VOCAB))]
    norm = math.log(sum(math.exp(w) for w in weights))
    return {tok: w - norm for tok, w in zip(VOCAB, weights)}


def toy_logprob(tokens: list[str], i: int) -> float:
    """log P(tokens[i] | tokens[:i]) under the toy model (the truth the tests check)."""
    return toy_row(i).get(tokens[i], UNKNOWN_LOGPROB)


class FakeState:
    def __init__(self, echo: str = "aligned", fail: list[int] | None = None,
                 logprobs: bool = True, delay_s: float = 0.0, honour_bias: bool = True,
                 extras: bool = True):
        self.echo = echo  # "aligned" | "shifted" | "garbage"
        self.fail = list(fail or [])  # statuses to answer first, one per request
        self.logprobs = logprobs
        self.delay_s = delay_s
        self.honour_bias = honour_bias  # False: a server that ignores logit_bias
        self.extras = extras  # False: no /extras/tokenize (not a llama.cpp server)
        self.requests: list[dict] = []
        self.lock = threading.Lock()


def _completion(state: FakeState, body: dict) -> dict:
    prompt = body.get("prompt", "")
    ptoks = toy_tokens(prompt)
    n_gen = int(body.get("max_tokens") or 16)
    temperature = float(body.get("temperature", 1.0))
    rng = random.Random(body.get("seed"))
    gen, gen_lp, gen_top = [], [], []
    for j in range(n_gen):
        row = toy_row(len(ptoks) + j)
        tok = max(row, key=row.get) if temperature == 0 else rng.choice(VOCAB)
        forced = [int(i) for i, v in (body.get("logit_bias") or {}).items() if v >= 50]
        if forced and state.honour_bias:
            tok = _TEXTS[forced[0]]
        gen.append(tok), gen_lp.append(row.get(tok, UNKNOWN_LOGPROB)), gen_top.append(row)
    text = "".join(gen)
    choice: dict = {"index": 0, "text": (prompt + text) if body.get("echo") else text,
                    "finish_reason": "length", "logprobs": None}
    if body.get("logprobs") is not None and state.logprobs:
        toks, lps, tops = list(gen), list(gen_lp), list(gen_top)
        if body.get("echo"):
            p_lp, p_top = _echo_prompt(state.echo, ptoks)
            toks, lps, tops = ptoks + toks, p_lp + lps, p_top + tops
        base = 0 if body.get("echo") else len(prompt)
        offsets = [base + sum(len(t) for t in toks[:i]) for i in range(len(toks))]
        choice["logprobs"] = {"tokens": toks, "token_logprobs": lps, "top_logprobs": tops,
                              "text_offset": offsets}
    return {"object": "text_completion", "model": body.get("model"), "choices": [choice]}


def _echo_prompt(mode: str, ptoks: list[str]) -> tuple[list, list]:
    lps, tops = [], []
    for i, tok in enumerate(ptoks):
        if mode == "aligned":
            row = toy_row(i)
        elif mode == "shifted":  # llama.cpp's bug: the distribution after token i
            row = toy_row(i + 1)
        else:
            row = {t: -1.0 - 0.1 * k for k, t in enumerate(VOCAB)}
        lps.append(row.get(tok, UNKNOWN_LOGPROB) if mode != "garbage" else -3.0)
        tops.append({**row, tok: lps[-1]})
    if ptoks:
        lps[0], tops[0] = None, None
    return lps, tops


def _chat(state: FakeState, body: dict) -> dict:
    rng = random.Random(body.get("seed"))
    toks = [rng.choice(VOCAB) for _ in range(int(body.get("max_tokens") or 4))]
    forced = [int(i) for i, v in (body.get("logit_bias") or {}).items() if v >= 50]
    if forced and state.honour_bias:  # the reply's first token, forced
        toks[0] = _TEXTS[forced[0]]
    content = "".join(toks)
    row = toy_row(0)  # the same distribution at every reply position
    lp = None
    if body.get("logprobs") and state.logprobs:
        lp = {"content": [{"token": tok, "logprob": row.get(tok, UNKNOWN_LOGPROB), "top_logprobs": [
            {"token": t, "logprob": v} for t, v in row.items()]} for tok in toy_tokens(content)]}
    return {"object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": lp,
         "finish_reason": "length"}]}


class _Handler(BaseHTTPRequestHandler):
    state: FakeState

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        self._send(200, {"data": [{"id": "toy"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.state.lock:
            self.state.requests.append({"path": self.path, "body": body,
                                        "auth": self.headers.get("Authorization")})
            status = self.state.fail.pop(0) if self.state.fail else 200
        if self.state.delay_s:
            time.sleep(self.state.delay_s)
        if status != 200:
            self._send(status, {"error": {"message": f"scripted {status}"}},
                       {"Retry-After": "0"})
        elif self.path.endswith("/chat/completions"):
            self._send(200, _chat(self.state, body))
        elif self.path == "/extras/tokenize" and self.state.extras:
            self._send(200, {"tokens": [toy_id(t) for t in toy_tokens(body["input"])]})
        elif self.path == "/extras/detokenize" and self.state.extras:
            self._send(200, {"text": "".join(_TEXTS[int(i)] for i in body["tokens"])})
        elif self.path.endswith("/completions"):
            self._send(200, _completion(self.state, body))
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})



def start_fake_server(**kwargs) -> tuple[ThreadingHTTPServer, str, FakeState]:
    state = FakeState(**kwargs)
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"openai:http://127.0.0.1:{server.server_address[1]}/v1#toy", state
