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
   (:mod:`myopia.lab.selftrain`: ``top-k`` by joint log-prob, ``random-k``, ``reward-k``, ``rl``
   with RLOO and a KL penalty to the base). Each round is measured on the same held-out inputs
   (``_measure``) and saved; a cell resumes at its last finished round, bit-identically;
3. **scale** (one cell per ``scale_models`` model, the bundled base-vs-tuned pair): the same text
   measures on the same held-out characters, for scale.

The headline (``summary.json``) is :class:`~._summary.SelfTrainingHeadline`: the base check per
seed, each condition's measures at the last round and their change from the base (paired by seed,
95% t-intervals), the three questions answered in one line each, and the bundled pair's values.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from ..._errors import UserError
from ...lab import train_cell, train_device
from ...lab.selftrain import SelfTraining, generator, sample_measures, text_measures
from ...models import check_spec, load_hf_model, quiet_transformers
from ...tasks import GameTask, task_config, task_from_config
from .._base import Cell, CellContext, Experiment, Tables, slug
from ._measure import SAMPLE_STREAM, example_rows, flat_row, held_out, round_measures
from ._report import report
from ._spec import QUICK, SelfTrainingSpec
from ._summary import SelfTrainingHeadline, summarize


class SelfTrainingExperiment(Experiment):
    spec_cls = SelfTrainingSpec
    summary_cls = SelfTrainingHeadline
    about = ("rounds of training a lab model on its own samples (top-k, random-k, reward-k, RLOO): collapse and "
             "the seed-001 game")
    quick = QUICK
    quick_order = 80

    def check(self, spec: SelfTrainingSpec) -> None:
        for m in spec.scale_models + ([spec.base_model] if spec.base_model else []):
            check_spec(m)
        game_task(spec)  # the game task's own fields (a variant without a 0-branch, ...)

    def cells(self, spec: SelfTrainingSpec) -> list[Cell]:
        out = [Cell(f"base__s{s}", None, {"kind": "base", "seed": s}) for s in spec.seeds]
        out += [Cell(f"{name}__s{s}", None, {"kind": "condition", "condition": name, "seed": s})
                for s in spec.seeds for name in spec.conditions]
        out += [Cell(f"scale__{slug(m)}", m, {"kind": "scale"}) for m in spec.scale_models]
        return out

    def run_cell(self, cell: Cell, spec: SelfTrainingSpec, ctx: CellContext) -> Tables:
        torch.set_num_threads(spec.threads)
        quiet_transformers()
        kind = cell.params["kind"]
        if kind == "scale":
            return _scale(cell, spec, ctx, self.name)
        seed = cell.params["seed"]
        t0 = time.time()
        base, trained = _base(spec, seed, Path(ctx.work_dir), ctx)
        if kind == "base":
            return _base_tables(spec, seed, base, trained, time.time() - t0, ctx)
        return _condition(cell.params["condition"], spec, seed, base, Path(ctx.work_dir), ctx)

    def summarize(self, tables: Tables, spec: SelfTrainingSpec) -> SelfTrainingHeadline:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: SelfTrainingSpec, summary: SelfTrainingHeadline, section) -> None:
        report(tables, spec, summary, section)


# --- the base model -------------------------------------------------------------------------------
def game_task(spec: SelfTrainingSpec, tokenizer=None) -> GameTask:
    """The game task of ``spec.base.task``; with a pretrained ``base_model``, on its tokenizer."""
    fields = {k: v for k, v in spec.base.task.items() if k != "name"}
    task = task_from_config(task_config("game", **fields))
    if tokenizer is not None and spec.base_model:
        task.use_tokenizer(tokenizer)
    return task


@contextmanager
def _locked(path: Path):
    """One process at a time trains a seed's base (cells of one seed may run in parallel workers);
    the kernel drops the lock with its holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _base(spec: SelfTrainingSpec, seed: int, work_dir: Path, ctx: CellContext):
    """The base model's spec (``lab:`` of the folder it is trained in, ``work/base-sSEED/train``,
    resumably; or found there), or the named ``base_model``; and the training result (None for a
    named model)."""
    if spec.base_model:
        return spec.base_model, None
    work = work_dir.parent / f"base-s{seed}"
    with _locked(work_dir.parent / f".base-s{seed}.lock"):
        _, result = train_cell(spec.base, "ntp", seed, work, spec.threads, ctx.progress, ctx.device)
    return f"lab:{result.out_dir}", result


def _device(spec: SelfTrainingSpec, ctx: CellContext) -> str:
    """Where the base model is measured and the rounds run: where the base trained (the run's
    ``--device`` unless ``base.device`` names one), or the run's for a named ``base_model``."""
    return ctx.device if spec.base_model else train_device(spec.base, ctx.device)


