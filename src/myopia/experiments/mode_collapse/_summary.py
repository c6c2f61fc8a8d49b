"""Mode-collapse headline figures, from the stored tables alone."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from .._base import Tables
from ._core import answer_distribution, expected_calibration_error
from ._spec import ModeCollapseSpec


def _models(tables: Tables) -> list[str]:
    seen: dict[str, None] = {}
    for r in tables.get("status", []):
        seen.setdefault(r["model"], None)
    return list(seen)


def text_summary(tokens: list[dict], info: dict, bins: int) -> dict:
    H = math.fsum(r["entropy"] for r in tokens)
    nll = -math.fsum(r["logprob"] for r in tokens)
    n, c, b = len(tokens), info["chars"], info["bytes"]
    return {"model": info["model"], "text": info["text"], "tokens": n, "chars": c, "bytes": b,
            "entropy_per_token": H / n, "entropy_per_char": H / c, "entropy_per_byte": H / b,
            "xent_per_token": nll / n, "xent_per_char": nll / c, "bits_per_byte": nll / b / math.log(2),
            "top1_accuracy": sum(r["correct"] for r in tokens) / n,
            "mean_confidence": math.fsum(r["top1"] for r in tokens) / n,
            "ece": expected_calibration_error([r["top1"] for r in tokens], [r["correct"] for r in tokens], bins)}


def number_summary(rows: list[dict], spec: ModeCollapseSpec) -> dict:
    values = [r["value"] if r["kind"] == "answer" else None for r in rows]
    d = answer_distribution(values, spec.number_low, spec.number_high)
    return {"samples": d.n_samples, "answers": d.n_answers, "entropy": _nan_none(d.entropy),
            "uniform_entropy": d.uniform_entropy, "uniform_entropy_at_n": _nan_none(d.uniform_entropy_at_n),
            "top": [list(t) for t in d.top], "kinds": dict(Counter(r["kind"] for r in rows))}


def _nan_none(x: float) -> float | None:
    """NaN (no answers) as None; -0.0 from a one-answer plug-in entropy as 0.0."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else max(0.0, x)


def summarize(tables: Tables, spec: ModeCollapseSpec) -> dict:
    tokens: dict[tuple[str, str], list[dict]] = {}
    for r in tables.get("tokens", []):
        tokens.setdefault((r["model"], r["text"]), []).append(r)
    text = [text_summary(tokens[(i["model"], i["text"])], i, spec.bins) for i in tables.get("texts", [])
            if tokens.get((i["model"], i["text"]))]
    mc = []
    for m in _models(tables):
        rows = [r for r in tables.get("mc", []) if r["model"] == m]
        if rows:
            mc.append({"model": m, "questions": len(rows),
                       "accuracy": sum(r["correct"] for r in rows) / len(rows),
                       "mean_confidence": math.fsum(r["confidence"] for r in rows) / len(rows),
                       "ece": expected_calibration_error([r["confidence"] for r in rows],
                                                         [r["correct"] for r in rows], spec.bins),
                       "mean_option_mass": math.fsum(r["mass"] for r in rows) / len(rows)})
    numbers = []
    for m in _models(tables):
        rows = [r for r in tables.get("numbers", []) if r["model"] == m]
        prompts = sorted({r["prompt_index"] for r in rows})
        for p in prompts:
            numbers.append({"model": m, "prompt": p, **number_summary([r for r in rows if r["prompt_index"] == p], spec)})
        if len(prompts) > 1:
            numbers.append({"model": m, "prompt": "all", **number_summary(rows, spec)})
    status = [r for r in tables.get("status", []) if r["status"] != "ok"]
    return {"text": text, "mc": mc, "numbers": numbers, "status": status}


def _pooled(summary: dict, model: str) -> dict | None:
    rows = [r for r in summary["numbers"] if r["model"] == model]
    pooled = [r for r in rows if r["prompt"] == "all"]
    return (pooled or rows or [None])[0]


def summary_rows(summary: dict) -> tuple[list[str], list[list[Any]]]:
    texts = list(dict.fromkeys(r["text"] for r in summary["text"]))
    models = list(dict.fromkeys([r["model"] for r in summary["text"]] + [r["model"] for r in summary["mc"]]
                                + [r["model"] for r in summary["numbers"]]))
    header = ["model", *[f"H/char {t}" for t in texts], *[f"ECE {t}" for t in texts],
              "MC acc.", "MC ECE", "numbers: answers", "H(numbers)", "H(uniform) at n", "top answers"]
    rows = []
    for m in models:
        tx = {r["text"]: r for r in summary["text"] if r["model"] == m}
        mc = next((r for r in summary["mc"] if r["model"] == m), None)
        nb = _pooled(summary, m)
        rows.append([m, *[tx[t]["entropy_per_char"] if t in tx else None for t in texts],
                     *[tx[t]["ece"] if t in tx else None for t in texts],
                     None if mc is None else mc["accuracy"], None if mc is None else mc["ece"],
                     None if nb is None else f"{nb['answers']}/{nb['samples']}",
                     None if nb is None else nb["entropy"], None if nb is None else nb["uniform_entropy_at_n"],
                     None if nb is None else ", ".join(f"{v}×{c}" for v, c in nb["top"][:3])])
    return header, rows
