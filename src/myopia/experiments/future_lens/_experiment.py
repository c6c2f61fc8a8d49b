"""``future-lens``: does the hidden state at t already encode the tokens at t+1, t+2, t+3?

"Myopic perception" (DESIGN.md), measured the linear-probe way of Pal et al. 2023 ("Future
Lens"): for every chosen layer l and offset N = 1..K, a linear probe from the frozen model's
residual stream at (l, t) to the token at t+N, trained on the first part of a text and
evaluated on the rest. Against:

- ``unigram``: the most frequent token (cross-entropy: smoothed frequencies);
- ``bigram``: the token at t+N predicted from the token at t alone, by counts on the same
  training text (a skip-bigram for N > 1): what the present token tells without any model;
- ``model``: the model's own next-token distribution (N = 1 only).

Output space (documented in the report): the ``vocab`` most frequent tokens of the training
text plus one "other" class; a target outside them is always a miss; cross-entropy is over
these vocab + 1 classes, the model's distribution collapsed onto them. Probes: one linear map
per layer for all offsets at once, features standardised, minibatch AdamW with cosine decay,
biases started at the log-frequencies.

Models: any white-box spec, plus ``trained:OBJECTIVE`` (e.g. ``trained:ntp``,
``trained:myopic``): a lab model trained in the cell under ``train`` with that objective
(resumable), so vanilla and myopic models of identical shape and budget are compared.

Headline figures (``summary.json``): ``models[MODEL]`` with ``offsets[N]`` =
``{best_layer, best_accuracy, best_cross_entropy, unigram_accuracy, bigram_accuracy,
bigram_cross_entropy, beats_bigram}`` and ``model_accuracy`` (own next-token top-1);
``vanilla_minus_myopic[N]``: best probe accuracy of ``trained:ntp`` minus ``trained:myopic``
(when both ran).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator

from ..._errors import UserError
from ...data import read_text
from ...lab import TrainSetting, over_defaults, train_cell
from ...models import check_spec, load_hf_model
from ...objectives import get_objective
from .._base import Cell, CellContext, Experiment, Spec, Tables, slug, untyped_headline
from ._cell import probe_model
from ._report import accuracy_figure

TRAINED = "trained:"


def _lens_training() -> TrainSetting:
    return TrainSetting(
        task={"name": "shakespeare", "seq_len": 128},
        model="llama-0.5m",
        steps=1500,
        batch_size=16,
        eval_every=250,
        eval_batches=4,
    )


class FutureLensSpec(Spec):
    models: list[str] = Field(
        default_factory=lambda: ["trained:ntp", "trained:myopic", "gemma-3-270m", "smollm2-135m-instruct"], min_length=1
    )
    train: TrainSetting = Field(default_factory=_lens_training, description="how trained:OBJECTIVE models are trained")
    text: str = Field("shakespeare:hamlet", description="shakespeare:PLAY or a UTF-8 file (hamlet is held out of the lab's shakespeare task)")
    train_fraction: float = Field(0.8, gt=0, lt=1, description="share of the text (by characters) the probes are fit on")
    max_train_tokens: int = Field(16384, ge=64)
    max_eval_tokens: int = Field(4096, ge=16)
    offsets: int = Field(3, ge=1, le=16, description="K: probe the tokens at t+1 .. t+K")
    vocab: int = Field(512, ge=2, description="probe output: the most frequent tokens of the training text + 'other'")
    max_layers: int = Field(10, ge=1, description="probe at most this many layers (evenly spaced, first and last kept)")
    context: int = Field(128, ge=2, description="tokens per window the text is run in")
    probe_epochs: int = Field(10, ge=1)
    probe_batch: int = Field(512, ge=1)
    probe_lr: float = Field(1e-2, gt=0)
    probe_weight_decay: float = Field(1e-2, ge=0)
    threads: int = Field(1, ge=1, description="torch threads")

    @field_validator("train", mode="before")
    @classmethod
    def _over_defaults(cls, v: Any) -> Any:
        return over_defaults(_lens_training, v)

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        for m in v:
            if m.startswith(TRAINED):
                try:
                    get_objective(m[len(TRAINED) :])
                except UserError as e:
                    raise ValueError(f"{m}: {e}") from None
        if len(set(v)) != len(v):
            raise ValueError("a model is listed twice")
        return v


class FutureLens(Experiment):
    spec_cls = FutureLensSpec
    about = "linear probes from the hidden state at t to the tokens at t+1..t+K, by layer (Future Lens)"
    quick = {
        "models": ["trained:ntp", "trained:myopic"],
        "train.model": "llama-tiny",
        "train.task": {"name": "shakespeare", "seq_len": 64},
        "train.steps": 300,
        "max_train_tokens": 6000,
        "max_eval_tokens": 2000,
        "vocab": 256,
    }
    quick_order = 60

    def check(self, spec: FutureLensSpec) -> None:
        read_text(spec.text)
        for m in spec.models:
            if not m.startswith(TRAINED):
                check_spec(m)

    def cells(self, spec: FutureLensSpec) -> list[Cell]:
        return [
            Cell(id=slug(m), model=None if m.startswith(TRAINED) else m, params={"model": m}) for m in spec.models
        ]

    def run_cell(self, cell: Cell, spec: FutureLensSpec, ctx: CellContext) -> Tables:
        torch.set_num_threads(spec.threads)
        name = cell.params["model"]
        if name.startswith(TRAINED):
            _, result = train_cell(spec.train, name[len(TRAINED) :], spec.seed, ctx.work_dir, spec.threads, ctx.progress)
            model, tokenizer = load_hf_model(f"lab:{result.out_dir}")
        else:
            lm = ctx.white_box(name, self.name)
            model, tokenizer = lm.model, lm.tokenizer
        tables = probe_model(model.eval(), tokenizer, name, spec, ctx.progress)
        if name.startswith(TRAINED):  # reusable elsewhere as lab:DIR
            tables["info"][0]["checkpoint"] = result.out_dir
        return tables

    # -- results ------------------------------------------------------------------------
    def summarize(self, tables: Tables, spec: FutureLensSpec):
        return self.summary_cls(**self.summary_dict(tables, spec))

    def summary_dict(self, tables: Tables, spec: FutureLensSpec) -> dict:
        models: dict[str, Any] = {}
        for m in spec.models:
            probes = [r for r in tables.get("probes", []) if r["model"] == m]
            if not probes:
                continue
            base = {(r["offset"], r["kind"]): r for r in tables.get("baselines", []) if r["model"] == m}
            offsets = {}
            for n in sorted({r["offset"] for r in probes}):
                best = max((r for r in probes if r["offset"] == n), key=lambda r: r["accuracy"])
                big = base.get((n, "bigram"), {})
                offsets[str(n)] = {
                    "best_layer": best["layer"],
                    "best_accuracy": best["accuracy"],
                    "best_cross_entropy": min(r["cross_entropy"] for r in probes if r["offset"] == n),
                    "unigram_accuracy": base.get((n, "unigram"), {}).get("accuracy"),
                    "bigram_accuracy": big.get("accuracy"),
                    "bigram_cross_entropy": big.get("cross_entropy"),
                    "beats_bigram": None if not big else best["accuracy"] > big["accuracy"],
                }
            own = base.get((1, "model"), {})
            info = next((r for r in tables.get("info", []) if r["model"] == m), {})
            models[m] = {
                "offsets": offsets,
                "model_accuracy": own.get("accuracy"),
                "model_cross_entropy": own.get("cross_entropy"),
                "coverage_eval": info.get("coverage_eval"),
                "eval_tokens": info.get("eval_tokens"),
            }
        out: dict[str, Any] = {"models": models, "text": spec.text, "vocab": spec.vocab}
        v, my = models.get("trained:ntp"), models.get("trained:myopic")
        if v and my:
            out["vanilla_minus_myopic"] = {
                n: v["offsets"][n]["best_accuracy"] - my["offsets"][n]["best_accuracy"]
                for n in v["offsets"]
                if n in my["offsets"]
            }
        return out

    def summary_rows(self, summary: dict) -> tuple[list[str], list[list[Any]]]:
        header = ["model", "offset", "best layer", "probe acc", "probe CE", "bigram acc", "unigram acc", "model acc"]
        rows = []
        for m, s in summary.get("models", {}).items():
            for n, o in s["offsets"].items():
                rows.append([m, f"t+{n}", o["best_layer"], o["best_accuracy"], o["best_cross_entropy"],
                             o["bigram_accuracy"], o["unigram_accuracy"], s["model_accuracy"] if n == "1" else ""])
        return header, rows

    def report(self, tables: Tables, spec: FutureLensSpec, summary, section) -> None:
        summary = summary.model_dump()
        section.text(
            f"Linear probes from the residual stream at (layer, t) to the token at t+N, fit on the first "
            f"{spec.train_fraction:.0%} of {spec.text} (at most {spec.max_train_tokens} tokens) and evaluated on "
            f"the rest (at most {spec.max_eval_tokens}). Output space: the {spec.vocab} most frequent tokens of the "
            "training part plus one 'other' class; a target outside them always counts as a miss, and "
            "cross-entropy (nats) is over those classes (the model's own distribution collapsed onto them). "
            "bigram: the token at t+N from the token at t by counts on the same training text; unigram: the most "
            "frequent token; model: the model's own next-token prediction (N=1). trained:OBJ = a lab model "
            f"trained here ({spec.train.model} on {spec.train.task.get('name')}, {spec.train.steps} steps) with that "
            "objective. Layer 0 = the embeddings."
        )
        section.table(*self.summary_rows(summary), caption="Best probe per model and offset (top-1 accuracy on held-out text)")
        if "vanilla_minus_myopic" in summary:
            section.table(
                ["offset", "vanilla − myopic (best probe accuracy)"],
                [[f"t+{n}", d] for n, d in summary["vanilla_minus_myopic"].items()],
                caption="Do vanilla models encode more of the future than myopic ones?",
            )
        if tables.get("probes"):
            section.figure(
                accuracy_figure(tables["probes"], tables.get("baselines", []), spec.models),
                caption="Probe accuracy by layer, one line per offset; dashed: bigram baseline of that offset, "
                "dotted grey: unigram, black: the model's own next-token accuracy",
            )
        info = tables.get("info", [])
        if info:
            section.table(
                ["model", "layers", "d", "probed", "train tok", "eval tok", "coverage (eval)", "seconds"],
                [[r["model"], r["n_layers"], r["d_model"], r["layers_probed"], r["train_tokens"], r["eval_tokens"],
                  r["coverage_eval"], round(r["seconds"])] for r in info],
                caption="Models and data: coverage = share of eval targets inside the kept tokens (the ceiling of "
                "every accuracy); seconds = hidden states + probes (without training)",
            )


FutureLens.summary_cls = untyped_headline(FutureLens().summary_rows)  # TRANSITIONAL (issue 10)
