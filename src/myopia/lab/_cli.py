"""``myopia train`` (the lab)."""

from __future__ import annotations

import click

from .._errors import UserError


@click.command()
def train() -> None:
    """Train a model under an objective (next-token, myopic, multi-token) on a task."""
    raise UserError("myopia train is not available yet")
