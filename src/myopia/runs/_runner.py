"""One run: resolve a spec, run its unfinished cells (each saved the moment it finishes), merge
their tables, write summary.json and report.html (the layout is in :mod:`myopia.runs`).

Every file is written atomically, and one run at a time writes a run directory (its lock). A
run started again with the same spec and directory skips the cells that finished and whose
files still match their checksums; a cell whose files are missing or damaged is recomputed, with
one warning line (:mod:`myopia.runs._rundir`). An executor runs the cells (one after another
here, or in worker processes, or on Ray: :mod:`myopia.runs._executors`); this module alone
writes the manifest.
"""

from __future__ import annotations

import base64
import os
import platform
import re
import shutil
import socket
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .._errors import RunFailed, UserError
from .._io import write_bytes_atomic, write_json_atomic, write_parquet_atomic, write_text_atomic
from .._toml import to_toml
from ..experiments import Cell, Experiment, Headline, Spec, Tables, get_experiment
from ..report import Report, Table, fmt
from ._executors import CellJob, Event, Executor, Failed, Finished, Progressed, SerialExecutor, Started, error_line
from ._progress import Progress
from ._rundir import (
    MANIFEST,
    PARTIAL,
    RunLock,
    adopt_sidecar,
    check_cells,
    file_record,
    now,
    read_cell,
    read_manifest,
    read_sidecar,
    rebuild_manifest,
    warn,
)
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


def _versions() -> dict:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _open_manifest(run_dir: Path, exp: Experiment, spec: Spec, cells: list[Cell]) -> dict:
    """The run's manifest: read (rebuilt from the cells' records if it is damaged), checked to be
    this spec's, and stamped for this session."""
    h = spec_hash(spec)
    manifest, fault = read_manifest(run_dir)
    if manifest is None:
        manifest = rebuild_manifest(run_dir, exp.name, h, cells)
        if fault != "missing" or any(e["status"] == "done" for e in manifest["cells"].values()):
            warn(f"{run_dir / MANIFEST} is {fault}; rebuilt from the cells' own records (cells/*/cell.json)")
    elif manifest.get("spec_hash") != h:
        hint = ""
        if manifest.get("spec"):
            hint = f" (if {run_dir / 'spec.toml'} was damaged, `myopia report {run_dir}` restores it)"
        raise UserError(
            f"{run_dir} holds a run of a different spec (hash {manifest.get('spec_hash')}, "
            f"this one {h}); pass another --out, or remove that directory{hint}"
        )
    manifest.update(
        seed=spec.seed,
        host=socket.gethostname(),
        python=sys.version.split()[0],
        platform=platform.platform(),
        packages=_versions(),
        command=" ".join(sys.argv),
        started=now(),
        ended=None,
        status="running",
    )
    manifest["spec"] = spec.model_dump(mode="json")
    manifest.setdefault("files", {})
    return manifest


def run(
    name_or_path: str,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    console=None,
    executor: Executor | None = None,
) -> RunResult:
    """Run (or resume) an experiment; returns where its results and report are. ``executor``
    (default: one cell after another, here) runs the cells: :class:`PoolExecutor` for ``--jobs``."""
    try:
        exp, spec = resolve_spec(name_or_path, overrides)
    except UserError as e:
        raise UserError(f"{e}{_spec_file_hint(name_or_path)}") from None
    return run_spec(exp, spec, out, console, executor)


def _spec_file_hint(path: str) -> str:
    """A run's own spec.toml that cannot be read may be damaged: its manifest holds the spec."""
    p = Path(path)
    if p.name == "spec.toml" and (p.parent / MANIFEST).is_file():
        return f" (if it was damaged, `myopia report {p.parent}` restores it from its manifest.json)"
    return ""


