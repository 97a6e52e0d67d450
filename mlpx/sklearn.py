"""Drop-in scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

Change one import line and a scikit-learn script trains on mlpx::

    # from sklearn.neural_network import MLPClassifier
    from mlpx.sklearn import MLPClassifier

Both estimators take every constructor parameter of scikit-learn's estimators of the same
name, with the same names, defaults and meaning, and expose the same methods and fitted
attributes. They add four keyword-only parameters: ``backend`` (``"numpy"``, ``"cupy"``,
``"array_api_strict"``), ``dtype`` (the float type the network computes in),
``dropout`` and, for the classifier, ``class_weight``.

The network, its loss and its optimizer are mlpx's (:class:`mlpx.MLP`,
:meth:`~mlpx.Sequential.train_step`, :meth:`~mlpx.Sequential.loss_and_grads`); this module
only reproduces scikit-learn's training protocol around them: initialisation, minibatch
order, learning-rate schedules, the convergence test, early stopping, L-BFGS, labels and
input validation. See ``docs/sklearn.md`` for the differences from scikit-learn.

scikit-learn is an optional dependency: ``pip install 'mlpx[sklearn]'``.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral
from typing import Any

import numpy as np

try:
    import scipy.optimize
    import scipy.sparse
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils import shuffle as _sk_shuffle
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "mlpx.sklearn needs scikit-learn and SciPy, which are not installed. Install "
        "them with: pip install 'mlpx[sklearn]'"
    ) from exc

from . import _backend
from ._validation import Boolean, Interval, Options, check_options, validate_params
from .losses import l2_penalty
from .metrics import class_sample_weight
from .model import MLP
from .optimizers import SGD, Adam
from .trainer import Callback, DeviceData, StepHook, Trainer

__all__ = ["MLPClassifier", "MLPRegressor", "register_skl2onnx"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_SOLVERS = ("lbfgs", "sgd", "adam")
_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_DTYPES = ("auto", "float32", "float64")
_ACCEPT_SPARSE = ("csr", "csc")
#: Rows densified at a time when predicting on sparse input.
_SPARSE_CHUNK = 4096


_UNIT = Interval(float, 0.0, 1.0, closed="left")
_POSITIVE_INT = Interval(int, 1, None, closed="left")
#: Declarative checks of the shared constructor parameters, run at fit (scikit-learn's
#: rule); hidden_layer_sizes, dtype, loss and class_weight have checks of their own.
_CONSTRAINTS = {
    "activation": Options(_ACTIVATIONS),
    "solver": Options(_SOLVERS),
    "alpha": Interval(float, 0.0, None, closed="left"),
    "batch_size": [Options(("auto",)), _POSITIVE_INT],
    "learning_rate": Options(_LEARNING_RATES),
    "learning_rate_init": Interval(float, 0.0, None, closed="neither"),
    "power_t": Interval(float, 0.0, None, closed="left"),
    "max_iter": _POSITIVE_INT,
    "shuffle": Boolean(),
    "tol": Interval(float, 0.0, None, closed="left"),
    "verbose": [Boolean(), Interval(int, 0, None, closed="left")],
    "warm_start": Boolean(),
    # scikit-learn allows momentum=1 (velocity that never decays); mlpx's SGD does not.
    "momentum": _UNIT,
    "nesterovs_momentum": Boolean(),
    "early_stopping": Boolean(),
    "validation_fraction": _UNIT,
    "beta_1": _UNIT,
    "beta_2": _UNIT,
    "epsilon": Interval(float, 0.0, None, closed="neither"),
    "n_iter_no_change": [_POSITIVE_INT, Options((math.inf,))],
    "max_fun": _POSITIVE_INT,
    "dropout": _UNIT,
}


class _Settings:
    """The validated, normalised constructor parameters of one call to fit."""

    __slots__ = ("hidden", "activation", "solver", "alpha", "batch_size", "learning_rate",
                 "lr_init", "power_t", "max_iter", "shuffle", "tol", "verbose",
                 "warm_start", "momentum", "nesterov", "early_stopping",
                 "validation_fraction", "beta_1", "beta_2", "epsilon", "n_iter_no_change",
                 "max_fun", "dropout", "backend", "dtype", "loss", "class_weight")
    hidden: list
    activation: str
    solver: str
    alpha: float
    batch_size: Any
    learning_rate: str
    lr_init: float
    power_t: float
    max_iter: int
    shuffle: bool
    tol: float
    verbose: Any
    warm_start: bool
    momentum: float
    nesterov: bool
    early_stopping: bool
    validation_fraction: float
    beta_1: float
    beta_2: float
    epsilon: float
    n_iter_no_change: float  # an int, or inf
    max_fun: int
    dropout: float
    backend: Any
    dtype: str
    loss: Any
    class_weight: Any


class _BaseMLP(BaseEstimator):
    """Shared machinery of :class:`MLPClassifier` and :class:`MLPRegressor`.

    Not for direct use. Subclasses define ``__init__`` (the parameters), the output
    layer (:meth:`_output_spec`), target handling (:meth:`_validate_input`) and the
    validation score (:meth:`_score_val`).
    """

    # ------------------------------------------------------------------ parameters
    def _check_params(self) -> _Settings:
        """Validate every constructor parameter; return them normalised."""
        owner = type(self).__name__
        s = _Settings()
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, (Integral, np.integer)) and not isinstance(hidden, bool):
            hidden = [hidden]
        try:
            hidden = list(hidden)
        except TypeError:
            hidden = None
        if hidden is None or any(isinstance(h, (bool, np.bool_))
                                 or not isinstance(h, (Integral, np.integer))
                                 for h in hidden):
            raise ValueError(
                f"The 'hidden_layer_sizes' parameter of {owner} must be an int >= 1 or a "
                f"sequence of ints >= 1. Got {self.hidden_layer_sizes!r} instead."
            )
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        s.hidden = [int(h) for h in hidden]
        v = validate_params(owner, {name: getattr(self, name) for name in _CONSTRAINTS},
                            _CONSTRAINTS)
        s.activation, s.solver, s.alpha = v["activation"], v["solver"], v["alpha"]
        s.batch_size, s.learning_rate = v["batch_size"], v["learning_rate"]
        s.lr_init, s.power_t, s.max_iter = v["learning_rate_init"], v["power_t"], v["max_iter"]
        s.shuffle, s.tol, s.verbose = v["shuffle"], v["tol"], int(v["verbose"])
        s.warm_start, s.momentum, s.nesterov = (v["warm_start"], v["momentum"],
                                                v["nesterovs_momentum"])
        s.early_stopping, s.validation_fraction = v["early_stopping"], v["validation_fraction"]
        s.beta_1, s.beta_2, s.epsilon = v["beta_1"], v["beta_2"], v["epsilon"]
        s.n_iter_no_change, s.max_fun = v["n_iter_no_change"], v["max_fun"]
        s.dropout = v["dropout"]
        if s.dropout > 0 and s.solver == "lbfgs":
            raise ValueError(
                f"The 'dropout' parameter of {owner} needs a stochastic solver ('sgd' or "
                f"'adam'); L-BFGS cannot follow a randomly changing objective. Got "
                f"dropout={self.dropout!r} with solver='lbfgs'."
            )
        s.backend = self.backend
        if isinstance(self.dtype, str):
            s.dtype = check_options(self.dtype, "dtype", owner, _DTYPES)
        else:
            try:
                s.dtype = _backend.dtype_name(self.dtype)
            except ValueError:
                raise ValueError(f"The 'dtype' parameter of {owner} must be one of "
                                 f"{list(_DTYPES)}. Got {self.dtype!r} instead.") from None
        s.loss = self._check_loss()
        s.class_weight = self._check_class_weight()
        return s

    def _check_loss(self):
        return None

    def _check_class_weight(self):
        return None

    def _check_solver(self):
        """Availability test of ``partial_fit`` (stochastic solvers only)."""
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver!r} "
                "is not stochastic."
            )
        return True

    def _compute_dtype(self, s, X_dtype) -> str:
        """The float type the network computes in (see the ``dtype`` parameter)."""
        if s.dtype != "auto":
            return s.dtype
        return np.dtype(X_dtype).name

    # ------------------------------------------------------------------ fitting
    def _fit(self, X, y, sample_weight, *, incremental):
        s = self._check_params()
        first_pass = not hasattr(self, "_model") or (not s.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        n_features = X.shape[1]
        if incremental and s.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        sample_weight = self._apply_class_weight(s, y, sample_weight, incremental)
        Y = self._encode_targets(y)
        n_outputs = Y.shape[1]
        layer_units = [n_features, *s.hidden, n_outputs]
        rs = check_random_state(self.random_state)
        compute_dtype = self._compute_dtype(s, X.dtype)

        if first_pass:
            self._initialize(s, layer_units, X.dtype, compute_dtype, rs)
        else:
            if [int(u) for u in self._layer_units] != layer_units:
                raise ValueError(
                    f"This {type(self).__name__} was fitted with layer sizes "
                    f"{self._layer_units} and cannot continue training with "
                    f"{layer_units} (hidden_layer_sizes or the number of outputs changed). "
                    "Set warm_start=False to start again."
                )
            self._ensure_model(s, compute_dtype, rs)
        self._coef_dtype = np.dtype(X.dtype)

        Y = Y.astype(np.float64 if compute_dtype == "float64" else np.float32, copy=False)
        if s.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(s, X, y, Y, sample_weight, rs, incremental)
        else:
            self._fit_lbfgs(s, X, Y, sample_weight)

        params = [_backend.to_numpy(p) for p in self._model.params]
        if not all(np.all(np.isfinite(p)) for p in params):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            )
        self._export_params(params)
        return self

    def _initialize(self, s, layer_units, X_dtype, compute_dtype, rs):
        """First call: output layer, fresh weights, counters (scikit-learn's protocol)."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = int(layer_units[-1])
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_spec()[0]
        self._layer_units = [int(u) for u in layer_units]
        # Glorot-uniform weights and biases drawn from random_state in scikit-learn's order
        # (weights then biases, layer by layer), so the same random_state starts both
        # libraries from the same point.
        factor = 2.0 if s.activation == "logistic" else 6.0
        init = []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = math.sqrt(factor / (fan_in + fan_out))
            W = rs.uniform(-bound, bound, (fan_in, fan_out)).astype(X_dtype, copy=False)
            b = rs.uniform(-bound, bound, fan_out).astype(X_dtype, copy=False)
            init += [W, b]
        self._model = None
        self._model_key = None
        self._build_model(s, compute_dtype, rs, init)
        self._best_params = [np.array(p, copy=True) for p in init]
        for name in ("loss_curve_", "best_loss_", "validation_scores_",
                     "best_validation_score_"):
            self.__dict__.pop(name, None)  # a refit starts these again (stochastic only)
        if s.solver in _STOCHASTIC_SOLVERS:
            self._init_stochastic_state(s)

    def _model_spec(self, s, compute_dtype):
        backend = s.backend if isinstance(s.backend, str) or s.backend is None \
            else _backend.resolve_backend(s.backend).name
        return (s.activation, s.dropout, backend, compute_dtype, self._output_spec())

    def _build_model(self, s, compute_dtype, rs, params):
        out_name, loss_name = self._output_spec()
        # Dropout needs its own seed; drawing it only then keeps the shuffling stream
        # identical to scikit-learn's when there is no dropout.
        seed = int(rs.randint(np.iinfo(np.int32).max)) if s.dropout > 0 else 0
        model = MLP(self._layer_units, activation=s.activation, loss=loss_name,
                    output="sigmoid" if out_name == "logistic" else out_name,
                    init="zeros", dropout=s.dropout, alpha=0.0, backend=s.backend,
                    dtype=compute_dtype, seed=seed)
        model.set_params(params)
        self._model = model
        self._model_key = self._model_spec(s, compute_dtype)
        self._optimizer_key = None

    def _ensure_model(self, s, compute_dtype, rs):
        """Continue training: rebuild the network when activation, dropout, backend or
        dtype changed since the last fit, keeping its weights."""
        if self._model_key != self._model_spec(s, compute_dtype):
            params = [_backend.to_numpy(p) for p in self._model.params]
            self._build_model(s, compute_dtype, rs, params)

    def _export_params(self, params):
        """Publish ``coefs_`` / ``intercepts_`` as NumPy in the training data's dtype."""
        dtype = self._coef_dtype
        self.coefs_ = [np.array(p, dtype=dtype, copy=True) for p in params[0::2]]
        self.intercepts_ = [np.array(p, dtype=dtype, copy=True) for p in params[1::2]]

    # -- data -------------------------------------------------------------------------
    def _to_device(self, X, rows=None):
        """Rows of host ``X`` (dense or sparse) as a dense array on the model's device."""
        model = self._model
        if rows is not None:
            X = X[rows]
        if scipy.sparse.issparse(X):
            X = X.toarray()
        return _backend.to_device(X, backend=model.backend, dtype=model.dtype)

    def _apply_class_weight(self, s, y, sample_weight, incremental):
        return sample_weight

    def _loss_offsets(self, s, Y):
        """Per-sample constants scikit-learn's reported loss adds to mlpx's, or None.

        mlpx's Poisson loss leaves out ``y log y - y`` (it does not depend on the
        weights); scikit-learn reports the half deviance, which includes it.
        """
        return None

    # -- stochastic solvers -------------------------------------------------------------
    def _init_stochastic_state(self, s):
        """Counters of the stochastic solvers (also when warm_start switches solver or
        turns early stopping on, where scikit-learn would fail)."""
        if not hasattr(self, "loss_curve_"):
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None
        if s.early_stopping and self.validation_scores_ is None:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        if not s.early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf

    def _fit_stochastic(self, s, X, y, Y, sample_weight, rs, incremental):
        """scikit-learn's protocol as hooks and a callback on :class:`mlpx.trainer.Trainer`.

        The trainer does the batching and the steps; :class:`_SklearnStep` gives each step
        scikit-learn's objective (L2 over the batch's weight), Adam epsilon and learning
        rate, and :class:`_SklearnEpochs` does the convergence test, the learning-rate
        rules and the validation score after each epoch.
        """
        model = self._model
        self._init_stochastic_state(s)
        key = (self._model_key, s.solver)
        if not incremental or model.optimizer_ is None or self._optimizer_key != key:
            # fit starts a fresh optimizer; partial_fit keeps it (and its state).
            if s.solver == "sgd":
                opt = SGD(lr=s.lr_init, momentum=s.momentum,
                          nesterov=bool(s.nesterov and s.momentum > 0))
            else:
                opt = Adam(lr=s.lr_init, beta1=s.beta_1, beta2=s.beta_2, eps=s.epsilon)
            model.compile(opt)
            self._optimizer_key = key
            self._rate = _SklearnRate(s.lr_init)

        offsets = self._loss_offsets(s, Y)
        val = None
        if s.early_stopping:
            train_idx, val_idx = self._split(s, y, X.shape[0], rs)
            if val_idx.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase "
                                 "'validation_fraction' or the size of your dataset.")
            val = (self._to_device(X[val_idx]), y[val_idx],
                   None if sample_weight is None else sample_weight[val_idx])
            X, Y = X[train_idx], Y[train_idx]
            sample_weight = None if sample_weight is None else sample_weight[train_idx]
            offsets = None if offsets is None else offsets[train_idx]
        n = X.shape[0]
        if s.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if s.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                              "It is going to be clipped", UserWarning, stacklevel=4)
            batch_size = int(np.clip(s.batch_size, 1, n))
        xp = model.backend.xp
        Yd = _backend.to_device(Y, backend=model.backend, dtype=model.dtype)
        Wd = None if sample_weight is None else _backend.to_device(
            sample_weight, backend=model.backend, dtype=model.dtype)
        if scipy.sparse.issparse(X):
            data = _SparseRows(X.tocsr(), Yd, Wd, xp=xp, to_device=self._to_device)
        else:
            data = DeviceData(self._to_device(X), Yd, None, Wd, xp=xp)
        mean_k = Y.shape[1] if self._reports_mean_over_outputs() else 1
        epochs = _SklearnEpochs(self, self._end_of_epoch, s, val, n)
        order = None
        if s.shuffle:
            order = _SklearnOrder(rs, n)
        trainer = Trainer(model, batch_size=batch_size,
                          shuffle=order if order is not None else False,
                          callbacks=[epochs],
                          hooks=[_SklearnStep(s, self._rate, sample_weight, offsets, mean_k)],
                          verbose=0, on_nonfinite="ignore", metrics=False)
        self.n_iter_ = 0
        try:
            trainer.run(data, 1 if incremental else s.max_iter)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        else:
            if not incremental and not epochs.converged and self.n_iter_ == s.max_iter:
                warnings.warn(
                    "Stochastic Optimizer: Maximum iterations (%d) reached and the "
                    "optimization hasn't converged yet." % s.max_iter,
                    ConvergenceWarning, stacklevel=4)
        if s.early_stopping:
            model.set_params(self._best_params)

    def _end_of_epoch(self, s, val):
        """Convergence test and learning-rate schedule; return True to stop."""
        if val is not None:
            self._track_validation(s, *val)
        else:
            self._track_loss(s)
        rate = self._rate
        if s.solver == "sgd" and s.learning_rate == "invscaling":
            rate.set(self._model, s.lr_init / (self.t_ + 1) ** s.power_t)
        if self._no_improvement_count <= s.n_iter_no_change:
            return False
        if val is not None:
            msg = ("Validation score did not improve more than tol=%f for %d consecutive "
                   "epochs." % (s.tol, s.n_iter_no_change))
        else:
            msg = ("Training loss did not improve more than tol=%f for %d consecutive "
                   "epochs." % (s.tol, s.n_iter_no_change))
        if s.solver == "sgd" and s.learning_rate == "adaptive":
            if rate.lr <= 1e-6:
                if s.verbose:
                    print(msg + " Learning rate too small. Stopping.")
                return True
            rate.set(self._model, rate.lr / 5.0)
            if s.verbose:
                print(msg + " Setting learning rate to %f" % rate.lr)
            self._no_improvement_count = 0
            return False
        if s.verbose:
            print(msg + " Stopping.")
        return True

    def _split(self, s, y, n, rs):
        """Indices of the training and validation parts (stratified for classifiers)."""
        idx = np.arange(n)
        stratify = self._stratify_labels(y)
        if stratify is not None:
            n_val = math.ceil(s.validation_fraction * n)
            _, counts = np.unique(stratify, return_counts=True)
            if counts.min() < 2 or n_val < counts.size or n - n_val < counts.size:
                stratify = None  # too few samples per class to stratify
        train_idx, val_idx = train_test_split(idx, random_state=rs,
                                              test_size=s.validation_fraction,
                                              stratify=stratify)
        return train_idx, val_idx

    def _stratify_labels(self, y):
        return None

    def _track_loss(self, s):
        last = self.loss_curve_[-1]
        if last > self.best_loss_ - s.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if last < self.best_loss_:
            self.best_loss_ = last

    def _track_validation(self, s, X_val_d, y_val, sw_val):
        out = _backend.to_numpy(self._model.predict_proba(X_val_d))
        if not np.all(np.isfinite(out)):
            score = np.nan
        else:
            score = float(self._score_val(out, y_val, sw_val))
        self.validation_scores_.append(score)
        if s.verbose:
            print("Validation score: %f" % score)
        if score < self.best_validation_score_ + s.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = [np.array(_backend.to_numpy(p), copy=True)
                                 for p in self._model.params]

    def _reports_mean_over_outputs(self) -> bool:
        return False

    # -- L-BFGS -------------------------------------------------------------------------
    def _fit_lbfgs(self, s, X, Y, sample_weight):
        model = self._model
        xp = model.backend.xp
        Xd = self._to_device(X)
        Yd = _backend.to_device(Y, backend=model.backend, dtype=model.dtype)
        Wd = None if sample_weight is None else _backend.to_device(
            sample_weight, backend=model.backend, dtype=model.dtype)
        sw_sum = float(X.shape[0]) if sample_weight is None else float(sample_weight.sum())
        alpha = s.alpha / sw_sum
        shapes = [tuple(p.shape) for p in model.params]
        # scikit-learn's packing order (all weights, then all biases): L-BFGS is
        # invariant to it up to rounding, but this keeps both runs closest.
        order = list(range(0, len(shapes), 2)) + list(range(1, len(shapes), 2))
        sizes = [math.prod(shapes[i]) for i in order]
        bounds = np.cumsum([0] + sizes)

        def unpack(theta):
            params = [None] * len(shapes)
            for j, i in enumerate(order):
                params[i] = theta[bounds[j]:bounds[j + 1]].reshape(shapes[i])
            return params

        def pack(arrays):
            return np.concatenate([np.ravel(_backend.to_numpy(arrays[i])).astype(np.float64)
                                   for i in order])

        def objective(theta):
            model.set_params(unpack(theta))
            loss, grads, _ = model.loss_and_grads(Xd, Yd, Wd, alpha=alpha)
            return float(loss), pack(grads)

        iteration = [0]

        def report(intermediate_result):
            iteration[0] += 1
            print("Iteration %d, loss = %.8f" % (iteration[0], intermediate_result.fun))

        theta0 = pack(model.params)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            result = scipy.optimize.minimize(
                objective, theta0, method="L-BFGS-B", jac=True,
                callback=report if s.verbose else None,
                options={"maxfun": s.max_fun, "maxiter": s.max_iter, "gtol": s.tol},
            )
        if result.status != 0:
            message = result.message
            if isinstance(message, bytes):
                message = message.decode("latin1")
            warnings.warn(
                f"lbfgs failed to converge after {result.nit} iteration(s) "
                f"(status={result.status}): {message}.\n\nIncrease the number of iterations "
                "(max_iter) or scale the data as shown in:\n"
                "    https://scikit-learn.org/stable/modules/preprocessing.html",
                ConvergenceWarning, stacklevel=4)
        self.n_iter_ = int(min(result.nit, s.max_iter))
        model.set_params(unpack(result.x))
        loss = float(result.fun)
        k = Y.shape[1]
        if self._reports_mean_over_outputs() and k > 1:
            weights = [p for p, d in zip(model.params, model.decay_mask) if d]
            penalty = float(l2_penalty(weights, alpha, xp=xp)) if s.alpha > 0 else 0.0
            loss = (loss - penalty) / k + penalty
        offsets = self._loss_offsets(s, Y)
        if offsets is not None:
            loss += _weighted_mean(offsets, sample_weight)
        self.loss_ = loss

    # ------------------------------------------------------------------ inference
    def _output(self, X):
        """Output activations for ``X``: NumPy of shape (n_samples, n_outputs) in X's
        float type (sparse X is densified ``_SPARSE_CHUNK`` rows at a time)."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=list(_ACCEPT_SPARSE),
                          dtype=(np.float64, np.float32), reset=False)
        model = self._model
        if scipy.sparse.issparse(X):
            X = X.tocsr()
            chunks = (self._to_device(X[i:i + _SPARSE_CHUNK])
                      for i in range(0, X.shape[0], _SPARSE_CHUNK))
            out = np.concatenate([_backend.to_numpy(model.predict_proba(c)) for c in chunks])
        else:
            out = _backend.to_numpy(model.predict_proba(X))
        return np.asarray(out, dtype=X.dtype)

    def to_onnx(self, path=None):
        """The fitted network's inference as an ONNX graph, or written to ``path``.

        The graph is traced from mlpx's generic forward pass on the ndonnx namespace
        (see :mod:`mlpx.export` and ``docs/export.md``). Its input ``X`` has shape
        ("batch", n_features_in_) in the network's float type; the classifier's outputs
        are ``label`` (``predict``, mapped to :attr:`classes_`) and ``probabilities``
        (``predict_proba``), the regressor's ``variable`` (``predict``, of shape
        (n_samples, n_outputs_)). Needs ``pip install 'mlpx[onnx]'``.

        Parameters
        ----------
        path : str, os.PathLike or None, default=None
            Where to write the ``.onnx`` file (atomically); None returns the graph.

        Returns
        -------
        onnx.ModelProto or str
            The graph, or the absolute path written.
        """
        from . import export

        check_is_fitted(self)
        proto = self._onnx_graph(export)
        return proto if path is None else export.save_onnx(proto, path)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class _SklearnRate:
    """scikit-learn's current learning rate for SGD and Adam (its rules set it per epoch).

    scikit-learn keeps the velocity ``v = mu v - lr g`` (the rate inside it); mlpx's SGD
    keeps ``b = mu b + g`` and steps by ``lr b``. They agree while the rate is constant;
    :meth:`set` rescales ``b`` by ``old / new`` so they stay equal across a change.
    """

    def __init__(self, lr):
        self.lr = float(lr)

    def set(self, model, new_lr) -> None:
        """Change the rate, rescaling the momentum buffer of ``model``'s training state."""
        old = self.lr
        if new_lr == old:
            return
        slots = model.state_.opt_state["slots"]
        if "velocity" in slots:
            factor = old / new_lr
            slots["velocity"] = [v * factor for v in slots["velocity"]]
        self.lr = float(new_lr)


