"""Where a cell's lab training runs: the setting's ``device`` when it names one, else the run's
``--device``; every experiment that trains lab models hands the run's device to train_cell."""

from __future__ import annotations

import pytest
import torch

from myopia import UserError
from myopia.experiments import CellContext
from myopia.lab import TrainConfig, TrainSetting, apply_set, train, train_config
from myopia.models import Placement
from myopia.runs import resolve_spec


@pytest.mark.parametrize(
    "setting, run, want",
    [
        ("auto", None, "auto"),  # no run device: as before
        ("auto", "cpu", "cpu"),
        ("auto", "cuda:1", "cuda:1"),
        ("cpu", "cuda", "cpu"),  # the setting names its own: kept
        ("cuda", "cpu", "cuda"),
    ],
)
def test_the_setting_device_wins_unless_it_is_auto(setting, run, want):
    cfg = train_config(TrainSetting(device=setting, steps=1), "ntp", 0, None, None, run)
    assert cfg.device == want


def test_train_config_takes_a_numbered_gpu_and_refuses_other_devices():
    assert apply_set(TrainConfig(), "device=cuda:1").device == "cuda:1"
    for bad in ("gpu", "cuda:", "cuda:x", "cpu:0"):
        with pytest.raises(UserError, match="device"):
            apply_set(TrainConfig(), f"device={bad}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_a_numbered_gpu_without_a_gpu_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"'cuda:1' asked for, but no GPU is visible"):
        train(TrainConfig(device="cuda:1", steps=1, out=str(tmp_path / "t"), progress=False))


class _Stop(Exception):
    pass


@pytest.mark.parametrize(
    "experiment, overrides, module",
    [
        ("myopia-gap", ['settings=["precache"]'], "myopia_gap"),
        ("future-lens", ['models=["trained:ntp"]'], "future_lens"),
        ("multi-token", [], "multi_token"),
        ("self-training", [], "self_training"),
    ],
)
def test_cells_train_on_the_run_device(experiment, overrides, module, monkeypatch, tmp_path):
    seen = []

    def fake_train_cell(setting, objective, seed, work_dir, threads, progress, device=None):
        seen.append(device)
        raise _Stop

    monkeypatch.setattr(f"myopia.experiments.{module}._experiment.train_cell", fake_train_cell)
    exp, spec = resolve_spec(experiment, overrides, check=False)
    cell = exp.cells(spec)[0]
    ctx = CellContext(None, work_dir=tmp_path / "work" / cell.id, placement=Placement("cuda:1"))
    with pytest.raises(_Stop):
        exp.run_cell(cell, spec, ctx)
    assert seen == ["cuda:1"]  # not resolved here: the lab resolves it (and refuses it without a GPU)
