"""Step time and peak memory of the training objectives, side by side in one run.

A training step is the objective's forward+backward plus an AdamW step, on a small Llama-style
lab model. Step times are measured interleaved (round-robin over the objectives, median over
rounds), so that load from other processes hits every objective alike; the figures that matter
are the ratios to ``ntp``. Peak memory is the peak resident-set growth of a fresh subprocess per
objective (model and optimizer built, then a few steps), read from ``getrusage`` (CPU) or
``torch.cuda.max_memory_allocated`` (GPU).

    .venv/bin/python bench/bench_objectives.py            # prints the table
    .venv/bin/python bench/bench_objectives.py --write    # and writes it into BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from myopia.objectives import get_objective

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## bench_objectives.py"
GOALS = {"myopic": (1.3, None), "mtp:4": (1.3, 1.2)}  # (time ratio, memory ratio) vs ntp


@dataclass
class Shape:
    layers: int = 4
    d: int = 256
    heads: int = 4
    ff: int = 688  # Llama's 8/3·d, rounded to a multiple of 16
    vocab: int = 8192
    seq: int = 256
    batch: int = 8


def build(shape: Shape, device: str, dtype: torch.dtype) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=shape.vocab, hidden_size=shape.d, intermediate_size=shape.ff,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.heads,
        max_position_embeddings=shape.seq, tie_word_embeddings=False, use_cache=False,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).train()


class _Batch:
    def __init__(self, shape: Shape, device: str, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, shape.vocab, (shape.batch, shape.seq + 1), generator=g)
        self.inputs = {"input_ids": ids[:, :-1].to(device)}  # (B, T)
        self.targets = ids[:, 1:].to(device)  # (B, T)
        self.loss_mask = torch.ones(shape.batch, shape.seq, device=device)  # (B, T)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    b, t, v = logits.shape
    flat = torch.nn.functional.cross_entropy(logits.reshape(b * t, v).float(), targets.reshape(b * t), reduction="none")
    return flat.reshape(b, t)  # (B, T)


class Trainer:
    """One objective's module, optimizer and step."""

    def __init__(self, name: str, shape: Shape, device: str, dtype: torch.dtype):
        self.name = name
        self.objective = get_objective(name)
        self.module = self.objective.prepare(build(shape, device, dtype))
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=1e-4, fused=device == "cuda")
        self.batch = _Batch(shape, device)
        self.device = device

    def step(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        metrics = self.objective.forward_backward(self.module, self.batch, _cross_entropy)
        self.optimizer.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return metrics["loss"]


def time_side_by_side(names: list[str], shape: Shape, device: str, dtype, rounds: int, steps: int) -> dict:
    """Median seconds per step, wall-clock and CPU (this process, all threads), per objective."""
    trainers = [Trainer(n, shape, device, dtype) for n in names]
    for tr in trainers:  # warm-up (allocator, optimizer state, kernels)
        tr.step()
        tr.step()
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for tr in trainers[r % len(trainers) :] + trainers[: r % len(trainers)]:  # rotate the order
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                tr.step()
            wall[tr.name].append((time.perf_counter() - start) / steps)
            cpu[tr.name].append((time.process_time() - start_cpu) / steps)
    return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in names}


def _peak_child(name: str, shape: Shape, device: str, dtype_name: str, steps: int) -> None:
    """Runs in a fresh process: prints the peak memory growth (bytes) over the training steps."""
    dtype = getattr(torch, dtype_name)
    trainer = Trainer(name, shape, device, dtype)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            trainer.step()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _rss_now()
        for _ in range(steps):
            trainer.step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base  # Linux: KiB
    print(json.dumps({"peak_bytes": peak}))


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(name: str, shape: Shape, device: str, dtype_name: str, steps: int) -> int:
    cmd = [sys.executable, __file__, "--child", name, "--shape", json.dumps(asdict(shape)),
           "--device", device, "--dtype", dtype_name, "--mem-steps", str(steps),
           "--threads", str(torch.get_num_threads())]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


def matmul_flops_per_token(name: str, shape: Shape) -> float:
    """Forward matmul FLOPs per token (backward is ~2x of it for every objective alike).

    A decoder layer: q/k/v/o projections 4·d², the gated MLP 3·d·ff, and causal attention
    scores plus weighted values ~2·(T/2)·d; the unembedding d·V. ``mtp:n`` adds n − 1 layers and
    n − 1 unembeddings; ``myopic`` computes what ``ntp`` computes.
    """
    layer = 2 * (4 * shape.d**2 + 3 * shape.d * shape.ff) + 2 * 2 * (shape.seq / 2) * shape.d
    unembed = 2 * shape.d * shape.vocab
    extra = int(name.split(":")[1]) - 1 if name.startswith("mtp:") else 0
    return (shape.layers + extra) * layer + (1 + extra) * unembed


