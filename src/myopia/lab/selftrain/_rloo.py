"""REINFORCE with a leave-one-out baseline (RLOO) and a KL penalty to a frozen base model.

The objective, for one prompt x, a reward R and a frozen base model π₀:

    J(θ) = E_{y~π_θ}[R(y)] − β · KL(π_θ(·|x) ‖ π₀(·|x))

whose gradient is E_y[∇ log π_θ(y) · (R(y) − β (log π_θ(y) − log π₀(y)))] (the term
E[∇ log π_θ] that differentiating the KL's own log π_θ adds is zero). With K samples y_1..y_K
of the prompt and the shaped reward r_i = R(y_i) − β (log π_θ(y_i) − log π₀(y_i)) (log-probs
of whole completions, held constant), each sample's advantage is its reward minus the mean of
the *other* K − 1 (the leave-one-out baseline, independent of y_i, so the estimate stays
unbiased):

    A_i = r_i − (Σ_{j≠i} r_j) / (K − 1),      ĝ = (1/K) Σ_i A_i ∇ log π_θ(y_i)

:func:`rloo_loss` returns −mean(A · log π_θ(y)); its gradient is −ĝ, so a minimiser ascends J.
This is TRL's RLOO on its first (on-policy) iteration, where its clipped ratio is 1: the same
leave-one-out baseline and the same sequence-level KL subtracted from the reward (measured and
compared in ``bench/bench_rloo.py``).
"""

from __future__ import annotations

import torch

from ..._errors import UserError


def sequence_logprobs(model, prompt_ids: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Joint log-prob of each completion ``ids`` (N, L) after ``prompt_ids`` (N, P), summed over
    ``mask`` (N, L): one teacher-forced forward pass; differentiable."""
    device = next(model.parameters()).device
    L = ids.shape[1]
    x = torch.cat([prompt_ids, ids], dim=1)[:, :-1].to(device)  # (N, P + L - 1)
    logits = model(input_ids=x, use_cache=False, logits_to_keep=L).logits  # (N, L, V): predicts ids
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # float32 at least (float64 stays)
    logp = torch.log_softmax(logits, dim=-1).gather(2, ids.to(device)[:, :, None])[:, :, 0]  # (N, L)
    return (logp * mask.to(device)).sum(dim=1).cpu()  # (N,)


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(G, K) rewards, K samples of each of G prompts -> (G, K) advantages: each reward minus the
    mean of the other K − 1 rewards of its prompt."""
    K = rewards.shape[-1]
    if K < 2:
        raise UserError(f"RLOO needs at least 2 samples per prompt for its leave-one-out baseline, got K={K}")
    baseline = (rewards.sum(dim=-1, keepdim=True) - rewards) / (K - 1)  # (G, K)
    return rewards - baseline


def shaped_rewards(rewards: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor | None,
                   beta: float) -> torch.Tensor:
    """R − β (log π_θ(y) − log π₀(y)), the log-probs held constant (no gradient)."""
    if beta == 0 or ref_logp is None:
        return rewards.detach().double()
    return (rewards.double() - beta * (logp.detach().double() - ref_logp.detach().double()))


def rloo_loss(logp: torch.Tensor, rewards: torch.Tensor, ref_logp: torch.Tensor | None = None,
              beta: float = 0.0) -> torch.Tensor:
    """The RLOO surrogate loss for (G, K) completion log-probs ``logp`` (with gradient), their
    rewards and base-model log-probs: −mean(A · log π_θ(y)); its gradient is −ĝ."""
    adv = rloo_advantages(shaped_rewards(rewards, logp, ref_logp, beta))  # (G, K)
    return -(adv.to(logp.dtype).detach() * logp).mean()
