"""TOML for specs: read a ``--set`` value, write a resolved spec back (the standard library
reads TOML but does not write it)."""

from __future__ import annotations

import json
import tomllib
from typing import Any


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value if it parses as one (``3``, ``1e-3``, ``true``,
    ``"x"``, ``["a", "b"]``), else the string itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def to_toml(data: dict) -> str:
    """Scalars and arrays first, then one ``[table]`` per nested dict; ``None`` is left out."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _table(data: dict, prefix: list[str], lines: list[str]) -> None:
    for k, v in data.items():
        if v is not None and not isinstance(v, dict):
            lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            lines += ["", "[" + ".".join(_key(p) for p in prefix + [k]) + "]"]
            _table(v, prefix + [k], lines)


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def toml_literal(v: Any) -> str:
    """One value as TOML source (for building ``--set`` overrides from Python values)."""
    return _value(v)