def _table(shape: Shape, times: dict, peaks: dict, device: str, dtype_name: str, threads: int) -> str:
    (base_w, base_c), base_m = times["ntp"], peaks["ntp"]
    lines = [
        f"Llama-style model: {shape.layers} layers, d={shape.d}, {shape.heads} heads, ff={shape.ff}, "
        f"vocab={shape.vocab}; batch {shape.batch} × T={shape.seq}; {device}, {dtype_name}, "
        f"{threads} threads; AdamW; step = forward + backward + optimizer step.",
        "",
        "| objective | step wall (s) | wall / ntp | step CPU (s) | CPU / ntp | matmul FLOPs / ntp "
        "| peak memory growth (MiB) | memory / ntp | goal (on CPU time and memory) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (w, c) in times.items():
        goal = GOALS.get(name)
        goal_text = ""
        if goal is not None:
            met = c / base_c <= goal[0] and (goal[1] is None or peaks[name] / base_m <= goal[1])
            goal_text = f"time ≤{goal[0]}x" + (f", memory ≤{goal[1]}x" if goal[1] else "")
            goal_text += " — met" if met else " — NOT met"
        flops = matmul_flops_per_token(name, shape) / matmul_flops_per_token("ntp", shape)
        lines.append(
            f"| {name} | {w:.3f} | {w / base_w:.2f}x | {c:.3f} | {c / base_c:.2f}x | {flops:.2f}x "
            f"| {peaks[name] / 2**20:.0f} | {peaks[name] / base_m:.2f}x | {goal_text} |"
        )
    return "\n".join(lines)


NOTES = """\
Figures are ratios measured side by side in one run: the objectives' steps are interleaved
(round-robin, the order rotated each round) and the median is shown, so load from other
processes hits all of them alike. The goals are judged on CPU time (this process, 1 thread),
which counts the work done; on this shared 2-core machine wall-clock time mostly measures
the other processes. Peak memory: the growth of peak RSS over the steps, in a fresh process
per objective (parameters' gradients and AdamW state included).

Reading: `myopic` costs what `ntp` costs (one fused attention call against detached keys and
values; the live diagonal adds a few elementwise operations to the backward only), well within
its ≤1.3x goal; `myopic:hidden` pays for recomputing keys and values from detached hidden
states. `mtp:4` meets its memory goal (the per-head backward keeps one head's logits at a time)
but not its time goal, and cannot on this shape: its three extra heads each add a decoder layer
and a full-vocabulary unembedding, 2.60x the matmul FLOPs of `ntp` when the unembedding
(d·V = 2.1M per token) outweighs a layer (0.8M); the measured time tracks the FLOP ratio.
The ≤1.3x goal holds where the trunk dominates (deep models, small vocabularies: e.g. 12 layers
with path-star's ~60 tokens gives ≈1.25x by the same count).
"""
_START, _END = "<!-- bench_objectives:start -->", "<!-- bench_objectives:end -->"


def write_section(body: str, command: str) -> None:
    """Replace this script's section of BENCHMARKS.md (atomically), leaving the others alone."""
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{_START}\n{SECTION}\n\nCommand: `{command}`\n\n{body}\n\n{NOTES}{_END}"
    if _START in text and _END in text:
        before, rest = text.split(_START, 1)
        text = before + section + rest.split(_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    fd, tmp = tempfile.mkstemp(dir=ROOT, prefix=".BENCHMARKS.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objectives", default="ntp,myopic,mtp:4,myopic:hidden")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=1, help="steps per objective per round")
    p.add_argument("--mem-steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    p.add_argument("--shape", default=None, help="JSON overrides of the model shape, e.g. '{\"layers\": 8}'")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: CPU time then counts work, not the spinning of idle threads)")
    p.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    shape = Shape(**json.loads(args.shape)) if args.shape else Shape()
    dtype_name = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.child:
        _peak_child(args.child, shape, args.device, dtype_name, args.mem_steps)
        return
    names = args.objectives.split(",")
    peaks = {n: peak_memory(n, shape, args.device, dtype_name, args.mem_steps) for n in names}
    times = time_side_by_side(names, shape, args.device, getattr(torch, dtype_name), args.rounds, args.steps)
    body = _table(shape, times, peaks, args.device, dtype_name, torch.get_num_threads())
    print(body)
    if args.write:
        write_section(body, " ".join([".venv/bin/python bench/bench_objectives.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
