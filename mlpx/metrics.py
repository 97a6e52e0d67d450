"""Metrics that ``fit(..., metrics=[...])`` reports every epoch, and class weights.

A metric is *streaming*: :meth:`Metric.update` sees one batch at a time and adds that
batch's sums (confusion counts, sums of errors) to a few device arrays, so no metric ever
holds all the predictions. :meth:`Metric.result` reads the sums to the host once and
finishes the arithmetic in float64 NumPy. Every update is written with Array API
operations, so a metric works on every backend (NumPy, CuPy, array-api-strict).

Each metric sees the model's *logits* ``z`` (the output layer's input), the float targets
``Y`` of shape (n_samples, n_outputs) and, for a softmax output, the integer labels, and
reads the model's output activation to turn logits into predictions:

======================  ===========================================  =================
name                    what                                          outputs
======================  ===========================================  =================
``accuracy``            share of samples classified right             softmax, sigmoid
``top_k_accuracy``      share whose label is among the ``k`` best     softmax
``precision``           macro-averaged precision                      softmax, sigmoid
``recall``              macro-averaged recall                         softmax, sigmoid
``f1``                  macro-averaged F1 score                       softmax, sigmoid
``mse``, ``mae``        mean squared / absolute error of the outputs  any
``r2``                  coefficient of determination (R^2)           any
``log_loss``            mean cross-entropy of the predicted classes   softmax, sigmoid
======================  ===========================================  =================

They agree with :mod:`sklearn.metrics` (``accuracy_score``, ``top_k_accuracy_score``,
``precision_score(average="macro")`` and so on; ``tests/test_metrics.py`` checks each):
the macro averages run over the classes that occur among the true or predicted labels of
the data seen (all labels for multilabel sigmoid outputs), a class whose precision or
recall is 0/0 counts as 0, and R^2 is averaged uniformly over the outputs (an output
whose targets are constant scores 1 when predicted exactly, else 0). Metrics are
unweighted (``sample_weight`` weights the loss only).

:func:`class_sample_weight` turns a ``class_weight`` (a dict or ``"balanced"``) into
per-sample weights; :meth:`mlpx.Sequential.fit` and the scikit-learn estimators share it.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from ._registry import Registry
from ._validation import Interval, validate_params

__all__ = [
    "Metric",
    "Accuracy",
    "TopKAccuracy",
    "Precision",
    "Recall",
    "F1",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "R2",
    "LogLoss",
    "METRICS",
    "get_metric",
    "get_metrics",
    "greater_is_better",
    "class_sample_weight",
]

_CLASSIFIER_OUTPUTS = ("softmax", "sigmoid")


def _acc_dtype(xp):
    """The dtype sums accumulate in: float64 where the namespace has it."""
    return xp.float64 if hasattr(xp, "float64") else xp.float32


class Metric:
    """Base class of streaming metrics: add each batch's sums, compute at the end.

    Subclasses set :attr:`name` and :attr:`greater_is_better`, list the outputs they
    accept in :attr:`outputs` (None: any), and implement :meth:`batch_sums` (device
    arrays, one batch) and :meth:`compute` (host float64 arrays to a float).

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.metrics import get_metric
    >>> from mlpx.activations import get_activation
    >>> m = get_metric("accuracy")
    >>> z = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    >>> Y = np.eye(2)[[0, 1, 1]]
    >>> m.update(Y, z, np.array([0, 1, 1]), output=get_activation("softmax"), xp=np)
    >>> round(m.result(), 4)
    0.6667
    """

    name = "metric"
    #: True when a larger value is better (accuracy), False for errors and losses.
    greater_is_better = True
    #: Output activations the metric accepts (None: every output).
    outputs: tuple | None = None
    parameter_constraints: dict = {}

    def __init__(self):
        self.reset()

    # -- the stream ---------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every batch seen (called at the start of each epoch)."""
        self.sums: dict = {}

    def update(self, Y, z, labels=None, *, output, xp) -> None:
        """Add one batch.

        Parameters
        ----------
        Y : array of shape (n_samples, n_outputs)
            Float targets (one-hot or probability rows for a softmax output).
        z : array of shape (n_samples, n_outputs)
            The model's logits for the batch.
        labels : array of shape (n_samples,) or None
            Integer class labels (softmax outputs); derived from ``Y`` when None.
        output : Activation
            The model's output activation.
        xp : namespace
        """
        for key, value in self.batch_sums(Y, z, labels, output=output, xp=xp).items():
            old = self.sums.get(key)
            self.sums[key] = value if old is None else old + value

    def batch_sums(self, Y, z, labels, *, output, xp) -> dict:  # pragma: no cover
        """Return this batch's sums as device arrays (0-d or 1-d), keyed by name."""
        raise NotImplementedError

    def totals(self) -> dict:
        """The sums seen so far as host float64 arrays (empty before any batch)."""
        return {k: np.asarray(_backend.to_numpy(v), dtype=np.float64)
                for k, v in self.sums.items()}

    def result(self, totals: dict | None = None) -> float:
        """The metric over every batch seen (NaN before any), as a Python float.

        ``totals`` replaces the sums seen here (e.g. summed over data-parallel ranks).
        """
        totals = self.totals() if totals is None else totals
        if not totals:
            return math.nan
        return float(self.compute(totals))

    def compute(self, totals: dict) -> float:  # pragma: no cover - abstract
        """The metric from host float64 sums."""
        raise NotImplementedError

    # -- checks and config --------------------------------------------------------------
    def check_output(self, output_name: str) -> None:
        """Raise a ValueError when this metric does not apply to the model's output."""
        if self.outputs is not None and output_name not in self.outputs:
            kinds = " or ".join(repr(o) for o in self.outputs)
            raise ValueError(f"The metric {self.name!r} needs a classifier (a {kinds} "
                             f"output); this model's output is {output_name!r}.")

    def _params(self) -> dict:
        return {}

    def get_config(self) -> dict:
        """Return ``{"name": ..., **params}``; :func:`get_metric` rebuilds from it."""
        return {"name": type(self).registry_name, **self._params()}

    registry_name = "metric"

    def clone(self) -> "Metric":
        """A fresh metric of the same kind and parameters (no batches seen)."""
        return get_metric(self.get_config())

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------- helpers
def _predicted_labels(z, output, xp):
    """Softmax: predicted class ids (n,). Sigmoid: a 0/1 float matrix (n, k)."""
    if output.name == "softmax":
        return xp.argmax(z, axis=1)
    return xp.astype(z > 0, z.dtype)


