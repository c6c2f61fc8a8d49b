"""``myopia models`` and ``myopia score``."""

from __future__ import annotations

import click


@click.command()
def models() -> None:
    """List backends and bundled models."""


@click.command()
def score() -> None:
    """Score continuations."""
