"""The :class:`Objective` base: teacher-forced next-token training (``ntp``).

An objective is applied from outside the model. The trainer calls :meth:`Objective.prepare`
once (it picks the attention implementation, adds extra heads), then
:meth:`Objective.forward_backward` every micro-batch, and :meth:`Objective.per_position_loss`
for evaluation. Batches are duck-typed like ``myopia.tasks.Batch``: ``inputs`` (kwargs for the
Hugging Face model's forward), ``targets`` (B, T) and ``loss_mask`` (B, T).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..interp import set_attn_implementation

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (B,T,V), (B,T) -> (B,T)


def masked_mean(per_position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_position`` (B, T) over the positions where ``mask`` (B, T) is 1."""
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp_min(1.0)


class Objective:
    """Teacher-forced next-token (or next-value) loss; the base every objective extends."""

    name: str = "ntp"
    attn_implementation: str | None = None
    data_variant: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    # -- set-up ----------------------------------------------------------------------------
    def prepare(self, model: PreTrainedModel) -> torch.nn.Module:
        """Set the attention implementation; return the module whose parameters are trained."""
        set_attn_implementation(model, self.attn_implementation)
        return model

    # -- training --------------------------------------------------------------------------
    def forward_backward(
        self, module: torch.nn.Module, batch: Any, loss_fn: LossFn, loss_scale: float = 1.0
    ) -> dict[str, float]:
        """Forward and backward one batch; gradients accumulate (times ``loss_scale``)."""
        logits = module(**batch.inputs).logits  # (B, T, V)
        loss = masked_mean(loss_fn(logits, batch.targets), batch.loss_mask)
        (loss * loss_scale).backward()
        return {"loss": loss.item()}

    @torch.no_grad()
    def per_position_loss(self, module: torch.nn.Module, batch: Any, loss_fn: LossFn) -> torch.Tensor:
        """(B, T) next-token loss without gradient, for evaluation."""
        logits = self.next_token_model(module)(**batch.inputs).logits  # (B, T, V)
        return loss_fn(logits, batch.targets)

    def next_token_model(self, module: torch.nn.Module) -> torch.nn.Module:
        """The Hugging Face model inside ``module`` (the module itself for most objectives)."""
        return module

    # -- checkpoints -----------------------------------------------------------------------
    def save_extra(self, module: torch.nn.Module, out_dir: str | Path) -> None:
        """Save weights that are not part of the Hugging Face checkpoint (none here)."""

    def load_extra(self, module: torch.nn.Module, out_dir: str | Path) -> None:
        """Load what :meth:`save_extra` wrote (nothing here)."""


class NextToken(Objective):
    """``ntp``: the default objective, the model's own attention implementation."""

    name = "ntp"


class Bigram(Objective):
    """``bigram``: no attention to other positions at all (the myopia gap's lower bound).

    Every position sees only itself: the attention output at t is the value at t. The model is
    evaluated the same way, since it is a different model, not a different gradient.
    """

    name = "bigram"
    attn_implementation = "bigram"


class DataVariant(Objective):
    """``teacherless`` and ``reverse``: ntp loss on batches the task builds differently.

    ``teacherless``: the inputs on the target side are replaced by a dummy token.
    ``reverse``: the target path is written from goal to source. Only path-star supports them.
    """

    attn_implementation = None

    def __init__(self, variant: str):
        self.name = variant
        self.data_variant = variant
