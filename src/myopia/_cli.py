"""The ``myopia`` command line.

Subcommands live next to what they drive; this module only assembles them and turns
:class:`~myopia.UserError` into one line on stderr with exit status 2.
"""

from __future__ import annotations

import os
import sys

import click

from ._errors import RunFailed, UserError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"myopia: error: {e}", err=True)
            sys.exit(UserError.exit_code)
        except RunFailed as e:
            click.echo(f"myopia: error: {e}", err=True)
            sys.exit(RunFailed.exit_code)
        except KeyboardInterrupt:
            click.echo("myopia: interrupted; finished work is saved, run the same command to resume", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="myopia")
def main() -> None:
    """myopia: how far ahead does an autoregressive language model look?

    \b
    Examples:
      myopia models
      myopia score gemma-3-270m "Once upon a time, there was a" " little girl" " a a a"
      myopia run sequence-likelihood --set samples=64
      myopia report runs/sequence-likelihood-1a2b3c4d
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _register() -> None:
    from .lab._cli import train
    from .models._cli import models, score
    from .models._generate_cli import generate
    from .runs._cli import report, run

    for cmd in (models, score, generate, run, report, train):
        main.add_command(cmd)


_register()
