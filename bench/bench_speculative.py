"""Decoding with drafts (self-speculative decoding with the multi-token heads), side by side in one run.

For a path-star and a Shakespeare lab model trained with ``mtp:2``, ``mtp:4``, ``mtp-seq:2`` and
``mtp-seq:4`` (and a 12-layer Shakespeare trunk under ``mtp:2`` and ``mtp-seq:2``), greedy decoding
at batch 1 on held-out prompts (the multi-token experiment's ``held_out_prompts``):
plain cached decoding (``HFModel.sample``) and
decoding with 1..n−1 drafted tokens per forward pass (``myopia.models._speculative``), interleaved
prompt by prompt. Per model and draft length: tokens per forward pass, the acceptance rate of each
head's draft (when every earlier draft of the step was accepted), the wall-clock speed-up over
plain decoding, and whether the tokens equal plain decoding's (they must). Intervals: 95%, prompts
as the unit (delta method for the ratios, Wilson for the rates); see ``_speculative_measure``.

It also times the same drafter hosted by transformers' assisted generation
(``generate(custom_generate=...)`` running ``_assisted_decoding`` with a candidate generator that
calls the heads), on the text models: the alternative to the hand-written loop.

The models are trained by ``myopia train`` (one thread, one at a time) with the recipes in
``RECIPES``; ``--train`` trains the missing ones into ``--root`` (an interrupted run resumes).

    .venv/bin/python bench/bench_speculative.py --root ../spec-models --train    # train what is missing
    .venv/bin/python bench/bench_speculative.py --root ../spec-models --write    # measure, write BENCHMARKS.md
    .venv/bin/python bench/bench_speculative.py --root ../spec-models --only shak12 --write   # a section of its own
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _markdown import machine, write_section  # noqa: E402
from myopia.experiments.multi_token._drafting import held_out_prompts  # noqa: E402
from myopia.models import load_model  # noqa: E402
from myopia.models._speculative import load_drafter  # noqa: E402
from myopia.models._speculative_measure import measure_drafting, summarize_drafting  # noqa: E402

OBJECTIVES = ("mtp:2", "mtp:4", "mtp-seq:2", "mtp-seq:4")
_COMMON = {"threads": 1, "progress": False}
RECIPES = {  # task -> the TrainConfig fields (objective and out added per model)
    # path-star G(2,4), N=20; max_len 24: the prompt (16 tokens) and the whole path (4) fit the model's window
    "pathstar": {"task": "path-star", "model": {"name": "llama-tiny", "n_layer": 4, "max_len": 24},
                 "batch_size": 64, "steps": 1500, "schedule": "constant", "warmup_steps": 100,
                 "eval_every": 500, "checkpoint_every": 500, **_COMMON},
    "shak": {"task": "shakespeare", "model": {"name": "llama-tiny", "n_layer": 6}, "batch_size": 8, "steps": 2000,
             "lr": 2e-3, "eval_every": 500, "checkpoint_every": 500, **_COMMON},
    # a deeper trunk under the cheapest drafters: the heads' cost shrinks relative to the model's
    "shak12": {"task": "shakespeare", "model": {"name": "llama-tiny", "n_layer": 12}, "batch_size": 8,
               "steps": 2000, "lr": 2e-3, "eval_every": 500, "checkpoint_every": 500, **_COMMON},
}
MODELS = {"pathstar": OBJECTIVES, "shak": OBJECTIVES, "shak12": ("mtp:2", "mtp-seq:2")}  # objectives trained per recipe
PROMPTS = {"pathstar": 64, "shak": 24, "shak12": 24}  # prompts per model
TEXT_PROMPT, TEXT_NEW = 32, 90  # Shakespeare: held-out tokens as the prompt, most tokens generated


def model_dir(root: Path, task: str, objective: str) -> Path:
    return root / f"{task}-{objective.replace(':', '')}"


def train_missing(root: Path) -> None:
    from myopia.lab import TrainConfig, train

    for task, recipe in RECIPES.items():
        for objective in MODELS[task]:
            out = model_dir(root, task, objective)
            if not (out / "result.json").is_file():
                print(f"training {out} ...", flush=True)
                train(TrainConfig(**recipe, objective=objective, out=str(out)))


# --- prompts ----------------------------------------------------------------------------------------
def prompts_for(folder: Path, lm, n: int) -> tuple[list[str], int]:
    """(held-out prompts as text, tokens to generate): the multi-token experiment's choice
    (path-star: the question, the path generated; text: the first TEXT_PROMPT tokens of evenly
    spaced held-out windows, up to TEXT_NEW generated within the model's window)."""
    from myopia.tasks._registry import task_config, task_from_config

    info = json.loads((folder / "myopia_task.json").read_text())["task"]
    task = task_from_config(task_config(info.pop("name"), **info))
    task.prepare()
    return held_out_prompts(task, lm.tokenizer, n, TEXT_PROMPT, TEXT_NEW, lm.max_length)


# --- the same drafter hosted by transformers' assisted generation ---------------------------------
def hosted_greedy(lm, prompt: str, max_tokens: int, draft: int) -> list[int]:
    """Greedy decoding with drafts run by transformers' ``_assisted_decoding``: a candidate
    generator calls the heads (state carried between calls), transformers verifies, accepts and
    crops its cache. Reaching it takes ``custom_generate`` plus a private hook
    (``_get_candidate_generator``), since ``generate`` takes no candidate generator."""
    from transformers.generation.candidate_generator import CandidateGenerator

    drafter = load_drafter(lm)
    ids = torch.tensor([lm.encode_context(prompt)[1]])  # (1, T0)

    class HeadsCandidates(CandidateGenerator):
        requires_model_outputs = True
        model_kwargs_overrides: dict = {}

        def __init__(self):
            self.state, self.prefill = drafter.start(draft), True

        def get_candidates(self, input_ids, model_kwargs, model_outputs, is_first_iteration, n_last_matches, **kw):
            if is_first_iteration:
                return input_ids, None  # the prompt's pass first: the heads need its trunk states
            trunk = record["trunk"]  # of the last verifying pass: keep the accepted positions
            drafter.commit_trunk(self.state, trunk if self.prefill else trunk[:, : int(n_last_matches) + 1])
            self.prefill = False
            k = min(draft, ids.shape[1] + max_tokens - input_ids.shape[1])
            if k <= 0:
                return input_ids, None
            drafts = drafter.draft(self.state, input_ids[0].tolist(), k, lambda j, logits: int(logits.float().argmax()))
            return torch.cat([input_ids, torch.tensor([drafts])], dim=1), None

    candidates = HeadsCandidates()

    def decode(model, input_ids, logits_processor, stopping_criteria, generation_config, synced_gpus=False,
               streamer=None, **model_kwargs):
        model._get_candidate_generator = lambda **kw: candidates
        try:
            return type(model)._assisted_decoding(model, input_ids, logits_processor, stopping_criteria,
                                                  generation_config, synced_gpus, streamer, **model_kwargs)
        finally:
            del model._get_candidate_generator

    with drafter.recording() as record:
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                do_sample=False, prompt_lookup_num_tokens=draft,
                                custom_generate=decode, pad_token_id=lm._pad_id())
    return out[0, ids.shape[1] :].tolist()


