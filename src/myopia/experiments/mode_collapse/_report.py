"""Mode-collapse report: the headline table, then text (entropy histograms, reliability
diagrams), multiple choice and random numbers (their distribution, sample completions)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
from pydantic import BaseModel

from ...models import describe_boundary
from ...report import Section, plt
from ...stats import reliability_bins
from .._base import Tables
from ._spec import ModeCollapseSpec
from ._summary import ModeCollapseSummary, models_in

KINDS = ("answer", "range_echo", "list", "out_of_range", "none")


def report(tables: Tables, spec: ModeCollapseSpec, summary: ModeCollapseSummary, section: Section) -> None:
    section.text(
        "Base vs tuned on the same inputs. The models' tokenizers differ, so entropies and cross-entropies "
        "are compared per character and per byte (totals over the text divided by its length); the per-token "
        "figures are shown for completeness only. ECE: expected calibration error of the top-1 probability "
        f"over {spec.bins} equal-width bins. Random numbers: answers parsed strictly (an echo of the range such "
        "as '0 to 100' or a numbered list '1.' is not an answer); H(uniform) at n is the expected plug-in entropy "
        f"of as many uniform draws (log({spec.number_high - spec.number_low + 1}) = "
        f"{math.log(spec.number_high - spec.number_low + 1):.3f} nats is its limit).")
    section.table(*summary.table(), caption="Entropy per character (nats), ECE, multiple choice and random numbers")
    for s in summary.status:
        section.text(f"{s.model} · {s.part}: {s.status}")
    _texts(tables, spec, summary, section)
    _mc(tables, summary, section)
    _numbers(tables, spec, summary, section)


def _texts(tables: Tables, spec: ModeCollapseSpec, summary: ModeCollapseSummary, section: Section) -> None:
    if not summary.text:
        return
    cols = ["tokens", "chars", "entropy_per_token", "entropy_per_char", "entropy_per_byte", "xent_per_char",
            "bits_per_byte", "top1_accuracy", "mean_confidence", "ece"]
    section.table(["model", "text", *cols], [[r.model, r.text, *_columns(r, cols)] for r in summary.text],
                  caption="Next-token entropy (nats) and cross-entropy over each text; only per-char and per-byte "
                  "columns compare models with different tokenizers")
    by: dict[str, dict[str, list[dict]]] = {}
    for r in tables.get("tokens", []):
        by.setdefault(r["text"], {}).setdefault(r["model"], []).append(r)
    for text, models in by.items():
        section.figure(entropy_histograms(text, models), caption=f"{text}: next-token entropy per token (left) and "
                       "per character of the predicted token (right), models overlaid")
    sources = {t: {m: ([r["top1"] for r in rows], [r["correct"] for r in rows]) for m, rows in models.items()}
               for t, models in by.items()}
    mc: dict[str, tuple[list, list]] = {}
    for r in tables.get("mc", []):
        conf, ok = mc.setdefault(r["model"], ([], []))
        conf.append(r["confidence"])
        ok.append(r["correct"])
    if mc:
        sources["multiple choice"] = mc
    section.figure(reliability(sources, spec.bins), caption="Reliability diagrams: accuracy against mean top-1 "
                   "probability per bin (empty bins omitted); the diagonal is perfect calibration")


def _mc(tables: Tables, summary: ModeCollapseSummary, section: Section) -> None:
    if not summary.mc:
        return
    cols = ["questions", "accuracy", "mean_confidence", "ece", "mean_option_mass"]
    section.table(["model", *cols], [[r.model, *_columns(r, cols)] for r in summary.mc],
                  caption="Multiple choice: option probabilities renormalised over the letters; mean_option_mass "
                  "is the unnormalised mass on the letters (how much the model answers with a letter at all)")
    moved = sorted({(r["model"], r["moved"]) for r in tables.get("mc", []) if r.get("moved")})
    note = ""
    if moved:
        note = " Prompt characters covered by the letters' scored tokens: " + "; ".join(f"{m}: {x}" for m, x in moved)
    elif summary.boundary == "natural":
        note = " No letter's token covered the end of its prompt."
    section.text(describe_boundary(summary.boundary) + note)
    for m in models_in(tables):
        rows = [r for r in tables.get("mc", []) if r["model"] == m]
        if rows:
            section.table(["question", "answer", "pick", "confidence", "probabilities"],
                          [[r["text"], r["answer"], r["pick"], r["confidence"], r["probs"]] for r in rows[:5]],
                          caption=f"{m}: the first five questions")
            section.code(rows[0]["rendered"], caption=f"exact multiple-choice prompt seen by {m} (first question):")


def _numbers(tables: Tables, spec: ModeCollapseSpec, summary: ModeCollapseSummary, section: Section) -> None:
    if not summary.numbers:
        return
    section.table(["model", "prompt", "answers / samples", "H (nats)", "H uniform at n", "H uniform", "top answers",
                   *KINDS],
                  [[r.model, r.prompt, f"{r.answers}/{r.samples}", r.entropy, r.uniform_entropy_at_n,
                    r.uniform_entropy, ", ".join(f"{v}×{c}" for v, c in r.top),
                    *[r.kinds.get(k, 0) for k in KINDS]] for r in summary.numbers],
                  caption="Random numbers: entropy of the parsed answers and how each sample was classified")
    values: dict[str, list[int]] = {}
    for r in tables.get("numbers", []):
        values.setdefault(r["model"], [])
        if r["kind"] == "answer":
            values[r["model"]].append(int(r["value"]))
    section.figure(number_distribution(values, spec.number_low, spec.number_high),
                   caption="Parsed answers to the random-number prompts (all phrasings pooled); dashed: the count "
                   "a uniform answer would give")
    rows = []
    for m in values:
        for k in KINDS:
            texts = [r["text"] for r in tables["numbers"] if r["model"] == m and r["kind"] == k]
            rows += [[m, k, repr(t)] for t in texts[: spec.examples]]
    if rows:
        section.table(["model", "kind", "sampled completion"], rows,
                      caption=f"Sample completions per kind (the first {spec.examples} of each)")
    for r in tables.get("number_prompts", []):
        chat = "chat template" if r["chat"] else "plain frame"
        section.code(r["rendered"], caption=f"exact prompt seen by {r['model']} ({chat}), prompt {r['prompt_index']}:")


def _columns(figures: BaseModel, names: list[str]) -> list:
    values = figures.model_dump()
    return [values[n] for n in names]


# -- figures ------------------------------------------------------------------------------------
def entropy_histograms(text: str, by_model: dict[str, list[dict]]):
    """Per-token entropy (nats) and entropy per character of the predicted token, overlaid."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for model, rows in by_model.items():
        h = np.array([r["entropy"] for r in rows])
        c = np.array([max(r["chars"], 1) for r in rows])
        axes[0].hist(h, bins=40, density=True, histtype="step", linewidth=1.4, label=f"{model} (mean {h.mean():.2f})")
        axes[1].hist(h / c, bins=40, density=True, histtype="step", linewidth=1.4,
                     label=f"{model} (total/chars {h.sum() / c.sum():.3f})")
    axes[0].set_xlabel("next-token entropy (nats)")
    axes[1].set_xlabel("entropy / characters of the token (nats per char)")
    for ax in axes:
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.suptitle(text, fontsize=10)
    fig.tight_layout()
    return fig


