"""What ``fit`` records and how it is steered: History, EarlyStopping, callbacks, and the
errors training raises. :mod:`mlpx.model` uses these; they hold no array math.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from ._validation import Boolean, Interval, InvalidParameterError, Options, validate_params
from .metrics import METRICS

__all__ = [
    "History",
    "EarlyStopping",
    "Callback",
    "Evaluation",
    "LanguageEvaluation",
    "perplexity",
    "NonFiniteLossError",
    "NonFiniteLossWarning",
    "DeviceMemoryError",
    "as_early_stopping",
    "as_callbacks",
]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or weights; the last good weights were kept.

    Attributes
    ----------
    epoch : int or None
        The epoch (1-based) in which it happened.
    batch : int or None
        The first bad batch of that epoch (1-based), None when it could not be told.
    n_batches : int or None
        Batches per epoch.
    what : {"loss", "weights"} or None
        Whether the loss or the updated weights stopped being finite first.
    """

    def __init__(self, message, *, epoch=None, batch=None, n_batches=None, what=None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.n_batches = n_batches
        self.what = what


class NonFiniteLossWarning(UserWarning):
    """Emitted when ``fit(on_nonfinite="stop")`` ends training on a NaN/inf loss."""


class DeviceMemoryError(MemoryError):
    """The accelerator ran out of memory during training (never a hang).

    Attributes
    ----------
    requested : int or None
        Bytes the failing allocation asked for.
    free : int or None
        Bytes free on the device (CUDA free memory plus the memory pool's cached blocks).
    total : int or None
        Device memory in bytes.
    batch_size : int
        The batch size that failed.
    suggested_batch_size : int or None
        An estimate of a batch size that fits, when one smaller than ``batch_size`` does.
    """

    def __init__(self, message, *, requested=None, free=None, total=None, batch_size=None,
                 suggested_batch_size=None):
        super().__init__(message)
        self.requested = requested
        self.free = free
        self.total = total
        self.batch_size = batch_size
        self.suggested_batch_size = suggested_batch_size


class Evaluation(NamedTuple):
    """Result of :meth:`Sequential.evaluate`: mean loss and accuracy (None for regression)."""

    loss: float
    accuracy: float | None


class LanguageEvaluation(NamedTuple):
    """Result of :meth:`LanguageModel.evaluate`: mean cross-entropy (nats per token),
    next-token accuracy and perplexity ``exp(loss)``."""

    loss: float
    accuracy: float | None
    perplexity: float


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean cross-entropy in nats; infinity where exp overflows.

    Examples
    --------
    >>> from mlpx.training import perplexity
    >>> round(perplexity(1.0), 4), perplexity(1e6)
    (2.7183, inf)
    """
    loss = float(loss)
    if math.isnan(loss):
        return loss
    return math.exp(loss) if loss < 709.0 else math.inf


@dataclass
class History:
    """What :meth:`Sequential.fit` recorded, one entry per epoch.

    Attributes
    ----------
    history : dict of str to list of float
        ``"loss"`` (mean training loss, L2 penalty included), ``"accuracy"`` (training
        accuracy, classifiers only), ``"val_loss"`` and ``"val_accuracy"`` (when
        validation data was given), ``"seconds"`` (wall time of the epoch) and ``"lr"``;
        language models (:class:`mlpx.LanguageModel`) add ``"perplexity"`` and
        ``"val_perplexity"``, ``exp`` of the mean cross-entropy; every metric of
        ``fit(metrics=...)`` adds its name (``"f1"``, ``"top_3_accuracy"``) and, with
        validation data, ``"val_"`` + its name.
    epochs : list of int
        Epoch numbers (1-based, continuing across calls to ``fit``).
    stopped_early : bool
        True when early stopping or a callback ended training.
    best_epoch : int or None
        The epoch whose weights were restored by early stopping.
    stop_reason : str or None
        Why training ended before its last epoch when that was not early stopping or a
        callback (e.g. a non-finite loss with ``on_nonfinite="stop"``).
    """

    history: dict = field(default_factory=dict)
    epochs: list = field(default_factory=list)
    stopped_early: bool = False
    best_epoch: int | None = None
    stop_reason: str | None = None

    def append(self, epoch: int, logs: dict) -> None:
        self.epochs.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history


class _Monitor(Options):
    """The monitored log entry: one of the fixed names, or a metric's (``"val_f1"``,
    ``"top_3_accuracy"``) that ``fit(metrics=...)`` must then report."""

    def is_satisfied_by(self, value):
        return super().is_satisfied_by(value) or (isinstance(value, str)
                                                  and is_metric_key(value))

    def convert(self, value):
        return super().convert(value) if super().is_satisfied_by(value) else str(value)


def is_metric_key(key: str) -> bool:
    """Whether ``key`` names a metric of :data:`mlpx.metrics.METRICS` as History records
    it: the metric's name (``"f1"``, ``"top_3_accuracy"``), optionally after ``val_``."""
    base = key[4:] if key.startswith("val_") else key
    if base in METRICS:
        return True
    parts = base.split("_")
    return (len(parts) == 3 and parts[0] == "top" and parts[1].isdigit()
            and int(parts[1]) >= 1 and parts[2] == "accuracy")


