"""``mtp:n``: multi-token prediction with parallel heads on a shared trunk (Gloeckle et al. 2024).

The trunk is the model's decoder layers but the last. Head 1 is the model's own next-token path:
its last decoder layer, final norm and unembedding. Heads 2..n are one decoder layer each, of the
model's own class, applied in parallel to the same trunk output (the last layer's input), then
the shared final norm and unembedding; head k predicts the token k steps ahead. The loss is the
sum of the heads' masked-mean losses (heads 2..n times ``weight``, default 1).

Parameter matching (``from_trunk=True``, the lab's default for presets): the n − 1 extra heads are
the model's own last n − 1 decoder layers, taken out of it, so the model keeps L − (n − 1) layers
and the whole has exactly the parameters of the L-layer next-token model. Otherwise (pretrained
models) each extra head is added as a copy of the last decoder layer.

Memory-saving backward: the trunk runs forward once; its output is detached into a leaf, each
head runs forward and backward in turn (accumulating the gradient at the leaf and freeing its
logits), then one backward through the trunk. Only one head's logits exist at a time. Head k
computes logits only at the T − (k − 1) positions that have a token k ahead; the rotary
embeddings and masks the last layer received are reused by every head, not recomputed.

Checkpoints: the Hugging Face model is saved as usual (``from_pretrained`` gives the next-token
model); the extra heads go beside it in ``mtp_heads.safetensors``. ``weight`` (the lab's
``mtp_weight``) scales the extra heads' losses; the metrics report them unscaled.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from .._errors import UserError
from .._io import atomic_path
from ..interp import decoder_layers, unembed
from ._base import LossFn, Objective, masked_mean, set_attn_implementation
from ._calls import recall

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

HEADS_FILE = "mtp_heads.safetensors"


def save_module(module: torch.nn.Module, path: Path, metadata: dict[str, str]) -> None:
    """Write ``module``'s state to the safetensors file ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous().cpu() for name, t in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_module(module: torch.nn.Module, path: Path, objective: str, what: str) -> None:
    """Load what :func:`save_module` wrote into ``module`` (strictly); ``objective`` and ``what``
    (e.g. "extra heads") name it in errors."""
    if not path.is_file():
        raise UserError(f"{path} not found: a checkpoint trained with {objective} keeps its {what} there")
    state = load_file(path, device=str(next(module.parameters()).device))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(f"{path} does not hold the {what} of {objective}: {str(err).splitlines()[0]}") from None


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def trunk_layers(n_layers: int, n_heads: int, name: str | None = None) -> int:
    """Decoder layers the model keeps when the objective ``name`` (default ``mtp:n_heads``)
    takes n_heads − 1 layers for its heads (or depth modules) from its ``n_layers``."""
    left = n_layers - (n_heads - 1)
    if left < 1:
        raise UserError(
            f"{name or f'mtp:{n_heads}'} takes {n_heads - 1} head layers from the model's {n_layers} layers "
            "and leaves none; "
            f"use model.n_layer >= {n_heads}, or mtp_from_trunk=false to add the heads instead"
        )
    return left


def _truncate_layers(model: PreTrainedModel, keep: int) -> list[torch.nn.Module]:
    """Remove the decoder layers after the first ``keep`` (config too); return the removed ones."""
    layers = decoder_layers(model)
    removed = list(layers[keep:])
    del layers[keep:]
    model.config.num_hidden_layers = keep  # GPT-2's n_layer through its attribute map
    layer_types = getattr(model.config, "layer_types", None)
    if isinstance(layer_types, list):  # Gemma 3 & co.: one attention type per layer
        model.config.layer_types = layer_types[:keep]
    return removed


