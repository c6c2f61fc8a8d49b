"""Atomic files: a reader (or a resumed run) never sees half a file.

The one place that writes result, checkpoint and cache files. Each write goes to a temporary
file beside the target, is flushed to disk, and is moved onto the target with ``os.replace``.
Files and folders get the modes the user's umask gives (0644 and 0755 under umask 022), not the
0600 and 0700 of ``tempfile``'s private temporary files: on a shared filesystem a teammate can
read a run. The writers return the SHA-256 and size of what they wrote (:class:`Written`), at
no extra I/O, for the run manifest's checksums.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


def cache_dir() -> Path:
    """myopia's cache (converted GGUF models, tokenizers and token streams of the lab's tasks):
    ``$MYOPIA_CACHE``, else ``$XDG_CACHE_HOME/myopia``, else ``~/.cache/myopia``."""
    root = os.environ.get("MYOPIA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "myopia"
    )
    return Path(root)


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` can only be read by setting
    it, which would race with files other threads create meanwhile)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    m = os.umask(0o022)
    os.umask(m)
    return m


def file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


def dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0o777 less the umask."""
    return 0o777 & ~umask()


def publish_tree(folder: str | Path) -> None:
    """Give a temporary folder, about to be renamed into place, and everything in it the modes
    the umask gives: ``mkdtemp`` makes it 0700, and safetensors writes its files 0600."""
    folder = Path(folder)
    fmode, dmode = file_mode(), dir_mode()
    for p in folder.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, dmode if p.is_dir() else fmode)
    os.chmod(folder, dmode)


@dataclass(frozen=True)
class Written:
    """What a writer put on disk: the file's SHA-256 (hex) and size in bytes."""

    sha256: str
    bytes: int

    def record(self) -> dict:
        return {"sha256": self.sha256, "bytes": self.bytes}


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``, moved onto it when the block ends without an error
    (removed otherwise): for writers that want a file name (safetensors, Parquet)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, file_mode())  # mkstemp's file is private (0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Written:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Written(hashlib.sha256(data).hexdigest(), len(data))


def write_text_atomic(path: str | Path, text: str) -> Written:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> Written:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def parquet_bytes(records: list[dict]) -> bytes:
    """Records (dicts) as a Parquet file's bytes; the columns are every key seen, in first-seen
    order (a record without a key gets a null there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k not in keys]
    table = pa.table({k: [r.get(k) for r in records] for k in keys})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_parquet_atomic(path: str | Path, records: list[dict]) -> Written:
    """Records as a Parquet table (:func:`parquet_bytes`), atomically."""
    return write_bytes_atomic(path, parquet_bytes(records))


def read_parquet(path: str | Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def parse_parquet(data: bytes) -> list[dict]:
    """A Parquet file's records, from its bytes (read once, hashed and parsed from the same bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(data)).to_pylist()
