"""The CuPy fast step (mlpx/_fast/cupy_step.py) and its CUDA kernels (kernels.cu).

Without a GPU: the kernel source compiles for sm_80/sm_90 with NVRTC, and
:class:`~mlpx._fast.cupy_step.CupyTrainStep` runs on the CPU with the very same kernels
compiled by g++ (``tests/cuda_host.py``), where it must match the generic Array API path
over the same matrix of optimizers, activations, losses, sample weights and dtypes as the
NumPy fast step. With a GPU (``-m gpu``): the real thing on CuPy against the generic path
on CuPy and on NumPy.
"""

import numpy as np
import pytest

from mlpx import MLP, _backend, _fast
from mlpx._fast import model_key
from mlpx._fast._step import build_plan
from mlpx._fast.cupy_step import ACTIVATION_CODES, KERNELS, CupyTrainStep, kernel_source
from mlpx.layers import ActivationLayer, Dense, Dropout

from . import cuda_host
from .test_fast import (
    OPTIMIZERS,
    assert_same,
    batches_for,
    interrupt_every_op,
    make,
    mlp_layers,
    run_steps,
    sample_weights,
)

needs_gxx = pytest.mark.skipif(not cuda_host.compiler_available(),
                               reason="g++ is needed to run the CUDA kernels on the CPU")


# ---------------------------------------------------------------------------- NVRTC
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_compile_for_the_gpu(dtype, arch):
    if cuda_host.nvrtc() is None:
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc-cu12, part of "
                    "the 'test' extra on Linux x86-64)")
    ok, log = cuda_host.nvrtc_compile(kernel_source(dtype), arch)
    assert ok, log


def test_nvrtc_check_can_fail():
    if cuda_host.nvrtc() is None:
        pytest.skip("NVRTC is not installed")
    ok, log = cuda_host.nvrtc_compile(kernel_source("float32").replace("r_tanh(v)",
                                                                       "r_tanhh(v)"))
    assert not ok and "r_tanhh" in log


def test_kernel_list_matches_the_source():
    import re

    src = kernel_source("float64")
    assert sorted(re.findall(r'extern "C" __global__ void (\w+)\(', src)) == sorted(KERNELS)


def test_activation_codes_match_the_source():
    src = kernel_source("float32")
    for name, code in ACTIVATION_CODES.items():
        assert f"#define ACT_{name.upper()} {code}\n" in src
    assert set(ACTIVATION_CODES) == set(_fast.NUMPY_ACTIVATIONS)


# ---------------------------------------------------------------------------- host run
def host_step(model):
    """Give a NumPy model the CuPy step, running on the CPU."""
    device = cuda_host.HostDevice(model.dtype)
    model._fast_step = CupyTrainStep(model, build_plan(model), model_key(model),
                                     device=device)
    return device


def check_host_equal(layers_fn, *, loss="cross_entropy", alpha=0.0, optimizer="sgd",
                     dtype="float32", weights=False, k=4):
    fast = make(layers_fn, loss=loss, alpha=alpha, optimizer=optimizer, dtype=dtype)
    ref = make(layers_fn, loss=loss, alpha=alpha, optimizer=optimizer, dtype=dtype)
    assert _fast.structure_reason(fast, "cupy") is None
    device = host_step(fast)
    batches = batches_for(loss, dtype, k=k)
    w = sample_weights(batches, dtype) if weights else None
    out_f = run_steps(fast, batches, fast=True, weights=w)
    out_r = run_steps(ref, batches, fast=False, weights=w)
    assert_same(fast, ref, out_f, out_r, dtype)
    return dict(device.launches, **device.products)


@needs_gxx
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_host_optimizers_equal_generic(optimizer, alpha):
    launches = check_host_equal(mlp_layers("relu"), optimizer=optimizer, alpha=alpha)
    assert launches["bias_act_forward"] == 3 * 5  # 3 Dense layers, 5 steps
    assert launches["softmax_xent"] == 5
    update = {"sgd": "sgd_update", "adam": "adam_update", "adamw": "adam_update",
              "rmsprop": "rmsprop_update"}[OPTIMIZERS[optimizer]["name"]]
    # one kernel per parameter: plain SGD is not folded into cuBLAS (a product among the
    # writes could fail after some parameters were updated)
    assert launches[update] == 6 * 5
    assert launches["gemm"] == 0
    assert launches["matmul"] == 5 * (3 + 2 + 3)  # fwd, dx, dW


