"""mlpx._backend: resolving backends (names, modules, devices, pickling, dtypes), the one
fast-path switch, Dask persistence; on simulated CUDA hosts, its device scope and its
dropout generator.

No GPU is needed: CuPy is replaced by stand-in modules in ``sys.modules`` that fail the
way a real host without the piece fails (no CuPy; CuPy without a driver; CuPy and a
driver without cuBLAS; without NVRTC or the CUDA headers), and by one that works (on
NumPy), so that every branch of :func:`mlpx._backend.cuda_probe` runs here.
"""

import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest

import mlpx
from mlpx import MLP, _backend
from mlpx.activations import ACTIVATIONS, get_activation
from mlpx.layers import embedding_grad
from mlpx.losses import LOSSES, get_loss
from mlpx.optimizers import get_optimizer

from .conftest import enable_jax_x64
from .helpers import assert_array


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
def test_gpu_tests_skip_on_each_host(host, name, monkeypatch):
    from . import conftest

    monkeypatch.delenv("MLPX_BACKENDS", raising=False)  # every backend, cupy included
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


# ---------------------------------------------------------------------------- resolution
def _spellings(name):
    """Every way a user may name backend ``name``: strings and modules."""
    if name == "torch":
        torch = pytest.importorskip("torch")
        return ["torch", "pytorch", "array_api_compat.torch", torch,
                pytest.importorskip("array_api_compat.torch")]
    if name == "jax":
        jnp = pytest.importorskip("jax.numpy")
        return ["jax", "jax.numpy", jnp]
    if name == "dask":
        da = pytest.importorskip("dask.array")
        return ["dask", "dask.array", "array_api_compat.dask.array", da,
                pytest.importorskip("array_api_compat.dask.array")]
    if name == "array_api_strict":
        strict = pytest.importorskip("array_api_strict")
        return ["array_api_strict", "array-api-strict", "strict", strict]
    return ["numpy", "np", "NumPy", "array_api_compat.numpy", np,
            pytest.importorskip("array_api_compat.numpy")]


@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "torch", "jax", "dask"])
def test_every_spelling_resolves_to_one_backend(name):
    """Library names, the library's module and its array-api-compat namespace all give
    the same Backend (resolved by identity), and it survives pickling."""
    if name == "jax":
        enable_jax_x64()
    resolved = [_backend.resolve_backend(spec) for spec in _spellings(name)]
    assert {b.name for b in resolved} == {name}
    assert len({id(b.xp) for b in resolved}) == 1
    assert all(b == resolved[0] for b in resolved)
    back = pickle.loads(pickle.dumps(resolved[0]))
    assert back == resolved[0]
    # an array the backend makes belongs to it (so the model accepts it)
    x = _backend.to_device(np.ones((2, 2)), backend=resolved[0])
    assert _backend.backend_of(x).name == name


def test_bare_torch_module_builds_a_model_that_takes_torch_tensors():
    torch = pytest.importorskip("torch")
    X = torch.asarray(np.random.default_rng(0).normal(size=(16, 3)))
    y = torch.asarray(np.arange(16) % 2)
    model = MLP([3, 4, 2], backend=torch, dtype="float64", seed=0)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    proba = model.predict_proba(X)
    assert isinstance(proba, torch.Tensor) and proba.dtype == torch.float64


def test_unknown_names_and_modules_are_value_errors():
    with pytest.raises(ValueError, match="The 'backend' parameter must be one of"):
        _backend.resolve_backend("no_such_library_xyz")
    with pytest.raises(ValueError, match="The 'backend' parameter must be one of"):
        _backend.resolve_backend("torch; rm -rf /")
    with pytest.raises(ValueError, match="has no asarray/matmul"):
        _backend.resolve_backend("json")
    with pytest.raises(ValueError, match="has no asarray/matmul"):
        _backend.resolve_backend(types)
    with pytest.raises(ValueError, match="of type int"):
        _backend.resolve_backend(3)


