"""A rich progress bar with loss and tokens/s (a no-op when disabled)."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class _Bar:
    def __init__(self, progress: Progress | None, task_id):
        self.progress, self.task_id = progress, task_id

    def update(self, step: int, row: dict) -> None:
        if self.progress is None:
            return
        info = f"loss {row.get('loss', float('nan')):.4f}"
        if "eval_loss" in row:
            info += f"  eval {row['eval_loss']:.4f}"
        info += f"  {row.get('tokens_per_s', 0):,.0f} tok/s"
        self.progress.update(self.task_id, completed=step, info=info)


@contextlib.contextmanager
def progress_bar(total: int, start: int, enabled: bool = True):
    if not enabled:
        yield _Bar(None, None)
        return
    console = Console(file=sys.stderr)
    columns = [
        TextColumn("train"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        tid = progress.add_task("train", total=total, completed=start, info="")
        yield _Bar(progress, tid)
