# Two entry points for a fresh clone: `make demo` and `make test`.
# Lava needs Python 3.10: we look for python3.10 on PATH, then in pyenv's versions.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON310 ?= $(shell for c in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do \
	$$c -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo $$c; break; }; done)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: install demo test bench clean-venv

$(PY):
	@if [ -z "$(PYTHON310)" ]; then echo "error: python3.10 not found (Lava requires Python 3.10); install it or pass PYTHON310=/path/to/python3.10" >&2; exit 2; fi
	$(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip<25" setuptools wheel

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/privsnn demo

test: install
	$(VENV)/bin/python -m pytest -q tests

bench: install
	$(PY) bench/accuracy.py

clean-venv:
	rm -rf $(VENV)
