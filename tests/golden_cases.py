"""Golden training runs: what every refactor of the training engine must reproduce bit for bit.

Each case trains a small model through the public API only (``MLP.fit``,
``fit(checkpoint=..., resume=...)``, the scikit-learn estimators) on NumPy and returns a
dict of NumPy arrays: the final parameters and the loss curves. ``tools/make_golden.py``
ran every case on the ``main`` of before the training-engine rework (issue 10) and stored
the results in ``tests/data/golden.npz``; ``tests/test_golden.py`` runs them again and
compares bit for bit. Do not regenerate the file to make a test pass: a difference is a
change of behaviour, and must be explained (and the file regenerated in its own commit).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from mlpx import MLP, _fast


def _data(n=96, d=6, k=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    W = rng.normal(size=(d, k))
    y = np.argmax(X @ W + 0.3 * rng.normal(size=(n, k)), axis=1)
    return X, y


def _reg_data(n=80, d=5, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(dtype)
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=n)
    return X, y.astype(dtype)


def _model_out(model, history) -> dict:
    out = {f"p{i}": np.asarray(p) for i, p in enumerate(model.params)}
    for key in sorted(history.history):
        if key in ("seconds",):
            continue
        out[f"h_{key}"] = np.asarray(history.history[key], dtype=np.float64)
    return out


def _fit(optimizer, *, activation="relu", dropout=0.0, alpha=0.0, sample_weight=False,
         early_stopping=None, validation_split=0.0, epochs=6, batch_size=16,
         loss="cross_entropy", dtype="float32", generic=False, seed=3):
    X, y = _data()
    kw = {}
    if sample_weight:
        kw["sample_weight"] = np.random.default_rng(5).uniform(0.1, 2.0, size=X.shape[0])
    if loss == "mse":
        y = np.eye(3, dtype=np.float32)[y] * 2.0 - 0.5
    model = MLP([6, 12, 8, 3], activation=activation, loss=loss, dropout=dropout,
                alpha=alpha, dtype=dtype, seed=seed)
    ctx = _fast.disabled() if generic else _nullcontext()
    with ctx:
        hist = model.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                         early_stopping=early_stopping, validation_split=validation_split,
                         verbose=0, **kw)
    return _model_out(model, hist)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _stop_at(at):
    """A callback (a plain callable) that interrupts fit at the end of epoch ``at``."""

    def callback(model, epoch, logs):
        if epoch == at:
            raise KeyboardInterrupt

    return callback


def _resume(optimizer):
    X, y = _data()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ck.npz")
        model = MLP([6, 12, 8, 3], dropout=0.2, seed=4)
        try:
            model.fit(X, y, epochs=6, batch_size=16, optimizer=optimizer, verbose=0,
                      checkpoint=path, validation_split=0.25, early_stopping=10,
                      callbacks=[_stop_at(3)])
        except KeyboardInterrupt:
            pass
        fresh = MLP([6, 12, 8, 3], dropout=0.2, seed=99)
        hist = fresh.fit(X, y, epochs=6, batch_size=16, verbose=0, resume=path,
                         validation_split=0.25, early_stopping=10)
    return _model_out(fresh, hist)


def _sk(kind, **params):
    from mlpx.sklearn import MLPClassifier, MLPRegressor

    if kind == "clf":
        X, y = _data(dtype=np.float64)
        est = MLPClassifier(hidden_layer_sizes=(10, 7), random_state=0, max_iter=15,
                            dtype="float64", **params)
    else:
        X, y = _reg_data()
        est = MLPRegressor(hidden_layer_sizes=(9,), random_state=0, max_iter=15,
                           dtype="float64", **params)
    sw = params.pop("_sw", None)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y, sample_weight=sw)
        if params.get("solver") != "lbfgs" and not params.get("early_stopping"):
            est.partial_fit(X[:40], y[:40])
    out = {f"c{i}": c for i, c in enumerate(est.coefs_)}
    out.update({f"b{i}": b for i, b in enumerate(est.intercepts_)})
    out["loss"] = np.asarray([est.loss_], dtype=np.float64)
    if getattr(est, "loss_curve_", None) is not None:
        out["curve"] = np.asarray(est.loss_curve_, dtype=np.float64)
    if getattr(est, "validation_scores_", None):
        out["val"] = np.asarray(est.validation_scores_, dtype=np.float64)
    return out


def _sk_weighted(kind, **params):
    from mlpx.sklearn import MLPClassifier

    X, y = _data(dtype=np.float64)
    sw = np.random.default_rng(7).integers(0, 3, size=X.shape[0]).astype(np.float64)
    est = MLPClassifier(hidden_layer_sizes=(10,), random_state=1, max_iter=12,
                        dtype="float64", **params)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y, sample_weight=sw)
    out = {f"c{i}": c for i, c in enumerate(est.coefs_)}
    out.update({f"b{i}": b for i, b in enumerate(est.intercepts_)})
    out["curve"] = np.asarray(est.loss_curve_, dtype=np.float64)
    return out


CASES = {
    "sgd": lambda: _fit({"name": "sgd", "lr": 0.1}),
    "sgd_momentum": lambda: _fit({"name": "sgd", "lr": 0.05, "momentum": 0.9}),
    "sgd_nesterov_wd": lambda: _fit({"name": "sgd", "lr": 0.05, "momentum": 0.8,
                                     "nesterov": True, "weight_decay": 1e-3}),
    "adam": lambda: _fit({"name": "adam", "lr": 0.01}),
    "adam_f64": lambda: _fit({"name": "adam", "lr": 0.01}, dtype="float64"),
    "adamw": lambda: _fit({"name": "adamw", "lr": 0.01, "weight_decay": 0.05}),
    "rmsprop": lambda: _fit({"name": "rmsprop", "lr": 0.005}),
    "sched_step": lambda: _fit({"name": "sgd", "lr": {"name": "step", "lr": 0.2,
                                                      "step_size": 5, "gamma": 0.5}}),
    "sched_exp": lambda: _fit({"name": "adam", "lr": {"name": "exponential", "lr": 0.02,
                                                      "gamma": 0.99}}),
    "sched_cosine": lambda: _fit({"name": "sgd", "lr": {"name": "cosine", "lr": 0.2,
                                                        "total_steps": 30}}),
    "sched_invscaling": lambda: _fit({"name": "sgd", "lr": {"name": "invscaling",
                                                            "lr": 0.2}}),
    "tanh_l2": lambda: _fit("adam", activation="tanh", alpha=1e-2),
    "dropout": lambda: _fit({"name": "adam", "lr": 0.01}, dropout=0.3),
    "dropout_generic": lambda: _fit({"name": "adam", "lr": 0.01}, dropout=0.3,
                                    generic=True),
    "generic_sgd_momentum": lambda: _fit({"name": "sgd", "lr": 0.05, "momentum": 0.9},
                                         generic=True),
    "prelu_generic_path": lambda: _fit("adam", activation="prelu"),
    "sample_weight": lambda: _fit({"name": "sgd", "lr": 0.1}, sample_weight=True),
    "mse": lambda: _fit({"name": "sgd", "lr": 0.02}, loss="mse"),
    "early_stopping": lambda: _fit({"name": "adam", "lr": 0.05}, validation_split=0.25,
                                   early_stopping={"patience": 2,
                                                   "restore_best": True}, epochs=25),
    "resume": lambda: _resume({"name": "adam", "lr": 0.01}),
    "sk_adam": lambda: _sk("clf"),
    "sk_sgd_momentum": lambda: _sk("clf", solver="sgd", learning_rate_init=0.05),
    "sk_sgd_nesterov_invscaling": lambda: _sk("clf", solver="sgd", learning_rate="invscaling",
                                              learning_rate_init=0.2, nesterovs_momentum=True),
    "sk_sgd_adaptive": lambda: _sk("clf", solver="sgd", learning_rate="adaptive",
                                   learning_rate_init=0.3, n_iter_no_change=1, tol=1e-1),
    "sk_early_stopping": lambda: _sk("clf", early_stopping=True, alpha=1e-2),
    "sk_lbfgs": lambda: _sk("clf", solver="lbfgs"),
    "sk_reg_adam": lambda: _sk("reg", alpha=1e-3),
    "sk_reg_sgd": lambda: _sk("reg", solver="sgd", learning_rate_init=0.01),
    "sk_reg_lbfgs": lambda: _sk("reg", solver="lbfgs"),
    "sk_weighted_adam": lambda: _sk_weighted("clf"),
    "sk_weighted_sgd": lambda: _sk_weighted("clf", solver="sgd", momentum=0.5),
}


def run_all() -> dict:
    """Every case, flattened to ``{"case/key": array}``."""
    out = {}
    for name, fn in CASES.items():
        for key, value in fn().items():
            out[f"{name}/{key}"] = np.asarray(value)
    return out
