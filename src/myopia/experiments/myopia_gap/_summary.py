"""The myopia-gap headline (``summary.json``): per setting, the final held-out loss of every
objective and its gap to ``ntp``, with 95% t-intervals over seeds; from the merged tables alone."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ...report import interval
from ...stats import T_INTERVAL, t_interval
from .._base import Headline, Sparse, TableRow, Tables
from ._spec import MyopiaGapSpec

CI = f"{T_INTERVAL}; gaps paired by seed"


class Interval(BaseModel):
    """A mean over seeds with its 95% t-interval (mean ± t(n-1)·sd/√n); no interval for one
    seed (``ci_low``/``ci_high`` null)."""

    model_config = ConfigDict(extra="forbid")

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int = Field(description="seeds in the mean")


class FinalLoss(Interval):
    """An objective's held-out loss at the end of training (Huber for precache, cross-entropy
    in nats per token for text), over its seeds."""

    seeds: list[int] = Field(description="the seeds that finished")


class SettingFigures(Sparse):
    """One setting's figures; ``base`` and ``reproduced`` are present only where they apply."""

    task: str = Field(description="the lab task")
    model: str = Field(description="the lab preset, or the pretrained model fine-tuned")
    final: dict[str, FinalLoss] = Field(description="objective -> held-out loss at the end of training")
    gap: dict[str, Interval] = Field(
        description="objective -> its loss minus ntp's, paired by seed (gap['myopic'] is the myopia gap)"
    )
    base: float | None = Field(None, description="pretrained only: held-out loss before fine-tuning")
    reproduced: bool | None = Field(
        None, description="precache only: vanilla < 0.1 and myopic > 0.5 (null when either did not run)"
    )


class GapRow(TableRow):
    setting: str
    objective: str
    seeds: int | None = Field(None, title="seeds")
    final_loss: float | str | None = Field(
        None, title="final loss", description="mean held-out loss; 'yes'/'NO' on the 'reproduced?' row"
    )
    final_ci: str = Field("", title="95% CI")
    gap: float | None = Field(None, title="gap vs ntp")
    gap_ci: str = Field("", title="gap 95% CI")


class MyopiaGapHeadline(Headline):
    settings: dict[str, SettingFigures] = Field(description="setting name -> its figures, in the spec's order")
    precache_reproduced: bool | None = Field(description="the precache finding reproduced (null: precache not run)")
    myopic_variants: list[str] = Field(description="the myopic objectives listed in any setting")
    ci: str = Field(description="what the intervals are")

    def rows(self) -> list[GapRow]:
        rows = []
        for name, s in self.settings.items():
            for obj, f in s.final.items():
                g = s.gap.get(obj)
                rows.append(
                    GapRow(
                        setting=name,
                        objective=obj,
                        seeds=f.n,
                        final_loss=f.mean,
                        final_ci=interval(f.ci_low, f.ci_high),
                        gap=g.mean if g else None,
                        gap_ci=interval(g.ci_low, g.ci_high) if g else "",
                    )
                )
            if s.base is not None:
                rows.append(GapRow(setting=name, objective="(before fine-tuning)", final_loss=s.base))
        if self.precache_reproduced is not None:
            verdict = "yes" if self.precache_reproduced else "NO"
            rows.append(GapRow(setting="precache", objective="reproduced?", final_loss=verdict))
        return rows


def summarize(tables: Tables, spec: MyopiaGapSpec) -> MyopiaGapHeadline:
    finals = tables.get("finals", [])
    settings: dict[str, SettingFigures] = {}
    for name in spec.settings:
        recs = [r for r in finals if r["condition"] == name]
        if recs:
            settings[name] = _setting(name, recs)
    variants = sorted({o for s in spec.settings for o in spec.setting(s).objectives if o.startswith("myopic")})
    precache = settings.get("precache")
    return MyopiaGapHeadline(
        settings=settings,
        precache_reproduced=precache.reproduced if precache else None,
        myopic_variants=variants,
        ci=CI,
    )


def _setting(name: str, recs: list[dict]) -> SettingFigures:
    by_obj: dict[str, dict[int, float]] = {}  # objective -> seed -> final held-out loss
    for r in recs:
        by_obj.setdefault(r["objective"], {})[r["seed"]] = r["eval_loss"]
    final = {o: FinalLoss(**t_interval(list(v.values())), seeds=sorted(v)) for o, v in by_obj.items()}
    gap = {}
    for o, v in by_obj.items():
        if o != "ntp" and "ntp" in by_obj:
            gap[o] = Interval(**t_interval([v[s] - by_obj["ntp"][s] for s in v if s in by_obj["ntp"]]))
    figures = SettingFigures(task=recs[0]["task"], model=recs[0]["model"], final=final, gap=gap)
    bases = [r["base_eval_loss"] for r in recs if r.get("base_eval_loss") is not None]
    if bases:
        figures.base = sum(bases) / len(bases)
    if name == "precache":
        myo = next((o for o in ("myopic", "myopic:hidden") if o in final), None)
        ntp = final.get("ntp")
        figures.reproduced = None if ntp is None or myo is None else bool(ntp.mean < 0.1 and final[myo].mean > 0.5)
    return figures
