"""The run's placement (``--device`` / ``--dtype``) reaches every cell's models and is recorded per
cell; experiments that take gradients keep float32."""

from __future__ import annotations

import json

import pytest
import torch

from myopia.experiments import Cell
from myopia.models import Placement
from myopia.runs import run
from myopia.runs._executors import CellJob, ModelCache, SerialExecutor, execute_cell


def test_a_run_in_bfloat16_loads_its_models_so_and_records_it(tiny_lm_dir, tmp_path):
    args = [f'models=["hf:{tiny_lm_dir}"]', 'prompts=["The cat"]', "length=3", "samples=2", "beam_width=2"]
    out = tmp_path / "run"
    run("sequence-likelihood", args, out=out, executor=SerialExecutor(Placement(dtype="bfloat16")))
    cells = json.loads((out / "manifest.json").read_text())["cells"]
    assert cells and all(c["placement"] == {"device": "cpu", "dtype": "bfloat16"} for c in cells.values())


class _Probe:
    """An experiment that only records the placement its cell was given."""

    def __init__(self, takes_gradients: bool):
        self.takes_gradients, self.seen = takes_gradients, []

    def run_cell(self, cell, spec, ctx):
        self.seen.append(ctx.placement)
        return {}


@pytest.mark.parametrize("takes_gradients, dtype", [(False, "bfloat16"), (True, "float32")])
def test_experiments_that_take_gradients_keep_float32(takes_gradients, dtype, monkeypatch, tmp_path):
    probe = _Probe(takes_gradients)
    monkeypatch.setattr("myopia.runs._executors.get_experiment", lambda name: probe)
    job = CellJob(tmp_path, "probe", None, "h", Cell("c"), Placement(dtype="bfloat16"))
    record = execute_cell(job, ModelCache(), lambda **kw: None)
    assert probe.seen == [Placement(dtype=dtype)]
    assert record["placement"] == {"device": "cpu", "dtype": dtype}
    assert torch.get_num_threads() >= 1


def test_the_model_cache_reloads_when_the_placement_changes(tiny_lm_dir):
    cache = ModelCache()
    a = cache.get(f"hf:{tiny_lm_dir}")
    assert cache.get(f"hf:{tiny_lm_dir}", Placement()) is a  # the default placement is the same key
    b = cache.get(f"hf:{tiny_lm_dir}", Placement(dtype="bfloat16"))
    assert b is not a and next(b.model.parameters()).dtype == torch.bfloat16
    cache.close()
