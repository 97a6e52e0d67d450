"""Normalisation and preprocessing layers (BatchNorm, LayerNorm, Standardize, Rescale):
central-difference gradient checks in float64, train/eval statistics, statistics that are
never trained, save/load, the MLP options, the generic-path fallback and summary()."""

import os
import pickle

import numpy as np
import pytest

import mlpx
from mlpx import _backend, _fast
from mlpx import io as mio
from mlpx.layers import (
    LAYERS,
    ActivationLayer,
    BatchNorm,
    Dense,
    LayerNorm,
    Rescale,
    Standardize,
    get_layer,
)
from mlpx.model import MLP, Sequential

from .helpers import assert_array, numerical_grad


def _dev(a, backend):
    return _backend.to_device(np.asarray(a), backend=backend)


def _build(layer, backend, n_in, dtype="float64"):
    layer.build(n_in, backend=backend, dtype=dtype, rng=np.random.default_rng(0))
    return layer


def _set(layer, backend, values):
    layer.params = [_dev(np.asarray(v, dtype=np.float64), backend) for v in values]


def check_gradients(layer, backend, x, *, training):
    """backward() against central differences: the input and every trainable parameter;
    statistics must get exact zeros (they are never trained)."""
    xp = backend.xp
    R = np.random.default_rng(123).standard_normal(
        _backend.to_numpy(layer.forward(_dev(x, backend), xp=xp, training=training)[0]).shape)

    def scalar(xv=None, params=None):
        saved = layer.params
        if params is not None:
            layer.params = [_dev(p, backend) for p in params]
        y, _ = layer.forward(_dev(x if xv is None else xv, backend), xp=xp, training=training)
        layer.params = saved
        return float(np.sum(_backend.to_numpy(y) * R))

    _, cache = layer.forward(_dev(x, backend), xp=xp, training=training)
    dx, grads = layer.backward(_dev(R, backend), cache, xp=xp, need_dx=True)
    assert_array(dx, numerical_grad(lambda v: scalar(xv=v), x), backend=backend,
                 dtype="float64", rtol=1e-5, atol=1e-7)
    assert len(grads) == len(layer.params)
    base = [_backend.to_numpy(p).copy() for p in layer.params]
    for i, (g, trainable) in enumerate(zip(grads, layer.trainable)):
        if not trainable:
            assert_array(g, np.zeros_like(base[i]), backend=backend, dtype="float64")
            continue

        def f(v, i=i):
            ps = [b.copy() for b in base]
            ps[i] = v
            return scalar(params=ps)

        assert_array(g, numerical_grad(f, base[i]), backend=backend, dtype="float64",
                     rtol=1e-5, atol=1e-7)
    none_dx, _ = layer.backward(_dev(R, backend), cache, xp=xp, need_dx=False)
    assert none_dx is None


# ---------------------------------------------------------------------- gradients
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients(backend, rng, training):
    layer = _build(BatchNorm(), backend, 3)
    _set(layer, backend, [[1.5, -0.5, 2.0], [0.1, 0.2, -0.3], [0.3, -1.0, 2.0],
                          [0.5, 2.0, 1.5]])
    check_gradients(layer, backend, rng.standard_normal((6, 3)) * 2 + 1, training=training)


def test_layernorm_gradients(backend, rng):
    layer = _build(LayerNorm(), backend, 4)
    _set(layer, backend, [[1.5, -0.5, 2.0, 0.7], [0.1, 0.2, -0.3, 0.0]])
    check_gradients(layer, backend, rng.standard_normal((5, 4)) * 3, training=True)


def test_standardize_and_rescale_gradients(backend, rng):
    layer = _build(Standardize(), backend, 3)
    layer.adapt(rng.standard_normal((20, 3)) * [1.0, 5.0, 0.1] + 4)
    check_gradients(layer, backend, rng.standard_normal((4, 3)), training=True)
    check_gradients(_build(Rescale(0.25, -1.0), backend, 3), backend,
                    rng.standard_normal((4, 3)), training=True)


