"""``mtp-seq:n``: multi-token prediction with sequential modules (DeepSeek-V3, arXiv 2412.19437).

The model itself stays the next-token model; its last hidden state (the input of its final norm)
is depth 0. Depth k = 1..n − 1 predicts the token k + 1 steps ahead. At position t it takes the
previous depth's hidden state h^{k−1}_t and the embedding of the token at t + k (the token the
causal chain has already fixed), RMS-normalises each, concatenates them and projects 2d → d, then
runs one decoder layer of the model's own class; the model's final norm and unembedding give its
logits. Embedding, final norm and unembedding are the model's, shared. Where ``mtp:n``'s parallel
heads all guess from the same state at t, depth k has seen the true tokens up to t + k.

Loss: the next-token loss plus ``weight`` times each depth's masked-mean loss. ``weight = 1`` (the
default) is the plain sum, as for ``mtp:n``, so the two objectives differ only in their heads;
DeepSeek-V3 uses λ/D with D = n − 1 (λ = 0.3, later 0.1): set ``weight = λ/D``.

Parameter matching (``from_trunk=True``, the lab's default for presets): the depths' decoder layers
are the model's own last n − 1 layers, taken out of it, so the model keeps L − (n − 1) layers. The
projections and the RMSNorm weights are extra: (n − 1)(2d² + 2d) parameters
(:func:`extra_parameters`). Otherwise (pretrained models) each depth's layer is a copy of the last
decoder layer.

Memory-saving backward: depth k needs depth k − 1's hidden state, so the depths run forward in
order and backward in reverse. The model runs forward once with its final hidden state detached
into a leaf; its next-token loss is backpropagated to the leaf at once and its logits freed. Each
depth then runs its layer on the previous depth's leaf (its graph kept: the next depth's gradient
must still pass through it), detaches its output into a leaf of its own and backpropagates its
loss to that leaf at once, so only one depth's logits exist at a time. Finally the depths' graphs
are backpropagated from the last to the first, each adding to the previous leaf's gradient, then
the model's. Every depth runs on all T positions, reusing the rotary embeddings and masks the
model's last layer received; the k − 1 positions at the end with no token t + k get filler tokens,
and their outputs are never read (causal attention: no earlier position sees them).

Checkpoints: the Hugging Face model is saved as usual (``from_pretrained`` gives the next-token
model); the depth modules go beside it in ``mtp_seq_modules.safetensors``.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from .._errors import UserError
from ..interp import decoder_layers, final_norm, set_attn_implementation, unembed
from ._base import LossFn, Objective, masked_mean
from ._calls import recall
from ._mtp import _first, _truncate_layers, load_module, save_module, trunk_layers

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

MODULES_FILE = "mtp_seq_modules.safetensors"


def extra_parameters(d_model: int, n_heads: int) -> int:
    """Parameters ``mtp-seq:n_heads`` adds beside its decoder layers: per depth a 2d → d projection
    and two RMSNorm weights of size d."""
    return (n_heads - 1) * (2 * d_model * d_model + 2 * d_model)


class DepthModule(torch.nn.Module):
    """One depth: RMSNorm of the previous hidden state and of the next token's embedding,
    concatenated and projected 2d → d, then ``block`` (a decoder layer)."""

    def __init__(self, d_model: int, block: torch.nn.Module, eps: float, init_std: float):
        super().__init__()
        self.norm_hidden = torch.nn.RMSNorm(d_model, eps=eps)
        self.norm_embed = torch.nn.RMSNorm(d_model, eps=eps)
        self.project = torch.nn.Linear(2 * d_model, d_model, bias=False)
        torch.nn.init.normal_(self.project.weight, std=init_std)
        self.block = block

    def combine(self, previous: torch.Tensor, next_embeds: torch.Tensor) -> torch.Tensor:
        """(B, T, d) hidden states and (B, T, d) embeddings -> (B, T, d) input of the block."""
        both = torch.cat([self.norm_hidden(previous), self.norm_embed(next_embeds)], dim=-1)  # (B, T, 2d)
        return self.project(both)  # (B, T, d)


def future_ids(targets: torch.Tensor, k: int) -> torch.Tensor:
    """The token at t + k for every position t, from a batch's (shifted) targets (B, T): (B, T).

    ``targets[:, t]`` is the token at t + 1, so the token at t + k is ``targets[:, t + k − 1]``;
    the last k − 1 positions have none and get a filler (the last target), whose outputs are never
    read."""
    filler = targets[:, -1:].expand(-1, k - 1)  # (B, k-1)
    return torch.cat([targets[:, k - 1 :], filler], dim=1)  # (B, T)


class SequentialMultiTokenModel(torch.nn.Module):
    """A causal LM plus n − 1 sequential depth modules; ``forward`` is the next-token model's.

    The pieces a drafter needs are public: :meth:`trunk_output` (records the model's final hidden
    state, depth 0, and the call its last layer received), :meth:`depth_hidden` (depth k's hidden
    state from depth k − 1's and the tokens at t + k) and :meth:`unembed` (hidden -> logits)."""

    def __init__(self, model: PreTrainedModel, n_heads: int, from_trunk: bool = False):
        super().__init__()
        self.model = model
        if from_trunk:  # parameter-matched: the model's last n − 1 layers become the depths' blocks
            name = f"mtp-seq:{n_heads}"
            blocks = _truncate_layers(model, trunk_layers(len(decoder_layers(model)), n_heads, name))
        else:  # added: copies of the last decoder layer (a good start when fine-tuning)
            blocks = [copy.deepcopy(decoder_layers(model)[-1]) for _ in range(n_heads - 1)]
        config = model.config
        d = model.get_input_embeddings().weight.shape[1]
        eps = getattr(config, "rms_norm_eps", None) or getattr(config, "layer_norm_epsilon", None) or 1e-6
        std = getattr(config, "initializer_range", 0.02)
        self.depths = torch.nn.ModuleList([DepthModule(d, block, eps, std) for block in blocks])
        weight = model.get_input_embeddings().weight
        for depth in self.depths:  # the new norms and projection on the model's device and dtype
            for part in (depth.norm_hidden, depth.norm_embed, depth.project):
                part.to(device=weight.device, dtype=weight.dtype)

    @property
    def n_heads(self) -> int:
        """Tokens predicted per position: the next one plus one per depth."""
        return len(self.depths) + 1

    def forward(self, **inputs: Any) -> Any:
        return self.model(**inputs)

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Shared final norm and unembedding: (B, T', d) -> (B, T', V)."""
        return unembed(self.model, hidden)

    def depth_hidden(
        self, k: int, previous: torch.Tensor, next_ids: torch.Tensor, call: tuple[tuple, dict]
    ) -> torch.Tensor:
        """Depth ``k``'s hidden state (B, T, d) from depth k − 1's (B, T, d) (depth 0: the model's
        final hidden state, :meth:`trunk_output`) and ``next_ids`` (B, T), the token at t + k for
        every position t (:func:`future_ids` for training; a drafter appends its own guesses).
        ``call`` is the (args, kwargs) the model's last decoder layer received for these T positions."""
        depth = self.depths[k - 1]
        embeds = self.model.get_input_embeddings()(next_ids)  # (B, T, d)
        args, kwargs = call
        hidden = depth.combine(previous, embeds)  # (B, T, d)
        return _first(
            recall(depth.block.forward, hidden, args, kwargs, past_key_values=None, use_cache=False)
        )  # (B, T, d)

    @contextmanager
    def trunk_output(self, detach: bool) -> Iterator[dict[str, Any]]:
        """While active, a forward of ``self.model`` records into the yielded dict: ``call``, the
        (args, kwargs) of its last decoder layer, and ``trunk``, the input of its final norm
        (depth 0). With ``detach=True`` the final norm runs on ``leaf``, a detached copy of it."""
        record: dict[str, Any] = {}

        def keep_call(module, args, kwargs):
            if not args:
                raise UserError(
                    f"mtp-seq:n expects {type(module).__name__} to take the hidden states as its first "
                    "positional argument"
                )
            record["call"] = (args, kwargs)

        def keep_trunk(module, args):
            record["trunk"] = args[0]
            if not detach:
                return None
            record["leaf"] = args[0].detach().requires_grad_(True)
            return (record["leaf"], *args[1:])

        handles = [
            decoder_layers(self.model)[-1].register_forward_pre_hook(keep_call, with_kwargs=True),
            final_norm(self.model).register_forward_pre_hook(keep_trunk),
        ]
        try:
            yield record
        finally:
            for handle in handles:
                handle.remove()


def _depth_loss(
    module: SequentialMultiTokenModel, k: int, hidden: torch.Tensor, batch: Any, loss_fn: LossFn
) -> torch.Tensor:
    """Depth ``k``'s masked-mean loss from its hidden state (B, T, d): position t predicts the
    token at t + k + 1 (the target k places after its own), at the T − k positions that have one."""
    T = hidden.shape[1]
    logits = module.unembed(hidden[:, : T - k])  # (B, T - k, V)
    return masked_mean(loss_fn(logits, batch.targets[:, k:]), batch.loss_mask[:, k:])


class SequentialMultiToken(Objective):
    """``mtp-seq:n``: the next-token loss plus n − 1 sequential depths for tokens 2..n ahead.

    ``from_trunk``: :meth:`prepare` takes the depths' layers out of the model (parameter matching)
    instead of adding copies; the lab sets it for preset models. ``weight``: the factor on each
    depth's loss (1: the plain sum; DeepSeek-V3's λ/D)."""

    def __init__(self, n_heads: int, from_trunk: bool = False, weight: float = 1.0):
        self.n_heads = n_heads
        self.from_trunk = from_trunk
        self.weight = weight
        self.name = f"mtp-seq:{n_heads}"
        self.attn_implementation = None
        self.data_variant = None

    def prepare(self, model: PreTrainedModel) -> SequentialMultiTokenModel:
        set_attn_implementation(model, self.attn_implementation)
        return SequentialMultiTokenModel(model, self.n_heads, self.from_trunk)

    def next_token_model(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.model if isinstance(module, SequentialMultiTokenModel) else module

    def _check(self, batch: Any) -> None:
        if batch.targets.is_floating_point():
            raise UserError(
                f"{self.name} embeds the tokens ahead, so it needs a token task (path-star, addition, text), "
                "not real-valued targets"
            )
        if batch.targets.shape[1] < self.n_heads:
            raise UserError(
                f"{self.name} needs sequences of at least {self.n_heads} positions; "
                f"the task's have {batch.targets.shape[1]}"
            )

    def forward_backward(
        self, module: SequentialMultiTokenModel, batch: Any, loss_fn: LossFn, loss_scale: float = 1.0
    ) -> dict[str, float]:
        self._check(batch)
        losses: dict[str, torch.Tensor] = {}  # read out at the end: no device sync per depth
        with module.trunk_output(detach=True) as record:
            logits = module(**batch.inputs).logits  # (B, T, V): the next-token loss, from the detached leaf
        loss = masked_mean(loss_fn(logits, batch.targets), batch.loss_mask)
        (loss * loss_scale).backward()
        losses["loss"] = loss.detach()
        del logits, loss  # freed before depth 1 runs
        chain: list[tuple[torch.Tensor, torch.Tensor]] = []  # (depth k's output with its graph, its leaf)
        previous = record["leaf"]
        for k in range(1, module.n_heads):
            hidden = module.depth_hidden(k, previous, future_ids(batch.targets, k), record["call"])  # (B, T, d)
            leaf = hidden.detach().requires_grad_(True)
            loss = _depth_loss(module, k, leaf, batch, loss_fn)
            (loss * (loss_scale * self.weight)).backward()  # into the leaf; this depth's logits freed
            losses[f"loss_head{k + 1}"] = loss.detach()
            chain.append((hidden, leaf))
            previous = leaf
        for hidden, leaf in reversed(chain):  # depth k's leaf holds depth k + 1's gradient by now
            hidden.backward(leaf.grad)
        if record["trunk"].requires_grad:
            record["trunk"].backward(record["leaf"].grad)  # one backward through the model
        return {name: value.item() for name, value in losses.items()}

    def summed_loss(self, module: SequentialMultiTokenModel, batch: Any, loss_fn: LossFn) -> torch.Tensor:
        """The plain objective in one graph (every depth's logits alive): what the trick must equal."""
        self._check(batch)
        with module.trunk_output(detach=False) as record:
            logits = module(**batch.inputs).logits  # (B, T, V)
        total = masked_mean(loss_fn(logits, batch.targets), batch.loss_mask)
        hidden = record["trunk"]
        for k in range(1, module.n_heads):
            hidden = module.depth_hidden(k, hidden, future_ids(batch.targets, k), record["call"])  # (B, T, d)
            total = total + self.weight * _depth_loss(module, k, hidden, batch, loss_fn)
        return total

    # -- checkpoints -----------------------------------------------------------------------
    def save_extra(self, module: SequentialMultiTokenModel, out_dir: str | Path) -> None:
        """Write the depth modules to ``out_dir/mtp_seq_modules.safetensors`` (atomically)."""
        save_module(module.depths, Path(out_dir) / MODULES_FILE, {"objective": self.name, "n_heads": str(self.n_heads)})

    def load_extra(self, module: SequentialMultiTokenModel, out_dir: str | Path) -> None:
        """Load the depth modules :meth:`save_extra` wrote into ``module``."""
        load_module(module.depths, Path(out_dir) / MODULES_FILE, self.name, "depth modules")
