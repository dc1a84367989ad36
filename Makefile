# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench train-default eval screenshots

# The example sampler plugin (a third-party package, tests/plugins/) is installed too: the tests use it.
EXAMPLE_PLUGIN := tests/plugins/glide_example_plugin

$(STAMP): requirements.txt pyproject.toml $(EXAMPLE_PLUGIN)/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip install -q --no-deps -e $(EXAMPLE_PLUGIN)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) app.py

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) -m bench

train-default: $(STAMP)
	$(PY) -m glide.train_default

eval: $(STAMP)
	$(PY) -m glide.eval shapes

# The README's screenshots (docs/screenshots/): every tab at desktop and phone width, in headless Chromium.
screenshots: $(STAMP)
	$(PY) scripts/screenshots.py
