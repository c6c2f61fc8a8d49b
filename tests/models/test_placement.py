"""Device and precision (``Placement``), batch bounds from free memory, and halving after an
out-of-memory error: what can be checked without a GPU, against the unconstrained results."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from myopia import UserError
from myopia._cli import main
from myopia.models import Placement, SamplingParams, load_model
from myopia.models._placement import CPU_BUDGETS, memory_budgets

CTX = "Once upon a time, there was a"
CONTS = [" little girl who was born", " a a a a a a a a", " dragon", " king.", " cat sat on the mat and"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")


@pytest.mark.parametrize(
    "device, dtype, words",
    [("gpu", None, "unknown device 'gpu'"), ("cuda:x", None, "unknown device"), ("cpu", "float8", "unknown dtype")],
)
def test_a_bad_device_or_dtype_is_one_line(device, dtype, words):
    with pytest.raises(UserError, match=words) as e:
        Placement(device, dtype)
    assert "accepted" in str(e.value)


@NO_GPU
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_a_gpu_asked_for_where_none_is_visible_is_refused(device):
    with pytest.raises(UserError, match="no GPU is visible"):
        Placement(device).check()
    assert Placement("auto").resolved_device() == "cpu"
    assert Placement("auto").for_gradients().describe() == {"device": "cpu", "dtype": "float32"}


def test_budgets_from_free_memory_grow_with_it_and_never_fall_below_the_cpu_ones():
    small = memory_budgets(1 << 20, n_layers=30, hidden=576, elem_bytes=4)
    assert small == CPU_BUDGETS
    big = memory_budgets(80 << 30, n_layers=30, hidden=576, elem_bytes=2)  # 80 GiB free, bf16
    assert big.tokens == (80 << 30) // 4 // (2 * 576 * (2 * 30 + 16))
    assert big.logits == (80 << 30) // 16
    assert CPU_BUDGETS.batch_size < big.batch_size <= 1024
    half = memory_budgets(40 << 30, n_layers=30, hidden=576, elem_bytes=2)
    assert half.tokens == pytest.approx(big.tokens / 2, rel=1e-6)


def test_cpu_results_are_unchanged_by_auto_and_float32(tiny_lm_dir):
    """No option, ``--device auto`` on a CPU and an explicit float32 give the same bits."""
    plain = load_model(f"hf:{tiny_lm_dir}").score(CTX, CONTS)
    for kw in ({"device": "auto"}, {"device": "cpu", "dtype": "float32"}):
        placed = load_model(f"hf:{tiny_lm_dir}", **kw).score(CTX, CONTS)
        assert [t.logprob for s in placed for t in s.tokens] == [t.logprob for s in plain for t in s.tokens]


def test_bfloat16_loads_bfloat16_weights_and_scores_near_float32(tiny_lm_dir):
    lm = load_model(f"hf:{tiny_lm_dir}", dtype="bfloat16")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    ref = load_model(f"hf:{tiny_lm_dir}").score(CTX, CONTS)
    got = lm.score(CTX, CONTS)
    assert [s.continuation for s in got] == CONTS
    # bfloat16 keeps 8 bits of mantissa: a few hundredths of a nat per token on this model
    assert [s.mean_logprob for s in got] == pytest.approx([s.mean_logprob for s in ref], abs=0.1)


class _Cramped(torch.nn.Module):
    """The model, but a batch of more than ``rows`` rows runs out of memory (as on a full GPU)."""

    def __init__(self, model, rows: int):
        super().__init__()
        self.inner, self.rows, self.refused = model, rows, 0
        self.config, self.generation_config = model.config, model.generation_config

    def forward(self, input_ids, **kw):
        if input_ids.shape[0] > self.rows:
            self.refused += 1
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(input_ids=input_ids, **kw)


def test_scoring_halves_its_batch_after_out_of_memory_and_gets_the_same_scores(tiny_lm_dir):
    ref = load_model(f"hf:{tiny_lm_dir}")
    lm = load_model(f"hf:{tiny_lm_dir}")
    lm.model = _Cramped(lm.model, rows=2)
    requests = [(CTX, c) for c in CONTS] + [("The cat", " sat"), ("In the beginning", " was")]
    got, want = lm.score_many(requests), ref.score_many(requests)
    assert lm.model.refused > 0 and lm.batch_size <= 2
    assert [t.logprob for s in got for t in s.tokens] == pytest.approx(
        [t.logprob for s in want for t in s.tokens], abs=1e-5
    )
    lp, lp_ref = lm.next_token_logprobs([CTX, "The cat", "In"]), ref.next_token_logprobs([CTX, "The cat", "In"])
    assert torch.allclose(lp, lp_ref, atol=1e-5)


def test_sampling_after_out_of_memory_draws_in_smaller_batches_reproducibly(tiny_lm_dir):
    lm = load_model(f"hf:{tiny_lm_dir}")
    greedy = lm.sample(CTX, 8, SamplingParams(temperature=0, max_tokens=6, seed=1))
    lm.model = _Cramped(lm.model, rows=3)
    params = SamplingParams(temperature=1.0, max_tokens=6, seed=1)
    first, again = lm.sample(CTX, 8, params), lm.sample(CTX, 8, params)
    assert lm.sample_rows == 2  # 8 rows refused, then 4, then batches of 2
    assert len(first) == 8 and [s.token_ids for s in first] == [s.token_ids for s in again]
    cramped_greedy = lm.sample(CTX, 8, SamplingParams(temperature=0, max_tokens=6, seed=1))
    assert [s.token_ids for s in cramped_greedy] == [s.token_ids for s in greedy]


def test_out_of_memory_at_one_row_is_not_swallowed(tiny_lm_dir):
    lm = load_model(f"hf:{tiny_lm_dir}")
    lm.model = _Cramped(lm.model, rows=0)
    with pytest.raises(torch.OutOfMemoryError):
        lm.score(CTX, CONTS)


@NO_GPU
@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "sequence-likelihood", "--device", "cuda"], "no GPU is visible"),
        (["run", "sequence-likelihood", "--dtype", "float8"], "unknown dtype 'float8'"),
        (["score", "gemma-3-270m", "Hi", " there", "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_cli_placement_mistakes_are_one_line_exit_2(args, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing half-written
