"""The multi-token report section: the headline table, the per-objective verdicts on path-star, the
configurations with measured times, and the figures (accuracy by objective per task, path-star
accuracy by path position, the addition heatmap, name induction, training curves)."""

from __future__ import annotations

from ...lab import TrainSetting
from ...report import heatmap, plt
from ...stats import t_interval
from .._base import Tables
from ._drafting import drafting_section
from ._spec import MultiTokenSpec
from ._summary import CI, Interval, MultiTokenHeadline

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]


def report(tables: Tables, spec: MultiTokenSpec, summary: MultiTokenHeadline, section) -> None:
    section.text(
        "Does an n-token objective plan where next-token training cannot? Each cell trains a lab model "
        "under one objective (or answer format) and seed, and measures it on held-out data with greedy "
        "decoding. Path-star: whole-path accuracy, the first hard step (the node after the source), and "
        "accuracy by path position under generation and under teacher forcing; 'Clever Hans' = the later "
        "steps right under teacher forcing while the whole path stays at 1/d; 'not converged' = the later "
        "steps not learned yet. mtp:n and mtp-seq:n are parameter-matched on path-star and names (their "
        f"extra layers come out of the model's). Intervals: {CI}."
    )
    section.table(*summary.table(), caption="Headline: per part, condition and objective")
    verdicts = [
        f"{graph} {obj}: {'escapes' if f.escapes_chance else 'does not escape'} 1/d = {g.chance:.2f} "
        f"(whole path {f.accuracy.text()}; {f.diagnosis})"
        for graph, g in summary.path_star.items()
        for obj, f in g.objectives.items()
    ]
    if verdicts:
        section.text("Path-star, per objective: " + "; ".join(verdicts) + ".")
    section.table(
        ["part", "condition", "task", "model", "steps", "batch", "lr", "schedule", "non-embedding parameters",
         "train s/cell", "threads"],
        _config_rows(tables, spec),
        caption="Configurations, parameters and measured training time per cell",
    )  # fmt: skip
    if summary.path_star or summary.addition or summary.names:
        section.figure(
            accuracy_figure(summary), caption="Greedy accuracy by objective per task (error bars: 95% t-interval)"
        )
    if tables.get("positions"):
        section.figure(
            positions_figure(tables["positions"]),
            caption="Path-star: accuracy by path position, generated (solid) vs teacher-forced (dashed); "
            "position 1 is the first hard step (band: 95% t-interval)",
        )
    if summary.addition:
        section.figure(addition_heatmap(summary), caption="Addition: exact-match accuracy by digits and format")
        if any(d.by_position for a in summary.addition.values() for d in a.by_digits.values()):
            section.figure(
                answer_digits_figure(summary),
                caption="Addition: accuracy of each answer digit (0 = the most significant, the carry out of the "
                "top column), by digits n, per format",
            )
    if summary.names:
        section.figure(
            names_figure(summary),
            caption="Names: second-token accuracy at repeat vs first mentions, and head 1's held-out loss",
        )
    drafting_section(tables, section)
    curves = tables.get("curves", [])
    if curves:
        section.figure(
            curves_figure(curves, "loss", "training loss (next token)", log=True),
            caption="Training loss of the next-token head over steps (mean over seeds, band: 95% t-interval)",
        )
        star = [r for r in curves if r["part"] == "path-star"]
        if any(r.get("later_teacher_forced") is not None for r in star):
            section.figure(
                curves_figure(star, "later_teacher_forced", "teacher-forced accuracy, steps 2..l-1", accuracy=True),
                caption="Path-star: teacher-forced accuracy after the first hard step over training "
                "(≈1: the cheat is learned)",
            )


def _task_text(task: dict) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in task.items() if k != "name")
    return f"{task.get('name')}" + (f" ({rest})" if rest else "")


def _config_rows(tables: Tables, spec: MultiTokenSpec) -> list[list]:
    finals = tables.get("finals", [])
    settings: dict[tuple[str, str], TrainSetting] = {}  # (part, condition as the cells name it) -> setting
    for (part, condition), (setting, _) in spec.trainings().items():
        cond = {"path-star": condition.split("/")[0], "names": "names"}.get(part, condition)
        settings.setdefault((part, cond), setting)
    rows = []
    for (part, cond), st in settings.items():
        recs = [r for r in finals if r["part"] == part and r["condition"] == cond]
        secs = [r["train_seconds"] for r in recs if r.get("train_seconds") is not None]
        params = "; ".join(dict.fromkeys(f"{r['objective']}: {r['n_params']:,}" for r in recs))
        model = st.model + (f" {st.model_overrides}" if st.model_overrides else "")
        rows.append([part, cond, _task_text(st.task), model, st.steps, st.batch_size, st.lr, st.schedule, params,
                     f"{sum(secs) / len(secs):.0f}" if secs else "", spec.threads])  # fmt: skip
    return rows


