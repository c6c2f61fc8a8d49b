"""The RLOO estimator against the exact gradient.

A tiny model with a 3-token vocabulary writes 2-token completions of a 1-token prompt: 9
completions, so J(θ) = Σ_y π(y) R(y) − β Σ_y π(y) (log π(y) − log π₀(y)) and its gradient are
computed exactly by enumeration (autograd through the 9 log-probs). The mean of many RLOO
estimates, each from K samples drawn by the experiment's own sampler, must match it within 5% of
its norm (the sampling noise of the mean is checked to be under 2% first, so the tolerance is
meaningful). A baseline that includes the sample itself shrinks the gradient by (K − 1)/K (25% at
K = 4) and a wrong sign flips it: both fail the same check.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from myopia.lab.selftrain._rloo import rloo_advantages, rloo_loss, sequence_logprobs
from myopia.lab.selftrain._sampling import sample

TOL = 0.05  # relative error of the mean estimate, in norm
K = 4
GROUPS = 12_000  # independent K-sample estimates averaged
CHUNKS = 20  # to measure the estimate's own noise
REWARD = torch.tensor([0.3, -1.0, 2.0, 0.0, 1.5, -0.5, 0.7, 1.1, -2.0], dtype=torch.float64)  # R(y), y = 3*a + b


def _tiny(seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=3, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=8)
    m = LlamaForCausalLM(cfg).double()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3.0 if p.dim() > 1 else 1.0)
    return m


ALL = torch.tensor(list(itertools.product(range(3), repeat=2)))  # (9, 2)
PROMPT = torch.tensor([[1]])


def _exact_gradient(model, ref, beta: float) -> torch.Tensor:
    model.zero_grad()
    logp = sequence_logprobs(model, PROMPT.expand(9, 1), ALL, torch.ones(9, 2))  # (9,)
    with torch.no_grad():
        ref_logp = sequence_logprobs(ref, PROMPT.expand(9, 1), ALL, torch.ones(9, 2))
    p = logp.exp()
    assert float(p.detach().sum()) == pytest.approx(1.0, abs=1e-12)  # the 9 completions are everything
    J = (p * REWARD).sum() - beta * (p * (logp - ref_logp)).sum()
    J.backward()
    return torch.cat([q.grad.flatten() for q in model.parameters()]).clone()


def _draws(model, seed: int):
    gen = torch.Generator().manual_seed(seed)
    c = sample(model, PROMPT.expand(GROUPS * K, 1), 2, gen)
    index = c.ids[:, 0] * 3 + c.ids[:, 1]
    return c, REWARD[index].view(GROUPS, K)


def _mean_estimate(model, ref, beta: float, loss_fn, draws) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean over all groups, per-chunk means) of the estimate ĝ = −∇ ``loss_fn`` on ``draws``."""
    c, R = draws
    with torch.no_grad():
        ref_logp = sequence_logprobs(ref, c.prompt_ids, c.ids, c.mask).view(GROUPS, K)
    chunks = []
    size = GROUPS // CHUNKS
    for i in range(CHUNKS):
        rows = slice(i * size * K, (i + 1) * size * K)
        model.zero_grad()
        logp = sequence_logprobs(model, c.prompt_ids[rows], c.ids[rows], c.mask[rows]).view(size, K)
        loss = loss_fn(logp, R[i * size:(i + 1) * size], ref_logp[i * size:(i + 1) * size], beta)
        loss.backward()
        chunks.append(-torch.cat([q.grad.flatten() for q in model.parameters()]))  # ĝ = −∇loss
    chunks = torch.stack(chunks)  # (CHUNKS, n_params)
    return chunks.mean(0), chunks


def _relative_error(estimate: torch.Tensor, exact: torch.Tensor) -> float:
    return float((estimate - exact).norm() / exact.norm())


def _wrong_baseline(logp, R, ref_logp, beta):
    r = R - beta * (logp.detach() - ref_logp)
    adv = r - r.mean(dim=1, keepdim=True)  # the mean *including* the sample itself
    return -(adv * logp).mean()


def _wrong_sign(logp, R, ref_logp, beta):
    return -rloo_loss(logp, R, ref_logp, beta)


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_rloo_mean_gradient_matches_the_exact_gradient_and_wrong_estimators_fail(beta):
    torch.manual_seed(0)
    model, ref = _tiny(0), _tiny(1)
    exact = _exact_gradient(model, ref, beta)
    draws = _draws(model, seed=0)
    est, chunks = _mean_estimate(model, ref, beta, rloo_loss, draws)
    noise = float(chunks.std(0).norm() / CHUNKS**0.5 / exact.norm())  # std error of the mean, relative
    assert noise < 0.02, f"the check is too noisy to mean anything: {noise:.3f}"
    assert _relative_error(est, exact) < TOL
    wrong_baseline, _ = _mean_estimate(model, ref, beta, _wrong_baseline, draws)
    assert _relative_error(wrong_baseline, exact) > TOL  # ≈ 1/K = 0.25 shrinkage
    assert float(wrong_baseline @ exact / exact.norm() ** 2) == pytest.approx((K - 1) / K, abs=0.05)
    wrong_sign, _ = _mean_estimate(model, ref, beta, _wrong_sign, draws)
    assert _relative_error(wrong_sign, exact) > 1.5


def test_leave_one_out_baseline_values():
    r = torch.tensor([[1.0, 2.0, 3.0, 6.0]], dtype=torch.float64)
    assert rloo_advantages(r).tolist() == [[1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3]]
    with pytest.raises(Exception, match="at least 2 samples"):
        rloo_advantages(torch.ones(3, 1))


def test_sequence_logprobs_match_the_sampler_and_respect_the_mask():
    model = _tiny(2)
    c = sample(model, PROMPT.expand(64, 1), 2, torch.Generator().manual_seed(1))
    assert torch.allclose(sequence_logprobs(model, c.prompt_ids, c.ids, c.mask).double(), c.logprobs, atol=1e-10)
    half = c.mask.clone()
    half[:, 1] = 0
    one = sequence_logprobs(model, c.prompt_ids, c.ids, half)
    first = sequence_logprobs(model, c.prompt_ids, c.ids[:, :1], torch.ones(64, 1))
    assert torch.allclose(one, first, atol=1e-10)
