"""Training objectives, applied from outside the model.

``get_objective(name)`` for ``ntp``, ``myopic``, ``myopic:hidden``, ``mtp:N``, ``mtp-seq:N``, ``bigram``,
``teacherless`` and ``reverse``. Importing this package registers the ``myopic``,
``myopic:hidden`` and ``bigram`` attention implementations with ``transformers``.
"""

from __future__ import annotations

from ._attention import BIGRAM, MYOPIC, MYOPIC_HIDDEN
from ._attention import register as _register_attention
from ._base import Bigram, DataVariant, NextToken, Objective, masked_mean
from ._hidden import install_hidden_hooks
from ._mtp import HEADS_FILE, MultiToken, MultiTokenModel
from ._mtp_seq import MODULES_FILE, SequentialMultiToken, SequentialMultiTokenModel
from ._myopic import Myopic
from ._registry import NAMES, get_objective

_register_attention()

__all__ = [
    "BIGRAM",
    "MYOPIC",
    "MYOPIC_HIDDEN",
    "NAMES",
    "Bigram",
    "DataVariant",
    "HEADS_FILE",
    "MODULES_FILE",
    "MultiToken",
    "MultiTokenModel",
    "Myopic",
    "NextToken",
    "Objective",
    "SequentialMultiToken",
    "SequentialMultiTokenModel",
    "get_objective",
    "install_hidden_hooks",
    "masked_mean",
]
