"""Decoding with drafts: self-speculative decoding with a lab model's multi-token heads.

A lab model trained with ``mtp:n`` (parallel heads) or ``mtp-seq:n`` (DeepSeek-V3's sequential
modules) predicts, at every position, the next token (the model itself) and the n − 1 after it
(the heads). Decoding uses them as a drafter for the model itself:

1. the last forward pass gave the model's next token x (accepted) and, at the same position, the
   heads' guesses for the k tokens after it (the drafts);
2. one cached forward of the model over ``[x, d_1 .. d_k]`` verifies every draft at once;
3. ``greedy`` keeps the longest prefix of drafts equal to the model's argmax, plus the model's own
   token after it; ``sample`` accepts draft d_j with probability min(1, p(d_j)/q(d_j)) and, at the
   first rejection, draws from the normalised max(0, p − q) (Leviathan et al. 2023, Chen et al.
   2023), p the model's sampling distribution and q the head's; when every draft is accepted, the
   next token comes from p;
4. the key/value cache is cropped to the accepted tokens, and the heads draft again from the
   model's state at the last accepted position.

So greedy decoding with drafts gives the tokens of plain greedy decoding (up to floating-point
near-ties between a batched and a one-token forward), and sampling with drafts draws from exactly
the model's own distribution (with the same temperature, top-k, top-p and min_tokens); only the
number of forward passes changes. Each forward produces between 1 and k + 1 tokens.

The heads need the model's state at every earlier position, as the model's own layers do: each
head (depth module) is a decoder layer with its own key/value cache. Parallel head i runs on the
trunk output (the input of the model's last layer) at the accepted positions only, so its cache
never holds a guess. Sequential depth i at position t reads the token at t + i, which for the last
i − 1 positions is itself a draft: those positions are recomputed at every step, and only the
positions whose tokens are all accepted stay in the depth's cache.

The drafter loads from a ``lab:`` checkpoint (``mtp_heads.safetensors`` or
``mtp_seq_modules.safetensors`` beside the model, safetensors only). Supported: lab presets of
the Llama and GPT-2 families (the lab's models), with sdpa or eager attention.
"""

from __future__ import annotations

import json
import math
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import safe_open
from transformers import DynamicCache

from .._errors import UserError
from ..interp import decoder_layers, final_norm, unembed
from ..objectives import (
    HEADS_FILE,
    MODULES_FILE,
    MultiToken,
    MultiTokenModel,
    SequentialMultiToken,
    SequentialMultiTokenModel,
)
from ._base import Context, Sample, SamplingParams, WhiteBoxModel
from ._sampling import sampling_probs

_FAMILIES = ("llama", "gpt2")  # decoder layers called with (hidden, mask, positions, cache) as below


# --- what a checkpoint holds -------------------------------------------------------------------
@dataclass(frozen=True)
class HeadsInfo:
    """The multi-token heads saved beside a lab checkpoint."""

    path: Path  # the safetensors file
    objective: str  # "mtp:n" or "mtp-seq:n"
    n_heads: int  # tokens predicted per position: the next one and n − 1 more

    @property
    def max_draft(self) -> int:
        return self.n_heads - 1


def heads_info(folder: str | Path, name: str | None = None) -> HeadsInfo:
    """The heads saved in a lab checkpoint ``folder`` (read from the safetensors header, no weights),
    or one line saying that it has none. ``name`` names the model in errors."""
    folder = Path(folder).expanduser()
    for file in (HEADS_FILE, MODULES_FILE):
        path = folder / file
        if path.is_file():
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            family = "mtp" if file == HEADS_FILE else "mtp-seq"
            n = int(meta.get("n_heads", 0)) or None
            if n is None:
                raise UserError(f"{path} has no n_heads in its header: not written by myopia's {family}:N objective")
            return HeadsInfo(path, meta.get("objective", f"{family}:{n}"), n)
    raise UserError(
        f"model {name or f'lab:{folder}'} has no multi-token heads (no {HEADS_FILE} or {MODULES_FILE} in {folder}; "
        f"trained with {_trained_objective(folder)}); decoding with drafts needs a lab model trained with "
        "mtp:N or mtp-seq:N, N >= 2"
    )


