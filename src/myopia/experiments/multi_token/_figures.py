"""Figures for ``multi-token``: accuracy by objective, path-star accuracy by path position,
the addition heatmap, name induction, and training curves."""

from __future__ import annotations

from .._myopia_gap_train import t_interval
from ._summary import MultiTokenSummary


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(names: list[str]) -> dict[str, str]:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


def _err(iv) -> tuple[float, float]:
    if iv.mean is None or iv.ci_low is None:
        return 0.0, 0.0
    return iv.mean - iv.ci_low, iv.ci_high - iv.mean


def _bars(ax, labels: list[str], series: list[tuple[str, list]], colors: list[str]) -> None:
    """Grouped bars: one group per label, one bar per series (name, intervals), with error bars."""
    width = 0.8 / len(series)
    for j, ((name, ivs), color) in enumerate(zip(series, colors)):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
        errs = list(zip(*[_err(iv) for iv in ivs])) or [[], []]
        ax.bar(xs, [iv.mean or 0 for iv in ivs], width, yerr=errs, color=color, label=name, capsize=2)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)


def accuracy_figure(summary: dict):
    """Per task: path-star whole path and first step by objective (one panel per graph, 1/d
    dashed); addition exact match by n per format; names at repeat mentions by objective."""
    s = MultiTokenSummary.model_validate(summary)
    graphs = list(dict.fromkeys(r.graph for r in s.path_star))
    panels = len(graphs) + bool(s.addition) + bool(s.names)
    plt = _plt()
    fig, axes = plt.subplots(1, max(1, panels), figsize=(4.4 * max(1, panels), 3.8), squeeze=False)
    axes = list(axes[0])
    for g in graphs:
        ax = axes.pop(0)
        rows = [r for r in s.path_star if r.graph == g]
        _bars(ax, [r.objective for r in rows], [("whole path", [r.accuracy for r in rows]),
                                                ("first step", [r.first_step for r in rows])], ["#1f77b4", "#ff7f0e"])
        ax.axhline(rows[0].chance, color="black", ls="--", lw=1, label="1/d")
        ax.set_title(f"path-star {g}")
        ax.set_ylabel("greedy accuracy")
        ax.legend(fontsize=7)
    if s.addition:
        ax = axes.pop(0)
        formats = list(dict.fromkeys(r.format for r in s.addition))
        for fmt, color in _colors(formats).items():
            rows = sorted((r for r in s.addition if r.format == fmt), key=lambda r: r.n_digits)
            ax.errorbar([r.n_digits for r in rows], [r.accuracy.mean for r in rows],
                        yerr=list(zip(*[_err(r.accuracy) for r in rows])), color=color, marker="o", capsize=2, label=fmt)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("digits n")
        ax.set_ylabel("exact-match accuracy")
        ax.set_title("addition")
        ax.legend(fontsize=7)
    if s.names:
        ax = axes.pop(0)
        _bars(ax, [r.objective for r in s.names], [("repeat mentions", [r.name_accuracy for r in s.names]),
                                                   ("first mentions", [r.name_accuracy_first for r in s.names])],
              ["#2ca02c", "#7f7f7f"])
        ax.set_title("names: second token")
        ax.set_ylabel("greedy accuracy")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def positions_figure(positions: list[dict]):
    """Per graph: accuracy at each path position (0 = source), generated (solid) vs teacher
    forced (dashed), mean over seeds with 95% intervals."""
    graphs = list(dict.fromkeys(r["condition"] for r in positions))
    objectives = list(dict.fromkeys(r["objective"] for r in positions))
    colors = _colors(objectives)
    plt = _plt()
    fig, axes = plt.subplots(1, len(graphs), figsize=(4.8 * len(graphs), 3.8), squeeze=False)
    for g, ax in zip(graphs, axes[0]):
        for o in objectives:
            recs = [r for r in positions if r["condition"] == g and r["objective"] == o]
            xs = sorted({r["position"] for r in recs})
            for kind, ls in (("generated", "-"), ("teacher_forced", "--")):
                stats = [t_interval([r[kind] for r in recs if r["position"] == x]) for x in xs]
                ax.plot(xs, [st["mean"] for st in stats], ls=ls, color=colors[o], marker="o", ms=3,
                        label=f"{o} ({'generated' if kind == 'generated' else 'teacher-forced'})")
                if all(st["ci_low"] is not None for st in stats):
                    ax.fill_between(xs, [st["ci_low"] for st in stats], [st["ci_high"] for st in stats], color=colors[o], alpha=0.12, lw=0)
        ax.set_xticks(xs)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("path position (0 = source, 1 = the first hard step)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"path-star {g}")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def addition_heatmap(summary: dict):
    """Mean exact-match accuracy, digits (columns) x format (rows), values written in."""
    s = MultiTokenSummary.model_validate(summary)
    formats = list(dict.fromkeys(r.format for r in s.addition))
    digits = sorted({r.n_digits for r in s.addition})
    grid = [[next((r.accuracy.mean for r in s.addition if r.format == f and r.n_digits == n), None) for n in digits] for f in formats]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.0 * len(digits) + 2.5, 0.55 * len(formats) + 1.5))
    ax.imshow([[v if v is not None else float("nan") for v in row] for row in grid], vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if v is not None:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(len(digits)))
    ax.set_xticklabels(digits)
    ax.set_yticks(range(len(formats)))
    ax.set_yticklabels(formats)
    ax.set_xlabel("digits n")
    ax.set_title("addition: exact-match accuracy")
    fig.tight_layout()
    return fig


