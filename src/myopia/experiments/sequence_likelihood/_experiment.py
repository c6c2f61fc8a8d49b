"""``sequence-likelihood``: why is " a a a a ..." more probable than a real story?

The question of ``seeds/004``: under a next-token model, the exact continuation
" a a a ... a" of "Once upon a time, there was a" has a higher joint log-prob than a
typical story, though a sampled continuation is almost never degenerate. For each model
and prompt, continuations of one token length are drawn four ways and scored per token:

- ``greedy``: argmax decoding;
- ``beam``: the ``beam_width`` best continuations by beam search (top-K sequences);
- ``sample``: ``samples`` continuations at temperature ``temperature`` (typical sequences);
- ``user`` and ``degenerate``: the listed continuations (by default the seed's story), and
  each unit in ``degenerate`` repeated to the same token length (by default " a").

End-of-sequence is forbidden before ``length`` tokens, so every generated continuation has
exactly ``length`` tokens; user continuations are cut to ``length`` tokens.

Headline figures (``summary.json``): per model and prompt, ``greedy``, ``beam_best``,
``sample_median``, ``sample_max``, ``degenerate`` and ``user`` joint log-probs (nats), and
``degenerate_beats_samples``: the share of sampled continuations less probable than the
degenerate one.
"""

from __future__ import annotations

from ...models import Prompt, SamplingParams, check_spec
from .._base import Cell, CellContext, Experiment, Tables, slug, untyped_headline
from ._report import report
from ._spec import QUICK, SequenceLikelihoodSpec
from ._summary import summarize, summary_rows


def _prompt_id(i: int) -> str:
    return f"p{i}"


class SequenceLikelihood(Experiment):
    spec_cls = SequenceLikelihoodSpec
    summary_cls = untyped_headline(summary_rows)
    about = "joint log-probs of greedy, beam, sampled and degenerate continuations (seeds/004)"
    quick = QUICK
    quick_order = 0  # the quick suite's first member

    def check(self, spec: SequenceLikelihoodSpec) -> None:
        for m in spec.models:
            check_spec(m)

    def cells(self, spec: SequenceLikelihoodSpec) -> list[Cell]:
        return [
            Cell(id=f"{slug(m)}__{_prompt_id(i)}", model=m, params={"prompt": i})
            for m in spec.models
            for i in range(len(spec.prompts))
        ]

    def run_cell(self, cell: Cell, spec: SequenceLikelihoodSpec, ctx: CellContext) -> Tables:
        model = ctx.white_box(cell.model, self.name)
        text = spec.prompts[cell.params["prompt"]]
        prompt = Prompt(text, chat=spec.chat and model.has_chat_template)
        L = spec.length
        ctx.progress(0, total=4, note="greedy")
        seed = spec.seed * 1_000_003 + cell.params["prompt"]
        drawn: list[tuple[str, int, list[int]]] = []
        greedy = model.sample(prompt, 1, SamplingParams(max_tokens=L, min_tokens=L, temperature=0, seed=seed))
        drawn += [("greedy", 0, greedy[0].token_ids)]
        ctx.progress(1, note="beam search")
        beams = model.beam_search(prompt, spec.beam_width, L)
        drawn += [("beam", i, b.token_ids) for i, b in enumerate(beams)]
        ctx.progress(1, note=f"{spec.samples} samples")
        params = SamplingParams(max_tokens=L, min_tokens=L, temperature=spec.temperature, seed=seed)
        drawn += [("sample", i, s.token_ids) for i, s in enumerate(model.sample(prompt, spec.samples, params))]
        drawn += [("user", i, _cut(model, prompt, c, L)) for i, c in enumerate(spec.continuations)]
        drawn += [("degenerate", i, _repeat_to(model, prompt, u, L)) for i, u in enumerate(spec.degenerate)]
        ctx.progress(1, note="scoring")
        scored = model.score_ids(prompt, [ids for _, _, ids in drawn])
        ctx.progress(1)
        conts, toks = [], []
        for (kind, i, _), s in zip(drawn, scored):
            key = {"model": cell.model, "prompt": text, "prompt_index": cell.params["prompt"], "kind": kind, "index": i}
            ents = [t.entropy for t in s.tokens]
            conts.append(
                {
                    **key,
                    "text": s.continuation,
                    "n_tokens": len(s.tokens),
                    "logprob": s.logprob,
                    "mean_logprob": s.mean_logprob,
                    "mean_entropy": sum(ents) / max(len(ents), 1),
                    "rendered_prompt": s.context,
                }
            )
            toks += [{**key, "position": j, **t.__dict__} for j, t in enumerate(s.tokens)]
        return {"continuations": conts, "tokens": toks}

    def summarize(self, tables: Tables, spec: SequenceLikelihoodSpec):
        return self.summary_cls(**summarize(tables, spec))

    def report(self, tables: Tables, spec: SequenceLikelihoodSpec, summary, section) -> None:
        report(tables, spec, summary.model_dump(), section)


def _cut(model, prompt, text: str, n: int) -> list[int]:
    """The token ids of a listed continuation (joint tokenization), cut to ``n`` tokens."""
    return model.continuation_ids(prompt, text)[:n]


def _repeat_to(model, prompt, unit: str, n: int) -> list[int]:
    """``unit`` repeated until the continuation is exactly ``n`` tokens (cut if it overshoots)."""
    k = n
    while True:
        ids = model.continuation_ids(prompt, unit * k)
        if len(ids) >= n or k > 8 * n:
            return ids[:n]
        k += max(1, (n - len(ids)) // max(1, len(model.continuation_ids(prompt, unit))))