def _trained_objective(folder: Path) -> str:
    try:
        return str(json.loads((folder / "spec.json").read_text()).get("objective", "an unknown objective"))
    except (OSError, ValueError):
        return "an unknown objective"


def check_draft(objective: str, n_heads: int, draft: int, name: str) -> None:
    """``draft`` tokens per step must be 1 .. n − 1 for a model trained with ``objective`` (n heads)."""
    if isinstance(draft, bool) or not isinstance(draft, int) or draft < 1:
        raise UserError(f"draft must be a whole number of tokens >= 1, got {draft!r}")
    most = n_heads - 1
    if most < 1:
        raise UserError(
            f"model {name} was trained with {objective}, which has no extra heads; drafting needs mtp:N or "
            "mtp-seq:N with N >= 2"
        )
    if draft > most:
        raise UserError(
            f"draft={draft} is more than model {name} can draft: trained with {objective}, it has "
            f"{most} extra head{'s' if most > 1 else ''}; use draft 1..{most}"
        )


# --- the drafter ---------------------------------------------------------------------------------
class Drafter:
    """The heads of a multi-token model as a drafter for the model itself.

    ``module`` is the objective's module (:class:`~myopia.objectives.MultiTokenModel` or
    :class:`~myopia.objectives.SequentialMultiTokenModel`) around the very model that decodes.
    Build one from a checkpoint with :func:`load_drafter`."""

    def __init__(self, module: torch.nn.Module):
        if isinstance(module, MultiTokenModel):
            self.kind, self.layers = "mtp", list(module.heads)
        elif isinstance(module, SequentialMultiTokenModel):
            self.kind, self.layers = "mtp-seq", [depth.block for depth in module.depths]
        else:
            raise UserError(f"a drafter needs the module of mtp:N or mtp-seq:N, not {type(module).__name__}")
        self.module = module.eval()
        self.model = module.model
        self.n_heads = module.n_heads
        self.objective = f"{self.kind}:{self.n_heads}"
        family = getattr(self.model.config, "model_type", "?")
        if family not in _FAMILIES:
            raise UserError(
                f"decoding with drafts supports lab models of the {' and '.join(_FAMILIES)} families; "
                f"this model is {family}"
            )
        self.attn = self.model.config._attn_implementation
        if self.attn not in ("sdpa", "eager"):
            raise UserError(
                f"decoding with drafts runs the heads with sdpa or eager attention; this model uses {self.attn!r}"
            )
        self.rotary = getattr(self.model.base_model, "rotary_emb", None)  # Llama: rotary; GPT-2: positions in the input

    @property
    def max_draft(self) -> int:
        return self.n_heads - 1

    @contextmanager
    def recording(self) -> Iterator[dict[str, torch.Tensor]]:
        """While active, every forward of the model stores its trunk state (B, T, d) under
        ``"trunk"``: the input of the last decoder layer (``mtp``) or of the final norm (``mtp-seq``);
        and under ``"rotary"`` the rotary embeddings its layers received (None for GPT-2), which
        the heads reuse at the same positions."""
        record: dict[str, Any] = {}

        def keep_call(module, args, kwargs):
            record["rotary"] = kwargs.get("position_embeddings")
            if self.kind == "mtp":
                record["trunk"] = args[0]

        def keep_norm_input(module, args):
            record["trunk"] = args[0]

        handles = [decoder_layers(self.model)[-1].register_forward_pre_hook(keep_call, with_kwargs=True)]
        if self.kind == "mtp-seq":
            handles.append(final_norm(self.model).register_forward_pre_hook(keep_norm_input))
        try:
            yield record
        finally:
            for handle in handles:
                handle.remove()

    def start(self, n_drafts: int) -> DraftState:
        """A fresh state for one sequence that drafts up to ``n_drafts`` tokens per step."""
        return DraftState(caches=[DynamicCache() for _ in range(n_drafts)], done=[0] * n_drafts,
                          history=[None] * (n_drafts + 1))

    def commit_trunk(self, state: DraftState, trunk: torch.Tensor, rotary: tuple | None = None) -> None:
        """Append the trunk states (1, m, d) of newly accepted positions (and the rotary embeddings
        (cos, sin) the model computed for them, if any, kept for the heads at those positions)."""
        old = state.history[0]
        first = 0 if old is None else old.shape[1]
        state.history[0] = trunk if old is None else torch.cat([old, trunk], dim=1)  # (1, P, d)
        m = trunk.shape[1]
        state.rotary = None if rotary is None else (first, rotary[0][:, :m], rotary[1][:, :m])  # (1, m, hd) each

    def draft(self, state: DraftState, tokens: list[int], k: int,
              choose: Callable[[int, torch.Tensor], int]) -> list[int]:
        """``k`` drafts after ``tokens`` (all accepted; the last one, the model's newest token, is
        not yet in the trunk history). ``choose(j, logits (V,))`` picks draft j (0-based) from its
        head's logits. Heads 1..k bring their caches up to date on the way."""
        if self.kind == "mtp":
            return self._draft_parallel(state, k, choose)
        return self._draft_sequential(state, tokens, k, choose)

    # -- parallel heads (mtp:n) -----------------------------------------------------------------
    def _draft_parallel(self, state: DraftState, k: int, choose) -> list[int]:
        trunk = state.history[0]  # (1, P, d)
        P = trunk.shape[1]
        drafts, inputs = [], {}
        for i in range(k):
            start = state.done[i]  # the same for every head unless one sat out a step
            if start not in inputs:
                inputs[start] = self._layer_inputs(trunk[:, start:], start, state)
            hidden = self._run_layer(i, trunk[:, start:], inputs[start], state.caches[i])  # (1, P - start, d)
            state.done[i] = P
            drafts.append(choose(i, self._logits(hidden[:, -1:])))
        return drafts

    # -- sequential depths (mtp-seq:n) ----------------------------------------------------------
    def _draft_sequential(self, state: DraftState, tokens: list[int], k: int, choose) -> list[int]:
        previous = state.history[0]  # (1, P, d): depth 0 at every fed position
        P = previous.shape[1]
        known = list(tokens)  # accepted tokens (positions 0..P), then the drafts as they come
        drafts: list[int] = []
        embed = self.model.get_input_embeddings()
        for i in range(1, k + 1):  # depth i at position t reads the token at t + i
            start, depth = state.done[i - 1], self.module.depths[i - 1]
            ids = torch.tensor([known[start + i : P + i]], device=previous.device)  # (1, P - start)
            hidden = depth.combine(previous[:, start:], embed(ids))  # (1, P - start, d)
            inputs = self._layer_inputs(hidden, start, state)
            out = self._run_layer(i - 1, hidden, inputs, state.caches[i - 1])  # (1, P - start, d)
            keep = max(0, P - i + 1)  # positions whose token t + i is accepted (t + i <= P)
            if P > keep:
                state.caches[i - 1].crop(-(P - keep))
            full = out if start == 0 else torch.cat([state.history[i][:, :start], out], dim=1)  # (1, P, d)
            state.history[i] = full[:, :keep]
            state.done[i - 1] = keep
            drafts.append(choose(i - 1, self._logits(out[:, -1:])))
            known.append(drafts[-1])
            previous = full
        return drafts

    # -- one head layer over new positions, with its own cache ------------------------------------
    def _layer_inputs(self, hidden: torch.Tensor, start: int, state: DraftState) -> dict[str, Any]:
        """The keyword arguments of a decoder layer for ``hidden`` (1, q, d) at positions
        start..start+q−1 after ``start`` cached ones: mask, positions, rotary embeddings (those
        of the model's last pass where it covered these positions)."""
        q = hidden.shape[1]
        positions = torch.arange(start, start + q, device=hidden.device)[None]  # (1, q)
        kwargs: dict[str, Any] = {"attention_mask": self._mask(q, start, hidden), "use_cache": True,
                                  "position_ids": positions}
        if self.rotary is not None:
            first, cos, sin = state.rotary or (0, None, None)
            if cos is not None and first <= start and start + q <= first + cos.shape[1]:
                kwargs["position_embeddings"] = (cos[:, start - first : start - first + q],
                                                 sin[:, start - first : start - first + q])  # (1, q, hd) each
            else:
                kwargs["position_embeddings"] = self.rotary(hidden, positions)
        return kwargs

    def _run_layer(self, i: int, hidden: torch.Tensor, inputs: dict[str, Any], cache) -> torch.Tensor:
        """Head (depth) ``i``'s decoder layer on ``hidden`` (1, q, d), its cache holding the
        positions before: (1, q, d)."""
        out = self.layers[i](hidden, past_key_values=cache, **inputs)
        return out[0] if isinstance(out, tuple) else out

    def _mask(self, q: int, start: int, like: torch.Tensor) -> torch.Tensor | None:
        """Causal mask (1, 1, q, start + q) for q new queries after ``start`` cached keys."""
        if q == 1:
            return None  # a single query sees every cached key
        allowed = torch.ones(q, start + q, dtype=torch.bool, device=like.device).tril(diagonal=start)  # (q, start+q)
        if self.attn == "sdpa":
            return allowed[None, None]
        return torch.zeros(allowed.shape, dtype=like.dtype, device=like.device).masked_fill(
            ~allowed, torch.finfo(like.dtype).min)[None, None]  # (1, 1, q, start+q), additive

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(1, 1, d) -> (V,) through the model's final norm and unembedding."""
        return unembed(self.model, hidden)[0, -1]


