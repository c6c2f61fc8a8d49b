"""Where the parts of a ``transformers`` causal LM are, and hooks on them.

The stream notation used throughout myopia: ``h_0`` is the embeddings (the input of block 1),
``h_l`` the residual stream after block ``l``, ``h_L`` the last block's output *before* the final
norm. ``unembed(model, h_L)`` gives the model's logits.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from .._errors import UserError

_BLOCKS = ("layers", "h", "blocks")  # Llama/Gemma/Qwen/...: layers; GPT-2: h
_NORMS = ("norm", "ln_f", "final_layernorm")
_OUT_PROJ = ("o_proj", "c_proj", "out_proj", "dense")


def _blocks_name(model) -> str:
    base = model.base_model
    for name in _BLOCKS:
        if isinstance(getattr(base, name, None), torch.nn.ModuleList):
            return name
    raise UserError(
        f"cannot find the transformer blocks of {type(model).__name__} (expected .{', .'.join(_BLOCKS)} "
        "on its base model); use a Llama-, Gemma- or GPT-2-style model"
    )


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of transformer blocks of a causal LM (Llama, Gemma 3, GPT-2, ...)."""
    return getattr(model.base_model, _blocks_name(model))


def final_norm(model) -> torch.nn.Module:
    """The norm applied to the last block's output before the unembedding."""
    base = model.base_model
    for name in _NORMS:
        norm = getattr(base, name, None)
        if isinstance(norm, torch.nn.Module):
            return norm
    raise UserError(f"cannot find the final norm of {type(model).__name__} (expected .{', .'.join(_NORMS)})")


def logits_from_final(model, hidden: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Logits from final-normed hidden states (..., d): the unembedding, then the model's logit
    soft-capping if it has one (Gemma 2/3). With ``tokens`` (n,) token ids, only those tokens'
    logits (..., n), each equal to its entry of the full logits, at n/V of the cost."""
    head = model.get_output_embeddings()
    if tokens is None:
        logits = head(hidden)  # (..., V)
    else:
        tokens = tokens.to(head.weight.device)  # ids built on the CPU index the head where it sits
        bias = None if getattr(head, "bias", None) is None else head.bias[tokens]
        logits = torch.nn.functional.linear(hidden, head.weight[tokens], bias)  # (..., n)
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def unembed(model, hidden: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Logits from the last block's output h_L (..., d): final norm, unembedding, soft-capping
    (only ``tokens``' logits when given, as in :func:`logits_from_final`)."""
    return logits_from_final(model, final_norm(model)(hidden), tokens)


def head_geometry(model) -> tuple[int, int]:
    """(number of attention heads, head dimension)."""
    cfg = model.config.get_text_config()
    n = cfg.num_attention_heads
    return n, getattr(cfg, "head_dim", None) or cfg.hidden_size // n


def output_projection(layer) -> torch.nn.Module:
    """The module of a block whose input is the concatenated head outputs (B, T, H*hd)."""
    attn = getattr(layer, "self_attn", None) or getattr(layer, "attn", None)
    for name in _OUT_PROJ:
        if attn is not None and hasattr(attn, name):
            return getattr(attn, name)
    raise UserError(f"cannot find the attention output projection of {type(layer).__name__}")


@contextmanager
def capture_residuals(model) -> Iterator[list[torch.Tensor]]:
    """Collects [h_0, h_1, ..., h_L] (each (B, T, d)) of every forward pass inside the block."""
    layers = decoder_layers(model)
    states: list[torch.Tensor] = []

    def before_first(module, args, kwargs):
        states.append(args[0] if args else kwargs["hidden_states"])

    def after(module, args, out):
        states.append(out[0] if isinstance(out, tuple) else out)

    hooks = [layers[0].register_forward_pre_hook(before_first, with_kwargs=True)]
    hooks += [layer.register_forward_hook(after) for layer in layers]
    try:
        yield states
    finally:
        for h in hooks:
            h.remove()


@contextmanager
def from_layer(model, start: int) -> Iterator[None]:
    """While active, the model runs only blocks ``start..L``: its input (``inputs_embeds``) is
    taken as the stream entering block ``start``."""
    base, name = model.base_model, _blocks_name(model)
    full = getattr(base, name)
    setattr(base, name, torch.nn.ModuleList(list(full)[start:]))
    try:
        yield
    finally:
        setattr(base, name, full)


def set_attn_implementation(model, name: str | None) -> None:
    """Switch ``model`` (and its sub-configs) to the attention implementation ``name``.

    ``None`` means the library default (``sdpa``). Works for the implementations this package
    registers (``myopic``, ``myopic:hidden``, ``bigram``) as for the built-in ones.
    """
    wanted = name or "sdpa"
    if getattr(model.config, "_attn_implementation", None) != wanted:
        model.set_attn_implementation(wanted)
    if name is not None and model.config._attn_implementation != name:  # transformers only warns
        raise UserError(
            f"{type(model).__name__} cannot switch its attention to {name!r}: it does not dispatch "
            "through transformers' AttentionInterface; use a model that does (Llama, GPT-2, Gemma 3, ...)"
        )


@contextmanager
def attention(model, name: str | None) -> Iterator[None]:
    """While active, the model runs the attention implementation ``name`` (``eager``, ``sdpa``,
    ``myopic``, ...; None leaves it as it is); the one it had is restored afterwards."""
    was = getattr(model.config, "_attn_implementation", None)
    if name is not None:
        set_attn_implementation(model, name)
    try:
        yield
    finally:
        set_attn_implementation(model, was)


@contextmanager
def replace_residual(model, layer: int, value: torch.Tensor, position: int = -1) -> Iterator[None]:
    """While active, every forward pass runs with the stream h_``layer`` at ``position`` replaced
    by ``value`` (B, d), one vector per sequence of the batch: the model computes h_0..h_layer as
    usual, the replaced vector enters block ``layer + 1`` (at ``layer`` = L: the final norm), and
    every later layer and position sees it. ``layer`` runs 0 (the embeddings) .. L (the last
    block's output, before the final norm). Differentiable in ``value`` and in the model's
    other inputs."""
    layers = decoder_layers(model)
    if not 0 <= layer <= len(layers):
        raise UserError(f"layer {layer} is out of range: the model has layers 0..{len(layers)} (0 = embeddings)")
    target = layers[layer] if layer < len(layers) else final_norm(model)

    def swap(module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        h = h.clone()
        h[:, position] = value.to(device=h.device, dtype=h.dtype)
        if args:
            return (h, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": h}

    hook = target.register_forward_pre_hook(swap, with_kwargs=True)
    try:
        yield
    finally:
        hook.remove()