def run_spec(exp: Experiment, spec: Spec, out=None, console=None, executor: Executor | None = None) -> RunResult:
    """Run (or resume) an experiment whose spec is already resolved."""
    run_dir = Path(out) if out else default_run_dir(spec)
    with RunLock(run_dir, f"myopia run {exp.name}"):
        return _run_locked(exp, spec, run_dir, console, executor or SerialExecutor())


def _run_locked(exp: Experiment, spec: Spec, run_dir: Path, console, executor: Executor) -> RunResult:
    cells = sorted(exp.cells(spec), key=lambda c: (c.model or "", 0))
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"experiment {exp.name} produced duplicate cell ids")
    manifest = _open_manifest(run_dir, exp, spec, cells)
    h = manifest["spec_hash"]
    checked = check_cells(run_dir, manifest, cells, h)
    for cell_id, fault in checked.damaged.items():
        warn(f"cell {cell_id}: {fault}; recomputing it")
        manifest["cells"][cell_id] = {"model": manifest["cells"][cell_id].get("model"), "status": "pending"}
    manifest["files"]["spec.toml"] = write_text_atomic(run_dir / "spec.toml", _spec_text(spec)).record()
    write_json_atomic(run_dir / MANIFEST, manifest)

    todo = [c for c in cells if c.id not in checked.tables]
    jobs = [CellJob(run_dir.resolve(), exp.name, spec, h, c, executor.placement) for c in todo]
    book = _Bookkeeper(run_dir, manifest, parallel=executor.workers > 1)
    workers = min(executor.workers, max(1, len(todo)))
    done = len(cells) - len(todo)
    with Progress(console=console, total=len(cells), done=done, title=exp.name, workers=workers) as bar:
        book.bar = bar
        try:
            executor.run(jobs, book.on_event)
        except BaseException as e:
            book.stopped(e)
            raise
    if book.failed:
        manifest.update(status="failed", ended=now())
        write_json_atomic(run_dir / MANIFEST, manifest)
        raise RunFailed(_failures(run_dir, book.failed, len(cells)))

    tables = merge_cells(run_dir, manifest, cells, checked.tables)
    summary = finish(run_dir, exp, spec, tables)
    manifest.update(status="done", ended=now())
    write_json_atomic(run_dir / MANIFEST, manifest)
    shutil.rmtree(run_dir / PARTIAL, ignore_errors=True)  # `myopia report --partial`'s look, now out of date
    return RunResult(run_dir, summary, run_dir / "report.html", len(todo), len(cells) - len(todo))


def _spec_text(spec: Spec) -> str:
    return to_toml(spec.model_dump(mode="json"))


class _Bookkeeper:
    """Keeps the manifest and the progress display up to date as cells start, advance, finish
    or fail (the one writer of the manifest, whichever executor runs the cells)."""

    def __init__(self, run_dir: Path, manifest: dict, parallel: bool):
        self.run_dir, self.manifest, self.parallel = run_dir, manifest, parallel
        self.bar: Progress | None = None
        self.failed: dict[str, str] = {}

    def _save(self) -> None:
        write_json_atomic(self.run_dir / MANIFEST, self.manifest)

    def on_event(self, ev: Event) -> None:
        if isinstance(ev, Progressed):
            self.bar.cell_progress(ev.advance, ev.total, ev.note, worker=ev.worker)
            return
        entry = self.manifest["cells"][ev.cell_id]
        if isinstance(ev, Started):
            for k in ("error", "traceback", "finished", "seconds", "tables", "files"):
                entry.pop(k, None)
            entry.update(status="running", started=now())
            if self.parallel:
                entry["worker"] = ev.worker + 1
            self._save()
            self.bar.start_cell(ev.cell_id, ev.worker)
        elif isinstance(ev, Finished):
            adopt_sidecar(entry, ev.record)
            self._save()
            self.bar.finish_cell(ev.worker)
        elif isinstance(ev, Failed):
            entry.update(status="failed", error=ev.error, traceback=ev.traceback)
            self.failed[ev.cell_id] = ev.error
            self._save()
            self.bar.fail_cell(ev.error, ev.worker)

    def stopped(self, e: BaseException) -> None:
        """The run stops on an exception (Ctrl-C, or a cell's error in a serial run)."""
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        for entry in self.manifest["cells"].values():
            if entry["status"] == "running":
                entry["status"] = status
                if status == "failed":
                    entry["error"] = error_line(e)
        self.manifest["status"] = status
        self._save()


