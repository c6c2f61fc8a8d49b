"""``myopia-gap``: how much loss does a model lose when it cannot pre-cache?

Vanilla (``ntp``) vs. myopic training (and the ``bigram`` baseline, no attention to other
positions) on the same task, model and budget, over several seeds (Wu, Morris & Levine
2024). Myopic descent keeps only the gradient of the loss at t with respect to the
computation at t, so features computed at t for the sake of later positions are never
rewarded. Three settings, each a list of objectives x seeds trained by ``myopia.lab.train``:

- ``precache``: the synthetic task at CPU scale (DESIGN.md): vanilla learns it (Huber loss
  near 0), myopic stays near the trivial loss; reproduced when vanilla < 0.1 and myopic > 0.5;
- ``shakespeare``: natural text; the gap in nats per token, by position and over training;
- ``pretrained``: fine-tune a pretrained model (bundled ``gemma-3-270m`` by default, or any
  ``hf:`` model) vanilla vs. myopically for the same steps (Wu et al.: 0.04-0.23 nats on Pythia).

``myopic`` is the strict variant (no gradient reaches positions < t, key/value projections
included); list ``myopic:hidden`` to use Wu et al.'s released variant instead.

Headline figures (``summary.json``), per setting in ``settings[NAME]``:

- ``final[OBJECTIVE]``: held-out loss at the end of training, ``mean`` with its 95%
  t-interval over seeds (``ci_low``, ``ci_high``, ``n``; no interval for one seed);
- ``gap[OBJECTIVE]``: that objective's loss minus ``ntp``'s, paired by seed, with its interval
  (``gap["myopic"]`` is the myopia gap, in nats per token for text);
- ``base``: the pretrained model's loss before fine-tuning (``pretrained`` only);
- ``reproduced`` (``precache`` only): vanilla < 0.1 and myopic > 0.5.

and at the top level ``precache_reproduced``, ``myopic_variants`` and ``ci``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ..._errors import UserError
from ...lab import TrainSetting, is_preset, over_defaults
from ...models import check_spec
from ...objectives import get_objective
from ...stats import T_INTERVAL, t_interval
from .._base import Cell, CellContext, Experiment, Spec, Tables, untyped_headline
from ._cell import cell_tables
from ._report import curves_figure, gap_figure, position_gap_figure, positions_figure

SETTINGS = ("precache", "shakespeare", "pretrained")
CI = f"{T_INTERVAL}; gaps paired by seed"


class GapSetting(TrainSetting):
    """One task x model x budget, trained under each objective with each seed."""

    objectives: list[str] = Field(default_factory=lambda: ["ntp", "myopic", "bigram"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    keep_weights: bool = Field(True, description="keep each cell's trained model (lab:DIR) in the run's work/")

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[str]) -> list[str]:
        for name in v:
            try:
                get_objective(name)
            except UserError as e:
                raise ValueError(str(e)) from None
        if len(set(v)) != len(v):
            raise ValueError("objectives are listed twice")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or min(v) < 0:
            raise ValueError("seeds must be distinct non-negative integers")
        return v


def _precache() -> GapSetting:
    return GapSetting()  # DESIGN.md's CPU setting: K=6, sin(2x), p=1, length 32, llama-tiny, 1,500 steps


def _shakespeare() -> GapSetting:
    return GapSetting(
        task={"name": "shakespeare", "seq_len": 64},
        steps=1000,
        batch_size=16,
        eval_every=100,
        eval_batches=8,
    )


def _pretrained() -> GapSetting:
    return GapSetting(
        task={"name": "shakespeare", "seq_len": 64},
        model="gemma-3-270m",
        objectives=["ntp", "myopic"],
        seeds=[0],
        steps=40,
        batch_size=8,
        lr=2e-5,
        schedule="cosine",
        eval_every=10,
        eval_batches=2,
        chunk=0,
        keep_weights=False,
        train={"warmup_steps": 4},
    )


class MyopiaGapSpec(Spec):
    settings: list[str] = Field(default_factory=lambda: list(SETTINGS), min_length=1)
    precache: GapSetting = Field(default_factory=_precache)
    shakespeare: GapSetting = Field(default_factory=_shakespeare)
    pretrained: GapSetting = Field(default_factory=_pretrained)
    threads: int = Field(1, ge=1, description="torch threads per training (DESIGN.md: one is fastest on 2 shared cores)")

    @field_validator("precache", "shakespeare", "pretrained", mode="before")
    @classmethod
    def _over_defaults(cls, v: Any, info) -> Any:
        """A partial table (``--set pretrained.steps=10``) overrides that setting's own defaults."""
        defaults = {"precache": _precache, "shakespeare": _shakespeare, "pretrained": _pretrained}[info.field_name]
        return over_defaults(defaults, v)

    @field_validator("settings")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in SETTINGS]
        if bad:
            raise ValueError(f"unknown setting(s) {', '.join(bad)}; accepted: {', '.join(SETTINGS)}")
        return v

    def setting(self, name: str) -> GapSetting:
        return getattr(self, name)


