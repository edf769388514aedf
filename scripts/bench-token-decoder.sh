#!/usr/bin/env bash
# Token decoder figures: cold start to first decision of the release binary through a local Lambda
# Runtime API (`cargo lambda watch --only-lambda-apis`), warm invoke round trips, peak memory, and
# the release binary size (x86-64, and arm64 when the aarch64 target is installed).
# The criterion benchmark of the warm decision itself: `cargo bench -p token-decoder`.
#
#   scripts/bench-token-decoder.sh            # RS256 token
#   ALG=ES256 RUNS=5 scripts/bench-token-decoder.sh
#
# Needs: cargo, python3, curl; installs cargo-lambda into .venv (pip) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ALG=${ALG:-RS256}
RUNS=${RUNS:-5}            # cold starts measured (each one a fresh process)
WARM=${WARM:-200}          # warm invocations after the last cold start
LAMBDA_PORT=${LAMBDA_PORT:-9000}
JWKS_PORT=${JWKS_PORT:-9100}
# `cargo lambda watch --only-lambda-apis` serves one function, named `_`.
FUNCTION=_
ISSUER=https://idp.example.test
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

if [[ ! -x .venv/bin/cargo-lambda ]]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet cargo-lambda
fi
CARGO_LAMBDA=.venv/bin/cargo-lambda
# cargo lambda cross-compiles with zig, which pip installed next to it.
export PATH="$PWD/.venv/bin:$PATH"

echo "== build"
cargo build --release -p token-decoder --bin token-decoder
BIN=target/release/token-decoder
cargo run --quiet -p token-decoder --example mint-test-token -- "$WORK" "$ISSUER" "$ALG"

echo "== JWKS on loopback, Lambda Runtime API emulator"
python3 -m http.server "$JWKS_PORT" --bind 127.0.0.1 --directory "$WORK" >"$WORK/jwks.log" 2>&1 &
PIDS+=($!)
$CARGO_LAMBDA lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$LAMBDA_PORT" \
  >"$WORK/watch.log" 2>&1 &
PIDS+=($!)
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 100); do
  listening "$JWKS_PORT" && listening "$LAMBDA_PORT" && break
  sleep 0.1   # waiting for two servers to listen; nothing is measured here
done

INVOKE_URL="http://127.0.0.1:$LAMBDA_PORT/2015-03-31/functions/$FUNCTION/invocations"
RUNTIME_API="http://127.0.0.1:$LAMBDA_PORT/.rt"

start_function() {
  env -i PATH="$PATH" \
    AWS_LAMBDA_RUNTIME_API="$RUNTIME_API" AWS_LAMBDA_FUNCTION_NAME="$FUNCTION" \
    AWS_LAMBDA_FUNCTION_VERSION='$LATEST' AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512 \
    AWS_LAMBDA_LOG_LEVEL=warn \
    TOKEN_ISSUER="$ISSUER" JWKS_URL="http://127.0.0.1:$JWKS_PORT/jwks.json" \
    HEALTHLAKE_ROLE_ARN=arn:aws:iam::123456789012:role/healthlake-smart \
    "$BIN" >>"$WORK/function.log" 2>&1 &
  FPID=$!
}

# Quietly: bash would otherwise report the terminated job.
stop_function() { { kill "$FPID" && wait "$FPID"; } 2>/dev/null || true; }

echo "== cold start to first decision ($RUNS runs, $ALG)"
COLD=()
for run in $(seq "$RUNS"); do
  t0=$(date +%s%N)
  start_function
  response=$(curl -fs -X POST --data-binary "@$WORK/event.json" "$INVOKE_URL")
  COLD+=("$(ms_since "$t0")")
  grep -q '"isAuthorized":true' <<<"$response" || { echo "not authorized: $response"; cat "$WORK/function.log"; exit 1; }
  if (( run < RUNS )); then stop_function; fi
done
echo "cold start to first decision (ms): ${COLD[*]}"
printf '%s\n' "${COLD[@]}" | sort -n | awk '{a[NR]=$1} END {print "  median: " a[int((NR+1)/2)] " ms"}'

echo "== warm invokes through the emulator ($WARM, one keep-alive client)"
python3 - "$INVOKE_URL" "$WORK/event.json" "$WARM" <<'PY'
import http.client, statistics, sys, time, urllib.parse
url, event, n = urllib.parse.urlsplit(sys.argv[1]), open(sys.argv[2], "rb").read(), int(sys.argv[3])
conn, times = http.client.HTTPConnection(url.hostname, url.port), []
for _ in range(n):
    t = time.perf_counter()
    conn.request("POST", url.path, body=event)
    body = conn.getresponse().read()
    times.append((time.perf_counter() - t) * 1e6)
    assert b'"isAuthorized":true' in body, body
print(f"  round trip (client + emulator + runtime API + decision): median {statistics.median(times):.0f} µs")
PY

echo "== peak memory"
grep -E 'VmHWM|VmRSS' "/proc/$FPID/status" | sed 's/^/  /'
stop_function

echo "== release binary size"
echo "  x86_64 ($(uname -m) host): $(stat -c %s "$BIN") bytes ($(du -h "$BIN" | cut -f1))"
if rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
  $CARGO_LAMBDA lambda build --release --arm64 --bin token-decoder >"$WORK/arm64.log" 2>&1 \
    && ARM=target/lambda/token-decoder/bootstrap \
    && echo "  arm64 (cargo lambda build --arm64): $(stat -c %s "$ARM") bytes ($(du -h "$ARM" | cut -f1))" \
    || { echo "  arm64 build failed:"; tail -5 "$WORK/arm64.log"; }
else
  echo "  arm64: the aarch64-unknown-linux-gnu target is not installed (rustup target add ...)"
fi
