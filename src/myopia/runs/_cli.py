"""``myopia run`` and ``myopia report``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .._errors import UserError


@click.command()
@click.argument("name_or_spec")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec field by dotted path; VALUE is read as TOML (3, true, \"x\", [\"a\", \"b\"]), "
    "else as a string. Repeatable.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Run directory (default: runs/NAME-SPECHASH). Running again with the same spec and directory resumes.",
)
@click.option(
    "--jobs",
    type=int,
    default=None,
    metavar="N",
    help="Run independent cells in N worker processes (one torch thread each; one GPU each on a machine "
    "with several). Default: one after another, in this process.",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ADDRESS]",
    help="Run the cells on a Ray cluster whose workers share the run directory's filesystem: ADDRESS "
    "(HOST:PORT of its head node, or auto), or a local Ray cluster without one (put --ray last, or write "
    "--ray=ADDRESS). --jobs N caps the number of workers.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar="DEVICE",
    help="Where pretrained models run: auto (a GPU when torch sees one), cpu, cuda, cuda:N. A run option, not a "
    "spec field: the same spec lands in the same run directory on any machine; each cell's record says where it ran.",
)
@click.option(
    "--dtype",
    default=None,
    metavar="DTYPE",
    help="Precision of pretrained models: float32 (default), bfloat16, float16. Experiments that take gradients "
    "(gradient-horizon, head-roles, future-lens) keep float32.",
)
def run(
    name_or_spec: str,
    overrides: tuple[str, ...],
    out: str | None,
    jobs: int | None,
    ray_address: str | None,
    device: str,
    dtype: str | None,
) -> None:
    """Run a registered experiment (by name, with its default spec), a suite, or a TOML spec.

    \b
    Examples:
      myopia run quick                       # the quick suite, bundled models
      myopia run sequence-likelihood --set samples=128 --set 'models=["gemma-3-270m"]'
      myopia run examples/sequence_likelihood.toml --out runs/mine
      myopia run quick --jobs 2              # two cells at a time
      myopia run myopia-gap --ray            # on a local Ray cluster (--ray HOST:PORT for one that runs)
      myopia run forced-choice --device cuda --dtype bfloat16
    NAME_OR_SPEC is a registered experiment (sequence-likelihood, …), the suite
    `quick`, or a TOML file; an unknown name lists the known ones.
    """
    from ._runner import run as run_experiment
    from ._suite import run_suite, suites

    console = _console()
    executor = make_executor(jobs, ray_address, placement(device, dtype, remote=ray_address is not None))
    try:
        if name_or_spec in suites():
            res = run_suite(name_or_spec, list(overrides), out, console=Console(stderr=True), executor=executor)
            for member, r in res.members:
                _print_summary(console, member, r.summary, r.run_dir)
            console.print(f"report: {res.report_path}")
            return
        r = run_experiment(name_or_spec, list(overrides), out, console=Console(stderr=True), executor=executor)
    finally:
        executor.close()
    _print_summary(console, r.summary.experiment, r.summary, r.run_dir)
    note = f" ({r.cells_skipped} cells reused from an earlier run)" if r.cells_skipped else ""
    console.print(f"report: {r.report_path}{note}")


def placement(device: str, dtype: str | None, remote: bool = False):
    """The run's :class:`~myopia.models.Placement`, checked here (one line, exit 2) unless the cells
    run on other machines (Ray), whose GPUs this one cannot see."""
    from ..models import Placement

    p = Placement(device, dtype)
    return p if remote else p.check()


def make_executor(jobs: int | None, ray_address: str | None, placement=None):
    """What runs the cells: here one after another (no option, ``--jobs 1``), a pool of worker
    processes (``--jobs N``), or a Ray cluster (``--ray``); their models placed by ``placement``."""
    from ._executors import PoolExecutor, SerialExecutor, check_jobs

    if jobs is not None:
        check_jobs(jobs)
    if ray_address is not None:
        from ._ray import RayExecutor

        return RayExecutor(ray_address, max_workers=jobs, placement=placement)
    if jobs is None or jobs == 1:
        return SerialExecutor(placement)
    return PoolExecutor(jobs, placement)


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
@click.option(
    "--partial",
    is_flag=True,
    help="An unfinished run (one experiment's, even one going on): RUN_DIR/partial/ from the cells finished so far.",
)
def report(run_dir: str, partial: bool) -> None:
    """Rebuild RUN_DIR's results/, summary.json and report.html from its cell files, each checked against
    its checksum (nothing is recomputed; a damaged cell is named, with the command that recomputes it).

    \b
    Examples:
      myopia report runs/sequence-likelihood-1a2b3c4d5e
      myopia report runs/multi-token-dd048b8294 --partial   # while it runs: RUN/partial/report.html
    """
    from ._partial import partial_report
    from ._runner import rerender
    from ._suite import rerender_suite

    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if partial:
        out, done, total = partial_report(path)
        Console().print(f"partial report ({done} of {total} cells): {out}", soft_wrap=True)
        return
    if (path / "spec.toml").exists() or (path / "manifest.json").exists():
        out, _ = rerender(path)
    else:
        out = rerender_suite(path)
    Console().print(f"report: {out}")
