"""mode-collapse through the experiment: per-token entropy, top-1 and log-probs against one plain
forward pass, ECE against an independent binning, multiple-choice option probabilities against
independent scoring, sliding windows predicting every token once, refusals, and a full run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from myopia._io import read_parquet
from myopia.models import Capabilities, LanguageModel
from myopia.runs import run

TEXT = ("The cat sat on the mat. The dog sat on the log. A bird sang in the tree. "
        "She could see the future, and she could see the past. Once upon a time, there was a "
        "little girl who lived in a village near the forest.")
CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def mc_result(tiny_lm_dir, tmp_path_factory):
    from lmfactory import build_tiny_lm

    root = tmp_path_factory.mktemp("mc")
    chat_dir = build_tiny_lm(root / "chat-lm", seed=2, chat_template=CHAT)
    (root / "story.txt").write_text(TEXT, encoding="utf-8")
    result = run("mode-collapse", [f'models=["hf:{tiny_lm_dir}", "hf:{chat_dir}"]', f'texts=["{root / "story.txt"}"]',
                                   "window=128", "mc_limit=3", 'number_prompts=["Pick a number"]', "samples=8",
                                   "max_tokens=3"], out=root / "run")
    return result, tiny_lm_dir, chat_dir


@pytest.fixture(scope="module")
def mc_run(mc_result):
    result, base_dir, chat_dir = mc_result
    return result.run_dir, base_dir, chat_dir


def _reference(model_dir: str, ids: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return torch.log_softmax(lm(torch.tensor([ids])).logits[0].double(), dim=-1)  # (T, V)


def test_token_statistics_equal_one_plain_forward_pass(mc_run):
    from transformers import AutoTokenizer

    out, base_dir, _ = mc_run
    tok = AutoTokenizer.from_pretrained(base_dir)
    ids = [tok.bos_token_id] + tok(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) <= 128  # one window: the reference sees the same context
    logp = _reference(base_dir, ids)
    rows = sorted((r for r in read_parquet(out / "results" / "tokens.parquet") if r["model"] == f"hf:{base_dir}"),
                  key=lambda r: r["position"])
    assert len(rows) == len(ids) - 1  # every text token predicted once
    for r in rows:
        row = logp[r["position"]]
        target = ids[r["position"] + 1]
        assert r["entropy"] == pytest.approx(-(row.exp() * row).sum().item(), abs=1e-5)
        assert r["top1"] == pytest.approx(row.max().exp().item(), abs=1e-6)
        assert r["correct"] == (row.argmax().item() == target)
        assert r["logprob"] == pytest.approx(row[target].item(), abs=1e-5)
    assert sum(r["chars"] for r in rows) == len(TEXT)
    summary = json.loads((out / "summary.json").read_text())
    s = next(t for t in summary["text"] if t["model"] == f"hf:{base_dir}")
    assert s["entropy_per_char"] == pytest.approx(sum(r["entropy"] for r in rows) / len(TEXT))
    assert s["bits_per_byte"] == pytest.approx(-sum(r["logprob"] for r in rows) / len(TEXT.encode()) / math.log(2))
    # ECE by an independent binning (np.digitize over 10 equal-width bins)
    conf = np.array([r["top1"] for r in rows])
    ok = np.array([r["correct"] for r in rows], dtype=float)
    b = np.clip(np.digitize(conf, np.linspace(0, 1, 11)[1:-1]), 0, 9)
    ece = sum((b == k).sum() / len(conf) * abs(ok[b == k].mean() - conf[b == k].mean())
              for k in range(10) if (b == k).any())
    assert s["ece"] == pytest.approx(ece, abs=1e-9)


def test_sliding_windows_predict_every_token_once(tiny_lm):
    from myopia.experiments.mode_collapse._text_stats import text_ids, token_stats

    ids, chars = text_ids(tiny_lm, TEXT)
    full = token_stats(tiny_lm, ids, window=128)
    slid = token_stats(tiny_lm, ids, window=16)
    assert len(slid["entropy"]) == len(full["entropy"]) == len(ids) - 1 == len(chars)
    # the first stride of targets sees the same (whole) context in both
    np.testing.assert_allclose(slid["entropy"][:8], full["entropy"][:8], atol=1e-5)
    assert not np.allclose(slid["entropy"][40:], full["entropy"][40:], atol=1e-5)  # later: 8-16 tokens of context
    # the last window: BOS, then the 15 tokens before the end (independent forward pass)
    n = len(ids)
    x = [ids[0]] + ids[n - 15:]
    with torch.no_grad():
        logp = torch.log_softmax(tiny_lm.model(torch.tensor([x])).logits[0].double(), dim=-1)  # (16, V)
    for back in (1, 2, 5):
        row = logp[len(x) - 1 - back]  # predicts ids[n - back]
        assert slid["logprob"][-back] == pytest.approx(row[ids[n - back]].item(), abs=1e-5)


def test_multiple_choice_probabilities_are_renormalised_letter_scores(mc_run):
    from transformers import AutoTokenizer

    from myopia.data import mc_questions

    out, base_dir, chat_dir = mc_run
    rows = read_parquet(out / "results" / "mc.parquet")
    assert len(rows) == 6
    q = mc_questions()[0]
    tok = AutoTokenizer.from_pretrained(base_dir)
    options = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(q["options"]))
    prompt = "Question: " + q["question"] + "\n" + options + "\nAnswer:"
    ctx = tok(prompt)["input_ids"]
    lps = []
    for letter in "ABCD":
        whole = tok(prompt + " " + letter)["input_ids"]
        logp = _reference(base_dir, whole)
        lps.append(sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole))))
    p = np.exp(lps) / np.exp(lps).sum()
    r = next(r for r in rows if r["model"] == f"hf:{base_dir}" and r["question"] == 0)
    assert r["rendered"] == prompt
    assert r["confidence"] == pytest.approx(p.max(), rel=1e-4)
    assert r["pick"] == "ABCD"[int(p.argmax())] and r["correct"] == (int(p.argmax()) == q["answer"])
    assert r["mass"] == pytest.approx(np.exp(lps).sum(), rel=1e-4)
    chat = next(r for r in rows if r["model"] == f"hf:{chat_dir}" and r["question"] == 0)
    body = prompt[len("Question: "):-len("\nAnswer:")]
    assert chat["rendered"] == f"<|user|>{body}\nAnswer with the letter of the correct option.\n<|assistant|>"


def test_run_directory_summary_report_and_numbers(mc_run):
    out, base_dir, chat_dir = mc_run
    summary = json.loads((out / "summary.json").read_text())
    assert {r["model"] for r in summary["numbers"]} == {f"hf:{base_dir}", f"hf:{chat_dir}"}
    nb = summary["numbers"][0]
    assert nb["samples"] == 8 and nb["uniform_entropy"] == pytest.approx(math.log(101))
    numbers = read_parquet(out / "results" / "numbers.parquet")
    from myopia.experiments.mode_collapse._numbers import parse_number_answer

    assert all(parse_number_answer(r["text"]).kind == r["kind"] for r in numbers)
    prompts = {r["model"]: r for r in read_parquet(out / "results" / "number_prompts.parquet")}
    assert prompts[f"hf:{chat_dir}"]["rendered"] == "<|user|>Pick a number\n<|assistant|>"
    assert prompts[f"hf:{base_dir}"]["rendered"] == "Pick a number\nMy number is"
    html = (out / "report.html").read_text()
    assert html.index("<h2>Summary</h2>") < html.index("<img")
    assert len(list((out / "figures").glob("*.png"))) == 3  # entropy histogram, reliability, numbers
    assert summary["status"] == []


def test_headline_round_trips_through_summary_json(mc_result):
    from myopia.experiments.mode_collapse import ModeCollapse
    from myopia.experiments.mode_collapse._summary import ModeCollapseSummary
    from myopia.runs import read_summary

    result, base_dir, chat_dir = mc_result
    text = (result.run_dir / "summary.json").read_text()
    again = ModeCollapseSummary.model_validate_json(text)
    assert again == result.summary and again.table() == result.summary.table()
    assert read_summary(result.run_dir, ModeCollapse()).table() == result.summary.table()
    header, rows = again.table()
    assert header[:4] == ["model", "text", "H/char", "ECE"] and len(rows) == 2  # one text, two models
    model = f"hf:{base_dir}"
    raw = next(r for r in json.loads(text)["text"] if r["model"] == model)
    base = next(r for r in again.text if r.model == model)
    assert base.entropy_per_char == raw["entropy_per_char"] and base.ece == raw["ece"]
    row = next(r for r in rows if r[0] == model)
    assert row[2] == base.entropy_per_char and row[4] == next(r.accuracy for r in again.mc if r.model == model)
    assert [n.prompt for n in again.numbers] == [0, 0]  # one prompt: nothing pooled
    assert row[6] == f"{next(n.answers for n in again.numbers if n.model == model)}/8"


def test_table_has_a_row_per_model_and_text_with_the_other_columns_once():
    from myopia.experiments.mode_collapse._summary import (
        ChoiceFigures,
        ModeCollapseSummary,
        NumberFigures,
        TextFigures,
    )

    figures = dict(tokens=10, chars=40, bytes=40, entropy_per_token=2.0, entropy_per_char=0.5, entropy_per_byte=0.5,
                   xent_per_token=2.5, xent_per_char=0.6, bits_per_byte=0.9, top1_accuracy=0.3,
                   mean_confidence=0.4, ece=0.1)
    numbers = dict(samples=4, answers=3, entropy=0.6, uniform_entropy=math.log(101), uniform_entropy_at_n=1.0,
                   top=[(7, 2), (3, 1)], kinds={"answer": 3, "none": 1})
    s = ModeCollapseSummary(
        boundary="natural",
        text=[TextFigures(model="a", text="t1", **figures), TextFigures(model="a", text="t2", **figures)],
        mc=[ChoiceFigures(model="a", questions=2, accuracy=0.5, mean_confidence=0.6, ece=0.2, mean_option_mass=0.9)],
        numbers=[NumberFigures(model="a", prompt=0, **numbers), NumberFigures(model="a", prompt=1, **numbers),
                 NumberFigures(model="a", prompt="all", **{**numbers, "samples": 8, "answers": 6}),
                 NumberFigures(model="b", prompt=0, **numbers)],
        status=[])
    header, rows = s.table()
    assert len(header) == len(rows[0]) == 10
    assert [r[:2] for r in rows] == [["a", "t1"], ["a", "t2"], ["b", None]]
    assert rows[0][4:8] == [0.5, 0.2, "6/8", 0.6] and rows[0][9] == "7×2, 3×1"  # the pooled numbers
    assert rows[1][4:] == [None] * 6
    assert rows[2][2:6] == [None] * 4 and rows[2][6] == "3/4"


class _SampleOnly(LanguageModel):
    capabilities = Capabilities(score=False, next_token=False, sample=True, white_box=False)
    name = "sample-only"


def test_black_box_model_is_refused_per_part(tmp_path):
    from myopia.experiments._base import Cell, CellContext
    from myopia.experiments.mode_collapse import ModeCollapse
    from myopia.runs import resolve_spec

    spec = resolve_spec("mode-collapse", [], check=False)[1]
    pool = type("Pool", (), {"get": lambda self, s: _SampleOnly()})()
    exp = ModeCollapse()
    for part in ("text", "mc"):
        tables = exp.run_cell(Cell(f"bb__{part}", "bb", {"part": part, "text": "prose"}), spec, CellContext(pool))
        status = tables["status"][0]["status"]
        assert status.startswith("refused:") and ("white_box" in status or "score" in status)
        assert set(tables) == {"status"}


def test_boundary_rule_is_recorded_and_passed_to_the_letter_scores(mc_result, tiny_lm):
    """The default rule is recorded and named in the report; the spec's rule is the one the letters are
    scored with: with boundary "exact" their probabilities are their string-level ones."""
    import html

    from myopia.data import mc_questions
    from myopia.experiments.mode_collapse._multiple_choice import mc_prompt, mc_records

    result = mc_result[0]
    assert result.summary.boundary == "natural"
    page = html.unescape((result.run_dir / "report.html").read_text())
    assert 'Continuations were scored with boundary "natural"' in page
    questions = mc_questions()[:2]
    rows = {b: mc_records(tiny_lm, questions, False, {}, b) for b in ("natural", "exact")}
    for i, q in enumerate(questions):
        prompt, space = mc_prompt(q, False)
        letters = [space + "ABCD"[j] for j in range(len(q["options"]))]
        for b, got in rows.items():
            lps = [s.logprob for s in tiny_lm.score(prompt, letters, boundary=b)]
            p = np.exp(lps) / np.exp(lps).sum()
            assert got[i]["confidence"] == pytest.approx(p.max(), rel=1e-6) and got[i]["moved"] == ""
    seen = []  # the rule reaches the scorer (on this tiny vocabulary the two rules' figures nearly coincide)
    real = tiny_lm.score_many
    tiny_lm.score_many = lambda reqs, boundary="natural": seen.append(boundary) or real(reqs, boundary=boundary)
    try:
        mc_records(tiny_lm, questions, False, {}, "lm-eval")
    finally:
        del tiny_lm.score_many
    assert seen == ["lm-eval"]
