"""The model: whole-network gradients, a step against plain NumPy, XOR, fit features, errors."""

import pickle

import numpy as np
import pytest

import mlpx
from mlpx import MLP, EarlyStopping, NonFiniteLossError, Sequential, _backend
from mlpx.layers import ActivationLayer, Dense, Dropout
from mlpx.optimizers import OPTIMIZERS

from .helpers import assert_array, numerical_grad, params_np

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_Y = np.array([0, 1, 1, 0])



def dev(a, backend, dtype=None):
    return _backend.to_device(np.asarray(a), backend=backend, dtype=dtype)


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("loss,output,k", [
    ("cross_entropy", None, 3),
    ("mse", "sigmoid", 2),
    ("binary_cross_entropy", None, 2),
    ("mse", None, 2),
])
def test_whole_network_gradients(backend, loss, output, k):
    """Three hidden layers (tanh, elu, softplus) with L2: backprop equals central differences."""
    rng = np.random.default_rng(1)
    model = Sequential(
        [Dense(5), ActivationLayer("tanh"), Dense(4), ActivationLayer("elu"),
         Dense(4), ActivationLayer("softplus"), Dense(k)],
        loss=loss, output=output, alpha=0.01, n_features=3, backend=backend,
        dtype="float64", seed=0)
    X = rng.standard_normal((6, 3))
    if loss == "cross_entropy":
        Y = np.eye(k)[rng.integers(0, k, 6)]
    elif loss == "binary_cross_entropy":
        Y = rng.integers(0, 2, (6, k)).astype(float)
    else:
        Y = rng.random((6, k))
    Xd, Yd = dev(X, backend), dev(Y, backend)
    _, grads, _ = model.loss_and_grads(Xd, Yd)
    base = params_np(model)
    for i, g in enumerate(grads):
        def f(v, i=i):
            ps = [b.copy() for b in base]
            ps[i] = v
            model.set_params([dev(p, backend) for p in ps])
            value = float(model.loss_and_grads(Xd, Yd)[0])
            model.set_params([dev(p, backend) for p in base])
            return value
        assert_array(g, numerical_grad(f, base[i]), backend=backend, dtype="float64",
                     rtol=1e-5, atol=1e-7)


