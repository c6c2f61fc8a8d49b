"""Runs: the machinery that turns an experiment's spec into a run directory.

```
RUN_DIR/
  spec.toml        the resolved spec (run it again with `myopia run RUN_DIR/spec.toml`)
  manifest.json    versions, seed, host, start/end times, the status of every cell
  cells/ID/*.parquet   each cell's results, written the moment the cell finishes
  work/ID/         what a cell keeps while it works (checkpoints of models it trains)
  results/*.parquet    all cells' tables merged
  summary.json     the headline figures (the experiment's typed headline)
  report.html      one self-contained file, figures embedded; figures/*.png beside it
```

:func:`run` runs (or resumes) one experiment, :func:`run_suite` several into one report
(``quick`` is the suite ``make demo`` runs), :func:`rerender` redoes summary and report from
stored results.
"""

from ._runner import RunResult, load_run, read_summary, rerender, resolve_spec, run, run_spec
from ._suite import SuiteResult, run_suite, suites

__all__ = [
    "RunResult",
    "SuiteResult",
    "load_run",
    "read_summary",
    "rerender",
    "resolve_spec",
    "run",
    "run_spec",
    "run_suite",
    "suites",
]
