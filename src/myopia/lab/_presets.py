"""The lab's model presets: a family (``llama``, ``gpt2``) and a size, as ``llama-tiny``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    n_layer: int
    d_model: int
    n_head: int


SHAPES = {
    "tiny": Shape(2, 64, 2),  # DESIGN.md's CPU setting (precache, path-star)
    "0.5m": Shape(4, 96, 3),
    "2m": Shape(4, 192, 6),
    "6m": Shape(8, 256, 8),
    "25m": Shape(8, 512, 8),
}
FAMILIES = ("llama", "gpt2")


def presets() -> list[str]:
    return [f"{fam}-{size}" for fam in FAMILIES for size in SHAPES]


def is_preset(name: str) -> bool:
    fam, _, size = name.partition("-")
    return fam in FAMILIES and size in SHAPES
