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
  (2) per-target windows: the paths from h_l[i] to ℓ_j run through positions i..j only, so target
  j needs a graph over positions j−D..j and nothing else. The window of g consecutive targets
  j0..j0+g−1 is positions j0−D..j0+g−1, one batch row: its positions (explicit position ids),
  the keys/values of the positions before it from one no-gradient forward of the whole sequence
  (a cache, shared by the rows), and a 4D additive mask that hides the cache entries the row
  recomputes and keeps causality and sliding windows in true positions. Rows do not interact;
  one backward pass per chunk of rows, batched over the g targets of each row
  (``is_grads_batched``; a plain backward when g = 1). Per target that is (D+g)/g positions
  forward and D+g backward, least at g ≈ √D (25 for D = 16, against 2(D+1) = 34 at g = 1 and T
  for the loop). Each window's h_L at its targets is checked against the full forward; if a
  model family builds its attention differently (a mismatch), the chunk path below is used.
- fallback (``myopic`` attention, which refuses a cache under gradient; other non-eager
  attentions; a mismatch above): targets in chunks of K, a batched vector-Jacobian product
  (``is_grads_batched``) over positions [a−D, b) per chunk [a, b), the earlier ones as a cache
  (``myopic``: from position 0, no cache).

Attention runs ``eager`` while gradients are taken (the batched backward needs batching rules the
fused kernels lack; the 4D masks are additive); other registered implementations are kept.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from ...interp import attention, capture_residuals
from ...objectives import MYOPIC


@contextmanager
def gradient_mode(model):
    """Parameters frozen (only activation gradients are taken), eager attention unless the model
    runs a registered non-default implementation (``myopic``, ``bigram``); restored afterwards."""
    was = getattr(model.config, "_attn_implementation", None)
    grads = [p.requires_grad for p in model.parameters()]
    fused = was in (None, "sdpa", "flash_attention_2", "flex_attention")
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with attention(model, "eager" if fused else None):
            yield
    finally:
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)


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


