"""``multi-token``: does an n-token objective plan where next-token training cannot?

Three parts (``parts``), each a lab setting trained under several objectives (or formats) and
seeds; a cell is one (part, condition, objective, seed), trained with :func:`myopia.lab.train_cell`
into the run's ``work/CELL/train`` (a ``lab:`` checkpoint with the objective's heads beside it,
resumable in chunks), then measured by the task's own held-out evaluation at the end of training:

- ``path-star`` (Bachmann & Nagarajan 2024): on each graph family, ``ntp``, ``reverse``,
  ``teacherless``, ``mtp:n`` (Gloeckle's parallel heads) and ``mtp-seq:n`` (DeepSeek-V3's
  sequential modules), parameter-matched. Whole-path greedy accuracy, the first hard step's (the
  node after the source), and the accuracy at every path position under generation and under
  teacher forcing (``_clever_hans``); the diagnosis tells the Clever-Hans plateau from a model
  that has not converged and says whether the objective escapes 1/d.
- ``addition`` (serial depth, ``seeds/004``): one 2-layer model per answer format (plain,
  reversed, k pause tokens, a scratchpad of column digits and carries, and ``mtp:2`` on the plain
  format) trained on a mix of n-digit sums; exact-match and first-digit accuracy by n (``_serial_depth``).
- ``names`` (Gloeckle's induction benchmark, adapted): speaker names replaced by random two-token
  names; accuracy on the second token of a name at its repeat mentions in held-out plays, and head
  1's next-token loss on held-out text (the cost of the extra heads), ``ntp`` vs ``mtp:2`` and
  ``mtp-seq:2`` at equal parameters (``_induction``).

The headline (``summary.json``) is :class:`~._summary.MultiTokenHeadline`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...lab import TrainResult, TrainSetting, is_preset, read_log, train_cell, train_config
from ...models import check_spec
from ...tasks import task_from_config
from .._base import Cell, CellContext, Experiment, Tables, slug
from ._clever_hans import later_teacher_forced, position_rows
from ._drafting import drafting_records, drafts
from ._induction import names_row
from ._report import report
from ._serial_depth import answer_digit_rows, digit_rows
from ._spec import QUICK, MultiTokenSpec
from ._summary import MultiTokenHeadline, summarize

# the training log's columns every part's curves keep (None where a part has no such metric)
CURVE_KEYS = (
    "loss", "eval_loss", "accuracy", "first_step_accuracy", "first_digit_accuracy", "name_accuracy",
    "name_accuracy_first",
)  # fmt: skip


class MultiTokenExperiment(Experiment):
    spec_cls = MultiTokenSpec
    summary_cls = MultiTokenHeadline
    about = "ntp vs mtp:n vs mtp-seq:n vs teacherless vs reverse: path-star, serial depth on addition, two-token names"
    quick = QUICK
    quick_order = 45

    def check(self, spec: MultiTokenSpec) -> None:
        """Pretrained models exist; the names part's task can make its names (its BPE and names are
        built now, once, and cached: a name length the tokenizer cannot make stops the run here)."""
        for setting, _ in spec.trainings().values():
            if not is_preset(setting.model):
                check_spec(setting.model)
        if "names" in spec.parts:
            task_from_config(train_config(spec.names.setting(), "ntp", 0, None, None).task).prepare()

    def cells(self, spec: MultiTokenSpec) -> list[Cell]:
        cells = []
        if "path-star" in spec.parts:
            p = spec.path_star
            cells += [
                Cell(
                    id=f"path-star__{g.id}__{slug(o)}__s{s}",
                    params={"part": "path-star", "condition": g.id, "objective": o, "seed": s},
                )
                for g in p.graphs
                for o in p.objectives
                for s in p.seeds
            ]
        if "addition" in spec.parts:
            a = spec.addition
            cells += [
                Cell(id=f"addition__{slug(f)}__s{s}", params={"part": "addition", "condition": f, "seed": s})
                for f in a.formats
                for s in a.seeds
            ]
        if "names" in spec.parts:
            n = spec.names
            cells += [
                Cell(
                    id=f"names__{slug(o)}__s{s}",
                    params={"part": "names", "condition": "names", "objective": o, "seed": s},
                )
                for o in n.objectives
                for s in n.seeds
            ]
        return cells

    def run_cell(self, cell: Cell, spec: MultiTokenSpec, ctx: CellContext) -> Tables:
        p = cell.params
        part, condition, seed = p["part"], p["condition"], p["seed"]
        setting, objective = _training(spec, part, condition, p.get("objective"))
        keep = spec.part(part).keep_weights
        t0 = time.time()
        # 1. train (or resume, or find finished) the cell's model in work/CELL/train, in chunks
        cfg, result = train_cell(
            setting, objective, seed, Path(ctx.work_dir), spec.threads, ctx.progress, ctx.device
        )
        out = Path(result.out_dir)
        key = {"part": part, "condition": condition, "objective": objective, "seed": seed}
        # 2. its training log: curves, and the extra heads' (depths') losses
        log = read_log(out / "train_log.parquet")
        tables: Tables = {
            "curves": [_curve_row(key, r, cfg.task) for r in log],
            "heads": [
                {**key, "step": int(r["step"]), "head": int(k[len("loss_head") :]), "loss": v}
                for r in log
                for k, v in r.items()
                if k.startswith("loss_head") and v is not None
            ],
        }
        # 3. the task's metrics at the end of training, per part
        m = result.metrics
        if part == "path-star":
            tables["positions"] = position_rows(key, m, cfg.task.path_len)
        elif part == "addition":
            tables["digits"] = digit_rows(key, m, cfg.task.digit_range)
            tables["answer_digits"] = answer_digit_rows(key, m, cfg.task.digit_range)
        else:
            tables["names"] = [names_row(key, m, result.eval_loss)]
        # 4. decoding with drafts from the cell's own heads (mtp:n, mtp-seq:n), beside plain greedy decoding
        if drafts(objective) and spec.drafting.enabled:
            tables["drafting"] = drafting_records(key, out, cfg.task, spec.drafting, spec.threads, cfg.device)
        tables["finals"] = [_final_record(key, setting, cfg.task, result, keep, spec.threads, time.time() - t0)]
        if not keep:
            for f in out.glob("*.safetensors"):
                f.unlink()
        return tables

    def summarize(self, tables: Tables, spec: MultiTokenSpec) -> MultiTokenHeadline:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: MultiTokenSpec, summary: MultiTokenHeadline, section) -> None:
        report(tables, spec, summary, section)


def _training(spec: MultiTokenSpec, part: str, condition: str, objective: str | None) -> tuple[TrainSetting, str]:
    if part == "path-star":
        return spec.trainings()[(part, f"{condition}/{objective}")]
    if part == "addition":
        return spec.trainings()[(part, condition)]
    return spec.trainings()[(part, objective)]


def _final_record(
    key: dict, setting: TrainSetting, task, result: TrainResult, keep: bool, threads: int, cell_seconds: float
) -> dict[str, Any]:
    """The cell's figures at the end of training; the same keys for every part (the merged table
    keeps them all), None where a part has no such figure."""
    m = result.metrics
    path_star = key["part"] == "path-star"
    return {
        **key,
        "model": setting.model,
        "steps": result.steps,
        "eval_loss": result.eval_loss,  # head 1's (the next-token model's) held-out loss
        "n_params": result.n_params,  # non-embedding, extra heads / depth modules included
        "train_seconds": result.wall_s,
        "cell_seconds": cell_seconds,
        "threads": threads,
        "checkpoint": str(result.out_dir) if keep else None,
        "accuracy": m.get("accuracy"),
        "first_step_accuracy": m.get("first_step_accuracy"),
        "first_digit_accuracy": m.get("first_digit_accuracy"),
        "degree": task.degree if path_star else None,
        "later_teacher_forced": later_teacher_forced(m, task.path_len) if path_star else None,
    }


def _curve_row(key: dict, row: dict, task) -> dict:
    """One training-log row: the next-token loss, and the task metrics at eval steps (None elsewhere)."""
    out = {**key, "step": int(row["step"]), **{k: row.get(k) for k in CURVE_KEYS}}
    forced = key["part"] == "path-star" and row.get("teacher_forced_accuracy_0") is not None
    out["later_teacher_forced"] = later_teacher_forced(row, task.path_len) if forced else None
    return out
