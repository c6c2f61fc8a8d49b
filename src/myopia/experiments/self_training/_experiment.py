"""``self-training``: train a lab model on its own samples and measure collapse and the seed-001 game.

seeds/004: "take the best K outputs [by joint log-prob] and train the model on those" should end in
degenerate, low-entropy text, while random samples should not. seeds/001 and 002: a model trained
at the sequence level "cares about future tokens" and avoids a continuation that leads to
unpredictable text, while a model trained token by token has no such incentive. One base model,
tuned several ways, measured before and after:

1. **base** (one cell per seed): a lab model trained on Shakespeare with game transcripts mixed in
   (the ``game`` task: an instruction, then "1" or the 0-branch, 50/50; the 0-branch is the word
   "zero" in the ``word`` variant and a fresh random letter string in the ``random`` one), or the
   white-box ``base_model`` named in the spec. It must play the game: the exact P(1-branch) and
   P(0-branch) each within ``play_tolerance`` of 0.5 in both variants, checked and reported;
2. **conditions** (one cell per condition and seed): ``rounds`` rounds of drawing K completions per
   prompt (text prompts and game prompts), keeping or rewarding some, and fine-tuning
   (``myopia.lab.selftrain``: ``top-k`` by joint log-prob, ``random-k``, ``reward-k``, ``rl``
   with RLOO and a KL penalty to the base). Each round is measured on the same held-out inputs
   (``_measure``) and saved; a cell resumes at its last finished round, bit-identically;
3. **scale** (one cell per ``scale_models`` model, the bundled base-vs-tuned pair): the same text
   measures on the same held-out characters, for scale.

Headline figures (``summary.json``, typed in ``_summary``): ``base`` (per seed: exact branch
probabilities and whether the base plays the game), ``final`` (per condition: each measure at
the last round, mean and 95% t-interval over seeds, and its change from the base, paired by
seed), ``questions`` (the three questions, one line each), ``scale`` (the bundled pair's text
measures) and ``round_seconds``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..._errors import UserError
from ...lab.selftrain import SelfTraining, generator, sample_measures, text_measures
from ...models import load_hf_model
from ...tasks import task_config, task_from_config
from .._base import Cell, CellContext, Experiment, Tables, register
from .._myopia_gap_train import quiet_transformers, train_cell
from . import _report, _summary
from ._measure import SAMPLE_STREAM, example_rows, flat_row, held_out, round_measures
from ._spec import QUICK, SelfTrainingSpec


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


@register
class SelfTrainingExperiment(Experiment):
    name = "self-training"
    spec_cls = SelfTrainingSpec
    summary = ("rounds of training a lab model on its own samples (top-k, random-k, reward-k, RLOO): collapse and "
               "the seed-001 game")
    quick = QUICK
    quick_order = 70

    def check(self, spec: SelfTrainingSpec) -> None:
        from ...models import check_spec

        for m in spec.scale_models + ([spec.base_model] if spec.base_model else []):
            check_spec(m)
        self._task(spec)  # the game task's own fields

    def cells(self, spec: SelfTrainingSpec) -> list[Cell]:
        out = [Cell(f"base__s{s}", None, {"kind": "base", "seed": s}) for s in spec.seeds]
        out += [Cell(f"{name}__s{s}", None, {"kind": "condition", "condition": name, "seed": s})
                for s in spec.seeds for name in spec.conditions]
        out += [Cell(f"scale__{_safe(m)}", m, {"kind": "scale"}) for m in spec.scale_models]
        return out

    def run_cell(self, cell: Cell, spec: SelfTrainingSpec, ctx: CellContext) -> Tables:
        torch.set_num_threads(spec.threads)
        quiet_transformers()
        kind = cell.params["kind"]
        if kind == "scale":
            return self._scale(cell, spec, ctx)
        seed = cell.params["seed"]
        t0 = time.time()
        base_dir, trained = self._base(spec, seed, ctx)
        if kind == "base":
            return self._base_tables(spec, seed, base_dir, trained, time.time() - t0, ctx)
        return self._condition(cell, spec, seed, base_dir, ctx)

    # --- the base model ---------------------------------------------------------------------------
    def _task(self, spec: SelfTrainingSpec, tokenizer=None):
        fields = {k: v for k, v in spec.base.task.items() if k != "name"}
        task = task_from_config(task_config("game", **fields))
        if tokenizer is not None and spec.base_model:
            task.use_tokenizer(tokenizer)
        return task

    def _base(self, spec: SelfTrainingSpec, seed: int, ctx: CellContext):
        """The base model's folder (trained in the run's ``work/base-sSEED``, resumably, or found
        there), or the named ``base_model``; and the training result (None for a named model)."""
        if spec.base_model:
            return spec.base_model, None
        work = Path(ctx.work_dir).parent / f"base-s{seed}"
        _, result = train_cell(spec.base, "ntp", seed, work, spec.threads, ctx.progress)
        return f"lab:{result.out_dir}", result

    def _load(self, spec: SelfTrainingSpec, base: str):
        model, tokenizer = load_hf_model(base)
        task = self._task(spec, tokenizer)
        task.prepare()
        if spec.base_model is None and task.tokenizer.get_vocab() != tokenizer.get_vocab():
            raise UserError(f"{base}'s tokenizer is not the game task's; delete the run's work/ folder to retrain")
        return model, task

    def _base_tables(self, spec, seed: int, base: str, trained, seconds: float, ctx: CellContext) -> Tables:
        model, task = self._load(spec, base)
        ctx.progress(0, note=f"s{seed}: measuring the base")
        m = round_measures(model, task, held_out(task, spec), spec, seed)
        row = {"seed": seed, "model": base, "steps": getattr(trained, "steps", 0),
               "train_seconds": getattr(trained, "wall_s", 0.0), "cell_seconds": seconds,
               "eval_loss": getattr(trained, "eval_loss", None), "xent_per_char": m["text"]["xent_per_char"]}
        plays = True
        for v in task.config.variants:
            for k in ("one", "zero", "other"):
                row[f"{v}_exact_{k}"] = m[v][f"exact_{k}"]
            plays &= all(abs(m[v][f"exact_{k}"] - 0.5) <= spec.play_tolerance for k in ("one", "zero"))
        row["plays"] = plays
        return {"base": [row]}

    # --- a condition ------------------------------------------------------------------------------
    def _condition(self, cell: Cell, spec: SelfTrainingSpec, seed: int, base: str, ctx: CellContext) -> Tables:
        name = cell.params["condition"]
        cfg = spec.condition_config(name)
        model, task = self._load(spec, base)
        frozen, _ = load_hf_model(base)
        limit = model.config.max_position_embeddings
        longest = max(cfg.prompt_tokens + cfg.completion_tokens, spec.prompt_tokens + spec.sample_tokens,
                      max(len(task.context_ids(v)) for v in task.config.variants) + cfg.answer_tokens)
        if longest > limit:
            raise UserError(f"condition {name!r}: a prompt and its completion take up to {longest} tokens, more "
                            f"than the base model's {limit} positions; shorten prompt_tokens / completion_tokens / "
                            "answer_tokens")
        inputs = held_out(task, spec)
        st = SelfTraining(cfg, model, frozen, task, Path(ctx.work_dir) / "rounds", seed=seed,
                          measure=lambda m, r: round_measures(m, task, inputs, spec, seed), progress=ctx.progress)
        records = st.run()
        key = {"condition": name, "seed": seed}
        rows = [flat_row(r, key) for r in records]
        for row, t in zip(rows, st.timings()):
            row["train_seconds"], row["measure_seconds"] = t["train"], t["measure"]
        examples = [e for r in records for e in example_rows(r, key)]
        rl = cfg.condition == "rl"
        info = {**key, "kind": cfg.condition, "reward": cfg.reward if cfg.condition in ("reward-k", "rl") else None,
                "beta": cfg.beta if rl else None, "data": None if rl else cfg.data, "decoding": cfg.decoding,
                "rounds": cfg.rounds, "checkpoint": str(st.out / f"round-{cfg.rounds:03d}")}
        return {"rounds": rows, "examples": examples, "conditions": [info]}

    # --- the bundled pair, for scale --------------------------------------------------------------
    def _scale(self, cell: Cell, spec: SelfTrainingSpec, ctx: CellContext) -> Tables:
        lm = ctx.model(cell.model)
        lm.require("white_box", experiment=f"{self.name} (scale)")
        lab_task = self._task(spec)
        inputs = held_out(lab_task, spec)
        windows, prompts = inputs.texts(lab_task.tokenizer)
        tok, model = lm.tokenizer, lm.model
        first = [lm.prefix_token_id] if lm.prefix_token_id is not None else []

        def ids(text: str) -> torch.Tensor:
            return torch.tensor(first + tok(text, add_special_tokens=False)["input_ids"])

        ctx.progress(0, total=2, note="text")
        rows = [ids(w) for w in windows]
        text = text_measures(model, tok, rows)
        lab_tokens = sum(len(w) - 1 for w in inputs.windows)
        length = max(2, round(spec.sample_tokens * lab_tokens / sum(len(r) - 1 for r in rows)))  # same characters
        ctx.progress(1, note=f"samples ({length} tokens)")
        samples = sample_measures(model, tok, [ids(p) for p in prompts], length, generator(0, SAMPLE_STREAM),
                                  unit=spec.degenerate, n_examples=spec.examples)
        ctx.progress(1)
        row = {"model": cell.model, "sample_tokens": length}
        row.update({f"text_{k}": v for k, v in text.items()})
        row.update({f"samples_{k}": v for k, v in samples.items() if k != "examples"})
        examples = [{"model": cell.model, "index": i, "text": t} for i, t in enumerate(samples["examples"])]
        return {"scale": [row], "scale_examples": examples}

    # --- results ------------------------------------------------------------------------------------
    def summarize(self, tables: Tables, spec: SelfTrainingSpec) -> dict:
        return _summary.summarize(tables, spec).model_dump(mode="json")

    def summary_rows(self, summary: dict):
        return _summary.summary_rows(summary)

    def report(self, tables: Tables, spec: SelfTrainingSpec, summary: dict, section) -> None:
        _report.report(tables, spec, summary, section)
