"""Suites: several experiments run one after another into one directory, one report.

``quick`` is the suite ``make demo`` runs: every experiment in a form that finishes in a
few minutes on two CPU cores (each experiment's ``quick`` overrides).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .._errors import UserError
from .._io import write_json_atomic, write_text_atomic
from .._toml import toml_literal
from ..experiments import EXPERIMENTS, get_experiment
from ..report import Report
from ._executors import Executor
from ._rundir import MANIFEST, RunLock
from ._runner import RunResult, add_sections, load_run, read_summary, rerender, resolve_spec, run_spec
from ._specs import spec_hash


def suites() -> dict[str, list[str]]:
    """``quick``: every registered experiment that declares ``quick`` overrides, in ``quick_order``."""
    quick = sorted((c for c in EXPERIMENTS.values() if c.quick is not None), key=lambda c: (c.quick_order, c.name))
    return {"quick": [c.name for c in quick]}


@dataclass
class SuiteResult:
    run_dir: Path
    members: list[tuple[str, RunResult]]
    report_path: Path


def _member_overrides(name: str, overrides: list[str]) -> list[str]:
    """Overrides for one member: ``member.field=v`` for that member, ``field=v`` for all that have it."""
    exp = get_experiment(name)
    out = []
    for o in overrides:
        key = o.split("=", 1)[0]
        head, _, rest = key.partition(".")
        if head in _all_members() and rest:
            if head == name:
                out.append(o[len(head) + 1 :])
        elif key.split(".")[0] in exp.spec_cls.model_fields:
            out.append(o)
    return out


def _all_members() -> set[str]:
    return {m for members in suites().values() for m in members}


def run_suite(
    name: str, overrides: list[str], out: str | None, console=None, executor: Executor | None = None
) -> SuiteResult:
    """Run (or resume) every member of a suite into one folder, one after another (each member's
    cells through ``executor``: in parallel with ``--jobs``/``--ray``), and one report."""
    members = suites()[name]
    for o in overrides:
        key = o.split("=", 1)[0]
        head = key.split(".")[0]
        if head not in _all_members() and not any(
            head in get_experiment(m).spec_cls.model_fields for m in members
        ):
            raise UserError(f"--set {key}: no experiment in suite {name!r} has that field")
    resolved = []
    for m in members:
        exp = get_experiment(m)
        quick = [f"{k}={toml_literal(v)}" for k, v in (exp.quick or {}).items()]
        resolved.append(resolve_spec(m, quick + _member_overrides(m, overrides)))
    digest = hashlib.sha256("".join(spec_hash(s) for _, s in resolved).encode()).hexdigest()[:10]
    run_dir = Path(out) if out else Path("runs") / f"{name}-{digest}"
    results = []
    with RunLock(run_dir, f"myopia run {name}"):
        for exp, spec in resolved:
            results.append((exp.name, run_spec(exp, spec, run_dir / exp.name, console, executor)))
        report_path = write_suite_report(name, run_dir, [m for m, _ in results])
        write_json_atomic(run_dir / "summary.json", {m: r.summary.model_dump(mode="json") for m, r in results})
    return SuiteResult(run_dir, results, report_path)


def rerender_suite(run_dir: Path) -> Path:
    """``myopia report`` on a suite's folder: each member re-rendered from its verified cell
    files, then the suite's report and summary.json."""
    members = [p.name for p in sorted(run_dir.iterdir()) if (p / "spec.toml").is_file() or (p / MANIFEST).is_file()]
    if not members:
        raise UserError(f"{run_dir} is not a run directory (no spec.toml / manifest.json)")
    with RunLock(run_dir, "myopia report"):
        summaries = {m: rerender(run_dir / m)[1].model_dump(mode="json") for m in members}
        path = write_suite_report(run_dir.name.split("-")[0], run_dir, members)
        write_json_atomic(run_dir / "summary.json", summaries)
    return path


def write_suite_report(name: str, run_dir: Path, members: list[str]) -> Path:
    report = Report(title=f"myopia · {name} suite", meta={"members": ", ".join(members)})
    rows = []
    for m in members:
        exp, spec, tables = load_run(run_dir / m)
        summary = read_summary(run_dir / m, exp)
        header, member_rows = summary.table()
        rows.append((m, header, member_rows))
        add_sections(report, exp, spec, tables, summary)
    if rows:
        # the summary first: each member's own summary table, in order
        first = report.section("Summary")
        report.sections.insert(0, report.sections.pop())
        for m, header, member_rows in rows:
            first.table(header, member_rows, caption=m)
    path = run_dir / "report.html"
    write_text_atomic(path, report.render())
    return path


