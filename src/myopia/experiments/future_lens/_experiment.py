"""``future-lens``: does the hidden state at t already encode the tokens at t+1, t+2, t+3?

"Myopic perception" (DESIGN.md), measured the way of Pal et al. 2023 ("Future Lens"): for
every chosen layer l and offset N = 1..K, a reader from the frozen model's residual stream at
(l, t) to the token at t+N, fit on the first part of a text and evaluated on the rest, against
count baselines (``_baselines.py``) in a restricted output space (``_classes.py``). The reader
today is the linear probe (``_probe.py``); readers are units (``_readers.py``) the cell runs at
every layer over hidden states cached once (``_states.py``).

Models: any white-box spec, plus ``trained:OBJECTIVE`` (e.g. ``trained:ntp``,
``trained:myopic``): a lab model trained in the cell under ``train`` with that objective
(resumable), so vanilla and myopic models of identical shape and budget are compared. The
headline (``summary.json``) is :class:`~._summary.FutureLensHeadline`.
"""

from __future__ import annotations

import time

import torch

from ...data import read_text
from ...lab import train_cell
from ...models import check_spec, load_hf_model
from .._base import Cell, CellContext, Experiment, Tables, slug
from ._baselines import baseline_rows
from ._probe import LinearProbe, ProbeConfig
from ._readers import Reader, reading_rows
from ._report import report
from ._spec import QUICK, TRAINED, FutureLensSpec
from ._states import cache_states
from ._summary import FutureLensHeadline, summarize


def readers(spec: FutureLensSpec) -> list[Reader]:
    """The readers run at every layer."""
    probe = ProbeConfig(spec.probe_epochs, spec.probe_batch, spec.probe_lr, spec.probe_weight_decay, spec.seed)
    return [LinearProbe(probe)]


class FutureLens(Experiment):
    spec_cls = FutureLensSpec
    summary_cls = FutureLensHeadline
    about = "linear probes from the hidden state at t to the tokens at t+1..t+K, by layer (Future Lens)"
    quick = QUICK
    quick_order = 60
    takes_gradients = True  # float32 whatever --dtype says

    def check(self, spec: FutureLensSpec) -> None:
        read_text(spec.text)
        for m in spec.models:
            if not m.startswith(TRAINED):
                check_spec(m)

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
            _, result = train_cell(spec.train, objective, spec.seed, ctx.work_dir, spec.threads, ctx.progress)
            checkpoint = result.out_dir
            model, tokenizer = load_hf_model(f"lab:{checkpoint}")
        else:
            lm = ctx.white_box(name, self.name)
            model, tokenizer = lm.model, lm.tokenizer
        t0 = time.time()
        # 2. its hidden states on both parts of the text, once for every reader
        states = cache_states(model.eval(), tokenizer, name, spec, ctx.progress)
        ctx.progress(2, note=f"{name}: probes")
        # 3. every reader at every chosen layer, scored per offset on the held-out part
        probes = []
        for layer in states.layers:
            for reader in readers(spec):
                probes += reading_rows(reader.read(states, layer), states, layer, key)
            ctx.progress(1, note=f"{name}: layer {layer}")
        # 4. the baselines, in the same classes
        baselines = baseline_rows(states, key)
        info = {**key, **states.describe(), "seconds": time.time() - t0}
        if checkpoint is not None:  # reusable elsewhere as lab:DIR
            info["checkpoint"] = checkpoint
        return {"probes": probes, "baselines": baselines, "info": [info]}

    def summarize(self, tables: Tables, spec: FutureLensSpec) -> FutureLensHeadline:
        return summarize(tables, spec)

    def report(self, tables: Tables, spec: FutureLensSpec, summary: FutureLensHeadline, section) -> None:
        report(tables, spec, summary, section)
