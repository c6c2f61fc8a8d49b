"""Re-calling a module with the arguments a hook saw, some of them replaced."""

from __future__ import annotations

import inspect
from typing import Any, Callable


def recall(forward: Callable[..., Any], first: Any, args: tuple, kwargs: dict, **overrides: Any) -> Any:
    """Call ``forward`` as it was called (``args``, ``kwargs``), with ``first`` as its first
    argument and each override applied where the signature has that parameter, whether it was
    passed by position or by name (GPT-2 passes ``past_key_values`` by position)."""
    bound = inspect.signature(forward).bind(first, *args[1:], **kwargs)
    for name, value in overrides.items():
        if name in inspect.signature(forward).parameters:
            bound.arguments[name] = value
    return forward(*bound.args, **bound.kwargs)
