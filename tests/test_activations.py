"""Tests for mlpx.activations: values, gradients, dtypes, stability and the registry."""

import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlpx import _backend
from mlpx import activations as A
from mlpx.activations import ACTIVATIONS, Activation, get_activation

from .helpers import assert_array, numerical_grad

# Every activation configuration under test, with the kinks its derivative jumps at.
CASES = [
    ("identity", {}, ()),
    ("affine", {"slope": 2.5, "intercept": -1.0}, ()),
    ("sigmoid", {}, ()),
    ("tanh", {}, ()),
    ("relu", {}, (0.0,)),
    ("leaky_relu", {"alpha": 0.1}, (0.0,)),
    ("elu", {}, (0.0,)),
    ("elu", {"alpha": 0.5}, (0.0,)),
    ("softplus", {}, ()),
    ("swish", {}, ()),
    ("swish", {"beta": 2.0}, ()),
    ("gelu", {}, ()),
    ("gelu", {"approximate": "tanh"}, ()),
    ("gelu", {"approximate": "sigmoid"}, ()),
    ("hard_sigmoid", {}, (-2.0, 2.0)),
    ("hard_tanh", {}, (-1.0, 1.0)),
    ("exp", {}, ()),
    ("softmax", {}, ()),
    ("log_softmax", {}, ()),
]
CASE_IDS = [name + "".join(f"-{k}={v}" for k, v in p.items()) for name, p, _ in CASES]

# Activations whose backward can work from the output y alone (x=None).
FROM_OUTPUT = {"sigmoid", "tanh", "relu", "leaky_relu", "exp", "softmax", "log_softmax",
               "identity", "affine"}


def dev(a, backend, dtype="float64"):
    return _backend.to_device(np.asarray(a), backend=backend, dtype=dtype)


def away_from_kinks(x, kinks, margin=0.05):
    x = np.array(x, dtype=np.float64)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + 2 * margin
    return x


def test_every_registered_class_is_tested():
    tested = {get_activation(name, **p).name for name, p, _ in CASES}
    assert tested == {cls.name for cls in ACTIVATIONS.values()}


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name,params,kinks", CASES, ids=CASE_IDS)
def test_backward_matches_central_differences(backend, name, params, kinks):
    rng = np.random.default_rng(1)
    act = get_activation(name, **params)
    x0 = away_from_kinks(rng.uniform(-3.0, 3.0, size=(4, 5)), kinks)
    dy0 = rng.normal(size=(4, 5))
    xp = backend.xp
    dy = dev(dy0, backend)

    def f(x_host):
        y = act.forward(dev(x_host, backend), xp=xp)
        return float(xp.sum(y * dy))

    x = dev(x0, backend)
    y = act.forward(x, xp=xp)
    dx = act.backward(dy, x, y, xp=xp)
    assert_array(dx, numerical_grad(f, x0), backend=backend, dtype="float64",
                 shape=(4, 5), rtol=1e-6, atol=1e-8)
    # y=None recomputes the output; x=None works for output-based derivatives.
    assert_array(act.backward(dy, x, None, xp=xp), dx, backend=backend, rtol=1e-12)
    if name in FROM_OUTPUT:
        assert_array(act.backward(dy, None, y, xp=xp), dx, backend=backend, rtol=1e-12)
    else:
        with pytest.raises(ValueError, match="needs the input x"):
            act.backward(dy, None, y, xp=xp)


@pytest.mark.parametrize("name,pts,slopes,kinks,at_kinks", [
    ("relu", [-1.0, 1.0], [0.0, 1.0], [0.0], [0.0]),
    ("leaky_relu", [-1.0, 1.0], [0.01, 1.0], [0.0], [0.01]),
    ("hard_sigmoid", [-3.0, 0.0, 3.0], [0.0, 0.25, 0.0], [-2.0, 2.0], [0.0, 0.0]),
    ("hard_tanh", [-2.0, 0.0, 2.0], [0.0, 1.0, 0.0], [-1.0, 1.0], [0.0, 0.0]),
])
def test_piecewise_derivatives_and_kinks(backend, name, pts, slopes, kinks, at_kinks):
    # The derivative on each linear piece, and the documented one-sided value at kinks.
    act = get_activation(name)
    xp = backend.xp
    x = dev(pts, backend)
    assert_array(act.backward(xp.ones_like(x), x, act.forward(x, xp=xp), xp=xp), slopes,
                 backend=backend, dtype="float64")
    xk = dev(kinks, backend)
    assert_array(act.backward(xp.ones_like(xk), xk, None, xp=xp), at_kinks,
                 backend=backend, dtype="float64")


