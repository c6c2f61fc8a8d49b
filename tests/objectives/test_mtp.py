"""mtp:n: parallel heads on the last layer's input; the per-head backward equals the plain summed
loss; parameter matching takes the heads from the model's layers; checkpoints stay HF-loadable."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from myopia import UserError
from myopia.objectives import get_objective
from myopia.objectives._mtp import HEADS_FILE, MultiToken, MultiTokenModel

from ._tiny import build, cross_entropy, grads, token_batch

# Llama's and Gemma's RMSNorm compute in float32 even in a float64 model, and the trick sums the
# heads' gradients before the trunk's norms where the brute force sums them after: ~1e-7 apart
ATOL = {"llama": 1e-6, "gpt2": 1e-10, "gemma3": 1e-6}


def _layers(model) -> torch.nn.ModuleList:
    base = model.base_model
    return base.h if hasattr(base, "h") else base.layers  # GPT-2: h; Llama, Gemma 3: layers


def _reference_loss(module: MultiTokenModel, batch, n: int) -> torch.Tensor:
    """Brute force, one graph: head k's logits are the model's own forward with its last decoder
    layer swapped for head k (so the trunk runs n times); head k's target at position t is the
    input token t + k, written out from the full sequence."""
    ids = torch.cat([batch.inputs["input_ids"], batch.targets[:, -1:]], dim=1)  # (B, T+1)
    t = batch.targets.shape[1]
    layers = _layers(module.model)
    last = layers[-1]
    total = 0.0
    try:
        for k in range(1, n + 1):
            layers[-1] = last if k == 1 else module.heads[k - 2]
            logits = module.model(**batch.inputs, use_cache=False).logits  # (B, T, V)
            valid = t + 1 - k  # positions that have a token k ahead
            per_pos = cross_entropy(logits[:, :valid], ids[:, k : k + valid])  # (B, valid)
            mask = batch.loss_mask[:, k - 1 : k - 1 + valid]
            total = total + (per_pos * mask).sum() / mask.sum()
    finally:
        layers[-1] = last
    return total


def _perturb_heads(module: MultiTokenModel) -> None:
    for p in module.heads.parameters():  # added heads start as copies of the last layer; make them differ
        p.data.add_(0.05 * torch.randn_like(p))


@pytest.mark.parametrize(
    "kind,n,from_trunk",
    [
        ("llama", 3, False), ("gpt2", 3, False), ("gemma3", 3, False),
        ("llama", 2, True), ("gpt2", 2, True), ("gemma3", 3, True),
    ],
)
def test_mtp_memory_trick_equals_summed_loss(kind, n, from_trunk):
    batch = token_batch(length=9)
    objective = MultiToken(n, from_trunk=from_trunk)
    module = objective.prepare(build(kind))
    _perturb_heads(module)
    reference = copy.deepcopy(module)

    metrics = objective.forward_backward(module, batch, cross_entropy, loss_scale=0.7)
    (0.7 * _reference_loss(reference, batch, n)).backward()
    expected = grads(reference)
    got = grads(module)
    assert set(got) == set(expected) and any(f"heads.{n - 2}." in name for name in got)
    for name, g in expected.items():
        torch.testing.assert_close(got[name], g, rtol=0, atol=ATOL[kind], msg=name)
    assert set(metrics) == {"loss"} | {f"loss_head{k}" for k in range(2, n + 1)}

    ntp = get_objective("ntp")
    assert metrics["loss"] == pytest.approx(
        ntp.per_position_loss(reference.model, batch, cross_entropy).mul(batch.loss_mask).sum().item()
        / batch.loss_mask.sum().item(),
        rel=1e-10,
    )
    # the trick and the objective's own one-graph form agree on the value too
    total = objective.summed_loss(reference, batch, cross_entropy).item()
    assert total == pytest.approx(sum(metrics.values()), rel=1e-10)


def test_heads_are_parallel_on_the_last_layers_input():
    """Head 2 sees the trunk output (the last layer's input), not the last layer's output."""
    module = MultiToken(2).prepare(build("llama"))
    _perturb_heads(module)
    batch = token_batch()
    with torch.no_grad():
        hidden = module.model(**batch.inputs, output_hidden_states=True).hidden_states
        with module.trunk_output(detach=False) as record:
            module(**batch.inputs)
        assert torch.equal(record["trunk"], hidden[-2])  # embeddings, layer 1 -> the input of layer 2
        swapped = copy.deepcopy(module.model)
        _layers(swapped)[-1] = module.heads[0]
        expected = swapped(**batch.inputs).logits[:, :-1]  # (B, T-1, V)
        torch.testing.assert_close(module.head_logits(2, record["trunk"], record["call"]), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["llama", "gpt2", "gemma3"])
def test_parameter_matching_takes_the_heads_from_the_trunk(kind):
    full = build(kind)
    n_layers = len(_layers(full))
    expected = {name: p.clone() for name, p in full.named_parameters()}
    module = MultiToken(n_layers, from_trunk=True).prepare(build(kind))
    # one layer left, the rest became heads 2..n: the same tensors as the full model's, none added
    assert len(_layers(module.model)) == 1 and module.model.config.num_hidden_layers == 1
    assert len(module.heads) == n_layers - 1
    assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in full.parameters())
    prefix = next(name for name in expected if ".0." in name).split(".0.")[0]  # e.g. model.layers
    for i, head in enumerate(module.heads, start=1):
        for name, p in head.named_parameters():
            assert torch.equal(p, expected[f"{prefix}.{i}.{name}"]), name
    if kind == "gemma3":
        assert module.model.config.layer_types == ["sliding_attention"]
    with torch.no_grad():  # the shortened model still runs as a next-token model
        assert module(**token_batch().inputs).logits.shape[:2] == (2, 10)
    with pytest.raises(UserError, match=f"mtp:{n_layers + 1} takes {n_layers} head layers .* leaves none"):
        MultiToken(n_layers + 1, from_trunk=True).prepare(build(kind))


def test_mtp1_is_ntp():
    batch = token_batch()
    model = build("llama")
    mtp = get_objective("mtp:1")
    module = mtp.prepare(copy.deepcopy(model))
    assert len(module.heads) == 0
    mtp.forward_backward(module, batch, cross_entropy)
    ntp = get_objective("ntp")
    ntp.forward_backward(ntp.prepare(model), batch, cross_entropy)
    expected = grads(model)
    for name, g in grads(module.model).items():
        torch.testing.assert_close(g, expected[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind,from_trunk", [("llama", False), ("gpt2", False), ("llama", True)])
def test_mtp_checkpoint_loads_as_next_token_model(kind, from_trunk, tmp_path):
    batch = token_batch()
    objective = MultiToken(3 if not from_trunk else 2, from_trunk=from_trunk)
    module = objective.prepare(build(kind, dtype=torch.float32))
    _perturb_heads(module)
    module.model.save_pretrained(tmp_path)
    objective.save_extra(module, tmp_path)
    assert (tmp_path / HEADS_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(**batch.inputs).logits, module(**batch.inputs).logits)

    reader = MultiToken(objective.n_heads)  # a finished checkpoint: heads read into added copies
    fresh = reader.prepare(loaded)
    reader.load_extra(fresh, tmp_path)
    for (name, a), (_, b) in zip(fresh.heads.state_dict().items(), module.heads.state_dict().items(), strict=True):
        assert torch.equal(a, b), name

    wrong = get_objective(f"mtp:{objective.n_heads + 1}")
    with pytest.raises(UserError, match="heads"):
        wrong.load_extra(wrong.prepare(loaded), tmp_path)
    with pytest.raises(UserError, match="not found"):
        reader.load_extra(fresh, tmp_path / "elsewhere")