def _load(spec: SelfTrainingSpec, base: str, device: str):
    """The base model on ``device`` (float32: the rounds fine-tune it) and its game task."""
    model, tokenizer = load_hf_model(base, device=device)
    task = game_task(spec, tokenizer)
    task.prepare()
    if spec.base_model is None and task.tokenizer.get_vocab() != tokenizer.get_vocab():
        raise UserError(f"{base}'s tokenizer is not the game task's; delete the run's work/ folder to retrain")
    return model, task


def _base_tables(spec: SelfTrainingSpec, seed: int, base: str, trained, seconds: float, ctx: CellContext) -> Tables:
    model, task = _load(spec, base, _device(spec, ctx))
    ctx.progress(0, note=f"s{seed}: measuring the base")
    m = round_measures(model, task, held_out(task, spec), spec, seed)
    row = {"seed": seed, "model": base, "steps": getattr(trained, "steps", 0),
           "train_seconds": getattr(trained, "wall_s", 0.0), "cell_seconds": seconds,
           "eval_loss": getattr(trained, "eval_loss", None), "xent_per_char": m["text"]["xent_per_char"]}
    plays = True
    for v in task.config.variants:
        for k in ("one", "zero", "other"):
            row[f"{v}_exact_{k}"] = m[v][f"exact_{k}"]
        for k in ("one", "zero"):
            row[f"{v}_sampled_{k}"] = m[v].get(f"sampled_{k}")
            row[f"{v}_sampled_{k}_low"] = m[v].get(f"sampled_{k}_low")
            row[f"{v}_sampled_{k}_high"] = m[v].get(f"sampled_{k}_high")
        plays &= all(abs(m[v][f"exact_{k}"] - 0.5) <= spec.play_tolerance for k in ("one", "zero"))
    row["plays"] = plays
    return {"base": [row]}


# --- a condition ------------------------------------------------------------------------------------
def _condition(name: str, spec: SelfTrainingSpec, seed: int, base: str, work_dir: Path, ctx: CellContext) -> Tables:
    cfg = spec.condition_config(name)
    device = _device(spec, ctx)
    model, task = _load(spec, base, device)
    frozen, _ = load_hf_model(base, device=device)
    limit = model.config.max_position_embeddings
    longest = max(cfg.prompt_tokens + cfg.completion_tokens, spec.prompt_tokens + spec.sample_tokens,
                  max(len(task.context_ids(v)) for v in task.config.variants) + cfg.answer_tokens)
    if longest > limit:
        raise UserError(f"condition {name!r}: a prompt and its completion take up to {longest} tokens, more "
                        f"than the base model's {limit} positions; shorten prompt_tokens / completion_tokens / "
                        "answer_tokens")
    inputs = held_out(task, spec)
    st = SelfTraining(cfg, model, frozen, task, work_dir / "rounds", seed=seed,
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


# --- the bundled pair, for scale ----------------------------------------------------------------------
def _scale(cell: Cell, spec: SelfTrainingSpec, ctx: CellContext, experiment: str) -> Tables:
    lm = ctx.white_box(cell.model, f"{experiment} (scale)")
    lab_task = game_task(spec)
    inputs = held_out(lab_task, spec)
    windows, prompts = inputs.texts(lab_task.tokenizer)
    tok = lm.tokenizer
    first = [lm.prefix_token_id] if lm.prefix_token_id is not None else []

    def ids(text: str) -> torch.Tensor:
        return torch.tensor(first + tok(text, add_special_tokens=False)["input_ids"])

    ctx.progress(0, total=2, note="text")
    rows = [ids(w) for w in windows]
    text = text_measures(lm.model, tok, rows)
    lab_tokens = sum(len(w) - 1 for w in inputs.windows)
    length = max(2, round(spec.sample_tokens * lab_tokens / sum(len(r) - 1 for r in rows)))  # same characters
    ctx.progress(1, note=f"samples ({length} tokens)")
    samples = sample_measures(lm.model, tok, [ids(p) for p in prompts], length, generator(0, SAMPLE_STREAM),
                              unit=spec.degenerate, n_examples=spec.examples)
    ctx.progress(1)
    row = {"model": cell.model, "sample_tokens": length}
    row.update({f"text_{k}": v for k, v in text.items()})
    row.update({f"samples_{k}": v for k, v in samples.items() if k != "examples"})
    examples = [{"model": cell.model, "index": i, "text": t} for i, t in enumerate(samples["examples"])]
    return {"scale": [row], "scale_examples": examples}
