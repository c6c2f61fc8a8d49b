"""The typed training spec (:class:`TrainConfig`) and ``--set key=value`` overrides."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .._errors import UserError
from .._toml import parse_value, to_toml
from ..tasks import (
    AdditionConfig,
    GameConfig,
    PathStarConfig,
    PrecacheConfig,
    ShakespeareConfig,
    ShakespeareNamesConfig,
    TextConfig,
    task_config,
)
from ._presets import SHAPES, is_preset

AnyTaskConfig = Annotated[
    Union[PrecacheConfig, PathStarConfig, AdditionConfig, ShakespeareConfig, ShakespeareNamesConfig, TextConfig,
          GameConfig],
    Field(discriminator="name"),
]


class ModelSpec(BaseModel):
    """A lab preset (built from a config) or a pretrained model to fine-tune."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        "llama-tiny", description="a preset (see `presets()`), hf:NAME_OR_PATH, gguf:PATH or a bundled name"
    )
    n_layer: int | None = Field(None, ge=1, description="override the preset's layers")
    d_model: int | None = Field(None, ge=8)
    n_head: int | None = Field(None, ge=1)
    d_ff: int | None = Field(None, ge=8)
    max_len: int | None = Field(None, ge=2, description="positions; default: the task's sequence length")
    dropout: float = Field(0.0, ge=0, lt=1)