def test_sample_weight_gradients_match_duplicated_rows(backend):
    rng = np.random.default_rng(2)
    model = MLP([3, 4, 2], activation="tanh", dtype="float64", backend=backend, seed=0)
    X = rng.standard_normal((4, 3))
    Y = np.eye(2)[[0, 1, 1, 0]]
    w = np.array([1.0, 2.0, 1.0, 1.0])
    loss_w, g_w, _ = model.loss_and_grads(dev(X, backend), dev(Y, backend), dev(w, backend))
    Xd = np.concatenate([X, X[1:2]])
    Yd = np.concatenate([Y, Y[1:2]])
    loss_d, g_d, _ = model.loss_and_grads(dev(Xd, backend), dev(Yd, backend))
    assert abs(float(loss_w) - float(loss_d)) < 1e-12
    for a, b in zip(g_w, g_d):
        assert_array(a, _backend.to_numpy(b), backend=backend, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- a training step
def test_training_step_matches_plain_numpy(backend):
    """One SGD step of a 4-5-3 ReLU/softmax net, recomputed independently in NumPy."""
    rng = np.random.default_rng(3)
    model = MLP([4, 5, 3], activation="relu", alpha=0.1, dtype="float64", backend=backend,
                seed=1)
    W1, b1, W2, b2 = params_np(model)
    b1 = b1 + 0.1
    model.set_params([dev(p, backend) for p in (W1, b1, W2, b2)])
    X = rng.standard_normal((7, 4))
    labels = np.array([0, 1, 2, 2, 1, 0, 1])
    lr = 0.3
    model.compile("sgd", lr=lr)
    loss, _ = model.train_step(dev(X, backend), dev(np.eye(3)[labels], backend))

    # independent reference
    h_pre = X @ W1 + b1
    h = np.maximum(h_pre, 0)
    z = h @ W2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    Y = np.eye(3)[labels]
    ref_loss = -np.mean(np.log(p[np.arange(7), labels])) + 0.05 * ((W1**2).sum() + (W2**2).sum())
    dz = (p - Y) / 7
    gW2 = h.T @ dz + 0.1 * W2
    gb2 = dz.sum(0)
    dh = (dz @ W2.T) * (h_pre > 0)
    gW1 = X.T @ dh + 0.1 * W1
    gb1 = dh.sum(0)
    assert abs(float(loss) - ref_loss) < 1e-12
    expected = [W1 - lr * gW1, b1 - lr * gb1, W2 - lr * gW2, b2 - lr * gb2]
    for got, exp in zip(model.params, expected):
        assert_array(got, exp, backend=backend, dtype="float64", rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- XOR
def test_xor_relu_squared_error_sgd(backend):
    """The textbook XOR net: 2-2-1 ReLU, squared error, plain SGD, to loss < 1e-6.

    Two ReLU units are the fewest that can represent XOR, and gradient descent reaches the
    exact solution only from some starting points (others end with a dead unit at the
    0.083 plateau): seeds 0, 6 and 15 of the first 20 get there, so the seed is pinned.
    """
    model = MLP([2, 2, 1], activation="relu", loss="mse", backend=backend, dtype="float64",
                seed=0)
    hist = model.fit(XOR_X, XOR_Y.astype(float), epochs=3000, batch_size=None,
                     optimizer={"name": "sgd", "lr": 0.2}, verbose=0)
    assert hist["loss"][-1] < 1e-6
    pred = _backend.to_numpy(model.predict(XOR_X))[:, 0]
    np.testing.assert_array_equal(np.round(pred), XOR_Y)
    assert model.evaluate(XOR_X, XOR_Y.astype(float)).loss < 1e-6


def test_xor_sigmoid_cross_entropy(backend):
    model = MLP([2, 2, 1], activation="sigmoid", loss="binary_cross_entropy", backend=backend,
                dtype="float64", seed=0)
    model.fit(XOR_X, XOR_Y, epochs=3000, batch_size=None,
              optimizer={"name": "sgd", "lr": 2.0, "momentum": 0.9}, verbose=0)
    assert_array(model.predict(XOR_X), XOR_Y, backend=backend)
    assert model.evaluate(XOR_X, XOR_Y).accuracy == 1.0


# ---------------------------------------------------------------------------- fit features
def test_same_seed_gives_bitwise_identical_weights():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    runs = []
    for _ in range(2):
        model = MLP([5, 8, 3], dropout=0.2, seed=42)
        model.fit(X, y, epochs=3, batch_size=8, optimizer="adam", verbose=0)
        runs.append(params_np(model))
    for a, b in zip(*runs):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
    other = MLP([5, 8, 3], dropout=0.2, seed=43)
    assert not np.array_equal(params_np(other)[0], runs[0][0])


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_reference_architecture_fits_with_each_optimizer(backend, optimizer):
    rng = np.random.default_rng(0)
    X = rng.random((128, 784)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    model = MLP([784, 512, 512, 10], backend=backend, seed=0)
    before = params_np(model)
    hist = model.fit(X, y, epochs=2, batch_size=64, optimizer=optimizer, verbose=0)
    assert len(hist["loss"]) == 2 and np.isfinite(hist["loss"]).all()
    after = params_np(model)
    assert all(a.dtype == np.float32 for a in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("batch_size", [1, None, 3, 1000])
def test_batch_sizes(backend, batch_size):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 3))
    y = rng.integers(0, 2, 10)
    model = MLP([3, 4, 2], backend=backend, seed=0)
    hist = model.fit(X, y, epochs=2, batch_size=batch_size, verbose=0)
    assert len(hist["loss"]) == 2


def test_predict_shapes_and_namespace(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9, 3)).astype(np.float32)
    clf = MLP([3, 4, 3], backend=backend, seed=0)
    assert_array(clf.predict(X), backend=backend, shape=(9,))
    proba = clf.predict_proba(X)
    assert_array(proba, backend=backend, dtype="float32", shape=(9, 3))
    np.testing.assert_allclose(_backend.to_numpy(proba).sum(1), 1, rtol=1e-6)
    reg = MLP([3, 4, 2], loss="mse", backend=backend, seed=0)
    assert_array(reg.predict(X), backend=backend, dtype="float32", shape=(9, 2))
    assert reg.evaluate(X, np.zeros((9, 2))).accuracy is None
    binary = MLP([3, 4, 1], loss="binary_cross_entropy", backend=backend, seed=0)
    assert_array(binary.predict(X), backend=backend, shape=(9,))
    # device data in, device data out
    Xd = dev(X, backend)
    assert_array(clf.predict_proba(Xd), _backend.to_numpy(proba), backend=backend)


def test_predict_in_chunks_matches_whole(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    model = MLP([3, 4, 3], backend=backend, seed=0, dtype="float64")
    whole = model.predict_proba(X)
    chunks = model.predict_proba(X, batch_size=7)
    assert_array(chunks, _backend.to_numpy(whole), backend=backend, rtol=1e-12)


def test_validation_and_history(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = (X[:, 0] > 0).astype(int)
    model = MLP([4, 8, 2], backend=backend, seed=0)
    hist = model.fit(X, y, epochs=3, batch_size=10, validation_split=0.25,
                     optimizer="adam", verbose=0)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr"):
        assert len(hist[key]) == 3, key
    assert hist.epochs == [1, 2, 3]
    hist2 = model.fit(X, y, epochs=2, batch_size=10, validation_data=(X, y), verbose=0)
    assert hist2.epochs == [4, 5]  # epochs continue, optimizer state is kept
    assert model.optimizer_.get_config()["name"].lower() == "adam"


def test_early_stopping_restores_best_weights(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    y = rng.integers(0, 2, 40)  # noise: validation loss will rise as it overfits
    Xv = rng.standard_normal((40, 4))
    yv = rng.integers(0, 2, 40)
    model = MLP([4, 64, 2], backend=backend, seed=0, dtype="float64")
    snapshots = {}
    hist = model.fit(X, y, epochs=200, batch_size=8, validation_data=(Xv, yv),
                     optimizer={"name": "adam", "lr": 0.01},
                     early_stopping=EarlyStopping(patience=3), verbose=0,
                     callbacks=[lambda m, e, logs: snapshots.__setitem__(e, params_np(m))])
    assert hist.stopped_early and len(hist.epochs) < 200
    best = int(np.argmin(hist["val_loss"])) + 1
    assert hist.best_epoch == best
    assert len(hist.epochs) == best + 3
    for a, b in zip(params_np(model), snapshots[best]):
        np.testing.assert_array_equal(a, b)


def test_callback_can_stop_training(backend):
    class Stop(mlpx.Callback):
        def on_epoch_end(self, model, epoch, logs):
            if epoch == 2:
                model.stop_training = True
    X = np.random.default_rng(0).standard_normal((10, 2))
    model = MLP([2, 3, 2], backend=backend, seed=0)
    hist = model.fit(X, np.arange(10) % 2, epochs=10, callbacks=[Stop()], verbose=0)
    assert hist.epochs == [1, 2] and hist.stopped_early


def test_progress_bar_reports_loss(capsys):
    X = np.random.default_rng(0).standard_normal((20, 2))
    MLP([2, 3, 2], seed=0).fit(X, np.arange(20) % 2, epochs=2, verbose=2)
    err = capsys.readouterr().err
    assert "loss=" in err and "samples/s" in err and "2/2" in err


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_weights():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 3)) * 1e3
    y = rng.standard_normal((32, 1)) * 1e3
    model = MLP([3, 16, 1], loss="mse", seed=0)
    with pytest.raises(NonFiniteLossError, match="epoch 1.*Lower the learning rate"):
        model.fit(X, y, epochs=5, batch_size=4, optimizer={"name": "sgd", "lr": 10.0},
                  verbose=0)
    assert all(np.isfinite(p).all() for p in params_np(model))


def test_pickle_round_trip(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3)).astype(np.float32)
    model = MLP([3, 5, 2], backend=backend, seed=0, dropout=0.1)
    model.fit(X, np.arange(20) % 2, epochs=2, optimizer="adam", verbose=0)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.backend.name == backend.name
    assert_array(clone.predict_proba(X), _backend.to_numpy(model.predict_proba(X)),
                 backend=backend, rtol=0)
    clone.fit(X, np.arange(20) % 2, epochs=1, verbose=0)  # training goes on after unpickling


def test_lazy_sequential_builds_on_fit(backend):
    model = Sequential([Dense(4), ActivationLayer("relu"), Dropout(0.1), Dense(1)], loss="mse",
                       backend=backend, seed=0)
    assert not model.built
    X = np.random.default_rng(0).standard_normal((8, 3))
    model.fit(X, X[:, :1], epochs=1, verbose=0)
    assert model.built and model.n_features == 3 and model.n_outputs == 1


def test_config_round_trip():
    model = MLP([4, 6, 3], activation={"name": "leaky_relu", "alpha": 0.2}, dropout=0.1,
                alpha=1e-3, seed=0)
    clone = mlpx.model_from_config(model.get_config(), seed=0)
    assert clone.get_config() == model.get_config()
    assert [p.shape for p in clone.params] == [p.shape for p in model.params]
    seq = Sequential([Dense(3), ActivationLayer("tanh"), Dense(2)], n_features=4, seed=0)
    assert mlpx.model_from_config(seq.get_config()).get_config() == seq.get_config()


@pytest.mark.parametrize("activation", ["prelu", "maxout", "swish", "hard_tanh"])
def test_special_hidden_units_train(backend, activation):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    model = MLP([2, 16, 2], activation=activation, backend=backend, seed=0)
    hist = model.fit(X, y, epochs=30, batch_size=16, optimizer="adam", verbose=0)
    assert hist["loss"][-1] < hist["loss"][0]


# ---------------------------------------------------------------------------- bad input
def _bad_cases():
    X = np.zeros((4, 3))
    y = np.array([0, 1, 2, 1])
    return [
        (np.zeros(3), y, "2-D array"),
        (np.zeros((4, 5)), y, "has 5 features, but this model expects 3"),
        (np.array([[np.nan, 0, 0]] * 4), y, "NaN or infinity"),
        (np.array([[np.inf, 0, 0]] * 4), y, "NaN or infinity"),
        (X, np.array([0, 1, 2, np.nan]), "NaN or infinity"),
        (X, np.array([0, 1, 3, 1]), r"labels must lie in \[0, 3\)"),
        (X, np.array([0, 1, -1, 1]), r"labels must lie in \[0, 3\)"),
        (X, np.array([0, 1, 1.5, 1]), "must be integers"),
        (np.zeros((0, 3)), np.zeros(0), "empty"),
        (np.array([["a", "b", "c"]] * 4), y, "must be numeric"),
        (X, np.array(["a", "b", "c", "d"]), "must be numeric"),
        (X, np.array([0, 1, 2]), "y has 3 samples but X has 4"),
        (X, np.zeros((4, 2)), "y has 2 columns, but the model has 3 outputs"),
    ]


@pytest.mark.parametrize("X,y,message", _bad_cases())
def test_bad_data_raises_and_changes_nothing(backend, X, y, message):
    model = MLP([3, 4, 3], backend=backend, seed=0)
    before = params_np(model)
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, epochs=1, verbose=0)
    for a, b in zip(before, params_np(model)):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer_ is None and model.epoch_ == 0


