"""The myopia-gap spec: which settings run, each a task x model x budget trained under a list of
objectives and seeds; the quick-suite overrides."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ..._errors import UserError
from ...lab import TrainSetting, over_defaults
from ...objectives import get_objective
from .._base import Spec

SETTINGS = ("precache", "shakespeare", "pretrained")


class GapSetting(TrainSetting):
    """One task x model x budget, trained under each objective with each seed."""

    objectives: list[str] = Field(default_factory=lambda: ["ntp", "myopic", "bigram"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    keep_weights: bool = Field(True, description="keep each cell's trained model (lab:DIR) in the run's work/")

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        for name in v:
            try:
                get_objective(name)
            except UserError as e:
                raise ValueError(str(e)) from None
        if len(set(v)) != len(v):
            raise ValueError("objectives are listed twice")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or min(v) < 0:
            raise ValueError("seeds must be distinct non-negative integers")
        return v


def _precache() -> GapSetting:
    return GapSetting()  # DESIGN.md's CPU setting: K=6, sin(2x), p=1, length 32, llama-tiny, 1,500 steps


def _shakespeare() -> GapSetting:
    return GapSetting(
        task={"name": "shakespeare", "seq_len": 64},
        steps=1000,
        batch_size=16,
        eval_every=100,
        eval_batches=8,
    )


def _pretrained() -> GapSetting:
    return GapSetting(
        task={"name": "shakespeare", "seq_len": 64},
        model="gemma-3-270m",
        objectives=["ntp", "myopic"],
        seeds=[0],
        steps=40,
        batch_size=8,
        lr=2e-5,
        schedule="cosine",
        eval_every=10,
        eval_batches=2,
        chunk=0,
        keep_weights=False,
        train={"warmup_steps": 4},
    )


_DEFAULTS = {"precache": _precache, "shakespeare": _shakespeare, "pretrained": _pretrained}


class MyopiaGapSpec(Spec):
    settings: list[str] = Field(default_factory=lambda: list(SETTINGS), min_length=1)
    precache: GapSetting = Field(default_factory=_precache)
    shakespeare: GapSetting = Field(default_factory=_shakespeare)
    pretrained: GapSetting = Field(default_factory=_pretrained)
    threads: int = Field(
        1, ge=1, description="torch threads per training (DESIGN.md: one is fastest on 2 shared cores)"
    )

    @field_validator("precache", "shakespeare", "pretrained", mode="before")
    @classmethod
    def _over_defaults(cls, v: Any, info) -> Any:
        """A partial table (``--set pretrained.steps=10``) overrides that setting's own defaults."""
        return over_defaults(_DEFAULTS[info.field_name], v)

    @field_validator("settings")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in SETTINGS]
        if bad:
            raise ValueError(f"unknown setting(s) {', '.join(bad)}; accepted: {', '.join(SETTINGS)}")
        return v

    def setting(self, name: str) -> GapSetting:
        return getattr(self, name)


QUICK = {  # the precache finding in ~2.5 min on 2 idle cores (800 steps: vanilla 0.020, myopic 0.88)
    "settings": ["precache"],
    "precache.seeds": [0, 1],
    "precache.objectives": ["ntp", "myopic"],
    "precache.steps": 800,
}
