"""The gradient-horizon headline (``summary.json``) and end-of-run table, from the stored tables alone.

The cells store additive sums (``horizon``: per layer and offset bin, Σ_i ‖part‖, Σ_i ⟨part, g_i⟩
and Σ_i ‖g_i‖² over the measured positions i of one window); :func:`share_matrices` pools them
over windows before dividing, so every share is a ratio of sums.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ...report import pct
from ...stats import mean
from .._base import Headline, TableRow, Tables
from ._spec import GradientHorizonSpec

Shares = dict[str, list]  # {"proj": [[share per offset bin] per layer], "norm": [[...]], "bins": [bin labels]}


def share_matrices(rows: list[dict]) -> dict[tuple[str, str], Shares]:
    """{(model, attention): {"proj": [[share per offset bin] per layer], "norm": ..., "bins": [...]}},
    the sums pooled over sequences before dividing (ratios of sums)."""
    acc: dict[tuple[str, str], dict] = {}
    for r in rows:
        a = acc.setdefault((r["model"], r["attention"]), {"norm": {}, "proj": {}, "full": {}, "bins": {}})
        key = (r["layer"], r["offset"])
        a["norm"][key] = a["norm"].get(key, 0.0) + r["norm_sum"]
        a["proj"][key] = a["proj"].get(key, 0.0) + r["proj_sum"]
        if r["offset"] == 0:
            a["full"][r["layer"]] = a["full"].get(r["layer"], 0.0) + r["full_sq"]
        a["bins"][r["offset"]] = r["bin"]
    out = {}
    for k, a in acc.items():
        layers = sorted(a["full"])
        offsets = sorted(a["bins"])
        proj, norm = [], []
        for layer in layers:
            full = a["full"][layer]
            total = sum(a["norm"][(layer, d)] for d in offsets)
            proj.append([a["proj"][(layer, d)] / full if full > 0 else 0.0 for d in offsets])
            norm.append([a["norm"][(layer, d)] / total if total > 0 else 0.0 for d in offsets])
        out[k] = {"proj": proj, "norm": norm, "bins": [a["bins"][d] for d in offsets]}
    return dict(sorted(out.items()))


class HorizonRow(TableRow):
    """One line of the end-of-run table: a model under one attention, future shares as percentages."""

    model: str
    attention: str
    layers: int
    embeddings: str | None = Field(title="future share: emb")
    middle: str | None = Field(title="middle")
    mean: str | None = Field(title="mean (non-final)")
    last: str | None = Field(title="last")
    myopic_drop: str | None = Field(title="myopic drop")


class ModelHorizon(BaseModel):
    """Where one model's gradients come from, under one attention, pooled over its text windows.
    Layer index l = 0 is the embeddings, l = 1..L the residual stream after block l. Shares are
    fractions (not percentages) of the signed projection on the full gradient unless named ``norm``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="the model spec")
    attention: Literal["default", "myopic"] = Field(
        description="'default': the model's own gradients; 'myopic': those of strict myopic descent"
    )
    layers: int = Field(description="L, the number of blocks (the per-layer lists have L + 1 entries)")
    d0_share: list[float] = Field(
        description="per layer 0..L: Σ_i ⟨g_{i←i}, g_i⟩ / Σ_i ‖g_i‖², the share of the gradient at position i "
        "that comes from the loss at i itself (the shares of all offsets sum to 1; they can be negative)"
    )
    future_share: list[float] = Field(description="per layer 0..L: 1 − d0_share, the share from later positions")
    norm_d0_share: list[float] = Field(
        description="per layer 0..L: Σ_i ‖g_{i←i}‖ / Σ_i Σ_d ‖g_{i←i+d}‖, the d = 0 share of gradient magnitude"
    )
    embeddings_future_share: float = Field(description="future_share at the embeddings (layer 0)")
    middle_future_share: float = Field(description="future_share at layer L // 2")
    mean_future_share: float = Field(description="the mean future_share over the non-final layers 0..L−1")
    myopic_drop: float | None = Field(
        description="‖∇θL − ∇θL_myopic‖ / ‖∇θL‖ for the mean loss, the share (in norm) of the parameter gradient "
        "that myopic descent drops; mean over windows; null under myopic attention or when not measured"
    )
    myopic_drop_without_embeddings: float | None = Field(
        description="myopic_drop without the embedding and unembedding matrices"
    )


class GradientHorizonSummary(Headline):
    """The headline of a gradient-horizon run: the run's text and offsets, one entry per model and attention."""

    text: str = Field(description="the text the windows were cut from")
    seq_len: int = Field(description="tokens per window, BOS included")
    max_offset: int = Field(description="D: offsets 0..D are kept apart, the farther ones summed into '>D'")
    models: list[ModelHorizon]

    def rows(self) -> list[HorizonRow]:
        return [
            HorizonRow(
                model=m.model,
                attention=m.attention,
                layers=m.layers,
                embeddings=pct(m.embeddings_future_share),
                middle=pct(m.middle_future_share),
                mean=pct(m.mean_future_share),
                last=pct(m.future_share[-1]),
                myopic_drop=pct(m.myopic_drop),
            )
            for m in self.models
        ]


def summarize(tables: Tables, spec: GradientHorizonSpec) -> GradientHorizonSummary:
    models = []
    for (model, attention), mats in share_matrices(tables["horizon"]).items():
        d0 = [row[0] for row in mats["proj"]]
        L = len(d0) - 1
        drops = [r for r in tables["drop"] if (r["model"], r["attention"]) == (model, attention)]
        models.append(
            ModelHorizon(
                model=model,
                attention=attention,
                layers=L,
                d0_share=d0,
                future_share=[1 - x for x in d0],
                norm_d0_share=[row[0] for row in mats["norm"]],
                embeddings_future_share=1 - d0[0],
                middle_future_share=1 - d0[L // 2],
                mean_future_share=sum(1 - x for x in d0[:L]) / max(L, 1),
                # means over the windows (None where not measured)
                myopic_drop=mean([r["myopic_drop"] for r in drops]),
                myopic_drop_without_embeddings=mean([r["myopic_drop_without_embeddings"] for r in drops]),
            )
        )
    return GradientHorizonSummary(text=spec.text, seq_len=spec.seq_len, max_offset=spec.max_offset, models=models)
