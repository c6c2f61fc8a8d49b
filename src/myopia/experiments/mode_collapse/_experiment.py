"""``mode-collapse``: do tuned models put their mass on one token where base models spread it?

On the same inputs for each model (seeds/000, "flattened logits"):

- **text**: next-token entropy at every token of each text (a Shakespeare play and the
  shipped prose sample), per token and per character and byte (the models' tokenizers
  differ, so only the per-character and per-byte figures compare across models), with the
  cross-entropy in the same units; and the calibration of the top-1 next-token probability
  (reliability diagram, ECE over ``bins`` equal-width bins);
- **multiple choice**: the probability of each option letter on the shipped question set,
  renormalised over the options; ECE of the top option's probability over questions
  (the GPT-4 report's measure: pre-trained 0.007 vs. 0.074 after PPO, on MMLU);
- **numbers**: "pick a random number between 0 and 100" prompts (chat template for tuned
  models, the plain ``frame`` "PROMPT\\nMy number is" for base ones, which ends where an
  answer starts), ``samples`` answers each, parsed strictly
  (an echo of the range or a numbered list is not an answer); the answers' entropy against
  the uniform's, both ``log(101)`` and the expected plug-in entropy of as many uniform draws.

A black-box (``openai:``) model is refused the text part (its server gives the top-k
next-token log-probs only, whose entropy is a lower bound, not the entropy); its
multiple-choice letters are scored exactly (through a chat template: each letter forced as
the reply's first token) and its numbers sampled. A refused part is recorded per cell. The
headline figures are :class:`~._summary.ModeCollapseSummary`.
"""

from __future__ import annotations

from ..._errors import UserError
from ...data import mc_questions
from ...models import LanguageModel, SamplingParams, check_spec, frame_prompt, sample_texts, use_chat
from ...report import Section
from .._base import Cell, CellContext, Experiment, Tables, slug
from ._multiple_choice import mc_records
from ._numbers import number_records
from ._report import report
from ._spec import QUICK, ModeCollapseSpec, load_text, text_id
from ._summary import ModeCollapseSummary, summarize
from ._text_stats import n_windows, text_ids, token_stats

# why the text part needs a white-box model, in its refusal
_TEXT_NEEDS = ("text entropy: the full next-token distribution at every token; a black-box model's top-k "
               "log-probs give only a lower bound of the entropy")


class ModeCollapse(Experiment):
    spec_cls = ModeCollapseSpec
    summary_cls = ModeCollapseSummary
    about = ("base vs tuned: next-token entropy, calibration (text and multiple choice), random-number answers "
             "(seeds/000)")
    quick = QUICK
    quick_order = 61

    def check(self, spec: ModeCollapseSpec) -> None:
        for m in spec.models:
            check_spec(m)
        for t in spec.texts:
            load_text(t, spec)

    def cells(self, spec: ModeCollapseSpec) -> list[Cell]:
        out = []
        for m in spec.models:
            out += [Cell(f"{slug(m)}__text-{text_id(t)}", m, {"part": "text", "text": t}) for t in spec.texts]
            if spec.multiple_choice:
                out.append(Cell(f"{slug(m)}__mc", m, {"part": "mc"}))
            out += [Cell(f"{slug(m)}__numbers-p{i}", m, {"part": "numbers", "prompt": i})
                    for i in range(len(spec.number_prompts))]
        return out

    def run_cell(self, cell: Cell, spec: ModeCollapseSpec, ctx: CellContext) -> Tables:
        lm = ctx.model(cell.model)
        part = cell.params["part"]
        try:
            if part == "text":
                tables = self._text(cell, spec, ctx)
            elif part == "mc":
                tables = self._mc(lm, cell, spec, ctx)
            else:
                tables = self._numbers(lm, cell, spec, ctx)
        except UserError as e:  # a model lacking what this part needs: recorded, not fatal
            tables, status = {}, f"refused: {e}"
        else:
            status = "ok"
        tables["status"] = [{"model": cell.model, "cell": cell.id, "part": part, "status": status}]
        return tables

    def _text(self, cell: Cell, spec: ModeCollapseSpec, ctx: CellContext) -> Tables:
        lm = ctx.white_box(cell.model, f"{self.name} ({_TEXT_NEEDS})")
        name = cell.params["text"]
        text = load_text(name, spec)
        ids, chars = text_ids(lm, text)
        ctx.progress(0, total=n_windows(len(ids), spec.window), note=f"{len(ids) - 1} tokens")
        stats = token_stats(lm, ids, spec.window, progress=ctx.progress)
        tokens = [{"model": cell.model, "text": name, "position": i, "entropy": h, "top1": c, "correct": bool(ok),
                   "logprob": lp, "chars": n} for i, (h, c, ok, lp, n)
                  in enumerate(zip(stats["entropy"], stats["top1"], stats["correct"], stats["logprob"], chars))]
        info = {"model": cell.model, "text": name, "tokens": len(tokens), "chars": len(text),
                "bytes": len(text.encode("utf-8")), "first_chars": text[:80]}
        return {"tokens": tokens, "texts": [info]}

    def _mc(self, lm: LanguageModel, cell: Cell, spec: ModeCollapseSpec, ctx: CellContext) -> Tables:
        lm.require("score", experiment=f"{self.name} (multiple choice)")
        questions = mc_questions()
        if spec.mc_limit:
            questions = questions[: spec.mc_limit]
        ctx.progress(0, total=1, note=f"{len(questions)} questions")
        rows = mc_records(lm, questions, use_chat(lm, spec.chat), {"model": cell.model}, spec.boundary)
        ctx.progress(1)
        return {"mc": rows}

    def _numbers(self, lm: LanguageModel, cell: Cell, spec: ModeCollapseSpec, ctx: CellContext) -> Tables:
        lm.require("sample", experiment=f"{self.name} (random numbers)")
        i = cell.params["prompt"]
        text = spec.number_prompts[i]
        prompt = frame_prompt(lm, text, spec.chat, spec.frame)
        ctx.progress(0, total=1, note=f"{spec.samples} samples")
        params = SamplingParams(max_tokens=spec.max_tokens, temperature=spec.temperature,
                                seed=spec.seed * 1_000_003 + 7919 * i + 1)
        texts = sample_texts(lm, prompt, spec.samples, params)
        ctx.progress(1)
        key = {"model": cell.model, "prompt_index": i, "prompt": text}
        return {"numbers": number_records(texts, spec.number_low, spec.number_high, key),
                "number_prompts": [{**key, "chat": use_chat(lm, spec.chat), "rendered": lm.render(prompt)}]}

    def summarize(self, tables: Tables, spec: ModeCollapseSpec) -> ModeCollapseSummary:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: ModeCollapseSpec, summary: ModeCollapseSummary, section: Section) -> None:
        report(tables, spec, summary, section)
