"""Ready-made training callbacks: a CSV log, a "save the best model" checkpoint, and a
learning rate that drops when progress stalls.

Pass them to ``fit(..., callbacks=[...])``. Each sees the logs of every epoch (the
entries of :class:`mlpx.History`: ``loss``, ``val_loss``, the metrics of
``fit(metrics=...)``, ``lr``, ``seconds``). ``fit`` checks before the first epoch that
a callback's ``monitor`` is an entry it will record.

- :class:`CSVLogger` appends one row per epoch to a CSV file, the header once.
- :class:`SaveBest` saves the model (:func:`mlpx.io.save`, atomically) whenever the
  monitored value improves.
- :class:`ReduceLROnPlateau` multiplies the learning rate by ``factor`` after
  ``patience`` epochs without improvement (on top of the optimizer's schedule).

Their own state (the best value so far, the rate's factor) is not part of a
``fit(checkpoint=...)`` file: a resumed run starts them afresh.
"""

from __future__ import annotations

import csv
import io as _stringio
import math
import os

from . import io as mio
from ._validation import Boolean, Interval, Options, validate_params
from .metrics import greater_is_better
from .trainer import StepHook
from .training import Callback

__all__ = ["CSVLogger", "SaveBest", "ReduceLROnPlateau"]


def _better(mode, monitor):
    """``+1`` when larger values of ``monitor`` are better under ``mode``, else ``-1``."""
    if mode == "auto":
        return 1.0 if greater_is_better(monitor) else -1.0
    return 1.0 if mode == "max" else -1.0


def _monitored(logs, monitor, owner):
    if monitor not in logs:
        raise ValueError(f"{owner} monitors {monitor!r}, which the epoch's logs do not "
                         f"hold; they hold {sorted(logs)}.")
    return float(logs[monitor])


class CSVLogger(Callback):
    """Write one row per epoch to a CSV file: ``epoch`` and every entry of the logs.

    Each row (with the header before the first) is written by one ``write`` call on a
    file opened for appending, then flushed and synced to disk, so the file only ever
    holds whole rows: a run killed between epochs leaves every finished epoch's row.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file; its directory must exist.
    append : bool, default=False
        Keep the rows already in the file (a resumed run) and write no second header;
        False starts the file afresh when training begins.
    separator : str, default=","

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from mlpx import MLP
    >>> from mlpx.callbacks import CSVLogger
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> X = np.eye(4, dtype=np.float32); y = np.array([0, 1, 1, 0])
    >>> _ = MLP([4, 8, 2], seed=0).fit(X, y, epochs=2, verbose=0,
    ...                                callbacks=[CSVLogger(path)])
    >>> open(path).read().splitlines()[0]
    'epoch,loss,accuracy,seconds,lr'
    >>> len(open(path).read().splitlines())
    3
    """

    def __init__(self, path, *, append=False, separator=","):
        c = validate_params("CSVLogger", {"append": append, "separator": separator},
                            {"append": Boolean(), "separator": Options((",", ";", "\t",
                                                                        "|", " "))})
        self.path = mio.check_writable_path(path, "path")
        self.append = c["append"]
        self.separator = c["separator"]
        self.columns: list | None = None

    def on_train_begin(self, model) -> None:
        self.columns = None
        if self.append and os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self.columns = list(header) if header else None
        else:
            with open(self.path, "w", encoding="utf-8"):
                pass

    def on_epoch_end(self, model, epoch, logs) -> None:
        buf = _stringio.StringIO()
        writer = csv.writer(buf, delimiter=self.separator, lineterminator="\n")
        if self.columns is None:
            self.columns = ["epoch", *logs]
            writer.writerow(self.columns)
        row = [str(epoch) if col == "epoch" else _cell(logs.get(col))
               for col in self.columns]
        writer.writerow(row)
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