def test_softmax_backward_is_jacobian_vector_product(backend):
    rng = np.random.default_rng(2)
    z0, dy0 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    xp = backend.xp
    act = get_activation("softmax")
    y = act.forward(dev(z0, backend), xp=xp)
    dx = act.backward(dev(dy0, backend), dev(z0, backend), y, xp=xp)
    p = _backend.to_numpy(y)
    expected = np.stack([(np.diag(pi) - np.outer(pi, pi)) @ d for pi, d in zip(p, dy0)])
    assert_array(dx, expected, backend=backend, rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("name,params,kinks", CASES, ids=CASE_IDS)
def test_float32_in_float32_out(backend, name, params, kinks):
    rng = np.random.default_rng(3)
    act = get_activation(name, **params)
    xp = backend.xp
    x0 = away_from_kinks(rng.uniform(-3.0, 3.0, size=(3, 4)), kinks)
    x = dev(x0, backend, "float32")
    dy = dev(rng.normal(size=(3, 4)), backend, "float32")
    y = act.forward(x, xp=xp)
    dx = act.backward(dy, x, y, xp=xp)
    assert_array(y, backend=backend, dtype="float32", shape=(3, 4))
    assert_array(dx, backend=backend, dtype="float32", shape=(3, 4))
    # and float32 results agree with float64 ones to float32 precision
    x64, dy64 = dev(x0, backend), xp.astype(dy, xp.float64)
    y64 = act.forward(x64, xp=xp)
    assert_array(y, y64, rtol=2e-5, atol=1e-6)
    assert_array(dx, act.backward(dy64, x64, y64, xp=xp), rtol=2e-5, atol=1e-5)


def test_relu_gradient_is_float_not_int_or_bool(backend):
    xp = backend.xp
    x = dev([[-1.0, 2.0]], backend, "float32")
    act = get_activation("relu")
    dx = act.backward(xp.ones_like(x), x, act.forward(x, xp=xp), xp=xp)
    assert_array(dx, [[0.0, 1.0]], backend=backend, dtype="float32")


# --------------------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,params,kinks", [c for c in CASES if c[0] != "exp"],
                         ids=[i for i, c in zip(CASE_IDS, CASES) if c[0] != "exp"])
