"""Tasks for the lab: each a typed config and a class building :class:`Batch` es
reproducibly from a seed.

``get_task(name, **config)``: ``precache`` (CPU scale) / ``precache-paper`` (Wu et al.'s
values), ``path-star`` / ``path-star-paper`` (Bachmann & Nagarajan's G(2,5), N=50), ``addition``,
``shakespeare``, ``shakespeare-names`` (random two-token speaker names, the name-induction
metric), ``text:PATH``, ``game`` (Shakespeare with seeds/001's game mixed in).
"""

from ._addition import AdditionConfig, AdditionTask
from ._base import Batch, Task, TaskConfig, greedy_complete
from ._game import GameConfig, GameTask, branch_probabilities, prefix_logprobs, token_bytes
from ._names import ShakespeareNamesConfig, ShakespeareNamesTask
from ._pathstar import PathStarConfig, PathStarTask
from ._precache import PrecacheConfig, PrecacheTask
from ._registry import TASKS, get_task, task_config, task_from_config, task_names
from ._text import ShakespeareConfig, TextConfig, TextTask

__all__ = [
    "AdditionConfig",
    "AdditionTask",
    "Batch",
    "GameConfig",
    "GameTask",
    "PathStarConfig",
    "PathStarTask",
    "PrecacheConfig",
    "PrecacheTask",
    "ShakespeareConfig",
    "ShakespeareNamesConfig",
    "ShakespeareNamesTask",
    "TASKS",
    "Task",
    "TaskConfig",
    "TextConfig",
    "TextTask",
    "branch_probabilities",
    "get_task",
    "greedy_complete",
    "prefix_logprobs",
    "task_config",
    "task_from_config",
    "task_names",
    "token_bytes",
]
