# healthimport: the same verbs as the README. Everything installs what it needs into the repo
# (.venv for Python tools); nothing needs Docker or an AWS account.

SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3

.PHONY: help test demo build deploy bench venv lint fmt local-stack-up local-stack-down clean

help:
	@echo "make test    install what is needed, start the local stack, run every check and test"
	@echo "make demo    the whole pipeline locally (arrives with the demo issue)"
	@echo "make fmt     format the code"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

lint: venv
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml

# Build everything before the stack starts, so the services are not kept waiting on the compiler.
test: lint
	cargo build --workspace --all-targets
	mkdir -p .local; set -o pipefail; scripts/local-stack.sh run -- cargo test --workspace --no-fail-fast 2>&1 | tee .local/test.log
	@awk '/^test result:/ {p+=$$4; f+=$$6} END {printf "%d passed, %d failed\n", p, f}' .local/test.log

fmt:
	cargo fmt --all

local-stack-up: venv
	scripts/local-stack.sh start

local-stack-down:
	scripts/local-stack.sh stop

demo:
	@echo "make demo arrives with the demo issue (starter, poller and token decoder first)."
	@echo "Until then: make test runs the job store and the service double against the local stack."
	@exit 2

clean:
	cargo clean
	rm -rf $(VENV) .local

# Token decoder figures: criterion warm decision, then cold start / memory / binary size.
.PHONY: bench-token-decoder
bench-token-decoder:
	cargo bench -p token-decoder --bench decision
	scripts/bench-token-decoder.sh
