"""Self-training report: the three answers, the base check, the final table, figures over rounds
(each measure, one line per condition; the game's branch probabilities per variant), the
bundled pair for scale, round times, and the texts each round wrote (escaped by the template)."""

from __future__ import annotations

import re

from matplotlib.ticker import MaxNLocator

from ...report import plt
from ...stats import t_interval
from .._base import Tables
from ._spec import SelfTrainingSpec
from ._summary import CI, HEADLINE, SelfTrainingHeadline

PANELS = (
    ("text_xent_per_char", "held-out cross-entropy (nats/char)"),
    ("text_entropy_per_char", "next-token entropy, held-out (nats/char)"),
    ("samples_entropy_per_char", "next-token entropy, own samples (nats/char)"),
    ("samples_distinct_1", "distinct-1 (words)"),
    ("samples_distinct_2", "distinct-2 (words)"),
    ("samples_repetition", "repetition (ends in a phrase x3)"),
    ("samples_seq_rep_4", "seq-rep-4 (repeated 4-grams)"),
    ("text_ece", "ECE of top-1 (held-out)"),
    ("samples_degenerate_beats_samples", "share of samples less probable than the degenerate one"),
    ("samples_marker_share", "share of samples reciting the game's instruction"),
)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def visible(text: str) -> str:
    """Model text with its control characters (a lab model writes stray bytes) shown as ``\\xNN``:
    the template escapes markup, not these, and a NUL or a bell has no place in an HTML page."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _curve(rows: list[dict], condition: str, measure: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Rounds, mean, low, high (the t-interval over seeds; the mean where there is one seed)."""
    by_round: dict[int, list[float]] = {}
    for r in rows:
        if r["condition"] == condition and r.get(measure) is not None:
            by_round.setdefault(r["round"], []).append(r[measure])
    xs, mean, lo, hi = [], [], [], []
    for x in sorted(by_round):
        t = t_interval(by_round[x])
        if t["mean"] is None:
            continue
        xs.append(x)
        mean.append(t["mean"])
        lo.append(t["ci_low"] if t["ci_low"] is not None else t["mean"])
        hi.append(t["ci_high"] if t["ci_high"] is not None else t["mean"])
    return xs, mean, lo, hi


