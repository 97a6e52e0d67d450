"""mlpx.metrics: streaming metrics checked against scikit-learn on every backend, fit's
``metrics=`` (History, validation, progress bar), class weights, MLP.score."""

import math

import numpy as np
import pytest

from mlpx import MLP, _backend
from mlpx.activations import get_activation
from mlpx.metrics import METRICS, class_sample_weight, get_metric, greater_is_better

skm = pytest.importorskip("sklearn.metrics")
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _stream(metric, Y, z, labels, output, backend, batch=7):
    """Feed ``metric`` in batches of ``batch`` rows on ``backend``; return the result."""
    metric.reset()
    act = get_activation(output)
    for start in range(0, Y.shape[0], batch):
        sl = slice(start, start + batch)
        dev = [None if a is None else _backend.to_device(a[sl], backend=backend)
               for a in (Y, z, labels)]
        metric.update(dev[0], dev[1], dev[2], output=act, xp=backend.xp)
    return metric.result()


@pytest.fixture
def multiclass(rng):
    n, k = 53, 5
    z = rng.standard_normal((n, k)) * 2.0
    labels = rng.integers(0, k - 1, n)  # class 4 never true: sklearn's label set
    z[:, 4] -= 10.0                     # ... and never predicted: left out of the means
    return np.eye(k)[labels], z, labels


@pytest.mark.parametrize("name,reference", [
    ("accuracy", lambda y, p, z: skm.accuracy_score(y, p)),
    ("precision", lambda y, p, z: skm.precision_score(y, p, average="macro",
                                                      zero_division=0)),
    ("recall", lambda y, p, z: skm.recall_score(y, p, average="macro", zero_division=0)),
    ("f1", lambda y, p, z: skm.f1_score(y, p, average="macro", zero_division=0)),
    ("log_loss", lambda y, p, z: skm.log_loss(y, _softmax(z), labels=range(z.shape[1]))),
])
def test_multiclass_metrics_match_sklearn(backend, multiclass, name, reference):
    Y, z, labels = multiclass
    got = _stream(get_metric(name), Y, z, labels, "softmax", backend)
    assert got == pytest.approx(reference(labels, z.argmax(axis=1), z), rel=1e-10)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_accuracy_matches_sklearn(backend, multiclass, k):
    Y, z, labels = multiclass
    got = _stream(get_metric("top_k_accuracy", k=k), Y, z, labels, "softmax", backend)
    want = skm.top_k_accuracy_score(labels, z, k=k, labels=range(z.shape[1]))
    assert got == pytest.approx(want, rel=1e-12)
    assert get_metric({"name": "top-k-accuracy", "k": k}).name == f"top_{k}_accuracy"


def test_labels_are_derived_from_one_hot_targets(backend, multiclass):
    Y, z, labels = multiclass
    assert _stream(get_metric("f1"), Y, z, None, "softmax", backend) == pytest.approx(
        _stream(get_metric("f1"), Y, z, labels, "softmax", backend), rel=1e-15)


def test_binary_sigmoid_metrics_match_sklearn(backend, rng):
    z = rng.standard_normal((41, 1)) * 3
    y = (rng.random(41) < 0.4).astype(np.float64)
    pred = (z[:, 0] > 0).astype(int)
    p = 1 / (1 + np.exp(-z[:, 0]))
    cases = {"accuracy": skm.accuracy_score(y, pred),
             "precision": skm.precision_score(y, pred, average="macro"),
             "recall": skm.recall_score(y, pred, average="macro"),
             "f1": skm.f1_score(y, pred, average="macro"),
             "log_loss": skm.log_loss(y, p)}
    for name, want in cases.items():
        got = _stream(get_metric(name), y[:, None], z, None, "sigmoid", backend)
        assert got == pytest.approx(want, rel=1e-9), name


