"""Path-star: accuracy by path position under generation and teacher forcing, and the diagnosis
that tells the Clever-Hans plateau from a model that is not trained yet.

The task's evaluation (``PathStarTask.evaluate``) reports, in source-to-goal order, the greedy
accuracy at every path position (``generated_accuracy_i``) and the teacher-forced one
(``teacher_forced_accuracy_i``). Only the first step after the source is hard: a model that
learned the cheat "each node is the successor of the previous true node" gets every later step
right under teacher forcing and the first one right 1/d of the time. The later steps are the
positions 2 .. l-1; the last of them is the goal, which the prompt also names, so on G(d,3) it is
the only later step and the diagnosis says little there.
"""

from __future__ import annotations

from typing import Any

SOLVED = 0.9  # whole-path accuracy of a solved task
CHEAT = 0.9  # teacher-forced accuracy after the first step that shows the cheat was learned
MARGIN = 0.05  # one seed has no interval: escaping 1/d then means a mean this far above it


def position_rows(key: dict[str, Any], metrics: dict[str, float], path_len: int) -> list[dict]:
    """One row per path position (0 = source): accuracy under generation and teacher forcing."""
    return [
        {
            **key,
            "position": i,
            "generated": metrics.get(f"generated_accuracy_{i}"),
            "teacher_forced": metrics.get(f"teacher_forced_accuracy_{i}"),
        }
        for i in range(path_len)
    ]


def later_teacher_forced(metrics: dict[str, float], path_len: int) -> float | None:
    """Mean teacher-forced accuracy at the positions after the first hard step (2 .. l-1)."""
    values = [metrics.get(f"teacher_forced_accuracy_{i}") for i in range(2, path_len)]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def escapes_chance(accuracy: dict, degree: int) -> bool | None:
    """Whole-path accuracy above 1/d: the interval's lower end above it (one seed: the mean
    ``MARGIN`` above it)."""
    if accuracy.get("mean") is None:
        return None
    if accuracy.get("ci_low") is not None:
        return accuracy["ci_low"] > 1 / degree
    return accuracy["mean"] > 1 / degree + MARGIN


def diagnose(accuracy: dict, later_tf: dict, degree: int, teacher_forced: bool = True) -> str:
    """One of: solved (whole path >= ``SOLVED``); escapes 1/d; Clever Hans (not escaping, and the
    later steps right under teacher forcing: the model learned the cheat and guesses the first
    step); not converged (the later steps not learned yet: a short run can sit below 1/d for this
    reason, not the cheat's); not learned (``teacher_forced=False``: teacherless training never
    feeds the true path, so there is no cheat to learn and no teacher-forced reading); no result.
    ``accuracy`` and ``later_tf`` are interval dicts (``mean``, ``ci_low``, ``ci_high``) over seeds."""
    acc, tf = accuracy.get("mean"), later_tf.get("mean")
    if acc is None:
        return "no result"
    if acc >= SOLVED:
        return "solved"
    if escapes_chance(accuracy, degree):
        return "escapes 1/d"
    if not teacher_forced:
        return "not learned"
    if tf is not None and tf >= CHEAT:
        return "Clever Hans"
    return "not converged"
