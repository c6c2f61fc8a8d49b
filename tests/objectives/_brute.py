"""Independent brute-force references for myopic gradients, one position at a time."""

from __future__ import annotations

import torch

from ._tiny import cross_entropy


def _weighted_loss(logits, targets, weights, total):
    return (cross_entropy(logits, targets) * weights).sum() / total  # scalar


def strict_myopic_grads(model, batch, attention_mask=None) -> dict[str, torch.Tensor]:
    """For every t: positions < t under no_grad build the model's own cache, position t alone
    runs with gradients on; the per-t gradients of the loss at t are summed."""
    ids = batch.inputs["input_ids"]
    params = dict(model.named_parameters())
    total = batch.loss_mask.sum()
    out = {n: torch.zeros_like(p) for n, p in params.items()}
    for t in range(ids.shape[1]):
        cache = None
        if t > 0:
            with torch.no_grad():
                prefix_mask = None if attention_mask is None else attention_mask[:, :t]
                cache = model(ids[:, :t], attention_mask=prefix_mask, use_cache=True).past_key_values
        step_mask = None if attention_mask is None else attention_mask[:, : t + 1]
        logits = model(ids[:, t : t + 1], attention_mask=step_mask, past_key_values=cache, use_cache=True).logits
        loss = _weighted_loss(logits, batch.targets[:, t : t + 1], batch.loss_mask[:, t : t + 1], total)
        for (name, _), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                out[name] += g
    return out


def _attention_modules(model):
    return [m for m in model.modules() if type(m).__name__.endswith("Attention")]


def hidden_myopic_grads(model, batch) -> dict[str, torch.Tensor]:
    """Wu et al.'s definition: for every t, run positions 0..t with plain attention, but every
    attention layer reads its input hidden states at positions < t as detached copies (so the
    past keys/values come from detached hidden states through the live projection weights)."""
    ids = batch.inputs["input_ids"]
    modules = _attention_modules(model)
    seen: dict[int, torch.Tensor] = {}

    def keep(module, args, kwargs):
        seen[id(module)] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    handles = [m.register_forward_pre_hook(keep, with_kwargs=True) for m in modules]
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    detached = dict(seen)

    params = dict(model.named_parameters())
    total = batch.loss_mask.sum()
    out = {n: torch.zeros_like(p) for n, p in params.items()}
    for t in range(ids.shape[1]):

        def swap(module, args, kwargs, t=t):
            live = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            h = torch.cat([detached[id(module)][:, :t], live[:, t : t + 1]], dim=1)  # (B, t+1, d)
            if "hidden_states" in kwargs:
                return args, {**kwargs, "hidden_states": h}
            return (h, *args[1:]), kwargs

        handles = [m.register_forward_pre_hook(swap, with_kwargs=True) for m in modules]
        logits = model(ids[:, : t + 1]).logits[:, t : t + 1]  # (B, 1, V)
        for h in handles:
            h.remove()
        loss = _weighted_loss(logits, batch.targets[:, t : t + 1], batch.loss_mask[:, t : t + 1], total)
        for (name, _), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                out[name] += g
    return out
