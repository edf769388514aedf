#!/usr/bin/env bash
# The completion bench (issue 14, item 5): what following one import job to its end costs with
# event-driven completion (TRACKING_MODE=events) and with polling (TRACKING_MODE=polling), in one
# table: state transitions per job for 5-minute, 1-hour and 6-hour jobs, completion latency (the
# service's end → the record's terminal status, median of 10 jobs) and a dropped job event. Real
# jobs through the whole pipeline, on two private local stacks side by side (their own ports and
# state, never `make test`'s): events on 5355-5357, polling on 5365-5367.
#
#   scripts/bench-completion.sh                          the whole bench (builds first, like make test)
#   BENCH_LATENCY_JOBS=20 scripts/bench-completion.sh    more "5 min" jobs for the medians
#   BENCH_POLLING_LONG=1 scripts/bench-completion.sh     measure polling's 1 h and 6 h jobs too
#                                                        (6 h at 1/15 is 24 minutes)
#
# Time scale (AWS time × scale; see tests/src/bench_completion.rs):
#   - events stack, BENCH_EVENTS_SPEEDUP (default 180, i.e. × 1/180): "5 min" = 1.67 s, "1 h" =
#     20 s, "6 h" = 120 s; COMPLETION_BACKSTOP_SECONDS = 900 / 180 = 5, the local setting, so a
#     6-hour job sees as many re-checks as on AWS (24).
#   - polling stack, BENCH_POLLING_SPEEDUP (default 15): the template's schedule 15 s × 4 up to
#     300 s becomes 1 s × 4 up to 20 s, whole seconds as a Wait state needs (the speedup must
#     divide 15). "5 min" = 20 s is measured; 1 h and 6 h are computed from the schedule.
#   - a job's length is the double's per-file time (5 AWS minutes × scale; no per-job overhead,
#     no submit delay) × its files: 1, 12 or 72 DICOM files in the case's own folder. The double's
#     timings cannot change at runtime (its admin API changes faults only), hence files.
#   - rates ÷ scale as in bench-batches (StartDICOMImportJob, IMAGING_START_RATE), so that ten jobs
#     closing together are not paced for seconds before they start; counts unchanged.
#   - not scaled: the local stack's own latency, BATCH_QUIET_SECONDS (5), which only delays the
#     start; BATCH_MAX_WAIT_SECONDS is raised to 60 so a loaded machine cannot split the 72 files.
# The bench takes about 4 minutes after the build (the events stack's 6-hour job is 2 of them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir="${BENCH_DIR:-$root/.local/bench-completion}"
events_speedup="${BENCH_EVENTS_SPEEDUP:-180}"
polling_speedup="${BENCH_POLLING_SPEEDUP:-15}"

for value in "$events_speedup" "$polling_speedup"; do
  if ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
    echo "bench-completion: speedups must be whole numbers ≥ 1 (got $value)" >&2
    exit 2
  fi
done
if ((15 % polling_speedup != 0)); then
  echo "bench-completion: BENCH_POLLING_SPEEDUP=$polling_speedup must divide 15 (the template's first poll wait)" >&2
  exit 2
fi

# Whole seconds, rounded up, at least 1.
ceil_div() { awk -v a="$1" -v b="$2" 'BEGIN { v = a / b; c = int(v); if (c < v) c++; if (c < 1) c = 1; print c }'; }

