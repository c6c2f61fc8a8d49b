"""``myopia-gap`` cells: train one (setting, objective, seed) with the lab, resumably, then
measure the held-out loss by position; and the t-intervals the summary uses.

Training runs in chunks of ``setting.chunk`` steps through ``myopia.lab.train(cfg,
stop_after=...)``: the lab saves a checkpoint at the end of every chunk, so a cell that is
interrupted resumes from its last chunk (the lab's resume is exact on CPU). The per-position
loss is measured here, because the lab's evaluation keeps only the mean.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

# two-sided 95% quantiles of Student's t, df = 1..30 (beyond: the normal's 1.96 is within 2%)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("a t-interval needs at least two values")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # 2.4/df: close to the exact tail


def t_interval(values: list[float]) -> dict[str, Any]:
    """Mean and 95% t-interval over seeds: mean ± t(n-1) · sd / √n (no interval for n = 1)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(xs)
    if n == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = sum(xs) / n
    if n == 1:
        return {"mean": mean, "ci_low": None, "ci_high": None, "n": 1}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


# --- training -----------------------------------------------------------------------------
def train_config(setting, objective: str, seed: int, out: Path | None, threads: int | None):
    """The lab's :class:`TrainConfig` for one cell (a ``UserError`` if the setting is invalid)."""
    from ..lab._config import validate

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
        device=setting.device,
    )
    if out is not None:
        data["out"] = str(out)
    return validate(data)


def train_cell(setting, objective: str, seed: int, work_dir: Path, threads: int | None, progress) -> tuple[Any, Any]:
    """Train (or resume, or find finished) one cell; returns (TrainConfig, TrainResult)."""
    from ..lab import latest_checkpoint, train

    out = Path(work_dir) / "train"
    cfg = train_config(setting, objective, seed, out, threads)
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


def quiet_transformers() -> None:
    """No per-tensor loading bars from transformers inside our progress display."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# --- measuring ----------------------------------------------------------------------------
def _task_and_base(cfg, want_base: bool):
    """The task (with the tokenizer the run used) and, for a fine-tuned pretrained model, its
    per-position loss before fine-tuning (``None`` for lab presets or when not wanted)."""
    from ..lab._models import is_preset
    from ..tasks import task_from_config

    task = task_from_config(cfg.task)
    base = None
    if not is_preset(cfg.model.name):  # the task used the pretrained model's tokenizer
        from ..models import load_hf_model

        model, tok = load_hf_model(cfg.model.name)  # same name_or_path -> the task's token cache
        task.use_tokenizer(tok)
        task.prepare()
        if want_base:
            base = loss_by_position(model, cfg.model_copy(update={"objective": "ntp"}), task)
        del model
    task.prepare()
    return task, base


@torch.no_grad()
def loss_by_position(model, cfg, task) -> list[float]:
    """Mean held-out loss at every position (T,), on the lab's fixed eval batches."""
    from ..objectives import get_objective

    objective = get_objective("bigram" if cfg.objective == "bigram" else "ntp")  # myopic: same forward
    module = objective.prepare(model)
    total = torch.zeros(task.seq_len, dtype=torch.float64)
    count = torch.zeros(task.seq_len, dtype=torch.float64)
    for b in task.eval_batches(cfg.eval_batches, cfg.batch_size):
        b = task.embed(b, model)
        per_pos = objective.per_position_loss(module, b, task.loss).double()  # (B, T)
        total += (per_pos * b.loss_mask).sum(0)
        count += b.loss_mask.sum(0).double()
    return (total / count.clamp_min(1)).tolist()


def cell_tables(setting, condition: str, objective: str, seed: int, work_dir: Path, threads, progress) -> dict:
    """Train the cell and return its tables: ``curves``, ``positions``, ``finals``."""
    from transformers import AutoModelForCausalLM

    from ..lab._checkpoint import read_log

    t0 = time.time()
    cfg, result = train_cell(setting, objective, seed, work_dir, threads, progress)
    out = Path(result.out_dir)
    key = {"condition": condition, "objective": objective, "seed": seed}
    log = read_log(out / "train_log.parquet")
    curves = [
        {**key, "step": int(r["step"]), "loss": float(r["loss"]), "eval_loss": r.get("eval_loss")}
        for r in log
    ]
    progress(0, note=f"{objective} s{seed}: loss by position")
    task, base = _task_and_base(cfg, want_base=objective == setting.objectives[0])
    quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    by_pos = loss_by_position(model, cfg, task)
    del model
    positions = [{**key, "stage": "final", "position": i, "loss": v} for i, v in enumerate(by_pos)]
    base_eval = None
    if base is not None:
        positions += [{**key, "stage": "base", "position": i, "loss": v} for i, v in enumerate(base)]
        base_eval = sum(base) / len(base)
    if not setting.keep_weights:
        for f in out.glob("model*.safetensors"):
            f.unlink()
    tail = [r["loss"] for r in log[-max(1, len(log) // 20) :]]
    final = {
        **key,
        "model": setting.model,
        "task": cfg.task.name,
        "steps": result.steps,
        "eval_loss": result.eval_loss,
        "train_loss_tail": sum(tail) / len(tail),  # mean training loss of the last 5% of steps
        "base_eval_loss": base_eval,
        "n_params": result.n_params,
        "tokens_per_s": result.tokens_per_s,
        "train_seconds": result.wall_s,
        "cell_seconds": time.time() - t0,
        "threads": threads,
        "checkpoint": str(out) if setting.keep_weights else None,
    }
    return {"curves": curves, "positions": positions, "finals": [final]}
