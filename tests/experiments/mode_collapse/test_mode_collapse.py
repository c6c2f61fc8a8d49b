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
def mc_run(tiny_lm_dir, tmp_path_factory):
    from lmfactory import build_tiny_lm

    root = tmp_path_factory.mktemp("mc")
    chat_dir = build_tiny_lm(root / "chat-lm", seed=2, chat_template=CHAT)
    (root / "story.txt").write_text(TEXT, encoding="utf-8")
    out = root / "run"
    run("mode-collapse", [f'models=["hf:{tiny_lm_dir}", "hf:{chat_dir}"]', f'texts=["{root / "story.txt"}"]',
                          "window=128", "mc_limit=3", 'number_prompts=["Pick a number"]', "samples=8",
                          "max_tokens=3"], out=out)
    return out, tiny_lm_dir, chat_dir


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
    ece = sum((b == k).sum() / len(conf) * abs(ok[b == k].mean() - conf[b == k].mean()) for k in range(10) if (b == k).any())
    assert s["ece"] == pytest.approx(ece, abs=1e-9)


def test_sliding_windows_predict_every_token_once(tiny_lm):
    from myopia.experiments.mode_collapse._measure import text_ids, token_stats

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
    prompt = "Question: " + q["question"] + "\n" + "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(q["options"])) + "\nAnswer:"
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
    from myopia.experiments.mode_collapse._core import parse_number_answer

    assert all(parse_number_answer(r["text"]).kind == r["kind"] for r in numbers)
    prompts = {r["model"]: r for r in read_parquet(out / "results" / "number_prompts.parquet")}
    assert prompts[f"hf:{chat_dir}"]["rendered"] == "<|user|>Pick a number\n<|assistant|>"
    assert prompts[f"hf:{base_dir}"]["rendered"] == "Pick a number\nMy number is"
    html = (out / "report.html").read_text()
    assert html.index("<h2>Summary</h2>") < html.index("<img")
    assert len(list((out / "figures").glob("*.png"))) == 3  # entropy histogram, reliability, numbers
    assert summary["status"] == []


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
