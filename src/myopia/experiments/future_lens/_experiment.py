"""``future-lens``: does the hidden state at t already encode the tokens at t+1, t+2, t+3?

"Myopic perception" (DESIGN.md), measured the way of Pal et al. 2023 ("Future Lens"): for
every chosen layer l and offset N = 1..K, a reader from the frozen model's residual stream at
(l, t) to the token at t+N, fit on the first part of a text and evaluated on the rest, against
count baselines (``_baselines.py``) in a restricted output space (``_classes.py``). Four readers
(``methods``; ``_readers.py``): the linear probe (``_probe.py``), a map to the future last-layer
state (``_future_state.py``), a transplant into a fixed context (``_transplant.py``) and a learned
prompt (``_prompt.py``), all over hidden states cached once (``_states.py``).

Models: any white-box spec, plus ``trained:OBJECTIVE`` (e.g. ``trained:ntp``,
``trained:myopic``): a lab model trained in the cell under ``train`` with that objective
(resumable), so vanilla and myopic models of identical shape and budget are compared. The
headline (``summary.json``) is :class:`~._summary.FutureLensHeadline`.
"""

from __future__ import annotations

import time

import torch

from ..._errors import UserError
from ...data import read_text, split_text
from ...lab import SHAPES, is_preset, train_cell, train_config
from ...models import check_spec, load_hf_model
from .._base import Cell, CellContext, Experiment, Tables, slug
from ._baselines import baseline_rows
from ._future_state import FutureState, StateMapConfig
from ._probe import LinearProbe, ProbeConfig
from ._prompt import LearnedPrompt, PromptConfig
from ._readers import Reader, reading_rows
from ._report import report
from ._spec import QUICK, TRAINED, FutureLensSpec
from ._states import LensStates, cache_states, pick_layers
from ._summary import FutureLensHeadline, summarize
from ._transplant import Transplant, context_ids


def readers(spec: FutureLensSpec, model, tokenizer) -> list[Reader]:
    """The spec's readers, in its order, for one model."""
    ids = context_ids(tokenizer, spec.transplant_context)
    made = {
        "linear": lambda: LinearProbe(
            ProbeConfig(spec.probe_epochs, spec.probe_batch, spec.probe_lr, spec.probe_weight_decay, spec.seed)
        ),
        "future-state": lambda: FutureState(
            model, StateMapConfig(spec.state_epochs, spec.state_batch, spec.state_lr, seed=spec.seed)
        ),
        "transplant": lambda: Transplant(model, ids),
        "learned-prompt": lambda: LearnedPrompt(
            model, ids, int(tokenizer.bos_token_id is not None),
            PromptConfig(spec.prompt_steps, spec.prompt_batch, spec.prompt_lr, spec.seed),
        ),
    }
    return [made[m]() for m in spec.methods]


def reader_layers(reader: Reader, states: LensStates, spec: FutureLensSpec) -> list[int]:
    """Where ``reader`` reads: the linear probe at every read layer, the others (which run the
    model's head or blocks) at ``model_layers`` of them."""
    if reader.method == "linear":
        return states.layers
    return [states.layers[i] for i in pick_layers(len(states.layers), spec.model_layers)]


class FutureLens(Experiment):
    spec_cls = FutureLensSpec
    summary_cls = FutureLensHeadline
    about = "readers from the hidden state at t to the tokens at t+1..t+K, by layer and method (Future Lens)"
    quick = QUICK
    quick_order = 60
    takes_gradients = True  # float32 whatever --dtype says

    def check(self, spec: FutureLensSpec) -> None:
        train_text, eval_text = split_text(read_text(spec.text), spec.train_fraction)
        if min(len(train_text), len(eval_text)) <= spec.offsets + 1:  # a token holds at least one character
            raise UserError(
                f"text {spec.text!r} is too short for offsets up to {spec.offsets}: its training and evaluation "
                f"parts have {len(train_text)} and {len(eval_text)} characters"
            )
        for m in spec.models:
            if not m.startswith(TRAINED):
                check_spec(m)
            elif spec.layers is not None:  # a lab preset's depth is known before training it
                lab = train_config(spec.train, m[len(TRAINED) :], spec.seed, None, None).model
                if is_preset(lab.name):
                    depth = lab.n_layer or SHAPES[lab.name.partition("-")[2]].n_layer
                    if max(spec.layers) > depth:
                        raise UserError(
                            f"layer {max(spec.layers)} is out of range for {m}: {lab.name} has layers 0..{depth} "
                            "(0 = embeddings)"
                        )

    def cells(self, spec: FutureLensSpec) -> list[Cell]:
        return [
            Cell(id=slug(m), model=None if m.startswith(TRAINED) else m, params={"model": m}) for m in spec.models
        ]

    def run_cell(self, cell: Cell, spec: FutureLensSpec, ctx: CellContext) -> Tables:
        torch.set_num_threads(spec.threads)
        name = cell.params["model"]
        key = {"model": name}
        # 1. the model: a lab model trained here (resumable in work/CELL/train), or a white-box spec
        checkpoint = None
        if name.startswith(TRAINED):
            objective = name[len(TRAINED) :]
            cfg, result = train_cell(
                spec.train, objective, spec.seed, ctx.work_dir, spec.threads, ctx.progress, ctx.device
            )
            checkpoint = result.out_dir
            model, tokenizer = load_hf_model(f"lab:{checkpoint}", device=cfg.device)  # float32, where it trained
        else:
            lm = ctx.white_box(name, self.name)
            model, tokenizer = lm.model, lm.tokenizer
        t0 = time.time()
        # 2. its hidden states on both parts of the text, once for every reader
        states = cache_states(model.eval(), tokenizer, name, spec, ctx.progress)
        ctx.progress(2, note=f"{name}: readers")
        # 3. every reader at its layers, scored per offset on the held-out part
        probes = []
        seconds = dict.fromkeys(spec.methods, 0.0)
        todo = readers(spec, model, tokenizer)
        for layer in states.layers:
            for reader in todo:
                if layer in reader_layers(reader, states, spec):
                    t1 = time.time()
                    reading = reader.read(states, layer)
                    probes += reading_rows(reading, states, layer, {**key, "method": reader.method})
                    seconds[reader.method] += time.time() - t1
            ctx.progress(1, note=f"{name}: layer {layer}")
        # 4. the baselines, in the same classes
        baselines = baseline_rows(states, key)
        info = {**key, **states.describe(), "seconds": time.time() - t0}
        info.update({f"seconds_{m}": s for m, s in seconds.items()})
        if checkpoint is not None:  # reusable elsewhere as lab:DIR
            info["checkpoint"] = checkpoint
        return {"probes": probes, "baselines": baselines, "info": [info]}

    def summarize(self, tables: Tables, spec: FutureLensSpec) -> FutureLensHeadline:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: FutureLensSpec, summary: FutureLensHeadline, section) -> None:
        report(tables, spec, summary, section)
