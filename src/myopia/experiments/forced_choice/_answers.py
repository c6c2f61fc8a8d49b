"""One model's answers to one prompt variant, measured three ways (records for the tables).

- :func:`exact_answers`: the exact classes, scored by teacher forcing (``exact``), or the
  model's refusal;
- :func:`sampled_answers`: ``samples`` completions, each labelled twice: by the exact classes'
  "begins with" event on its tokens (``sampled``) and by the strict patterns (``pattern``).

Every class record has the same columns: model, variant, method, class, guess, probability,
and for the sampled methods the Wilson interval (low, high) and the count out of n.
"""

from __future__ import annotations

import math

from ..._errors import UserError
from ...answers import OTHER, PatternClass, classify_sample, exact_class_probabilities, label_shares
from ...models import Boundary, Context, LanguageModel, Sample, SamplingParams, WhiteBoxModel, draw_samples
from ._spec import Variant


def render(model: LanguageModel, prompt: Context) -> str:
    """The exact text the model sees, or why it cannot be shown."""
    try:
        return model.render(prompt)
    except UserError as e:
        return f"(cannot render: {e})"


def exact_answers(model: LanguageModel, prompt: Context, variant: Variant, key: dict,
                  boundary: Boundary = "natural") -> tuple[list, list, str]:
    """(class records, one record per scored continuation, status): the exact class
    probabilities, scored with the rule ``boundary``, or the reason the model refused them."""
    exact = [e for c in variant.classes if (e := c.exact()) is not None]
    conts = [c for e in exact for c in e.continuations]
    if not conts:
        return [], [], "no exact classes"
    try:
        if not model.capabilities.score:
            model.require("score", experiment="forced-choice (exact classes)")
        scored = model.score(prompt, conts, boundary=boundary)
    except UserError as e:
        return [], [], f"refused: {e}"
    try:
        result = exact_class_probabilities(exact, {s.continuation: s.logprob for s in scored})
    except ValueError as e:
        moved = sorted({s.moved for s in scored if s.moved})
        if not moved:
            raise
        # the natural rule scored some continuations from a token that covers the prompt's end
        # (moved), so they condition on a shorter prompt than the others and need not add up
        return [], [], (f"refused: {e} (continuations scored with moved characters {moved} condition on a "
                        'shorter prompt than the others; use boundary "exact")')
    owner = {c: e.name for e in exact for c in e.continuations}
    guess = {c.name: c.guess for c in variant.classes}
    rows = [class_record(key, "exact", name, guess.get(name), p) for name, p in result.probabilities.items()]
    cont_rows = [{**key, "class": owner[s.continuation], "continuation": s.continuation,
                  "tokens": "|".join(t.token for t in s.tokens), "n_tokens": len(s.tokens),
                  "moved": s.moved, "dropped": s.dropped, "repeated": s.repeated,
                  "logprob": s.logprob, "probability": math.exp(s.logprob),
                  "first_token_probability": math.exp(s.tokens[0].logprob)} for s in scored]
    return rows, cont_rows, "ok"


def sampled_answers(model: LanguageModel, prompt: Context, variant: Variant, key: dict, n: int,
                    params: SamplingParams, boundary: Boundary = "natural") -> tuple[list, list, str]:
    """(one record per sample, class records for ``sampled`` and ``pattern``, status)."""
    if n == 0:
        return [], [], "samples = 0"
    try:
        drawn = draw_samples(model, prompt, n, params)
    except UserError as e:
        return [], [], f"refused: {e}"
    texts = [s.text for s in drawn]
    guess = {c.name: c.guess for c in variant.classes}
    begins = begins_with(model, prompt, drawn, variant, boundary)
    names = [c.name for c in variant.classes if c.continuations]
    rows = [class_record(key, "sampled", e.name, guess.get(e.name), e.probability, e.low, e.high, e.count, e.n)
            for e in label_shares(begins, names)]
    pattern = pattern_classes(variant)
    labels = [classify_sample(t, pattern) for t in texts]
    rows += [class_record(key, "pattern", e.name, guess.get(e.name), e.probability, e.low, e.high, e.count, e.n)
             for e in label_shares(labels, [c.name for c in pattern])]
    sample_rows = [{**key, "index": i, "text": t, "prefix_class": begins[i], "pattern_class": labels[i]}
                   for i, t in enumerate(texts)]
    return sample_rows, rows, "ok"


def begins_with(model: LanguageModel, prompt: Context, drawn: list[Sample], variant: Variant,
                boundary: Boundary = "natural") -> list[str]:
    """The exact classes' event on each sample: its *tokens* begin with the tokens of one of
    a class's continuations, as a sample after the prompt's tokens writes them. Text matching
    would also count '"0",' for '"0"' although its last token '",' differs from the scored
    '"', which the exact figure does not include. With ``boundary = "exact"`` the exact figure
    is that text event (every tokenization), so the raw text is matched; backends without
    token ids (``openai:``) fall back to the raw text too (whitespace included)."""
    classes = [c for c in variant.classes if c.continuations]
    text_event = boundary == "exact" or not isinstance(model, WhiteBoxModel)
    if text_event or any(not s.token_ids for s in drawn):
        return [next((c.name for c in classes if any(s.text.startswith(x) for x in c.continuations)), OTHER)
                for s in drawn]
    seqs = {c.name: [tuple(model.continuation_ids(prompt, x)) for x in c.continuations] for c in classes}
    return [next((name for name, ts in seqs.items() if any(tuple(s.token_ids[:len(t)]) == t for t in ts)), OTHER)
            for s in drawn]


def pattern_classes(variant: Variant) -> list[PatternClass]:
    """Strict patterns; a class without one falls back to its "begins with" event."""
    return [PatternClass(c.name, c.pattern or c.prefix_pattern()) for c in variant.classes]


def class_record(key: dict, method: str, name: str, guess: str | None, p: float, low: float | None = None,
                 high: float | None = None, count: int | None = None, n: int | None = None) -> dict:
    return {**key, "method": method, "class": name, "guess": guess or "", "probability": float(p),
            "low": None if low is None else float(low), "high": None if high is None else float(high),
            "count": count, "n": n}
