"""Damaged or incomplete model folders and GGUF files: one line naming the file, exit code 2.

Each case copies the tiny model (``tiny_lm_dir``) into ``tmp_path``, damages it one way, and
loads it twice: through the Python API (a UserError whose line names the damaged file and
what is wrong) and through ``myopia score`` (exit code 2, exactly one line on stderr, no
traceback). Pickle is never opened: a ``pytorch_model.bin`` whose unpickling would create a
marker file is refused, and the marker never appears.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from myopia import UserError
from myopia._cli import main
from myopia.models import BUNDLED, load_model
from myopia.models._load import convert_gguf, file_sha256
from myopia.models._model_files import check_gguf

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"


# -- ways to damage a copy of the tiny model --------------------------------------------------
def _remove(*names):
    def damage(d: Path) -> None:
        for n in names:
            (d / n).unlink()

    return damage


def _cut(name: str, keep):
    """Keep the first ``keep(size)`` bytes of a file."""

    def damage(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: keep(len(data))])

    return damage


def _write(name: str, data: bytes):
    def damage(d: Path) -> None:
        (d / name).write_bytes(data)

    return damage


def _config(**values):
    def damage(d: Path) -> None:
        config = json.loads((d / CONFIG).read_text())
        config.update(values)
        for k in [k for k, v in values.items() if v is None]:
            del config[k]
        (d / CONFIG).write_text(json.dumps(config))

    return damage


def _garble_tensor_bytes(d: Path) -> None:
    """Random bytes in place of every tensor, the safetensors header left intact."""
    data = bytearray((d / WEIGHTS).read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start:] = random.Random(0).randbytes(len(data) - start)
    (d / WEIGHTS).write_bytes(bytes(data))


def _missing_shard(d: Path) -> None:
    (d / WEIGHTS).rename(d / "model-00001-of-00002.safetensors")
    weight_map = {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors",
    }
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _empty(d: Path) -> None:
    shutil.rmtree(d)
    d.mkdir()


def _a_file(d: Path) -> None:
    shutil.rmtree(d)
    d.write_text("not a folder\n")


# name -> (damage, the file the line must name ("" = the folder), what the line must say)
CASES = {
    "no-tokenizer": (_remove(TOKENIZER, "tokenizer_config.json"), "", "has no tokenizer files"),
    "no-weights": (_remove(WEIGHTS), "", "has no weights"),
    "weights-truncated-in-header": (_cut(WEIGHTS, lambda n: 100), WEIGHTS, "truncated or not a safetensors file"),
    "weights-truncated-in-tensors": (_cut(WEIGHTS, lambda n: n // 2), WEIGHTS, "is truncated: its tensors need"),
    "weights-one-byte-short": (_cut(WEIGHTS, lambda n: n - 1), WEIGHTS, "is truncated"),
    "weights-empty": (_write(WEIGHTS, b""), WEIGHTS, "is truncated (0 bytes)"),
    "weights-not-safetensors": (
        _write(WEIGHTS, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}"),
        WEIGHTS,
        "not a safetensors file",
    ),
    "weights-garbled-tensors": (_garble_tensor_bytes, WEIGHTS, "NaN or infinite values"),
    "weights-shard-missing": (
        _missing_shard,
        "model-00002-of-00002.safetensors",
        "is missing (listed in model.safetensors.index.json)",
    ),
    "config-missing": (_remove(CONFIG), "", "has no config.json"),
    "config-not-json": (_write(CONFIG, b'{"model_type": "llama",'), CONFIG, "is not valid JSON"),
    "config-not-an-object": (_write(CONFIG, b"[1, 2]"), CONFIG, "holds a JSON list, not an object"),
    "config-invalid-value": (_config(num_attention_heads=5), CONFIG, "not a multiple of the number of attention heads"),
    "config-wrong-type": (_config(hidden_size="abc"), CONFIG, "expected int, got str"),
    "config-unknown-activation": (_config(hidden_act="nonsense"), CONFIG, "cannot build a model from: 'nonsense'"),
    "config-unknown-rope": (
        _config(rope_parameters={"rope_type": "nonsense", "rope_theta": 1.0}),
        CONFIG,
        "cannot build a model from",
    ),
    "config-no-model-type": (_config(model_type=None), CONFIG, "has no model_type"),
    "architecture-unknown": (
        _config(model_type="nosuchmodel"),
        CONFIG,
        "model_type 'nosuchmodel' is not an architecture transformers",
    ),
    "config-fewer-layers-than-weights": (_config(num_hidden_layers=1), WEIGHTS, "tensors the config has no place for"),
    "config-more-layers-than-weights": (_config(num_hidden_layers=3), WEIGHTS, "tensors missing (model.layers.2."),
    "config-wrong-vocab": (_config(vocab_size=200), WEIGHTS, "the config wants [200, 32]"),
    "config-other-architecture": (_config(model_type="gpt2"), WEIGHTS, "does not fit"),
    "tokenizer-truncated": (_cut(TOKENIZER, lambda n: n // 2), TOKENIZER, "is not a valid tokenizer file"),
    "tokenizer-garbled": (
        _write(TOKENIZER, random.Random(1).randbytes(4000)),
        TOKENIZER,
        "is not a valid tokenizer file",
    ),
    "tokenizer-config-not-json": (
        _write("tokenizer_config.json", b"{oops"),
        "tokenizer_config.json",
        "is not valid JSON",
    ),
    "generation-config-not-json": (
        _write("generation_config.json", b""),
        "generation_config.json",
        "is not valid JSON",
    ),
    "empty-folder": (_empty, "", "is an empty folder"),
    "a-file-not-a-folder": (_a_file, "", "is a file, not a model folder"),
}


def _damaged_copy(tiny_lm_dir: str, tmp_path: Path, damage) -> Path:
    d = tmp_path / "model"
    shutil.copytree(tiny_lm_dir, d)
    damage(d)
    return d


def _score(spec: str):
    return CliRunner().invoke(main, ["score", spec, "Once upon a time", " there was"])


def _assert_one_line_exit_2(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_model_folder_is_one_line_naming_the_file(case, tiny_lm_dir, tmp_path):
    damage, file, says = CASES[case]
    d = _damaged_copy(tiny_lm_dir, tmp_path, damage)
    named = str(d / file) if file else str(d)
    with pytest.raises(UserError) as err:
        load_model(f"hf:{d}")
    assert named in str(err.value) and says in str(err.value), str(err.value)
    assert "\n" not in str(err.value)
    _assert_one_line_exit_2(_score(f"hf:{d}"), named, says)


@pytest.mark.parametrize(
    "case", ["no-tokenizer", "weights-truncated-in-tensors", "config-invalid-value", "empty-folder"]
)
def test_lab_folders_get_the_same_checks(case, tiny_lm_dir, tmp_path):
    damage, file, says = CASES[case]
    d = _damaged_copy(tiny_lm_dir, tmp_path, damage)
    _assert_one_line_exit_2(_score(f"lab:{d}"), str(d / file) if file else str(d), says)


def test_a_damaged_lab_spec_is_named_not_ignored(tiny_lm_dir, tmp_path):
    """spec.json says which attention a lab model was trained with: unreadable, it is an error
    (before, a bigram model would have loaded silently with full attention)."""
    d = _damaged_copy(tiny_lm_dir, tmp_path, _write("spec.json", b'{"objective": "bigr'))
    _assert_one_line_exit_2(_score(f"lab:{d}"), str(d / "spec.json"), "is not valid JSON")


def test_a_lab_folder_still_training_says_how_to_finish(tmp_path):
    d = tmp_path / "train"
    (d / "checkpoints").mkdir(parents=True)
    (d / "spec.toml").write_text('task = "addition"\n')
    line = _assert_one_line_exit_2(_score(f"lab:{d}"), "has not finished training")
    assert f"myopia train --spec {d / 'spec.toml'} --out {d}" in line


def test_the_undamaged_copy_loads(tiny_lm_dir, tmp_path):
    """The checks refuse nothing that is whole (the control for every case above)."""
    d = _damaged_copy(tiny_lm_dir, tmp_path, lambda d: None)
    assert load_model(f"hf:{d}").score("Once upon a time", [" there was"])[0].logprob < 0
    assert _score(f"lab:{d}").exit_code == 0


# -- pickle is never opened -------------------------------------------------------------------
class _RunsCode:
    """Unpickling this creates ``marker``: what a malicious pytorch_model.bin could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bait(d: Path, marker: Path) -> Path:
    """A pytorch_model.bin that runs code when unpickled; checked live, then the marker removed."""
    bait = d / "pytorch_model.bin"
    torch.save({"model.embed_tokens.weight": _RunsCode(marker)}, bait)
    torch.load(bait, weights_only=False).popitem()[1].close()  # an unsafe load does run it
    assert marker.exists()
    marker.unlink()
    return bait


