"""Measuring decoding with drafts: acceptance per head, tokens per forward pass, speed-up.

Two pure functions, for ``bench/bench_speculative.py`` and for an experiment's measurement step:

- :func:`measure_drafting` decodes each prompt plainly (``HFModel.sample``, batch 1, cached) and
  with 1..k drafted tokens per pass, interleaved (the order rotates from prompt to prompt and
  round to round, so that load from other processes hits every mode alike), and returns one
  record per prompt and mode: tokens, forward passes, per-head counts, wall time, and whether
  the tokens equal plain decoding's;
- :func:`summarize_drafting` turns the records into one row per mode: tokens per forward pass and
  the speed-up over plain decoding, each a ratio of sums over prompts with a 95% interval
  (delta method, t quantile, prompts as the unit), and per head the acceptance rate (accepted
  when reached: every earlier draft of the step accepted) with a Wilson interval.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Sequence

import torch

from ..stats import t_quantile, wilson_interval
from ._base import Context, SamplingParams
from ._speculative import generate_with_drafts, load_drafter


def measure_drafting(lm, prompts: Sequence[Context], drafts: Sequence[int], max_tokens: int,
                     temperature: float = 0.0, repeats: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """One record per prompt and mode (``draft`` 0 is plain decoding): ``prompt`` (index),
    ``draft``, ``tokens``, ``forwards``, ``seconds`` (median over ``repeats``), ``offered`` /
    ``reached`` / ``accepted`` (per head, lists), ``same_as_plain``. Greedy at temperature 0."""
    drafter = load_drafter(lm)
    modes = [0, *drafts]
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    records = []
    for i, prompt in enumerate(prompts):
        times: dict[int, list[float]] = {m: [] for m in modes}
        outputs: dict[int, tuple] = {}
        for r in range(repeats):
            shift = (i + r) % len(modes)
            for mode in modes[shift:] + modes[:shift]:
                t0 = time.perf_counter()
                if mode == 0:
                    sample, stats = lm.sample(prompt, 1, params)[0], None
                else:
                    gen = torch.Generator(device="cpu").manual_seed(seed)
                    sample, stats = generate_with_drafts(lm, prompt, params, mode, gen, drafter)
                times[mode].append(time.perf_counter() - t0)
                outputs[mode] = (sample.token_ids, stats)
        plain = outputs[0][0]
        for mode in modes:
            ids, stats = outputs[mode]
            records.append({
                "prompt": i,
                "draft": mode,
                "tokens": stats.tokens if stats else len(ids),
                "forwards": stats.forwards if stats else len(ids),
                "seconds": statistics.median(times[mode]),
                "offered": list(stats.offered) if stats else [],
                "reached": list(stats.reached) if stats else [],
                "accepted": list(stats.accepted) if stats else [],
                "same_as_plain": ids == plain,
            })
    return records


def _ratio(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float | None]:
    """Σx / Σy with a 95% interval over the n pairs (delta method, t(n − 1) quantile)."""
    n, sx, sy = len(xs), sum(xs), sum(ys)
    ratio = sx / sy if sy else math.nan
    if n < 2 or not sy:
        return {"value": ratio, "ci_low": None, "ci_high": None}
    mean_y = sy / n
    var = sum((x - ratio * y) ** 2 for x, y in zip(xs, ys)) / (n * (n - 1)) / mean_y**2
    half = t_quantile(n - 1) * math.sqrt(var)
    return {"value": ratio, "ci_low": ratio - half, "ci_high": ratio + half}


def summarize_drafting(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per mode (plain first): ``tokens``, ``forwards``, ``tokens_per_forward``,
    ``speedup`` (plain seconds / this mode's, same prompts), ``tokens_per_s``, ``same_as_plain``
    (share of prompts), and ``heads``: per drafted position j = 1..k, ``offered``, ``reached``,
    ``accepted``, ``rate`` (accepted / reached) and its Wilson interval."""
    plain = {r["prompt"]: r for r in records if r["draft"] == 0}
    rows = []
    for mode in sorted({r["draft"] for r in records}):
        rs = [r for r in records if r["draft"] == mode]
        heads = []
        for j in range(max((len(r["offered"]) for r in rs), default=0)):
            counts = {key: sum(r[key][j] for r in rs if j < len(r[key])) for key in ("offered", "reached", "accepted")}
            low, high = wilson_interval(counts["accepted"], counts["reached"])
            rate = counts["accepted"] / counts["reached"] if counts["reached"] else math.nan
            heads.append({"head": j + 2, **counts, "rate": rate, "ci_low": low, "ci_high": high})
        rows.append({
            "draft": mode,
            "prompts": len(rs),
            "tokens": sum(r["tokens"] for r in rs),
            "forwards": sum(r["forwards"] for r in rs),
            "tokens_per_forward": _ratio([r["tokens"] for r in rs], [r["forwards"] for r in rs]),
            "speedup": _ratio([plain[r["prompt"]]["seconds"] for r in rs], [r["seconds"] for r in rs]),
            "tokens_per_s": sum(r["tokens"] for r in rs) / sum(r["seconds"] for r in rs),
            "same_as_plain": sum(r["same_as_plain"] for r in rs) / len(rs),
            "heads": heads,
        })
    return rows
