"""Attention functions registered with ``transformers``' ``AttentionInterface``.

``import myopia`` registers three implementations, usable by every model that dispatches
through the attention interface (Llama, GPT-2, Gemma 3, ...)::

    AutoModelForCausalLM.from_pretrained(path, attn_implementation="myopic")

- ``myopic`` (strict myopic descent): no gradient from the loss at position t reaches any
  computation at positions < t, the key and value projections there included. Scores are taken
  against detached keys, the diagonal score stays live, and the output is
  ``A·V_detached + diag(A)·(V − V_detached)``. Forward values are exactly those of ``sdpa``.
- ``myopic:hidden``: Wu et al.'s released variant. Past keys/values are recomputed from detached
  hidden states with the live projection weights, so W_k/W_v still learn through past positions.
  Needs :func:`myopia.objectives.install_hidden_hooks` (``Objective.prepare`` calls it).
- ``bigram``: no attention to other positions: the output at t is the value at t.

Fast path: one fused attention call against the detached keys/values (``scaled_dot_product_attention``
or the CPU flash kernel, which also returns the row log-sum-exp lse), whose output passes through
an identity autograd function that adds, in the backward only, the gradients the live diagonal
carries (with a_t = A_tt = exp(s_t − lse_t), g = dL/dO_t, s_t the diagonal score):

    dL/dv_t += a_t·g        dL/dk_t += scale·a_t·(g·(v_t − O_t))·q_t

(dO_t/ds_t = a_t·(v_t − O_t) is the softmax derivative). Forward values are untouched.
With attention dropout, the explicit T×T formula is used instead.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from .._errors import UserError
from ._hidden import raise_if_capturing, recompute_past_kv

MYOPIC = "myopic"
MYOPIC_HIDDEN = "myopic:hidden"
BIGRAM = "bigram"
_LSE_CHUNK = 256  # query rows per block when the log-sum-exp is computed explicitly
_UNSUPPORTED = {"softcap": "attention-logit soft-capping", "position_bias": "additive position biases",
                "s_aux": "attention sinks", "sinks": "attention sinks"}


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv, S, hs) -> (B, n_kv * n_rep, S, hs), each key/value head repeated for its queries."""
    if n_rep == 1:
        return x
    b, n_kv, s, hs = x.shape
    return x[:, :, None].expand(b, n_kv, n_rep, s, hs).reshape(b, n_kv * n_rep, s, hs)  # (B, nh, S, hs)


def _additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean keep-mask (True = attend) becomes an additive float mask; floats pass through."""
    if mask is None or mask.dtype != torch.bool:
        return mask if mask is None else mask.to(dtype)
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)


def _causal_additive(t: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, 1, T, T) additive causal mask."""
    keep = torch.ones(t, t, dtype=torch.bool, device=device).tril()
    return _additive_mask(keep, dtype)[None, None]  # (1, 1, T, T)


# ----------------------------------------------------------------------------------------------
# bigram
# ----------------------------------------------------------------------------------------------
def bigram_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Every position attends only to itself: the output at t is the value at t."""
    q_len = query.shape[2]
    own = value[:, :, -q_len:]  # (B, n_kv, T, hs): with a cache, the newest positions are the queries
    own = _repeat_kv(own, query.shape[1] // value.shape[1])  # (B, nh, T, hs)
    return own.transpose(1, 2).contiguous(), None  # (B, T, nh, hs)


# ----------------------------------------------------------------------------------------------
# myopic
# ----------------------------------------------------------------------------------------------
def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _cpu_flash_available(q: torch.Tensor) -> bool:
    """The CPU flash kernel returns the log-sum-exp with the output; elsewhere it is recomputed."""
    return q.device.type == "cpu"


def _attention_and_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, causal: bool, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused attention output (B, nh, T, hs) and row log-sum-exp of the scores (B, nh, T)."""
    if _cpu_flash_available(q):
        float_mask = _additive_mask(mask, q.dtype)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, causal and float_mask is None, attn_mask=float_mask, scale=scale
        )
        return out, lse
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale)
    return out, _logsumexp_rows(q, k, mask, causal, scale)


@torch.no_grad()
def _logsumexp_rows(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, causal: bool, scale: float
) -> torch.Tensor:
    """Row log-sum-exp of scale·q·kᵀ + mask, in blocks of query rows (B, nh, T)."""
    t = q.shape[2]
    wide = torch.promote_types(q.dtype, torch.float32)
    full = _additive_mask(mask, wide)
    if full is None and causal:
        full = _causal_additive(t, wide, q.device)
    rows = []
    for start in range(0, t, _LSE_CHUNK):
        stop = min(start + _LSE_CHUNK, t)
        s = (q[:, :, start:stop].to(wide) @ k.to(wide).transpose(-1, -2)) * scale  # (B, nh, c, T)
        if full is not None:
            s = s + full[..., start:stop, :]
        rows.append(torch.logsumexp(s, dim=-1))  # (B, nh, c)
    return torch.cat(rows, dim=-1)  # (B, nh, T), at least float32


