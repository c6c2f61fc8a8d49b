"""Which of the experiments' scoring requests the default boundary rule (``natural``) cuts into
other tokens than the code before issue 16 did: forced-choice's exact classes, mode-collapse's
option letters and sequence-likelihood's listed and degenerate continuations, from each
experiment's default spec, on each of its default models. Tokenization only (no forward pass).

    python scripts/boundary_requests.py --baseline BASE/src

BASE is a checkout of the code before the boundary rules; its ``HFModel`` is loaded beside this
tree's on the same weights (as in ``bench/bench_scoring.py --baseline``). A request is the same
when both sides condition on the same token ids and score the same token ids; the script prints
every request that differs and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_scoring import baseline_model  # noqa: E402
from myopia.data import mc_questions  # noqa: E402
from myopia.experiments.forced_choice._spec import ForcedChoiceSpec  # noqa: E402
from myopia.experiments.mode_collapse._multiple_choice import LETTERS, mc_prompt  # noqa: E402
from myopia.experiments.mode_collapse._spec import ModeCollapseSpec  # noqa: E402
from myopia.experiments.sequence_likelihood._continuations import listed, repeated  # noqa: E402
from myopia.experiments.sequence_likelihood._spec import SequenceLikelihoodSpec  # noqa: E402
from myopia.models import Prompt, frame_prompt, load_model, use_chat  # noqa: E402


def _old_repeated(old, prompt, unit: str, n: int) -> list[int]:
    """The pre-issue sequence-likelihood ``repeated``: ``unit`` repeated to ``n`` tokens."""
    k = n
    while True:
        ids = old.continuation_ids(prompt, unit * k)
        if len(ids) >= n or k > 8 * n:
            return ids[:n]
        k += max(1, (n - len(ids)) // max(1, len(old.continuation_ids(prompt, unit))))


def text_pairs(new, fc: ForcedChoiceSpec, mc: ModeCollapseSpec) -> list[tuple[str, object, str]]:
    """(experiment, context, continuation) of forced-choice's exact classes and the MC letters."""
    pairs = []
    for v in fc.variants:
        prompt = frame_prompt(new, v.text, fc.chat, fc.frame)
        pairs += [("forced-choice", prompt, c) for cl in v.classes if (e := cl.exact()) for c in e.continuations]
    for q in mc_questions():
        prompt, space = mc_prompt(q, use_chat(new, mc.chat))
        pairs += [("mode-collapse", prompt, f"{space}{LETTERS[i]}") for i in range(len(q["options"]))]
    return pairs


def compare(name: str, baseline: str) -> tuple[Counter, list[str]]:
    new = load_model(name)
    old = baseline_model(baseline, new)
    fc, mc, sl = ForcedChoiceSpec(), ModeCollapseSpec(), SequenceLikelihoodSpec()
    n, diffs = Counter(), []
    for exp, prompt, cont in text_pairs(new, fc, mc):
        a, b = old._split(prompt, cont, 0), new._split(prompt, cont, 0, "natural")
        n[exp] += 1
        if (a.ctx_ids, a.cont_ids) != (b.ctx_ids, b.cont_ids):
            diffs.append(f"{name} {exp} {str(getattr(prompt, 'text', prompt))[-20:]!r} + {cont!r}: "
                         f"moved {b.cut.moved!r}")
    for text in sl.prompts:
        prompt = Prompt(text, chat=sl.chat and new.has_chat_template)
        ctx = old.encode_context(prompt)[1]
        for kind, cont, want in (
            [("user", c, old.continuation_ids(prompt, c)[: sl.length]) for c in sl.continuations]
            + [("degenerate", u, _old_repeated(old, prompt, u, sl.length)) for u in sl.degenerate]
        ):
            cut = listed(new, prompt, cont, sl.length, "natural") if kind == "user" else \
                repeated(new, prompt, cont, sl.length, "natural")
            n["sequence-likelihood"] += 1
            if (ctx, want) != (cut.ctx_ids, cut.cont_ids):
                diffs.append(f"{name} sequence-likelihood {text!r} {kind} {cont[:20]!r}: moved {cut.moved!r}")
    return n, diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", required=True, help="src folder of the code before the boundary rules")
    ap.add_argument("--models", nargs="+", default=["gemma-3-270m", "smollm2-135m-instruct"])
    args = ap.parse_args()
    bad = False
    for name in args.models:
        n, diffs = compare(name, args.baseline)
        counts = ", ".join(f"{exp} {k}" for exp, k in n.items())
        print(f"{name}: {sum(n.values())} requests ({counts}), {len(diffs)} cut differently from the baseline")
        for d in diffs:
            print("  " + d)
        bad = bad or bool(diffs)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
