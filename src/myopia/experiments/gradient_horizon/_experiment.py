"""``gradient-horizon``: at token i in a non-final layer, which token's loss are you optimizing for?

The question of ``seeds/001``. For each model, on windows of a text (default: Hamlet, a play
the lab holds out), the gradient of the summed next-token loss at the residual stream h_l[i]
(l = 0: the embeddings; l = 1..L: after block l) is split exactly by target position:
g_i = Σ_{d ≥ 0} g_{i←i+d}, with g_{i←i+d} = ∂ℓ_{i+d}/∂h_l[i] (per-target gradients from
vector-Jacobian products, not an approximation; see ``_decomposition``). Offsets
d = 0..``max_offset`` are kept one by one, the farther ones summed into the bin ``>D``.
Positions i are those for which every offset 0..D has a loss (i + D < T − 1). Two shares,
pooled over positions and sequences (ratios of sums):

- ``proj`` (the headline): Σ_i ⟨g_{i←i+d}, g_i⟩ / Σ_i ‖g_i‖², the signed projection of each
  part on the full gradient; the shares of a layer sum to 1 exactly (they can be negative).
- ``norm``: Σ_i ‖g_{i←i+d}‖ / Σ_i Σ_d' ‖g_{i←i+d'}‖, the share of gradient magnitude.

d = 0 is the loss at i itself (the token predicted from position i). After the last block every
share is at d = 0 (what follows is position-wise); under ``attention = "myopic"`` (strict myopic
descent) so is every layer's. ``myopic_drop``: ‖∇θL − ∇θL_myopic‖/‖∇θL‖, the share of the
parameter gradient of the mean loss that myopic descent would drop (also without the
embedding/unembedding matrices).

One cell per model, attention and window: the window's per-target gradients, their additive
sums (table ``horizon``, one row per layer and offset bin) and the myopic drop (table ``drop``).
The headline (``_summary``) pools the sums over windows.
"""

from __future__ import annotations

from ... import interp
from ...data import read_text, text_windows
from ...models import check_spec
from ...objectives import MYOPIC
from .._base import Cell, CellContext, Experiment, Tables, slug
from ._decomposition import horizon_sums, myopic_drop, offset_gradients
from ._report import report
from ._spec import QUICK, GradientHorizonSpec
from ._summary import GradientHorizonSummary, summarize


class GradientHorizon(Experiment):
    spec_cls = GradientHorizonSpec
    summary_cls = GradientHorizonSummary
    about = "which target positions the gradient at each layer's residual stream comes from (seeds/001)"
    quick = QUICK
    quick_order = 60
    takes_gradients = True  # float32 whatever --dtype says

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
        model, attention, k = lm.model, cell.params["attention"], cell.params["sequence"]
        ids = text_windows(lm.tokenizer, spec.text, spec.sequences, spec.seq_len)[k : k + 1].to(lm.device)  # (1, T)

        ctx.progress(0, total=2, note="per-target gradients")
        with interp.attention(model, MYOPIC if attention == "myopic" else None):
            parts, full = offset_gradients(model, ids, spec.max_offset, spec.chunk)
        sums = horizon_sums(parts, full, spec.max_offset)
        del parts, full

        ctx.progress(1, note="myopic parameter-gradient drop")
        drop = {"total": None, "without_embeddings": None}
        if spec.myopic_drop and attention == "default":
            drop = myopic_drop(model, ids)
        ctx.progress(1)

        key = {"model": cell.model, "attention": attention, "sequence": k}
        n_layers = sums["norm"].shape[0]  # L + 1 streams
        return {
            "horizon": _horizon_records(key, sums, spec.max_offset),
            "drop": [
                {
                    **key,
                    "layers": n_layers - 1,
                    "myopic_drop": drop["total"],
                    "myopic_drop_without_embeddings": drop["without_embeddings"],
                }
            ],
        }

    def summarize(self, tables: Tables, spec: GradientHorizonSpec) -> GradientHorizonSummary:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: GradientHorizonSpec, summary: GradientHorizonSummary, section) -> None:
        report(tables, spec, summary, section)


def _horizon_records(key: dict, sums: dict, max_offset: int) -> list[dict]:
    """One record per stream l = 0..L and offset bin d = 0..D, D+1 (the bin of the farther targets)."""
    return [
        {
            **key,
            "layer": layer,
            "offset": d,
            "bin": str(d) if d <= max_offset else f">{max_offset}",
            "norm_sum": float(sums["norm"][layer, d]),
            "proj_sum": float(sums["proj"][layer, d]),
            "full_sq": float(sums["full_sq"][layer]),
            "positions": int(sums["positions"]),
        }
        for layer in range(sums["norm"].shape[0])
        for d in range(max_offset + 2)
    ]
