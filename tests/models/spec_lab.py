"""Lab checkpoints with multi-token heads, built directly (no training) for the drafting tests.

A random model with a small vocabulary and a large initialisation decodes context-dependent
tokens, and its random heads agree with it about 1/V of the time: every number of accepted
drafts occurs, which is what the tests need. The folder is what ``myopia train`` writes:
the Hugging Face checkpoint, the tokenizer, the heads' safetensors file and ``spec.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from myopia.objectives import get_objective
from myopia.tasks._base import word_level_tokenizer

SYMBOLS = ["a", "b", "c", "d", "<pad>"]  # the last one is the tokenizer's pad/unk


def build_model(family: str, n_layer: int, vocab: int, std: float, seed: int):
    torch.manual_seed(seed)
    if family == "llama":
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=n_layer,
            num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
            initializer_range=std, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        )
        return LlamaForCausalLM(config)
    config = GPT2Config(
        vocab_size=vocab, n_embd=16, n_layer=n_layer, n_head=2, n_positions=128, initializer_range=std,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
    )
    return GPT2LMHeadModel(config)


def lab_dir(root: Path, objective: str, family: str = "llama", n_layer: int = 4, std: float = 0.5,
            seed: int = 0) -> Path:
    """A lab checkpoint trained (in name only) with ``objective``, parameter-matched as the lab
    trains presets: the heads (depth blocks) are the model's own last layers."""
    folder = root / f"{family}-{objective.replace(':', '')}-L{n_layer}-std{std}-s{seed}"
    if (folder / "spec.json").is_file():
        return folder
    model = build_model(family, n_layer, len(SYMBOLS), std, seed)
    obj = get_objective(objective)
    if hasattr(obj, "from_trunk"):
        obj.from_trunk = True
    module = obj.prepare(model)
    model.save_pretrained(folder)
    word_level_tokenizer(SYMBOLS).save_pretrained(folder)
    obj.save_extra(module, folder)
    (folder / "spec.json").write_text(json.dumps({"objective": objective}))
    return folder