class _SklearnOrder:
    """scikit-learn's minibatch order: the previous epoch's order, shuffled again."""

    def __init__(self, rs, n):
        self.rs = rs
        self.idx = np.arange(n)

    def __call__(self, n):
        self.idx = _sk_shuffle(self.idx, random_state=self.rs)
        return self.idx


class _SklearnStep(StepHook):
    """scikit-learn's objective for one batch, as a step hook.

    L2 is ``alpha / (2 * sum of the batch's weights) * sum ||W||^2``; Adam's epsilon is
    added to ``sqrt(v)`` before the bias correction (mlpx, as PyTorch, adds it after:
    the hook rescales it so both take the same step); the learning rate is
    :class:`_SklearnRate`'s. Batches whose weights are all zero are skipped. The reported
    loss is averaged over the outputs where scikit-learn does so, and the constant
    offsets of its Poisson deviance are added.
    """

    def __init__(self, s, rate, sample_weight, offsets, mean_k):
        self.s, self.rate = s, rate
        self.sample_weight, self.offsets, self.mean_k = sample_weight, offsets, mean_k

    def before_step(self, ctx, trainer):
        s = self.s
        weights = None if self.sample_weight is None else self.sample_weight[ctx.rows]
        sw_sum = float(ctx.n) if weights is None else float(weights.sum())
        if ctx.skip or sw_sum <= 0.0:
            ctx.skip = True  # a batch whose weights are all zero carries no information
            return
        ctx.alpha = s.alpha / sw_sum
        ctx.hyper["lr"] = self.rate.lr
        if s.solver == "adam":
            t = ctx.step + 1
            ctx.hyper["eps"] = s.epsilon / math.sqrt(1.0 - s.beta_2 ** t)
        if self.mean_k > 1 and s.alpha > 0:
            model = trainer.model
            xp = model.backend.xp
            decayed = [p for p, d in zip(model.params, model.decay_mask) if d]
            ctx.info["penalty"] = l2_penalty(decayed, ctx.alpha, xp=xp)
        if self.offsets is not None:
            ctx.extra_loss = ctx.n * _weighted_mean(self.offsets[ctx.rows], weights)

    def reported_loss(self, loss, ctx):
        k = self.mean_k
        if k > 1:
            # scikit-learn reports the squared error averaged over the outputs (its
            # gradient is the one of the sum over outputs, as mlpx's).
            loss = loss / k
            penalty = ctx.info.get("penalty")
            if penalty is not None:
                loss = loss + penalty * ((k - 1) / k)
        return loss


