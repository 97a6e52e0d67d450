"""mlpx._fast._numba: numba's fused kernels give the NumPy step's numbers bit for bit.

Two models built with the same seed take the same steps through the NumPy fast step,
one with the fused kernels (``_policy.fused_kernels()``) and one with them switched off;
losses, logits, every parameter and every optimizer slot must be bitwise equal. Skipped
without numba (the ``numba`` extra).
"""

import contextlib

import numpy as np
import pytest

from mlpx import MLP, Sequential, _fast
from mlpx._fast import _numba, _policy
from mlpx.layers import ActivationLayer, Dense, Dropout

numba = pytest.importorskip("numba")

OPTIMIZERS = {
    "adam": {"name": "adam", "lr": 1e-2},
    "adam_l2": {"name": "adam", "lr": 1e-2, "weight_decay": 1e-2},
    "adamw": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.05},
    "momentum": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "nesterov_wd": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                    "weight_decay": 1e-3},
    "adam_schedule": {"name": "adam", "lr": {"name": "step", "step_size": 2, "gamma": 0.5,
                                             "lr": 0.01}},
}


@contextlib.contextmanager
def numba_kernels(flag):
    old = _policy.set_numba_enabled(flag)
    try:
        yield
    finally:
        _policy.set_numba_enabled(old)


