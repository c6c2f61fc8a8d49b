"""Run one experiment in its quick-suite form (its ``quick`` overrides) into a directory.

    python scripts/quick_member.py EXPERIMENT OUT_DIR [--set key=value ...]

The same run ``myopia run quick`` makes of that member, on its own (for comparing one member's
summary.json with an earlier run's, e.g. with scripts/compare_summaries.py).
"""

from __future__ import annotations

import argparse

from myopia._toml import toml_literal
from myopia.experiments import get_experiment
from myopia.runs import resolve_spec, run_spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment")
    ap.add_argument("out")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    exp = get_experiment(args.experiment)
    quick = [f"{k}={toml_literal(v)}" for k, v in (exp.quick or {}).items()]
    exp, spec = resolve_spec(args.experiment, quick + args.overrides)
    r = run_spec(exp, spec, args.out)
    print(f"{exp.name}: {r.cells_run} cells run, {r.cells_skipped} reused; summary: {r.run_dir / 'summary.json'}")


if __name__ == "__main__":
    main()
