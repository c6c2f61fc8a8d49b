"""Forced-choice headline figures, from the stored tables alone."""

from __future__ import annotations

from typing import Any

from ...stats import wilson_interval
from .._base import Tables
from ._core import OTHER
from ._spec import ForcedChoiceSpec


def _index(tables: Tables) -> dict[tuple[str, str, str], dict[str, dict]]:
    """(model, variant, method) -> {class: record}."""
    out: dict[tuple[str, str, str], dict[str, dict]] = {}
    for r in tables.get("classes", []):
        out.setdefault((r["model"], r["variant"], r["method"]), {})[r["class"]] = r
    return out


def _models(tables: Tables) -> list[str]:
    seen: dict[str, None] = {}
    for r in tables.get("prompts", []):
        seen.setdefault(r["model"], None)
    return list(seen)


def summarize(tables: Tables, spec: ForcedChoiceSpec) -> dict:
    idx = _index(tables)
    status = {(r["model"], r["variant"]): r for r in tables.get("prompts", [])}
    cells = []
    for (model, variant), p in status.items():
        row: dict[str, Any] = {"model": model, "variant": variant, "chat": p["chat"],
                               "exact_status": p["exact_status"], "sample_status": p["sample_status"]}
        for method in ("exact", "sampled", "pattern"):
            for name, r in idx.get((model, variant, method), {}).items():
                row[f"{method}_{name}"] = r["probability"]
        cells.append(row)
    answers = [a for m in _models(tables) for pair in spec.compare
               if (a := _compare(idx, m, pair[0], pair[1])) is not None]
    return {"samples": spec.samples, "cells": cells, "answers": answers}


def _guess_record(classes: dict[str, dict], guess: str) -> tuple[int, int, int] | None:
    """(count of guess, count of the other guess, n) over a sampled method's classes."""
    if not classes:
        return None
    n = next(iter(classes.values()))["n"]
    mine = sum(r["count"] for r in classes.values() if r["guess"] == guess)
    theirs = sum(r["count"] for r in classes.values() if r["guess"] not in ("", guess))
    return mine, theirs, n


def _compare(idx, model: str, word: str, random: str) -> dict | None:
    a = _guess_record(idx.get((model, word, "pattern"), {}), "0")
    b = _guess_record(idx.get((model, random, "pattern"), {}), "0")
    if a is None or b is None:
        return None
    out: dict[str, Any] = {"model": model, "word_variant": word, "random_variant": random}
    for tag, (k0, k1, n) in (("word", a), ("random", b)):
        lo, hi = wilson_interval(k0, n)
        slo, shi = wilson_interval(k0, k0 + k1)
        out.update({f"p0_{tag}": k0 / n if n else None, f"p0_{tag}_low": lo, f"p0_{tag}_high": hi,
                    f"share0_{tag}": k0 / (k0 + k1) if k0 + k1 else None,
                    f"share0_{tag}_low": slo, f"share0_{tag}_high": shi, f"valid_{tag}": k0 + k1, f"n_{tag}": n})
    exact = idx.get((model, word, "exact"), {})
    out["exact_p0_word"] = sum(r["probability"] for r in exact.values() if r["guess"] == "0") if exact else None
    if out["p0_random_high"] < out["p0_word_low"]:
        out["verdict"] = "drops"
    elif out["p0_random_low"] > out["p0_word_high"]:
        out["verdict"] = "rises"
    else:
        out["verdict"] = "no clear change"
    return out


def answer_line(a: dict) -> str:
    """The question of seeds/001 answered in one line."""
    return (f"{a['model']}: P(guess-0 answer) = {a['p0_word']:.3f} [{a['p0_word_low']:.3f}, "
            f"{a['p0_word_high']:.3f}] when '0' is answered with a word ({a['word_variant']}) vs "
            f"{a['p0_random']:.3f} [{a['p0_random_low']:.3f}, {a['p0_random_high']:.3f}] when it is a "
            f"random string ({a['random_variant']}): {a['verdict'].upper()} (95 % Wilson intervals, "
            f"{a['n_word']} and {a['n_random']} samples; among valid answers the share of '0' is "
            f"{_pct(a['share0_word'])} vs {_pct(a['share0_random'])}).")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def summary_rows(summary: dict) -> tuple[list[str], list[list[Any]]]:
    header = ["model", "word → random variant", "P(0) word", "P(0) random", "share 0 word", "share 0 random", "drop?"]
    rows = [[a["model"], f"{a['word_variant']} → {a['random_variant']}",
             _ci(a["p0_word"], a["p0_word_low"], a["p0_word_high"]),
             _ci(a["p0_random"], a["p0_random_low"], a["p0_random_high"]),
             _pct(a["share0_word"]), _pct(a["share0_random"]), a["verdict"]] for a in summary["answers"]]
    if not rows:  # nothing sampled: the exact table instead
        header = ["model", "variant", "exact status", "P(other) exact"]
        rows = [[c["model"], c["variant"], c["exact_status"], c.get(f"exact_{OTHER}")] for c in summary["cells"]]
    return header, rows


def _ci(p, lo, hi) -> str:
    return "n/a" if p is None else f"{p:.3f} [{lo:.3f}, {hi:.3f}]"
