# Hedgeform: one command per habit, the same for CI and people.
# Every target that needs the project's tools runs `setup` first (fast when done).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hedgeform-setup
TOOLS_STAMP := .tools/.installed
SERVICE ?= llama
TRACES ?= ../shared/traces/spothedge/AWS1 ../shared/traces/spothedge/AWS2 ../shared/traces/spothedge/AWS3 ../shared/traces/spothedge/GCP1
BACKTEST_ARGS ?=

.PHONY: setup test check lint typecheck layering backtest bench clean help plan apply status destroy reconcile install-timer soak service-name

# SERVICE names services/<SERVICE>.yaml and becomes paths and arguments: refuse anything but a
# plain name before any shell sees it (pure make: strip the allowed characters, expect nothing).
NAME_CHARS := a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9 -
SERVICE_REST := $(SERVICE)
$(foreach c,$(NAME_CHARS),$(eval SERVICE_REST := $(subst $(c),,$(SERVICE_REST))))

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

setup: $(STAMP) $(TOOLS_STAMP) ## .venv with the project and test extras, pinned Terraform in .tools (idempotent)

$(TOOLS_STAMP): $(STAMP) reconciler/terraform/binaries.py scripts/ensure-haproxy.sh scripts/install-checkov.sh
	$(BIN)/python -m reconciler.terraform.binaries install --dest .tools
	@scripts/ensure-haproxy.sh
	scripts/install-checkov.sh
	@touch $(TOOLS_STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hedgeform needs Python >= 3.11 (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

test: setup ## run the test suite
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

check: setup lint typecheck layering ## ruff, mypy and the policy layering check

lint: setup
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench

typecheck: setup
	$(BIN)/mypy

layering: setup ## reconciler/policy must stay free of I/O imports
	$(BIN)/lint-imports

backtest: setup ## replay the four SpotHedge traces through every policy
	$(BIN)/hedgeform backtest --traces $(TRACES) $(BACKTEST_ARGS)

bench: setup ## run the benchmarks under bench/
	$(BIN)/python bench/bench_backtest.py
	$(BIN)/python bench/bench_optimal.py
	$(BIN)/python bench/bench_reconcile.py

service-name:
	$(if $(strip $(SERVICE_REST))$(if $(SERVICE),,empty),$(error SERVICE must be a plain name of lowercase letters, digits and '-' (services/<SERVICE>.yaml)))

plan: setup service-name ## decide and plan every stack of SERVICE; writes state/SERVICE/plans/<time>.md
	$(BIN)/hedgeform plan $(SERVICE)

apply: setup service-name ## reconcile SERVICE on the local sandbox cloud and print its endpoint
	$(BIN)/hedgeform apply $(SERVICE)

status: setup service-name ## SERVICE's endpoint, target and replicas
	$(BIN)/hedgeform status $(SERVICE)

destroy: setup service-name ## destroy SERVICE's stacks; no process or HAProxy server is left
	$(BIN)/hedgeform destroy $(SERVICE)

INTERVAL ?= 30
reconcile: setup service-name ## the unattended loop for SERVICE (every INTERVAL s; Ctrl-C stops)
	$(BIN)/hedgeform run $(SERVICE) --interval $(INTERVAL)

install-timer: setup service-name ## install a systemd timer for SERVICE (MODE=service: loop; DRY_RUN=1: only render to state/SERVICE/systemd/)
	$(if $(filter-out timer service,$(MODE)),$(error MODE must be timer or service))
	$(BIN)/hedgeform install-timer $(SERVICE)$(if $(MODE), --mode $(MODE))$(if $(filter 1 yes true,$(DRY_RUN)), --dry-run)$(if $(filter 1 yes true,$(SYSTEMD_USER)), --user)

SOAK_ARGS ?=
soak: setup ## replay the sandbox trace under `hedgeform run` with load (docs/soak.md); exit 1 if a target is missed
	$(BIN)/hedgeform soak --json state/soak.json --plot state/soak.png $(SOAK_ARGS)

clean: ## remove the virtualenv and caches (keeps state/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
