"""A training setting that experiments embed in their specs: a task x model x budget trained by
:func:`myopia.lab.train` inside a cell, resumably, in the cell's work directory.

``myopia-gap`` trains one per objective and seed; ``future-lens`` trains the models it probes
(``trained:OBJECTIVE``); new experiments that train lab models use the same pieces.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._errors import UserError
from ._checkpoint import latest_checkpoint
from ._config import TrainConfig, validate
from ._train import TrainResult, train


class TrainSetting(BaseModel):
    """A task x model x budget for :func:`myopia.lab.train`; ``model`` is a lab preset or a
    pretrained model to fine-tune."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    task: dict[str, Any] = Field(default_factory=lambda: {"name": "precache"}, description="a lab task config")
    model: str = Field("llama-tiny", description="a lab preset, or a pretrained model to fine-tune")
    model_overrides: dict[str, Any] = Field(
        default_factory=dict, description="lab ModelSpec fields (n_layer, d_model, ...)"
    )
    steps: int = Field(1500, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    schedule: str = "one-cycle"
    eval_every: int = Field(100, ge=0)
    eval_batches: int = Field(4, ge=1)
    chunk: int = Field(500, ge=0, description="steps per resumable chunk (a checkpoint after each); 0 = one go")
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: the run's --device (train_device)
    train: dict[str, Any] = Field(default_factory=dict, description="other lab TrainConfig fields (warmup_steps, ...)")

    @model_validator(mode="after")
    def _valid_lab_config(self):
        try:
            train_config(self, getattr(self, "objectives", ["ntp"])[0], 0, None, None)
        except UserError as e:
            raise ValueError(str(e)) from None
        return self


def over_defaults(default_factory, value: Any) -> Any:
    """``value`` (a dict of some fields) laid over the fields of ``default_factory()``: a partial
    table (``--set pretrained.steps=10``) overrides that setting's own defaults."""
    if not isinstance(value, dict):
        return value
    base = default_factory().model_dump()
    return {**base, **value}


def train_device(setting: TrainSetting, run_device: str | None) -> str:
    """Where a cell trains: the setting's ``device`` when it names one, else (``auto``) the run's
    device (``--device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``; None: ``auto``)."""
    return setting.device if setting.device != "auto" or run_device is None else run_device


def train_config(
    setting: TrainSetting, objective: str, seed: int, out: Path | None, threads: int | None,
    device: str | None = None,
) -> TrainConfig:
    """The lab's :class:`TrainConfig` for one cell (a ``UserError`` if the setting is invalid);
    ``device``: the run's, used where the setting leaves its own at ``auto``."""
    data: dict[str, Any] = dict(setting.train)
    data.update(
        task=dict(setting.task),
        objective=objective,
        model={"name": setting.model, **setting.model_overrides},
        seed=seed,
        steps=setting.steps,
        batch_size=setting.batch_size,
        lr=setting.lr,
        schedule=setting.schedule,
        eval_every=setting.eval_every,
        eval_batches=setting.eval_batches,
        checkpoint_every=0,  # chunks are the checkpoints
        keep_checkpoints=1,
        progress=False,
        threads=threads,
        device=train_device(setting, device),
    )
    if out is not None:
        data["out"] = str(out)
    return validate(data)


def train_cell(
    setting: TrainSetting, objective: str, seed: int, work_dir: Path, threads: int | None, progress,
    device: str | None = None,
) -> tuple[TrainConfig, TrainResult]:
    """Train (or resume, or find finished) one cell's model in ``work_dir/train``, in chunks of
    ``setting.chunk`` steps (a checkpoint after each, so an interrupted cell resumes from its last
    chunk; the lab's resume is exact on CPU). ``device``: the run's (:attr:`CellContext.device`),
    where the setting's ``device`` is ``auto``; the returned config's ``device`` is where it trained
    (load the trained model there). Returns (TrainConfig, TrainResult)."""
    out = Path(work_dir) / "train"
    cfg = train_config(setting, objective, seed, out, threads, device)
    chunk = setting.chunk or cfg.steps
    done = 0
    if (out / "result.json").exists():
        done = cfg.steps
    elif latest_checkpoint(out) is not None:
        done = int(json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())["step"])
    progress(0, total=cfg.steps, note=f"{objective} s{seed}")
    progress(done)
    wall = 0.0
    while True:
        result = train(cfg, stop_after=chunk)
        wall += result.wall_s
        progress(result.steps - done, note=f"{objective} s{seed}: loss {result.loss:.3g}")
        done = result.steps
        if result.steps >= cfg.steps:
            break
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the final checkpoint is in `out`
    result.wall_s = wall  # this call's training time (all chunks it ran)
    return cfg, result
