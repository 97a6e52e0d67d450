"""mlpx._fast: the NumPy training step equals the generic Array API step.

Two models built with the same seed take the same steps, one through the fast step and
one with fast paths switched off (and, where noted, one on array-api-strict). Tolerance:
float32 results agree to rtol 2e-5 / atol 2e-6 after several steps (the fast path may
sum the same products in another order: BLAS accumulates the bias and the SGD update
inside the product, the L2 penalty uses a dot product); float64 to 1e-11. In practice
most configurations agree bit for bit.
"""

import contextlib
import pickle

import numpy as np
import pytest

from mlpx import MLP, Sequential, _backend, _fast
from mlpx._fast import _blas
from mlpx.layers import ActivationLayer, Dense, Dropout, Maxout, PReLU
from mlpx.optimizers import SGD

from .helpers import assert_array

TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-11, atol=1e-12)}

OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.1},
    "sgd_wd": {"name": "sgd", "lr": 0.1, "weight_decay": 0.01},
    "momentum": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "nesterov_wd": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                    "weight_decay": 1e-3},
    "adam": {"name": "adam", "lr": 1e-2},
    "adam_wd": {"name": "adam", "lr": 1e-2, "weight_decay": 1e-2},
    "adamw": {"name": "adamw", "lr": 1e-2},
    "rmsprop": {"name": "rmsprop", "lr": 1e-3, "momentum": 0.5},
    "sgd_schedule": {"name": "sgd", "lr": {"name": "step", "step_size": 2, "gamma": 0.5,
                                           "lr": 0.2}},
}


def data(n, n_in, k, loss, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.random((n, n_in)) - 0.3).astype(dtype)
    if loss == "cross_entropy":
        Y = np.eye(k, dtype=dtype)[rng.integers(0, k, n)]
    elif loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (n, k)).astype(dtype)
    else:
        Y = rng.standard_normal((n, k)).astype(dtype)
    return X, Y


def make(layers_fn, *, loss="cross_entropy", output=None, alpha=0.0, optimizer="sgd",
         backend="numpy", dtype="float32", n_in=6):
    model = Sequential(layers_fn(), loss=loss, output=output, alpha=alpha, n_features=n_in,
                       backend=backend, dtype=dtype, seed=3)
    model.compile(OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer)
    return model


def mlp_layers(act="relu", dropout=0.0, bias=True, k=4):
    def build():
        out = []
        for w in (9, 9):
            out.append(Dense(w, init="he_normal", bias=bias))
            out.append(ActivationLayer(act))
            if dropout:
                out.append(Dropout(dropout))
        out.append(Dense(k, bias=bias))
        return out
    return build


def run_steps(model, batches, *, fast, weights=None):
    ctx = contextlib.nullcontext() if fast else _fast.disabled()
    out = []
    with ctx:
        for i, (X, Y) in enumerate(batches):
            w = None if weights is None else weights[i]
            if model.backend.name != "numpy":
                X, Y = (_backend.to_device(a, backend=model.backend) for a in (X, Y))
                w = None if w is None else _backend.to_device(w, backend=model.backend)
            loss, z = model.train_step(X, Y, w)
            out.append((float(loss), _backend.to_numpy(z).copy()))
    return out


def batches_for(loss, dtype, k=4, sizes=(32, 32, 13, 32, 5)):
    # a batch size that changes: the last partial batch of an epoch, then back
    return [data(n, 6, k, loss, dtype, seed=i) for i, n in enumerate(sizes)]


def sample_weights(batches, dtype):
    """One positive weight per row of each batch."""
    rng = np.random.default_rng(9)
    return [rng.random(X.shape[0]).astype(dtype) + 0.1 for X, _ in batches]


