"""Mode-collapse measurements on one model: next-token statistics over a text, multiple-choice
option probabilities, and sampled random-number answers. Each returns flat records."""

from __future__ import annotations

import math
import string

import torch

from ._core import parse_number_answer

LETTERS = string.ascii_uppercase


# -- next-token entropy and top-1 calibration over a text -------------------------------------
def text_ids(lm, text: str) -> tuple[list[int], list[int]]:
    """Token ids (one conditioning token first: BOS, or EOS where there is none, so every
    token of the text is predicted) and the characters each text token covers."""
    enc = lm.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = enc.get("offset_mapping")
    if offsets is not None and len(offsets) == len(ids):
        # spans can skip characters (e.g. a space folded into the next token): charge each
        # token the characters from the previous span's end to its own end
        ends = [e for _, e in offsets]
        chars = [e - p for e, p in zip(ends, [0] + ends[:-1])]
        chars[-1] += len(text) - ends[-1]
    else:
        chars = [len(lm.tokenizer.decode([t])) for t in ids]
    return [lm.prefix_token_id] + ids, chars


@torch.no_grad()
def token_stats(lm, ids: list[int], window: int, progress=None) -> dict[str, list]:
    """Per predicted token (ids[1:]): entropy (nats), top-1 probability, whether the top-1
    token is the target, and the target's log-prob. Sliding windows of ``window`` tokens
    with stride window/2: every token is predicted once, with at least window/2 tokens of
    context once the first window is past. Every window starts with the conditioning token
    ids[0] (BOS): without it, gemma-3's predictions mid-text are badly off (measured on 3,000
    characters of Hamlet, window 256: top-1 ECE 0.15 without it, 0.034 with it)."""
    stride = max(1, window // 2)
    out = {"entropy": [], "top1": [], "correct": [], "logprob": []}
    n = len(ids)
    starts = list(range(1, n, stride))
    for s in starts:
        end = min(s + stride, n)
        begin = max(1, end - (window - 1))  # context after the conditioning token
        x = torch.tensor([ids[:1] + ids[begin:end]], device=lm.device)  # (1, T); row j predicts ids[begin + j]
        logits = lm.model(input_ids=x, use_cache=False).logits[0, s - begin: end - begin]  # (k, V)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (k, V)
        targets = torch.tensor(ids[s:end], device=logp.device)  # (k,)
        top = logp.max(dim=-1)
        # -sum p log p with 0 log 0 = 0 (float32; a full-vocabulary float64 copy costs ~4x the time)
        out["entropy"] += (-(logp.exp() * logp).nan_to_num().sum(dim=-1)).tolist()
        out["top1"] += top.values.exp().tolist()
        out["correct"] += (top.indices == targets).tolist()
        out["logprob"] += logp.gather(1, targets[:, None])[:, 0].tolist()
        if progress:
            progress(1)
    return out


def n_windows(n_ids: int, window: int) -> int:
    return len(range(1, n_ids, max(1, window // 2)))


# -- multiple choice ------------------------------------------------------------------------
def mc_prompt(q: dict, chat: bool):
    """The question with lettered options: through the chat template, or in the plain
    "Question ... Answer:" form of multiple-choice benchmarks (answer letters then follow a space)."""
    from ...models import Prompt

    body = q["question"] + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(q["options"]))
    if chat:
        return Prompt(body + "\nAnswer with the letter of the correct option.", chat=True), ""
    return Prompt("Question: " + body + "\nAnswer:"), " "


def mc_records(lm, questions: list[dict], chat: bool, key: dict) -> list[dict]:
    """Per question: each option letter's probability as the next answer, renormalised over
    the options (as in the GPT-4 report's calibration plot), the top option's confidence and
    whether it is right; ``mass`` is the unnormalised total on the letters."""
    requests, spans = [], []
    for q in questions:
        prompt, space = mc_prompt(q, chat)
        letters = [f"{space}{LETTERS[i]}" for i in range(len(q["options"]))]
        spans.append((len(requests), len(letters)))
        requests += [(prompt, c) for c in letters]
    scored = lm.score_many(requests)
    rows = []
    for qi, (q, (start, k)) in enumerate(zip(questions, spans)):
        lps = [scored[start + j].logprob for j in range(k)]
        top = max(lps)
        z = top + math.log(math.fsum(math.exp(v - top) for v in lps))
        probs = [math.exp(v - z) for v in lps]
        pick = max(range(k), key=lambda j: probs[j])
        rows.append({**key, "question": qi, "text": q["question"], "answer": LETTERS[q["answer"]],
                     "pick": LETTERS[pick], "confidence": probs[pick], "correct": pick == q["answer"],
                     "mass": math.fsum(math.exp(v) for v in lps),
                     "probs": " ".join(f"{LETTERS[j]}={p:.3f}" for j, p in enumerate(probs)),
                     "rendered": scored[start].context})
    return rows


# -- random numbers ---------------------------------------------------------------------------
def number_records(texts: list[str], low: int, high: int, key: dict) -> list[dict]:
    rows = []
    for i, t in enumerate(texts):
        a = parse_number_answer(t, low, high)
        rows.append({**key, "index": i, "text": t, "kind": a.kind, "value": a.value})
    return rows
