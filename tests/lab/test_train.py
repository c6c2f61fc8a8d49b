"""The training engine: outputs, exact resume, crash-safe checkpoints, NaN stop, data parallel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from myopia import UserError
from myopia.lab import TrainConfig, latest_checkpoint, train

PATH_STAR = {"name": "path-star", "n_train": 256, "n_test": 32}


def _cfg(tmp_path, name="run", **kw) -> TrainConfig:
    base = dict(
        task=PATH_STAR,
        model={"name": "llama-tiny", "d_model": 32},
        steps=8,
        batch_size=8,
        eval_every=4,
        eval_batches=2,
        checkpoint_every=3,
        schedule="cosine",
        warmup_steps=2,
        progress=False,
        out=str(tmp_path / name),
    )
    return TrainConfig(**{**base, **kw})


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def test_outputs_are_an_hf_checkpoint_log_and_spec(tmp_path):
    cfg = _cfg(tmp_path, steps=6)
    res = train(cfg)
    out = Path(res.out_dir)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.hidden_size == 32 and tok.decode(tok("3 4 / 5 =")["input_ids"]) == "3 4 / 5 ="
    log = pq.read_table(out / "train_log.parquet").to_pylist()
    assert [r["step"] for r in log] == list(range(1, 7))
    assert {"loss", "lr", "grad_norm", "tokens_per_s", "eval_loss", "accuracy"} <= set(log[-1])
    assert log[3]["eval_loss"] is not None and log[2]["eval_loss"] is None  # eval every 4 steps and at the end
    assert json.loads((out / "spec.json").read_text())["task"]["n_train"] == 256
    assert (out / "spec.toml").exists() and res.eval_loss == pytest.approx(log[-1]["eval_loss"])
    assert 0 <= res.metrics["accuracy"] <= 1
    # the final checkpoint's eval loss is reproduced by the saved weights
    again = train(cfg)  # finished: returns the stored result, trains nothing
    assert again.loss == res.loss and again.steps == 6


def test_training_reduces_the_loss(tmp_path):
    cfg = _cfg(tmp_path, task={"name": "addition", "n_digits": 1}, steps=60, batch_size=32, lr=3e-3, eval_every=0)
    res = train(cfg)
    log = pq.read_table(Path(res.out_dir) / "train_log.parquet").to_pylist()
    first = sum(r["loss"] for r in log[:5]) / 5
    last = sum(r["loss"] for r in log[-5:]) / 5
    assert last < 0.7 * first


@pytest.mark.parametrize("objective", ["ntp", "myopic", "mtp:2"])
def test_resume_is_bit_identical(tmp_path, objective):
    full = train(_cfg(tmp_path, "full", objective=objective))
    part = _cfg(tmp_path, "part", objective=objective)
    first = train(part, stop_after=4)  # "interrupted" after step 4 (a checkpoint was also made at 3)
    assert first.steps == 4 and latest_checkpoint(Path(part.out)).name == "step-0000004"
    resumed = train(part)
    assert resumed.resumed_from == 4
    a, b = _weights(full.out_dir), _weights(resumed.out_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if objective.startswith("mtp"):  # the extra heads too
        ha = load_file(str(Path(full.out_dir) / "mtp_heads.safetensors"))
        hb = load_file(str(Path(resumed.out_dir) / "mtp_heads.safetensors"))
        assert ha and ha.keys() == hb.keys() and all(torch.equal(ha[k], hb[k]) for k in ha)
    la = pq.read_table(Path(full.out_dir) / "train_log.parquet").column("loss").to_pylist()
    lb = pq.read_table(Path(resumed.out_dir) / "train_log.parquet").column("loss").to_pylist()
    assert la == lb


def test_a_crash_during_a_save_keeps_the_latest_checkpoint(tmp_path, monkeypatch):
    import myopia.lab._checkpoint as ck

    cfg = _cfg(tmp_path, "crash", checkpoint_every=2)
    real, calls = ck.write_log, []

    def dying_write_log(path, rows):  # dies mid-checkpoint (model written, the rest not)
        calls.append(path)
        if ".tmp-" in str(path) and len(calls) >= 2:
            raise KeyboardInterrupt
        return real(path, rows)

    monkeypatch.setattr(ck, "write_log", dying_write_log)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(ck, "write_log", real)
    root = Path(cfg.out) / "checkpoints"
    assert latest_checkpoint(Path(cfg.out)).name == "step-0000002"
    assert any(p.name.startswith(".tmp-") for p in root.iterdir())  # the partial one, never named latest
    resumed = train(cfg)
    full = train(_cfg(tmp_path, "nocrash", checkpoint_every=2))
    a, b = _weights(full.out_dir), _weights(resumed.out_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.name.startswith(".tmp-") for p in root.iterdir())


@pytest.mark.slow
def test_kill_9_never_leaves_a_corrupt_latest(tmp_path):
    """Kill a run that checkpoints every step at random moments; `latest` always loads."""
    out = tmp_path / "k9"
    code = (
        "from myopia.lab import TrainConfig, train\n"
        f"train(TrainConfig(task={PATH_STAR!r}, model={{'name': 'llama-tiny', 'd_model': 32}}, steps=100000,"
        f" batch_size=4, checkpoint_every=1, keep_checkpoints=2, eval_every=0, progress=False, out={str(out)!r}))\n"
    )
    for delay in (0.37, 0.81, 1.23):
        proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.time() + 60
        while latest_checkpoint(out) is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpt = latest_checkpoint(out)
        for f in ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer_state.json", "config.json"):
            assert (ckpt / f).exists()
        load_file(str(ckpt / "optimizer.safetensors"))
        assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == int(ckpt.name.split("-")[1])
        AutoModelForCausalLM.from_pretrained(ckpt)


def test_nan_loss_stops_with_step_and_checkpoint(tmp_path, monkeypatch):
    from myopia.tasks import PathStarTask

    real, seen = PathStarTask.loss, []

    def loss(self, output, targets):
        seen.append(1)
        out = real(self, output, targets)
        return out * float("nan") if len(seen) > 5 else out  # training steps 1..5 fine, then nan

    monkeypatch.setattr(PathStarTask, "loss", loss)
    cfg = _cfg(tmp_path, "nan", eval_every=0, checkpoint_every=2)
    with pytest.raises(UserError, match=r"loss is nan at step 6.*last good checkpoint: .*step-0000004"):
        train(cfg)


def test_cli_train_and_one_line_errors(tmp_path):
    from myopia._cli import main

    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["train", "--task", "addition", "--objective", "ntp", "--model", "gpt2-tiny", "--out", str(out)]
    args += ["--set", "steps=3", "--set", "batch_size=4", "--set", "eval_every=0", "--set", "progress=false"]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "trained 3 steps" in r.output and (out / "model.safetensors").exists()
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "gpt2"
    bad = runner.invoke(main, ["train", "--set", "task.K=3"])
    assert bad.exit_code == 2 and "unknown field 'task.K'" in bad.output and "accepted: name, k" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    other = runner.invoke(main, ["train", "--task", "addition", "--out", str(out), "--set", "steps=4"])
    assert other.exit_code == 2 and "different spec" in other.output
    again = runner.invoke(main, ["train", "--spec", str(out / "spec.toml"), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output  # the resolved spec runs as it is
    spec_a, spec_b = (json.loads((d / "spec.json").read_text()) for d in (out, tmp_path / "again"))
    assert {**spec_a, "out": None} == {**spec_b, "out": None}
    assert _weights(out).keys() == _weights(tmp_path / "again").keys()
    assert all(torch.equal(_weights(out)[k], _weights(tmp_path / "again")[k]) for k in _weights(out))


@pytest.mark.slow
def test_two_process_data_parallel_matches_one_process(tmp_path):
    """torchrun with 2 CPU processes (gloo) follows the single-process loss curve (same global batch)."""
    common = ["--task", "precache", "--model", "llama-tiny", "--set", "steps=6", "--set", "batch_size=8"]
    common += ["--set", "eval_every=3", "--set", "progress=false", "--set", "checkpoint_every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "myopia", "train", *common, "--out", str(tmp_path / "one")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "myopia", "train", *common, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = pq.read_table(tmp_path / "one" / "train_log.parquet").to_pylist()
    b = pq.read_table(tmp_path / "two" / "train_log.parquet").to_pylist()
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-4)
    assert b[-1]["eval_loss"] == pytest.approx(a[-1]["eval_loss"], rel=1e-4)
    wa, wb = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_fine_tune_a_pretrained_hf_checkpoint_on_text(tmp_path, monkeypatch):
    """--model hf:PATH: the task adopts the model's tokenizer; the result is again an HF checkpoint."""
    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 300)
    text = {"name": "text", "path": str(corpus), "seq_len": 16, "vocab_size": 300}
    base = train(_cfg(tmp_path, "base", task=text, model={"name": "gpt2-tiny"}, steps=3, eval_every=0))
    tuned = train(_cfg(tmp_path, "tuned", task=text, model={"name": f"hf:{base.out_dir}"}, steps=3, eval_every=0))
    tok_a, tok_b = AutoTokenizer.from_pretrained(base.out_dir), AutoTokenizer.from_pretrained(tuned.out_dir)
    assert tok_a("lazy dog")["input_ids"] == tok_b("lazy dog")["input_ids"]
    a, b = _weights(base.out_dir), _weights(tuned.out_dir)
    w = "transformer.h.0.mlp.c_fc.weight"
    assert a.keys() == b.keys() and not torch.equal(a[w], b[w])
    with pytest.raises(UserError, match="builds its own vocabulary"):
        train(_cfg(tmp_path, "bad", model={"name": f"hf:{base.out_dir}"}))


