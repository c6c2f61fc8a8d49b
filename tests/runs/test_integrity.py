"""Run directories keep their integrity: checksums, the fault test (every file of a finished run
truncated, garbled and deleted in turn), the lock, the umask, runs from before checksums."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from myopia import UserError
from myopia._cli import main
from myopia.experiments import get_experiment
from myopia.report import Figure
from myopia.runs import _executors, rerender

ARGS = [
    "--set", "prompts=[\"Once upon a time, there was a\", \"The cat\"]",
    "--set", "length=4",
    "--set", "samples=4",
    "--set", "beam_width=2",
]  # fmt: skip
# a 1x1 PNG: the report's figures are real files of the run, but drawing them is not what is tested
TINY_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


def _quick_report(self, tables, spec, summary, section):
    """The sequence-likelihood report section, less its matplotlib drawing (seconds a figure)."""
    section.table(["rows"], [[len(tables["continuations"])]])
    for i in range(len(spec.prompts)):
        section.blocks.append(("figure", Figure(TINY_PNG, f"prompt {i}")))


@pytest.fixture(autouse=True)
def _cheap_figures(monkeypatch):
    monkeypatch.setattr(type(get_experiment("sequence-likelihood")), "report", _quick_report)


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _run_args(model_dir: str, out: Path) -> list[str]:
    return ["run", "sequence-likelihood", "--set", f'models=["hf:{model_dir}"]', *ARGS, "--out", str(out)]


@pytest.fixture(scope="module")
def template(tiny_lm_dir, tmp_path_factory) -> Path:
    """A finished two-cell run, made once."""
    out = tmp_path_factory.mktemp("template") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(get_experiment("sequence-likelihood")), "report", _quick_report)
        res = _cli(*_run_args(tiny_lm_dir, out))
    assert res.exit_code == 0, res.output
    return out


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture
def executed(monkeypatch) -> list[str]:
    """The ids of the cells computed from here on."""
    seen: list[str] = []
    real = _executors.execute_cell

    def spy(job, models, progress):
        seen.append(job.cell.id)
        return real(job, models, progress)

    monkeypatch.setattr(_executors, "execute_cell", spy)
    return seen


# -- the fault test ------------------------------------------------------------------------------
CELLS = ("cell0", "cell1")  # the template's two cells, in order
FILES = [
    ".lock",
    "spec.toml",
    "manifest.json",
    *[f"cells/{c}/{f}" for c in CELLS for f in ("continuations.parquet", "tokens.parquet", "cell.json")],
    "results/continuations.parquet",
    "results/tokens.parquet",
    "summary.json",
    "report.html",
    "figures/01-prompt-0.png",
    "figures/02-prompt-1.png",
]
DAMAGES = ("truncate", "garble", "delete")


def _real_path(run_dir: Path, rel: str) -> Path:
    cells = sorted(p.name for p in (run_dir / "cells").iterdir())
    for name, cell in zip(CELLS, cells):
        rel = rel.replace(f"cells/{name}/", f"cells/{cell}/")
    return run_dir / rel


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garble":  # same length, other bytes
        path.write_bytes(bytes((b + 1 + i % 251) % 256 for i, b in enumerate(data)) if data else b"\x00")
    else:
        path.unlink()


def test_the_fault_cases_cover_every_file_of_a_run(template):
    found = sorted(str(p.relative_to(template)) for p in template.rglob("*") if p.is_file())
    assert found == sorted(str(_real_path(template, f).relative_to(template)) for f in FILES)


def _one_line_exit_2(res) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("myopia: error:")]
    assert len(errors) == 1, res.output


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("rel", FILES)
def test_fault(rel, how, template, tiny_lm_dir, tmp_path, executed):
    """45 cases: one file of a finished run truncated, garbled or deleted; then `myopia report`
    and the resume. Each ends in the right report (recomputing exactly the damaged cells) or in
    one line with exit 2; no traceback, and no intact finished cell is lost or recomputed."""
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    want_summary = json.loads((template / "summary.json").read_text())
    finished = {k: v["finished"] for k, v in _manifest(template)["cells"].items()}
    path = _real_path(run_dir, rel)
    damaged_cell = path.parent.name if rel.startswith("cells/") and rel.endswith(".parquet") else None
    _damage(path, how)

    res = _cli("report", str(run_dir))
    if damaged_cell:  # a cell's results cannot be rebuilt without recomputing it: named, with the command
        _one_line_exit_2(res)
        assert damaged_cell in res.output and f"myopia run {run_dir / 'spec.toml'} --out {run_dir}" in res.output
    else:
        assert res.exit_code == 0 and "Traceback" not in res.output, res.output
        assert json.loads((run_dir / "summary.json").read_text()) == want_summary
    assert executed == []  # report computes nothing

    res = _cli(*_run_args(tiny_lm_dir, run_dir))
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert executed == ([damaged_cell] if damaged_cell else [])
    if damaged_cell:
        assert f"cell {damaged_cell}: cells/{damaged_cell}/" in res.output and "recomputing it" in res.output
    assert json.loads((run_dir / "summary.json").read_text()) == want_summary
    after = _manifest(run_dir)["cells"]
    assert {k: v["finished"] for k, v in after.items() if k != damaged_cell} == {
        k: v for k, v in finished.items() if k != damaged_cell
    }
    assert all(v["status"] == "done" and v["files"] for v in after.values())
    assert _cli("report", str(run_dir)).exit_code == 0


# -- what the manifest records -------------------------------------------------------------------
def test_the_manifest_records_the_checksum_of_every_file_a_cell_wrote(template):
    import hashlib

    manifest = _manifest(template)
    for cell_id, entry in manifest["cells"].items():
        folder = template / "cells" / cell_id
        tables = {p.name for p in folder.glob("*.parquet")}
        assert set(entry["files"]) == tables == {"continuations.parquet", "tokens.parquet"}
        for name, rec in entry["files"].items():
            data = (folder / name).read_bytes()
            assert rec == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        sidecar = json.loads((folder / "cell.json").read_text())
        assert sidecar["files"] == entry["files"] and sidecar["spec_hash"] == manifest["spec_hash"]
    for rel in ("spec.toml", "results/tokens.parquet", "results/continuations.parquet"):
        assert manifest["files"][rel]["sha256"] == hashlib.sha256((template / rel).read_bytes()).hexdigest()


def test_a_cell_finished_just_before_a_crash_is_adopted_not_recomputed(template, tiny_lm_dir, tmp_path, executed):
    """Killed between the cell's own record and the manifest's update: the record is enough."""
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    manifest = _manifest(run_dir)
    first = sorted(manifest["cells"])[0]
    manifest["cells"][first] = {"model": manifest["cells"][first]["model"], "status": "running"}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert _cli(*_run_args(tiny_lm_dir, run_dir)).exit_code == 0
    assert executed == []
    assert _manifest(run_dir)["cells"][first]["finished"] == _manifest(template)["cells"][first]["finished"]


def test_a_run_from_before_checksums_gets_them_and_keeps_its_cells(template, tiny_lm_dir, tmp_path, executed):
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    manifest = _manifest(run_dir)
    for cell_id, entry in manifest["cells"].items():
        del entry["files"]
        (run_dir / "cells" / cell_id / "cell.json").unlink()
    del manifest["files"], manifest["spec"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    bad = sorted(manifest["cells"])[1]
    (run_dir / "cells" / bad / "tokens.parquet").write_bytes(b"not parquet")
    res = _cli(*_run_args(tiny_lm_dir, run_dir))
    assert res.exit_code == 0, res.output
    assert executed == [bad] and "is damaged (not a Parquet file" in res.output
    assert all(e["files"] for e in _manifest(run_dir)["cells"].values())
    assert all((run_dir / "cells" / c / "cell.json").is_file() for c in manifest["cells"])


def test_a_changed_spec_toml_is_named_by_report_when_the_manifest_has_no_copy(template, tmp_path):
    """A spec.toml cut short can still parse (into defaults): the spec's hash catches it."""
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    manifest = _manifest(run_dir)
    del manifest["spec"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    text = (run_dir / "spec.toml").read_text()
    (run_dir / "spec.toml").write_text("\n".join(line for line in text.splitlines() if not line.startswith("samples")))
    with pytest.raises(UserError, match="spec.toml does not match .*manifest.json.*changed or damaged"):
        rerender(run_dir)


# -- a partial look at an unfinished run ---------------------------------------------------------
def _unfinish(run_dir: Path, cell_id: str) -> None:
    """As if the run had been killed before ``cell_id`` finished."""
    manifest = _manifest(run_dir)
    manifest["cells"][cell_id] = {"model": manifest["cells"][cell_id]["model"], "status": "pending"}
    manifest.pop("ended", None)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(run_dir / "cells" / cell_id)


def _ids(run_dir: Path) -> list[str]:
    return list(_manifest(run_dir)["cells"])  # in the run's order


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_partial_report_summarizes_the_finished_cells_and_writes_nothing_else(template, tiny_lm_dir, tmp_path,
                                                                              executed):  # fmt: skip
    from myopia._io import read_parquet

    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    for rel in ("summary.json", "report.html"):
        (run_dir / rel).unlink()
    shutil.rmtree(run_dir / "results")
    first, second = _ids(run_dir)
    _unfinish(run_dir, second)
    before = _files(run_dir)
    _one_line_exit_2(_cli("report", str(run_dir)))  # the full report still needs every cell

    res = _cli("report", str(run_dir), "--partial")
    assert res.exit_code == 0 and f"partial report (1 of 2 cells): {run_dir / 'partial' / 'report.html'}" in res.output
    assert {k: v for k, v in _files(run_dir).items() if not k.startswith("partial/")} == before
    # the reference: the experiment's own summary of cell 0's tables, read directly
    exp = get_experiment("sequence-likelihood")
    spec = exp.spec_cls.model_validate(_manifest(run_dir)["spec"])
    tables = {p.stem: read_parquet(p) for p in (run_dir / "cells" / first).glob("*.parquet")}
    want = exp.summarize(tables, spec).model_dump(mode="json")
    got = json.loads((run_dir / "partial" / "summary.json").read_text())
    assert {k: v for k, v in got.items() if k not in ("experiment", "spec_hash")} == {
        k: v for k, v in want.items() if k not in ("experiment", "spec_hash")
    }
    assert read_parquet(run_dir / "partial" / "results" / "continuations.parquet") == tables["continuations"]
    assert "partial: 1 of 2 cells finished" in (run_dir / "partial" / "report.html").read_text()
    assert executed == []

    # the run resumes with the one cell left, and its finished report replaces the partial look
    assert _cli(*_run_args(tiny_lm_dir, run_dir)).exit_code == 0
    assert executed == [second] and not (run_dir / "partial").exists()
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads((template / "summary.json").read_text())


def test_partial_report_errors_are_one_line(template, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    for cell in _ids(run_dir):
        _unfinish(run_dir, cell)
    res = _cli("report", str(run_dir), "--partial")
    _one_line_exit_2(res)
    assert "has no finished cell yet (0 of 2)" in res.output and not (run_dir / "partial").exists()
    _one_line_exit_2(_cli("report", str(tmp_path / "nowhere"), "--partial"))
    res = _cli("report", str(tmp_path), "--partial")
    _one_line_exit_2(res)
    assert "is not an experiment's run directory" in res.output


def test_partial_report_leaves_out_a_damaged_cell_with_a_warning(template, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    first, second = _ids(run_dir)
    _unfinish(run_dir, second)
    target = next((run_dir / "cells" / first).glob("*.parquet"))
    target.write_bytes(b"garbage")
    res = _cli("report", str(run_dir), "--partial")
    _one_line_exit_2(res)  # the damaged cell was the only finished one
    assert f"cell {first}: cells/{first}/{target.name} is damaged" in res.output


# -- the lock ------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_while_a_live_process_holds_the_run(template, tiny_lm_dir, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    holder = (
        "import sys, time\n"
        "from myopia.runs._rundir import RunLock\n"
        f"with RunLock(__import__('pathlib').Path({str(run_dir)!r}), 'a test'):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        for args in (_run_args(tiny_lm_dir, run_dir), ["report", str(run_dir)]):
            res = _cli(*args)
            _one_line_exit_2(res)
            assert f"is being written by pid {proc.pid} on " in res.output and "(a test)" in res.output
        assert _cli("report", str(run_dir), "--partial").exit_code == 0  # a look reads only: no lock needed
    finally:
        proc.kill()  # kill -9: the kernel drops its lock
        proc.wait()
    assert _cli(*_run_args(tiny_lm_dir, run_dir)).exit_code == 0
    assert _cli("report", str(run_dir)).exit_code == 0


# -- modes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_a_run_follows_the_umask(mask, file_mode, dir_mode, tiny_lm_dir, tmp_path):
    old = os.umask(mask)
    try:
        run_dir = tmp_path / "run"
        assert _cli(*_run_args(tiny_lm_dir, run_dir)).exit_code == 0
    finally:
        os.umask(old)
    paths = [p for p in run_dir.rglob("*")]
    assert len([p for p in paths if p.suffix == ".parquet"]) == 6
    wrong = {
        str(p.relative_to(run_dir)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in paths
        if stat.S_IMODE(p.stat().st_mode) != (dir_mode if p.is_dir() else file_mode)
    }
    assert not wrong