def _true_labels(Y, labels, output, xp):
    if output.name == "softmax":
        return xp.argmax(Y, axis=1) if labels is None else labels
    return xp.astype(Y > 0.5, Y.dtype)


def _one_hot(ids, k, dtype, xp):
    classes = xp.arange(k, dtype=ids.dtype, device=_backend.device_of(ids))
    return xp.astype(xp.reshape(ids, (-1, 1)) == xp.reshape(classes, (1, -1)), dtype)


def _sum(x, xp, axis=None):
    return xp.astype(xp.sum(x, axis=axis), _acc_dtype(xp))


# ---------------------------------------------------------------------- classification
class Accuracy(Metric):
    """Share of samples classified right (a sigmoid row counts when every output is
    right, like scikit-learn's subset accuracy)."""

    name = registry_name = "accuracy"
    outputs = _CLASSIFIER_OUTPUTS

    def batch_sums(self, Y, z, labels, *, output, xp):
        pred = _predicted_labels(z, output, xp)
        true = _true_labels(Y, labels, output, xp)
        if output.name == "softmax":
            hit = pred == true
        else:
            hit = xp.all(pred == true, axis=1)
        return {"correct": _sum(xp.astype(hit, z.dtype), xp),
                "count": _sum(xp.ones_like(z[:, 0]), xp)}

    def compute(self, t):
        return t["correct"] / t["count"]


