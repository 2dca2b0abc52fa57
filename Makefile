# Two commands set everything up on a fresh machine:
#   make quickstart   create .venv, install rnacli, fetch the embedded model, run the main job
#   make test         same install with the dev extra, then the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# The CPU build of torch; a plain `torch` requirement would pull a multi-GB CUDA build.
# On a GPU machine: make quickstart TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.13.0
RUNS ?= runs
# When make started (before any install): the quickstart prints its time from here.
START := $(shell date +%s)

.PHONY: quickstart quickstart-tiny test install install-dev lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Install torch only when the environment has none (keeps a CUDA build that is already there).
$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	@touch $@

# The main job's next documented step is `rnacli demo`: install what it needs (gradio) too.
$(VENV)/.installed: pyproject.toml Makefile $(VENV)/.torch
	$(PIP) install -q -e ".[eval,demo]"
	@touch $@

$(VENV)/.installed-dev: pyproject.toml Makefile $(VENV)/.torch
	$(PIP) install -q -e ".[eval,dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The main job: teach the embedded SmolLM2-135M a fictional world (cached after the first
# time), unlearn part of it with each recipe of the quickstart's list, and report forgetting,
# retention and robustness side by side (--resume reuses finished runs). The list is one file,
# read here and by `rnacli demo`, which serves these runs when given no arguments.
WORLD_RUNS := $(RUNS)/world
QUICKSTART_RUNS := $(shell grep -v '^\#' rnacli/world/quickstart.txt)
DEMO := $(VENV)/bin/rnacli demo$(if $(filter runs,$(RUNS)),, world $(addprefix $(WORLD_RUNS)/,$(QUICKSTART_RUNS)))
# The recipes' world tasks but the name control (world-perturbed-retained): the first
# quickstart stays within its 12 minutes; `rnacli eval world RUN` scores all six.
QUICKSTART_TASKS := world-forget,world-retain,world-perturbed,world-mention,world-retain-listed
quickstart: $(VENV)/.installed
	$(VENV)/bin/rnacli fetch smollm2-135m
	$(VENV)/bin/rnacli world build
	for r in $(QUICKSTART_RUNS); do \
		$(VENV)/bin/rnacli train recipes/world/$$r.toml --out $(WORLD_RUNS)/$$r --resume || exit 1; \
	done
	$(VENV)/bin/rnacli eval world $(addprefix $(WORLD_RUNS)/,$(QUICKSTART_RUNS)) \
		--tasks $(QUICKSTART_TASKS) --limit 100 --out $(WORLD_RUNS)
	$(VENV)/bin/rnacli report $(WORLD_RUNS) --base world --out $(WORLD_RUNS)/report
	@echo
	@d=$$(( $$(date +%s) - $(START) )); \
		echo "make quickstart took $$((d / 60)) min $$((d % 60)) s (install included)."
	@echo "Next: the world's questions, forgotten names inserted live, in your browser:"
	@echo "  $(DEMO)"

# The pipeline on the embedded model with MMLU-made forget corpora (plumbing, no science).
quickstart-tiny: $(VENV)/.installed
	$(VENV)/bin/rnacli fetch
	$(VENV)/bin/rnacli train recipes/tiny/npo_kl.toml --out $(RUNS)/tiny/npo_kl --resume
	$(VENV)/bin/rnacli train recipes/tiny/npo_kl_rna.toml --out $(RUNS)/tiny/npo_kl_rna --resume
	$(VENV)/bin/rnacli eval smollm2-135m $(RUNS)/tiny/npo_kl $(RUNS)/tiny/npo_kl_rna \
		--out $(RUNS)/tiny

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/eval_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
