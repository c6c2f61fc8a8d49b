"""Own-position vs future-position ablations of one attention head (``head-roles``).

A head h of layer l writes o_s = W_O^h z_s into the residual stream at every position s (z_s: its
attention output, the slice of the input of the layer's output projection). Its usefulness can
reach the loss two ways: along position s itself (the later blocks' queries, MLPs and the
logits at s), or through later positions t > s, which read position s's stream through keys and
values. The ablation replaces z_s by a constant (zero, or the head's mean z over the clean
run's positions and sequences):

- ``full``: at every position, in one ordinary forward.
- ``own``: each position's own stream loses the head, but every position t reads the keys and
  values of positions s < t from the clean run: only the own-position paths are cut.
- ``future``: each position keeps the head in its own stream, but reads the keys and values of
  positions s < t from the fully ablated run: only the paths through later positions are cut.

Both are computed exactly in one forward of a doubled sequence [source | current] (2T tokens,
position ids 0..T−1 twice) with a custom mask: source query s sees source keys ≤ s (an ordinary
causal run); current query t sees source keys < t and its own key t. For ``own`` the head is
ablated in the current half (the source is clean); for ``future`` in the source half (the
current is clean). The loss is read on the current half. Ablating both halves gives ``full``
and neither gives the clean run (tested), and ``own`` at position t equals a run on tokens
0..t with the head ablated at t only; ``future`` at t one with the head ablated before t only
(tested by brute force). full − clean need not equal own + future: the two paths interact.

Blocks before l are the same in every variant: their output (the stream entering block l) is
taken from the clean run and only blocks l..L are recomputed.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ...interp import capture_residuals, decoder_layers, from_layer, head_geometry, logits_from_final, output_projection

MODES = ("full", "own", "future")


@contextmanager
def replace_heads(proj: torch.nn.Module, mask: torch.Tensor, value: torch.Tensor, n_heads: int):
    """While active, z of head k at (row, position) becomes value[k] where mask[row, pos, k]:
    mask (R, P, H) bool, value (H, hd)."""

    def hook(module, args):
        x = args[0]
        r, p, _ = x.shape
        z = x.view(r, p, n_heads, -1)  # (R, P, H, hd)
        m = mask[:, :p, :, None].to(z.dtype)  # (R, P, H, 1)
        z = z * (1 - m) + value.to(z.dtype)[None, None] * m
        return (z.reshape(r, p, -1),) + tuple(args[1:])  # (R, P, H*hd)

    handle = proj.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def clean_run(model, ids: torch.Tensor) -> dict:
    """The clean forward: per-position losses (B, T−1), the stream entering each block
    (L x (B, T, d)) and each head's z (L x (B, T, H, hd))."""
    n_heads, _ = head_geometry(model)
    layers = decoder_layers(model)
    zs: list[torch.Tensor] = []
    hooks = [
        output_projection(layer).register_forward_pre_hook(
            lambda m, args: zs.append(args[0].view(*args[0].shape[:2], n_heads, -1))  # (B, T, H, hd)
        )
        for layer in layers
    ]
    try:
        with capture_residuals(model) as states:
            logits = model(input_ids=ids, use_cache=False).logits  # (B, T, V)
    finally:
        for h in hooks:
            h.remove()
    return {"losses": _losses(logits, ids), "inputs": states[: len(layers)], "z": zs}