class TopKAccuracy(Metric):
    """Share of samples whose true class is among the ``k`` largest scores.

    A sample counts when fewer than ``k`` classes score strictly higher than its true
    class (ties resolve in its favour).

    Parameters
    ----------
    k : int >= 1, default=5
    """

    registry_name = "top_k_accuracy"
    outputs = ("softmax",)
    parameter_constraints = {"k": Interval(int, 1, None, closed="left")}

    def __init__(self, k=5):
        self.k = validate_params("TopKAccuracy", {"k": k}, self.parameter_constraints)["k"]
        super().__init__()

    @property
    def name(self):
        return f"top_{self.k}_accuracy"

    def batch_sums(self, Y, z, labels, *, output, xp):
        true = _true_labels(Y, labels, output, xp)
        mask = _one_hot(true, int(z.shape[1]), z.dtype, xp)
        z_true = xp.sum(mask * z, axis=1)
        higher = xp.sum(xp.astype(z > xp.reshape(z_true, (-1, 1)), z.dtype), axis=1)
        return {"correct": _sum(xp.astype(higher < self.k, z.dtype), xp),
                "count": _sum(xp.ones_like(z_true), xp)}

    def compute(self, t):
        return t["correct"] / t["count"]

    def _params(self):
        return {"k": self.k}


class _Confusion(Metric):
    """Per-class true positives, predicted and true counts (macro averages)."""

    outputs = _CLASSIFIER_OUTPUTS

    def batch_sums(self, Y, z, labels, *, output, xp):
        pred = _predicted_labels(z, output, xp)
        true = _true_labels(Y, labels, output, xp)
        if output.name == "softmax":
            k = int(z.shape[1])
            pred = _one_hot(pred, k, z.dtype, xp)
            true = _one_hot(true, k, z.dtype, xp)
            sums = {}
        elif int(z.shape[1]) == 1:  # binary: the classes 0 and 1
            pred = xp.concat([1.0 - pred, pred], axis=1)
            true = xp.concat([1.0 - true, true], axis=1)
            sums = {}
        else:  # multilabel: every label counts, present or not (as scikit-learn)
            sums = {"multilabel": _sum(xp.ones_like(z[0, :1]), xp)}
        sums.update({"tp": _sum(pred * true, xp, axis=0), "pred": _sum(pred, xp, axis=0),
                     "true": _sum(true, xp, axis=0)})
        return sums

    def compute(self, t):
        tp, pred, true = t["tp"], t["pred"], t["true"]
        seen = np.ones(tp.shape, dtype=bool) if "multilabel" in t else (pred + true) > 0
        values = self.per_class(tp[seen], pred[seen], true[seen])
        return float(np.mean(values)) if values.size else 0.0

    @staticmethod
    def _ratio(num, den):
        out = np.zeros_like(num)
        np.divide(num, den, out=out, where=den > 0)
        return out


class Precision(_Confusion):
    """Macro-averaged precision: the mean over classes of TP / (TP + FP)."""

    name = registry_name = "precision"

    def per_class(self, tp, pred, true):
        return self._ratio(tp, pred)


class Recall(_Confusion):
    """Macro-averaged recall: the mean over classes of TP / (TP + FN)."""

    name = registry_name = "recall"

    def per_class(self, tp, pred, true):
        return self._ratio(tp, true)


class F1(_Confusion):
    """Macro-averaged F1: the mean over classes of 2 TP / (2 TP + FP + FN)."""

    name = registry_name = "f1"

    def per_class(self, tp, pred, true):
        return self._ratio(2.0 * tp, pred + true)


class LogLoss(Metric):
    """Mean cross-entropy of the predicted class probabilities (natural log).

    Computed from the logits (log-softmax, or log-sigmoid for each sigmoid output,
    summed over the outputs), so a confident right answer never takes ``log(0)``.
    """

    name = registry_name = "log_loss"
    greater_is_better = False
    outputs = _CLASSIFIER_OUTPUTS

    def batch_sums(self, Y, z, labels, *, output, xp):
        if output.name == "softmax":
            top = xp.max(z, axis=1, keepdims=True)
            shifted = z - top
            log_p = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
            per = -xp.sum(Y * log_p, axis=1)
        else:
            # -log sigmoid(z) = softplus(-z), -log(1 - sigmoid(z)) = softplus(z)
            soft = xp.log1p(xp.exp(-xp.abs(z)))
            per = xp.sum(Y * (soft + xp.maximum(-z, 0.0 * z))
                         + (1.0 - Y) * (soft + xp.maximum(z, 0.0 * z)), axis=1)
        return {"sum": _sum(per, xp), "count": _sum(xp.ones_like(per), xp)}

    def compute(self, t):
        return t["sum"] / t["count"]


