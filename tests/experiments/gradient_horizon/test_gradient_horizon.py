"""gradient-horizon: the per-target decomposition against independent autograd references,
the sanity checks of the experiment (myopic models, the last block), and a run."""

from __future__ import annotations

import json

import pytest
import torch

import myopia  # noqa: F401  (registers the myopic attention)
from myopia.experiments.gradient_horizon import _decomposition as core
from myopia.experiments.gradient_horizon._decomposition import (
    horizon_sums,
    myopic_drop,
    offset_gradients,
    offset_gradients_loop,
)
from myopia.experiments.gradient_horizon._summary import GradientHorizonSummary
from myopia.runs import run


@pytest.fixture(scope="module")
def tiny64(tiny_lm_dir):
    from myopia.models import load_hf_model

    torch.set_num_threads(1)
    model, tok = load_hf_model(f"hf:{tiny_lm_dir}")
    return model.double()


def _ids(t: int = 20, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 290, (1, t), generator=g)


def _per_target_reference(model, ids) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Independent reference: ∂ℓ_j/∂h_l for every j by torch.autograd.grad on a fresh forward
    through output_hidden_states (no hooks), and the gradient of the total loss."""
    model.set_attn_implementation("eager")
    emb = model.get_input_embeddings()(ids).detach().requires_grad_()
    out = model(inputs_embeds=emb, output_hidden_states=True)
    hs = list(out.hidden_states[:-1])  # h_0 .. h_{L-1} (the last entry is after the final norm)
    losses = torch.nn.functional.cross_entropy(out.logits[0, :-1], ids[0, 1:], reduction="none")
    per_j = [torch.stack(torch.autograd.grad(losses[j], hs, retain_graph=True))[:, 0] for j in range(len(losses))]
    total = torch.stack(torch.autograd.grad(losses.sum(), hs))[:, 0]  # (L, T, d)
    model.set_attn_implementation("sdpa")
    return per_j, total


def test_offsets_match_autograd_and_sum_to_the_full_gradient(tiny64):
    ids = _ids(20)
    t = ids.shape[1]
    parts, full = offset_gradients(tiny64, ids, max_offset=t - 2, chunk=5)  # every offset kept
    per_j, total = _per_target_reference(tiny64, ids)
    L = total.shape[0]
    scale = total.abs().max()
    assert torch.allclose(full[:L], total, atol=1e-6 * scale, rtol=0)
    for j, g in enumerate(per_j):  # parts[l, i, j - i] == ∂ℓ_j/∂h_l[i]
        for i in range(j + 1):
            assert torch.allclose(parts[:L, i, j - i], g[:, i], atol=1e-6 * scale, rtol=0), (i, j)
        assert g[:, j + 1 :].abs().max() == 0  # causality: no gradient to later positions
    # the parts sum to the gradient of the total loss (no remainder when every offset is kept)
    assert torch.allclose(parts.sum(2)[:L], total, atol=1e-6 * scale, rtol=0)
    sums = horizon_sums(parts, full, t - 2)
    assert sums["norm"][:, -1].abs().max() < 1e-6 * sums["norm"].max()  # the remainder bin is empty
    proj = sums["proj"] / sums["full_sq"][:, None]
    assert torch.allclose(proj.sum(1), torch.ones(L + 1, dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_vectorised_equals_loop(tiny64, chunk):
    ids = _ids(24, seed=1)
    pl, fl = offset_gradients_loop(tiny64, ids, 6)
    pv, fv = offset_gradients(tiny64, ids, 6, chunk=chunk)
    scale = pl.abs().max()
    assert scale > 0
    assert torch.allclose(pv, pl, atol=1e-5 * scale, rtol=0)
    assert torch.allclose(fv, fl, atol=1e-5 * scale, rtol=0)


def _family(name: str):
    """A tiny float64 model of each family the per-target windows must handle exactly: Llama
    (RoPE, GQA), GPT-2 (learned positions) and Gemma 3 (sliding-window layers, window 5 < T)."""
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if name == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2))
    elif name == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                           bos_token_id=0, eos_token_id=0))
    else:
        model = Gemma3ForCausalLM(Gemma3TextConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, sliding_window=5,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"]))
    with torch.no_grad():  # larger weights, so attention is far from uniform
        for p in model.parameters():
            p.mul_(4.0 if p.dim() > 1 else 1.0)
    return model.double().eval()


@pytest.fixture
def window_calls(monkeypatch):
    """Records what each per-target-window pass returned (False: it fell back to chunks)."""
    calls = []
    real = core._target_windows

    def spy(*args):
        calls.append(real(*args))
        return calls[-1]

    monkeypatch.setattr(core, "_target_windows", spy)
    return calls


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_per_target_windows_equal_loop(family, window_calls):
    model = _family(family)
    ids = torch.randint(0, 64, (1, 24), generator=torch.Generator().manual_seed(1))
    pl, fl = offset_gradients_loop(model, ids, 6)
    scale = pl.abs().max()
    for chunk, group in ((1, None), (5, None), (64, None), (8, 5)):  # one target per window, or 2 (≈√6), or 5
        pv, fv = offset_gradients(model, ids, 6, chunk=chunk, group=group)
        assert torch.allclose(pv, pl, atol=1e-5 * scale, rtol=0), (chunk, group)
        assert torch.allclose(fv, fl, atol=1e-5 * scale, rtol=0)
    assert window_calls == [True] * 4  # the windows ran, no fallback
    pc, fc = offset_gradients(model, ids, 6, chunk=8, windows=False)  # the fallback, with its cropped cache
    assert torch.allclose(pc, pl, atol=1e-5 * scale, rtol=0) and torch.allclose(fc, fl, atol=1e-5 * scale, rtol=0)
    assert pl[:-1, :, 1:].abs().max() > 1e-2 * scale  # later targets do reach earlier positions


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_myopic_attention_falls_back_to_chunks_and_stays_at_d0(family, window_calls):
    model = _family(family)
    ids = torch.randint(0, 64, (1, 16), generator=torch.Generator().manual_seed(2))
    model.set_attn_implementation("myopic")
    pl, fl = offset_gradients_loop(model, ids, 4)
    pv, fv = offset_gradients(model, ids, 4, chunk=4)
    assert window_calls == []
    assert torch.allclose(pv, pl, atol=1e-5 * pl.abs().max(), rtol=0)
    assert pv[:, :, 1:].abs().max() == 0 and torch.allclose(pv[:, :-1, 0], fv[:, :-1], atol=1e-12)


def test_a_wrong_window_is_caught_and_the_chunks_take_over(monkeypatch, window_calls):
    """A model family whose attention ignored the windows' masks would give other forwards:
    simulated with masks that also show the recomputed cache entries (keys seen twice)."""
    model = _family("llama")
    ids = torch.randint(0, 64, (1, 24), generator=torch.Generator().manual_seed(3))
    real = core._window_mask
    monkeypatch.setattr(core, "_window_mask", lambda cfg, starts, pos, c, dt: real(cfg, starts * 0 + c, pos, c, dt))
    pl, fl = offset_gradients_loop(model, ids, 6)
    pv, fv = offset_gradients(model, ids, 6, chunk=4)
    assert window_calls == [False]
    assert torch.allclose(pv, pl, atol=1e-5 * pl.abs().max(), rtol=0)


def test_loop_on_a_subset_of_targets(tiny64):
    ids = _ids(16, seed=4)
    pl, fl = offset_gradients_loop(tiny64, ids, 3)
    ps, fs = offset_gradients_loop(tiny64, ids, 3, targets=[2, 9])
    target_of = torch.arange(16)[:, None] + torch.arange(4)  # (T, D+1): parts[:, i, d] is target i + d
    mine = (target_of == 2) | (target_of == 9)
    assert torch.equal(ps[:, mine], pl[:, mine]) and torch.equal(fs, fl)
    assert ps[:, ~mine].abs().max() == 0 and pl[:, ~mine].abs().max() > 0


def test_last_block_and_myopic_model_have_all_mass_at_d0(tiny64):
    ids = _ids(24, seed=2)
    parts, full = offset_gradients(tiny64, ids, 6, chunk=8)
    share = lambda s: s["proj"] / s["full_sq"][:, None]  # noqa: E731
    vanilla = share(horizon_sums(parts, full, 6))
    assert torch.allclose(vanilla[-1], torch.eye(8, dtype=torch.float64)[0], atol=1e-9)  # after the last block
    assert (1 - vanilla[0, 0]) > 0.05  # the embeddings get gradient from later losses (not a no-op)
    assert parts[0, :, 1:].abs().max() > 1e-3 * parts.abs().max()
    tiny64.set_attn_implementation("myopic")
    try:
        mp, mf = offset_gradients(tiny64, ids, 6, chunk=8)
        drop = myopic_drop(tiny64, ids)
    finally:
        tiny64.set_attn_implementation("sdpa")
    myopic = share(horizon_sums(mp, mf, 6))
    assert torch.allclose(myopic, torch.eye(8, dtype=torch.float64)[0].expand_as(myopic), atol=1e-9)
    assert mp[:, :, 1:].abs().max() == 0
    assert drop["total"] == 0.0  # the myopic model's own gradient is already myopic


def test_myopic_drop_against_brute_force(tiny64):
    """‖∇θL − ∇θL_myopic‖/‖∇θL‖ where ∇θL_myopic is built by hand: each target's loss on a
    forward whose positions before it are detached copies (so no gradient reaches them)."""
    ids = _ids(12, seed=3)
    got = myopic_drop(tiny64, ids)
    params = list(tiny64.parameters())
    tiny64.set_attn_implementation("eager")
    logits = tiny64(input_ids=ids).logits
    n = ids.shape[1] - 1
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:])
    g_full = torch.autograd.grad(loss, params)
    g_my = [torch.zeros_like(p) for p in params]
    for j in range(n):  # ℓ_j with every computation at positions < j cut from the graph
        cache = None
        if j > 0:
            with torch.no_grad():
                cache = tiny64(input_ids=ids[:, :j], use_cache=True).past_key_values
        out = tiny64(input_ids=ids[:, j : j + 1], past_key_values=cache, use_cache=True).logits
        lj = torch.nn.functional.cross_entropy(out[0, -1:], ids[0, j + 1 : j + 2]) / n
        for acc, g in zip(g_my, torch.autograd.grad(lj, params, allow_unused=True)):
            if g is not None:
                acc += g
    tiny64.set_attn_implementation("sdpa")
    num = sum((a - b).pow(2).sum() for a, b in zip(g_full, g_my)) ** 0.5
    den = sum(a.pow(2).sum() for a in g_full) ** 0.5
    assert got["total"] == pytest.approx((num / den).item(), rel=1e-5)
    assert 0.05 < got["total"] < 1.0


def test_run_directory_summary_and_report(tiny_lm_dir, tmp_path):
    out = tmp_path / "gh"
    overrides = [
        f'models=["hf:{tiny_lm_dir}"]', 'attention=["default", "myopic"]', "sequences=2",
        "seq_len=20", "max_offset=4", "chunk=8",
    ]
    r = run("gradient-horizon", overrides, out=out)
    assert r.cells_run == 4
    summary = json.loads((out / "summary.json").read_text())
    rows = {m["attention"]: m for m in summary["models"]}
    assert rows["default"]["layers"] == 2 and len(rows["default"]["d0_share"]) == 3
    assert rows["default"]["future_share"][-1] == pytest.approx(0.0, abs=1e-6)
    assert rows["default"]["embeddings_future_share"] > 0.05
    assert rows["myopic"]["mean_future_share"] == pytest.approx(0.0, abs=1e-6)
    assert rows["default"]["myopic_drop"] > 0 and rows["myopic"]["myopic_drop"] is None
    typed = {m.attention: m for m in r.summary.models}  # the typed headline, the same figures
    assert typed["default"].d0_share == rows["default"]["d0_share"]
    assert typed["default"].myopic_drop == rows["default"]["myopic_drop"] and typed["myopic"].myopic_drop is None
    again = GradientHorizonSummary.model_validate_json((out / "summary.json").read_text())
    assert again == r.summary and again.table() == r.summary.table()  # the table printed at the end of the run
    header, table = again.table()
    assert header[:4] == ["model", "attention", "layers", "future share: emb"]
    assert table[1][1] == "myopic" and table[1][3] == "0.0%" and table[1][-1] is None
    html = (out / "report.html").read_text()
    assert html.index("<h2>Summary</h2>") < html.index("<img")
    assert len(list((out / "figures").glob("*.png"))) == 3  # two heatmaps and the depth plot
