"""``myopia models`` and ``myopia score``."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from .._errors import UserError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """List the backends and the bundled models available on this machine.

    \b
    Example:
      myopia models
    """
    from ._load import BACKENDS, available_models

    rows = available_models()
    if as_json:
        click.echo(json.dumps({"backends": BACKENDS, "bundled": rows}, indent=2))
        return
    console = Console()
    t = Table(title="backends")
    t.add_column("prefix")
    t.add_column("what it loads")
    for k, v in BACKENDS.items():
        t.add_row(f"{k}:", v.split(" - ", 1)[1])
    console.print(t)
    b = Table(title="bundled models (work offline)")
    for col in ("name", "kind", "status"):
        b.add_column(col)
    for r in rows:
        status = "installed" if r["installed"] else f"missing: {r['install']}"
        b.add_row(r["name"], r["kind"], status)
    console.print(b)


@click.command()
@click.argument("model")
@click.argument("context")
@click.argument("continuations", nargs=-1, required=True)
@click.option("--chat", is_flag=True, help="Render CONTEXT with the model's chat template (tuned models).")
@click.option("--boundary", default="natural", show_default=True,
              help='Which tokens are scored where the tokenizer merges across the boundary: "natural" '
                   "(the model's own tokenization of the joint text), \"lm-eval\" "
                   '(lm-evaluation-harness\'s rule) or "exact" (summed over every tokenization).')
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--device", default="auto", show_default=True, help="auto (a GPU if torch sees one), cpu, cuda, cuda:N.")
@click.option("--dtype", default=None, help="float32 (default), bfloat16, float16.")
def score(
    model: str, context: str, continuations: tuple[str, ...], chat: bool, boundary: str, as_json: bool,
    device: str, dtype: str | None
) -> None:
    """Score CONTINUATIONS after CONTEXT, token by token.

    For each continuation: every token with its log-prob, its rank (1 = the model's top
    choice) and the entropy (nats) of the distribution it was drawn from, and the joint
    log-prob; below it, the context characters the scored tokens cover (moved) and, with
    --boundary lm-eval, any characters the model never sees (dropped). Start a
    continuation with a space where the text has one.

    \b
    Example:
      myopia score gemma-3-270m "Once upon a time, there was a" " little girl" " a a a a"
      myopia score smollm2-135m-instruct $'def f(x):\\n' "    return x" --boundary exact
    """
    from ._base import Prompt, check_boundary
    from ._load import load_model

    check_boundary(boundary)
    if any(not c for c in continuations):
        raise UserError("empty continuation: every continuation needs at least one character")
    lm = load_model(model, device=device, dtype=dtype)
    scored = lm.score(Prompt(context, chat=chat), list(continuations), boundary=boundary)
    if as_json:
        click.echo(json.dumps({"model": model, "boundary": boundary, "results": [s.to_dict() for s in scored]},
                              indent=2))
        return
    console = Console()
    for s in scored:
        t = Table(title=f"{s.continuation!r}", caption=_caption(s))
        for col in ("token", "log-prob", "rank", "entropy"):
            t.add_column(col, justify="left" if col == "token" else "right")
        for tok in s.tokens:
            t.add_row(repr(tok.token), f"{tok.logprob:.4f}", str(tok.rank), f"{tok.entropy:.3f}")
        console.print(t)
    if len(scored) > 1:
        best = max(scored, key=lambda s: s.logprob)
        console.print(f"most probable: {best.continuation!r} ({best.logprob:.4f} nats)")
    sys.stdout.flush()


def _caption(s) -> str:
    """The joint log-prob and what the boundary rule did, under a continuation's table."""
    if s.boundary == "exact":
        head = (f"exact log-prob {s.logprob:.4f} nats, summed over {s.sequences} token sequences "
                f"(the tokens shown are the natural ones); backed up {s.backed_up!r}")
    else:
        head = f"joint log-prob {s.logprob:.4f} nats · mean {s.mean_logprob:.4f} · boundary {s.boundary}"
    notes = [f"{name} {value!r}" for name, value in
             (("moved", s.moved), ("dropped", s.dropped), ("repeated", s.repeated)) if value]
    return head + "".join(f" · {n}" for n in notes)