def assert_same(fast_model, ref_model, fast_out, ref_out, dtype, tol=None):
    tol = TOL[dtype] if tol is None else tol
    for (lf, zf), (lr, zr) in zip(fast_out, ref_out):
        np.testing.assert_allclose(lf, lr, **tol)
        np.testing.assert_allclose(zf, zr, **tol)
    for pf, pr in zip(fast_model.params, ref_model.params):
        assert_array(pf, _backend.to_numpy(pr), backend=fast_model.backend, dtype=dtype,
                     **tol)
    sf, sr = fast_model.optimizer_state_, ref_model.optimizer_state_
    assert sf["step"] == sr["step"]
    for name in sf["slots"]:
        for a, b in zip(sf["slots"][name], sr["slots"][name]):
            assert_array(a, _backend.to_numpy(b), dtype=dtype, **tol)


def check_equal(layers_fn, *, loss="cross_entropy", output=None, alpha=0.0, optimizer="sgd",
                dtype="float32", weights=False, k=4):
    fast = make(layers_fn, loss=loss, output=output, alpha=alpha, optimizer=optimizer,
                dtype=dtype)
    ref = make(layers_fn, loss=loss, output=output, alpha=alpha, optimizer=optimizer,
               dtype=dtype)
    assert fast._fast_step is not None, _fast.unsupported_reason(fast)
    batches = batches_for(loss, dtype, k=k)
    w = sample_weights(batches, dtype) if weights else None
    calls = []
    step = fast._fast_step
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
    assert calls and all(calls), "the fast step did not run"
    out_r = run_steps(ref, batches, fast=False, weights=w)
    assert_same(fast, ref, out_f, out_r, dtype)
    return fast, ref


# ---------------------------------------------------------------------------- equality
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_optimizers_equal_generic(optimizer, alpha):
    check_equal(mlp_layers("relu"), optimizer=optimizer, alpha=alpha)


@pytest.mark.parametrize("act", list(_fast.NUMPY_ACTIVATIONS))
def test_activations_equal_generic(act):
    check_equal(mlp_layers(act), optimizer="adam", alpha=0.01)