def measures_figure(rows: list[dict], conditions: list[str]):
    fig, axes = plt.subplots(4, 3, figsize=(13, 12.5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (measure, title) in zip(axes.flat, PANELS):
        for i, c in enumerate(conditions):
            xs, mean, lo, hi = _curve(rows, c, measure)
            if not xs:
                continue
            ax.plot(xs, mean, marker="o", ms=3, color=colors[i % len(colors)], label=c)
            ax.fill_between(xs, lo, hi, color=colors[i % len(colors)], alpha=0.15, linewidth=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("round", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(PANELS):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def game_figure(rows: list[dict], conditions: list[str], variants: list[str]):
    fig, axes = plt.subplots(1, len(variants), figsize=(6.2 * len(variants), 4), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, v in zip(axes.flat, variants):
        for i, c in enumerate(conditions):
            color = colors[i % len(colors)]
            for measure, style, label in ((f"{v}_exact_one", "-", "P(1)"), (f"{v}_exact_zero", "--", "P(0-branch)"),
                                          (f"{v}_exact_other", ":", "P(other)")):
                xs, mean, lo, hi = _curve(rows, c, measure)
                if xs:
                    ax.plot(xs, mean, style, marker="o", ms=3, color=color, label=f"{c}: {label}")
                    ax.fill_between(xs, lo, hi, color=color, alpha=0.1, linewidth=0)
        ax.axhline(0.5, color="grey", linewidth=0.5)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{v} variant (0-branch: {'the word' if v == 'word' else 'random letters'})", fontsize=9)
        ax.set_xlabel("round", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("exact probability")
    axes[0, -1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def report(tables: Tables, spec: SelfTrainingSpec, summary: SelfTrainingHeadline, section) -> None:
    s = summary
    rows = tables.get("rounds", [])
    conditions = list(dict.fromkeys(c for c in spec.conditions if any(r["condition"] == c for r in rows)))
    section.text(
        "One base model per seed, tuned on its own samples several ways, measured on the same held-out inputs "
        f"every round. Round 0 is the base. {len(spec.seeds)} seeds; intervals: {CI}. The game's probabilities "
        "are exact (summed over every tokenization of the answer's text), checked by sampling.")
    section.table(["question", "verdict", "answer"], [[a.question, a.verdict, a.answer] for a in s.questions],
                  caption="The three questions")
    section.table(*s.table(), caption="Last round per condition (mean [95% t-interval] over seeds); the base per "
                  "seed; the bundled pair on the same held-out characters, for scale (per character: their "
                  "tokenizers differ)")
    section.table(["seed", "steps", "train s", "held-out loss", "variant", "P(1) exact", "P(0-branch) exact",
                   "P(other) exact", "P(1) sampled [Wilson]", "P(0-branch) sampled [Wilson]", "plays"],
                  [[b.seed, b.steps, b.train_seconds, b.eval_loss, v, g.exact.get("one"), g.exact.get("zero"),
                    g.exact.get("other"), g.sampled["one"].text() if "one" in g.sampled else None,
                    g.sampled["zero"].text() if "zero" in g.sampled else None, "yes" if b.plays else "no"]
                   for b in s.base for v, g in b.game.items()],
                  caption=f"The base plays the game when its exact P(1) and P(0-branch) are each within "
                  f"{spec.play_tolerance} of 0.5 in both variants (sampled: {spec.game_samples} answers, share "
                  "[95% Wilson interval] (n))")
    if rows:
        section.figure(measures_figure(rows, conditions), caption="Each measure over rounds, one line per condition "
                       "(mean over seeds, band: 95% t-interval)")
        variants = [v for v in ("word", "random") if any(r.get(f"{v}_exact_one") is not None for r in rows)]
        section.figure(game_figure(rows, conditions, variants), caption="The game: exact branch probabilities over "
                       "rounds (solid P(1), dashed P(0-branch), dotted P(other); band: 95% t-interval over seeds)")
    section.table(["condition", *[f"{v} {b}" for v in ("word", "random") for b in ("one", "zero", "other", "valid")]],
                  [[f.condition, *[f.game_sampled[f"{v}_{b}"].text() if f"{v}_{b}" in f.game_sampled else None
                                   for v in ("word", "random") for b in ("one", "zero", "other", "valid")]]
                   for f in s.final],
                  caption="The game's sampled check at the last round: share of sampled answers [95% Wilson interval] "
                  "(answers, over the seeds); valid = a well-formed answer line")
    section.table(["condition", *HEADLINE],
                  [[f.condition, *[f.change[m].text(signed=True) for m in HEADLINE]] for f in s.final],
                  caption="Change from the base at the last round (paired by seed)")
    section.table(["condition", "kind", "reward", "β", "data", "seconds per round (train)",
                   "seconds per round (measure)"],
                  [[f.condition, f.kind, f.reward, f.beta, f.data, f.round_seconds.text(), f.measure_seconds.text()]
                   for f in s.final], caption="Conditions and their time per round")
    if s.scale:
        names = list(s.scale[0].values)
        section.table(["model", "sample tokens", *names],
                      [[r.model, r.sample_tokens, *[r.values[n] for n in names]] for r in s.scale],
                      caption="The bundled base-vs-tuned pair on the same held-out characters (for scale)")
        for e in tables.get("scale_examples", []):
            section.code(visible(e["text"]), caption=f"{e['model']} sample {e['index']}")
    _examples(tables, section)


def _examples(tables: Tables, section) -> None:
    """Per condition, the first seed's texts of every round (escaped: model text is text)."""
    ex = tables.get("examples", [])
    for c in dict.fromkeys(r["condition"] for r in ex):
        mine = [r for r in ex if r["condition"] == c]
        seed = min(r["seed"] for r in mine)
        section.table(["round", "source", "text"],
                      [[r["round"], r["source"], visible(r["text"])] for r in mine if r["seed"] == seed],
                      caption=f"{c}, seed {seed}: what each round wrote and trained on")
