# healthimport: the same verbs as the README. Everything installs what it needs into the repo
# (.venv for Python tools); nothing needs Docker or an AWS account.

SHELL := /bin/bash
VENV := .venv
DEPLOY_VENV := .venv-deploy
PYTHON ?= python3

.PHONY: help test demo build deploy bench venv deploy-tools lint supply-chain fmt local-stack-up local-stack-down clean

help:
	@echo "make test    install what is needed, start the local stack, run every check and test"
	@echo "make demo    the whole pipeline on the local stack, then the token decoder"
	@echo "make fmt     format the code"

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

deploy-tools: $(DEPLOY_VENV)/.installed

$(DEPLOY_VENV)/.installed: requirements-deploy.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --upgrade pip
	$(DEPLOY_VENV)/bin/pip install --quiet -r requirements-deploy.txt
	touch $@

# asl-validator (npm, pinned) checks the state machine definition, which cfn-lint does not open.
# DefinitionSubstitutions are filled in first, as SAM would.
ASL_VALIDATOR := .tools/node_modules/.bin/asl-validator
$(ASL_VALIDATOR):
	npm install --silent --no-audit --no-fund --prefix .tools asl-validator@4.0.0

# Crates that must stay out of the build (every target, dev and build dependencies included), as
# cargo-tree-spec=advisories: the AWS SDK's legacy hyper 0.14 / rustls 0.21 client (its crates'
# default `rustls` feature) brought both; Cargo.toml builds the SDK without default features.
# `cargo tree -i` fails when the crate is absent: only that failure passes, any other one fails.
BANNED_CRATES := rustls-webpki@0.101=RUSTSEC-2026-0098,RUSTSEC-2026-0099,RUSTSEC-2026-0104 \
                 h2@0.3=RUSTSEC-2026-0258
supply-chain:
	@status=0; for entry in $(BANNED_CRATES); do \
	  spec=$${entry%%=*}; advisories=$${entry#*=}; \
	  if out=$$(cargo tree --workspace --target=all -e all -i "$$spec" 2>&1); then \
	    printf '%s\n' "$$out" >&2; \
	    echo "supply-chain: FAIL: $$spec ($$advisories) is in the build again, through the paths above" >&2; \
	    status=1; \
	  elif grep -q 'did not match any packages' <<<"$$out"; then \
	    echo "supply-chain: ok: no $$spec ($$advisories)"; \
	  else \
	    printf '%s\n' "$$out" >&2; \
	    echo "supply-chain: FAIL: cargo tree could not check $$spec ($$advisories)" >&2; \
	    status=1; \
	  fi; \
	done; exit $$status

lint: supply-chain venv deploy-tools $(ASL_VALIDATOR)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(VENV)/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(DEPLOY_VENV)/bin/sam validate --lint --region us-east-1 --template template.yaml
	# Every finding checkov would report is skipped in template.yaml with the reason next to it.
	$(DEPLOY_VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download
	mkdir -p .local
	sed -e 's/"$${PollerFunctionArn}"/"arn:aws:lambda:us-east-1:123456789012:function:poller"/' \
	    -e 's/"$${JobEventsFunctionArn}"/"arn:aws:lambda:us-east-1:123456789012:function:job-events"/' \
	    -e 's/$${TrackingTimeoutSeconds}/86400/' statemachine/import-job.asl.json >.local/import-job.asl.json
	$(ASL_VALIDATOR) --json-path .local/import-job.asl.json

# Build everything before the stack starts, so the services are not kept waiting on the compiler.
# scripts/local-stack.sh builds with exactly this command (then a no-op) and runs what it built:
# any other selection (-p, --bin, cargo run) resolves other features and rebuilds the AWS SDK.
test: lint
	cargo build --workspace --all-targets
	mkdir -p .local; set -o pipefail; scripts/local-stack.sh run -- cargo test --workspace --no-fail-fast 2>&1 | tee .local/test.log
	@awk '/^test result:/ {p+=$$4; f+=$$6} END {printf "%d passed, %d failed\n", p, f}' .local/test.log
	# AWS's own clients (boto3, pinned) against the service double: every operation we use parses
	# with its model's required members, and errors map to the right exception classes.
	set -o pipefail; PYTHONDONTWRITEBYTECODE=1 LOCAL_STACK_DIR=.local/conformance scripts/local-stack.sh run -- $(VENV)/bin/python -m pytest -q tests/conformance 2>&1 | tee .local/conformance.log

fmt:
	cargo fmt --all

local-stack-up: venv
	scripts/local-stack.sh start

local-stack-down:
	scripts/local-stack.sh stop

# The whole pipeline on the local stack: uploads → starter → service double → tracking workflow →
# poller → job records and events, then the token decoder. The stack is stopped afterwards.
demo: venv
	cargo build --quiet --workspace --all-targets
	scripts/local-stack.sh run -- target/debug/demo

# --- deploy path ---------------------------------------------------------------------------
# ARCH is the functions' architecture (template parameter Architecture): deploy with the same one.
ARCH ?= arm64
SAM := SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(DEPLOY_VENV)/bin/sam

# sam build runs cargo lambda (BuildMethod rust-cargolambda, a SAM beta feature), which .venv has.
build: venv deploy-tools
	scripts/rust-target.sh $(ARCH)
	$(SAM) build --beta-features --parameter-overrides Architecture=$(ARCH)

# The first deploy asks for the parameters and saves them to samconfig.toml; later ones reuse it.
deploy: build
	@if [[ -f samconfig.toml ]]; then $(SAM) deploy; else $(SAM) deploy --guided; fi

clean:
	cargo clean
	rm -rf $(VENV) $(DEPLOY_VENV) .local .tools

# Figures (benchmarks, not tests): tracking cost per job duration, starter and poller cold start,
# memory and size, batches against one job per upload, the token decoder's decision latency and
# cold start.
bench: venv
	cargo build --quiet --workspace --all-targets
	target/debug/examples/tracking-cost
	# Event-driven completion against polling, side by side (two stacks; prints one table).
	-scripts/bench-completion.sh
	scripts/local-stack.sh run -- scripts/bench-functions.sh
	# Batches against today's one job per upload, side by side (its own stack; prints one table).
	# A missed target is reported, not fatal: the figures are what the bench is for.
	-scripts/bench-batches.sh
	# Requests per upload and the DICOM burst's start rate, printed by the starter's load tests.
	scripts/local-stack.sh run -- cargo test --quiet --workspace --test starter_load -- --nocapture
	$(MAKE) bench-token-decoder

# Token decoder figures: criterion warm decision, then cold start / memory / binary size.
.PHONY: bench-token-decoder
bench-token-decoder:
	cargo bench -p token-decoder --bench decision
	scripts/bench-token-decoder.sh
