"""A frozen model's hidden states on the text, computed once per model and read by every reader:
the training part (readers are fit there) and the evaluation part (they are scored there),
with the class targets t+1..t+K and the model's own next-token distribution.

At the last layer L, ``train``/``eval`` hold the state after the final norm (what
``output_hidden_states`` gives; the linear probe has always read that) and ``final_train``/
``final_eval`` the last block's output before it, which the model's head decodes and the readers
that run the model's own head or blocks read (:meth:`LensStates.stream`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..._errors import UserError
from ...data import read_text, split_text
from ...interp import capture_residuals
from ._classes import Classes, collapse_logits
from ._spec import FutureLensSpec


@dataclass
class LensStates:
    """Everything a reader may read. ``n_train``/``n_eval`` positions have all K future tokens;
    ids and states run K positions further (a reader of the state at t+N-1 needs them). Every
    tensor (and ``classes.kept``) sits on the model's device: readers run where their states are."""

    layers: list[int]  # the chosen layers, 0 = the embeddings
    n_layers: int  # transformer blocks (states run 0..n_layers)
    classes: Classes
    train_ids: torch.Tensor  # (n_train + K,) token ids of the training part
    eval_ids: torch.Tensor  # (n_eval + K,)
    train_targets: torch.Tensor  # (n_train, K) class of the token at t+1..t+K
    eval_targets: torch.Tensor  # (n_eval, K)
    train: dict[int, torch.Tensor]  # layer -> (n_train + K, d) residual stream after that layer
    eval: dict[int, torch.Tensor]  # layer -> (n_eval + K, d)
    own: torch.Tensor  # (n_eval + K, V+1) the model's next-token log-probs, collapsed onto the classes
    window: int  # tokens per window the text was run in
    final_train: torch.Tensor  # (n_train + K, d) the last block's output h_L, before the final norm
    final_eval: torch.Tensor  # (n_eval + K, d)

    def stream(self, part: str, layer: int) -> torch.Tensor:
        """(n + K, d) the residual stream h_layer of ``part`` ("train" or "eval") as the model's
        blocks and head see it: the cached state, and at the last layer the one before the final
        norm."""
        if layer == self.n_layers:
            return self.final_train if part == "train" else self.final_eval
        return (self.train if part == "train" else self.eval)[layer]

    @property
    def offsets(self) -> int:
        return self.train_targets.shape[1]

    @property
    def n_train(self) -> int:
        return self.train_targets.shape[0]

    @property
    def n_eval(self) -> int:
        return self.eval_targets.shape[0]

    def describe(self) -> dict:
        """The model and data facts the report's table shows (coverage: the accuracy ceiling)."""
        other = self.classes.n - 1
        return {
            "n_layers": self.n_layers,
            "d_model": int(self.train[self.layers[0]].shape[1]),
            "layers_probed": len(self.layers),
            "train_tokens": self.n_train,
            "eval_tokens": self.n_eval,
            "vocab": self.classes.n - 1,
            "coverage_train": (self.train_targets[:, 0] != other).double().mean().item(),
            "coverage_eval": (self.eval_targets[:, 0] != other).double().mean().item(),
            "window": self.window,
        }