class _SklearnEpochs(Callback):
    """After each epoch: scikit-learn's counters, convergence test and rate rules."""

    def __init__(self, est, end_of_epoch, s, val, n):
        self.est, self.s, self.val, self.n = est, s, val, n
        self.end_of_epoch = end_of_epoch  # the estimator's test: True to stop
        self.converged = False

    def on_epoch_end(self, model, epoch, logs):
        est, s = self.est, self.s
        est.loss_ = logs["loss"]
        est.n_iter_ += 1
        est.t_ += self.n
        est.loss_curve_.append(est.loss_)
        if s.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        if self.end_of_epoch(s, self.val):
            self.converged = True
            model.stop_training = True


class _SparseRows(DeviceData):
    """Sparse training data: each batch's rows are densified on the host, then moved."""

    def __init__(self, X_csr, Y, W, *, xp, to_device):
        super().__init__(Y, Y, None, W, xp=xp)
        self.X_csr = X_csr
        self.to_device = to_device

    def batch(self, perm, rows, start, stop):
        _, Y, W, _ = super().batch(perm, rows, start, stop)
        return self.to_device(self.X_csr, rows), Y, W, None


def _weighted_mean(values, weights):
    if weights is None:
        return float(np.mean(values))
    total = float(np.sum(weights))
    return float(np.dot(values, weights) / total) if total > 0 else 0.0