@pytest.mark.parametrize("loss,output,k", [("cross_entropy", None, 4),
                                           ("binary_cross_entropy", None, 3),
                                           ("mse", None, 2)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_losses_equal_generic(loss, output, k, optimizer):
    check_equal(mlp_layers("tanh", k=k), loss=loss, output=output, optimizer=optimizer,
                k=k)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_sample_weight_equal_generic(loss, optimizer):
    check_equal(mlp_layers("relu"), loss=loss, optimizer=optimizer, weights=True, alpha=0.01)


@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_dropout_equal_generic(act, optimizer):
    """Same seed, same masks: the fast step draws from the model's generator as Dropout does."""
    check_equal(mlp_layers(act, dropout=0.3), optimizer=optimizer)


def test_no_bias_and_float64_equal_generic():
    check_equal(mlp_layers("relu", bias=False), optimizer="momentum", alpha=0.01)
    check_equal(mlp_layers("sigmoid"), optimizer="adam", dtype="float64", alpha=0.01)
    check_equal(mlp_layers("relu"), optimizer="sgd", dtype="float64", weights=True)


def test_stacked_elementwise_layers_equal_generic():
    """Dropout straight after Dense, two activations in a row: nothing needed is overwritten."""
    def build():
        return [Dense(8), Dropout(0.2), ActivationLayer("tanh"), ActivationLayer("sigmoid"),
                Dense(8), ActivationLayer("leaky_relu", alpha=0.1), Dropout(0.1), Dense(4)]
    check_equal(build, optimizer="adam", alpha=0.01)


def test_without_blas_binding_equal_generic():
    old = _blas.set_enabled(False)
    try:
        assert not _blas.available()
        check_equal(mlp_layers("relu"), optimizer="sgd_wd", alpha=0.01)
        check_equal(mlp_layers("relu"), optimizer="adam")
    finally:
        _blas.set_enabled(old)


def test_fast_step_equals_array_api_strict():
    """The referee: the generic path on array-api-strict gives the same numbers."""
    pytest.importorskip("array_api_strict")
    fast = make(mlp_layers("relu"), optimizer="sgd", alpha=0.01)
    ref = make(mlp_layers("relu"), optimizer="sgd", alpha=0.01, backend="array_api_strict")
    assert fast._fast_step is not None and ref._fast_step is None
    batches = batches_for("cross_entropy", "float32")
    assert_same(fast, ref, run_steps(fast, batches, fast=True),
                run_steps(ref, batches, fast=False), "float32")
    fast = make(mlp_layers("tanh", dropout=0.2), optimizer="adam")
    ref = make(mlp_layers("tanh", dropout=0.2), optimizer="adam", backend="array_api_strict")
    assert_same(fast, ref, run_steps(fast, batches, fast=True),
                run_steps(ref, batches, fast=False), "float32")


def test_fit_equal_generic():
    """Whole epochs through fit (shuffling, a last partial batch, history) agree."""
    rng = np.random.default_rng(0)
    X = rng.random((203, 10)).astype(np.float32)
    y = rng.integers(0, 3, 203)
    runs = []
    for fast in (True, False):
        model = MLP([10, 16, 16, 3], seed=0)
        ctx = contextlib.nullcontext() if fast else _fast.disabled()
        with ctx:
            hist = model.fit(X, y, epochs=3, batch_size=32, verbose=0,
                             optimizer={"name": "adam", "lr": 1e-2})
        runs.append((model, hist))
    (mf, hf), (mr, hr) = runs
    np.testing.assert_allclose(hf["loss"], hr["loss"], rtol=2e-5)
    assert hf["accuracy"] == hr["accuracy"]
    for a, b in zip(mf.params, mr.params):
        assert_array(a, b, rtol=2e-5, atol=2e-6)


# ---------------------------------------------------------------------------- coherence
def test_params_updated_in_place_and_set_params_seen():
    model = make(mlp_layers("relu"), optimizer="sgd")
    ref = make(mlp_layers("relu"), optimizer="sgd")
    before = [id(p) for p in model.params]
    X, Y = data(16, 6, 4, "cross_entropy", "float32")
    model.train_step(X, Y)
    assert [id(p) for p in model.params] == before  # in place: model.params stays right
    # new parameters installed after compile are the ones the fast step trains
    new = [np.asarray(p) * 0.5 for p in model.params]
    model.set_params(new)
    ref.set_params(new)
    with _fast.disabled():
        ref.train_step(X, Y)
    model.train_step(X, Y)
    for a, b in zip(model.params, ref.params):
        assert_array(a, b, **TOL["float32"])


def test_attribute_changed_after_compile_is_seen():
    model = make(mlp_layers("relu"), optimizer="sgd")
    ref = make(mlp_layers("relu"), optimizer="sgd")
    model.alpha = ref.alpha = 0.05
    batches = batches_for("cross_entropy", "float32")
    assert_same(model, ref, run_steps(model, batches, fast=True),
                run_steps(ref, batches, fast=False), "float32")


def test_pickle_drops_buffers_and_resumes():
    model = make(mlp_layers("relu", dropout=0.2), optimizer="adam")
    X, Y = data(16, 6, 4, "cross_entropy", "float32")
    model.train_step(X, Y)
    assert model._fast_step._buffers  # buffers exist...
    state = model.__getstate__()
    assert "_fast_step" not in state  # ...but are never pickled
    clone = pickle.loads(pickle.dumps(model))
    assert clone._fast_step is not None
    with _fast.disabled():
        ref = pickle.loads(pickle.dumps(model))
        ref.train_step(X, Y)
    clone.train_step(X, Y)
    for a, b in zip(clone.params, ref.params):
        assert_array(a, b, **TOL["float32"])


# ---------------------------------------------------------------------------- fallback
@pytest.mark.parametrize("case", ["prelu", "maxout", "gelu", "poisson", "mse_sigmoid",
                                  "activation_first", "custom_optimizer"])
def test_unsupported_configs_use_generic_path(case):
    class MySGD(SGD):
        pass

    layers = {"prelu": lambda: [Dense(5), PReLU(), Dense(3)],
              "maxout": lambda: [Maxout(5, 2), Dense(3)],
              "gelu": lambda: [Dense(5), ActivationLayer("gelu"), Dense(3)],
              "activation_first": lambda: [ActivationLayer("tanh"), Dense(5), Dense(3)],
              }.get(case, lambda: [Dense(5), ActivationLayer("relu"), Dense(3)])
    loss, output = {"poisson": ("poisson", None), "mse_sigmoid": ("mse", "sigmoid")}.get(
        case, ("cross_entropy", None))
    model = Sequential(layers(), loss=loss, output=output, n_features=4, seed=0)
    model.compile(MySGD(lr=0.1) if case == "custom_optimizer" else "sgd")
    assert _fast.unsupported_reason(model) is not None
    assert model._fast_step is None
    rng = np.random.default_rng(0)
    X = rng.random((8, 4)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)] if loss != "poisson" else \
        rng.integers(0, 3, (8, 3)).astype(np.float32)
    before = [np.array(p) for p in model.params]
    loss_value, _ = model.train_step(X, Y)  # the generic path trains it
    assert np.isfinite(float(loss_value))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.params))


