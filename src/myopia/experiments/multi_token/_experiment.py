"""``multi-token``: does an n-token objective plan where next-token training cannot?

Three parts (``parts``), each a lab setting trained under several objectives (or formats) and
seeds; a cell is one (part, condition, objective, seed), trained with ``myopia.lab.train`` into
the run's ``work/CELL/train`` (a ``lab:`` checkpoint with the objective's heads beside it,
resumable in chunks), then measured by the task's own held-out evaluation:

- ``path-star`` (Bachmann & Nagarajan 2024): on each graph family, ``ntp``, ``reverse``,
  ``teacherless``, ``mtp:n`` (Gloeckle's parallel heads) and ``mtp-seq:n`` (DeepSeek-V3's
  sequential modules), parameter-matched. Whole-path greedy accuracy, the first hard step's
  (the node after the source), and the accuracy at every path position under generation and
  under teacher forcing; the diagnosis tells "Clever Hans" (later steps right under teacher
  forcing, the first at 1/d) from "not converged" and says whether the objective escapes 1/d.
- ``addition`` (serial depth, ``seeds/004``): one 2-layer model per answer format (plain,
  reversed, k pause tokens, a scratchpad of column digits and carries, and ``mtp:2`` on the
  plain format) trained on a mix of n-digit sums; exact-match and first-digit accuracy by n.
- ``names`` (Gloeckle's induction benchmark, adapted): speaker names replaced by random
  two-token names; accuracy on the second token of a name at its repeat mentions in held-out
  plays, and the model's next-token loss on held-out text (the cost of the heads), ``ntp`` vs
  ``mtp:2`` and ``mtp-seq:2`` at equal parameters.

Headline figures (``summary.json``, typed in :mod:`._summary`): per part, condition and
objective, the metrics as mean with a 95% t-interval over seeds; path-star's ``diagnosis`` and
``escapes_chance``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .._base import Cell, CellContext, Experiment, Tables, register
from ._clever_hans import later_teacher_forced, position_rows
from ._induction import names_row
from ._serial_depth import digit_rows
from ._spec import MultiTokenSpec, format_setting, graph_setting


def _safe(name: str) -> str:
    return name.replace(":", "-")


@register
class MultiTokenExperiment(Experiment):
    name = "multi-token"
    spec_cls = MultiTokenSpec
    summary = "ntp vs mtp:n vs mtp-seq:n vs teacherless vs reverse: path-star, serial depth on addition, two-token names"
    quick = {  # ~3 min on two cores: path-star G(2,3) ntp vs reverse, addition n=3 plain vs reversed, one seed
        "parts": ["path-star", "addition"],
        "path_star.graphs": [{"degree": 2, "path_len": 3, "n_nodes": 20}],
        "path_star.objectives": ["ntp", "reverse"],
        "path_star.model_overrides": {"n_layer": 4},
        "path_star.seeds": [0],
        "path_star.steps": 500,
        "addition.task": {"name": "addition", "n_digits": 3},
        "addition.formats": ["plain", "reversed"],
        "addition.seeds": [0],
        "addition.steps": 500,
        "addition.eval_every": 250,
    }
    quick_order = 45

    def cells(self, spec: MultiTokenSpec) -> list[Cell]:
        cells = []
        if "path-star" in spec.parts:
            p = spec.path_star
            cells += [
                Cell(f"path-star__{g.id}__{_safe(o)}__s{s}", params={"part": "path-star", "condition": g.id, "objective": o, "seed": s})
                for g in p.graphs for o in p.objectives for s in p.seeds
            ]
        if "addition" in spec.parts:
            a = spec.addition
            cells += [
                Cell(f"addition__{_safe(f)}__s{s}", params={"part": "addition", "condition": f, "seed": s})
                for f in a.formats for s in a.seeds
            ]
        if "names" in spec.parts:
            n = spec.names
            cells += [
                Cell(f"names__{_safe(o)}__s{s}", params={"part": "names", "condition": "names", "objective": o, "seed": s})
                for o in n.objectives for s in n.seeds
            ]
        return cells

    def run_cell(self, cell: Cell, spec: MultiTokenSpec, ctx: CellContext) -> Tables:
        from .._myopia_gap_train import train_cell
        from ...lab._checkpoint import read_log

        p = cell.params
        part, condition, seed = p["part"], p["condition"], p["seed"]
        setting, objective = self._training(spec, part, condition, p.get("objective"))
        t0 = time.time()
        cfg, result = train_cell(setting, objective, seed, Path(ctx.work_dir), spec.threads, ctx.progress)
        key = {"part": part, "condition": condition, "objective": objective, "seed": seed}
        log = read_log(Path(result.out_dir) / "train_log.parquet")
        tables: Tables = {
            "curves": [_curve_row(key, r, cfg) for r in log],
            "heads": [{**key, "step": int(r["step"]), "head": int(k[len("loss_head"):]), "loss": v}
                      for r in log for k, v in r.items() if k.startswith("loss_head")],
        }
        m = result.metrics
        path_star = part == "path-star"
        final: dict[str, Any] = {  # the same keys for every part: the merged table keeps them all
            **key, "model": setting.model, "steps": result.steps, "eval_loss": result.eval_loss,
            "n_params": result.n_params, "train_seconds": result.wall_s, "cell_seconds": time.time() - t0,
            "threads": spec.threads, "checkpoint": str(result.out_dir) if setting.keep_weights else None,
            **{k: m.get(k) for k in ("accuracy", "first_step_accuracy", "first_digit_accuracy")},
            "degree": cfg.task.degree if path_star else None,
            "later_teacher_forced": later_teacher_forced(m, cfg.task.path_len) if path_star else None,
        }
        if path_star:
            tables["positions"] = position_rows(key, m, cfg.task.path_len)
        elif part == "addition":
            tables["digits"] = digit_rows(key, m, cfg.task.digit_range)
        else:
            tables["names"] = [names_row(key, m, result.eval_loss)]
        tables["finals"] = [final]
        if not setting.keep_weights:
            for f in Path(result.out_dir).glob("*.safetensors"):
                f.unlink()
        return tables

    @staticmethod
    def _training(spec: MultiTokenSpec, part: str, condition: str, objective: str | None):
        if part == "path-star":
            graph = next(g for g in spec.path_star.graphs if g.id == condition)
            return graph_setting(spec.path_star, graph), objective
        if part == "addition":
            return format_setting(spec.addition, condition)
        return spec.names, objective

    # -- results ------------------------------------------------------------------------
    def summarize(self, tables: Tables, spec: MultiTokenSpec) -> dict:
        from ._summary import summarize

        return summarize(tables, spec).model_dump(mode="json")

    def summary_rows(self, summary: dict) -> tuple[list[str], list[list[Any]]]:
        from ._summary import summary_rows

        return summary_rows(summary)

    def report(self, tables: Tables, spec: MultiTokenSpec, summary: dict, section) -> None:
        from ._report import report

        report(tables, spec, summary, section)


_CURVE_KEYS = ("loss", "eval_loss", "accuracy", "first_step_accuracy", "first_digit_accuracy", "name_accuracy", "name_accuracy_first")


def _curve_row(key: dict, row: dict, cfg) -> dict:
    """One training-log row: the next-token loss, and the task metrics at eval steps (``None``
    elsewhere); the same keys for every part."""
    out = {**key, "step": int(row["step"])}
    out.update({k: row.get(k) for k in _CURVE_KEYS})
    tf = key["part"] == "path-star" and "teacher_forced_accuracy_0" in row
    out["later_teacher_forced"] = later_teacher_forced(row, cfg.task.path_len) if tf else None
    return out
