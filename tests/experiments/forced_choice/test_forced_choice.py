"""forced-choice through the experiment: exact classes against an independent forward pass,
sampled classes against an independent recount and score-test inversion, refusals per cell,
and a full run (run dir, summary.json, report) on tiny models with and without a chat template."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from myopia._io import read_parquet
from myopia.models import Capabilities, LanguageModel
from myopia.runs import run

CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")
VARIANTS = ('[{name="word", text="The cat sat", classes=['
            '{name="one", continuations=[" on", " the"], pattern="on\\\\b", guess="1"},'
            '{name="zero", continuations=[" a", "."], pattern="a\\\\b", guess="0"}]},'
            '{name="rand", text="The dog", classes=['
            '{name="one", continuations=[" sat"], pattern="sat", guess="1"},'
            '{name="random", pattern="[a-z]{3,}", guess="0"}]}]')


def _overrides(models: list[str], samples: int = 40) -> list[str]:
    return [f"models={json.dumps(models)}", f"variants={VARIANTS}", 'compare=[["word", "rand"]]',
            f"samples={samples}", "max_tokens=3", 'frame="Q: {prompt}\\nA:"']


@pytest.fixture(scope="module")
def chat_lm_dir(tmp_path_factory):
    from lmfactory import build_tiny_lm

    return build_tiny_lm(tmp_path_factory.mktemp("chat-lm"), seed=1, chat_template=CHAT)


@pytest.fixture(scope="module")
def fc_result(tiny_lm_dir, chat_lm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("fc") / "run"
    return run("forced-choice", _overrides([f"hf:{tiny_lm_dir}", f"hf:{chat_lm_dir}"]), out=out)


@pytest.fixture(scope="module")
def fc_run(fc_result):
    return fc_result.run_dir


def _reference_logprob(model_dir: str, rendered: str, continuation: str, special: bool) -> float:
    """Joint log-prob by one plain forward pass over the jointly tokenized text."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ctx = tok(rendered, add_special_tokens=special)["input_ids"]
    whole = tok(rendered + continuation, add_special_tokens=special)["input_ids"]
    assert whole[: len(ctx)] == ctx
    with torch.no_grad():
        logp = torch.log_softmax(lm(torch.tensor([whole])).logits[0].double(), dim=-1)  # (T, V)
    return math.fsum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole)))


def test_exact_classes_equal_independent_sum_of_joint_probabilities(fc_run, tiny_lm_dir, chat_lm_dir):
    classes = read_parquet(fc_run / "results" / "classes.parquet")
    prompts = {(r["model"], r["variant"]): r for r in read_parquet(fc_run / "results" / "prompts.parquet")}
    lists = {("word", "one"): [" on", " the"], ("word", "zero"): [" a", "."], ("rand", "one"): [" sat"]}
    checked = 0
    for d in (tiny_lm_dir, chat_lm_dir):
        model = f"hf:{d}"
        for variant in ("word", "rand"):
            p = prompts[(model, variant)]
            assert p["exact_status"] == "ok"
            got = {r["class"]: r["probability"] for r in classes
                   if r["model"] == model and r["variant"] == variant and r["method"] == "exact"}
            total = 0.0
            for (v, name), conts in lists.items():
                if v != variant:
                    continue
                ref = math.fsum(math.exp(_reference_logprob(d, p["rendered"], c, special=not p["chat"]))
                                for c in conts)
                assert got[name] == pytest.approx(ref, rel=1e-4, abs=1e-9)
                total += ref
                checked += 1
            assert got["other"] == pytest.approx(1 - total, abs=1e-6)
    assert checked == 6


def test_chat_model_gets_its_template_and_base_model_the_frame(fc_run, tiny_lm_dir, chat_lm_dir):
    prompts = {r["model"]: r for r in read_parquet(fc_run / "results" / "prompts.parquet") if r["variant"] == "word"}
    assert prompts[f"hf:{chat_lm_dir}"]["chat"] is True
    assert prompts[f"hf:{chat_lm_dir}"]["rendered"] == "<|user|>The cat sat\n<|assistant|>"
    assert prompts[f"hf:{tiny_lm_dir}"]["chat"] is False
    assert prompts[f"hf:{tiny_lm_dir}"]["rendered"] == "Q: The cat sat\nA:"


