"""Exactness of the myopic attention functions against independent brute force."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from myopia import UserError
from myopia.objectives import get_objective, install_hidden_hooks
from myopia.objectives._attention import _explicit_myopic, _fused_myopic

from ._brute import hidden_myopic_grads, strict_myopic_grads
from ._tiny import ATOL, build, cross_entropy, grads, token_batch

KINDS = ["llama", "gpt2", "gemma3"]


def _train_grads(objective_name, model, batch, attention_mask=None):
    objective = get_objective(objective_name)
    module = objective.prepare(model)
    inputs = dict(batch.inputs)
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask
    batch = type(batch)(inputs=inputs, targets=batch.targets, loss_mask=batch.loss_mask)
    metrics = objective.forward_backward(module, batch, cross_entropy)
    return grads(module), metrics


def _assert_same(got, expected, atol):
    assert set(got) <= set(expected)
    for name, g in expected.items():
        torch.testing.assert_close(got.get(name, torch.zeros_like(g)), g, rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_strict_myopic_gradient_equals_brute_force(kind):
    model = build(kind)
    batch = token_batch(length=10)  # longer than Gemma 3's sliding window of 4
    got, _ = _train_grads("myopic", copy.deepcopy(model), batch)
    expected = strict_myopic_grads(model, batch)
    _assert_same(got, expected, atol=min(ATOL[kind], 1e-5))


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_strict_myopic_with_padding_equals_brute_force(kind):
    model = build(kind)
    batch = token_batch(length=9)
    attention_mask = torch.ones(2, 9, dtype=torch.long)
    attention_mask[1, 6:] = 0  # right padding
    batch.loss_mask[1, 6:] = 0.0
    got, _ = _train_grads("myopic", copy.deepcopy(model), batch, attention_mask)
    expected = strict_myopic_grads(model, batch, attention_mask)
    _assert_same(got, expected, atol=min(ATOL[kind], 1e-5))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["myopic", "myopic:hidden"])
def test_myopic_forward_equals_vanilla_exactly(kind, dtype, name):
    model = build(kind, dtype=dtype)
    batch = token_batch(length=10)
    vanilla = model(**batch.inputs).logits
    myopic = get_objective(name).prepare(copy.deepcopy(model))
    assert myopic.config._attn_implementation == name
    assert torch.equal(myopic(**batch.inputs).logits, vanilla)  # with gradients on: the training path
    with torch.no_grad():
        assert torch.equal(myopic(**batch.inputs).logits, vanilla)


@pytest.mark.parametrize("kind", KINDS)
def test_myopic_gradient_differs_from_vanilla(kind):
    """Guards against a no-op: the brute-force test must be able to fail."""
    model = build(kind)
    batch = token_batch(length=10)
    vanilla, vanilla_metrics = _train_grads("ntp", copy.deepcopy(model), batch)
    strict, strict_metrics = _train_grads("myopic", copy.deepcopy(model), batch)
    hidden, _ = _train_grads("myopic:hidden", copy.deepcopy(model), batch)
    assert strict_metrics["loss"] == vanilla_metrics["loss"]
    def far(a, b):  # relative: a tiny random model has small gradients
        return (a - b).norm() > 0.05 * b.norm()

    key_weights = [n for n in vanilla if "k_proj.weight" in n or "c_attn.weight" in n]
    assert key_weights
    for name in key_weights:
        assert far(strict[name], vanilla[name]), name
        assert far(hidden[name], strict[name]), name  # hidden learns through the past


@pytest.mark.parametrize("kind", KINDS)
def test_hidden_myopic_gradient_equals_its_definition(kind):
    model = build(kind)
    batch = token_batch(length=10)
    got, _ = _train_grads("myopic:hidden", copy.deepcopy(model), batch)
    expected = hidden_myopic_grads(model, batch)
    _assert_same(got, expected, atol=min(ATOL[kind], 1e-5))


def test_hidden_without_hook_says_what_to_do():
    model = build("llama")
    model.set_attn_implementation("myopic:hidden")
    with pytest.raises(UserError, match="install_hidden_hooks"):
        model(**token_batch().inputs)
    assert install_hidden_hooks(model) == 2  # one attention module per layer
    model(**token_batch().inputs)


def test_from_pretrained_with_myopic_attention(tmp_path):
    model = build("llama", dtype=torch.float32)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="myopic", dtype=torch.float64)
    assert loaded.config._attn_implementation == "myopic"
    batch = token_batch(length=6)
    logits = loaded(**batch.inputs).logits
    ((cross_entropy(logits, batch.targets) * batch.loss_mask).sum() / batch.loss_mask.sum()).backward()
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float64)
    _assert_same(grads(loaded), strict_myopic_grads(reference, batch), atol=1e-10)


@pytest.mark.parametrize("masked", [False, True])
def test_fused_path_equals_explicit_formula(masked):
    """The SDPA + diagonal-correction path against A·V̄ + diag(A)(V − V̄) written out."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = None
    if masked:
        mask = torch.ones(2, 1, 7, 7, dtype=torch.bool).tril()
        mask[1, :, :, 5:] = False  # padding keys
    upstream = torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64)
    results = []
    for fn in (_fused_myopic, _explicit_myopic):
        extra = () if fn is _fused_myopic else (0.0, False)
        out = fn(q, k, v, k.detach(), v.detach(), mask, True, 0.5, *extra)
        results.append((out.detach(), *torch.autograd.grad((out * upstream).sum(), (q, k, v))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["llama", "gemma3"])
def test_generic_path_equals_brute_force(kind, monkeypatch):
    """The path used off CPU (scaled_dot_product_attention + a blockwise log-sum-exp)."""
    from myopia.objectives import _attention

    monkeypatch.setattr(_attention, "_cpu_flash_available", lambda q: False)
    monkeypatch.setattr(_attention, "_LSE_CHUNK", 3)  # several blocks
    model = build(kind)
    batch = token_batch(length=10)
    attention_mask = torch.ones(2, 10, dtype=torch.long)
    attention_mask[1, 7:] = 0
    batch.loss_mask[1, 7:] = 0.0
    vanilla = model(**batch.inputs, attention_mask=attention_mask).logits
    got, _ = _train_grads("myopic", copy.deepcopy(model), batch, attention_mask)
    _assert_same(got, strict_myopic_grads(model, batch, attention_mask), atol=min(ATOL[kind], 1e-5))
    myopic = get_objective("myopic").prepare(copy.deepcopy(model))
    assert torch.equal(myopic(**batch.inputs, attention_mask=attention_mask).logits, vanilla)