_COMMON_PARAMS_DOC = """
    hidden_layer_sizes : array-like of shape (n_layers - 2,) or int, default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation function of the hidden layers.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        'adam' and 'sgd' train on minibatches with mlpx's optimizers; 'lbfgs' runs
        SciPy's L-BFGS-B on the full-batch loss and gradient.
    alpha : float, default=0.0001
        Strength of the L2 penalty; as in scikit-learn it is divided by the (weighted)
        number of samples of each batch: ``alpha / (2 n_batch) * sum ||W||^2``.
    batch_size : int or 'auto', default='auto'
        Minibatch size for the stochastic solvers; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule of the 'sgd' solver: 'invscaling' sets the rate to
        ``learning_rate_init / (t_ + 1) ** power_t`` after each epoch; 'adaptive' divides
        it by 5 whenever the loss (or validation score) fails to improve by ``tol`` for
        more than ``n_iter_no_change`` consecutive epochs.
    learning_rate_init : float, default=0.001
        Initial step size of 'sgd' and 'adam'.
    power_t : float, default=0.5
        Exponent of the 'invscaling' schedule.
    max_iter : int, default=200
        Epochs for 'sgd' / 'adam', iterations for 'lbfgs'.
    shuffle : bool, default=True
        Reshuffle the samples every epoch ('sgd' / 'adam').
    random_state : int, RandomState instance or None, default=None
        Seeds the weight initialisation, the shuffling, the early-stopping split and
        the dropout masks. Weights and shuffling consume it as scikit-learn does, so one
        seed starts both libraries from the same weights.
    tol : float, default=1e-4
        Convergence tolerance (see ``n_iter_no_change``); gradient tolerance of L-BFGS.
    verbose : bool or int, default=False
        Print the loss after every epoch.
    warm_start : bool, default=False
        Continue from the previous solution when fit is called again.
    momentum : float in [0, 1), default=0.9
        Momentum of 'sgd'.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum ('sgd' with momentum > 0).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified for
        classifiers, except multilabel), stop when its score (accuracy or R^2) has not
        improved by ``tol`` for more than ``n_iter_no_change`` epochs, and restore the
        weights of the best epoch. Stochastic solvers only.
    validation_fraction : float in [0, 1), default=0.1
        Share of the training data held out for early stopping.
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Decay rates of Adam's moment estimates.
    epsilon : float, default=1e-8
        Adam's numerical-stability constant (scikit-learn's placement).
    n_iter_no_change : int or np.inf, default=10
        Epochs without an improvement of ``tol`` tolerated before stopping.
    max_fun : int, default=15000
        Maximum number of loss evaluations of 'lbfgs'.
    dropout : float in [0, 1), default=0.0
        mlpx addition (keyword-only): inverted dropout after every hidden layer while
        training with 'sgd' or 'adam'.
    backend : {'numpy', 'cupy', 'array_api_strict'}, default='numpy'
        mlpx addition (keyword-only): where the network lives and computes. Inputs and
        outputs stay NumPy; with 'cupy' the data is moved to the GPU once per fit.
    dtype : {'auto', 'float32', 'float64'}, default='auto'
        mlpx addition (keyword-only): the float type the network computes in. 'auto'
        follows the data, as scikit-learn does: float32 data trains in float32, anything
        else in float64, so swapping the import gives the same numbers. 'float32' trains
        float64 data in float32 (about twice as fast, as accurate for minibatch
        training). Results (predictions, ``coefs_``) always come back in the input's
        float type.
"""