def _score_test_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Independent Wilson reference: the p where |k - n p| = z sqrt(n p (1 - p)), by bisection."""
    def f(p):
        return (k - n * p) ** 2 - z * z * n * p * (1 - p)

    def root(a, b):
        for _ in range(200):
            m = (a + b) / 2
            a, b = (m, b) if (f(a) > 0) == (f(m) > 0) else (a, m)
        return (a + b) / 2

    phat = k / n
    return (0.0 if k == 0 else root(0.0, phat), 1.0 if k == n else root(phat, 1.0))


def test_pattern_classes_recounted_with_wilson_intervals(fc_run, tiny_lm_dir):
    model = f"hf:{tiny_lm_dir}"
    samples = [r for r in read_parquet(fc_run / "results" / "samples.parquet")
               if r["model"] == model and r["variant"] == "rand"]
    assert len(samples) == 40
    classes = {r["class"]: r for r in read_parquet(fc_run / "results" / "classes.parquet")
               if r["model"] == model and r["variant"] == "rand" and r["method"] == "pattern"}
    counts = {"one": 0, "random": 0, "other": 0}
    for s in samples:
        t = s["text"].lstrip()
        label = "one" if re.match("sat", t) else "random" if re.match("[a-z]{3,}", t) else "other"
        counts[label] += 1
        assert s["pattern_class"] == label
    for name, k in counts.items():
        r = classes[name]
        assert (r["count"], r["n"]) == (k, 40) and r["probability"] == pytest.approx(k / 40)
        lo, hi = _score_test_interval(k, 40)
        assert r["low"] == pytest.approx(lo, abs=1e-6) and r["high"] == pytest.approx(hi, abs=1e-6)
    assert sum(counts.values()) == 40
    # the exact classes' event on the samples: the tokens of " sat" after the frame (the
    # tiny tokenizer's text starts agree with token starts here)
    prefix = {r["class"]: r for r in read_parquet(fc_run / "results" / "classes.parquet")
              if r["model"] == model and r["variant"] == "rand" and r["method"] == "sampled"}
    k = sum(s["text"].startswith(" sat") for s in samples)
    assert prefix["one"]["count"] == k and prefix["other"]["count"] == 40 - k and "random" not in prefix
    assert (prefix["one"]["low"], prefix["one"]["high"]) == pytest.approx(_score_test_interval(k, 40), abs=1e-6)


def test_run_directory_summary_and_report(fc_run, tiny_lm_dir):
    summary = json.loads((fc_run / "summary.json").read_text())
    assert len(summary["cells"]) == 4 and len(summary["answers"]) == 2
    a = summary["answers"][0]
    assert a["verdict"] in ("drops", "rises", "no clear change")
    assert 0 <= a["p0_word_low"] <= a["p0_word"] <= a["p0_word_high"] <= 1
    html = (fc_run / "report.html").read_text()
    assert html.index("<h2>Summary</h2>") < html.index("<img")
    assert "Q: The cat sat" in html and "&lt;|assistant|&gt;" in html  # rendered prompts, escaped
    assert len(list((fc_run / "figures").glob("*.png"))) == 2  # one bar figure per model


def test_headline_round_trips_through_summary_json(fc_result, tiny_lm_dir):
    from myopia.experiments.forced_choice import ForcedChoice
    from myopia.experiments.forced_choice._summary import ForcedChoiceSummary
    from myopia.runs import read_summary

    text = (fc_result.run_dir / "summary.json").read_text()
    again = ForcedChoiceSummary.model_validate_json(text)
    assert again == fc_result.summary and again.table() == fc_result.summary.table()
    assert read_summary(fc_result.run_dir, ForcedChoice()).table() == fc_result.summary.table()
    header, rows = again.table()
    assert header[0] == "model" and header[-1] == "drop?" and len(rows) == 2
    # the per-class entries: typed access by method and class, the same numbers as the JSON keys
    cell = next(c for c in again.cells if c.model == f"hf:{tiny_lm_dir}" and c.variant == "word")
    raw = next(c for c in json.loads(text)["cells"] if c["model"] == cell.model and c["variant"] == "word")
    assert cell.probability("exact", "one") == raw["exact_one"]
    assert cell.probability("pattern", "other") == raw["pattern_other"]
    assert cell.probability("exact", "random") is None
    assert math.fsum(cell.probability("exact", n) for n in ("one", "zero", "other")) == pytest.approx(1.0)


def test_headline_refuses_entries_that_are_not_class_probabilities():
    from pydantic import ValidationError

    from myopia.experiments.forced_choice._summary import VariantFigures

    ok = dict(model="m", variant="v", chat=False, exact_status="ok", sample_status="ok")
    assert VariantFigures(**ok, exact_one=0.25).probability("exact", "one") == 0.25
    for bad in ({"exact_one": 1.5}, {"exact_one": "x"}, {"typo": 0.1}):
        with pytest.raises(ValidationError):
            VariantFigures(**ok, **bad)


def test_a_class_named_status_is_refused():
    from myopia import UserError
    from myopia.runs import resolve_spec

    variants = '[{name="v", text="t", classes=[{name="status", continuations=[" a"]}]}]'
    with pytest.raises(UserError, match="'status'"):
        resolve_spec("forced-choice", [f"variants={variants}", "compare=[]"], check=False)


def test_prompt_too_long_is_refused_per_cell_and_run_finishes(tiny_lm_dir, tmp_path):
    out = tmp_path / "run"
    run("forced-choice", [f'models=["hf:{tiny_lm_dir}"]', 'only=["seed-zero"]', "samples=4"], out=out)
    p = read_parquet(out / "results" / "prompts.parquet")[0]
    assert p["exact_status"].startswith("refused:") and "window" in p["exact_status"]
    assert p["sample_status"].startswith("refused:")
    assert "refused" in (out / "report.html").read_text()


class _BlackBox(LanguageModel):
    """A model that can sample but not score (like a chat endpoint without prompt log-probs)."""

    capabilities = Capabilities(score=False, next_token=False, sample=True, white_box=False)

    def __init__(self, lm):
        self._lm, self.name = lm, "blackbox"

    def render(self, ctx):
        return self._lm.render(ctx)

    def sample(self, ctx, n, params):
        return self._lm.sample(ctx, n, params)

    def score(self, ctx, conts):  # pragma: no cover - must not be called
        raise AssertionError("score called on a model without the capability")


def test_model_without_scoring_refuses_exact_but_still_samples(tiny_lm):
    from myopia.experiments._base import Cell, CellContext
    from myopia.experiments.forced_choice import ForcedChoice
    from myopia.runs import resolve_spec

    exp = ForcedChoice()
    spec = resolve_spec("forced-choice", [f"variants={VARIANTS}", 'compare=[]', "samples=8", "max_tokens=2"])[1]
    pool = type("Pool", (), {"get": lambda self, s: _BlackBox(tiny_lm)})()
    tables = exp.run_cell(Cell("bb__word", "bb", {"variant": "word"}), spec, CellContext(pool))
    p = tables["prompts"][0]
    assert p["exact_status"].startswith("refused:") and "score" in p["exact_status"]
    assert p["sample_status"] == "ok" and len(tables["samples"]) == 8
    assert {r["method"] for r in tables["classes"]} == {"sampled", "pattern"}


def test_samples_are_drawn_in_bounded_seeded_batches(tiny_lm):
    from myopia.models import SamplingParams, sample_texts

    params = SamplingParams(max_tokens=3, seed=5)
    texts = sample_texts(tiny_lm, "The cat", 10, params, batch=4)
    expected = []
    for k, n in enumerate((4, 4, 2)):
        expected += [s.text for s in tiny_lm.sample("The cat", n, SamplingParams(max_tokens=3, seed=5 + k))]
    assert texts == expected and len(texts) == 10


# -- the scoring boundary ---------------------------------------------------------------------------
def test_the_boundary_rule_is_recorded_and_named_in_the_report(fc_result):
    import html

    assert fc_result.summary.boundary == "natural"  # the default
    assert json.loads((fc_result.run_dir / "summary.json").read_text())["boundary"] == "natural"
    page = html.unescape((fc_result.run_dir / "report.html").read_text())
    assert 'Continuations were scored with boundary "natural"' in page and "scored tokens" in page


@pytest.fixture(scope="module")
def smol_tiny(smollm):
    """SmolLM2's tokenizer (it merges ':"') on a tiny random Llama."""
    from lmfactory import tiny_llama
    from myopia.models._hf import HFModel

    return HFModel(tiny_llama(len(smollm.tokenizer), seed=5), smollm.tokenizer, name="smol-tiny")


