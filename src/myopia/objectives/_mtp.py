"""``mtp:n``: multi-token prediction from a shared trunk (Gloeckle et al. 2024).

Head 1 is the model's own next-token path (its last decoder layer, final norm and unembedding).
Heads 2..n each add one decoder layer of the model's own class on top of the trunk output (the
last decoder layer's output), then share the final norm and the unembedding; head k predicts
the token k steps ahead. The loss is the sum of the heads' masked-mean losses.

Memory-saving backward: the trunk runs forward once; its output is detached into a leaf, each
head runs forward and backward in turn (accumulating the gradient at the leaf and freeing its
logits), then one backward through the trunk. Only one head's logits exist at a time.

Checkpoints: the Hugging Face model is saved as usual (``from_pretrained`` gives the next-token
model); the extra heads go beside it in ``mtp_heads.safetensors``.
"""

from __future__ import annotations

import copy
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from .._errors import UserError
from ._calls import recall
from ._base import LossFn, Objective, masked_mean, set_attn_implementation

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

HEADS_FILE = "mtp_heads.safetensors"


def _decoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    base = model.base_model
    for name in ("layers", "h"):  # Llama/Gemma/Qwen/...: layers; GPT-2: h
        layers = getattr(base, name, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            return layers
    raise UserError(f"mtp:n cannot find the decoder layers of {type(model).__name__} (expected .layers or .h)")


def _final_norm(model: PreTrainedModel) -> torch.nn.Module:
    base = model.base_model
    for name in ("norm", "ln_f", "final_layernorm"):
        norm = getattr(base, name, None)
        if isinstance(norm, torch.nn.Module):
            return norm
    raise UserError(f"mtp:n cannot find the final norm of {type(model).__name__} (expected .norm or .ln_f)")


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output: Any, tensor: torch.Tensor) -> Any:
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