class MyopiaGap(Experiment):
    spec_cls = MyopiaGapSpec
    about = "vanilla vs. myopic (vs. bigram) training: the myopia gap on precache, text and a pretrained model"
    quick = {  # the precache finding in ~2.5 min on 2 idle cores (800 steps: vanilla 0.020, myopic 0.88)
        "settings": ["precache"],
        "precache.seeds": [0, 1],
        "precache.objectives": ["ntp", "myopic"],
        "precache.steps": 800,
    }
    quick_order = 40

    def check(self, spec: MyopiaGapSpec) -> None:
        for name in spec.settings:
            model = spec.setting(name).model
            if not is_preset(model):
                check_spec(model)

    def cells(self, spec: MyopiaGapSpec) -> list[Cell]:
        return [
            Cell(id=f"{name}__{obj.replace(':', '-')}__s{seed}", params={"setting": name, "objective": obj, "seed": seed})
            for name in spec.settings
            for obj in spec.setting(name).objectives
            for seed in spec.setting(name).seeds
        ]

    def run_cell(self, cell: Cell, spec: MyopiaGapSpec, ctx: CellContext) -> Tables:
        p = cell.params
        setting = spec.setting(p["setting"])
        return cell_tables(setting, p["setting"], p["objective"], p["seed"], ctx.work_dir, spec.threads, ctx.progress)

    # -- results ------------------------------------------------------------------------
    def summarize(self, tables: Tables, spec: MyopiaGapSpec):
        return self.summary_cls(**self.summary_dict(tables, spec))

    def summary_dict(self, tables: Tables, spec: MyopiaGapSpec) -> dict:
        finals = tables.get("finals", [])
        out: dict[str, Any] = {}
        for name in spec.settings:
            recs = [r for r in finals if r["condition"] == name]
            if not recs:
                continue
            by_obj: dict[str, dict[int, float]] = {}
            for r in recs:
                by_obj.setdefault(r["objective"], {})[r["seed"]] = r["eval_loss"]
            final = {o: {**t_interval(list(v.values())), "seeds": sorted(v)} for o, v in by_obj.items()}
            gap = {}
            for o, v in by_obj.items():
                if o != "ntp" and "ntp" in by_obj:
                    paired = [v[s] - by_obj["ntp"][s] for s in v if s in by_obj["ntp"]]
                    gap[o] = t_interval(paired)
            entry: dict[str, Any] = {"task": recs[0]["task"], "model": recs[0]["model"], "final": final, "gap": gap}
            bases = [r["base_eval_loss"] for r in recs if r.get("base_eval_loss") is not None]
            if bases:
                entry["base"] = sum(bases) / len(bases)
            if name == "precache":
                myo = next((o for o in ("myopic", "myopic:hidden") if o in final), None)
                entry["reproduced"] = (
                    None
                    if "ntp" not in final or myo is None
                    else bool(final["ntp"]["mean"] < 0.1 and final[myo]["mean"] > 0.5)
                )
            out[name] = entry
        variants = sorted({o for s in spec.settings for o in spec.setting(s).objectives if o.startswith("myopic")})
        return {
            "settings": out,
            "precache_reproduced": out.get("precache", {}).get("reproduced"),
            "myopic_variants": variants,
            "ci": CI,
        }

    def summary_rows(self, summary: dict) -> tuple[list[str], list[list[Any]]]:
        header = ["setting", "objective", "seeds", "final loss", "95% CI", "gap vs ntp", "gap 95% CI"]
        rows = []
        for name, s in summary.get("settings", {}).items():
            for obj, f in s["final"].items():
                g = s["gap"].get(obj, {})
                rows.append([name, obj, f["n"], f["mean"], _ci(f), g.get("mean"), _ci(g) if g else ""])
            if "base" in s:
                rows.append([name, "(before fine-tuning)", "", s["base"], "", "", ""])
        if summary.get("precache_reproduced") is not None:
            rows.append(["precache", "reproduced?", "", "yes" if summary["precache_reproduced"] else "NO", "", "", ""])
        return header, rows

    def report(self, tables: Tables, spec: MyopiaGapSpec, summary, section) -> None:
        summary = summary.model_dump()
        variants = ", ".join(summary.get("myopic_variants", [])) or "none"
        section.text(
            "Vanilla (ntp) vs. myopic training on the same task, model, budget and seeds. Final loss = "
            "held-out loss at the end of training (Huber for precache, cross-entropy in nats per token for "
            f"text). Myopic variant(s): {variants} ('myopic' is strict: no gradient reaches positions "
            "before t, key/value projections included; 'myopic:hidden' is Wu et al.'s released variant). "
            f"bigram = no attention to other positions. Intervals: {CI}."
        )
        section.table(*self.summary_rows(summary), caption="Final held-out loss per setting and objective")
        rows = []
        for name in spec.settings:
            st = spec.setting(name)
            recs = [r for r in tables.get("finals", []) if r["condition"] == name]
            secs = [r["train_seconds"] for r in recs]
            rows.append([name, _task_text(st.task), st.model, st.steps, st.batch_size, st.lr, st.schedule,
                         f"{sum(secs) / len(secs):.0f}" if secs else "", spec.threads])
        section.table(
            ["setting", "task", "model", "steps", "batch", "lr", "schedule", "train s/cell", "threads"],
            rows,
            caption="Configurations and measured training time per cell",
        )
        if tables.get("curves"):
            section.figure(curves_figure(tables["curves"], spec.settings),
                           caption="Held-out loss over training (mean over seeds, band: 95% t-interval)")
            section.figure(gap_figure(tables["curves"], spec.settings),
                           caption="The gap over training: held-out loss minus ntp's, paired by seed (band: 95% t-interval)")
        if tables.get("positions"):
            section.figure(positions_figure(tables["positions"], spec.settings),
                           caption="Final held-out loss by position (mean over seeds, band: 95% t-interval); "
                           "dashed: the pretrained model before fine-tuning")
            section.figure(position_gap_figure(tables["positions"], spec.settings),
                           caption="The final gap by position: loss minus ntp's at each position, paired by seed "
                           "(band: 95% t-interval)")


def _ci(d: dict) -> str:
    if d.get("ci_low") is None:
        return ""
    return f"[{d['ci_low']:.3g}, {d['ci_high']:.3g}]"


def _task_text(task: dict) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in task.items() if k != "name")
    return f"{task.get('name')}" + (f" ({rest})" if rest else "")


MyopiaGap.summary_cls = untyped_headline(MyopiaGap().summary_rows)  # TRANSITIONAL (issue 10)