def test_multilabel_sigmoid_metrics_match_sklearn(backend, rng):
    z = rng.standard_normal((40, 4)) * 2
    Y = (rng.random((40, 4)) < 0.5).astype(np.float64)
    Y[:, 3] = 0  # a label never true: still in the macro average (0 for precision/recall)
    z[:, 3] = -5.0
    pred = (z > 0).astype(int)
    for name, fn in [("accuracy", skm.accuracy_score),
                     ("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)]:
        kwargs = {} if name == "accuracy" else {"average": "macro", "zero_division": 0}
        got = _stream(get_metric(name), Y, z, None, "sigmoid", backend)
        assert got == pytest.approx(fn(Y, pred, **kwargs), rel=1e-12), name


@pytest.mark.parametrize("name,reference", [
    ("mse", skm.mean_squared_error), ("mae", skm.mean_absolute_error), ("r2", skm.r2_score),
])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_regression_metrics_match_sklearn(backend, rng, name, reference, n_outputs):
    Y = rng.standard_normal((37, n_outputs)) * 3 + 5
    z = Y + rng.standard_normal((37, n_outputs))
    got = _stream(get_metric(name), Y, z, None, "identity", backend)
    assert got == pytest.approx(reference(Y, z), rel=1e-10)


def test_r2_of_a_constant_target(backend):
    Y = np.full((6, 2), 3.0)
    z = Y.copy()
    z[:, 1] += 1.0  # output 0 exact (1.0), output 1 off (0.0): as scikit-learn
    assert _stream(get_metric("r2"), Y, z, None, "identity", backend) == pytest.approx(
        skm.r2_score(Y, z))


def test_metrics_use_the_output_activation(backend, rng):
    z = rng.standard_normal((20, 2))
    Y = np.exp(z) + 0.1
    got = _stream(get_metric("mae"), Y, z, None, "exp", backend)
    assert got == pytest.approx(0.1)


def test_result_before_any_batch_is_nan():
    assert math.isnan(get_metric("accuracy").result())


def test_streaming_keeps_only_sums(backend, multiclass):
    Y, z, labels = multiclass
    m = get_metric("f1")
    _stream(m, Y, z, labels, "softmax", backend)
    assert set(m.sums) == {"tp", "pred", "true"}
    assert all(int(np.prod(v.shape)) == z.shape[1] for v in m.sums.values())


def test_float32_sums_accumulate_in_float64(backend, multiclass):
    Y, z, labels = multiclass
    m = get_metric("accuracy")
    _stream(m, Y.astype(np.float32), z.astype(np.float32), labels, "softmax", backend)
    assert all(_backend.to_numpy(v).dtype == np.float64 for v in m.sums.values())


def test_registry_and_errors():
    assert {"accuracy", "top_k_accuracy", "precision", "recall", "f1", "mse", "mae", "r2",
            "log_loss"} <= set(METRICS)
    with pytest.raises(ValueError, match="Unknown|unknown") as err:
        get_metric("auc")
    assert "f1" in str(err.value)
    with pytest.raises(ValueError, match="'k' parameter"):
        get_metric("top_k_accuracy", k=0)
    with pytest.raises(ValueError, match="needs a classifier"):
        get_metric("accuracy").check_output("identity")


def test_greater_is_better():
    assert greater_is_better("val_f1") and greater_is_better("r2")
    assert not greater_is_better("val_log_loss") and not greater_is_better("mae")
    assert not greater_is_better("val_perplexity")


# ---------------------------------------------------------------------- class weights
@pytest.mark.parametrize("y", [
    np.array([0, 0, 0, 1, 2, 2]),
    np.array(["b", "a", "a", "c", "c", "c", "c"]),
    np.array([[1, 0], [1, 1], [0, 1], [1, 1], [1, 0]]),
])
def test_balanced_class_weight_equals_sklearn_bit_for_bit(y):
    np.testing.assert_array_equal(class_sample_weight(y, "balanced"),
                                  compute_sample_weight("balanced", y))


def test_class_weight_dict():
    y = np.array([0, 1, 2, 1])
    np.testing.assert_array_equal(class_sample_weight(y, {1: 3.0}), [1.0, 3.0, 1.0, 3.0])
    with pytest.raises(ValueError, match="not classes of y"):
        class_sample_weight(y, {7: 2.0})
    np.testing.assert_array_equal(class_sample_weight(y, {7: 2.0}, strict=False),
                                  np.ones(4))
    with pytest.raises(ValueError, match="multilabel"):
        class_sample_weight(np.eye(3), {0: 1.0})
    with pytest.raises(ValueError, match="'class_weight' parameter"):
        class_sample_weight(y, "auto")


# ---------------------------------------------------------------------- fit(metrics=...)
def _blobs(rng, n=120, k=3, d=4):
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), y


def test_fit_reports_metrics_for_training_and_validation(backend, rng):
    X, y = _blobs(rng)
    model = MLP([4, 16, 3], seed=0, backend=backend)
    hist = model.fit(X[:90], y[:90], epochs=3, batch_size=16, verbose=0,
                     validation_data=(X[90:], y[90:]),
                     metrics=["accuracy", "f1", {"name": "top_k_accuracy", "k": 2},
                              get_metric("log_loss")])
    for key in ("f1", "top_2_accuracy", "log_loss", "val_f1", "val_top_2_accuracy",
                "val_log_loss", "val_accuracy"):
        assert len(hist[key]) == 3, key
    # Validation metrics are those of the weights at the end of the epoch.
    p = _backend.to_numpy(model.predict_proba(X[90:])).astype(np.float64)
    p /= p.sum(axis=1, keepdims=True)
    assert hist["val_f1"][-1] == pytest.approx(
        skm.f1_score(y[90:], p.argmax(1), average="macro", zero_division=0), rel=1e-9)
    assert hist["val_log_loss"][-1] == pytest.approx(
        skm.log_loss(y[90:], p, labels=[0, 1, 2]), rel=1e-4)
    assert hist["val_accuracy"][-1] == pytest.approx(skm.accuracy_score(y[90:],
                                                                        p.argmax(1)))


def test_training_metric_accuracy_equals_the_trainers_count(rng):
    X, y = _blobs(rng)
    a = MLP([4, 8, 3], seed=1).fit(X, y, epochs=2, verbose=0)
    b = MLP([4, 8, 3], seed=1).fit(X, y, epochs=2, verbose=0, metrics=["top_k_accuracy"])
    assert a["accuracy"] == b["accuracy"] and a["loss"] == b["loss"]
    assert b["top_5_accuracy"] == [1.0, 1.0]


def test_metrics_do_not_change_training(rng):
    X, y = _blobs(rng)
    a = MLP([4, 8, 3], seed=2)
    b = MLP([4, 8, 3], seed=2)
    a.fit(X, y, epochs=3, verbose=0, validation_split=0.2)
    b.fit(X, y, epochs=3, verbose=0, validation_split=0.2, metrics=["f1", "log_loss"])
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(p, q)
    assert a.history_["val_loss"] == b.history_["val_loss"]


def test_regression_metrics_in_fit(backend, rng):
    X = rng.standard_normal((80, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5], dtype=np.float32) + 1
    model = MLP([3, 16, 1], loss="mse", seed=0, backend=backend)
    hist = model.fit(X, y, epochs=4, batch_size=8, verbose=0, validation_split=0.25,
                     metrics=["mse", "mae", "r2"], optimizer="adam")
    assert "accuracy" not in hist
    assert len(hist["val_r2"]) == 4 and hist["r2"][-1] > hist["r2"][0]


def test_fit_metric_errors_leave_the_model_untouched(rng):
    X, y = _blobs(rng)
    model = MLP([4, 8, 1], loss="mse", seed=0)
    with pytest.raises(ValueError, match="needs a classifier"):
        model.fit(X, y.astype(np.float32), metrics=["accuracy"], verbose=0)
    with pytest.raises(ValueError, match="twice"):
        model.fit(X, y.astype(np.float32), metrics=["mse", "mean_squared_error"], verbose=0)
    with pytest.raises(ValueError, match="Unknown|unknown"):
        model.fit(X, y.astype(np.float32), metrics=["auc"], verbose=0)
    assert model.optimizer_ is None


def test_progress_bar_shows_metrics(rng, capsys):
    X, y = _blobs(rng, n=40)
    MLP([4, 8, 3], seed=0).fit(X, y, epochs=1, verbose=1, metrics=["f1"])
    assert "f1=" in capsys.readouterr().err


def test_early_stopping_can_monitor_a_metric(rng):
    X, y = _blobs(rng)
    hist = MLP([4, 8, 3], seed=0).fit(X, y, epochs=30, verbose=0, validation_split=0.25,
                                      metrics=["f1"], optimizer={"name": "sgd", "lr": 0.001},
                                      early_stopping={"monitor": "val_f1", "patience": 2})
    assert hist.stopped_early
    best = int(np.argmax(hist["val_f1"]))
    assert hist.best_epoch == hist.epochs[best]


# ---------------------------------------------------------------------- score
def test_score_is_accuracy_or_r2(rng):
    X, y = _blobs(rng)
    clf = MLP([4, 8, 3], seed=0)
    clf.fit(X, y, epochs=5, verbose=0)
    assert clf.score(X, y) == pytest.approx(skm.accuracy_score(y, clf.predict(X)))
    reg = MLP([4, 8, 2], loss="mse", seed=0)
    Y = np.stack([X[:, 0], X[:, 1] - X[:, 2]], axis=1)
    reg.fit(X, Y, epochs=5, verbose=0)
    assert reg.score(X, Y) == pytest.approx(skm.r2_score(Y, reg.predict(X)), rel=1e-5)
    w = rng.random(X.shape[0])
    assert clf.score(X, y, sample_weight=w) == pytest.approx(
        skm.accuracy_score(y, clf.predict(X), sample_weight=w))
    assert reg.score(X, Y, sample_weight=w) == pytest.approx(
        skm.r2_score(Y, reg.predict(X), sample_weight=w), rel=1e-5)


def test_metric_sums_pass_through_the_epoch_totals_hook(rng):
    """A data-parallel hook sums ``epoch_totals`` over ranks; the metrics' sums go
    through it as one float per key (here: a pretend second rank with equal sums)."""
    from mlpx.trainer import DeviceData, StepHook, Trainer

    class TwoRanks(StepHook):
        seen: list = []

        def epoch_totals(self, totals):
            self.seen.append(dict(totals))
            return {k: 2.0 * v for k, v in totals.items()}

    X, y = _blobs(rng, n=64)
    results = []
    for hooks in ([], [TwoRanks()]):
        model = MLP([4, 8, 3], seed=0).compile("sgd")
        Yd, labels = model.to_device_y(y, 64)
        data = DeviceData(model.to_device_X(X), Yd, labels, xp=np)
        trainer = Trainer(model, batch_size=16, hooks=hooks,
                          extra_metrics=[get_metric("f1"), get_metric("log_loss")])
        results.append(trainer.run(data, 2))
    assert results[0]["f1"] == results[1]["f1"]
    assert results[0]["log_loss"] == results[1]["log_loss"]
    keys = set(TwoRanks.seen[0])
    assert {"correct", "metric 0 tp 0", "metric 0 tp 2", "metric 1 sum 0"} <= keys