@needs_gxx
@pytest.mark.parametrize("act", list(_fast.NUMPY_ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_host_activations_equal_generic(act, dtype):
    launches = check_host_equal(mlp_layers(act), optimizer="adam", alpha=0.01, dtype=dtype)
    assert launches.get("act_backward", 0) == (0 if act == "identity" else 2 * 5)


@needs_gxx
@pytest.mark.parametrize("loss,k", [("cross_entropy", 4), ("binary_cross_entropy", 3),
                                    ("mse", 2)])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_host_losses_equal_generic(loss, k, optimizer):
    check_host_equal(mlp_layers("tanh", k=k), loss=loss, optimizer=optimizer, k=k)


@needs_gxx
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_host_sample_weight_equal_generic(loss):
    check_host_equal(mlp_layers("relu"), loss=loss, optimizer="momentum", weights=True,
                     alpha=0.01)


@needs_gxx
@pytest.mark.parametrize("optimizer", ["sgd_wd", "nesterov_wd", "adamw", "rmsprop"])
def test_host_no_bias_float64_equal_generic(optimizer):
    launches = check_host_equal(mlp_layers("leaky_relu", bias=False), optimizer=optimizer,
                                alpha=0.01, dtype="float64")
    assert "bias_act_forward" not in launches
    assert launches["act_forward"] == 2 * 5


@needs_gxx
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_host_dropout_equal_generic(act, optimizer):
    """Same seed, same masks: the step draws from the model's generator as Dropout does."""
    launches = check_host_equal(mlp_layers(act, dropout=0.3), optimizer=optimizer)
    assert launches["dropout_forward"] == 2 * 5 and launches["multiply_inplace"] == 2 * 5


@needs_gxx
def test_host_dropout_in_place_and_zero_equal_generic():
    """Dropout straight after a Dense (in place), two in a row, and p = 0 (no draw)."""
    def build():
        return [Dense(8), Dropout(0.2), Dropout(0.0), ActivationLayer("relu"), Dense(8),
                ActivationLayer("tanh"), Dropout(0.0), Dropout(0.4), Dense(4)]
    # an activation after a Dropout is not for the CuPy step...
    assert "follow a Dense" in _fast.structure_reason(make(build), "cupy")

    def build_ok():
        return [Dense(8), Dropout(0.2), Dropout(0.1), Dense(8), ActivationLayer("tanh"),
                Dropout(0.0), Dropout(0.4), Dense(4)]
    launches = check_host_equal(build_ok, optimizer="momentum", alpha=0.01)
    assert launches["dropout_forward"] == 3 * 5


@needs_gxx
def test_host_step_is_one_model_update():
    """A fused step leaves params, slots and step count exactly where the kernels put
    them: a second identical model trained generically agrees after many steps."""
    fast = make(mlp_layers("relu"), optimizer="adam", alpha=1e-3)
    ref = make(mlp_layers("relu"), optimizer="adam", alpha=1e-3)
    host_step(fast)
    batches = batches_for("cross_entropy", "float32", sizes=(16,) * 40)
    assert_same(fast, ref, run_steps(fast, batches, fast=True),
                run_steps(ref, batches, fast=False), "float32")


@needs_gxx
@pytest.mark.parametrize("optimizer", ["sgd_wd", "nesterov_wd", "adamw", "rmsprop"])
def test_host_interrupted_step_changes_nothing(optimizer):
    """An error from any product, kernel or allocation (here: a MemoryError, as CuPy's
    out-of-memory error during backward) leaves params, slots and step count alone."""
    def make_model():
        model = make(mlp_layers("relu", dropout=0.25), alpha=1e-3, optimizer=optimizer)
        host_step(model)
        return model
    batch = batches_for("cross_entropy", "float32")[0]
    calls = interrupt_every_op(make_model, batch, exc=MemoryError)
    assert calls.count("weight_grad") == 3 and "act_forward" not in calls  # fused


@needs_gxx
def test_host_kernels_reject_mismatched_types():
    device = cuda_host.HostDevice("float32")
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="float64"):
        device.launch("act_forward", z.size, z, np.int64(z.size), np.int32(1),
                      np.float64(0.0))


def test_every_kernel_has_a_checked_signature():
    sigs = cuda_host.kernel_signatures(kernel_source("float32"))
    assert sorted(sigs) == sorted(KERNELS)
    assert sigs["act_forward"] == ["real*", "long long", "int", "real"]
    assert sigs["softmax_xent"][:2] == ["const real*", "const real*"]
    ok = [np.zeros(6, np.float32), np.int64(6), np.int32(1), np.float32(0.0)]
    cuda_host.check_launch(sigs["act_forward"], "act_forward", ok, "float32")
    bad = {
        "takes 4 arguments": ok[:3],                                   # count
        "needs numpy.int64": [ok[0], np.int32(6), ok[2], ok[3]],       # long long
        "needs numpy.int32": [ok[0], ok[1], np.int64(1), ok[3]],       # int
        "needs numpy.float32": [ok[0], ok[1], ok[2], 0.0],             # a Python float
        "needs an array of float32": [np.zeros(6), ok[1], ok[2], ok[3]],
    }
    for message, args in bad.items():
        with pytest.raises(TypeError, match=message):
            cuda_host.check_launch(sigs["act_forward"], "act_forward", args, "float32")
    frozen = np.zeros(6, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        cuda_host.check_launch(sigs["act_forward"], "act_forward", [frozen] + ok[1:],
                               "float32")


# ---------------------------------------------------------------------------- CupyDevice
def fake_cupy_for_device(monkeypatch, *, cublas=True, fail=None):
    """CuPy stand-ins for CupyDevice's construction: cuBLAS import, RawModule, get_function."""
    import sys
    import types

    from mlpx._fast import cupy_step

    made = []

    class RawModule:
        def __init__(self, *, code, options):
            made.append(("RawModule", code, options))

        def get_function(self, name):
            made.append(("get_function", name))
            if name == fail:
                raise RuntimeError("CompileException: boom")
            return name

    cupy = types.ModuleType("cupy")
    cupy.RawModule = RawModule
    cupy.matmul = np.matmul
    cublas_mod = types.ModuleType("cupy.cublas")
    cublas_mod.gemm = lambda *a, **kw: None
    cupy.cublas = cublas_mod
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupy.cublas", cublas_mod if cublas else None)
    cupy_step._module.cache_clear()
    monkeypatch.setattr(_backend, "cuda_probe", lambda: "backend='cupy' cannot run: probe")
    return made


@pytest.mark.parametrize("dtype,real", [("float32", "float"), ("float64", "double")])
def test_cupy_device_construction_path(monkeypatch, dtype, real):
    from mlpx._fast import cupy_step

    made = fake_cupy_for_device(monkeypatch)
    try:
        dev = cupy_step.CupyDevice(dtype)
    finally:
        cupy_step._module.cache_clear()
    (kind, code, options), *gets = made
    assert kind == "RawModule" and code.startswith(f"typedef {real} real;\n")
    assert options == ("--std=c++14",)
    assert [g[1] for g in gets] == list(KERNELS)  # every kernel, at construction
    assert sorted(dev._fns) == sorted(KERNELS)


def test_cupy_device_errors_are_clear(monkeypatch):
    from mlpx._fast import cupy_step

    fake_cupy_for_device(monkeypatch, fail="adam_update")
    with pytest.raises(RuntimeError, match="MLPX_FAST=0") as info:
        cupy_step.CupyDevice("float32")
    assert "boom" in str(info.value)
    cupy_step._module.cache_clear()
    fake_cupy_for_device(monkeypatch, cublas=False)
    with pytest.raises(_backend.CudaUnavailableError, match="probe"):
        cupy_step.CupyDevice("float32")
    cupy_step._module.cache_clear()


# ---------------------------------------------------------------------------- predicate
def test_cupy_rules_of_the_predicate():
    plain = make(mlp_layers("relu"))
    assert _fast.structure_reason(plain, "cupy") is None
    dropout = make(mlp_layers("relu", dropout=0.2))
    assert _fast.structure_reason(dropout, "cupy") is None

    def stacked():
        return [Dense(8), ActivationLayer("tanh"), ActivationLayer("sigmoid"), Dense(4)]
    model = make(stacked)
    assert _fast.structure_reason(model, "numpy") is None
    assert "follow a Dense" in _fast.structure_reason(model, "cupy")


def test_strict_backend_has_no_fast_step():
    pytest.importorskip("array_api_strict")
    model = MLP([4, 8, 3], backend="array_api_strict", seed=0).compile("sgd")
    assert model._fast_step is None
    assert "NumPy, CuPy and PyTorch" in _fast.unsupported_reason(model)


# ---------------------------------------------------------------------------- on a GPU
def check_gpu_equal(act, optimizer, dtype, *, loss="cross_entropy", k=4, weights=False):
    """The CuPy step against the generic path on CuPy (same-device tolerances) and on
    NumPy (:func:`tests.cuda_host.gpu_tolerance`: cuBLAS order, FMA, exp/tanh ulps)."""
    kw = dict(loss=loss, optimizer=optimizer, alpha=0.01, dtype=dtype)
    fast = make(mlp_layers(act, k=k), backend="cupy", **kw)
    ref = make(mlp_layers(act, k=k), backend="cupy", **kw)
    host = make(mlp_layers(act, k=k), **kw)
    assert isinstance(fast._fast_step, CupyTrainStep), _fast.unsupported_reason(fast)
    batches = batches_for(loss, dtype, k=k)
    w = sample_weights(batches, dtype) if weights else None
    out_f = run_steps(fast, batches, fast=True, weights=w)
    assert_same(fast, ref, out_f, run_steps(ref, batches, fast=False, weights=w), dtype)
    tol = cuda_host.gpu_tolerance(dtype, k=max(X.shape[0] for X, _ in batches),
                                  layers=3, steps=len(batches))
    assert_same(fast, host, out_f, run_steps(host, batches, fast=False, weights=w), dtype,
                tol=tol)


def test_gpu_tolerance_follows_the_error_model():
    t32 = cuda_host.gpu_tolerance("float32", k=32, layers=3, steps=5)
    t64 = cuda_host.gpu_tolerance("float64", k=32, layers=3, steps=5)
    u = cuda_host.UNIT_ROUNDOFF["float32"]
    assert t32["rtol"] == pytest.approx(4 * 5 * 3 * (2 * 32 + 1 + 6) * u)  # ~2.5e-4
    assert t32["atol"] == pytest.approx(t32["rtol"] / 10)
    assert t64 == {"rtol": 1e-11, "atol": 1e-12}  # never tighter than on one device
    longer = cuda_host.gpu_tolerance("float32", k=1024, layers=3, steps=5)
    assert longer["rtol"] > 20 * t32["rtol"]


@pytest.mark.gpu
@pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device")
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "adamw", "rmsprop"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_gpu_step_equals_generic(optimizer, dtype, act):
    check_gpu_equal(act, optimizer, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device")
@pytest.mark.parametrize("loss,k,weights", [("binary_cross_entropy", 3, False),
                                            ("mse", 2, True), ("cross_entropy", 4, True)])
def test_gpu_other_losses_and_weights(loss, k, weights):
    check_gpu_equal("relu", "adam", "float32", loss=loss, k=k, weights=weights)


@pytest.mark.gpu
@pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device")
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_gpu_dropout_equal_generic(optimizer):
    """On CuPy the masks come from CuPy's generator: the same draws on both paths."""
    kw = dict(optimizer=optimizer, alpha=0.01, backend="cupy")
    fast = make(mlp_layers("relu", dropout=0.3), **kw)
    ref = make(mlp_layers("relu", dropout=0.3), **kw)
    assert isinstance(fast._fast_step, CupyTrainStep), _fast.unsupported_reason(fast)
    batches = batches_for("cross_entropy", "float32")
    assert_same(fast, ref, run_steps(fast, batches, fast=True),
                run_steps(ref, batches, fast=False), "float32")
