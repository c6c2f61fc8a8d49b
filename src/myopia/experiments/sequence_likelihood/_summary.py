"""Sequence-likelihood headline figures (the ``summary.json`` schema), from the stored tables alone."""

from __future__ import annotations

import statistics
from typing import Literal

from pydantic import BaseModel, Field

from ...report import pct, short
from .._base import Headline, TableRow, Tables
from ._spec import SequenceLikelihoodSpec


class CellFigures(BaseModel):
    """One model and prompt. Log-probs are joint log-probs of a whole continuation, in nats."""

    model: str
    prompt: str
    greedy: float = Field(description="joint log-prob of the greedy continuation")
    beam_best: float = Field(description="joint log-prob of the best beam")
    sample_median: float = Field(description="median joint log-prob of the sampled continuations")
    sample_max: float = Field(description="highest joint log-prob among the sampled continuations")
    degenerate: float | None = Field(description="joint log-prob of the first degenerate repetition (None: none)")
    user: float | None = Field(description="joint log-prob of the first listed continuation (None: none)")
    degenerate_beats_samples: float | None = Field(
        description="share of sampled continuations less probable than the degenerate one (0-1)")
    degenerate_beats_user: bool | None = Field(
        description="whether the degenerate continuation is more probable than the listed one")


class SequenceLikelihoodRow(TableRow):
    model: str
    prompt: str
    greedy: float
    beam_best: float = Field(title="beam best")
    sample_median: float = Field(title="sample median")
    degenerate: float | None
    user: float | None
    degenerate_beats_samples: str | None = Field(title="deg. > samples")


class SequenceLikelihoodSummary(Headline):
    """Per model and prompt, the joint log-probs of each kind of continuation."""

    length: int = Field(description="tokens per continuation")
    samples: int = Field(description="sampled continuations per model and prompt")
    boundary: Literal["natural", "lm-eval"] = Field(
        description='the rule that cut the listed and degenerate continuations into tokens: "natural" or "lm-eval"')
    cells: list[CellFigures]

    def rows(self) -> list[SequenceLikelihoodRow]:
        return [
            SequenceLikelihoodRow(
                model=c.model,
                prompt=short(c.prompt),
                greedy=c.greedy,
                beam_best=c.beam_best,
                sample_median=c.sample_median,
                degenerate=c.degenerate,
                user=c.user,
                degenerate_beats_samples=pct(c.degenerate_beats_samples, 0),
            )
            for c in self.cells
        ]


def by_cell(records: list[dict]) -> dict[tuple[str, int], list[dict]]:
    """Records grouped by (model, prompt index), sorted."""
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


def summarize(tables: Tables, spec: SequenceLikelihoodSpec) -> SequenceLikelihoodSummary:
    cells = []
    for (model, pi), recs in by_cell(tables["continuations"]).items():
        by = _by_kind(recs)
        samples = [r["logprob"] for r in by.get("sample", [])]
        deg = by.get("degenerate", [{}])[0].get("logprob")
        user = by.get("user", [{}])[0].get("logprob")
        cells.append(
            CellFigures(
                model=model,
                prompt=spec.prompts[pi],
                greedy=by["greedy"][0]["logprob"],
                beam_best=max(r["logprob"] for r in by["beam"]),
                sample_median=statistics.median(samples),
                sample_max=max(samples),
                degenerate=deg,
                user=user,
                degenerate_beats_samples=None if deg is None else sum(s < deg for s in samples) / len(samples),
                degenerate_beats_user=None if deg is None or user is None else deg > user,
            )
        )
    return SequenceLikelihoodSummary(length=spec.length, samples=spec.samples, boundary=spec.boundary,
                                     cells=cells)
