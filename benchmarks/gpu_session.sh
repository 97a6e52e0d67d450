#!/usr/bin/env bash
# Everything a session with a CUDA GPU should run for mlpx, in one go (GPU time is
# scarce: one call, about 10 minutes on an H100). From the repository root:
#
#     bash benchmarks/gpu_session.sh OUTDIR [--quick] [--no-install]
#
# On a fresh machine it first installs mlpx with the test extra and the CUDA extra that
# matches the driver (nvidia-smi's "CUDA Version": 12.x -> .[test,cuda12], 13.x ->
# .[test,cuda13]; the extras bring cupy-cudaXXx[ctk], i.e. CuPy with cuBLAS, NVRTC and
# the CUDA headers from PyPI, so a driver-only host works). --no-install skips that. The
# reference rows need PyTorch with CUDA (the bench extra). Fashion-MNIST comes from
# --data-dir (default: the embedded sample when the full set is absent). Writes into OUTDIR:
#   nvidia-smi.txt             the device
#   versions.json / versions.txt  CUDA runtime and driver, CuPy, cuBLAS, NumPy versions
#                              and cupy.show_config()
#   probe.txt                  mlpx._backend.cuda_probe(): None, or what is missing
#   gpu-tests.txt              python -m pytest -m gpu (CuPy backend, the CuPy fast step)
#   sanitizer-memcheck.txt     compute-sanitizer --tool memcheck / racecheck on one short
#   sanitizer-racecheck.txt    GPU test of the fast step (skipped without the binary)
#   all-*.json/.md/.png        python -m benchmarks on CuPy and torch[cuda], every workload
#   end_to_end-*.json/.md      Fashion-MNIST 784-256-256-10 Adam, mlpx on CuPy vs torch CUDA
#   mnist_gpu.txt              examples/mnist_gpu.py
# Copy OUTDIR's files to benchmarks/results/ and commit them with the device name (the
# file names carry it). A step that fails is reported and the next one still runs; the
# exit status is the number of failed steps.
set -u
out=${1:?usage: bash benchmarks/gpu_session.sh OUTDIR [--quick] [--no-install]}
shift
quick=
install=1
for arg in "$@"; do
    case $arg in
        --quick) quick=--quick ;;
        --no-install) install= ;;
        *) echo "unknown option $arg" >&2; exit 2 ;;
    esac
done
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
cuda_major=$(sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' "$out/nvidia-smi.txt" | head -n 1)
if [ -n "$install" ]; then
    case $cuda_major in
        13) extra=cuda13 ;;
        *) extra=cuda12 ;;  # 12.x, or unknown: CUDA 12 wheels run on every 12.x+ driver
    esac
    step "install (.[test,$extra])" install.txt python -m pip install -e ".[test,$extra]"
fi

python - >"$out/versions.txt" 2>&1 <<'PY'
import json, platform
info = {"python": platform.python_version()}
try:
    import numpy
    info["numpy"] = numpy.__version__
    import cupy
    from cupy_backends.cuda.libs import cublas
    rt = cupy.cuda.runtime
    info.update(cupy=cupy.__version__, cuda_runtime=rt.runtimeGetVersion(),
                cuda_driver=rt.driverGetVersion(),
                device=rt.getDeviceProperties(0)["name"].decode(),
                cublas=cublas.getVersion(cupy.cuda.device.get_cublas_handle()))
    try:
        info["nvrtc"] = cupy.cuda.nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        info["nvrtc"] = repr(exc)
    cupy.show_config()
except Exception as exc:  # noqa: BLE001 - recorded, not fatal
    info["error"] = repr(exc)
print(json.dumps(info, indent=1))
json.dump(info, open("versions.json", "w"), indent=1)
PY
[ -e versions.json ] && mv versions.json "$out/versions.json"
cat "$out/versions.txt"

step "mlpx CUDA probe" probe.txt python -c \
    "from mlpx import _backend; r = _backend.cuda_unavailable_reason(); print(r); raise SystemExit(r is not None)"
step "GPU tests" gpu-tests.txt python -m pytest -m gpu -q -rs -p no:cacheprovider

# compute-sanitizer on one short GPU test of the fast step (every kernel: forward,
# dropout, softmax, backward, the Adam update). It comes with a CUDA toolkit, not
# with the pip wheels; without it the two steps are skipped and say so.
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
short_test="tests/test_cupy_step.py::test_gpu_dropout_equal_generic"
if [ -n "$sanitizer" ]; then
    for tool in memcheck racecheck; do
        step "compute-sanitizer $tool" "sanitizer-$tool.txt" "$sanitizer" --tool "$tool" \
            --error-exitcode 1 python -m pytest -m gpu -q -p no:cacheprovider "$short_test"
    done
else
    echo "compute-sanitizer not found: memcheck/racecheck skipped" | tee -a "$out/session.txt" \
        "$out/sanitizer-memcheck.txt" "$out/sanitizer-racecheck.txt"
fi
if [ -n "$quick" ]; then
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