# Writes $dir/<mode>/bench.env (the stack's and the measurement's variables) and the functions'
# overrides; both are sourced/read by what follows, and kept for inspection.
configure() {
  local mode=$1 speedup=$2 base_port=$3
  local state="$dir/$mode"
  mkdir -p "$state"
  cat >"$state/bench.env" <<VARS
# Written by scripts/bench-completion.sh: the $mode stack (× 1/$speedup).
export LOCAL_STACK_DIR=$state
export MOTO_PORT=$base_port DOUBLE_PORT=$((base_port + 1)) LAMBDA_PORT=$((base_port + 2))
export FUNCTION_ENV_OVERRIDES=$state/bench-functions.env
export BENCH_MODE=$mode
export BENCH_TIME_SCALE=$(awk -v s="$speedup" 'BEGIN { printf "%.9f", 1 / s }')
export BENCH_OUT=$dir/$mode.json
export DOUBLE_IMAGING_SUBMIT_DELAY_MS=0
export DOUBLE_IMAGING_RUN_MS=0
export DOUBLE_IMAGING_PER_FILE_MS=$(awk -v s="$speedup" 'BEGIN { printf "%.4f", 300000 / s }')
export DOUBLE_IMAGING_MANIFEST_DELAY_MS=0
export DOUBLE_IMAGING_START_RATE=$speedup
export DOUBLE_IMAGING_START_BURST=2
# No injected faults but the one the bench sets itself (event_drop_share, through the admin API).
export DOUBLE_THROTTLE_SHARE=0 DOUBLE_INTERNAL_ERROR_SHARE=0 DOUBLE_JOB_FAILURE_SHARE=0 DOUBLE_STALL_SHARE=0
export DOUBLE_EVENT_DROP_SHARE=0 DOUBLE_EVENT_DUPLICATE_SHARE=0 DOUBLE_EVENT_DELAY_SHARE=0 DOUBLE_EVENT_REORDER_SHARE=0
VARS
  {
    echo "# Written by scripts/bench-completion.sh (× 1/$speedup); later lines win over local-functions.env."
    echo "TRACKING_MODE=$mode"
    echo "IMAGING_START_RATE=$speedup"
    echo "BATCH_MAX_WAIT_SECONDS=60"
    if [[ $mode == events ]]; then
      echo "COMPLETION_BACKSTOP_SECONDS=$(ceil_div 900 "$speedup")"
    else
      echo "POLL_INITIAL_WAIT_SECONDS=$((15 / polling_speedup))"
      echo "POLL_BACKOFF_RATE=4"
      echo "POLL_MAX_WAIT_SECONDS=$(ceil_div 300 "$speedup")"
    fi
  } >"$state/bench-functions.env"
}

configure events "$events_speedup" 5355
configure polling "$polling_speedup" 5365

stack() {
  local mode=$1 action=$2
  (
    # shellcheck source=/dev/null
    source "$dir/$mode/bench.env"
    "$root/scripts/local-stack.sh" "$action"
  )
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  stack events stop || true
  stack polling stop || true
}
trap cleanup EXIT

began=$SECONDS
echo "bench-completion: starting the events stack (ports 5355-5357) and the polling stack (5365-5367) in $dir" >&2
# One after the other: the first start builds (make test's build), the second finds it done.
stack events start
stack polling start
rm -f "$dir/events.json" "$dir/polling.json"

measure() {
  local mode=$1
  (
    # shellcheck source=/dev/null
    source "$dir/$mode/bench.env"
    # shellcheck source=/dev/null
    source "$LOCAL_STACK_DIR/env"
    exec "$root/target/debug/bench-completion" measure
  ) 2>&1 | sed -u "s/^/[$mode] /" | tee "$dir/$mode.log"
}

measure events &
events_pid=$!
measure polling &
polling_pid=$!
status=0
wait "$events_pid" || status=$?
wait "$polling_pid" || status=$?
measured=$((SECONDS - began))

echo
set +e
"$root/target/debug/bench-completion" report "$dir/events.json" "$dir/polling.json" | tee "$dir/bench.log"
report_status=${PIPESTATUS[0]}
set -e
echo "bench-completion: stacks started and measured in ${measured} s; results in $dir (events.json, polling.json, *.log, bench.log)" | tee -a "$dir/bench.log"
if ((status != 0)); then
  echo "bench-completion: a measurement failed (see $dir/events.log, $dir/polling.log)" >&2
  exit 2
fi
exit "$report_status"