def test_no_overflow_warnings_for_huge_inputs(backend, name, params, kinks, dtype):
    act = get_activation(name, **params)
    xp = backend.xp
    x = dev([[-1e4, -150.0, -100.5, 0.5, 100.5, 150.0, 1e4]], backend, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = act.forward(x, xp=xp)
        dx = act.backward(xp.ones_like(x), x, y, xp=xp)
    assert np.all(np.isfinite(_backend.to_numpy(y)))
    assert np.all(np.isfinite(_backend.to_numpy(dx)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_and_softplus_saturate(backend, dtype):
    xp = backend.xp
    x = dev([-1e4, -100.0, 0.0, 100.0, 1e4], backend, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = A.sigmoid(x, xp=xp)
        sp = get_activation("softplus").forward(x, xp=xp)
    # exp(-100) ~ 3.7e-44 is subnormal in float32; XLA (JAX) flushes float32 subnormals
    # to zero on CPU, so there the tolerance is the smallest normal float32.
    tiny = 1.2e-38 if backend.name == "jax" and dtype == "float32" else 1e-44
    assert_array(s, [0.0, math.exp(-100.0), 0.5, 1.0, 1.0],
                 backend=backend, dtype=dtype, rtol=1e-6, atol=tiny)
    assert_array(sp, [0.0, math.log1p(math.exp(-100.0)), math.log(2.0), 100.0, 1e4],
                 backend=backend, dtype=dtype, rtol=1e-6, atol=1e-40)


# --------------------------------------------------------------------------- values
@pytest.mark.parametrize("name,params,x,expected", [
    ("identity", {}, [-2.0, 3.0], [-2.0, 3.0]),
    ("affine", {"slope": 2.0, "intercept": 1.0}, [-2.0, 3.0], [-3.0, 7.0]),
    ("relu", {}, [-1.0, 0.0, 2.0], [0.0, 0.0, 2.0]),
    ("leaky_relu", {"alpha": 0.1}, [-2.0, 0.0, 3.0], [-0.2, 0.0, 3.0]),
    ("elu", {}, [-1.0, 2.0], [math.exp(-1.0) - 1.0, 2.0]),
    ("sigmoid", {}, [0.0, 1.0], [0.5, 1.0 / (1.0 + math.exp(-1.0))]),
    ("tanh", {}, [0.5], [math.tanh(0.5)]),
    ("softplus", {}, [0.0, 1.0], [math.log(2.0), math.log1p(math.e)]),
    ("swish", {}, [1.0], [1.0 / (1.0 + math.exp(-1.0))]),
    ("hard_sigmoid", {}, [-3.0, -2.0, 0.0, 1.0, 3.0], [0.0, 0.0, 0.5, 0.75, 1.0]),
    ("hard_tanh", {}, [-3.0, -0.5, 0.0, 2.0], [-1.0, -0.5, 0.0, 1.0]),
    ("exp", {}, [0.0, 1.0], [1.0, math.e]),
    ("gelu", {}, [1.0, -1.0, 0.0], [0.8413447460685429, -0.15865525393145707, 0.0]),
    ("gelu", {"approximate": "tanh"}, [1.0],
     [0.5 * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * 1.044715))]),
    ("gelu", {"approximate": "sigmoid"}, [1.0], [1.0 / (1.0 + math.exp(-1.702))]),
])
def test_known_values(backend, name, params, x, expected):
    y = get_activation(name, **params).forward(dev(x, backend), xp=backend.xp)
    assert_array(y, expected, backend=backend, dtype="float64", rtol=1e-13, atol=1e-300)


def test_normal_cdf_generic_accuracy(backend):
    # The generic erf expansion (used on array_api_strict) against math.erf / math.erfc.
    xp = backend.xp
    grid = np.concatenate([np.linspace(-12.0, 12.0, 2401), [-40.0, -7.1, 3.5355, 50.0]])
    ref = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in grid])
    got64 = _backend.to_numpy(A._normal_cdf(dev(grid, backend), xp=xp, generic=True))
    # math.erfc(-x/sqrt(2)) itself loses ~x^2 ulp to the rounding of x/sqrt(2) in the
    # far tail (mpmath puts the generic path within 1e-14), hence 5e-14 here.
    np.testing.assert_allclose(got64, ref, rtol=5e-14, atol=0)
    g32 = dev(grid, backend, "float32")
    ref32 = [0.5 * math.erfc(-float(v) / math.sqrt(2.0)) for v in _backend.to_numpy(g32)]
    got32 = A._normal_cdf(g32, xp=xp, generic=True)
    tiny = np.finfo(np.float32).tiny
    assert_array(got32, np.where(np.abs(ref32) < tiny, 0.0, ref32), dtype="float32",
                 rtol=1e-6, atol=tiny)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_cdf_fast_path_matches_generic(backend, dtype):
    xp = backend.xp
    x = dev(np.linspace(-10.0, 10.0, 1001), backend, dtype)
    fast = A._normal_cdf(x, xp=xp)
    generic = A._normal_cdf(x, xp=xp, generic=True)
    assert_array(fast, generic, backend=backend, dtype=dtype,
                 rtol=1e-6 if dtype == "float32" else 5e-14, atol=0)


def test_numpy_uses_library_normal_cdf():
    pytest.importorskip("scipy")
    xp = _backend.resolve_backend("numpy").xp
    assert A._fast_ndtr(xp) is not None
    assert A._fast_ndtr(_backend.resolve_backend("array_api_strict").xp) is None


# --------------------------------------------------------------------------- softmax
def test_softmax_rows_sum_to_one_and_shift_invariance(backend):
    xp = backend.xp
    rng = np.random.default_rng(4)
    z0 = rng.normal(scale=10.0, size=(5, 7))
    z = dev(z0, backend)
    p = A.softmax(z, xp=xp)
    assert_array(xp.sum(p, axis=-1), np.ones(5), backend=backend, rtol=1e-14)
    assert_array(A.softmax(z + 1000.0, xp=xp), p, rtol=1e-12)
    assert_array(A.log_softmax(z, xp=xp), np.log(_backend.to_numpy(p)), rtol=1e-12,
                 atol=1e-12)
    # axis argument of the module functions
    p0 = A.softmax(z, xp=xp, axis=0)
    assert_array(xp.sum(p0, axis=0), np.ones(7), rtol=1e-14)
    assert_array(A.log_softmax(z, xp=xp, axis=0), np.log(_backend.to_numpy(p0)),
                 rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_extreme_logits(backend, dtype):
    xp = backend.xp
    z = dev([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], backend, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = A.softmax(z, xp=xp)
        lp = A.log_softmax(z, xp=xp)
    assert_array(p, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], backend=backend, dtype=dtype,
                 rtol=1e-6)
    assert_array(lp, [[0.0, -2e4, -1e4], [-math.log(3.0)] * 3], backend=backend,
                 dtype=dtype, rtol=1e-6)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(z=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
                    elements=st.floats(-1e4, 1e4)),
       shift=st.floats(-1e3, 1e3))
