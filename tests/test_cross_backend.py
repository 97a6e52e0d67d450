"""Every backend computes the same numbers.

* Training: the same seed, data and dropout masks (drawn on the host from the model's
  generator) give float64 parameters equal to 1e-12 on every backend of the ``backend``
  fixture and on NumPy (its fast step and its generic path), after several steps.
* Gradients: the hand-written backward pass of every activation, loss and layer, and of
  whole models, equals ``torch.autograd`` differentiating mlpx's own forward pass run on
  PyTorch tensors (float64).
* Files: a model saved on one backend loads and predicts the same on every other.
"""

import numpy as np
import pytest

import mlpx
from mlpx import MLP, _backend, _fast
from mlpx.activations import ACTIVATIONS, get_activation
from mlpx.layers import LAYERS, get_layer
from mlpx.losses import LOSSES, get_loss

from .conftest import ALL_BACKENDS, enable_jax_x64, library_installed
from .helpers import assert_array

TOL = 1e-12

# (MLP keyword arguments, optimizer): dropout, every optimizer family, the layers with
# parameters of their own (PReLU, Maxout), L2, and each loss with its natural output.
CASES = [
    ({"activation": "relu", "dropout": 0.25}, {"name": "adam", "lr": 0.01}),
    ({"activation": "tanh", "alpha": 1e-3}, {"name": "sgd", "lr": 0.1, "momentum": 0.9,
                                             "nesterov": True}),
    ({"activation": "gelu", "dropout": 0.1}, {"name": "rmsprop", "lr": 0.01}),
    ({"activation": "prelu"}, {"name": "adamw", "lr": 0.01, "weight_decay": 0.1}),
    ({"activation": "maxout", "maxout_k": 3}, {"name": "sgd", "lr": 0.05}),
    ({"activation": "elu", "loss": "mse"}, {"name": "adam", "lr": 0.01}),
    ({"activation": "swish", "loss": "binary_cross_entropy"}, "sgd"),
]


def _data(loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 5))
    if loss == "mse":
        return X, rng.normal(size=(40, 3)), 3
    if loss == "binary_cross_entropy":
        return X, (rng.random((40, 3)) < 0.5).astype(np.float64), 3
    return X, rng.integers(0, 3, size=40), 3


def _train(backend, kwargs, optimizer, *, fast=True):
    X, y, k = _data(kwargs.get("loss"))
    model = MLP([5, 7, 6, k], backend=backend, dtype="float64", seed=3, **kwargs)
    with _fast.disabled() if not fast else _nullcontext():
        model.fit(X, y, epochs=2, batch_size=8, optimizer=optimizer, verbose=0)  # 10 steps
    return model


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("kwargs,optimizer", CASES,
                         ids=[c[0]["activation"] for c in CASES])
def test_training_gives_the_same_float64_parameters_on_every_backend(backend, kwargs,
                                                                     optimizer):
    ref = _train("numpy", kwargs, optimizer, fast=False)
    # JAX's compiled step draws dropout masks on the device from a key it carries (not
    # frozen into the compiled code), so with dropout only its generic path can draw the
    # same masks as the others; tests/test_jax_step.py holds the compiled step to the
    # generic path. Every other case runs JAX's compiled step here.
    jax_dropout = backend.name == "jax" and kwargs.get("dropout", 0.0) > 0
    model = _train(backend, kwargs, optimizer, fast=not jax_dropout)
    assert model.state_.step == ref.state_.step == 10
    for got, want in zip(model.params, ref.params):
        assert_array(got, want, backend=backend, dtype="float64", rtol=TOL, atol=TOL)
    fast = _train("numpy", kwargs, optimizer, fast=True)  # NumPy's fast step agrees too
    for got, want in zip(fast.params, ref.params):
        assert_array(got, want, rtol=TOL, atol=TOL)


# ---------------------------------------------------------------------------- autograd
@pytest.fixture(scope="module")
def torch_xp():
    pytest.importorskip("torch")
    return _backend.resolve_backend("torch").xp


def _leaf(a):
    import torch

    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _grad(out, wrt, weight):
    import torch

    return torch.autograd.grad((out * weight).sum(), wrt, allow_unused=False)


@pytest.mark.parametrize("name", sorted(set(ACTIVATIONS)))
def test_activation_backward_equals_torch_autograd(torch_xp, name):
    import torch

    rng = np.random.default_rng(1)
    x0 = rng.normal(scale=2.0, size=(6, 5))
    x0[np.abs(x0) < 1e-3] = 0.5  # keep away from kinks (relu at 0, hard_* edges)
    x0[np.abs(np.abs(x0) - 1.0) < 1e-3] = 0.5
    x0[np.abs(np.abs(x0) - 2.0) < 1e-3] = 0.5
    dy0 = rng.normal(size=x0.shape)
    act = get_activation(name)
    x = _leaf(x0)
    y = act.forward(x, xp=torch_xp)
    (want,) = _grad(y, [x], torch.tensor(dy0))
    with torch.no_grad():
        got = act.backward(torch.tensor(dy0), x.detach(), y.detach(), xp=torch_xp)
    assert_array(got, want, dtype="float64", rtol=TOL, atol=TOL)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", sorted(set(LOSSES)))