def test_other_namespaces_never_select_fast_step(backend):
    model = MLP([4, 5, 3], backend=backend, seed=0).compile("sgd")
    # jax: the compiled step (tests/test_jax_step.py); torch: tests/test_torch_step.py
    if backend.name in ("numpy", "jax", "torch"):
        assert model._fast_step is not None and _fast.unsupported_reason(model) is None
    else:
        assert model._fast_step is None
        assert "NumPy" in _fast.unsupported_reason(model)


def test_inputs_the_step_does_not_take_fall_back():
    model = make(mlp_layers("relu"), optimizer="sgd")
    step = model._fast_step
    X, Y = data(8, 6, 4, "cross_entropy", "float32")
    assert step(model, X.astype(np.float64), Y) is None           # dtype
    assert step(model, X[:, :5], Y) is None                         # width
    assert step(model, X, Y[:, 0]) is None                          # 1-D targets
    assert step(model, X, Y, sample_weight=[1.0] * 8) is None       # not an ndarray
    with _fast.disabled():
        assert step(model, X, Y) is None
    frozen = np.array(model.params[0])
    frozen.flags.writeable = False
    model.set_params([frozen] + [np.array(p) for p in model.params[1:]])
    model.layers[0].params[0].flags.writeable = False
    assert step(model, X, Y) is None                                # read-only params
    assert step(model, X, Y) is None


# ---------------------------------------------------------------------------- gemm
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("binding", [True, False])
def test_gemm_matches_matmul(dtype, binding):
    rng = np.random.default_rng(0)
    old = _blas.set_enabled(binding)
    try:
        for ta in (False, True):
            for tb in (False, True):
                a = rng.standard_normal((6, 5)).astype(dtype)
                b = rng.standard_normal((5, 4)).astype(dtype)
                aa = np.ascontiguousarray(a.T).T if ta else a
                bb = np.ascontiguousarray(b.T).T if tb else b
                c0 = rng.standard_normal((6, 4)).astype(dtype)
                for alpha, beta in ((1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)):
                    c = c0.copy()
                    _blas.gemm(aa, bb, c, alpha=alpha, beta=beta)
                    tol = 1e-5 if dtype == "float32" else 1e-12
                    np.testing.assert_allclose(c, alpha * (a @ b) + beta * c0, rtol=tol,
                                               atol=tol)
        nan = np.full((6, 4), np.nan, dtype=dtype)
        _blas.gemm(a, b, nan, beta=0.0)  # beta=0 ignores what was there, NaN included
        np.testing.assert_allclose(nan, a @ b, rtol=1e-5)
        with pytest.raises(ValueError, match="shapes"):
            _blas.gemm(a, a, c)
    finally:
        _blas.set_enabled(old)


