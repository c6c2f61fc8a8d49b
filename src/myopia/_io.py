"""Atomic files: a reader (or a resumed run) never sees half a file.

The one place that writes result, checkpoint and cache files. Each write goes to a temporary
file beside the target, is flushed to disk, and is moved onto the target with ``os.replace``.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def cache_dir() -> Path:
    """myopia's cache (converted GGUF models, tokenizers and token streams of the lab's tasks):
    ``$MYOPIA_CACHE``, else ``$XDG_CACHE_HOME/myopia``, else ``~/.cache/myopia``."""
    root = os.environ.get("MYOPIA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "myopia"
    )
    return Path(root)


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
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_parquet_atomic(path: str | Path, records: list[dict]) -> None:
    """Records (dicts) as a Parquet table; the columns are every key seen, in first-seen order
    (a record without a key gets a null there)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k not in keys]
    table = pa.table({k: [r.get(k) for r in records] for k in keys})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_bytes_atomic(path, buf.getvalue())


def read_parquet(path: str | Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
