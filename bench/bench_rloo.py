"""One RLOO update on a lab model: TRL's ``RLOOTrainer`` vs the lab's own loop, side by side.

Both update the same lab-shaped model (a ``llama-tiny`` preset: 2 layers, d=64, the game task's
BPE of 2,048 tokens) on the same shape of batch: P prompts (16-token Shakespeare windows) x K
completions x L new tokens, a plain Python reward (keyword), the KL penalty to the frozen start
model on (β = 0.05; TRL rebuilds its reference from the saved folder), AdamW, one thread,
``use_cpu=True``, ``bf16=False``, no gradient checkpointing. An update is: draw the P x K
completions, score the reward, the policy's and the reference's log-probs, the leave-one-out
advantages, one backward pass and one optimizer step. Timed per update after two warm-up
updates (TRL: between its ``on_step_end`` callbacks), the median of N; the lab's loop is timed
before and after TRL, and the slower of its two medians is the one compared.

    python bench/bench_rloo.py [--updates 12] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _markdown import machine, write_section  # noqa: E402
from myopia.lab import ModelSpec, build_model  # noqa: E402
from myopia.lab.selftrain._rloo import rloo_loss, sequence_logprobs  # noqa: E402
from myopia.lab.selftrain._sampling import sample  # noqa: E402
from myopia.models import SamplingParams  # noqa: E402
from myopia.tasks import get_task  # noqa: E402

KEYWORD = " love"
BETA = 0.05
LR = 1e-4


def keyword_reward(completions, **kwargs) -> list[float]:
    return [float(KEYWORD in c) for c in completions]


def prompts(task, n: int, length: int = 16) -> torch.Tensor:
    """n windows of ``length`` tokens from the training stream (fixed)."""
    starts = torch.linspace(0, task.stream_length("train") - length - 1, n).long().tolist()
    return task.text_windows("train", starts, length)


def lab_updates(model, ref, task, P: int, K: int, L: int, n: int) -> list[float]:
    """The lab's loop: n updates, seconds each."""
    from types import SimpleNamespace

    from myopia.lab import make_optimizer

    opt, params = make_optimizer(model, SimpleNamespace(lr=LR, weight_decay=0.0, beta1=0.9, beta2=0.999))
    gen = torch.Generator().manual_seed(0)
    ids = prompts(task, P).repeat_interleave(K, dim=0)  # (P*K, 16)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        c = sample(model, ids, L, gen, SamplingParams(max_tokens=L))
        texts = task.tokenizer.batch_decode(c.ids)
        rewards = torch.tensor(keyword_reward(texts), dtype=torch.float64).view(P, K)
        model.train()
        with torch.no_grad():
            ref_logp = sequence_logprobs(ref, c.prompt_ids, c.ids, c.mask).view(P, K)
        logp = sequence_logprobs(model, c.prompt_ids, c.ids, c.mask).view(P, K)
        opt.zero_grad(set_to_none=True)
        rloo_loss(logp, rewards, ref_logp, BETA).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t)
    return times


def trl_updates(folder: Path, task, P: int, K: int, L: int, n: int) -> list[float]:
    """TRL's RLOOTrainer: n updates (one generation batch of P x K each), seconds each."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    texts = task.tokenizer.batch_decode(prompts(task, P))
    data = Dataset.from_dict({"prompt": texts * (n + 2)})
    marks: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.append(time.perf_counter())

    cfg = RLOOConfig(
        output_dir=str(folder / "trl-out"), per_device_train_batch_size=P * K, num_generations=K,
        steps_per_generation=1, gradient_accumulation_steps=1, max_completion_length=L, temperature=1.0,
        beta=BETA, learning_rate=LR, max_steps=n + 2, logging_steps=10_000, report_to="none", save_strategy="no",
        use_cpu=True, bf16=False, gradient_checkpointing=False, seed=0, shuffle_dataset=False,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = task.tokenizer
    tok.padding_side = "left"
    trainer = RLOOTrainer(model=model, reward_funcs=keyword_reward, args=cfg, train_dataset=data,
                          processing_class=tok, callbacks=[Clock()])
    start = time.perf_counter()
    trainer.train()
    marks.insert(0, start)
    tok.padding_side = "right"
    return [b - a for a, b in zip(marks, marks[1:])]


def measure(P: int, K: int, L: int, n: int) -> dict:
    torch.manual_seed(0)
    task = get_task("game")
    spec = ModelSpec(name="llama-tiny", max_len=128)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        model, tok = build_model(spec, task, seed=0)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        ref, _ = build_model(spec, task, seed=0)
        ref.eval()
        lab_a = lab_updates(model, ref, task, P, K, L, n + 2)[2:]
        trl = trl_updates(folder, task, P, K, L, n)[2:]
        model, _ = build_model(spec, task, seed=0)
        lab_b = lab_updates(model, ref, task, P, K, L, n + 2)[2:]
    lab = max(statistics.median(lab_a), statistics.median(lab_b))
    return {"P": P, "K": K, "L": L, "trl": statistics.median(trl), "lab": lab,
            "lab_runs": (statistics.median(lab_a), statistics.median(lab_b))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--updates", type=int, default=12)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [measure(8, 4, 8, args.updates), measure(16, 8, 24, args.updates)]
    lines = [
        "## bench_rloo.py: one RLOO update, TRL's RLOOTrainer vs the lab's loop (issue 13)",
        "",
        f"`python bench/bench_rloo.py --updates {args.updates}` on {machine()}. Same model (`llama-tiny`, "
        "2 layers, d=64, game-task BPE 2,048), same batch shape, keyword reward, β = 0.05 (KL to the start "
        "model), AdamW; TRL 1.16.0 with `use_cpu=True`, `bf16=False`, no gradient checkpointing. Median "
        "seconds per update after two warm-up updates; the lab's loop timed before and after TRL, the slower "
        "median kept.",
        "",
        "| prompts x completions x tokens | TRL RLOOTrainer (s) | lab loop (s) | TRL / lab |",
        "|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["trl"] / r["lab"]
        lines.append(f"| {r['P']} x {r['K']} x {r['L']} | {r['trl']:.3f} | {r['lab']:.3f} | {ratio:.1f}x |")
        print(r)
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("rloo", body)


if __name__ == "__main__":
    main()