def test_gemm_binding_is_numpys_own_blas():
    if not _blas.available():
        pytest.skip("no OpenBLAS binding on this platform (the matmul fallback is used)")
    import os

    path = _blas.library_path()
    numpy_dir = os.path.dirname(os.path.abspath(np.__file__))
    assert path.startswith(numpy_dir)  # numpy/ or numpy.libs/: never a second BLAS


def test_buffers_of_many_batch_sizes_are_bounded():
    """Only a few batch shapes keep buffers; evicted ones are not held by the pointer cache."""
    model = make(mlp_layers("relu"), optimizer="sgd")
    ref = make(mlp_layers("relu"), optimizer="sgd")
    batches = [data(n, 6, 4, "cross_entropy", "float32", seed=n) for n in range(3, 15)]
    assert_same(model, ref, run_steps(model, batches, fast=True),
                run_steps(ref, batches, fast=False), "float32")
    step = model._fast_step
    assert len(step._buffers) <= 4
    live = {id(p) for p in model.params}
    for buf in step._buffers.values():
        live |= {id(b) for b in buf.act if b is not None} | {id(b) for b in buf.grad.values()}
    assert {id(a) for a, _ in step.ops._ptrs.values()} <= live


def test_changing_alpha_keeps_the_plan_and_buffers():
    """alpha is read every step (the scikit-learn wrapper sets it per batch): changing it
    must neither re-plan nor drop the buffers, and must still match the generic path."""
    fast = make(mlp_layers("relu"), optimizer="sgd", alpha=0.01)
    ref = make(mlp_layers("relu"), optimizer="sgd", alpha=0.01)
    step = fast._fast_step
    batches = batches_for("cross_entropy", "float32")
    out_f, out_r = [], []
    for i, batch in enumerate(batches):
        fast.alpha = ref.alpha = 0.01 / (i + 1)
        out_f += run_steps(fast, [batch], fast=True)
        out_r += run_steps(ref, [batch], fast=False)
        if i == 0:
            bufs = step.buffers(batch[0].shape[0])
    assert fast._fast_step is step and step.buffers(batches[0][0].shape[0]) is bufs
    assert_same(fast, ref, out_f, out_r, "float32")


# ---------------------------------------------------------------------------- call protocol
class _Unreadable:
    """Stands in for an attribute the step must not read: any use fails."""

    def _fail(self, *args):
        raise AssertionError("read a value it was given explicitly")

    __float__ = __gt__ = __lt__ = __ge__ = __le__ = __bool__ = __mul__ = __rmul__ = _fail
    __add__ = __radd__ = __sub__ = __rsub__ = __pow__ = __rpow__ = __eq__ = _fail
    __hash__ = object.__hash__


@pytest.mark.parametrize("optimizer", ["sgd_wd", "nesterov_wd", "adam_wd", "adamw",
                                       "rmsprop"])
def test_alpha_and_hyper_given_are_used_instead_of_model_and_optimizer(optimizer):
    from mlpx._fast import HYPER_KEYS, optimizer_hyper

    fast = make(mlp_layers(dropout=0.2), alpha=1e-3, optimizer=optimizer)
    ref = make(mlp_layers(dropout=0.2), alpha=1e-3, optimizer=optimizer)
    step = fast._fast_step
    opt = fast.optimizer_
    hypers = []
    for t in range(3):  # each step its own rate, eps and alpha, as the sklearn adapter
        h = optimizer_hyper(ref.optimizer_, t)
        h["lr"] *= 1.0 + t
        if "eps" in h:
            h["eps"] = 10.0 ** -(3 + t)
        hypers.append(h)
    assert all(set(h) == set(HYPER_KEYS[opt.name]) for h in hypers)
    noise = np.random.default_rng(11)
    ref_noise = np.random.default_rng(11)
    # nothing may be read from the model's alpha, the optimizer's attributes or rng
    fast.alpha = _Unreadable()
    fast.state_.noise_rng = None
    for key in HYPER_KEYS[opt.name]:
        setattr(opt, key, _Unreadable())
    batches = batches_for("cross_entropy", "float32")[:3]
    for t, (X, Y) in enumerate(batches):
        alpha = 1e-3 * (t + 1)
        loss_f, z_f = step(fast, X, Y, alpha=alpha, hyper=hypers[t], noise_rng=noise)
        ref.alpha = alpha
        ref.state_.optimizer = type(ref.optimizer_)(**{k: (v if k != "lr" else hypers[t]["lr"])
                                                 for k, v in hypers[t].items()})
        ref.state_.noise_rng = ref_noise
        ref._fast_step = None
        with _fast.disabled():
            loss_r, z_r = ref.train_step(X, Y)
        np.testing.assert_allclose(float(loss_f), float(loss_r), **TOL["float32"])
        np.testing.assert_allclose(z_f, z_r, **TOL["float32"])
    for pf, pr in zip(fast.params, ref.params):
        np.testing.assert_allclose(pf, pr, **TOL["float32"])
    assert fast.optimizer_state_["step"] == 3


