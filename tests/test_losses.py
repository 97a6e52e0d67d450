"""Tests for mlpx.losses: values, fused gradients, weights, dtypes, stability, registry."""

import math
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlpx import _backend
from mlpx.activations import get_activation
from mlpx.losses import LOSSES, Loss, get_loss, l2_penalty, one_hot

from .helpers import assert_array, numerical_grad

N, K = 5, 3


def dev(a, backend, dtype="float64"):
    return _backend.to_device(np.asarray(a), backend=backend, dtype=dtype)


def make_targets(loss_name, rng, n=N, k=K):
    if loss_name == "cross_entropy":
        return rng.dirichlet(np.ones(k), size=n)
    if loss_name == "binary_cross_entropy":
        return rng.uniform(size=(n, k))
    if loss_name == "poisson":
        return rng.poisson(2.0, size=(n, k)).astype(np.float64)
    return rng.normal(size=(n, k))


# (loss, output) pairs: the canonical pairs plus MSE through non-trivial outputs.
PAIRS = [
    ("mse", "identity"),
    ("mse", "sigmoid"),
    ("mse", "softmax"),
    ("mse", "tanh"),
    ("cross_entropy", "softmax"),
    ("binary_cross_entropy", "sigmoid"),
    ("poisson", "exp"),
]
PAIR_IDS = [f"{a}+{b}" for a, b in PAIRS]


