"""Scoring throughput: myopia's batched scorer vs a plain one-sequence-at-a-time loop.

Both score the same 64 continuations of the same context on the same model, in the same
process, interleaved, and must agree to 1e-4 nats. The plain loop is what one writes with
``transformers`` directly: for each continuation, a forward pass over context +
continuation, log-softmax, gather. myopia computes the context once, batches the
continuations, and applies the unembedding only where log-probs are needed; it also
returns each token's rank and entropy, which the loop does not.

    python bench/bench_scoring.py [--model smollm2-135m-instruct] [--repeats 3]

``--baseline SRC`` measures instead the cost of the scoring boundary rules (issue 16): text
scoring (``score_many`` on text continuations) with the default boundary, this tree vs the
``src`` folder of another checkout (e.g. ``git worktree add --detach ../base main``), whose
``HFModel`` is loaded beside this tree's on the same weights; the two alternate which goes
first, call by call. Beside it, ``boundary="exact"`` on part of the same requests.

    python bench/bench_scoring.py --baseline ../base/src [--rounds 5] [--exact-prompts 24]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _markdown import machine, write_section  # noqa: E402
from myopia import UserError  # noqa: E402
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
    ap.add_argument("--baseline", help="src folder of the code to compare text scoring with (boundary section)")
    ap.add_argument("--rounds", type=int, default=5, help="boundary section: rounds of both workers")
    ap.add_argument("--fc-prompts", type=int, default=200, help="boundary section: forced-choice prompts")
    ap.add_argument("--fc-chunk", type=int, default=20, help="boundary section: forced-choice prompts per call")
    ap.add_argument("--exact-prompts", type=int, default=24,
                    help="boundary section: forced-choice prompts scored exactly")
    args = ap.parse_args()
    if args.baseline:
        return compare(args)
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


# -- the boundary section: this tree's default text scoring vs a baseline checkout's ---------------
def baseline_model(src: str, lm):
    """``lm``'s model and tokenizer behind the baseline checkout's ``HFModel`` (its ``_hf.py``
    loaded beside this tree's package), so both sides share one process and one copy of
    the weights."""
    path = Path(src) / "myopia" / "models" / "_hf.py"
    spec = importlib.util.spec_from_file_location("myopia.models._hf_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.HFModel(lm.model, lm.tokenizer, name=lm.name, batch_size=lm.batch_size)


def _forced_choice_requests(n: int) -> list[list[tuple]]:
    """The forced-choice benchmark's requests, one list per prompt."""
    from bench_forced_choice import classes_of, prompts

    return [[(prompt, c) for e in classes_of(name)[0] for c in e.continuations] for name, prompt in prompts(n)]


def compare(args) -> None:
    torch.set_num_threads(1)
    new = load_model(args.model)
    old = baseline_model(args.baseline, new)
    texts = {}
    for name, ctx, length in (("paragraph", LONG_CONTEXT, args.length), ("short prompt", SHORT_CONTEXT, args.length),
                              ("one token", SHORT_CONTEXT, 1)):
        drawn = new.sample(ctx, args.n, SamplingParams(max_tokens=length, min_tokens=length, seed=0))
        texts[name] = [(ctx, d.text) for d in drawn]
    per_prompt = _forced_choice_requests(args.fc_prompts)
    step = args.fc_chunk
    chunks = {"paragraph": [texts["paragraph"]], "short prompt": [texts["short prompt"]],
              "forced choice": [sum(per_prompt[i:i + step], []) for i in range(0, len(per_prompt), step)]}
    for lm in (old, new):  # warm-up: first-call allocations
        lm.score_many(texts["short prompt"][:4])
    times = {w: {"baseline": [], "this tree": []} for w in chunks}
    diffs, moved = dict.fromkeys(chunks, 0.0), dict.fromkeys(chunks, 0)
    sides = {"baseline": old, "this tree": new}
    for r in range(args.rounds):
        for w, parts in chunks.items():
            for i, reqs in enumerate(parts):
                order = ["baseline", "this tree"] if (r + i) % 2 == 0 else ["this tree", "baseline"]
                got = {}
                for side in order:
                    c = time.process_time()
                    got[side] = sides[side].score_many(reqs)
                    times[w][side].append(time.process_time() - c)
                gap = max(abs(a.logprob - b.logprob) for a, b in zip(got["baseline"], got["this tree"]))
                diffs[w] = max(diffs[w], gap)
                if r == 0:
                    moved[w] += sum(bool(x.moved) for x in got["this tree"])
            print(f"round {r + 1} {w}: baseline {sum(times[w]['baseline'][-len(parts):]):.2f} s, this tree "
                  f"{sum(times[w]['this tree'][-len(parts):]):.2f} s", file=sys.stderr)
    exact = {}
    fc_part = sum(per_prompt[: args.exact_prompts], [])
    for w, reqs in (("forced choice", fc_part), ("one token", texts["one token"])):
        exact[w] = []
        for boundary in ("natural", "exact"):
            c = time.process_time()
            exact[w].append((new.score_many(reqs, boundary=boundary), time.process_time() - c))
        print(f"exact {w}: natural {exact[w][0][1]:.2f} s, exact {exact[w][1][1]:.2f} s", file=sys.stderr)
    c = time.process_time()
    try:
        new.score_many(texts["paragraph"][:1], boundary="exact")
        refused = f"scored in {time.process_time() - c:.1f} s"
    except UserError as err:
        refused = f"refused after {time.process_time() - c:.0f} s: \"{err}\""
    sizes = {w: sum(len(p) for p in parts) for w, parts in chunks.items()}
    text = _boundary_report(args, times, diffs, moved, sizes, exact, refused)
    print(text)
    if not args.no_write:
        write_section("scoring-boundary", text)


def _boundary_report(args, times, diffs, moved, sizes, exact, refused) -> str:
    med = statistics.median
    lines = [
        "## Scoring at the token boundary: the default rule's cost, and the exact mode's (issue 16)",
        "",
        f"Command: `python bench/bench_scoring.py --baseline BASE/src --model {args.model} --n {args.n} --length "
        f"{args.length} --rounds {args.rounds} --fc-prompts {args.fc_prompts} --fc-chunk {args.fc_chunk} "
        f"--exact-prompts {args.exact_prompts}`, with BASE a checkout of the code before the boundary rules "
        f"(here commit {_commit(args.baseline)}: `git worktree add --detach BASE {_commit(args.baseline)}`).",
        f"Machine: {machine()}; load average {os.getloadavg()[1]:.1f} (the cores are shared with other work). "
        "Both sides run in one process on the same weights: this tree's `HFModel` and the baseline's "
        "(its `_hf.py` loaded beside this tree's package), scoring text continuations with `score_many` "
        "and the default boundary; each call is timed in process CPU seconds, the two sides alternate which "
        "goes first, call by call (forced choice: one call per chunk of prompts).",
        "",
        "| requests | calls per side | baseline (s, total) | this tree (s, total) | ratio of totals "
        "| median paired ratio | max \\|Δ log-prob\\| | pairs with moved characters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    label = {"paragraph": f"paragraph context, {args.n} x {args.length}-token continuations",
             "short prompt": f"short prompt, {args.n} x {args.length}-token continuations",
             "forced choice": f"forced choice, {args.fc_prompts} chat prompts, {sizes['forced choice']} pairs"}
    worst = 0.0
    for w, t in times.items():
        ratios = [b / a for a, b in zip(t["baseline"], t["this tree"])]
        total = sum(t["this tree"]) / sum(t["baseline"])
        worst = max(worst, med(ratios))
        lines.append(f"| {label[w]} | {len(ratios)} | {sum(t['baseline']):.1f} | {sum(t['this tree']):.1f} | "
                     f"{total:.3f}x | **{med(ratios):.3f}x** | {diffs[w]:.1e} | {moved[w]} of {sizes[w]} |")
    goal = "met" if worst <= 1.05 else "NOT met"
    lines += ["", f"Ratio = this tree / baseline; goal: within 5% (median paired ratio ≤ 1.05x): {goal}. The "
              "log-probs agree exactly: on these requests the natural rule scores the same tokens as the old one.",
              "", "`boundary=\"exact\"` on part of the same requests (this tree, one call each):", "",
              "| requests | natural (s) | exact (s) | exact / natural | median \\|exact − natural\\| (nats) "
              "| largest | covering token sequences summed per pair (mean) |",
              "|---|---|---|---|---|---|---|"]
    for w, ((nat, tn), (ex, te)) in exact.items():
        name = (f"forced choice, first {args.exact_prompts} prompts, {len(nat)} pairs" if w == "forced choice"
                else f"short prompt, {len(nat)} one-token continuations")
        gaps = [abs(a.logprob - b.logprob) for a, b in zip(nat, ex)]
        lines.append(f"| {name} | {tn:.2f} | {te:.2f} | {te / tn:.1f}x | {med(gaps):.3f} | {max(gaps):.2f} | "
                     f"{_prefixes(ex):.1f} |")
    lines += ["", f"One of the paragraph's {args.length}-token continuations, exactly: {refused}", "",
              "The exact mode sums over every tokenization of the text after the backed-up context: its cost "
              "grows with the continuation's length and improbability; it is for answers and labels."]
    return "\n".join(lines)


def _commit(src: str) -> str:
    """The short commit of the checkout that holds ``src`` (``unknown`` outside git)."""
    r = subprocess.run(["git", "-C", src, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def _prefixes(scored) -> float:
    return statistics.mean(s.sequences for s in scored) if scored else 0.0


if __name__ == "__main__":
    main()
