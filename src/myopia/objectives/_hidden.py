"""Hooks for ``myopic:hidden``: past keys/values recomputed from detached hidden states.

The attention function only sees the projected query/key/value. To recompute keys and values
from *detached* hidden states with the *live* projection weights, a forward pre-hook keeps the
attention module's inputs; the attention function then calls the module's own ``forward`` again
on ``hidden_states.detach()`` and stops it as soon as it reaches the attention function, keeping
the key/value it was handed. Reusing the model's own code covers every architecture (fused GPT-2
``c_attn``, Gemma 3's q/k norms, rotary embeddings) without knowing any of them.
"""

from __future__ import annotations

import torch

from .._errors import UserError
from ._calls import recall

_INPUTS = "_myopia_attention_inputs"
_CAPTURING = "_myopia_capturing"
_HOOKED = "_myopia_hidden_hook"


class _Captured(Exception):
    """Carries the key/value of a recompute out of the module's forward."""

    def __init__(self, key: torch.Tensor, value: torch.Tensor):
        super().__init__("myopia: captured key/value")
        self.key, self.value = key, value


def _stash_inputs(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
    if torch.is_grad_enabled():
        setattr(module, _INPUTS, (args, kwargs))


def _is_attention_module(module: torch.nn.Module) -> bool:
    """Modules that call the attention interface: ``LlamaAttention``, ``GPT2Attention``, ..."""
    return type(module).__name__.endswith("Attention") and hasattr(module, "config")


def install_hidden_hooks(model: torch.nn.Module) -> int:
    """Install the input-keeping hook on every attention module of ``model``; returns how many.

    Needed once per model for ``myopic:hidden`` (``Objective.prepare`` does it). Idempotent.
    """
    count = 0
    for module in model.modules():
        if _is_attention_module(module):
            if not getattr(module, _HOOKED, False):
                module.register_forward_pre_hook(_stash_inputs, with_kwargs=True)
                setattr(module, _HOOKED, True)
            count += 1
    return count


def raise_if_capturing(module: torch.nn.Module, key: torch.Tensor, value: torch.Tensor) -> None:
    """Inside a recompute, end the module's forward here, handing back its key/value."""
    if getattr(module, _CAPTURING, False):
        raise _Captured(key, value)


def recompute_past_kv(module: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Key and value (B, n_kv, T, hs) of ``module`` from its detached input hidden states."""
    stashed = module.__dict__.pop(_INPUTS, None)
    if stashed is None:
        raise UserError(
            "attn_implementation='myopic:hidden' needs its hook: call "
            "myopia.objectives.install_hidden_hooks(model) (or get_objective('myopic:hidden').prepare(model))"
        )
    args, kwargs = stashed
    kwargs = dict(kwargs)
    hidden = args[0] if args else kwargs.pop("hidden_states")
    setattr(module, _CAPTURING, True)
    try:
        recall(module.forward, hidden.detach(), args, kwargs, past_key_values=None)
    except _Captured as captured:
        return captured.key, captured.value
    finally:
        setattr(module, _CAPTURING, False)
    raise RuntimeError(f"{type(module).__name__}.forward did not reach the attention interface")
