# Two entry points for a fresh clone: `make demo` and `make test` (the full stack: Lava on Python 3.10).
# Lava needs Python 3.10: we look for python3.10 on PATH, then in pyenv's versions.
# `make test-core` runs the core (no Lava extra) on the newest Python found, with a current torch.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON310 ?= $(shell for c in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do \
	$$c -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo $$c; break; }; done)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

# The core stack: the newest of Python 3.13 / 3.12 / 3.11 on PATH or in pyenv's versions.
VENV_CORE ?= .venv-core
PY_CORE := $(VENV_CORE)/bin/python
PYTHON_CORE ?= $(shell for v in 3.13 3.12 3.11; do for c in python$$v $$HOME/.pyenv/versions/$$v*/bin/python$$v /usr/local/bin/python$$v /usr/bin/python$$v; do \
	$$c -c 'import sys; assert sys.version_info[:2] == tuple(map(int, "'$$v'".split(".")))' >/dev/null 2>&1 && { echo $$c; exit 0; }; done; done)
STAMP_CORE := $(VENV_CORE)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: install demo test bench install-core test-core clean-venv install-browser

$(PY):
	@if [ -z "$(PYTHON310)" ]; then echo "error: python3.10 not found (Lava requires Python 3.10); install it or pass PYTHON310=/path/to/python3.10" >&2; exit 2; fi
	$(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip<25" setuptools wheel

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install -q -e ".[test,lava]"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/privsnn demo

# Debian's Chromium for the report's browser test (tests/test_report.py drives it with Playwright).
# Best effort: where it cannot be installed (no apt, not root) that one test skips and says why.
install-browser:
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || \
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
		echo "note: could not install chromium; the browser test will skip"; \
	else echo "note: chromium not found and apt-get unavailable (or not root); the browser test will skip"; fi

test: install install-browser
	$(VENV)/bin/python -m pytest -q tests

bench: install
	$(PY) bench/accuracy.py

$(PY_CORE):
	@if [ -z "$(PYTHON_CORE)" ]; then echo "error: no Python 3.11-3.13 found for the core stack; pass PYTHON_CORE=/path/to/python3.x" >&2; exit 2; fi
	$(PYTHON_CORE) -m venv $(VENV_CORE)
	$(PY_CORE) -m pip install -q --upgrade "pip<25" setuptools wheel

$(STAMP_CORE): $(PY_CORE) pyproject.toml
	$(PY_CORE) -m pip install -q -e ".[test]"
	rm -f $(VENV_CORE)/.installed-*; touch $(STAMP_CORE)

install-core: $(STAMP_CORE)

# The core without Lava on a current stack: tests marked `lava` are skipped with the reason.
test-core: install-core install-browser
	$(PY_CORE) -c 'import sys, torch; print(f"core stack: Python {sys.version.split()[0]}, torch {torch.__version__}")'
	$(PY_CORE) -m pytest -q tests

clean-venv:
	rm -rf $(VENV) $(VENV_CORE)