_ATTRIBUTES_DOC = """
    loss_ : float
        The loss (L2 penalty included) of the last epoch, or at the L-BFGS solution.
    best_loss_ : float or None
        Smallest training loss seen ('sgd'/'adam'; None with early stopping).
    loss_curve_ : list of float
        Training loss per epoch ('sgd'/'adam').
    validation_scores_ : list of float or None
        Validation score per epoch with early stopping, else None.
    best_validation_score_ : float or None
        Best validation score with early stopping, else None.
    t_ : int
        Training samples seen ('sgd'/'adam').
    coefs_ : list of ndarray of shape (n_units_in, n_units_out)
        Weight matrices, NumPy in the training data's float type.
    intercepts_ : list of ndarray of shape (n_units_out,)
        Bias vectors, NumPy in the training data's float type.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen during fit (only when X has string column names).
    n_iter_ : int
        Epochs run by the last fit ('sgd'/'adam') or L-BFGS iterations.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of outputs.
    out_activation_ : str
        Output activation: 'identity', 'exp', 'logistic' or 'softmax'.
"""


def _fill_doc(cls):
    """Insert the shared parameter and attribute descriptions into a class docstring."""
    cls.__doc__ = (cls.__doc__
                   .replace("    {common parameters}\n", _COMMON_PARAMS_DOC.strip("\n") + "\n")
                   .replace("    {attributes}\n", _ATTRIBUTES_DOC.strip("\n") + "\n"))
    return cls