def names_figure(summary: dict):
    """Second-token accuracy at repeat vs first mentions, and the held-out next-token loss, by objective."""
    s = MultiTokenSummary.model_validate(summary)
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.6))
    labels = [r.objective for r in s.names]
    _bars(a, labels, [("repeat mentions", [r.name_accuracy for r in s.names]),
                      ("first mentions", [r.name_accuracy_first for r in s.names])], ["#2ca02c", "#7f7f7f"])
    a.set_ylabel("second-token accuracy")
    a.set_title("name induction (held-out plays)")
    a.legend(fontsize=7)
    errs = list(zip(*[_err(r.eval_loss) for r in s.names])) or [[], []]
    b.bar(range(len(labels)), [r.eval_loss.mean or 0 for r in s.names], yerr=errs, color="#1f77b4", capsize=2)
    b.set_xticks(range(len(labels)))
    b.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    lo = min((r.eval_loss.ci_low or r.eval_loss.mean or 0) for r in s.names) if s.names else 0
    b.set_ylim(max(0.0, lo - 0.2), None)
    b.set_ylabel("held-out next-token loss (nats)")
    b.set_title("cost of the heads")
    fig.tight_layout()
    return fig


def curves_figure(curves: list[dict], key: str, ylabel: str, *, log: bool = False):
    """``key`` over training, one panel per (part, condition), mean over seeds per objective
    (band: 95% t-interval); rows without ``key`` (steps between evaluations) are skipped."""
    panels = list(dict.fromkeys((r["part"], r["condition"]) for r in curves if r.get(key) is not None))
    plt = _plt()
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.5), squeeze=False)
    for (part, cond), ax in zip(panels, axes[0]):
        recs = [r for r in curves if r["part"] == part and r["condition"] == cond and r.get(key) is not None]
        objectives = list(dict.fromkeys(r["objective"] for r in recs))
        for o, color in _colors(objectives).items():
            mine = [r for r in recs if r["objective"] == o]
            steps = sorted({r["step"] for r in mine})
            if len(steps) > 200:  # thin dense logs
                steps = steps[:: len(steps) // 200 + 1] + [steps[-1]]
            stats = [t_interval([r[key] for r in mine if r["step"] == x]) for x in steps]
            ax.plot(steps, [st["mean"] for st in stats], color=color, lw=1.3, label=o)
            if all(st["ci_low"] is not None for st in stats):
                low = [max(st["ci_low"], 1e-4) if log else st["ci_low"] for st in stats]
                ax.fill_between(steps, low, [st["ci_high"] for st in stats], color=color, alpha=0.15, lw=0)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{part}: {cond}" if part != "names" else "names")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