def test_model_gradients_through_norm_layers(backend, rng):
    """The whole model's loss gradient (float64) against central differences, with a
    Standardize input (backprop stops before it) and BatchNorm / LayerNorm inside."""
    X = rng.standard_normal((7, 3)) * 4 + 2
    y = np.array([0, 1, 2, 1, 0, 2, 1])
    for norm in ("batch", "layer"):
        model = MLP([3, 5, 4, 3], activation="tanh", norm=norm, preprocess="standardize",
                    alpha=0.01, backend=backend, dtype="float64", seed=1)
        model.layers[0].adapt(X)
        Xd = model.to_device_X(X)
        Yd, _ = model.to_device_y(y, 7)
        base = [_backend.to_numpy(p).copy() for p in model.params]
        _, grads, _ = model.loss_and_grads(Xd, Yd)

        def loss(values, model=model, Xd=Xd, Yd=Yd):
            saved = model.params
            model.assign_params([_dev(v, backend) for v in values])
            value, _, _ = model.loss_and_grads(Xd, Yd)
            model.assign_params(saved)
            return float(value)

        for i, (g, trainable) in enumerate(zip(grads, model.trainable_mask)):
            if not trainable:
                assert_array(g, np.zeros_like(base[i]), backend=backend)
                continue

            def f(v, i=i, base=base):
                ps = [b.copy() for b in base]
                ps[i] = v
                return loss(ps)

            assert_array(g, numerical_grad(f, base[i]), backend=backend, dtype="float64",
                         rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------------- BatchNorm statistics
def test_batchnorm_training_uses_batch_statistics_and_eval_the_running_ones(backend, rng):
    xp = backend.xp
    layer = _build(BatchNorm(momentum=0.75, epsilon=1e-3), backend, 2)
    x = rng.standard_normal((8, 2)) * [2.0, 0.5] + [1.0, -3.0]
    y, cache = layer.forward(_dev(x, backend), xp=xp, training=True)
    expect = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3)
    assert_array(y, expect, backend=backend, rtol=1e-12)
    mean, var = layer.updated_statistics(cache)
    assert_array(mean, 0.25 * x.mean(0), backend=backend, rtol=1e-12)
    assert_array(var, 0.75 + 0.25 * x.var(0, ddof=1), backend=backend, rtol=1e-12)
    y_eval, eval_cache = layer.forward(_dev(x, backend), xp=xp, training=False)
    assert_array(y_eval, x / np.sqrt(1 + 1e-3), backend=backend, rtol=1e-12)
    assert layer.updated_statistics(eval_cache) is None


def test_running_statistics_follow_the_steps_and_are_never_trained(backend, rng):
    """BatchNorm first (its input is the data itself), full batch: after k steps the
    running mean is (1 - m**k) * mean(X), whatever the optimizer does to the weights."""
    X = rng.standard_normal((16, 3)) * [1.0, 2.0, 3.0] + [5.0, -1.0, 0.5]
    y = rng.integers(0, 2, 16)
    model = Sequential([BatchNorm(momentum=0.5), Dense(2)], alpha=0.5, n_features=3,
                       backend=backend, dtype="float64", seed=0)
    model.fit(X, y, epochs=3, batch_size=None, shuffle=False, verbose=0,
              optimizer={"name": "adamw", "lr": 0.5, "weight_decay": 0.9})
    _, _, mean, var = model.layers[0].params
    assert_array(mean, (1 - 0.5 ** 3) * X.mean(0), backend=backend, rtol=1e-12)
    assert_array(var, 0.5 ** 3 + (1 - 0.5 ** 3) * X.var(0, ddof=1), backend=backend,
                 rtol=1e-12)
    assert model.trainable_mask == [True, True, False, False, True, True]
    assert model.decay_mask == [False, False, False, False, True, False]


def test_statistics_without_a_training_forward_keep_their_arrays(backend, rng):
    model = MLP([3, 4, 2], norm="batch", backend=backend, dtype="float64", seed=0)
    model.compile({"name": "sgd", "lr": 1.0, "momentum": 0.9, "weight_decay": 0.5})
    before = [_backend.to_numpy(p).copy() for p in model.params]
    huge = [model.backend.xp.ones_like(p) * 1e3 for p in model.params]
    model.apply_gradients(huge)  # no forward pass: statistics keep their values
    after = [_backend.to_numpy(p) for p in model.params]
    for b, a, t in zip(before, after, model.trainable_mask):
        assert np.array_equal(a, b) != t