class TrainConfig(BaseModel):
    """Everything that defines a training run. The defaults are the CPU-scale precache setting
    of DESIGN.md (2-layer Llama-style d=64, batch 64, AdamW 1e-3 one-cycle, 1,500 steps)."""

    model_config = ConfigDict(extra="forbid")

    task: AnyTaskConfig = Field(default_factory=PrecacheConfig)
    objective: str = "ntp"
    model: ModelSpec = Field(default_factory=ModelSpec)
    mtp_from_trunk: bool | None = Field(
        None,
        description="mtp:n, mtp-seq:n: take the n-1 extra head (depth) layers out of the model's layers "
        "(parameter-matched to ntp; mtp-seq adds only its projections) instead of adding them; "
        "default: on for presets, off for pretrained models",
    )
    mtp_weight: float | None = Field(
        None,
        ge=0,
        description="mtp:n, mtp-seq:n: weight of each extra head's (depth's) loss; default 1, the plain sum "
        "(DeepSeek-V3: lambda/(n-1), lambda 0.3 then 0.1)",
    )
    out: str | None = Field(None, description="output folder; default runs/train-TASK-OBJECTIVE-sSEED")
    seed: int = Field(0, ge=0)

    steps: int = Field(1500, ge=1)
    batch_size: int = Field(64, ge=1, description="global batch (all ranks, all micro-batches)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per step")
    lr: float = Field(1e-3, gt=0)
    schedule: Literal["one-cycle", "cosine", "constant"] = "one-cycle"
    warmup_steps: int | None = Field(
        None, ge=0, description="default: 30% of steps (one-cycle), min(100, steps/10) (cosine)"
    )
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine: final lr / lr")
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="max global gradient norm; 0 = off")

    eval_every: int = Field(250, ge=0, description="steps between evaluations; 0 = at the end only")
    eval_batches: int = Field(4, ge=1)
    checkpoint_every: int = Field(500, ge=0, description="steps between checkpoints; 0 = at the end only")
    keep_checkpoints: int = Field(2, ge=1)

    device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto (a GPU when torch sees one), cpu, cuda, cuda:N"
    )
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="bfloat16: autocast on GPU")
    threads: int | None = Field(None, ge=1, description="torch threads; default: torch's (1 per rank under torchrun)")
    progress: bool = True

    @field_validator("task", mode="before")
    @classmethod
    def _task_by_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            return task_config(v)
        if isinstance(v, dict):
            return task_config(v.get("name", "precache"), **{k: x for k, x in v.items() if k != "name"})
        return v

    @model_validator(mode="after")
    def _batch_divides(self):
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size={self.batch_size} is not a multiple of grad_accum={self.grad_accum}")
        return self

    # ------------------------------------------------------------------------------------
    def warmup(self) -> int:
        if self.warmup_steps is not None:
            return min(self.warmup_steps, self.steps)
        if self.schedule == "one-cycle":
            return max(1, int(0.3 * self.steps))
        return min(100, self.steps // 10)

    def resolved(self) -> TrainConfig:
        """The spec as the run uses it: the output folder and ``mtp_from_trunk`` filled in."""
        return self.model_copy(update={"out": self.out_dir(), "mtp_from_trunk": _mtp_from_trunk(self)})

    def out_dir(self) -> str:
        return self.out or f"runs/train-{self.task.name}-{self.objective.replace(':', '')}-s{self.seed}"

    def to_toml(self) -> str:
        return to_toml(self.model_dump(mode="json"))


def _mtp_from_trunk(cfg: TrainConfig) -> bool | None:
    """``mtp_from_trunk`` resolved: None without mtp:n / mtp-seq:n; a preset's default on, checked
    against its layers. Also refuses ``mtp_weight`` for other objectives and mtp-seq:n on a task
    without tokens."""
    from ..objectives import MultiToken, SequentialMultiToken, get_objective
    from ..objectives._mtp import trunk_layers
    from ..tasks import TASKS

    objective = get_objective(cfg.objective)
    if not isinstance(objective, (MultiToken, SequentialMultiToken)):
        if cfg.mtp_weight is not None:
            raise UserError(f"mtp_weight applies to mtp:N and mtp-seq:N only; the objective is {cfg.objective}")
        return None
    if isinstance(objective, SequentialMultiToken) and TASKS[cfg.task.name][0].kind != "tokens":
        raise UserError(
            f"{objective.name} embeds the tokens ahead; task {cfg.task.name!r} has real-valued inputs "
            "(use path-star, addition or a text task)"
        )
    preset = is_preset(cfg.model.name)
    if cfg.mtp_from_trunk and not preset:
        raise UserError(
            f"mtp_from_trunk=true needs a preset model; {cfg.model.name} is pretrained, so its mtp heads are added"
        )
    if cfg.mtp_from_trunk is False or not preset:
        return False
    n_layer = cfg.model.n_layer or SHAPES[cfg.model.name.partition("-")[2]].n_layer
    trunk_layers(n_layer, objective.n_heads, objective.name)
    return True


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): a pure function, so resume is exact."""
    lr, n, w = cfg.lr, cfg.steps, cfg.warmup()
    if cfg.schedule == "constant":
        return lr * min(1.0, (step + 1) / w) if w else lr
    if cfg.schedule == "one-cycle":  # torch OneCycleLR (cos anneal, div 25, final div 1e4), lr only
        lo, end = lr / 25, lr / 25 / 1e4

        def cos(a: float, b: float, frac: float) -> float:
            return b + (a - b) / 2 * (1 + math.cos(math.pi * min(max(frac, 0.0), 1.0)))

        if step < w:  # phase 1 ends at step w-1 (lr at its peak), phase 2 at step n-1
            return cos(lo, lr, step / max(w - 1, 1))
        return cos(lr, end, (step - w + 1) / max(n - w, 1))
    if step < w:  # cosine: linear warm-up, then cosine decay to min_lr_ratio * lr
        return lr * (step + 1) / w
    frac = (step - w) / max(n - 1 - w, 1)
    lo = lr * cfg.min_lr_ratio
    return lo + (lr - lo) / 2 * (1 + math.cos(math.pi * min(frac, 1.0)))


# --- --set key=value --------------------------------------------------------------------
def apply_set(config: TrainConfig, assignment: str) -> TrainConfig:
    """``"train.lr=1e-3"``-style override: a dotted field path and a TOML value."""
    if "=" not in assignment:
        raise UserError(f"--set {assignment!r}: expected key=value, e.g. --set steps=200")
    path, raw = assignment.split("=", 1)
    return set_path(config, path.strip(), parse_value(raw.strip()))


def set_path(config: TrainConfig, path: str, value: Any) -> TrainConfig:
    parts = path.split(".")
    data = config.model_dump()
    obj: Any = config
    node = data
    for i, part in enumerate(parts):
        fields = list(type(obj).model_fields) if isinstance(obj, BaseModel) else []
        if part not in fields:
            where = ".".join(parts[:i]) or "the spec"
            raise UserError(f"unknown field {path!r}: {where} has no {part!r}; accepted: {', '.join(fields)}")
        if i == len(parts) - 1:
            node[part] = value
        else:
            obj, node = getattr(obj, part), node[part]
    if parts[0] == "task" and len(parts) == 2 and parts[1] == "name":  # a new task: its own defaults
        data["task"] = value
    return validate(data)


_TASK_TAGS = {
    "precache", "precache-paper", "path-star", "path-star-paper", "addition", "shakespeare", "shakespeare-names",
    "text", "game",
}  # fmt: skip


def validate(data: dict) -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"] if x not in _TASK_TAGS)  # drop the union's tag
        raise UserError(f"{where or 'spec'}: {err['msg']} (got {err.get('input')!r})") from None
