"""What every task shares: the :class:`Batch`, the :class:`Task` base class, seeding.

A task builds batches *reproducibly*: the training batch of step ``s`` is a pure
function of ``(seed, s)``, and the held-out batches are fixed. The trainer therefore
keeps no data-loader state, resumes exactly, and data-parallel ranks slice the same
global batch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict

from .._errors import UserError


class TaskConfig(BaseModel):
    """Base of every task's typed config: ``name`` plus the task's own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # kwargs for the HF model's forward: input_ids (B,T) or inputs_embeds (B,T,d)
    targets: torch.Tensor  # (B,T): what position t must predict (already shifted), long ids or float values
    loss_mask: torch.Tensor  # (B,T) float: 1 where the loss at t counts

    def to(self, device) -> "Batch":
        return Batch(
            inputs={k: v.to(device) for k, v in self.inputs.items()},
            targets=self.targets.to(device),
            loss_mask=self.loss_mask.to(device),
        )

    def __len__(self) -> int:
        return self.targets.shape[0]

    def rows(self, start: int, stop: int) -> "Batch":
        """The sub-batch of rows ``start:stop`` (data-parallel ranks, micro-batches)."""
        return Batch(
            inputs={k: v[start:stop] for k, v in self.inputs.items()},
            targets=self.targets[start:stop],
            loss_mask=self.loss_mask[start:stop],
        )


def rng(*keys: int) -> np.random.Generator:
    """An independent numpy generator for a tuple of non-negative integer keys."""
    return np.random.default_rng([int(k) for k in keys])


# stream ids, so that train/eval/fixed-set generators never collide
TRAIN_STREAM, EVAL_STREAM, TRAIN_SET_STREAM, TEST_SET_STREAM = 1, 2, 3, 4


class Task:
    """Base class. Subclasses set ``name``, ``kind``, ``vocab_size``, ``seq_len`` and
    implement :meth:`train_batch` and :meth:`eval_batches`."""

    config_cls: ClassVar[type[TaskConfig]] = TaskConfig
    kind: str = "tokens"  # "tokens": input_ids and class targets; "values": inputs_embeds and real targets
    supported_variants: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: TaskConfig):
        self.config = config
        self.data_variant: str | None = None
        self.tokenizer = None  # a transformers PreTrainedTokenizerFast for token tasks

    @property
    def name(self) -> str:
        return self.config.name

    # --- what the model needs -------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def seq_len(self) -> int:
        """T, the number of input positions of every batch."""
        raise NotImplementedError

    # --- data -----------------------------------------------------------------------
    def set_data_variant(self, variant: str | None) -> None:
        """Build batches the way an objective asks (path-star: ``teacherless``, ``reverse``)."""
        if variant is not None and variant not in self.supported_variants:
            supported = ", ".join(self.supported_variants) or "none"
            raise UserError(f"task {self.name!r} has no data variant {variant!r} (supported: {supported})")
        self.data_variant = variant

    def use_tokenizer(self, tokenizer) -> None:
        """Tokenize with a pretrained model's tokenizer instead of the task's own."""
        raise UserError(
            f"task {self.name!r} builds its own vocabulary and cannot train a pretrained model; "
            "fine-tune pretrained models on 'shakespeare' or 'text:PATH'"
        )

    def prepare(self) -> None:
        """Load or build what the task needs (corpus, tokenizer, graph sets); idempotent."""

    def train_batch(self, step: int, batch_size: int, seed: int) -> Batch:
        """The global training batch of ``step``: a pure function of ``(seed, step)``."""
        raise NotImplementedError

    def eval_batches(self, n_batches: int, batch_size: int) -> list[Batch]:
        """Fixed held-out batches (the same for every seed and every call)."""
        raise NotImplementedError

    def embed(self, batch: Batch, model) -> Batch:
        """Turn a batch into model inputs; value tasks compute ``inputs_embeds`` here from the
        model's live embedding weights (so they receive gradient). Token tasks: unchanged."""
        return batch

    # --- loss and metrics -----------------------------------------------------------
    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """output (B,T,V) logits -> per-position cross-entropy (B,T)."""
        B, T, V = output.shape
        ce = F.cross_entropy(output.reshape(B * T, V).float(), targets.reshape(B * T), reduction="none")  # (B*T,)
        return ce.view(B, T)  # (B, T)

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        """Task metrics on the held-out set (e.g. path-star's whole-path accuracy)."""
        return {}

    # --- persistence ----------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike) -> None:
        """Write the tokenizer (token tasks) and ``myopia_task.json`` next to a checkpoint."""
        out = Path(out_dir)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(out)
        info: dict[str, Any] = {
            "task": self.config.model_dump(),
            "kind": self.kind,
            "data_variant": self.data_variant,
            "seq_len": self.seq_len,
        }
        (out / "myopia_task.json").write_text(json.dumps(info, indent=2) + "\n")


def greedy_complete(model, prefix: torch.Tensor, n_new: int, chunk: int = 512) -> torch.Tensor:
    """Greedy continuation of ``prefix`` (N,P) by ``n_new`` tokens -> (N,n_new), full
    re-forward each step (tiny models, short sequences), in chunks of rows."""
    outs = []
    for start in range(0, prefix.shape[0], chunk):
        ids = prefix[start : start + chunk]
        for _ in range(n_new):
            logits = model(input_ids=ids).logits[:, -1]  # (n, V)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)  # (n, P+k)
        outs.append(ids[:, prefix.shape[1] :])
    return torch.cat(outs)


def word_level_tokenizer(symbols: list[str]):
    """A transformers tokenizer for a fixed symbol vocabulary (id = index), whitespace-separated,
    so that ``AutoTokenizer.from_pretrained(checkpoint)`` works for synthetic token tasks."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {s: i for i, s in enumerate(symbols)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=symbols[-1]))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=symbols[-1], pad_token=symbols[-1])