@dataclass
class DraftState:
    """One sequence's drafting state: per head (depth) its key/value cache and how many positions
    it holds; ``history[0]`` the trunk states of the accepted fed positions (1, P, d), and for a
    sequential model ``history[i]`` depth i's committed outputs."""

    caches: list
    done: list[int]
    history: list[torch.Tensor | None]
    rotary: tuple | None = None  # (first position, cos, sin) of the newest accepted positions


_DRAFTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def load_drafter(lm: WhiteBoxModel) -> Drafter:
    """The drafter of a ``lab:`` model loaded with :func:`myopia.load_model` (built once, then
    kept with the model): its heads from the checkpoint's safetensors file, strictly."""
    if lm in _DRAFTERS:
        return _DRAFTERS[lm]
    folder = getattr(lm, "lab_dir", None)
    if folder is None:
        if not lm.capabilities.white_box:
            raise UserError(
                f"decoding with drafts needs a lab: model with multi-token heads; {lm.name} is a black-box server"
            )
        raise UserError(
            f"decoding with drafts needs a lab: model trained with mtp:N or mtp-seq:N; {lm.name} is not a lab: model"
        )
    info = heads_info(folder, lm.name)
    with torch.random.fork_rng(devices=[]):  # their initialisation (overwritten below) leaves the caller's RNG alone
        if info.path.name == HEADS_FILE:
            module, objective = MultiTokenModel(lm.model, info.n_heads), MultiToken(info.n_heads)
        else:
            module, objective = SequentialMultiTokenModel(lm.model, info.n_heads), SequentialMultiToken(info.n_heads)
    objective.load_extra(module, folder)
    module.to(lm.device)  # the heads were built on the CPU; the model may sit on a GPU (a no-op on a CPU)
    _DRAFTERS[lm] = Drafter(module)
    return _DRAFTERS[lm]