def test_hyper_must_hold_every_key_and_match_the_slots():
    from mlpx._fast import optimizer_hyper

    model = make(mlp_layers(), optimizer="momentum")
    X, Y = batches_for("cross_entropy", "float32")[0]
    hyper = optimizer_hyper(model.optimizer_, 0)
    with pytest.raises(ValueError, match="'hyper' parameter .* keys"):
        model._fast_step(model, X, Y, hyper={"lr": 0.1})
    with pytest.raises(ValueError, match="momentum > 0"):
        model._fast_step(model, X, Y, hyper={**hyper, "momentum": 0.0})
    assert model.optimizer_state_["step"] == 0
    assert model._fast_step(model, X, Y, hyper=hyper) is not None


# ---------------------------------------------------------------------------- all or nothing
#: The operations of phases 1 to 3 (mlpx._fast._step): everything that may fail.
FALLIBLE_OPS = ("new_buffers", "begin", "dense_forward", "act_forward", "dropout_forward",
                "loss_and_grad", "add_l2", "grad_buffers", "act_backward",
                "dropout_backward", "input_grad", "weight_grad", "bias_grad",
                "sgd_fused_weight")


def snapshot(model):
    st = model.optimizer_state_
    return ([_backend.to_numpy(p).copy() for p in model.params],
            {s: [_backend.to_numpy(a).copy() for a in lst] for s, lst in st["slots"].items()},
            st["step"])


def assert_snapshot(model, snap):
    params, slots, step = snap
    now = snapshot(model)
    assert now[2] == step
    for a, b in zip(now[0], params):
        assert a.tobytes() == b.tobytes()
    for s in slots:
        for a, b in zip(now[1][s], slots[s]):
            assert a.tobytes() == b.tobytes()


def interrupt_every_op(make_model, batch, *, exc=KeyboardInterrupt):
    """Raise ``exc`` from the k-th fallible operation of a step, for every k: the model
    keeps its params, slots and step counter, and the next step is the one an
    uninterrupted model takes."""
    X, Y = batch
    probe = make_model()
    calls = []
    for name in FALLIBLE_OPS:
        fn = getattr(probe._fast_step.ops, name)

        def counted(*a, _fn=fn, _name=name, **kw):
            calls.append(_name)
            return _fn(*a, **kw)
        setattr(probe._fast_step.ops, name, counted)
    probe._fast_step(probe, X, Y, noise_rng=np.random.default_rng(0))
    assert {"dense_forward", "loss_and_grad", "bias_grad"} <= set(calls)
    for k in range(len(calls)):
        model = make_model()
        model._fast_step(model, X, Y, noise_rng=np.random.default_rng(1))  # warm buffers
        ref_k = make_model()
        ref_k._fast_step(ref_k, X, Y, noise_rng=np.random.default_rng(1))
        expect = ref_k._fast_step(ref_k, X, Y, noise_rng=np.random.default_rng(0))
        snap = snapshot(model)
        ops = model._fast_step.ops
        seen = []
        for name in FALLIBLE_OPS:
            fn = getattr(ops, name)

            def failing(*a, _fn=fn, _name=name, _seen=seen, _k=k, **kw):
                _seen.append(_name)
                if len(_seen) == _k + 1:
                    raise exc(f"at {_name}")
                return _fn(*a, **kw)
            setattr(ops, name, failing)
        model._fast_step._buffers.clear()  # the probe's call sequence: buffers made anew
        with pytest.raises(exc, match=f"at {calls[k]}"):
            model._fast_step(model, X, Y, noise_rng=np.random.default_rng(0))
        assert_snapshot(model, snap)
        for name in FALLIBLE_OPS:
            delattr(ops, name)
        loss, _ = model._fast_step(model, X, Y, noise_rng=np.random.default_rng(0))
        assert float(loss) == float(expect[0])
        assert_snapshot(model, snapshot(ref_k))
    return calls


