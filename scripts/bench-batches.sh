#!/usr/bin/env bash
# The batching bench (issue item 6): 1,000 FHIR files, a 1,000-instance DICOM study without a
# marker and 100 lone DICOM files, drained once as today's design does it (one job per upload)
# and once through the pipeline's batches, against the service double's timing model, on a
# private local stack (its own ports and state directory, so it never meets `make test`'s).
#
#   scripts/bench-batches.sh                  the whole bench (builds first, like make test)
#   BENCH_TIME_SCALE=0.2 scripts/bench-batches.sh
#   BENCH_HALVES=per-upload scripts/bench-batches.sh      one half only (per-upload | batches)
#
# Time scale. AWS's own timings would make this take hours, so every modelled DURATION is
# multiplied by BENCH_TIME_SCALE (default 0.1) and every RATE divided by it:
#   - the double: submit delay, per-job overhead, per-file time (×scale); StartDICOMImportJob
#     rate (÷scale). Counts are not times and stay as on AWS: burst 2, 100 running HealthImaging
#     jobs, 25 queued HealthLake jobs, 5,000 / 10,000 files per job.
#   - today's design (the bench's own driver): the old workflow's start retry and poll schedule.
#   - the pipeline's timers, ×scale in whole seconds (rounded up, at least 1), from their
#     template defaults: BATCH_QUIET_SECONDS (60), BATCH_MAX_WAIT_SECONDS (300),
#     START_WAIT_SECONDS (30: a job whose lane is full asks again), COMPLETION_BACKSTOP_SECONDS
#     (900: a lost job event's cost), START_MAX_AGE (86400); and its start pace
#     IMAGING_START_RATE (1/s, ÷scale), so it paces itself to the double's scaled rate.
# Scaling the rates as well keeps every ratio of the model as it is on AWS (how many starts fit
# in the old 6-minute retry budget, how many one-file jobs fit in one batch's run), so a run is
# AWS's timeline compressed. Scaling the times alone would, at 0.1, leave the old retry budget
# room for a tenth of the starts it has on AWS and overstate today's START_FAILED. What cannot be
# scaled is the local stack's own latency (moto, SQS, the functions): it weighs 1/scale times
# more than on AWS, so the batches' ratios come out pessimistic. At 0.1 the bench takes about
# 8-10 minutes after the build; larger scales are more faithful and slower (today's design
# alone takes about 2,700 s × scale: 26 one-file HealthLake jobs, one after another).
#
# The model, in AWS time (figures AWS documents, else assumptions, marked):
#   HealthLake: a one-file import takes 83 s from SubmitTime to EndTime (the developer guide's
#     own ListFHIRImportJobs example): 5 s SUBMITTED (assumed split) + 77.5 s overhead + 0.5 s
#     for its file. Per-file time is documented nowhere: 0.5 s a (small) file is an assumption.
#   HealthImaging: no job duration is documented; assumed the same as HealthLake's.
#   StartDICOMImportJob 1 TPS, burst 2; 100 concurrent jobs; 25 queued HealthLake jobs
#   (unconfirmed third-party figure): the double's defaults, set here explicitly.
# Override any of these with BENCH_SUBMIT_SECONDS, BENCH_JOB_OVERHEAD_SECONDS,
# BENCH_PER_FILE_SECONDS (AWS time, before scaling).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
scale="${BENCH_TIME_SCALE:-0.1}"
submit_s="${BENCH_SUBMIT_SECONDS:-5}"
overhead_s="${BENCH_JOB_OVERHEAD_SECONDS:-77.5}"
per_file_s="${BENCH_PER_FILE_SECONDS:-0.5}"

if ! awk -v s="$scale" 'BEGIN { exit !(s + 0 > 0 && s + 0 <= 1) }'; then
  echo "bench-batches: BENCH_TIME_SCALE=$scale must be a number in (0, 1]" >&2
  exit 2
fi

# AWS seconds → scaled whole milliseconds (rounded), fractional milliseconds, whole seconds
# (rounded up, at least 1).
ms() { awk -v s="$1" -v k="$scale" 'BEGIN { printf "%d", s * k * 1000 + 0.5 }'; }
fractional_ms() { awk -v s="$1" -v k="$scale" 'BEGIN { printf "%.4f", s * k * 1000 }'; }
whole_seconds() {
  awk -v s="$1" -v k="$scale" 'BEGIN { v = s * k; c = int(v); if (c < v) c++; if (c < 1) c = 1; print c }'
}

export BENCH_TIME_SCALE="$scale"
for service in FHIR IMAGING; do
  export "DOUBLE_${service}_SUBMIT_DELAY_MS=$(ms "$submit_s")"
  export "DOUBLE_${service}_RUN_MS=$(ms "$overhead_s")"
  export "DOUBLE_${service}_PER_FILE_MS=$(fractional_ms "$per_file_s")"
  export "DOUBLE_${service}_MANIFEST_DELAY_MS=0"
done
DOUBLE_IMAGING_START_RATE=$(awk -v k="$scale" 'BEGIN { printf "%.4f", 1 / k }')
export DOUBLE_IMAGING_START_RATE
export DOUBLE_IMAGING_START_BURST=2
export DOUBLE_IMAGING_MAX_RUNNING_JOBS=100
export DOUBLE_FHIR_MAX_QUEUED_JOBS=25
export DOUBLE_IMAGING_MAX_FILES_PER_JOB=5000
export DOUBLE_FHIR_MAX_FILES_PER_JOB=10000
# No injected faults: the bench measures the model, not the fault paths.
export DOUBLE_THROTTLE_SHARE=0 DOUBLE_INTERNAL_ERROR_SHARE=0 DOUBLE_JOB_FAILURE_SHARE=0 DOUBLE_STALL_SHARE=0

# A private stack: its own ports and state, never `make test`'s (5155-5157, .local).
export LOCAL_STACK_DIR="${LOCAL_STACK_DIR:-$root/.local/bench-batches}"
export MOTO_PORT="${MOTO_PORT:-5255}" DOUBLE_PORT="${DOUBLE_PORT:-5256}" LAMBDA_PORT="${LAMBDA_PORT:-5257}"
mkdir -p "$LOCAL_STACK_DIR"

# The functions' batch timers, scaled (local-functions.env + these, later lines win).
overrides="$LOCAL_STACK_DIR/bench-functions.env"
cat >"$overrides" <<VARS
# Written by scripts/bench-batches.sh (BENCH_TIME_SCALE=$scale).
BATCH_QUIET_SECONDS=$(whole_seconds 60)
BATCH_MAX_WAIT_SECONDS=$(whole_seconds 300)
START_WAIT_SECONDS=$(whole_seconds 30)
COMPLETION_BACKSTOP_SECONDS=$(whole_seconds 900)
START_MAX_AGE=$(whole_seconds 86400)
IMAGING_START_RATE=$DOUBLE_IMAGING_START_RATE
VARS
export FUNCTION_ENV_OVERRIDES="$overrides"

echo "bench-batches: time scale $scale; stack in $LOCAL_STACK_DIR (ports $MOTO_PORT-$LAMBDA_PORT); output also in $LOCAL_STACK_DIR/bench.log" >&2
set -o pipefail
"$root/scripts/local-stack.sh" run -- "$root/target/debug/bench-batches" 2>&1 | tee "$LOCAL_STACK_DIR/bench.log"