class _LiveDiagonal(torch.autograd.Function):
    """Identity on the attention output O; its backward adds what the live diagonal passes on.

    O was computed against the past keys/values. The diagonal score s_t = scale·q_t·k_t and value
    v_t are live: with a_t = A_tt = exp(s_t − lse_t) and g = dL/dO_t,
    dL/dv_t = a_t·g and dL/dk_t = scale·a_t·(g·(v_t − O_t))·q_t (the softmax derivative). The same
    amounts are taken from the past key/value at t when those carry gradient (``myopic:hidden``),
    since the fused call already routed them there. dL/dq_t is already right (k̄_t = k_t in value).
    """

    @staticmethod
    def forward(ctx, out, q, k, v, k_past, v_past, lse, diag_mask, scale):
        ctx.save_for_backward(out, q, k, v, lse, diag_mask)
        ctx.scale = scale
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        out, q, k, v, lse, diag_mask = ctx.saved_tensors
        wide = torch.promote_types(q.dtype, torch.float32)  # half precision computes A_tt in float32
        logit = (q * k).sum(-1).to(wide) * ctx.scale - lse.to(wide)  # (B, nh, T)
        if diag_mask is not None:
            logit = logit + diag_mask.to(wide)
        a = torch.nan_to_num(torch.exp(logit), nan=0.0).to(q.dtype)[..., None]  # (B, nh, T, 1); masked: 0
        dv = a * grad  # (B, nh, T, hs)
        dk = (a * (grad * (v - out)).sum(-1, keepdim=True) * ctx.scale) * q  # (B, nh, T, hs)
        need = ctx.needs_input_grad
        return (
            grad, None, dk if need[2] else None, dv if need[3] else None,
            -dk if need[4] else None, -dv if need[5] else None, None, None, None,
        )


def _fused_myopic(q, k, v, k_past, v_past, mask, causal, scale) -> torch.Tensor:
    """Attention with past keys/values ``k_past``/``v_past`` and a live diagonal; (B, nh, T, hs)."""
    out, lse = _attention_and_lse(q, k_past, v_past, mask, causal, scale)
    diag_mask = None if mask is None else _additive_mask(mask, torch.float32).diagonal(dim1=-2, dim2=-1)
    return _LiveDiagonal.apply(out, q, k, v, k_past, v_past, lse.detach(), diag_mask, scale)


def _explicit_myopic(q, k, v, k_past, v_past, mask, causal, scale, dropout, training) -> torch.Tensor:
    """The same function written out with the T×T attention matrix (used with dropout)."""
    t = q.shape[2]
    scores = (q @ k_past.transpose(-1, -2)) * scale  # (B, nh, T, T)
    live = ((q * k).sum(-1) - (q * k_past).sum(-1)) * scale  # (B, nh, T), zero in value
    scores = scores + torch.diag_embed(live)  # (B, nh, T, T): the diagonal stays live
    full = _additive_mask(mask, scores.dtype)
    if full is None and causal:
        full = _causal_additive(t, scores.dtype, q.device)
    if full is not None:
        scores = scores + full
    softmax_dtype = torch.promote_types(q.dtype, torch.float32)  # half precision upcasts
    attn = F.softmax(scores, dim=-1, dtype=softmax_dtype).to(q.dtype)  # (B, nh, T, T)
    attn = F.dropout(attn, p=dropout, training=training)
    diag = attn.diagonal(dim1=-2, dim2=-1)[..., None]  # (B, nh, T, 1)
    return attn @ v_past + diag * (v - v_past)  # (B, nh, T, hs)


def _myopic_core(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_past: torch.Tensor,
    value_past: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float,
    scaling: float | None,
    is_causal: bool | None,
    kwargs: dict[str, Any],
) -> tuple[torch.Tensor, None]:
    for name in _UNSUPPORTED:
        if kwargs.get(name) is not None:
            raise UserError(
                f"myopic attention does not support {_UNSUPPORTED[name]} ({name!r}); use a model without it"
            )
    if query.shape[2] != key.shape[2]:
        raise UserError(
            "myopic attention computes gradients over whole sequences, not with a key/value cache; "
            "run it without past_key_values (or without gradients)"
        )
    n_rep = query.shape[1] // key.shape[1]
    k, v = _repeat_kv(key, n_rep), _repeat_kv(value, n_rep)  # (B, nh, T, hs)
    k_past, v_past = _repeat_kv(key_past, n_rep), _repeat_kv(value_past, n_rep)  # (B, nh, T, hs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    if attention_mask is not None and attention_mask.shape[-1] != key.shape[2]:
        attention_mask = attention_mask[..., : key.shape[2]]
    if dropout > 0.0 and module.training:
        out = _explicit_myopic(query, k, v, k_past, v_past, attention_mask, causal, scale, dropout, True)
    else:
        out = _fused_myopic(query, k, v, k_past, v_past, attention_mask, causal, scale)
    return out.transpose(1, 2).contiguous(), None  # (B, T, nh, hs)


def myopic_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Strict myopic attention: past keys and values are detached, the diagonal stays live."""
    if not _needs_grad(query, key, value):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    return _myopic_core(
        module, query, key, value, key.detach(), value.detach(), attention_mask, dropout, scaling, is_causal, kwargs
    )


def myopic_hidden_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Wu et al.'s variant: past keys/values from detached hidden states, live projections."""
    raise_if_capturing(module, key, value)  # this call is the recompute: hand key/value back
    if not _needs_grad(query, key, value):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    key_past, value_past = recompute_past_kv(module)
    return _myopic_core(
        module, query, key, value, key_past, value_past, attention_mask, dropout, scaling, is_causal, kwargs
    )


def register() -> None:
    """Register the three implementations (and their masks, built like ``sdpa``'s)."""
    for name, fn in ((MYOPIC, myopic_attention), (MYOPIC_HIDDEN, myopic_hidden_attention), (BIGRAM, bigram_attention)):
        AttentionInterface.register(name, fn)
        AttentionMaskInterface.register(name, sdpa_mask)
