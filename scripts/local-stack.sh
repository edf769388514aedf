#!/usr/bin/env bash
# The local AWS stack: moto's server (DynamoDB, S3, Step Functions, EventBridge, SQS) and the
# HealthLake/HealthImaging service double, on 127.0.0.1 only. No Docker, no AWS account.
#
#   scripts/local-stack.sh start            start both, write .local/env (source it to use them)
#   scripts/local-stack.sh stop             stop both
#   scripts/local-stack.sh run -- CMD ...   start, run CMD with the stack's variables, stop (always)
#
# Ports: MOTO_PORT (default 5155) and DOUBLE_PORT (default 5156).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.local"
venv="${VENV:-$root/.venv}"
moto_port="${MOTO_PORT:-5155}"
double_port="${DOUBLE_PORT:-5156}"
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
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
unset AWS_PROFILE AWS_SESSION_TOKEN
VARS
}

start() {
  for port in "$moto_port" "$double_port"; do
    if port_in_use "$port"; then
      log "port $port on 127.0.0.1 is already in use (a stack left running? try: $0 stop)"
      return 1
    fi
  done
  if [[ ! -x "$venv/bin/moto_server" ]]; then
    log "moto is not installed in $venv (run: make venv)"
    return 1
  fi
  stack_env >"$state/env"
  # shellcheck disable=SC1091
  source "$state/env"

  log "starting moto on 127.0.0.1:$moto_port"
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  wait_for moto "curl -sf http://127.0.0.1:$moto_port/moto-api/"
  # Step Functions executions run their states for real (Task, Choice, Wait, Retry, Catch).
  curl -sf -X POST "http://127.0.0.1:$moto_port/moto-api/config" \
    -H 'Content-Type: application/json' \
    -d '{"stepfunctions": {"execute_state_machine": true}}' >/dev/null

  log "building and starting the service double on 127.0.0.1:$double_port"
  (cd "$root" && cargo build --quiet -p healthimport-tests --bin service-double)
  "$root/target/debug/service-double" --port "$double_port" >"$state/double.log" 2>&1 &
  echo $! >"$state/double.pid"
  wait_for double "grep -q 'service-double listening' '$state/double.log'"
  log "ready (variables in $state/env)"
}

stop() {
  for name in double moto; do
    local pidfile="$state/$name.pid"
    if [[ -f "$pidfile" ]]; then
      local pid
      pid=$(cat "$pidfile")
      if kill "$pid" 2>/dev/null; then
        # Give it a moment to exit cleanly, then make sure.
        for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
      fi
      rm -f "$pidfile"
    fi
  done
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