# ---------------------------------------------------------------------- regression
class MeanSquaredError(Metric):
    """Mean over samples and outputs of ``(prediction - target)^2``."""

    name = registry_name = "mse"
    greater_is_better = False

    def batch_sums(self, Y, z, labels, *, output, xp):
        d = output.forward(z, xp=xp) - Y
        return {"sum": _sum(d * d, xp), "count": _sum(xp.ones_like(d), xp)}

    def compute(self, t):
        return t["sum"] / t["count"]


class MeanAbsoluteError(Metric):
    """Mean over samples and outputs of ``|prediction - target|``."""

    name = registry_name = "mae"
    greater_is_better = False

    def batch_sums(self, Y, z, labels, *, output, xp):
        d = xp.abs(output.forward(z, xp=xp) - Y)
        return {"sum": _sum(d, xp), "count": _sum(xp.ones_like(d), xp)}

    def compute(self, t):
        return t["sum"] / t["count"]


class R2(Metric):
    """Coefficient of determination, averaged uniformly over the outputs.

    Notes
    -----
    .. math:: R^2_j = 1 - \\frac{\\sum_i (y_{ij} - \\hat y_{ij})^2}
                                {\\sum_i (y_{ij} - \\bar y_j)^2}

    The sums of ``y`` and ``y^2`` accumulate in float64 (where the namespace has it),
    so the total sum of squares loses digits only for targets whose mean is millions of
    times their spread; centre such targets first.
    """

    name = registry_name = "r2"

    def batch_sums(self, Y, z, labels, *, output, xp):
        dt = _acc_dtype(xp)
        d = output.forward(z, xp=xp) - Y
        y = xp.astype(Y, dt)
        return {"res": _sum(d * d, xp, axis=0), "y": xp.sum(y, axis=0),
                "y2": xp.sum(y * y, axis=0), "n": _sum(xp.ones_like(Y[:, 0]), xp)}

    def compute(self, t):
        n = t["n"]
        tot = np.maximum(t["y2"] - t["y"] * t["y"] / n, 0.0)
        res = t["res"]
        score = np.where(tot > 0, 1.0 - res / np.where(tot > 0, tot, 1.0),
                         np.where(res > 0, 0.0, 1.0))
        return float(np.mean(score))


# ---------------------------------------------------------------------- registry
#: Registry of metric classes by name; lookups ignore case, ``-``, ``_`` and spaces.
METRICS = Registry("metric", Metric)
METRICS.register(Accuracy, "accuracy")
METRICS.register(TopKAccuracy, "top_k_accuracy", aliases=("top_k",))
METRICS.register(Precision, "precision", aliases=("precision_macro",))
METRICS.register(Recall, "recall", aliases=("recall_macro",))
METRICS.register(F1, "f1", aliases=("f1_macro", "f1_score"))
METRICS.register(MeanSquaredError, "mse", aliases=("mean_squared_error",))
METRICS.register(MeanAbsoluteError, "mae", aliases=("mean_absolute_error",))
METRICS.register(R2, "r2", aliases=("r2_score",))
METRICS.register(LogLoss, "log_loss", aliases=("cross_entropy",))


def get_metric(spec, **params) -> Metric:
    """Return a :class:`Metric` from a name, an instance or a config dict.

    Parameters
    ----------
    spec : str, Metric or dict
        A key of :data:`METRICS` (case, ``-``, ``_`` and spaces ignored), a
        :class:`Metric` (returned as is) or ``{"name": ..., **params}``.
    **params
        Parameters of the metric (``k`` of ``"top_k_accuracy"``).

    Raises
    ------
    mlpx.InvalidParameterError
        For an unknown name (the message lists the valid ones) or parameter.

    Examples
    --------
    >>> from mlpx.metrics import get_metric
    >>> get_metric("top_k_accuracy", k=3).name, get_metric("F1").name
    ('top_3_accuracy', 'f1')
    """
    return METRICS.build(spec, **params)


