# Two entry points for a fresh machine with only Python: `make demo` and `make test`.
# Each creates and fills .venv on first use (torch/torchvision first, pinned to the pair that
# installs here from local wheels; pyproject keeps open ranges for users' own CUDA builds).
# Both installs are held to $(PINS), the versions the suite last passed with; `make pins` refreshes it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mtvr-installed
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1
DEMO ?= demo
PINS := constraints/test.txt
# What `make pins` runs in its fresh venv before it writes anything (the whole suite unless told otherwise).
PINS_TEST ?= -m pytest -q

.PHONY: venv test demo eval-demo lint clean pins

venv: $(STAMP)

$(STAMP): pyproject.toml $(PINS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH_PAIR) -c $(PINS)
	$(BIN)/pip install -e '.[test]' -c $(PINS)
	touch $(STAMP)

# Refresh $(PINS): the newest releases within pyproject's ranges (no constraints), in a fresh venv that is
# deleted afterwards, and only if the suite passes there; the file's leading `#` lines are kept. pip itself
# is left out: the venv's own pip does the installing. `git diff $(PINS)` shows what moved.
pins:
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install $(TORCH_PAIR); \
	"$$tmp/venv/bin/pip" install -e '.[test]'; \
	"$$tmp/venv/bin/python" $(PINS_TEST); \
	{ grep '^#' $(PINS) || true; "$$tmp/venv/bin/pip" freeze --all --exclude-editable | grep -v '^pip=='; } > "$$tmp/pins.txt"; \
	mv "$$tmp/pins.txt" $(PINS)

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