@_fill_doc
class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier, a drop-in for scikit-learn's ``MLPClassifier``.

    Same parameters, defaults, methods and fitted attributes as
    ``sklearn.neural_network.MLPClassifier``; the network trains with mlpx on any
    backend. Binary targets use one logistic output, multiclass a softmax, multilabel
    (an indicator matrix) independent logistic outputs. Labels can be any sortable
    values (strings included).

    Parameters
    ----------
    {common parameters}
    class_weight : dict, 'balanced' or None, default=None
        mlpx addition (keyword-only): weights of the classes, ``{label: weight}``, or
        'balanced' (``n_samples / (n_classes * count)``), multiplied into
        ``sample_weight``. 'balanced' needs the whole training set, so partial_fit
        accepts only a dict.

    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        Class labels.
    {attributes}

    Notes
    -----
    The loss is the mean cross-entropy plus the scaled L2 penalty:

    .. math:: L = \\frac{1}{\\sum_i w_i} \\Bigl(\\sum_i w_i \\ell_i
              + \\frac{\\alpha}{2} \\sum_l \\lVert W_l \\rVert_F^2\\Bigr)

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mlpx.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.03,
    ...                     random_state=0).fit(X, y)
    >>> clf.predict(X[:3]).tolist(), clf.score(X, y) > 0.9, clf.n_iter_ < clf.max_iter
    ([0, 0, 0], True, True)
    >>> clf.predict_proba(X[:1]).shape, type(clf.coefs_[0]).__name__
    ((1, 3), 'ndarray')
    """

    #: Kept for scripts that read it: scikit-learn's classifier sets ``loss`` too.
    loss = "log_loss"

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, class_weight=None, dropout=0.0,
                 backend="numpy", dtype="auto"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.class_weight = class_weight
        self.dropout = dropout
        self.backend = backend
        self.dtype = dtype

    # ------------------------------------------------------------------ targets
    def _check_class_weight(self):
        cw = self.class_weight
        if cw is None or cw == "balanced" or isinstance(cw, dict):
            return cw
        raise ValueError(f"The 'class_weight' parameter of {type(self).__name__} must be "
                         f"None, 'balanced' or a dict. Got {cw!r} instead.")

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=list(_ACCEPT_SPARSE),
                             multi_output=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` "
                        f"has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. "
                                 f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        return X, y

    def _encode_targets(self, y):
        Y = self._label_binarizer.transform(y)
        if scipy.sparse.issparse(Y):
            Y = Y.toarray()
        return np.asarray(Y)

    def _output_spec(self):
        if self._label_binarizer.y_type_ == "multiclass":
            return "softmax", "cross_entropy"
        return "logistic", "binary_cross_entropy"

    def _apply_class_weight(self, s, y, sample_weight, incremental):
        cw = s.class_weight
        if cw is None:
            return sample_weight
        if cw == "balanced" and incremental:
            raise ValueError("class_weight='balanced' is not supported for partial_fit: it "
                             "needs the whole training set. Pass a dict of class weights, "
                             "or compute them with "
                             "sklearn.utils.class_weight.compute_class_weight.")
        if isinstance(cw, dict) and self._label_binarizer.y_type_ == "multilabel-indicator":
            raise ValueError("A class_weight dict is not supported for multilabel targets; "
                             "use class_weight='balanced' or sample_weight.")
        # Unknown dict keys are ignored, as they always were here.
        weights = class_sample_weight(y, cw, self.classes_, strict=False)
        if sample_weight is not None:
            weights = weights * sample_weight
        if not np.any(weights > 0):
            raise ValueError("Sample weights times class weights are all zero; at least "
                             "one must be non-zero.")
        return weights

    def _stratify_labels(self, y):
        if self._label_binarizer.y_type_ == "multilabel-indicator":
            return None  # no stratification for multilabel targets
        return np.asarray(y)

    def _score_val(self, out, y_val, sw_val):
        return accuracy_score(y_val, self._labels_from_output(out), sample_weight=sw_val)

    def _onnx_graph(self, export):
        multilabel = self._label_binarizer.y_type_ == "multilabel-indicator"
        return export.classifier_to_onnx(self._model, self.classes_, multilabel=multilabel)

    def _labels_from_output(self, out):
        if self.n_outputs_ == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    # ------------------------------------------------------------------ public API
    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and targets y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels, or a multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Every class label across all calls; required on the first call.

        Returns
        -------
        self : MLPClassifier
        """
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to "
                                 "partial_fit.")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None:
            if not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Predicted labels (an indicator matrix for multilabel models).
        """
        return self._labels_from_output(self._output(X))

    def predict_proba(self, X):
        """Probability estimates, columns ordered as :attr:`classes_`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            NumPy, in X's float type (float32 for float32 input, else float64).
        """
        out = self._output(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba` (``-inf`` where a probability is 0).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
        """
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


