"""mtp-seq:n in the lab: the depths' blocks come out of a preset (the projections are the only extra
parameters), the modules are saved beside the checkpoint, resume is bit-identical, bad specs are
refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from myopia import UserError
from myopia.lab import TrainConfig, train
from myopia.objectives._mtp_seq import MODULES_FILE, extra_parameters


def _cfg(tmp_path, name: str = "run", **kw) -> TrainConfig:
    base = dict(
        task={"name": "path-star", "n_train": 64, "n_test": 16},
        model={"name": "llama-tiny", "d_model": 32, "n_layer": 3},
        steps=6,
        batch_size=4,
        eval_every=0,
        eval_batches=1,
        checkpoint_every=3,
        progress=False,
        out=str(tmp_path / name),
    )
    return TrainConfig(**{**base, **kw})


def _tensors(folder: str, file: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / file))


def test_mtp_seq_takes_its_blocks_from_a_preset(tmp_path):
    res = train(_cfg(tmp_path, objective="mtp-seq:3", steps=2))
    out = Path(res.out_dir)
    assert json.loads((out / "spec.json").read_text())["mtp_from_trunk"] is True
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 1  # 3 - (3 - 1)
    modules = _tensors(res.out_dir, MODULES_FILE)
    assert {name.split(".")[0] for name in modules} == {"0", "1"}
    assert any(".block." in name for name in modules) and any(".project." in name for name in modules)
    ntp = train(_cfg(tmp_path, "ntp", objective="ntp", steps=2))
    assert res.n_params - ntp.n_params == extra_parameters(32, 3) == 2 * (2 * 32 * 32 + 2 * 32)
    log = pq.read_table(out / "train_log.parquet").to_pylist()
    assert {"loss", "loss_head2", "loss_head3"} <= set(log[-1])


def test_mtp_seq_resume_is_bit_identical(tmp_path):
    full = train(_cfg(tmp_path, "full", objective="mtp-seq:2", mtp_weight=0.3))
    part = _cfg(tmp_path, "part", objective="mtp-seq:2", mtp_weight=0.3)
    assert train(part, stop_after=4).steps == 4
    resumed = train(part)
    assert resumed.resumed_from == 4
    for file in ("model.safetensors", MODULES_FILE):
        a, b = _tensors(full.out_dir, file), _tensors(resumed.out_dir, file)
        assert a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file
    la = pq.read_table(Path(full.out_dir) / "train_log.parquet").column("loss_head2").to_pylist()
    lb = pq.read_table(Path(resumed.out_dir) / "train_log.parquet").column("loss_head2").to_pylist()
    assert la == lb


def test_mtp_weight_changes_the_update(tmp_path):
    runs = {
        w: train(_cfg(tmp_path, f"w{w}", objective="mtp-seq:2", steps=s, mtp_weight=w, weight_decay=0.0))
        for w, s in ((1.0, 2), (0.0, 2))
    }
    proj = {
        w: next(t for k, t in _tensors(r.out_dir, MODULES_FILE).items() if k.endswith("project.weight"))
        for w, r in runs.items()
    }
    start = train(_cfg(tmp_path, "w0-1", objective="mtp-seq:2", steps=1, mtp_weight=0.0, weight_decay=0.0))
    assert torch.equal(
        proj[0.0], next(t for k, t in _tensors(start.out_dir, MODULES_FILE).items() if k.endswith("project.weight"))
    )
    assert not torch.equal(proj[1.0], proj[0.0])  # weight 0: the projection gets no gradient; weight 1 trains it


def test_mtp_seq_refusals_write_nothing(tmp_path):
    with pytest.raises(UserError, match=r"mtp-seq:5 takes 4 head layers from the model's 3 layers and leaves none"):
        train(_cfg(tmp_path, objective="mtp-seq:5"))
    with pytest.raises(UserError, match=r"mtp-seq:2 embeds the tokens ahead; task 'precache' has real-valued inputs"):
        train(_cfg(tmp_path, objective="mtp-seq:2", task="precache"))
    with pytest.raises(UserError, match=r"mtp_weight applies to mtp:N and mtp-seq:N only; the objective is ntp"):
        train(_cfg(tmp_path, objective="ntp", mtp_weight=0.3))
    with pytest.raises(UserError, match=r"N in mtp-seq:N must be an integer from 1 to 32"):
        train(_cfg(tmp_path, objective="mtp-seq:0"))
    assert not (tmp_path / "run").exists()
