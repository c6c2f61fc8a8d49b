"""The ``learned-prompt`` reader (Future Lens's learned-prompt causal intervention): the
transplant of :mod:`._transplant` with trained soft vectors in place of the fixed context and of
the greedily decoded tokens. One prompt per layer: the context's input vectors (BOS aside), then
K-1 vectors after the transplanted position standing in for the tokens the transplant decodes;
the model's prediction at the transplanted position reads t+1, at the i-th vector after it
t+1+i. All K readings come from one forward pass of K positions, and the prompt is trained on
the sum of their cross-entropies; the model stays frozen and only the prompt vectors move.

Start: the fixed context's own input vectors (each vector after it a copy of its last), so before
training the reading of t+1 is the transplant's. Training: AdamW on minibatches of training
positions, cross-entropy of the model's distribution restricted to the kept tokens (targets
"other" left out; those logits cost V/vocab of the full unembedding; the evaluation decodes the
full vocabulary). The prompt is parametrised in units of the context vectors' RMS, so one
learning rate suits every model. At the last layer the state reaches only the t+1 reading (it
goes straight to the head and leaves no keys or values): a prediction at a later position would
not depend on the state at all, so there the reader reads t+1 alone, with the untrained prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ...interp import logits_from_final, replace_residual
from ._classes import collapse_logits
from ._readers import Reading, frozen
from ._states import LensStates
from ._transplant import EVAL_BATCH, batched, prefix_cache


@dataclass
class PromptConfig:
    steps: int = 60
    batch_size: int = 32
    lr: float = 1e-1
    seed: int = 0


class SoftPrompt(torch.nn.Module):
    """The context's input vectors (P, d), the first ``n_fixed`` (BOS) fixed, then ``n_after``
    vectors after the transplanted position (started as copies of the context's last), all but
    the fixed ones trainable and stored as ``scale * unit``."""

    def __init__(self, inputs: torch.Tensor, n_fixed: int, n_after: int):
        super().__init__()
        inputs = inputs.detach()
        self.n_after = n_after
        self.register_buffer("fixed", inputs[:n_fixed].clone())  # (n_fixed, d)
        self.scale = float(inputs[n_fixed:].pow(2).mean().sqrt().clamp_min(1e-6))
        start = torch.cat([inputs[n_fixed:], inputs[-1:].expand(n_after, -1)])  # (P - n_fixed + n_after, d)
        self.unit = torch.nn.Parameter(start / self.scale)

    def forward(self) -> torch.Tensor:
        return torch.cat([self.fixed, self.unit * self.scale])  # (P + n_after, d)


def prompt_run(model, inputs: torch.Tensor, n_after: int, layer: int, states: torch.Tensor, cache=None,
               tokens: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, n_after + 1, V) at the transplanted position and the ``n_after`` after it, for
    ``states`` (B, d) put into ``layer`` at position P-1 of the prompt's input vectors ``inputs``
    (P + n_after, d). ``cache``: the KV cache of ``inputs[:P-1]`` already repeated for B (computed
    here when None). With ``tokens`` (n,), only those tokens' logits (B, n_after + 1, n)."""
    B, d = states.shape
    chunk = inputs[len(inputs) - n_after - 1 :]  # (n_after + 1, d) the transplanted position and after
    if cache is None:
        cache = batched(prefix_cache(model, inputs[: len(inputs) - n_after - 1]), B, keep=False)
    with replace_residual(model, layer, states, position=0):
        h = model.base_model(inputs_embeds=chunk.expand(B, -1, -1), past_key_values=cache).last_hidden_state
    return logits_from_final(model, h, tokens)  # (B, n_after + 1, V)


def train_prompt(
    model, prompt: SoftPrompt, layer: int, x: torch.Tensor, targets: torch.Tensor, kept: torch.Tensor, cfg: PromptConfig
) -> list[float]:
    """Fit ``prompt`` so that states ``x`` (n, d) transplanted at ``layer`` predict ``targets``
    (n, K) class indices at its K read positions (class V, "other", is left out; ``kept`` (V,)
    the kept tokens' ids). Returns the losses."""
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(prompt.parameters(), lr=cfg.lr, weight_decay=0.0)
    losses = []
    with frozen(model):
        for _ in range(cfg.steps):
            idx = torch.randint(0, len(x), (min(cfg.batch_size, len(x)),), generator=g).to(x.device)
            logits = prompt_run(model, prompt(), prompt.n_after, layer, x[idx], tokens=kept)  # (B, K, V)
            loss = F.cross_entropy(logits.flatten(0, 1), targets[idx].flatten(), ignore_index=len(kept))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


@torch.no_grad()
def prompt_readings(model, prompt: SoftPrompt, layer: int, states: LensStates, batch: int = EVAL_BATCH):
    """Class log-probs (n_eval, n_after + 1, V+1) of every evaluation state at ``layer`` through ``prompt``."""
    inputs = prompt()
    cache = prefix_cache(model, inputs[: len(inputs) - prompt.n_after - 1])
    x = states.stream("eval", layer)[: states.n_eval]  # (n_eval, d)
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        logits = prompt_run(model, inputs, prompt.n_after, layer, xb, batched(cache, len(xb), keep=True))
        out.append(torch.stack([collapse_logits(logits[:, k], states.classes) for k in range(logits.shape[1])], 1))
    return torch.cat(out).float()  # (n_eval, n_after + 1, V+1)


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
        embed = self.model.get_input_embeddings()
        with torch.no_grad():
            start = embed(self.ids.to(embed.weight.device))  # (P, d)
        last = layer == states.n_layers  # the state goes to the head alone: t+1 is all it can reach
        prompt = SoftPrompt(start, self.n_fixed, 0 if last else states.offsets - 1)
        if not last:
            x = states.stream("train", layer)[: states.n_train]  # (n_train, d)
            cfg = PromptConfig(self.cfg.steps, self.cfg.batch_size, self.cfg.lr, self.cfg.seed + layer)
            train_prompt(self.model, prompt, layer, x, states.train_targets, states.classes.kept, cfg)
        return Reading(train=None, eval=prompt_readings(self.model, prompt, layer, states))
