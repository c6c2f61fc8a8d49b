"""``myopia report RUN --partial``: a look at an unfinished run, from the cells finished so far.

A long sweep (the full multi-token spec takes hours on a CPU) is worth reading before it ends.
This reads every finished cell the way a resume would (its own record, ``cells/ID/cell.json``,
and its files checked against their checksums), summarizes those cells with the experiment's own
``summarize`` and ``report``, and writes the result to ``RUN/partial/`` (``results/``,
``summary.json``, ``figures/``, ``report.html``, the report saying how many cells it covers).

It only reads the run's own files and writes nothing else, so it takes no lock: it may look at a
run that is going on in another process. The folder is replaced whole on every call, and a run
that finishes removes it: a finished run's results are the ones at the top of its folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .._errors import UserError
from ..experiments import Tables
from ._rundir import MANIFEST, PARTIAL, read_cell, read_manifest, read_sidecar, warn
from ._runner import finish, is_run_dir, resolve_spec, stored_spec, write_results
from ._specs import spec_hash


def partial_report(run_dir: str | Path) -> tuple[Path, int, int]:
    """``RUN/partial/report.html`` from the finished cells of a run; returns (its path, the
    cells it covers, the run's cells)."""
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not an experiment's run directory (no spec.toml / {MANIFEST})")
    manifest, _ = read_manifest(run_dir)
    if manifest is not None and isinstance(manifest.get("spec"), dict):
        exp, spec = stored_spec(manifest["spec"])
    else:
        exp, spec = resolve_spec(str(run_dir / "spec.toml"), check=False)
    h = spec_hash(spec)
    cells = exp.cells(spec)
    tables: Tables = {}
    done = 0
    for cell in cells:
        record = read_sidecar(run_dir, cell.id)
        if record is None or record.get("spec_hash") != h:
            continue  # not finished (or another spec's)
        read = read_cell(run_dir, cell.id, record)
        if read.fault:
            warn(f"cell {cell.id}: {read.fault}; left out of the partial report")
            continue
        done += 1
        for name, records in read.tables.items():
            tables.setdefault(name, []).extend(records)
    if done == 0:
        raise UserError(f"{run_dir} has no finished cell yet (0 of {len(cells)}); nothing to report")
    staging = run_dir / f".{PARTIAL}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_results(staging, {}, tables)
        meta = {"partial": f"{done} of {len(cells)} cells finished; the figures are from those alone"}
        try:
            finish(staging, exp, spec, tables, meta=meta)
        except UserError:
            raise
        except Exception as e:  # an experiment whose summary needs cells that have not finished yet
            raise UserError(
                f"{exp.name} cannot summarize {done} of its {len(cells)} cells yet "
                f"({type(e).__name__}: {e}); try again when more have finished"
            ) from None
        shutil.rmtree(run_dir / PARTIAL, ignore_errors=True)
        staging.rename(run_dir / PARTIAL)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return run_dir / PARTIAL / "report.html", done, len(cells)
