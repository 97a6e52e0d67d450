"""mlpx._fast.torch_step: the PyTorch training step equals the generic torch step.

Two models built with the same seed on ``array_api_compat.torch`` take the same steps,
one through :class:`mlpx._fast.torch_step.TorchTrainStep` and one with fast paths
switched off (the generic Array API step on the same tensors). Tolerance: float64 to
1e-12, float32 to rtol 2e-5 / atol 2e-6 after several steps (BLAS accumulates the bias
and the SGD update inside the products, the fused optimizer kernels round once per
element). The updates are checked both through PyTorch's fused optimizer kernels and
through the chains of in-place operations (:func:`set_fused_updates`).
"""

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

from mlpx import MLP, Sequential, _backend, _fast
from mlpx.layers import ActivationLayer, BatchNorm, Dense, Dropout, Maxout, PReLU

from .helpers import assert_array
from .test_fast import (
    OPTIMIZERS,
    batches_for,
    data,
    interrupt_every_op,
    mlp_layers,
    sample_weights,
    snapshot,
)

torch = pytest.importorskip("torch")
torch_step = pytest.importorskip("mlpx._fast.torch_step")

TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-12, atol=1e-13)}
CUDA = torch.cuda.is_available()


@pytest.fixture(params=[True, False], ids=["fused", "inplace"])
def fused(request):
    """Run the test with PyTorch's fused optimizer kernels, then without them."""
    if request.param and not torch_step._HAS_FUSED:  # pragma: no cover - old torch
        pytest.skip("this torch has no fused optimizer kernels")
    old = torch_step.set_fused_updates(request.param)
    try:
        yield request.param
    finally:
        torch_step.set_fused_updates(old)


def make(layers_fn, *, loss="cross_entropy", output=None, alpha=0.0, optimizer="sgd",
         dtype="float32", device=None):
    model = Sequential(layers_fn(), loss=loss, output=output, alpha=alpha, n_features=6,
                       backend="torch", device=device, dtype=dtype, seed=3)
    model.compile(OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer)
    return model


def on_device(model, *arrays):
    return [None if a is None else _backend.to_device(a, backend=model.backend)
            for a in arrays]


def run_steps(model, batches, *, fast, weights=None):
    ctx = contextlib.nullcontext() if fast else _fast.disabled()
    out = []
    with ctx:
        for i, (X, Y) in enumerate(batches):
            w = None if weights is None else weights[i]
            X, Y, w = on_device(model, X, Y, w)
            loss, z = model.train_step(X, Y, w)
            assert isinstance(loss, torch.Tensor) and loss.ndim == 0  # no host read
            assert z.device == X.device
            out.append((float(loss), _backend.to_numpy(z).copy()))
    return out


def assert_same(fast_model, ref_model, fast_out, ref_out, dtype):
    tol = TOL[dtype]
    for (lf, zf), (lr, zr) in zip(fast_out, ref_out):
        np.testing.assert_allclose(lf, lr, **tol)
        np.testing.assert_allclose(zf, zr, **tol)
    for pf, pr in zip(fast_model.params, ref_model.params):
        assert_array(pf, pr, backend=fast_model.backend, dtype=dtype, **tol)
    sf, sr = fast_model.optimizer_state_, ref_model.optimizer_state_
    assert sf["step"] == sr["step"]
    assert list(sf["slots"]) == list(sr["slots"])
    for name in sf["slots"]:
        for a, b in zip(sf["slots"][name], sr["slots"][name]):
            assert_array(a, b, backend=fast_model.backend, dtype=dtype, **tol)


