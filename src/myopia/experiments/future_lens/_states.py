"""One ``future-lens`` cell: a model's hidden states on a text, probes for every chosen layer
and offset, the baselines, as tables."""

from __future__ import annotations

import time

import torch

from ..._errors import UserError
from ...data import read_text, split_text
from ._probe import (
    Classes,
    ProbeConfig,
    bigram_logp,
    collapse_logits,
    hidden_states,
    pick_layers,
    probe_logp,
    score,
    train_probes,
    unigram_logp,
)


def encode(tokenizer, text: str, max_tokens: int) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor(ids[:max_tokens], dtype=torch.long)


def _window(model, spec_window: int) -> int:
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return max(2, min(spec_window, (limit or spec_window) - 1))


def probe_model(model, tokenizer, name: str, spec, progress) -> dict[str, list[dict]]:
    """All of a model's tables: ``probes``, ``baselines``, ``info``."""
    t0 = time.time()
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

    n_states = model.config.num_hidden_layers + 1
    layers = pick_layers(n_states, spec.max_layers)
    window = _window(model, spec.context)
    bos = tokenizer.bos_token_id
    progress(0, total=2 + len(layers), note=f"{name}: hidden states")
    tr_h, _ = hidden_states(model, tr_ids, layers, window, bos)
    ev_h, own = hidden_states(model, ev_ids, layers, window, bos, logits_fn=lambda lg: collapse_logits(lg, classes))
    progress(2, note=f"{name}: probes")

    key = {"model": name}
    probes = []
    cfg = ProbeConfig(spec.probe_epochs, spec.probe_batch, spec.probe_lr, spec.probe_weight_decay, spec.seed)
    for layer in layers:
        probe = train_probes(tr_h[layer][:n_tr], tr_tgt, classes.n, cfg)
        ev_lp = probe_logp(ev_h[layer][:n_ev], probe, classes.n)  # (n_ev, K, C)
        tr_lp = probe_logp(tr_h[layer][:n_tr], probe, classes.n)
        for k in range(K):
            acc, ce = score(ev_lp[:, k], ev_tgt[:, k])
            tr_acc, _ = score(tr_lp[:, k], tr_tgt[:, k])
            probes.append({**key, "layer": layer, "depth": layer / (n_states - 1), "offset": k + 1,
                           "accuracy": acc, "cross_entropy": ce, "train_accuracy": tr_acc})
        progress(1, note=f"{name}: layer {layer}")

    baselines = []
    for k in range(K):
        uni = unigram_logp(tr_tgt[:, k], classes.n).expand(n_ev, -1)
        big = bigram_logp(tr_ids[:n_tr], tr_tgt[:, k], ev_ids[:n_ev], classes.n)
        for kind, lp in (("unigram", uni), ("bigram", big)):
            acc, ce = score(lp, ev_tgt[:, k])
            baselines.append({**key, "offset": k + 1, "kind": kind, "accuracy": acc, "cross_entropy": ce})
    acc, ce = score(own[:n_ev], ev_tgt[:, 0])
    baselines.append({**key, "offset": 1, "kind": "model", "accuracy": acc, "cross_entropy": ce})

    other = classes.n - 1
    info = {
        **key,
        "n_layers": n_states - 1,
        "d_model": int(tr_h[layers[0]].shape[1]),
        "layers_probed": len(layers),
        "train_tokens": n_tr,
        "eval_tokens": n_ev,
        "vocab": classes.n - 1,
        "coverage_train": (tr_tgt[:, 0] != other).double().mean().item(),
        "coverage_eval": (ev_tgt[:, 0] != other).double().mean().item(),
        "window": window,
        "seconds": time.time() - t0,
    }
    return {"probes": probes, "baselines": baselines, "info": [info]}
