"""Rounds of self-training, resumable at round granularity, bit-identically.

Each round r = 1..R, starting from the model the previous round left (round 0 is the base):

1. **prompts**: ``text_prompts`` windows of ``prompt_tokens`` from the task's training text (fresh
   each round), and ``game_prompts`` copies of each game variant's prompt;
2. **draw** K completions per prompt (ancestral sampling at ``temperature``, or the K beams of
   beam search): ``completion_tokens`` for text, up to ``answer_tokens`` for a game answer,
   which ends at its first newline;
3. **select or reward, then fine-tune**:
   - ``top-k`` / ``random-k`` / ``reward-k`` keep k of the K per prompt; the model is then trained
     ``steps`` AdamW steps (a fresh optimizer each round) with the next-token loss on the kept
     completions' tokens. The data policy says what else it trains on: ``replace`` (this round's
     completions only), ``accumulate`` (every round's so far), ``mix`` (this round's, plus real
     text windows making up a share ``mix`` of the rows);
   - ``rl``: ``rl_updates`` RLOO updates, each on freshly drawn prompts and completions, the
     reward shaped by the KL to the frozen base (β = ``beta``);
4. **measure** (a callback: the experiment's measures) and **save** the round: ``round-RRR/``
   holds a full lab checkpoint (``lab:`` loads it), the kept rows and ``round.json`` (the round's
   statistics and measures); the folder is written beside its final name and renamed into place,
   then ``latest`` names it.

Every random draw of round r comes from generators keyed by (seed, stream, r, ...), never from
state carried over, and the optimizer starts fresh each round: a run resumed from ``latest``
repeats the rounds an uninterrupted run would have made, bit for bit (tested).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file

from ..._errors import UserError
from ..._io import publish_tree, write_text_atomic
from ...models import SamplingParams
from ...models._model_files import check_safetensors, read_json_object
from ...objectives import get_objective
from ...tasks._base import rng
from .._checkpoint import load_model_weights, save_model
from .._train import make_optimizer
from ._rewards import Rollout, check_reward, get_reward
from ._rloo import rloo_loss, sequence_logprobs
from ._sampling import Completions, beam, sample
from ._select import check_k, select

# generator streams (beside the tasks' 1..5)
PROMPT_STREAM, DRAW_STREAM, SELECT_STREAM, SFT_STREAM, MIX_STREAM = 11, 12, 13, 14, 15


class SelfTrainConfig(BaseModel):
    """One condition of self-training (the experiment's cell, less the base model and seed)."""

    model_config = ConfigDict(extra="forbid")
    condition: Literal["top-k", "random-k", "reward-k", "rl"] = "top-k"
    K: int = Field(8, ge=1, description="completions drawn per prompt")
    k: int = Field(2, ge=1, description="completions kept per prompt (top-k, random-k, reward-k)")
    reward: str = Field("predictability",
                        description="reward-k, rl: predictability, valid, branch, keyword or package.module:function")
    keyword: str = Field("love", description="the keyword reward's word")
    beta: float = Field(0.0, ge=0, description="rl: weight of the KL penalty to the frozen base model")
    decoding: Literal["sample", "beam"] = Field("sample", description="how the K completions are drawn")
    temperature: float = Field(1.0, gt=0)
    rounds: int = Field(5, ge=1)
    text_prompts: int = Field(32, ge=0, description="text prompts per round (rl: per update)")
    prompt_tokens: int = Field(16, ge=1)
    completion_tokens: int = Field(32, ge=1)
    game_prompts: int = Field(8, ge=0, description="prompts per game variant per round (rl: per update)")
    answer_tokens: int = Field(12, ge=1, description="most tokens of a game answer (it ends at a newline)")
    data: Literal["replace", "accumulate", "mix"] = Field("replace",
                                                         description="what the kept samples are trained with")
    mix: float = Field(0.5, gt=0, lt=1, description="data=mix: share of real-text rows in a round's training set")
    steps: int = Field(40, ge=1, description="fine-tuning steps per round (top-k, random-k, reward-k)")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-4, gt=0, description="fine-tuning learning rate (AdamW, constant)")
    rl_updates: int = Field(8, ge=1, description="rl: RLOO updates per round")
    rl_lr: float = Field(1e-4, gt=0, description="rl: learning rate (AdamW, constant)")
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if self.condition != "rl":
            check_k(self.k, self.K)
        elif self.K < 2:
            raise UserError(f"rl needs K >= 2 completions per prompt (the leave-one-out baseline), got K={self.K}")
        if self.condition in ("reward-k", "rl"):
            check_reward(self.reward)
        if self.text_prompts == 0 and self.game_prompts == 0:
            raise UserError("no prompts: text_prompts and game_prompts are both 0")
        return self