def check_equal(layers_fn, *, loss="cross_entropy", output=None, alpha=0.0, optimizer="sgd",
                dtype="float32", weights=False, k=4, device=None):
    fast = make(layers_fn, loss=loss, output=output, alpha=alpha, optimizer=optimizer,
                dtype=dtype, device=device)
    ref = make(layers_fn, loss=loss, output=output, alpha=alpha, optimizer=optimizer,
               dtype=dtype, device=device)
    step = fast._fast_step
    assert type(step) is torch_step.TorchTrainStep, _fast.unsupported_reason(fast)
    batches = batches_for(loss, dtype, k=k)
    w = sample_weights(batches, dtype) if weights else None
    calls = []
    orig = type(step).__call__

    def spy(self, *a, **kw):
        r = orig(self, *a, **kw)
        calls.append(r is not None)
        return r
    type(step).__call__ = spy
    try:
        out_f = run_steps(fast, batches, fast=True, weights=w)
    finally:
        type(step).__call__ = orig
    assert len(calls) == len(batches) and all(calls), "the torch step did not run"
    out_r = run_steps(ref, batches, fast=False, weights=w)
    assert_same(fast, ref, out_f, out_r, dtype)
    return fast, ref


# ---------------------------------------------------------------------------- selection
def test_torch_models_select_the_torch_step():
    model = MLP([4, 5, 3], backend="torch", seed=0).compile("adam")
    assert _backend.is_torch_namespace(model.backend.xp)
    assert not _backend.is_torch_namespace(_backend.resolve_backend("numpy").xp)
    assert _backend.fast_path(model.backend.xp) == "torch"
    assert _fast.unsupported_reason(model) is None
    assert type(model._fast_step) is torch_step.TorchTrainStep
    assert model._fast_step.kind == "torch"
    # the namespace itself, as well as the name, selects it
    import array_api_compat.torch as xpt

    model = MLP([4, 5, 3], backend=xpt, seed=0).compile("sgd")
    assert type(model._fast_step) is torch_step.TorchTrainStep


def test_fused_kernels_are_tried_once_per_device_and_dtype(monkeypatch):
    """The fused optimizer kernels are used only where they ran on a probe; a torch
    without them for a device takes the in-place chains (same numbers)."""
    cpu = torch.device("cpu")
    assert torch_step._fused_kernels_run(cpu, torch.float64) == torch_step._HAS_FUSED
    monkeypatch.setattr(torch_step, "_PROBED", {(str(cpu), torch.float32): False})
    fast, _ = check_equal(mlp_layers("relu"), optimizer="adam_wd", alpha=0.01)
    assert fast._fast_step.ops.fused_kernels is False

    def missing(*a, **k):
        raise RuntimeError("Could not run 'aten::_fused_adam_' with arguments from the "
                           "'CPU' backend")
    monkeypatch.setattr(torch_step, "_PROBED", {})
    monkeypatch.setattr(torch, "_fused_adam_", missing)
    assert torch_step._fused_kernels_run(cpu, torch.float32) is False


# ---------------------------------------------------------------------------- equality
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_optimizers_equal_generic(optimizer, alpha, fused):
    check_equal(mlp_layers("relu"), optimizer=optimizer, alpha=alpha)


@pytest.mark.parametrize("optimizer", ["nesterov_wd", "adam_wd", "adamw", "rmsprop"])
def test_optimizers_equal_generic_float64(optimizer, fused):
    check_equal(mlp_layers("tanh"), optimizer=optimizer, alpha=0.01, dtype="float64")


