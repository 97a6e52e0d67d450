"""mlpx._backend on simulated CUDA hosts, its device scope and its dropout generator.

No GPU is needed: CuPy is replaced by stand-in modules in ``sys.modules`` that fail the
way a real host without the piece fails (no CuPy; CuPy without a driver; CuPy and a
driver without cuBLAS; without NVRTC or the CUDA headers), and by one that works (on
NumPy), so that every branch of :func:`mlpx._backend.cuda_probe` runs here.
"""

import sys
import types

import numpy as np
import pytest

from mlpx import MLP, _backend


class CUDARuntimeError(RuntimeError):
    pass


CUDARuntimeError.__module__ = "cupy_backends.cuda.api.runtime"


class CompileException(Exception):
    pass


def fake_cupy(*, devices=1, driver=True, cublas=True, headers=True, wrong=False):
    """A stand-in ``cupy`` module and ``cupy.cublas`` entry for sys.modules."""
    calls = []

    def device_count():
        calls.append("getDeviceCount")
        if not driver:
            raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                                   "insufficient for CUDA runtime version")
        return devices

    def cublas_handle():
        calls.append("get_cublas_handle")
        return 1

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name):
            calls.append(("ElementwiseKernel", name))
            if not headers:
                raise CompileException('catastrophic error: cannot open source file '
                                       '"cuda_fp16.h"')

        def __call__(self, x):
            return 2 * x + 1 + (1 if wrong else 0)

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=device_count,
                                      deviceSynchronize=lambda: calls.append("sync")),
        device=types.SimpleNamespace(get_cublas_handle=cublas_handle))
    cupy.asarray = np.asarray
    cupy.matmul = np.matmul
    cupy.ElementwiseKernel = ElementwiseKernel
    cupy.calls = calls
    cublas_mod = types.ModuleType("cupy.cublas") if cublas else None
    return cupy, cublas_mod


@pytest.fixture
def host(monkeypatch):
    """Install a simulated host: ``host(**fake_cupy kwargs)`` or ``host(None)`` for no
    CuPy at all. The cached probe result is reset before and after."""
    def install(spec):
        if spec is None:
            monkeypatch.setitem(sys.modules, "cupy", None)
            monkeypatch.setitem(sys.modules, "cupy.cublas", None)
            cupy = None
        else:
            cupy, cublas_mod = fake_cupy(**spec)
            monkeypatch.setitem(sys.modules, "cupy", cupy)
            monkeypatch.setitem(sys.modules, "cupy.cublas", cublas_mod)
        _backend.reset_cuda_probe()
        return cupy
    yield install
    _backend.reset_cuda_probe()


HOSTS = {
    "no_cupy": (None, "CuPy is not installed", "mlpx[cuda12]"),
    "no_driver": (dict(driver=False), "no CUDA device answers", "NVIDIA driver"),
    "no_device": (dict(devices=0), "no CUDA device", "NVIDIA driver"),
    "no_cublas": (dict(cublas=False), "cannot use cuBLAS", "cupy-cuda12x[ctk]"),
    "no_headers": (dict(headers=False), "cannot compile a CUDA kernel", "cupy-cuda12x[ctk]"),
    "wrong_result": (dict(wrong=True), "gave", "please report"),
}


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_each_missing_piece_is_one_clear_error(host, name):
    spec, what, install = HOSTS[name]
    host(spec)
    reason = _backend.cuda_unavailable_reason()
    assert reason is not None and reason.startswith("backend='cupy' cannot run")
    assert what in reason and install.lower() in reason.lower()
    assert not _backend.cuda_available()
    for build in (lambda: _backend.resolve_backend("cupy"),
                  lambda: MLP([2, 2], backend="cupy")):
        with pytest.raises(_backend.CudaUnavailableError) as info:
            build()
        assert str(info.value) == reason
        # one error, caught by code written for either of the old ones
        assert isinstance(info.value, ImportError) and isinstance(info.value, RuntimeError)


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_gpu_tests_skip_on_each_host(host, name):
    from . import conftest

    host(HOSTS[name][0])
    (cupy_param,) = [p for p in conftest._params() if p.id == "cupy"]
    marks = {m.name: m for m in cupy_param.marks}
    assert "gpu" in marks and marks["skipif"].args[0] is True


def test_probe_passes_on_a_working_host(host):
    cupy = host({})
    assert _backend.cuda_probe() is None
    assert _backend.cuda_available()
    assert cupy.calls[:2] == ["getDeviceCount", "get_cublas_handle"]
    assert ("ElementwiseKernel", "mlpx_cuda_probe") in cupy.calls


