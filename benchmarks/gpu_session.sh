#!/usr/bin/env bash
# Everything a session with a CUDA GPU should run for mlpx, in one go (GPU time is
# scarce: one call, about 10 minutes on an H100). From the repository root:
#
#     bash benchmarks/gpu_session.sh OUTDIR [--quick]
#
# It needs CuPy (pip install -e ".[test,cuda12]") and, for the reference rows, PyTorch
# with CUDA. Fashion-MNIST comes from --data-dir (default: the embedded sample when the
# full set is absent). Writes into OUTDIR:
#   nvidia-smi.txt             the device
#   gpu-tests.txt              python -m pytest -m gpu (CuPy backend, the CuPy fast step)
#   all-*.json/.md/.png        python -m benchmarks on CuPy and torch[cuda], every workload
#   end_to_end-*.json/.md      Fashion-MNIST 784-256-256-10 Adam, mlpx on CuPy vs torch CUDA
#   mnist_gpu.txt              examples/mnist_gpu.py
# Copy OUTDIR's files to benchmarks/results/ and commit them with the device name (the
# file names carry it). A step that fails is reported and the next one still runs; the
# exit status is the number of failed steps.
set -u
out=${1:?usage: bash benchmarks/gpu_session.sh OUTDIR [--quick]}
quick=${2:-}
mkdir -p "$out"
failed=0
step() {  # step NAME LOGFILE COMMAND...
    local name=$1 log=$2
    shift 2
    echo "== $name: $*" | tee -a "$out/session.txt"
    local t0=$SECONDS
    "$@" >"$out/$log" 2>&1
    local rc=$?
    echo "   rc=$rc in $((SECONDS - t0)) s (log: $log)" | tee -a "$out/session.txt"
    tail -n 25 "$out/$log"
    [ "$rc" -eq 0 ] || failed=$((failed + 1))
}

data_dir=/usr/share/datasets/fashion-mnist
data_args=(--dataset fashion-mnist --data-dir "$data_dir")
[ -e "$data_dir/train-images-idx3-ubyte.gz" ] || data_args=(--dataset sample)

nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
step "GPU tests" gpu-tests.txt python -m pytest -m gpu -q -rs -p no:cacheprovider
if [ "$quick" = "--quick" ]; then
    step "benchmarks" benchmarks.txt python -m benchmarks --backends cupy --quick \
        --out "$out"
else
    step "benchmarks" benchmarks.txt python -m benchmarks --backends cupy --workloads all \
        --generic --stat median --repeats 7 --plot --out "$out"
    if [ -e "$data_dir/train-images-idx3-ubyte.gz" ]; then
        step "end to end" end_to_end.txt python -m benchmarks.end_to_end --device cuda \
            --data-dir "$data_dir" --repeats 3 --out "$out"
    fi
fi
step "MNIST-style example on the GPU" mnist_gpu.txt python examples/mnist_gpu.py \
    "${data_args[@]}" --epochs 5
echo "failed steps: $failed" | tee -a "$out/session.txt"
exit "$failed"
