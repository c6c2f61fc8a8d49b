"""mtp:n: the per-head backward equals the plain summed loss; checkpoints stay HF-loadable."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForCausalLM

from myopia import UserError
from myopia.objectives import get_objective
from myopia.objectives._mtp import HEADS_FILE, MultiTokenModel, shift_targets

from ._tiny import ATOL, build, cross_entropy, grads, token_batch

KINDS = ["llama", "gpt2", "gemma3"]


def _reference_loss(module: MultiTokenModel, batch, n: int) -> torch.Tensor:
    """Sum over heads of the masked-mean loss, all in one graph; head k's target at position t is
    the input token t + k, written out from the full sequence (not through shift_targets)."""
    ids = torch.cat([batch.inputs["input_ids"], batch.targets[:, -1:]], dim=1)  # (B, T+1)
    t = batch.targets.shape[1]
    with module.trunk_output(detach=False) as record:
        logits = module(**batch.inputs).logits  # (B, T, V)
    total = 0.0
    for k in range(1, n + 1):
        if k > 1:
            logits = module.head_logits(k, record["trunk"], record["call"])
        valid = t + 1 - k  # positions that have a token k ahead
        per_pos = cross_entropy(logits[:, :valid], ids[:, k : k + valid])  # (B, valid)
        mask = batch.loss_mask[:, k - 1 : k - 1 + valid]
        total = total + (per_pos * mask).sum() / mask.sum()
    return total


@pytest.mark.parametrize("kind", KINDS)
def test_mtp_memory_trick_equals_summed_loss(kind):
    n = 3
    batch = token_batch(length=9)
    objective = get_objective(f"mtp:{n}")
    module = objective.prepare(build(kind))
    for p in module.heads.parameters():  # the heads start as copies; make them differ
        p.data.add_(0.05 * torch.randn_like(p))
    reference = copy.deepcopy(module)

    metrics = objective.forward_backward(module, batch, cross_entropy, loss_scale=0.7)
    (0.7 * _reference_loss(reference, batch, n)).backward()
    expected = grads(reference)
    got = grads(module)
    assert set(got) == set(expected) and any("heads.1." in name for name in got)
    for name, g in expected.items():
        torch.testing.assert_close(got[name], g, rtol=0, atol=min(ATOL[kind], 1e-5), msg=name)
    assert set(metrics) == {"loss", "loss_head2", "loss_head3"}

    ntp = get_objective("ntp")
    assert metrics["loss"] == pytest.approx(
        ntp.per_position_loss(reference.model, batch, cross_entropy).mul(batch.loss_mask).sum().item()
        / batch.loss_mask.sum().item(),
        rel=1e-10,
    )
    # the trick and the objective's own one-graph form agree on the value too
    total = objective.summed_loss(reference, batch, cross_entropy).item()
    assert total == pytest.approx(sum(metrics.values()), rel=1e-10)


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


def test_shift_targets():
    targets = torch.arange(10).reshape(2, 5)
    mask = torch.ones(2, 5)
    mask[0, 4] = 0
    shifted, shifted_mask = shift_targets(targets, mask, 2)
    assert shifted[:, :3].tolist() == [[2, 3, 4], [7, 8, 9]]
    assert shifted_mask.tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]]
    assert shift_targets(targets, mask, 7)[1].sum() == 0


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_mtp_checkpoint_loads_as_next_token_model(kind, tmp_path):
    batch = token_batch()
    objective = get_objective("mtp:3")
    module = objective.prepare(build(kind, dtype=torch.float32))
    for p in module.heads.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    module.model.save_pretrained(tmp_path)
    objective.save_extra(module, tmp_path)
    assert (tmp_path / HEADS_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(**batch.inputs).logits, module(**batch.inputs).logits)

    fresh = objective.prepare(loaded)
    objective.load_extra(fresh, tmp_path)
    for (name, a), (_, b) in zip(fresh.heads.state_dict().items(), module.heads.state_dict().items()):
        assert torch.equal(a, b), name

    with pytest.raises(UserError, match="heads"):
        get_objective("mtp:2").load_extra(get_objective("mtp:2").prepare(loaded), tmp_path)
    with pytest.raises(UserError, match="not found"):
        objective.load_extra(fresh, tmp_path / "elsewhere")
