"""myopia.interp.replace_residual and restricted unembedding, against plain forward passes of the
same weights: Llama, Gemma-3 (scaled embeddings, sliding windows, logit soft-capping) and GPT-2."""

from __future__ import annotations

import pytest
import torch

from lmfactory import build_tiny_arch
from myopia._errors import UserError
from myopia.interp import capture_residuals, logits_from_final, replace_residual, unembed


@pytest.mark.parametrize("kind", ["llama", "gemma3", "gpt2"])
@torch.no_grad()
def test_a_state_from_another_run_gives_that_runs_prediction(kind):
    """Two sequences differ at their last position only. Replacing run A's h_l there by run B's
    h_l makes A's last logits equal B's (layers above l see B's stream there, and the positions
    before are the same); every earlier position keeps A's logits."""
    model = build_tiny_arch(kind)
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 97, (2, 9), generator=g)  # (B, T)
    b = a.clone()
    b[:, -1] = (a[:, -1] + 5) % 97
    with capture_residuals(model) as res_b:
        out_b = model(b).logits
    out_a = model(a).logits
    for layer in range(4):
        with replace_residual(model, layer, res_b[layer][:, -1]):
            got = model(a).logits
        assert torch.allclose(got[:, -1], out_b[:, -1], atol=1e-4), (kind, layer)
        assert torch.allclose(got[:, :-1], out_a[:, :-1], atol=1e-5), (kind, layer)
    assert not torch.allclose(out_a[:, -1], out_b[:, -1], atol=1e-2)  # the swap did something


@pytest.mark.parametrize("kind", ["llama", "gemma3", "gpt2"])
@torch.no_grad()
def test_last_layer_is_decoded_by_the_head_and_restricted_logits_are_entries(kind):
    model = build_tiny_arch(kind)
    ids = torch.randint(0, 97, (3, 6), generator=torch.Generator().manual_seed(2))
    v = torch.randn(3, 32) * 3
    with replace_residual(model, 3, v, position=2):
        got = model(ids).logits[:, 2]
    assert torch.allclose(got, unembed(model, v), atol=1e-5)
    tokens = torch.tensor([5, 0, 96, 40])
    assert torch.allclose(unembed(model, v, tokens), unembed(model, v)[:, tokens], atol=1e-6)
    h = torch.randn(2, 4, 32)
    assert torch.allclose(logits_from_final(model, h, tokens), logits_from_final(model, h)[..., tokens], atol=1e-6)


def test_layer_out_of_range_is_one_line():
    model = build_tiny_arch("llama")
    with pytest.raises(UserError, match=r"layer 4 is out of range: the model has layers 0\.\.3"):
        with replace_residual(model, 4, torch.zeros(1, 32)):
            pass
