"""The gradient-horizon spec: models, attention, the text windows and the offsets kept apart."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .._base import Spec


class GradientHorizonSpec(Spec):
    models: list[str] = Field(default_factory=lambda: ["gemma-3-270m", "smollm2-135m-instruct"], min_length=1)
    attention: list[Literal["default", "myopic"]] = Field(
        default_factory=lambda: ["default"],
        min_length=1,
        description="'default': the model's gradients; 'myopic': those of strict myopic descent",
    )
    text: str = Field("shakespeare:hamlet", description="shakespeare:PLAY or a UTF-8 file")
    sequences: int = Field(1, ge=1, le=256, description="text windows (one cell each), consecutive")
    seq_len: int = Field(512, ge=4, le=4096, description="tokens per window, BOS included")
    max_offset: int = Field(16, ge=0, le=1024, description="offsets d = 0..max_offset kept apart")
    chunk: int = Field(32, ge=1, le=1024, description="target positions per backward pass")
    myopic_drop: bool = Field(True, description="also measure the parameter-gradient share myopic descent drops")

    @model_validator(mode="after")
    def _fits(self):
        if self.max_offset + 2 > self.seq_len:
            raise ValueError(f"seq_len={self.seq_len} must exceed max_offset + 1 = {self.max_offset + 1}")
        return self


QUICK = {"sequences": 1, "seq_len": 24, "max_offset": 6, "chunk": 8}
