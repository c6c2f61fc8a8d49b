"""mtp-seq:n: DeepSeek-V3's sequential modules. The memory-saving backward (depths forward in order,
backward in reverse, one depth's logits at a time) equals the plain summed loss computed by brute
force; parameter matching takes the blocks from the model; checkpoints stay HF-loadable."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from myopia import UserError
from myopia.objectives import get_objective
from myopia.objectives._mtp_seq import (
    MODULES_FILE,
    SequentialMultiToken,
    SequentialMultiTokenModel,
    extra_parameters,
    future_ids,
)

from ._tiny import build, cross_entropy, grads, token_batch

# Llama's RMSNorm computes in float32 even in a float64 model, and the trick sums gradients in
# another order than the brute force: ~1e-7 apart; GPT-2 agrees to rounding
ATOL = {"llama": 1e-6, "gpt2": 1e-10}


def _layers(model) -> torch.nn.ModuleList:
    base = model.base_model
    return base.h if hasattr(base, "h") else base.layers


def _final_hidden(model, batch) -> torch.Tensor:
    """The model's last hidden state before its final norm (B, T, d), through a hook on the norm."""
    seen = {}
    norm = model.base_model.ln_f if hasattr(model.base_model, "ln_f") else model.base_model.norm
    handle = norm.register_forward_pre_hook(lambda m, args: seen.setdefault("h", args[0]))
    try:
        logits = model(**batch.inputs, use_cache=False).logits  # (B, T, V)
    finally:
        handle.remove()
    return seen["h"], logits


def _run_block_alone(model, block, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``block`` as the model's only decoder layer on ``embeds`` (B, T', d), with the model's own
    positions for T' tokens: (the block's output (B, T', d), logits (B, T', V))."""
    base = model.base_model
    attr = "h" if hasattr(base, "h") else "layers"
    saved = getattr(base, attr)
    seen = {}
    handle = block.register_forward_hook(
        lambda m, args, out: seen.setdefault("h", out[0] if isinstance(out, tuple) else out)
    )
    try:
        setattr(base, attr, torch.nn.ModuleList([block]))
        if hasattr(model.base_model, "wpe"):  # GPT-2 adds position embeddings to inputs_embeds: cancel them
            positions = torch.arange(embeds.shape[1])
            embeds = embeds - model.base_model.wpe(positions)[None]
        logits = model(inputs_embeds=embeds, use_cache=False).logits  # (B, T', V)
    finally:
        setattr(base, attr, saved)
        handle.remove()
    return seen["h"], logits


def _reference_loss(module: SequentialMultiTokenModel, batch, n: int, weight: float) -> torch.Tensor:
    """Brute force, one graph, no filler tokens: depth k runs on exactly the T − k positions that
    have a token k + 1 ahead, the tokens at t + k cut out of the full sequence, its block run as the
    model's only layer (fresh positions for T − k tokens); h^k feeds depth k + 1 with its graph."""
    ids = torch.cat([batch.inputs["input_ids"], batch.targets[:, -1:]], dim=1)  # (B, T+1)
    T = batch.targets.shape[1]
    model = module.model
    hidden, logits = _final_hidden(model, batch)
    mask = batch.loss_mask
    total = (cross_entropy(logits, ids[:, 1:]) * mask).sum() / mask.sum()
    emb = model.get_input_embeddings()
    for k in range(1, n):
        depth = module.depths[k - 1]
        valid = T - k
        prev = depth.norm_hidden(hidden[:, :valid])  # (B, T-k, d)
        nxt = depth.norm_embed(emb(ids[:, k : k + valid]))  # (B, T-k, d): the tokens at t + k
        h_in = torch.cat([prev, nxt], dim=-1) @ depth.project.weight.T  # (B, T-k, d)
        hidden, logits = _run_block_alone(model, depth.block, h_in)
        m = mask[:, k : k + valid]
        per_pos = cross_entropy(logits, ids[:, k + 1 : k + 1 + valid])  # (B, T-k): the token at t + k + 1
        total = total + weight * (per_pos * m).sum() / m.sum()
    return total


def _perturb(module: SequentialMultiTokenModel) -> None:
    for p in module.depths.parameters():  # copies of the last layer, norms at 1: make them differ
        p.data.add_(0.05 * torch.randn_like(p))


@pytest.mark.parametrize(
    "kind,n,from_trunk,weight",
    [
        ("llama", 3, False, 1.0),
        ("gpt2", 3, False, 1.0),
        ("llama", 2, True, 1.0),
        ("gpt2", 2, True, 1.0),
        ("llama", 4, False, 0.1),
    ],
)
def test_mtp_seq_memory_trick_equals_summed_loss(kind, n, from_trunk, weight):
    batch = token_batch(length=9)
    objective = SequentialMultiToken(n, from_trunk=from_trunk, weight=weight)
    module = objective.prepare(build(kind))
    _perturb(module)
    reference = copy.deepcopy(module)

    metrics = objective.forward_backward(module, batch, cross_entropy, loss_scale=0.7)
    (0.7 * _reference_loss(reference, batch, n, weight)).backward()
    expected = grads(reference)
    got = grads(module)
    assert set(got) == set(expected) and any(f"depths.{n - 2}.project" in name for name in got)
    for name, g in expected.items():
        torch.testing.assert_close(got[name], g, rtol=0, atol=ATOL[kind], msg=name)
    assert set(metrics) == {"loss"} | {f"loss_head{k}" for k in range(2, n + 1)}
    # the trick's reported losses, weighted, and the objective's own one-graph form agree
    total = objective.summed_loss(reference, batch, cross_entropy).item()
    assert total == pytest.approx(
        metrics["loss"] + weight * sum(v for k, v in metrics.items() if k != "loss"), rel=1e-10
    )
    assert total == pytest.approx(_reference_loss(reference, batch, n, weight).item(), rel=1e-10)


