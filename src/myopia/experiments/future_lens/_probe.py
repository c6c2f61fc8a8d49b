"""The linear probe reader (Pal et al. 2023's weakest reader, a lower bound): one linear map
per layer from the standardised state at t to the classes of the tokens at t+1..t+K, all
offsets at once; minibatch AdamW with cosine decay, biases started at the log-frequencies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ._readers import Reading
from ._states import LensStates


@dataclass
class ProbeConfig:
    epochs: int = 10
    batch_size: int = 512
    lr: float = 1e-2
    weight_decay: float = 1e-2
    seed: int = 0


@dataclass
class LinearProbe:
    """The ``linear`` reader."""

    cfg: ProbeConfig
    method: ClassVar[str] = "linear"

    def read(self, states: LensStates, layer: int) -> Reading:
        C = states.classes.n
        x_train = states.train[layer][: states.n_train]  # (n_train, d)
        probe = train_probes(x_train, states.train_targets, C, self.cfg)
        x_eval = states.eval[layer][: states.n_eval]  # (n_eval, d)
        return Reading(train=probe_logp(x_train, probe, C), eval=probe_logp(x_eval, probe, C))


def train_probes(
    x: torch.Tensor, targets: torch.Tensor, n_classes: int, cfg: ProbeConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit K linear probes at once on features ``x`` (n, d) for targets (n, K): one weight
    (d, K*C) with minibatch AdamW on the summed cross-entropy. Features are standardised with
    the training statistics. Runs on the device of ``x`` (``targets`` with it); the minibatch order
    comes from a CPU generator, so it is the same on every device. Returns (weight, bias, (mean,
    std)) packed for :func:`probe_logp`."""
    n, d = x.shape
    K = targets.shape[1]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std  # (n, d)
    g = torch.Generator().manual_seed(cfg.seed)
    w = torch.zeros(d, K * n_classes, device=x.device, requires_grad=True)
    b = torch.zeros(K * n_classes, device=x.device, requires_grad=True)
    with torch.no_grad():  # start at the log-frequencies: the probe only has to learn the rest
        freq = torch.stack([torch.bincount(targets[:, k], minlength=n_classes).float() + 0.5 for k in range(K)])
        b.copy_((freq / freq.sum(1, keepdim=True)).log().reshape(-1))
    opt = torch.optim.AdamW([w, b], lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=g).to(x.device)
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            logits = (z[idx] @ w + b).view(len(idx), K, n_classes)  # (B, K, C)
            loss = F.cross_entropy(logits.reshape(-1, n_classes), targets[idx].reshape(-1)) * K
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return w.detach(), b.detach(), torch.stack([mean, std])


@torch.no_grad()
def probe_logp(x: torch.Tensor, probe: tuple[torch.Tensor, torch.Tensor, torch.Tensor], n_classes: int) -> torch.Tensor:
    """(n, K, C) class log-probs of the probes on features ``x`` (n, d)."""
    w, b, stats = probe
    z = (x - stats[0]) / stats[1]  # (n, d)
    logits = (z @ w + b).view(len(x), -1, n_classes)  # (n, K, C)
    return F.log_softmax(logits, dim=-1)
