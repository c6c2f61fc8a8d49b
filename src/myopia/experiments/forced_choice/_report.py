"""Forced-choice report: tables, the one-line answers, rendered prompts, examples, figures."""

from __future__ import annotations

from .._base import Tables
from ._core import OTHER
from ._spec import ForcedChoiceSpec
from ._summary import _index, _models, answer_line, summary_rows

METHOD_LABEL = {"exact": "exact", "sampled": "sampled (begins with)", "pattern": "sampled (strict pattern)"}


def report(tables: Tables, spec: ForcedChoiceSpec, summary: dict, section) -> None:
    section.text(
        "Each answer class is measured three ways: 'exact' = the probability that the answer begins "
        "with one of the class's listed continuations (sum of their teacher-forced joint probabilities, "
        "all tokens of each: gemma writes \" 1\" as a space token then a digit); 'sampled' = the same "
        f"event counted in {spec.samples} samples at temperature {spec.temperature} (a check of the "
        "exact figure); 'pattern' = a strict pattern on the same samples (the digit, the word, or a "
        "random letter string alone on the first line of the answer). 'other' is the rest of the mass. Intervals "
        "are 95 % Wilson intervals. Tuned models are prompted through their chat template, base models "
        f"through the frame {spec.frame!r}; the exact prompts are below.")
    section.table(*summary_rows(summary), caption="Does P(guess-0 answer) drop when '0' must be answered "
                  "with a random string? (strict pattern, sampled)")
    for a in summary["answers"]:
        section.text(answer_line(a))
    idx = _index(tables)
    prompts = {(r["model"], r["variant"]): r for r in tables.get("prompts", [])}
    for model in _models(tables):
        _model_section(model, idx, prompts, tables, spec, section)


def _model_section(model: str, idx, prompts, tables: Tables, spec: ForcedChoiceSpec, section) -> None:
    variants = [v for (m, v) in prompts if m == model]
    rows = []
    for v in variants:
        names = _class_names(idx, model, v)
        for name in names:
            cells = [_fmt(idx.get((model, v, m), {}).get(name)) for m in ("exact", "sampled", "pattern")]
            rows.append([v, name, *cells])
    section.table(["variant", "class", *(METHOD_LABEL[m] for m in ("exact", "sampled", "pattern"))], rows,
                  caption=f"{model}: class probabilities per variant")
    refused = [(v, prompts[(model, v)]) for v in variants if prompts[(model, v)]["exact_status"] != "ok"
               or prompts[(model, v)]["sample_status"] != "ok"]
    for v, p in refused:
        section.text(f"{model} · {v}: exact: {p['exact_status']}; sampled: {p['sample_status']}")
    if any(idx.get((model, v, m)) for v in variants for m in ("exact", "pattern")):
        from ._figures import class_bars

        section.figure(class_bars(model, variants, idx), caption=f"{model}: class probabilities per variant "
                       "(solid: exact; light: sampled with the same event; hatched: strict pattern; "
                       "bars: 95 % Wilson intervals)")
    conts = [r for r in tables.get("continuations", []) if r["model"] == model]
    if conts:
        first = variants[0]
        section.table(["class", "continuation", "tokens", "joint prob.", "first-token prob."],
                      [[r["class"], repr(r["continuation"]), r["tokens"], r["probability"],
                        r["first_token_probability"]] for r in conts if r["variant"] == first],
                      caption=f"{model} · {first}: each continuation's tokens, its joint probability and its "
                      "first token's probability ('other' is not 1 minus the first-token masses)")
    _examples(model, variants, tables, spec, section)
    seen = set()
    for v in variants:
        text = prompts[(model, v)]["rendered"]
        if text not in seen:
            seen.add(text)
            chat = "chat template" if prompts[(model, v)]["chat"] else "plain frame"
            section.code(text, caption=f"exact prompt seen by {model} ({chat}), variant {v}:")


def _class_names(idx, model: str, variant: str) -> list[str]:
    names: dict[str, None] = {}
    for m in ("exact", "sampled", "pattern"):
        for name in idx.get((model, variant, m), {}):
            if name != OTHER:
                names.setdefault(name, None)
    return [*names, OTHER]


def _fmt(r: dict | None) -> str:
    if r is None:
        return "–"
    if r["low"] is None:
        return f"{r['probability']:.4f}"
    return f"{r['probability']:.3f} [{r['low']:.3f}, {r['high']:.3f}] ({r['count']}/{r['n']})"


def _examples(model: str, variants: list[str], tables: Tables, spec: ForcedChoiceSpec, section) -> None:
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
