"""Progress display for runs: one bar over cells, and one for the work inside each running cell
(one row per worker when cells run in parallel).

Quiet when stderr is not a terminal (CI logs get one line per finished cell instead).
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as _Rich


class Progress:
    def __init__(self, console: Console | None, total: int, done: int, title: str, workers: int = 1):
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.total, self.done, self.title, self.workers = total, done, title, workers
        self._rich = None
        self._cells = None
        self._rows: dict[int, int] = {}  # worker -> its row (rich task id)
        self._cell_ids: dict[int, str] = {}  # worker -> the cell it runs

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
            if self.workers > 1:
                for w in range(self.workers):
                    self._rows[w] = self._rich.add_task(f"  {self._who(w)}idle", total=None, start=False)
        return self

    def __exit__(self, *exc):
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def _who(self, worker: int) -> str:
        return f"worker {worker + 1} · " if self.workers > 1 else ""

    def start_cell(self, cell_id: str, worker: int = 0) -> None:
        self._cell_ids[worker] = cell_id
        if self._rich is None:
            return
        if self.workers > 1:
            row = self._rows[worker]
            self._rich.reset(row, total=None, completed=0, description=f"  {self._who(worker)}{cell_id}")
            self._rich.start_task(row)
            return
        if worker in self._rows:
            self._rich.remove_task(self._rows[worker])
        self._rows[worker] = self._rich.add_task(f"  {cell_id}", total=None)

    def cell_progress(self, advance: float = 1, total: float | None = None, note: str | None = None, worker: int = 0):
        if self._rich is None or worker not in self._rows:
            return
        kw = {}
        if total is not None:
            kw["total"] = total
        if note:
            kw["description"] = f"  {self._who(worker)}{self._cell_ids.get(worker, '')}: {note}"
        self._rich.update(self._rows[worker], advance=advance, **kw)

    def finish_cell(self, worker: int = 0) -> None:
        self.done += 1
        cell_id = self._cell_ids.pop(worker, "")
        if self._rich is not None:
            self._rich.update(self._cells, completed=self.done)
            if self.workers > 1:
                self._rich.reset(self._rows[worker], total=None, description=f"  {self._who(worker)}idle", start=False)
        else:
            where = f" [worker {worker + 1}]" if self.workers > 1 else ""
            print(f"{self.title}: cell {cell_id} done ({self.done}/{self.total}){where}", file=sys.stderr, flush=True)

    def fail_cell(self, error: str, worker: int = 0) -> None:
        cell_id = self._cell_ids.pop(worker, "")
        line = f"myopia: {self.title}: cell {cell_id} failed on worker {worker + 1}: {error}"
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        if self._rich is not None and self.workers > 1:
            self._rich.reset(self._rows[worker], total=None, description=f"  {self._who(worker)}idle", start=False)
