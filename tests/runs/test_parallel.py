"""Cells in parallel: ``--jobs N`` worker processes and Ray actors give the serial run's results;
a failed cell is recorded and retried alone; kill -9 of a parallel run loses nothing finished."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from safetensors.torch import load_file, save_file

from myopia import UserError
from myopia._cli import main
from myopia._errors import RunFailed
from myopia._io import read_parquet
from myopia.runs import run
from myopia.runs._cli import make_executor
from myopia.runs._executors import PoolExecutor, SerialExecutor
from myopia.runs._progress import Progress

PROMPTS = ["Once upon a time, there was a", "The cat", "In the beginning", "She could see"]


def _args(*model_dirs: str, prompts=PROMPTS, **kw) -> list[str]:
    base = {
        "models": json.dumps([f"hf:{d}" for d in model_dirs]),
        "prompts": json.dumps(prompts),
        "length": "4",
        "samples": "4",
        "beam_width": "2",
    }
    base.update({k: str(v) for k, v in kw.items()})
    return [f"{k}={v}" for k, v in base.items()]


def _results(run_dir: Path) -> dict:
    return {p.stem: read_parquet(p) for p in sorted((run_dir / "results").glob("*.parquet"))}


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def serial(tiny_lm_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "run"
    run("sequence-likelihood", _args(tiny_lm_dir), out=out)
    return out


@pytest.fixture(scope="module")
def pool():
    p = PoolExecutor(2)
    yield p
    p.close()


@pytest.fixture(scope="module")
def ray_pool():
    ray = pytest.importorskip("ray")
    from myopia.runs._ray import RayExecutor

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    executor = RayExecutor("")
    yield executor
    executor.close()
    ray.shutdown()


@pytest.fixture(params=["jobs-2", "ray"])
def parallel(request):
    return request.getfixturevalue("pool" if request.param == "jobs-2" else "ray_pool")


def test_parallel_results_equal_the_serial_run(parallel, serial, tiny_lm_dir, tmp_path):
    out = tmp_path / "run"
    r = run("sequence-likelihood", _args(tiny_lm_dir), out=out, executor=parallel)
    assert r.cells_run == len(PROMPTS)
    assert _results(out) == _results(serial)
    assert json.loads((out / "summary.json").read_text()) == json.loads((serial / "summary.json").read_text())
    cells = _manifest(out)["cells"].values()
    assert {c["status"] for c in cells} == {"done"} and {c["worker"] for c in cells} == {1, 2}
    for cell_id, entry in _manifest(out)["cells"].items():  # each worker filed its cell's record; the manifest agrees
        assert json.loads((out / "cells" / cell_id / "cell.json").read_text())["files"] == entry["files"]


def _nan_model(good: str, where: Path) -> Path:
    """A copy of the tiny model whose weights hold a NaN: it loads only to be refused."""
    shutil.copytree(good, where)
    state = load_file(str(where / "model.safetensors"))
    name = sorted(state)[0]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(where / "model.safetensors"), metadata={"format": "pt"})
    return where


def test_a_failed_cell_is_recorded_the_others_finish_and_a_rerun_retries_only_it(parallel, tiny_lm_dir, tmp_path):
    bad = _nan_model(tiny_lm_dir, tmp_path / "bad-model")
    args = _args(tiny_lm_dir, str(bad), prompts=PROMPTS[:2])
    out = tmp_path / "run"
    says = r"2 of 4 cells failed \(.*: UserError: .*bad-model/model.safetensors holds NaN or infinite values"
    with pytest.raises(RunFailed, match=says) as err:
        run("sequence-likelihood", args, out=out, executor=parallel)
    assert "\n" not in str(err.value) and "run the same command again to retry only them" in str(err.value)
    cells = _manifest(out)["cells"]
    failed = {k for k, v in cells.items() if v["status"] == "failed"}
    done = {k: v["finished"] for k, v in cells.items() if v["status"] == "done"}
    assert len(failed) == 2 and all("bad-model" in cells[k]["model"] for k in failed) and len(done) == 2
    assert all("NaN or infinite" in cells[k]["error"] and "execute_cell" in cells[k]["traceback"] for k in failed)
    assert _manifest(out)["status"] == "failed"

    shutil.copy(Path(tiny_lm_dir) / "model.safetensors", bad / "model.safetensors")  # mended
    r = run("sequence-likelihood", args, out=out, executor=parallel)
    assert (r.cells_run, r.cells_skipped) == (2, 2)
    after = _manifest(out)["cells"]
    assert {k: after[k]["finished"] for k in done} == done
    assert all(after[k]["status"] == "done" and "error" not in after[k] for k in failed)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_kill_9_of_a_parallel_run_then_resume_loses_and_recomputes_nothing(tiny_lm_dir, tmp_path, pool):
    out = tmp_path / "run"
    prompts = PROMPTS + ["A bird", "The dog"]
    args = _args(tiny_lm_dir, prompts=prompts, length=48, samples=48)
    cmd = [sys.executable, "-m", "myopia", "run", "sequence-likelihood", "--jobs", "2", "--out", str(out)]
    for a in args:
        cmd += ["--set", a]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (out / "manifest.json").exists():
            cells = _manifest(out)["cells"]
            if sum(c["status"] == "done" for c in cells.values()) >= 1:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed; make the cells slower"
    workers = _children(proc.pid)
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "workers outlived their parent"
    finished = {k: v["finished"] for k, v in _manifest(out)["cells"].items() if v["status"] == "done"}
    filed = {p.parent.name for p in (out / "cells").glob("*/cell.json")}  # finished, whether or not the manifest knew
    assert 1 <= len(finished) <= len(filed) < len(prompts)

    r = run("sequence-likelihood", args, out=out, executor=pool)
    assert r.cells_skipped == len(filed) and r.cells_run == len(prompts) - len(filed)
    final = _manifest(out)["cells"]
    assert all(final[k]["finished"] == v for k, v in finished.items())
    assert {c["prompt_index"] for c in read_parquet(out / "results" / "continuations.parquet")} == set(range(6))


def test_progress_shows_every_worker():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, color_system=None)
    with Progress(console, total=3, done=0, title="exp", workers=2) as bar:
        bar.start_cell("cell-a", worker=0)
        bar.start_cell("cell-b", worker=1)
        bar.cell_progress(1, total=4, note="beam search", worker=1)
        bar.finish_cell(worker=0)
    text = buf.getvalue()
    assert "worker 1 · idle" in text and "worker 2 · cell-b: beam search" in text and "1/3" in text


def test_jobs_option(tiny_lm_dir, tmp_path):
    assert isinstance(make_executor(None, None), SerialExecutor)
    assert isinstance(make_executor(1, None), SerialExecutor)  # --jobs 1 is today's run
    with pytest.raises(UserError, match="--jobs 0: the number of worker processes must be at least 1"):
        make_executor(0, None)
    res = CliRunner().invoke(main, ["run", "sequence-likelihood", "--jobs", "0", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()


def test_a_ray_address_that_does_not_answer_is_one_line(tmp_path):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = CliRunner().invoke(
        main, ["run", "sequence-likelihood", "--out", str(tmp_path / "r"), "--ray", f"127.0.0.1:{port}"]
    )
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert res.output.strip().count("\n") == 0 and f"nothing answers at 127.0.0.1:{port} within 10 s" in res.output
    res = CliRunner().invoke(main, ["run", "sequence-likelihood", "--out", str(tmp_path / "r"), "--ray=nonsense"])
    assert res.exit_code == 2 and "expected HOST:PORT" in res.output


def test_each_worker_gets_one_thread_and_one_gpu_of_several(monkeypatch):
    from myopia.runs import _executors

    monkeypatch.setattr(_executors, "_visible_gpus", lambda: [])
    one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    assert _executors._worker_env(0, 2) == one_thread
    monkeypatch.setattr(_executors, "_visible_gpus", lambda: ["0"])  # one GPU: shared, left as it is
    assert "CUDA_VISIBLE_DEVICES" not in _executors._worker_env(1, 2)
    monkeypatch.setattr(_executors, "_visible_gpus", lambda: ["2", "5", "7"])  # CUDA_VISIBLE_DEVICES=2,5,7
    assert [_executors._worker_env(w, 4)["CUDA_VISIBLE_DEVICES"] for w in range(4)] == ["2", "5", "7", "2"]
