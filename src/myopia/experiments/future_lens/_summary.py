"""The future-lens headline (``summary.json``): per model and offset the best probe (top-1
accuracy and cross-entropy on the held-out text) against the baselines, and the vanilla - myopic
difference of the lab models; from the merged tables alone."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .._base import Headline, Sparse, TableRow, Tables
from ._spec import FutureLensSpec


class OffsetFigures(BaseModel):
    """One model and offset N: the best layer's probe and the baselines for the token at t+N.
    Accuracies are top-1 over the kept tokens (a target outside them is a miss); cross-entropies
    in nats over the kept tokens + 'other'."""

    model_config = ConfigDict(extra="forbid")

    best_layer: int = Field(description="the layer (0 = embeddings) whose probe is most accurate")
    best_accuracy: float = Field(description="that probe's held-out accuracy")
    best_cross_entropy: float = Field(description="the lowest held-out cross-entropy of any layer's probe")
    unigram_accuracy: float | None = Field(description="always predicting the most frequent token")
    bigram_accuracy: float | None = Field(description="the token at t+N from the token at t, by counts")
    bigram_cross_entropy: float | None
    beats_bigram: bool | None = Field(description="best_accuracy > bigram_accuracy")


class ModelFigures(BaseModel):
    """One model's figures."""

    model_config = ConfigDict(extra="forbid")

    offsets: dict[str, OffsetFigures] = Field(description="N ('1', '2', ...) -> the figures for t+N")
    model_accuracy: float | None = Field(description="the model's own next-token top-1 accuracy (t+1)")
    model_cross_entropy: float | None = Field(description="its cross-entropy, collapsed onto the same classes")
    coverage_eval: float | None = Field(description="share of held-out targets among the kept tokens: the ceiling")
    eval_tokens: int | None = Field(description="held-out positions scored")


class LensRow(TableRow):
    model: str
    offset: str = Field(title="offset", description="t+N")
    best_layer: int = Field(title="best layer")
    probe_acc: float = Field(title="probe acc")
    probe_ce: float = Field(title="probe CE")
    bigram_acc: float | None = Field(title="bigram acc")
    unigram_acc: float | None = Field(title="unigram acc")
    model_acc: float | None = Field(title="model acc", description="the model's own, at t+1 only")


class FutureLensHeadline(Headline, Sparse):
    models: dict[str, ModelFigures] = Field(description="model spec -> its figures, in the spec's order")
    text: str = Field(description="the text read")
    vocab: int = Field(description="kept tokens (the output space is these + 'other')")
    vanilla_minus_myopic: dict[str, float] | None = Field(
        None,
        description="N -> best probe accuracy of trained:ntp minus trained:myopic; "
        "present only when both models ran",
    )

    def rows(self) -> list[LensRow]:
        return [
            LensRow(
                model=m,
                offset=f"t+{n}",
                best_layer=o.best_layer,
                probe_acc=o.best_accuracy,
                probe_ce=o.best_cross_entropy,
                bigram_acc=o.bigram_accuracy,
                unigram_acc=o.unigram_accuracy,
                model_acc=s.model_accuracy if n == "1" else None,
            )
            for m, s in self.models.items()
            for n, o in s.offsets.items()
        ]


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
            n: v.offsets[n].best_accuracy - my.offsets[n].best_accuracy for n in v.offsets if n in my.offsets
        }
    return headline


def _model(m: str, probes: list[dict], tables: Tables) -> ModelFigures:
    base = {(r["offset"], r["kind"]): r for r in tables.get("baselines", []) if r["model"] == m}
    offsets = {}
    for n in sorted({r["offset"] for r in probes}):
        at_n = [r for r in probes if r["offset"] == n]
        best = max(at_n, key=lambda r: r["accuracy"])
        big = base.get((n, "bigram"), {})
        offsets[str(n)] = OffsetFigures(
            best_layer=best["layer"],
            best_accuracy=best["accuracy"],
            best_cross_entropy=min(r["cross_entropy"] for r in at_n),
            unigram_accuracy=base.get((n, "unigram"), {}).get("accuracy"),
            bigram_accuracy=big.get("accuracy"),
            bigram_cross_entropy=big.get("cross_entropy"),
            beats_bigram=None if not big else best["accuracy"] > big["accuracy"],
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
