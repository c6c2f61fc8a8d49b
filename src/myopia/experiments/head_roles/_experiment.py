"""``head-roles``: is a previous-token head useful at its own position, or for later ones?

The claim of ``seeds/003``: a previous-token head is not very useful for predicting the token at
its own position; it prepares activations that an induction head reads from a later position.
For every head of each model, on up to three data sets (``_data``: ``repeat``, BOS + n random
tokens repeated once, where induction is the only way to predict the second copy; ``text``:
windows of a text; ``repeated-text``: BOS + n tokens of the text repeated once, where copying
competes with what the text itself predicts):

- pattern scores with TransformerLens's ``detect_head`` definitions (the "mul" measure:
  attention mass on the pattern's positions / total mass, optional BOS and current-token
  exclusion; see ``_scores``): ``previous``, ``duplicate``, ``induction``;
- the mean loss increase (nats/token) when the head's output is removed (``ablation``: its
  mean output, or zero) ``full``-y, only from its ``own`` position's stream, or only from what
  ``future`` positions read through keys/values (exact interventions, see ``_ablation``). Losses
  are averaged over the predicted positions of the second copy (``repeat``, ``repeated-text``)
  or over every position after BOS (``text``). ``ablate = "top"`` ablates only the ``top_k``
  previous-token and induction heads of each data set (the quick form), ranked as the headline
  ranks them (``_ranking``).

One cell per model and data set; its table ``heads`` has one row per head (scores, the clean
loss, and Δ own / future / full, null for heads not ablated). The headline (``_summary``) takes
the top heads of each role from it.
"""

from __future__ import annotations

import torch

from ...data import read_text
from ...interp import decoder_layers, head_geometry
from ...models import check_spec
from .._base import Cell, CellContext, Experiment, Tables, slug
from ._ablation import MODES, clean_run, mean_z, role_losses
from ._data import sequences
from ._ranking import top_of_scores
from ._report import report
from ._scores import attention_patterns, head_scores
from ._spec import QUICK, HeadRolesSpec
from ._summary import HeadRolesSummary, summarize


class HeadRoles(Experiment):
    spec_cls = HeadRolesSpec
    summary_cls = HeadRolesSummary
    about = "previous-token / induction scores and own- vs future-position usefulness of every head (seeds/003)"
    quick = QUICK
    quick_order = 70
    takes_gradients = True  # float32 whatever --dtype says

    def check(self, spec: HeadRolesSpec) -> None:
        for m in spec.models:
            check_spec(m)
        if {"text", "repeated-text"} & set(spec.data) or spec.repeat_tokens == "text":
            read_text(spec.text)

    def cells(self, spec: HeadRolesSpec) -> list[Cell]:
        return [Cell(id=f"{slug(m)}__{d}", model=m, params={"data": d}) for m in spec.models for d in spec.data]

    def run_cell(self, cell: Cell, spec: HeadRolesSpec, ctx: CellContext) -> Tables:
        lm = ctx.white_box(cell.model, self.name)
        model, data = lm.model, cell.params["data"]
        ids, scored = sequences(lm.tokenizer, model, spec, data)
        ids = ids.to(lm.device)  # (N, T)
        n_layers = len(decoder_layers(model))
        n_heads, _ = head_geometry(model)

        ctx.progress(0, total=1 + (n_layers if spec.causal else 0), note="attention patterns")
        scores = head_scores(
            attention_patterns(model, ids), ids, exclude_bos=spec.exclude_bos,
            exclude_current_token=spec.exclude_current_token,
        )  # {score name: (L, H)}

        ctx.progress(1, note="ablations")
        clean = clean_run(model, ids)
        base = clean["losses"][:, scored].mean().item()
        chosen = _heads_to_ablate(scores, spec, n_layers, n_heads)
        rows = []
        for layer in range(n_layers):
            heads = [h for h in range(n_heads) if (layer, h) in chosen]
            deltas = _ablate(model, ids, clean, layer, heads, spec.ablation, scored, base) if heads else {}
            if spec.causal:
                ctx.progress(1, note=f"ablations, layer {layer + 1}/{n_layers}")
            for h in range(n_heads):
                rows.append(
                    {
                        "model": cell.model, "data": data, "layer": layer, "head": h,
                        **{name: float(s[layer, h]) for name, s in scores.items()},
                        "clean_loss": base,
                        **{f"d_{mode}": (deltas[h][mode] if h in deltas else None) for mode in MODES},
                    }
                )
        return {"heads": rows}

    def summarize(self, tables: Tables, spec: HeadRolesSpec) -> HeadRolesSummary:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: HeadRolesSpec, summary: HeadRolesSummary, section) -> None:
        report(tables, spec, summary, section)


def _heads_to_ablate(scores: dict, spec: HeadRolesSpec, n_layers: int, n_heads: int) -> set[tuple[int, int]]:
    """(layer, head) of the heads whose own/future/full ablations the cell runs."""
    if not spec.causal:
        return set()
    if spec.ablate == "all":
        return {(layer, h) for layer in range(n_layers) for h in range(n_heads)}
    return top_of_scores(scores, spec.top_k)


def _ablate(model, ids, clean, layer: int, heads: list[int], ablation: str, scored: slice, base: float):
    """{head: {mode: mean loss over the scored positions − the clean loss}} for ``heads`` of ``layer``."""
    value = mean_z(clean, layer)  # (H, hd)
    if ablation == "zero":
        value = torch.zeros_like(value)
    losses = role_losses(model, ids, clean, layer, heads, value, scored)  # {mode: (K, N, P)}
    return {h: {mode: losses[mode][i].mean().item() - base for mode in MODES} for i, h in enumerate(heads)}
