"""The GGUF conversion cache: converted once, keyed by the file's hash, reused after."""

from __future__ import annotations

import pytest

from myopia.models import BUNDLED
from myopia.models._load import convert_gguf, file_sha256


def test_bundled_gguf_is_converted_once_and_reused(smollm):
    path = BUNDLED["smollm2-135m-instruct"].gguf_path()
    target = convert_gguf(path)  # smollm fixture already converted it
    assert target.name == file_sha256(path)
    stamp = (target / "DONE").stat().st_mtime_ns
    assert convert_gguf(path) == target
    assert (target / "DONE").stat().st_mtime_ns == stamp  # not rewritten
    assert (target / "model.safetensors").is_file()
    assert not list(target.glob("*.bin"))  # no pickle


def test_hash_memo_tracks_content(tmp_path, monkeypatch):
    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "x.gguf"
    f.write_bytes(b"one")
    a = file_sha256(f)
    f.write_bytes(b"two!")
    assert file_sha256(f) != a


def test_a_file_that_is_not_gguf_is_a_user_error(tmp_path, monkeypatch):
    from myopia import UserError

    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "bad.gguf"
    f.write_bytes(b"not a gguf file at all")
    with pytest.raises(UserError, match="bad.gguf is not a GGUF file"):
        convert_gguf(f)
