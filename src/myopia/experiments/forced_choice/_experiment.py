"""``forced-choice``: does a model avoid an answer whose continuation is unpredictable?

The experiment of ``seeds/001``: "I'm thinking of either 1 or 0 ... if your guess is 1
respond with 1, if 0 respond with the word zero" vs. "... respond with a string of random
letters". For each model and prompt variant, the answer classes are measured three ways:

- ``exact``: classes given as continuations, scored by teacher forcing (the probability
  that the answer *begins with* one of them: the sum of their joint probabilities);
  ``other`` is the remaining mass. The spec's ``boundary`` says which tokens are scored
  where a continuation merges with the end of the prompt (``natural``, ``lm-eval``, or
  ``exact``: the text event summed over every tokenization). A black-box (``openai:``) model scores on a completion
  endpoint (``chat = "never"``); after a chat prompt it can force only a reply's first
  token, so classes with longer continuations are refused there: the refusal is recorded
  per cell and the sampled columns still run.
- ``sampled``: the same "begins with" events counted in ``samples`` completions (the
  sampled tokens start with a listed continuation's tokens: a check of the exact figures),
  with Wilson 95 % intervals;
- ``pattern``: the strict patterns (the digit, the word, or a random letter string alone on
  the first line of the answer) counted in the same completions, with Wilson intervals.

Tuned models (those with a chat template) are prompted through it (``chat = "auto"``),
base models through the plain ``frame``; the exact rendered prompt is in the report. Then,
per model and compare pair, the guess-0 answer's share with the word vs. with the random
string. The headline figures are :class:`~._summary.ForcedChoiceSummary`.
"""

from __future__ import annotations

from ...models import SamplingParams, check_spec, frame_prompt
from ...report import Section
from .._base import Cell, CellContext, Experiment, Tables, slug
from ._answers import exact_answers, render, sampled_answers
from ._report import report
from ._spec import QUICK, ForcedChoiceSpec
from ._summary import ForcedChoiceSummary, summarize


class ForcedChoice(Experiment):
    spec_cls = ForcedChoiceSpec
    summary_cls = ForcedChoiceSummary
    about = ("answer-class probabilities, exact and sampled: does P('0') drop when '0' means a random string? "
             "(seeds/001)")
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
        exact_rows, cont_rows, exact_status = exact_answers(model, prompt, variant, key, spec.boundary)
        ctx.progress(1, note=f"{spec.samples} samples")
        seed = spec.seed * 1_000_003 + sum(ord(ch) for ch in cell.id)
        params = SamplingParams(max_tokens=spec.max_tokens, temperature=spec.temperature, seed=seed)
        sample_rows, sampled_rows, sample_status = sampled_answers(model, prompt, variant, key, spec.samples, params,
                                                                   spec.boundary)
        ctx.progress(1)
        prompt_row = {**key, "chat": bool(prompt.chat), "rendered": render(model, prompt),
                      "text": variant.text, "exact_status": exact_status, "sample_status": sample_status}
        return {"classes": exact_rows + sampled_rows, "continuations": cont_rows,
                "samples": sample_rows, "prompts": [prompt_row]}

    def summarize(self, tables: Tables, spec: ForcedChoiceSpec) -> ForcedChoiceSummary:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: ForcedChoiceSpec, summary: ForcedChoiceSummary, section: Section) -> None:
        report(tables, spec, summary, section)
