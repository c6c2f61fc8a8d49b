"""``myopia run`` and ``myopia report``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .._errors import UserError


@click.command()
@click.argument("name_or_spec")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec field by dotted path; VALUE is read as TOML (3, true, \"x\", [\"a\", \"b\"]), else as a string. Repeatable.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: runs/NAME-SPECHASH). Running again with the same spec and directory resumes.")
def run(name_or_spec: str, overrides: tuple[str, ...], out: str | None) -> None:
    """Run a registered experiment (by name, with its default spec), a suite, or a TOML spec.

    \b
    Examples:
      myopia run quick                       # the quick suite, bundled models
      myopia run sequence-likelihood --set samples=128 --set 'models=["gemma-3-270m"]'
      myopia run examples/sequence_likelihood.toml --out runs/mine
    NAME_OR_SPEC is a registered experiment (sequence-likelihood, …), the suite
    `quick`, or a TOML file; an unknown name lists the known ones.
    """
    from ._runner import run as run_experiment
    from ._suite import run_suite, suites

    console = _console()
    if name_or_spec in suites():
        res = run_suite(name_or_spec, list(overrides), out, console=Console(stderr=True))
        for member, r in res.members:
            _print_summary(console, member, r.summary, r.run_dir)
        console.print(f"report: {res.report_path}")
        return
    r = run_experiment(name_or_spec, list(overrides), out, console=Console(stderr=True))
    _print_summary(console, r.summary.experiment, r.summary, r.run_dir)
    note = f" ({r.cells_skipped} cells reused from an earlier run)" if r.cells_skipped else ""
    console.print(f"report: {r.report_path}{note}")


def _console() -> Console:
    """stdout; when it is not a terminal (a log, CI), wide enough for a summary table."""
    c = Console()
    return c if c.is_terminal else Console(width=160)


def _print_summary(console: Console, name: str, summary, run_dir: Path) -> None:
    from ..report import console_cell

    header, rows = summary.table()
    if not header:
        return
    t = Table(title=f"{name} · {run_dir}")
    for h in header:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*[console_cell(v) for v in r])
    console.print(t)


@click.command()
@click.argument("run_dir", type=click.Path())
def report(run_dir: str) -> None:
    """Re-render RUN_DIR's summary.json and report.html from its stored results (nothing is recomputed).

    \b
    Example:
      myopia report runs/sequence-likelihood-1a2b3c4d5e
    """
    from ._runner import rerender
    from ._suite import write_suite_report

    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if not (path / "spec.toml").exists():
        members = [p.name for p in sorted(path.iterdir()) if (p / "spec.toml").is_file()]
        if not members:
            raise UserError(f"{run_dir} is not a run directory (no spec.toml / manifest.json)")
        out = write_suite_report(path.name.split("-")[0], path, members)
    else:
        out, _ = rerender(path)
    Console().print(f"report: {out}")
