"""mtp:n in the lab: parameter matching (the heads' layers come out of a preset) is on by default,
recorded in the resolved spec, and refused where it cannot apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from myopia import UserError
from myopia.lab import TrainConfig, train


def _cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(
        task={"name": "path-star", "n_train": 64, "n_test": 16},
        model={"name": "llama-tiny", "d_model": 32, "n_layer": 3},
        steps=2, batch_size=4, eval_every=0, eval_batches=1, checkpoint_every=0, progress=False,
        out=str(tmp_path / "run"),
    )
    return TrainConfig(**{**base, **kw})


def _layer_indices(state: dict) -> set[int]:
    return {int(name.split("layers.")[1].split(".")[0]) for name in state if "layers." in name}


def test_mtp_takes_its_head_layers_from_a_preset(tmp_path):
    res = train(_cfg(tmp_path, objective="mtp:3"))
    out = Path(res.out_dir)
    assert json.loads((out / "spec.json").read_text())["mtp_from_trunk"] is True
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 1  # 3 - (3 - 1)
    assert _layer_indices(load_file(str(out / "model.safetensors"))) == {0}
    heads = load_file(str(out / "mtp_heads.safetensors"))
    assert {name.split(".")[0] for name in heads} == {"0", "1"}

    ntp = train(_cfg(tmp_path, objective="ntp", out=str(tmp_path / "ntp")))
    n_ntp = sum(t.numel() for t in load_file(str(Path(ntp.out_dir) / "model.safetensors")).values())
    n_mtp = sum(t.numel() for t in [*load_file(str(out / "model.safetensors")).values(), *heads.values()])
    assert n_mtp == n_ntp and res.n_params == ntp.n_params  # parameter-matched
    assert json.loads((Path(ntp.out_dir) / "spec.json").read_text())["mtp_from_trunk"] is None


def test_mtp_heads_added_when_asked(tmp_path):
    res = train(_cfg(tmp_path, objective="mtp:2", mtp_from_trunk=False))
    assert AutoModelForCausalLM.from_pretrained(res.out_dir).config.num_hidden_layers == 3


def test_mtp_from_trunk_is_resolved_or_refused(tmp_path):
    with pytest.raises(UserError, match=r"mtp:5 takes 4 head layers from the model's 3 layers and leaves none"):
        train(_cfg(tmp_path, objective="mtp:5"))
    assert not (tmp_path / "run").exists()  # refused before anything was written
    pretrained = {"name": "hf:some/model"}
    assert _cfg(tmp_path, objective="mtp:2", model=pretrained).resolved().mtp_from_trunk is False
    with pytest.raises(UserError, match="needs a preset model; hf:some/model is pretrained"):
        _cfg(tmp_path, objective="mtp:2", model=pretrained, mtp_from_trunk=True).resolved()
    assert _cfg(tmp_path, objective="mtp:2", model={"name": "gpt2-6m"}).resolved().mtp_from_trunk is True
