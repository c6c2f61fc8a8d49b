"""Text for ``gradient-horizon`` and ``head-roles``: windows of a shipped corpus, tokenized
by each model's own tokenizer.

A source is ``shakespeare:PLAY`` (a play of the ``shakespeare`` task's corpus, e.g.
``shakespeare:hamlet``, one of the plays the lab holds out) or the path of a UTF-8 file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .._errors import UserError

SKIP_CHARS = 4000  # past the title page and the list of persons of a play


def check_source(source: str) -> None:
    read_source(source)


def read_source(source: str) -> str:
    kind, sep, arg = source.partition(":")
    if sep and kind == "shakespeare":
        from ..tasks import shakespeare_files

        plays = shakespeare_files()
        if arg not in plays:
            raise UserError(f"unknown play {arg!r} in text={source!r}; plays: {', '.join(sorted(plays))}")
        return plays[arg].read_text(encoding="utf-8")
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"text={source!r}: give shakespeare:PLAY (e.g. shakespeare:hamlet) or a UTF-8 file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"text={source!r} is not UTF-8 ({e.reason} at byte {e.start})") from None


def text_windows(tokenizer, source: str, n: int, seq_len: int) -> torch.Tensor:
    """(n, seq_len) token ids: consecutive windows of the text, each starting with the
    tokenizer's BOS token when it has one (so the first position is what the model expects)."""
    text = read_source(source)
    text = text[SKIP_CHARS:] if len(text) > 2 * SKIP_CHARS else text
    text = text[: max(20_000, 16 * n * seq_len)]  # enough characters for the windows
    bos = tokenizer.bos_token_id
    body = seq_len - (bos is not None)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < n * body:
        raise UserError(f"text={source!r} has {len(ids)} tokens, fewer than {n} windows of {body}")
    rows = torch.tensor(ids[: n * body], dtype=torch.long).view(n, body)  # (n, body)
    if bos is not None:
        rows = torch.cat([torch.full((n, 1), bos, dtype=torch.long), rows], dim=1)  # (n, seq_len)
    return rows
