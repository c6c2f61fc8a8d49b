"""TrainConfig, --set overrides, schedules and presets."""

from __future__ import annotations

import tomllib

import pytest
import torch
from transformers import AutoModelForCausalLM

from myopia import UserError
from myopia._toml import parse_value
from myopia.lab import TrainConfig, apply_set, build_config, lr_at, presets
from myopia.lab._config import ModelSpec


def test_parse_value_is_toml_with_string_fallback():
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3 and parse_value("true") is True
    assert parse_value('"x y"') == "x y" and parse_value("[1, 2]") == [1, 2]
    assert parse_value("llama-2m") == "llama-2m" and parse_value("text:/a/b") == "text:/a/b"


def test_set_paths_and_errors():
    cfg = apply_set(TrainConfig(), "steps=7")
    cfg = apply_set(cfg, "model.name=gpt2-0.5m")
    cfg = apply_set(cfg, "task.k=4")
    assert (cfg.steps, cfg.model.name, cfg.task.k) == (7, "gpt2-0.5m", 4)
    paper = apply_set(cfg, "task.name=precache-paper")  # a new task brings its own defaults
    assert (paper.task.k, paper.task.frequency, paper.task.length) == (10, 10.0, 64)
    with pytest.raises(UserError, match=r"unknown field 'stepz'.*accepted: task, objective, model"):
        apply_set(cfg, "stepz=3")
    with pytest.raises(UserError, match=r"unknown field 'task.K'.*accepted: name, k, frequency, p, length"):
        apply_set(cfg, "task.K=3")
    with pytest.raises(UserError, match="unknown field 'model.layers'"):
        apply_set(cfg, "model.layers=3")
    with pytest.raises(UserError, match="batch_size"):
        apply_set(cfg, "batch_size=0")
    with pytest.raises(UserError, match="key=value"):
        apply_set(cfg, "steps")
    with pytest.raises(Exception):
        TrainConfig(bogus=1)  # extra="forbid"


def test_resolved_spec_round_trips_through_toml():
    cfg = TrainConfig(task={"name": "path-star", "degree": 3}, objective="reverse", out="x")
    back = TrainConfig.model_validate(tomllib.loads(cfg.to_toml()))
    assert back == cfg and back.task.degree == 3


def test_one_cycle_matches_torch_onecycle():
    cfg = TrainConfig(steps=100, lr=1e-3, schedule="one-cycle")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=100, pct_start=0.3, cycle_momentum=False)
    for step in range(100):
        assert lr_at(cfg, step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        opt.step()
        sched.step()


def test_cosine_with_warmup():
    cfg = TrainConfig(steps=110, lr=1.0, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(0.1) and lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 10) == pytest.approx(1.0) and lr_at(cfg, 109) == pytest.approx(0.1)
    assert lr_at(cfg, 10 + 99 // 2) == pytest.approx(0.55, abs=0.01)  # half-way: the mean of lr and min


def test_presets_span_half_a_million_to_25m():
    sizes = {}
    for name in presets():
        cfg = build_config(ModelSpec(name=name), vocab_size=256, seq_len=64, tie=True)
        with torch.device("meta"):  # shapes only, no initialisation
            model = AutoModelForCausalLM.from_config(cfg)
        emb = model.get_input_embeddings().weight.numel() + sum(
            p.numel() for n, p in model.named_parameters() if n.endswith("wpe.weight")
        )
        sizes[name] = sum(p.numel() for p in model.parameters()) - emb
    assert 0.09e6 < sizes["llama-tiny"] < 0.12e6  # DESIGN.md's 2 layers, d=64
    for fam in ("llama", "gpt2"):
        assert 0.4e6 < sizes[f"{fam}-0.5m"] < 0.6e6 and 22e6 < sizes[f"{fam}-25m"] < 28e6
    tiny = build_config(ModelSpec(name="llama-tiny"), 10, 32, tie=False)
    assert (tiny.num_hidden_layers, tiny.hidden_size, tiny.num_attention_heads) == (2, 64, 2)
    with pytest.raises(UserError, match="unknown model 'llama-3m'; presets: llama-tiny"):
        build_config(ModelSpec(name="llama-3m"), 10, 32, tie=False)
