"""get_objective, ntp and bigram."""

from __future__ import annotations

import copy

import pytest
import torch

from myopia import UserError
from myopia.objectives import get_objective

from ._tiny import ATOL, build, cross_entropy, grads, token_batch


@pytest.mark.parametrize(
    "name, attn, variant",
    [
        ("ntp", None, None),
        ("myopic", "myopic", None),
        ("myopic:hidden", "myopic:hidden", None),
        ("bigram", "bigram", None),
        ("teacherless", None, "teacherless"),
        ("reverse", None, "reverse"),
    ],
)
def test_get_objective_names(name, attn, variant):
    objective = get_objective(name)
    assert objective.name == name
    assert objective.attn_implementation == attn
    assert objective.data_variant == variant


@pytest.mark.parametrize("bad", ["nope", "mtp:0", "mtp:x", "mtp", "myopic:soft"])
def test_unknown_objective_lists_names(bad):
    with pytest.raises(UserError, match="ntp"):
        get_objective(bad)


def test_ntp_forward_backward_is_scaled_masked_mean():
    model = build("llama")
    batch = token_batch()
    objective = get_objective("ntp")
    module = objective.prepare(model)
    metrics = objective.forward_backward(module, batch, cross_entropy, loss_scale=0.5)
    got = grads(module)

    reference = build("llama")
    per_pos = cross_entropy(reference(**batch.inputs).logits, batch.targets)
    loss = (per_pos * batch.loss_mask).sum() / batch.loss_mask.sum()
    (0.5 * loss).backward()
    assert metrics["loss"] == pytest.approx(loss.item(), rel=1e-12)
    for name, g in grads(reference).items():
        torch.testing.assert_close(got[name], g, rtol=0, atol=1e-12)

    # evaluation: same per-position loss, no gradient
    pp = objective.per_position_loss(module, batch, cross_entropy)
    assert pp.shape == batch.targets.shape and not pp.requires_grad
    torch.testing.assert_close(pp, per_pos.detach())


@pytest.mark.parametrize("kind", ["llama", "gpt2", "gemma3"])
def test_bigram_sees_only_its_own_position(kind):
    """Reference: each position run alone, as a one-token sequence at its own position id."""
    model = build(kind)
    batch = token_batch(length=7)
    ids = batch.inputs["input_ids"]
    objective = get_objective("bigram")
    bigram = objective.prepare(copy.deepcopy(model))
    logits = bigram(**batch.inputs).logits  # (B, T, V)
    (cross_entropy(logits, batch.targets) * batch.loss_mask).sum().backward()

    for t in range(ids.shape[1]):
        position = torch.full((ids.shape[0], 1), t)
        alone = model(ids[:, t : t + 1], position_ids=position).logits  # (B, 1, V)
        torch.testing.assert_close(logits[:, t], alone[:, 0].detach(), rtol=0, atol=ATOL[kind])
        (cross_entropy(alone, batch.targets[:, t : t + 1]) * batch.loss_mask[:, t : t + 1]).sum().backward()
    expected = grads(model)
    for name, g in grads(bigram).items():
        torch.testing.assert_close(g, expected[name], rtol=0, atol=ATOL[kind])


def test_bigram_differs_from_full_attention():
    model = build("llama")
    batch = token_batch()
    full = model(**batch.inputs).logits
    bigram = get_objective("bigram").prepare(copy.deepcopy(model))(**batch.inputs).logits
    torch.testing.assert_close(full[:, 0], bigram[:, 0])  # position 0 has nothing else to see
    assert (full[:, 1:] - bigram[:, 1:]).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["teacherless", "reverse"])
def test_data_variants_train_with_the_ntp_loss(name):
    """The variants change the batches (the task's job), not the loss or the gradient."""
    batch = token_batch()
    model = build("llama")
    variant = get_objective(name)
    module = variant.prepare(copy.deepcopy(model))
    assert module.config._attn_implementation == "sdpa"
    got = variant.forward_backward(module, batch, cross_entropy)
    ntp = get_objective("ntp")
    expected = ntp.forward_backward(ntp.prepare(model), batch, cross_entropy)
    assert got == expected
    for name_, g in grads(model).items():
        assert torch.equal(grads(module)[name_], g)


def test_model_that_cannot_switch_attention_is_refused():
    class Stubborn:  # transformers only logs a warning for models outside the attention interface
        config = type("Config", (), {"_attn_implementation": "eager"})()

        def set_attn_implementation(self, name):
            pass

    with pytest.raises(UserError, match="AttentionInterface"):
        get_objective("myopic").prepare(Stubborn())
    get_objective("ntp").prepare(Stubborn())  # the default attention is whatever the model has
