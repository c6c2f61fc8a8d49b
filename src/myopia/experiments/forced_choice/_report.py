"""Forced-choice report: the headline table, the one-line answers, per model the class
probabilities (table and grouped bars), continuations, sample completions and rendered prompts."""

from __future__ import annotations

from ...answers import OTHER
from ...models import describe_boundary
from ...report import Section, interval, num, plt
from .._base import Tables
from ._spec import ForcedChoiceSpec
from ._summary import METHOD_ORDER, ForcedChoiceSummary, class_index, models_in

METHOD_LABEL = {"exact": "exact", "sampled": "sampled (begins with)", "pattern": "sampled (strict pattern)"}


def report(tables: Tables, spec: ForcedChoiceSpec, summary: ForcedChoiceSummary, section: Section) -> None:
    section.text(
        "Each answer class is measured three ways: 'exact' = the probability that the answer begins "
        "with one of the class's listed continuations (sum of their teacher-forced joint probabilities, "
        "all tokens of each: gemma writes \" 1\" as a space token then a digit); 'sampled' = the same "
        f"event counted in {spec.samples} samples at temperature {spec.temperature} (a check of the "
        "exact figure); 'pattern' = a strict pattern on the same samples (the digit, the word, or a "
        "random letter string alone on the first line of the answer). 'other' is the rest of the mass. Intervals "
        "are 95 % Wilson intervals. Tuned models are prompted through their chat template, base models "
        f"through the frame {spec.frame!r}; the exact prompts are below.")
    section.text(describe_boundary(summary.boundary) + _moved_note(tables, summary.boundary))
    section.table(*summary.table(), caption="Does P(guess-0 answer) drop when '0' must be answered "
                  "with a random string? (strict pattern, sampled)")
    for a in summary.answers:
        section.text(a.line())
    idx = class_index(tables)
    prompts = {(r["model"], r["variant"]): r for r in tables.get("prompts", [])}
    for model in models_in(tables):
        _model_section(model, idx, prompts, tables, spec, section)


def _model_section(model: str, idx, prompts, tables: Tables, spec: ForcedChoiceSpec, section: Section) -> None:
    variants = [v for (m, v) in prompts if m == model]
    rows = []
    for v in variants:
        for name in _class_names(idx, model, v):
            rows.append([v, name, *[_probability(idx.get((model, v, m), {}).get(name)) for m in METHOD_ORDER]])
    section.table(["variant", "class", *(METHOD_LABEL[m] for m in METHOD_ORDER)], rows,
                  caption=f"{model}: class probabilities per variant")
    for v in variants:
        p = prompts[(model, v)]
        if p["exact_status"] != "ok" or p["sample_status"] != "ok":
            section.text(f"{model} · {v}: exact: {p['exact_status']}; sampled: {p['sample_status']}")
    if any(idx.get((model, v, m)) for v in variants for m in ("exact", "pattern")):
        section.figure(class_bars(model, variants, idx), caption=f"{model}: class probabilities per variant "
                       "(solid: exact; light: sampled with the same event; hatched: strict pattern; "
                       "bars: 95 % Wilson intervals)")
    conts = [r for r in tables.get("continuations", []) if r["model"] == model]
    if conts:
        first = variants[0]
        section.table(["class", "continuation", "scored tokens", "moved", "joint prob.", "first-token prob."],
                      [[r["class"], repr(r["continuation"]), r["tokens"], _boundary_chars(r), r["probability"],
                        r["first_token_probability"]] for r in conts if r["variant"] == first],
                      caption=f"{model} · {first}: each continuation's scored tokens, the prompt characters "
                      "they cover (moved; lm-eval: dropped or repeated), its joint probability and its first "
                      "token's probability ('other' is not 1 minus the first-token masses)")
    _examples(model, variants, tables, spec, section)
    seen = set()
    for v in variants:
        text = prompts[(model, v)]["rendered"]
        if text not in seen:
            seen.add(text)
            chat = "chat template" if prompts[(model, v)]["chat"] else "plain frame"
            section.code(text, caption=f"exact prompt seen by {model} ({chat}), variant {v}:")


