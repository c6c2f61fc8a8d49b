"""Sequence-likelihood headline figures, from the stored tables alone."""

from __future__ import annotations

import statistics
from typing import Any

from ...report import short
from .._base import Tables
from ._spec import SequenceLikelihoodSpec


def by_cell(records: list[dict]) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        out.setdefault((r["model"], r["prompt_index"]), []).append(r)
    return dict(sorted(out.items()))


def _by_kind(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["kind"], []).append(r)
    for v in out.values():
        v.sort(key=lambda r: r["index"])
    return out


def summarize(tables: Tables, spec: SequenceLikelihoodSpec) -> dict:
    rows = []
    for (model, pi), recs in by_cell(tables["continuations"]).items():
        by = _by_kind(recs)
        samples = [r["logprob"] for r in by.get("sample", [])]
        deg = by.get("degenerate", [{}])[0].get("logprob")
        user = by.get("user", [{}])[0].get("logprob")
        rows.append(
            {
                "model": model,
                "prompt": spec.prompts[pi],
                "greedy": by["greedy"][0]["logprob"],
                "beam_best": max(r["logprob"] for r in by["beam"]),
                "sample_median": statistics.median(samples),
                "sample_max": max(samples),
                "degenerate": deg,
                "user": user,
                "degenerate_beats_samples": (
                    None if deg is None else sum(s < deg for s in samples) / len(samples)
                ),
                "degenerate_beats_user": None if deg is None or user is None else deg > user,
            }
        )
    return {"length": spec.length, "samples": spec.samples, "cells": rows}


def summary_rows(summary: dict) -> tuple[list[str], list[list[Any]]]:
    header = ["model", "prompt", "greedy", "beam best", "sample median", "degenerate", "user", "deg. > samples"]
    rows = [
        [
            r["model"],
            short(r["prompt"]),
            r["greedy"],
            r["beam_best"],
            r["sample_median"],
            r["degenerate"],
            r["user"],
            None if r["degenerate_beats_samples"] is None else f"{100 * r['degenerate_beats_samples']:.0f}%",
        ]
        for r in summary["cells"]
    ]
    return header, rows
