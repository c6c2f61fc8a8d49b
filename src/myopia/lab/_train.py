"""The training loop: ``train(config) -> TrainResult``.

One step = one AdamW update on a global batch of ``batch_size`` rows: each data-parallel
rank takes its slice of the step's batch (a pure function of ``(seed, step)``), runs
``grad_accum`` micro-batches through the objective's ``forward_backward``, and the ranks
average their gradients in one flattened all-reduce (from outside the model, so every
objective works unchanged). Then clipping, the learning rate of this step, the update.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from .._errors import UserError
from .._io import publish_tree, write_text_atomic
from ..tasks import Batch, task_from_config
from ._checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_model, write_log
from ._config import TrainConfig, lr_at, validate
from ._models import build_model, count_parameters
from ._progress import progress_bar

# fields that may change between an interrupted run and its resumption
_RESUMABLE_CHANGES = {"progress", "threads", "out", "device"}


@dataclass
class TrainResult:
    out_dir: str
    steps: int
    loss: float  # mean training loss of the last step
    eval_loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)  # task metrics at the end (e.g. accuracy)
    n_params: int = 0  # non-embedding parameters (mtp:n's extra heads, mtp-seq:n's depth modules included)
    tokens_per_s: float = 0.0  # mean over the run (positions per second)
    wall_s: float = 0.0
    resumed_from: int | None = None


# --- distributed ------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @classmethod
    def setup(cls, device_kind: str) -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        owns = False
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
            owns = True
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns)

    def all_reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Average gradients over ranks in one flattened bucket."""
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])  # (n_params,)
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()  # (same shape as p)
            offset += n

    def mean(self, values: dict[str, float], device) -> dict[str, float]:
        if self.world == 1 or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return {k: v / self.world for k, v in zip(keys, t.tolist())}

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _device(cfg: TrainConfig) -> str:
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {cfg.device!r} asked for, but no GPU is visible; use --set device=cpu")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def for_training(model) -> None:
    """Training mode without a KV cache (it would copy every layer's keys and values each
    step); checkpoints keep the model's own ``use_cache``."""
    model.myopia_use_cache, model.config.use_cache = model.config.use_cache, False
    model.train()


# --- optimizer --------------------------------------------------------------------------
def make_optimizer(module: torch.nn.Module, cfg: TrainConfig) -> tuple[torch.optim.AdamW, list[torch.nn.Parameter]]:
    """AdamW; weight decay on matrices (>= 2 dims) only, not on norms and biases."""
    params = [p for p in module.parameters() if p.requires_grad]
    seen: set[int] = set()
    params = [p for p in params if not (id(p) in seen or seen.add(id(p)))]  # shared tensors once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    return opt, decay + no_decay


def train_step(run: "Run", batch: Batch, step: int) -> dict[str, float]:
    """One optimizer step of ``run`` on this rank's slice ``batch``; returns metrics averaged
    over ranks."""
    cfg, params, optimizer = run.cfg, run.params, run.optimizer
    lr = lr_at(cfg, step)
    for g in optimizer.param_groups:
        g["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    micro = len(batch) // cfg.grad_accum
    totals: dict[str, float] = {}
    device = params[0].device
    for i in range(cfg.grad_accum):
        mb = run.task.embed(batch.rows(i * micro, (i + 1) * micro).to(device), run.model)
        with run.autocast():
            m = run.objective.forward_backward(run.module, mb, run.task.loss, loss_scale=1.0 / cfg.grad_accum)
        for k, v in m.items():
            totals[k] = totals.get(k, 0.0) + v / cfg.grad_accum
    run.ddp.all_reduce_grads(params)
    metrics = run.ddp.mean(totals, device)
    if not all(math.isfinite(v) for v in metrics.values()):
        return metrics  # the caller stops before the update
    clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
    metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, clip))
    optimizer.step()
    metrics["lr"] = lr
    return metrics


