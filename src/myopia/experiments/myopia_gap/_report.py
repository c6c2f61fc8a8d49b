"""The myopia-gap report section: the headline table, the configurations with their measured
training times, and the figures (loss curves, the gap over training, loss and gap by position)."""

from __future__ import annotations

from ...report import plt
from ...stats import t_interval
from .._base import Tables
from ._spec import MyopiaGapSpec
from ._summary import CI, MyopiaGapHeadline


def report(tables: Tables, spec: MyopiaGapSpec, summary: MyopiaGapHeadline, section) -> None:
    variants = ", ".join(summary.myopic_variants) or "none"
    section.text(
        "Vanilla (ntp) vs. myopic training on the same task, model, budget and seeds. Final loss = "
        "held-out loss at the end of training (Huber for precache, cross-entropy in nats per token for "
        f"text). Myopic variant(s): {variants} ('myopic' is strict: no gradient reaches positions "
        "before t, key/value projections included; 'myopic:hidden' is Wu et al.'s released variant). "
        f"bigram = no attention to other positions. Intervals: {CI}."
    )
    section.table(*summary.table(), caption="Final held-out loss per setting and objective")
    rows = []
    for name in spec.settings:
        st = spec.setting(name)
        secs = [r["train_seconds"] for r in tables.get("finals", []) if r["condition"] == name]
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
                       caption="The gap over training: held-out loss minus ntp's, paired by seed "
                       "(band: 95% t-interval)")
    if tables.get("positions"):
        section.figure(positions_figure(tables["positions"], spec.settings),
                       caption="Final held-out loss by position (mean over seeds, band: 95% t-interval); "
                       "dashed: the pretrained model before fine-tuning")
        section.figure(position_gap_figure(tables["positions"], spec.settings),
                       caption="The final gap by position: loss minus ntp's at each position, paired by seed "
                       "(band: 95% t-interval)")


def _task_text(task: dict) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in task.items() if k != "name")
    return f"{task.get('name')}" + (f" ({rest})" if rest else "")


_COLORS = {"ntp": "#1f77b4", "myopic": "#d62728", "myopic:hidden": "#ff7f0e", "bigram": "#7f7f7f"}


def _figure(settings: list[str], present: set[str], draw, xlabel: str, ylabel: str, *, zero: bool = False):
    """One panel per setting present, in ``settings`` order; ``draw(name, ax)`` fills a panel.
    ``zero`` draws the y = 0 line (gap figures); precache's losses are drawn on log axes."""
    names = [s for s in settings if s in present]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.6 * max(1, len(names)), 3.8), squeeze=False)
    for name, ax in zip(names, axes[0]):
        draw(name, ax)
        if zero:
            ax.axhline(0, color="black", lw=0.8)
        elif name == "precache":
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _by_x(per_seed: dict[int, dict[int, float]]) -> tuple[list[int], list[list[float]]]:
    """{seed: {x: value}} -> (sorted xs, the values of every seed at each x)."""
    xs = sorted({x for v in per_seed.values() for x in v})
    return xs, [[v[x] for v in per_seed.values() if x in v] for x in xs]


def _band(ax, xs, groups: list[list[float]], color, label, ls="-", floor: float | None = None):
    """Plot the mean of each group with its 95% t-interval as a band (clipped at ``floor``
    on log axes, where a band below zero cannot be drawn)."""
    stats = [t_interval(g) for g in groups]
    keep = [(x, s) for x, s in zip(xs, stats) if s["mean"] is not None]
    if not keep:
        return
    x = [k for k, _ in keep]
    ax.plot(x, [s["mean"] for _, s in keep], color=color, label=label, ls=ls, lw=1.6)
    if all(s["ci_low"] is not None for _, s in keep):
        low = [s["ci_low"] if floor is None else max(s["ci_low"], floor) for _, s in keep]
        ax.fill_between(x, low, [s["ci_high"] for _, s in keep], color=color, alpha=0.2, lw=0)


def _floor(setting: str, groups: list[list[float]]) -> float | None:
    """The lowest value drawn on precache's log axes: a third of the smallest observation."""
    if setting != "precache":
        return None
    vals = [v for g in groups for v in g if v > 0]
    return min(vals) / 3 if vals else None


def _eval_series(curves: list[dict], setting: str) -> dict[str, dict[int, dict[int, float]]]:
    """{objective: {seed: {step: eval_loss}}} for one setting."""
    out: dict[str, dict[int, dict[int, float]]] = {}
    for r in curves:
        if r["condition"] == setting and r.get("eval_loss") is not None:
            out.setdefault(r["objective"], {}).setdefault(r["seed"], {})[r["step"]] = r["eval_loss"]
    return out


def curves_figure(curves: list[dict], settings: list[str]):
    def draw(name, ax):
        for obj, seeds in _eval_series(curves, name).items():
            steps, groups = _by_x(seeds)
            _band(ax, steps, groups, _COLORS.get(obj), obj, floor=_floor(name, groups))

    return _figure(settings, {r["condition"] for r in curves}, draw, "step", "held-out loss")


def gap_figure(curves: list[dict], settings: list[str]):
    def draw(name, ax):
        series = _eval_series(curves, name)
        base = series.get("ntp", {})
        for obj, seeds in series.items():
            if obj == "ntp":
                continue
            paired = {
                sd: {s: v[s] - base[sd][s] for s in v if s in base[sd]} for sd, v in seeds.items() if sd in base
            }
            steps, groups = _by_x(paired)
            _band(ax, steps, groups, _COLORS.get(obj), f"{obj} − ntp")

    present = {r["condition"] for r in curves}
    return _figure(settings, present, draw, "step", "gap (held-out loss − ntp's)", zero=True)


def positions_figure(positions: list[dict], settings: list[str]):
    def draw(name, ax):
        recs = [r for r in positions if r["condition"] == name]
        keys = sorted({(r["stage"], r["objective"]) for r in recs}, key=lambda k: (k[0] != "base", k[1]))
        for stage, obj in keys:
            by_seed: dict[int, dict[int, float]] = {}
            for r in recs:
                if (r["stage"], r["objective"]) == (stage, obj):
                    by_seed.setdefault(r["seed"], {})[r["position"]] = r["loss"]
            pos, groups = _by_x(by_seed)
            if stage == "base":
                _band(ax, pos, groups, "black", "before fine-tuning", ls="--")
            else:
                _band(ax, pos, groups, _COLORS.get(obj), obj, floor=_floor(name, groups))

    return _figure(settings, {r["condition"] for r in positions}, draw, "position", "held-out loss")


def position_gap_figure(positions: list[dict], settings: list[str]):
    """The final gap by position: each objective's loss minus ntp's at that position, paired
    by seed (the window-to-window noise that all objectives share cancels)."""
    finals = [r for r in positions if r["stage"] == "final"]

    def draw(name, ax):
        table: dict[tuple[str, int], dict[int, float]] = {}
        for r in finals:
            if r["condition"] == name:
                table.setdefault((r["objective"], r["seed"]), {})[r["position"]] = r["loss"]
        for obj in sorted({o for o, _ in table if o != "ntp"}):
            paired = {
                s: {p: v - table[("ntp", s)][p] for p, v in table[(obj, s)].items() if p in table[("ntp", s)]}
                for o, s in table
                if o == obj and ("ntp", s) in table
            }
            pos, groups = _by_x(paired)
            _band(ax, pos, groups, _COLORS.get(obj), f"{obj} − ntp")

    present = {r["condition"] for r in finals}
    return _figure(settings, present, draw, "position", "gap (loss − ntp's at that position)", zero=True)
