"""Model anatomy shared by measurements and objectives: where a ``transformers`` causal LM keeps
its blocks, final norm, unembedding and attention heads, and hooks that read its residual stream.

One copy of each lookup, for Llama-, Gemma-3- and GPT-2-style models (and the many families laid
out like them).
"""

from ._anatomy import (
    attention,
    capture_residuals,
    decoder_layers,
    final_norm,
    from_layer,
    head_geometry,
    logits_from_final,
    output_projection,
    replace_residual,
    set_attn_implementation,
    unembed,
)

__all__ = [
    "attention",
    "capture_residuals",
    "decoder_layers",
    "final_norm",
    "from_layer",
    "head_geometry",
    "logits_from_final",
    "output_projection",
    "replace_residual",
    "set_attn_implementation",
    "unembed",
]