class CountingKernels:
    """Wraps the kernels and counts calls, so a silent fall-back fails the test."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = {}

    def __getattr__(self, name):
        fn = getattr(self.inner, name)

        def wrapped(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            return fn(*args)
        return wrapped


if not _fast.enabled():
    pytest.skip("fast paths are switched off (MLPX_FAST=0)", allow_module_level=True)


@pytest.fixture(autouse=True)
def small_models_too(monkeypatch):
    """The models here are small: let them use the kernels (whatever MLPX_NUMBA says)."""
    monkeypatch.setattr(_policy, "FUSED_MIN_PARAMS", 0)
    old = _policy.set_numba_enabled(True)
    yield
    _policy.set_numba_enabled(old)


@pytest.fixture
def counting(monkeypatch):
    k = CountingKernels(_numba.kernels())
    real = _policy.fused_kernels
    monkeypatch.setattr(_policy, "fused_kernels",
                        lambda n=None: None if real(n) is None else k)
    return k


def build(act, dtype, optimizer, alpha=0.0, dropout=0.0):
    layers = []
    for w in (17, 9):
        layers.append(Dense(w, init="he_normal"))
        layers.append(ActivationLayer(act))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(4))
    model = Sequential(layers, loss="cross_entropy", alpha=alpha, n_features=6,
                       dtype=dtype, seed=3)
    return model.compile(OPTIMIZERS[optimizer])


def batches(dtype, sizes=(32, 32, 13, 32, 5, 32, 32)):
    out = []
    for i, n in enumerate(sizes):
        rng = np.random.default_rng(i)
        X = (rng.standard_normal((n, 6)) * 2.0).astype(dtype)
        Y = np.eye(4, dtype=dtype)[rng.integers(0, 4, n)]
        out.append((X, Y))
    return out


def run(model, data):
    out = []
    for X, Y in data:
        loss, z = model.train_step(X, Y)
        out.append((np.asarray(loss).copy(), z.copy()))
    return out


def assert_bitwise(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes(), f"max difference {np.max(np.abs(a - b))}"


def assert_models_bitwise(m1, m2, out1, out2):
    for (l1, z1), (l2, z2) in zip(out1, out2):
        assert_bitwise(l1, l2)
        assert_bitwise(z1, z2)
    for p1, p2 in zip(m1.params, m2.params):
        assert_bitwise(p1, p2)
    s1, s2 = m1.optimizer_state_, m2.optimizer_state_
    assert s1["step"] == s2["step"]
    for name in s1["slots"]:
        for a, b in zip(s1["slots"][name], s2["slots"][name]):
            assert_bitwise(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
def test_fused_step_is_bitwise_the_numpy_step(dtype, optimizer, act, alpha, counting):
    data = batches(dtype)
    fused = build(act, dtype, optimizer, alpha)
    plain = build(act, dtype, optimizer, alpha)
    assert fused._fast_step is not None
    out_fused = run(fused, data)
    n_calls = sum(counting.calls.values())
    with numba_kernels(False):
        out_plain = run(plain, data)
    assert sum(counting.calls.values()) == n_calls  # switched off: not called
    assert_models_bitwise(fused, plain, out_fused, out_plain)
    # the kernels did run: one update per parameter and step, ReLU's backward per layer
    name = "sgd" if OPTIMIZERS[optimizer]["name"] == "sgd" else "adam"
    assert counting.calls.get(name) == 6 * len(data)
    # ReLU's backward (with the bias gradient's sums: a Dense with bias below each)
    relu_calls = 2 * len(data) if act == "relu" else 0
    assert counting.calls.get("relu_backward_sum", 0) == relu_calls
    assert counting.calls.get("relu_forward", 0) == relu_calls
    assert counting.calls.get(f"{act}_backward", 0) == (0 if act == "relu"
                                                        else 2 * len(data))


def test_fused_step_with_dropout_is_bitwise(counting):
    data = batches("float32")
    fused = build("relu", "float32", "adamw", dropout=0.25)
    plain = build("relu", "float32", "adamw", dropout=0.25)
    out_fused = run(fused, data)
    with numba_kernels(False):
        out_plain = run(plain, data)
    assert_models_bitwise(fused, plain, out_fused, out_plain)
    assert counting.calls["adam"] == 6 * len(data)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_fit_is_bitwise(dtype, counting):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8)).astype(dtype)
    y = rng.integers(0, 3, 300)
    runs = []
    for flag in (True, False):
        with numba_kernels(flag):
            model = MLP([8, 16, 16, 3], dtype=dtype, seed=1)
            hist = model.fit(X, y, epochs=3, batch_size=64, optimizer="adam", verbose=0)
            runs.append((model, hist.history["loss"]))
    (m1, h1), (m2, h2) = runs
    assert h1 == h2
    for p1, p2 in zip(m1.params, m2.params):
        assert_bitwise(p1, p2)
    assert counting.calls["adam"] > 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_sklearn_fit_is_bitwise(dtype, counting):
    from mlpx.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 10)).astype(dtype)
    y = rng.integers(0, 3, 400)
    fits = []
    for flag in (True, False):
        with numba_kernels(flag):
            fits.append(MLPClassifier((32, 16), max_iter=4, batch_size=50, alpha=1e-4,
                                      random_state=0).fit(X, y))
    a, b = fits
    assert a.loss_curve_ == b.loss_curve_
    for c1, c2 in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert_bitwise(c1, c2)
    assert counting.calls["adam"] > 0


def test_numpy_float64_scalar_on_float32_keeps_numpy(counting):
    """NumPy computes ``float32_array * np.float64(x)`` in float64; the kernels do not,
    so such a call takes the NumPy update (and still gives its numbers)."""
    data = batches("float32")
    fused = build("relu", "float32", "adam")
    plain = build("relu", "float32", "adam")
    hyper = {"lr": np.float64(1e-2), "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
             "weight_decay": 0.0}
    out = []
    for model, flag in ((fused, True), (plain, False)):
        with numba_kernels(flag):
            out.append([model._fast_step(model, X, Y, hyper=dict(hyper))
                        for X, Y in data])
    assert "adam" not in counting.calls
    assert_models_bitwise(fused, plain, *out)
    # the same value as a Python float next: the kernels again, still bit for bit
    more = []
    for model, flag in ((fused, True), (plain, False)):
        with numba_kernels(flag):
            more.append([model._fast_step(model, X, Y, hyper=dict(hyper, lr=1e-2))
                         for X, Y in data])
    assert counting.calls["adam"] == 6 * len(data)
    assert_models_bitwise(fused, plain, *more)


def test_scalar_as():
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    assert _numba.scalar_as(0.1, f32) == np.float32(0.1)
    assert type(_numba.scalar_as(0.1, f32)) is np.float32
    assert type(_numba.scalar_as(1, f64)) is np.float64
    assert _numba.scalar_as(np.float32(0.1), f32) == np.float32(0.1)
    assert _numba.scalar_as(np.float64(0.1), f32) is None
    assert _numba.scalar_as(np.float64(0.1), f64) == 0.1
    assert _numba.scalar_as("0.1", f64) is None


def test_switches():
    with numba_kernels(True):
        assert _policy.fused_kernels() is _numba.kernels() is not None
        with _fast.disabled():
            assert _policy.fused_kernels() is None
    with numba_kernels(False):
        assert _policy.fused_kernels() is None


def test_small_models_do_not_use_the_kernels(monkeypatch, counting):
    monkeypatch.setattr(_policy, "FUSED_MIN_PARAMS", 1000)
    assert _policy.fused_kernels(999) is None
    assert _policy.fused_kernels(1000) is not None
    small = build("relu", "float32", "adam")  # 6*17+17+17*9+9+9*4+4 = 321 parameters
    run(small, batches("float32"))
    assert counting.calls == {}
    monkeypatch.setattr(_policy, "FUSED_MIN_PARAMS", 321)
    run(small, batches("float32"))
    assert counting.calls["adam"] == 6 * 7


def test_relu_backward_without_bias_below(counting):
    """A bias-free Dense below a ReLU: the one-pass ReLU backward without the sums."""
    def layers():
        return [Dense(17, bias=False), ActivationLayer("relu"), Dense(9),
                ActivationLayer("relu"), Dense(4)]
    data = batches("float64")
    models = [Sequential(layers(), loss="cross_entropy", n_features=6, dtype="float64",
                         seed=3).compile("adam") for _ in range(2)]
    out1 = run(models[0], data)
    with numba_kernels(False):
        out2 = run(models[1], data)
    assert_models_bitwise(models[0], models[1], out1, out2)
    assert counting.calls["relu_backward"] == len(data)
    assert counting.calls["relu_backward_sum"] == len(data)


def test_relu_forward_special_values():
    k = _numba.kernels()
    for dt in (np.float32, np.float64):
        x = np.array([-0.0, 0.0, np.nan, -np.nan, -1.0, 1.0, np.inf, -np.inf] * 5, dtype=dt)
        ref = np.maximum(x, np.zeros_like(x))
        out = np.empty_like(x)
        k.relu_forward(x, out, dt(0))
        assert_bitwise(out, ref)
        k.relu_forward(x, x, dt(0))  # in place, as the step runs it
        assert_bitwise(x, ref)


def test_relu_backward_special_values():
    k = _numba.kernels()
    for dt in (np.float32, np.float64):
        g = np.array([1.0, -2.0, np.inf, np.nan, -0.0, 3.0, -np.inf, 5.0], dtype=dt)
        y = np.array([1.0, 0.0, -1.0, 2.0, 1.0, np.nan, 0.5, -0.0], dtype=dt)
        ref = g * (y > 0)
        g2 = g.copy().reshape(2, 4)
        k.relu_backward(g, y, dt(1), dt(0))
        assert_bitwise(g, ref)
        sums = np.empty(4, dtype=dt)
        k.relu_backward_sum(g2, y.reshape(2, 4), dt(1), dt(0), sums)
        assert_bitwise(g2, ref.reshape(2, 4))
        assert_bitwise(sums, np.sum(ref.reshape(2, 4), axis=0))


@pytest.mark.parametrize("case", ["sgd_momentum", "sgd_nesterov_wd", "adam", "adam_f64",
                                  "adamw", "sched_exp", "tanh_l2", "dropout",
                                  "early_stopping", "resume", "sk_adam",
                                  "sk_sgd_momentum", "sk_sgd_nesterov_invscaling",
                                  "sk_reg_adam", "sk_weighted_adam", "sk_weighted_sgd"])
def test_golden_runs_with_the_kernels_on_every_model(case, counting):
    """The golden runs (tests/test_golden.py) are small models, which do not use the
    kernels by default (FUSED_MIN_PARAMS); here they do, and still give the recorded
    bits."""
    import os

    from tests.golden_cases import CASES

    pytest.importorskip("sklearn")
    path = os.path.join(os.path.dirname(__file__), "data", "golden.npz")
    with np.load(path) as data:
        expected = {k.split("/", 1)[1]: data[k] for k in data.files
                    if k.startswith(case + "/")}
    got = CASES[case]()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert_bitwise(np.asarray(got[key]), value)
    assert counting.calls  # the kernels ran


def test_without_numba_the_step_is_the_numpy_step(monkeypatch, recwarn):
    """numba missing (simulated): no kernels, no warning, the same training."""
    import sys

    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    monkeypatch.setattr(_numba, "_KERNELS", None)
    monkeypatch.setattr(_numba, "_IMPORT_FAILED", False)
    assert _numba.kernels() is None
    assert _policy.fused_kernels() is None
    data = batches("float64")
    a, b = build("relu", "float64", "adam"), build("relu", "float64", "adam")
    out_a = run(a, data)
    with numba_kernels(False):
        out_b = run(b, data)
    assert_models_bitwise(a, b, out_a, out_b)
    assert not [w for w in recwarn if "numba" in str(w.message)]


def test_broken_numba_warns_once_and_is_not_used(monkeypatch):
    monkeypatch.setattr(_numba, "_KERNELS", None)
    monkeypatch.setattr(_numba, "_IMPORT_FAILED", False)

    def broken(k):
        raise RuntimeError("no compiler")
    monkeypatch.setattr(_numba, "_warm_up", broken)
    with pytest.warns(UserWarning, match="could not compile"):
        assert _numba.kernels() is None
    assert _numba.kernels() is None  # not tried again


def test_bias_relu_special_values():
    k = _numba.kernels()
    for dt in (np.float32, np.float64):
        y = np.array([[-0.0, 0.0, np.nan, -np.nan], [-1.0, 1.0, np.inf, -np.inf],
                      [2.0, -3.0, 0.5, 1e30]], dtype=dt)
        b = np.array([0.0, -0.0, 1.0, -np.inf], dtype=dt)
        with np.errstate(invalid="ignore"):
            ref = np.maximum(y + b, np.asarray(0.0, dtype=dt))  # Dense, then the ReLU
        k.bias_relu(y, b, dt(0))
        assert_bitwise(y, ref)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_inference_is_bitwise(dtype, counting):
    model = build("relu", dtype, "adam")
    X = (np.random.default_rng(1).standard_normal((40, 6)) * 3).astype(dtype)
    fast = [model.predict_proba(X, batch_size=16), model.decision_function(X)]
    assert counting.calls["bias_relu"] == 2 * 3 + 2
    with numba_kernels(False):
        plain = [model.predict_proba(X, batch_size=16), model.decision_function(X)]
    with _fast.disabled():
        generic = [model.predict_proba(X, batch_size=16), model.decision_function(X)]
    for a, b, c in zip(fast, plain, generic):
        assert_bitwise(a, b)
        assert_bitwise(a, c)
