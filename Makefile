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

.PHONY: venv test test-demo demo eval-demo learn-demo lint clean pins interop

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

# The full demo as a test (minutes: its warm-up SFT trains the grader): pass rates spread, keep: medium, quiet stderr.
test-demo: $(STAMP)
	MTVR_SLOW_TESTS=1 $(BIN)/python -m pytest -q tests/test_demo_grader.py

# The evaluation harness on the demo benchmark (needs `make demo` first: demo/corpus and demo/tiny).
eval-demo: $(STAMP)
	$(BIN)/mtvr eval configs/eval_demo.yaml

# The learning demo: VITAL's four stages from the random tiny checkpoint on the demo's practice shards, with
# `mtvr eval` on the held-out practice questions before the first stage and after each (configs/recipe_demo.yaml).
# Its inputs (random checkpoint, practice CoT and RL, held-out set) are built into $(DEMO) first, in seconds, and
# reused; the recipe's and the eval config's `../demo/` paths are pointed at $(DEMO). One run per seed in
# $(LEARN)/seed<N>, each with its learning.md (printed) and dgrpo_reward.png, its log in $(LEARN)/seed<N>.log; then
# the seeds' task-reward gains. A finished stage is reused (delete the seed's folder to rerun it).
# Three seeds: make learn-demo SEEDS="0 1 2".
SEEDS ?= 0
LEARN ?= $(DEMO)/train/learn
LEARN_DEMO = $(abspath $(DEMO))
learn-demo: $(STAMP)
	$(BIN)/python -m pipelines.learn_demo --out $(DEMO)
	mkdir -p $(LEARN)
	sed 's#\.\./demo/#$(LEARN_DEMO)/#g' configs/eval_learn_demo.yaml > $(LEARN)/eval_learn_demo.yaml
	set -e; for seed in $(SEEDS); do \
	  $(BIN)/mtvr train recipe configs/recipe_demo.yaml --set common.args.seed=$$seed \
	    --set model=$(LEARN_DEMO)/tiny-random --set data=$(LEARN_DEMO)/practice \
	    --set video_root=$(LEARN_DEMO)/corpus/videos --set eval.config=$(abspath $(LEARN))/eval_learn_demo.yaml \
	    --set output_dir=$(abspath $(LEARN))/seed$$seed > $(LEARN)/seed$$seed.log 2>&1 \
	    || { tail -n 30 $(LEARN)/seed$$seed.log; exit 1; }; \
	  cat $(LEARN)/seed$$seed/learning.md; \
	done
	$(BIN)/python -m train.recipe_eval $(foreach seed,$(SEEDS),$(LEARN)/seed$(seed))

# The exports read back by the trainers' own loaders (not part of `make test`; CI does not run it): verl 0.9's
# RLHFDataset is installed without its pinned dependencies into $(INTEROP), a folder beside the project's packages
# (the venv itself is not changed), and only the read-back test runs with it on the path. Needs the network once.
INTEROP := $(VENV)/interop
INTEROP_PKGS := verl==0.9.1 ray==2.60.0 omegaconf==2.4.0 hydra-core==1.3.8 antlr4-python3-runtime==4.9.3 \
	codetiming==1.4.0 tensordict==0.10.0 torchdata==0.11.0 pylatexenc==2.11 pyvers==0.2.3 msgpack==1.2.4
interop: $(STAMP)
	test -d $(INTEROP)/verl || $(BIN)/pip install --no-deps --target $(INTEROP) $(INTEROP_PKGS)
	PYTHONPATH=$(INTEROP) $(BIN)/python -m pytest -q tests/pipelines/test_export.py -k rlhf_dataset -rs

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(DEMO) .pytest_cache
