"""Every training spec under examples/ (a TOML without an `experiment` key) is valid as
`myopia train --spec` reads it, and its model builds at the task's sequence length."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from myopia.lab import build_config, lr_at
from myopia.lab._config import validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRAIN_SPECS = [p for p in sorted(EXAMPLES.glob("*.toml")) if "experiment" not in tomllib.loads(p.read_text())]


def test_there_is_a_training_example():
    assert any(p.name == "shakespeare_bytes.toml" for p in TRAIN_SPECS)


@pytest.mark.parametrize("path", TRAIN_SPECS, ids=lambda p: p.name)
def test_training_example_validates_and_builds(path):
    cfg = validate(tomllib.loads(path.read_text()))
    vocab = getattr(cfg.task, "vocab_size", 64)  # text tasks train their own tokenizer
    config = build_config(cfg.model, vocab_size=vocab, seq_len=cfg.task.seq_len, tie=True)
    assert config.vocab_size == vocab and config.max_position_embeddings >= cfg.task.seq_len


def test_constant_schedule_checkpoints_do_not_depend_on_steps():
    """The bytes recipe compares checkpoints across runs of different lengths: with a constant
    schedule, step N has the same learning rate whatever `steps` is."""
    cfg = validate(tomllib.loads((EXAMPLES / "shakespeare_bytes.toml").read_text()))
    longer = cfg.model_copy(update={"steps": 3 * cfg.steps})
    assert all(lr_at(cfg, s) == lr_at(longer, s) for s in range(cfg.steps))