def test_any_namespace_is_stored_by_module_name(monkeypatch):
    """A namespace mlpx does not know by name is kept as its module name and imported
    again by that name (pickling a model on it works)."""
    ns = types.ModuleType("mlpx_test_namespace")
    ns.asarray = np.asarray
    ns.matmul = np.matmul
    monkeypatch.setitem(sys.modules, "mlpx_test_namespace", ns)
    backend = _backend.resolve_backend(ns)
    assert backend.name == "mlpx_test_namespace"
    assert _backend.resolve_backend("mlpx_test_namespace") == backend
    model = MLP([2, 3, 2], backend=ns, seed=0)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.backend == backend
    assert_array(clone.predict_proba(np.ones((1, 2))), model.predict_proba(np.ones((1, 2))),
                 rtol=0)


@pytest.mark.parametrize("name,module,package", [
    ("torch", "torch", "pip install torch"),
    ("jax", "jax.numpy", "pip install jax"),
    ("dask", "dask.array", "pip install 'dask[array]'"),
    ("array_api_strict", "array_api_strict", "pip install array-api-strict"),
])
def test_a_missing_library_names_the_package_to_install(monkeypatch, name, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(ImportError, match=f"backend='{name}' needs the .* package, which is "
                                          "not installed") as info:
        MLP([2, 2], backend=name)
    assert package in str(info.value)


def test_pickling_a_trained_model_works_on_every_backend(backend):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(24, 3))
    y = np.arange(24) % 3
    model = MLP([3, 5, 3], activation="tanh", dropout=0.2, backend=backend,
                dtype="float64", seed=0)
    model.fit(X, y, epochs=2, batch_size=8, optimizer="adam", verbose=0)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.backend == model.backend
    assert_array(clone.predict_proba(X), model.predict_proba(X), backend=backend, rtol=0)
    # and both keep training identically (optimizer state and generators came along)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    clone.fit(X, y, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(clone.params, model.params):
        assert_array(a, b, backend=backend, rtol=0)


# ---------------------------------------------------------------------------- dtypes
def test_jax_float64_without_x64_is_an_error_naming_the_flag():
    jax = pytest.importorskip("jax")
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="jax_enable_x64"):
            MLP([2, 3, 2], backend="jax", dtype="float64")
        model = MLP([2, 3, 2], backend="jax", dtype="float32", seed=0)  # float32 is fine
        assert all(str(p.dtype) == "float32" for p in model.params)
    with jax.enable_x64(True):
        model = MLP([2, 3, 2], backend="jax", dtype="float64", seed=0)
        assert all(str(p.dtype) == "float64" for p in model.params)


def test_check_dtype_reports_what_the_backend_really_made():
    ns = types.SimpleNamespace(float32="f32", float64="f64",
                               asarray=lambda v, dtype, device: types.SimpleNamespace(
                                   dtype="f32"))
    fake = _backend.Backend("somelib", ns, "cpu")
    assert _backend.check_dtype(fake, "float32") == "float32"
    with pytest.raises(ValueError, match="does not keep float64 .asking for it gave f32"):
        _backend.check_dtype(fake, "float64")
    with pytest.raises(ValueError, match="The 'dtype' parameter must be one of"):
        _backend.check_dtype(fake, "float16")


# ---------------------------------------------------------------------------- 2023.12
@pytest.fixture
def strict_2023():
    strict = pytest.importorskip("array_api_strict")
    with strict.ArrayAPIStrictFlags(api_version="2023.12"):
        yield _backend.resolve_backend("array_api_strict")


def test_activations_and_losses_run_on_the_2023_12_standard(strict_2023):
    """No Python scalars where the 2023.12 standard wants arrays (maximum, minimum,
    where): every activation and loss runs forward and backward on array-api-strict
    pinned to 2023.12, with the values of the current standard."""
    xp = strict_2023.xp
    assert xp.__array_api_version__ == "2023.12"
    x0 = np.linspace(-3.0, 3.0, 12).reshape(3, 4)
    x = xp.asarray(x0)
    ref = _backend.resolve_backend("numpy")
    for name in sorted(set(ACTIVATIONS)):
        act = get_activation(name)
        y = act.forward(x, xp=xp)
        dx = act.backward(xp.ones_like(x), x, y, xp=xp)
        y_ref = act.forward(x0, xp=ref.xp)
        assert_array(y, y_ref, rtol=1e-12, atol=1e-15)
        assert_array(dx, act.backward(np.ones_like(x0), x0, y_ref, xp=ref.xp), rtol=1e-12,
                     atol=1e-15)
    Y0 = np.eye(4)[[0, 1, 2]]
    for name in sorted(set(LOSSES)):
        loss = get_loss(name)
        out = get_activation(loss.default_output)
        value, grad = loss.value_and_grad(x, xp.asarray(Y0), output=out, xp=xp)
        v_ref, g_ref = loss.value_and_grad(x0, Y0, output=out, xp=ref.xp)
        assert_array(value, v_ref, rtol=1e-12)
        assert_array(grad, g_ref, rtol=1e-12, atol=1e-15)


