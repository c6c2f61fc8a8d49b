"""The core of ``future-lens``: hidden states of a frozen model, linear probes from the state
at t to the token at t+N, and the count baselines they are measured against.

Output space: the ``V`` most frequent tokens of the probe-training text plus one "other"
class for every other token. Every predictor (probe, unigram, bigram, the model's own
next-token distribution, collapsed to these classes) is scored the same way:

- accuracy: the argmax over the V kept tokens equals the target; a target outside the kept
  tokens is always a miss (so accuracies are comparable and never inflated by "other");
- cross-entropy: nats per position over the V + 1 classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Classes:
    """The restricted output space: ``kept`` token ids -> classes 0..V-1, the rest -> V."""

    kept: torch.Tensor  # (V,) token ids, most frequent first
    lookup: dict[int, int]

    @classmethod
    def top(cls, ids: torch.Tensor, v: int) -> "Classes":
        uniq, counts = torch.unique(ids, return_counts=True)
        order = sorted(range(len(uniq)), key=lambda i: (-int(counts[i]), int(uniq[i])))[:v]
        kept = uniq[order]
        return cls(kept, {int(t): i for i, t in enumerate(kept.tolist())})

    @property
    def n(self) -> int:
        return len(self.kept) + 1  # + "other"

    def of(self, ids: torch.Tensor) -> torch.Tensor:
        other = len(self.kept)
        return torch.tensor([self.lookup.get(int(t), other) for t in ids.tolist()], dtype=torch.long)


def score(logp: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(accuracy, cross-entropy) of class log-probs (n, V+1) against class targets (n,)."""
    other = logp.shape[1] - 1
    pred = logp[:, :other].argmax(1)  # (n,) over the kept tokens only
    acc = ((pred == target) & (target != other)).double().mean().item()
    ce = -logp.gather(1, target[:, None]).double().mean().item()
    return acc, ce


# --- count baselines ------------------------------------------------------------------------
def unigram_logp(train_cls: torch.Tensor, n_classes: int, alpha: float = 0.5) -> torch.Tensor:
    """(V+1,) add-alpha smoothed class log-frequencies of the training targets."""
    counts = torch.bincount(train_cls, minlength=n_classes).double() + alpha
    return (counts / counts.sum()).log()


def bigram_logp(
    train_cur: torch.Tensor, train_cls: torch.Tensor, eval_cur: torch.Tensor, n_classes: int, prior_weight: float = 1.0
) -> torch.Tensor:
    """(n_eval, V+1) log P(class of x_{t+N} | x_t) from counts on the training pairs, with the
    unigram as a Dirichlet prior of weight ``prior_weight`` (unseen x_t: the unigram itself).

    ``train_cur``/``eval_cur`` are the full token ids at t; ``train_cls`` the class at t+N."""
    uni = unigram_logp(train_cls, n_classes).exp()  # (V+1,)
    seen, index = torch.unique(train_cur, return_inverse=True)
    counts = torch.zeros(len(seen), n_classes, dtype=torch.float64)  # (U, V+1)
    counts.index_put_((index, train_cls), torch.ones(len(train_cls), dtype=torch.float64), accumulate=True)
    pos = torch.searchsorted(seen, eval_cur).clamp_max(len(seen) - 1)
    hit = seen[pos] == eval_cur
    c = torch.where(hit[:, None], counts[pos], torch.zeros(1, n_classes, dtype=torch.float64))  # (n, V+1)
    probs = (c + prior_weight * uni) / (c.sum(1, keepdim=True) + prior_weight)
    return probs.log()


def collapse_logits(logits: torch.Tensor, classes: Classes) -> torch.Tensor:
    """Full-vocabulary logits (n, vocab) -> class log-probs (n, V+1): kept tokens keep their
    log-prob, "other" gets the log of the remaining mass."""
    logp = F.log_softmax(logits.double(), dim=-1)  # (n, vocab)
    kept = logp[:, classes.kept]  # (n, V)
    rest = (1 - kept.exp().sum(1)).clamp_min(1e-30).log()  # (n,)
    return torch.cat([kept, rest[:, None]], dim=1)


# --- probes ---------------------------------------------------------------------------------
@dataclass
class ProbeConfig:
    epochs: int = 10
    batch_size: int = 512
    lr: float = 1e-2
    weight_decay: float = 1e-2
    seed: int = 0


def train_probes(x: torch.Tensor, targets: torch.Tensor, n_classes: int, cfg: ProbeConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit K linear probes at once on features ``x`` (n, d) for targets (n, K): one weight
    (d, K*C) with minibatch AdamW on the summed cross-entropy. Features are standardised with
    the training statistics. Returns (weight, bias, (mean, std)) packed for :func:`probe_logp`."""
    n, d = x.shape
    K = targets.shape[1]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std  # (n, d)
    g = torch.Generator().manual_seed(cfg.seed)
    w = torch.zeros(d, K * n_classes, requires_grad=True)
    b = torch.zeros(K * n_classes, requires_grad=True)
    with torch.no_grad():  # start at the log-frequencies: the probe only has to learn the rest
        freq = torch.stack([torch.bincount(targets[:, k], minlength=n_classes).float() + 0.5 for k in range(K)])
        b.copy_((freq / freq.sum(1, keepdim=True)).log().reshape(-1))
    opt = torch.optim.AdamW([w, b], lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=g)
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


# --- hidden states --------------------------------------------------------------------------
def pick_layers(n_states: int, max_layers: int) -> list[int]:
    """At most ``max_layers`` evenly spaced indices of 0..n_states-1, first and last included."""
    if n_states <= max_layers:
        return list(range(n_states))
    if max_layers == 1:
        return [n_states - 1]
    return sorted({round(i * (n_states - 1) / (max_layers - 1)) for i in range(max_layers)})


@torch.no_grad()
def hidden_states(model, ids: torch.Tensor, layers: list[int], window: int, bos: int | None, logits_fn=None):
    """Run ``ids`` (n,) through ``model`` in windows of ``window`` tokens (each window starts
    with ``bos`` when given; its state is dropped). Returns ({layer: (n, d)}, logits or None):
    the residual stream after each chosen layer (0 = embeddings) and, when ``logits_fn`` is
    given, ``logits_fn(logits)`` (n, ...) of the model's next-token logits."""
    feats: dict[int, list[torch.Tensor]] = {l: [] for l in layers}
    outs: list[torch.Tensor] = []
    for start in range(0, len(ids), window):
        chunk = ids[start : start + window]
        inp = chunk if bos is None else torch.cat([torch.tensor([bos]), chunk])
        skip = 0 if bos is None else 1
        if logits_fn is None:
            out = model.base_model(input_ids=inp[None], output_hidden_states=True)
        else:
            out = model(input_ids=inp[None], output_hidden_states=True)
            outs.append(logits_fn(out.logits[0, skip:].float()))  # (w, ...)
        for l in layers:
            feats[l].append(out.hidden_states[l][0, skip:].float())  # (w, d)
    return {l: torch.cat(v) for l, v in feats.items()}, (torch.cat(outs) if outs else None)
