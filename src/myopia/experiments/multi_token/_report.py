"""The multi-token report section: the headline table, the configurations with measured times,
and the figures."""

from __future__ import annotations

from .._base import Tables
from ._figures import accuracy_figure, addition_heatmap, curves_figure, names_figure, positions_figure
from ._spec import CI, MultiTokenSpec, format_setting, graph_setting
from ._summary import MultiTokenSummary, summary_rows


def _task_text(task: dict) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in task.items() if k != "name")
    return f"{task.get('name')}" + (f" ({rest})" if rest else "")


def _config_rows(tables: Tables, spec: MultiTokenSpec) -> list[list]:
    finals = tables.get("finals", [])
    rows = []
    settings = []
    if "path-star" in spec.parts:
        settings += [("path-star", g.id, graph_setting(spec.path_star, g)) for g in spec.path_star.graphs]
    if "addition" in spec.parts:
        settings += [("addition", f, format_setting(spec.addition, f)[0]) for f in spec.addition.formats]
    if "names" in spec.parts:
        settings += [("names", "names", spec.names)]
    for part, cond, st in settings:
        recs = [r for r in finals if r["part"] == part and r["condition"] == cond]
        secs = [r["train_seconds"] for r in recs if r.get("train_seconds") is not None]
        params = sorted({f"{r['objective']}: {r['n_params']:,}" for r in recs})
        model = st.model + (f" {st.model_overrides}" if st.model_overrides else "")
        rows.append([part, _task_text(st.task), model, st.steps, st.batch_size, st.lr, st.schedule,
                     "; ".join(params), f"{sum(secs) / len(secs):.0f}" if secs else "", spec.threads])
    return rows


def report(tables: Tables, spec: MultiTokenSpec, summary: dict, section) -> None:
    s = MultiTokenSummary.model_validate(summary)
    section.text(
        "Does an n-token objective plan where next-token training cannot? Each cell trains a lab model "
        "under one objective (or answer format) and seed, and measures it on held-out data with greedy "
        "decoding. Path-star: whole-path accuracy, the first hard step (the node after the source), and "
        "accuracy by path position under generation and under teacher forcing; 'Clever Hans' = the later "
        "steps right under teacher forcing while the first is at 1/d; 'not converged' = the later steps not "
        f"learned yet. mtp:n and mtp-seq:n are parameter-matched on path-star and names. Intervals: {CI}."
    )
    section.table(*summary_rows(summary), caption="Headline: per part, condition and objective")
    verdicts = [f"{r.graph} {r.objective}: {'escapes' if r.escapes_chance else 'does not escape'} 1/d = "
                f"{r.chance:.2f} (whole path {r.accuracy.text()}; {r.diagnosis})" for r in s.path_star]
    if verdicts:
        section.text("Path-star, per objective: " + "; ".join(verdicts) + ".")
    section.table(
        ["part", "task", "model", "steps", "batch", "lr", "schedule", "non-embedding parameters", "train s/cell", "threads"],
        _config_rows(tables, spec),
        caption="Configurations, parameters and measured training time per cell",
    )
    section.figure(accuracy_figure(summary), caption="Greedy accuracy by objective (error bars: 95% t-interval over seeds)")
    if tables.get("positions"):
        section.figure(positions_figure(tables["positions"]),
                       caption="Path-star: accuracy by path position, generated (solid) vs teacher-forced (dashed)")
    if s.addition:
        section.figure(addition_heatmap(summary), caption="Addition: exact-match accuracy by digits and format (mean over seeds)")
    if s.names:
        section.figure(names_figure(summary), caption="Names: second-token accuracy at repeat vs first mentions; "
                       "held-out next-token loss")
    curves = tables.get("curves", [])
    if curves:
        section.figure(curves_figure(curves, "loss", "training loss (next token)", log=True),
                       caption="Training loss over steps (the next-token head's; mean over seeds)")
        if any(r.get("later_teacher_forced") is not None for r in curves):
            section.figure(curves_figure([r for r in curves if r["part"] == "path-star"], "first_step_accuracy", "first-step accuracy"),
                           caption="Path-star: first-step accuracy over training")
            section.figure(curves_figure([r for r in curves if r["part"] == "path-star"], "later_teacher_forced",
                                         "teacher-forced accuracy after the first step"),
                           caption="Path-star: teacher-forced accuracy after the first step over training (≈1: the cheat is learned)")
