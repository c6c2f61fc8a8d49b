"""Drawing tokens from logits under temperature / top-k / top-p: one rule for plain sampling
(:class:`~myopia.models.HFModel`) and for decoding with drafts (:mod:`._speculative`)."""

from __future__ import annotations

import math

import torch

from ._base import SamplingParams


def draw(logits: torch.Tensor, p: SamplingParams, gen: torch.Generator) -> torch.Tensor:
    """One token per row from (n, V) logits under temperature / top-k / top-p."""
    if p.temperature == 0:
        return logits.argmax(dim=-1)
    # inverse-CDF draw: one uniform per row (torch.multinomial is slow on a 262k vocabulary)
    cdf = sampling_probs(logits, p).cumsum(dim=-1)  # (n, V)
    u = torch.rand(logits.shape[0], 1, generator=gen, dtype=torch.float64) * cdf[:, -1:]  # (n, 1)
    return torch.searchsorted(cdf, u)[:, 0].clamp_(max=logits.shape[-1] - 1)


def sampling_probs(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """The distribution (n, V) in float64 that :func:`draw` samples from (temperature > 0)."""
    logits = logits / p.temperature
    if p.top_k is not None and p.top_k < logits.shape[-1]:
        kth = torch.topk(logits, p.top_k, dim=-1).values[:, -1:]  # (n, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if p.top_p is not None and p.top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token once the mass before it already reaches top_p (the first always stays)
        drop = (probs.cumsum(dim=-1) - probs) >= p.top_p
        sorted_logits = sorted_logits.masked_fill(drop, -math.inf)
        logits = torch.full_like(logits, -math.inf).scatter(1, order, sorted_logits)
    return torch.softmax(logits.double(), dim=-1)  # (n, V)
