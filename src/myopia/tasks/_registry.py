"""Task names -> task classes: ``get_task(name, **config)``."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .._errors import UserError
from ._addition import AdditionConfig, AdditionTask
from ._base import Task, TaskConfig
from ._game import GameConfig, GameTask
from ._names import ShakespeareNamesConfig, ShakespeareNamesTask
from ._pathstar import PAPER as PATH_STAR_PAPER
from ._pathstar import PathStarConfig, PathStarTask
from ._precache import PAPER, PrecacheConfig, PrecacheTask
from ._text import ShakespeareConfig, TextConfig, TextTask

# name -> (task class, config class, default field values)
TASKS: dict[str, tuple[type[Task], type[TaskConfig], dict[str, Any]]] = {
    "precache": (PrecacheTask, PrecacheConfig, {}),
    "precache-paper": (PrecacheTask, PrecacheConfig, PAPER),
    "path-star": (PathStarTask, PathStarConfig, {}),
    "path-star-paper": (PathStarTask, PathStarConfig, PATH_STAR_PAPER),
    "addition": (AdditionTask, AdditionConfig, {}),
    "shakespeare": (TextTask, ShakespeareConfig, {}),
    "shakespeare-names": (ShakespeareNamesTask, ShakespeareNamesConfig, {}),
    "text": (TextTask, TextConfig, {}),
    "game": (GameTask, GameConfig, {}),
}


def task_names() -> list[str]:
    return [n if n != "text" else "text:PATH" for n in TASKS]


def split_name(name: str) -> tuple[str, dict[str, Any]]:
    """``"text:PATH"`` -> ("text", {"path": PATH}); other names unchanged."""
    if name.startswith("text:"):
        return "text", {"path": name[len("text:") :]}
    return name, {}


def task_config(name: str, **config: Any) -> TaskConfig:
    """The validated, typed config of task ``name`` with the given field values."""
    base, implied = split_name(name)
    if base not in TASKS:
        raise UserError(f"unknown task {name!r}; tasks: {', '.join(task_names())}")
    _, cfg_cls, defaults = TASKS[base]
    fields = {**defaults, **implied, **{k: v for k, v in config.items() if k != "name"}}
    unknown = sorted(set(fields) - set(cfg_cls.model_fields))
    if "pauses" in unknown:
        raise UserError(
            f"task {name!r} takes no pause tokens (pauses): they go between a question and its answer, "
            "which only 'addition' has"
        )
    if unknown:
        accepted = ", ".join(f for f in cfg_cls.model_fields if f != "name")
        raise UserError(f"task {name!r} has no field {unknown[0]!r}; accepted: {accepted}")
    try:
        return cfg_cls(name=defaults.get("name", base), **{k: v for k, v in fields.items() if k != "name"})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "config"
        raise UserError(f"task {name!r}: {where}: {err['msg']}") from None


def get_task(name: str, **config: Any) -> Task:
    """A task by name (``precache``, ``precache-paper``, ``path-star``, ``path-star-paper``, ``addition``,
    ``shakespeare``, ``shakespeare-names``, ``text:PATH``, ``game``) with typed config fields; unknown
    names or fields -> UserError."""
    return task_from_config(task_config(name, **config))


def task_from_config(cfg: TaskConfig) -> Task:
    return TASKS[cfg.name][0](cfg)
