"""The self-training spec: the base model, the conditions, the rounds they share, the measures."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from ..._errors import UserError
from ...lab import TrainSetting, over_defaults
from ...lab.selftrain import SelfTrainConfig
from .._base import Spec


def _base_training() -> TrainSetting:
    """The base model: llama-tiny on Shakespeare with the game mixed in (64-token windows, 30% of
    them holding a transcript), 2,000 steps of batch 32, AdamW 2e-3 one-cycle (the one-cycle's
    near-zero final rate lets P(1) settle near the 50/50 of the transcripts)."""
    return TrainSetting(task={"name": "game"}, model="llama-tiny", steps=2000, batch_size=32, lr=2e-3,
                        schedule="one-cycle", eval_every=500, eval_batches=4, chunk=500)


CONDITIONS: dict[str, dict[str, Any]] = {
    "top-k": {"condition": "top-k"},
    "top-k-mix": {"condition": "top-k", "data": "mix", "mix": 0.5},
    "random-k": {"condition": "random-k"},
    "reward-k": {"condition": "reward-k", "reward": "predictability"},
    "rl": {"condition": "rl", "reward": "predictability", "beta": 0.0},
    "rl-kl": {"condition": "rl", "reward": "predictability", "beta": 1.0},
    "rl-valid": {"condition": "rl", "reward": "valid", "beta": 0.0},
}


class SelfTrainingSpec(Spec):
    base: TrainSetting = Field(default_factory=_base_training,
                               description="how the base model is trained (a lab task and model)")
    base_model: str | None = Field(None, description="a white-box model to use as the base instead of training one "
                                   "(hf:, gguf:, lab: or a bundled name); base is then ignored except base.task")
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    shared: SelfTrainConfig = Field(default_factory=SelfTrainConfig, description="the round fields every condition "
                                    "shares (its own `condition` is unused: each condition names its own)")
    conditions: dict[str, dict[str, Any]] = Field(default_factory=lambda: {k: dict(v) for k, v in CONDITIONS.items()},
                                                  min_length=1,
                                                  description="name -> SelfTrainConfig fields laid over shared")
    heldout_windows: int = Field(64, ge=1, description="held-out text windows (the task's eval windows) for "
                                 "cross-entropy, entropy, ECE")
    heldout_prompts: int = Field(32, ge=1, description="held-out prompts the model's own samples are drawn from")
    prompt_tokens: int = Field(16, ge=1)
    sample_tokens: int = Field(32, ge=2)
    game_samples: int = Field(200, ge=0, description="sampled answers per game variant per round (the check of the "
                              "exact figures)")
    degenerate: str = Field(" a", min_length=1, description="the unit repeated into the degenerate continuation")
    play_tolerance: float = Field(0.1, gt=0, lt=0.5, description="the base plays the game when P(1) and P(0-branch) "
                                  "are each within this of 0.5, in each variant")
    scale_models: list[str] = Field(default_factory=lambda: ["gemma-3-270m", "smollm2-135m-instruct"],
                                    description="models whose text measures sit beside the lab's for scale (the "
                                    "bundled base-vs-tuned pair)")
    examples: int = Field(4, ge=0, le=32, description="sample texts kept per round, condition and seed")
    threads: int = Field(1, ge=1, description="torch threads")

    @field_validator("base", mode="before")
    @classmethod
    def _base_over_defaults(cls, v: Any) -> Any:
        return over_defaults(_base_training, v)

    @field_validator("conditions")
    @classmethod
    def _names(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        bad = [n for n in v if not n or not all(c.isalnum() or c in "-_" for c in n)]
        if bad:
            raise ValueError(f"condition name {bad[0]!r}: use letters, digits, - and _")
        return v

    @model_validator(mode="after")
    def _conditions_valid(self):
        if self.base.task.get("name", "game") != "game":
            raise ValueError(f"base.task must be the game task (name = \"game\"), got {self.base.task.get('name')!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        for name in self.conditions:
            self.condition_config(name)
        return self

    def condition_config(self, name: str) -> SelfTrainConfig:
        """The condition's full config: its fields laid over ``shared`` (one-line errors)."""
        fields = {**self.shared.model_dump(), **self.conditions[name]}
        try:
            return SelfTrainConfig(**fields)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "fields"
            raise UserError(f"condition {name!r}: {where}: {err['msg']} (got {err.get('input')!r})") from None
        except UserError as e:
            raise UserError(f"condition {name!r}: {e}") from None


QUICK: dict[str, Any] = {
    "base.steps": 250,
    "base.batch_size": 16,
    "base.chunk": 0,
    "base.eval_every": 0,
    "base.eval_batches": 1,
    "seeds": [0],
    "shared.rounds": 2,
    "shared.K": 4,
    "shared.k": 1,
    "shared.text_prompts": 8,
    "shared.game_prompts": 2,
    "shared.steps": 8,
    "shared.batch_size": 16,
    "shared.rl_updates": 2,
    "shared.completion_tokens": 16,
    "conditions": {"top-k": {"condition": "top-k"}, "random-k": {"condition": "random-k"},
                   "rl": {"condition": "rl", "reward": "predictability"}},
    "heldout_windows": 8,
    "heldout_prompts": 8,
    "sample_tokens": 16,
    "game_samples": 32,
    "scale_models": [],
}