@_fill_doc
class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor, a drop-in for scikit-learn's ``MLPRegressor``.

    Same parameters, defaults, methods and fitted attributes as
    ``sklearn.neural_network.MLPRegressor``; the network trains with mlpx on any
    backend. Several targets (y of shape (n_samples, n_outputs)) are fitted jointly.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        'squared_error' is half the mean squared error with an identity output;
        'poisson' the half Poisson deviance with an exponential output (log link),
        for non-negative targets.
    {common parameters}

    Attributes
    ----------
    {attributes}

    Notes
    -----
    As in scikit-learn, the reported squared error is averaged over the outputs,
    :math:`\\frac{1}{2 n k}\\sum_{i,j}(a_{ij} - y_{ij})^2`, while the gradient is the
    one of the sum over outputs (scikit-learn's convention, kept for equal training).

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.sklearn import MLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (200, 2))
    >>> y = X[:, 0] - 2 * X[:, 1]
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), solver="lbfgs", random_state=0)
    >>> reg.fit(X, y).score(X, y) > 0.99
    True
    >>> reg.predict(X[:2]).dtype, reg.out_activation_
    (dtype('float64'), 'identity')
    """

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu",
                 *, solver="adam", alpha=0.0001, batch_size="auto",
                 learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dropout=0.0,
                 backend="numpy", dtype="auto"):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.backend = backend
        self.dtype = dtype

    def _check_loss(self):
        return check_options(self.loss, "loss", type(self).__name__,
                             ("squared_error", "poisson"))

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=list(_ACCEPT_SPARSE),
                             multi_output=True, y_numeric=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        return X, y

    def _encode_targets(self, y):
        y = np.asarray(y)
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def _output_spec(self):
        if self.loss == "poisson":
            return "exp", "poisson"
        return "identity", "mse"

    def _reports_mean_over_outputs(self):
        return self.loss == "squared_error"

    def _loss_offsets(self, s, Y):
        if s.loss != "poisson":
            return None
        Y = np.asarray(Y, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ylogy = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
        return np.sum(ylogy - Y, axis=1)

    def _onnx_graph(self, export):
        return export.regressor_to_onnx(self._model)

    def _score_val(self, out, y_val, sw_val):
        pred = out.ravel() if out.shape[1] == 1 else out
        return r2_score(y_val, pred, sample_weight=sw_val)

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and targets y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predict with the network.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            NumPy, in X's float type.
        """
        out = self._output(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def register_skl2onnx() -> None:
    """Register :class:`MLPClassifier` and :class:`MLPRegressor` with skl2onnx.

    After this call, ``skl2onnx.to_onnx(pipeline, X[:1])`` converts a Pipeline (or any
    skl2onnx-convertible composite) that contains them: each estimator's graph is its
    :meth:`~MLPClassifier.to_onnx` graph. Needs ``pip install 'mlpx[onnx]'``.

    An example is in ``docs/export.md`` (the doctests run without the extra).
    """
    from . import export

    export.register_skl2onnx(MLPClassifier, MLPRegressor, lambda est: est.to_onnx())
