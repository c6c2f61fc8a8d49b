"""One run: resolve a spec, run its unfinished cells (each saved the moment it finishes), merge
their tables, write summary.json and report.html (the layout is in :mod:`myopia.runs`).

Every file is written atomically. A run started again with the same spec and directory skips
the cells whose status is ``done`` and whose files are present.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .._errors import UserError
from .._io import read_parquet, write_bytes_atomic, write_json_atomic, write_parquet_atomic, write_text_atomic
from .._toml import to_toml
from ..experiments import Cell, CellContext, Experiment, Headline, Spec, Tables, get_experiment
from ..models import load_model
from ..report import Report, Table, fmt
from ._progress import Progress
from ._specs import apply_overrides, load_toml, spec_hash, validate

_PACKAGES = ("myopia", "torch", "transformers", "tokenizers", "gguf", "numpy", "pyarrow", "pydantic")


@dataclass
class RunResult:
    run_dir: Path
    summary: Headline
    report_path: Path
    cells_run: int
    cells_skipped: int


def resolve_spec(
    name_or_path: str, overrides: list[str] | None = None, check: bool = True
) -> tuple[Experiment, Spec]:
    """An experiment and its validated spec, from a registered name or a TOML file."""
    overrides = list(overrides or [])
    if name_or_path.endswith(".toml") or os.path.sep in name_or_path:
        data = load_toml(name_or_path)
        if "experiment" not in data:
            raise UserError(f"{name_or_path}: missing field 'experiment' (the registered experiment name)")
        exp = get_experiment(str(data["experiment"]))
    else:
        exp = get_experiment(name_or_path)
        data = {"experiment": exp.name}
    data = apply_overrides(data, overrides, exp.spec_cls)
    spec = validate(exp.spec_cls, data)
    if check:
        exp.check(spec)
    return exp, spec


def default_run_dir(spec: Spec) -> Path:
    return Path("runs") / f"{spec.experiment}-{spec_hash(spec)}"


class _ModelPool:
    """Keeps the most recently used model loaded; cells are ordered by model."""

    def __init__(self):
        self._name, self._model = None, None

    def get(self, spec: str):
        if spec != self._name:
            self.close()
            self._model, self._name = None, None  # a failed load leaves nothing stale behind
            self._model, self._name = load_model(spec), spec
        return self._model

    def close(self):
        if self._model is not None:
            self._model.close()


def _versions() -> dict:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _open_manifest(run_dir: Path, exp: Experiment, spec: Spec, cells: list[Cell]) -> dict:
    path = run_dir / "manifest.json"
    h = spec_hash(spec)
    if path.exists():
        manifest = json.loads(path.read_text())
        if manifest.get("spec_hash") != h:
            raise UserError(
                f"{run_dir} holds a run of a different spec (hash {manifest.get('spec_hash')}, "
                f"this one {h}); pass another --out, or remove that directory"
            )
    else:
        manifest = {"experiment": exp.name, "spec_hash": h, "created": _now(), "cells": {}}
    manifest.update(
        seed=spec.seed,
        host=socket.gethostname(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        packages=_versions(),
        command=" ".join(sys.argv),
        started=_now(),
        ended=None,
        status="running",
    )
    for c in cells:
        manifest["cells"].setdefault(c.id, {"model": c.model, "status": "pending"})
    return manifest


def _cell_done(run_dir: Path, manifest: dict, cell: Cell) -> bool:
    entry = manifest["cells"].get(cell.id, {})
    if entry.get("status") != "done":
        return False
    return all((run_dir / "cells" / cell.id / f"{t}.parquet").is_file() for t in entry.get("tables", []))


def run(
    name_or_path: str,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    console=None,
) -> RunResult:
    """Run (or resume) an experiment; returns where its results and report are."""
    exp, spec = resolve_spec(name_or_path, overrides)
    return run_spec(exp, spec, out, console)


def run_spec(exp: Experiment, spec: Spec, out=None, console=None) -> RunResult:
    """Run (or resume) an experiment whose spec is already resolved."""
    run_dir = Path(out) if out else default_run_dir(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    cells = sorted(exp.cells(spec), key=lambda c: (c.model or "", 0))
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"experiment {exp.name} produced duplicate cell ids")
    write_text_atomic(run_dir / "spec.toml", to_toml(spec.model_dump(mode="json")))
    manifest = _open_manifest(run_dir, exp, spec, cells)
    write_json_atomic(run_dir / "manifest.json", manifest)

    todo = [c for c in cells if not _cell_done(run_dir, manifest, c)]
    pool = _ModelPool()
    with Progress(console=console, total=len(cells), done=len(cells) - len(todo), title=exp.name) as bar:
        try:
            for cell in todo:
                bar.start_cell(cell.id)
                t0 = time.time()
                entry = manifest["cells"][cell.id]
                entry.update(status="running", started=_now())
                write_json_atomic(run_dir / "manifest.json", manifest)
                work = run_dir / "work" / cell.id
                tables = exp.run_cell(cell, spec, CellContext(pool, bar.cell_progress, work))
                for name, records in tables.items():
                    write_parquet_atomic(run_dir / "cells" / cell.id / f"{name}.parquet", records)
                entry.update(
                    status="done", finished=_now(), seconds=round(time.time() - t0, 2), tables=sorted(tables)
                )
                write_json_atomic(run_dir / "manifest.json", manifest)
                bar.finish_cell()
        except BaseException as e:
            for c in todo:
                if manifest["cells"][c.id]["status"] == "running":
                    manifest["cells"][c.id]["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            manifest["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            write_json_atomic(run_dir / "manifest.json", manifest)
            raise
        finally:
            pool.close()

    tables = merge_cells(run_dir, manifest, cells)
    summary = finish(run_dir, exp, spec, tables)
    manifest.update(status="done", ended=_now())
    write_json_atomic(run_dir / "manifest.json", manifest)
    return RunResult(run_dir, summary, run_dir / "report.html", len(todo), len(cells) - len(todo))


def _read_cells(run_dir: Path, manifest: dict, cells: list[Cell]) -> Tables:
    """Every finished cell's tables, concatenated in cell order."""
    tables: Tables = {}
    for cell in cells:
        for name in manifest["cells"][cell.id].get("tables", []):
            tables.setdefault(name, []).extend(read_parquet(run_dir / "cells" / cell.id / f"{name}.parquet"))
    return tables


