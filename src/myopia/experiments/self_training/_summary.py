"""The self-training headline (``summary.json``), from the merged tables alone.

Intervals over seeds are 95% t-intervals (mean ± t(n−1)·sd/√n; none with one seed). A change
"from the base" is paired by seed: the last round minus round 0 of the same seed. Sampled game
answers are counted over the seeds (the same number per seed) with a 95% Wilson interval.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ...stats import T_INTERVAL, t_interval, wilson_interval
from .._base import Headline, TableRow, Tables
from ._spec import SelfTrainingSpec

CI = f"{T_INTERVAL}; changes from the base paired by seed; sampled game answers: 95% Wilson interval"
VARIANTS = ("word", "random")
BRANCHES = ("one", "zero", "other")

# the measures the headline keeps per condition (columns of the ``rounds`` table)
HEADLINE = (
    "text_xent_per_char", "text_entropy_per_char", "text_ece", "samples_entropy_per_char", "samples_distinct_1",
    "samples_distinct_2", "samples_repetition", "samples_seq_rep_4", "samples_degenerate_beats_samples",
    "samples_marker_share", "word_exact_one", "word_exact_zero", "word_exact_other", "random_exact_one",
    "random_exact_zero", "random_exact_other", "random_exact_zero_word", "word_sampled_valid", "random_sampled_valid",
)
# the bundled pair's text measures, beside the lab's for scale
SCALE = ("text_xent_per_char", "text_entropy_per_char", "text_ece", "samples_entropy_per_char", "samples_distinct_1",
         "samples_distinct_2", "samples_repetition", "samples_seq_rep_4", "samples_degenerate_beats_samples")


class Interval(BaseModel):
    """A mean over seeds and its 95% t-interval (null bounds with one seed)."""

    model_config = ConfigDict(extra="forbid")

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int = Field(description="seeds in the mean")

    @classmethod
    def of(cls, values) -> "Interval":
        return cls(**t_interval([v for v in values if v is not None]))

    def text(self, digits: int = 3, signed: bool = False) -> str:
        """``mean [low, high]`` (``+`` signs for a change); ``(n=1)`` without an interval."""
        if self.mean is None:
            return "–"
        f = f"{{:{'+' if signed else ''}.{digits}g}}"
        if self.ci_low is None:
            return f.format(self.mean) + " (n=1)"
        return f"{f.format(self.mean)} [{f.format(self.ci_low)}, {f.format(self.ci_high)}]"

    def below_zero(self) -> bool:
        return self.ci_high is not None and self.ci_high < 0

    def above_zero(self) -> bool:
        return self.ci_low is not None and self.ci_low > 0


class Share(BaseModel):
    """A share of sampled answers and its 95% Wilson interval."""

    model_config = ConfigDict(extra="forbid")

    share: float | None
    ci_low: float
    ci_high: float
    count: int
    n: int

    @classmethod
    def of(cls, count: int, n: int) -> "Share":
        lo, hi = wilson_interval(count, n)
        return cls(share=count / n if n else None, ci_low=lo, ci_high=hi, count=count, n=n)

    def text(self) -> str:
        return "–" if self.share is None else f"{self.share:.3g} [{self.ci_low:.3g}, {self.ci_high:.3g}] ({self.n})"


class GameFigures(BaseModel):
    """One game variant: the exact branch probabilities, and the sampled check."""

    model_config = ConfigDict(extra="forbid")

    exact: dict[str, float | None] = Field(description="branch (one, zero, other) -> exact probability")
    sampled: dict[str, Share] = Field(description="branch -> share of the sampled answers (Wilson interval)")


class BaseCheck(BaseModel):
    """Whether a seed's base model plays the game, and its held-out quality."""

    model_config = ConfigDict(extra="forbid")

    seed: int
    model: str
    steps: int
    train_seconds: float
    eval_loss: float | None = Field(description="held-out loss of the base training (nats per token)")
    xent_per_char: float = Field(description="held-out cross-entropy, nats per character")
    game: dict[str, GameFigures] = Field(description="variant -> branch probabilities")
    plays: bool = Field(description="exact P(1) and P(0-branch) within play_tolerance of 0.5 in every variant")