def test_bad_predict_input(backend):
    model = MLP([3, 4, 3], backend=backend, seed=0)
    with pytest.raises(ValueError, match="has 2 features, but this model expects 3"):
        model.predict(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="reshape"):
        model.predict(np.zeros(3))


def test_arrays_from_another_backend_are_refused():
    strict = pytest.importorskip("array_api_strict")
    model = MLP([3, 4, 3], seed=0)  # numpy
    with pytest.raises(ValueError, match="array_api_strict.*mlpx.to_numpy"):
        model.predict(strict.asarray(np.zeros((2, 3))))


@pytest.mark.parametrize("kwargs,message", [
    (dict(activation="relux"), "Unknown|unknown"),
    (dict(loss="hinge"), "Unknown|unknown"),
    (dict(dtype="float16"), "'dtype' parameter"),
    (dict(backend="tensorflow"), "'backend' parameter"),
    (dict(alpha=-1.0), "'alpha' parameter of MLP must be a float >= 0. Got -1.0 instead"),
    (dict(dropout=1.0), "'dropout' parameter"),
    (dict(seed="abc"), "'seed' parameter"),
])
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP([3, 4, 2], **kwargs)


@pytest.mark.parametrize("sizes", [[3], [3, 0, 2], "3,4", [3, 2.5, 2]])
def test_bad_layer_sizes(sizes):
    with pytest.raises(ValueError, match="'layer_sizes' parameter of MLP"):
        MLP(sizes)