def merge_cells(run_dir: Path, manifest: dict, cells: list[Cell]) -> Tables:
    tables = _read_cells(run_dir, manifest, cells)
    for name, records in tables.items():
        write_parquet_atomic(run_dir / "results" / f"{name}.parquet", records)
    return tables


def finish(run_dir: Path, exp: Experiment, spec: Spec, tables: Tables) -> Headline:
    """summary.json and report.html, from the merged tables alone."""
    summary = exp.summarize(tables, spec).model_copy(update={"experiment": exp.name, "spec_hash": spec_hash(spec)})
    write_json_atomic(run_dir / "summary.json", summary.model_dump(mode="json"))
    report = build_report(exp, spec, tables, summary)
    write_figures(report, run_dir / "figures")
    write_text_atomic(run_dir / "report.html", report.render())
    return summary


def read_summary(run_dir: Path, exp: Experiment) -> Headline:
    """A finished run's summary.json, as the experiment's typed headline."""
    return exp.summary_cls.model_validate_json((run_dir / "summary.json").read_text())


def write_figures(report: Report, folder: Path) -> None:
    """Each embedded figure also as a PNG file, numbered in report order."""
    n = 0
    for section in report.sections:
        for kind, block in section.blocks:
            if kind == "figure":
                n += 1
                slug = re.sub(r"[^a-z0-9]+", "-", block.caption.lower())[:60].strip("-") or "figure"
                write_bytes_atomic(folder / f"{n:02d}-{slug}.png", base64.b64decode(block.png_base64))


def build_report(exp: Experiment, spec: Spec, tables: Tables, summary: Headline) -> Report:
    header, rows = summary.table()
    report = Report(title=f"myopia · {exp.name}", meta={"spec": spec_hash(spec)})
    if header:
        report.summary = Table(header, [[fmt(v) for v in r] for r in rows])
    add_sections(report, exp, spec, tables, summary)
    return report


def add_sections(report: Report, exp: Experiment, spec: Spec, tables: Tables, summary: Headline) -> None:
    section = report.section(exp.name)
    exp.report(tables, spec, summary, section)
    section.code(to_toml(spec.model_dump(mode="json")), caption="The resolved spec (rerun with `myopia run spec.toml`):")


def load_run(run_dir: str | Path) -> tuple[Experiment, Spec, Tables]:
    """The experiment, spec and merged tables of a finished (or partly finished) run."""
    run_dir = Path(run_dir)
    if not (run_dir / "spec.toml").is_file() or not (run_dir / "manifest.json").is_file():
        raise UserError(f"{run_dir} is not a run directory (no spec.toml / manifest.json)")
    exp, spec = resolve_spec(str(run_dir / "spec.toml"), check=False)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    cells = exp.cells(spec)
    missing = [c.id for c in cells if not _cell_done(run_dir, manifest, c)]
    if missing:
        raise UserError(
            f"{run_dir} is unfinished ({len(missing)} of {len(cells)} cells to go); "
            f"finish it with `myopia run {run_dir / 'spec.toml'} --out {run_dir}`"
        )
    return exp, spec, _read_cells(run_dir, manifest, cells)


def rerender(run_dir: str | Path) -> tuple[Path, Headline]:
    """``myopia report``: summary.json and report.html again, from stored results only."""
    exp, spec, tables = load_run(run_dir)
    summary = finish(Path(run_dir), exp, spec, tables)
    return Path(run_dir) / "report.html", summary
