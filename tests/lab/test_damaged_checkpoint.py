"""A damaged training checkpoint stops a resume with one line naming the file; checkpoints and
final models get the user's umask (readable by the group under 022)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from myopia import UserError
from myopia.lab import TrainConfig, latest_checkpoint, train

PATH_STAR = {"name": "path-star", "n_train": 128, "n_test": 16}


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(
        task=PATH_STAR,
        model={"name": "llama-tiny", "d_model": 32},
        objective="mtp:2",
        steps=6,
        batch_size=8,
        eval_every=0,
        checkpoint_every=2,
        progress=False,
        out=str(out),
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """An mtp:2 run stopped after step 4 (its latest checkpoint holds the extra heads)."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(_cfg(out), stop_after=4)
    return out


def _cut(name):
    return lambda ckpt: (ckpt / name).write_bytes((ckpt / name).read_bytes()[: (ckpt / name).stat().st_size // 2])


def _garble(name):
    return lambda ckpt: (ckpt / name).write_bytes(os.urandom((ckpt / name).stat().st_size))


DAMAGE = {
    "mtp-heads-truncated": (_cut("mtp_heads.safetensors"), "mtp_heads.safetensors is truncated"),
    "mtp-heads-garbled": (_garble("mtp_heads.safetensors"), "mtp_heads.safetensors"),
    "model-truncated": (_cut("model.safetensors"), "model.safetensors is truncated"),
    "optimizer-garbled": (_garble("optimizer.safetensors"), "optimizer.safetensors"),
    "trainer-state-not-json": (lambda c: (c / "trainer_state.json").write_text("{"), "trainer_state.json is not valid"),
    "log-garbled": (_garble("train_log.parquet"), "train_log.parquet is not a Parquet file"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_one_line_naming_the_file(case, interrupted, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    ckpt = latest_checkpoint(out)
    damage, says = DAMAGE[case]
    damage(ckpt)
    with pytest.raises(UserError, match=f"checkpoint {ckpt.name} is damaged: .*{says}") as err:
        train(_cfg(out))
    assert "\n" not in str(err.value) and f"delete {out / 'checkpoints'}" in str(err.value)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_checkpoints_and_final_model_follow_the_umask(mask, file_mode, dir_mode, tmp_path):
    old = os.umask(mask)
    try:
        out = tmp_path / "run"
        train(_cfg(out, steps=4, keep_checkpoints=5))
    finally:
        os.umask(old)
    paths = [p for p in out.rglob("*") if not p.name.startswith(".")]
    assert any(p.name == "mtp_heads.safetensors" for p in paths) and any(p.name.startswith("step-") for p in paths)
    modes = {p.relative_to(out): stat.S_IMODE(p.stat().st_mode) for p in paths}
    wrong = {str(p): oct(m) for p, m in modes.items() if m != (dir_mode if (out / p).is_dir() else file_mode)}
    assert not wrong
