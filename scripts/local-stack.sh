#!/usr/bin/env bash
# The local AWS stack: moto's server (DynamoDB, S3, Step Functions, EventBridge, SQS), the
# HealthLake/HealthImaging service double, and the real function binaries behind a Lambda Invoke API
# (`cargo lambda watch --only-lambda-apis`, which moto's Step Functions reaches through
# scripts/moto_stack.py), all on 127.0.0.1 only. No Docker, no AWS account. The functions'
# configuration: scripts/local-functions.env.
#
#   scripts/local-stack.sh start            start them all, write .local/env (source it to use them)
#   scripts/local-stack.sh stop             stop them all
#   scripts/local-stack.sh run -- CMD ...   start, run CMD with the stack's variables, stop (always)
#
# Everything it runs comes from one `cargo build --workspace --all-targets`, the build `make test`
# does: any other cargo invocation (`-p`, `--bin`, `cargo run`) resolves other features (the
# dev-dependencies' test-util) and compiles the AWS SDK crates a second time.
#
# Ports: MOTO_PORT (default 5155), DOUBLE_PORT (default 5156), LAMBDA_PORT (default 5157); state,
# logs and the env file in LOCAL_STACK_DIR (default .local). Several stacks can run side by side.
# FUNCTION_INSTANCES (default 4): instances of each function, i.e. its concurrency.
# FUNCTION_ENV_OVERRIDES: a file of VAR=value lines that replace or add to local-functions.env for
# this stack (the bench runs the pipeline with the service's real pacing this way).
# DOUBLE_DATASTORE_CREATE_MS: how long the double's new data stores stay CREATING (default 200).
# Nothing is pre-seeded: the data stores are created through the API from template.yaml's
# resources (target/debug/provision-datastores) before the functions start.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="${LOCAL_STACK_DIR:-$root/.local}"
venv="${VENV:-$root/.venv}"
moto_port="${MOTO_PORT:-5155}"
double_port="${DOUBLE_PORT:-5156}"
lambda_port="${LAMBDA_PORT:-5157}"
instances="${FUNCTION_INSTANCES:-4}"
# The functions' settings of this stack: local-functions.env, then the overrides, then (appended
# by provision-datastores once the double has created them) the data store ids. Later lines win:
# `env` applies them in order, and so do the tests reading the file.
functions_env="$state/functions.env"
# The functions behind the Lambda Invoke API: the ones the tests, the demo and Step Functions invoke.
functions=(starter poller exporter token-decoder job-events)
mkdir -p "$state"

