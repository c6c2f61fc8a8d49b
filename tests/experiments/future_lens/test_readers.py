"""future-lens's model-running readers against independent references on the same weights:
the transplant against plain forward passes and plain greedy decoding, the future-state map at
identity against the model's own next-token distribution, the learned prompt's gradient against
a plain (uncached, unbatched) forward pass."""

from __future__ import annotations

import pytest
import torch

from lmfactory import build_tiny_arch
from myopia.experiments.future_lens._future_state import FutureState, StateMapConfig
from myopia.experiments.future_lens._prompt import LearnedPrompt, PromptConfig, SoftPrompt, train_prompt
from myopia.experiments.future_lens._spec import FutureLensSpec
from myopia.experiments.future_lens._states import cache_states
from myopia.experiments.future_lens._transplant import Transplant, batched, context_ids, prefix_cache, transplant_run
from myopia.interp import capture_residuals, replace_residual

KINDS = ["llama", "gemma3", "gpt2"]


def _greedy(model, ids: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Plain greedy decoding, a full forward pass per step: the logits (B, V) of each step."""
    out = []
    for _ in range(steps):
        logits = model(ids).logits[:, -1]
        out.append(logits)
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], 1)
    return out


@pytest.mark.parametrize("kind", KINDS)
@torch.no_grad()
def test_transplant_at_layer_0_of_the_same_token_in_the_same_context_is_the_models_own_run(kind):
    """Three texts share a prefix and differ in their last token. The context is text 0; each
    text's embedding of its last token, transplanted at layer 0 there, gives that text's own
    prediction and greedy continuation (3 steps). At every layer, the first step is the text's
    own prediction, and text 0's state (the same token in the same context) gives its own run."""
    model = build_tiny_arch(kind)
    g = torch.Generator().manual_seed(3)
    texts = torch.randint(0, 97, (1, 7), generator=g).repeat(3, 1)  # (3, 7)
    texts[:, -1] = torch.tensor([11, 50, 90])
    with capture_residuals(model) as res:
        model(texts)
    own = _greedy(model, texts, 3)
    inputs = model.get_input_embeddings()(texts[0])  # (7, d) the context's input vectors
    cache = prefix_cache(model, inputs[:-1])
    for layer in range(4):
        states = res[layer][:, -1]  # (3, d) h_layer of each text's last token
        got = transplant_run(model, batched(cache, 3, keep=True), inputs[-1], layer, states, 3)
        assert torch.allclose(got[0], own[0], atol=1e-4), (kind, layer)
        rows = slice(None) if layer == 0 else slice(0, 1)
        for step in range(3):
            assert torch.allclose(got[step][rows], own[step][rows], atol=1e-4), (kind, layer, step)
    assert not torch.allclose(own[0][0], own[0][1], atol=1e-2)  # the texts' predictions differ


@pytest.fixture(scope="module")
def lens_states(tiny_lm_dir, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = tmp_path_factory.mktemp("text") / "t.txt"
    text.write_text("The cat sat on the mat. The dog sat on the log. A bird sang in the tree. " * 30)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    spec = FutureLensSpec(text=str(text), max_train_tokens=300, max_eval_tokens=120, vocab=30, context=16)
    return model, tok, cache_states(model, tok, "tiny", spec, lambda *a, **k: None)


def test_future_state_at_identity_on_the_last_layer_is_the_models_next_token_distribution(lens_states):
    model, _, states = lens_states
    L = states.n_layers
    reader = FutureState(model, StateMapConfig(epochs=0, init="identity"))
    got = reader.read(states, L).eval[:, 0]  # (n_eval, V+1) N = 1
    want = states.own[: states.n_eval]  # the model's own distribution, collapsed alike
    assert torch.allclose(got.double(), want, atol=1e-4)
    lower = reader.read(states, L - 1).eval[:, 0]  # a lower layer's state is not the model's output
    assert not torch.allclose(lower.double(), want, atol=1e-2)


def test_future_state_training_moves_the_map_towards_the_targets(lens_states):
    """From the ridge start, the cross-entropy on the kept tokens falls with training."""
    model, _, states = lens_states
    layer = states.layers[1]
    ce = []
    for epochs in (0, 8):
        r = FutureState(model, StateMapConfig(epochs=epochs, lr=3e-3)).read(states, layer)
        kept = states.eval_targets[:, 1] != states.classes.n - 1
        ce.append(-r.eval[kept, 1].gather(1, states.eval_targets[kept, 1:2]).mean().item())
    assert ce[1] < ce[0], ce


def test_learned_prompt_before_training_is_the_transplant(lens_states):
    """Started at the fixed context, the learned prompt reads t+1 as the transplant does."""
    model, tok, states = lens_states
    ids = context_ids(tok, 'Tell me more: "')
    assert ids[0] == tok.bos_token_id
    for layer in (0, 1):
        fixed = Transplant(model, ids).read(states, layer).eval  # (n_eval, K, V+1)
        learned = LearnedPrompt(model, ids, 1, PromptConfig(steps=0)).read(states, layer).eval
        assert learned.shape == fixed.shape
        assert torch.allclose(learned[:, 0], fixed[:, 0], atol=1e-5)


def test_learned_prompt_reads_t_plus_1_alone_at_the_last_layer(lens_states):
    """At the last layer the state feeds the head only: no later position depends on it, so the
    learned prompt reads t+1 alone there (the transplant's reading, untrained), and the records
    cover t+1 only."""
    from myopia.experiments.future_lens._readers import reading_rows

    model, tok, states = lens_states
    L = states.n_layers
    ids = context_ids(tok, 'Tell me more: "')
    learned = LearnedPrompt(model, ids, 1, PromptConfig(steps=2)).read(states, L)
    assert learned.eval.shape[1] == 1 and states.offsets > 1
    fixed = Transplant(model, ids).read(states, L).eval
    assert torch.allclose(learned.eval[:, 0], fixed[:, 0], atol=1e-5)
    assert [r["offset"] for r in reading_rows(learned, states, L, {})] == [1]
    below = LearnedPrompt(model, ids, 1, PromptConfig(steps=0)).read(states, L - 1)
    assert [r["offset"] for r in reading_rows(below, states, L - 1, {})] == list(range(1, states.offsets + 1))


@pytest.mark.parametrize("kind", KINDS)
def test_learned_prompt_gradients_reach_only_the_prompt_and_equal_a_plain_forward_pass(kind):
    """One training step: the model's weights keep their values, get no .grad and keep their
    requires_grad flags; the prompt moves (BOS stays). Its gradient (KV cache of the prompt
    shared by the batch, K = 3 read positions, targets "other" left out) equals the gradient of
    plain forward passes of the whole sequence, one per state."""
    model = build_tiny_arch(kind)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(4)
    start = model.get_input_embeddings()(torch.randint(0, 97, (6,), generator=g)).detach()  # (6, d) BOS + 5
    x = torch.randn(4, 32, generator=g) * 2  # (4, d) states
    kept = torch.tensor([5, 17, 40, 63])  # V = 4; class 4 is "other"
    targets = torch.tensor([[0, 3, 4], [3, 1, 2], [1, 4, 0], [2, 2, 1]])  # (4, K)
    for layer in (1, 2):
        prompt = SoftPrompt(start, n_fixed=1, n_after=2)
        grads = []
        prompt.unit.register_hook(lambda grad: grads.append(grad.clone()))
        train_prompt(model, prompt, layer, x, targets, kept, PromptConfig(steps=1, batch_size=64, lr=1e-2))
        for n, p in model.named_parameters():
            assert p.grad is None and p.requires_grad and torch.equal(p.detach(), before[n]), n
        assert not torch.equal(prompt.unit.detach()[:5], start[1:] / prompt.scale)  # the prompt moved
        assert torch.equal(prompt()[0], start[0])  # BOS did not
        # the reference: plain forward passes of the whole sequence, the reader's draw of states
        idx = torch.randint(0, 4, (4,), generator=torch.Generator().manual_seed(0))
        ref = SoftPrompt(start, n_fixed=1, n_after=2)
        for p in model.parameters():
            p.requires_grad_(False)
        seq = ref()[None].expand(4, -1, -1)  # (4, 8, d): BOS, 5 context vectors, 2 after
        with replace_residual(model, layer, x[idx], position=5):
            h = model.base_model(inputs_embeds=seq).last_hidden_state[:, 5:]  # (4, 3, d)
        logits = model.get_output_embeddings()(h)[..., kept]  # (4, 3, V)
        if kind == "gemma3":  # its logit soft-capping
            logits = torch.tanh(logits / 5.0) * 5.0
        t = targets[idx]
        nll = -logits.log_softmax(-1).gather(2, t.clamp_max(3)[..., None])[..., 0]  # (4, 3)
        (nll * (t != 4)).sum().div((t != 4).sum()).backward()
        for p in model.parameters():
            p.requires_grad_(True)
        assert ref.unit.grad.abs().sum() > 0
        assert torch.allclose(grads[0], ref.unit.grad, atol=1e-5, rtol=1e-4), (kind, layer)


def test_the_model_running_readers_read_a_subset_of_the_layers():
    from types import SimpleNamespace

    from myopia.experiments.future_lens._experiment import reader_layers
    from myopia.experiments.future_lens._probe import LinearProbe, ProbeConfig
    from myopia.experiments.future_lens._states import chosen_layers

    layers = chosen_layers(18, None, 10, "gemma")  # gemma-3-270m: 18 blocks
    assert layers == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    states = SimpleNamespace(layers=layers)
    spec = FutureLensSpec(model_layers=3)
    assert reader_layers(LinearProbe(ProbeConfig()), states, spec) == layers
    assert reader_layers(Transplant(None, torch.tensor([1])), states, spec) == [0, 8, 18]
    assert chosen_layers(18, [3, 18], 10, "gemma") == [3, 18]