def reliability(sources: dict[str, dict[str, tuple[list[float], list[bool]]]], n_bins: int):
    """One panel per source (a text, or the multiple-choice set); one line per model."""
    fig, axes = plt.subplots(1, len(sources), figsize=(3.8 * len(sources), 3.6), squeeze=False)
    for ax, (source, models) in zip(axes[0], sources.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
        for model, (conf, ok) in models.items():
            bins = [b for b in reliability_bins(conf, ok, n_bins) if b.count]
            ax.plot([b.confidence for b in bins], [b.accuracy for b in bins], marker="o", label=model)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("top-1 probability")
        ax.set_title(source, fontsize=9)
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def number_distribution(by_model: dict[str, list[int]], low: int, high: int):
    """Counts of each parsed answer, with the count a uniform answer would give."""
    fig, axes = plt.subplots(len(by_model), 1, figsize=(10, 2.4 * len(by_model)), squeeze=False, sharex=True)
    xs = np.arange(low, high + 1)
    for ax, (model, values) in zip(axes[:, 0], by_model.items()):
        counts = Counter(values)
        ax.bar(xs, [counts.get(int(x), 0) for x in xs], width=0.9)
        if values:
            ax.axhline(len(values) / len(xs), color="grey", linestyle="--", linewidth=0.8, label="uniform")
            ax.legend(fontsize=7)
        ax.set_ylabel("answers")
        ax.set_title(f"{model}: {len(values)} parsed answers", fontsize=9)
    axes[-1, 0].set_xlabel("answer")
    fig.tight_layout()
    return fig
