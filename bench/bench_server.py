"""Throughput of the openai: backend against llama.cpp's server at concurrency 1, 4, 16.

One run starts the server on the bundled SmolLM2 (127.0.0.1), then sends the same
workload (N sampled completions of ``--tokens`` tokens each, seeds 0..N-1) at each
concurrency, in rounds that interleave the three settings so that machine noise hits
them alike; it reports the median round's requests/s and completion tokens/s, and writes
its own section of BENCHMARKS.md (atomically, other sections untouched).

    .venv/bin/python bench/bench_server.py [--requests 32] [--tokens 16] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from myopia.models._llama_server import bundled_smollm2_gguf, llama_server
from myopia.models._openai import load_openai

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
START, END = "<!-- bench_server:start -->", "<!-- bench_server:end -->"
LEVELS = (1, 4, 16)
PROMPTS = ("Once upon a time, there was a", "The best way to learn a language is",
           "Pick a random number between 0 and 100:", "My favourite season is")


def one_round(spec: str, concurrency: int, n: int, tokens: int) -> tuple[float, int]:
    """Seconds for ``n`` completions at ``concurrency``, and completion tokens returned."""
    model = load_openai(f"{spec}?concurrency={concurrency}&timeout=120")
    body = {"max_tokens": tokens, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
            "min_p": 0.0, "repeat_penalty": 1.0}

    def request(i: int) -> int:
        resp = model.completion(PROMPTS[i % len(PROMPTS)], seed=i, **body)
        return int((resp.get("usage") or {}).get("completion_tokens", 0))

    start = time.perf_counter()
    counts = model.map(request, list(range(n)))
    elapsed = time.perf_counter() - start
    model.close()
    return elapsed, sum(counts)


def run(n: int, tokens: int, rounds: int, threads: int) -> dict[int, dict[str, float]]:
    times: dict[int, list[tuple[float, int]]] = {c: [] for c in LEVELS}
    with llama_server(bundled_smollm2_gguf(), threads=threads) as spec:
        one_round(spec, 1, 2, tokens)  # warm-up: first-request costs out of the figures
        for r in range(rounds):
            order = LEVELS if r % 2 == 0 else tuple(reversed(LEVELS))
            for c in order:
                times[c].append(one_round(spec, c, n, tokens))
                print(f"round {r + 1} concurrency {c:>2}: {times[c][-1][0]:.2f} s", flush=True)
    out = {}
    for c, runs in times.items():
        secs, toks = sorted(runs)[len(runs) // 2]
        out[c] = {"seconds": secs, "requests_s": n / secs, "tokens_s": toks / secs,
                  "spread": (max(s for s, _ in runs) - min(s for s, _ in runs)) / secs}
    return out


def section(results: dict[int, dict[str, float]], n: int, tokens: int, rounds: int,
            threads: int) -> str:
    base = results[1]["requests_s"]
    rows = "\n".join(
        f"| {c} | {r['seconds']:.2f} | {r['requests_s']:.2f} | {r['tokens_s']:.1f} | "
        f"{r['requests_s'] / base:.2f}x | {100 * r['spread']:.0f}% |"
        for c, r in sorted(results.items()))
    return f"""{START}
## bench_server.py — openai: backend throughput against llama.cpp's server

Command: `.venv/bin/python bench/bench_server.py --requests {n} --tokens {tokens} --rounds {rounds} --threads {threads}`

llama-cpp-python 0.3.36 server ({threads} thread{"s" if threads > 1 else ""}) on the bundled SmolLM2-135M-Instruct
Q4_1 GGUF, 127.0.0.1, {n} sampled completions of {tokens} tokens per setting; the three concurrency
settings run side by side in one run, interleaved over {rounds} rounds (median round shown;
"spread" = (slowest − fastest) / median). Machine: {platform.processor() or platform.machine()},
{os.cpu_count()} cores, shared with other work, so compare the ratios, not the absolute figures.

| concurrency | seconds | requests/s | completion tokens/s | vs. concurrency 1 | spread |
|---|---|---|---|---|---|
{rows}

Reading: llama-cpp-python's server evaluates one request at a time (it holds a lock around
the model), so client-side concurrency buys little here beyond hiding HTTP round trips;
servers that batch requests (vLLM, llama.cpp's C++ `llama-server` with parallel slots) are
where concurrency 4 and 16 pay off. The backend keeps at most `concurrency` requests in
flight (a thread pool), so it never floods a server.
{END}"""


def write_section(text: str) -> None:
    current = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    if START in current and END in current:
        head, rest = current.split(START, 1)
        new = head + text + rest.split(END, 1)[1]
    else:
        new = current.rstrip("\n") + "\n\n" + text + "\n"
    fd, tmp = tempfile.mkstemp(dir=BENCHMARKS.parent, prefix=".BENCHMARKS.")
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, BENCHMARKS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="server threads (1 keeps it steady on a shared 2-core machine)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    results = run(args.requests, args.tokens, args.rounds, args.threads)
    text = section(results, args.requests, args.tokens, args.rounds, args.threads)
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote {BENCHMARKS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