def test_only_pickled_weights_are_refused_and_never_unpickled(tiny_lm_dir, tmp_path):
    marker = tmp_path / "unpickled"
    d = _damaged_copy(tiny_lm_dir, tmp_path, _remove(WEIGHTS))  # config and tokenizer stay
    _bait(d, marker)
    with pytest.raises(UserError, match="holds only pickled weights \\(pytorch_model.bin\\)"):
        load_model(f"hf:{d}")
    _assert_one_line_exit_2(_score(f"hf:{d}"), str(d), "loads safetensors only")
    assert not marker.exists()


def test_a_folder_holding_only_a_pickle_is_refused(tmp_path):
    """The issue's case exactly: nothing but pytorch_model.bin."""
    marker = tmp_path / "unpickled"
    d = tmp_path / "only-pickle"
    d.mkdir()
    _bait(d, marker)
    with pytest.raises(UserError, match="holds only pickled weights \\(pytorch_model.bin\\)"):
        load_model(f"hf:{d}")
    _assert_one_line_exit_2(_score(f"hf:{d}"), str(d), "holds only pickled weights (pytorch_model.bin)")
    assert not marker.exists()


def test_a_pickle_beside_safetensors_is_never_opened(tiny_lm_dir, tmp_path):
    marker = tmp_path / "unpickled"
    d = _damaged_copy(tiny_lm_dir, tmp_path, lambda d: None)
    _bait(d, marker)
    load_model(f"hf:{d}")
    assert not marker.exists()


