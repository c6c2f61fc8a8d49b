"""GPU figures, side by side in one run: scoring tokens/s in float32 and bfloat16 on the GPU
against float32 on this machine's CPU (the same workload as bench_scoring.py), and lab training
tokens/s with MFU against the GPU's bf16 peak (the same steps as bench_train.py).

    python bench/bench_gpu.py [--model smollm2-135m-instruct] [--presets gpt2-6m,llama-2m]

Needs a CUDA GPU; ``bench/gpu_check.sh`` runs it with the quick suite on CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _markdown import write_section  # noqa: E402
from bench_scoring import LONG_CONTEXT, measure  # noqa: E402
from bench_train import bench_shape  # noqa: E402
from myopia.models import load_model  # noqa: E402

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by a substring of the name.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}


def bf16_peak(name: str) -> float | None:
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def scoring_rows(model: str, n: int, length: int, repeats: int) -> list[dict]:
    rows = []
    for device, dtype, tol in (("cpu", "float32", 1e-3), ("cuda", "float32", 1e-3), ("cuda", "bfloat16", 0.5)):
        lm = load_model(model, device=device, dtype=dtype)
        r = measure(lm, LONG_CONTEXT, n, length, repeats, tolerance=tol)
        rows.append({"device": device, "dtype": dtype, **r})
        print(f"scoring {device} {dtype}: {r['ours_tok_s']:,.0f} tok/s", flush=True)
        lm.close()
        torch.cuda.empty_cache()
    return rows


def training_rows(presets: list[str], seq: int, batch: int, peak: float | None) -> list[dict]:
    rows = []
    for preset in presets:
        for bf16 in (False, True):
            r = bench_shape(preset, 2048, seq, batch, rounds=5, steps=5, device="cuda", bf16=bf16)
            r["precision"] = "bf16 autocast" if bf16 else "float32"
            r["mfu"] = r["lab_tok_s"] * r["flops_per_token"] / peak if peak else None
            rows.append(r)
            print(f"train {preset} {r['precision']}: {r['lab_tok_s']:,.0f} tok/s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--presets", default="gpt2-6m,llama-2m")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py: no CUDA GPU is visible to torch")
    name = torch.cuda.get_device_name()
    peak = bf16_peak(name)
    t0 = time.time()
    scoring = scoring_rows(args.model, args.n, args.length, args.repeats)
    training = training_rows(args.presets.split(","), args.seq, args.batch, peak)
    cpu = scoring[0]["ours_tok_s"]
    cmd = "python bench/bench_gpu.py " + " ".join(sys.argv[1:])
    lines = [
        "## GPU: scoring and training on CUDA (bench_gpu.py, run by bench/gpu_check.sh)",
        "",
        f"`{cmd.strip()}` on {name} ({time.time() - t0:.0f} s). Scoring: {args.n} continuations x {args.length} "
        f"tokens after a {scoring[0]['context_tokens']}-token paragraph on {args.model}, myopia's batched scorer, "
        "median of interleaved repeats; the CPU row is this machine's CPU in the same run.",
        "",
        "| device | dtype | myopia tok/s | plain loop tok/s | vs CPU float32 | max diff to the plain loop (nats) |",
        "|---|---|---|---|---|---|",
    ]
    for r in scoring:
        lines.append(
            f"| {r['device']} | {r['dtype']} | {r['ours_tok_s']:,.0f} | {r['plain_tok_s']:,.0f} | "
            f"{r['ours_tok_s'] / cpu:.1f}x | {r['max_abs_diff']:.1e} |"
        )
    peak_text = f"{peak / 1e12:.0f} TFLOP/s (data sheet, dense bf16)" if peak else "unknown for this GPU"
    lines += [
        "",
        f"Training: lab `train_step` (ntp), batch {args.batch} x {args.seq}, vocab 2048; MFU = tokens/s x "
        f"(6N + 12LTd) / the GPU's bf16 peak, {peak_text}. Tiny models cannot fill an H200: read these as the "
        "lab's overhead per step, not the GPU's capacity.",
        "",
        "| preset | params | precision | lab tok/s | reference tok/s | ratio | MFU (bf16 peak) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in training:
        mfu = f"{100 * r['mfu']:.2f}%" if r["mfu"] is not None else "–"
        lines.append(
            f"| {r['preset']} | {r['params'] / 1e6:.2f}M | {r['precision']} | {r['lab_tok_s']:,.0f} | "
            f"{r['ref_tok_s']:,.0f} | {r['ratio']:.2f} | {mfu} |"
        )
    if not args.no_write:
        write_section("gpu", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