def shift_targets(targets: torch.Tensor, loss_mask: torch.Tensor, ahead: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets and mask (B, T) for predicting ``ahead`` tokens further than next-token.

    Position t of the result holds ``targets[:, t + ahead]``; the last ``ahead`` positions have
    no target and are masked out.
    """
    if ahead == 0:
        return targets, loss_mask
    t = targets.shape[1]
    shifted = torch.zeros_like(targets)
    mask = torch.zeros_like(loss_mask)
    if ahead < t:
        shifted[:, : t - ahead] = targets[:, ahead:]
        mask[:, : t - ahead] = loss_mask[:, ahead:]
    return shifted, mask


class MultiTokenModel(torch.nn.Module):
    """A causal LM plus n − 1 extra heads; ``forward`` is the next-token model's."""

    def __init__(self, model: PreTrainedModel, n_heads: int):
        super().__init__()
        self.model = model
        last = _decoder_layers(model)[-1]
        # each extra head starts as a copy of the last decoder layer (a good start when fine-tuning)
        self.heads = torch.nn.ModuleList(copy.deepcopy(last) for _ in range(n_heads - 1))

    @property
    def n_heads(self) -> int:
        return len(self.heads) + 1

    def forward(self, **inputs: Any) -> Any:
        return self.model(**inputs)

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Shared final norm and unembedding (with the model's logit soft-capping, if any)."""
        logits = self.model.get_output_embeddings()(_final_norm(self.model)(hidden))  # (B, T, V)
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def head_logits(self, k: int, trunk: torch.Tensor, call: tuple[tuple, dict]) -> torch.Tensor:
        """Logits (B, T, V) of head ``k`` >= 2 from the trunk output (B, T, d)."""
        args, kwargs = call
        head = self.heads[k - 2]
        hidden = _first(recall(head.forward, trunk, args, kwargs, past_key_values=None, use_cache=False))  # (B, T, d)
        return self.unembed(hidden)

    @contextmanager
    def trunk_output(self, detach: bool) -> Iterator[dict[str, Any]]:
        """While active, a forward of ``self.model`` records into the yielded dict: ``call``,
        the (args, kwargs) of the last decoder layer, and ``trunk``, its output. With
        ``detach=True`` the model continues from ``leaf``, a detached copy of the trunk output."""
        record: dict[str, Any] = {}
        last = _decoder_layers(self.model)[-1]

        def keep_call(module, args, kwargs):
            record["call"] = (args, kwargs)

        def swap_output(module, args, output):
            record["trunk"] = _first(output)
            if not detach:
                return None
            record["leaf"] = record["trunk"].detach().requires_grad_(True)
            return _replace_first(output, record["leaf"])

        handles = [
            last.register_forward_pre_hook(keep_call, with_kwargs=True),
            last.register_forward_hook(swap_output),
        ]
        try:
            yield record
        finally:
            for handle in handles:
                handle.remove()


class MultiToken(Objective):
    """``mtp:n``: the next-token head plus n − 1 heads for tokens 2..n ahead."""

    def __init__(self, n_heads: int):
        self.n_heads = n_heads
        self.name = f"mtp:{n_heads}"
        self.attn_implementation = None
        self.data_variant = None

    def prepare(self, model: PreTrainedModel) -> MultiTokenModel:
        set_attn_implementation(model, self.attn_implementation)
        return MultiTokenModel(model, self.n_heads)

    def next_token_model(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.model if isinstance(module, MultiTokenModel) else module

    def forward_backward(
        self, module: MultiTokenModel, batch: Any, loss_fn: LossFn, loss_scale: float = 1.0
    ) -> dict[str, float]:
        metrics: dict[str, float] = {}
        with module.trunk_output(detach=True) as record:
            logits = module(**batch.inputs).logits  # (B, T, V): head 1, from the detached leaf
        leaf = record["leaf"]
        loss = masked_mean(loss_fn(logits, batch.targets), batch.loss_mask)
        (loss * loss_scale).backward()
        metrics["loss"] = loss.item()
        del logits, loss  # head 1's logits are freed before head 2 runs
        for k in range(2, module.n_heads + 1):
            targets, mask = shift_targets(batch.targets, batch.loss_mask, k - 1)
            loss = masked_mean(loss_fn(module.head_logits(k, leaf, record["call"]), targets), mask)
            (loss * loss_scale).backward()
            metrics[f"loss_head{k}"] = loss.item()
        record["trunk"].backward(leaf.grad)  # one backward through the trunk
        return metrics

    def summed_loss(self, module: MultiTokenModel, batch: Any, loss_fn: LossFn) -> torch.Tensor:
        """The plain objective in one graph (all heads' logits alive): what the trick must equal."""
        with module.trunk_output(detach=False) as record:
            logits = module(**batch.inputs).logits  # (B, T, V)
        total = masked_mean(loss_fn(logits, batch.targets), batch.loss_mask)
        for k in range(2, module.n_heads + 1):
            targets, mask = shift_targets(batch.targets, batch.loss_mask, k - 1)
            total = total + masked_mean(loss_fn(module.head_logits(k, record["trunk"], record["call"]), targets), mask)
        return total

    # -- checkpoints -----------------------------------------------------------------------
    def save_extra(self, module: MultiTokenModel, out_dir: str | Path) -> None:
        """Write the extra heads to ``out_dir/mtp_heads.safetensors`` (atomically)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {name: t.detach().contiguous().cpu() for name, t in module.heads.state_dict().items()}
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".mtp_heads.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(state, tmp, metadata={"objective": self.name, "n_heads": str(self.n_heads)})
            os.replace(tmp, out_dir / HEADS_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_extra(self, module: MultiTokenModel, out_dir: str | Path) -> None:
        """Load the heads :meth:`save_extra` wrote into ``module``."""
        path = Path(out_dir) / HEADS_FILE
        if not path.is_file():
            raise UserError(f"{path} not found: a checkpoint trained with {self.name} keeps its extra heads there")
        state = load_file(path, device=str(next(module.parameters()).device))
        try:
            module.heads.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise UserError(f"{path} does not hold the heads of {self.name}: {str(err).splitlines()[0]}") from None
