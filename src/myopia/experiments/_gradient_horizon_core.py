"""The exact per-target decomposition of residual-stream gradients (``gradient-horizon``).

For one sequence of T tokens, ``ℓ_j`` is the next-token loss at position j (predicting token
j+1), ``h_l`` the residual stream after block l (``l = 0``: the embeddings, the input of block 1;
``l = L``: the output of the last block, before the final norm). The full gradient at (l, i) is

    g_i = ∂(Σ_j ℓ_j)/∂h_l[i] = Σ_{j ≥ i} g_{i←j},      g_{i←j} = ∂ℓ_j/∂h_l[i]

(causality: g_{i←j} = 0 for j < i). :func:`offset_gradients` returns g_{i←i+d} for d = 0..D
and the full g_i; the remainder ``g_i − Σ_{d≤D} g_{i←i+d}`` is the exact sum of the farther
targets (d > D). Two ways to compute the same numbers:

- :func:`offset_gradients_loop`: the reference, one backward pass per target position.
- :func:`offset_gradients` (vectorised): (1) one backward of Σ_j ℓ_j gives ∂ℓ_j/∂h_L[j] for every
  j at once, since everything after the last block (final norm, unembedding) is position-wise;
  (2) targets in chunks of K: a batched vector-Jacobian product (``is_grads_batched``) from h_L down
  to every layer, one batch row per target. A chunk [a, b) only needs positions [a−D, b): the
  paths from h_l[i] to ℓ_j run through positions i..j only, so positions before a−D enter as a
  key/value cache (one no-gradient forward of the whole sequence, cropped per chunk), and the
  backward is over K+D positions, not T.

Models with ``myopic`` attention run without the cache (it refuses one under gradient): their
chunks start at position 0. Attention runs ``eager`` while gradients are taken (the batched
backward needs batching rules the fused kernels lack); other implementations are kept.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ..objectives._base import set_attn_implementation


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of transformer blocks of a ``transformers`` causal LM (Llama, Gemma 3, GPT-2, ...)."""
    base = model.base_model
    for name in ("layers", "h", "blocks"):
        layers = getattr(base, name, None)
        if isinstance(layers, torch.nn.ModuleList):
            return layers
    raise TypeError(f"cannot find the transformer blocks of {type(model).__name__}")


@contextmanager
def capture_residuals(model):
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
def gradient_mode(model):
    """Parameters frozen (only activation gradients are taken), eager attention unless the model
    runs a registered non-default implementation (``myopic``, ``bigram``); restored afterwards."""
    was = getattr(model.config, "_attn_implementation", None)
    grads = [p.requires_grad for p in model.parameters()]
    switch = was in (None, "sdpa", "flash_attention_2", "flex_attention")
    if switch:
        set_attn_implementation(model, "eager")
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
        if switch:
            model.set_attn_implementation(was or "sdpa")


def _is_myopic(model) -> bool:
    return str(getattr(model.config, "_attn_implementation", "")).startswith("myopic")


def _wide(x: torch.Tensor) -> torch.Tensor:
    """Half precision is upcast to float32 for the loss; float32/float64 stay as they are."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _forward_states(model, ids: torch.Tensor):
    """Embeddings requiring grad -> (per-target losses (T−1,), [h_0..h_L] each (1, T, d))."""
    emb = model.get_input_embeddings()(ids).detach().requires_grad_()  # (1, T, d)
    with capture_residuals(model) as states:
        logits = model(inputs_embeds=emb, use_cache=False).logits  # (1, T, V)
    losses = F.cross_entropy(_wide(logits[0, :-1]), ids[0, 1:], reduction="none")  # (T-1,)
    return losses, list(states)


def offset_gradients_loop(model, ids: torch.Tensor, max_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: one backward pass per target. Returns (parts, full):
    parts (L+1, T, D+1, d) with parts[l, i, d] = g_{i←i+d} (zero where i+d has no loss), full (L+1, T, d)."""
    with gradient_mode(model):
        losses, states = _forward_states(model, ids)
        n, t, dim = losses.shape[0], ids.shape[1], states[0].shape[-1]
        parts = states[0].new_zeros(len(states), t, max_offset + 1, dim)  # (L+1, T, D+1, d)
        for j in range(n):
            grads = torch.autograd.grad(losses[j], states, retain_graph=True)
            for d in range(min(max_offset, j) + 1):
                parts[:, j - d, d] = torch.stack([g[0, j - d] for g in grads])
        full = torch.stack(torch.autograd.grad(losses.sum(), states))[:, 0]  # (L+1, T, d)
    return parts.detach(), full.detach()


