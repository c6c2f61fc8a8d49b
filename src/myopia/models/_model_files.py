"""What a local model folder or GGUF file must hold, checked without loading weights.

The checks read only small files and headers (config.json and its siblings, the header of
every safetensors file, the header of a GGUF file), so an incomplete or damaged model is
refused in well under a second, before any weights are read, with one line naming the file
and what is wrong. What only loading can reveal (weights that do not fit the config, a value
transformers rejects while building the model, a tokenizer file the tokenizer library
cannot read) is diagnosed by the ``*_fault`` functions after a load fails (``._load``).

Pickled weights (``pytorch_model.bin``, ``*.pt``, ``*.ckpt`` …) are never opened:
unpickling a file can run arbitrary code. Only safetensors weights load.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path

import gguf
from huggingface_hub.errors import StrictDataclassError
from tokenizers import Tokenizer
from transformers import AutoConfig
from transformers import __version__ as transformers_version
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from .._errors import UserError

HOLDS = "config.json, model.safetensors (or shards listed in model.safetensors.index.json) and tokenizer files"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# a tokenizer's vocabulary comes from one of these (fast tokenizer, sentencepiece, BPE, WordPiece, tiktoken)
TOKENIZER_PATTERNS = ("tokenizer.json", "*.model", "vocab.*", "merges.txt", "tekken.json", "*.tiktoken")
# small JSON files that transformers reads beside the weights; each must be a JSON object
SMALL_JSON = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "model.safetensors.index.json",
)
_MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit


def one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_json_object(file: Path) -> dict:
    """A JSON file that must hold an object; a UserError naming the file otherwise."""
    try:
        data = json.loads(file.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{file} is not valid JSON ({one_line(e)}): the file is damaged") from None
    except OSError as e:
        raise UserError(f"cannot read {file}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{file} holds a JSON {type(data).__name__}, not an object: the file is damaged")
    return data


# -- model folders ----------------------------------------------------------------------------
def check_model_dir(path: Path) -> None:
    """Refuse an incomplete or damaged model folder with one line naming the file.

    Checked: a folder, not empty; safetensors weights present (pickled weights refused) with
    complete, readable headers; config.json a JSON object whose model_type transformers knows
    as a causal LM and whose values transformers accepts; tokenizer files present; the small
    JSON files valid. Not read: the weights themselves and tokenizer.json (tens of MB).
    """
    if not path.exists():
        raise UserError(f"model folder not found: {path}")
    if not path.is_dir():
        hint = " (a GGUF file loads with gguf:PATH)" if _starts_with(path, b"GGUF") else ""
        raise UserError(f"{path} is a file, not a model folder{hint}; a model folder holds {HOLDS}")
    names = {p.name for p in path.iterdir()}
    if not names:
        raise UserError(f"{path} is an empty folder; a model folder holds {HOLDS}")
    for name in SMALL_JSON:
        if name in names:
            read_json_object(path / name)
    for file in weight_files(path):
        check_safetensors(file)
    _check_config(path)
    if not any(any(path.glob(p)) for p in TOKENIZER_PATTERNS):
        raise UserError(
            f"{path} has no tokenizer files (tokenizer.json, tokenizer.model, or vocab.json + merges.txt); "
            "save the tokenizer beside the model: tokenizer.save_pretrained(FOLDER)"
        )


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a model folder (a UserError if there are none)."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise UserError(f"{index} has no weight_map: the file is damaged")
        files = [path / name for name in sorted(set(map(str, weight_map.values())))]
        for f in files:
            if not f.is_file():
                raise UserError(f"{f} is missing (listed in {index.name}): the model is incomplete")
        return files
    single = path / "model.safetensors"
    if single.is_file():
        return [single]
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise UserError(
            f"{path} holds only pickled weights ({', '.join(pickled[:3])}); myopia loads safetensors only, "
            "since unpickling a file can run code: convert them with save_pretrained() where you trust the file"
        )
    raise UserError(f"{path} has no weights: no model.safetensors (or model.safetensors.index.json and its shards)")


def check_safetensors(file: Path) -> None:
    """The header of a safetensors file is complete and covers exactly the bytes after it."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UserError(f"{file} is truncated ({size} bytes): too short for a safetensors header")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _MAX_SAFETENSORS_HEADER):
            raise UserError(
                f"{file} is truncated or not a safetensors file: its header claims {n:,} bytes, the file has {size:,}"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise UserError(f"{file} is not a safetensors file, or its header is damaged") from None
    data = size - 8 - n
    if end > data:
        raise UserError(
            f"{file} is truncated: its tensors need {end:,} bytes after the header, the file has {data:,} "
            "(an interrupted download or copy?)"
        )
    if end < data:
        raise UserError(f"{file} is damaged: {data - end:,} bytes follow its last tensor")


def _check_config(path: Path) -> None:
    file = path / "config.json"
    if not file.is_file():
        raise UserError(f"{path} has no config.json; a model folder holds {HOLDS}")
    config = read_json_object(file)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UserError(f"{file} has no model_type (the architecture, such as llama, gemma3_text or gpt2)")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise UserError(
            f"{file}: model_type {model_type!r} is not an architecture transformers {transformers_version} knows "
            "(a newer transformers, or a damaged config? custom model code is never run)"
        )
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserError(f"{file}: model_type {model_type!r} is not a causal language model in transformers")
    try:
        AutoConfig.from_pretrained(path)  # the config class validates every value
    except (StrictDataclassError, ValueError, TypeError, KeyError, AttributeError) as e:
        # config.json is the only input of this call: whatever it rejects is a value in that file
        raise UserError(f"{file} has a value transformers rejects: {one_line(e)}") from None


def tokenizer_fault(path: Path) -> str | None:
    """After a tokenizer failed to load: the line naming the damaged tokenizer file, if one is."""
    file = path / "tokenizer.json"
    if not file.is_file():
        return None
    try:
        Tokenizer.from_file(str(file))
    except Exception as e:  # the tokenizers library signals a bad file with a bare Exception
        return f"{file} is not a valid tokenizer file ({one_line(e, 200)}): the file is damaged"
    return None


def config_value_fault(path: Path, error: Exception, build) -> str | None:
    """After building a model failed with ``error``: the line blaming config.json if building
    the same architecture from the config alone (``build(config)``, on the meta device, no
    weights) fails the same way; else None, and the caller re-raises (a bug, not the file)."""
    try:
        build(AutoConfig.from_pretrained(path))
    except type(error) as again:
        return f"{path / 'config.json'} has a value transformers cannot build a model from: {one_line(again)}"
    return None


# -- GGUF files ---------------------------------------------------------------------------------
_GGUF_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType
_GGUF_STRING, _GGUF_ARRAY = 8, 9


class _Truncated(Exception):
    pass


class _GGUFHeader:
    """Walks a GGUF header (little-endian, versions 2 and 3) without building any tensor."""

    def __init__(self, buf) -> None:
        self.buf, self.pos = buf, 0
        self.alignment = gguf.GGUF_DEFAULT_ALIGNMENT

    def _take(self, n: int) -> int:
        start, self.pos = self.pos, self.pos + n
        if self.pos > len(self.buf):
            raise _Truncated
        return start

    def u32(self) -> int:
        return struct.unpack_from("<I", self.buf, self._take(4))[0]

    def u64(self) -> int:
        return struct.unpack_from("<Q", self.buf, self._take(8))[0]

    def string(self) -> bytes:
        n = self.u64()
        start = self._take(n)
        return bytes(self.buf[start : start + n])

    def skip_value(self, vtype: int) -> None:
        if vtype == _GGUF_STRING:
            self._take(self.u64())
        elif vtype == _GGUF_ARRAY:
            item, count = self.u32(), self.u64()
            if item in _GGUF_SCALAR_BYTES:
                self._take(count * _GGUF_SCALAR_BYTES[item])
            else:
                if count * 8 > len(self.buf) - self.pos:  # every string or array item takes 8 bytes or more
                    raise _Truncated
                for _ in range(count):
                    self.skip_value(item)
        elif vtype in _GGUF_SCALAR_BYTES:
            self._take(_GGUF_SCALAR_BYTES[vtype])
        else:
            raise ValueError(f"unknown metadata value type {vtype}")

    def data_end(self) -> int:
        """The byte offset where the last tensor's data ends."""
        if self.buf[self._take(4) : 4] != b"GGUF":
            raise ValueError("it does not begin with the bytes 'GGUF'")
        version = self.u32()
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} (2 and 3 are read)")
        n_tensors, n_kv = self.u64(), self.u64()
        for _ in range(n_kv):
            key, vtype = self.string(), self.u32()
            if key == b"general.alignment" and vtype == 4:
                self.alignment = self.u32() or self.alignment
            else:
                self.skip_value(vtype)
        end = 0
        for _ in range(n_tensors):
            name = self.string()
            dims = [self.u64() for _ in range(self.u32())]
            ttype, offset = self.u32(), self.u64()
            end = max(end, offset + _tensor_bytes(name, dims, ttype))
        start = -(-self.pos // self.alignment) * self.alignment  # the data section is aligned
        return start + end if n_tensors else self.pos


def _tensor_bytes(name: bytes, dims: list[int], ttype: int) -> int:
    try:
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
    except (ValueError, KeyError):
        raise ValueError(f"tensor {name.decode(errors='replace')!r} has unknown type {ttype}") from None
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def check_gguf(file: Path, remedy: str = "") -> None:
    """A GGUF file's header is readable and the file holds all of its tensors' bytes."""
    tail = f"; {remedy}" if remedy else ""
    if file.is_dir():
        raise UserError(f"{file} is a folder, not a GGUF file (a model folder loads with hf:DIR)")
    size = file.stat().st_size
    if size == 0:
        raise UserError(f"{file} is empty (0 bytes), not a GGUF file{tail}")
    with open(file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        try:
            need = _GGUFHeader(buf).data_end()
        except _Truncated:
            raise UserError(f"{file} is truncated: it ends inside its GGUF header ({size:,} bytes){tail}") from None
        except ValueError as e:
            raise UserError(f"{file} is not a GGUF file transformers can read: {e}{tail}") from None
    if need > size:
        raise UserError(
            f"{file} is truncated: its tensors need {need:,} bytes, the file has {size:,} "
            f"(an interrupted download or copy?){tail}"
        )


def _starts_with(file: Path, magic: bytes) -> bool:
    try:
        with open(file, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False