def test_l2_leaves_the_norm_parameters_alone(backend, rng):
    X = rng.standard_normal((6, 3))
    y = np.array([0, 1, 1, 0, 1, 0])
    grads = []
    for alpha in (0.0, 3.0):
        model = MLP([3, 4, 2], norm="layer", alpha=alpha, backend=backend,
                    dtype="float64", seed=0)
        Yd, _ = model.to_device_y(y, 6)
        grads.append(model.loss_and_grads(model.to_device_X(X), Yd)[1])
    norm_index = [i for i, layer in enumerate(model.layers) for _ in layer.params
                  if isinstance(layer, LayerNorm)]
    assert len(norm_index) == 2
    start = len(model.layers[0].params)
    for i in range(start, start + 2):
        assert_array(grads[1][i], grads[0][i], backend=backend, rtol=0)
    assert not np.array_equal(_backend.to_numpy(grads[1][0]), _backend.to_numpy(grads[0][0]))


def test_inference_is_per_sample_with_batchnorm(backend, rng):
    X = rng.standard_normal((40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    model = MLP([4, 8, 2], norm="batch", backend=backend, seed=0)
    model.fit(X, y, epochs=3, batch_size=8, verbose=0, optimizer="adam")
    whole = _backend.to_numpy(model.predict_proba(X))
    one = np.concatenate([_backend.to_numpy(model.predict_proba(X[i:i + 1]))
                          for i in range(0, 40, 13)])
    np.testing.assert_allclose(one, whole[::13], rtol=1e-5)


def test_early_stopping_restores_the_statistics_of_the_best_epoch(rng):
    """Statistics are snapshotted with the weights: restore_best puts back both."""
    X = rng.standard_normal((64, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    Xv, yv = X[:16], 1 - y[:16]  # flipped labels: validation gets worse
    seen = {}

    def record(model, epoch, logs):
        seen[epoch] = [_backend.to_numpy(p).copy() for p in model.params]

    model = MLP([4, 8, 2], norm="batch", seed=0)
    history = model.fit(X, y, epochs=10, batch_size=16, verbose=0,
                        optimizer={"name": "adam", "lr": 0.05},
                        validation_data=(Xv, yv), callbacks=[record],
                        early_stopping={"patience": 2, "restore_best": True})
    best = history.best_epoch
    assert best is not None and best < max(seen)
    for a, b in zip(model.params, seen[best]):
        assert np.array_equal(a, b)
    assert not np.array_equal(model.layers[1].params[2], seen[max(seen)][3])


# ---------------------------------------------------------------------- MLP options
def test_mlp_norm_places_the_layer_before_the_activation():
    model = MLP([3, 5, 4, 2], norm="batch", dropout=0.1, seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Dense", "BatchNorm", "ActivationLayer", "Dropout",
                     "Dense", "BatchNorm", "ActivationLayer", "Dropout", "Dense"]
    assert [layer.bias for layer in model.layers if isinstance(layer, Dense)] == \
        [False, False, True]
    model = MLP([3, 5, 2], activation="prelu", norm="layer", preprocess="standardize",
                seed=0)
    assert [type(layer).__name__ for layer in model.layers] == \
        ["Standardize", "Dense", "LayerNorm", "PReLU", "Dense"]
    assert model.layers[1].bias
    model = MLP([3, 5, 2], activation="maxout", norm="batch", seed=0)
    assert [type(layer).__name__ for layer in model.layers] == ["Maxout", "BatchNorm", "Dense"]
    assert "norm" not in MLP([3, 2]).get_config()  # other configs are unchanged


@pytest.mark.parametrize("kwargs, message", [
    ({"norm": "group"}, "The 'norm' parameter of MLP must be one of [None, 'batch', "
                        "'layer']. Got 'group' instead."),
    ({"preprocess": "minmax"}, "The 'preprocess' parameter of MLP must be"),
    ({"preprocess": {"name": "Dense", "units": 3}}, "Got a Dense config instead"),
])
def test_mlp_options_are_validated(kwargs, message):
    with pytest.raises(ValueError) as exc:
        MLP([3, 4, 2], **kwargs)
    assert message in str(exc.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"momentum": 1.0}, "The 'momentum' parameter of BatchNorm must be"),
    ({"epsilon": 0.0}, "The 'epsilon' parameter of BatchNorm must be"),
])
def test_batchnorm_parameters_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchNorm(**kwargs)


def test_layers_are_registered_and_rebuilt_from_configs():
    for name in ("BatchNorm", "LayerNorm", "Standardize", "Rescale"):
        assert name in LAYERS
    assert isinstance(get_layer("batch-norm"), BatchNorm)
    for layer in (BatchNorm(0.8, 1e-4), LayerNorm(1e-6), Standardize(1e-3),
                  Rescale(0.5, 2.0)):
        assert get_layer(layer.get_config()).get_config() == layer.get_config()


# ---------------------------------------------------------------------- the fast steps
@pytest.mark.parametrize("kwargs, name", [
    ({"norm": "batch"}, "BatchNorm"), ({"norm": "layer"}, "LayerNorm"),
    ({"preprocess": "standardize"}, "Standardize"),
    ({"preprocess": Rescale(1 / 255)}, "Rescale"),
])
def test_norm_models_take_the_generic_step(kwargs, name, rng):
    model = MLP([4, 8, 3], seed=0, **kwargs).compile("adam")
    reason = _fast.unsupported_reason(model)
    assert reason is not None and reason.startswith(f"layer {name} ")
    assert _fast.select_step(model) is None
    X = (rng.random((30, 4)) * 255).astype(np.uint8)
    y = rng.integers(0, 3, 30)
    runs = []
    for fast in (True, False):
        m = MLP([4, 8, 3], seed=0, **kwargs)
        old = _fast.set_enabled(fast)
        try:
            m.fit(X, y, epochs=2, batch_size=8, verbose=0, optimizer="adam")
        finally:
            _fast.set_enabled(old)
        runs.append([_backend.to_numpy(p) for p in m.params])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------------- raw inputs
def test_rescale_takes_uint8_and_converts_batch_by_batch(backend, rng, monkeypatch):
    X = rng.integers(0, 256, (50, 6)).astype(np.uint8)
    model = MLP([6, 8, 3], preprocess=Rescale(1 / 255), backend=backend, seed=0)
    assert model.takes_raw
    Xd = model.to_device_X(X)
    assert _backend.to_numpy(Xd).dtype == np.uint8  # not converted whole
    seen = []
    forward = Rescale.forward

    def spy(self, x, **kw):
        seen.append((_backend.to_numpy(x).dtype, int(x.shape[0])))
        return forward(self, x, **kw)

    monkeypatch.setattr(Rescale, "forward", spy)
    z = model.decision_function(X, batch_size=16)
    assert seen == [(np.dtype(np.uint8), 16)] * 3 + [(np.dtype(np.uint8), 2)]
    plain = MLP([6, 8, 3], backend=backend, seed=0)
    plain.set_params([_backend.to_numpy(p) for p in model.params])
    scaled = X.astype(np.float32) * np.float32(1 / 255)
    assert_array(z, plain.decision_function(scaled), backend=backend, rtol=1e-6)
    seen.clear()
    model.fit(X, rng.integers(0, 3, 50), epochs=1, batch_size=20, verbose=0)
    assert {d for d, _ in seen} == {np.dtype(np.uint8)}
    assert max(n for _, n in seen) == 20


def test_float_inputs_still_go_to_the_models_dtype(backend, rng):
    model = MLP([3, 2], preprocess=Rescale(2.0), backend=backend, seed=0)
    Xd = model.to_device_X(rng.standard_normal((4, 3)))
    assert_array(Xd, dtype="float32", backend=backend)
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.to_device_X(np.array([[np.nan, 0.0, 1.0]]))


def test_standardize_adapt_matches_numpy(backend, rng):
    X = rng.integers(0, 256, (37, 4)).astype(np.uint8)
    X[:, 2] = 7  # a constant feature is only centred
    layer = _build(Standardize(), backend, 4, dtype="float64")
    assert not layer.adapted
    layer.adapt_block = 5  # several blocks
    layer.adapt(_dev(X, backend) if backend.name != "numpy" else X)
    assert layer.adapted
    mean, std, count = layer.params
    expect_std = X.astype(np.float64).std(0)
    expect_std[2] = 1.0
    assert_array(mean, X.astype(np.float64).mean(0), backend=backend, rtol=1e-12)
    assert_array(std, expect_std, backend=backend, rtol=1e-12)
    assert_array(count, [37.0], backend=backend)
    y, _ = layer.forward(_dev(X, backend), xp=backend.xp)
    assert_array(y, (X - X.mean(0)) / expect_std, backend=backend, dtype="float64",
                 rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("X, message", [
    (np.ones((3, 2)), r"shape \(n_samples, 3\)"),
    (np.ones((0, 3)), "at least one row"),
    (np.array([[1.0, np.inf, 0.0]]), "NaN or infinity"),
    (np.array([["a", "b", "c"]]), "numeric data"),
])
def test_standardize_adapt_refuses_bad_data_and_stays_unchanged(X, message):
    layer = _build(Standardize(), _backend.resolve_backend("numpy"), 3)
    with pytest.raises(ValueError, match=message):
        layer.adapt(X)
    assert not layer.adapted
    with pytest.raises(ValueError, match="before adapt"):
        Standardize().adapt(np.ones((2, 3)))


def test_fit_adapts_standardize_once_on_the_training_data(backend, rng):
    X = rng.standard_normal((30, 3)) * 10 + 50
    Xv = rng.standard_normal((10, 3)) - 100
    y = rng.integers(0, 2, 30)
    model = MLP([3, 4, 2], preprocess="standardize", backend=backend, seed=0)
    with pytest.raises(ValueError):  # bad labels: refused before anything changes
        model.fit(X, y + 5, epochs=1, verbose=0)
    assert not model.layers[0].adapted
    model.fit(X, y, epochs=1, verbose=0, validation_data=(Xv, y[:10]))
    mean = _backend.to_numpy(model.layers[0].params[0])
    np.testing.assert_allclose(mean, X.mean(0), rtol=1e-6)
    model.fit(X + 1000, y, epochs=1, verbose=0)  # a second fit keeps the statistics
    assert np.array_equal(_backend.to_numpy(model.layers[0].params[0]), mean)
    assert not model.adapt_inputs(X + 1000)
    assert model.adapt_inputs(X + 1000, force=True)
    np.testing.assert_allclose(_backend.to_numpy(model.layers[0].params[0]), mean + 1000,
                               rtol=1e-6)
    assert model.state_.params[0] is model.params[0]
    split = MLP([3, 4, 2], preprocess="standardize", backend=backend, seed=0)
    split.fit(np.concatenate([X, Xv]), np.concatenate([y, y[:10]]), epochs=1, verbose=0,
              validation_split=0.25)
    held_out = _backend.to_numpy(split.layers[0].params[2])
    assert held_out.tolist() == [30.0]  # adapted on the 30 training samples only


# ---------------------------------------------------------------------- files
@pytest.mark.parametrize("kwargs", [
    {"norm": "batch", "preprocess": "standardize"},
    {"norm": "layer", "preprocess": Rescale(1 / 255)},
    {"norm": "batch", "preprocess": {"name": "Rescale", "scale": 0.5, "offset": -1.0}},
])
def test_save_load_round_trip_keeps_statistics(backend, rng, tmp_path, kwargs):
    X = rng.integers(0, 256, (40, 5)).astype(np.uint8)
    y = rng.integers(0, 3, 40)
    model = MLP([5, 8, 6, 3], backend=backend, seed=0, **kwargs)
    model.fit(X, y, epochs=2, batch_size=10, verbose=0, optimizer="adam")
    stats = [_backend.to_numpy(p) for p, t in zip(model.params, model.trainable_mask)
             if not t]
    assert all(np.any(s != 0) for s in stats)
    assert len(stats) == {"batch": 4}.get(kwargs["norm"], 0) + (
        3 if kwargs["preprocess"] == "standardize" else 0)
    path = model.save(tmp_path / "m.npz")
    for target in (backend.name, "numpy"):
        loaded = mlpx.load(path, backend=target)
        assert loaded.get_config() == model.get_config()
        for a, b in zip(loaded.params, model.params):
            assert np.array_equal(_backend.to_numpy(a), _backend.to_numpy(b))
        got = _backend.to_numpy(loaded.predict_proba(X))
        want = _backend.to_numpy(model.predict_proba(X))
        if target == backend.name:  # the same library computes the same bits
            assert np.array_equal(got, want)
        else:  # another library's float32 kernels may round differently (1 ulp)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    clone = pickle.loads(pickle.dumps(model))
    assert np.array_equal(_backend.to_numpy(clone.predict_proba(X)),
                          _backend.to_numpy(model.predict_proba(X)))
    shapes = mio.config_param_shapes(model.get_config())
    assert shapes == [tuple(p.shape) for p in model.params]


def test_checkpoint_keeps_statistics(rng, tmp_path):
    X = rng.standard_normal((24, 3)).astype(np.float32)
    y = rng.integers(0, 2, 24)
    model = MLP([3, 4, 2], norm="batch", preprocess="standardize", seed=0)
    model.fit(X, y, epochs=2, batch_size=8, verbose=0, optimizer="adam")
    path = mio.save_checkpoint(model, tmp_path / "c.npz")
    resumed = mio.load_checkpoint(path)
    for a, b in zip(resumed.params, model.params):
        assert np.array_equal(a, b)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    resumed.fit(X, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(resumed.params, model.params):
        assert np.array_equal(a, b)


def test_a_file_with_wrong_statistic_shapes_is_refused(tmp_path):
    model = MLP([3, 4, 2], norm="batch", seed=0)
    meta, arrays = None, None
    path = model.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    import json
    meta = json.loads(bytes(arrays["mlpx"]).decode())
    key = meta["params"][3]["key"]  # the running mean
    assert meta["params"][3]["name"] == "running_mean"
    arrays[key] = np.zeros(5, dtype=np.float32)
    meta["params"][3]["shape"] = [5]
    arrays["mlpx"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    bad = os.fspath(tmp_path / "bad.npz")
    np.savez(bad, **arrays)
    with pytest.raises(mio.ModelFileError, match="parameter 3"):
        mlpx.load(bad)


def test_a_loaded_model_takes_raw_pixels_like_the_trained_one(rng, tmp_path):
    """The issue's case: trained on raw uint8 with Rescale(1/255); the loaded model is
    given the same raw pixels and answers the same."""
    X = rng.integers(0, 256, (200, 8)).astype(np.uint8)
    y = (X[:, 0].astype(int) > X[:, 1]).astype(int)
    model = MLP([8, 16, 2], preprocess=Rescale(1 / 255), seed=0)
    model.fit(X, y, epochs=60, batch_size=20, verbose=0,
              optimizer={"name": "adam", "lr": 0.01})
    acc = model.evaluate(X, y).accuracy
    loaded = mlpx.load(model.save(tmp_path / "m.npz"))
    assert loaded.evaluate(X, y).accuracy == acc > 0.9


# ---------------------------------------------------------------------- summary
def test_summary_counts_and_prints(capsys):
    model = MLP([6, 5, 3], norm="batch", preprocess="standardize", seed=0)
    text = model.summary(print_fn=None)
    assert model.summary() is None
    assert capsys.readouterr().out == text + "\n"
    total = sum(int(np.prod(p.shape)) for p in model.params)
    stats = 6 + 6 + 1 + 5 + 5
    assert f"Total params: {total:,} ({total * 4:,} bytes, float32)" in text
    assert f"Non-trainable params: {stats} ({stats * 4} bytes)" in text
    assert f"Trainable params: {total - stats}" in text
    lines = text.splitlines()
    assert lines[2].split() == ["Standardize", "(None,", "6)", "13"]
    assert lines[3].split() == ["Dense", "(None,", "5)", "30"]
    assert "Optimizer state" not in text
    model.compile("adam")
    assert f"Optimizer state (Adam): {2 * total:,} values" in model.summary(print_fn=None)
    lines = []
    model.summary(print_fn=lines.append)
    assert len(lines) == 1 and lines[0].startswith("Layer")
    with pytest.raises(RuntimeError, match="not built"):
        Sequential([Dense(2)]).summary()


def test_sequential_with_activation_rows():
    model = Sequential([LayerNorm(), Dense(4), ActivationLayer("tanh"), Dense(2)],
                       n_features=3)
    text = model.summary(print_fn=None)
    assert "ActivationLayer (tanh)" in text and "output (softmax)" in text


# ---------------------------------------------------------------------- ONNX export
def test_onnx_export_of_norm_layers(rng, tmp_path):
    pytest.importorskip("ndonnx")
    ort = pytest.importorskip("onnxruntime")
    X = rng.integers(0, 256, (30, 5)).astype(np.uint8)
    y = rng.integers(0, 3, 30)
    for kwargs in ({"norm": "batch", "preprocess": "standardize"},
                   {"norm": "layer", "preprocess": Rescale(1 / 255)}):
        model = MLP([5, 8, 3], seed=0, **kwargs)
        model.fit(X, y, epochs=2, batch_size=10, verbose=0, optimizer="adam")
        path = model.export_onnx(tmp_path / "m.onnx")
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        proba = sess.run(["predict_proba"], {"X": X.astype(np.float32)})[0]
        np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-5, atol=1e-6)
