"""What a round is measured by, on fixed held-out inputs (pure functions of a model and its inputs).

- **held-out text** (windows of real text the model never trained on): cross-entropy per token
  and per character (the quality cost), next-token entropy per token and per character, top-1
  accuracy and the ECE of the top-1 probability (mode-collapse's equal-width-bin ECE);
- **the model's own samples** from held-out prompts: next-token entropy per character along them
  (teacher-forced on the sample), distinct-1/2 (distinct word n-grams over all n-grams, pooled over
  the samples; Li et al. 2016), the repetition rate (the share of samples that *end* in a phrase of
  >= 2 words repeated >= 3 times; Holtzman et al. 2020), seq-rep-4 (the share of a sample's word
  4-grams that already occurred earlier in it, averaged; Welleck et al. 2020: the share of
  degenerate repeats), and sequence-likelihood's headline: the share of samples less probable than
  the degenerate continuation (``unit`` repeated to the same token length);
- **the game**: the exact branch probabilities of each variant (``tasks._game``), and a sampled
  check: ``n`` answers drawn and classified by the same definitions (a Wilson interval each), and
  the share of valid answers.

Words, not tokens, for the n-gram measures, so that models with different tokenizers (the bundled
pair, for scale) are measured alike.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

import numpy as np
import torch

from ...models import SamplingParams
from ...stats import expected_calibration_error, wilson_interval
from ...tasks._game import branch_probabilities, classify_answer, valid_answer
from ._rloo import sequence_logprobs
from ._sampling import sample


# --- words ------------------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams / all word n-grams, pooled over ``texts`` (NaN when there are none)."""
    grams = [tuple(w[i : i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


def ends_in_repetition(text: str, min_phrase: int = 2, min_repeats: int = 3) -> bool:
    """Whether the text ends with a phrase of >= ``min_phrase`` words repeated >= ``min_repeats``
    times in a row (Holtzman et al.'s repetition)."""
    w = words(text)
    for n in range(min_phrase, len(w) // min_repeats + 1):
        tail = w[-n:]
        if all(w[len(w) - (j + 1) * n : len(w) - j * n] == tail for j in range(1, min_repeats)):
            return True
    return False


def seq_rep(text: str, n: int = 4) -> float:
    """Share of the text's word n-grams that occurred earlier in it (NaN when it has none)."""
    w = words(text)
    grams = [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else math.nan


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    """(T, V) log-probs -> (T,) entropies in nats, with 0 log 0 = 0."""
    return -(logp.exp() * logp).nan_to_num().sum(dim=-1)


def _nanmean(xs) -> float:
    xs = [x for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else math.nan


# --- held-out text ------------------------------------------------------------------------------
@torch.no_grad()
def text_measures(model, tokenizer, windows: Sequence[torch.Tensor], bins: int = 10) -> dict:
    """Rows of real-text token ids (each (T+1,), lengths may differ): every position predicts the
    next token. Per character: the characters of the predicted tokens' text."""
    device = next(model.parameters()).device
    ce = ent = 0.0
    conf, correct = [], []
    chars = 0
    for row in windows:
        logits = model(input_ids=row[None, :-1].to(device), use_cache=False).logits[0]  # (T, V)
        logp = torch.log_softmax(logits.double(), dim=-1).cpu()  # (T, V)
        targets = row[1:]
        ce -= float(logp.gather(1, targets[:, None]).sum())
        ent += float(_entropy(logp).sum())
        top = logp.max(dim=-1)
        conf += top.values.exp().tolist()
        correct += (top.indices == targets).tolist()
        chars += len(tokenizer.decode(targets.tolist()))
    n = len(conf)
    return {"xent_per_token": ce / n, "xent_per_char": ce / chars, "entropy_per_token": ent / n,
            "entropy_per_char": ent / chars, "top1_accuracy": float(np.mean(correct)),
            "ece": expected_calibration_error(conf, correct, bins), "tokens": n, "chars": chars}


# --- own samples --------------------------------------------------------------------------------
@torch.no_grad()
def sample_measures(model, tokenizer, prompts: Sequence[torch.Tensor], length: int, gen: torch.Generator,
                    unit: str = " a", temperature: float = 1.0, n_examples: int = 4, marker: str | None = None) -> dict:
    """One sample of ``length`` tokens per held-out prompt (rows of ids; prompts of one length are
    drawn in one batch), and what they show. ``marker``: a string whose share of samples that
    contain it is reported (``marker_share``; the game's instruction, a memorised boilerplate)."""
    params = SamplingParams(max_tokens=length, temperature=temperature)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    drawn: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}  # prompt index -> (prompt, ids, logprob)
    for n, idx in by_len.items():
        c = sample(model, torch.stack([prompts[i] for i in idx]), length, gen, params)
        for j, i in enumerate(idx):
            drawn[i] = (c.prompt_ids[j], c.ids[j][c.mask[j].bool()], float(c.logprobs[j]))
    unit_ids = tokenizer(unit, add_special_tokens=False)["input_ids"]
    degenerate = torch.tensor((unit_ids * length)[:length])  # (L,)
    texts, ent, beats, logprobs, deg = [], 0.0, [], [], []
    device = next(model.parameters()).device
    for i in range(len(prompts)):
        prompt, ids, lp = drawn[i]
        texts.append(tokenizer.decode(ids.tolist()))
        x = torch.cat([prompt, ids])[None, :-1].to(device)  # (1, P + L - 1)
        logits = model(input_ids=x, use_cache=False, logits_to_keep=len(ids)).logits[0]  # (L, V)
        logp = torch.log_softmax(logits.double(), dim=-1)
        ent += float(_entropy(logp).sum())
        d = float(sequence_logprobs(model, prompt[None], degenerate[None], torch.ones(1, length))[0])
        beats.append(lp < d)
        logprobs.append(lp)
        deg.append(d)
    chars = sum(len(t) for t in texts)
    return {"entropy_per_char": ent / max(chars, 1), "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "repetition": float(np.mean([ends_in_repetition(t) for t in texts])),
            "seq_rep_4": _nanmean([seq_rep(t) for t in texts]),
            "degenerate_beats_samples": float(np.mean(beats)), "sample_logprob_median": float(np.median(logprobs)),
            "degenerate_logprob": float(np.mean(deg)), "chars_per_sample": chars / len(texts), "samples": len(texts),
            "marker_share": float(np.mean([marker in t for t in texts])) if marker else None,
            "examples": texts[:n_examples]}


# --- the game -----------------------------------------------------------------------------------
@torch.no_grad()
def game_measures(model, task, variant: str, n: int, gen: torch.Generator, max_new: int = 12,
                  n_examples: int = 4) -> dict:
    """Exact branch probabilities of ``variant``, and ``n`` sampled answers classified alike."""
    exact = branch_probabilities(model, task, variant)
    out = {f"exact_{k}": v for k, v in exact.items()}
    if n:
        prompt = torch.tensor([task.context_ids(variant)] * n)  # (n, P)
        stop = task.stop_ids()
        pad = task.tokenizer.eos_token_id or 0
        c = sample(model, prompt, max_new, gen, SamplingParams(max_tokens=max_new), stop, pad)
        texts = task.tokenizer.batch_decode(c.token_lists())
        counts = Counter(classify_answer(variant, t, task.config.zero_word) for t in texts)
        for name in ("one", "zero", "other"):
            lo, hi = wilson_interval(counts[name], n)
            out[f"sampled_{name}"], out[f"sampled_{name}_low"], out[f"sampled_{name}_high"] = counts[name] / n, lo, hi
        valid = sum(valid_answer(variant, t, task.config.zero_word, task.config.letters) for t in texts)
        lo, hi = wilson_interval(valid, n)
        out.update(sampled_valid=valid / n, sampled_valid_low=lo, sampled_valid_high=hi, samples=n,
                   examples=texts[:n_examples])
    return out
