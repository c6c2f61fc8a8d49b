"""The held-out loss of a trained cell at every position (the lab's evaluation keeps only the
mean), and of a pretrained model before it was fine-tuned; each on the device the cell trained
on (the config's ``device``), in float32."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from ...lab import TrainConfig, is_preset
from ...models import Placement, load_hf_model, quiet_transformers
from ...objectives import get_objective
from ...tasks import task_from_config


@torch.no_grad()
def loss_by_position(model, cfg: TrainConfig, task) -> list[float]:
    """Mean held-out loss at every position (T,), on the lab's fixed eval batches, on the model's device."""
    objective = get_objective("bigram" if cfg.objective == "bigram" else "ntp")  # myopic: same forward
    module = objective.prepare(model)
    device = next(model.parameters()).device
    total = torch.zeros(task.seq_len, dtype=torch.float64, device=device)
    count = torch.zeros(task.seq_len, dtype=torch.float64, device=device)
    for b in task.eval_batches(cfg.eval_batches, cfg.batch_size):
        b = task.embed(b.to(device), model)
        per_pos = objective.per_position_loss(module, b, task.loss).double()  # (B, T)
        total += (per_pos * b.loss_mask).sum(0)
        count += b.loss_mask.sum(0).double()
    return (total / count.clamp_min(1)).cpu().tolist()


def held_out_task(cfg: TrainConfig, want_base: bool):
    """(task, base): the cell's task with the tokenizer its training used and, for a fine-tuned
    pretrained model when ``want_base``, that model's loss by position before fine-tuning
    (``None`` for lab presets or when not wanted)."""
    task = task_from_config(cfg.task)
    base = None
    if not is_preset(cfg.model.name):  # the task used the pretrained model's tokenizer
        model, tok = load_hf_model(cfg.model.name, device=cfg.device)  # same name_or_path -> the task's token cache
        task.use_tokenizer(tok)
        task.prepare()
        if want_base:
            base = loss_by_position(model, cfg.model_copy(update={"objective": "ntp"}), task)
        del model
    task.prepare()
    return task, base


def trained_loss_by_position(out: Path, cfg: TrainConfig, task) -> list[float]:
    """:func:`loss_by_position` of the model the lab saved in ``out``."""
    quiet_transformers()
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    model = model.to(Placement(cfg.device).resolved_device())  # where it trained (a no-op on a CPU)
    return loss_by_position(model, cfg, task)
