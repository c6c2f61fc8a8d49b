"""Objective names -> objects."""

from __future__ import annotations

from .._errors import UserError
from ._base import Bigram, DataVariant, NextToken, Objective
from ._myopic import Myopic

NAMES = ("ntp", "myopic", "myopic:hidden", "mtp:N", "mtp-seq:N", "bigram", "teacherless", "reverse")
MAX_MTP_HEADS = 32


def _unknown(name: str) -> UserError:
    return UserError(f"unknown objective {name!r}; accepted: {', '.join(NAMES)} (N an integer >= 1)")


def _n_heads(name: str) -> int:
    """N of ``mtp:N`` / ``mtp-seq:N``; a :class:`UserError` naming the accepted range otherwise."""
    family, n_text = name.split(":", 1)
    if not n_text.isdigit() or not 1 <= int(n_text) <= MAX_MTP_HEADS:
        raise UserError(
            f"objective {name!r}: N in {family}:N must be an integer from 1 to {MAX_MTP_HEADS}; "
            f"accepted objectives: {', '.join(NAMES)}"
        )
    return int(n_text)


def _mtp(name: str) -> Objective:
    from ._mtp import MultiToken  # late import: the heads pull in more of transformers

    return MultiToken(_n_heads(name))


def _mtp_seq(name: str) -> Objective:
    from ._mtp_seq import SequentialMultiToken

    return SequentialMultiToken(_n_heads(name))


def get_objective(name: str) -> Objective:
    """The objective called ``name``; a :class:`UserError` listing the accepted names otherwise."""
    key = name.strip().lower()
    if key == "ntp":
        return NextToken()
    if key == "myopic":
        return Myopic(strict=True)
    if key == "myopic:hidden":
        return Myopic(strict=False)
    if key == "bigram":
        return Bigram()
    if key in ("teacherless", "reverse"):
        return DataVariant(key)
    if key.startswith("mtp:"):
        return _mtp(key)
    if key.startswith("mtp-seq:"):
        return _mtp_seq(key)
    raise _unknown(name)