@pytest.mark.parametrize("objective", ["teacherless", "reverse"])
def test_data_variant_objectives_switch_the_task(tmp_path, objective):
    res = train(_cfg(tmp_path, objective=objective, steps=2, eval_every=0))
    info = json.loads((Path(res.out_dir) / "myopia_task.json").read_text())
    assert info["data_variant"] == objective and 0 <= res.metrics["accuracy"] <= 1
    with pytest.raises(UserError, match="no data variant"):
        train(_cfg(tmp_path, "bad", task={"name": "addition"}, objective=objective))


@pytest.mark.slow
def test_shakespeare_trains_and_ships_its_tokenizer(tmp_path, shakespeare_cache):
    """The real corpus: BPE trained once on the training plays, saved with the checkpoint."""
    task = {"name": "shakespeare", "vocab_size": 512, "seq_len": 32}
    res = train(_cfg(tmp_path, task=task, model={"name": "gpt2-tiny"}, steps=2, eval_every=0))
    tok = AutoTokenizer.from_pretrained(res.out_dir)
    line = "To be, or not to be, that is the question:"
    assert len(tok) == 512 and tok.decode(tok(line)["input_ids"]) == line
    assert len(tok(line)["input_ids"]) < len(line) / 2  # merges learned from the plays
    assert res.eval_loss is not None and res.eval_loss < 7.0  # ln(512) = 6.24 at the start


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    one = train(_cfg(tmp_path, "acc1", steps=3, eval_every=0, checkpoint_every=0))
    two = train(_cfg(tmp_path, "acc2", steps=3, eval_every=0, checkpoint_every=0, grad_accum=4))
    a, b = _weights(one.out_dir), _weights(two.out_dir)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    la, lb = (pq.read_table(Path(r.out_dir) / "train_log.parquet").to_pylist() for r in (one, two))
    for ra, rb in zip(la, lb):  # the same loss and the same (pre-clipping) gradient norm
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-4)
