# Short aliases; `make help` lists them. Everything runs inside .venv (made on first use).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# torch: a CPU-capable build from PyPI. On the Windows desktop, install the CUDA build first (README).
TORCH := torch==2.14.1 torchvision==0.29.1
export PATH := $(abspath $(BIN)):$(PATH)
export YOLO_OFFLINE := 1
# `qblock demo-data --style typeset`: XeLaTeX with Korean (kotex), TikZ, a Nanum font, and pdftoppm
# what `make demo` commits: the pipeline's record of the run (the model itself is in DVC's cache)
DEMO_RESULT := dvc.lock metrics.json plots reports models/run.json data/.gitignore models/.gitignore
TEX_PACKAGES := texlive-xetex texlive-lang-korean texlive-pictures texlive-latex-extra fonts-nanum poppler-utils

.PHONY: help setup demo test test-fast test-tools ui lint docs bench-tables clean-outputs constraints

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/qblock: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt $(TORCH) -e '.[dev]'
	@touch $@

setup: $(BIN)/qblock  ## create .venv with qblock, torch, ultralytics, dvc, mlflow

demo: setup  ## demo data -> dvc repro (cpu preset) -> metrics and how to open MLflow; commits the result
	@test -d data/dataset_root/documents || $(BIN)/qblock demo-data data/dataset_root
	$(BIN)/dvc repro
	@$(BIN)/qblock show
	@git add -- $(DEMO_RESULT) && { git diff --cached --quiet -- $(DEMO_RESULT) || \
	  { git commit -q -m "demo: the cpu preset on the demo pages (make demo)" -- $(DEMO_RESULT) && \
	    echo "make demo: committed (dvc.lock, metrics); after a \`dvc exp run\`, \`git checkout . && dvc checkout\` brings this model back"; } } || \
	  echo "make demo: not committed (git needs user.name and user.email); commit $(DEMO_RESULT) yourself to come back to it"

test: setup test-tools  ## the whole test suite (includes a real dvc repro with the smoke preset), a worker per core
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --dist loadgroup

test-tools:  ## chromium, openssh-server, postgresql, TeX Live + poppler for the UI, SSH, team-server and typeset-page tests (Debian/Ubuntu: apt-get, root)
	@{ command -v chromium || command -v chromium-browser; } >/dev/null && test -x /usr/sbin/sshd && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium openssh-server postgresql >/dev/null; } || \
	  echo "warning: could not install chromium, openssh-server and postgresql; the MLflow UI, SSH and team-server tests will be skipped"
	@{ command -v xelatex && command -v pdftoppm && kpsewhich kotex.sty; } >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES) >/dev/null; } || \
	  echo "warning: could not install TeX Live and poppler; the typeset-page tests will be skipped"

test-fast: setup  ## the tests without the slow end-to-end ones
	$(BIN)/python -m pytest -m "not slow"

ui: setup  ## the MLflow UI on the configured store (http://127.0.0.1:5000)
	$(BIN)/qblock ui

lint: setup  ## ruff, mypy and a strict build of the docs site (CI runs them)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python bench/render.py --check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench-tables: setup  ## the benchmarks page's tables from the benches' result files (bench/results/*.json)
	$(BIN)/python bench/render.py

docs: setup  ## the docs site (docs/ -> site/), then serve it at http://127.0.0.1:8000
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean-outputs:  ## remove pipeline outputs and the MLflow store (not the demo data)
	rm -rf data/yolo data/split models runs plots reports metrics.json mlflow.db mlartifacts .qblock dvc.lock

constraints: setup  ## pin what .venv has now into constraints.txt (after an upgrade that passed the tests and benches)
	{ grep '^#' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | \
	  awk '!/^(torch|torchvision|triton|cuda-[a-z-]+)==/ && !(/^nvidia-/ && !/^nvidia-ml-py==/)'; } > constraints.new
	mv constraints.new constraints.txt
	@touch $(BIN)/qblock
