"""mlpx.sklearn: scikit-learn's estimator checks, parity with scikit-learn, parameter effects.

The parity tests train scikit-learn's estimator and mlpx's (``dtype="float64"``) from the
same ``random_state`` and compare weights, losses and counters: mlpx draws the same
initial weights, visits the same minibatches and follows the same schedules, so each
parameter must have the same effect in both.
"""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as sknn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from sklearn.model_selection import (  # noqa: E402
    GridSearchCV,
    cross_val_score,
    train_test_split,
)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import (  # noqa: E402
    check_sample_weight_equivalence_on_dense_data,
    check_sample_weight_equivalence_on_sparse_data,
    parametrize_with_checks,
)
from threadpoolctl import threadpool_limits  # noqa: E402

from mlpx import _backend  # noqa: E402
from mlpx.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """The problems here are tiny: one BLAS thread is faster and immune to a busy machine
    (SciPy's L-BFGS-B slows down badly when BLAS threads compete for cores)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --------------------------------------------------------------------------- data
def _digits(n=500):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


DIGITS_X, DIGITS_Y = _digits()
REG_X, REG_Y3 = make_regression(n_samples=200, n_features=10, n_targets=3, noise=0.1,
                                random_state=0)
REG_Y3 = REG_Y3 / REG_Y3.std(axis=0)
POISSON_Y = np.random.default_rng(0).poisson(np.exp(0.3 * REG_X[:, 0]))


def _quiet_fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


# --------------------------------------------------------------------------- estimator checks
SMALL = dict(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=50)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [
        MLPClassifier(**SMALL),
        MLPRegressor(**SMALL),
        MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=100),
        MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=100),
    ],
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("check", [check_sample_weight_equivalence_on_dense_data,
                                   check_sample_weight_equivalence_on_sparse_data])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sample_weight_equivalence_float64(Estimator, check):
    check(Estimator.__name__, Estimator(dtype="float64", **SMALL))


# --------------------------------------------------------------------------- parity
PARITY_CASES = {
    "adam": ("MLPClassifier", {}, "digits"),
    "adam_no_shuffle": ("MLPClassifier", dict(shuffle=False), "digits"),
    "adam_batch64_tanh": ("MLPClassifier", dict(batch_size=64, activation="tanh"), "digits"),
    "adam_logistic_alpha": ("MLPClassifier", dict(activation="logistic", alpha=0.1),
                            "digits"),
    "adam_identity_betas": ("MLPClassifier", dict(activation="identity", beta_1=0.8,
                                                  beta_2=0.99, epsilon=1e-4), "digits"),
    "adam_two_hidden": ("MLPClassifier", dict(hidden_layer_sizes=(12, 8)), "digits"),
    "sgd_constant": ("MLPClassifier", dict(solver="sgd", learning_rate_init=0.1), "digits"),
    "sgd_no_nesterov": ("MLPClassifier", dict(solver="sgd", nesterovs_momentum=False,
                                              learning_rate_init=0.05), "digits"),
    "sgd_no_momentum": ("MLPClassifier", dict(solver="sgd", momentum=0.0,
                                              learning_rate_init=0.2), "digits"),
    "sgd_invscaling": ("MLPClassifier", dict(solver="sgd", learning_rate="invscaling",
                                             learning_rate_init=0.5, power_t=0.3), "digits"),
    "sgd_adaptive": ("MLPClassifier", dict(solver="sgd", learning_rate="adaptive",
                                           learning_rate_init=0.1, max_iter=40, tol=1e-2,
                                           n_iter_no_change=2), "digits"),
    "tol_stops_early": ("MLPClassifier", dict(max_iter=50, tol=0.5, n_iter_no_change=3),
                        "digits"),
    "lbfgs": ("MLPClassifier", dict(solver="lbfgs", max_iter=40), "digits"),
    "binary": ("MLPClassifier", {}, "binary"),
    "binary_sample_weight": ("MLPClassifier", {}, "binary_sw"),
    "binary_early_stopping": ("MLPClassifier", dict(early_stopping=True, max_iter=30,
                                                    validation_fraction=0.2), "binary"),
    "multilabel": ("MLPClassifier", {}, "multilabel"),
    "reg_three_outputs": ("MLPRegressor", dict(max_iter=20, alpha=0.01), "reg3"),
    "reg_lbfgs": ("MLPRegressor", dict(solver="lbfgs", max_iter=30), "reg1"),
    "reg_lbfgs_three_outputs": ("MLPRegressor", dict(solver="lbfgs", max_iter=30,
                                                     alpha=0.1), "reg3"),
    "reg_early_stopping": ("MLPRegressor", dict(early_stopping=True, max_iter=30), "reg3"),
    "reg_sample_weight_sgd": ("MLPRegressor", dict(solver="sgd", learning_rate_init=0.01),
                              "reg1_sw"),
    "poisson": ("MLPRegressor", dict(loss="poisson"), "poisson"),
    "poisson_lbfgs": ("MLPRegressor", dict(loss="poisson", solver="lbfgs"), "poisson"),
}


def _parity_data(kind):
    sw = np.random.default_rng(1).integers(0, 4, DIGITS_X.shape[0]).astype(float)
    if kind == "digits":
        return DIGITS_X, DIGITS_Y, None
    if kind == "binary":
        return DIGITS_X, (DIGITS_Y > 4).astype(int), None
    if kind == "binary_sw":
        return DIGITS_X, (DIGITS_Y > 4).astype(int), sw
    if kind == "multilabel":
        Y = np.stack([DIGITS_Y % 2, DIGITS_Y > 4, DIGITS_Y == 3], axis=1).astype(int)
        return DIGITS_X, Y, None
    if kind == "reg3":
        return REG_X, REG_Y3, None
    if kind == "reg1":
        return REG_X, REG_Y3[:, 0], None
    if kind == "reg1_sw":
        return REG_X, REG_Y3[:, 0], sw[:REG_X.shape[0]]
    if kind == "poisson":
        return REG_X, POISSON_Y, None
    raise AssertionError(kind)


def _assert_same_fit(a, b, rtol=1e-7, atol=1e-9):
    assert a.n_iter_ == b.n_iter_
    assert (a.n_layers_, a.n_outputs_, a.out_activation_) == \
        (b.n_layers_, b.n_outputs_, b.out_activation_)
    for ca, cb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert ca.shape == cb.shape and ca.dtype == cb.dtype
        np.testing.assert_allclose(cb, ca, rtol=rtol, atol=atol)
    np.testing.assert_allclose(b.loss_, a.loss_, rtol=rtol)
    for name in ("t_", "best_loss_", "best_validation_score_"):
        assert hasattr(a, name) == hasattr(b, name), name
        if hasattr(a, name) and getattr(a, name) is not None:
            np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=rtol)
    for name in ("loss_curve_", "validation_scores_"):
        assert hasattr(a, name) == hasattr(b, name), name
        if getattr(a, name, None) is not None:
            np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=rtol)


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_matches_sklearn_float64(case):
    """Same random_state, same settings, float64: the same fit as scikit-learn's."""
    cls, params, kind = PARITY_CASES[case]
    X, y, sw = _parity_data(kind)
    params = dict(dict(hidden_layer_sizes=(16,), random_state=0, max_iter=5), **params)
    reference = _quiet_fit(getattr(sknn, cls)(**params), X, y, sample_weight=sw)
    ours = _quiet_fit(globals()[cls](dtype="float64", **params), X, y, sample_weight=sw)
    _assert_same_fit(reference, ours)
    np.testing.assert_allclose(ours.predict(X), reference.predict(X), rtol=1e-7, atol=1e-9)


