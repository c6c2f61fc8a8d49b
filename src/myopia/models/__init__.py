"""Model backends behind one interface (:class:`LanguageModel`)."""

from ._base import (
    BOUNDARIES,
    Boundary,
    Capabilities,
    Context,
    LanguageModel,
    Prompt,
    Sample,
    SamplingParams,
    ScoredContinuation,
    TokenScore,
    WhiteBoxModel,
    check_boundary,
)
from ._boundary import Cut, describe_boundary
from ._framing import ChatMode, draw_samples, frame_prompt, sample_texts, use_chat
from ._load import BUNDLED, available_models, check_spec, load_hf_model, load_model, parse_spec, quiet_transformers
from ._placement import DTYPES, Placement

__all__ = [
    "BOUNDARIES",
    "BUNDLED",
    "DTYPES",
    "Placement",
    "Boundary",
    "Cut",
    "Capabilities",
    "Context",
    "LanguageModel",
    "Prompt",
    "Sample",
    "SamplingParams",
    "ScoredContinuation",
    "TokenScore",
    "WhiteBoxModel",
    "check_boundary",
    "describe_boundary",
    "ChatMode",
    "draw_samples",
    "frame_prompt",
    "sample_texts",
    "use_chat",
    "quiet_transformers",
    "available_models",
    "check_spec",
    "load_hf_model",
    "load_model",
    "parse_spec",
]
