"""Layers: central-difference gradient checks (float64) and behaviour, on every backend."""

import numpy as np
import pytest

from mlpx import _backend
from mlpx.layers import (
    LAYERS,
    ActivationLayer,
    Dense,
    Dropout,
    Embedding,
    Maxout,
    PReLU,
    embedding_grad,
    get_layer,
)

from .helpers import assert_array, numerical_grad


def _dev(a, backend):
    return _backend.to_device(np.asarray(a), backend=backend)


def check_layer_gradients(layer, backend, x, *, training=False, seed=None, atol=1e-6):
    """Compare backward() with central differences for the input and every parameter."""
    xp = backend.xp
    rng = np.random.default_rng(123)
    y0, _ = layer.forward(_dev(x, backend), xp=xp, training=training,
                          rng=None if seed is None else np.random.default_rng(seed))
    R = rng.standard_normal(_backend.to_numpy(y0).shape)

    def scalar(xv=None, params=None):
        saved = layer.params
        if params is not None:
            layer.params = [_dev(p, backend) for p in params]
        noise = None if seed is None else np.random.default_rng(seed)
        y, _ = layer.forward(_dev(x if xv is None else xv, backend), xp=xp,
                             training=training, rng=noise)
        layer.params = saved
        return float(np.sum(_backend.to_numpy(y) * R))

    noise = None if seed is None else np.random.default_rng(seed)
    _, cache = layer.forward(_dev(x, backend), xp=xp, training=training, rng=noise)
    dx, grads = layer.backward(_dev(R, backend), cache, xp=xp, need_dx=True)
    assert len(grads) == len(layer.params)
    assert_array(dx, numerical_grad(lambda v: scalar(xv=v), x), backend=backend,
                 dtype="float64", rtol=1e-5, atol=atol)
    base = [_backend.to_numpy(p).copy() for p in layer.params]
    for i, g in enumerate(grads):
        def f(v, i=i):
            ps = [b.copy() for b in base]
            ps[i] = v
            return scalar(params=ps)
        assert_array(g, numerical_grad(f, base[i]), backend=backend, dtype="float64",
                     rtol=1e-5, atol=atol)


def build(layer, backend, n_in, dtype="float64", seed=0):
    layer.build(n_in, backend=backend, dtype=dtype, rng=np.random.default_rng(seed))
    return layer


def test_dense_gradients(backend, rng):
    layer = build(Dense(4), backend, 3)
    check_layer_gradients(layer, backend, rng.standard_normal((5, 3)))


def test_dense_without_bias(backend, rng):
    layer = build(Dense(2, bias=False), backend, 3)
    assert len(layer.params) == 1 and layer.decay == [True]
    check_layer_gradients(layer, backend, rng.standard_normal((4, 3)))


def test_dense_skips_input_gradient(backend, rng):
    layer = build(Dense(4), backend, 3)
    y, cache = layer.forward(_dev(rng.standard_normal((5, 3)), backend), xp=backend.xp)
    dx, grads = layer.backward(y, cache, xp=backend.xp, need_dx=False)
    assert dx is None and len(grads) == 2


def test_dense_forward_values(backend):
    layer = build(Dense(2), backend, 2)
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    layer.params = [_dev(W, backend), _dev([0.5, -0.5], backend)]
    y, _ = layer.forward(_dev([[1.0, 1.0]], backend), xp=backend.xp)
    assert_array(y, [[4.5, 5.5]], backend=backend, dtype="float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layers_preserve_dtype(backend, dtype, rng):
    x = _dev(rng.standard_normal((6, 4)).astype(dtype), backend)
    for layer in (Dense(3), ActivationLayer("relu"), PReLU(), Maxout(3, 2), Dropout(0.5)):
        build(layer, backend, 4, dtype=dtype)
        y, cache = layer.forward(x, xp=backend.xp, training=True, rng=np.random.default_rng(0))
        dx, grads = layer.backward(y, cache, xp=backend.xp)
        assert_array(y, backend=backend, dtype=dtype)
        assert_array(dx, backend=backend, dtype=dtype, shape=(6, 4))
        for g, p in zip(grads, layer.params):
            assert_array(g, backend=backend, dtype=dtype, shape=tuple(p.shape))


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "elu", "softplus", "gelu"])
def test_activation_layer_gradients(backend, name, rng):
    x = rng.standard_normal((4, 3))
    x = np.where(np.abs(x) < 0.05, 0.3, x)  # stay off kinks
    check_layer_gradients(ActivationLayer(name), backend, x)


def test_prelu_gradients(backend, rng):
    layer = build(PReLU(0.1), backend, 3)
    x = rng.standard_normal((6, 3))
    x = np.where(np.abs(x) < 0.05, 0.5, x)
    check_layer_gradients(layer, backend, x)
    assert layer.decay == [False]


