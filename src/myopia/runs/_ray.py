"""``--ray [ADDRESS]``: a run's cells on the actors of a Ray cluster.

Each worker is an actor with its own model cache (one CPU, or one GPU where the cluster has
them), fed one cell at a time by the same rule as the local pool (:func:`pick`). The actors
write each cell's tables and record into the run directory, which must be on a filesystem every
node sees at the same path; this process alone writes the manifest. A cell that fails on a
worker, or whose worker dies, is recorded with its error and the other cells go on.

Without an address, a local Ray cluster is started (and stopped at the end); an address that does
not answer within :data:`CONNECT_TIMEOUT_S` seconds is one line, exit 2. If Ray is already
initialised in this process (``ray.init(...)`` from Python), that cluster is used as it is
(an address given is still checked).
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

from .._errors import UserError
from ..models import Placement
from ._executors import (
    CellJob,
    Failed,
    Finished,
    ModelCache,
    OnEvent,
    Progressed,
    Started,
    error_line,
    execute_cell,
    pick,
)

try:
    import ray
    from ray.exceptions import RayActorError, RayTaskError
except ImportError:  # an optional extra: `pip install -c constraints.txt 'myopia[ray]'` (make install does)
    ray = None

CONNECT_TIMEOUT_S = 10.0
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


class _Inbox:
    """A Ray actor the workers post their cells' progress to; the driver takes it all at once."""

    def __init__(self):
        self.items: list = []

    def put(self, item) -> None:
        self.items.append(item)

    def take(self) -> list:
        items, self.items = self.items, []
        return items


class _Progress:
    """A cell's progress calls, posted to the inbox at most every ``every`` seconds."""

    def __init__(self, inbox, worker: int, every: float = 0.5):
        self.inbox, self.worker, self.every = inbox, worker, every
        self.advance, self.total, self.note, self.last = 0.0, None, None, 0.0

    def __call__(self, advance=1, total=None, note=None) -> None:
        self.advance += advance
        self.total = total if total is not None else self.total
        self.note = note or self.note
        if time.time() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.advance or self.total is not None or self.note:
            self.inbox.put.remote((self.worker, self.advance, self.total, self.note))
        self.advance, self.total, self.note, self.last = 0.0, None, None, time.time()


class _CellWorker:
    """A Ray actor that runs cells (one at a time) and files their results in the run directory."""

    def __init__(self, worker: int, cwd: str, inbox):
        import torch

        if os.path.isdir(cwd):  # model paths given relative to where `myopia run` was started
            os.chdir(cwd)
        torch.set_num_threads(1)
        self.worker, self.inbox, self.models = worker, inbox, ModelCache()

    def run(self, job: CellJob) -> dict:
        progress = _Progress(self.inbox, self.worker)
        record = execute_cell(job, self.models, progress)
        progress.flush()
        return record


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Something answers at ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) within ``timeout``
    seconds; else one line naming it. (``auto`` is left to Ray.)"""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--ray {address}: expected HOST:PORT (the head node's address, e.g. 10.0.0.5:6379) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(
            f"--ray {address}: nothing answers at {host}:{port} within {timeout:.0f} s ({e.strerror or e}); "
            "is the cluster's head running? (`ray start --head` prints its address)"
        ) from None


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 set aside: Ray's C++ core logs each retry of a failing connection there."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class RayExecutor:
    """Cells on Ray actors: ``address`` '' for a local cluster, else a running cluster's address."""

    def __init__(self, address: str = "", max_workers: int | None = None, placement: Placement | None = None):
        self.placement = placement or Placement()
        if ray is None:
            raise UserError(
                "--ray needs the ray package: pip install -c constraints.txt 'myopia[ray]' (make install installs it)"
            )
        self._started_here = False
        if address:
            check_address(address)
        if not ray.is_initialized():
            self._connect(address)
        resources = ray.cluster_resources()
        self._gpus = 1 if resources.get("GPU", 0) >= 1 else 0
        slots = int(resources.get("GPU", 0)) if self._gpus else int(resources.get("CPU", 1))
        self.workers = max(1, min(max_workers or slots, slots))
        self._inbox = ray.remote(num_cpus=0)(_Inbox).remote()
        self._actors: list = []
        self._models: list[str | None] = []

    def _connect(self, address: str) -> None:
        env = {"env_vars": _WORKER_ENV}
        if address:
            try:  # something answers; if it is no Ray cluster, Ray gives up after its own timeout (~20 s)
                with _quiet_stderr():
                    ray.init(address=address, runtime_env=env, log_to_driver=False, logging_level="error")
            except Exception as e:  # Ray's own words for a cluster it cannot join
                raise UserError(f"--ray {address}: cannot join a Ray cluster there ({error_line(e)})") from None
        else:
            ray.init(runtime_env=env, include_dashboard=False, log_to_driver=False, logging_level="error")
            self._started_here = True

    def _new_actor(self, w: int):
        actor = (
            ray.remote(_CellWorker)
            .options(num_cpus=0 if self._gpus else 1, num_gpus=self._gpus, max_concurrency=1)
            .remote(w, os.getcwd(), self._inbox)
        )
        if w < len(self._actors):
            self._actors[w], self._models[w] = actor, None
        else:
            self._actors.append(actor)
            self._models.append(None)

    def run(self, jobs: list[CellJob], on_event: OnEvent) -> None:
        while len(self._actors) < min(self.workers, len(jobs)):
            self._new_actor(len(self._actors))
        pending, busy = list(jobs), {}  # ObjectRef -> (worker, job)
        while pending or busy:
            running = {w for w, _ in busy.values()}
            for w in range(len(self._actors)):
                if w not in running and pending:
                    elsewhere = {m for v, m in enumerate(self._models) if v != w}
                    job = pick(pending, self._models[w], elsewhere)
                    self._models[w] = job.cell.model
                    busy[self._actors[w].run.remote(job)] = (w, job)
                    on_event(Started(job.cell.id, w))
            ready, _ = ray.wait(list(busy), num_returns=1, timeout=0.5)
            self._relay_progress(on_event)
            for ref in ready:
                w, job = busy.pop(ref)
                self._collect(ref, w, job, on_event)

    def _relay_progress(self, on_event: OnEvent) -> None:
        for worker, advance, total, note in ray.get(self._inbox.take.remote()):
            on_event(Progressed(worker, advance, total, note))

    def _collect(self, ref, w: int, job: CellJob, on_event: OnEvent) -> None:
        try:
            record = ray.get(ref)
        except RayTaskError as e:  # the cell raised: its own exception and the remote traceback
            cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else e
            on_event(Failed(job.cell.id, w, error_line(cause), str(e)))
            return
        except RayActorError as e:  # the worker died (killed, out of memory, node lost): replace it
            on_event(Failed(job.cell.id, w, f"Ray worker {w + 1} died: {error_line(e)}", str(e)))
            self._new_actor(w)
            return
        self._relay_progress(on_event)
        on_event(Finished(job.cell.id, w, record))

    def close(self) -> None:
        for actor in [*self._actors, self._inbox]:
            ray.kill(actor)
        self._actors, self._models = [], []
        if self._started_here:
            ray.shutdown()
            self._started_here = False
