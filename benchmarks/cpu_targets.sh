#!/usr/bin/env bash
# Issue 17's and issue 10's CPU measurements in one go (run from the repository root, in
# an environment with mlpx[numba,sklearn], torch==2.13.0 and, optionally, jax):
#
#   bash benchmarks/cpu_targets.sh            # everything below
#   QUICK=1 bash benchmarks/cpu_targets.sh    # 2 rounds, 16384 samples, 1 sklearn repeat
#
# 1. the fit table (SGD and Adam through MLP.fit, batch 64..4096, against PyTorch eager,
#    JAX jit and the NumPy floor, plus predict_proba), 2 threads, float32;
# 2. the same at float64 for mlpx and the floor (how close float64 is to its own floor);
# 3. issue 10's scikit-learn comparison (Fashion-MNIST 784-256-256-10, adam, batch 128,
#    10 epochs, alpha 0, float64 and float32 input, 1 thread) with numba's kernels;
# 4. the same fit table at 1 thread.
# Each writes its Markdown/JSON under benchmarks/results/ and prints its table. The load
# average is printed before and after each part: measure on a quiet machine.
set -euo pipefail
ROUNDS=5; SAMPLES=60000; REPEATS=3
if [[ "${QUICK:-0}" == "1" ]]; then ROUNDS=2; SAMPLES=16384; REPEATS=1; fi
python -c "import numpy, mlpx._fast._policy as p; print('numpy', numpy.__version__, \
'fused kernels:', p.fused_kernels() is not None)"
uptime
python -m benchmarks.fit_table --threads 2 --rounds "$ROUNDS" --samples "$SAMPLES" --inference
uptime
python -m benchmarks.fit_table --threads 2 --rounds "$ROUNDS" --samples "$SAMPLES" \
    --dtype float64 --no-torch --no-jax
uptime
python benchmarks/sklearn_comparison.py --hidden 256,256 --batch-size 128 --alpha 0 \
    --max-iter 10 --repeats "$REPEATS" --threads 1 \
    --out benchmarks/results/sklearn_comparison_issue17.md
uptime
python -m benchmarks.fit_table --threads 1 --rounds "$ROUNDS" --samples "$SAMPLES"
uptime
