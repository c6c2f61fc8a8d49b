"""The sequence-likelihood report section: the headline table, per cell a figure and the per-token
table of seeds/004, and the most and least probable continuations."""

from __future__ import annotations

from typing import Any

from ...models import describe_boundary
from ...report import Section, plt
from .._base import Tables
from ._spec import SequenceLikelihoodSpec
from ._summary import SequenceLikelihoodSummary, by_cell


def report(tables: Tables, spec: SequenceLikelihoodSpec, summary: SequenceLikelihoodSummary, section: Section) -> None:
    section.text(
        f"Joint log-probs (nats) of {spec.length}-token continuations: greedy, the best of "
        f"{spec.beam_width} beams, {spec.samples} samples at temperature {spec.temperature}, "
        "the listed continuations and the degenerate repetitions. 'deg. > samples' is the share of "
        "sampled continuations that are less probable than the degenerate one: a high share means the "
        "most probable sequences are not the typical ones (seeds/004)."
    )
    section.table(*summary.table(), caption="Joint log-prob per model and prompt (nats)")
    moved = sorted({(r["model"], r["kind"], r["text"], r["moved"]) for r in tables["continuations"] if r.get("moved")})
    note = (" The generated continuations are scored as drawn, after the prompt's own tokens; only the listed and "
            "degenerate ones are cut by the rule.")
    if moved:
        note += (" These begin with a token that covers the end of the prompt, so their joint log-prob includes "
                 "writing the moved characters: " + "; ".join(f"{m} {k} {t[:30]!r} moved {x!r}" for m, k, t, x in moved)
                 + ".")
    section.text(describe_boundary(summary.boundary) + note)
    cells = by_cell(tables["continuations"])
    tokens = by_cell(tables["tokens"])
    for (model, pi), recs in cells.items():
        prompt = spec.prompts[pi]
        section.figure(
            cell_figure(model, prompt, recs, tokens[(model, pi)]),
            caption=f"{model} · {prompt!r}: sampled joint log-probs with the other continuations marked "
            "(left); per-token log-probs of the listed and degenerate continuations (right).",
        )
        header, rows = token_table_rows(tokens[(model, pi)])
        section.table(header, rows, caption=f"{model} · {prompt!r}: per token (log-prob, rank, entropy)")
        ranked = sorted(recs, key=lambda r: -r["logprob"])
        section.table(
            ["kind", "joint", "mean", "continuation"],
            [[r["kind"], r["logprob"], r["mean_logprob"], r["text"]] for r in ranked[:5] + ranked[-3:]],
            caption=f"{model} · {prompt!r}: the five most and three least probable continuations",
        )
    rendered = {(r["model"], r["rendered_prompt"]) for r in tables["continuations"]}
    if spec.chat:
        for model, text in sorted(rendered):
            section.code(text, caption=f"exact prompt seen by {model}:")


_COLORS = {"greedy": "#d62728", "beam": "#9467bd", "user": "#2ca02c", "degenerate": "#ff7f0e"}


def cell_figure(model: str, prompt: str, conts: list[dict], tokens: list[dict]):
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
    samples = [r["logprob"] for r in conts if r["kind"] == "sample"]
    if samples:
        bins = min(30, max(5, len(samples) // 3))
        ax.hist(samples, bins=bins, color="#8fb3d9", edgecolor="white", label="samples")
    marked = set()
    for r in conts:
        if r["kind"] == "sample":
            continue
        label = None if r["kind"] in marked else r["kind"]
        marked.add(r["kind"])
        style = "--" if r["kind"] == "beam" else "-"
        ax.axvline(r["logprob"], color=_COLORS[r["kind"]], lw=1.8, ls=style, label=label)
    ax.set_xlabel("joint log-prob of the continuation (nats)")
    ax.set_ylabel("sampled continuations")
    ax.set_title(f"{model}\n{prompt!r}", fontsize=9)
    ax.legend(fontsize=8)

    for kind in ("user", "degenerate", "greedy"):
        for idx in sorted({t["index"] for t in tokens if t["kind"] == kind}):
            row = sorted((t for t in tokens if (t["kind"], t["index"]) == (kind, idx)), key=lambda t: t["position"])
            if not row:
                continue
            ys = [t["logprob"] for t in row]
            bx.plot(range(len(ys)), ys, marker=".", color=_COLORS[kind], label=f"{kind} {idx} (Σ={sum(ys):.1f})")
    bx.set_xlabel("token position")
    bx.set_ylabel("log-prob of the token")
    bx.set_title("per-token log-probs", fontsize=9)
    bx.legend(fontsize=8)
    fig.tight_layout()
    return fig


def token_table_rows(tokens: list[dict]) -> tuple[list[str], list[list[Any]]]:
    """Side by side, per position: the first listed and first degenerate continuations
    (the table of seeds/004), with greedy for reference."""
    cols = [("user", 0), ("degenerate", 0), ("greedy", 0)]
    series = {c: sorted((t for t in tokens if (t["kind"], t["index"]) == c), key=lambda t: t["position"])
              for c in cols}
    cols = [c for c in cols if series[c]]
    header = ["pos"]
    for kind, _ in cols:
        header += [f"{kind} token", "log-prob", "rank", "entropy"]
    n = max((len(series[c]) for c in cols), default=0)
    rows = []
    for j in range(n):
        row: list[Any] = [j]
        for c in cols:
            t = series[c][j] if j < len(series[c]) else None
            row += [repr(t["token"]), t["logprob"], t["rank"], t["entropy"]] if t else ["", "", "", ""]
        rows.append(row)
    totals: list[Any] = ["Σ"]
    for c in cols:
        totals += ["", sum(t["logprob"] for t in series[c]), "", ""]
    rows.append(totals)
    return header, rows
