"""``gradient-horizon``: at token i in a non-final layer, which token's loss are you optimizing for?

The question of ``seeds/001``. For each model, on windows of a text (default: Hamlet, a play
the lab holds out), the gradient of the summed next-token loss at the residual stream h_l[i]
(l = 0: the embeddings; l = 1..L: after block l) is split exactly by target position:
g_i = Σ_{d ≥ 0} g_{i←i+d}, with g_{i←i+d} = ∂ℓ_{i+d}/∂h_l[i] (per-target gradients from
vector-Jacobian products, not an approximation; see ``_gradient_horizon_core``). Offsets
d = 0..``max_offset`` are kept one by one, the farther ones summed into the bin ``>D``.
Positions i are those for which every offset 0..D has a loss (i + D < T − 1). Two shares,
pooled over positions and sequences (ratios of sums):

- ``proj`` (the headline): Σ_i ⟨g_{i←i+d}, g_i⟩ / Σ_i ‖g_i‖², the signed projection of each
  part on the full gradient; the shares of a layer sum to 1 exactly (they can be negative).
- ``norm``: Σ_i ‖g_{i←i+d}‖ / Σ_i Σ_d' ‖g_{i←i+d'}‖, the share of gradient magnitude.

Default shape: one window of 512 tokens rather than four of 128. The windows are consecutive
stretches of the text, so both cover the same ~510 tokens and measure about as many positions
(495 vs 444), but in one 512-token window each position sees all the text before it (not a
fresh start after BOS every 127 tokens) and its ``>D`` bin holds 494 − i targets (247 on
average) instead of 110 − i (55): the far future the question is about is there to be measured.
The per-target algorithm costs (T−1)·(D+1) positions, so 1 × 512 runs about as long as
4 × 128 (the loop it replaces grows as T²). 512 is gemma-3-270m's sliding window, so no layer
of it is cut off inside a window (the decomposition stays exact beyond it too).

d = 0 is the loss at i itself (the token predicted from position i). After the last block every
share is at d = 0 (what follows is position-wise); under ``attention = "myopic"`` (strict myopic
descent) so is every layer's. ``myopic_drop``: ‖∇θL − ∇θL_myopic‖/‖∇θL‖, the share of the
parameter gradient of the mean loss that myopic descent would drop (also without the
embedding/unembedding matrices).

Headline figures (``summary.json``, one entry per model and attention under ``models``):
``layers`` (L), ``d0_share`` (proj share at d = 0 per layer 0..L), ``future_share``
(1 − d0_share per layer), ``norm_d0_share``, ``embeddings_future_share``,
``middle_future_share`` (layer L//2), ``mean_future_share`` (mean over layers 0..L−1),
``myopic_drop`` and ``myopic_drop_without_embeddings`` (means over sequences; null if not run).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ...data import read_text, text_windows
from ...models import check_spec
from ...objectives import MYOPIC
from ...objectives._base import set_attn_implementation
from ...report import pct
from .._base import Cell, CellContext, Experiment, Spec, Tables, slug, untyped_headline
from ._decomposition import horizon_sums, myopic_drop, offset_gradients


class GradientHorizonSpec(Spec):
    models: list[str] = Field(default_factory=lambda: ["gemma-3-270m", "smollm2-135m-instruct"], min_length=1)
    attention: list[Literal["default", "myopic"]] = Field(
        default_factory=lambda: ["default"],
        min_length=1,
        description="'default': the model's gradients; 'myopic': those of strict myopic descent",
    )
    text: str = Field("shakespeare:hamlet", description="shakespeare:PLAY or a UTF-8 file")
    sequences: int = Field(1, ge=1, le=256, description="text windows (one cell each), consecutive")
    seq_len: int = Field(512, ge=4, le=4096, description="tokens per window, BOS included")
    max_offset: int = Field(16, ge=0, le=1024, description="offsets d = 0..max_offset kept apart")
    chunk: int = Field(32, ge=1, le=1024, description="target positions per backward pass")
    myopic_drop: bool = Field(True, description="also measure the parameter-gradient share myopic descent drops")

    @model_validator(mode="after")
    def _fits(self):
        if self.max_offset + 2 > self.seq_len:
            raise ValueError(f"seq_len={self.seq_len} must exceed max_offset + 1 = {self.max_offset + 1}")
        return self


class GradientHorizon(Experiment):
    spec_cls = GradientHorizonSpec
    about = "which target positions the gradient at each layer's residual stream comes from (seeds/001)"
    quick = {"sequences": 1, "seq_len": 24, "max_offset": 6, "chunk": 8}
    quick_order = 60

    def check(self, spec: GradientHorizonSpec) -> None:
        for m in spec.models:
            check_spec(m)
        read_text(spec.text)

    def cells(self, spec: GradientHorizonSpec) -> list[Cell]:
        return [
            Cell(id=f"{slug(m)}__{a}__s{k}", model=m, params={"attention": a, "sequence": k})
            for m in spec.models
            for a in spec.attention
            for k in range(spec.sequences)
        ]

    def run_cell(self, cell: Cell, spec: GradientHorizonSpec, ctx: CellContext) -> Tables:
        lm = ctx.white_box(cell.model, self.name)
        model, k = lm.model, cell.params["sequence"]
        ids = text_windows(lm.tokenizer, spec.text, spec.sequences, spec.seq_len)[k : k + 1].to(lm.device)
        ctx.progress(0, total=2, note="per-target gradients")
        was = getattr(model.config, "_attn_implementation", None)
        if cell.params["attention"] == "myopic":
            set_attn_implementation(model, MYOPIC)
        try:
            parts, full = offset_gradients(model, ids, spec.max_offset, spec.chunk)
        finally:
            model.set_attn_implementation(was or "sdpa")
        sums = horizon_sums(parts, full, spec.max_offset)
        del parts, full
        ctx.progress(1, note="myopic parameter-gradient drop")
        drop = {"total": None, "without_embeddings": None}
        if spec.myopic_drop and cell.params["attention"] == "default":
            drop = myopic_drop(model, ids)
        ctx.progress(1)
        key = {"model": cell.model, "attention": cell.params["attention"], "sequence": k}
        rows = []
        n_layers = sums["norm"].shape[0]
        for layer in range(n_layers):
            for d in range(spec.max_offset + 2):
                rows.append(
                    {
                        **key,
                        "layer": layer,
                        "offset": d,
                        "bin": str(d) if d <= spec.max_offset else f">{spec.max_offset}",
                        "norm_sum": float(sums["norm"][layer, d]),
                        "proj_sum": float(sums["proj"][layer, d]),
                        "full_sq": float(sums["full_sq"][layer]),
                        "positions": int(sums["positions"]),
                    }
                )
        return {
            "horizon": rows,
            "drop": [{**key, "layers": n_layers - 1, "myopic_drop": drop["total"],
                      "myopic_drop_without_embeddings": drop["without_embeddings"]}],
        }

    # -- results --------------------------------------------------------------------
    def summarize(self, tables: Tables, spec: GradientHorizonSpec):
        return self.summary_cls(**self.summary_dict(tables, spec))

    def summary_dict(self, tables: Tables, spec: GradientHorizonSpec) -> dict:
        from ._report import share_matrices

        out = []
        for (model, attention), mats in share_matrices(tables["horizon"]).items():
            d0 = [row[0] for row in mats["proj"]]
            L = len(d0) - 1
            drops = [r for r in tables["drop"] if (r["model"], r["attention"]) == (model, attention)]
            out.append(
                {
                    "model": model,
                    "attention": attention,
                    "layers": L,
                    "d0_share": d0,
                    "future_share": [1 - x for x in d0],
                    "norm_d0_share": [row[0] for row in mats["norm"]],
                    "embeddings_future_share": 1 - d0[0],
                    "middle_future_share": 1 - d0[L // 2],
                    "mean_future_share": sum(1 - x for x in d0[:L]) / max(L, 1),
                    "myopic_drop": _mean([r["myopic_drop"] for r in drops]),
                    "myopic_drop_without_embeddings": _mean([r["myopic_drop_without_embeddings"] for r in drops]),
                }
            )
        return {"text": spec.text, "seq_len": spec.seq_len, "max_offset": spec.max_offset, "models": out}

    def summary_rows(self, summary: dict) -> tuple[list[str], list[list[Any]]]:
        header = ["model", "attention", "layers", "future share: emb", "middle", "mean (non-final)", "last", "myopic drop"]
        rows = [
            [
                r["model"],
                r["attention"],
                r["layers"],
                pct(r["embeddings_future_share"]),
                pct(r["middle_future_share"]),
                pct(r["mean_future_share"]),
                pct(r["future_share"][-1]),
                pct(r["myopic_drop"]),
            ]
            for r in summary["models"]
        ]
        return header, rows

    def report(self, tables: Tables, spec: GradientHorizonSpec, summary, section) -> None:
        summary = summary.model_dump()
        from ._report import future_share_figure, heatmap_figure, share_matrices

        section.text(
            f"Where the gradient at each residual stream comes from, on {spec.sequences} window(s) of "
            f"{spec.seq_len} tokens of {spec.text}. 'future share' is the share of the gradient at layer l, "
            "position i that comes from the losses at positions after i (1 − the d = 0 share of the signed "
            "projection on the full gradient; exact, pooled over positions). 'myopic drop' is "
            "‖∇θL − ∇θL_myopic‖ / ‖∇θL‖: the part of the parameter gradient that myopic descent would drop."
        )
        section.table(*self.summary_rows(summary), caption="Share of the gradient from later positions' losses")
        mats = share_matrices(tables["horizon"])
        for (model, attention), m in mats.items():
            section.figure(
                heatmap_figure(model, attention, m),
                caption=f"{model} ({attention}): share of the gradient at the residual stream after each "
                "block (rows; emb = embeddings) that comes from the loss d positions ahead (columns; "
                f"'>{spec.max_offset}' = farther). Left: signed projection (rows sum to 1); right: norm share.",
            )
        section.figure(
            future_share_figure(summary["models"]),
            caption="Future share by relative depth, one line per model: how far from next-token the "
            "gradient at each layer is.",
        )
        header = ["model", "attention", "layer"] + [f"d={d}" for d in range(min(spec.max_offset, 8) + 1)]
        rows = []
        for (model, attention), m in mats.items():
            for layer, row in enumerate(m["proj"]):
                rows.append([model, attention, "emb" if layer == 0 else layer] + [f"{x:.3f}" for x in row[: len(header) - 3]])
        section.table(header, rows, caption="Signed-projection shares by layer and offset (first offsets)")


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None



GradientHorizon.summary_cls = untyped_headline(GradientHorizon().summary_rows)  # TRANSITIONAL (issue 10)
