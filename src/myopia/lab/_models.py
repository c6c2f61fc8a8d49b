"""Lab models: small ``transformers`` models built from a config (no download), or a
pretrained model to fine-tune.

Presets are named by family and approximate non-embedding parameters (about 12 d^2 per
layer for both families: Llama's SwiGLU MLP at 8/3 d has the parameters of GPT-2's at 4d).
"""

from __future__ import annotations

import torch

from .._errors import UserError
from ._config import ModelSpec
from ._presets import FAMILIES, SHAPES, presets


def _llama_ff(d: int) -> int:
    return 32 * -(-(8 * d) // (3 * 32))  # 8/3 d rounded up to a multiple of 32


def build_config(spec: ModelSpec, vocab_size: int, seq_len: int, tie: bool):
    """A ``LlamaConfig`` or ``GPT2Config`` from a preset name and the spec's overrides."""
    from transformers import GPT2Config, LlamaConfig

    fam, _, size = spec.name.partition("-")
    if fam not in FAMILIES or size not in SHAPES:
        raise UserError(
            f"unknown model {spec.name!r}; presets: {', '.join(presets())}, or hf:NAME, gguf:PATH, a bundled name"
        )
    shape = SHAPES[size]
    L = spec.n_layer or shape.n_layer
    d = spec.d_model or shape.d_model
    h = spec.n_head or shape.n_head
    if d % h:
        raise UserError(f"model.d_model={d} is not a multiple of model.n_head={h}")
    max_len = spec.max_len or seq_len
    if max_len < seq_len:
        raise UserError(f"model.max_len={max_len} is shorter than the task's sequence length {seq_len}")
    if fam == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=d,
            intermediate_size=spec.d_ff or _llama_ff(d),
            num_hidden_layers=L,
            num_attention_heads=h,
            num_key_value_heads=h,
            max_position_embeddings=max_len,
            attention_dropout=spec.dropout,
            tie_word_embeddings=tie,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
        )
    return GPT2Config(
        vocab_size=vocab_size,
        n_embd=d,
        n_layer=L,
        n_head=h,
        n_inner=spec.d_ff or 4 * d,
        activation_function="gelu_pytorch_tanh",  # GPT-2's tanh GELU, as one fused kernel (not gelu_new's 8 ops)
        n_positions=max_len,
        resid_pdrop=spec.dropout,
        embd_pdrop=spec.dropout,
        attn_pdrop=spec.dropout,
        tie_word_embeddings=tie,
        bos_token_id=None,
        eos_token_id=None,
    )


def build_model(spec: ModelSpec, task, seed: int):
    """(model, tokenizer or None) for ``task``: a fresh preset model (weights from ``seed``)
    or a pretrained one whose tokenizer the task adopts."""
    from transformers import AutoModelForCausalLM

    if spec.name.partition("-")[0] in FAMILIES:  # a preset (or a misspelt one: build_config says so)
        task.prepare()
        cfg = build_config(spec, task.vocab_size, task.seq_len, tie=task.kind == "tokens")
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
        return model.float().train(), task.tokenizer
    if task.kind != "tokens":
        raise UserError(f"task {task.name!r} trains lab presets only ({', '.join(presets())})")
    shape_fields = [f for f in ("n_layer", "d_model", "n_head", "d_ff", "max_len") if getattr(spec, f) is not None]
    if shape_fields:
        raise UserError(f"model.{shape_fields[0]} changes a preset; {spec.name} is a pretrained model")
    model, tokenizer = load_pretrained(spec.name)
    task.use_tokenizer(tokenizer)
    task.prepare()
    return model.train(), tokenizer


def load_pretrained(name: str):
    """(model, tokenizer) for ``hf:NAME_OR_PATH``, ``gguf:PATH`` or a bundled name, through
    ``myopia.models.load_hf_model`` (the models package), weights never downloaded here."""
    try:
        from ..models import load_hf_model
    except ImportError:  # pragma: no cover - the models package always has it once merged
        load_hf_model = None
    if load_hf_model is not None:
        return load_hf_model(name)
    if not name.startswith("hf:"):
        raise UserError(f"unknown model {name!r}; presets: {', '.join(presets())}, or hf:PATH")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = name[len("hf:") :]
    try:
        return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise UserError(f"cannot load {name}: {str(e).splitlines()[0]}") from None


def count_parameters(model: torch.nn.Module, embeddings: bool = False) -> int:
    """Parameters (each shared tensor once); without the token and position embeddings by default."""
    seen, total = set(), 0
    skip = set()
    if not embeddings:
        skip.add(id(model.get_input_embeddings().weight))
        for name, p in model.named_parameters():
            if name.endswith(("wpe.weight", "lm_head.weight")):
                skip.add(id(p))
    for p in model.parameters():
        if id(p) in seen or id(p) in skip:
            continue
        seen.add(id(p))
        total += p.numel()
    return total
