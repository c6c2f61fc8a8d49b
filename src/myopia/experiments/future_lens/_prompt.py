"""The ``learned-prompt`` reader (Future Lens's learned-prompt causal intervention): the
transplant of :mod:`._transplant`, with the generic context's input vectors (BOS aside) replaced
by soft prompt vectors trained so that the model's prediction at the transplanted position is
the token at t+N. One prompt per layer and offset, read directly at that position (no decoding);
the model stays frozen and only the prompt vectors move.

Start: the fixed context's own input vectors, so before training the reading for N = 1 is the
transplant's. Training: AdamW on minibatches of training positions whose target is a kept token,
cross-entropy of the model's distribution restricted to the kept tokens (their logits cost
V/vocab of the full unembedding; the evaluation decodes the full vocabulary). The prompt is
parametrised in units of the context vectors' RMS, so one learning rate suits every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ._readers import Reading, frozen
from ._states import LensStates
from ._transplant import batched, prefix_cache, transplant_readings, transplant_run


@dataclass
class PromptConfig:
    steps: int = 40
    batch_size: int = 32
    lr: float = 3e-2
    seed: int = 0


class SoftPrompt(torch.nn.Module):
    """The context's input vectors with all but the fixed first ``n_fixed`` (BOS) trainable,
    stored as ``scale * unit``."""

    def __init__(self, inputs: torch.Tensor, n_fixed: int):
        super().__init__()
        inputs = inputs.detach()
        self.register_buffer("fixed", inputs[:n_fixed].clone())  # (n_fixed, d)
        self.scale = float(inputs[n_fixed:].pow(2).mean().sqrt().clamp_min(1e-6))
        self.unit = torch.nn.Parameter(inputs[n_fixed:] / self.scale)  # (P - n_fixed, d)

    def forward(self) -> torch.Tensor:
        return torch.cat([self.fixed, self.unit * self.scale])  # (P, d)


def train_prompt(
    model, prompt: SoftPrompt, layer: int, x: torch.Tensor, targets: torch.Tensor, kept: torch.Tensor, cfg: PromptConfig
) -> list[float]:
    """Fit ``prompt`` so that states ``x`` (n, d) transplanted at ``layer`` predict ``targets``
    (n,) class indices (kept tokens only; ``kept`` (V,) their token ids). Returns the losses."""
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(prompt.parameters(), lr=cfg.lr, weight_decay=0.0)
    losses = []
    with frozen(model):
        for _ in range(cfg.steps):
            idx = torch.randint(0, len(x), (min(cfg.batch_size, len(x)),), generator=g)
            inputs = prompt()  # (P, d)
            cache = batched(prefix_cache(model, inputs[:-1]), len(idx), keep=False)
            (logits,) = transplant_run(model, cache, inputs[-1], layer, x[idx], 1, tokens=kept)  # (B, V)
            loss = F.cross_entropy(logits, targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


@dataclass
class LearnedPrompt:
    """The ``learned-prompt`` reader, started from the generic context ``ids`` (with BOS first
    when ``n_fixed`` is 1)."""

    model: object
    ids: torch.Tensor
    n_fixed: int
    cfg: PromptConfig
    method: ClassVar[str] = "learned-prompt"

    def read(self, states: LensStates, layer: int) -> Reading:
        with torch.no_grad():
            start = self.model.get_input_embeddings()(self.ids)  # (P, d)
        x = states.stream("train", layer)[: states.n_train]  # (n_train, d)
        other = states.classes.n - 1
        # at the last layer the state goes straight to the head: no prompt can change the reading
        steps = 0 if layer == states.n_layers else self.cfg.steps
        cols = []
        for k in range(states.offsets):
            if steps == 0 and cols:  # every offset's prompt is the untrained start
                cols.append(cols[0])
                continue
            keep = states.train_targets[:, k] != other  # train on kept targets only
            prompt = SoftPrompt(start, self.n_fixed)
            cfg = PromptConfig(steps, self.cfg.batch_size, self.cfg.lr, self.cfg.seed + 1000 * layer + k)
            train_prompt(self.model, prompt, layer, x[keep], states.train_targets[keep, k], states.classes.kept, cfg)
            with torch.no_grad():
                cols.append(transplant_readings(self.model, prompt(), layer, states, 1)[:, 0])  # (n_eval, V+1)
        return Reading(train=None, eval=torch.stack(cols, 1))
