"""``myopia run`` and ``myopia report``."""

from __future__ import annotations

import click


@click.command()
def run() -> None:
    """Run an experiment."""


@click.command()
def report() -> None:
    """Re-render a report."""