def get_metrics(specs, *, output: str) -> list:
    """The metrics of ``fit(metrics=specs)`` for a model with output ``output``.

    Raises a ValueError for a metric that does not apply to the output, or two metrics
    that would be reported under the same name.
    """
    if specs is None:
        return []
    if isinstance(specs, (str, dict, Metric)):
        specs = [specs]
    if not isinstance(specs, (list, tuple)):
        raise ValueError("The 'metrics' parameter of fit must be a list of metric names, "
                         f"config dicts or Metric objects. Got {specs!r} instead.")
    out, names = [], set()
    for spec in specs:
        metric = get_metric(spec)
        metric.check_output(output)
        if metric.name in names:
            raise ValueError(f"The metric {metric.name!r} is listed twice in 'metrics'.")
        names.add(metric.name)
        out.append(metric.clone())
    return out


def greater_is_better(key: str) -> bool:
    """Whether a larger value of the log entry ``key`` is better.

    ``key`` is a name :class:`mlpx.History` records: a metric (``"f1"``,
    ``"val_top_3_accuracy"``), ``"loss"``, ``"perplexity"``, with or without ``val_``.

    Examples
    --------
    >>> from mlpx.metrics import greater_is_better
    >>> greater_is_better("val_accuracy"), greater_is_better("loss")
    (True, False)
    >>> greater_is_better("top_3_accuracy"), greater_is_better("val_mse")
    (True, False)
    """
    base = key[4:] if key.startswith("val_") else key
    if base.endswith("accuracy"):
        return True
    cls = METRICS.get(base)
    return bool(cls is not None and cls.greater_is_better)


# ---------------------------------------------------------------------- class weights
def class_sample_weight(y, class_weight, classes=None, *, strict=True) -> np.ndarray:
    """Per-sample weights from a ``class_weight`` (float64, host).

    Parameters
    ----------
    y : array of shape (n_samples,) or (n_samples, n_labels)
        Class labels (any sortable values), or a 0/1 indicator matrix (multilabel).
    class_weight : dict or "balanced"
        ``{class: weight}`` (a class left out weighs 1), or ``"balanced"``:
        ``n_samples / (n_classes * count(class))``, so every class weighs the same in
        total; for a multilabel matrix, the product over the labels of each column's
        balanced weight.
    classes : array, optional
        Every class the model knows (sorted); a dict key outside it is an error.
        Default: the classes present in ``y``.
    strict : bool, default=True
        Refuse dict keys that are not classes (False ignores them, as the scikit-learn
        estimators always have).

    Returns
    -------
    numpy.ndarray of shape (n_samples,)

    Notes
    -----
    The same numbers as scikit-learn's ``compute_sample_weight`` (bit for bit).

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.metrics import class_sample_weight
    >>> class_sample_weight(np.array([0, 0, 0, 1]), "balanced").tolist()
    [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 2.0]
    >>> class_sample_weight(np.array(["a", "b"]), {"b": 3.0}).tolist()
    [1.0, 3.0]
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise ValueError(f"class_weight needs labels of shape (n_samples,) or an indicator "
                         f"matrix; got shape {y.shape}.")
    if isinstance(class_weight, str) and class_weight == "balanced":
        columns = [y] if y.ndim == 1 else [y[:, j] for j in range(y.shape[1])]
        parts = []
        for col in columns:
            present, index = np.unique(col, return_inverse=True)
            counts = np.bincount(index).astype(np.float64)
            parts.append((col.shape[0] / (len(present) * counts))[index])
        return np.prod(parts, axis=0, dtype=np.float64)
    if not isinstance(class_weight, dict):
        raise ValueError("The 'class_weight' parameter must be None, 'balanced' or a dict. "
                         f"Got {class_weight!r} instead.")
    if y.ndim != 1:
        raise ValueError("A class_weight dict is not supported for multilabel targets; "
                         "use class_weight='balanced' or sample_weight.")
    known = np.unique(y) if classes is None else np.asarray(classes)
    unknown = [c for c in class_weight if not np.any(known == c)]
    if unknown and strict:
        raise ValueError(f"The class_weight keys {unknown!r} are not classes of y; the "
                         f"classes are {known.tolist()!r}.")
    table = np.array([float(class_weight.get(c, 1.0)) for c in known.tolist()],
                     dtype=np.float64)
    return table[np.searchsorted(known, y)]
