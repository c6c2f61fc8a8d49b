"""``head-roles``: is a previous-token head useful at its own position, or for later ones?

The claim of ``seeds/003``: a previous-token head is not very useful for predicting the token at
its own position; it prepares activations that an induction head reads from a later position.
For every head of each model, on up to three data sets (``repeat``: BOS + n random tokens
repeated once, where induction is the only way to predict the second copy; ``text``: windows of
a text; ``repeated-text``: BOS + n tokens of the text repeated once, where copying competes with
what the text itself predicts):

- pattern scores with TransformerLens's ``detect_head`` definitions (the "mul" measure:
  attention mass on the pattern's positions / total mass, optional BOS and current-token
  exclusion; see ``_head_roles_scores``): ``previous``, ``duplicate``, ``induction``;
- the mean loss increase (nats/token) when the head's output is removed (``ablation``: its
  mean output, or zero) ``full``-y, only from its ``own`` position's stream, or only from what
  ``future`` positions read through keys/values (exact interventions, see
  ``_head_roles_ablation``). Losses are averaged over the predicted positions of the second
  copy (``repeat``, ``repeated-text``) or over every position after BOS (``text``).
  ``ablate = "top"`` ablates only the ``top_k`` previous-token and induction heads of each data
  set (the quick form).

Headline figures (``summary.json``, per model under ``models``, per data set under ``data``):
``previous``, ``duplicate``, ``induction`` (layer x head score matrices); ``top_previous`` and
``top_induction``: the ``top_k`` heads with the highest score on that data set (``heads``
as [layer, head]; previous-token heads are taken outside the last block, whose heads no later
block reads, so their Δfuture is 0 by construction), their mean ``score``, mean loss increases
``own``, ``future``, ``full`` and ``future_fraction`` = mean of Δfuture / (|Δown| + |Δfuture|)
(1: useful only to later positions, −1/… when removal helps); ``clean_loss``. The seed's claim predicts future_fraction near 1 for
previous-token heads and lower for induction heads.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from ...data import read_text, text_windows
from ...interp import decoder_layers, head_geometry
from ...models import check_spec
from .._base import Cell, CellContext, Experiment, Spec, Tables, slug, untyped_headline
from ._ablation import MODES, clean_run, mean_z, role_losses
from ._report import by_model_data, matrix, score_figure, top_group, top_heads, usefulness_figure
from ._scores import attention_patterns, head_scores


class HeadRolesSpec(Spec):
    models: list[str] = Field(default_factory=lambda: ["gemma-3-270m", "smollm2-135m-instruct"], min_length=1)
    data: list[Literal["repeat", "text", "repeated-text"]] = Field(
        default_factory=lambda: ["repeat", "text"], min_length=1
    )
    sequences: int = Field(8, ge=1, le=512, description="sequences per data set")
    repeat_len: int = Field(24, ge=2, le=1024, description="tokens repeated once (sequence 1 + 2n): repeat, repeated-text")
    repeat_tokens: Literal["vocab", "text"] = Field(
        "vocab",
        description="where repeat draws its random tokens: the whole vocabulary (no specials), or the "
        "distinct tokens of its first 64 x 64 tokens (for small lab models: unseen tokens have untrained embeddings)",
    )
    text_len: int = Field(64, ge=4, le=4096, description="tokens per text window, BOS included")
    text: str = Field("shakespeare:hamlet", description="shakespeare:PLAY or a UTF-8 file")
    ablation: Literal["mean", "zero"] = "mean"
    exclude_bos: bool = Field(False, description="detect_head's exclude_bos")
    exclude_current_token: bool = Field(False, description="detect_head's exclude_current_token")
    causal: bool = Field(True, description="run the own/future ablations (else scores only)")
    ablate: Literal["all", "top"] = Field(
        "all", description="ablate every head, or only the top_k previous-token and induction heads"
    )
    top_k: int = Field(3, ge=1, le=64, description="heads per role in the headline")


class HeadRoles(Experiment):
    spec_cls = HeadRolesSpec
    about = "previous-token / induction scores and own- vs future-position usefulness of every head (seeds/003)"
    quick = {"data": ["repeat"], "sequences": 2, "repeat_len": 8, "ablate": "top"}
    quick_order = 70

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
        ids, scored = _sequences(lm.tokenizer, model, spec, data)
        ids = ids.to(lm.device)
        n_layers = len(decoder_layers(model))
        n_heads, _ = head_geometry(model)
        ctx.progress(0, total=1 + (n_layers if spec.causal else 0), note="attention patterns")
        scores = head_scores(
            attention_patterns(model, ids), ids, exclude_bos=spec.exclude_bos,
            exclude_current_token=spec.exclude_current_token,
        )
        ctx.progress(1, note="ablations")
        clean = clean_run(model, ids)
        base = clean["losses"][:, scored].mean().item()
        chosen = _heads_to_ablate(scores, spec, n_layers, n_heads)
        rows = []
        for layer in range(n_layers):
            deltas: dict[int, dict[str, float]] = {}
            heads = [h for h in range(n_heads) if (layer, h) in chosen]
            if heads:
                value = mean_z(clean, layer) if spec.ablation == "mean" else torch.zeros_like(mean_z(clean, layer))
                losses = role_losses(model, ids, clean, layer, heads, value, scored)
                for i, h in enumerate(heads):
                    deltas[h] = {mode: losses[mode][i].mean().item() - base for mode in MODES}
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

    # -- results --------------------------------------------------------------------
    def summarize(self, tables: Tables, spec: HeadRolesSpec):
        return self.summary_cls(**self.summary_dict(tables, spec))

    def summary_dict(self, tables: Tables, spec: HeadRolesSpec) -> dict:
        out = []
        for model, per_data in by_model_data(tables["heads"]).items():
            entry: dict[str, Any] = {"model": model, "data": {}}
            for data, rows in per_data.items():
                entry["data"][data] = {
                    "clean_loss": rows[0]["clean_loss"],
                    **{name: matrix(rows, name) for name in ("previous", "duplicate", "induction")},
                    "top_previous": top_group(rows, "previous", spec.top_k),
                    "top_induction": top_group(rows, "induction", spec.top_k),
                }
            out.append(entry)
        return {"ablation": spec.ablation, "top_k": spec.top_k, "models": out}

    def summary_rows(self, summary: dict) -> tuple[list[str], list[list[Any]]]:
        header = ["model", "data", "heads", "score", "Δ own", "Δ future", "Δ full", "future fraction"]
        rows = []
        for m in summary["models"]:
            for data, d in m["data"].items():
                for role in ("previous", "induction"):
                    g = d[f"top_{role}"]
                    rows.append(
                        [
                            m["model"], data, f"{role}: " + " ".join(f"L{a}H{b}" for a, b in g["heads"]),
                            f"{g['score']:.2f}", _f(g["own"]), _f(g["future"]), _f(g["full"]), _f(g["future_fraction"], 2),
                        ]
                    )
        return header, rows

    def report(self, tables: Tables, spec: HeadRolesSpec, summary, section) -> None:
        summary = summary.model_dump()
        section.text(
            f"For the {spec.top_k} heads with the highest previous-token and induction scores on each data set: "
            "the mean score and the loss increase (nats/token) when the head's output is removed "
            f"({spec.ablation} ablation) from its own position only (Δ own), from what later positions read "
            "through keys and values only (Δ future), and everywhere (Δ full). 'future fraction' = "
            "Δfuture / (|Δown| + |Δfuture|): near 1 means the head is useful only to later positions "
            "(the seeds/003 claim for previous-token heads)."
        )
        section.table(*self.summary_rows(summary), caption="Roles of the top previous-token and induction heads")
        for model, per_data in by_model_data(tables["heads"]).items():
            for data, rows in per_data.items():
                section.figure(
                    score_figure(model, data, rows),
                    caption=f"{model} · {data}: previous-token, duplicate-token and induction scores (layer x head).",
                )
                if any(r["d_own"] is not None for r in rows):
                    section.figure(
                        usefulness_figure(model, data, rows, spec.top_k),
                        caption=f"{model} · {data}: loss increase when each head is removed from its own "
                        "position only (x) vs from what later positions read only (y); the top "
                        "previous-token and induction heads are highlighted.",
                    )


def _heads_to_ablate(scores: dict, spec: HeadRolesSpec, n_layers: int, n_heads: int) -> set[tuple[int, int]]:
    if not spec.causal:
        return set()
    if spec.ablate == "all":
        return {(layer, h) for layer in range(n_layers) for h in range(n_heads)}
    roles = ("previous", "induction")
    heads = [{"layer": layer, "head": h, **{role: float(scores[role][layer, h]) for role in roles}}
             for layer in range(n_layers) for h in range(n_heads)]
    return {(r["layer"], r["head"]) for role in roles for r in top_heads(heads, role, spec.top_k)}


def _sequences(tokenizer, model, spec: HeadRolesSpec, data: str):
    """(ids (N, T), scored positions) for a data set."""
    if data == "text":
        ids = text_windows(tokenizer, spec.text, spec.sequences, spec.text_len)
        return ids, slice(1, None)
    n = spec.repeat_len
    if data == "repeated-text":
        half = text_windows(tokenizer, spec.text, spec.sequences, n + 1)[:, -n:]  # (N, n): without the BOS
    else:
        pool = _token_pool(tokenizer, model, spec)
        g = torch.Generator().manual_seed(spec.seed)
        half = pool[torch.randint(len(pool), (spec.sequences, n), generator=g)]  # (N, n)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    first = torch.full((spec.sequences, 1), bos if bos is not None else int(half[0, 0]), dtype=torch.long)
    ids = torch.cat([first, half, half], dim=1)  # (N, 1 + 2n)
    return ids, slice(n + 1, 2 * n)  # positions that predict tokens 2..n of the second copy


def _token_pool(tokenizer, model, spec: HeadRolesSpec):
    """Token ids the random repeats draw from: the vocabulary without specials, or the text's tokens."""
    special = set(tokenizer.all_special_ids)
    if spec.repeat_tokens == "text":
        seen = torch.unique(text_windows(tokenizer, spec.text, 64, 65)).tolist()
        return torch.tensor([i for i in seen if i not in special])
    vocab = model.get_input_embeddings().weight.shape[0]
    return torch.tensor([i for i in range(min(vocab, len(tokenizer))) if i not in special])


def _f(x, digits: int = 3):
    return None if x is None else f"{x:.{digits}f}"


HeadRoles.summary_cls = untyped_headline(HeadRoles().summary_rows)  # TRANSITIONAL (issue 10)
