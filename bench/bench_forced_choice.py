"""Forced choice: class probabilities exactly (batched scoring) vs by sampling to +-0.02.

For 200 prompts (the six default forced-choice variants, each behind distinct trial-number
prefixes, through the model's chat template), the answer-class probabilities are computed

- **exactly**: every listed continuation of every class scored with one batched
  ``score_many`` call (contexts shared across a prompt's continuations), summed per class;
- **by sampling**: ``N`` completions per prompt, classified by the same "begins with"
  events, where ``N = ceil(z^2 p (1 - p) / h^2)`` is the normal-bound sample size for a
  +-``h`` = 0.02 interval at the worst case p = 0.5 (2,401 at 95 %). Completions are only
  as long as the longest continuation, which is all the classification needs.

Sampling all 200 prompts would take most of an hour on a CPU, so it is timed on a
representative subset (``--sample-prompts``, spread over the variants) and extrapolated
linearly to 200 prompts (sampling cost is the same per prompt: same N, same length, the
prompts differ by a few tokens). Both run in the same process, one after the other; the
wall-clock and process-CPU ratios are both reported, and the sampled estimates on the
subset are checked against the exact probabilities (|difference| within the interval).

    .venv/bin/python bench/bench_forced_choice.py [--model smollm2-135m-instruct] [--sample-prompts 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _markdown import machine, write_section  # noqa: E402

from myopia.experiments.forced_choice._core import (  # noqa: E402
    PatternClass,
    exact_class_probabilities,
    sampled_class_probabilities,
    samples_for_half_width,
)
from myopia.experiments.forced_choice._spec import default_variants  # noqa: E402
from myopia.models import Prompt, SamplingParams, load_model  # noqa: E402


def prompts(n: int) -> list[tuple[str, Prompt]]:
    """``n`` distinct prompts: the default variants round-robin, each with a trial prefix."""
    variants = default_variants()
    out = []
    for i in range(n):
        v = variants[i % len(variants)]
        out.append((v.name, Prompt(f"(Trial {i + 1}.) {v.text}", chat=True)))
    return out


def classes_of(name: str):
    v = next(v for v in default_variants() if v.name == name)
    exact = [e for c in v.classes if (e := c.exact()) is not None]
    prefix = [PatternClass(c.name, p) for c in v.classes if (p := c.prefix_pattern()) is not None]
    return exact, prefix


def run_exact(lm, items) -> tuple[list[dict], float, float, int]:
    requests, owners = [], []
    for k, (name, prompt) in enumerate(items):
        exact, _ = classes_of(name)
        for e in exact:
            for c in e.continuations:
                requests.append((prompt, c))
                owners.append(k)
    t, c = time.perf_counter(), time.process_time()
    scored = lm.score_many(requests)
    results = []
    for k, (name, _) in enumerate(items):
        lps = {s.continuation: s.logprob for s, o in zip(scored, owners) if o == k}
        results.append(exact_class_probabilities(classes_of(name)[0], lps).probabilities)
    return results, time.perf_counter() - t, time.process_time() - c, len(requests)


def run_sampled(lm, items, n: int, max_tokens: int, batch: int) -> tuple[list[dict], float, float]:
    t, c = time.perf_counter(), time.process_time()
    results = []
    for k, (name, prompt) in enumerate(items):
        texts = []
        for start in range(0, n, batch):
            params = SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=1000 * k + start)
            texts += [s.text for s in lm.sample(prompt, min(batch, n - start), params)]
        results.append({e.name: e for e in sampled_class_probabilities(texts, classes_of(name)[1], n_examples=0)})
    return results, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--sample-prompts", type=int, default=1, help="prompts actually sampled (then extrapolated)")
    ap.add_argument("--half-width", type=float, default=0.02)
    ap.add_argument("--batch", type=int, default=256, help="samples drawn per batch (memory: one KV cache row each)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (2 oversubscribe a shared 2-core machine: 10x slower here)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    items = prompts(args.prompts)
    n = samples_for_half_width(args.half_width)
    max_tokens = max(len(lm.continuation_ids(items[0][1], c))
                     for v in default_variants() for e in classes_of(v.name)[0] for c in e.continuations)
    step = max(1, len(items) // max(1, args.sample_prompts))
    subset = items[::step][: args.sample_prompts]
    subset_idx = list(range(0, len(items), step))[: args.sample_prompts]

    print(f"exact: {len(items)} prompts; sampling: {len(subset)} x {n} samples x {max_tokens} tokens", file=sys.stderr)
    exact, exact_wall, exact_cpu, n_scored = run_exact(lm, items)
    print(f"exact done in {exact_wall:.1f} s", file=sys.stderr)
    sampled, s_wall, s_cpu = run_sampled(lm, subset, n, max_tokens, args.batch)
    scale = len(items) / len(subset)
    est_wall, est_cpu = s_wall * scale, s_cpu * scale
    worst = 0.0
    for k, est in zip(subset_idx, sampled):
        for name, e in est.items():
            worst = max(worst, abs(e.probability - exact[k].get(name, 0.0)))
    lines = [
        f"Forced choice on `{args.model}`, {len(items)} prompts (the six default variants behind distinct "
        f"trial prefixes, chat template); {machine()}.",
        "",
        f"Command: `.venv/bin/python bench/bench_forced_choice.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        "| method | what runs | wall (s) | process CPU (s) |",
        "|---|---|---|---|",
        f"| exact | one `score_many` call: {n_scored} (prompt, continuation) pairs, {len(exact)} prompts "
        f"| {exact_wall:.1f} | {exact_cpu:.1f} |",
        f"| sampled, measured | {len(subset)} prompts x {n} samples x {max_tokens} tokens | {s_wall:.1f} | {s_cpu:.1f} |",
        f"| sampled, extrapolated to {len(items)} prompts | linear (x{scale:.0f}) | {est_wall:.0f} | {est_cpu:.0f} |",
        "",
        f"**Exact is {est_wall / exact_wall:.0f}x faster in wall-clock time and {est_cpu / exact_cpu:.0f}x in "
        f"process CPU time** (goal: at least 100x). N = {n} samples per prompt is the normal-bound size for "
        f"+-{args.half_width} at p = 0.5, 95 %. On the sampled subset the largest |sampled - exact| class "
        f"probability is {worst:.3f} (expected within about +-{args.half_width}).",
    ]
    ctx_tokens = sum(len(lm.encode_context(p)[1]) for _, p in items) / len(items)
    bound = (n * max_tokens + -(-n // args.batch) * ctx_tokens) / (ctx_tokens + n_scored / len(items) * max_tokens)
    lines += [
        "",
        f"Why the ratio is what it is: exact scoring costs about one forward pass over each prompt "
        f"({ctx_tokens:.0f} tokens on average: SmolLM2's chat template adds its default system prompt) plus "
        f"its {n_scored / len(items):.0f} short continuations, while sampling costs {n} x {max_tokens} generated "
        f"tokens plus one prompt pass per batch of {args.batch}: a token-count ratio of about {bound:.0f}x. "
        "Longer answers (more tokens to sample) or shorter prompts raise it; caching the prefix the "
        "prompts share would too (not done by `score_many`).",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("forced-choice", text)


if __name__ == "__main__":
    main()
