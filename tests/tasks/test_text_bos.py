"""Text windows for a pretrained tokenizer that adds BOS start with BOS."""

from __future__ import annotations

from lmfactory import build_tiny_lm
from myopia.tasks import get_task


def _task(tmp_path):
    (tmp_path / "a.txt").write_text("Once upon a time, there was a king. " * 80)
    (tmp_path / "b.txt").write_text("The cat sat on the mat. " * 80)
    return get_task(f"text:{tmp_path}", seq_len=16)


def test_windows_start_with_bos_when_the_tokenizer_adds_it(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    tok = AutoTokenizer.from_pretrained(build_tiny_lm(tmp_path / "lm"))  # adds <bos>
    (tmp_path / "docs").mkdir()
    task = _task(tmp_path / "docs")
    task.use_tokenizer(tok)
    b = task.train_batch(step=0, batch_size=4, seed=0)
    ids, targets = b.inputs["input_ids"], b.targets
    assert ids.shape == targets.shape == (4, 16)
    assert (ids[:, 0] == tok.bos_token_id).all()
    assert (ids[:, 1:] == targets[:, :-1]).all()  # still teacher forcing after BOS
    assert (targets != tok.bos_token_id).all()


def test_own_tokenizer_windows_are_plain_shifts(tmp_path, monkeypatch):
    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "docs").mkdir()
    task = _task(tmp_path / "docs")
    b = task.train_batch(step=0, batch_size=4, seed=0)
    assert (b.inputs["input_ids"][:, 1:] == b.targets[:, :-1]).all()
