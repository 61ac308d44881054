# Two entry points for a fresh machine with only Python: `make demo` and `make test`.
# Each creates and fills .venv on first use (torch/torchvision first, pinned to the pair that
# installs here from local wheels; pyproject keeps open ranges for users' own CUDA builds).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mtvr-installed
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1
DEMO ?= demo

.PHONY: venv test demo eval-demo lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH_PAIR)
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/mtvr demo --out $(DEMO)

# The evaluation harness on the demo benchmark (needs `make demo` first: demo/corpus and demo/tiny).
eval-demo: $(STAMP)
	$(BIN)/mtvr eval configs/eval_demo.yaml

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO) .pytest_cache
