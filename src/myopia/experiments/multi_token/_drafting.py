"""Decoding with drafts on a cell's own model: what the extra heads are worth at inference.

A cell trained with ``mtp:n`` or ``mtp-seq:n`` keeps its heads beside its ``lab:`` checkpoint; here
they draft 1..n − 1 tokens per forward pass of the model, which verifies them
(:mod:`myopia.models._speculative`, greedy), on held-out prompts of the cell's own task, side by
side with plain cached greedy decoding of the same model (:func:`measure_drafting`, modes
interleaved prompt by prompt):

- prompts (:func:`held_out_prompts`): a task whose held-out rows have a question (loss masked
  before the answer: path-star, addition) gives the question, and the answer's length is
  generated (as much of it as the model's window holds: path-star's window, the training
  sequence, ends before the goal node); a language-modelling task (loss everywhere: Shakespeare, names) gives the first
  ``text_prompt`` tokens of evenly spaced held-out windows, and ``new_tokens`` are generated;
- per (part, condition, objective, draft), seeds pooled with prompts as the unit
  (:func:`drafting_rows`): tokens per forward pass and the wall-clock speed-up over plain decoding
  (ratios of sums, 95% delta-method intervals), each head's acceptance rate when reached (every
  earlier draft of the pass accepted; Wilson interval), and the share of prompts whose drafted
  output equals plain greedy decoding's (it must be 1).

Wiring (the experiment calls three functions; nothing else here touches the experiment):
``run_cell`` adds ``tables["drafting"] = drafting_records(key, out, task_config, spec.drafting,
spec.threads)`` for a cell whose objective drafts (:func:`drafts`), and ``report`` calls
:func:`drafting_section`; the spec holds a :class:`DraftingSpec` as ``drafting``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from ...models import load_model
from ...models._speculative import load_drafter
from ...models._speculative_measure import measure_drafting, summarize_drafting
from ...tasks import task_from_config

_KEY = ("part", "condition", "objective")


class DraftingSpec(BaseModel):
    """How each drafting cell is measured after training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="measure decoding with drafts on the cells trained with mtp:n / mtp-seq:n")
    prompts: int = Field(16, ge=2, le=10_000, description="held-out prompts per cell (the intervals' unit)")
    text_prompt: int = Field(32, ge=1, description="language-modelling tasks: tokens of a held-out window as prompt")
    new_tokens: int = Field(48, ge=1, description="language-modelling tasks: tokens generated after the prompt")
    repeats: int = Field(1, ge=1, le=10, description="timings per prompt and mode (median)")


def drafts(objective: str) -> bool:
    """Whether a model trained with ``objective`` has heads to draft with (mtp:n / mtp-seq:n, n >= 2)."""
    family, _, n = objective.partition(":")
    return family in ("mtp", "mtp-seq") and n.isdigit() and int(n) >= 2


def held_out_prompts(task, tokenizer, n: int, text_prompt: int, new_tokens: int,
                     window: int | None = None) -> tuple[list[str], int]:
    """(``n`` held-out prompts as text, tokens to generate after each) from a prepared task's
    first evaluation batch; ``window`` (the model's) caps prompt + generated tokens."""
    batch = task.eval_batches(1, n)[0]
    ids, mask = batch.inputs["input_ids"], batch.loss_mask  # (B, T) each
    answers = (mask > 0).sum(dim=1)  # (B,) positions that predict an answer token
    first = (mask > 0).float().argmax(dim=1)  # (B,) the first one
    if int(first.max()) == 0:  # language modelling: the loss counts everywhere
        cut = min(text_prompt, ids.shape[1])
        new = new_tokens if window is None else max(1, min(new_tokens, window - cut - 8))  # re-encoding: a margin
        return [tokenizer.decode(row[:cut].tolist()) for row in ids], new
    prompts = [tokenizer.decode(row[: int(f) + 1].tolist()) for row, f in zip(ids, first)]
    new = int(answers.max())
    if window is not None:  # the model's window holds the question and all but the answer's last token
        new = max(1, min(new, window - int(first.max()) - 1))
    return prompts, new


def drafting_records(key: dict[str, Any], out_dir: str | Path, task_config, spec: DraftingSpec,
                     threads: int | None = None, device: str | None = None) -> list[dict[str, Any]]:
    """One record per held-out prompt and mode (0 = plain, 1..n − 1 drafted tokens) for the cell's
    model in ``out_dir`` (loaded on ``device``, where it trained; None: the CPU), the cell's ``key``
    (part, condition, objective, seed) added."""
    if not spec.enabled or not drafts(key["objective"]):
        return []
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        lm = load_model(f"lab:{out_dir}", device=device)
        task = task_from_config(task_config)  # the task the cell trained on (its tokenizer is the model's)
        task.prepare()
        prompts, new = held_out_prompts(task, lm.tokenizer, spec.prompts, spec.text_prompt, spec.new_tokens,
                                        getattr(lm, "max_length", None))
        modes = list(range(1, load_drafter(lm).max_draft + 1))
        records = measure_drafting(lm, prompts, modes, new, repeats=spec.repeats)
    finally:
        torch.set_num_threads(previous)
    return [{**key, **r} for r in records]


def drafting_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (part, condition, objective) and draft length, seeds pooled (prompts as the unit): the
    rows of :func:`summarize_drafting` with the key in front."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in _KEY), []).append({**r, "prompt": (r["seed"], r["prompt"])})
    out = []
    for key, rs in groups.items():
        seeds = len({r["seed"] for r in rs})
        for row in summarize_drafting(rs):
            out.append({**dict(zip(_KEY, key)), "seeds": seeds, **row})
    return out


def _ci(r: dict[str, Any]) -> str:
    if r["ci_low"] is None:
        return f"{r['value']:.2f}"
    return f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"


def drafting_table(records: list[dict[str, Any]]) -> tuple[list[str], list[list]]:
    """(headers, rows) of the report's drafting table."""
    headers = ["part", "condition", "objective", "draft", "prompts", "tokens / forwards", "tokens per forward",
               "acceptance by head (accepted/reached)", "speed-up vs plain", "same as plain"]
    rows = []
    for r in drafting_rows(records):
        heads = "; ".join(f"h{h['head']} {h['rate']:.2f} [{h['ci_low']:.2f}, {h['ci_high']:.2f}] "
                          f"({h['accepted']}/{h['reached']})" for h in r["heads"]) or "—"
        rows.append([r["part"], r["condition"], r["objective"], "plain" if r["draft"] == 0 else r["draft"],
                     r["prompts"], f"{r['tokens']} / {r['forwards']}", _ci(r["tokens_per_forward"]), heads,
                     _ci(r["speedup"]), f"{r['same_as_plain']:.0%}"])
    return headers, rows


def drafting_section(tables: dict[str, list[dict]], section) -> None:
    """The report's part on decoding with drafts (nothing when no cell drafted)."""
    records = tables.get("drafting") or []
    if not records:
        return
    section.text(
        "Decoding with drafts: each mtp:n / mtp-seq:n cell's extra heads draft k tokens per forward pass of "
        "its model, which verifies them (greedy: the longest drafted prefix equal to the model's argmax is kept, "
        "plus the model's next token); plain = cached greedy decoding of the same model, one token per pass, "
        "timed side by side (modes interleaved per prompt, batch 1). Head h's rate counts its draft when every "
        "earlier draft of the pass was accepted. Intervals: 95%, prompts as the unit (seeds pooled): delta "
        "method for tokens per forward and the speed-up, Wilson for the rates. 'same as plain' must be 100%."
    )
    section.table(*drafting_table(records), caption="Decoding with drafts on held-out prompts of each cell's task")
