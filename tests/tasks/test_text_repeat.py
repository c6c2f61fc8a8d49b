"""``repeat``: a share of training windows hold a text passage, then the text again from its
start; eval windows never do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from myopia._errors import UserError
from myopia.tasks import get_task


def _task(tmp_path, monkeypatch, **kw):
    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "docs").mkdir(exist_ok=True)
    words = " ".join(f"w{i % 97}x{i % 13}" for i in range(3000))
    (tmp_path / "docs" / "a.txt").write_text(words)
    (tmp_path / "docs" / "b.txt").write_text(words[::-1])
    return get_task(f"text:{tmp_path / 'docs'}", vocab_size=300, **kw)


def _sequence(b) -> torch.Tensor:
    return torch.cat([b.inputs["input_ids"], b.targets[:, -1:]], dim=1)  # (B, T+1)


def _brute_force(stream: np.ndarray, start: int, m: int, n: int) -> np.ndarray:
    """m tokens from start, then n - m tokens from start again."""
    return np.concatenate([stream[start : start + m], stream[start : start + n - m]])


@pytest.mark.parametrize("seq_len", [16, 17])
def test_repeat_one_repeats_every_training_window(tmp_path, monkeypatch, seq_len):
    task = _task(tmp_path, monkeypatch, seq_len=seq_len, repeat=1.0)
    task.prepare()
    n = seq_len + 1
    lengths = set()
    for step in range(4):
        rows = _sequence(task.train_batch(step=step, batch_size=8, seed=5)).numpy()
        starts = np.random.default_rng([5, 1, step]).integers(0, len(task._train) - seq_len, size=8)
        for row, s in zip(rows, starts, strict=True):
            ms = [m for m in range(1, n // 2 + 1) if (row == _brute_force(task._train, s, m, n)).all()]
            assert ms, "not a passage followed by the text again from its start"
            assert (row[ms[0] : 2 * ms[0]] == row[: ms[0]]).all()
            lengths.add(ms[0])
    assert len(lengths) > 3  # the passage length varies


def test_repeat_zero_gives_the_plain_windows(tmp_path, monkeypatch):
    task = _task(tmp_path, monkeypatch, seq_len=16)
    b = task.train_batch(step=4, batch_size=8, seed=3)  # prepares the task
    starts = np.random.default_rng([3, 1, 4]).integers(0, len(task._train) - 16, size=8)  # seed, TRAIN_STREAM, step
    want = task._train[starts[:, None] + np.arange(17)[None, :]]  # brute force, (B, T+1)
    assert (_sequence(b).numpy() == want).all()


def test_repeat_share_determinism_and_plain_eval(tmp_path, monkeypatch):
    task = _task(tmp_path, monkeypatch, seq_len=16, repeat=0.5)
    plain = _task(tmp_path, monkeypatch, seq_len=16)
    a, b = task.train_batch(step=7, batch_size=64, seed=1), task.train_batch(step=7, batch_size=64, seed=1)
    assert (a.inputs["input_ids"] == b.inputs["input_ids"]).all() and (a.targets == b.targets).all()
    rows, p = _sequence(a), _sequence(plain.train_batch(step=7, batch_size=64, seed=1))
    changed = (rows != p).any(dim=1)
    assert 16 <= int(changed.sum()) <= 48  # about half the windows (a few repeats may equal the plain text)
    assert (rows[:, 0] == p[:, 0]).all()  # the same starts
    for e, f in zip(task.eval_batches(2, 8), plain.eval_batches(2, 8), strict=True):
        assert (e.inputs["input_ids"] == f.inputs["input_ids"]).all() and (e.targets == f.targets).all()


def test_repeat_outside_zero_one_is_refused():
    with pytest.raises(UserError, match="repeat"):
        get_task("text:/nonexistent", repeat=1.5)