class SaveBest(Callback):
    """Save the model whenever the monitored log entry reaches a new best.

    The file is written with :func:`mlpx.io.save` (the model's config and weights,
    atomically: a crash leaves the previous best whole); :func:`mlpx.load` reads it.

    Parameters
    ----------
    path : str or os.PathLike
        The model file (``.npz``); its directory must exist.
    monitor : str, default="val_loss"
        A log entry: ``"val_loss"``, ``"loss"``, ``"val_accuracy"``, or a metric of
        ``fit(metrics=...)`` (``"val_f1"``).
    mode : {"auto", "min", "max"}, default="auto"
        Whether smaller or larger is better; ``"auto"`` knows it for losses and the
        metrics of :mod:`mlpx.metrics` (larger for accuracies, precision, recall, F1, R^2).
    min_delta : float >= 0, default=0.0
        The smallest change that counts as an improvement.

    Attributes
    ----------
    best : float or None
        The best value so far (kept across ``fit`` calls, like Keras' ModelCheckpoint).
    best_epoch : int or None
        The epoch whose model is in the file.
    """

    def __init__(self, path, *, monitor="val_loss", mode="auto", min_delta=0.0):
        c = validate_params("SaveBest", {"mode": mode, "min_delta": min_delta},
                            {"mode": Options(("auto", "min", "max")),
                             "min_delta": Interval(float, 0.0, None, closed="left")})
        if not isinstance(monitor, str):
            raise ValueError(f"The 'monitor' parameter of SaveBest must be a str. Got "
                             f"{monitor!r} instead.")
        self.path = mio.check_writable_path(path, "path")
        self.monitor = monitor
        self.mode = c["mode"]
        self.min_delta = c["min_delta"]
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_epoch_end(self, model, epoch, logs) -> None:
        value = _monitored(logs, self.monitor, "SaveBest")
        if math.isnan(value):
            return
        sign = _better(self.mode, self.monitor)
        if self.best is None or sign * (value - self.best) > self.min_delta:
            mio.save(model, self.path)
            self.best, self.best_epoch = value, epoch


class _PlateauHook(StepHook):
    """Scales each step's learning rate by the callback's current factor."""

    def __init__(self, owner):
        self.owner = owner

    def adjust_lr(self, lr):
        return self.owner.scaled(lr)

    def before_step(self, ctx, trainer):
        if self.owner.factor_now != 1.0:
            ctx.hyper["lr"] = self.owner.scaled(ctx.hyper["lr"])


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when the monitored value stalls.

    After ``patience`` epochs without an improvement of more than ``min_delta``, the
    learning rate of every following step is multiplied by ``factor`` (again after each
    further stall), never below ``min_lr``; ``cooldown`` epochs after a reduction pass
    before the count starts again. The factor applies on top of the optimizer's own
    learning rate or schedule (as Keras' callback of the same name, which sets the
    rate itself); the history's ``"lr"`` shows the rate used. The optimizer object is
    left untouched, and the steps keep their fast path.

    Parameters
    ----------
    monitor : str, default="val_loss"
    factor : float in (0, 1), default=0.1
    patience : int >= 1, default=10
    mode : {"auto", "min", "max"}, default="auto"
    min_delta : float >= 0, default=1e-4
    cooldown : int >= 0, default=0
    min_lr : float >= 0, default=0.0

    Attributes
    ----------
    factor_now : float
        The product of the reductions so far (1.0 before the first).
    reductions : list of int
        The epochs after which the rate was reduced.
    """

    def __init__(self, monitor="val_loss", *, factor=0.1, patience=10, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        c = validate_params("ReduceLROnPlateau", {
            "factor": factor, "patience": patience, "mode": mode, "min_delta": min_delta,
            "cooldown": cooldown, "min_lr": min_lr}, {
            "factor": Interval(float, 0.0, 1.0, closed="neither"),
            "patience": Interval(int, 1, None, closed="left"),
            "mode": Options(("auto", "min", "max")),
            "min_delta": Interval(float, 0.0, None, closed="left"),
            "cooldown": Interval(int, 0, None, closed="left"),
            "min_lr": Interval(float, 0.0, None, closed="left")})
        if not isinstance(monitor, str):
            raise ValueError(f"The 'monitor' parameter of ReduceLROnPlateau must be a str. "
                             f"Got {monitor!r} instead.")
        self.monitor = monitor
        self.factor: float = c["factor"]
        self.patience: int = c["patience"]
        self.mode: str = c["mode"]
        self.min_delta: float = c["min_delta"]
        self.cooldown: int = c["cooldown"]
        self.min_lr: float = c["min_lr"]
        self.factor_now = 1.0
        self.reductions: list = []
        self.best: float | None = None
        self.wait = 0
        self.cooling = 0
        #: The step hook the Trainer installs with this callback.
        self.step_hook = _PlateauHook(self)

    def scaled(self, lr: float) -> float:
        """The learning rate a step uses when the schedule gives ``lr``."""
        if self.factor_now == 1.0:
            return lr
        return max(lr * self.factor_now, min(lr, self.min_lr))

    def on_epoch_end(self, model, epoch, logs) -> None:
        value = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        sign = _better(self.mode, self.monitor)
        cooling = self.cooling > 0
        if cooling:
            self.cooling -= 1
        if math.isnan(value):
            improved = False
        else:
            improved = (self.best is None or math.isnan(self.best)
                        or sign * (value - self.best) > self.min_delta)
        if improved:
            self.best = value
            self.wait = 0
        elif not cooling:
            self.wait += 1
            if self.wait >= self.patience:
                self.factor_now *= self.factor
                self.reductions.append(epoch)
                self.cooling = self.cooldown
                self.wait = 0
