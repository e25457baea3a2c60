# Hedgeform: one command per habit, the same for CI and people.
# Every target that needs the project's tools runs `setup` first (fast when done).

override SHELL := /bin/bash
PYTHON ?= python3
override VENV := .venv
override BIN := $(VENV)/bin
override STAMP := $(VENV)/.hedgeform-setup
override TOOLS_STAMP := .tools/.installed
SERVICE ?= llama
TRACES ?= ../shared/traces/spothedge/AWS1 ../shared/traces/spothedge/AWS2 ../shared/traces/spothedge/AWS3 ../shared/traces/spothedge/GCP1
BACKTEST_ARGS ?=
SOAK_ARGS ?=
PYTEST_ARGS ?=
INTERVAL ?= 30
MODE ?=
DRY_RUN ?=
SYSTEMD_USER ?=
PORT ?= 4566

.PHONY: setup test check lint typecheck layering backtest evaluate bench clean help plan apply status destroy reconcile install-timer soak check-vars aws-emulator

# Values given on make's command line never become shell or make text (docs/security.md).
# Make exports command-line variables to every recipe, expanding them on the way (which runs a
# `$(shell ...)` inside one): `unexport` stops that. Each value reaches the recipes only as its
# raw text ($(value ...), never expanded) in an HF_* environment variable; `check-vars` checks
# it with bash's [[ =~ ]] before anything else runs, and the recipes pass it as one quoted word,
# or split a list (*_ARGS, TRACES) into words with globbing off. Neither re-parses the text.
# The Makefile's own variables are `override`: `make BIN='...'` cannot replace them.
override USER_VARS := PYTHON SERVICE TRACES BACKTEST_ARGS SOAK_ARGS PYTEST_ARGS INTERVAL MODE DRY_RUN SYSTEMD_USER PORT
unexport $(USER_VARS)
$(foreach v,$(USER_VARS),$(eval export HF_$(v) = $$(value $(v))))

override define CHECK_VARS
fail() { echo "make: $$1" >&2; exit 2; }
[[ "$$HF_SERVICE" =~ ^[a-z0-9][a-z0-9-]{0,62}$$ ]] || fail "SERVICE must be a plain name of lowercase letters, digits and '-' (services/<SERVICE>.yaml)"
[[ "$$HF_INTERVAL" =~ ^[0-9]{1,5}([.][0-9]{1,3})?$$ ]] || fail "INTERVAL must be a number of seconds, e.g. 30"
[[ "$$HF_MODE" =~ ^(timer|service)?$$ ]] || fail "MODE must be timer or service"
[[ "$$HF_DRY_RUN" =~ ^(0|1|yes|no|true|false)?$$ ]] || fail "DRY_RUN must be 1 (or empty)"
[[ "$$HF_SYSTEMD_USER" =~ ^(0|1|yes|no|true|false)?$$ ]] || fail "SYSTEMD_USER must be 1 (or empty)"
[[ "$$HF_PORT" =~ ^[1-9][0-9]{0,4}$$ ]] && (( HF_PORT < 65536 )) || fail "PORT must be a TCP port, 1-65535"
[[ "$$HF_PYTHON" =~ ^[A-Za-z0-9_./+-]+$$ ]] || fail "PYTHON must be an interpreter name or path, e.g. python3.11"
true
endef
export CHECK_VARS

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

check-vars: ## refuse a bad SERVICE, INTERVAL, MODE, ... before anything runs
	@eval "$$CHECK_VARS"

setup: check-vars $(STAMP) $(TOOLS_STAMP) ## .venv with the project and test extras, pinned Terraform in .tools (idempotent)

$(TOOLS_STAMP): $(STAMP) reconciler/terraform/binaries.py scripts/ensure-haproxy.sh scripts/install-checkov.sh
	$(BIN)/python -m reconciler.terraform.binaries install --dest .tools
	@scripts/ensure-haproxy.sh
	scripts/install-checkov.sh
	@touch $(TOOLS_STAMP)

