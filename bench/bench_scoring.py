"""Scoring throughput: myopia's batched scorer vs a plain one-sequence-at-a-time loop.

Both score the same 64 continuations of the same context on the same model, in the same
process, interleaved, and must agree to 1e-4 nats. The plain loop is what one writes with
``transformers`` directly: for each continuation, a forward pass over context +
continuation, log-softmax, gather. myopia computes the context once, batches the
continuations, and applies the unembedding only where log-probs are needed; it also
returns each token's rank and entropy, which the loop does not.

    python bench/bench_scoring.py [--model smollm2-135m-instruct] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _markdown import machine, write_section  # noqa: E402
from myopia.models import SamplingParams, load_model  # noqa: E402

LONG_CONTEXT = (
    "The old lighthouse keeper had lived alone on the island for thirty years. Every evening he climbed "
    "the spiral stairs, trimmed the wick, and watched the beam sweep across the water. Ships passed in the "
    "night without knowing his name. One winter, a storm tore the roof from the boathouse and the supply "
    "boat stopped coming. He rationed his flour and his lamp oil, and he wrote letters he could not send. "
    "Then, on the first calm morning in weeks, he saw"
)
SHORT_CONTEXT = "Once upon a time, there was a"


def plain_loop(model, ctx_ids: list[int], conts: list[list[int]]) -> list[float]:
    out = []
    with torch.no_grad():
        for cont in conts:
            ids = torch.tensor([ctx_ids + cont], device=model.device)  # (1, T)
            logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)  # (T, V)
            rows = logp[len(ctx_ids) - 1 : len(ctx_ids) - 1 + len(cont)]
            out.append(float(rows[torch.arange(len(cont)), torch.tensor(cont)].sum()))
    return out


def _sync(lm) -> None:
    """Both sides end on Python floats (a GPU sync); start the clock with the GPU idle too."""
    if lm.device.type == "cuda":
        torch.cuda.synchronize(lm.device)


def measure(lm, context: str, n: int, length: int, repeats: int, tolerance: float = 1e-3) -> dict:
    conts = [s.token_ids for s in lm.sample(context, n, SamplingParams(max_tokens=length, min_tokens=length, seed=0))]
    _, ctx_ids = lm.encode_context(context)
    n_tokens = sum(len(c) for c in conts)
    plain_t, ours_t = [], []
    for _ in range(repeats):
        _sync(lm)
        t = time.perf_counter()
        ref = plain_loop(lm.model, ctx_ids, conts)
        plain_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = [s.logprob for s in lm.score_ids(context, conts)]
        ours_t.append(time.perf_counter() - t)
    err = max(abs(a - b) for a, b in zip(ref, got))
    assert err < tolerance, f"scores disagree by {err}"
    p, o = statistics.median(plain_t), statistics.median(ours_t)
    return {
        "context_tokens": len(ctx_ids),
        "continuations": n,
        "length": length,
        "plain_tok_s": n_tokens / p,
        "ours_tok_s": n_tokens / o,
        "speedup": p / o,
        "max_abs_diff": err,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    lm = load_model(args.model)
    rows = []
    for name, ctx in (("paragraph", LONG_CONTEXT), ("short prompt", SHORT_CONTEXT)):
        r = measure(lm, ctx, args.n, args.length, args.repeats)
        rows.append((name, r))
        print(f"{name}: {r}", flush=True)
    lines = [
        "## Scoring throughput (`myopia score` batching vs a plain transformers loop)",
        "",
        f"Command: `python bench/bench_scoring.py --model {args.model} --n {args.n} --length {args.length} "
        f"--repeats {args.repeats}`",
        f"Machine: {machine()}. Median of {args.repeats} interleaved repeats; both sides agree to "
        f"{max(r['max_abs_diff'] for _, r in rows):.1e} nats.",
        "",
        "| context | context tokens | continuations x tokens | plain loop tok/s | myopia tok/s | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['context_tokens']} | {r['continuations']} x {r['length']} | "
            f"{r['plain_tok_s']:.0f} | {r['ours_tok_s']:.0f} | **{r['speedup']:.2f}x** |"
        )
    lines += [
        "",
        "Tokens/s counts scored continuation tokens. The goal is at least 3x on a batch of 64 continuations.",
        "Measured on a machine shared with other work: compare the speed-ups, not the absolute tokens/s.",
    ]
    if not args.no_write:
        write_section("scoring", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