def test_prelu_values(backend):
    layer = build(PReLU(0.25), backend, 2)
    y, _ = layer.forward(_dev([[-4.0, 2.0]], backend), xp=backend.xp)
    assert_array(y, [[-1.0, 2.0]], backend=backend, dtype="float64")


def test_maxout_gradients(backend, rng):
    layer = build(Maxout(3, k=3), backend, 4)
    check_layer_gradients(layer, backend, rng.standard_normal((5, 4)))


def test_maxout_takes_the_max_piece(backend):
    layer = build(Maxout(1, k=2), backend, 1)
    layer.params = [_dev([[1.0, -1.0]], backend), _dev([0.0, 0.0], backend)]
    y, _ = layer.forward(_dev([[2.0], [-3.0]], backend), xp=backend.xp)
    assert_array(y, [[2.0], [3.0]], backend=backend, dtype="float64")  # |x|


def test_dropout_gradients_with_fixed_mask(backend, rng):
    layer = build(Dropout(0.4), backend, 5)
    check_layer_gradients(layer, backend, rng.standard_normal((8, 5)), training=True, seed=7)


def test_dropout_is_identity_at_inference(backend, rng):
    layer = build(Dropout(0.5), backend, 5)
    x = _dev(rng.standard_normal((8, 5)), backend)
    y, _ = layer.forward(x, xp=backend.xp, training=False)
    assert_array(y, _backend.to_numpy(x), backend=backend)


def test_dropout_drops_and_rescales(backend):
    layer = build(Dropout(0.25), backend, 200)
    x = _dev(np.ones((200, 200)), backend)
    y, _ = layer.forward(x, xp=backend.xp, training=True, rng=np.random.default_rng(0))
    y = _backend.to_numpy(y)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    assert abs(y.mean() - 1.0) < 0.02


@pytest.mark.parametrize("bad", [-0.1, 1.0, "half", True])
def test_dropout_rejects_bad_p(bad):
    with pytest.raises(ValueError, match="'p' parameter of Dropout"):
        Dropout(bad)


@pytest.mark.parametrize("cls,kw", [(Dense, {"units": 0}), (Maxout, {"units": 2, "k": 0}),
                                    (Dense, {"units": 2.5})])
def test_bad_widths(cls, kw):
    with pytest.raises(ValueError, match="must be an int >= 1"):
        cls(**kw)


def test_config_round_trip():
    for layer in (Dense(3, init="he_normal", bias=False), ActivationLayer("leaky_relu", alpha=0.2),
                  Dropout(0.3), PReLU(0.1), Maxout(4, 3)):
        cfg = layer.get_config()
        assert cfg["name"] in LAYERS
        assert get_layer(cfg).get_config() == cfg


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ValueError, match="Valid layers: .*Dense"):
        get_layer({"name": "Conv2D"})
    # one registry policy (issue 10): unknown parameters are named with the valid ones
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['colour'\] for layer "
                                         r"'Dense'\. Valid parameters: \['units', 'init', "
                                         r"'bias'\]"):
        get_layer({"name": "Dense", "units": 3, "colour": "red"})
    with pytest.raises(ValueError, match=r"Missing parameter\(s\) \['units'\] for layer "
                                         "'Dense'"):
        get_layer({"name": "Dense"})


# ------------------------------------------------------------------------ Embedding
IDS = np.array([[1, 3, 1], [0, 1, 4], [3, 3, 3], [4, 2, 1]])  # ids repeat within rows too


def _ids(a, backend):
    return _backend.to_device(np.asarray(a, dtype=np.int64), backend=backend)


def test_embedding_forward_concatenates_rows(backend):
    layer = build(Embedding(5, 2), backend, 3)
    assert layer.n_out == 6 and layer.decay == [True]
    E = _backend.to_numpy(layer.params[0])
    y, _ = layer.forward(_ids(IDS, backend), xp=backend.xp)
    expected = np.concatenate([E[IDS[:, j]] for j in range(3)], axis=1)
    assert_array(y, expected, backend=backend, dtype="float64", shape=(4, 6))