def reference_per_sample(loss_name, output, z, y):
    """Plain-NumPy per-sample losses, written independently of mlpx."""
    if loss_name == "mse":
        if output == "identity":
            a = z
        elif output == "sigmoid":
            a = 1.0 / (1.0 + np.exp(-z))
        elif output == "tanh":
            a = np.tanh(z)
        else:
            e = np.exp(z - z.max(axis=1, keepdims=True))
            a = e / e.sum(axis=1, keepdims=True)
        return 0.5 * ((a - y) ** 2).sum(axis=1)
    if loss_name == "cross_entropy":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return -(y * np.log(p)).sum(axis=1)
    if loss_name == "binary_cross_entropy":
        p = 1.0 / (1.0 + np.exp(-z))
        return -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1)
    return (np.exp(z) - y * z).sum(axis=1)


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss_name,output", PAIRS, ids=PAIR_IDS)
def test_value_and_grad_match_reference_and_central_differences(backend, loss_name, output,
                                                                weighted):
    rng = np.random.default_rng(10)
    xp = backend.xp
    loss = get_loss(loss_name)
    out = get_activation(output)
    z0 = rng.normal(scale=1.5, size=(N, K))
    y0 = make_targets(loss_name, rng)
    w0 = rng.uniform(0.2, 3.0, size=N) if weighted else None
    y = dev(y0, backend)
    w = dev(w0, backend) if weighted else None

    def f(z_host):
        return float(loss.value(dev(z_host, backend), y, output=out, xp=xp,
                                sample_weight=w))

    value, grad = loss.value_and_grad(dev(z0, backend), y, output=out, xp=xp,
                                      sample_weight=w)
    per = reference_per_sample(loss_name, output, z0, y0)
    expected = np.average(per, weights=w0)
    assert_array(value, expected, backend=backend, dtype="float64", shape=(), rtol=1e-12)
    assert_array(loss.value(dev(z0, backend), y, output=out, xp=xp, sample_weight=w), value,
                 rtol=1e-14)
    assert_array(grad, numerical_grad(f, z0), backend=backend, dtype="float64",
                 shape=(N, K), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("loss_name,output", [p for p in PAIRS if p[0] != "mse"],
                         ids=[i for i, p in zip(PAIR_IDS, PAIRS) if p[0] != "mse"])
def test_fused_gradient_is_output_minus_target_over_n(backend, loss_name, output):
    rng = np.random.default_rng(11)
    xp = backend.xp
    z0, y0 = rng.normal(size=(N, K)), make_targets(loss_name, rng)
    z = dev(z0, backend)
    a = get_activation(output).forward(z, xp=xp)
    _, grad = get_loss(loss_name).value_and_grad(z, dev(y0, backend), output=output, xp=xp)
    assert_array(grad, (_backend.to_numpy(a) - y0) / N, backend=backend, rtol=1e-12,
                 atol=1e-16)


def test_cross_entropy_with_one_hot_targets(backend):
    xp = backend.xp
    z0 = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    y = one_hot(dev(np.array([0, 2]), backend, None), 3, xp=xp, dtype="float64",
                device=backend.device)
    value, grad = get_loss("cross_entropy").value_and_grad(dev(z0, backend), y,
                                                           output="softmax", xp=xp)
    logp = z0 - np.log(np.exp(z0).sum(axis=1, keepdims=True))
    assert_array(value, -(logp[0, 0] + logp[1, 2]) / 2, backend=backend, rtol=1e-13)
    assert_array(grad, (np.exp(logp) - np.array([[1, 0, 0], [0, 0, 1.0]])) / 2,
                 rtol=1e-13)


# --------------------------------------------------------------------------- weights
@pytest.mark.parametrize("loss_name,output", PAIRS, ids=PAIR_IDS)
def test_integer_weights_equal_repeated_samples(backend, loss_name, output):
    rng = np.random.default_rng(12)
    xp = backend.xp
    loss = get_loss(loss_name)
    z0, y0 = rng.normal(size=(N, K)), make_targets(loss_name, rng)
    w0 = np.array([2.0, 1.0, 0.0, 3.0, 1.0])
    rep = np.repeat(np.arange(N), w0.astype(int))
    v_w, g_w = loss.value_and_grad(dev(z0, backend), dev(y0, backend), output=output, xp=xp,
                                   sample_weight=dev(w0, backend))
    v_r, g_r = loss.value_and_grad(dev(z0[rep], backend), dev(y0[rep], backend),
                                   output=output, xp=xp)
    assert_array(v_w, v_r, backend=backend, rtol=1e-13)
    g_sum = np.zeros((N, K))
    np.add.at(g_sum, rep, _backend.to_numpy(g_r))
    assert_array(g_w, g_sum, rtol=1e-12, atol=1e-16)
    # uniform weights change nothing
    v_1, g_1 = loss.value_and_grad(dev(z0, backend), dev(y0, backend), output=output, xp=xp,
                                   sample_weight=dev(np.full(N, 0.7), backend))
    v_0, g_0 = loss.value_and_grad(dev(z0, backend), dev(y0, backend), output=output, xp=xp)
    assert_array(v_1, v_0, rtol=1e-13)
    assert_array(g_1, g_0, rtol=1e-12, atol=1e-16)


def test_sample_weight_from_host_and_bad_shape(backend):
    xp = backend.xp
    loss = get_loss("mse")
    z, y = dev(np.ones((3, 2)), backend, "float32"), dev(np.zeros((3, 2)), backend, "float32")
    value, grad = loss.value_and_grad(z, y, output="identity", xp=xp,
                                      sample_weight=np.array([1.0, 2.0, 3.0]))
    assert_array(value, 1.0, backend=backend, dtype="float32", shape=())
    assert_array(grad, [[1 / 6] * 2, [2 / 6] * 2, [3 / 6] * 2], dtype="float32")
    with pytest.raises(ValueError, match=r"'sample_weight' parameter of mse must have shape "
                                         r"\(3,\). Got shape \(2,\)"):
        loss.value_and_grad(z, y, output="identity", xp=xp,
                            sample_weight=dev([1.0, 2.0], backend, "float32"))


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss_name,output", PAIRS, ids=PAIR_IDS)
def test_float32_in_float32_out(backend, loss_name, output, weighted):
    rng = np.random.default_rng(13)
    xp = backend.xp
    loss = get_loss(loss_name)
    z = dev(rng.normal(size=(N, K)), backend, "float32")
    y = dev(make_targets(loss_name, rng), backend, "float64")  # cast to z's dtype
    w = dev(rng.uniform(0.5, 2.0, size=N), backend, "float32") if weighted else None
    value, grad = loss.value_and_grad(z, y, output=output, xp=xp, sample_weight=w)
    assert_array(value, backend=backend, dtype="float32", shape=())
    assert_array(grad, backend=backend, dtype="float32", shape=(N, K))
    assert_array(loss.value(z, y, output=output, xp=xp, sample_weight=w), value,
                 dtype="float32", rtol=1e-6)
    z64 = xp.astype(z, xp.float64)
    w64 = xp.astype(w, xp.float64) if weighted else None
    v64, g64 = loss.value_and_grad(z64, y, output=output, xp=xp, sample_weight=w64)
    assert_array(value, v64, rtol=1e-5)
    assert_array(grad, g64, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_classification_losses_finite_for_huge_logits(backend, dtype):
    xp = backend.xp
    z = dev([[1e4, -1e4], [-1e4, 1e4], [0.0, 0.0]], backend, dtype)
    y = dev([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]], backend, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ce, g_ce = get_loss("cross_entropy").value_and_grad(z, y, output="softmax", xp=xp)
        bce, g_bce = get_loss("binary_cross_entropy").value_and_grad(z, y, output="sigmoid",
                                                                     xp=xp)
    # CE: row 1 costs 2e4, row 2 costs 0, row 3 costs log 2.
    assert_array(ce, (2e4 + math.log(2.0)) / 3, backend=backend, dtype=dtype, rtol=1e-6)
    assert_array(g_ce, [[1 / 3, -1 / 3], [0.0, 0.0], [-1 / 6, 1 / 6]], dtype=dtype,
                 rtol=1e-6)
    # BCE: row 1 costs 1e4 + 1e4, row 2 costs 0, row 3 costs 2 log 2.
    assert_array(bce, (2e4 + 2 * math.log(2.0)) / 3, dtype=dtype, rtol=1e-6)
    assert_array(g_bce, [[1 / 3, -1 / 3], [0.0, 0.0], [-1 / 6, 1 / 6]], dtype=dtype,
                 rtol=1e-6)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(z=hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 5)),
                    elements=st.floats(-1e4, 1e4, width=32)),
       seed=st.integers(0, 2**32 - 1))