@dataclass
class PromptSet:
    kind: str  # "text" or a game variant
    ids: torch.Tensor  # (G, P)
    max_new: int
    stop_ids: frozenset[int] = frozenset()


def generator(*keys: int) -> torch.Generator:
    """A torch generator seeded from a tuple of non-negative integer keys."""
    return torch.Generator().manual_seed(int(rng(*keys).integers(0, 2**63 - 1)))


@dataclass
class SelfTraining:
    """The rounds of one condition on one model. ``measure(model, round)`` returns the round's
    measures (JSON-able); ``progress(advance, total=None, note=None)`` reports progress."""

    cfg: SelfTrainConfig
    model: Any  # the model to train; starts as the base
    base: Any  # the frozen base model (KL, predictability)
    task: Any  # a GameTask (text + game prompts)
    out: Path
    seed: int = 0
    measure: Callable[[Any, int], dict] | None = None
    progress: Callable[..., None] = field(default=lambda *a, **k: None)

    def __post_init__(self):
        self.out = Path(self.out)
        self.task.prepare()
        self.stop = self.task.stop_ids()
        self.base.eval()
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.reward = None
        if self.cfg.condition in ("reward-k", "rl"):
            c = self.task.config
            self.reward = get_reward(self.cfg.reward, base=self.base, zero_word=c.zero_word, letters=c.letters,
                                     keyword=self.cfg.keyword)
        self.pad = self.task.tokenizer.eos_token_id or 0

    # --- the run -----------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> list[dict]:
        """Run (or resume) the rounds; ``stop_after`` ends after that many new rounds, as an
        interruption would. Returns every finished round's ``round.json``."""
        self.out.mkdir(parents=True, exist_ok=True)
        done = self.latest()
        if done is None:
            self._save(0, {"round": 0}, None, 0.0)
            done = 0
        else:
            load_model_weights(self.out / f"round-{done:03d}", self.model, self.model, _ntp())
        self.progress(0, total=self.cfg.rounds, note=f"{self.cfg.condition} s{self.seed}")
        self.progress(done)
        end = self.cfg.rounds if stop_after is None else min(self.cfg.rounds, done + stop_after)
        for r in range(done + 1, end + 1):
            t0 = time.perf_counter()
            stats, kept = self._rl_round(r) if self.cfg.condition == "rl" else self._sft_round(r)
            self._save(r, stats, kept, time.perf_counter() - t0)
            self.progress(1, note=f"{self.cfg.condition} s{self.seed}: round {r}")
        return self.records()

    def latest(self) -> int | None:
        """The last finished round (None before round 0 is saved). A round folder that is
        incomplete or damaged (a truncated safetensors file, a round.json that is not JSON) is one
        line naming the file, read from headers and small files only."""
        p = self.out / "latest"
        if not p.exists():
            return None
        name = p.read_text().strip()
        folder = self.out / name
        try:
            if not name.startswith("round-") or not name[6:].isdigit():
                raise UserError(f"{p} names {name!r}, not a round folder")
            for f in ("round.json", "time.json", "config.json"):
                if not (folder / f).is_file():
                    raise UserError(f"{folder / f} is missing")
            for f in sorted(folder.glob("*.safetensors")):
                check_safetensors(f)
            read_json_object(folder / "round.json")
            read_json_object(folder / "time.json")
        except UserError as e:
            raise UserError(f"round {name} of {self.out} is damaged: {e}; delete {self.out} to start over") from None
        return int(name[6:])

    def records(self) -> list[dict]:
        """Every finished round's ``round.json`` (statistics and measures; no timings)."""
        last = self.latest() or 0
        return [json.loads((self.out / f"round-{r:03d}" / "round.json").read_text()) for r in range(last + 1)]

    def timings(self) -> list[dict]:
        """Seconds per finished round: ``train`` (draw, select or reward, update) and ``measure``."""
        last = self.latest() or 0
        return [json.loads((self.out / f"round-{r:03d}" / "time.json").read_text()) for r in range(last + 1)]

    # --- prompts and draws -------------------------------------------------------------------
    def prompt_sets(self, r: int, u: int = 0) -> list[PromptSet]:
        cfg, task = self.cfg, self.task
        sets = []
        if cfg.text_prompts:
            g = rng(self.seed, PROMPT_STREAM, r, u)
            starts = g.integers(0, task.stream_length("train") - cfg.prompt_tokens, size=cfg.text_prompts)
            ids = task.text_windows("train", starts, cfg.prompt_tokens)  # (G, P)
            sets.append(PromptSet("text", ids, cfg.completion_tokens))
        if cfg.game_prompts:
            for v in task.config.variants:
                ids = torch.tensor([task.context_ids(v)] * cfg.game_prompts)  # (G, P)
                sets.append(PromptSet(v, ids, cfg.answer_tokens, self.stop))
        return sets

    def draw(self, ps: PromptSet, gen: torch.Generator) -> Completions:
        """K completions per prompt, rows g*K .. g*K + K - 1 for prompt g."""
        K = self.cfg.K
        if self.cfg.decoding == "beam":
            return beam(self.model, ps.ids, K, ps.max_new, ps.stop_ids, self.pad)
        params = SamplingParams(max_tokens=ps.max_new, temperature=self.cfg.temperature)
        return sample(self.model, ps.ids.repeat_interleave(K, dim=0), ps.max_new, gen, params, ps.stop_ids, self.pad)

    def rollout(self, ps: PromptSet, c: Completions) -> Rollout:
        tok = self.task.tokenizer
        prompts = tok.batch_decode(c.prompt_ids)
        return Rollout(ps.kind, prompts, tok.batch_decode(c.token_lists()), c)

    # --- top-k, random-k, reward-k -----------------------------------------------------------
    def _sft_round(self, r: int) -> tuple[dict, dict]:
        cfg = self.cfg
        seqs, masks, stats = [], [], {"round": r}
        for i, ps in enumerate(self.prompt_sets(r)):
            c = self.draw(ps, generator(self.seed, DRAW_STREAM, r, i))
            G = ps.ids.shape[0]
            rewards = self.reward(self.rollout(ps, c)).view(G, cfg.K) if self.reward is not None else None
            gen = generator(self.seed, SELECT_STREAM, r, i)
            keep = select(cfg.condition, c.logprobs.view(G, cfg.K), rewards, cfg.k, gen)
            rows = (torch.arange(G)[:, None] * cfg.K + keep).flatten()  # (G*k,)
            kept = c.rows(rows)
            s, m = _training_rows(kept)
            seqs.append(s)
            masks.append(m)
            texts = self.rollout(ps, kept).texts
            stats[ps.kind] = {"kept_logprob": float(kept.logprobs.mean()), "drawn_logprob": float(c.logprobs.mean()),
                              "kept_tokens": float(kept.mask.sum(1).mean()), "examples": texts[:4]}
            if rewards is not None:
                stats[ps.kind].update(drawn_reward=float(rewards.mean()),
                                      kept_reward=float(rewards.gather(1, keep).mean()))
        kept = _stack(seqs, masks, self.pad)
        train_seqs, train_masks = self._training_set(r, kept)
        stats["train_rows"] = int(train_seqs.shape[0])
        stats["train_loss"] = self._fine_tune(r, train_seqs, train_masks)
        return stats, {"seqs": kept[0], "masks": kept[1]}

    def _training_set(self, r: int, kept: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The data policy: this round's kept rows, every round's, or this round's plus real text."""
        seqs, masks = [kept[0]], [kept[1]]
        if self.cfg.data == "accumulate":
            for j in range(1, r):
                saved = load_file(str(self.out / f"round-{j:03d}" / "kept.safetensors"))
                seqs.append(saved["seqs"])
                masks.append(saved["masks"])
        elif self.cfg.data == "mix":
            n = kept[0].shape[0]
            n_real = max(1, round(self.cfg.mix / (1 - self.cfg.mix) * n))
            width = self.cfg.prompt_tokens + self.cfg.completion_tokens
            starts = rng(self.seed, MIX_STREAM, r).integers(0, self.task.stream_length("train") - width, size=n_real)
            real = self.task.text_windows("train", starts, width)  # (n_real, width)
            m = torch.ones_like(real, dtype=torch.float32)
            m[:, 0] = 0  # the first token is never a target
            seqs.append(real)
            masks.append(m)
        return _stack(seqs, masks, self.pad)

    def _fine_tune(self, r: int, seqs: torch.Tensor, masks: torch.Tensor) -> float:
        """``steps`` AdamW steps of the masked next-token loss on minibatches of the rows."""
        cfg, model = self.cfg, self.model
        opt, params = make_optimizer(model, _opt_cfg(cfg.lr, cfg))
        model.train()
        device = next(model.parameters()).device
        losses = []
        for step in range(cfg.steps):
            idx = torch.from_numpy(rng(self.seed, SFT_STREAM, r, step).permutation(len(seqs))[: cfg.batch_size])
            s, m = seqs[idx].to(device), masks[idx].to(device)  # the rows stay on the CPU, the batch goes to the model
            width = int(m.sum(0).nonzero().max()) + 1  # drop all-padding columns on the right
            s, m = s[:, :width], m[:, :width]
            logits = model(input_ids=s[:, :-1], use_cache=False).logits  # (B, W-1, V)
            ce = F.cross_entropy(logits.flatten(0, 1).float(), s[:, 1:].flatten(), reduction="none")  # (B*(W-1),)
            w = m[:, 1:].flatten()
            loss = (ce * w).sum() / w.sum().clamp_min(1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
        model.eval()
        return float(np.mean(losses))

    # --- rl ------------------------------------------------------------------------------------
    def _rl_round(self, r: int) -> tuple[dict, None]:
        cfg, model = self.cfg, self.model
        opt, params = make_optimizer(model, _opt_cfg(cfg.rl_lr, cfg))
        stats: dict[str, Any] = {"round": r}
        per_kind: dict[str, dict[str, list]] = {}
        for u in range(cfg.rl_updates):
            sets = self.prompt_sets(r, u)
            total = sum(ps.ids.shape[0] for ps in sets) * cfg.K
            opt.zero_grad(set_to_none=True)
            for i, ps in enumerate(sets):
                c = self.draw(ps, generator(self.seed, DRAW_STREAM, r, u, i))
                G = ps.ids.shape[0]
                ro = self.rollout(ps, c)
                R = self.reward(ro).view(G, cfg.K)
                with torch.no_grad():
                    ref = sequence_logprobs(self.base, c.prompt_ids, c.ids, c.mask).view(G, cfg.K)
                model.train()
                logp = sequence_logprobs(model, c.prompt_ids, c.ids, c.mask).view(G, cfg.K)
                loss = rloo_loss(logp, R, ref, cfg.beta) * (G * cfg.K / total)  # each completion weighs the same
                loss.backward()
                k = per_kind.setdefault(ps.kind, {"reward": [], "kl": [], "examples": []})
                k["reward"].append(float(R.mean()))
                k["kl"].append(float((logp.detach().double() - ref.double()).mean()))
                if u == 0:
                    k["examples"] = ro.texts[:4]
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
        model.eval()
        for kind, k in per_kind.items():
            stats[kind] = {"reward": float(np.mean(k["reward"])), "kl": float(np.mean(k["kl"])),
                           "examples": k["examples"]}
        return stats, None

    # --- saving --------------------------------------------------------------------------------
    def _save(self, r: int, stats: dict, kept: dict | None, train_s: float) -> None:
        t0 = time.perf_counter()
        if self.measure is not None:
            stats["measures"] = self.measure(self.model, r)
        seconds = {"round": r, "train": train_s, "measure": time.perf_counter() - t0}
        name = f"round-{r:03d}"
        tmp = Path(tempfile.mkdtemp(dir=self.out, prefix=f".tmp-{name}-"))
        save_model(tmp, self.model, _ntp(), self.model, self.task)
        if kept is not None:
            save_file({k: v.contiguous() for k, v in kept.items()}, str(tmp / "kept.safetensors"))
        (tmp / "round.json").write_text(json.dumps(stats, indent=1) + "\n")
        (tmp / "time.json").write_text(json.dumps(seconds) + "\n")
        publish_tree(tmp)  # the modes the umask gives (mkdtemp's folder is private)
        final = self.out / name
        if final.exists():  # left by an attempt that died before updating `latest`
            shutil.rmtree(final)
        os.rename(tmp, final)
        write_text_atomic(self.out / "latest", name + "\n")
        for stale in self.out.glob(".tmp-round-*"):
            shutil.rmtree(stale, ignore_errors=True)


def _ntp():
    return get_objective("ntp")


def _opt_cfg(lr: float, cfg: SelfTrainConfig) -> SimpleNamespace:
    """What the lab's ``make_optimizer`` reads from a training config."""
    return SimpleNamespace(lr=lr, weight_decay=cfg.weight_decay, beta1=0.9, beta2=0.95)


def _training_rows(c: Completions) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + completion as one row, and the mask of the tokens the loss predicts (the
    completion's real tokens)."""
    seqs = torch.cat([c.prompt_ids, c.ids], dim=1)  # (N, P + L)
    masks = torch.cat([torch.zeros(c.prompt_ids.shape), c.mask], dim=1)  # (N, P + L)
    return seqs, masks


def _stack(seqs: list[torch.Tensor], masks: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different widths, right-padded (mask 0) into one (N, W) pair."""
    W = max(s.shape[1] for s in seqs)
    out_s = torch.cat([F.pad(s, (0, W - s.shape[1]), value=pad) for s in seqs])  # (N, W)
    out_m = torch.cat([F.pad(m.float(), (0, W - m.shape[1]), value=0.0) for m in masks])  # (N, W)
    return out_s, out_m