def test_depth_k_sees_the_true_tokens_up_to_t_plus_k():
    """Depth 1's output at t changes with the token at t + 1, not with the token at t + 2."""
    module = SequentialMultiToken(2).prepare(build("llama"))
    _perturb(module)
    batch = token_batch(batch=1)
    t = 4
    outs = []
    for where, new in [(None, None), (t, 7), (t + 1, 7)]:  # targets[:, t] is the token at t + 1
        b = copy.deepcopy(batch)
        if where is not None:
            b.targets[0, where] = (b.targets[0, where] + new) % 40
        with torch.no_grad(), module.trunk_output(detach=False) as record:
            module(**b.inputs)
            outs.append(module.depth_hidden(1, record["trunk"], future_ids(b.targets, 1), record["call"])[0, t])
    assert not torch.allclose(outs[0], outs[1])  # the token at t + 1 is depth 1's input at t
    torch.testing.assert_close(outs[0], outs[2], rtol=0, atol=0)  # the token at t + 2 is not


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_parameter_matching_takes_the_blocks_from_the_trunk(kind):
    full = build(kind)
    n_layers = len(_layers(full))
    expected = {name: p.clone() for name, p in full.named_parameters()}
    module = SequentialMultiToken(n_layers, from_trunk=True).prepare(build(kind))
    assert len(_layers(module.model)) == 1 and module.model.config.num_hidden_layers == 1
    assert len(module.depths) == n_layers - 1
    d = full.config.hidden_size
    extra = sum(p.numel() for p in module.parameters()) - sum(p.numel() for p in full.parameters())
    assert extra == extra_parameters(d, n_layers) == (n_layers - 1) * (2 * d * d + 2 * d)  # projections and norms only
    prefix = next(name for name in expected if ".0." in name).split(".0.")[0]  # e.g. model.layers
    for i, depth in enumerate(module.depths, start=1):
        for name, p in depth.block.named_parameters():
            assert torch.equal(p, expected[f"{prefix}.{i}.{name}"]), name
    with pytest.raises(UserError, match=f"mtp-seq:{n_layers + 1} takes {n_layers} head layers .* leaves none"):
        SequentialMultiToken(n_layers + 1, from_trunk=True).prepare(build(kind))


def test_mtp_seq1_is_ntp():
    batch = token_batch()
    model = build("llama")
    seq = get_objective("mtp-seq:1")
    module = seq.prepare(copy.deepcopy(model))
    assert len(module.depths) == 0
    metrics = seq.forward_backward(module, batch, cross_entropy)
    assert set(metrics) == {"loss"}
    ntp = get_objective("ntp")
    ntp.forward_backward(ntp.prepare(model), batch, cross_entropy)
    expected = grads(model)
    for name, g in grads(module.model).items():
        torch.testing.assert_close(g, expected[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["mtp-seq:0", "mtp-seq:x", "mtp-seq:", "mtp-seq:33", "mtp-seq:-1"])
def test_bad_names_are_one_line_errors(name):
    with pytest.raises(UserError, match=r"N in mtp-seq:N must be an integer from 1 to 32") as err:
        get_objective(name)
    assert "\n" not in str(err.value)


def test_refuses_real_valued_targets():
    objective = get_objective("mtp-seq:2")
    module = objective.prepare(build("llama"))
    batch = token_batch()
    batch.targets = batch.targets.double()
    with pytest.raises(UserError, match="needs a token task"):
        objective.forward_backward(module, batch, cross_entropy)


@pytest.mark.parametrize("kind,from_trunk", [("llama", False), ("gpt2", True)])
def test_mtp_seq_checkpoint_loads_as_next_token_model(kind, from_trunk, tmp_path):
    batch = token_batch()
    objective = SequentialMultiToken(2 if from_trunk else 3, from_trunk=from_trunk)
    module = objective.prepare(build(kind, dtype=torch.float32))
    _perturb(module)
    module.model.save_pretrained(tmp_path)
    objective.save_extra(module, tmp_path)
    assert (tmp_path / MODULES_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(**batch.inputs).logits, module(**batch.inputs).logits)

    reader = SequentialMultiToken(objective.n_heads)  # a finished checkpoint: modules read into added copies
    fresh = reader.prepare(loaded)
    reader.load_extra(fresh, tmp_path)
    for (name, a), (_, b) in zip(fresh.depths.state_dict().items(), module.depths.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with torch.no_grad():  # the same depth-1 logits as the trained module
        outs = []
        for m in (fresh, module):
            with m.trunk_output(detach=False) as record:
                m(**batch.inputs)
            outs.append(m.unembed(m.depth_hidden(1, record["trunk"], future_ids(batch.targets, 1), record["call"])))
        torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)

    wrong = get_objective(f"mtp-seq:{objective.n_heads + 1}")
    with pytest.raises(UserError, match="depth modules of mtp-seq"):
        wrong.load_extra(wrong.prepare(loaded), tmp_path)
    with pytest.raises(UserError, match="not found"):
        reader.load_extra(fresh, tmp_path / "elsewhere")