def test_property_ce_bce_finite_for_large_logits(backend, z, seed):
    xp = backend.xp
    rng = np.random.default_rng(seed)
    n, k = z.shape
    zd = dev(z, backend, "float32")
    y_ce = dev(rng.dirichlet(np.ones(k), size=n), backend, "float32")
    y_bce = dev(rng.integers(0, 2, size=(n, k)), backend, "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [
            get_loss("cross_entropy").value_and_grad(zd, y_ce, output="softmax", xp=xp),
            get_loss("binary_cross_entropy").value_and_grad(zd, y_bce, output="sigmoid",
                                                            xp=xp),
        ]
    for value, grad in results:
        v, g = _backend.to_numpy(value), _backend.to_numpy(grad)
        assert v.dtype == np.float32 and g.dtype == np.float32
        assert np.isfinite(v) and v >= -1e-3
        assert np.all(np.isfinite(g)) and np.all(np.abs(g) <= 1.0 / n + 1e-6)


# --------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("loss_name,bad_output,needed", [
    ("cross_entropy", "sigmoid", "softmax"),
    ("cross_entropy", "log_softmax", "softmax"),
    ("binary_cross_entropy", "softmax", "sigmoid"),
    ("binary_cross_entropy", "identity", "sigmoid"),
    ("poisson", "identity", "exp"),
])
def test_fused_losses_reject_other_outputs(backend, loss_name, bad_output, needed):
    xp = backend.xp
    z = dev(np.zeros((2, 2)), backend)
    with pytest.raises(ValueError, match=f"needs a '{needed}' output activation"):
        get_loss(loss_name).value_and_grad(z, z, output=bad_output, xp=xp)
    with pytest.raises(ValueError, match=f"got '{bad_output}'"):
        get_loss(loss_name).value(z, z, output=get_activation(bad_output), xp=xp)


@pytest.mark.parametrize("loss_name,default", [
    ("mse", "identity"), ("cross_entropy", "softmax"),
    ("binary_cross_entropy", "sigmoid"), ("poisson", "exp"),
])
def test_default_output(backend, loss_name, default):
    xp = backend.xp
    loss = get_loss(loss_name)
    assert loss.default_output == default
    assert get_activation(loss.default_output).name == default
    rng = np.random.default_rng(14)
    z, y = dev(rng.normal(size=(N, K)), backend), dev(make_targets(loss_name, rng), backend)
    v_none = loss.value(z, y, xp=xp)
    v_named = loss.value(z, y, output=default, xp=xp)
    assert_array(v_none, v_named, backend=backend, rtol=0)


def test_shapes_are_checked(backend):
    xp = backend.xp
    loss = get_loss("mse")
    z = dev(np.zeros((4, 1)), backend)
    # 1-D targets are accepted for a single output
    value, grad = loss.value_and_grad(z, dev(np.ones(4), backend), output="identity", xp=xp)
    assert_array(value, 0.5, backend=backend, shape=())
    assert_array(grad, np.full((4, 1), -0.25), shape=(4, 1))
    with pytest.raises(ValueError, match=r"targets of mse must have the logits' shape "
                                         r"\(4, 1\). Got shape \(4, 2\)"):
        loss.value(z, dev(np.zeros((4, 2)), backend), output="identity", xp=xp)
    with pytest.raises(ValueError, match="must be 2-D"):
        loss.value(dev(np.zeros(4), backend), dev(np.zeros(4), backend), xp=xp)
    with pytest.raises(ValueError, match="at least one sample"):
        loss.value(dev(np.zeros((0, 2)), backend), dev(np.zeros((0, 2)), backend), xp=xp)