@pytest.mark.parametrize("act", list(_fast.NUMPY_ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_activations_equal_generic(act, dtype):
    check_equal(mlp_layers(act), optimizer="adam", alpha=0.01, dtype=dtype)


@pytest.mark.parametrize("loss,k", [("cross_entropy", 4), ("binary_cross_entropy", 3),
                                    ("mse", 2)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_losses_equal_generic(loss, k, optimizer, dtype):
    check_equal(mlp_layers("tanh", k=k), loss=loss, optimizer=optimizer, k=k, dtype=dtype)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_sample_weight_equal_generic(loss, optimizer):
    check_equal(mlp_layers("relu"), loss=loss, optimizer=optimizer, weights=True, alpha=0.01)
    check_equal(mlp_layers("relu"), loss=loss, optimizer=optimizer, weights=True,
                dtype="float64")


@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_dropout_equal_generic(act, optimizer):
    """Same seed, same masks: the step draws from the model's generator as Dropout does."""
    check_equal(mlp_layers(act, dropout=0.3), optimizer=optimizer)
    check_equal(mlp_layers(act, dropout=0.3), optimizer=optimizer, dtype="float64")


def test_no_bias_equal_generic():
    check_equal(mlp_layers("relu", bias=False), optimizer="momentum", alpha=0.01)
    check_equal(mlp_layers("sigmoid", bias=False), optimizer="adam", dtype="float64")


def test_stacked_elementwise_layers_equal_generic():
    """Dropout straight after Dense, two activations in a row, Dropout(0): nothing
    needed is overwritten, and p=0 draws nothing (as Dropout itself)."""
    def build():
        return [Dense(8), Dropout(0.2), ActivationLayer("tanh"), ActivationLayer("sigmoid"),
                Dense(8), ActivationLayer("leaky_relu", alpha=0.1), Dropout(0.1), Dense(8),
                Dropout(0.0), ActivationLayer("relu"), ActivationLayer("identity"), Dense(4)]
    check_equal(build, optimizer="adam", alpha=0.01)
    check_equal(build, optimizer="sgd_wd", alpha=0.01, dtype="float64")


def test_fit_uses_the_step_and_equals_generic():
    """Whole epochs through fit (shuffling, a last partial batch, history) agree."""
    rng = np.random.default_rng(0)
    X = rng.random((203, 10)).astype(np.float32)
    y = rng.integers(0, 3, 203)
    runs = []
    for fast in (True, False):
        model = MLP([10, 16, 16, 3], backend="torch", seed=0, alpha=1e-3)
        model.compile({"name": "adam", "lr": 1e-2})
        calls = []
        if fast:
            step = model._fast_step
            assert type(step) is torch_step.TorchTrainStep
            model._fast_step = lambda *a, _s=step, _c=calls, **k: _c.append(1) or _s(*a, **k)
        ctx = contextlib.nullcontext() if fast else _fast.disabled()
        with ctx:
            hist = model.fit(X, y, epochs=3, batch_size=32, verbose=0)
        assert len(calls) == (21 if fast else 0)  # 7 batches a epoch
        runs.append((model, hist))
    (mf, hf), (mr, hr) = runs
    np.testing.assert_allclose(hf["loss"], hr["loss"], rtol=2e-5)
    assert hf["accuracy"] == hr["accuracy"]
    for a, b in zip(mf.params, mr.params):
        assert_array(a, b, backend=mf.backend, rtol=2e-5, atol=2e-6)


# ---------------------------------------------------------------------------- coherence
def test_params_updated_in_place_and_set_params_seen():
    model = make(mlp_layers("relu"), optimizer="adam")
    ref = make(mlp_layers("relu"), optimizer="adam")
    before = [id(p) for p in model.params]
    X, Y = on_device(model, *data(16, 6, 4, "cross_entropy", "float32"))
    model.train_step(X, Y)
    assert [id(p) for p in model.params] == before  # in place: model.params stays right
    assert not any(p.requires_grad for p in model.params)
    new = [_backend.to_numpy(p) * 0.5 for p in model.params]
    model.set_params(new)
    ref.set_params(new)
    ref.compile(OPTIMIZERS["adam"])
    model.compile(OPTIMIZERS["adam"])
    with _fast.disabled():
        ref.train_step(X, Y)
    model.train_step(X, Y)
    for a, b in zip(model.params, ref.params):
        assert_array(a, b, **TOL["float32"])


def test_inputs_the_step_does_not_take_fall_back():
    model = make(mlp_layers("relu"), optimizer="sgd")
    step = model._fast_step
    Xh, Yh = data(8, 6, 4, "cross_entropy", "float32")
    X, Y = on_device(model, Xh, Yh)
    assert step(model, Xh, Yh) is None                              # NumPy, not tensors
    assert step(model, X.double(), Y) is None                       # dtype
    assert step(model, X[:, :5], Y) is None                         # width
    assert step(model, X, Y[:, 0]) is None                          # 1-D targets
    assert step(model, X, Y, sample_weight=[1.0] * 8) is None       # not a tensor
    with _fast.disabled():
        assert step(model, X, Y) is None
    assert model.optimizer_state_["step"] == 0
    # a parameter autograd tracks is never written in place: the generic path takes it
    tracked = model.params[0].clone().requires_grad_(True)
    model.layers[0].params[0] = tracked
    assert step(model, X, Y) is None
    model.layers[0].params[0] = tracked.detach().t().contiguous().t()  # not contiguous
    assert step(model, X, Y) is None
    model.layers[0].params[0] = tracked.detach().clone()
    assert step(model, X, Y) is not None
    assert model.optimizer_state_["step"] == 1


def test_unusual_strides_and_host_inputs_still_train():
    """Non-contiguous inputs are fine for the products; the generic path agrees."""
    fast = make(mlp_layers("relu"), optimizer="momentum")
    ref = make(mlp_layers("relu"), optimizer="momentum")
    X, Y = on_device(fast, *data(16, 6, 4, "cross_entropy", "float32"))
    Xt = X.t().contiguous().t()  # column-major
    assert not Xt.is_contiguous()
    loss_f, _ = fast._fast_step(fast, Xt, Y)
    with _fast.disabled():
        loss_r, _ = ref.train_step(Xt, Y)
    np.testing.assert_allclose(float(loss_f), float(loss_r), **TOL["float32"])
    for a, b in zip(fast.params, ref.params):
        assert_array(a, b, **TOL["float32"])


# ---------------------------------------------------------------------------- fallback
@pytest.mark.parametrize("case", ["prelu", "maxout", "batchnorm", "gelu", "poisson",
                                  "mse_sigmoid", "activation_first"])
def test_unsupported_structures_train_on_the_generic_path(case):
    layers = {"prelu": lambda: [Dense(5), PReLU(), Dense(3)],
              "maxout": lambda: [Maxout(5, 2), Dense(3)],
              "batchnorm": lambda: [Dense(5), BatchNorm(), ActivationLayer("relu"),
                                    Dense(3)],
              "gelu": lambda: [Dense(5), ActivationLayer("gelu"), Dense(3)],
              "activation_first": lambda: [ActivationLayer("tanh"), Dense(5), Dense(3)],
              }.get(case, lambda: [Dense(5), ActivationLayer("relu"), Dense(3)])
    loss, output = {"poisson": ("poisson", None), "mse_sigmoid": ("mse", "sigmoid")}.get(
        case, ("cross_entropy", None))
    model = Sequential(layers(), loss=loss, output=output, n_features=4, backend="torch",
                       seed=0)
    model.compile("sgd")
    reason = _fast.unsupported_reason(model)
    assert reason is not None and _fast.structure_reason(model, "torch") == reason
    assert model._fast_step is None
    rng = np.random.default_rng(0)
    X = rng.random((8, 4)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)] if loss != "poisson" else \
        rng.integers(0, 3, (8, 3)).astype(np.float32)
    X, Y = on_device(model, X, Y)
    before = [_backend.to_numpy(p).copy() for p in model.params]
    loss_value, _ = model.train_step(X, Y)  # the generic path trains it
    assert np.isfinite(float(loss_value))
    assert any(not np.array_equal(a, _backend.to_numpy(b))
               for a, b in zip(before, model.params))


def test_switched_off_fast_paths_give_the_generic_path():
    model = make(mlp_layers("relu"), optimizer="sgd")
    old = _fast.set_enabled(False)
    try:
        assert _backend.fast_path(model.backend.xp) is None
        X, Y = on_device(model, *data(8, 6, 4, "cross_entropy", "float32"))
        assert model._fast_step(model, X, Y) is None
        assert _fast.select_step(model) is not None  # made, but declines every call
    finally:
        _fast.set_enabled(old)


def test_mlpx_fast_0_in_the_environment_switches_it_off():
    code = ("import numpy as np; from mlpx import MLP, _backend, _fast; "
            "m = MLP([2, 3, 2], backend='torch').compile('adam'); "
            "X = _backend.to_device(np.ones((1, 2), np.float32), backend=m.backend); "
            "print(_backend.fast_path(m.backend.xp), _fast.enabled(), "
            "m._fast_step is None or m._fast_step(m, X, X) is None)")
    env = {**os.environ, "MLPX_FAST": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out == ["None", "False", "True"]


# ---------------------------------------------------------------------------- all or nothing
@pytest.mark.parametrize("optimizer", ["sgd_wd", "momentum", "adam_wd", "rmsprop"])
def test_interrupted_step_changes_nothing(optimizer, fused):
    """An exception from any operation before the writes leaves params, slots and the
    step counter as they were; the next step is the one an uninterrupted model takes."""
    def make_model():
        return make(mlp_layers("tanh", dropout=0.25), alpha=1e-3, optimizer=optimizer)
    X, Y = data(32, 6, 4, "cross_entropy", "float32")
    X, Y = on_device(make_model(), X, Y)
    calls = interrupt_every_op(make_model, (X, Y), exc=KeyboardInterrupt)
    assert calls.count("dense_forward") == 3
    assert calls.count("weight_grad") == 3


def fold_sgd(model):
    """Switch the model's step to folding plain SGD into the weight products."""
    step = model._fast_step
    step.ops.fuses_sgd = True
    step._setup(model)
    assert step.fused_sgd
    return model


@pytest.mark.parametrize("optimizer", ["sgd", "sgd_wd", "sgd_schedule"])
def test_sgd_folded_into_the_products_equals_generic(optimizer):
    fast = fold_sgd(make(mlp_layers("relu", dropout=0.2), optimizer=optimizer, alpha=0.01))
    ref = make(mlp_layers("relu", dropout=0.2), optimizer=optimizer, alpha=0.01)
    batches = batches_for("cross_entropy", "float32")
    assert_same(fast, ref, run_steps(fast, batches, fast=True),
                run_steps(ref, batches, fast=False), "float32")
    calls = interrupt_every_op(
        lambda: fold_sgd(make(mlp_layers("tanh"), alpha=1e-3, optimizer=optimizer)),
        on_device(fast, *batches[0]), exc=MemoryError)
    assert calls.count("sgd_fused_weight") == 3 and "weight_grad" not in calls


@pytest.mark.parametrize("fold", [False, True])
def test_write_phase_is_only_updates(fold):
    """Every product is made before the first write: the write phase runs the optimizer
    updates only (3 weights, 3 biases), or with SGD folded into the products those 3
    products into W and the 3 bias updates."""
    model = make(mlp_layers("relu", dropout=0.2), optimizer="sgd_wd", alpha=1e-3)
    if fold:
        fold_sgd(model)
    ops = model._fast_step.ops
    log = []
    for name in ("dense_forward", "input_grad", "weight_grad", "sgd_fused_weight",
                 "bias_grad", "update"):
        fn = getattr(ops, name)

        def spy(*a, _fn=fn, _name=name, **kw):
            log.append(_name)
            return _fn(*a, **kw)
        setattr(ops, name, spy)
    orig = torch_step._addmm_into
    torch_step._addmm_into = lambda *a: (log.append("addmm_into"), orig(*a))
    state = model.optimizer_state_

    class Scope:
        def __enter__(self):
            log.append(("enter", state["step"]))

        def __exit__(self, *exc):
            log.append(("exit", state["step"]))
            return False
    try:
        X, Y = on_device(model, *data(16, 6, 4, "cross_entropy", "float32"))
        model._fast_step(model, X, Y, write_scope=Scope())
    finally:
        torch_step._addmm_into = orig
    enter = log.index(("enter", 0))
    assert log[-1] == ("exit", 1)
    assert "update" not in log[:enter] and "addmm_into" not in log[:enter]
    assert sorted(log[enter + 1:-1]) == (["addmm_into"] * 3 + ["update"] * 3 if fold
                                         else ["update"] * 6)
    assert snapshot(model)[2] == 1


# ---------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA device for torch")
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov_wd", "adam_wd", "adamw", "rmsprop"])
def test_cuda_equals_generic(optimizer):  # pragma: no cover - GPU only
    fast, _ = check_equal(mlp_layers("relu", dropout=0.2), optimizer=optimizer, alpha=0.01,
                          device="cuda")
    assert all(p.device.type == "cuda" for p in fast.params)
