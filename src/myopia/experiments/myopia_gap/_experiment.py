"""``myopia-gap``: how much loss does a model lose when it cannot pre-cache?

Vanilla (``ntp``) vs. myopic training (and the ``bigram`` baseline, no attention to other
positions) on the same task, model and budget, over several seeds (Wu, Morris & Levine
2024). Myopic descent keeps only the gradient of the loss at t with respect to the
computation at t, so features computed at t for the sake of later positions are never
rewarded. Three settings, each a list of objectives x seeds, one cell per (setting,
objective, seed):

- ``precache``: the synthetic task at CPU scale (DESIGN.md): vanilla learns it (Huber loss
  near 0), myopic stays near the trivial loss; reproduced when vanilla < 0.1 and myopic > 0.5;
- ``shakespeare``: natural text; the gap in nats per token, by position and over training;
- ``pretrained``: fine-tune a pretrained model (bundled ``gemma-3-270m`` by default, or any
  ``hf:`` model) vanilla vs. myopically for the same steps (Wu et al.: 0.04-0.23 nats on Pythia).

``myopic`` is the strict variant (no gradient reaches positions < t, key/value projections
included); list ``myopic:hidden`` to use Wu et al.'s released variant instead. The headline
(``summary.json``) is :class:`~._summary.MyopiaGapHeadline`.
"""

from __future__ import annotations

import time
from pathlib import Path

from ...lab import TrainResult, is_preset, read_log, train_cell
from ...models import check_spec
from .._base import Cell, CellContext, Experiment, Tables
from ._loss import held_out_task, trained_loss_by_position
from ._report import report
from ._spec import QUICK, GapSetting, MyopiaGapSpec
from ._summary import MyopiaGapHeadline, summarize


class MyopiaGap(Experiment):
    spec_cls = MyopiaGapSpec
    summary_cls = MyopiaGapHeadline
    about = "vanilla vs. myopic (vs. bigram) training: the myopia gap on precache, text and a pretrained model"
    quick = QUICK
    quick_order = 40

    def check(self, spec: MyopiaGapSpec) -> None:
        for name in spec.settings:
            model = spec.setting(name).model
            if not is_preset(model):
                check_spec(model)

    def cells(self, spec: MyopiaGapSpec) -> list[Cell]:
        return [
            Cell(
                id=f"{name}__{obj.replace(':', '-')}__s{seed}",
                params={"setting": name, "objective": obj, "seed": seed},
            )
            for name in spec.settings
            for obj in spec.setting(name).objectives
            for seed in spec.setting(name).seeds
        ]

    def run_cell(self, cell: Cell, spec: MyopiaGapSpec, ctx: CellContext) -> Tables:
        name, objective, seed = cell.params["setting"], cell.params["objective"], cell.params["seed"]
        setting = spec.setting(name)
        key = {"condition": name, "objective": objective, "seed": seed}
        t0 = time.time()
        # 1. train (or resume, or find finished) the cell's model in work/CELL/train, in chunks
        cfg, result = train_cell(setting, objective, seed, ctx.work_dir, spec.threads, ctx.progress, ctx.device)
        out = Path(result.out_dir)
        log = read_log(out / "train_log.parquet")
        curves = [
            {**key, "step": int(r["step"]), "loss": float(r["loss"]), "eval_loss": r.get("eval_loss")} for r in log
        ]
        # 2. its held-out loss by position; a pretrained model's also before fine-tuning (once per seed)
        ctx.progress(0, note=f"{objective} s{seed}: loss by position")
        task, base = held_out_task(cfg, want_base=objective == setting.objectives[0])
        by_pos = trained_loss_by_position(out, cfg, task)
        positions = [{**key, "stage": "final", "position": i, "loss": v} for i, v in enumerate(by_pos)]
        if base is not None:
            positions += [{**key, "stage": "base", "position": i, "loss": v} for i, v in enumerate(base)]
        if not setting.keep_weights:
            for f in out.glob("model*.safetensors"):
                f.unlink()
        # 3. the final figures of the cell
        final = _final_record(key, setting, cfg.task.name, result, log, base, spec.threads, time.time() - t0)
        return {"curves": curves, "positions": positions, "finals": [final]}

    def summarize(self, tables: Tables, spec: MyopiaGapSpec) -> MyopiaGapHeadline:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: MyopiaGapSpec, summary: MyopiaGapHeadline, section) -> None:
        report(tables, spec, summary, section)


def _final_record(
    key: dict,
    setting: GapSetting,
    task: str,
    result: TrainResult,
    log: list[dict],
    base: list[float] | None,
    threads: int,
    cell_seconds: float,
) -> dict:
    tail = [r["loss"] for r in log[-max(1, len(log) // 20) :]]
    return {
        **key,
        "model": setting.model,
        "task": task,
        "steps": result.steps,
        "eval_loss": result.eval_loss,
        "train_loss_tail": sum(tail) / len(tail),  # mean training loss of the last 5% of steps
        "base_eval_loss": None if base is None else sum(base) / len(base),
        "n_params": result.n_params,
        "tokens_per_s": result.tokens_per_s,
        "train_seconds": result.wall_s,
        "cell_seconds": cell_seconds,
        "threads": threads,
        "checkpoint": str(Path(result.out_dir)) if setting.keep_weights else None,
    }
