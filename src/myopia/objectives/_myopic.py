"""``myopic`` and ``myopic:hidden``: myopic descent through a registered attention function."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ._attention import MYOPIC, MYOPIC_HIDDEN
from ._base import Objective, set_attn_implementation
from ._hidden import install_hidden_hooks

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel


class Myopic(Objective):
    """Next-token loss with myopic gradients; forward values are those of ``ntp``.

    ``strict=True`` (``myopic``): no gradient from the loss at t reaches positions < t.
    ``strict=False`` (``myopic:hidden``): Wu et al.'s released variant, where the key/value
    projection weights still learn through past positions.
    """

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.name = MYOPIC if strict else MYOPIC_HIDDEN
        self.attn_implementation = self.name

    def prepare(self, model: PreTrainedModel) -> torch.nn.Module:
        set_attn_implementation(model, self.attn_implementation)
        if not self.strict:
            install_hidden_hooks(model)
        return model
