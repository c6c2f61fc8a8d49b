"""Compare the headline figures of two runs (or suites): every number in their summary.json files,
times, run-specific keys and paths aside.

    python scripts/compare_summaries.py RUN_A RUN_B [--rtol 1e-9]

Prints each difference (key path, the two values) and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

IGNORED = {"spec_hash", "seconds", "train_seconds", "cell_seconds", "tokens_per_s", "checkpoint", "wall_s"}


def _walk(a, b, path: str, rtol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in IGNORED:
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'B' if k not in a else 'A'}")
                continue
            _walk(a[k], b[k], f"{path}.{k}", rtol, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} vs {len(b)} items")
        for i, (x, y) in enumerate(zip(a, b)):
            _walk(x, y, f"{path}[{i}]", rtol, out)
    elif isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        if not (math.isclose(a, b, rel_tol=rtol, abs_tol=rtol) or (math.isnan(a) and math.isnan(b))):
            out.append(f"{path}: {a!r} vs {b!r}")
    elif a != b:
        out.append(f"{path}: {a!r} vs {b!r}")


def summaries(run: Path) -> dict:
    """{member: summary} for a suite directory, {"": summary} for a single run."""
    if (run / "spec.toml").is_file():
        return {"": json.loads((run / "summary.json").read_text())}
    members = [p for p in sorted(run.iterdir()) if (p / "summary.json").is_file()]
    return {p.name: json.loads((p / "summary.json").read_text()) for p in members}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--rtol", type=float, default=1e-9, help="relative (and absolute) tolerance on numbers")
    args = ap.parse_args()
    sa, sb = summaries(args.a), summaries(args.b)
    diffs: list[str] = []
    _walk(sa, sb, "", args.rtol, diffs)
    for d in diffs:
        print(d)
    n = sum(1 for _ in _numbers(sa))
    print(f"{len(sa)} summaries, {n} numbers compared: {'identical' if not diffs else f'{len(diffs)} differences'}")
    return 1 if diffs else 0


def _numbers(x):
    if isinstance(x, dict):
        for k, v in x.items():
            if k not in IGNORED:
                yield from _numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _numbers(v)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield x


if __name__ == "__main__":
    sys.exit(main())