#: Declarative constraints of :class:`EarlyStopping`'s parameters.
_EARLY_STOPPING_CONSTRAINTS = {
    "patience": Interval(int, 1, None, closed="left"),
    "min_delta": Interval(float, 0.0, None, closed="left"),
    "restore_best": Boolean(),
    "monitor": _Monitor((None, "val_loss", "val_accuracy", "loss", "accuracy",
                         "val_perplexity", "perplexity")),
}


@dataclass
class EarlyStopping:
    """Stop training when a monitored metric stops improving.

    Parameters
    ----------
    patience : int >= 1, default=5
        Epochs without improvement before stopping.
    min_delta : float >= 0, default=0.0
        Smallest change that counts as an improvement (finite).
    restore_best : bool, default=True
        Put back the weights of the best epoch when training ends.
    monitor : str or None, default=None
        ``"val_loss"``, ``"val_accuracy"``, ``"loss"``, ``"accuracy"``, for language
        models (:class:`mlpx.LanguageModel`) ``"val_perplexity"`` and ``"perplexity"``,
        or a metric that ``fit(metrics=...)`` reports (``"val_f1"``, ``"r2"``; larger is
        better for accuracies, precision, recall, F1 and R^2). None watches
        ``"val_loss"``, and then ``fit`` needs validation data (``validation_data`` or
        ``validation_split``, as scikit-learn holds out ``validation_fraction``); to watch
        the training loss, say so with ``monitor="loss"``.
    """

    patience: int = 5
    min_delta: float = 0.0
    restore_best: bool = True
    monitor: str | None = None

    def __post_init__(self):
        values = validate_params("EarlyStopping", {
            "patience": self.patience, "min_delta": self.min_delta,
            "restore_best": self.restore_best, "monitor": self.monitor,
        }, _EARLY_STOPPING_CONSTRAINTS)
        for key, value in values.items():
            setattr(self, key, value)


class Callback:
    """Base class for training callbacks; override what you need.

    Set ``model.stop_training = True`` inside a hook to end training after the epoch.
    A plain function ``f(model, epoch, logs)`` is accepted as an ``on_epoch_end`` hook.
    """

    def on_train_begin(self, model) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, model, epoch: int, logs: dict) -> None:
        """Called after each epoch with that epoch's logs (python floats)."""

    def on_train_end(self, model, history: History) -> None:
        """Called once when training ends (also after early stopping)."""


class _FunctionCallback(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, model, epoch, logs):
        self.fn(model, epoch, logs)


def as_early_stopping(spec) -> EarlyStopping | None:
    """The :class:`EarlyStopping` that ``fit(early_stopping=spec)`` asks for, or None.

    ``spec`` is None/False (none), True (the defaults), an int (the patience), a dict of
    EarlyStopping's parameters, or an EarlyStopping.
    """
    if spec is None or spec is False:
        return None
    if isinstance(spec, EarlyStopping):
        return spec
    if isinstance(spec, bool):
        return EarlyStopping()
    if isinstance(spec, int):
        return EarlyStopping(patience=spec)
    if isinstance(spec, dict):
        try:
            return EarlyStopping(**spec)
        except InvalidParameterError:
            raise  # already says which parameter and what it must be
        except TypeError as exc:  # an unknown keyword
            raise InvalidParameterError(f"Bad early_stopping parameters: {exc}") from None
    raise ValueError("The 'early_stopping' parameter of fit must be None, an int patience, a "
                     f"dict or an EarlyStopping. Got {spec!r} instead.")


def as_callbacks(callbacks):
    out = []
    for cb in callbacks or ():
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(_FunctionCallback(cb))
        else:
            raise ValueError(f"Callbacks must be Callback instances or callables; got {cb!r}.")
    return out
