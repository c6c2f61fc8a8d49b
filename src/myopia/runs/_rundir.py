"""A run directory's integrity: its lock, its manifest, and the checks that keep a damaged file
from being read blindly.

- ``RUN/.lock``: one writer at a time (:class:`RunLock`, an ``flock`` the kernel drops when its
  process dies, ``kill -9`` included).
- ``manifest.json``: the run's index. Each finished cell's entry records the sha256 and size of
  every file the cell wrote; the run also records those of ``spec.toml`` and ``results/*``, and
  the resolved spec itself.
- ``cells/ID/cell.json``: the same entry, written by whoever ran the cell (after its tables,
  before the manifest learns of it), so a cell finished just before a crash is not lost, and a
  damaged manifest is rebuilt from these records. Only the parent process writes the manifest.

:func:`read_cell` is the one way a finished cell's tables are read: each file read once, hashed,
and parsed from the same bytes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .._errors import UserError
from .._io import parse_parquet, write_json_atomic
from ..experiments import Cell, Tables

MANIFEST = "manifest.json"
PARTIAL = "partial"  # `myopia report --partial`: a look at an unfinished run (removed when it finishes)
SIDECAR = "cell.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def warn(message: str) -> None:
    print(f"myopia: {message}", file=sys.stderr, flush=True)


class RunLock:
    """Exclusive use of a run directory while a run (or ``myopia report``) writes it.

    A second writer is refused with one line naming the holder (pid, host, since when, what it
    runs). The lock is the kernel's (``flock`` on ``RUN/.lock``), so a process that dies, even
    by ``kill -9``, holds nothing; the file itself stays, harmless.
    """

    def __init__(self, run_dir: Path, what: str = "run"):
        self.path = Path(run_dir) / ".lock"
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{self.path.parent} is being written by {holder}; wait for it to end, or pass another --out"
            ) from None
        except OSError as e:  # a filesystem without locks: go on, but say so
            warn(f"cannot lock {self.path} ({e.strerror}); make sure no other run writes {self.path.parent}")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now()} ({self.what})\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the lock
            self._fd = None


# -- manifest --------------------------------------------------------------------------------
def read_manifest(run_dir: Path) -> tuple[dict | None, str | None]:
    """(manifest, None), or (None, what is wrong with it): missing, or damaged."""
    path = run_dir / MANIFEST
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "damaged (not valid JSON)"
    if not isinstance(data, dict) or not isinstance(data.get("cells"), dict):
        return None, "damaged (not a manifest)"
    return data, None


def read_sidecar(run_dir: Path, cell_id: str) -> dict | None:
    """A cell's own record (``cells/ID/cell.json``), if it is whole."""
    try:
        data = json.loads((run_dir / "cells" / cell_id / SIDECAR).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("status") != "done" or not isinstance(data.get("files"), dict):
        return None
    return data


def sidecar_record(cell_id: str, spec_hash: str, entry: dict) -> dict:
    """What ``cells/ID/cell.json`` holds: the cell's manifest entry, its id and the spec's hash."""
    keep = ("status", "started", "finished", "seconds", "tables", "files")
    return {"cell": cell_id, "spec_hash": spec_hash, **{k: entry[k] for k in keep if k in entry}}


def write_sidecar(run_dir: Path, cell_id: str, spec_hash: str, entry: dict) -> None:
    write_json_atomic(run_dir / "cells" / cell_id / SIDECAR, sidecar_record(cell_id, spec_hash, entry))


def adopt_sidecar(entry: dict, sidecar: dict) -> None:
    """A manifest entry takes a finished cell's record from its sidecar."""
    for k in ("error", "traceback"):
        entry.pop(k, None)
    entry.update({k: v for k, v in sidecar.items() if k not in ("cell", "spec_hash")})


# -- a finished cell's files -----------------------------------------------------------------
@dataclass
class CellFiles:
    """A finished cell's tables as read from disk, or what is wrong with its files."""

    tables: Tables = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # file name -> {"sha256", "bytes"} of what was read
    fault: str | None = None


def read_cell(run_dir: Path, cell_id: str, entry: dict) -> CellFiles:
    """Read, hash and parse every table file of a finished cell; its fault if any is missing,
    differs from the checksum recorded in ``entry`` or is not Parquet. (An entry from before
    checksums has none: its files are taken if they parse.)"""
    out = CellFiles()
    recorded = entry.get("files") or {}
    for name in entry.get("tables", []):
        rel = f"cells/{cell_id}/{name}.parquet"
        try:
            data = (run_dir / rel).read_bytes()
        except FileNotFoundError:
            return CellFiles(fault=f"{rel} is missing")
        except OSError as e:
            return CellFiles(fault=f"{rel} cannot be read ({e.strerror})")
        digest = hashlib.sha256(data).hexdigest()
        want = recorded.get(f"{name}.parquet")
        if want is not None and (want.get("bytes") != len(data) or want.get("sha256") != digest):
            return CellFiles(fault=f"{rel} is damaged (sha256 mismatch)")
        try:
            out.tables[name] = parse_parquet(data)
        except Exception as e:  # pyarrow's errors for bytes that are no Parquet file
            return CellFiles(fault=f"{rel} is damaged (not a Parquet file: {type(e).__name__})")
        out.files[f"{name}.parquet"] = {"sha256": digest, "bytes": len(data)}
    return out


def file_record(path: Path) -> dict | None:
    """The sha256 and size of a file, or None if it is missing."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


@dataclass
class CheckedCells:
    """The outcome of checking a run's finished cells against their files."""

    tables: dict[str, Tables] = field(default_factory=dict)  # cell id -> its tables, read and verified
    damaged: dict[str, str] = field(default_factory=dict)  # cell id -> what is wrong
    pending: list[str] = field(default_factory=list)  # not finished
    changed: bool = False  # the manifest or a sidecar was brought up to date


def check_cells(run_dir: Path, manifest: dict, cells: list[Cell], spec_hash: str) -> CheckedCells:
    """Verify every finished cell; adopt cells whose own record says finished though the
    manifest does not know yet (the run died between the two writes); repair sidecars."""
    out = CheckedCells()
    for cell in cells:
        entry = manifest["cells"].setdefault(cell.id, {"model": cell.model, "status": "pending"})
        sidecar = read_sidecar(run_dir, cell.id)
        if entry.get("status") != "done":
            if sidecar is None or sidecar.get("spec_hash") != spec_hash:
                out.pending.append(cell.id)
                continue
            adopt_sidecar(entry, sidecar)
            out.changed = True
        read = read_cell(run_dir, cell.id, entry)
        if read.fault:
            out.damaged[cell.id] = read.fault
            continue
        out.tables[cell.id] = read.tables
        if entry.get("files") != read.files:  # a run from before checksums: record them now
            entry["files"] = read.files
            out.changed = True
        if sidecar is None or sidecar != sidecar_record(cell.id, spec_hash, entry):
            if sidecar is not None or (run_dir / "cells" / cell.id / SIDECAR).exists():
                warn(f"cells/{cell.id}/{SIDECAR} was damaged; rewritten from {MANIFEST}")
            write_sidecar(run_dir, cell.id, spec_hash, entry)
    return out


def rebuild_manifest(run_dir: Path, experiment: str, spec_hash: str, cells: list[Cell]) -> dict:
    """A manifest rebuilt from the cells' own records (``cells/ID/cell.json``)."""
    manifest = new_manifest(experiment, spec_hash)
    for cell in cells:
        entry = {"model": cell.model, "status": "pending"}
        sidecar = read_sidecar(run_dir, cell.id)
        if sidecar is not None and sidecar.get("spec_hash") == spec_hash:
            adopt_sidecar(entry, sidecar)
        manifest["cells"][cell.id] = entry
    return manifest


def new_manifest(experiment: str, spec_hash: str) -> dict:
    return {"experiment": experiment, "spec_hash": spec_hash, "created": now(), "cells": {}}
