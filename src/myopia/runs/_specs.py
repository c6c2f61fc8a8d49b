"""Reading specs: TOML files, ``--set key=value`` overrides checked against the typed spec, and
validation; every mistake becomes one :class:`UserError` line naming the field and what it
accepts. The spec classes themselves live with their experiments (``myopia.experiments``).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

from pydantic import BaseModel, ValidationError

from .._errors import UserError
from .._toml import parse_value
from ..experiments import Spec


def apply_overrides(data: dict, overrides: list[str], spec_cls: type[Spec]) -> dict:
    """Apply ``key.sub=value`` overrides to a raw spec dict, checking each path against the spec."""
    data = json.loads(json.dumps(data))  # deep copy
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        path = key.strip().split(".")
        _check_path(path, spec_cls)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {part} is not a table")
        node[path[-1]] = parse_value(raw.strip())
    return data


def _check_path(path: list[str], cls: type[BaseModel]) -> None:
    for i, part in enumerate(path):
        fields = cls.model_fields
        if part not in fields:
            where = ".".join(path[:i]) or "the spec"
            raise UserError(
                f"unknown field {'.'.join(path[: i + 1])!r} in {where}; accepted: {', '.join(fields)}"
            )
        ann = fields[part].annotation
        if i < len(path) - 1:
            if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                raise UserError(f"field {'.'.join(path[: i + 1])!r} has no sub-fields")
            cls = ann


def validate(spec_cls: type[Spec], data: dict) -> Spec:
    try:
        return spec_cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = err["loc"][:-1]
            cls = spec_cls
            for p in parent:
                ann = cls.model_fields.get(str(p))
                if ann is None or not isinstance(ann.annotation, type):
                    break
                cls = ann.annotation
            fields = ", ".join(getattr(cls, "model_fields", {}))
            raise UserError(f"unknown field {loc!r}; accepted: {fields}") from None
        got = err.get("input")
        got_s = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
        raise UserError(f"invalid spec field {loc!r}: {msg}{got_s}") from None


def load_toml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"spec file not found: {path}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML: {e}") from None


def spec_hash(spec: Spec) -> str:
    """A short hash of the resolved spec: the same spec always lands in the same run directory."""
    blob = json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]
