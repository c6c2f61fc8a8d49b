"""Addition's answer formats: the sequences and loss masks against hand-built ones, mixed digit
counts, exact-match evaluation by n against an oracle, and the one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from myopia import UserError
from myopia.tasks import get_task
from myopia.tasks._addition import EQ, PAD, PAUSE, PLUS, SEP


def _hand(tokens: str) -> list[int]:
    """'5 7 + 6 8 = P P 1 2 5' -> ids (P: <pause>, |: the scratchpad's end, _: <pad>)."""
    table = {"+": PLUS, "=": EQ, "P": PAUSE, "|": SEP, "_": PAD}
    return [table[t] if t in table else int(t) for t in tokens.split()]


def _one(task, n: int, a: int, b: int):
    """The batch of the single pair (a, b) with n digits."""
    return task._to_batch(task._rows(np.array([n]), np.array([a * 10**n + b])), np.array([n]))


CASES = [  # format, pauses, the sequence of 57 + 68, how many tokens are given before generation
    ("plain", 0, "5 7 + 6 8 = 1 2 5", 6),
    ("reversed", 0, "7 5 + 8 6 = 5 2 1", 6),
    ("plain", 2, "5 7 + 6 8 = P P 1 2 5", 8),
    ("reversed", 3, "7 5 + 8 6 = P P P 5 2 1", 9),
    ("scratchpad", 0, "5 7 + 6 8 = 5 1 2 1 | 1 2 5", 6),  # 7+8=15: 5 carry 1; 5+6+1=12: 2 carry 1
    ("scratchpad", 1, "5 7 + 6 8 = P 5 1 2 1 | 1 2 5", 7),
]


@pytest.mark.parametrize("fmt,pauses,text,given", CASES)
def test_sequences_and_loss_masks_match_hand_built_ones(fmt, pauses, text, given):
    task = get_task("addition", n_digits=2, format=fmt, pauses=pauses)
    b = _one(task, 2, 57, 68)
    ids = _hand(text)
    assert b.inputs["input_ids"][0].tolist() == ids[:-1]
    assert b.targets[0].tolist() == ids[1:]
    # loss on what the model generates (scratchpad, '|', answer), never on the pauses or the question
    want = [0.0] * (given - 1) + [1.0] * (len(ids) - given)
    assert b.loss_mask[0].tolist() == want
    assert task.seq_len == len(ids) - 1


def test_mixed_digit_counts_are_right_padded_without_loss():
    task = get_task("addition", n_digits=3, min_digits=2, format="scratchpad", pauses=1)
    b = _one(task, 2, 57, 68)
    ids = _hand("5 7 + 6 8 = P 5 1 2 1 | 1 2 5 _ _ _ _ _")  # a 3-digit row is 5 tokens longer
    assert task.seq_len == len(ids) - 1
    assert b.inputs["input_ids"][0].tolist() == ids[:-1] and b.targets[0].tolist() == ids[1:]
    assert b.loss_mask[0].tolist() == [0.0] * 6 + [1.0] * 8 + [0.0] * 5
    batch = task.train_batch(0, 64, 0)
    for r in range(64):  # each row: a valid sum of its own width, pads only at the end, no loss there
        ids = batch.inputs["input_ids"][r].tolist() + [batch.targets[r, -1].item()]
        n = ids.index(PLUS)
        assert n in (2, 3)
        length = 3 * n + 3 + 1 + 2 * n + 1
        assert all(t == PAD for t in ids[length:]) and PAD not in ids[:length]
        a, bb = int("".join(map(str, ids[:n]))), int("".join(map(str, ids[n + 1 : 2 * n + 1])))
        assert int("".join(map(str, ids[length - n - 1 : length]))) == a + bb
        assert batch.loss_mask[r].sum().item() == 2 * n + 1 + n + 1
        assert batch.loss_mask[r, length - 1 :].sum().item() == 0
    assert {2, 3} == {row.tolist().index(PLUS) for row in batch.inputs["input_ids"]}


class _Oracle(torch.nn.Module):
    """Predicts the true next token of each test sequence it is prompted with (greedy = truth),
    optionally with the first answer digit wrong for the n in ``wrong_first``."""

    def __init__(self, task, wrong_first=()):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.task, self.wrong_first = task, set(wrong_first)
        self.full = {}
        for n, codes in task._test_codes.items():
            for row in task.sequences(codes, n):
                self.full[tuple(row[: task.n_prefix(n)].tolist())] = (n, row.tolist())

    def forward(self, input_ids):
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.task.vocab_size)
        for r in range(B):
            ids = input_ids[r].tolist()
            n, row = next(v for k, v in self.full.items() if tuple(ids[: len(k)]) == k and len(ids) >= len(k))
            nxt = row[T]
            if n in self.wrong_first and T == len(row) - n - 1:  # the most significant answer digit
                nxt = (nxt + 1) % 10
            logits[r, -1, nxt] = 1.0
        return type("Out", (), {"logits": logits})()


@pytest.mark.parametrize("fmt", ["plain", "scratchpad"])
def test_evaluation_by_n_against_an_oracle(fmt):
    task = get_task("addition", n_digits=3, min_digits=1, format=fmt, pauses=1, n_test=12)
    assert task.evaluate(_Oracle(task)) == {
        "accuracy": 1.0,
        "first_digit_accuracy": 1.0,
        **{f"{m}_n{n}": 1.0 for n in (1, 2, 3) for m in ("accuracy", "first_digit_accuracy")},
        **{f"digit_accuracy_n{n}_{j}": 1.0 for n in (1, 2, 3) for j in range(n + 1)},
    }
    m = task.evaluate(_Oracle(task, wrong_first=[2]))
    assert m["accuracy_n2"] == 0.0 and m["first_digit_accuracy_n2"] == 0.0
    assert m["accuracy_n1"] == m["accuracy_n3"] == 1.0
    assert m["accuracy"] == pytest.approx(2 / 3)
    # per answer digit: only n = 2's most significant digit is wrong
    assert [m[f"digit_accuracy_n2_{j}"] for j in range(3)] == [0.0, 1.0, 1.0]
    assert all(m[f"digit_accuracy_n{n}_{j}"] == 1.0 for n in (1, 3) for j in range(n + 1))


def test_reversed_answers_are_compared_most_significant_first():
    task = get_task("addition", n_digits=2, format="reversed", n_test=10)
    preds = task.predictions(_Oracle(task))
    pred, truth = preds[2]
    codes = task._test_codes[2]
    sums = codes // 100 + codes % 100
    assert [int("".join(map(str, r.tolist()))) for r in truth] == sums.tolist()
    assert torch.equal(pred, truth)
    m = task.evaluate(_Oracle(task, wrong_first=[2]))  # the first generated digit is the least significant
    assert m["accuracy"] == 0.0 and m["first_digit_accuracy"] == 1.0
    assert [m[f"digit_accuracy_n2_{j}"] for j in range(3)] == [1.0, 1.0, 0.0]  # the units digit, last read


def test_one_line_errors():
    with pytest.raises(UserError, match=r"task 'shakespeare' takes no pause tokens \(pauses\).*only 'addition'"):
        get_task("shakespeare", pauses=2)
    with pytest.raises(UserError, match=r"task 'path-star' takes no pause tokens"):
        get_task("path-star", pauses=2)
    with pytest.raises(UserError, match=r"format"):
        get_task("addition", format="pause")
    with pytest.raises(UserError, match=r"min_digits=4 is more than n_digits=3"):
        get_task("addition", n_digits=3, min_digits=4)
    with pytest.raises(UserError, match=r"pauses"):
        get_task("addition", pauses=-1)
