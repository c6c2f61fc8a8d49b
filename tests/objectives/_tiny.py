"""Tiny random causal LMs built from a config (Llama-, GPT-2- and Gemma3-style) for exactness tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

VOCAB = 40


def tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # grouped-query attention: 2 query heads per key/value head
    return LlamaForCausalLM(config)


def tiny_gpt2() -> GPT2LMHeadModel:
    config = GPT2Config(
        vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=4, n_positions=64,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
    )
    return GPT2LMHeadModel(config)


def tiny_gemma3() -> Gemma3ForCausalLM:
    config = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
        sliding_window=4, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        query_pre_attn_scalar=8,
    )  # a sliding window shorter than the test sequences
    return Gemma3ForCausalLM(config)


# Gemma 3's RMSNorm computes in float32 even in a float64 model, which bounds its agreement
ATOL = {"llama": 1e-10, "gpt2": 1e-10, "gemma3": 1e-6}

BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2, "gemma3": tiny_gemma3}


def build(kind: str, dtype: torch.dtype = torch.float64, attn: str = "sdpa", seed: int = 0):
    torch.manual_seed(seed)
    model = BUILDERS[kind]().to(dtype)
    model.set_attn_implementation(attn)
    model.eval()  # no dropout; gradients still flow
    return model


@dataclass
class Batch:
    """The fields of ``myopia.tasks.Batch`` that objectives use."""

    inputs: dict[str, torch.Tensor]
    targets: torch.Tensor
    loss_mask: torch.Tensor


def token_batch(batch: int = 2, length: int = 10, seed: int = 1) -> Batch:
    """Random ids; targets are the next ids (the last position predicts a random id); a ragged mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (batch, length + 1), generator=g)
    mask = torch.ones(batch, length)
    mask[0, :3] = 0.0  # e.g. a prompt that carries no loss
    return Batch(inputs={"input_ids": ids[:, :-1]}, targets=ids[:, 1:], loss_mask=mask)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B, T, V), (B, T) -> (B, T) per-position loss, like ``Task.loss``."""
    logp = torch.log_softmax(logits.float() if logits.dtype == torch.float16 else logits, dim=-1)
    return -logp.gather(-1, targets[..., None])[..., 0]  # (B, T)


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
