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

# requirements.txt: the project (editable) with its demo, ray and dev extras, whose versions pyproject.toml holds,
# and the example sampler plugin (a third-party package, tests/plugins/) the tests use.
EXAMPLE_PLUGIN := tests/plugins/glide_example_plugin

# pip compiles the bytecode of every file it installs one at a time (torch, ray and gradio ship tens of
# thousands); compileall on every core does the same in less time (the install: 60 s instead of 80 s on 2 cores).
# Leaving it to the first imports costs more: the tests' many fresh processes would compile the same modules at
# once. A few of torch's files are for newer Pythons and do not compile, as under pip: hence `|| true`.
$(STAMP): requirements.txt pyproject.toml $(EXAMPLE_PLUGIN)/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -r requirements.txt
	$(PY) -m compileall -q -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" || true
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

# Two tests at a time (pytest-xdist), one torch thread each: much of the suite waits on servers, browsers and
# subprocesses, so two workers keep both cores busy. tests/conftest.py keeps the tests that share a server together.
TEST_WORKERS ?= 2

test: $(STAMP) $(SYSTEM_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=15

# The development loop: everything but the slow tests (browser, Ray, notebooks, the benchmark run).
test-fast: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow"

bench: $(STAMP)
	$(PY) -m bench

train-default: $(STAMP)
	$(PY) -m glide.train_default

eval: $(STAMP)
	$(PY) -m glide.eval shapes

# The README's screenshots (docs/screenshots/): every tab at desktop and phone width, in headless Chromium.
screenshots: $(STAMP) $(SYSTEM_STAMP)
	$(PY) scripts/screenshots.py
