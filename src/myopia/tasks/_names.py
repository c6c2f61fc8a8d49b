"""``shakespeare-names``: Gloeckle et al.'s induction benchmark (second token of a repeated
two-token name), adapted to the plays.

Every speaker tag of a play (the line ``HAMLET.`` or ``Ham.`` before a speech) is replaced by a
random name that is exactly ``name_tokens`` tokens of the lab's BPE (the ``shakespeare`` task's
tokenizer, trained on the original training plays, so the replacement cannot change it): the same
tag gets the same name throughout the play, and each play draws its own names. Names are built
from the tokenizer's own pieces (a capitalised piece, then lowercase ones) and kept only if the
tokenizer splits them into exactly that many tokens; given its first token, a name's second is
one of hundreds, so at a repeat mention it can be predicted only by copying it from the earlier
mention (induction). Training and held-out plays are both replaced; the held-out plays
(``val_plays``) are the test set.

Metric (:meth:`ShakespeareNamesTask.evaluate`): over ``eval_windows`` evenly spaced windows of
the held-out plays, the greedy accuracy on the second token of a name at its repeat mentions (the
name already occurred earlier in the same window), and, as the control, at its first mention in
the window.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from .._errors import UserError
from .._io import cache_dir
from ._base import TaskConfig
from ._text import REPEAT_DESCRIPTION, ShakespeareConfig, TextTask, _save_cache, _shakespeare_documents, encode_lines

# a speaker tag: a short capitalised line, alone between a blank line and the speech
_TAG = re.compile(r"^([A-Z][A-Za-z'\-]*(?: [A-Za-z'\-]+){0,3})(\.?)$")
_NOT_TAGS = {"ACT", "SCENE", "PROLOGUE", "EPILOGUE", "THE", "FINIS", "ACTUS", "SCAENA"}
_FIRST_PIECE = re.compile(r"^[A-Z][a-z]+$")
_NEXT_PIECE = re.compile(r"^[a-z]{2,}$")


class ShakespeareNamesConfig(TaskConfig):
    name: Literal["shakespeare-names"] = "shakespeare-names"
    seq_len: int = Field(128, ge=2)
    vocab_size: int = Field(2048, ge=260, description="the lab BPE the names are made for")
    val_plays: tuple[str, ...] = Field(("hamlet", "tempest"), description="plays held out whole: the test set")
    name_tokens: int = Field(2, ge=1, le=8, description="tokens per name (Gloeckle: 2; the metric reads the second)")
    names_seed: int = Field(0, ge=0, description="fixes the names drawn for every play")
    eval_windows: int = Field(256, ge=1, description="held-out windows the name metric reads")
    repeat: float = Field(0.0, ge=0, le=1, description=REPEAT_DESCRIPTION)


def speaker_tags(lines: list[str]) -> list[int]:
    """Indices of the speaker-tag lines: a short capitalised line (optionally ending in '.') with
    a blank line (or the start) before it and a non-blank line after it."""
    out = []
    for i, line in enumerate(lines[:-1]):
        m = _TAG.match(line)
        if m is None or (i > 0 and lines[i - 1].strip()) or not lines[i + 1].strip():
            continue
        if m.group(1).split()[0].upper() in _NOT_TAGS:
            continue
        out.append(i)
    return out


def make_names(tokenizer, n_tokens: int, count: int, g: np.random.Generator) -> list[str]:
    """``count`` distinct names that ``tokenizer`` splits into exactly ``n_tokens`` tokens, built
    from its vocabulary: a capitalised piece, then n_tokens − 1 lowercase pieces of 2+ letters.
    While there are enough capitalised pieces, no two names share one, so a name's first token
    tells which earlier name it repeats."""
    vocab = tokenizer.get_vocab()
    first = sorted(t for t in vocab if _FIRST_PIECE.match(t))
    rest = sorted(t for t in vocab if _NEXT_PIECE.match(t))
    free = list(first) if count <= len(first) else None  # first pieces not used yet (None: reuse them)
    names: list[str] = []
    seen: set[str] = set()
    possible = len(first) * len(rest) ** (n_tokens - 1)
    for _ in range(50 * count + 1000 if possible >= count else 0):
        heads = free if free is not None else first
        head = heads[g.integers(len(heads))]
        name = head + "".join(rest[g.integers(len(rest))] for _ in range(n_tokens - 1))
        if name in seen:
            continue
        seen.add(name)
        ids = tokenizer(name, add_special_tokens=False)["input_ids"]
        if len(ids) == n_tokens and ids[0] == vocab[head]:
            names.append(name)
            if free is not None:
                free.remove(head)
            if len(names) == count:
                return names
    raise UserError(
        f"task 'shakespeare-names': the BPE (vocab_size={len(vocab)}) cannot make {count} names of exactly "
        f"name_tokens={n_tokens} tokens (found {len(names)}); use name_tokens=2 or a larger vocab_size"
    )


def _play_key(play_text: str) -> int:
    return int.from_bytes(hashlib.sha256(play_text[:2000].encode()).digest()[:4], "little")


def replace_names(text: str, tokenizer, n_tokens: int, seed: int) -> tuple[str, dict[str, str], list[tuple[int, str]]]:
    """(the play with every speaker tag replaced by its random name, {tag: name}, and per
    replaced line its index in ``text.splitlines()`` and its name)."""
    lines = text.splitlines(keepends=True)
    bare = [line.rstrip("\r\n") for line in lines]
    where = speaker_tags(bare)
    tags = sorted({_TAG.match(bare[i]).group(1) for i in where})
    g = np.random.default_rng([seed, _play_key(text)])
    mapping = dict(zip(tags, make_names(tokenizer, n_tokens, len(tags), g))) if tags else {}
    replaced = []
    for i in where:
        m = _TAG.match(bare[i])
        name = mapping[m.group(1)]
        lines[i] = name + m.group(2) + lines[i][len(bare[i]) :]
        replaced.append((i, name))
    return "".join(lines), mapping, replaced


class ShakespeareNamesTask(TextTask):
    """The plays with random two-token speaker names; the name-induction metric on held-out plays."""

    config_cls = ShakespeareNamesConfig

    def __init__(self, config: ShakespeareNamesConfig):
        super().__init__(config)
        self._marks: np.ndarray | None = None  # (M, 2): stream position of a held-out name's first token, name id

    def use_tokenizer(self, tokenizer) -> None:
        raise UserError(
            "task 'shakespeare-names' makes its names for the lab's own BPE; train a lab preset (llama-*, gpt2-*)"
        )

    def _documents(self) -> tuple[list[str], list[str]]:
        c = self.config
        return _shakespeare_documents(
            ShakespeareConfig(seq_len=c.seq_len, vocab_size=c.vocab_size, val_plays=c.val_plays)
        )

    def prepare(self) -> None:
        if self._train is not None:
            return
        c = self.config
        plain = TextTask(ShakespeareConfig(seq_len=c.seq_len, vocab_size=c.vocab_size, val_plays=c.val_plays))
        plain.prepare()  # the lab's BPE on the original training plays (cached)
        self.tokenizer = plain.tokenizer
        train_docs, val_docs = self._documents()
        h = hashlib.sha256(
            json.dumps(c.model_dump(exclude={"seq_len", "eval_windows", "repeat"}), sort_keys=True).encode()
        )
        for d in train_docs + ["\0VAL\0"] + val_docs:
            h.update(d.encode())
        folder = cache_dir() / "names" / h.hexdigest()[:16]
        if (folder / "marks.npy").exists():
            self._train, self._val, self._marks = (np.load(folder / f"{k}.npy") for k in ("train", "val", "marks"))
            return
        self._train = encode_lines(self.tokenizer, [self._replace(d)[0] for d in train_docs])[0]
        replaced = [self._replace(d) for d in val_docs]
        self._val, offsets = encode_lines(self.tokenizer, [text for text, _, _ in replaced])
        marks, next_id = [], 0
        for (_, mapping, lines), starts in zip(replaced, offsets):
            ids = {name: next_id + i for i, name in enumerate(mapping.values())}  # unique over the held-out plays
            next_id += len(ids)
            for i, name in lines:
                tokens = self.tokenizer(name, add_special_tokens=False)["input_ids"]
                if self._val[starts[i] : starts[i] + len(tokens)].tolist() != tokens:  # pragma: no cover - an invariant
                    raise RuntimeError(f"shakespeare-names: {name!r} is not tokenized alone at the start of its line")
                marks.append((int(starts[i]), ids[name]))
        self._marks = np.asarray(marks, dtype=np.int64).reshape(-1, 2)
        if len(self._val) <= self.seq_len:
            raise UserError(f"task {self.name!r}: too little held-out text for seq_len={self.seq_len}")
        _save_cache(folder, None, self._train, self._val, marks=self._marks)

    def _replace(self, text: str) -> tuple[str, dict[str, str], list[tuple[int, str]]]:
        return replace_names(text, self.tokenizer, self.config.name_tokens, self.config.names_seed)

    # --- the metric ------------------------------------------------------------------
    def name_targets(self) -> tuple[np.ndarray, list[tuple[int, int, bool]]]:
        """The evaluation windows' starts (N,) and, per name mention whose second token is a
        target inside a window: (window, input position that predicts it, repeat mention?)."""
        self.prepare()
        T = self.seq_len
        starts = np.linspace(0, len(self._val) - T - 1, num=min(self.config.eval_windows, len(self._val) - T)).astype(
            np.int64
        )
        pos, name = self._marks[:, 0], self._marks[:, 1]
        out = []
        for w, s in enumerate(starts):
            inside = np.flatnonzero((pos >= s) & (pos <= s + T - 1))  # its second token (pos + 1) is a target
            seen: set[int] = set()
            for m in inside:
                out.append((w, int(pos[m] - s), int(name[m]) in seen))
                seen.add(int(name[m]))
        return starts, out

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        """Greedy accuracy on the second token of a name at its repeat mentions in a window
        (``name_accuracy``) and at first mentions (``name_accuracy_first``), with their counts."""
        starts, mentions = self.name_targets()
        device = next(model.parameters()).device
        batch = self._windows(self._val, starts)
        preds = []
        for i in range(0, len(starts), 64):
            logits = model(input_ids=batch.inputs["input_ids"][i : i + 64].to(device)).logits  # (b, T, V)
            preds.append(logits.argmax(-1).cpu())
        pred = torch.cat(preds)  # (N, T)
        right = {True: [], False: []}
        for w, j, repeat in mentions:
            right[repeat].append(float(pred[w, j] == batch.targets[w, j]))
        out = {}
        for repeat, key in ((True, "name_accuracy"), (False, "name_accuracy_first")):
            out[f"{key}_count"] = float(len(right[repeat]))
            if right[repeat]:
                out[key] = float(np.mean(right[repeat]))
        return out