# --- statistics -------------------------------------------------------------------------------------
@dataclass
class DraftStats:
    """What decoding one sequence with drafts did. Draft j (0-based) of a step is ``offered`` when
    the step drafts it, ``reached`` when every draft before it was accepted (so it was judged on its
    own), ``accepted`` when it was kept."""

    forwards: int = 0  # forward passes of the model (the prompt's included)
    tokens: int = 0  # tokens generated
    offered: list[int] = field(default_factory=list)
    reached: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)

    @property
    def tokens_per_forward(self) -> float:
        return self.tokens / max(self.forwards, 1)

    def count(self, j: int, reached: bool, accepted: bool) -> None:
        while len(self.offered) <= j:
            self.offered.append(0), self.reached.append(0), self.accepted.append(0)
        self.offered[j] += 1
        self.reached[j] += int(reached)
        self.accepted[j] += int(accepted)


# --- the acceptance rule (module-level so that a test can show what a wrong rule does) --------------
def accept_probability(p_x: float, q_x: float) -> float:
    """Probability of keeping a draft x drawn from q, p the model's distribution: min(1, p(x)/q(x))."""
    return 1.0 if p_x >= q_x else p_x / q_x


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Where to draw from after a rejection: max(0, p − q), normalised (p itself when p = q
    to rounding, in which case no draft is ever rejected)."""
    r = (p - q).clamp_min(0.0)  # (V,)
    total = r.sum()
    return r / total if total > 0 else p


def _inverse_cdf(probs: torch.Tensor, gen: torch.Generator) -> int:
    """One draw from (V,) probabilities with one uniform of ``gen`` (as the plain sampler draws)."""
    cdf = probs.cumsum(dim=-1)  # (V,)
    u = torch.rand(1, generator=gen, dtype=torch.float64) * cdf[-1:]  # (1,)
    return int(torch.searchsorted(cdf, u)[0].clamp(max=probs.shape[-1] - 1))


# --- decoding ----------------------------------------------------------------------------------------
class _Decoder:
    """Decodes one sequence with drafts (batch 1). ``prefill`` then ``step`` until ``done``; the
    state (``cache``, ``tokens``, ``drafter_state``) is readable between steps."""

    def __init__(self, lm: WhiteBoxModel, drafter: Drafter, params: SamplingParams, draft: int, gen: torch.Generator):
        self.lm, self.drafter, self.params, self.k, self.gen = lm, drafter, params, draft, gen
        self.greedy = params.temperature == 0
        self.probs = lambda logits: sampling_probs(logits[None].float().cpu(), params)[0]  # (V,) float64
        self.stop_ids = lm._stop_ids()
        self.stats = DraftStats()
        self.generated: list[int] = []
        self.done = False

    # -- the model's distribution at generated index g ------------------------------------------------
    def _masked(self, logits: torch.Tensor, g: int) -> torch.Tensor:
        """(V,) logits with end-of-sequence forbidden while g < min_tokens (as plain decoding)."""
        if g < self.params.min_tokens and self.stop_ids:
            logits = logits.clone()
            logits[self.stop_ids] = -math.inf
        return logits

    def _target(self, logits: torch.Tensor, g: int) -> int:
        """The model's token from its (V,) logits: argmax, or a draw from its sampling distribution."""
        if self.greedy:
            return self._greedy_tokens(logits[None], g)[0]
        return _inverse_cdf(self.probs(self._masked(logits, g)), self.gen)

    # -- the loop -------------------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, ctx_ids: list[int]) -> None:
        model = self.lm.model
        self.state = self.drafter.start(self.k)
        with self.drafter.recording() as rec:
            out = model(input_ids=torch.tensor([ctx_ids], device=self.lm.device), use_cache=True, logits_to_keep=1)
        self.cache = out.past_key_values
        self.tokens = list(ctx_ids)
        self.drafter.commit_trunk(self.state, rec["trunk"], rec["rotary"])
        self.stats.forwards += 1
        self._accept([self._target(out.logits[0, -1], 0)])

    @torch.no_grad()
    def step(self) -> None:
        """Draft, verify in one forward, accept, crop the cache."""
        g = len(self.generated)
        k = min(self.k, self.params.max_tokens - g)  # no drafts past the last token wanted
        q_probs: list[torch.Tensor] = []

        def choose(j: int, logits: torch.Tensor) -> int:
            logits = self._masked(logits, g + j)
            if self.greedy:
                return int(logits.float().argmax())
            q_probs.append(self.probs(logits))
            return _inverse_cdf(q_probs[-1], self.gen)

        drafts = self.drafter.draft(self.state, self.tokens, k, choose)
        ids = torch.tensor([[self.tokens[-1], *drafts]], device=self.lm.device)  # (1, k + 1)
        with self.drafter.recording() as rec:
            out = self.lm.model(input_ids=ids, past_key_values=self.cache, use_cache=True)
        self.stats.forwards += 1
        logits = out.logits[0]  # (k + 1, V)
        new = self._verify(drafts, q_probs, logits, g)
        a = len(new) - 1  # drafts accepted
        self.cache.crop(-(k - a)) if k > a else None  # keep the fed tokens that were accepted
        self.drafter.commit_trunk(self.state, rec["trunk"][:, : a + 1], rec["rotary"])
        self._accept(new)

    def _verify(self, drafts: list[int], q_probs: list[torch.Tensor], logits: torch.Tensor, g: int) -> list[int]:
        """The accepted drafts and the model's next token; logits (k + 1, V) of the verifying pass."""
        if self.greedy:
            model_tokens = self._greedy_tokens(logits, g)  # (k + 1) the model's own choices
            a = next((j for j, d in enumerate(drafts) if d != model_tokens[j]), len(drafts))
            self._count(len(drafts), a)
            return drafts[:a] + [model_tokens[a]]
        for j, d in enumerate(drafts):
            p = self.probs(self._masked(logits[j], g + j))
            u = float(torch.rand(1, generator=self.gen, dtype=torch.float64))
            if u >= accept_probability(float(p[d]), float(q_probs[j][d])):  # rejected: draw from the rest of p
                self._count(len(drafts), j)
                return drafts[:j] + [_inverse_cdf(residual(p, q_probs[j]), self.gen)]
        self._count(len(drafts), len(drafts))
        return drafts + [self._target(logits[len(drafts)], g + len(drafts))]

    def _greedy_tokens(self, logits: torch.Tensor, g: int) -> list[int]:
        """Argmax of every row of (m, V) logits, row j being generated token g + j (end-of-sequence
        forbidden before min_tokens, as in plain decoding)."""
        logits = logits.float()
        masked = min(len(logits), self.params.min_tokens - g)
        if masked > 0 and self.stop_ids:
            logits = logits.clone()
            logits[:masked, self.stop_ids] = -math.inf
        return logits.argmax(dim=-1).tolist()

    def _count(self, k: int, a: int) -> None:
        """Statistics of a step that drafted k tokens and accepted the first a."""
        for j in range(k):
            self.stats.count(j, reached=j <= a, accepted=j < a)

    def _accept(self, new: list[int]) -> None:
        """Append generated tokens up to max_tokens and the first end-of-sequence."""
        for t in new:
            self.generated.append(t)
            self.tokens.append(t)
            if t in self.stop_ids or len(self.generated) >= self.params.max_tokens:
                self.done = True
                break
        self.stats.tokens = len(self.generated)