@torch.no_grad()
def evaluate(
    module, model, objective, task, cfg: TrainConfig, ddp: Dist, eval_set: list[Batch], autocast
) -> dict[str, float]:
    """Held-out loss (masked mean over the fixed eval batches, sharded over ranks) + task metrics."""
    module.eval()
    device = next(model.parameters()).device
    acc = torch.zeros(2, dtype=torch.float64, device=device)  # (loss sum, count)
    for i, b in enumerate(eval_set):
        if i % ddp.world != ddp.rank:
            continue
        b = task.embed(b.to(device), model)
        with autocast():
            per_pos = objective.per_position_loss(module, b, task.loss).double()  # (B,T)
        acc += torch.stack([(per_pos * b.loss_mask).sum(), b.loss_mask.sum().double()])
    ddp.sum(acc)
    out = {"eval_loss": (acc[0] / acc[1].clamp_min(1)).item()}
    with autocast():
        out.update(task.evaluate(objective.next_token_model(module)))
    module.train()
    return out


# --- the run ----------------------------------------------------------------------------
def _check_spec(out: Path, cfg: TrainConfig) -> dict | None:
    """Refuse to mix two different runs in one folder; return a finished run's result."""
    spec_path = out / "spec.json"
    if not spec_path.exists():
        return None
    old = json.loads(spec_path.read_text())
    new = cfg.model_dump(mode="json")
    diff = sorted(k for k in set(old) | set(new) if k not in _RESUMABLE_CHANGES and old.get(k) != new.get(k))
    if diff:
        raise UserError(
            f"{out} holds a run with a different spec ({', '.join(diff)} differ); use another --out or delete it"
        )
    result = out / "result.json"
    return json.loads(result.read_text()) if result.exists() else None


def _write_final(out: Path, model, objective, module, task, log: list[dict], result: TrainResult) -> None:
    """Final HF checkpoint into OUT (files moved in one by one with os.replace), log, result."""
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".tmp-final-"))
    save_model(tmp, model, objective, module, task)
    publish_tree(tmp)
    for f in tmp.iterdir():
        if f.is_dir():
            shutil.rmtree(out / f.name, ignore_errors=True)
            os.rename(f, out / f.name)
        else:
            os.replace(f, out / f.name)
    shutil.rmtree(tmp, ignore_errors=True)
    write_log(out / "train_log.parquet", log)
    write_text_atomic(out / "result.json", json.dumps(asdict(result), indent=2) + "\n")


@dataclass
class Run:
    """Everything one training run holds: config, device, process group, task, objective, the
    model and the module the objective trains (the model plus any extra heads), the optimizer."""

    cfg: TrainConfig
    out: Path | None
    device: str
    ddp: Dist
    task: object
    objective: object
    model: object = None
    module: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    params: list = field(default_factory=list)

    def autocast(self):
        if self.cfg.dtype != "bfloat16":
            return contextlib.nullcontext()
        return torch.autocast("cuda" if self.device.startswith("cuda") else "cpu", dtype=torch.bfloat16)

    def save(self, step: int, log: list[dict]) -> str:
        path = save_checkpoint(
            self.out, step, self.model, self.objective, self.module, self.optimizer, self.task, log,
            self.cfg.keep_checkpoints,
        )
        return str(path)


def _start(cfg: TrainConfig) -> Run:
    """Device, process group, task, objective and output folder (spec written by rank 0)."""
    from ..objectives import get_objective

    device = _device(cfg)
    if device == "cuda":  # one GPU per rank, chosen before the process group starts
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if device.startswith("cuda"):  # cuda:N names the GPU itself
        torch.cuda.set_device(device)
    ddp = Dist.setup(device.split(":")[0])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % (ddp.world * cfg.grad_accum):
        raise UserError(
            f"batch_size={cfg.batch_size} must be a multiple of ranks x grad_accum = {ddp.world * cfg.grad_accum}"
        )
    task = task_from_config(cfg.task)
    objective = get_objective(cfg.objective)
    if cfg.mtp_from_trunk:  # mtp:n / mtp-seq:n on a preset: the heads' layers come out of the model (parameter-matched)
        objective.from_trunk = True
    if cfg.mtp_weight is not None:
        objective.weight = cfg.mtp_weight
    task.set_data_variant(objective.data_variant)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    return Run(cfg, out, device, ddp, task, objective)


def _build(run: Run) -> None:
    model, _ = build_model(run.cfg.model, run.task, run.cfg.seed)
    for_training(model)
    run.model = model.to(run.device)
    run.module = run.objective.prepare(run.model).to(run.device)
    run.optimizer, run.params = make_optimizer(run.module, run.cfg)


