"""Names: the second token of a repeated two-token name, from ``ShakespeareNamesTask.evaluate``.

``name_accuracy``: greedy accuracy on a name's second token at its repeat mentions within a
held-out window (only copying from the earlier mention can predict it); ``name_accuracy_first``:
the same at first mentions (the control: no earlier mention to copy); ``eval_loss``: the model's
next-token loss on held-out text (head 1's, whatever the objective).
"""

from __future__ import annotations

from typing import Any


def names_row(key: dict[str, Any], metrics: dict[str, float], eval_loss: float | None) -> dict:
    return {
        **key,
        "name_accuracy": metrics.get("name_accuracy"),
        "name_accuracy_first": metrics.get("name_accuracy_first"),
        "repeats": metrics.get("name_accuracy_count"),
        "first_mentions": metrics.get("name_accuracy_first_count"),
        "eval_loss": eval_loss,
    }