def test_a_model_trains_on_the_2023_12_standard(strict_2023):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = np.arange(20) % 2
    for act in ("relu", "elu", "softplus", "hard_sigmoid", "hard_tanh", "prelu"):
        model = MLP([3, 4, 2], activation=act, backend=strict_2023, dtype="float64",
                    seed=0)
        model.fit(X, y, epochs=1, batch_size=10, verbose=0)
        ref = MLP([3, 4, 2], activation=act, dtype="float64", seed=0)
        ref.fit(X, y, epochs=1, batch_size=10, verbose=0)
        for a, b in zip(model.params, ref.params):
            assert_array(a, b, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------- MLPX_FAST
def test_fast_path_predicate_follows_the_switch():
    strict = _backend.resolve_backend("array_api_strict").xp
    assert _backend.fast_path(np) == "numpy" and _backend.fast_path(strict) is None
    old = _backend.set_fast_enabled(False)
    try:
        assert _backend.fast_path(np) is None
        assert not mlpx._fast.enabled()
    finally:
        _backend.set_fast_enabled(old)
    assert _backend.fast_path(np) == "numpy" and mlpx._fast.enabled()


def test_switched_off_fast_paths_leave_only_the_generic_path():
    """With fast paths off: no fast training step, the optimizer returns new arrays
    (no in-place update), GELU uses the generic normal CDF and an embedding's gradient
    no scatter-add; every result equals the fast path's."""
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(3, 2)), rng.normal(size=2)]
    grads = [rng.normal(size=(3, 2)), rng.normal(size=2)]
    opt = get_optimizer("adam", lr=0.1)
    x = np.linspace(-4.0, 4.0, 9)
    ids, dy = np.array([1, 1, 0, 4]), rng.normal(size=(4, 2))
    on = {}
    off = {}
    for flag, out in ((True, on), (False, off)):
        old = _backend.set_fast_enabled(flag)
        try:
            model = MLP([2, 3, 2], seed=0).compile("adam")
            out["step"] = model._fast_step is not None and model._fast_step(
                model, np.ones((1, 2), np.float32), np.eye(2, dtype=np.float32)[:1])
            ps = [p.copy() for p in params]
            state = opt.init_state(ps, xp=np)
            new = opt.step(ps, grads, state, xp=np)
            out["same_objects"] = all(a is b for a, b in zip(new, ps))
            out["params"] = new
            out["ndtr"] = mlpx.activations._fast_ndtr(np)
            out["gelu"] = get_activation("gelu").forward(x, xp=np)
            out["embedding"] = embedding_grad(ids, dy, 5, xp=np, fast=True)
        finally:
            _backend.set_fast_enabled(old)
    assert on["step"] is not None and on["step"] is not False and on["same_objects"]
    assert off["step"] is None or off["step"] is False
    assert not off["same_objects"] and off["ndtr"] is None
    for a, b in zip(on["params"], off["params"]):
        assert_array(a, b, rtol=1e-15)
    assert_array(on["gelu"], off["gelu"], rtol=1e-14)
    assert_array(on["embedding"], off["embedding"], rtol=1e-15)