def test_probe_result_is_cached_until_reset(host):
    cupy = host({})
    assert _backend.cuda_available() and _backend.cuda_available()
    assert cupy.calls.count("getDeviceCount") == 1
    _backend.reset_cuda_probe()
    assert _backend.cuda_available()
    assert cupy.calls.count("getDeviceCount") == 2


# ---------------------------------------------------------------------------- device scope
class RecordingDevice:
    def __init__(self):
        self.events = []

    def __enter__(self):
        self.events.append("enter")
        return self

    def __exit__(self, *exc):
        self.events.append("exit")
        return False


def test_device_scope_enters_the_cupy_device_only():
    dev = RecordingDevice()
    with _backend.device_scope(_backend.Backend("cupy", np, dev)):
        assert dev.events == ["enter"]
    assert dev.events == ["enter", "exit"]
    with _backend.device_scope(_backend.resolve_backend("numpy")):
        pass  # a no-op, and reusable
    with _backend.device_scope(_backend.resolve_backend("numpy")):
        pass


def test_fast_step_runs_inside_the_device_scope(monkeypatch):
    model = MLP([4, 8, 3], seed=0).compile("adam")
    step = model._fast_step
    events = []
    dev = RecordingDevice()
    dev.events = events

    def scope(backend):
        assert backend is model.backend
        return dev
    monkeypatch.setattr(_backend, "device_scope", scope)
    forward = step.ops.dense_forward

    def spy(*a, **kw):
        events.append("dense_forward")
        return forward(*a, **kw)
    monkeypatch.setattr(step.ops, "dense_forward", spy)
    X = np.ones((5, 4), dtype=np.float32)
    Y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1]]
    assert step(model, X, Y) is not None
    assert events[0] == "enter" and events[-1] == "exit"
    assert events.count("dense_forward") == 2


def test_fit_predict_evaluate_and_generic_steps_compute_inside_the_device_scope(monkeypatch):
    """Every entry point that launches work for a model enters the model's device (a
    model built for CUDA device 1 must not compute on device 0)."""
    from mlpx import _fast
    from mlpx.activations import Activation

    model = MLP([4, 8, 3], activation="tanh", seed=0)
    depth = [0]
    outside = []

    class Scope:
        def __enter__(self):
            depth[0] += 1

        def __exit__(self, *exc):
            depth[0] -= 1
            return False

    def scope(backend):
        assert backend is model.backend
        return Scope()

    monkeypatch.setattr(_backend, "device_scope", scope)

    def watch(cls):
        real = cls.forward

        def watched(self, x, *, xp):
            if depth[0] == 0:
                outside.append(type(self).__name__)
            return real(self, x, xp=xp)
        monkeypatch.setattr(cls, "forward", watched)

    for cls in {type(layer.activation) for layer in model.layers
                if hasattr(layer, "activation")} | {type(model.output)}:
        assert issubclass(cls, Activation)
        watch(cls)
    X = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    y = np.arange(12) % 3
    with _fast.disabled():  # the generic path calls the activations
        model.fit(X, y, epochs=1, batch_size=4, verbose=0)
        Y = np.eye(3, dtype=np.float32)[y]
        model.train_step(X, Y)
    model.predict(X)
    model.predict_proba(X)
    model.evaluate(X, y)
    assert depth[0] == 0
    assert outside == []


# ---------------------------------------------------------------------------- dropout noise
def test_cupy_noise_generator_is_created_on_first_draw_only(monkeypatch):
    made = []

    class Gen:
        def random(self, shape, dtype):
            return np.zeros(shape, dtype=dtype)

    def default_rng(seed):
        made.append(seed)
        return Gen()
    cupy = types.ModuleType("cupy")
    cupy.random = types.SimpleNamespace(default_rng=default_rng)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    host_rng = np.random.default_rng(5)
    twin = np.random.default_rng(5)
    gen = _backend.noise_rng(_backend.Backend("cupy", np, "cuda:0"), host_rng)
    assert isinstance(gen, _backend.DeviceNoiseRng) and not gen.created and made == []
    # the host stream moved by one draw, as when the generator was made at once
    assert gen.seed == int(twin.integers(2**63))
    assert host_rng.bit_generator.state == twin.bit_generator.state
    gen.random((2, 3), dtype="float32")
    gen.random((4,), dtype="float32")
    assert made == [gen.seed] and gen.created


def test_host_noise_generator_is_the_host_generator():
    rng = np.random.default_rng(0)
    assert _backend.noise_rng(_backend.resolve_backend("numpy"), rng) is rng