def offset_gradients_loop(
    model, ids: torch.Tensor, max_offset: int, targets: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: one backward pass per target. Returns (parts, full):
    parts (L+1, T, D+1, d) with parts[l, i, d] = g_{i←i+d} (zero where i+d has no loss), full (L+1, T, d).
    ``targets``: only these target positions j (the other parts stay zero), e.g. to time a subset."""
    with gradient_mode(model):
        losses, states = _forward_states(model, ids)
        n, t, dim = losses.shape[0], ids.shape[1], states[0].shape[-1]
        parts = states[0].new_zeros(len(states), t, max_offset + 1, dim)  # (L+1, T, D+1, d)
        for j in range(n) if targets is None else targets:
            grads = torch.autograd.grad(losses[j], states, retain_graph=True)
            for d in range(min(max_offset, j) + 1):
                parts[:, j - d, d] = torch.stack([g[0, j - d] for g in grads])
        full = torch.stack(torch.autograd.grad(losses.sum(), states))[:, 0]  # (L+1, T, d)
    return parts.detach(), full.detach()


def offset_gradients(
    model, ids: torch.Tensor, max_offset: int, chunk: int = 32, windows: bool = True, group: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorised :func:`offset_gradients_loop` (same outputs, see the module docstring).
    ``chunk``: target positions per backward pass; ``group``: consecutive targets per window
    (default ≈ √D, the least work); ``windows=False``: the chunk path only."""
    group = group or max(1, round(max_offset**0.5))
    with gradient_mode(model):
        losses, states = _forward_states(model, ids)
        full = torch.stack(torch.autograd.grad(losses.sum(), states))[:, 0].detach()  # (L+1, T, d)
        last = states[-1][0].detach()  # (T, d): h_L of the full forward, to check the windows against
        del losses, states
        parts = full.new_zeros(full.shape[0], ids.shape[1], max_offset + 1, full.shape[-1])  # (L+1, T, D+1, d)
        parts[-1, :-1, 0] = full[-1, :-1]  # after the last block, ℓ_j reaches position j only
        windows = windows and _windows_apply(model)
        if not (windows and _target_windows(model, ids, full[-1], last, parts, max_offset, chunk, group)):
            parts[:-1] = 0
            _chunk_windows(model, ids, full[-1], parts, max_offset, chunk)
    return parts, full


def _windows_apply(model) -> bool:
    """Per-target windows need eager attention: additive 4D masks, a cache, batching rules."""
    return getattr(model.config, "_attn_implementation", None) == "eager"


def _target_windows(model, ids, grad_last, last, parts, max_offset: int, chunk: int, group: int = 1) -> bool:
    """Fills parts[:-1] with one window per group of ``group`` consecutive targets (D + group
    positions, module docstring), ``chunk`` targets per backward pass; False (parts partly
    written) if a window's forward differs from the full one at a target."""
    t, n = ids.shape[1], ids.shape[1] - 1
    g = max(1, min(group, chunk, n))
    w = min(max_offset + g, t)
    dev = ids.device
    embed = model.get_input_embeddings()
    with torch.no_grad():  # keys/values of every position, each layer's kept whole (no sliding crop)
        prefix = model.base_model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True).past_key_values
    kv = [(layer.keys, layer.values) for layer in prefix.layers]  # each (1, H, T, hs)
    firsts = torch.arange(0, n, g, device=dev)  # first target of each group
    for first in firsts.split(max(1, chunk // g)):
        b = len(first)
        js = first[:, None] + torch.arange(g, device=dev)  # (B, g) targets
        starts = (first - max_offset).clamp(min=0, max=t - w)  # (B,) first window position
        pos = starts[:, None] + torch.arange(w, device=dev)  # (B, W) true positions
        c = int(starts.max())  # the cache holds positions 0..c-1
        cache = DynamicCache([(key[:, :, :c].expand(b, -1, -1, -1), val[:, :, :c].expand(b, -1, -1, -1))
                              for key, val in kv]) if c > 0 else None
        emb = embed(ids[0, pos]).detach().requires_grad_()  # (B, W, d)
        mask = _window_mask(model.config, starts, pos, c, emb.dtype)
        with capture_residuals(model) as states:
            model.base_model(inputs_embeds=emb, attention_mask=mask, position_ids=pos,
                             past_key_values=cache, use_cache=cache is not None)
        ok = js < n  # (B, g): the last group may run past the last target
        rows = torch.arange(b, device=dev)[:, None].expand(-1, g)  # (B, g)
        at = js - starts[:, None]  # (B, g) each target's index in its window
        if not _close(states[-1][rows[ok], at[ok]].detach(), last[js[ok]]):
            return False
        seed = states[-1].new_zeros(g, *states[-1].shape)  # (g, B, W, d): one target per slice
        ks = torch.arange(g, device=dev).expand(b, -1)  # (B, g)
        seed[ks[ok], rows[ok], at[ok]] = grad_last[js[ok]]
        if g == 1:  # rows do not interact: one plain backward
            grads = torch.stack(torch.autograd.grad(states[-1], states[:-1], grad_outputs=seed[0]))[:, None]
        else:
            grads = torch.stack(torch.autograd.grad(states[-1], states[:-1], grad_outputs=seed, is_grads_batched=True))
        flat = grads.transpose(1, 2)[:, ok]  # (L, g, B, W, d) -> (L, targets, W, d)
        _scatter(parts, flat, js[ok], starts[:, None].expand(-1, g)[ok], max_offset)
    return True


def _close(x: torch.Tensor, ref: torch.Tensor) -> bool:
    """Equal up to the rounding of a different summation order (relative to the largest entry)."""
    tol = 1e-4 if torch.finfo(ref.dtype).bits >= 32 else 3e-2
    return bool((x - ref).abs().max() <= tol * ref.abs().max())


def _window_mask(config, starts: torch.Tensor, pos: torch.Tensor, c: int, dtype: torch.dtype):
    """Additive masks (B, 1, W, c + W) over [cache 0..c−1, window]: row r sees the cache entries
    before its window (starts[r]) and its window causally, in true positions; a dict per layer
    type ({"full_attention", "sliding_attention"}) for models with sliding-window layers."""
    b = len(starts)
    keys = torch.cat([torch.arange(c, device=pos.device).expand(b, c), pos], dim=1)  # (B, c+W) true positions
    keep = keys[:, None, :] <= pos[:, :, None]  # (B, W, c+W) causal
    keep[:, :, :c] &= keys[:, None, :c] < starts[:, None, None]  # the window recomputes the rest

    def additive(m: torch.Tensor) -> torch.Tensor:
        return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(~m, torch.finfo(dtype).min)[:, None]

    if "sliding_attention" in (getattr(config, "layer_types", None) or []):
        near = keys[:, None, :] > pos[:, :, None] - config.sliding_window  # (B, W, c+W)
        return {"full_attention": additive(keep), "sliding_attention": additive(keep & near)}
    return additive(keep)


def _chunk_windows(model, ids, grad_last, parts, max_offset: int, chunk: int) -> None:
    """The fallback: chunks of targets [a, b), one batched VJP over positions [s, b) each."""
    n, t = ids.shape[1] - 1, ids.shape[1]
    prefix = None
    if not _is_myopic(model) and n > chunk:
        with torch.no_grad():  # keys/values of every position, cropped to each chunk's prefix
            prefix = model.base_model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True).past_key_values
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        s = 0 if prefix is None else max(0, a - max_offset)
        cache = None
        if s > 0:
            cache = copy.deepcopy(prefix)
            cache.crop(s - t)  # keep positions 0..s-1
        grads = _chunk_vjp(model, ids, grad_last, a, b, s, cache)  # (L, K, W, d)
        js = torch.arange(a, b, device=ids.device)
        _scatter(parts, grads, js, torch.full_like(js, s), max_offset)


def _chunk_vjp(model, ids, grad_last, a: int, b: int, s: int, cache) -> torch.Tensor:
    """∂ℓ_j/∂h_l[s:b] for j in [a, b) and l < L, as (L, K, W, d), W = b − s; ``cache``
    holds the keys/values of positions 0..s−1 (computed without gradient)."""
    emb = model.get_input_embeddings()(ids[:, s:b]).detach().requires_grad_()  # (1, W, d)
    with capture_residuals(model) as states:
        model.base_model(inputs_embeds=emb, past_key_values=cache, use_cache=cache is not None)
    k, w = b - a, b - s
    seed = grad_last.new_zeros(k, 1, w, grad_last.shape[-1])  # (K, 1, W, d): one target per row
    rows = torch.arange(k, device=seed.device)
    seed[rows, 0, rows + (a - s)] = grad_last[a:b]
    grads = torch.autograd.grad(states[-1], states[:-1], grad_outputs=seed, is_grads_batched=True)
    return torch.stack([g[:, 0] for g in grads])  # (L, K, W, d)


def _scatter(parts: torch.Tensor, grads: torch.Tensor, js: torch.Tensor, starts: torch.Tensor, max_offset: int) -> None:
    """parts[l, j−d, d] = grads[l, r, j−d−starts[r]] for the targets j = js[r] of the window rows r
    (window r starts at position starts[r]) and every offset d ≤ D with j − d in the window."""
    rows = torch.arange(len(js), device=js.device)[:, None].expand(-1, max_offset + 1)  # (K, D+1)
    offs = torch.arange(max_offset + 1, device=js.device).expand_as(rows)  # (K, D+1)
    at = (js - starts)[rows] - offs  # (K, D+1) index of position j − d in row r's window
    ok = at >= 0
    parts[:-1, js[rows[ok]] - offs[ok], offs[ok]] = grads[:, rows[ok], at[ok]]


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
    was = getattr(model.config, "_attn_implementation", None)
    grads = [p.requires_grad for p in model.parameters()]
    emb_ids = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    try:
        out = []
        for impl in (was or "sdpa", MYOPIC):
            with attention(model, impl):
                logits = model(input_ids=ids, use_cache=False).logits  # (B, T, V)
                loss = F.cross_entropy(_wide(logits[:, :-1].flatten(0, 1)), ids[:, 1:].flatten())
                out.append(torch.autograd.grad(loss, params))
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