class MultiTokenModel(torch.nn.Module):
    """A causal LM plus n − 1 extra heads; ``forward`` is the next-token model's."""

    def __init__(self, model: PreTrainedModel, n_heads: int, from_trunk: bool = False):
        super().__init__()
        self.model = model
        if from_trunk:  # parameter-matched: the model's last n − 1 layers become the extra heads
            heads = _truncate_layers(model, trunk_layers(len(decoder_layers(model)), n_heads))
        else:  # added: copies of the last decoder layer (a good start when fine-tuning)
            heads = [copy.deepcopy(decoder_layers(model)[-1]) for _ in range(n_heads - 1)]
        self.heads = torch.nn.ModuleList(heads)

    @property
    def n_heads(self) -> int:
        return len(self.heads) + 1

    def forward(self, **inputs: Any) -> Any:
        return self.model(**inputs)

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Shared final norm and unembedding (with the model's logit soft-capping, if any)."""
        return unembed(self.model, hidden)  # (B, T', V)

    def head_logits(self, k: int, trunk: torch.Tensor, call: tuple[tuple, dict]) -> torch.Tensor:
        """Logits (B, T − k + 1, V) of head ``k`` >= 2 from the trunk output (B, T, d): only the
        positions that have a token k ahead."""
        args, kwargs = call
        head = self.heads[k - 2]
        hidden = _first(recall(head.forward, trunk, args, kwargs, past_key_values=None, use_cache=False))  # (B, T, d)
        return self.unembed(hidden[:, : hidden.shape[1] - (k - 1)])  # (B, T - k + 1, V)

    @contextmanager
    def trunk_output(self, detach: bool) -> Iterator[dict[str, Any]]:
        """While active, a forward of ``self.model`` records into the yielded dict: ``call``,
        the (args, kwargs) of the last decoder layer, and ``trunk``, its input (the trunk
        output). With ``detach=True`` the last layer runs on ``leaf``, a detached copy of it."""
        record: dict[str, Any] = {}

        def keep_input(module, args, kwargs):
            if not args:
                raise UserError(
                    f"mtp:n expects {type(module).__name__} to take the hidden states as its first positional argument"
                )
            record["call"], record["trunk"] = (args, kwargs), args[0]
            if not detach:
                return None
            record["leaf"] = args[0].detach().requires_grad_(True)
            return (record["leaf"], *args[1:]), kwargs

        handle = decoder_layers(self.model)[-1].register_forward_pre_hook(keep_input, with_kwargs=True)
        try:
            yield record
        finally:
            handle.remove()


def _head_loss(module: MultiTokenModel, k: int, trunk: torch.Tensor, call, batch: Any, loss_fn: LossFn) -> torch.Tensor:
    """Head ``k``'s masked-mean loss: position t predicts the target k − 1 places after its own."""
    logits = module.head_logits(k, trunk, call)  # (B, T - k + 1, V)
    return masked_mean(loss_fn(logits, batch.targets[:, k - 1 :]), batch.loss_mask[:, k - 1 :])


class MultiToken(Objective):
    """``mtp:n``: the next-token head plus n − 1 heads for tokens 2..n ahead.

    ``from_trunk``: :meth:`prepare` takes the extra heads' layers out of the model (parameter
    matching) instead of adding them; the lab sets it for preset models. ``weight``: the factor
    on each extra head's loss (1: the plain sum of Gloeckle et al.)."""

    def __init__(self, n_heads: int, from_trunk: bool = False, weight: float = 1.0):
        self.n_heads = n_heads
        self.from_trunk = from_trunk
        self.weight = weight
        self.name = f"mtp:{n_heads}"
        self.attn_implementation = None
        self.data_variant = None

    def prepare(self, model: PreTrainedModel) -> MultiTokenModel:
        set_attn_implementation(model, self.attn_implementation)
        return MultiTokenModel(model, self.n_heads, self.from_trunk)

    def next_token_model(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.model if isinstance(module, MultiTokenModel) else module

    def forward_backward(
        self, module: MultiTokenModel, batch: Any, loss_fn: LossFn, loss_scale: float = 1.0
    ) -> dict[str, float]:
        losses: dict[str, torch.Tensor] = {}  # read out at the end: no device sync per head
        with module.trunk_output(detach=True) as record:
            logits = module(**batch.inputs).logits  # (B, T, V): head 1, from the detached leaf
        leaf = record["leaf"]
        loss = masked_mean(loss_fn(logits, batch.targets), batch.loss_mask)
        (loss * loss_scale).backward()
        losses["loss"] = loss.detach()
        del logits, loss  # head 1's logits are freed before head 2 runs
        for k in range(2, module.n_heads + 1):
            loss = _head_loss(module, k, leaf, record["call"], batch, loss_fn)
            (loss * (loss_scale * self.weight)).backward()
            losses[f"loss_head{k}"] = loss.detach()
        if record["trunk"].requires_grad:
            record["trunk"].backward(leaf.grad)  # one backward through the trunk
        return {name: value.item() for name, value in losses.items()}

    def summed_loss(self, module: MultiTokenModel, batch: Any, loss_fn: LossFn) -> torch.Tensor:
        """The plain objective in one graph (all heads' logits alive): what the trick must equal."""
        with module.trunk_output(detach=False) as record:
            logits = module(**batch.inputs).logits  # (B, T, V)
        total = masked_mean(loss_fn(logits, batch.targets), batch.loss_mask)
        for k in range(2, module.n_heads + 1):
            total = total + self.weight * _head_loss(module, k, record["trunk"], record["call"], batch, loss_fn)
        return total

    # -- checkpoints -----------------------------------------------------------------------
    def save_extra(self, module: MultiTokenModel, out_dir: str | Path) -> None:
        """Write the extra heads to ``out_dir/mtp_heads.safetensors`` (atomically)."""
        save_module(module.heads, Path(out_dir) / HEADS_FILE, {"objective": self.name, "n_heads": str(self.n_heads)})

    def load_extra(self, module: MultiTokenModel, out_dir: str | Path) -> None:
        """Load the heads :meth:`save_extra` wrote into ``module``."""
        load_module(module.heads, Path(out_dir) / HEADS_FILE, self.name, "extra heads")
