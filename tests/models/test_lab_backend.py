"""``lab:DIR``: a model trained by `myopia train` loads as a LanguageModel."""

from __future__ import annotations

import pytest

from myopia.lab import TrainConfig, train
from myopia.models import load_model


@pytest.mark.parametrize("objective, attn", [("ntp", "sdpa"), ("bigram", "bigram")])
def test_lab_models_load_with_the_attention_they_were_trained_with(tmp_path, objective, attn):
    out = tmp_path / objective
    train(TrainConfig(task="addition", objective=objective, steps=2, batch_size=4, out=str(out), threads=1))
    lm = load_model(f"lab:{out}")
    assert lm.model.config._attn_implementation == attn
    s = lm.score("1 2 + 3 4 =", [" 4 6"])[0]
    assert len(s.tokens) >= 1 and s.logprob < 0
