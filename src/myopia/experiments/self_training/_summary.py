"""Self-training headline figures, from the stored tables alone: the typed ``summary.json``.

Intervals are 95% t-intervals over seeds (mean ± t(n−1)·sd/√n; none with one seed). A change
"from the base" is paired by seed: the final round minus round 0 of the same seed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .._base import Tables
from .._myopia_gap_train import t_interval
from ._spec import SelfTrainingSpec

# the measures the summary keeps per condition (table columns of ``rounds``)
HEADLINE = (
    "text_xent_per_char", "text_entropy_per_char", "text_ece", "samples_entropy_per_char", "samples_distinct_1",
    "samples_distinct_2", "samples_repetition", "samples_seq_rep_4", "samples_degenerate_beats_samples",
    "samples_marker_share", "word_exact_one", "word_exact_zero", "word_exact_other", "random_exact_one",
    "random_exact_zero", "random_exact_other", "random_exact_zero_word", "random_sampled_valid",
)
SCALE = ("text_xent_per_char", "text_entropy_per_char", "text_ece", "samples_entropy_per_char", "samples_distinct_1",
         "samples_distinct_2", "samples_repetition", "samples_seq_rep_4", "samples_degenerate_beats_samples",
         "samples_marker_share")


class Interval(BaseModel):
    mean: float | None
    low: float | None
    high: float | None
    n: int

    @classmethod
    def of(cls, values) -> "Interval":
        t = t_interval([v for v in values if v is not None])
        return cls(mean=t["mean"], low=t["ci_low"], high=t["ci_high"], n=t["n"])

    def text(self, digits: int = 3, signed: bool = False) -> str:
        """``mean [low, high]`` (``+`` signs for a change)."""
        if self.mean is None:
            return "–"
        f = f"{{:{'+' if signed else ''}.{digits}g}}"
        if self.low is None:
            return f.format(self.mean) + " (n=1)"
        return f"{f.format(self.mean)} [{f.format(self.low)}, {f.format(self.high)}]"


class BaseCheck(BaseModel):
    seed: int
    model: str
    steps: int
    train_seconds: float
    eval_loss: float | None
    xent_per_char: float
    word_exact_one: float | None = None
    word_exact_zero: float | None = None
    word_exact_other: float | None = None
    random_exact_one: float | None = None
    random_exact_zero: float | None = None
    random_exact_other: float | None = None
    plays: bool


class ConditionFinal(BaseModel):
    condition: str
    kind: str
    reward: str | None
    beta: float | None
    data: str | None
    rounds: int
    seeds: int
    final: dict[str, Interval]  # measure -> its value at the last round
    change: dict[str, Interval]  # measure -> last round minus round 0, paired by seed
    round_seconds: Interval  # draw + select/reward + update, per round
    measure_seconds: Interval  # the measures, per round


class Answer(BaseModel):
    question: str
    answer: str  # one line, with intervals
    evidence: dict[str, Interval]


class ScaleRow(BaseModel):
    model: str
    values: dict[str, float | None]


class SelfTrainingSummary(BaseModel):
    seeds: list[int]
    base: list[BaseCheck]
    base_plays: bool
    final: list[ConditionFinal]
    questions: list[Answer]
    scale: list[ScaleRow]


# --- building it ------------------------------------------------------------------------------
def _by(rows: list[dict], *keys: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def _final(cond: dict, rows: list[dict]) -> ConditionFinal:
    by_seed = _by(rows, "seed")
    last = {s: max(rs, key=lambda r: r["round"]) for (s,), rs in by_seed.items()}
    first = {s: min(rs, key=lambda r: r["round"]) for (s,), rs in by_seed.items()}
    final = {m: Interval.of([r.get(m) for r in last.values()]) for m in HEADLINE}
    change = {m: Interval.of([last[s].get(m) - first[s].get(m) for s in last
                              if last[s].get(m) is not None and first[s].get(m) is not None]) for m in HEADLINE}
    later = [r for r in rows if r["round"] > 0]
    return ConditionFinal(condition=cond["condition"], kind=cond["kind"], reward=cond.get("reward"),
                          beta=cond.get("beta"), data=cond.get("data"), rounds=max(r["round"] for r in rows),
                          seeds=len(last), final=final, change=change,
                          round_seconds=Interval.of([r.get("train_seconds") for r in later]),
                          measure_seconds=Interval.of([r.get("measure_seconds") for r in rows]))


def summarize(tables: Tables, spec: SelfTrainingSpec) -> SelfTrainingSummary:
    base = [BaseCheck(**{k: v for k, v in r.items() if k in BaseCheck.model_fields}) for r in tables.get("base", [])]
    rows = _by(tables.get("rounds", []), "condition")
    finals = [_final(c, rows[(c["condition"],)]) for c in _conditions(tables) if (c["condition"],) in rows]
    scale = [ScaleRow(model=r["model"], values={m: r.get(m) for m in SCALE}) for r in tables.get("scale", [])]
    return SelfTrainingSummary(seeds=spec.seeds, base=base, base_plays=bool(base) and all(b.plays for b in base),
                               final=finals, questions=questions(finals, tables.get("rounds", [])), scale=scale)


def _conditions(tables: Tables) -> list[dict]:
    seen: dict[str, dict] = {}
    for c in tables.get("conditions", []):
        seen.setdefault(c["condition"], c)
    return list(seen.values())


# --- the three questions ------------------------------------------------------------------------
def _pick(finals: list[ConditionFinal], kind: str, **want: Any) -> ConditionFinal | None:
    """The first condition of ``kind`` with the wanted fields (a name equal to the kind first)."""
    ok = [f for f in finals if f.kind == kind and all(getattr(f, k) == v for k, v in want.items())]
    ok.sort(key=lambda f: f.condition != kind)
    return ok[0] if ok else None


def questions(finals: list[ConditionFinal], rows: list[dict]) -> list[Answer]:
    return [_q1(finals, rows), _q2(finals), _q3(finals)]


def _below_zero(iv: Interval) -> bool:
    return iv.high is not None and iv.high < 0


def _q1(finals: list[ConditionFinal], rows: list[dict]) -> Answer:
    q = "Does top-k degenerate into repetition, and in how many rounds, vs random-k?"
    top, rand = _pick(finals, "top-k", data="replace"), _pick(finals, "random-k", data="replace")
    if top is None or rand is None:
        return Answer(question=q, answer="not run: needs top-k and random-k conditions (data = replace)", evidence={})
    curves = _by(rows, "condition", "round")
    first = None
    for r in range(1, top.rounds + 1):
        a = Interval.of([x.get("samples_repetition") for x in curves.get((top.condition, r), [])])
        b = Interval.of([x.get("samples_repetition") for x in curves.get((rand.condition, r), [])])
        if a.low is not None and b.high is not None and a.low > b.high:
            first = r
            break
    when = (f"first above {rand.condition}'s interval at round {first}" if first
            else f"never above {rand.condition}'s interval in {top.rounds} rounds")
    ev = {f"{f.condition}.{m}": f.final[f"samples_{m}"] for f in (top, rand)
          for m in ("repetition", "seq_rep_4", "distinct_2", "entropy_per_char", "marker_share")}

    def pair(m: str) -> str:
        a, b = ev[f"{top.condition}.{m}"], ev[f"{rand.condition}.{m}"]
        return f"{top.condition} {a.text()} vs {rand.condition} {b.text()}"

    ans = (f"after {top.rounds} rounds, repetition (samples ending in a phrase repeated 3 times) {pair('repetition')} "
           f"({when}); seq-rep-4 {pair('seq_rep_4')}; distinct-2 {pair('distinct_2')}; entropy per character of "
           f"the samples {pair('entropy_per_char')}; samples reciting the game's instruction {pair('marker_share')}")
    return Answer(question=q, answer=ans, evidence=ev)


def _q2(finals: list[ConditionFinal]) -> Answer:
    q = ("Does a sequence-level objective (top-k, rl with predictability) make the model drop the random-string "
         "branch, while random-k and the neutral reward do not?")
    seq = [f for f in (_pick(finals, "top-k", data="replace"), _pick(finals, "rl", reward="predictability", beta=0.0))
           if f]
    ctl = [f for f in (_pick(finals, "random-k", data="replace"), _pick(finals, "rl", reward="valid")) if f]
    if not seq or not ctl:
        return Answer(question=q, answer="not run: needs top-k or rl (predictability, beta 0), and random-k or rl "
                      "(valid)", evidence={})
    ev = {f"{f.condition}.{v}_zero": f.change[f"{v}_exact_zero"] for f in seq + ctl for v in ("random", "word")}
    drops = [_below_zero(f.change["random_exact_zero"]) for f in seq]
    held = [not _below_zero(f.change["random_exact_zero"]) for f in ctl]
    if any(f.change["random_exact_zero"].low is None for f in seq + ctl):
        verdict = "no verdict (one seed: no intervals)"
    else:
        verdict = "yes" if all(drops) and all(held) else "no" if not any(drops) else "in part"

    def listed(fs: list[ConditionFinal], variant: str) -> str:
        return ", ".join(f"{f.condition} {ev[f'{f.condition}.{variant}_zero'].text(signed=True)}" for f in fs)

    ans = (f"{verdict}: change of the exact P(random-string branch) from the base, sequence-level "
           f"{listed(seq, 'random')}; token-level / neutral {listed(ctl, 'random')} (the word variant's P(zero), "
           f"sequence-level: {listed(seq, 'word')})")
    return Answer(question=q, answer=ans, evidence=ev)


def _q3(finals: list[ConditionFinal]) -> Answer:
    q = "What does the KL penalty change?"
    plain = _pick(finals, "rl", reward="predictability", beta=0.0)
    kl = [f for f in finals if f.kind == "rl" and f.reward == "predictability" and (f.beta or 0) > 0]
    if plain is None or not kl:
        return Answer(question=q, answer="not run: needs rl with predictability at beta 0 and beta > 0", evidence={})
    measures = (("random_exact_zero", "P(random branch)"), ("word_exact_zero", "P(zero), word"),
                ("text_xent_per_char", "held-out xent/char"), ("samples_entropy_per_char", "sample entropy/char"),
                ("samples_distinct_2", "distinct-2"), ("samples_repetition", "repetition"))
    ev, parts = {}, []
    for f in kl:
        bits = []
        for m, label in measures:
            ev[f"{f.condition}.{m}"], ev[f"{plain.condition}.{m}"] = f.change[m], plain.change[m]
            bits.append(f"{label} {f.change[m].text(signed=True)} vs {plain.change[m].text(signed=True)}")
        parts.append(f"{f.condition} (β={f.beta:g}) vs {plain.condition} (β=0), change from the base: "
                     + "; ".join(bits))
    return Answer(question=q, answer=" | ".join(parts), evidence=ev)


# --- the end-of-run table -------------------------------------------------------------------------
COLUMNS = (("text_xent_per_char", "xent/char"), ("samples_entropy_per_char", "H/char samples"),
           ("samples_distinct_2", "distinct-2"), ("samples_repetition", "repetition"), ("text_ece", "ECE"),
           ("word_exact_one", "P(1) word"), ("random_exact_one", "P(1) random"), ("random_exact_zero", "P(0) random"))


def summary_rows(summary: dict) -> tuple[list[str], list[list[Any]]]:
    s = SelfTrainingSummary.model_validate(summary)
    header = ["condition", "rounds", *[label for _, label in COLUMNS]]
    rows = []
    for b in s.base:
        name = f"base s{b.seed}" + ("" if b.plays else " (does not play)")
        rows.append([name, 0, b.xent_per_char, None, None, None, None, b.word_exact_one, b.random_exact_one,
                     b.random_exact_zero])
    for f in s.final:
        rows.append([f.condition, f.rounds, *[f.final[m].text() for m, _ in COLUMNS]])
    for r in s.scale:
        rows.append([r.model, None, *[r.values.get(m) for m, _ in COLUMNS[:5]], None, None, None])
    return header, rows