def _boundary_chars(r: dict) -> str:
    """What the boundary rule did to a continuation's prompt: moved (and dropped, repeated) characters."""
    parts = [repr(r.get("moved", ""))] if r.get("moved") else []
    parts += [f"{k} {r[k]!r}" for k in ("dropped", "repeated") if r.get(k)]
    return ", ".join(parts) or "–"


def _moved_note(tables: Tables, boundary: str) -> str:
    """Where the rule scored a continuation from a token covering the prompt's end, say what that means."""
    moved = sorted({(r["model"], r["continuation"], r["moved"]) for r in tables.get("continuations", [])
                    if r.get("moved")})
    if not moved or boundary != "natural":
        return ""
    cases = "; ".join(f"{m}: {c!r} moved {x!r}" for m, c, x in moved[:6]) + ("; …" if len(moved) > 6 else "")
    return (f" Here {len(moved)} continuation(s) begin with a token that covers the end of the prompt ({cases}): "
            "their probability is that of writing the moved characters and the continuation after the "
            "shorter prompt, while the sampled 'begins with' column counts samples drawn after the whole "
            'prompt\'s tokens; boundary "exact" gives the text event for every class alike.')


def _class_names(idx, model: str, variant: str) -> list[str]:
    names: dict[str, None] = {}
    for m in METHOD_ORDER:
        for name in idx.get((model, variant, m), {}):
            if name != OTHER:
                names.setdefault(name, None)
    return [*names, OTHER]


def _probability(r: dict | None) -> str:
    """A class record as text: the exact probability, or the sampled one with its interval and count."""
    if r is None:
        return "–"
    if r["low"] is None:
        return num(r["probability"], 4)
    return f"{num(r['probability'])} {interval(r['low'], r['high'])} ({r['count']}/{r['n']})"


def _examples(model: str, variants: list[str], tables: Tables, spec: ForcedChoiceSpec, section: Section) -> None:
    if spec.examples == 0:
        return
    rows = []
    for v in variants:
        by: dict[str, list[str]] = {}
        for r in tables.get("samples", []):
            if r["model"] == model and r["variant"] == v:
                by.setdefault(r["pattern_class"], []).append(r["text"])
        for name, texts in sorted(by.items(), key=lambda kv: (kv[0] == OTHER, kv[0])):
            rows += [[v, name, repr(t)] for t in texts[: spec.examples]]
    if rows:
        section.table(["variant", "pattern class", "sampled completion"], rows,
                      caption=f"{model}: sample completions per class (strict pattern), the first "
                      f"{spec.examples} of each")


# -- figure -------------------------------------------------------------------------------------
STYLE = {"exact": dict(alpha=1.0, hatch=""), "sampled": dict(alpha=0.45, hatch=""),
         "pattern": dict(alpha=0.7, hatch="//")}


def class_bars(model: str, variants: list[str], idx):
    """One panel per variant; per class, up to three bars (exact, sampled, pattern), CIs on the sampled ones."""
    n = len(variants)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, v in zip(axes.flat, variants):
        names = _class_names(idx, model, v)
        for j, m in enumerate(METHOD_ORDER):
            recs = idx.get((model, v, m), {})
            for i, name in enumerate(names):
                r = recs.get(name)
                if r is None:
                    continue
                x = i + (j - 1) * 0.27
                ax.bar(x, r["probability"], width=0.27, color=colors[i % len(colors)], edgecolor="black",
                       linewidth=0.4, label=m if i == 0 else None, **STYLE[m])
                if r["low"] is not None:
                    err = [[max(0.0, r["probability"] - r["low"])], [max(0.0, r["high"] - r["probability"])]]
                    ax.errorbar(x, r["probability"], yerr=err, color="black", capsize=2, linewidth=0.8)
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_title(v, fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes[0, 0].set_ylabel("probability")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.suptitle(model, fontsize=10)
    fig.tight_layout()
    return fig
