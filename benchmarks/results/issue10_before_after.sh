#!/usr/bin/env bash
# Issue 10: `python -m benchmarks` before (2de60fc) and after the training-engine refactor,
# alternating before/after/before/after so both see similar load.
#
# Usage: bash benchmarks/results/issue10_before_after.sh THREADS_LABEL [--threads N]
#   THREADS_LABEL: 1thread or defaultthreads (goes into the tag)
# Needs: a venv with the [test,bench] extras at $VENV (default /work/benchvenv), the
# before code checked out at $BEFORE (default /work/wt/before, `git worktree add ... 2de60fc`)
# and the after code at $AFTER (default: this worktree). Results are written into
# $AFTER/benchmarks/results with tags before-refactor-<label>-runK / after-refactor-<label>-runK.
# Each run's `uptime` before and after goes to issue10_before_after-<label>.log.
set -u
VENV=${VENV:-/work/benchvenv}
BEFORE=${BEFORE:-/work/wt/before}
AFTER=${AFTER:-$(cd "$(dirname "$0")/../.." && pwd)}
LABEL=$1
shift
OUT=$AFTER/benchmarks/results
LOG=$OUT/issue10_before_after-$LABEL.log
WORKLOADS=train_step_sgd,train_step_adam

wait_for_quiet() {
    # wait (up to ~10 minutes) for a 1-minute load average of at most 1.5
    for _ in $(seq 10); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if awk "BEGIN{exit !($load <= 1.5)}"; then return; fi
        echo "load $load > 1.5, waiting 60 s" | tee -a "$LOG"
        sleep 60
    done
}

for run in 1 2; do
    for side in before after; do
        if [ $side = before ]; then code=$BEFORE; else code=$AFTER; fi
        wait_for_quiet
        echo "== $side-refactor run $run ($LABEL) $(date -u +%FT%TZ)" | tee -a "$LOG"
        echo "uptime before: $(uptime)" | tee -a "$LOG"
        (cd "$code" && PYTHONPATH=$code "$VENV/bin/python" -c \
            "import mlpx; print('mlpx from', mlpx.__file__)" | tee -a "$LOG"
         cd "$code" && PYTHONPATH=$code "$VENV/bin/python" -m benchmarks \
            --workloads $WORKLOADS --batch-sizes 64,256,1024,4096 --repeats 7 \
            --out "$OUT" --tag "$side-refactor-$LABEL-run$run" "$@") 2>&1 | tee -a "$LOG"
        echo "uptime after: $(uptime)" | tee -a "$LOG"
    done
done