def test_tol_stops_before_max_iter_without_warning():
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, tol=0.5, n_iter_no_change=3,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(DIGITS_X, DIGITS_Y)
    # First epoch sets best_loss_; then n_iter_no_change + 1 epochs without a gain of tol.
    assert clf.n_iter_ == 3 + 2
    assert len(clf.loss_curve_) == clf.n_iter_


def test_max_iter_reached_warns():
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(DIGITS_X,
                                                                              DIGITS_Y)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_fun=5,
                      random_state=0).fit(DIGITS_X, DIGITS_Y)


@pytest.mark.parametrize("cls", ["MLPClassifier", "MLPRegressor"])
def test_warm_start_and_partial_fit_match_sklearn(cls):
    X, y = (DIGITS_X, DIGITS_Y) if cls == "MLPClassifier" else (REG_X, REG_Y3)
    params = dict(hidden_layer_sizes=(16,), random_state=0, max_iter=3, warm_start=True)
    ref = getattr(sknn, cls)(**params)
    ours = globals()[cls](dtype="float64", **params)
    for est in (ref, ours):
        _quiet_fit(est, X, y)
        _quiet_fit(est, X[::2], y[::2])
    _assert_same_fit(ref, ours)
    ref = getattr(sknn, cls)(hidden_layer_sizes=(16,), random_state=0)
    ours = globals()[cls](hidden_layer_sizes=(16,), random_state=0, dtype="float64")
    extra = {"classes": np.unique(y)} if cls == "MLPClassifier" else {}
    for est in (ref, ours):
        for start in range(0, X.shape[0], 100):
            est.partial_fit(X[start:start + 100], y[start:start + 100], **extra)
    _assert_same_fit(ref, ours)