# --------------------------------------------------------------------------- registry
@pytest.mark.parametrize("alias,canonical", [
    ("squared_error", "mse"), ("mean_squared_error", "mse"), ("quadratic", "mse"),
    ("categorical_cross_entropy", "cross_entropy"), ("log_loss", "cross_entropy"),
    ("Binary-Cross-Entropy", "binary_cross_entropy"), ("poisson", "poisson"),
])
def test_aliases(alias, canonical):
    loss = get_loss(alias)
    assert loss.name == canonical and loss == get_loss(canonical)
    assert isinstance(loss, LOSSES[canonical])


def test_registry_errors():
    with pytest.raises(ValueError, match="Unknown loss 'hinge'") as info:
        get_loss("hinge")
    for name in ("mse", "cross_entropy", "binary_cross_entropy", "poisson", "log_loss"):
        assert repr(name) in str(info.value)
    with pytest.raises(TypeError, match="must be a name, a Loss or a config dict"):
        get_loss(None)
    # one registry policy (issue 10): an unknown parameter lists the valid ones (none)
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['alpha'\] for loss 'mse'\. "
                                         r"Valid parameters: \[\]"):
        get_loss({"name": "mse", "alpha": 1.0})


@pytest.mark.parametrize("name", sorted({cls.name for cls in LOSSES.values()}))
def test_config_roundtrip_pickle_repr(name):
    loss = get_loss(name)
    assert isinstance(loss, Loss)
    assert get_loss(loss.get_config()) == loss
    assert get_loss(loss) is loss
    clone = pickle.loads(pickle.dumps(loss))
    assert clone == loss and hash(clone) == hash(loss)
    assert repr(loss) == f"{type(loss).__name__}()"
    assert loss != get_loss("mse" if name != "mse" else "poisson")


# --------------------------------------------------------------------------- one_hot
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_hot(backend, dtype):
    xp = backend.xp
    labels = _backend.to_device(np.array([2, 0, 1, 2]), backend=backend)
    y = one_hot(labels, 3, xp=xp, dtype=dtype, device=backend.device)
    assert_array(y, np.eye(3)[[2, 0, 1, 2]], backend=backend, dtype=dtype, shape=(4, 3))
    # host labels are moved; a namespace dtype object is accepted
    y2 = one_hot(np.array([1, 0], dtype=np.int32), 2, xp=xp,
                 dtype=_backend.resolve_dtype(dtype, xp), device=backend.device)
    assert_array(y2, [[0.0, 1.0], [1.0, 0.0]], backend=backend, dtype=dtype)


def test_one_hot_errors(backend):
    xp = backend.xp
    labels = _backend.to_device(np.array([0, 3]), backend=backend)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\). Got labels from 0 to 3"):
        one_hot(labels, 3, xp=xp, dtype="float32", device=backend.device)
    with pytest.raises(ValueError, match="'n_classes' parameter of one_hot must be an int "
                                         ">= 1. Got 0 instead."):
        one_hot(labels, 0, xp=xp, dtype="float32", device=backend.device)
    with pytest.raises(TypeError, match="must hold integers"):
        one_hot(dev([0.0, 1.0], backend), 2, xp=xp, dtype="float32", device=backend.device)
    with pytest.raises(ValueError, match="must be 1-D"):
        one_hot(_backend.to_device(np.zeros((2, 2), dtype=np.int64), backend=backend), 2,
                xp=xp, dtype="float32", device=backend.device)


# --------------------------------------------------------------------------- l2_penalty
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_l2_penalty(backend, dtype):
    xp = backend.xp
    rng = np.random.default_rng(15)
    w0 = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    weights = [dev(w, backend, dtype) for w in w0]
    pen = l2_penalty(weights, 0.3, xp=xp)
    expected = 0.15 * sum(float((w ** 2).sum()) for w in w0)
    assert_array(pen, expected, backend=backend, dtype=dtype, shape=(),
                 rtol=1e-6 if dtype == "float32" else 1e-13)
    zero = l2_penalty(weights, 0.0, xp=xp)
    assert zero == 0.0 and isinstance(zero, float)
    assert l2_penalty([], 0.3, xp=xp) == 0.0


def test_l2_penalty_gradient_is_alpha_w(backend):
    # The documented gradient (the model adds alpha * W itself) matches the value.
    xp = backend.xp
    w0 = np.random.default_rng(16).normal(size=(2, 3))
    g = numerical_grad(lambda w: float(l2_penalty([dev(w, backend)], 0.7, xp=xp)), w0)
    np.testing.assert_allclose(g, 0.7 * w0, rtol=1e-6, atol=1e-9)


def test_l2_penalty_bad_alpha():
    with pytest.raises(ValueError) as info:
        l2_penalty([], -1, xp=None)
    assert str(info.value) == ("The 'alpha' parameter of l2_penalty must be a float >= 0. "
                               "Got -1 instead.")