def cache_states(model, tokenizer, name: str, spec: FutureLensSpec, progress) -> LensStates:
    """Split and tokenize the text, pick the output classes and layers, and run the model over
    both parts once."""
    train_text, eval_text = split_text(read_text(spec.text), spec.train_fraction)
    tr_ids = encode(tokenizer, train_text, spec.max_train_tokens)
    ev_ids = encode(tokenizer, eval_text, spec.max_eval_tokens)
    K = spec.offsets
    if len(tr_ids) <= K + 1 or len(ev_ids) <= K + 1:
        raise UserError(f"text {spec.text!r} is too short for offsets up to {K} with model {name}")
    classes = Classes.top(tr_ids, spec.vocab)
    n_tr, n_ev = len(tr_ids) - K, len(ev_ids) - K  # positions that have all K future tokens
    tr_tgt = torch.stack([classes.of(tr_ids[n : n + n_tr]) for n in range(1, K + 1)], 1)  # (n_tr, K)
    ev_tgt = torch.stack([classes.of(ev_ids[n : n + n_ev]) for n in range(1, K + 1)], 1)  # (n_ev, K)
    device = next(model.parameters()).device  # everything a reader reads sits with the model (no-op on a CPU)
    tr_ids, ev_ids, tr_tgt, ev_tgt = (t.to(device) for t in (tr_ids, ev_ids, tr_tgt, ev_tgt))
    classes = classes.to(device)

    n_layers = model.config.num_hidden_layers
    layers = chosen_layers(n_layers, spec.layers, spec.max_layers, name)
    window = context_window(model, spec.context)
    bos = tokenizer.bos_token_id
    progress(0, total=2 + len(layers), note=f"{name}: hidden states")
    tr = hidden_states(model, tr_ids, layers, window, bos)
    ev = hidden_states(model, ev_ids, layers, window, bos, logits_fn=lambda lg: collapse_logits(lg, classes))
    return LensStates(
        layers, n_layers, classes, tr_ids, ev_ids, tr_tgt, ev_tgt, tr.states, ev.states, ev.logits, window,
        tr.final, ev.final,
    )


def chosen_layers(n_layers: int, layers: list[int] | None, max_layers: int, name: str) -> list[int]:
    """The layers read: ``layers`` as given (each checked against the model's 0..n_layers), or
    at most ``max_layers`` evenly spaced."""
    if layers is None:
        return pick_layers(n_layers + 1, max_layers)
    if max(layers) > n_layers:
        raise UserError(
            f"layer {max(layers)} is out of range for {name}: it has layers 0..{n_layers} (0 = embeddings)"
        )
    return list(layers)


def encode(tokenizer, text: str, max_tokens: int) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids[:max_tokens], dtype=torch.long)


def context_window(model, want: int) -> int:
    """``want`` tokens per window, fewer if the model's positions run out (one is kept for BOS)."""
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return max(2, min(want, (limit or want) - 1))


def pick_layers(n_states: int, max_layers: int) -> list[int]:
    """At most ``max_layers`` evenly spaced indices of 0..n_states-1, first and last included."""
    if n_states <= max_layers:
        return list(range(n_states))
    if max_layers == 1:
        return [n_states - 1]
    return sorted({round(i * (n_states - 1) / (max_layers - 1)) for i in range(max_layers)})


@dataclass
class Pass:
    """What :func:`hidden_states` keeps of one part of the text."""

    states: dict[int, torch.Tensor]  # layer -> (n, d) as output_hidden_states gives it
    final: torch.Tensor  # (n, d) the last block's output, before the final norm
    logits: torch.Tensor | None  # logits_fn(next-token logits) (n, ...), when asked for


@torch.no_grad()
def hidden_states(model, ids: torch.Tensor, layers: list[int], window: int, bos: int | None, logits_fn=None) -> Pass:
    """Run ``ids`` (n,) through ``model`` in windows of ``window`` tokens (each window starts
    with ``bos`` when given; its state is dropped): the residual stream after each chosen layer
    (0 = embeddings; at the last layer after the final norm), the last block's output before the
    final norm and, when ``logits_fn`` is given, ``logits_fn(logits)`` of the model's next-token
    logits. The states stay on the model's device."""
    ids = ids.to(next(model.parameters()).device)
    feats: dict[int, list[torch.Tensor]] = {l: [] for l in layers}
    finals: list[torch.Tensor] = []
    outs: list[torch.Tensor] = []
    for start in range(0, len(ids), window):
        chunk = ids[start : start + window]
        inp = chunk if bos is None else torch.cat([torch.tensor([bos], device=chunk.device), chunk])
        skip = 0 if bos is None else 1
        with capture_residuals(model) as res:
            if logits_fn is None:
                out = model.base_model(input_ids=inp[None], output_hidden_states=True)
            else:
                out = model(input_ids=inp[None], output_hidden_states=True)
                outs.append(logits_fn(out.logits[0, skip:].float()))  # (w, ...)
        finals.append(res[-1][0, skip:].float())  # (w, d)
        for l in layers:
            feats[l].append(out.hidden_states[l][0, skip:].float())  # (w, d)
    return Pass({l: torch.cat(v) for l, v in feats.items()}, torch.cat(finals), torch.cat(outs) if outs else None)
