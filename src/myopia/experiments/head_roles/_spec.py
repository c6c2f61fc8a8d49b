"""The head-roles spec: models, data sets, their lengths, and which heads to ablate how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .._base import Spec


class HeadRolesSpec(Spec):
    models: list[str] = Field(default_factory=lambda: ["gemma-3-270m", "smollm2-135m-instruct"], min_length=1)
    data: list[Literal["repeat", "text", "repeated-text"]] = Field(
        default_factory=lambda: ["repeat", "text"], min_length=1
    )
    sequences: int = Field(8, ge=1, le=512, description="sequences per data set")
    repeat_len: int = Field(
        24, ge=2, le=1024, description="tokens repeated once (sequence 1 + 2n): repeat, repeated-text"
    )
    repeat_tokens: Literal["vocab", "text"] = Field(
        "vocab",
        description="where repeat draws its random tokens: the whole vocabulary (no specials), or the "
        "distinct tokens of its first 64 x 64 tokens (for small lab models: unseen tokens have untrained embeddings)",
    )
    text_len: int = Field(64, ge=4, le=4096, description="tokens per text window, BOS included")
    text: str = Field("shakespeare:hamlet", description="shakespeare:PLAY or a UTF-8 file")
    ablation: Literal["mean", "zero"] = "mean"
    exclude_bos: bool = Field(False, description="detect_head's exclude_bos")
    exclude_current_token: bool = Field(False, description="detect_head's exclude_current_token")
    causal: bool = Field(True, description="run the own/future ablations (else scores only)")
    ablate: Literal["all", "top"] = Field(
        "all", description="ablate every head, or only the top_k previous-token and induction heads"
    )
    top_k: int = Field(3, ge=1, le=64, description="heads per role in the headline")


QUICK = {"data": ["repeat"], "sequences": 2, "repeat_len": 8, "ablate": "top"}