@pytest.mark.parametrize("optimizer", ["sgd_wd", "momentum", "adam_wd", "rmsprop"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt, MemoryError])
def test_interrupted_step_changes_nothing(optimizer, exc):
    def make_model():
        return make(mlp_layers("tanh", dropout=0.25), alpha=1e-3, optimizer=optimizer)
    X, Y = batches_for("cross_entropy", "float32")[0]
    calls = interrupt_every_op(make_model, (X, Y), exc=exc)
    n_dense = 3
    assert calls.count("dense_forward") == n_dense
    assert calls.count("dropout_forward") == calls.count("dropout_backward") == 2
    assert calls.count("act_backward") == 2
    assert calls.count("input_grad") == n_dense - 1
    assert calls.count("weight_grad" if optimizer != "sgd_wd" else "sgd_fused_weight") \
        == n_dense


@pytest.mark.parametrize("optimizer", ["sgd_wd", "adam"])
def test_interrupted_step_without_blas_changes_nothing(optimizer):
    """Without the BLAS binding the SGD product into W is made before the writes too."""
    def make_model():
        return make(mlp_layers("relu"), alpha=1e-3, optimizer=optimizer)
    old = _blas.set_enabled(False)
    try:
        calls = interrupt_every_op(make_model, batches_for("cross_entropy", "float32")[0],
                                   exc=MemoryError)
    finally:
        _blas.set_enabled(old)
    assert "dense_forward" in calls


def test_write_scope_wraps_exactly_the_writes():
    """The caller's write_scope (a SIGINT deferral) is entered after every fallible
    operation and left after the step counter moved."""
    model = make(mlp_layers("relu", dropout=0.2), optimizer="adam", alpha=1e-3)
    ops = model._fast_step.ops
    log = []
    for name in FALLIBLE_OPS + ("update",):
        fn = getattr(ops, name)

        def spy(*a, _fn=fn, _name=name, **kw):
            log.append(_name)
            return _fn(*a, **kw)
        setattr(ops, name, spy)
    state = model.optimizer_state_

    class Scope:
        def __enter__(self):
            log.append(("enter", state["step"]))

        def __exit__(self, *exc):
            log.append(("exit", state["step"]))
            return False
    X, Y = batches_for("cross_entropy", "float32")[0]
    model._fast_step(model, X, Y, write_scope=Scope())
    enter = log.index(("enter", 0))
    assert log[-1] == ("exit", 1)
    assert all(e in FALLIBLE_OPS for e in log[:enter])
    assert log[enter + 1:-1] == ["update"] * 6  # 3 weights, 3 biases


# ---------------------------------------------------------------- inference in place
def _inference_model(act, dtype, output=None, dropout=False, bias=True):
    layers = []
    for w in (9, 7):
        layers.append(Dense(w, bias=bias))
        if dropout:
            layers.append(Dropout(0.3))
        layers.append(ActivationLayer(act))
    layers.append(Dense(4))
    kw = {} if output is None else {"output": output, "loss": {
        "sigmoid": "binary_cross_entropy", "identity": "mse"}[output]}
    return Sequential(layers, n_features=6, dtype=dtype, seed=2, **kw)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "leaky_relu", "identity"])
