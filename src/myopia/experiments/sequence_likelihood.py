"""``sequence-likelihood``: why is " a a a a ..." more probable than a real story?

The question of ``seeds/004``: under a next-token model, the exact continuation
" a a a ... a" of "Once upon a time, there was a" has a higher joint log-prob than a
typical story, though a sampled continuation is almost never degenerate. For each model
and prompt, continuations of one token length are drawn four ways and scored per token:

- ``greedy``: argmax decoding;
- ``beam``: the ``beam_width`` best continuations by beam search (top-K sequences);
- ``sample``: ``samples`` continuations at temperature ``temperature`` (typical sequences);
- ``user`` and ``degenerate``: the listed continuations (by default the seed's story), and
  each unit in ``degenerate`` repeated to the same token length (by default " a").

End-of-sequence is forbidden before ``length`` tokens, so every generated continuation has
exactly ``length`` tokens; user continuations are cut to ``length`` tokens.

Headline figures (``summary.json``): per model and prompt, ``greedy``, ``beam_best``,
``sample_median``, ``sample_max``, ``degenerate`` and ``user`` joint log-probs (nats), and
``degenerate_beats_samples``: the share of sampled continuations less probable than the
degenerate one.
"""

from __future__ import annotations

import statistics
from typing import Any

from pydantic import Field, field_validator

from ._base import Cell, CellContext, Experiment, Tables, register
from ._spec import Spec

SEED_STORY = (
    " little girl who was born with a very special gift. She could see things that others"
    " could not. She could see the future, and she could see the past"
)


class SequenceLikelihoodSpec(Spec):
    experiment: str = "sequence-likelihood"
    models: list[str] = Field(default_factory=lambda: ["gemma-3-270m", "smollm2-135m-instruct"], min_length=1)
    prompts: list[str] = Field(
        default_factory=lambda: [
            "Once upon a time, there was a",
            "The meaning of life is",
            "My favourite thing about the city is",
            "def fibonacci(n):",
        ],
        min_length=1,
    )
    length: int = Field(32, ge=1, le=512, description="tokens per continuation")
    samples: int = Field(64, ge=1, le=4096)
    temperature: float = Field(1.0, gt=0)
    beam_width: int = Field(4, ge=1, le=64)
    continuations: list[str] = Field(default_factory=lambda: [SEED_STORY])
    degenerate: list[str] = Field(default_factory=lambda: [" a"])
    chat: bool = Field(False, description="prompt models with a chat template through it")

    @field_validator("prompts", "continuations", "degenerate")
    @classmethod
    def _no_empty(cls, v: list[str]) -> list[str]:
        if any(not s for s in v):
            raise ValueError("empty strings are not accepted")
        return v


def _prompt_id(i: int) -> str:
    return f"p{i}"


