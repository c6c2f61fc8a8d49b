"""The ``future-state`` reader (Future Lens's linear model approximation): for each offset N a
linear map from h_l[t] to the model's last-layer state h_L[t+N-1] (before the final norm),
decoded by the model's own final norm and unembedding, so its reading for t+N is what the model
itself would predict there from the mapped state.

Fit in two stages on the training positions: the least-squares (ridge) map to the state itself,
in closed form, then AdamW on the cross-entropy of the decoded distribution against the token
at t+N, restricted to the kept tokens (targets outside them are left out; the full unembedding
of every training position would cost vocab/V times more; the evaluation decodes the full
vocabulary). Inputs are standardised with the training statistics and the targets scaled by
their RMS (the final norm ignores the scale), so one learning rate suits every model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from ...interp import unembed
from ._classes import collapse_logits
from ._readers import Reading, frozen
from ._states import LensStates

EVAL_BATCH = 256


@dataclass
class StateMapConfig:
    epochs: int = 4
    batch_size: int = 256
    lr: float = 3e-4
    ridge: float = 1e-2  # on the standardised inputs' covariance (unit diagonal)
    init: Literal["ridge", "identity"] = "ridge"  # identity: h_L[t+N-1] := h_l[t] (a test)
    seed: int = 0


class StateMap(torch.nn.Module):
    """y = scale * (W z + b), z = (x - mean) / std."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, w: torch.Tensor, b: torch.Tensor, scale: float):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.scale = scale
        self.w = torch.nn.Parameter(w)  # (d, d)
        self.b = torch.nn.Parameter(b)  # (d,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std  # (n, d)
        return self.scale * (z @ self.w + self.b)  # (n, d)


def init_map(x: torch.Tensor, y: torch.Tensor, cfg: StateMapConfig) -> StateMap:
    """The map's start: ridge regression of ``y`` (n, d) on ``x`` (n, d), or the identity."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    if cfg.init == "identity":
        return StateMap(mean, std, torch.diag(std), mean.clone(), 1.0)
    scale = float(y.pow(2).mean().sqrt().clamp_min(1e-6))
    z = ((x - mean) / std).double()  # (n, d)
    t = (y / scale).double()  # (n, d)
    t_mean = t.mean(0)
    cov = z.T @ z / len(z)  # (d, d)
    eye = torch.eye(len(cov), dtype=cov.dtype, device=cov.device)  # (d, d)
    w = torch.linalg.solve(cov + cfg.ridge * eye, z.T @ (t - t_mean) / len(z))
    return StateMap(mean, std, w.float(), t_mean.float(), scale)


def fit_map(model, smap: StateMap, x: torch.Tensor, targets: torch.Tensor, kept: torch.Tensor, cfg: StateMapConfig):
    """AdamW (cosine decay) on the cross-entropy of the decoded map over the kept tokens ``kept``
    (V,) against ``targets`` (n,) class indices, all below V, on 90% of the positions; the map
    is kept at the epoch (0 = its start) with the lowest cross-entropy on the other 10%. Runs on
    the device of ``x``; the split and minibatch order come from a CPU generator."""
    if cfg.epochs == 0 or len(x) < 10:
        return
    g = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(x), generator=g).to(x.device)
    val, fit = perm[: len(x) // 10], perm[len(x) // 10 :]
    n = len(fit)
    opt = torch.optim.AdamW(smap.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    with frozen(model):
        best = (_loss(model, smap, x[val], targets[val], kept), {k: v.clone() for k, v in smap.state_dict().items()})
        for _ in range(cfg.epochs):
            order = fit[torch.randperm(n, generator=g).to(fit.device)]
            for i in range(0, n, cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                loss = F.cross_entropy(unembed(model, smap(x[idx]), kept), targets[idx])  # (B, V) logits
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            val_loss = _loss(model, smap, x[val], targets[val], kept)
            if val_loss < best[0]:
                best = (val_loss, {k: v.clone() for k, v in smap.state_dict().items()})
    smap.load_state_dict(best[1])


@torch.no_grad()
def _loss(model, smap: StateMap, x: torch.Tensor, targets: torch.Tensor, kept: torch.Tensor, batch: int = 1024):
    """The mean cross-entropy over the kept tokens of the decoded map at ``x``."""
    total = 0.0
    for i in range(0, len(x), batch):
        logits = unembed(model, smap(x[i : i + batch]), kept)  # (b, V)
        total += F.cross_entropy(logits, targets[i : i + batch], reduction="sum").item()
    return total / max(len(x), 1)


@torch.no_grad()
def decoded(model, smap: StateMap, x: torch.Tensor, states: LensStates, batch: int = EVAL_BATCH) -> torch.Tensor:
    """(n, V+1) class log-probs of the model's full-vocabulary decoding of the mapped ``x``."""
    return torch.cat([collapse_logits(unembed(model, smap(x[i : i + batch])), states.classes)
                      for i in range(0, len(x), batch)]).float()


@dataclass
class FutureState:
    """The ``future-state`` reader."""

    model: object
    cfg: StateMapConfig
    method: ClassVar[str] = "future-state"

    def read(self, states: LensStates, layer: int) -> Reading:
        n_tr, n_ev = states.n_train, states.n_eval
        x = states.stream("train", layer)[:n_tr]  # (n_train, d) h_l[t]
        x_eval = states.stream("eval", layer)[:n_ev]  # (n_eval, d)
        other = states.classes.n - 1
        cols = []
        for k in range(states.offsets):  # N = k + 1: the state at t + k
            smap = init_map(x, states.final_train[k : k + n_tr], self.cfg)
            keep = states.train_targets[:, k] != other
            cfg = StateMapConfig(**{**self.cfg.__dict__, "seed": self.cfg.seed + 1000 * layer + k})
            fit_map(self.model, smap, x[keep], states.train_targets[keep, k], states.classes.kept, cfg)
            cols.append(decoded(self.model, smap, x_eval, states))  # (n_eval, V+1)
        return Reading(train=None, eval=torch.stack(cols, 1))