def test_exact_classes_follow_the_boundary_rule(smol_tiny):
    """'Q: ...\\nA:' + '"1"' is jointly 'A', ':"', '1', '"'. natural scores ':"', '1', '"' (':' moved)
    as a plain forward pass over the joint tokens does; lm-eval drops the quote and says so;
    exact gives each continuation's string-level probability, and the classes then add up."""
    from myopia.experiments.forced_choice._answers import exact_answers
    from myopia.experiments.forced_choice._spec import AnswerClass, Variant

    variant = Variant(name="v", text="pick", classes=[AnswerClass(name="one", continuations=['"1"', " 1"]),
                                                      AnswerClass(name="zero", continuations=['"0"', " 0"])])
    prompt, tok = "Q: pick one\nA:", smol_tiny.tokenizer
    _, natural, status = exact_answers(smol_tiny, prompt, variant, {}, "natural")
    by = {r["continuation"]: r for r in natural}
    assert status == "ok" and (by['"1"']["moved"], by['"1"']["tokens"]) == (":", ':"|1|"')
    assert by[" 1"]["moved"] == "" and by[" 1"]["tokens"] == " |1"  # SmolLM2 writes digits alone
    joint = tok(prompt + '"1"')["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(smol_tiny.model(torch.tensor([joint])).logits[0].double(), dim=-1)  # (T, V)
    want = math.fsum(logp[i - 1, joint[i]].item() for i in range(len(joint) - 3, len(joint)))
    assert by['"1"']["logprob"] == pytest.approx(want, abs=1e-4)
    _, lmeval, _ = exact_answers(smol_tiny, prompt, variant, {}, "lm-eval")
    assert {r["continuation"]: r["dropped"] for r in lmeval}['"1"'] == '"'
    rows, exact, status = exact_answers(smol_tiny, prompt, variant, {}, "exact")
    assert status == "ok"
    for r in exact:
        assert r["logprob"] == pytest.approx(smol_tiny.score(prompt, [r["continuation"]], boundary="exact")[0].logprob,
                                             abs=1e-9)
    assert math.fsum(r["probability"] for r in rows) == pytest.approx(1.0) and all(r["probability"] >= 0 for r in rows)


def test_sampled_begins_with_matches_text_under_exact(smol_tiny):
    """A sample '"1",' (tokens '"', '1', '",'): its tokens do not begin with the scored '"', '1', '"'
    (natural counts it as other), but its text begins with '"1"', the event exact measures."""
    from myopia.experiments.forced_choice._answers import begins_with
    from myopia.experiments.forced_choice._spec import AnswerClass, Variant
    from myopia.models import Sample

    variant = Variant(name="v", text="pick", classes=[AnswerClass(name="one", continuations=['"1"'])])
    prompt = "Q: pick one\nA:"
    ids = smol_tiny.continuation_ids(prompt, '"1",')
    assert smol_tiny.tokenizer.convert_ids_to_tokens(ids)[-1] == '",'
    drawn = [Sample(context=prompt, text='"1",', token_ids=ids)]
    assert begins_with(smol_tiny, prompt, drawn, variant, "natural") == ["other"]
    assert begins_with(smol_tiny, prompt, drawn, variant, "exact") == ["one"]