$(STAMP): pyproject.toml
	@"$$HF_PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hedgeform needs Python >= 3.11 (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@test -x $(BIN)/python || "$$HF_PYTHON" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

test: check-vars setup ## run the test suite
	@set -f; read -r -a words <<< "$$HF_PYTEST_ARGS"; set +f; \
	set -x; $(BIN)/python -m pytest -q "$${words[@]}"

check: setup lint typecheck layering ## ruff, mypy and the policy layering check

lint: setup
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench

typecheck: setup
	$(BIN)/mypy

layering: setup ## reconciler/policy must stay free of I/O imports
	$(BIN)/lint-imports

backtest: check-vars setup ## replay the four SpotHedge traces through every policy
	@set -f; read -r -a traces <<< "$$HF_TRACES"; read -r -a words <<< "$$HF_BACKTEST_ARGS"; set +f; \
	set -x; $(BIN)/hedgeform backtest --traces "$${traces[@]}" "$${words[@]}"

evaluate: check-vars setup ## the evaluation matrix -> docs/evaluation.{md,json,png} (BACKTEST_ARGS=--resume after a kill)
	@set -f; read -r -a traces <<< "$$HF_TRACES"; read -r -a words <<< "$$HF_BACKTEST_ARGS"; set +f; \
	set -x; $(BIN)/hedgeform backtest --matrix --traces "$${traces[@]}" --json docs/evaluation.json \
	--report docs/evaluation.md --plot docs/evaluation.png "$${words[@]}"

bench: setup ## run the benchmarks under bench/
	$(BIN)/python bench/bench_backtest.py
	$(BIN)/python bench/bench_optimal.py
	$(BIN)/python bench/bench_reconcile.py
	$(BIN)/python bench/bench_scale.py

plan: check-vars setup ## decide and plan every stack of SERVICE; writes state/SERVICE/plans/<time>.md
	$(BIN)/hedgeform plan "$$HF_SERVICE"

apply: check-vars setup ## reconcile SERVICE on the local sandbox cloud and print its endpoint
	$(BIN)/hedgeform apply "$$HF_SERVICE"

status: check-vars setup ## SERVICE's endpoint, target, replicas, cost now and last events
	$(BIN)/hedgeform status "$$HF_SERVICE"

destroy: check-vars setup ## destroy SERVICE's stacks; no process or HAProxy server is left
	$(BIN)/hedgeform destroy "$$HF_SERVICE"

reconcile: check-vars setup ## the unattended loop for SERVICE (every INTERVAL s; Ctrl-C stops)
	$(BIN)/hedgeform run "$$HF_SERVICE" --interval "$$HF_INTERVAL"

install-timer: check-vars setup ## install a systemd timer for SERVICE (MODE=service: loop; DRY_RUN=1: only render to state/SERVICE/systemd/)
	@args=(); if [[ -n "$$HF_MODE" ]]; then args+=(--mode "$$HF_MODE"); fi; \
	if [[ "$$HF_DRY_RUN" =~ ^(1|yes|true)$$ ]]; then args+=(--dry-run); fi; \
	if [[ "$$HF_SYSTEMD_USER" =~ ^(1|yes|true)$$ ]]; then args+=(--user); fi; \
	set -x; $(BIN)/hedgeform install-timer "$$HF_SERVICE" "$${args[@]}"

soak: check-vars setup ## replay the sandbox trace under `hedgeform run` with load (docs/soak.md); exit 1 if a target is missed
	@set -f; read -r -a words <<< "$$HF_SOAK_ARGS"; set +f; \
	set -x; $(BIN)/hedgeform soak --json state/soak.json --plot state/soak.png "$${words[@]}"

aws-emulator: check-vars setup ## run the test AWS emulator (moto + fixes) on 127.0.0.1:PORT in the foreground (docs/clouds.md)
	$(BIN)/python -m tests.emulators.aws --port "$$HF_PORT"

clean: ## remove the virtualenv and caches (keeps state/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