def test_property_softmax_sums_to_one_and_is_shift_invariant(backend, z, shift):
    xp = backend.xp
    p = A.softmax(dev(z, backend), xp=xp)
    pn = _backend.to_numpy(p)
    assert np.all(np.isfinite(pn)) and np.all(pn >= 0)
    np.testing.assert_allclose(pn.sum(axis=-1), 1.0, rtol=1e-12)
    # values up to 1e4 lose ~1e-12 absolute to rounding when shifted
    assert_array(A.softmax(dev(z + shift, backend), xp=xp), pn, rtol=0, atol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p32 = _backend.to_numpy(A.softmax(dev(z, backend, "float32"), xp=xp))
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32.sum(axis=-1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("alias,canonical", [
    ("logistic", "sigmoid"), ("silu", "swish"), ("linear", "identity"),
    ("exponential", "exp"), ("ReLU", "relu"), ("leaky-relu", "leaky_relu"),
])
def test_aliases(alias, canonical):
    assert get_activation(alias) == get_activation(canonical)
    assert get_activation(alias).name == canonical


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown activation 'relu7'") as info:
        get_activation("relu7")
    for name in ("relu", "gelu", "softmax", "logistic", "silu", "linear"):
        assert repr(name) in str(info.value)


def test_bad_parameters():
    with pytest.raises(ValueError) as info:
        get_activation("leaky_relu", alpha=-1)
    assert str(info.value) == (
        "The 'alpha' parameter of leaky_relu must be a float >= 0. Got -1 instead.")
    with pytest.raises(ValueError, match="'alpha' parameter of elu must be a float >= 0"):
        get_activation("elu", alpha=float("nan"))
    with pytest.raises(ValueError, match="'alpha' parameter of leaky_relu"):
        get_activation("leaky_relu", alpha="0.1")
    with pytest.raises(ValueError, match="'beta' parameter of swish must be a finite float"):
        get_activation("swish", beta=True)
    with pytest.raises(ValueError, match=r"'approximate' parameter of gelu must be one of "
                                         r"\['none', 'tanh', 'sigmoid'\]. Got 'erf'"):
        get_activation("gelu", approximate="erf")
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['alpha'\] for "
                                         r"activation 'relu'"):
        get_activation("relu", alpha=0.1)
    with pytest.raises(ValueError, match="config dict needs a 'name'"):
        get_activation({"alpha": 0.1})
    with pytest.raises(ValueError, match="Activation instance"):
        get_activation(get_activation("elu"), alpha=2.0)
    with pytest.raises(TypeError, match="must be a name, an Activation or a config dict"):
        get_activation(3)


@pytest.mark.parametrize("name,params,kinks", CASES, ids=CASE_IDS)
def test_config_roundtrip_pickle_repr_eq(name, params, kinks):
    act = get_activation(name, **params)
    config = act.get_config()
    assert config["name"] == act.name
    assert get_activation(config) == act
    assert get_activation(dict(config)) is not act
    clone = pickle.loads(pickle.dumps(act))
    assert clone == act and hash(clone) == hash(act)
    assert type(clone) is type(act)
    assert repr(act).startswith(type(act).__name__ + "(")
    assert get_activation(act) is act
    assert isinstance(act, Activation)


def test_eq_distinguishes_parameters():
    assert get_activation("leaky_relu", alpha=0.1) != get_activation("leaky_relu")
    assert get_activation("gelu") != get_activation("gelu", approximate="tanh")
    assert get_activation("relu") != "relu"
    assert get_activation({"name": "elu", "alpha": 0.3}, alpha=0.7).alpha == 0.7
    assert repr(get_activation("leaky_relu", alpha=0.2)) == "LeakyReLU(alpha=0.2)"