def measure_hosted(lm, prompts: list[str], max_tokens: int, draft: int, records: list[dict]) -> dict:
    """Own loop vs transformers-hosted, same prompts, interleaved: tokens/s of each, same tokens."""
    from myopia.models import SamplingParams
    from myopia.models._speculative import generate_with_drafts

    own_s, hosted_s, same = 0.0, 0.0, 0
    params = SamplingParams(max_tokens=max_tokens, temperature=0)
    plain = {r["prompt"]: r for r in records if r["draft"] == 0}
    for i, prompt in enumerate(prompts):
        order = ("own", "hosted") if i % 2 == 0 else ("hosted", "own")
        for which in order:
            t0 = time.perf_counter()
            if which == "own":
                mine = generate_with_drafts(lm, prompt, params, draft)[0].token_ids
                own_s += time.perf_counter() - t0
            else:
                theirs = hosted_greedy(lm, prompt, max_tokens, draft)
                hosted_s += time.perf_counter() - t0
        same += int(mine == theirs)
    tokens = len(prompts) * max_tokens
    plain_s = sum(plain[i]["seconds"] for i in range(len(prompts)))
    return {"draft": draft, "own_tps": tokens / own_s, "hosted_tps": tokens / hosted_s, "plain_tps": tokens / plain_s,
            "same": same, "prompts": len(prompts)}


# --- the run -------------------------------------------------------------------------------------
def _ci(r: dict, digits: int = 2) -> str:
    if r["ci_low"] is None:
        return f"{r['value']:.{digits}f}"
    return f"{r['value']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]"