def test_loss_gradient_equals_torch_autograd(torch_xp, name, weighted):
    import torch

    rng = np.random.default_rng(2)
    loss = get_loss(name)
    out = get_activation(loss.default_output)
    z0 = rng.normal(size=(7, 4))
    if out.name == "softmax":
        Y0 = np.eye(4)[rng.integers(0, 4, size=7)]
    elif out.name in ("sigmoid",):
        Y0 = (rng.random((7, 4)) < 0.5).astype(np.float64)
    else:
        Y0 = np.abs(rng.normal(size=(7, 4))) + 0.1  # positive: valid for Poisson too
    w = torch.tensor(rng.random(7) + 0.5) if weighted else None
    z = _leaf(z0)
    value = loss.value(z, torch.tensor(Y0), output=out, xp=torch_xp, sample_weight=w)
    (want,) = torch.autograd.grad(value, [z])
    with torch.no_grad():
        v2, got = loss.value_and_grad(z.detach(), torch.tensor(Y0), output=out, xp=torch_xp,
                                      sample_weight=w)
    assert_array(v2, value.detach(), rtol=TOL)
    assert_array(got, want, dtype="float64", rtol=TOL, atol=TOL)


def _layer_cases():
    return [("Dense", {"units": 4}), ("ActivationLayer", {"activation": "gelu"}),
            ("Dropout", {"p": 0.3}), ("PReLU", {}), ("Maxout", {"units": 3, "k": 3}),
            ("Embedding", {"vocab_size": 6, "dim": 3}), ("BatchNorm", {}),
            ("LayerNorm", {}), ("Standardize", {}), ("Rescale", {"scale": 0.5, "offset": 0.1})]


def test_every_layer_is_covered():
    assert {name for name, _ in _layer_cases()} == set(LAYERS)


@pytest.mark.parametrize("name,params", _layer_cases(), ids=[c[0] for c in _layer_cases()])
def test_layer_backward_equals_torch_autograd(torch_xp, name, params):
    import torch

    backend = _backend.resolve_backend("torch")
    rng = np.random.default_rng(3)
    layer = get_layer({"name": name, **params})
    embedding = name == "Embedding"
    n_in = 2 if embedding else 5
    layer.build(n_in, backend=backend, dtype="float64", rng=np.random.default_rng(0))
    if name == "Standardize":  # statistics from data (mean, std, count), never trained
        layer.adapt(rng.normal(loc=2.0, scale=3.0, size=(20, n_in)))
    trainable = layer.trainable
    # trainable parameters away from zero, so PReLU's slopes and Maxout's pieces are
    # generic; statistics stay as they are (their gradient is zero by contract)
    layer.params = [_leaf(mlpx.to_numpy(p) + rng.normal(scale=0.1, size=tuple(p.shape)))
                    if t else p for p, t in zip(layer.params, trainable)]
    if embedding:
        x = torch.tensor(rng.integers(0, 6, size=(8, n_in)))
    else:
        x = _leaf(rng.normal(size=(8, n_in)))
    out, cache = layer.forward(x, xp=torch_xp, training=True,
                               rng=np.random.default_rng(4))
    dout = torch.tensor(rng.normal(size=tuple(out.shape)))
    wrt = [p for p, t in zip(layer.params, trainable) if t] + ([] if embedding else [x])
    want = _grad(out, wrt, dout)
    with torch.no_grad():
        dx, grads = layer.backward(dout, cache, xp=torch_xp, need_dx=not embedding)
    for g, t in zip(grads, trainable):
        if not t:  # statistics: exactly zero
            assert not bool(torch.any(g != 0))
    got = [g for g, t in zip(grads, trainable) if t] + ([] if embedding else [dx])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_array(g, w, dtype="float64", rtol=TOL, atol=TOL)


@pytest.mark.parametrize("kwargs", [c[0] for c in CASES], ids=[c[0]["activation"]
                                                               for c in CASES])
def test_model_gradients_equal_torch_autograd(torch_xp, kwargs):
    """Whole models (L2 penalty included): ``loss_and_grads`` against autograd of the
    loss computed by the same forward pass."""
    import torch

    X0, y0, k = _data(kwargs.get("loss"), seed=5)
    model = MLP([5, 7, 6, k], backend="torch", dtype="float64", seed=3,
                **{**kwargs, "dropout": 0.0, "alpha": 0.01})
    Xd = model.to_device_X(X0[:12])
    Yd, _ = model.to_device_y(y0[:12], 12)
    model.assign_params([p.detach().clone().requires_grad_(True) for p in model.params])
    loss, grads, _ = model.loss_and_grads(Xd, Yd, training=False)
    want = torch.autograd.grad(loss, model.params)
    for g, w in zip(grads, want):
        assert_array(g, w, dtype="float64", rtol=TOL, atol=TOL)


# ---------------------------------------------------------------------------- files
def _installed_backends():
    names = []
    for name in ALL_BACKENDS:
        if name == "cupy":
            if _backend.cuda_available():
                names.append(name)
        elif name == "numpy" or library_installed({"dask": "dask.array"}.get(name, name)):
            names.append(name)
    return names


def test_a_model_saved_on_one_backend_predicts_the_same_on_every_other(backend, tmp_path):
    if "jax" in _installed_backends():
        enable_jax_x64()
    X, y, k = _data(None)
    model = MLP([5, 7, 6, k], activation="prelu", dropout=0.2, backend=backend,
                dtype="float64", seed=3)
    model.fit(X, y, epochs=1, batch_size=8, optimizer="adam", verbose=0)
    want = mlpx.to_numpy(model.predict_proba(X))
    path = model.save(tmp_path / "model.mlpx")
    for other in _installed_backends():
        loaded = mlpx.load(path, backend=other)
        assert loaded.backend.name == other
        got = loaded.predict_proba(X)
        assert_array(got, want, backend=loaded.backend, dtype="float64", rtol=TOL,
                     atol=TOL)