def _losses(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, T−1) next-token losses."""
    b, t = ids.shape
    flat = logits[:, :-1].reshape(-1, logits.shape[-1])  # (B*(T-1), V)
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))  # half precision upcast
    return F.cross_entropy(flat, ids[:, 1:].reshape(-1), reduction="none").view(b, t - 1)


def doubled_mask(t: int, dtype: torch.dtype, device) -> torch.Tensor:
    """(1, 1, 2T, 2T) additive mask of the [source | current] sequence."""
    keep = torch.zeros(2 * t, 2 * t, dtype=torch.bool, device=device)
    keep[:t, :t] = torch.ones(t, t, dtype=torch.bool, device=device).tril()  # source: causal
    keep[t:, :t] = torch.ones(t, t, dtype=torch.bool, device=device).tril(-1)  # current t: source s < t
    keep[t:, t:] = torch.eye(t, dtype=torch.bool, device=device)  # current t: itself
    mask = torch.zeros(2 * t, 2 * t, dtype=dtype, device=device)
    return mask.masked_fill(~keep, torch.finfo(dtype).min)[None, None]  # (1, 1, 2T, 2T)


def _embeds_for(model, stream: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """inputs_embeds that make the model's input stream equal ``stream`` (GPT-2 adds its
    learned position embeddings to inputs_embeds; Llama and Gemma 3 add nothing)."""
    wpe = getattr(model.base_model, "wpe", None)
    return stream - wpe(positions) if wpe is not None else stream


@torch.no_grad()
def ablation_losses(
    model, ids: torch.Tensor, clean: dict, layer: int, heads: list[int], mode: str, value: torch.Tensor,
    positions: slice = slice(None), with_source: bool = False,
):
    """Losses (len(heads), B, P) at the loss ``positions`` (indices into 0..T−2) with each listed head
    of ``layer`` ablated in ``mode`` (``full``, ``own``, ``future``, or ``both``/``none`` for the
    checks); value (H, hd). ``with_source``: also the losses of the source half of a doubled run
    (for ``future`` that is the ``full`` ablation, for free)."""
    n_heads, _ = head_geometry(model)
    b, t = ids.shape
    k = len(heads)
    stream = clean["inputs"][layer].repeat(k, 1, 1)  # (K*B, T, d): row r = head r // B
    which = torch.zeros(k * b, n_heads, dtype=torch.bool, device=ids.device)
    rows, cols = torch.arange(k * b, device=ids.device), torch.tensor(heads, device=ids.device).repeat_interleave(b)
    which[rows, cols] = True  # (K*B, H)
    proj = output_projection(decoder_layers(model)[layer])
    if mode == "full":
        pos = torch.arange(t, device=ids.device)
        mask = which[:, None, :].expand(k * b, t, n_heads)  # (K*B, T, H)
        kwargs = {"inputs_embeds": _embeds_for(model, stream, pos), "position_ids": pos[None].expand(k * b, t)}
    else:
        src, cur = {"own": (False, True), "future": (True, False), "both": (True, True), "none": (False, False)}[mode]
        halves = torch.tensor([src] * t + [cur] * t, device=ids.device)  # (2T,)
        mask = which[:, None, :] & halves[None, :, None]  # (K*B, 2T, H)
        pos = torch.arange(t, device=ids.device).repeat(2)  # (2T,)
        kwargs = {
            "inputs_embeds": _embeds_for(model, stream.repeat(1, 2, 1), pos),  # (K*B, 2T, d)
            "position_ids": pos[None].expand(k * b, 2 * t),
            "attention_mask": doubled_mask(t, stream.dtype, ids.device),
        }
    with replace_heads(proj, mask, value, n_heads), from_layer(model, layer):
        hidden = model.base_model(use_cache=False, **kwargs).last_hidden_state  # (K*B, P, d)
    current = _position_losses(model, hidden[:, -t:], ids, positions).view(k, b, -1)
    if not with_source:
        return current
    return current, _position_losses(model, hidden[:, :t], ids, positions).view(k, b, -1)


def _position_losses(model, hidden: torch.Tensor, ids: torch.Tensor, positions: slice) -> torch.Tensor:
    """(R, P) next-token losses at ``positions`` from final hidden states (R, T, d), R = K*B rows of
    the B sequences. Row by row: a (K*B, T, V) logit tensor can be gigabytes."""
    b = ids.shape[0]
    out = []
    for r in range(hidden.shape[0]):
        h = hidden[r, :-1][positions]  # (P, d)
        logits = logits_from_final(model, h)  # (P, V)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        out.append(F.cross_entropy(logits, ids[r % b, 1:][positions], reduction="none"))
    return torch.stack(out)  # (R, P)


def role_losses(model, ids, clean, layer, heads, value, positions=slice(None)) -> dict[str, torch.Tensor]:
    """{"own", "future", "full"}: losses (len(heads), B, P), from two doubled forwards."""
    own = ablation_losses(model, ids, clean, layer, heads, "own", value, positions)
    future, full = ablation_losses(model, ids, clean, layer, heads, "future", value, positions, with_source=True)
    return {"own": own, "future": future, "full": full}


def mean_z(clean: dict, layer: int, skip_first: bool = True) -> torch.Tensor:
    """(H, hd) each head's mean z over sequences and positions (BOS position left out)."""
    z = clean["z"][layer]  # (B, T, H, hd)
    return z[:, 1 if skip_first else 0 :].mean((0, 1))