def run(root: Path, repeats: int, hosted: bool, only: str | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    rows, hosted_rows, models = [], [], []
    for task_name in RECIPES:
        for objective in MODELS[task_name]:
            folder = model_dir(root, task_name, objective)
            if only and only not in folder.name:
                continue
            if not (folder / "result.json").is_file():
                print(f"skipping {folder}: not trained (--train)", flush=True)
                continue
            lm = load_model(f"lab:{folder}")
            result = json.loads((folder / "result.json").read_text())
            models.append({"task": task_name, "objective": objective, "layers": lm.model.config.num_hidden_layers,
                           "eval_loss": result["eval_loss"], "accuracy": result["metrics"].get("accuracy"),
                           "train_s": result["wall_s"]})
            prompts, new = prompts_for(folder, lm, PROMPTS[task_name])
            models[-1].update(prompts=len(prompts), new=new)
            drafts = list(range(1, load_drafter(lm).max_draft + 1))
            t0 = time.perf_counter()
            records = measure_drafting(lm, prompts, drafts, new, repeats=repeats)
            for row in summarize_drafting(records):
                rows.append({"task": task_name, "objective": objective, **row})
            print(f"{folder.name}: {time.perf_counter() - t0:.0f} s", flush=True)
            if hosted and task_name != "pathstar":
                for k in drafts:
                    hosted_rows.append({"objective": objective, **measure_hosted(lm, prompts, new, k, records)})
    return rows, hosted_rows, models


def _heads(r: dict) -> str:
    return "; ".join(f"h{h['head']} {h['rate']:.2f} [{h['ci_low']:.2f}, {h['ci_high']:.2f}] "
                     f"({h['accepted']}/{h['reached']})" for h in r["heads"]) or "—"


def tables(rows: list[dict], hosted_rows: list[dict], models: list[dict]) -> str:
    lines = ["| task | objective | model's layers (+ heads) | held-out loss | path accuracy | training "
             "| prompts x tokens generated |",
             "|---|---|---|---|---|---|---|"]
    for m in models:
        n_heads = int(m["objective"].rsplit(":", 1)[1])
        accuracy = "—" if m["accuracy"] is None else f"{m['accuracy']:.2f}"
        lines.append(f"| {m['task']} | {m['objective']} | {m['layers']} (+{n_heads - 1}) | {m['eval_loss']:.3f} | "
                     f"{accuracy} | {m['train_s']:.0f} s | {m['prompts']} x {m['new']} |")
    lines += [
        "",
        "| task | objective | draft | tokens / forwards | tokens per forward | acceptance by head "
        "(accepted/reached) | speed-up vs plain | tokens/s | same tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = "plain" if r["draft"] == 0 else str(r["draft"])
        lines.append(f"| {r['task']} | {r['objective']} | {name} | {r['tokens']} / {r['forwards']} | "
                     f"{_ci(r['tokens_per_forward'])} | {_heads(r)} | {_ci(r['speedup'])} | "
                     f"{r['tokens_per_s']:.0f} | {r['same_as_plain']:.0%} |")
    if hosted_rows:
        lines += ["", "The same drafter hosted by transformers' assisted generation (Shakespeare models, greedy):", "",
                  "| objective | draft | plain tokens/s | own loop tokens/s | transformers-hosted tokens/s "
                  "| hosted / own | same tokens |",
                  "|---|---|---|---|---|---|---|"]
        for h in hosted_rows:
            lines.append(f"| {h['objective']} | {h['draft']} | {h['plain_tps']:.0f} | {h['own_tps']:.0f} | "
                         f"{h['hosted_tps']:.0f} | {h['hosted_tps'] / h['own_tps']:.2f} | {h['same']}/{h['prompts']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="runs/spec-models", help="folder of the lab models (RECIPES names them)")
    ap.add_argument("--train", action="store_true", help="train the missing models first (minutes each, one thread)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per prompt and mode (median)")
    ap.add_argument("--no-hosted", action="store_true", help="skip the transformers-hosted comparison")
    ap.add_argument("--only", default=None, help="only the models whose folder name contains this")
    ap.add_argument("--write", action="store_true", help="write the BENCHMARKS.md section")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = Path(args.root)
    if args.train:
        train_missing(root)
    t0 = time.perf_counter()
    rows, hosted_rows, models = run(root, args.repeats, not args.no_hosted, args.only)
    body = tables(rows, hosted_rows, models)
    print(body)
    if args.write:
        ran = {m["task"] for m in models}
        recipes = "\n".join(f"- `{task}` ({', '.join(MODELS[task])}): `{json.dumps(r)}`"
                             for task, r in RECIPES.items() if task in ran)
        only = f" --only {args.only}" if args.only else ""
        name = "speculative" + (f"-{args.only}" if args.only else "")  # a partial run gets a section of its own
        title = "Decoding with drafts" + (f", models `{args.only}`" if args.only else "")
        write_section(name, f"""## {title} (`bench/bench_speculative.py`)

`.venv/bin/python bench/bench_speculative.py --root {args.root} --repeats {args.repeats}{only} --write`
({machine()}; {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f} at the end: a shared
machine, compare the modes side by side, not the absolute tokens/s). Greedy decoding at batch 1, float32.
plain: `HFModel.sample` (cached, one token per forward pass); draft k: k tokens drafted by the heads per pass and
verified by the model.
Prompts (`held_out_prompts` of the multi-token experiment): path-star, the held-out question, the path generated;
Shakespeare, the first {TEXT_PROMPT} tokens of evenly spaced held-out windows (hamlet, tempest). Timings: median of
{args.repeats} per prompt and mode, the modes interleaved. Intervals: 95%, prompts as the unit (delta method for the
ratios of sums, Wilson for the rates). Head h's rate: its draft accepted when every earlier draft of the pass was (head
2 drafts first). Models (`myopia train`, one thread; objective and `out` added per model):

{recipes}

{body}""")


if __name__ == "__main__":
    main()
