"""Forced choice: class probabilities exactly (batched scoring) vs by sampling to +-0.02.

For 200 prompts (the six default forced-choice variants, each behind distinct trial-number
prefixes, through the model's chat template), the answer-class probabilities are computed

- **exactly**: every listed continuation of every class scored with one batched
  ``score_many`` call (contexts shared across a prompt's continuations), summed per class;
- **by sampling**: ``N`` completions per prompt, classified by the same "begins with"
  events, where ``N = ceil(z^2 p (1 - p) / h^2)`` is the normal-bound sample size for a
  +-``h`` = 0.02 interval at the worst case p = 0.5 (2,401 at 95 %). Completions are only
  as long as the longest continuation, which is all the classification needs.

Sampling all 200 prompts would take most of an hour on a CPU, so each round samples
``--sample-prompts`` prompts (a different variant each round) and extrapolates linearly to
200 prompts (sampling cost is the same per prompt: same N, same length, the prompts differ
by a few tokens). A round runs both methods in one process, in alternating order from
round to round; the reported ratio is the median over ``--rounds`` rounds, for wall-clock
and process-CPU time. The sampled estimates are checked against the exact probabilities
(|difference| within the interval). ``--trial-at end`` moves the trial number after the
question (a second prompt set: prompts that share their instructions, not only the
template's system prompt).

    .venv/bin/python bench/bench_forced_choice.py [--model smollm2-135m-instruct] [--rounds 3] [--sample-prompts 1]
        [--trial-at start|end] [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _markdown import machine, write_section  # noqa: E402
from myopia.answers import (  # noqa: E402
    PatternClass,
    exact_class_probabilities,
    sampled_class_probabilities,
    samples_for_half_width,
)
from myopia.experiments.forced_choice._spec import default_variants  # noqa: E402
from myopia.models import Prompt, SamplingParams, load_model  # noqa: E402


def prompts(n: int, trial_at: str = "start") -> list[tuple[str, Prompt]]:
    """``n`` distinct prompts: the default variants round-robin, each with a trial number
    before the question (``start``) or after it (``end``)."""
    variants = default_variants()
    out = []
    for i in range(n):
        v = variants[i % len(variants)]
        text = f"(Trial {i + 1}.) {v.text}" if trial_at == "start" else f"{v.text} (Trial {i + 1}.)"
        out.append((v.name, Prompt(text, chat=True)))
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


class TokenCounter:
    """Token positions the model is given (input_ids elements), by a forward pre-hook."""

    def __init__(self, model):
        self.n = 0
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        self.n += kwargs["input_ids"].numel()

    def take(self) -> int:
        n, self.n = self.n, 0
        return n


def one_round(lm, items, picks, n, max_tokens, batch, exact_first: bool, counter) -> dict:
    r = {}
    for which in (["exact", "sampled"] if exact_first else ["sampled", "exact"]):
        counter.take()
        if which == "exact":
            r["exact"], r["e_wall"], r["e_cpu"], r["pairs"] = run_exact(lm, items)
        else:
            r["sampled"], r["s_wall"], r["s_cpu"] = run_sampled(lm, [items[k] for k in picks], n, max_tokens, batch)
        r[which + "_tokens"] = counter.take()
    r["scale"] = len(items) / len(picks)
    r["ratio_wall"] = r["s_wall"] * r["scale"] / r["e_wall"]
    r["ratio_cpu"] = r["s_cpu"] * r["scale"] / r["e_cpu"]
    r["worst"] = max(abs(e.probability - r["exact"][k].get(name, 0.0))
                     for k, est in zip(picks, r["sampled"]) for name, e in est.items())
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both methods, alternating their order")
    ap.add_argument("--sample-prompts", type=int, default=1,
                    help="prompts actually sampled per round (then extrapolated)")
    ap.add_argument("--trial-at", choices=["start", "end"], default="start",
                    help="trial number before or after the question")
    ap.add_argument("--half-width", type=float, default=0.02)
    ap.add_argument("--batch", type=int, default=256, help="samples drawn per batch (memory: one KV cache row each)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (2 oversubscribe a shared 2-core machine: 10x slower here)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    items = prompts(args.prompts, args.trial_at)
    n = samples_for_half_width(args.half_width)
    max_tokens = max(len(lm.continuation_ids(items[0][1], c))
                     for v in default_variants() for e in classes_of(v.name)[0] for c in e.continuations)
    counter = TokenCounter(lm.model)
    run_exact(lm, items[:2])  # warm-up (first-call allocations), not timed
    rounds = []
    for i in range(args.rounds):
        # a different prompt (and variant) each round: step 7 cycles through the six variants
        picks = [((i * args.sample_prompts + j) * 7) % len(items) for j in range(args.sample_prompts)]
        rounds.append(one_round(lm, items, picks, n, max_tokens, args.batch, i % 2 == 0, counter))
        r = rounds[-1]
        print(f"round {i + 1}: exact {r['e_wall']:.1f} s wall / {r['e_cpu']:.1f} s CPU; sampled {r['s_wall']:.1f} / "
              f"{r['s_cpu']:.1f} s for {len(picks)} prompt(s): {r['ratio_wall']:.0f}x wall, {r['ratio_cpu']:.0f}x CPU",
              file=sys.stderr)
    text = report(args, lm, items, n, max_tokens, rounds)
    print(text)
    if not args.no_write:
        write_section("forced-choice" if args.trial_at == "start" else "forced-choice-trial-at-end", text)


def report(args, lm, items, n, max_tokens, rounds) -> str:
    med = statistics.median
    r0 = rounds[0]
    pairs, sp = r0["pairs"], args.sample_prompts
    where = ("trial number before the question" if args.trial_at == "start"
             else "trial number after the question")
    lines = [
        f"Forced choice on `{args.model}`, {len(items)} prompts (the six default variants, each with a distinct "
        f"{where}, chat template); {machine()}; {args.rounds} rounds, alternating which method runs first; "
        f"load average {os.getloadavg()[1]:.1f} over the last 5 minutes of the run (other work shares the cores, "
        "hence wall > CPU).",
        "",
        f"Command: `.venv/bin/python bench/bench_forced_choice.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        "| round | exact: wall / CPU (s) | sampled, measured: wall / CPU (s) | sampled, x"
        f"{r0['scale']:.0f} to {len(items)} prompts: wall / CPU (s) | ratio wall | ratio CPU |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rounds):
        lines.append(f"| {i + 1} ({'exact' if i % 2 == 0 else 'sampled'} first) | {r['e_wall']:.1f} / {r['e_cpu']:.1f} "
                     f"| {r['s_wall']:.1f} / {r['s_cpu']:.1f} | {r['s_wall'] * r['scale']:.0f} / "
                     f"{r['s_cpu'] * r['scale']:.0f} | {r['ratio_wall']:.0f}x | {r['ratio_cpu']:.0f}x |")
    wall, cpu = med(r["ratio_wall"] for r in rounds), med(r["ratio_cpu"] for r in rounds)
    goal = "met" if min(wall, cpu) >= 100 else "not met"
    worst = max(r["worst"] for r in rounds)
    ctx_tokens = sum(len(lm.encode_context(p)[1]) for _, p in items) / len(items)
    e_tok, s_tok = r0["exact_tokens"] / len(items), r0["sampled_tokens"] / sp
    shared = ("here SmolLM2's default system prompt and the start of the user turn" if args.trial_at == "start"
              else "here the system prompt, then each variant's question up to the trial number")
    lines += [
        "",
        f"Exact: one `score_many` call, {pairs} (prompt, continuation) pairs. Sampled: {sp} prompt(s) per round x "
        f"{n} samples x {max_tokens} tokens (N = {n} is the normal-bound size for +-{args.half_width} at p = 0.5, "
        f"95 %), drawn in batches of {args.batch} from the prompt's cache.",
        "",
        f"**Median over rounds: exact is {wall:.0f}x faster in wall-clock time and {cpu:.0f}x in process CPU time** "
        f"(goal: at least 100x; {goal}). On the sampled prompts the largest |sampled - exact| class probability "
        f"is {worst:.3f} (expected within about +-{args.half_width}).",
        "",
        f"Token positions given to the model (a forward pre-hook): exact {e_tok:.0f} per prompt (a prompt is "
        f"{ctx_tokens:.0f} tokens), sampled {s_tok:.0f} per prompt, a ratio of {s_tok / e_tok:.0f}x. "
        f"Exact `score_many` computes the prefix the prompts share ({shared}) once and batches the rest from its "
        "key/value cache; continuations are "
        "read off each prompt's cache, a continuation whose tokens begin another's shares its row. Sampling "
        "is dearer per token than these counts say: each generated token needs the full-vocabulary "
        "distribution, and each batch copies the prompt's cache to 256 rows.",
    ]
    if args.trial_at == "start":
        lines += [
            "",
            "Before `score_many` cached shared prefixes (one round at commit e2fde35): exact 143.9 s wall / "
            "95.6 s CPU, 66x / 67x.",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
