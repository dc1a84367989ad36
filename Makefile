# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian's packages the browser tests (chromium) and the reverse-proxy tests (nginx) drive; installed by
# make, as root where apt-get exists. Elsewhere those tests skip, saying what to install.
SYSTEM_PACKAGES := chromium nginx
SYSTEM_STAMP := $(VENV)/.system-packages

.PHONY: demo test test-fast bench train-default eval screenshots

# The example sampler plugin (a third-party package, tests/plugins/) is installed too: the tests use it.
EXAMPLE_PLUGIN := tests/plugins/glide_example_plugin

$(STAMP): requirements.txt pyproject.toml $(EXAMPLE_PLUGIN)/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip install -q -e ".[int8]"   # the optional int8 extra: the tests cover dtype int8
	$(PY) -m pip install -q --no-deps -e $(EXAMPLE_PLUGIN)
	touch $(STAMP)

$(SYSTEM_STAMP): $(STAMP)
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing$$missing (apt-get)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "note: not installed:$$missing; the tests that need them will skip (apt-get install$$missing)"; fi
	touch $@

demo: $(STAMP)
	$(PY) app.py

test: $(STAMP) $(SYSTEM_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

# The development loop: everything but the slow tests (browser, Ray, notebooks, the benchmark run), <= 150 s on 2 cores.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) -m bench

train-default: $(STAMP)
	$(PY) -m glide.train_default

eval: $(STAMP)
	$(PY) -m glide.eval shapes

# The README's screenshots (docs/screenshots/): every tab at desktop and phone width, in headless Chromium.
screenshots: $(STAMP) $(SYSTEM_STAMP)
	$(PY) scripts/screenshots.py
