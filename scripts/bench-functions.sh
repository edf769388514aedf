#!/usr/bin/env bash
# Starter, poller and exporter figures: cold start to first response of the release binary through a local
# Lambda Runtime API (`cargo lambda watch --only-lambda-apis`), peak memory, release binary size
# (x86-64 host, and arm64 when the aarch64 target is installed). Run inside the local stack
# (`make bench` does), so the poller's first DynamoDB call reaches moto on loopback.
#
# The starter's first event is a delete notification (ignored without an AWS call: init + routing);
# the poller's is a poll of an unknown job (init + one GetItem to moto); the exporter's is a
# malformed request (init, which builds the FHIR REST client's TLS roots, + the refusal).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
LAMBDA_PORT=${BENCH_LAMBDA_PORT:-9200}
CARGO_LAMBDA=.venv/bin/cargo-lambda
export PATH="$PWD/.venv/bin:$PATH"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

cargo build --quiet --release --bin starter --bin poller --bin exporter

$CARGO_LAMBDA lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$LAMBDA_PORT" \
  >"$WORK/watch.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$LAMBDA_PORT") 2>/dev/null && break
  sleep 0.1   # waiting for the emulator to listen; nothing is measured here
done
INVOKE_URL="http://127.0.0.1:$LAMBDA_PORT/2015-03-31/functions/_/invocations"

# The functions' local configuration as the local stack gives it to them: local-functions.env with
# the ids of the data stores the stack created through the API.
mapfile -t SETTINGS < <(grep -v '^#' "${HEALTHIMPORT_LOCAL_FUNCTIONS_ENV:?run inside scripts/local-stack.sh}" | grep .)

bench() {
  local name=$1 event=$2
  local bin=target/release/$name cold=() fpid
  for run in $(seq "$RUNS"); do
    local t0
    t0=$(date +%s%N)
    env -i PATH="$PATH" "${SETTINGS[@]}" \
      AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:?run inside scripts/local-stack.sh}" \
      AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
      AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$LAMBDA_PORT/.rt" AWS_LAMBDA_FUNCTION_NAME=_ \
      AWS_LAMBDA_FUNCTION_VERSION='$LATEST' AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 RUST_LOG=warn \
      "$bin" >>"$WORK/$name.log" 2>&1 &
    fpid=$!
    curl -s -X POST --data-binary "@$event" "$INVOKE_URL" >"$WORK/$name.response"
    cold+=("$(ms_since "$t0")")
    if (( run < RUNS )); then { kill "$fpid" && wait "$fpid"; } 2>/dev/null || true; fi
  done
  local median
  median=$(printf '%s\n' "${cold[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  local hwm
  hwm=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$fpid/status")
  { kill "$fpid" && wait "$fpid"; } 2>/dev/null || true
  local arm="(aarch64 target not installed)"
  if rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$' \
    && $CARGO_LAMBDA lambda build --quiet --release --arm64 --bin "$name" >"$WORK/$name-arm64.log" 2>&1; then
    arm="$(du -h "target/lambda/$name/bootstrap" | cut -f1) ($(stat -c %s "target/lambda/$name/bootstrap") bytes)"
  fi
  printf '%-8s cold start to first response: median %s ms (runs: %s); peak memory %s; binary x86-64 %s, arm64 %s\n' \
    "$name" "$median" "${cold[*]}" "$hwm" "$(du -h "$bin" | cut -f1)" "$arm"
  printf '         first response: %s\n' "$(head -c 200 "$WORK/$name.response")"
}

echo "== starter, poller and exporter (release builds)"
bench starter events/starter-delete.json
bench poller events/poller-poll.json
bench exporter events/exporter-invalid-request.json
