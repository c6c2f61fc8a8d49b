"""Executors: who runs a run's cells. One interface, three ways.

- :class:`SerialExecutor`: in this process, one cell after another (``myopia run`` without
  ``--jobs``, or ``--jobs 1``); a cell's error stops the run, with its traceback.
- :class:`PoolExecutor`: N worker processes on this machine (``--jobs N``), one torch thread
  each on a CPU, one GPU each on a machine with several.
- :class:`~myopia.runs._ray.RayExecutor`: actors on a Ray cluster (``--ray [ADDRESS]``).

Whoever runs a cell writes its tables and its record ``cells/ID/cell.json`` (a filesystem all
workers share) and reports back; only the parent process writes the manifest. The parent hears
of everything through :class:`Event` s handed to one callback. In a pool, a cell that fails is
reported (:class:`Failed`) and the other cells go on.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import connection, get_context
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch

from .._errors import UserError
from .._io import write_parquet_atomic
from ..experiments import Cell, CellContext, Spec, get_experiment
from ..models import Placement, load_model
from ._rundir import now, write_sidecar


@dataclass(frozen=True)
class CellJob:
    """One cell to run, with all a worker needs to run it and file its results."""

    run_dir: Path  # absolute: workers may run elsewhere
    experiment: str
    spec: Spec
    spec_hash: str
    cell: Cell
    placement: Placement = Placement()  # the run's --device / --dtype


@dataclass(frozen=True)
class Started:
    cell_id: str
    worker: int


@dataclass(frozen=True)
class Progressed:
    worker: int
    advance: float = 1
    total: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class Finished:
    cell_id: str
    worker: int
    record: dict  # the cell's manifest entry: status, times, tables, files (sha256, bytes)


@dataclass(frozen=True)
class Failed:
    cell_id: str
    worker: int
    error: str  # one line: "ValueError: ..."
    traceback: str


Event = Started | Progressed | Finished | Failed
OnEvent = Callable[[Event], None]


class Executor(Protocol):
    workers: int  # how many cells it runs at once
    placement: Placement  # where the cells' models run (--device / --dtype)

    def run(self, jobs: list[CellJob], on_event: OnEvent) -> None:
        """Run every job, telling ``on_event`` as each starts, advances, finishes or fails."""

    def close(self) -> None:
        """Release the workers."""


class ModelCache:
    """Keeps the most recently used model loaded; cells with the same model run back to back."""

    def __init__(self):
        self._key, self._model = None, None

    def get(self, spec: str, placement: Placement | None = None):
        key = (spec, placement or Placement())
        if key != self._key:
            self.close()
            self._model, self._key = None, None  # a failed load leaves nothing stale behind
            self._model, self._key = load_model(spec, device=key[1].device, dtype=key[1].dtype), key
        return self._model

    @property
    def loaded(self) -> str | None:
        return self._key[0] if self._key else None

    def close(self):
        if self._model is not None:
            self._model.close()


def execute_cell(job: CellJob, models: ModelCache, progress) -> dict:
    """Run one cell and file its results: its tables, then its record (``cell.json``). Returns
    the record, for the manifest."""
    exp = get_experiment(job.experiment)
    folder = job.run_dir / "cells" / job.cell.id
    shutil.rmtree(folder, ignore_errors=True)  # what an earlier, unfinished or damaged attempt left
    started, t0 = now(), time.time()
    placement = job.placement.for_gradients() if exp.takes_gradients else job.placement
    threads = torch.get_num_threads()
    try:  # a cell may set its own thread count (training, probes); the next cell starts with the run's
        ctx = CellContext(models, progress, job.run_dir / "work" / job.cell.id, placement)
        tables = exp.run_cell(job.cell, job.spec, ctx)
    finally:
        torch.set_num_threads(threads)
    files = {
        f"{name}.parquet": write_parquet_atomic(folder / f"{name}.parquet", records).record()
        for name, records in tables.items()
    }
    record = {
        "status": "done",
        "started": started,
        "finished": now(),
        "seconds": round(time.time() - t0, 2),
        "tables": sorted(tables),
        "files": files,
        "placement": placement.describe(),
    }
    write_sidecar(job.run_dir, job.cell.id, job.spec_hash, record)
    return record


def error_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:500] if text else type(e).__name__


class SerialExecutor:
    """In this process, in order: what ``myopia run`` has always done."""

    workers = 1

    def __init__(self, placement: Placement | None = None):
        self.placement = placement or Placement()

    def run(self, jobs: list[CellJob], on_event: OnEvent) -> None:
        models = ModelCache()

        def progress(advance=1, total=None, note=None):
            on_event(Progressed(0, advance, total, note))

        try:
            for job in jobs:
                on_event(Started(job.cell.id, 0))
                on_event(Finished(job.cell.id, 0, execute_cell(job, models, progress)))
        finally:
            models.close()

    def close(self) -> None:
        pass


# -- a pool of worker processes ----------------------------------------------------------------
def check_jobs(n: int) -> int:
    if n < 1:
        raise UserError(f"--jobs {n}: the number of worker processes must be at least 1")
    return n


def pick(pending: list[CellJob], model: str | None, elsewhere: set[str | None]) -> CellJob:
    """The next job for a worker whose loaded model is ``model``: one for that model, else one
    whose model no other worker holds (so each model is loaded by as few workers as can be),
    else the first."""
    for rule in (lambda j: j.cell.model == model, lambda j: j.cell.model not in elsewhere, lambda j: True):
        for i, job in enumerate(pending):
            if rule(job):
                return pending.pop(i)
    raise IndexError("no job")


class PoolExecutor:
    """``--jobs N``: N worker processes (started once, kept for every run it serves, e.g. each
    member of a suite), each with its own model cache. Ctrl-C stops them; if this process is
    killed, they notice and exit."""

    def __init__(self, jobs: int, placement: Placement | None = None):
        self.workers = check_jobs(jobs)
        self.placement = placement or Placement()
        self._procs: list = []
        self._conns: list = []
        self._models: list[str | None] = []

    def _start(self, w: int) -> None:
        ctx = get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(child, w), name=f"myopia-worker-{w + 1}", daemon=True)
        with _environ(_worker_env(w, self.workers)):
            proc.start()
        child.close()
        if w < len(self._procs):  # a replacement for a worker that died
            self._conns[w].close()
            self._procs[w], self._conns[w], self._models[w] = proc, parent, None
        else:
            self._procs.append(proc)
            self._conns.append(parent)
            self._models.append(None)

    def run(self, jobs: list[CellJob], on_event: OnEvent) -> None:
        while len(self._procs) < min(self.workers, len(jobs)):
            self._start(len(self._procs))
        pending, busy = list(jobs), {}  # worker -> the job it runs
        while pending or busy:
            for w in range(len(self._procs)):
                if w not in busy and pending:
                    if not self._procs[w].is_alive():  # died while idle
                        self._start(w)
                    elsewhere = {m for v, m in enumerate(self._models) if v != w}
                    job = pick(pending, self._models[w], elsewhere)
                    self._conns[w].send(job)
                    busy[w] = job
                    self._models[w] = job.cell.model
                    on_event(Started(job.cell.id, w))
            waits = {self._conns[w]: w for w in busy} | {self._procs[w].sentinel: w for w in busy}
            for ready in connection.wait(list(waits)):
                w = waits[ready]
                if w in busy:
                    self._hear(w, busy, on_event)

    def _hear(self, w: int, busy: dict, on_event: OnEvent) -> None:
        """Take what worker ``w`` says (or that it died)."""
        conn, job = self._conns[w], busy[w]
        try:
            while conn.poll():
                msg = conn.recv()
                kind = msg[0]
                if kind == "progress":
                    on_event(Progressed(w, *msg[1:]))
                elif kind == "done":
                    busy.pop(w)
                    on_event(Finished(job.cell.id, w, msg[1]))
                    return
                elif kind == "failed":
                    busy.pop(w)
                    on_event(Failed(job.cell.id, w, msg[1], msg[2]))
                    return
        except (EOFError, OSError):  # the worker is gone: wait for its exit status
            self._procs[w].join(timeout=10)
        proc = self._procs[w]
        if not proc.is_alive():
            proc.join()
            busy.pop(w)
            code = proc.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            on_event(Failed(job.cell.id, w, f"worker process {w + 1} died ({how})", ""))
            self._start(w)

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.time() + 5
        for proc in self._procs:
            proc.join(timeout=max(0.1, deadline - time.time()))
            if proc.is_alive():  # interrupted mid-cell
                proc.terminate()
                proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._procs, self._conns, self._models = [], [], []


def _visible_gpus() -> list[str]:
    """The GPU ids this process may use (CUDA_VISIBLE_DEVICES, else all); none on a CPU."""
    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    return ids or [str(i) for i in range(torch.cuda.device_count())]


def _worker_env(w: int, n: int) -> dict[str, str]:
    """One torch thread per worker; on a machine with several GPUs, one GPU per worker (round
    robin when there are more workers than GPUs)."""
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    gpus = _visible_gpus()
    if len(gpus) > 1:
        env["CUDA_VISIBLE_DEVICES"] = gpus[w % len(gpus)]
    return env


@contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    """``env`` set while a worker process starts (it inherits the environment of that moment)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Throttled:
    """A cell's progress calls, sent to the parent at most every ``every`` seconds."""

    def __init__(self, conn, every: float = 0.2):
        self.conn, self.every = conn, every
        self.advance, self.total, self.note, self.last = 0.0, None, None, 0.0

    def __call__(self, advance=1, total=None, note=None) -> None:
        self.advance += advance
        self.total = total if total is not None else self.total
        self.note = note or self.note
        if total is not None or note or time.time() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.advance or self.total is not None or self.note:
            self.conn.send(("progress", self.advance, self.total, self.note))
        self.advance, self.total, self.note, self.last = 0.0, None, None, time.time()


def _exit_with_parent(parent: int) -> None:
    """Exit when the parent process is gone (killed with -9, it cannot stop its workers)."""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def worker_main(conn, w: int) -> None:
    """A pool worker: run the cells the parent sends until it sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent(os.getppid())
    torch.set_num_threads(1)
    models = ModelCache()
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                break
            if job is None:
                break
            progress = _Throttled(conn)
            try:
                record = execute_cell(job, models, progress)
                progress.flush()
                conn.send(("done", record))
            except Exception as e:
                conn.send(("failed", error_line(e), traceback.format_exc()))
    finally:
        models.close()
        sys.stdout.flush()
