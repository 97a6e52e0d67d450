#!/usr/bin/env bash
# Build the one-pool prototype and time mlpx's NumPy step on it against OpenBLAS's own
# pool: one variant per process, six orders of the three variants, then the summary.
# Usage (from the repository root): bash benchmarks/experiments/openblas_pool/run.sh LOG
set -euo pipefail
log=${1:?usage: run.sh LOG}
here=$(dirname "$0")
lib=$(mktemp -d)/libpool.so
gcc -O3 -march=native -ffp-contract=off -fno-math-errno -shared -fPIC -pthread \
    -o "$lib" "$here/pool.c"
python -m benchmarks.experiments.openblas_pool.measure "$lib" 1 0 > "$lib.first"
head -2 "$lib.first" > "$log"
for order in "0 1 2" "1 2 0" "2 0 1" "0 2 1" "2 1 0" "1 0 2"; do
    for v in $order; do
        python -m benchmarks.experiments.openblas_pool.measure "$lib" 5 "$v" \
            | grep -v "^Adam update" >> "$log"
    done
done
python -m benchmarks.experiments.openblas_pool.measure summary "$log" | tee -a "$log"
