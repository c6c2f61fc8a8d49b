"""``myopia-gap`` cells: train one (setting, objective, seed) with the lab, resumably
(:func:`myopia.lab.train_cell`), then measure the held-out loss by position (the lab's
evaluation keeps only the mean)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from ...lab import is_preset, read_log, train_cell
from ...models import load_hf_model, quiet_transformers
from ...objectives import get_objective
from ...tasks import task_from_config


# --- measuring ----------------------------------------------------------------------------
def _task_and_base(cfg, want_base: bool):
    """The task (with the tokenizer the run used) and, for a fine-tuned pretrained model, its
    per-position loss before fine-tuning (``None`` for lab presets or when not wanted)."""
    task = task_from_config(cfg.task)
    base = None
    if not is_preset(cfg.model.name):  # the task used the pretrained model's tokenizer
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
