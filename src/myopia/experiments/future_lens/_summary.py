"""The future-lens headline (``summary.json``): per model, offset and reader the best layer (top-1
accuracy and cross-entropy on the held-out text) against the baselines, the best reader, and the
vanilla - myopic difference of the lab models per reader; from the merged tables alone."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .._base import Headline, Sparse, TableRow, Tables
from ._spec import METHODS, FutureLensSpec


class MethodFigures(BaseModel):
    """One reader at one model and offset N: its best layer. Accuracies are top-1 over the kept
    tokens (a target outside them is a miss; a full-vocabulary reader's prediction is its most
    probable kept token); cross-entropies in nats over the kept tokens + 'other'."""

    model_config = ConfigDict(extra="forbid")

    best_layer: int = Field(description="the layer (0 = embeddings) where this reader is most accurate")
    best_accuracy: float = Field(description="its held-out accuracy there")
    best_cross_entropy: float = Field(description="the lowest held-out cross-entropy of any layer for this reader")
    beats_bigram: bool | None = Field(description="best_accuracy > the bigram baseline's accuracy")


class OffsetFigures(BaseModel):
    """One model and offset N: every reader's best layer, the best reader, the baselines."""

    model_config = ConfigDict(extra="forbid")

    methods: dict[str, MethodFigures] = Field(description="reader -> its figures for t+N (weakest reader first)")
    best_method: str = Field(description="the reader with the highest best_accuracy (the first of a tie)")
    unigram_accuracy: float | None = Field(description="always predicting the most frequent token")
    bigram_accuracy: float | None = Field(description="the token at t+N from the token at t, by counts")
    bigram_cross_entropy: float | None


class ModelFigures(BaseModel):
    """One model's figures."""

    model_config = ConfigDict(extra="forbid")

    offsets: dict[str, OffsetFigures] = Field(description="N ('1', '2', ...) -> the figures for t+N")
    model_accuracy: float | None = Field(description="the model's own next-token top-1 accuracy (t+1)")
    model_cross_entropy: float | None = Field(description="its cross-entropy, collapsed onto the same classes")
    coverage_eval: float | None = Field(description="share of held-out targets among the kept tokens: the ceiling")
    eval_tokens: int | None = Field(description="held-out positions scored")


class LensRow(TableRow):
    """One model and offset: each reader's best accuracy (a dash where it did not run)."""

    model: str
    offset: str = Field(title="offset", description="t+N")
    linear: float | None = Field(title="linear")
    future_state: float | None = Field(title="future-state")
    transplant: float | None = Field(title="transplant")
    learned_prompt: float | None = Field(title="learned-prompt")
    best: str = Field(title="best (layer)")
    bigram_acc: float | None = Field(title="bigram")
    unigram_acc: float | None = Field(title="unigram")
    model_acc: float | None = Field(title="model", description="the model's own, at t+1 only")


class FutureLensHeadline(Headline, Sparse):
    models: dict[str, ModelFigures] = Field(description="model spec -> its figures, in the spec's order")
    text: str = Field(description="the text read")
    vocab: int = Field(description="kept tokens (the output space is these + 'other')")
    vanilla_minus_myopic: dict[str, dict[str, float]] | None = Field(
        None,
        description="reader -> N -> best accuracy of trained:ntp minus trained:myopic; "
        "present only when both models ran",
    )

    def rows(self) -> list[LensRow]:
        rows = []
        for m, s in self.models.items():
            for n, o in s.offsets.items():
                acc = {k: f.best_accuracy for k, f in o.methods.items()}
                best = o.methods[o.best_method]
                rows.append(LensRow(
                    model=m,
                    offset=f"t+{n}",
                    linear=acc.get("linear"),
                    future_state=acc.get("future-state"),
                    transplant=acc.get("transplant"),
                    learned_prompt=acc.get("learned-prompt"),
                    best=f"{o.best_method} ({best.best_layer})",
                    bigram_acc=o.bigram_accuracy,
                    unigram_acc=o.unigram_accuracy,
                    model_acc=s.model_accuracy if n == "1" else None,
                ))
        return rows


def summarize(tables: Tables, spec: FutureLensSpec) -> FutureLensHeadline:
    models = {}
    for m in spec.models:
        probes = [r for r in tables.get("probes", []) if r["model"] == m]
        if probes:
            models[m] = _model(m, probes, tables)
    headline = FutureLensHeadline(models=models, text=spec.text, vocab=spec.vocab)
    v, my = models.get("trained:ntp"), models.get("trained:myopic")
    if v and my:
        headline.vanilla_minus_myopic = {
            method: {
                n: v.offsets[n].methods[method].best_accuracy - my.offsets[n].methods[method].best_accuracy
                for n in v.offsets
                if n in my.offsets and method in v.offsets[n].methods and method in my.offsets[n].methods
            }
            for method in _methods(v)
            if method in _methods(my)
        }
    return headline


def _methods(figures: ModelFigures) -> list[str]:
    return list(next(iter(figures.offsets.values())).methods) if figures.offsets else []


def method_of(row: dict) -> str:
    """A probes record's reader (runs made before there were several are the linear probe's)."""
    return row.get("method") or "linear"


def _model(m: str, probes: list[dict], tables: Tables) -> ModelFigures:
    base = {(r["offset"], r["kind"]): r for r in tables.get("baselines", []) if r["model"] == m}
    present = {method_of(r) for r in probes}
    order = [k for k in METHODS if k in present]
    offsets = {}
    for n in sorted({r["offset"] for r in probes}):
        big = base.get((n, "bigram"), {})
        methods = {}
        for method in order:
            at_n = [r for r in probes if r["offset"] == n and method_of(r) == method]
            if not at_n:
                continue
            best = max(at_n, key=lambda r: r["accuracy"])
            methods[method] = MethodFigures(
                best_layer=best["layer"],
                best_accuracy=best["accuracy"],
                best_cross_entropy=min(r["cross_entropy"] for r in at_n),
                beats_bigram=None if not big else best["accuracy"] > big["accuracy"],
            )
        offsets[str(n)] = OffsetFigures(
            methods=methods,
            best_method=max(methods, key=lambda k: methods[k].best_accuracy),
            unigram_accuracy=base.get((n, "unigram"), {}).get("accuracy"),
            bigram_accuracy=big.get("accuracy"),
            bigram_cross_entropy=big.get("cross_entropy"),
        )
    own = base.get((1, "model"), {})
    info = next((r for r in tables.get("info", []) if r["model"] == m), {})
    return ModelFigures(
        offsets=offsets,
        model_accuracy=own.get("accuracy"),
        model_cross_entropy=own.get("cross_entropy"),
        coverage_eval=info.get("coverage_eval"),
        eval_tokens=info.get("eval_tokens"),
    )
