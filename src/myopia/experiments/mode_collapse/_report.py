"""Mode-collapse report: the headline table, then text, multiple choice and numbers."""

from __future__ import annotations

import math

from .._base import Tables
from ._spec import ModeCollapseSpec
from ._summary import _models, summary_rows

KINDS = ("answer", "range_echo", "list", "out_of_range", "none")


def report(tables: Tables, spec: ModeCollapseSpec, summary: dict, section) -> None:
    section.text(
        "Base vs tuned on the same inputs. The models' tokenizers differ, so entropies and cross-entropies "
        "are compared per character and per byte (totals over the text divided by its length); the per-token "
        "figures are shown for completeness only. ECE: expected calibration error of the top-1 probability "
        f"over {spec.bins} equal-width bins. Random numbers: answers parsed strictly (an echo of the range such "
        "as '0 to 100' or a numbered list '1.' is not an answer); H(uniform) at n is the expected plug-in entropy "
        f"of as many uniform draws (log({spec.number_high - spec.number_low + 1}) = "
        f"{math.log(spec.number_high - spec.number_low + 1):.3f} nats is its limit).")
    section.table(*summary_rows(summary), caption="Entropy per character (nats), ECE, multiple choice and random numbers")
    for s in summary["status"]:
        section.text(f"{s['model']} · {s['part']}: {s['status']}")
    _texts(tables, spec, summary, section)
    _mc(tables, summary, section)
    _numbers(tables, spec, summary, section)


def _texts(tables: Tables, spec: ModeCollapseSpec, summary: dict, section) -> None:
    if not summary["text"]:
        return
    cols = ["tokens", "chars", "entropy_per_token", "entropy_per_char", "entropy_per_byte", "xent_per_char",
            "bits_per_byte", "top1_accuracy", "mean_confidence", "ece"]
    section.table(["model", "text", *cols], [[r["model"], r["text"], *[r[c] for c in cols]] for r in summary["text"]],
                  caption="Next-token entropy (nats) and cross-entropy over each text; only per-char and per-byte "
                  "columns compare models with different tokenizers")
    from ._figures import entropy_histograms, reliability

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


def _mc(tables: Tables, summary: dict, section) -> None:
    if not summary["mc"]:
        return
    cols = ["questions", "accuracy", "mean_confidence", "ece", "mean_option_mass"]
    section.table(["model", *cols], [[r["model"], *[r[c] for c in cols]] for r in summary["mc"]],
                  caption="Multiple choice: option probabilities renormalised over the letters; mean_option_mass "
                  "is the unnormalised mass on the letters (how much the model answers with a letter at all)")
    for m in _models(tables):
        rows = [r for r in tables.get("mc", []) if r["model"] == m]
        if rows:
            section.table(["question", "answer", "pick", "confidence", "probabilities"],
                          [[r["text"], r["answer"], r["pick"], r["confidence"], r["probs"]] for r in rows[:5]],
                          caption=f"{m}: the first five questions")
            section.code(rows[0]["rendered"], caption=f"exact multiple-choice prompt seen by {m} (first question):")


def _numbers(tables: Tables, spec: ModeCollapseSpec, summary: dict, section) -> None:
    if not summary["numbers"]:
        return
    section.table(["model", "prompt", "answers / samples", "H (nats)", "H uniform at n", "H uniform", "top answers",
                   *KINDS],
                  [[r["model"], r["prompt"], f"{r['answers']}/{r['samples']}", r["entropy"], r["uniform_entropy_at_n"],
                    r["uniform_entropy"], ", ".join(f"{v}×{c}" for v, c in r["top"]),
                    *[r["kinds"].get(k, 0) for k in KINDS]] for r in summary["numbers"]],
                  caption="Random numbers: entropy of the parsed answers and how each sample was classified")
    from ._figures import number_distribution

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
