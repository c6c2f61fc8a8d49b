"""``sequence-likelihood``: why is " a a a a ..." more probable than a real story?

The question of ``seeds/004``: under a next-token model, the exact continuation
" a a a ... a" of "Once upon a time, there was a" has a higher joint log-prob than a
typical story, though a sampled continuation is almost never degenerate. For each model
and prompt, continuations of one token length are drawn four ways and scored per token:

- ``greedy``: argmax decoding;
- ``beam``: the ``beam_width`` best continuations by beam search (top-K sequences);
- ``sample``: ``samples`` continuations at temperature ``temperature`` (typical sequences);
- ``user`` and ``degenerate``: the listed continuations (by default the seed's story), and
  each unit in ``degenerate`` repeated to the same token length (by default " a"), cut into
  tokens by the spec's ``boundary`` rule (``natural`` or ``lm-eval``).

End-of-sequence is forbidden before ``length`` tokens, so every generated continuation has
exactly ``length`` tokens; user continuations are cut to ``length`` tokens. The headline
figures are :class:`~._summary.SequenceLikelihoodSummary`.
"""

from __future__ import annotations

from ...models import Prompt, SamplingParams, check_spec
from ...report import Section
from .._base import Cell, CellContext, Experiment, Tables, slug
from ._continuations import Drawn, listed, records, repeated
from ._report import report
from ._spec import QUICK, SequenceLikelihoodSpec
from ._summary import SequenceLikelihoodSummary, summarize


class SequenceLikelihood(Experiment):
    spec_cls = SequenceLikelihoodSpec
    summary_cls = SequenceLikelihoodSummary
    about = "joint log-probs of greedy, beam, sampled and degenerate continuations (seeds/004)"
    quick = QUICK
    quick_order = 0  # the quick suite's first member

    def check(self, spec: SequenceLikelihoodSpec) -> None:
        for m in spec.models:
            check_spec(m)

    def cells(self, spec: SequenceLikelihoodSpec) -> list[Cell]:
        return [
            Cell(id=f"{slug(m)}__p{i}", model=m, params={"prompt": i})
            for m in spec.models
            for i in range(len(spec.prompts))
        ]

    def run_cell(self, cell: Cell, spec: SequenceLikelihoodSpec, ctx: CellContext) -> Tables:
        model = ctx.white_box(cell.model, self.name)
        i = cell.params["prompt"]
        prompt = Prompt(spec.prompts[i], chat=spec.chat and model.has_chat_template)
        L = spec.length
        seed = spec.seed * 1_000_003 + i
        ctx.progress(0, total=4, note="greedy")
        greedy = model.sample(prompt, 1, SamplingParams(max_tokens=L, min_tokens=L, temperature=0, seed=seed))
        drawn = [Drawn("greedy", 0, greedy[0].token_ids)]
        ctx.progress(1, note="beam search")
        drawn += [Drawn("beam", j, b.token_ids) for j, b in enumerate(model.beam_search(prompt, spec.beam_width, L))]
        ctx.progress(1, note=f"{spec.samples} samples")
        params = SamplingParams(max_tokens=L, min_tokens=L, temperature=spec.temperature, seed=seed)
        drawn += [Drawn("sample", j, s.token_ids) for j, s in enumerate(model.sample(prompt, spec.samples, params))]
        cuts = [("user", j, listed(model, prompt, c, L, spec.boundary)) for j, c in enumerate(spec.continuations)]
        cuts += [("degenerate", j, repeated(model, prompt, u, L, spec.boundary)) for j, u in enumerate(spec.degenerate)]
        ctx.progress(1, note="scoring")
        scored = model.score_ids(prompt, [d.ids for d in drawn]) + model.score_cuts(prompt, [c for *_, c in cuts])
        drawn += [Drawn(kind, j, c.cont_ids) for kind, j, c in cuts]
        ctx.progress(1)
        return records({"model": cell.model, "prompt": spec.prompts[i], "prompt_index": i}, drawn, scored)

    def summarize(self, tables: Tables, spec: SequenceLikelihoodSpec) -> SequenceLikelihoodSummary:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: SequenceLikelihoodSpec, summary: SequenceLikelihoodSummary,
               section: Section) -> None:
        report(tables, spec, summary, section)
