"""Tiny language models for tests, built here (no download).

Import as ``from lmfactory import build_tiny_lm`` (``tests/`` is on the path through its
conftest); a module name of its own, since several test folders have a ``conftest``.
"""

from __future__ import annotations

_CORPUS = [
    "Once upon a time, there was a little girl who lived in a village near the forest.",
    "The cat sat on the mat. The dog sat on the log. A bird sang in the tree.",
    "She could see the future, and she could see the past.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "In the beginning there was a word, and the word was a story about a king.",
] * 20


def build_tiny_lm(path, vocab_size: int = 300, seed: int = 0, chat_template: str | None = None,
                  corpus: list[str] | None = None) -> str:
    """A tiny random Llama and a byte-level BPE (GPT-2's pre-tokenizer) trained on ``corpus``
    (default: a few story sentences and a line of code), saved at ``path``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<bos>", "<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS if corpus is None else corpus, trainer)
    from tokenizers import processors

    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tok.token_to_id("<bos>"))]
    )
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    if chat_template:
        hf_tok.chat_template = chat_template
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=hf_tok.bos_token_id,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the default init, so distributions are not flat
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return str(path)


def build_tiny_arch(kind: str, vocab_size: int = 97, seed: int = 0):
    """An in-memory 3-layer causal LM (d=32) of one family, no tokenizer: ``llama``, ``gemma3``
    (scaled embeddings, sliding-window layers, logit soft-capping) or ``gpt2`` (learned positions,
    LayerNorm); weights scaled up so that distributions are not flat."""
    import torch
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(seed)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64))
    elif kind == "gemma3":
        model = Gemma3ForCausalLM(Gemma3TextConfig(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=1, head_dim=8, sliding_window=4, final_logit_softcapping=5.0,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"], max_position_embeddings=64))
    elif kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=3, n_head=4, n_positions=64))
    else:
        raise ValueError(kind)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0 if p.dim() > 1 else 1.0)
    return model.eval()
def tiny_llama(vocab_size: int, seed: int = 0, dtype=None):
    """A tiny random Llama for a tokenizer of ``vocab_size`` tokens (e.g. a real model's, to get
    its merges with fast forward passes), in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the default init, so distributions are not flat
        for p in model.parameters():
            p.mul_(4.0 if p.dim() > 1 else 1.0)
    return model.to(dtype or torch.float32).eval()