@pytest.mark.parametrize("kwargs,message", [
    (dict(optimizer="sgdd"), "Unknown|unknown"),
    (dict(epochs=-1), "'epochs' parameter"),
    (dict(batch_size=0), "'batch_size' parameter"),
    (dict(validation_split=1.5), "'validation_split' parameter"),
    (dict(early_stopping=3), "no validation data"),
    (dict(early_stopping="yes"), "'early_stopping' parameter"),
])
def test_bad_fit_arguments(kwargs, message):
    kwargs = dict(kwargs)
    if kwargs.get("early_stopping") == 3:
        kwargs["early_stopping"] = EarlyStopping(patience=3, monitor="val_loss")
    model = MLP([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match=message):
        model.fit(np.zeros((4, 3)), np.array([0, 1, 0, 1]), verbose=0, **kwargs)
    assert model.optimizer_ is None


def test_cupy_without_cuda_says_what_to_do():
    if _backend.cuda_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises((ImportError, RuntimeError), match="mlpx\\[cuda12\\]|no CUDA device"):
        MLP([2, 2], backend="cupy")


# ------------------------------------------------------------------------ token-id inputs
def _cycle_data(n=60):
    X = np.array([[0, 1], [1, 2], [2, 0]] * (n // 3))   # 0 1 2 0 1 2 ...
    y = np.array([2, 0, 1] * (n // 3))
    return X, y


def test_embedding_model_takes_integer_ids(backend, tmp_path):
    from mlpx.layers import Embedding

    X = np.random.default_rng(0).integers(0, 7, (90, 3))
    y = X.sum(axis=1) % 3
    model = Sequential([Embedding(7, 4), Dense(16), ActivationLayer("tanh"), Dense(3)],
                       backend=backend, seed=0)
    hist = model.fit(X, y, epochs=3, optimizer="adam", verbose=0, validation_split=0.2)
    assert model.n_features == 3 and model.takes_ids and not model.reports_perplexity
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds",
                                 "lr"}
    assert mlpx._fast.unsupported_reason(model) is not None  # no fast step for it
    if backend.name == "numpy":
        assert "first and last layers must be Dense" in mlpx._fast.unsupported_reason(model)
    pred = model.predict(X)
    assert_array(pred, shape=(90,), backend=backend)
    ev = model.evaluate(X, y)
    assert type(ev) is mlpx.Evaluation
    clone = mlpx.load(model.save(tmp_path / "emb.npz"), backend=backend)
    assert clone.get_config() == model.get_config()
    assert_array(clone.predict_proba(X), model.predict_proba(X), rtol=1e-6)


@pytest.mark.parametrize("bad,match", [
    (np.array([[0.0, 1.0]]), "integer token ids"),
    (np.array([[0, 3]]), r"lie in \[0, 3\).*from 0 to 3"),
    (np.array([[-1, 0]]), r"from -1 to 0"),
    (np.array([[0, 1, 2]]), "has 3 features, but this model expects 2"),
])
def test_embedding_model_checks_ids(bad, match):
    lm = mlpx.LanguageModel(3, 2, dim=2, hidden_sizes=[4], seed=0)
    with pytest.raises(ValueError, match=match):
        lm.predict(bad)


def test_embedding_must_come_first():
    from mlpx.layers import Embedding

    with pytest.raises(ValueError, match="must be the first layer.*position 1"):
        Sequential([Dense(3), Embedding(4, 2)])


def test_language_model_perplexity_and_generate(backend, tmp_path):
    X, y = _cycle_data()
    lm = mlpx.LanguageModel(3, window=2, dim=4, hidden_sizes=[16], backend=backend, seed=0)
    hist = lm.fit(X, y, epochs=40, optimizer={"name": "adam", "lr": 0.05}, verbose=0,
                  validation_data=(X, y))
    for key in ("perplexity", "val_perplexity"):
        assert hist.history[key] == pytest.approx(np.exp(hist.history[key[:-10] + "loss"]))
    ev = lm.evaluate(X, y)
    assert isinstance(ev, mlpx.LanguageEvaluation)
    assert ev.perplexity == pytest.approx(np.exp(ev.loss)) and ev.perplexity < 1.2
    a = lm.generate([[0, 1], [2, 0]], 6, temperature=0.7, seed=3)
    assert a == lm.generate([[0, 1], [2, 0]], 6, temperature=0.7, seed=3)
    assert a[0] == [2, 0, 1, 2, 0, 1] and a[1] == [1, 2, 0, 1, 2, 0]
    # a stop id ends a sequence without being included
    assert lm.generate([0, 1], 6, temperature=0.7, seed=3, stop_id=1) == [[2, 0]]
    clone = mlpx.load(lm.save(tmp_path / "lm.npz"), backend=backend)
    assert type(clone) is mlpx.LanguageModel and clone.get_config() == lm.get_config()
    assert clone.evaluate(X, y) == pytest.approx(ev)
    assert mlpx.model_from_config(lm.get_config()).get_config() == lm.get_config()


def test_generate_draws_by_the_probabilities():
    """High temperature flattens the draws; seeds differ, same seed repeats."""
    X, y = _cycle_data()
    lm = mlpx.LanguageModel(3, window=2, dim=4, hidden_sizes=[16], seed=0)
    lm.fit(X, y, epochs=40, optimizer={"name": "adam", "lr": 0.05}, verbose=0)
    hot = lm.generate(np.zeros((200, 2), dtype=int), 1, temperature=100.0, seed=1)
    counts = np.bincount([s[0] for s in hot], minlength=3)
    assert counts.min() > 40  # about uniform
    assert lm.generate([0, 1], 20, seed=1) != lm.generate([0, 1], 20, temperature=5.0,
                                                           seed=2)
    for bad in ({"temperature": 0.0}, {"n_tokens": 0}):
        with pytest.raises(ValueError, match="LanguageModel.generate"):
            lm.generate([0, 1], **{"n_tokens": 3, **bad})
    with pytest.raises(ValueError, match="window=2"):
        lm.generate([0, 1, 2], 3)


def test_language_model_checkpoint_resume_equals_a_straight_run(tmp_path):
    X, y = _cycle_data(30)
    opt = {"name": "adam", "lr": 0.01}
    straight = mlpx.LanguageModel(3, 2, dim=2, hidden_sizes=[4], seed=0)
    straight.fit(X, y, epochs=4, batch_size=8, optimizer=opt, verbose=0)
    first = mlpx.LanguageModel(3, 2, dim=2, hidden_sizes=[4], seed=0)
    ck = tmp_path / "ck.npz"
    first.fit(X, y, epochs=2, batch_size=8, optimizer=opt, verbose=0, checkpoint=ck)
    resumed = mlpx.LanguageModel(3, 2, dim=2, hidden_sizes=[4], seed=0)
    resumed.fit(X, y, epochs=4, batch_size=8, optimizer=opt, verbose=0, resume=ck)
    for a, b in zip(resumed.params, straight.params):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_on_perplexity_only_for_language_models():
    X, y = _cycle_data(30)
    lm = mlpx.LanguageModel(3, 2, dim=2, hidden_sizes=[4], seed=0)
    hist = lm.fit(X, y, epochs=3, optimizer="adam", verbose=0, validation_split=0.2,
                  early_stopping={"monitor": "val_perplexity", "patience": 5})
    assert len(hist.history["val_perplexity"]) == 3
    with pytest.raises(ValueError, match="cannot monitor 'perplexity'.*language models"):
        MLP([2, 3, 2], seed=0).fit(np.ones((4, 2)), [0, 1, 0, 1], verbose=0,
                                   early_stopping={"monitor": "perplexity"})


def test_language_model_pickles():
    X, y = _cycle_data(30)
    lm = mlpx.LanguageModel(3, 2, dim=2, hidden_sizes=[4], seed=0)
    lm.fit(X, y, epochs=2, optimizer="adam", verbose=0)
    clone = pickle.loads(pickle.dumps(lm))
    assert type(clone) is mlpx.LanguageModel and clone.evaluate(X, y) == lm.evaluate(X, y)


@pytest.mark.parametrize("activation", ["relu", "prelu", "maxout"])
def test_forward_with_uses_the_given_params_and_leaves_the_model(backend, activation):
    xp = backend.xp
    model = MLP([4, 6, 3], activation=activation, dropout=0.5, backend=backend,
                dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(5, 4))
    Xd = _backend.to_device(X, backend=backend, dtype="float64")
    before = params_np(model)
    # Its own parameters: exactly the logits predict computes (dropout off).
    assert_array(model.forward_with(model.params, Xd, xp=xp), model.decision_function(X))
    # Other parameters: the logits of a model that holds them; the model is untouched.
    other = [p * 0.5 + 0.25 for p in model.params]
    twin = MLP([4, 6, 3], activation=activation, backend=backend, dtype="float64", seed=1)
    twin.set_params([_backend.to_numpy(p) for p in other])
    assert_array(model.forward_with(other, Xd, xp=xp), twin.decision_function(X))
    for a, b in zip(params_np(model), before):
        np.testing.assert_array_equal(a, b)


def test_forward_with_checks_the_parameter_count():
    model = MLP([4, 6, 3], seed=0)
    import array_api_compat.numpy as xp

    with pytest.raises(ValueError, match="Expected 4 parameters, got 3"):
        model.forward_with(model.params[:3], np.ones((2, 4), np.float32), xp=xp)
    with pytest.raises(RuntimeError, match="not built"):
        Sequential([Dense(2)]).forward_with([], np.ones((2, 4), np.float32), xp=xp)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_device_x_finds_every_non_finite_value(bad):
    # The check sums X first (NaN and inf propagate) and tests element-wise only when the
    # sum is not finite; finite values whose sum overflows pass.
    import warnings

    model = MLP([3, 4, 2], seed=0)
    big = np.full((5, 3), 3e38, dtype=np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(np.sum(big))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from the sum either
        assert model.to_device_X(big) is not None
    for i in range(big.size):
        X = big.copy()
        X.reshape(-1)[i] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            model.to_device_X(X)
    X = np.zeros((4, 3), dtype=np.float32)
    X[1, 2], X[3, 0] = np.inf, -np.inf  # inf - inf: the sum is NaN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="NaN or infinity"):
            model.to_device_X(X)


def test_count_correct_fast_equals_generic():
    from mlpx import _fast

    rng = np.random.default_rng(0)
    for dtype in ("float32", "float64"):
        model = MLP([3, 4, 6], dtype=dtype, seed=0)
        z = rng.standard_normal((50, 6)).astype(dtype)
        labels = rng.integers(0, 6, 50)
        labels[:20] = np.argmax(z[:20], axis=1)
        Y = np.eye(6, dtype=dtype)[labels]
        for lab in (labels, None):
            fast = model.count_correct(z, Y, lab)
            with _fast.disabled():
                slow = model.count_correct(z, Y, lab)
            assert type(fast) is type(slow) and fast.dtype == slow.dtype == np.dtype(dtype)
            assert fast == slow >= 20
