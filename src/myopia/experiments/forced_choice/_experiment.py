"""``forced-choice``: does a model avoid an answer whose continuation is unpredictable?

The experiment of ``seeds/001``: "I'm thinking of either 1 or 0 ... if your guess is 1
respond with 1, if 0 respond with the word zero" vs. "... respond with a string of random
letters". For each model and prompt variant, the answer classes are measured three ways:

- ``exact``: classes given as continuations, scored by teacher forcing (the probability
  that the answer *begins with* one of them: the sum of their joint probabilities);
  ``other`` is the remaining mass. A black-box (``openai:``) model scores on a completion
  endpoint (``chat = "never"``); after a chat prompt it can force only a reply's first
  token, so classes with longer continuations are refused there: the refusal is recorded
  per cell and the sampled columns still run.
- ``sampled``: the same "begins with" events counted in ``samples`` completions (the
  sampled tokens start with a listed continuation's tokens: a check of the exact figures),
  with Wilson 95 % intervals;
- ``pattern``: the strict patterns (the digit, the word, or a random letter string alone on
  the first line of the answer) counted in the same completions, with Wilson intervals.

Tuned models (those with a chat template) are prompted through it (``chat = "auto"``),
base models through the plain ``frame``; the exact rendered prompt is in the report.

Headline figures (``summary.json``): ``cells`` (per model and variant: ``exact_<class>``,
``sampled_<class>``, ``pattern_<class>`` probabilities, ``exact_other``, ``pattern_other``,
``status``) and ``answers`` (per model and compare pair: ``p0_word`` and ``p0_random``,
the pattern-sampled probability of the guess-0 answer with their Wilson intervals
``*_low``/``*_high``, ``share0_word``/``share0_random`` = P(guess 0) / P(guess 0 or 1),
``exact_p0_word``, and ``verdict``: "drops", "rises" or "no clear change").
"""

from __future__ import annotations

import math

from ..._errors import UserError
from ...models import SamplingParams, WhiteBoxModel, check_spec, draw_samples, frame_prompt
from ...stats import wilson_interval
from .._base import Cell, CellContext, Experiment, Tables, slug, untyped_headline
from ._core import OTHER, PatternClass, classify_sample, exact_class_probabilities, sampled_class_probabilities
from ._report import report
from ._spec import QUICK, ForcedChoiceSpec, Variant
from ._summary import summarize, summary_rows


class ForcedChoice(Experiment):
    spec_cls = ForcedChoiceSpec
    summary_cls = untyped_headline(summary_rows)
    about = "answer-class probabilities, exact and sampled: does P('0') drop when '0' means a random string? (seeds/001)"
    quick = QUICK
    quick_order = 60

    def check(self, spec: ForcedChoiceSpec) -> None:
        for m in spec.models:
            check_spec(m)

    def cells(self, spec: ForcedChoiceSpec) -> list[Cell]:
        return [Cell(id=f"{slug(m)}__{v.name}", model=m, params={"variant": v.name})
                for m in spec.models for v in spec.active()]

    def run_cell(self, cell: Cell, spec: ForcedChoiceSpec, ctx: CellContext) -> Tables:
        model = ctx.model(cell.model)
        variant = next(v for v in spec.variants if v.name == cell.params["variant"])
        prompt = frame_prompt(model, variant.text, spec.chat, spec.frame)
        key = {"model": cell.model, "variant": variant.name}
        ctx.progress(0, total=2, note="exact")
        exact_rows, cont_rows, exact_status = _exact(model, prompt, variant, key)
        ctx.progress(1, note=f"{spec.samples} samples")
        sample_rows, sampled_rows, sample_status = _sampled(model, prompt, variant, key, spec, cell)
        ctx.progress(1)
        prompt_row = {**key, "chat": bool(prompt.chat), "rendered": _render(model, prompt),
                      "text": variant.text, "exact_status": exact_status, "sample_status": sample_status}
        return {"classes": exact_rows + sampled_rows, "continuations": cont_rows,
                "samples": sample_rows, "prompts": [prompt_row]}

    # -- results --------------------------------------------------------------------
    def summarize(self, tables: Tables, spec: ForcedChoiceSpec):
        return self.summary_cls(**summarize(tables, spec))

    def report(self, tables: Tables, spec: ForcedChoiceSpec, summary, section) -> None:
        report(tables, spec, summary.model_dump(), section)


def _render(model, prompt) -> str:
    try:
        return model.render(prompt)
    except UserError as e:
        return f"(cannot render: {e})"