# -- GGUF files -------------------------------------------------------------------------------
def _tiny_gguf(path: Path) -> Path:
    """A small, valid GGUF file: a string array in its metadata, 64-byte alignment, two tensors
    (F32, F16) whose sizes are multiples of the alignment, so the file ends with its last tensor."""
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_custom_alignment(64)
    w.add_block_count(1)
    w.add_token_list(["a", "bb", "ccc"])
    w.add_tensor("a", np.arange(64, dtype=np.float32))
    w.add_tensor("b", np.ones((4, 32), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_check_is_exact_on_a_small_file(tmp_path):
    path = _tiny_gguf(tmp_path / "tiny.gguf")
    check_gguf(path)  # whole: accepted
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    says = f"truncated: its tensors need {len(data):,} bytes, the file has {len(data) - 1:,}"
    with pytest.raises(UserError, match=says):
        check_gguf(path)


@pytest.mark.parametrize(
    "case, make, says",
    [
        ("not-gguf", lambda p: p.write_text("a text file, not a model\n"), "is not a GGUF file"),
        ("empty", lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        ("cut-in-magic", lambda p: p.write_bytes(b"GG"), "ends inside its GGUF header"),
        ("cut-in-header", lambda p: p.write_bytes(_tiny_gguf(p).read_bytes()[:40]), "ends inside its GGUF header"),
        (
            "cut-in-tensors",
            lambda p: p.write_bytes(_tiny_gguf(p).read_bytes()[:500]),
            "truncated: its tensors need 832 bytes",
        ),
        ("a-folder", lambda p: p.mkdir(), "is a folder, not a GGUF file"),
    ],
)
def test_damaged_gguf_is_one_line_naming_the_file(case, make, says, tmp_path, monkeypatch):
    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    path = tmp_path / f"{case}.gguf"
    make(path)
    with pytest.raises(UserError) as err:
        load_model(f"gguf:{path}")
    assert str(path) in str(err.value) and says in str(err.value), str(err.value)
    _assert_one_line_exit_2(_score(f"gguf:{path}"), str(path), says)


def test_a_damaged_conversion_in_the_cache_is_not_used(tiny_lm_dir, tmp_path, monkeypatch, capsys):
    """A converted GGUF in the cache whose weights were cut short is converted again, not loaded."""
    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    path = _tiny_gguf(tmp_path / "tiny.gguf")  # valid GGUF, but no model transformers can convert
    target = tmp_path / "cache" / "converted" / file_sha256(path)
    shutil.copytree(tiny_lm_dir, target)
    (target / "DONE").write_text("ok\n")
    assert convert_gguf(path) == target  # whole: used as it is
    _cut(WEIGHTS, lambda n: n // 2)(target)
    with pytest.raises(UserError, match="cannot read gguf file"):  # it tried to convert again
        convert_gguf(path)
    assert "is damaged" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(BUNDLED))
def test_bundled_gguf_files_pass_the_check(name):
    path = BUNDLED[name].gguf_path()
    if path is None:
        pytest.skip(f"bundled {name} is not installed")
    check_gguf(path)