class ConditionFinal(BaseModel):
    """One condition after its last round, over seeds."""

    model_config = ConfigDict(extra="forbid")

    condition: str
    kind: str = Field(description="top-k, random-k, reward-k or rl")
    reward: str | None
    beta: float | None
    data: str | None
    rounds: int
    seeds: int
    final: dict[str, Interval] = Field(description="measure -> its value at the last round")
    change: dict[str, Interval] = Field(description="measure -> last round minus round 0, paired by seed")
    game_sampled: dict[str, Share] = Field(description="VARIANT_BRANCH -> sampled share at the last round, "
                                           "counted over the seeds")
    round_seconds: Interval = Field(description="seconds per round: draw, select or reward, update")
    measure_seconds: Interval = Field(description="seconds per round's measures")


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str
    verdict: str = Field(description="yes / no / in part / no verdict / not run")
    answer: str = Field(description="one line, with intervals")
    evidence: dict[str, Interval]


class ScaleRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    sample_tokens: int | None
    values: dict[str, float | None]


class SelfTrainingRow(TableRow):
    condition: str
    rounds: int | None = Field(None, title="rounds")
    xent: str | float | None = Field(None, title="xent/char")
    entropy: str | float | None = Field(None, title="H/char samples")
    distinct_2: str | float | None = Field(None, title="distinct-2")
    repetition: str | float | None = Field(None, title="repetition")
    ece: str | float | None = Field(None, title="ECE")
    p_one_word: str | float | None = Field(None, title="P(1) word")
    p_zero_word: str | float | None = Field(None, title="P(zero) word")
    p_one_random: str | float | None = Field(None, title="P(1) random")
    p_zero_random: str | float | None = Field(None, title="P(letters) random")


COLUMNS = ("text_xent_per_char", "samples_entropy_per_char", "samples_distinct_2", "samples_repetition", "text_ece",
           "word_exact_one", "word_exact_zero", "random_exact_one", "random_exact_zero")


class SelfTrainingHeadline(Headline):
    seeds: list[int]
    base: list[BaseCheck] = Field(description="per seed: does the base play the game")
    base_plays: bool = Field(description="every seed's base plays the game")
    final: list[ConditionFinal] = Field(description="per condition, in the spec's order")
    questions: list[Answer] = Field(description="the three questions of issue 13, one line each")
    scale: list[ScaleRow] = Field(description="the bundled base-vs-tuned pair's text measures, for scale")
    ci: str = Field(description="what the intervals are")

    def rows(self) -> list[SelfTrainingRow]:
        rows = []
        for b in self.base:
            name = f"base s{b.seed}" + ("" if b.plays else " (does not play)")
            g = {v: b.game[v].exact for v in b.game}
            rows.append(SelfTrainingRow(condition=name, rounds=0, xent=b.xent_per_char,
                                        p_one_word=g.get("word", {}).get("one"),
                                        p_zero_word=g.get("word", {}).get("zero"),
                                        p_one_random=g.get("random", {}).get("one"),
                                        p_zero_random=g.get("random", {}).get("zero")))
        for f in self.final:
            rows.append(SelfTrainingRow(condition=f.condition, rounds=f.rounds,
                                        **dict(zip(_ROW_FIELDS, (f.final[m].text() for m in COLUMNS)))))
        for r in self.scale:
            rows.append(SelfTrainingRow(condition=r.model, **dict(zip(_ROW_FIELDS[:5],
                                                                      (r.values.get(m) for m in COLUMNS[:5])))))
        return rows


_ROW_FIELDS = ("xent", "entropy", "distinct_2", "repetition", "ece", "p_one_word", "p_zero_word", "p_one_random",
               "p_zero_random")


