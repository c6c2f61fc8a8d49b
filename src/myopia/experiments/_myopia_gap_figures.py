"""Figures for ``myopia-gap``: loss curves, the gap over training, loss by position."""

from __future__ import annotations

from ._myopia_gap_train import t_interval

_COLORS = {"ntp": "#1f77b4", "myopic": "#d62728", "myopic:hidden": "#ff7f0e", "bigram": "#7f7f7f"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(settings: list[str], present: set[str]):
    plt = _plt()
    names = [s for s in settings if s in present]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.6 * max(1, len(names)), 3.8), squeeze=False)
    return fig, list(zip(names, axes[0]))


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
    fig, panels = _panels(settings, {r["condition"] for r in curves})
    for name, ax in panels:
        series = _eval_series(curves, name)
        for obj, seeds in series.items():
            steps = sorted({s for v in seeds.values() for s in v})
            groups = [[v[s] for v in seeds.values() if s in v] for s in steps]
            _band(ax, steps, groups, _COLORS.get(obj), obj, floor=_floor(name, groups))
        if name == "precache":
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("held-out loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gap_figure(curves: list[dict], settings: list[str]):
    fig, panels = _panels(settings, {r["condition"] for r in curves})
    for name, ax in panels:
        series = _eval_series(curves, name)
        base = series.get("ntp", {})
        for obj, seeds in series.items():
            if obj == "ntp":
                continue
            steps = sorted({s for v in seeds.values() for s in v})
            groups = [[seeds[sd][s] - base[sd][s] for sd in seeds if sd in base and s in seeds[sd] and s in base[sd]] for s in steps]
            _band(ax, steps, groups, _COLORS.get(obj), f"{obj} − ntp")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("gap (held-out loss − ntp's)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def positions_figure(positions: list[dict], settings: list[str]):
    fig, panels = _panels(settings, {r["condition"] for r in positions})
    for name, ax in panels:
        recs = [r for r in positions if r["condition"] == name]
        keys = sorted({(r["stage"], r["objective"]) for r in recs}, key=lambda k: (k[0] != "base", k[1]))
        for stage, obj in keys:
            by_seed: dict[int, dict[int, float]] = {}
            for r in recs:
                if (r["stage"], r["objective"]) == (stage, obj):
                    by_seed.setdefault(r["seed"], {})[r["position"]] = r["loss"]
            pos = sorted({p for v in by_seed.values() for p in v})
            groups = [[v[p] for v in by_seed.values() if p in v] for p in pos]
            if stage == "base":
                _band(ax, pos, groups, "black", "before fine-tuning", ls="--")
            else:
                _band(ax, pos, groups, _COLORS.get(obj), obj, floor=_floor(name, groups))
        if name == "precache":
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("position")
        ax.set_ylabel("held-out loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def position_gap_figure(positions: list[dict], settings: list[str]):
    """The final gap by position: each objective's loss minus ntp's at that position, paired
    by seed (the window-to-window noise that all objectives share cancels)."""
    finals = [r for r in positions if r["stage"] == "final"]
    fig, panels = _panels(settings, {r["condition"] for r in finals})
    for name, ax in panels:
        table: dict[tuple[str, int], dict[int, float]] = {}
        for r in finals:
            if r["condition"] == name:
                table.setdefault((r["objective"], r["seed"]), {})[r["position"]] = r["loss"]
        objectives = sorted({o for o, _ in table if o != "ntp"})
        for obj in objectives:
            seeds = [s for o, s in table if o == obj and ("ntp", s) in table]
            pos = sorted(table[(obj, seeds[0])]) if seeds else []
            groups = [[table[(obj, s)][p] - table[("ntp", s)][p] for s in seeds] for p in pos]
            _band(ax, pos, groups, _COLORS.get(obj), f"{obj} − ntp")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("position")
        ax.set_ylabel("gap (loss − ntp's at that position)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