def _colors(names: list[str]) -> dict[str, str]:
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


def _err(iv: Interval) -> tuple[float, float]:
    if iv.mean is None or iv.ci_low is None or iv.ci_high is None:
        return 0.0, 0.0
    return iv.mean - iv.ci_low, iv.ci_high - iv.mean


def _bars(ax, labels: list[str], series: list[tuple[str, list[Interval]]], colors: list[str]) -> None:
    """Grouped bars: one group per label, one bar per series (name, intervals), with error bars."""
    width = 0.8 / len(series)
    for j, ((name, ivs), color) in enumerate(zip(series, colors)):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
        errs = [list(e) for e in zip(*[_err(iv) for iv in ivs])] or [[], []]
        ax.bar(xs, [iv.mean or 0 for iv in ivs], width, yerr=errs, color=color, label=name, capsize=2)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)


def accuracy_figure(summary: MultiTokenHeadline):
    """Per task: path-star whole path and first step by objective (one panel per graph, 1/d
    dashed); addition exact match by n per format; names at repeat mentions by objective."""
    panels = len(summary.path_star) + bool(summary.addition) + bool(summary.names)
    fig, axes = plt.subplots(1, max(1, panels), figsize=(4.4 * max(1, panels), 3.8), squeeze=False)
    axes = list(axes[0])
    for graph, g in summary.path_star.items():
        ax = axes.pop(0)
        objs = list(g.objectives)
        series = [("whole path", [g.objectives[o].accuracy for o in objs]),
                  ("first step", [g.objectives[o].first_step for o in objs])]  # fmt: skip
        _bars(ax, objs, series, ["#1f77b4", "#ff7f0e"])
        ax.axhline(g.chance, color="black", ls="--", lw=1, label="1/d")
        ax.set_title(f"path-star G({g.degree},{g.path_len}) N={g.n_nodes}")
        ax.set_ylabel("greedy accuracy")
        ax.legend(fontsize=7)
    if summary.addition:
        ax = axes.pop(0)
        for fmt, color in _colors(list(summary.addition)).items():
            by = summary.addition[fmt].by_digits
            ns = sorted(by)
            errs = [list(e) for e in zip(*[_err(by[n].accuracy) for n in ns])]
            ax.errorbar(ns, [by[n].accuracy.mean for n in ns], yerr=errs, color=color, marker="o", capsize=2, label=fmt)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("digits n")
        ax.set_ylabel("exact-match accuracy")
        ax.set_title("addition")
        ax.legend(fontsize=7)
    if summary.names:
        ax = axes.pop(0)
        objs = list(summary.names)
        _bars(ax, objs, [("repeat mentions", [summary.names[o].name_accuracy for o in objs])], ["#2ca02c"])
        ax.set_title("names: second token at repeats")
        ax.set_ylabel("greedy accuracy")
    fig.tight_layout()
    return fig