@pytest.mark.parametrize("fast", [True, False])
def test_embedding_gradient_with_repeated_ids(backend, rng, fast):
    """Central differences (float64) on the table; repeated ids must accumulate."""
    layer = build(Embedding(5, 2), backend, 3)
    layer.fast = fast
    xp = backend.xp
    R = rng.standard_normal((4, 6))
    _, cache = layer.forward(_ids(IDS, backend), xp=xp)
    dx, (g,) = layer.backward(_dev(R, backend), cache, xp=xp, need_dx=False)
    assert dx is None

    def scalar(E):
        layer_e = build(Embedding(5, 2), _backend.resolve_backend("numpy"), 3)
        layer_e.params = [E]
        y, _ = layer_e.forward(IDS, xp=_backend.resolve_backend("numpy").xp)
        return float(np.sum(y * R))

    E0 = _backend.to_numpy(layer.params[0]).copy()
    numeric = numerical_grad(scalar, E0)
    assert_array(g, numeric, backend=backend, dtype="float64", rtol=1e-6, atol=1e-8)
    # id 3 occurs four times, id 1 four times: their rows hold sums, not the last write
    by_hand = np.zeros((5, 2))
    for (i, j), v in np.ndenumerate(IDS):
        by_hand[v] += R[i, 2 * j:2 * j + 2]
    assert_array(g, by_hand, backend=backend, rtol=1e-12, atol=1e-12)


def test_embedding_gradient_through_the_model_matches_central_differences(backend, rng):
    """The whole backward pass (Embedding under Dense layers) against the loss itself."""
    from mlpx import Sequential

    model = Sequential([Embedding(5, 3), Dense(4), ActivationLayer("tanh"), Dense(3)],
                       n_features=3, backend=backend, dtype="float64", seed=0)
    X = _ids(IDS, backend)
    Y = _dev(np.eye(3)[[0, 2, 1, 2]], backend)
    _, grads, _ = model.loss_and_grads(X, Y, training=False)
    base = [_backend.to_numpy(p).copy() for p in model.params]

    def loss_with(E):
        model.set_params([E] + base[1:])
        loss, _, _ = model.loss_and_grads(X, Y, training=False)
        return float(loss)

    numeric = numerical_grad(loss_with, base[0])
    model.set_params(base)
    assert_array(grads[0], numeric, backend=backend, dtype="float64", rtol=1e-5, atol=1e-9)


def test_embedding_fast_path_equals_generic(backend, rng):
    """NumPy's add.at, CuPy's scatter_add and torch's index_add_ give the one-hot product."""
    xp = backend.xp
    ids = rng.integers(0, 7, 500)  # many repeats
    dy = rng.standard_normal((500, 3))
    fast = embedding_grad(_ids(ids, backend), _dev(dy, backend), 7, xp=xp, fast=True)
    generic = embedding_grad(_ids(ids, backend), _dev(dy, backend), 7, xp=xp, fast=False)
    assert_array(fast, generic, backend=backend, dtype="float64", rtol=1e-12, atol=1e-12)
    expected = np.zeros((7, 3))
    np.add.at(expected, ids, dy)
    assert_array(generic, expected, rtol=1e-12, atol=1e-12)


def test_embedding_generic_gradient_in_blocks(monkeypatch, rng):
    """The one-hot product is computed in blocks of rows; the blocks add up exactly."""
    import mlpx.layers as layers_mod

    monkeypatch.setattr(layers_mod, "_ONE_HOT_BLOCK", 7 * 3)  # 3 rows per block
    xp = _backend.resolve_backend("numpy").xp
    ids = rng.integers(0, 7, 10)
    dy = rng.standard_normal((10, 2))
    expected = np.zeros((7, 2))
    np.add.at(expected, ids, dy)
    assert_array(embedding_grad(ids, dy, 7, xp=xp, fast=False), expected, rtol=1e-12)


def test_scatter_add_rows_refuses_other_namespaces():
    strict = _backend.resolve_backend("array_api_strict")
    target = _backend.to_device(np.zeros((2, 2)), backend=strict)
    with pytest.raises(TypeError, match="NumPy, CuPy and PyTorch arrays only"):
        _backend.scatter_add_rows(target, _ids([0], strict), target[:1, ...])


def test_embedding_options_and_config():
    layer = Embedding(10, 4, init={"name": "uniform", "a": -0.1, "b": 0.1}, regularize=False)
    layer.build(2, backend=_backend.resolve_backend("numpy"), dtype="float32",
                rng=np.random.default_rng(0))
    assert layer.decay == [False]
    E = layer.params[0]
    assert E.shape == (10, 4) and E.dtype == np.float32 and np.abs(E).max() <= 0.1
    cfg = layer.get_config()
    assert cfg["name"] in LAYERS and get_layer(cfg).get_config() == cfg
    assert get_layer("embedding", vocab_size=3, dim=2).vocab_size == 3
    for bad in ({"vocab_size": 0, "dim": 2}, {"vocab_size": 3, "dim": 1.5}):
        with pytest.raises(ValueError, match="must be an int >= 1"):
            Embedding(**bad)


def test_embedding_has_no_input_gradient(backend):
    layer = build(Embedding(5, 2), backend, 3)
    _, cache = layer.forward(_ids(IDS, backend), xp=backend.xp)
    with pytest.raises(ValueError, match="first layer"):
        layer.backward(_dev(np.ones((4, 6)), backend), cache, xp=backend.xp, need_dx=True)
