"""The future-lens spec: the models read (white-box specs or ``trained:OBJECTIVE``), the text,
the offsets and output space, the readers (``methods``) and their training budgets; the
quick-suite overrides."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ..._errors import UserError
from ...lab import TrainSetting, over_defaults
from ...objectives import get_objective
from .._base import Spec

TRAINED = "trained:"
METHODS = ("linear", "future-state", "transplant", "learned-prompt")  # the readers, weakest first


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
        default_factory=lambda: ["trained:ntp", "trained:myopic", "gemma-3-270m", "smollm2-135m-instruct"],
        min_length=1,
    )
    train: TrainSetting = Field(default_factory=_lens_training, description="how trained:OBJECTIVE models are trained")
    text: str = Field(
        "shakespeare:hamlet",
        description="shakespeare:PLAY or a UTF-8 file (hamlet is held out of the lab's shakespeare task)",
    )
    train_fraction: float = Field(
        0.8, gt=0, lt=1, description="share of the text (by characters) the probes are fit on"
    )
    max_train_tokens: int = Field(16384, ge=64)
    max_eval_tokens: int = Field(4096, ge=16)
    offsets: int = Field(3, ge=1, le=16, description="K: probe the tokens at t+1 .. t+K")
    vocab: int = Field(512, ge=2, description="probe output: the most frequent tokens of the training text + 'other'")
    max_layers: int = Field(10, ge=1, description="probe at most this many layers (evenly spaced, first and last kept)")
    layers: list[int] | None = Field(
        None, description="read exactly these layers (0 = embeddings .. L = the last block); default: max_layers"
    )
    context: int = Field(128, ge=2, description="tokens per window the text is run in")
    methods: list[str] = Field(
        default_factory=lambda: list(METHODS), min_length=1, description=f"the readers, of {', '.join(METHODS)}"
    )
    model_layers: int = Field(
        3,
        ge=1,
        description="future-state, transplant and learned-prompt read at most this many of the read layers "
        "(evenly spaced, first and last kept): they run the model's head or blocks",
    )
    probe_epochs: int = Field(10, ge=1)
    probe_batch: int = Field(512, ge=1)
    probe_lr: float = Field(1e-2, gt=0)
    probe_weight_decay: float = Field(1e-2, ge=0)
    state_epochs: int = Field(
        4, ge=0, description="future-state: passes over the training positions after the ridge start"
    )
    state_batch: int = Field(256, ge=1)
    state_lr: float = Field(3e-4, gt=0)
    transplant_context: str = Field(
        'Please go on with this text: "',
        min_length=1,
        description="transplant: the generic context whose last token takes the state (BOS first where the model "
        "has one); the learned prompt starts from it",
    )
    prompt_steps: int = Field(60, ge=0, description="learned prompt: AdamW steps per layer")
    prompt_batch: int = Field(32, ge=1)
    prompt_lr: float = Field(1e-1, gt=0, description="learned prompt: step size in units of the context vectors' RMS")
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

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        for m in v:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r}; accepted: {', '.join(METHODS)}")
        if len(set(v)) != len(v):
            raise ValueError("a method is listed twice")
        return v

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: list[int] | None) -> list[int] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("layers is empty; give at least one layer, or leave it out for max_layers")
        if min(v) < 0:
            raise ValueError(f"layer {min(v)} is negative; layers run 0 (the embeddings) .. L (the last block)")
        if len(set(v)) != len(v):
            raise ValueError("a layer is listed twice")
        return sorted(v)


QUICK = {
    "models": ["trained:ntp", "trained:myopic"],
    "train.model": "llama-tiny",
    "train.task": {"name": "shakespeare", "seq_len": 64},
    "train.steps": 300,
    "max_train_tokens": 6000,
    "max_eval_tokens": 2000,
    "vocab": 256,
    "state_epochs": 2,  # the model-running readers on smaller budgets: about +20 s a model
    "prompt_steps": 20,
}