# --------------------------------------------------------------------------- side by side
def test_side_by_side_digits_accuracy_and_learning_curve():
    """Default settings (mlpx trains in float32): accuracy within 0.01 of scikit-learn's,
    learning curves of the same shape."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25,
                                                        random_state=0, stratify=y)
    params = dict(hidden_layer_sizes=(64,), max_iter=60, random_state=0)
    ref = _quiet_fit(sknn.MLPClassifier(**params), X_train, y_train)
    ours = _quiet_fit(MLPClassifier(**params), X_train, y_train)
    assert abs(ours.score(X_test, y_test) - ref.score(X_test, y_test)) <= 0.01
    assert ours.score(X_test, y_test) > 0.9
    assert len(ours.loss_curve_) == len(ref.loss_curve_)
    np.testing.assert_allclose(ours.loss_curve_, ref.loss_curve_, rtol=1e-3)


# --------------------------------------------------------------------------- effects
def test_early_stopping_restores_best_weights():
    X, y = DIGITS_X, DIGITS_Y
    params = dict(hidden_layer_sizes=(32,), learning_rate_init=0.05, early_stopping=True,
                  n_iter_no_change=3, max_iter=100, random_state=0)
    full = MLPClassifier(**params).fit(X, y)
    scores = full.validation_scores_
    best_epoch = int(np.argmax(scores)) + 1
    assert best_epoch < full.n_iter_, "the test needs epochs after the best one"
    assert full.best_validation_score_ == max(scores)
    assert full.best_loss_ is None
    # The same run cut at the best epoch ends on the best weights (its last epoch is its
    # best); the full run must have restored exactly those.
    cut = _quiet_fit(MLPClassifier(**dict(params, max_iter=best_epoch)), X, y)
    assert cut.validation_scores_ == scores[:best_epoch]
    for a, b in zip(full.coefs_ + full.intercepts_, cut.coefs_ + cut.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_split_is_stratified():
    y = np.array([0] * 90 + [1] * 10 + [2] * 20)
    X = np.random.default_rng(0).normal(size=(120, 4))
    clf = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), early_stopping=True, max_iter=2,
                                   validation_fraction=0.25, random_state=0), X, y)
    train_idx, val_idx = clf._split(clf._check_params(), y, 120,
                                    np.random.RandomState(0))
    counts = np.bincount(y[val_idx])
    assert val_idx.shape[0] == 30
    assert np.all(np.abs(counts - 0.25 * np.array([90, 10, 20])) <= 1)  # 25 % of each class
    assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(120))


def test_warm_start_continues_and_cold_start_restarts():
    params = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    cold = _quiet_fit(MLPClassifier(**params), DIGITS_X, DIGITS_Y)
    warm = _quiet_fit(MLPClassifier(warm_start=True, **params), DIGITS_X, DIGITS_Y)
    first_curve = list(warm.loss_curve_)
    _quiet_fit(warm, DIGITS_X, DIGITS_Y)
    assert warm.n_iter_ == 5 and warm.t_ == 10 * DIGITS_X.shape[0]
    assert warm.loss_curve_[:5] == first_curve and len(warm.loss_curve_) == 10
    assert warm.loss_curve_[5] < first_curve[0]
    _quiet_fit(cold, DIGITS_X, DIGITS_Y)  # warm_start=False: starts again, same result
    again = _quiet_fit(MLPClassifier(**params), DIGITS_X, DIGITS_Y)
    np.testing.assert_array_equal(cold.coefs_[0], again.coefs_[0])
    with pytest.raises(ValueError, match="same classes"):
        warm.fit(DIGITS_X[DIGITS_Y < 5], DIGITS_Y[DIGITS_Y < 5])


def test_partial_fit_matches_fit_on_the_same_batches():
    params = dict(hidden_layer_sizes=(16,), shuffle=False, random_state=0)
    fitted = _quiet_fit(MLPClassifier(batch_size=100, max_iter=3, **params),
                        DIGITS_X, DIGITS_Y)
    online = MLPClassifier(**params)
    for _ in range(3):
        for start in range(0, DIGITS_X.shape[0], 100):
            online.partial_fit(DIGITS_X[start:start + 100], DIGITS_Y[start:start + 100],
                               classes=np.arange(10))
    assert online.t_ == fitted.t_
    for a, b in zip(fitted.coefs_ + fitted.intercepts_, online.coefs_ + online.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_partial_fit_errors():
    clf = MLPClassifier(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(DIGITS_X, DIGITS_Y)
    clf.partial_fit(DIGITS_X[DIGITS_Y < 5], DIGITS_Y[DIGITS_Y < 5], classes=np.arange(5))
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(DIGITS_X, DIGITS_Y)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(REG_X, REG_Y3)
    with pytest.raises(ValueError, match="balanced"):
        MLPClassifier(class_weight="balanced").partial_fit(DIGITS_X, DIGITS_Y,
                                                           classes=np.arange(10))


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-9), ("auto", 1e-9), ("float32", 2e-4)])
def test_sample_weight_two_equals_duplicating_the_row(dtype, rtol):
    X, y = DIGITS_X[:150], DIGITS_Y[:150]  # one full batch: the order does not matter
    sw = np.ones(150)
    sw[:40] = 2.0
    params = dict(hidden_layer_sizes=(16,), max_iter=20, random_state=0, dtype=dtype)
    weighted = _quiet_fit(MLPClassifier(**params), X, y, sample_weight=sw)
    repeated = _quiet_fit(MLPClassifier(**params), np.vstack([X, X[:40]]),
                          np.concatenate([y, y[:40]]))
    np.testing.assert_allclose(weighted.predict_proba(X), repeated.predict_proba(X),
                               rtol=rtol, atol=rtol * 1e-2)


def test_class_weight_balanced_helps_a_skewed_set():
    X, y = make_classification(n_samples=1000, n_features=10, n_informative=4,
                               weights=[0.95, 0.05], flip_y=0.0, class_sep=0.6,
                               random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5,
                                                        random_state=0, stratify=y)
    params = dict(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01,
                  random_state=0)
    plain = _quiet_fit(MLPClassifier(**params), X_train, y_train)
    balanced = _quiet_fit(MLPClassifier(class_weight="balanced", **params), X_train, y_train)
    b_plain = balanced_accuracy_score(y_test, plain.predict(X_test))
    b_bal = balanced_accuracy_score(y_test, balanced.predict(X_test))
    assert b_bal > b_plain + 0.05
    recall = lambda est: np.mean(est.predict(X_test)[y_test == 1] == 1)  # noqa: E731
    assert recall(balanced) > recall(plain)


def test_class_weight_dict_equals_sample_weight():
    params = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    y = np.where(DIGITS_Y > 4, "big", "small")
    a = _quiet_fit(MLPClassifier(class_weight={"big": 3.0}, **params), DIGITS_X, y)
    b = _quiet_fit(MLPClassifier(**params), DIGITS_X, y,
                   sample_weight=np.where(y == "big", 3.0, 1.0))
    np.testing.assert_array_equal(a.coefs_[0], b.coefs_[0])
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="auto").fit(DIGITS_X, y)


def test_dropout():
    params = dict(hidden_layer_sizes=(32,), max_iter=5, random_state=0)
    plain = _quiet_fit(MLPClassifier(**params), DIGITS_X, DIGITS_Y)
    drop = _quiet_fit(MLPClassifier(dropout=0.3, **params), DIGITS_X, DIGITS_Y)
    drop2 = _quiet_fit(MLPClassifier(dropout=0.3, **params), DIGITS_X, DIGITS_Y)
    assert not np.allclose(plain.coefs_[0], drop.coefs_[0])
    np.testing.assert_array_equal(drop.coefs_[0], drop2.coefs_[0])  # seeded by random_state
    # No dropout at inference: predictions are deterministic.
    np.testing.assert_array_equal(drop.predict_proba(DIGITS_X), drop.predict_proba(DIGITS_X))
    with pytest.raises(ValueError, match="dropout"):
        MLPClassifier(solver="lbfgs", dropout=0.2).fit(DIGITS_X, DIGITS_Y)


def test_learning_rate_schedules_of_sgd():
    params = dict(hidden_layer_sizes=(8,), solver="sgd", random_state=0)
    inv = _quiet_fit(MLPClassifier(learning_rate="invscaling", learning_rate_init=0.5,
                                   power_t=0.25, max_iter=4, **params), DIGITS_X, DIGITS_Y)
    assert inv._rate.lr == pytest.approx(0.5 / (inv.t_ + 1) ** 0.25)
    ada = _quiet_fit(MLPClassifier(learning_rate="adaptive", learning_rate_init=0.1,
                                   tol=0.05, n_iter_no_change=1, max_iter=30, **params),
                     DIGITS_X, DIGITS_Y)
    divisions = np.log(0.1 / ada._rate.lr) / np.log(5.0)
    assert divisions >= 1 and divisions == pytest.approx(round(divisions))


def test_alpha_shrinks_the_weights():
    norms = []
    for alpha in (1e-4, 1.0, 10.0):
        clf = _quiet_fit(MLPClassifier(hidden_layer_sizes=(16,), alpha=alpha, max_iter=20,
                                       learning_rate_init=0.01, random_state=0),
                         DIGITS_X, DIGITS_Y)
        norms.append(sum(float(np.sum(W ** 2)) for W in clf.coefs_))
    assert norms[2] < 0.5 * norms[1] < 0.4 * norms[0]


def test_batch_size_auto_and_clipping():
    clf = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0),
                     DIGITS_X[:150], DIGITS_Y[:150])
    assert clf._model.optimizer_state_["step"] == 1          # 'auto': min(200, 150)
    _quiet_fit(clf.set_params(batch_size=64), DIGITS_X, DIGITS_Y)
    assert clf._model.optimizer_state_["step"] == 8          # ceil(500 / 64)
    with pytest.warns(UserWarning, match="clipped"):
        _quiet_fit(clf.set_params(batch_size=1000), DIGITS_X, DIGITS_Y)


def test_verbose_prints_progress(capsys):
    _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, verbose=True,
                             random_state=0), DIGITS_X, DIGITS_Y)
    assert "Iteration 2, loss = " in capsys.readouterr().out


@pytest.mark.parametrize("param,value,message", [
    ("alpha", -1, "The 'alpha' parameter of MLPClassifier must be a float >= 0. Got -1"),
    ("activation", "softplus", "The 'activation' parameter of MLPClassifier must be one of"),
    ("solver", "rmsprop", "The 'solver' parameter"),
    ("hidden_layer_sizes", (4, 0), "hidden_layer_sizes must be > 0"),
    ("batch_size", 0, "The 'batch_size' parameter"),
    ("learning_rate", "cosine", "The 'learning_rate' parameter"),
    ("learning_rate_init", 0.0, "The 'learning_rate_init' parameter"),
    ("max_iter", 0, "The 'max_iter' parameter"),
    ("momentum", 1.5, "The 'momentum' parameter"),
    ("validation_fraction", 1.0, "The 'validation_fraction' parameter"),
    ("beta_2", 1.0, "The 'beta_2' parameter"),
    ("epsilon", 0.0, "The 'epsilon' parameter"),
    ("n_iter_no_change", 0, "The 'n_iter_no_change' parameter"),
    ("dropout", 1.0, "The 'dropout' parameter"),
    ("dtype", "float16", "The 'dtype' parameter"),
    ("shuffle", "yes", "The 'shuffle' parameter"),
])
def test_invalid_parameters_raise_at_fit(param, value, message):
    clf = MLPClassifier(**{param: value})  # never at construction (scikit-learn's rule)
    with pytest.raises(ValueError, match=message.replace("(", "\\(").replace(")", "\\)")):
        clf.fit(DIGITS_X, DIGITS_Y)
    with pytest.raises(ValueError, match="The 'loss' parameter of MLPRegressor"):
        MLPRegressor(loss="huber").fit(REG_X, REG_Y3)


# --------------------------------------------------------------------------- targets
def test_string_labels_binary_and_multiclass():
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                      "eight", "nine"])
    params = dict(hidden_layer_sizes=(16,), max_iter=30, learning_rate_init=0.01,
                  random_state=0)
    clf = _quiet_fit(MLPClassifier(**params), DIGITS_X, names[DIGITS_Y])
    assert clf.classes_.tolist() == sorted(names.tolist())
    assert clf.out_activation_ == "softmax" and clf.coefs_[-1].shape == (16, 10)
    pred = clf.predict(DIGITS_X)
    assert pred.dtype == names.dtype and np.mean(pred == names[DIGITS_Y]) > 0.9
    proba = clf.predict_proba(DIGITS_X)
    np.testing.assert_array_equal(clf.classes_[np.argmax(proba, axis=1)], pred)
    yb = np.where(DIGITS_Y > 4, "big", "small")
    clf = _quiet_fit(MLPClassifier(**params), DIGITS_X, yb)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.coefs_[-1].shape == (16, 1)
    proba = clf.predict_proba(DIGITS_X)
    assert proba.shape == (500, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[(proba[:, 1] > 0.5).astype(int)],
                                  clf.predict(DIGITS_X))
    np.testing.assert_allclose(clf.predict_log_proba(DIGITS_X), np.log(proba))


def test_multilabel():
    Y = np.stack([DIGITS_Y % 2, DIGITS_Y > 4, DIGITS_Y == 3], axis=1).astype(int)
    clf = _quiet_fit(MLPClassifier(hidden_layer_sizes=(32,), max_iter=60,
                                   learning_rate_init=0.01, random_state=0), DIGITS_X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    pred = clf.predict(DIGITS_X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    assert np.mean(pred == Y) > 0.9
    proba = clf.predict_proba(DIGITS_X)
    assert proba.shape == (500, 3) and np.all((proba > 0) & (proba < 1))
    np.testing.assert_array_equal((proba > 0.5).astype(int), pred)


def test_regressor_outputs_and_poisson():
    reg = _quiet_fit(MLPRegressor(hidden_layer_sizes=(16,), max_iter=50,
                                  learning_rate_init=0.01, random_state=0), REG_X, REG_Y3)
    assert reg.predict(REG_X).shape == (200, 3) and reg.n_outputs_ == 3
    assert reg.predict(REG_X[:, :]).dtype == np.float64
    one = _quiet_fit(MLPRegressor(hidden_layer_sizes=(16,), max_iter=5, random_state=0),
                     REG_X, REG_Y3[:, 0])
    assert one.predict(REG_X).shape == (200,)
    poisson = _quiet_fit(MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=20,
                                      random_state=0), REG_X, POISSON_Y)
    assert poisson.out_activation_ == "exp" and np.all(poisson.predict(REG_X) > 0)
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson").fit(REG_X, -POISSON_Y - 1.0)


# --------------------------------------------------------------------------- dtypes, backends
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_float32_stays_float32_and_float64_stays_float64(solver):
    params = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, solver=solver)
    X32 = DIGITS_X.astype(np.float32)
    clf = _quiet_fit(MLPClassifier(**params), X32, DIGITS_Y)
    assert clf.predict_proba(X32).dtype == np.float32
    assert clf.predict_log_proba(X32).dtype == np.float32
    assert all(c.dtype == np.float32 for c in clf.coefs_ + clf.intercepts_)
    reg = _quiet_fit(MLPRegressor(**params), REG_X.astype(np.float32),
                     REG_Y3.astype(np.float32))
    assert reg.predict(REG_X.astype(np.float32)).dtype == np.float32
    clf64 = _quiet_fit(MLPClassifier(**params), DIGITS_X, DIGITS_Y)
    assert clf64.predict_proba(DIGITS_X).dtype == np.float64
    assert all(c.dtype == np.float64 for c in clf64.coefs_ + clf64.intercepts_)
    assert isinstance(clf64.loss_, float)


def test_dtype_selects_the_compute_type():
    auto = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1), DIGITS_X, DIGITS_Y)
    assert auto._model.dtype == "float64"     # 'auto' follows the data (float64 here)
    auto32 = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1),
                        DIGITS_X.astype(np.float32), DIGITS_Y)
    assert auto32._model.dtype == "float32"   # ... and float32 data trains in float32
    f32 = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, dtype="float32"),
                     DIGITS_X, DIGITS_Y)
    assert f32._model.dtype == "float32"      # asked for explicitly
    lb = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=2),
                    DIGITS_X, DIGITS_Y)
    assert lb._model.dtype == "float64"       # L-BFGS: the data's type
    f64 = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, dtype="float64"),
                     DIGITS_X, DIGITS_Y)
    assert f64._model.dtype == "float64"


def test_array_api_strict_backend_trains_and_returns_numpy():
    pytest.importorskip("array_api_strict")
    params = dict(hidden_layer_sizes=(16,), max_iter=5, random_state=0)
    strict = _quiet_fit(MLPClassifier(backend="array_api_strict", **params), DIGITS_X,
                        DIGITS_Y)
    numpy_ = _quiet_fit(MLPClassifier(**params), DIGITS_X, DIGITS_Y)
    assert _backend.backend_of(strict._model.params[0]).name == "array_api_strict"
    proba = strict.predict_proba(DIGITS_X)
    assert type(proba) is np.ndarray and proba.dtype == np.float64
    assert type(strict.predict(DIGITS_X)) is np.ndarray
    assert all(type(c) is np.ndarray for c in strict.coefs_)
    np.testing.assert_allclose(proba, numpy_.predict_proba(DIGITS_X), rtol=1e-5, atol=1e-6)
    reg = _quiet_fit(MLPRegressor(backend="array_api_strict", solver="lbfgs", max_iter=5,
                                  hidden_layer_sizes=(8,)), REG_X, REG_Y3)
    assert type(reg.predict(REG_X)) is np.ndarray
    clone_back = pickle.loads(pickle.dumps(strict))
    np.testing.assert_array_equal(clone_back.predict_proba(DIGITS_X), proba)


@pytest.mark.gpu
@pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device")
def test_cupy_backend_returns_numpy():  # pragma: no cover - GPU only
    params = dict(hidden_layer_sizes=(32,), max_iter=5, random_state=0)
    gpu = _quiet_fit(MLPClassifier(backend="cupy", **params), DIGITS_X, DIGITS_Y)
    cpu = _quiet_fit(MLPClassifier(**params), DIGITS_X, DIGITS_Y)
    proba = gpu.predict_proba(DIGITS_X)
    assert type(proba) is np.ndarray and type(gpu.coefs_[0]) is np.ndarray
    np.testing.assert_allclose(proba, cpu.predict_proba(DIGITS_X), rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(gpu)).predict_proba(DIGITS_X),
                                  proba)


def test_sparse_input_equals_dense():
    import scipy.sparse as sp

    params = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    dense = _quiet_fit(MLPClassifier(**params), DIGITS_X, DIGITS_Y)
    sparse = _quiet_fit(MLPClassifier(**params), sp.csr_matrix(DIGITS_X), DIGITS_Y)
    np.testing.assert_allclose(sparse.predict_proba(sp.csc_matrix(DIGITS_X)),
                               dense.predict_proba(DIGITS_X), rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- ecosystem
def test_pipeline_gridsearch_cross_val_score_clone_pickle():
    params = dict(hidden_layer_sizes=(16,), max_iter=20, learning_rate_init=0.01,
                  random_state=0, class_weight=None, dropout=0.0, backend="numpy")
    pipe = make_pipeline(StandardScaler(), MLPClassifier(**params))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(pipe, DIGITS_X, DIGITS_Y, cv=3)
        assert scores.shape == (3,) and scores.mean() > 0.85
        search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1],
                                     "mlpclassifier__dropout": [0.0, 0.1]}, cv=2)
        search.fit(DIGITS_X, DIGITS_Y)
    assert set(search.best_params_) == {"mlpclassifier__alpha", "mlpclassifier__dropout"}
    best = search.best_estimator_
    assert best.score(DIGITS_X, DIGITS_Y) > 0.85
    cloned = clone(best[-1])
    assert cloned.get_params() == best[-1].get_params() and not hasattr(cloned, "coefs_")
    restored = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(restored.predict_proba(DIGITS_X),
                                  best.predict_proba(DIGITS_X))
    # A pickled estimator keeps training where it stopped.
    restored[-1].set_params(warm_start=True, max_iter=2)
    _quiet_fit(restored, DIGITS_X, DIGITS_Y)


def test_same_constructor_as_sklearn():
    """Every scikit-learn parameter, same name, default and order; additions keyword-only."""
    import inspect

    for ours, theirs, extra in [
        (MLPClassifier, sknn.MLPClassifier, ["class_weight", "dropout", "backend", "dtype"]),
        (MLPRegressor, sknn.MLPRegressor, ["dropout", "backend", "dtype"]),
    ]:
        a = inspect.signature(ours).parameters
        b = inspect.signature(theirs).parameters
        assert list(a)[:len(b)] == list(b) and list(a)[len(b):] == extra
        for name, p in b.items():
            assert a[name].default == p.default and a[name].kind == p.kind, name
        assert all(a[name].kind is inspect.Parameter.KEYWORD_ONLY for name in extra)
        assert ours().get_params().keys() == set(a)


def test_feature_names_in():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(DIGITS_X[:, :5], columns=[f"f{i}" for i in range(5)])
    clf = _quiet_fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=2), df, DIGITS_Y)
    assert clf.feature_names_in_.tolist() == list(df.columns) and clf.n_features_in_ == 5


def test_import_mlpx_needs_no_sklearn_and_the_error_says_what_to_install():
    code = "\n".join([
        "import sys",
        "import mlpx",
        "assert 'sklearn' not in sys.modules and 'mlpx.sklearn' not in sys.modules",
        "sys.modules['sklearn'] = None  # as if scikit-learn were not installed",
        "try:",
        "    from mlpx.sklearn import MLPClassifier",
        "except ImportError as exc:",
        "    assert \"pip install 'mlpx[sklearn]'\" in str(exc), str(exc)",
        "else:",
        "    raise SystemExit('no ImportError')",
    ])
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dask_ml_incremental_trains_block_by_block():
    da = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers", reason="dask-ml is not installed")
    X, y = DIGITS_X[:300], DIGITS_Y[:300]
    classes = np.unique(DIGITS_Y)
    blocks = [slice(0, 100), slice(100, 200), slice(200, 300)]
    inc = wrappers.Incremental(MLPClassifier(hidden_layer_sizes=(8,), random_state=0),
                               shuffle_blocks=False)
    inc.fit(da.from_array(X, chunks=(100, X.shape[1])), da.from_array(y, chunks=100),
            classes=classes)
    ref = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    for rows in blocks:  # what Incremental does: one partial_fit per block, in order
        ref.partial_fit(X[rows], y[rows], classes=classes)
    for a, b in zip(inc.estimator_.coefs_ + inc.estimator_.intercepts_,
                    ref.coefs_ + ref.intercepts_):
        np.testing.assert_array_equal(a, b)
    first = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    first.partial_fit(X[:100], y[:100], classes=classes)
    assert not np.array_equal(first.coefs_[0], inc.estimator_.coefs_[0])  # all 3 blocks