log() { printf 'local-stack: %s\n' "$*" >&2; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits for a readiness probe, up to a deadline; start-up only, never used to order test steps.
wait_for() {
  local what=$1 probe=$2 deadline=$((SECONDS + ${3:-60}))
  until eval "$probe" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "$what did not become ready; its log:"
      tail -n 30 "$state/$what.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

stack_env() {
  cat <<VARS
export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port
export AWS_ENDPOINT_URL_HEALTHLAKE=http://127.0.0.1:$double_port
export AWS_ENDPOINT_URL_MEDICAL_IMAGING=http://127.0.0.1:$double_port
# No AWS_ENDPOINT_URL_LAMBDA: Lambda's API is moto's (functions, event sources), and moto forwards
# Invoke to cargo lambda watch (LOCAL_LAMBDA_ENDPOINT), so invoking through moto runs the binaries.
export HEALTHIMPORT_LOCAL_FUNCTIONS_ENV=$functions_env
export HEALTHIMPORT_DOUBLE_ADMIN=http://127.0.0.1:$double_port/_double
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
unset AWS_PROFILE AWS_SESSION_TOKEN
VARS
}

start() {
  for port in "$moto_port" "$double_port" "$lambda_port"; do
    if port_in_use "$port"; then
      log "port $port on 127.0.0.1 is already in use (a stack left running? try: $0 stop)"
      return 1
    fi
  done
  if [[ ! -x "$venv/bin/moto_server" || ! -x "$venv/bin/cargo-lambda" ]]; then
    log "moto or cargo-lambda is not installed in $venv (run: make venv)"
    return 1
  fi
  # The double validates every request against botocore's own service models, pinned in the venv.
  local models=("$venv"/lib/python3*/site-packages/botocore/data)
  if [[ -z "${DOUBLE_SERVICE_MODELS:-}" && ! -d "${models[0]}" ]]; then
    log "botocore's service models are not installed in $venv (run: make venv)"
    return 1
  fi
  # `make test`'s own build, so a no-op after it; before anything starts, so nothing waits on it.
  # --keep-going: one test target that does not compile must not keep the stack from starting
  # (the test run itself then reports it).
  log "building (cargo build --workspace --all-targets)"
  (cd "$root" && cargo build --quiet --workspace --all-targets --keep-going) ||
    log "some targets did not build; starting with what did"
  # Merged afresh each start: the ids of an earlier stack's data stores mean nothing to this one.
  cat "$root/scripts/local-functions.env" ${FUNCTION_ENV_OVERRIDES:+"$FUNCTION_ENV_OVERRIDES"} >"$functions_env"
  stack_env >"$state/env"
  # shellcheck disable=SC1091
  source "$state/env"

  log "starting moto on 127.0.0.1:$moto_port"
  # MOTO_PORT: where moto's Step Functions sends its own Lambda Invoke calls.
  MOTO_PORT=$moto_port LOCAL_LAMBDA_ENDPOINT=http://127.0.0.1:$lambda_port \
    "$venv/bin/python" "$root/scripts/moto_stack.py" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  wait_for moto "curl -sf http://127.0.0.1:$moto_port/moto-api/"
  # Step Functions executions run their states for real (Task, Choice, Wait, Retry, Catch).
  curl -sf -X POST "http://127.0.0.1:$moto_port/moto-api/config" \
    -H 'Content-Type: application/json' \
    -d '{"stepfunctions": {"execute_state_machine": true}}' >/dev/null

  log "starting the service double on 127.0.0.1:$double_port"
  DOUBLE_SERVICE_MODELS=${DOUBLE_SERVICE_MODELS:-${models[0]}} \
    DOUBLE_DATASTORE_CREATE_MS=${DOUBLE_DATASTORE_CREATE_MS:-200} \
    "$root/target/debug/service-double" --port "$double_port" >"$state/double.log" 2>&1 &
  echo $! >"$state/double.pid"
  wait_for double "grep -q 'service-double listening' '$state/double.log'"

  # The data stores, through CreateFHIRDatastore / CreateDatastore as the template declares them;
  # it waits until both are ACTIVE and appends their ids to the functions' env file, which the
  # function instances below read.
  log "creating the data stores through the double's API"
  if ! "$root/target/debug/provision-datastores" --env-file "$functions_env" \
    >"$state/provision-datastores.log" 2>&1; then
    log "the data stores could not be created; its log:"
    cat "$state/provision-datastores.log" >&2
    return 1
  fi

  # The Lambda Invoke and Runtime APIs only: cargo lambda watch would otherwise `cargo run` each
  # function at its first invocation (one instance at a time), a build with other features.
  log "starting the Lambda APIs on 127.0.0.1:$lambda_port and $instances instance(s) of each function"
  (cd "$root" && PATH="$venv/bin:$PATH" exec setsid "$venv/bin/cargo-lambda" lambda watch --quiet \
    --only-lambda-apis --ignore-changes --invoke-address 127.0.0.1 --invoke-port "$lambda_port") \
    >"$state/lambda.log" 2>&1 &
  echo $! >"$state/lambda.pid"
  wait_for lambda "port_in_use $lambda_port"
  # Each instance takes one invocation at a time from its function's queue, as a Lambda execution
  # environment does; one that exits (a crash, an init error) is replaced, as Lambda would.
  local settings function i
  mapfile -t settings < <(grep -v '^#' "$functions_env" | grep .)
  for function in "${functions[@]}"; do
    : >"$state/$function.log"
    for ((i = 1; i <= instances; i++)); do
      # shellcheck disable=SC2016 # the loop's own variables, expanded by its shell
      setsid bash -c 'while :; do
          "$@" || true
          echo "local-stack: an instance of $0 exited; starting another" >&2
          sleep 1
        done' "$function" env "${settings[@]}" \
        AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$lambda_port/.rt/$function" \
        AWS_LAMBDA_FUNCTION_NAME="$function" AWS_LAMBDA_FUNCTION_VERSION=1 \
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=4096 \
        "$root/target/debug/$function" >>"$state/$function.log" 2>&1 &
      echo $! >"$state/fn-$function-$i.pid"
    done
  done
  log "ready (variables in $state/env)"
}

stop() {
  local pidfile pid pids=()
  shopt -s nullglob
  # The function instances first (their supervising shells with them: each instance is its own
  # process group), then the Lambda APIs, the double and moto.
  for pidfile in "$state"/fn-*.pid "$state"/{lambda,double,moto}.pid; do
    [[ -f "$pidfile" ]] || continue
    pid=$(cat "$pidfile")
    rm -f "$pidfile"
    if kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null; then
      pids+=("$pid")
    fi
  done
  # Give them a moment to exit cleanly, then make sure.
  for _ in $(seq 1 25); do
    local alive=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    pids=("${alive[@]}")
    ((${#pids[@]})) || break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true; done
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  run)
    shift
    [[ "${1:-}" == "--" ]] && shift
    trap stop EXIT
    start
    # shellcheck disable=SC1091
    source "$state/env"
    "$@"
    ;;
  *)
    echo "usage: $0 start|stop|run -- CMD..." >&2
    exit 2
    ;;
esac