# --- building it ------------------------------------------------------------------------------
def _by(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def _sampled(rows: list[dict], prefix: str, n: int) -> Share:
    """The sampled share of ``prefix`` (``word_sampled_one``...) counted over ``rows`` (one per seed)."""
    counts = [round(r[prefix] * n) for r in rows if r.get(prefix) is not None]
    return Share.of(sum(counts), n * len(counts))


def _final(cond: dict, rows: list[dict], game_samples: int) -> ConditionFinal:
    by_seed = _by(rows, "seed")
    last = {s: max(rs, key=lambda r: r["round"]) for (s,), rs in by_seed.items()}
    first = {s: min(rs, key=lambda r: r["round"]) for (s,), rs in by_seed.items()}
    final = {m: Interval.of([r.get(m) for r in last.values()]) for m in HEADLINE}
    change = {m: Interval.of([last[s][m] - first[s][m] for s in last
                              if last[s].get(m) is not None and first[s].get(m) is not None]) for m in HEADLINE}
    sampled = {f"{v}_{b}": _sampled(list(last.values()), f"{v}_sampled_{b}", game_samples)
               for v in VARIANTS for b in (*BRANCHES, "valid")
               if any(r.get(f"{v}_sampled_{b}") is not None for r in last.values())}
    later = [r for r in rows if r["round"] > 0]
    return ConditionFinal(condition=cond["condition"], kind=cond["kind"], reward=cond.get("reward"),
                          beta=cond.get("beta"), data=cond.get("data"), rounds=max(r["round"] for r in rows),
                          seeds=len(last), final=final, change=change, game_sampled=sampled,
                          round_seconds=Interval.of([r.get("train_seconds") for r in later]),
                          measure_seconds=Interval.of([r.get("measure_seconds") for r in rows]))


def _base_check(r: dict, game_samples: int) -> BaseCheck:
    game = {}
    for v in VARIANTS:
        if r.get(f"{v}_exact_one") is None:
            continue
        sampled = {b: _sampled([r], f"{v}_sampled_{b}", game_samples) for b in ("one", "zero")
                   if r.get(f"{v}_sampled_{b}") is not None}
        game[v] = GameFigures(exact={b: r.get(f"{v}_exact_{b}") for b in BRANCHES}, sampled=sampled)
    return BaseCheck(seed=r["seed"], model=r["model"], steps=r["steps"], train_seconds=r["train_seconds"],
                     eval_loss=r.get("eval_loss"), xent_per_char=r["xent_per_char"], game=game, plays=r["plays"])


def summarize(tables: Tables, spec: SelfTrainingSpec) -> SelfTrainingHeadline:
    base = [_base_check(r, spec.game_samples) for r in sorted(tables.get("base", []), key=lambda r: r["seed"])]
    rows = _by(tables.get("rounds", []), "condition")
    order = {c: i for i, c in enumerate(spec.conditions)}
    conds = sorted(_conditions(tables), key=lambda c: order.get(c["condition"], len(order)))
    finals = [_final(c, rows[(c["condition"],)], spec.game_samples) for c in conds if (c["condition"],) in rows]
    scale = [ScaleRow(model=r["model"], sample_tokens=r.get("sample_tokens"), values={m: r.get(m) for m in SCALE})
             for r in tables.get("scale", [])]
    return SelfTrainingHeadline(seeds=spec.seeds, base=base, base_plays=bool(base) and all(b.plays for b in base),
                                final=finals, questions=questions(finals, tables.get("rounds", [])), scale=scale,
                                ci=CI)


def _conditions(tables: Tables) -> list[dict]:
    seen: dict[str, dict] = {}
    for c in tables.get("conditions", []):
        seen.setdefault(c["condition"], c)
    return list(seen.values())


# --- the three questions ------------------------------------------------------------------------
def _pick(finals: list[ConditionFinal], kind: str, **want: Any) -> ConditionFinal | None:
    """The first condition of ``kind`` with the wanted fields (one named like the kind first)."""
    ok = [f for f in finals if f.kind == kind and all(getattr(f, k) == v for k, v in want.items())]
    ok.sort(key=lambda f: f.condition != kind)
    return ok[0] if ok else None


def questions(finals: list[ConditionFinal], rows: list[dict]) -> list[Answer]:
    return [_q1(finals, rows), _q2(finals), _q3(finals, rows)]


def _curve(rows: list[dict], condition: str, measure: str) -> dict[int, Interval]:
    return {r: Interval.of([x.get(measure) for x in xs]) for (c, r), xs in _by(rows, "condition", "round").items()
            if c == condition}


def _first_above(rows: list[dict], a: str, b: str, measure: str, rounds: int) -> int | None:
    """The first round where ``a``'s interval of ``measure`` lies wholly above ``b``'s."""
    ca, cb = _curve(rows, a, measure), _curve(rows, b, measure)
    for r in range(1, rounds + 1):
        x, y = ca.get(r), cb.get(r)
        if x and y and x.ci_low is not None and y.ci_high is not None and x.ci_low > y.ci_high:
            return r
    return None


def _q1(finals: list[ConditionFinal], rows: list[dict]) -> Answer:
    q = "Does top-k degenerate into repetition, and in how many rounds, vs random-k?"
    top, rand = _pick(finals, "top-k", data="replace"), _pick(finals, "random-k", data="replace")
    if top is None or rand is None:
        return Answer(question=q, verdict="not run", evidence={},
                      answer="not run: needs a top-k and a random-k condition (data = replace)")
    ev = {f"{f.condition}.{m}": f.final[f"samples_{m}"] for f in (top, rand)
          for m in ("repetition", "seq_rep_4", "distinct_2", "entropy_per_char", "marker_share")}
    rep = _first_above(rows, top.condition, rand.condition, "samples_repetition", top.rounds)
    seq = _first_above(rows, top.condition, rand.condition, "samples_seq_rep_4", top.rounds)
    if top.final["samples_repetition"].ci_low is None:
        verdict = "no verdict (one seed: no intervals)"
    elif rep is not None:
        verdict = "yes"
    elif seq is not None:
        verdict = "in part"
    else:
        verdict = "no"

    def pair(m: str) -> str:
        a, b = ev[f"{top.condition}.{m}"], ev[f"{rand.condition}.{m}"]
        return f"{top.condition} {a.text()} vs {rand.condition} {b.text()}"

    when = (f"repetition first above {rand.condition}'s interval at round {rep}" if rep
            else f"repetition never above {rand.condition}'s interval in {top.rounds} rounds")
    when += (f", repeated 4-grams at round {seq}" if seq
             else f", repeated 4-grams never above in {top.rounds} rounds")
    ans = (f"{verdict}: {when}; after {top.rounds} rounds, samples ending in a phrase repeated 3 times "
           f"{pair('repetition')}; seq-rep-4 {pair('seq_rep_4')}; distinct-2 {pair('distinct_2')}; entropy per "
           f"character of the samples {pair('entropy_per_char')}; samples reciting the game's instruction "
           f"{pair('marker_share')}")
    return Answer(question=q, verdict=verdict, answer=ans, evidence=ev)


def _q2(finals: list[ConditionFinal]) -> Answer:
    q = ("Does a sequence-level objective (top-k, rl with predictability) make the model drop the random-string "
         "branch, while random-k and the neutral reward do not?")
    seq = [f for f in (_pick(finals, "top-k", data="replace"), _pick(finals, "rl", reward="predictability", beta=0.0))
           if f]
    # the neutral reward: branch (neutral between the branches by construction) where it was run, else valid
    neutral = _pick(finals, "rl", reward="branch") or _pick(finals, "rl", reward="valid")
    ctl = [f for f in (_pick(finals, "random-k", data="replace"), neutral) if f]
    if not seq or not ctl:
        return Answer(question=q, verdict="not run", evidence={},
                      answer="not run: needs top-k or rl (predictability, beta 0), and random-k or rl (branch or "
                      "valid)")
    ev = {f"{f.condition}.{v}_zero": f.change[f"{v}_exact_zero"] for f in seq + ctl for v in VARIANTS}
    drops = [f.change["random_exact_zero"].below_zero() for f in seq]
    held = [not f.change["random_exact_zero"].below_zero() for f in ctl]
    if any(f.change["random_exact_zero"].ci_low is None for f in seq + ctl):
        verdict = "no verdict (one seed: no intervals)"
    else:
        verdict = "yes" if all(drops) and all(held) else "no" if not any(drops) else "in part"

    def listed(fs: list[ConditionFinal], variant: str) -> str:
        return ", ".join(f"{f.condition} {ev[f'{f.condition}.{variant}_zero'].text(signed=True)}" for f in fs)

    ans = (f"{verdict}: change of the exact P(random-string branch) from the base, sequence-level "
           f"{listed(seq, 'random')}; token-level / neutral {listed(ctl, 'random')}; the word variant's P(zero) "
           f"beside it: sequence-level {listed(seq, 'word')}; token-level / neutral {listed(ctl, 'word')}")
    return Answer(question=q, verdict=verdict, answer=ans, evidence=ev)


def _last(rows: list[dict], condition: str) -> dict[int, dict]:
    """Seed -> the condition's last-round row."""
    out: dict[int, dict] = {}
    for r in rows:
        if r["condition"] == condition and (r["seed"] not in out or r["round"] > out[r["seed"]]["round"]):
            out[r["seed"]] = r
    return out


def _q3(finals: list[ConditionFinal], rows: list[dict]) -> Answer:
    q = "What does the KL penalty change?"
    plain = _pick(finals, "rl", reward="predictability", beta=0.0)
    kl = [f for f in finals if f.kind == "rl" and f.reward == "predictability" and (f.beta or 0) > 0]
    if plain is None or not kl:
        return Answer(question=q, verdict="not run", evidence={},
                      answer="not run: needs rl with predictability at beta 0 and at beta > 0")
    measures = (("random_exact_zero", "P(random branch)"), ("word_exact_zero", "P(zero), word"),
                ("text_xent_per_char", "held-out xent/char"), ("samples_entropy_per_char", "sample entropy/char"),
                ("samples_distinct_2", "distinct-2"), ("samples_repetition", "repetition"))
    ev: dict[str, Interval] = {}
    parts, differs = [], []
    base = _last(rows, plain.condition)
    for f in kl:
        mine = _last(rows, f.condition)
        bits = []
        for m, label in measures:
            # the same seed's base under both: the final values' difference is paired by seed
            diff = Interval.of([mine[s][m] - base[s][m] for s in mine if s in base
                                and mine[s].get(m) is not None and base[s].get(m) is not None])
            ev[f"{f.condition}-{plain.condition}.{m}"] = diff
            if diff.below_zero() or diff.above_zero():
                differs.append(f"{label} ({f.condition})")
            bits.append(f"{label} {f.change[m].text(signed=True)} vs {plain.change[m].text(signed=True)} "
                        f"(difference {diff.text(signed=True)})")
        parts.append(f"{f.condition} (β={f.beta:g}) vs {plain.condition} (β=0), change from the base: "
                     + "; ".join(bits))
    if any(v.ci_low is None for v in ev.values()):
        verdict = "no verdict (one seed: no intervals)"
    else:
        verdict = ("it changes " + ", ".join(differs)) if differs else "nothing measurable"
    return Answer(question=q, verdict=verdict, answer=f"{verdict}: " + " | ".join(parts), evidence=ev)