@pytest.mark.parametrize("output", [None, "sigmoid", "identity"])
def test_inference_in_place_is_bitwise_generic(dtype, act, output):
    # numpy_forward computes decision_function / predict_proba / predict in buffers: the
    # generic operations in the generic order, so bit for bit (chunks included).
    from mlpx._fast import numpy_forward

    model = _inference_model(act, dtype, output, dropout=act == "relu",
                             bias=act != "identity")
    assert numpy_forward.forward_reason(model) is None
    rng = np.random.default_rng(5)
    X = (rng.standard_normal((70, 6)) * 20).astype(dtype)
    X[0, :] = 0.0
    for batch_size in (None, 16, 70, 128):
        fast = [model.predict_proba(X, batch_size=batch_size),
                model.decision_function(X, batch_size=batch_size),
                model.predict(X, batch_size=batch_size)]
        assert numpy_forward.logits(model, X, batch_size or 8192) is not None
        with _fast.disabled():
            assert numpy_forward.proba(model, X, 16) is None
            slow = [model.predict_proba(X, batch_size=batch_size),
                    model.decision_function(X, batch_size=batch_size),
                    model.predict(X, batch_size=batch_size)]
        for a, b in zip(fast, slow):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()
    probs = model.predict_proba(X[:3])
    assert not np.shares_memory(probs, model.predict_proba(X[:3]))  # fresh results


def test_inference_in_place_takes_only_what_it_implements():
    from mlpx._fast import numpy_forward

    assert numpy_forward.forward_reason(MLP([4, 5, 3], activation="gelu", seed=0)) \
        == "activation 'gelu'"
    prelu = Sequential([Dense(5), PReLU(), Dense(3)], n_features=4, seed=0)
    assert numpy_forward.forward_reason(prelu) is not None
    model = MLP([4, 5, 3], seed=0)
    X = np.ones((3, 4), dtype=np.float32)
    assert numpy_forward.logits(model, X.astype(np.float64), 8) is None  # other dtype
    assert numpy_forward.logits(model, X[:, :3], 8) is None  # other width
    assert numpy_forward.logits(model, [[1.0] * 4], 8) is None  # not an array
    model.layers[0].params[0] = model.layers[0].params[0].astype(np.float64)
    assert numpy_forward.logits(model, X, 8) is None  # a parameter of another dtype


def test_inference_in_place_follows_a_changed_model_and_pickles():
    from mlpx._fast import numpy_forward

    model = MLP([4, 6, 3], seed=0)
    X = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    before = model.predict_proba(X)
    model.layers[1].activation = mlpx_activation("tanh")
    after = model.predict_proba(X)
    with _fast.disabled():
        assert after.tobytes() == model.predict_proba(X).tobytes()
    assert not np.array_equal(before, after)
    twin = pickle.loads(pickle.dumps(model))
    assert twin.predict_proba(X).tobytes() == after.tobytes()
    assert numpy_forward.forward_reason(twin) is None


def mlpx_activation(name):
    from mlpx.activations import get_activation

    return get_activation(name)


def test_inference_buffers_over_the_limit_are_not_kept(monkeypatch):
    from mlpx._fast import numpy_forward

    monkeypatch.setattr(numpy_forward, "KEEP_BYTES", 0)
    model = MLP([4, 6, 6, 3], seed=0)
    X = np.random.default_rng(0).standard_normal((9, 4)).astype(np.float32)
    first = model.predict_proba(X, batch_size=4)
    assert numpy_forward.proba(model, X, 4).tobytes() == first.tobytes()
    with _fast.disabled():
        assert model.predict_proba(X, batch_size=4).tobytes() == first.tobytes()


def test_inference_buffers_do_not_keep_a_model_alive():
    import gc
    import weakref

    model = MLP([4, 5, 3], seed=0)
    model.predict_proba(np.ones((2, 4), dtype=np.float32))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
