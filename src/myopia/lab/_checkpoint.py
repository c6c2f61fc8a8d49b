"""Checkpoints: an HF checkpoint (safetensors) plus optimizer and RNG state, written
atomically.

Layout of ``OUT/checkpoints/``::

    step-0000500/   config.json, model.safetensors, tokenizer files, myopia_task.json,
                    optimizer.safetensors, rng.safetensors, trainer_state.json, train_log.parquet
    latest          the name of the newest *complete* checkpoint

A checkpoint is written into a temp folder beside the others and renamed into place;
only then is ``latest`` replaced (temp file + ``os.replace``). A kill -9 at any moment
leaves ``latest`` naming a complete checkpoint (or absent), never a partial one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from .._errors import UserError
from .._io import atomic_path, publish_tree, write_parquet_atomic, write_text_atomic
from ..models._model_files import check_safetensors, one_line, read_json_object


def write_log(path: Path, rows: list[dict]) -> None:
    """Rows (dicts; missing keys become nulls) -> Parquet, atomically (an empty log keeps a
    ``step`` column)."""
    if rows:
        write_parquet_atomic(path, rows)
        return
    with atomic_path(path) as tmp:
        pq.write_table(pa.table({"step": pa.array([], pa.int64())}), tmp)


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = pq.read_table(path).to_pylist()
    return [{k: v for k, v in r.items() if v is not None} for r in rows]


def save_model(folder: Path, model, objective, module, task) -> None:
    """The HF checkpoint (safetensors), the objective's extra weights, tokenizer, task info."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar inside ours
    training_value = model.config.use_cache
    model.config.use_cache = getattr(model, "myopia_use_cache", training_value)  # the model's own value
    try:
        model.save_pretrained(folder)
    finally:
        model.config.use_cache = training_value
        if was_on:
            hf_logging.enable_progress_bar()
    objective.save_extra(module, folder)
    task.save(folder)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{pid}.{k}"] = t.detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return out


def save_checkpoint(
    out: Path, step: int, model, objective, module, optimizer, task, log: list[dict], keep: int
) -> Path:
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    save_model(tmp, model, objective, module, task)
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    save_file(_rng_tensors(), str(tmp / "rng.safetensors"))
    write_log(tmp / "train_log.parquet", log)
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **meta}, indent=1) + "\n")
    publish_tree(tmp)
    if final.exists():  # left by an earlier attempt that died before updating `latest`
        shutil.rmtree(final)
    os.rename(tmp, final)
    write_text_atomic(root / "latest", final.name + "\n")
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    for p in done[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp-*"):  # partial checkpoints of killed runs
        shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(out: Path) -> Path | None:
    pointer = out / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = out / "checkpoints" / pointer.read_text().strip()
    if not (path / "trainer_state.json").exists():
        raise UserError(f"{pointer} names {path.name}, which is incomplete; delete {out / 'checkpoints'} to start over")
    return path


def load_model_weights(folder: Path, module: torch.nn.Module, model, objective) -> None:
    """Load the HF checkpoint's tensors into the live model (tied weights stay tied)."""
    state: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("model*.safetensors")):
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight") and model.config.tie_word_embeddings}
    if unexpected or set(missing) - tied:
        raise UserError(
            f"checkpoint {folder} does not match the model "
            f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {unexpected[:3]})"
        )
    objective.load_extra(module, folder)


def check_checkpoint(path: Path) -> None:
    """A damaged checkpoint (a truncated or garbled safetensors file, among them the objective's
    extra heads, or a damaged trainer_state.json or train_log.parquet) is one line naming the
    file, read from headers and small files only, before anything is loaded."""
    try:
        for f in sorted(path.glob("*.safetensors")):
            check_safetensors(f)
        read_json_object(path / "trainer_state.json")
        log = path / "train_log.parquet"
        if log.exists():
            try:
                pq.read_metadata(log)
            except (OSError, pa.ArrowException) as e:
                raise UserError(f"{log} is not a Parquet file ({one_line(e)})") from None
    except UserError as e:
        raise UserError(
            f"checkpoint {path.name} is damaged: {e}; delete {path.parent} to train again from the start"
        ) from None


def load_checkpoint(path: Path, module, model, objective, optimizer) -> tuple[int, list[dict]]:
    """Restore weights, optimizer and RNG state; returns (step, log rows up to that step)."""
    check_checkpoint(path)
    load_model_weights(path, module, model, objective)
    meta = json.loads((path / "trainer_state.json").read_text())
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(path / "optimizer.safetensors")).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = t
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(rng["cuda"]))
    return int(meta["step"]), read_log(path / "train_log.parquet")
