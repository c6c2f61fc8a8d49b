"""sequence-likelihood through the experiment, on a tiny model: every kind of continuation drawn
at one token length, joint log-probs against one plain forward pass, greedy tokens ranked first,
the headline figures against a recount of the stored tables, and the headline round trip."""

from __future__ import annotations

import json
import math
import statistics

import pytest
import torch

from myopia import UserError
from myopia._io import read_parquet
from myopia.experiments.sequence_likelihood import SequenceLikelihood
from myopia.experiments.sequence_likelihood._spec import SEED_STORY
from myopia.experiments.sequence_likelihood._summary import SequenceLikelihoodSummary
from myopia.runs import read_summary, resolve_spec, run

PROMPTS = ["Once upon a time, there was a", "The cat"]


@pytest.fixture(scope="module")
def sl_run(tiny_lm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sl") / "run"
    overrides = [f'models=["hf:{tiny_lm_dir}"]', f"prompts={json.dumps(PROMPTS)}", "length=6", "samples=8",
                 "beam_width=2"]
    return run("sequence-likelihood", overrides, out=out)


def test_every_kind_of_continuation_at_one_length_and_a_figure_per_prompt(sl_run):
    out = sl_run.run_dir
    conts = read_parquet(out / "results" / "continuations.parquet")
    assert {c["kind"] for c in conts} == {"greedy", "beam", "sample", "user", "degenerate"}
    assert all(c["n_tokens"] == 6 for c in conts)  # one token length for every continuation
    assert len([c for c in conts if c["kind"] == "sample"]) == 8 * len(PROMPTS)
    for c in conts:
        if c["kind"] == "user":
            assert SEED_STORY.startswith(c["text"])  # the seed's story, cut to the length
        if c["kind"] == "degenerate":
            assert c["text"].replace(" a", "") == ""  # " a" repeated
    cell = sl_run.summary.cells[0]
    assert cell.beam_best >= cell.greedy - 1e-6  # beam search never ends below greedy here
    assert len(list((out / "figures").glob("*.png"))) == 2  # one per prompt


def test_joint_logprobs_equal_one_plain_forward_pass_and_greedy_tokens_rank_first(sl_run, tiny_lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    lm = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    out = sl_run.run_dir
    tokens = read_parquet(out / "results" / "tokens.parquet")
    checked = 0
    for c in read_parquet(out / "results" / "continuations.parquet"):
        row = sorted((t for t in tokens if all(t[k] == c[k] for k in ("prompt_index", "kind", "index"))),
                     key=lambda t: t["position"])
        ctx = tok(c["rendered_prompt"])["input_ids"]
        ids = ctx + [t["token_id"] for t in row]
        with torch.no_grad():
            logp = torch.log_softmax(lm(torch.tensor([ids])).logits[0].double(), dim=-1)  # (T, V)
        ref = [logp[len(ctx) + j - 1, ids[len(ctx) + j]].item() for j in range(len(row))]
        assert [t["logprob"] for t in row] == pytest.approx(ref, abs=1e-4)
        assert c["logprob"] == pytest.approx(math.fsum(ref), abs=1e-4)
        if c["kind"] == "greedy":
            assert [t["rank"] for t in row] == [1] * 6  # argmax decoding
        checked += 1
    assert checked == len(PROMPTS) * (1 + 2 + 8 + 1 + 1)


def test_headline_figures_recount_the_stored_continuations(sl_run):
    conts = read_parquet(sl_run.run_dir / "results" / "continuations.parquet")
    assert [c.prompt for c in sl_run.summary.cells] == PROMPTS
    for i, cell in enumerate(sl_run.summary.cells):
        lp = {k: [c["logprob"] for c in conts if c["prompt_index"] == i and c["kind"] == k]
              for k in ("greedy", "beam", "sample", "user", "degenerate")}
        assert cell.greedy == lp["greedy"][0] and cell.beam_best == max(lp["beam"])
        assert cell.sample_median == statistics.median(lp["sample"]) and cell.sample_max == max(lp["sample"])
        assert (cell.degenerate, cell.user) == (lp["degenerate"][0], lp["user"][0])
        beaten = sum(s < lp["degenerate"][0] for s in lp["sample"])
        assert cell.degenerate_beats_samples == beaten / 8
        assert cell.degenerate_beats_user == (lp["degenerate"][0] > lp["user"][0])


def test_headline_round_trips_through_summary_json(sl_run):
    text = (sl_run.run_dir / "summary.json").read_text()
    again = SequenceLikelihoodSummary.model_validate_json(text)
    assert again == sl_run.summary and again.table() == sl_run.summary.table()
    assert read_summary(sl_run.run_dir, SequenceLikelihood()).table() == sl_run.summary.table()
    header, rows = again.table()
    assert header[-1] == "deg. > samples" and len(rows) == len(PROMPTS)
    assert json.loads(text)["cells"][0]["greedy"] == again.cells[0].greedy


@pytest.mark.parametrize("field", ["prompts", "continuations", "degenerate"])
def test_empty_strings_are_one_line_user_errors(field):
    with pytest.raises(UserError, match="empty strings") as e:
        resolve_spec("sequence-likelihood", [f'{field}=[""]'])
    assert "\n" not in str(e.value)


def test_listed_continuations_follow_the_boundary_rule(tiny_lm_dir, tmp_path):
    """A prompt that ends in a space: 'a ' + 'little girl' is jointly 'a', ' little', ' girl', so
    natural scores ' little' (the space moved) as one plain forward pass over the joint tokens
    does; the rule is recorded and named in the report; exact is refused in one line."""
    import html

    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompt, text = "Once upon a time, there was a ", "little girl who lived in a village"
    overrides = [f'models=["hf:{tiny_lm_dir}"]', f"prompts={json.dumps([prompt])}", "length=4", "samples=2",
                 "beam_width=1", f"continuations={json.dumps([text])}"]
    result = run("sequence-likelihood", overrides, out=tmp_path / "run")
    assert result.summary.boundary == "natural"
    conts = read_parquet(result.run_dir / "results" / "continuations.parquet")
    user = next(c for c in conts if c["kind"] == "user")
    assert user["moved"] == " " and user["text"] == "little girl who lived"[: len(user["text"])]
    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    joint = tok(prompt + text)["input_ids"]
    n_ctx = len(tok(prompt.rstrip(" "))["input_ids"])
    assert joint[:n_ctx] == tok(prompt.rstrip(" "))["input_ids"]
    ids = joint[: n_ctx + 4]
    lm = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    with torch.no_grad():
        logp = torch.log_softmax(lm(torch.tensor([ids])).logits[0].double(), dim=-1)  # (T, V)
    want = math.fsum(logp[i - 1, ids[i]].item() for i in range(n_ctx, len(ids)))
    assert user["logprob"] == pytest.approx(want, abs=1e-4) and user["n_tokens"] == 4
    assert all(c["moved"] == "" for c in conts if c["kind"] in ("greedy", "beam", "sample"))
    page = html.unescape((result.run_dir / "report.html").read_text())
    assert 'Continuations were scored with boundary "natural"' in page and "moved ' '" in page
    with pytest.raises(UserError, match="'natural' or 'lm-eval'") as e:
        resolve_spec("sequence-likelihood", ['boundary="exact"'])
    assert "\n" not in str(e.value)