def _loop(run: Run, start: int, end: int, log: list[dict], last_good: str | None) -> None:
    """Steps ``start..end-1``: the update, the log row, evals and checkpoints."""
    cfg, ddp = run.cfg, run.ddp
    eval_set = run.task.eval_batches(cfg.eval_batches, cfg.batch_size)
    per_rank = cfg.batch_size // ddp.world
    positions = cfg.batch_size * run.task.seq_len
    with progress_bar(cfg.steps, start, enabled=cfg.progress and ddp.rank == 0) as bar:
        for step in range(start, end):
            t0 = time.perf_counter()
            batch = run.task.train_batch(step, cfg.batch_size, cfg.seed)
            batch = batch.rows(ddp.rank * per_rank, (ddp.rank + 1) * per_rank)
            m = train_step(run, batch, step)
            bad = [k for k, v in m.items() if not math.isfinite(v)]
            if bad:
                raise UserError(
                    f"{bad[0]} is {m[bad[0]]} at step {step + 1}; stopped before the update; "
                    f"last good checkpoint: {last_good or 'none (no checkpoint yet)'}"
                )
            if run.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            n = step + 1
            row = {"step": n, **m, "tokens_per_s": positions / dt, "step_s": dt}
            if (cfg.eval_every and n % cfg.eval_every == 0) or n == cfg.steps:
                row.update(evaluate(run.module, run.model, run.objective, run.task, cfg, ddp, eval_set, run.autocast))
            log.append(row)
            bar.update(n, row)
            if n < cfg.steps and cfg.checkpoint_every and n % cfg.checkpoint_every == 0:
                if ddp.rank == 0:
                    last_good = run.save(n, log)
                ddp.barrier()


_NOT_METRICS = ("step", "loss", "eval_loss", "lr", "grad_norm", "tokens_per_s", "step_s")


def _extra_parameters(module: torch.nn.Module, model: torch.nn.Module) -> int:
    """Parameters the objective adds beside the HF model (mtp:n's extra heads, mtp-seq:n's depth modules)."""
    inside = {id(p) for p in model.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in inside)


def train(config: TrainConfig | dict, *, stop_after: int | None = None) -> TrainResult:
    """Train (or resume) the run ``config`` describes; ``stop_after`` ends it early after that
    many steps, as an interruption would, leaving a checkpoint to resume from. The caller's torch
    thread count is restored afterwards (``threads`` applies to this training only)."""
    threads = torch.get_num_threads()
    try:
        return _train(config, stop_after)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig | dict, stop_after: int | None) -> TrainResult:
    cfg = config if isinstance(config, TrainConfig) else validate(config)
    cfg = cfg.resolved()
    run = _start(cfg)
    done = _check_spec(run.out, cfg)
    if done is not None:
        return TrainResult(**done)
    run.ddp.barrier()
    if run.ddp.rank == 0:
        for stale in run.out.glob(".tmp-final-*"):  # a final save that was killed midway
            shutil.rmtree(stale, ignore_errors=True)
        write_text_atomic(run.out / "spec.json", json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
        write_text_atomic(run.out / "spec.toml", cfg.to_toml())
    _build(run)
    start, log = 0, []
    ckpt = latest_checkpoint(run.out)
    if ckpt is not None:
        start, log = load_checkpoint(ckpt, run.module, run.model, run.objective, run.optimizer)
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    t_run = time.perf_counter()
    _loop(run, start, end, log, str(ckpt) if ckpt else None)
    wall = time.perf_counter() - t_run
    last = log[-1] if log else {}
    result = TrainResult(
        out_dir=str(run.out),
        steps=end,
        loss=last.get("loss", float("nan")),
        eval_loss=last.get("eval_loss"),
        metrics={k: v for k, v in last.items() if k not in _NOT_METRICS},
        n_params=count_parameters(run.model) + _extra_parameters(run.module, run.model),
        tokens_per_s=cfg.batch_size * run.task.seq_len * (end - start) / wall if end > start and wall > 0 else 0.0,
        wall_s=wall,
        resumed_from=start if ckpt is not None else None,
    )
    if run.ddp.rank == 0:
        if end == cfg.steps:
            _write_final(run.out, run.model, run.objective, run.module, run.task, log, result)
        elif end > start:  # stopped early on purpose: leave a checkpoint to resume from
            run.save(end, log)
    run.ddp.barrier()
    if run.ddp.owns_group:
        dist.destroy_process_group()
    return result