def positions_figure(positions: list[dict]):
    """Per graph: accuracy at each path position (0 = source), generated (solid) vs teacher
    forced (dashed), mean over seeds with 95% intervals."""
    graphs = list(dict.fromkeys(r["condition"] for r in positions))
    colors = _colors(list(dict.fromkeys(r["objective"] for r in positions)))
    fig, axes = plt.subplots(1, len(graphs), figsize=(4.8 * len(graphs), 3.8), squeeze=False)
    for g, ax in zip(graphs, axes[0]):
        recs = [r for r in positions if r["condition"] == g]
        xs = sorted({r["position"] for r in recs})
        for o, color in colors.items():
            mine = [r for r in recs if r["objective"] == o]
            if not mine:
                continue
            # teacher-forced: dashed with open squares, visible where it lies on the generated line
            for kind, ls, marker, fill in (("generated", "-", "o", color), ("teacher_forced", "--", "s", "none")):
                stats = [t_interval([r[kind] for r in mine if r["position"] == x]) for x in xs]
                label = f"{o} ({'generated' if kind == 'generated' else 'teacher-forced'})"
                ys = [s["mean"] for s in stats]
                ax.plot(xs, ys, ls=ls, color=color, marker=marker, ms=5 if fill == "none" else 3, mfc=fill, label=label)
                if all(s["ci_low"] is not None for s in stats):
                    lo, hi = [s["ci_low"] for s in stats], [s["ci_high"] for s in stats]
                    ax.fill_between(xs, lo, hi, color=color, alpha=0.12, lw=0)
        ax.set_xticks(xs)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("path position (0 = source, 1 = first hard step)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"path-star {g}")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def addition_heatmap(summary: MultiTokenHeadline):
    """Mean exact-match accuracy, digits (columns) x format (rows), values written in."""
    formats = list(summary.addition)
    digits = sorted({n for a in summary.addition.values() for n in a.by_digits})
    grid = [
        [summary.addition[f].by_digits[n].accuracy.mean if n in summary.addition[f].by_digits else None for n in digits]
        for f in formats
    ]
    fig, ax = plt.subplots(figsize=(1.0 * len(digits) + 3.0, 0.55 * len(formats) + 1.6))
    matrix = [[float("nan") if v is None else v for v in row] for row in grid]
    heatmap(ax, matrix, [str(n) for n in digits], formats, "addition: exact-match accuracy", vmin=0, vmax=1, values=8)
    ax.set_xlabel("digits n")
    fig.tight_layout()
    return fig


def answer_digits_figure(summary: MultiTokenHeadline):
    """One heatmap per format: digits n (rows) x answer digit, most significant first (columns)."""
    formats = list(summary.addition)
    digits = sorted({n for a in summary.addition.values() for n in a.by_digits})
    width = max(digits) + 1
    fig, axes = plt.subplots(1, len(formats), figsize=(0.45 * width * len(formats) + 1.5, 0.4 * len(digits) + 1.6),
                             squeeze=False)  # fmt: skip
    for fmt, ax in zip(formats, axes[0]):
        by = summary.addition[fmt].by_digits
        cells = {(n, j): iv.mean for n, d in by.items() for j, iv in enumerate(d.by_position)}
        matrix = [[cells.get((n, j), float("nan")) for j in range(width)] for n in digits]
        heatmap(ax, matrix, [str(j) for j in range(width)], [f"n={n}" for n in digits], fmt, vmin=0, vmax=1,
                colorbar=fmt == formats[-1], values=6)  # fmt: skip
        ax.set_xlabel("answer digit (0 = most significant)")
    fig.tight_layout()
    return fig


def names_figure(summary: MultiTokenHeadline):
    """Second-token accuracy at repeat vs first mentions, and head 1's held-out loss, by objective."""
    objs = list(summary.names)
    rows = [summary.names[o] for o in objs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.6))
    series = [("repeat mentions", [r.name_accuracy for r in rows]),
              ("first mentions", [r.name_accuracy_first for r in rows])]  # fmt: skip
    _bars(a, objs, series, ["#2ca02c", "#7f7f7f"])
    a.set_ylabel("second-token accuracy")
    a.set_title("name induction (held-out plays)")
    a.legend(fontsize=7)
    errs = [list(e) for e in zip(*[_err(r.head1_loss) for r in rows])] or [[], []]
    b.bar(range(len(objs)), [r.head1_loss.mean or 0 for r in rows], yerr=errs, color="#1f77b4", capsize=2)
    b.set_xticks(range(len(objs)))
    b.set_xticklabels(objs, rotation=30, ha="right", fontsize=8)
    low = min((r.head1_loss.ci_low or r.head1_loss.mean or 0) for r in rows)
    b.set_ylim(max(0.0, low - 0.2), None)
    b.set_ylabel("head 1's held-out loss (nats/token)")
    b.set_title("cost of the extra heads")
    fig.tight_layout()
    return fig


def curves_figure(curves: list[dict], key: str, ylabel: str, *, log: bool = False, accuracy: bool = False):
    """``key`` over training, one panel per (part, condition), mean over seeds per objective
    (band: 95% t-interval); rows without ``key`` (steps between evaluations) are skipped."""
    panels = list(dict.fromkeys((r["part"], r["condition"]) for r in curves if r.get(key) is not None))
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.5), squeeze=False)
    for (part, cond), ax in zip(panels, axes[0]):
        recs = [r for r in curves if r["part"] == part and r["condition"] == cond and r.get(key) is not None]
        for o, color in _colors(list(dict.fromkeys(r["objective"] for r in recs))).items():
            mine = [r for r in recs if r["objective"] == o]
            steps = sorted({r["step"] for r in mine})
            if len(steps) > 200:  # thin dense logs
                steps = steps[:: len(steps) // 200 + 1] + [steps[-1]]
            stats = [t_interval([r[key] for r in mine if r["step"] == x]) for x in steps]
            ax.plot(steps, [s["mean"] for s in stats], color=color, lw=1.3, label=o)
            if all(s["ci_low"] is not None for s in stats):
                low = [max(s["ci_low"], 1e-4) if log else s["ci_low"] for s in stats]
                ax.fill_between(steps, low, [s["ci_high"] for s in stats], color=color, alpha=0.15, lw=0)
        if log:
            ax.set_yscale("log")
        if accuracy:
            ax.set_ylim(0, 1.05)
        ax.set_title("names" if part == "names" else f"{part}: {cond}")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