@register
class SequenceLikelihood(Experiment):
    name = "sequence-likelihood"
    spec_cls = SequenceLikelihoodSpec
    summary = "joint log-probs of greedy, beam, sampled and degenerate continuations (seeds/004)"
    quick = {"samples": 32, "prompts": ["Once upon a time, there was a", "The meaning of life is"]}
    quick_order = 0  # the quick suite's first member

    def check(self, spec: SequenceLikelihoodSpec) -> None:
        from ..models import check_spec

        for m in spec.models:
            check_spec(m)

    def cells(self, spec: SequenceLikelihoodSpec) -> list[Cell]:
        return [
            Cell(id=f"{_safe(m)}__{_prompt_id(i)}", model=m, params={"prompt": i})
            for m in spec.models
            for i in range(len(spec.prompts))
        ]

    def run_cell(self, cell: Cell, spec: SequenceLikelihoodSpec, ctx: CellContext) -> Tables:
        from ..models import Prompt, SamplingParams

        model = ctx.model(cell.model)
        model.require("score", "sample", experiment=self.name)
        text = spec.prompts[cell.params["prompt"]]
        prompt = Prompt(text, chat=spec.chat and model.has_chat_template)
        L = spec.length
        ctx.progress(0, total=4, note="greedy")
        seed = spec.seed * 1_000_003 + cell.params["prompt"]
        drawn: list[tuple[str, int, list[int]]] = []
        greedy = model.sample(prompt, 1, SamplingParams(max_tokens=L, min_tokens=L, temperature=0, seed=seed))
        drawn += [("greedy", 0, greedy[0].token_ids)]
        ctx.progress(1, note="beam search")
        beams = model.beam_search(prompt, spec.beam_width, L)
        drawn += [("beam", i, b.token_ids) for i, b in enumerate(beams)]
        ctx.progress(1, note=f"{spec.samples} samples")
        params = SamplingParams(max_tokens=L, min_tokens=L, temperature=spec.temperature, seed=seed)
        drawn += [("sample", i, s.token_ids) for i, s in enumerate(model.sample(prompt, spec.samples, params))]
        drawn += [("user", i, _cut(model, prompt, c, L)) for i, c in enumerate(spec.continuations)]
        drawn += [("degenerate", i, _repeat_to(model, prompt, u, L)) for i, u in enumerate(spec.degenerate)]
        ctx.progress(1, note="scoring")
        scored = model.score_ids(prompt, [ids for _, _, ids in drawn])
        ctx.progress(1)
        conts, toks = [], []
        for (kind, i, _), s in zip(drawn, scored):
            key = {"model": cell.model, "prompt": text, "prompt_index": cell.params["prompt"], "kind": kind, "index": i}
            ents = [t.entropy for t in s.tokens]
            conts.append(
                {
                    **key,
                    "text": s.continuation,
                    "n_tokens": len(s.tokens),
                    "logprob": s.logprob,
                    "mean_logprob": s.mean_logprob,
                    "mean_entropy": sum(ents) / max(len(ents), 1),
                    "rendered_prompt": s.context,
                }
            )
            toks += [{**key, "position": j, **t.__dict__} for j, t in enumerate(s.tokens)]
        return {"continuations": conts, "tokens": toks}

    # -- results --------------------------------------------------------------------
    def summarize(self, tables: Tables, spec: SequenceLikelihoodSpec) -> dict:
        rows = []
        for (model, pi), recs in _by_cell(tables["continuations"]).items():
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

    def summary_rows(self, summary: dict) -> tuple[list[str], list[list[Any]]]:
        header = ["model", "prompt", "greedy", "beam best", "sample median", "degenerate", "user", "deg. > samples"]
        rows = [
            [
                r["model"],
                _short(r["prompt"]),
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

    def report(self, tables: Tables, spec: SequenceLikelihoodSpec, summary: dict, section) -> None:
        from ._sequence_likelihood_figures import cell_figure, token_table_rows

        section.text(
            f"Joint log-probs (nats) of {spec.length}-token continuations: greedy, the best of "
            f"{spec.beam_width} beams, {spec.samples} samples at temperature {spec.temperature}, "
            "the listed continuations and the degenerate repetitions. 'deg. > samples' is the share of "
            "sampled continuations that are less probable than the degenerate one: a high share means the "
            "most probable sequences are not the typical ones (seeds/004)."
        )
        section.table(*self.summary_rows(summary), caption="Joint log-prob per model and prompt (nats)")
        cells = _by_cell(tables["continuations"])
        tokens = _by_cell(tables["tokens"])
        for (model, pi), recs in cells.items():
            prompt = spec.prompts[pi]
            section.figure(
                cell_figure(model, prompt, recs, tokens[(model, pi)]),
                caption=f"{model} · {prompt!r}: sampled joint log-probs with the other continuations marked "
                "(left); per-token log-probs of the listed and degenerate continuations (right).",
            )
            header, rows = token_table_rows(tokens[(model, pi)])
            section.table(header, rows, caption=f"{model} · {prompt!r}: per token (log-prob, rank, entropy)")
            ranked = sorted(recs, key=lambda r: -r["logprob"])
            section.table(
                ["kind", "joint", "mean", "continuation"],
                [[r["kind"], r["logprob"], r["mean_logprob"], r["text"]] for r in ranked[:5] + ranked[-3:]],
                caption=f"{model} · {prompt!r}: the five most and three least probable continuations",
            )
        rendered = {(r["model"], r["rendered_prompt"]) for r in tables["continuations"]}
        if spec.chat:
            for model, text in sorted(rendered):
                section.code(text, caption=f"exact prompt seen by {model}:")


def _cut(model, prompt, text: str, n: int) -> list[int]:
    """The token ids of a listed continuation (joint tokenization), cut to ``n`` tokens."""
    return model.continuation_ids(prompt, text)[:n]


def _repeat_to(model, prompt, unit: str, n: int) -> list[int]:
    """``unit`` repeated until the continuation is exactly ``n`` tokens (cut if it overshoots)."""
    k = n
    while True:
        ids = model.continuation_ids(prompt, unit * k)
        if len(ids) >= n or k > 8 * n:
            return ids[:n]
        k += max(1, (n - len(ids)) // max(1, len(model.continuation_ids(prompt, unit))))


def _by_cell(records: list[dict]) -> dict[tuple[str, int], list[dict]]:
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


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def _short(s: str, n: int = 32) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
