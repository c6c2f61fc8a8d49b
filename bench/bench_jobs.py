"""The quick suite's wall time with ``--jobs 2`` against one cell after another, side by side.

Each variant runs ``myopia run quick`` (the CLI, as ``make demo`` does) into a fresh folder, so
every cell is computed (the converted bundled models and the tasks' token caches are warm for
both alike). Rounds alternate the order (serial, jobs; then jobs, serial; ...), so a change in
the machine's load hits both alike. Recorded per run: wall time, the CPU seconds the run used
(its processes and their children), and the 1-minute load average before and after.

``--experiment NAME`` runs one experiment in its quick form instead of the whole suite (``--set``
adds overrides), for a machine too loaded to time the whole suite twice.

    .venv/bin/python bench/bench_jobs.py                       # one round: serial, then --jobs 2
    .venv/bin/python bench/bench_jobs.py --rounds 2 --write    # ABBA, and its section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _markdown import machine, write_section  # noqa: E402
from myopia._toml import toml_literal  # noqa: E402
from myopia.experiments import get_experiment  # noqa: E402

MYOPIA = Path(sys.executable).with_name("myopia")


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _command(target: str, jobs: int, out: Path, overrides: list[str]) -> list[str]:
    cmd = [str(MYOPIA), "run", target, "--out", str(out)]
    if target != "quick":  # one experiment in its quick form
        for k, v in (get_experiment(target).quick or {}).items():
            cmd += ["--set", f"{k}={toml_literal(v)}"]
    for o in overrides:
        cmd += ["--set", o]
    return cmd + (["--jobs", str(jobs)] if jobs > 1 else [])


def _one(cmd: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0, t0 = _load(), time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load0": load0, "load1": _load()}


def _variant(jobs: int) -> str:
    return "serial" if jobs == 1 else f"--jobs {jobs}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1, help="each round runs both variants; the order alternates")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--experiment", default="quick", help="one experiment's quick form instead of the whole suite")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = ap.parse_args()
    variants = [1, args.jobs]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        for r in range(args.rounds):
            for jobs in variants if r % 2 == 0 else variants[::-1]:
                out = Path(tmp) / f"run-{r}-{jobs}"
                res = _one(_command(args.experiment, jobs, out, args.overrides))
                runs.append({"round": r + 1, "jobs": jobs, **res})
                print(f"round {r + 1} jobs={jobs}: {res['wall']:.1f} s wall, {res['cpu']:.1f} s CPU, "
                      f"load {res['load0']:.1f} -> {res['load1']:.1f}", flush=True)
    median = {j: statistics.median(x["wall"] for x in runs if x["jobs"] == j) for j in variants}
    loads = [x["load0"] for x in runs] + [x["load1"] for x in runs]
    name = "the quick suite" if args.experiment == "quick" else f"`{args.experiment}` in its quick form"
    flags = f" --rounds {args.rounds}" + (f" --experiment {args.experiment}" if args.experiment != "quick" else "")
    flags += "".join(f" --set '{o}'" for o in args.overrides)
    rows = "\n".join(
        f"| {x['round']} | {_variant(x['jobs'])} | {x['wall']:.1f} | {x['cpu']:.1f} "
        f"| {x['load0']:.1f} → {x['load1']:.1f} |"
        for x in runs
    )
    body = f"""
## bench_jobs.py: {name}, `--jobs {args.jobs}` against serial (issue 14)

Command: `.venv/bin/python bench/bench_jobs.py{flags} --write` · {machine()} (the serial run's torch
threads; each `--jobs` worker uses one) · {os.cpu_count()} cores shared with other work: the 1-minute
load average ran from {min(loads):.1f} to {max(loads):.1f} during the runs.

| round | variant | wall (s) | CPU (s) | load average (start → end) |
|---|---|---|---|---|
{rows}

Median wall time: serial {median[1]:.1f} s, `--jobs {args.jobs}` {median[args.jobs]:.1f} s: a speed-up of
{median[1] / median[args.jobs]:.2f}x. CPU (s) is what the run's processes used; with a load average above the
number of cores, each process gets only a share of a core, so the wall times measure that share as much as
the code.
"""
    print(body)
    if args.write:
        write_section("jobs", body)


if __name__ == "__main__":
    main()