def decode_with_drafts(lm: WhiteBoxModel, ctx_ids: list[int], params: SamplingParams, draft: int,
                       gen: torch.Generator, drafter: Drafter | None = None) -> tuple[list[int], DraftStats]:
    """Generate after the token ids ``ctx_ids``: (generated ids, end-of-sequence included; stats)."""
    drafter = drafter or load_drafter(lm)
    decoder = _Decoder(lm, drafter, params, draft, gen)
    decoder.prefill(ctx_ids)
    while not decoder.done:
        decoder.step()
    return decoder.generated, decoder.stats


def generate_with_drafts(lm: WhiteBoxModel, context: Context, params: SamplingParams, draft: int,
                         gen: torch.Generator | None = None,
                         drafter: Drafter | None = None) -> tuple[Sample, DraftStats]:
    """One continuation of ``context`` decoded with ``draft`` drafted tokens per forward, and what
    the drafting did. Same checks and output as :meth:`WhiteBoxModel.sample` with ``n=1``."""
    drafter = drafter or load_drafter(lm)
    check_draft(drafter.objective, drafter.n_heads, draft, lm.name)
    text, ctx_ids = lm.encode_context(context)
    if lm.max_length and len(ctx_ids) + params.max_tokens > lm.max_length:
        raise UserError(
            f"context ({len(ctx_ids)} tokens) + max_tokens ({params.max_tokens}) exceeds "
            f"model {lm.name}'s window of {lm.max_length}"
        )
    gen = gen if gen is not None else torch.Generator(device="cpu").manual_seed(params.seed)
    ids, stats = decode_with_drafts(lm, ctx_ids, params, draft, gen, drafter)
    stop = set(lm._stop_ids())
    kept = ids[: next((i for i, t in enumerate(ids) if t in stop), len(ids))]
    return Sample(context=text, text=lm.tokenizer.decode(kept), token_ids=kept), stats


def sample_with_drafts(lm: WhiteBoxModel, context: Context, n: int, params: SamplingParams, draft: int) -> list[Sample]:
    """``n`` continuations decoded with drafts, one after another from one generator seeded with
    ``params.seed`` (reproducible by seed; not the same draws as plain sampling's batch)."""
    if n < 1:
        raise UserError(f"number of samples must be at least 1, got {n}")
    gen = torch.Generator(device="cpu").manual_seed(params.seed)
    return [generate_with_drafts(lm, context, params, draft, gen)[0] for _ in range(n)]
