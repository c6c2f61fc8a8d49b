"""What the run directories' checksums cost (issue 15), on the cell files of a finished run.

Reading a finished cell used to be ``read_parquet`` on each of its files; it is now
``read_cell``: the file read once, hashed (sha256) and parsed from the same bytes. Writing
adds one sha256 of bytes already in memory and one small ``cell.json`` per cell. Timed in CPU
seconds (``time.process_time``, best of N), which a loaded machine disturbs far less than wall
time; the figure to compare them with is the run's own CPU time.

    .venv/bin/python bench/bench_checksums.py RUN_OR_SUITE_DIR [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _markdown import machine, write_section  # noqa: E402
from myopia._io import read_parquet, write_json_atomic  # noqa: E402
from myopia.runs._rundir import read_cell  # noqa: E402


def _cells(root: Path) -> list[tuple[Path, str, dict]]:
    if (root / "manifest.json").is_file():
        runs = [root]
    else:  # a suite: its members
        runs = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file())
    return [(r, cid, e) for r in runs for cid, e in json.loads((r / "manifest.json").read_text())["cells"].items()]


def _best(f, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.process_time()
        f()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished run or suite folder (e.g. the quick suite's)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = ap.parse_args()
    items = _cells(args.run)
    files = [r / "cells" / cid / f"{t}.parquet" for r, cid, e in items for t in e.get("tables", [])]
    data = [f.read_bytes() for f in files]
    before = _best(lambda: [read_parquet(f) for f in files], args.repeats)
    after = _best(lambda: [read_cell(r, cid, e) for r, cid, e in items], args.repeats)
    sha = _best(lambda: [hashlib.sha256(d).hexdigest() for d in data], args.repeats)
    sidecars = _best(lambda: [write_json_atomic(args.run / ".bench-cell.json", e) for _, _, e in items], 3)
    (args.run / ".bench-cell.json").unlink(missing_ok=True)
    kb = sum(map(len, data)) / 1e3
    body = f"""
## bench_checksums.py: what the run directories' checksums cost (issue 15)

Command: `.venv/bin/python bench/bench_checksums.py {args.run} --write` · {machine()} · CPU seconds
(best of {args.repeats}) on the cell files of a finished run: {len(items)} cells, {len(files)} Parquet files,
{kb:.0f} kB.

| work | CPU (ms) |
|---|---|
| read every cell file as before (`read_parquet`) | {before * 1e3:.1f} |
| read, sha256 and parse each from the same bytes (`read_cell`) | {after * 1e3:.1f} |
| the sha256 alone | {sha * 1e3:.2f} |
| one `cell.json` per cell, written atomically (with fsync) | {sidecars * 1e3:.1f} |

The difference, {(after - before) * 1e3:.0f} ms of CPU for the whole run (twice that for a suite, whose
report reads its members again), against the minutes of CPU the cells take, is what the checksums cost.
"""
    print(body)
    if args.write:
        write_section("checksums", body)


if __name__ == "__main__":
    main()