def offset_gradients(
    model, ids: torch.Tensor, max_offset: int, chunk: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorised :func:`offset_gradients_loop` (same outputs, see the module docstring)."""
    with gradient_mode(model):
        losses, states = _forward_states(model, ids)
        full = torch.stack(torch.autograd.grad(losses.sum(), states))[:, 0].detach()  # (L+1, T, d)
        del losses, states
        n, t = ids.shape[1] - 1, ids.shape[1]
        parts = full.new_zeros(full.shape[0], t, max_offset + 1, full.shape[-1])  # (L+1, T, D+1, d)
        parts[-1, :n, 0] = full[-1, :n]  # after the last block, ℓ_j reaches position j only
        prefix = None
        if not _is_myopic(model) and n > chunk:
            with torch.no_grad():  # keys/values of every position, cropped to each chunk's prefix
                prefix = model.base_model(input_ids=ids, use_cache=True).past_key_values
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            s = 0 if prefix is None else max(0, a - max_offset)
            cache = None
            if s > 0:
                cache = copy.deepcopy(prefix)
                cache.crop(s - t)  # keep positions 0..s-1
            grads = _chunk_vjp(model, ids, full[-1], a, b, s, cache)  # L x (K, W, d)
            _scatter(parts, grads, a, b, s, max_offset)
    return parts, full


def _chunk_vjp(model, ids, grad_last, a: int, b: int, s: int, cache) -> list[torch.Tensor]:
    """∂ℓ_j/∂h_l[s:b] for j in [a, b) and l < L, as L tensors (K, W, d), W = b − s; ``cache``
    holds the keys/values of positions 0..s−1 (computed without gradient)."""
    emb = model.get_input_embeddings()(ids[:, s:b]).detach().requires_grad_()  # (1, W, d)
    with capture_residuals(model) as states:
        model.base_model(inputs_embeds=emb, past_key_values=cache, use_cache=cache is not None)
    k, w = b - a, b - s
    seed = grad_last.new_zeros(k, 1, w, grad_last.shape[-1])  # (K, 1, W, d): one target per row
    rows = torch.arange(k)
    seed[rows, 0, rows + (a - s)] = grad_last[a:b]
    grads = torch.autograd.grad(states[-1], states[:-1], grad_outputs=seed, is_grads_batched=True)
    return [g[:, 0] for g in grads]  # each (K, W, d)


def _scatter(parts: torch.Tensor, grads: list[torch.Tensor], a: int, b: int, s: int, max_offset: int) -> None:
    """parts[l, j−d, d] = grads[l][j−a, j−d−s] for targets j in [a, b) and offsets d ≤ min(D, j)."""
    stacked = torch.stack(grads)  # (L, K, W, d)
    for d in range(max_offset + 1):
        j0 = max(a, d)  # position j − d must exist
        if j0 >= b:
            continue
        js = torch.arange(j0, b)
        parts[:-1, js - d, d] = stacked[:, js - a, js - d - s]


def horizon_sums(parts: torch.Tensor, full: torch.Tensor, max_offset: int) -> dict[str, torch.Tensor]:
    """Additive statistics over the positions i whose offsets 0..D all have a loss (i + D < T − 1).

    Components k = 0..D are g_{i←i+k}; component D+1 is the remainder (targets beyond D).
    ``norm`` (L+1, D+2): Σ_i ‖component‖; ``proj`` (L+1, D+2): Σ_i ⟨component, g_i⟩;
    ``full_sq`` (L+1,): Σ_i ‖g_i‖². proj / full_sq sums to 1 over the components exactly.
    """
    t = full.shape[1]
    m = t - 1 - max_offset  # positions with every offset present
    if m <= 0:
        raise ValueError(f"sequences of {t} tokens are too short for offsets up to {max_offset}")
    p, f = parts[:, :m].double(), full[:, :m].double()  # (L+1, m, D+1, d), (L+1, m, d)
    rest = f - p.sum(2)  # (L+1, m, d)
    comps = torch.cat([p, rest[:, :, None]], dim=2)  # (L+1, m, D+2, d)
    return {
        "norm": comps.norm(dim=-1).sum(1),  # (L+1, D+2)
        "proj": (comps * f[:, :, None]).sum(-1).sum(1),  # (L+1, D+2)
        "full_sq": (f * f).sum(-1).sum(1),  # (L+1,)
        "positions": torch.tensor(float(m), dtype=torch.float64),
    }


def myopic_drop(model, ids: torch.Tensor) -> dict[str, float]:
    """‖∇θL − ∇θL_myopic‖ / ‖∇θL‖ for the mean next-token loss of ``ids`` (B, T), where
    L_myopic has the same value but the gradients of strict myopic descent (``myopic`` attention).
    Returned over all parameters (``total``) and without the embedding/unembedding matrices."""
    from ..objectives import MYOPIC

    was = getattr(model.config, "_attn_implementation", None)
    grads = [p.requires_grad for p in model.parameters()]
    emb_ids = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    try:
        out = []
        for impl in (was or "sdpa", MYOPIC):
            set_attn_implementation(model, impl)
            logits = model(input_ids=ids, use_cache=False).logits  # (B, T, V)
            loss = F.cross_entropy(_wide(logits[:, :-1].flatten(0, 1)), ids[:, 1:].flatten())
            out.append(torch.autograd.grad(loss, params))
        set_attn_implementation(model, was or "sdpa")
    finally:
        for p, g in zip(params, grads):
            p.requires_grad_(g)
    diff_sq = full_sq = body_diff = body_full = 0.0
    for p, g, gm in zip(params, *out):
        dd, ff = (g - gm).double().pow(2).sum().item(), g.double().pow(2).sum().item()
        diff_sq, full_sq = diff_sq + dd, full_sq + ff
        if id(p) not in emb_ids:
            body_diff, body_full = body_diff + dd, body_full + ff
    return {
        "total": (diff_sq / full_sq) ** 0.5 if full_sq > 0 else 0.0,
        "without_embeddings": (body_diff / body_full) ** 0.5 if body_full > 0 else 0.0,
    }
