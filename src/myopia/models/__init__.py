"""Model backends behind one interface (:class:`LanguageModel`)."""

from ._base import (
    Capabilities,
    Context,
    LanguageModel,
    Prompt,
    Sample,
    SamplingParams,
    ScoredContinuation,
    TokenScore,
)
from ._load import BUNDLED, available_models, check_spec, load_hf_model, load_model, parse_spec

__all__ = [
    "BUNDLED",
    "Capabilities",
    "Context",
    "LanguageModel",
    "Prompt",
    "Sample",
    "SamplingParams",
    "ScoredContinuation",
    "TokenScore",
    "available_models",
    "check_spec",
    "load_hf_model",
    "load_model",
    "parse_spec",
]
