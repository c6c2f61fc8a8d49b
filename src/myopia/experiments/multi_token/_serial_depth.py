"""Addition: exact-match and first-digit accuracy by number of digits, and every answer digit's
accuracy, from the task's metrics.

``AdditionTask.evaluate`` reports the greedy exact-match accuracy of the answer and of its most
significant digit (which depends on every carry), overall and, for a mix of digit counts, per n
(``accuracy_nN``, ``first_digit_accuracy_nN``); and per n the accuracy of each answer digit, most
significant first whatever the format (``digit_accuracy_nN_J``). Where a model fails is then
read off the answer: at the top digit (the carry chain), or in the middle (the columns).
"""

from __future__ import annotations

from typing import Any


def digit_rows(key: dict[str, Any], metrics: dict[str, float], digits: range) -> list[dict]:
    """One row per n: exact-match and most-significant-digit accuracy."""
    if len(digits) == 1:  # one n: the overall figures are that n's
        n = digits.start
        return [
            {
                **key,
                "n_digits": n,
                "accuracy": metrics.get("accuracy"),
                "first_digit_accuracy": metrics.get("first_digit_accuracy"),
            }
        ]
    return [
        {
            **key,
            "n_digits": n,
            "accuracy": metrics.get(f"accuracy_n{n}"),
            "first_digit_accuracy": metrics.get(f"first_digit_accuracy_n{n}"),
        }
        for n in digits
    ]


def answer_digit_rows(key: dict[str, Any], metrics: dict[str, float], digits: range) -> list[dict]:
    """One row per n and answer digit (position 0 = the most significant of the n + 1)."""
    return [
        {**key, "n_digits": n, "position": j, "accuracy": metrics[f"digit_accuracy_n{n}_{j}"]}
        for n in digits
        for j in range(n + 1)
        if f"digit_accuracy_n{n}_{j}" in metrics
    ]
