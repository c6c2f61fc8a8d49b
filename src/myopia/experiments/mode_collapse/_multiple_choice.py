"""Multiple choice on one model: each option letter's probability as the answer, renormalised
over the letters (as in the GPT-4 report's calibration plot), scored exactly with a boundary
rule (``natural`` by default: the letter's token in the model's own tokenization; ``exact``:
the text begins with the letter, so words that begin with it count too)."""

from __future__ import annotations

import math
import string

from ...models import Boundary, LanguageModel, Prompt

LETTERS = string.ascii_uppercase


def mc_prompt(q: dict, chat: bool) -> tuple[Prompt, str]:
    """The question with lettered options, and what goes before an answer letter: through the
    chat template, or in the plain "Question ... Answer:" form of multiple-choice benchmarks
    (answer letters then follow a space)."""
    body = q["question"] + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(q["options"]))
    if chat:
        return Prompt(body + "\nAnswer with the letter of the correct option.", chat=True), ""
    return Prompt("Question: " + body + "\nAnswer:"), " "


def mc_records(lm: LanguageModel, questions: list[dict], chat: bool, key: dict,
               boundary: Boundary = "natural") -> list[dict]:
    """Per question: each option letter's probability as the next answer, renormalised over
    the options (as in the GPT-4 report's calibration plot), the top option's confidence and
    whether it is right; ``mass`` is the unnormalised total on the letters; ``moved``, the
    prompt characters the letters' scored tokens cover (boundary ``natural``), if any."""
    requests, spans = [], []
    for q in questions:
        prompt, space = mc_prompt(q, chat)
        letters = [f"{space}{LETTERS[i]}" for i in range(len(q["options"]))]
        spans.append((len(requests), len(letters)))
        requests += [(prompt, c) for c in letters]
    scored = lm.score_many(requests, boundary=boundary)
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
                     "moved": " ".join(sorted({repr(scored[start + j].moved) for j in range(k)
                                               if scored[start + j].moved})),
                     "rendered": scored[start].context})
    return rows