def test_mlpx_fast_0_in_the_environment_switches_every_path_off(tmp_path):
    code = ("import numpy as np; from mlpx import _backend, _fast, MLP; "
            "from mlpx.optimizers import get_optimizer; "
            "p = [np.ones(3)]; o = get_optimizer('sgd', lr=0.1); "
            "new = o.step(p, [np.ones(3)], o.init_state(p, xp=np), xp=np); "
            "m = MLP([2, 3, 2]).compile('adam'); X = np.ones((1, 2), np.float32); "
            "print(_backend.fast_path(np), _fast.enabled(), new[0] is p[0], "
            "m._fast_step is None or m._fast_step(m, X, X) is None)")
    env = {**os.environ, "MLPX_FAST": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out == ["None", "False", "False", "True"]


# ---------------------------------------------------------------------------- Dask
def test_dask_task_graph_of_the_state_stays_bounded():
    """The parameters and optimizer state are persisted once per step: their task graphs
    hold the computed chunks only, however many steps ran (no growth per epoch)."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    model = MLP([3, 6, 2], backend=da, dtype="float64", seed=0, dropout=0.1)

    def sizes():
        arrays = list(model.params)
        for slot in model.state_.opt_state["slots"].values():
            arrays += list(slot)
        return [len(a.__dask_graph__()) for a in arrays]

    model.fit(X, y, epochs=1, batch_size=10, optimizer="adam", verbose=0)  # 4 steps
    after_one = sizes()
    model.fit(X, y, epochs=3, batch_size=10, verbose=0)  # 12 more
    assert sizes() == after_one
    assert max(after_one) <= 2  # one chunk each (plus nothing to compute)
    loss, _ = model.train_step(model.to_device_X(X[:10]),
                               model.to_device_y(y[:10], 10)[0])
    assert len(loss.__dask_graph__()) <= 2 and sizes() == after_one


# ---------------------------------------------------------------------------- devices
def test_device_picks_where_parameters_and_outputs_live():
    strict = pytest.importorskip("array_api_strict")
    dev = strict.Device("device1")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 3)), np.arange(12) % 2
    for spec in ("device1", dev):
        model = MLP([3, 4, 2], backend="array_api_strict", device=spec, dtype="float64",
                    seed=0)
        assert model.backend.device == dev
        model.fit(X, y, epochs=1, batch_size=4, optimizer="adam", verbose=0)
        assert all(p.device == dev for p in model.params)
        assert model.predict_proba(X).device == dev
        # data on the device is taken as it is; data on another device is refused
        assert model.predict_proba(strict.asarray(X, device=dev)).device == dev
        with pytest.raises(ValueError, match="on device"):
            model.predict_proba(strict.asarray(X))
        clone = pickle.loads(pickle.dumps(model))
        assert clone.backend.device == dev and all(p.device == dev for p in clone.params)
    ref = MLP([3, 4, 2], backend="array_api_strict", dtype="float64", seed=0)
    ref.fit(X, y, epochs=1, batch_size=4, optimizer="adam", verbose=0)
    for a, b in zip(model.params, ref.params):
        assert_array(a, b, rtol=0)


def test_a_device_the_library_lacks_is_a_value_error():
    with pytest.raises(ValueError, match="'cpu' or None for backend='numpy'"):
        MLP([2, 2], device="cuda")
    strict = pytest.importorskip("array_api_strict")
    assert strict is not None
    with pytest.raises(ValueError, match="The 'device' parameter"):
        MLP([2, 2], backend="array_api_strict", device="no_such_device")
    torch = pytest.importorskip("torch")
    assert MLP([2, 2], backend="torch", device="cpu").backend.device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="backend='torch' cannot create an array on"):
            MLP([2, 2], backend="torch", device="cuda:0")


@pytest.mark.gpu
def test_torch_cuda_tensors_stay_on_the_gpu():  # pragma: no cover - GPU only
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch sees no CUDA device")
    X = torch.randn(32, 4, dtype=torch.float64, device="cuda")
    y = torch.arange(32, device="cuda") % 3
    model = MLP([4, 8, 3], backend="torch", device="cuda", dtype="float64", seed=0)
    model.fit(X, y, epochs=2, batch_size=8, optimizer="adam", verbose=0)
    assert all(p.device.type == "cuda" for p in model.params)
    assert model.predict_proba(X).device.type == "cuda"
    ref = MLP([4, 8, 3], dtype="float64", seed=0)
    ref.fit(mlpx.to_numpy(X), mlpx.to_numpy(y), epochs=2, batch_size=8, optimizer="adam",
            verbose=0)
    for a, b in zip(model.params, ref.params):
        assert_array(a, b, rtol=1e-10, atol=1e-12)
