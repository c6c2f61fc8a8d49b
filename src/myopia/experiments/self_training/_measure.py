"""A round's measures on fixed held-out inputs, and the flat table rows they become.

The held-out inputs are the same for every round, condition and seed: ``heldout_windows`` windows
of the held-out plays (the task's evaluation windows) and ``heldout_prompts`` prompts of
``prompt_tokens`` tokens between them. Samples are drawn with the same generator seeds every
round (common random numbers), so a change between rounds is the model's, not the draw's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...lab.selftrain import game_measures, generator, sample_measures, text_measures
from ._spec import SelfTrainingSpec

SAMPLE_STREAM, GAME_STREAM = 101, 102
TEXT_KEYS = ("xent_per_char", "xent_per_token", "entropy_per_char", "top1_accuracy", "ece")
SAMPLE_KEYS = ("entropy_per_char", "distinct_1", "distinct_2", "repetition", "seq_rep_4", "degenerate_beats_samples",
               "sample_logprob_median", "degenerate_logprob", "marker_share")
GAME_KEYS = ("exact_one", "exact_zero", "exact_other", "exact_zero_word", "sampled_one", "sampled_one_low",
             "sampled_one_high", "sampled_zero", "sampled_zero_low", "sampled_zero_high", "sampled_other",
             "sampled_valid", "sampled_valid_low", "sampled_valid_high")


@dataclass
class HeldOut:
    windows: list[torch.Tensor]  # (T+1,) each: real text
    prompts: list[torch.Tensor]  # (P,) each

    def texts(self, tokenizer) -> tuple[list[str], list[str]]:
        """The same inputs as text (for models with other tokenizers)."""
        decode = tokenizer.batch_decode
        return decode([w.tolist() for w in self.windows]), decode([p.tolist() for p in self.prompts])


def held_out(task, spec: SelfTrainingSpec) -> HeldOut:
    """Windows and prompts from the task's held-out text (the same for every cell)."""
    task.prepare()
    b = task.eval_batches(1, spec.heldout_windows)[0]
    windows = torch.cat([b.inputs["input_ids"], b.targets[:, -1:]], dim=1)  # (N, T+1)
    n, P = spec.heldout_prompts, spec.prompt_tokens
    gap = (task.stream_length("val") - P - 1) / n
    starts = [int(gap * (i + 0.5)) for i in range(n)]  # between the windows' starts, not on them
    return HeldOut(list(windows), list(task.text_windows("val", starts, P)))


def round_measures(model, task, inputs: HeldOut, spec: SelfTrainingSpec, seed: int) -> dict[str, Any]:
    """Text, own samples and each game variant, keyed by part."""
    out: dict[str, Any] = {
        "text": text_measures(model, task.tokenizer, inputs.windows),
        "samples": sample_measures(model, task.tokenizer, inputs.prompts, spec.sample_tokens,
                                   generator(seed, SAMPLE_STREAM), unit=spec.degenerate, n_examples=spec.examples,
                                   marker=task.instruction_marker()),
    }
    for i, v in enumerate(task.config.variants):
        out[v] = game_measures(model, task, v, spec.game_samples, generator(seed, GAME_STREAM, i),
                               max_new=spec.shared.answer_tokens, n_examples=spec.examples)
    return out


TRAIN_KEYS = ("kept_logprob", "drawn_logprob", "drawn_reward", "kept_reward", "reward", "kl")


def flat_row(record: dict, key: dict) -> dict[str, Any]:
    """One round's ``round.json`` -> a table row: the measures (``text_*``, ``samples_*``,
    ``word_*``, ``random_*``) and the round's training statistics. Every row has every column
    (None where a round has no such figure), so rows of all conditions make one table."""
    m = record.get("measures", {})
    row: dict[str, Any] = {**key, "round": record["round"]}
    row.update({f"text_{k}": m.get("text", {}).get(k) for k in TEXT_KEYS})
    row.update({f"samples_{k}": m.get("samples", {}).get(k) for k in SAMPLE_KEYS})
    for variant in ("word", "random"):
        row.update({f"{variant}_{k}": m.get(variant, {}).get(k) for k in GAME_KEYS})
    for part in ("text", "word", "random"):
        row.update({f"train_{part}_{k}": record.get(part, {}).get(k) for k in TRAIN_KEYS})
    row.update({k: record.get(k) for k in ("train_loss", "train_rows")})
    return row


def example_rows(record: dict, key: dict) -> list[dict]:
    """The texts a round shows: its samples from held-out prompts, its game answers, and what it
    trained on (kept or rewarded completions)."""
    rows = []
    m = record.get("measures", {})
    for part, source in (("samples", "held-out samples"), ("word", "game: word"), ("random", "game: random")):
        for i, t in enumerate(m.get(part, {}).get("examples", [])):
            rows.append({**key, "round": record["round"], "source": source, "index": i, "text": t})
    for part in ("text", "word", "random"):
        for i, t in enumerate(record.get(part, {}).get("examples", [])):
            rows.append({**key, "round": record["round"], "source": f"trained on: {part}", "index": i, "text": t})
    return rows