def _exact(model, prompt, variant: Variant, key: dict) -> tuple[list[dict], list[dict], str]:
    """Exact class probabilities, or the reason the model refused them."""
    exact = [e for c in variant.classes if (e := c.exact()) is not None]
    conts = [c for e in exact for c in e.continuations]
    if not conts:
        return [], [], "no exact classes"
    try:
        if not model.capabilities.score:
            model.require("score", experiment="forced-choice (exact classes)")
        scored = model.score(prompt, conts)
    except UserError as e:
        return [], [], f"refused: {e}"
    logprobs = {s.continuation: s.logprob for s in scored}
    result = exact_class_probabilities(exact, logprobs)
    owner = {c: e.name for e in exact for c in e.continuations}
    guess = {c.name: c.guess for c in variant.classes}
    rows = [_class_row(key, "exact", name, guess.get(name), p) for name, p in result.probabilities.items()]
    cont_rows = [{**key, "class": owner[s.continuation], "continuation": s.continuation,
                  "tokens": "|".join(t.token for t in s.tokens), "n_tokens": len(s.tokens),
                  "logprob": s.logprob, "probability": math.exp(s.logprob),
                  "first_token_probability": math.exp(s.tokens[0].logprob)} for s in scored]
    return rows, cont_rows, "ok"


def _sampled(model, prompt, variant: Variant, key: dict, spec: ForcedChoiceSpec,
             cell: Cell) -> tuple[list[dict], list[dict], str]:
    if spec.samples == 0:
        return [], [], "samples = 0"
    seed = spec.seed * 1_000_003 + sum(ord(ch) for ch in cell.id)
    try:
        params = SamplingParams(max_tokens=spec.max_tokens, temperature=spec.temperature, seed=seed)
        drawn = draw_samples(model, prompt, spec.samples, params)
    except UserError as e:
        return [], [], f"refused: {e}"
    texts = [s.text for s in drawn]
    guess = {c.name: c.guess for c in variant.classes}
    labels = {"sampled": _begins_with(model, prompt, drawn, variant)}
    rows = _count_rows(key, "sampled", labels["sampled"], [c.name for c in variant.classes if c.continuations], guess)
    pattern = _pattern_classes(variant)
    labels["pattern"] = [classify_sample(t, pattern) for t in texts]
    rows += [_class_row(key, "pattern", e.name, guess.get(e.name), e.probability, e.low, e.high, e.count, e.n)
             for e in sampled_class_probabilities(texts, pattern, n_examples=0)]
    sample_rows = [{**key, "index": i, "text": t, "prefix_class": labels["sampled"][i],
                    "pattern_class": labels["pattern"][i]} for i, t in enumerate(texts)]
    return sample_rows, rows, "ok"


def _begins_with(model, prompt, drawn: list, variant: Variant) -> list[str]:
    """The exact classes' event on each sample: its *tokens* begin with the tokens of one of
    a class's continuations (as scored). Text matching would also count '"0",' for '"0"'
    although its last token '",' differs from the scored '"', which the exact figure does
    not include. Backends without token ids (``openai:``) fall back to the raw text
    (whitespace included), which counts such samples too."""
    classes = [c for c in variant.classes if c.continuations]
    if not isinstance(model, WhiteBoxModel) or any(not s.token_ids for s in drawn):
        return [next((c.name for c in classes if any(s.text.startswith(x) for x in c.continuations)), OTHER)
                for s in drawn]
    seqs = {c.name: [tuple(model.continuation_ids(prompt, x)) for x in c.continuations] for c in classes}
    return [next((name for name, ts in seqs.items() if any(tuple(s.token_ids[:len(t)]) == t for t in ts)), OTHER)
            for s in drawn]


def _count_rows(key: dict, method: str, labels: list[str], names: list[str], guess: dict) -> list[dict]:
    n = len(labels)
    rows = []
    for name in names + [OTHER]:
        k = labels.count(name)
        lo, hi = wilson_interval(k, n)
        rows.append(_class_row(key, method, name, guess.get(name), k / n, lo, hi, k, n))
    return rows


def _pattern_classes(variant: Variant) -> list[PatternClass]:
    """Strict patterns; a class without one falls back to its "begins with" event."""
    out = []
    for c in variant.classes:
        p = c.pattern or c.prefix_pattern()
        out.append(PatternClass(c.name, p))
    return out


def _class_row(key: dict, method: str, name: str, guess: str | None, p: float,
               low: float | None = None, high: float | None = None,
               count: int | None = None, n: int | None = None) -> dict:
    return {**key, "method": method, "class": name, "guess": guess or "", "probability": float(p),
            "low": None if low is None else float(low), "high": None if high is None else float(high),
            "count": count, "n": n}