def _failures(run_dir: Path, failed: dict[str, str], total: int) -> str:
    first = "; ".join(f"{cid}: {err}" for cid, err in list(failed.items())[:3])
    more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
    return (
        f"{len(failed)} of {total} cells failed ({first}{more}); their errors and tracebacks are in "
        f"{run_dir / MANIFEST}; run the same command again to retry only them"
    )


def merge_cells(run_dir: Path, manifest: dict, cells: list[Cell], verified: dict[str, Tables]) -> Tables:
    """All cells' tables, concatenated in cell order, from the verified files (``verified``
    holds those already read); ``results/*`` rewritten from them."""
    tables: Tables = {}
    for cell in cells:
        got = verified.get(cell.id)
        if got is None:
            read = read_cell(run_dir, cell.id, manifest["cells"][cell.id])
            if read.fault:
                raise RuntimeError(f"cell {cell.id} was just written and is already damaged: {read.fault}")
            got = read.tables
        for name, records in got.items():
            tables.setdefault(name, []).extend(records)
    write_results(run_dir, manifest, tables)
    return tables


def write_results(run_dir: Path, manifest: dict, tables: Tables) -> None:
    """``results/*.parquet`` from the merged tables; a file that differed from its recorded
    checksum is named (it was damaged; it is rebuilt either way)."""
    files = manifest.setdefault("files", {})
    for name, records in tables.items():
        rel = f"results/{name}.parquet"
        if rel in files and file_record(run_dir / rel) != files[rel]:
            warn(f"{run_dir / rel} was damaged or missing; rebuilt from the verified cell files")
        files[rel] = write_parquet_atomic(run_dir / rel, records).record()


def finish(run_dir: Path, exp: Experiment, spec: Spec, tables: Tables, meta: dict | None = None) -> Headline:
    """summary.json and report.html, from the merged tables alone (``meta``: more header lines)."""
    summary = exp.summarize(tables, spec).model_copy(update={"experiment": exp.name, "spec_hash": spec_hash(spec)})
    write_json_atomic(run_dir / "summary.json", summary.model_dump(mode="json"))
    report = build_report(exp, spec, tables, summary)
    report.meta.update(meta or {})
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
    section.code(_spec_text(spec), caption="The resolved spec (rerun with `myopia run spec.toml`):")


def is_run_dir(run_dir: Path) -> bool:
    return (run_dir / "spec.toml").is_file() or (run_dir / MANIFEST).is_file()


