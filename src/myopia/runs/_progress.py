"""Progress display for runs: one bar over cells, one for the work inside the current cell.

Quiet when stderr is not a terminal (CI logs get one line per finished cell instead).
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as _Rich, TextColumn, TimeElapsedColumn


class Progress:
    def __init__(self, console: Console | None, total: int, done: int, title: str):
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.total, self.done, self.title = total, done, title
        self._rich = None
        self._cells = self._inner = None
        self._cell_id = ""

    def __enter__(self):
        if self.done:
            self.console.print(f"[dim]{self.title}: resuming, {self.done} of {self.total} cells already done[/dim]")
        if self.live:
            self._rich = _Rich(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._rich.__enter__()
            self._cells = self._rich.add_task(f"{self.title} cells", total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc):
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def start_cell(self, cell_id: str) -> None:
        self._cell_id = cell_id
        if self._rich is not None:
            if self._inner is not None:
                self._rich.remove_task(self._inner)
            self._inner = self._rich.add_task(f"  {cell_id}", total=None)

    def cell_progress(self, advance: int = 1, total: int | None = None, note: str | None = None) -> None:
        if self._rich is None or self._inner is None:
            return
        kw = {}
        if total is not None:
            kw["total"] = total
        if note:
            kw["description"] = f"  {self._cell_id}: {note}"
        self._rich.update(self._inner, advance=advance, **kw)

    def finish_cell(self) -> None:
        self.done += 1
        if self._rich is not None:
            self._rich.update(self._cells, completed=self.done)
        else:
            print(f"{self.title}: cell {self._cell_id} done ({self.done}/{self.total})", file=sys.stderr, flush=True)