def load_run(run_dir: str | Path) -> tuple[Experiment, Spec, Tables]:
    """The experiment, spec and merged tables of a finished run, every cell file verified
    against its checksum. A damaged cell is one line naming it and the command that recomputes
    it; a damaged manifest, spec.toml or cell record is rebuilt from the others (with a warning)."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not a run directory (no spec.toml / manifest.json)")
    with RunLock(run_dir, "myopia report"):
        exp, spec, tables, _ = _load_locked(run_dir)
    return exp, spec, tables


def _load_locked(run_dir: Path) -> tuple[Experiment, Spec, Tables, dict]:
    manifest, fault = read_manifest(run_dir)
    changed = False
    if manifest is not None and manifest.get("spec") is not None:
        exp, spec, changed = _spec_from_manifest(run_dir, manifest)
    else:
        exp, spec = resolve_spec(str(run_dir / "spec.toml"), check=False)
    cells = exp.cells(spec)
    if manifest is None:
        manifest = _rebuild_for_report(run_dir, exp, spec, cells, fault)
        changed = True
    elif manifest.get("spec") is None and manifest.get("spec_hash") != spec_hash(spec):
        raise UserError(
            f"{run_dir / 'spec.toml'} does not match {run_dir / MANIFEST} (spec hash {spec_hash(spec)}, "
            f"the manifest's {manifest.get('spec_hash')}): it was changed or damaged"
        )
    checked = check_cells(run_dir, manifest, cells, manifest["spec_hash"])
    redo = f"`myopia run {run_dir / 'spec.toml'} --out {run_dir}`"
    if checked.damaged:
        listed = "; ".join(f"{cid} ({fault})" for cid, fault in checked.damaged.items())
        raise UserError(f"{run_dir} has {len(checked.damaged)} damaged cell(s): {listed}; recompute them with {redo}")
    if checked.pending:
        raise UserError(
            f"{run_dir} is unfinished ({len(checked.pending)} of {len(cells)} cells to go); finish it with {redo}"
        )
    if changed or checked.changed:
        write_json_atomic(run_dir / MANIFEST, manifest)
    tables: Tables = {}
    for cell in cells:
        for name, records in checked.tables[cell.id].items():
            tables.setdefault(name, []).extend(records)
    return exp, spec, tables, manifest


def _rebuild_for_report(run_dir: Path, exp: Experiment, spec: Spec, cells: list[Cell], fault: str) -> dict:
    """The manifest rebuilt from the cells' records, for a spec read from spec.toml: records of
    another spec mean spec.toml is what changed."""
    h = spec_hash(spec)
    others = {s.get("spec_hash") for c in cells if (s := read_sidecar(run_dir, c.id))} - {h}
    if others:
        raise UserError(
            f"{run_dir / MANIFEST} is {fault}, and {run_dir / 'spec.toml'} does not match the cells' records "
            f"(spec hash {h}, theirs {', '.join(sorted(map(str, others)))}): it was changed or damaged"
        )
    manifest = rebuild_manifest(run_dir, exp.name, h, cells)
    warn(f"{run_dir / MANIFEST} is {fault}; rebuilt from the cells' own records (cells/*/cell.json)")
    manifest["spec"] = spec.model_dump(mode="json")
    manifest["files"] = {"spec.toml": file_record(run_dir / "spec.toml")}
    return manifest


def stored_spec(stored: dict) -> tuple[Experiment, Spec]:
    """The experiment and validated spec a manifest records (its ``spec`` entry)."""
    exp = get_experiment(str(stored.get("experiment", "")))
    return exp, validate(exp.spec_cls, stored)


def _spec_from_manifest(run_dir: Path, manifest: dict) -> tuple[Experiment, Spec, bool]:
    """The run's spec as its manifest records it; spec.toml rewritten from it if the file is
    missing or differs from its recorded checksum. (Whether it was rewritten is returned.)"""
    exp, spec = stored_spec(manifest["spec"])
    files = manifest.setdefault("files", {})
    path = run_dir / "spec.toml"
    found = file_record(path)
    if found is not None and found == files.get("spec.toml"):
        return exp, spec, False
    warn(f"{path} was {'missing' if found is None else 'damaged'}; rewritten from {MANIFEST}")
    files["spec.toml"] = write_text_atomic(path, _spec_text(spec)).record()
    return exp, spec, True


def rerender(run_dir: str | Path) -> tuple[Path, Headline]:
    """``myopia report``: results/, summary.json and report.html again, from the verified cell
    files only (no model is loaded, nothing is recomputed)."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not a run directory (no spec.toml / manifest.json)")
    with RunLock(run_dir, "myopia report"):
        exp, spec, tables, manifest = _load_locked(run_dir)
        write_results(run_dir, manifest, tables)
        summary = finish(run_dir, exp, spec, tables)
        write_json_atomic(run_dir / MANIFEST, manifest)
    return run_dir / "report.html", summary
