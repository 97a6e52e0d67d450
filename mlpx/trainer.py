"""The training engine: one :class:`Trainer` owns the loop, every caller drives it.

:meth:`mlpx.Sequential.fit`, the ``mlpx train`` command and the scikit-learn estimators
(:mod:`mlpx.sklearn`) all train through a :class:`Trainer` over a model and its
:class:`~mlpx.state.TrainState`. The trainer does the batching, shuffling, validation,
callbacks, early stopping, the recovery from a non-finite loss, checkpoints and the
progress bar. One step has named stages:

1. ``before_step``: every :class:`StepHook` may set this step's L2 strength
   (``ctx.alpha``), optimizer hyper-parameters (``ctx.hyper``, e.g. the learning rate)
   or skip the batch;
2. ``forward`` and ``loss and gradients``: :meth:`mlpx.Sequential.loss_and_grads`;
3. ``gradient hook``: each hook's :meth:`StepHook.on_gradients` (a gradient all-reduce
   plugs in here);
4. ``update``: :meth:`mlpx.Sequential.apply_gradients` (the optimizer's rule).

When no hook needs the gradients, stages 2 to 4 run fused in
:meth:`mlpx.Sequential.train_step`, which takes a backend fast path when there is one
(:mod:`mlpx._fast`): an in-place implementation of the same stages.

A step is all or nothing: a Ctrl-C (SIGINT) that arrives during a step is held until the
step has finished, then raised as KeyboardInterrupt, so the model never holds a
half-applied update.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _backend
from . import io as mio
from ._validation import Boolean, InstanceOf, Interval, ListOf, Options, validate_params
from .metrics import Metric, class_sample_weight, get_metrics, greater_is_better
from .state import map_arrays
from .training import (
    Callback,
    DeviceMemoryError,
    EarlyStopping,
    History,
    NonFiniteLossError,
    NonFiniteLossWarning,
    perplexity,
)

__all__ = ["Trainer", "FitOptions", "StepContext", "StepHook", "DeviceData", "HostData",
           "HostRows", "BatchStream", "is_streamed", "is_batch_iterable", "fit_model",
           "ClipGradients"]


# ---------------------------------------------------------------------- options
@dataclass
class FitOptions:
    """The checked options of one :meth:`mlpx.Sequential.fit` call.

    Built once by ``fit`` (which validates them) and handed to :func:`fit_model` and the
    :class:`Trainer`; see ``fit`` for the meaning of each.
    """

    epochs: int = 10
    batch_size: int | None = 32
    optimizer: Any = None
    validation_data: Any = None
    validation_split: float = 0.0
    shuffle: bool = True
    stopper: EarlyStopping | None = None
    callbacks: list = field(default_factory=list)
    sample_weight: Any = None
    verbose: int = 1
    checkpoint: str | None = None
    checkpoint_every: int = 1
    resume: Any = None
    on_nonfinite: str = "raise"
    #: A data-parallel plan (:class:`mlpx.distributed.DataParallel`) or None.
    parallel: Any = None
    #: What ``fit(metrics=...)`` asked for (names, dicts or Metric objects).
    metrics: Any = None
    #: Gradient clipping: the largest global norm, the largest absolute value (or None).
    clip_norm: float | None = None
    clip_value: float | None = None
    #: ``fit(class_weight=...)``: None, "balanced" or a dict {class index: weight}.
    class_weight: Any = None


# ---------------------------------------------------------------------- steps
@dataclass
class StepContext:
    """What one step knows, and what :class:`StepHook` objects may change before it runs.

    Attributes
    ----------
    index : int
        The batch's position in the epoch (0-based).
    rows : numpy.ndarray or slice
        The samples of the batch (host indices into the training data, or a slice when
        the data are not shuffled).
    n : int
        Samples in the batch.
    step : int
        Updates made before this one (the optimizer's ``state["step"]``).
    alpha : float
        L2 strength of this step (the model's ``alpha`` unless a hook changes it).
    hyper : dict
        The optimizer's hyper-parameters for this step (from
        :meth:`~mlpx.optimizers.Optimizer.hyper`); a hook may change any of them.
    skip : bool
        Set by a hook to leave this batch out (no update, no loss).
    extra_loss : float
        Host-side amount a hook adds to the epoch's summed loss (times ``n``).
    info : dict
        Free room for hooks to pass values from ``before_step`` to ``reported_loss``.
    loss : array or None
        The batch's loss (a device scalar), set before :meth:`StepHook.on_gradients`.
    """

    index: int
    rows: Any
    n: int
    step: int
    alpha: float
    hyper: dict
    skip: bool = False
    extra_loss: float = 0.0
    info: dict = field(default_factory=dict)
    loss: Any = None


class StepHook:
    """Changes one step from outside the loop; override what you need.

    Hooks are how callers steer training without editing the model or optimizer:
    the scikit-learn estimators scale L2 by the batch's weight and move Adam's epsilon;
    a data-parallel run all-reduces the gradients in :meth:`on_gradients`.
    """

    #: True when :meth:`on_gradients` must see the gradients (this turns off the fused
    #: in-place step, which never materialises them).
    needs_gradients = False

    def before_step(self, ctx: StepContext, trainer: "Trainer") -> None:
        """Called before each step; may change ``ctx.alpha``, ``ctx.hyper``, ``ctx.skip``."""

    def on_gradients(self, grads: list, ctx: StepContext) -> list:
        """Return the gradients the update should use (called only if needs_gradients)."""
        return grads

    def reported_loss(self, loss, ctx: StepContext):
        """Return the batch loss to record (a device scalar); the update is unaffected."""
        return loss

    def epoch_totals(self, totals: dict) -> dict:
        """Return the epoch's host totals (``"correct"``: correctly classified training
        samples; the metrics' sums, one float per key) as the whole run saw them; a
        data-parallel hook sums them over ranks."""
        return totals

    def adjust_lr(self, lr: float) -> float:
        """The learning rate this hook makes of the schedule's ``lr`` (what the history
        records as ``"lr"``); a hook that rescales ``ctx.hyper["lr"]`` says so here."""
        return lr


class ClipGradients(StepHook):
    """Clip the gradients before the update: each entry to ``[-value, value]``, then the
    whole gradient (every parameter together) to a Euclidean norm of at most ``norm``.

    What ``fit(clip_value=..., clip_norm=...)`` installs. The norm rule is PyTorch's
    ``clip_grad_norm_``: the gradients are scaled by ``min(1, norm / (||g|| + 1e-6))``,
    computed on the device (no host synchronisation). Clipping sees the gradients (L2
    penalty included, summed over data-parallel ranks when the all-reduce hook runs
    first), so it turns off the fused in-place fast step: the step runs the generic
    path (``tests/test_callbacks.py`` checks that a clipped run takes no fast step and,
    when nothing needs clipping, equals an unclipped run on the generic path).

    Parameters
    ----------
    norm : float > 0 or None
    value : float > 0 or None
    xp : namespace
        The model's Array API namespace.
    """

    needs_gradients = True

    def __init__(self, norm=None, value=None, *, xp):
        c = validate_params("ClipGradients", {"norm": norm, "value": value},
                            {"norm": [Interval(float, 0.0, None, closed="neither"), None],
                             "value": [Interval(float, 0.0, None, closed="neither"), None]})
        self.norm, self.value = c["norm"], c["value"]
        self.xp = xp

    def on_gradients(self, grads, ctx):
        xp = self.xp
        if self.value is not None:
            v = self.value
            grads = [xp.clip(g, -v, v) for g in grads]
        if self.norm is not None and grads:
            total = None
            for g in grads:
                s = xp.sum(g * g)
                total = s if total is None else total + s
            coef = self.norm / (xp.sqrt(total) + 1e-6)
            coef = xp.where(coef < 1.0, coef, xp.ones_like(coef))
            grads = [g * coef for g in grads]
        return grads


# ---------------------------------------------------------------------- data
class DeviceData:
    """Training data on the device, taken batch by batch in the trainer's order.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    Y : array of shape (n_samples, n_outputs)
        Float targets.
    labels : array of shape (n_samples,) or None
        Integer labels (classifiers), for the accuracy.
    W : array of shape (n_samples,) or None
        Sample weights.
    xp : namespace
    """

    def __init__(self, X, Y, labels=None, W=None, *, xp):
        self.X, self.Y, self.labels, self.W = X, Y, labels, W
        self.xp = xp
        self.n = int(Y.shape[0])
        #: Host copy of the weights, for the per-batch checks (None without weights).
        self.host_weights = None if W is None else _backend.to_numpy(W)
        self._gathered: dict = {}  # NumPy: one reused buffer per gathered array
        self._checked_order: tuple | None = None  # (order, gathers_in_place(order))

    def spans(self, batch_size):
        """Yield the epoch's batches as ``(start, stop)`` positions in its order."""
        bs = min(batch_size, self.n)
        for start in range(0, self.n, bs):
            yield start, min(start + bs, self.n)

    def n_batches(self, batch_size) -> int:
        """Batches per epoch."""
        return -(-self.n // min(batch_size, self.n))

    def batch(self, perm, rows, start, stop):
        """Return ``(X, Y, W, labels)`` of samples ``start:stop`` of the epoch's order.

        ``perm`` is the order on the device (None: unshuffled); ``rows`` the same on
        the host (unused here; subclasses that densify on the host take it).
        """
        X, Y, labels, W = self.X, self.Y, self.labels, self.W
        if perm is None:
            return (X[start:stop, ...], Y[start:stop, ...],
                    None if W is None else W[start:stop, ...],
                    None if labels is None else labels[start:stop, ...])
        xp = self.xp
        idx = perm[start:stop]
        if _backend.fast_path(xp) == "numpy" and self.gathers_in_place(perm):
            take = self.gather
            return (take(X, idx, 0), take(Y, idx, 1), None if W is None else take(W, idx, 2),
                    None if labels is None else take(labels, idx, 3))
        return (xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0),
                None if W is None else xp.take(W, idx, axis=0),
                None if labels is None else xp.take(labels, idx, axis=0))

    def gathers_in_place(self, perm) -> bool:
        """Whether :meth:`gather` takes the rows of the epoch's order ``perm`` (NumPy
        arrays throughout, every index in range: anything else goes to ``xp.take``,
        which raises as before). Checked once per order: the answer for the last order
        checked is kept with it."""
        last = self._checked_order
        if last is not None and last[0] is perm:
            return last[1]
        n = int(self.Y.shape[0])
        ok = (type(perm) is np.ndarray and perm.ndim == 1 and perm.dtype.kind in "iu"
              and perm.shape[0] > 0 and int(perm.max()) < n and int(perm.min()) >= -n
              and all(type(a) is np.ndarray for a in (self.X, self.Y, self.W, self.labels)
                      if a is not None))
        self._checked_order = (perm, ok)
        return ok

    def gather(self, A, idx, slot):
        """``numpy.take(A, idx, axis=0)`` written into the buffer ``slot`` (one per array
        of the batch), which the next batch reuses.

        The NumPy fast path of :meth:`batch` (``_backend.fast_path``): no allocation per
        batch, and ``mode="wrap"``, which is not buffered the way ``"raise"`` is (the
        indices were checked to lie in range, where every mode takes the same rows). A
        batch is consumed before the next one is taken: the step, the accuracy count and
        the metrics read it and keep none of it.
        """
        m = int(idx.shape[0])
        buf = self._gathered.get(slot)
        if buf is None or buf.shape[0] < m or buf.shape[1:] != A.shape[1:] \
                or buf.dtype != A.dtype:
            buf = self._gathered[slot] = np.empty((m,) + A.shape[1:], dtype=A.dtype)
        out = buf[:m]
        np.take(A, idx, axis=0, out=out, mode="wrap")
        return out


def is_streamed(X) -> bool:
    """Whether ``fit`` / ``predict`` take ``X`` a batch at a time instead of whole.

    True for a NumPy memory map (``numpy.memmap``, ``numpy.load(..., mmap_mode="r")``):
    its rows are gathered and converted batch by batch, so a file larger than memory
    is never copied or converted whole. Arrays in memory are moved to the device once.
    """
    return isinstance(X, np.memmap)


class HostRows:
    """Rows of a host array (a memory map) that reach the device one batch at a time.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_rows, n_features)
        The host array, typically a ``numpy.memmap``; never copied whole.
    convert : callable
        ``convert(block) -> device array``: checks a block of rows and moves it to the
        device in the model's dtype (the model's ``to_device_X``).
    index : numpy.ndarray of int or None
        The rows of ``X`` this view holds, in order (a validation split); None: all.

    Attributes
    ----------
    shape : tuple
        ``(n_samples, n_features)`` of the view.
    """

    #: Rows per block when the whole view is read (checks, sums, prediction).
    block_bytes = 1 << 24

    def __init__(self, X, convert, index=None):
        self.X, self.convert, self.index = X, convert, index
        n = int(X.shape[0]) if index is None else int(index.shape[0])
        self.shape = (n, int(X.shape[1]))

    @property
    def dtype(self):
        """The host array's dtype (the rows are converted only batch by batch)."""
        return self.X.dtype

    def __getitem__(self, key):
        """Rows of this view as a host block (``view[a:b]`` or ``view[a:b, ...]``), as
        they are stored: what :meth:`mlpx.layers.Standardize.adapt` reads."""
        if isinstance(key, tuple):
            if len(key) != 2 or key[1] is not Ellipsis:
                raise IndexError("HostRows takes rows only: view[rows] or view[rows, ...]")
            key = key[0]
        return self.host(key)

    def subset(self, rows) -> "HostRows":
        """The view of ``rows`` (host indices into this view)."""
        rows = np.asarray(rows, dtype=np.intp)
        return HostRows(self.X, self.convert,
                        rows if self.index is None else self.index[rows])

    def host(self, rows):
        """Rows of this view as a host block (gathered in file order, then reordered)."""
        if isinstance(rows, slice):
            if self.index is None:
                return self.X[rows]
            rows = self.index[rows]
        else:
            rows = np.asarray(rows, dtype=np.intp)
            if self.index is not None:
                rows = self.index[rows]
        # Read the rows in file order (a memory map then reads forward), then put them in
        # the batch's order: the values are those of X[rows], whatever the order.
        order = np.argsort(rows, kind="stable")
        block = np.empty((rows.shape[0],) + tuple(self.X.shape[1:]), dtype=self.X.dtype)
        block[order] = self.X[rows[order]]
        return block

    def take(self, rows):
        """Rows of this view (a slice or host indices) on the device, checked."""
        return self.convert(self.host(rows))

    def blocks(self):
        """Yield ``(start, stop)`` bounds that cover the view in blocks of bounded size."""
        per_row = max(1, self.shape[1] * int(self.X.dtype.itemsize) * 8)
        step = max(1, self.block_bytes // per_row)
        for start in range(0, self.shape[0], step):
            yield start, min(start + step, self.shape[0])

    def sum(self) -> float:
        """The sum of every value in float64, read block by block (a data fingerprint)."""
        return float(sum(float(np.sum(self.host(slice(a, b)), dtype=np.float64))
                         for a, b in self.blocks()))


class HostData(DeviceData):
    """Training data whose features stay on the host (:class:`HostRows`).

    Each batch's rows are gathered from the host array and converted on their own (the
    targets and weights are on the device as in :class:`DeviceData`); the result equals
    :class:`DeviceData` over the whole array converted at once, bit for bit.
    """

    def batch(self, perm, rows, start, stop):
        Xb = self.X.take(rows)
        Y, labels, W = self.Y, self.labels, self.W
        if perm is None:
            return (Xb, Y[start:stop, ...], None if W is None else W[start:stop, ...],
                    None if labels is None else labels[start:stop, ...])
        xp = self.xp
        idx = perm[start:stop]
        return (Xb, xp.take(Y, idx, axis=0),
                None if W is None else xp.take(W, idx, axis=0),
                None if labels is None else xp.take(labels, idx, axis=0))


class BatchStream(DeviceData):
    """Training data given as a re-iterable of ``(X_batch, y_batch)`` pairs.

    Each pass over ``source`` is one epoch, in the source's order; each pair is one step
    (``batch_size`` and shuffling do not apply). Every batch is checked and moved to the
    device on its own, so only one batch is in memory at a time (as the source gives it).
    Building the stream makes one checking pass (shapes, labels, NaN/inf, the number of
    samples); an epoch whose batches differ from that pass raises a ValueError.

    Parameters
    ----------
    source : iterable of (X_batch, y_batch)
        Iterated once per epoch; an iterator (which can be read only once) is refused.
    model : mlpx.Sequential
        Built from the first batch's width when it is not built yet.
    """

    def __init__(self, source, model):
        if iter(source) is source:
            raise TypeError(
                "fit got an iterator of batches, which can be read only once; fit reads "
                "its batches once to check them and once per epoch. Pass a re-iterable "
                "object instead: a list of (X, y) pairs, or an object whose __iter__ "
                "starts a new pass (e.g. a class that yields the batches of a file).")
        self.source, self.model = source, model
        self.sizes: list[int] = []
        for X, y in self._pairs(iter(source), 0):
            Xd = model.to_device_X(X, f"X of batch {len(self.sizes) + 1}")
            n = int(Xd.shape[0])
            model.to_device_y(y, n, f"y of batch {len(self.sizes) + 1}")
            self.sizes.append(n)
        if not self.sizes:
            raise ValueError("fit got an empty iterable of batches; it needs at least one "
                             "(X, y) pair.")
        self.bounds = np.concatenate([[0], np.cumsum(self.sizes)]).tolist()
        self.X = self.Y = self.labels = self.W = None
        self.xp = model.backend.xp
        self.n = int(self.bounds[-1])
        self.host_weights = None
        self._it: Any = None
        self._j, self._taken = 0, False

    def _pairs(self, it, epoch):
        for i, pair in enumerate(it):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"Batch {i + 1} of the iterable is not an (X, y) pair; "
                                 f"got {type(pair).__name__}.")
            if self.model.built is False and i == 0:
                X0 = self.model.as_numeric(pair[0], "X of batch 1")
                if X0.ndim == 2:
                    self.model.build(int(X0.shape[1]))
            yield pair

    def spans(self, batch_size):
        self._it = iter(self.source)
        for j, size in enumerate(self.sizes):
            self._j, self._taken = j, False
            yield self.bounds[j], self.bounds[j] + size
            if not self._taken:  # a hook skipped the step: pass its batch by
                next(self._it, None)

    def n_batches(self, batch_size) -> int:
        return len(self.sizes)

    def batch(self, perm, rows, start, stop):
        j = self._j
        self._taken = True
        pair = next(self._it, None)
        if pair is None:
            raise ValueError(f"The iterable of batches ended after {j} batches in this "
                             f"epoch; its first pass gave {len(self.sizes)}. It must give "
                             "the same batches on every pass.")
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"Batch {j + 1} of the iterable is not an (X, y) pair.")
        model = self.model
        X = model.to_device_X(pair[0], f"X of batch {j + 1}")
        if int(X.shape[0]) != stop - start:
            raise ValueError(f"Batch {j + 1} of the iterable has {int(X.shape[0])} samples "
                             f"in this epoch but {stop - start} in its first pass; it must "
                             "give the same batches on every pass.")
        Y, labels = model.to_device_y(pair[1], stop - start, f"y of batch {j + 1}")
        return X, Y, None, labels


def is_batch_iterable(X, y) -> bool:
    """Whether ``fit(X, y)`` got an iterable of ``(X, y)`` batches (``y`` None)."""
    import array_api_compat

    return (y is None and hasattr(X, "__iter__") and not isinstance(X, (np.ndarray, str))
            and not array_api_compat.is_array_api_obj(X))


class _NoWeightBatches(StepHook):
    """Skips a batch whose sample weights are all zero: it carries no information, and
    its weighted mean loss would be 0/0."""

    def __init__(self, host_weights):
        self.w = host_weights

    def before_step(self, ctx, trainer):
        if not float(np.sum(self.w[ctx.rows])) > 0.0:
            ctx.skip = True


# ---------------------------------------------------------------------- interrupts
class _DeferredInterrupt:
    """Holds SIGINT while a step runs; the loop raises it between steps.

    Only the main thread can handle signals; elsewhere this does nothing (a
    KeyboardInterrupt cannot reach another thread anyway).
    """

    def __init__(self):
        self.pending = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.pending = True

    def check(self):
        """Raise the KeyboardInterrupt that arrived during the last step, if any."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        if self.pending and exc[0] is None:
            self.pending = False
            raise KeyboardInterrupt
        return False


# ---------------------------------------------------------------------- the trainer
_CONSTRAINTS = {
    "batch_size": Interval(int, 1, None, closed="left"),
    "shuffle": [Boolean(), InstanceOf(Callable, "a callable order(n)")],
    "verbose": Interval(int, 0, None, closed="left"),
    "checkpoint_every": Interval(int, 1, None, closed="left"),
    "on_nonfinite": Options(("raise", "stop", "ignore")),
    "metrics": Boolean(),
    "stopper": [InstanceOf(EarlyStopping), None],
    "callbacks": ListOf(InstanceOf(Callback)),
    "hooks": ListOf(InstanceOf(StepHook)),
}


class Trainer:
    """The training loop over one model: epochs of minibatch steps, and all around them.

    Parameters
    ----------
    model : mlpx.Sequential
        Built and compiled (its :attr:`~mlpx.Sequential.state_` is advanced in place).
    batch_size : int
        Samples per step (at most the number of samples).
    shuffle : bool or callable, default=True
        Reshuffle every epoch with a permutation drawn from the state's host generator;
        or a callable ``order(n) -> numpy index array`` giving each epoch's order.
    validation : tuple (X_val, Y_val, labels_val) or None
        Validation data on the device, evaluated after every epoch.
    stopper : EarlyStopping or None
    callbacks : list of Callback
    hooks : list of StepHook
    verbose : int
        0 silent, 1 a progress bar over epochs, 2 also one over batches.
    checkpoint : str or None
        File to write a checkpoint to every ``checkpoint_every`` epochs.
    checkpoint_every : int
    on_nonfinite : {"raise", "stop", "ignore"}
        What a NaN/inf loss or weight does: raise :class:`NonFiniteLossError`, stop with
        a warning, or go on (the scikit-learn estimators check the weights at the end).
    metrics : bool, default=True
        Count the training accuracy of classifiers (a device reduction per batch).
    extra_metrics : list of Metric, default=()
        Metrics (:mod:`mlpx.metrics`) reported every epoch under their names for the
        training batches (as they were stepped on: dropout on, weights before each
        update) and, under ``val_<name>``, for the validation data at the end of the
        epoch. Each keeps a few sums on the device; none keeps the predictions.
    fit_record : dict or None
        What each checkpoint records about the ``fit`` call (arguments, data
        fingerprint) so that a resumed call can check it sees the same run.
    """

    def __init__(self, model, *, batch_size, shuffle=True, validation=None, stopper=None,
                 callbacks=(), hooks=(), verbose=0, checkpoint=None, checkpoint_every=1,
                 on_nonfinite="raise", metrics=True, fit_record=None, extra_metrics=()):
        c = validate_params("Trainer", {
            "batch_size": batch_size, "shuffle": shuffle, "verbose": verbose,
            "checkpoint_every": checkpoint_every, "on_nonfinite": on_nonfinite,
            "metrics": metrics, "stopper": stopper,
            "callbacks": list(callbacks), "hooks": list(hooks)}, _CONSTRAINTS)
        if model.state_ is None:
            raise RuntimeError("The Trainer needs a compiled model: call "
                               "model.compile(optimizer) first.")
        self.model = model
        self.batch_size = c["batch_size"]
        self.shuffle = c["shuffle"]
        self.val = validation
        self.stopper = c["stopper"]
        self.callbacks = c["callbacks"]
        self.hooks = c["hooks"]
        self.verbose = c["verbose"]
        self.checkpoint = checkpoint
        self.checkpoint_every = c["checkpoint_every"]
        self.on_nonfinite = c["on_nonfinite"]
        self.metrics = c["metrics"]
        self.fit_record = fit_record
        extra = validate_params("Trainer", {"extra_metrics": list(extra_metrics)},
                                {"extra_metrics": ListOf(InstanceOf(Metric))})
        self.extra_metrics = extra["extra_metrics"]
        self.val_metrics = [m.clone() for m in self.extra_metrics]
        # A callback that steers the steps (ReduceLROnPlateau) brings its own hook.
        for cb in self.callbacks:
            hook = getattr(cb, "step_hook", None)
            if isinstance(hook, StepHook) and hook not in self.hooks:
                self.hooks.append(hook)
        self.monitor = None
        if stopper is not None:
            self.monitor = stopper.monitor or ("val_loss" if validation is not None
                                               else "loss")

    # -- the step, in stages ----------------------------------------------------------
    def context(self, index, rows, n) -> StepContext:
        """Stage 1: this step's settings, after every hook's ``before_step``."""
        state = self.model.state_
        step = state.step
        opt = state.optimizer
        ctx = StepContext(index=index, rows=rows, n=n, step=step, alpha=self.model.alpha,
                          hyper=opt.hyper(step))
        for hook in self.hooks:
            hook.before_step(ctx, self)
        return ctx

    def step(self, X, Y, W, ctx: StepContext):
        """Stages 2 to 4 for one batch; return ``(loss, logits)`` as device arrays."""
        model = self.model
        if not any(h.needs_gradients for h in self.hooks):
            return model.train_step(X, Y, W, alpha=ctx.alpha, hyper=ctx.hyper)
        loss, grads, z = model.loss_and_grads(X, Y, W, alpha=ctx.alpha)
        ctx.loss = loss
        for hook in self.hooks:
            if hook.needs_gradients:
                grads = hook.on_gradients(grads, ctx)
        model.apply_gradients(grads, hyper=ctx.hyper)
        return loss, z

    # -- epochs -----------------------------------------------------------------------
    def epoch_order(self, n):
        """This epoch's sample order on the host and on the device (None, None: as is).

        Also derives the epoch's device noise generator (CuPy) from the host one, before
        the permutation is drawn.
        """
        self._derive_noise()
        if self.shuffle is False:
            return None, None
        rng = self.model.state_.rng
        rows = rng.permutation(n) if self.shuffle is True else self.shuffle(n)
        return rows, _backend.to_device(rows, backend=self.model.backend)

    def _derive_noise(self):
        state = self.model.state_
        if state.noise_rng is not state.rng:
            state.noise_rng = _backend.noise_rng(self.model.backend, state.rng)

    def _batches(self, data, perm, rows, *, on_step=None):
        """Run the epoch's steps; ``on_step(j, loss, z, batch, n_batch)`` sees each one.

        Returns the host-side extra loss the hooks added.
        """
        bs = min(self.batch_size, data.n)
        extra = 0.0
        guard = self._guard
        model = self.model
        # self.step's own test, once per epoch rather than per batch
        fused = type(self).step is Trainer.step and not any(
            h.needs_gradients for h in self.hooks)
        for j, (start, stop) in enumerate(data.spans(self.batch_size)):
            where = slice(start, stop) if rows is None else rows[start:stop]
            ctx = self.context(j, where, stop - start)
            if ctx.skip:
                continue
            batch = data.batch(perm, where, start, stop)
            try:
                if fused:
                    loss, z = model.train_step(batch[0], batch[1], batch[2], alpha=ctx.alpha,
                                               hyper=ctx.hyper)
                else:
                    loss, z = self.step(batch[0], batch[1], batch[2], ctx)
            except Exception as exc:
                if _backend.is_out_of_memory(exc):
                    raise memory_error(self.model, exc, bs) from exc
                raise
            if guard is not None:
                guard.check()
            for hook in self.hooks:
                loss = hook.reported_loss(loss, ctx)
            extra += ctx.extra_loss
            if on_step is not None:
                on_step(j, loss, z, batch, stop - start)
        return extra

    _guard: _DeferredInterrupt | None = None

    def run(self, data, epochs, *, history=None, stopper_state=None,
            best_params=None) -> History:
        """Train for ``epochs`` epochs (or until stopped) and return the history.

        Parameters
        ----------
        data : DeviceData
        epochs : int
        history : History, optional
            A resumed run's history to append to.
        stopper_state : dict, optional
            A resumed run's early-stopping state: ``best``, ``best_epoch``, ``wait``.
        best_params : list of arrays, optional
            A resumed run's best weights (early stopping with ``restore_best``).

        Raises
        ------
        NonFiniteLossError
            On a NaN/inf loss or weight with ``on_nonfinite="raise"``.
        DeviceMemoryError
            When the device runs out of memory during a step.
        """
        from tqdm.auto import tqdm

        model = self.model
        state = model.state_
        xp = model.backend.xp
        n, val, stopper = data.n, self.val, self.stopper
        n_batches = data.n_batches(self.batch_size)
        history = History() if history is None else history
        state.history = history
        model.stop_training = False
        monitor = self.monitor
        best, best_epoch, wait = math.inf, None, 0
        sign = 1.0
        if stopper is not None:
            sign = -1.0 if greater_is_better(monitor) else 1.0
            if stopper_state is not None:
                best = float(stopper_state["best"])
                best_epoch = stopper_state["best_epoch"]
                wait = int(stopper_state["wait"])
        if data.host_weights is not None and not any(
                isinstance(h, _NoWeightBatches) for h in self.hooks):
            self.hooks.insert(0, _NoWeightBatches(data.host_weights))
        for cb in self.callbacks:
            cb.on_train_begin(model)
        bar = tqdm(total=epochs, unit="epoch", disable=self.verbose < 1, leave=True,
                   desc=f"{type(model).__name__} [{model.backend.name}]")
        # A diverging run is reported once, as NonFiniteLossError, not as a stream of
        # NumPy overflow warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                _DeferredInterrupt() as guard:
            self._guard = guard
            try:
                for i in range(epochs):
                    epoch = state.epoch + 1
                    t0 = time.perf_counter()
                    # What a replay of this epoch needs, should it fail (see _recover):
                    # taken here, after the previous epoch's callbacks have run.
                    rng_state = state0 = params0 = None
                    if self.on_nonfinite != "ignore":
                        rng_state = state.rng.bit_generator.state
                        state0 = map_arrays(state.opt_state, lambda a: _copy(a, xp))
                        params0 = [_copy(p, xp) for p in state.params]
                    rows, perm = self.epoch_order(n)
                    acc: dict[str, Any] = {"total": 0.0, "correct": 0.0, "losses": [],
                                           "stepped": 0}
                    lr = state.optimizer.current_lr(state.step)
                    for hook in self.hooks:
                        lr = hook.adjust_lr(lr)
                    for m in self.extra_metrics:
                        m.reset()
                    inner = tqdm(total=n_batches, unit="batch", leave=False,
                                 disable=self.verbose < 2, desc=f"epoch {epoch}")

                    def on_step(j, loss, z, batch, nb, acc=acc, inner=inner):
                        acc["losses"].append(loss)
                        acc["stepped"] += nb
                        acc["total"] = acc["total"] + loss * nb
                        if self.metrics and model.is_classifier:
                            acc["correct"] = acc["correct"] + model.count_correct(
                                z, batch[1], batch[3])
                        for m in self.extra_metrics:
                            m.update(batch[1], z, batch[3], output=model.output, xp=xp)
                        inner.update(1)

                    extra = self._batches(data, perm, rows, on_step=on_step)
                    inner.close()
                    # Means over the samples stepped on (a skipped batch, e.g. one whose
                    # weights are all zero, counts neither as loss nor as a miss).
                    stepped = acc["stepped"] or n
                    train_loss = (float(acc["total"]) + extra) / stepped
                    if self.on_nonfinite != "ignore" and not (
                            math.isfinite(train_loss) and params_finite(model)):
                        error = self._recover(data, epoch=epoch, lr=lr,
                                              losses=acc["losses"], train_loss=train_loss,
                                              params0=params0, state0=state0,
                                              rng_state=rng_state, order=(rows, perm))
                        if self.on_nonfinite == "raise":
                            raise error
                        warnings.warn(str(error), NonFiniteLossWarning, stacklevel=4)
                        history.stopped_early = True
                        history.stop_reason = str(error)
                        break
                    state.epoch = epoch
                    logs = {"loss": train_loss}
                    totals: dict = {}
                    if self.metrics and model.is_classifier:
                        totals["correct"] = float(acc["correct"])
                    host = [m.totals() for m in self.extra_metrics]
                    totals.update(_flat_totals(host))
                    if totals:
                        for hook in self.hooks:
                            totals = hook.epoch_totals(totals)
                    if "correct" in totals:
                        logs["accuracy"] = totals["correct"] / stepped
                    for i, m in enumerate(self.extra_metrics):
                        logs[m.name] = m.result(_unflat_totals(totals, i, host[i]))
                    lm = bool(getattr(model, "reports_perplexity", False))
                    if lm:
                        logs["perplexity"] = perplexity(train_loss)
                    if val is not None:
                        for m in self.val_metrics:
                            m.reset()
                        vl, va = model.evaluate_device(
                            *val, **({"metrics": self.val_metrics} if self.val_metrics
                                     else {}))
                        logs["val_loss"] = vl
                        if va is not None:
                            logs["val_accuracy"] = va
                        if lm:
                            logs["val_perplexity"] = perplexity(vl)
                        for m in self.val_metrics:
                            logs["val_" + m.name] = m.result()
                    seconds = time.perf_counter() - t0
                    logs["seconds"] = seconds
                    logs["lr"] = lr
                    history.append(epoch, logs)
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()
                                     if k not in ("seconds", "lr")}
                                    | {"samples/s": f"{n / seconds:.3g}"})
                    for cb in self.callbacks:
                        cb.on_epoch_end(model, epoch, logs)
                    if stopper is not None:
                        value = sign * logs[monitor]
                        if value < best - stopper.min_delta:
                            best, best_epoch, wait = value, epoch, 0
                            if stopper.restore_best:
                                best_params = [_copy(p, xp) for p in state.params]
                        else:
                            wait += 1
                            if wait >= stopper.patience:
                                model.stop_training = True
                    if model.stop_training:
                        history.stopped_early = True
                    if self.checkpoint is not None and (
                            epoch % self.checkpoint_every == 0 or i == epochs - 1
                            or model.stop_training):
                        self._write_checkpoint(best, best_epoch, wait, best_params)
                    if model.stop_training:
                        break
            finally:
                self._guard = None
                bar.close()
        if stopper is not None:
            history.best_epoch = best_epoch
            if stopper.restore_best and best_params is not None:
                model.assign_params(best_params)
        for cb in self.callbacks:
            cb.on_train_end(model, history)
        return history

    def _write_checkpoint(self, best, best_epoch, wait, best_params) -> None:
        """Write a checkpoint of the model and of this run's early-stopping state."""
        stopper = self.stopper
        info = dict(self.fit_record)
        info["stopper"] = None if stopper is None else {
            "best": best, "best_epoch": best_epoch, "wait": wait}
        arrays = best_params if stopper is not None and stopper.restore_best else None
        mio.save_checkpoint(self.model, self.checkpoint,
                            fit_state={"json": info, "arrays": arrays})

    def _recover(self, data, *, epoch, lr, losses, train_loss, params0, state0,
                 rng_state, order) -> NonFiniteLossError:
        """Find the first bad batch of a failed epoch and keep the weights from before it.

        Replays the epoch from its start (weights ``params0``, optimizer state ``state0``,
        host random state ``rng_state``, the epoch's ``order`` of samples) with a host
        check after every batch. Returns the
        error to raise (or warn with); the model then holds the last good weights.
        """
        model = self.model
        state = model.state_
        n = data.n
        n_batches = data.n_batches(self.batch_size)
        xp = model.backend.xp
        copy_state = lambda s: map_arrays(s, lambda a: _copy(a, xp))  # noqa: E731
        model.assign_params([_copy(p, xp) for p in params0])
        state.opt_state = copy_state(state0)
        state.rng.bit_generator.state = rng_state
        if self.shuffle is True:  # the same draws from the restored generator
            rows, perm = self.epoch_order(n)
        else:  # as is, or the caller's order: the epoch's own, not a new one
            self._derive_noise()
            rows, perm = order
        found = []
        saved = {}

        class _Stop(Exception):
            pass

        def before(j):
            saved["params"] = [_copy(p, xp) for p in state.params]
            saved["state"] = copy_state(state.opt_state)

        class _Snapshot(StepHook):
            def before_step(self, ctx, trainer):
                before(ctx.index)

        def on_step(j, loss, z, batch, nb):
            value = float(loss)
            if not math.isfinite(value):
                found.append((j, "loss", value))
            elif not params_finite(model):
                found.append((j, "weights", value))
            if found:
                model.assign_params(saved["params"])
                state.opt_state = saved["state"]
                raise _Stop

        self.hooks.append(_Snapshot())
        try:
            self._batches(data, perm, rows, on_step=on_step)
        except _Stop:
            pass
        finally:
            self.hooks.pop()
        hint = (f"Lower the learning rate (now {lr:g}), scale the inputs, or add "
                "regularisation; fit(..., on_nonfinite='stop') ends training without an "
                "error instead.")
        if found:
            j, what, value = found[0]
            cause = (f"The training loss became {value} in epoch {epoch}, batch {j + 1} of "
                     f"{n_batches}" if what == "loss" else
                     f"The weights became NaN or infinite in epoch {epoch}, batch {j + 1} "
                     f"of {n_batches} (the loss of that batch was still {value:g})")
            kept = ("the weights and optimizer state from just before that batch were "
                    "kept" + (f" (those of the end of epoch {epoch - 1})" if j == 0 else ""))
            return NonFiniteLossError(f"{cause}; {kept}. {hint}", epoch=epoch, batch=j + 1,
                                      n_batches=n_batches, what=what)
        # The replay did not fail (a non-deterministic device): fall back to the start of
        # the epoch and to the per-batch losses recorded on the device.
        model.assign_params([_copy(p, xp) for p in params0])
        state.opt_state = copy_state(state0)
        values = _backend.to_numpy(xp.stack([xp.asarray(v) for v in losses]))
        bad = np.flatnonzero(~np.isfinite(values))
        batch = int(bad[0]) + 1 if bad.size else None
        what = "loss" if bad.size else "weights"
        where = f"batch {batch} of {n_batches}" if batch else "its last batch"
        return NonFiniteLossError(
            f"The training {what} became non-finite in epoch {epoch} ({where}; mean loss "
            f"{train_loss}); the weights of epoch {epoch - 1} were restored. {hint}",
            epoch=epoch, batch=batch, n_batches=n_batches, what=what)


# ---------------------------------------------------------------------- fit
def fit_model(model, X, y, opts: FitOptions) -> History:
    """Run one :meth:`mlpx.Sequential.fit` call whose options are checked.

    Everything is validated before the model is changed: the checkpoint to resume from
    (config, optimizer, early stopping, data fingerprint), the data and the validation
    split. Then the checkpoint's weights and training state are restored, or the model
    is compiled when it needs an optimizer, and a :class:`Trainer` trains it.

    Raises
    ------
    ValueError
        For bad data, or a checkpoint that does not match the model or data.
    mlpx.io.ModelFileError
        When ``opts.resume`` names a file that is not a sound mlpx checkpoint.
    """
    if is_batch_iterable(X, y):
        return _fit_stream(model, X, opts)
    # Validate everything before changing anything.
    par = opts.parallel
    # On several ranks X may stay on disk (mlpx.distributed.RowSource, a memory map):
    # each rank then reads only the rows it needs. In one process a memory map is read
    # and converted a batch at a time (HostRows).
    rows_src = None if par is None else par.row_source(X, model)
    streamed = par is None and is_streamed(X)
    X_probe = rows_src if rows_src is not None else model.as_numeric(X, "X")
    ckpt = fit_info = None
    if opts.resume is not None:
        ckpt = mio.read_checkpoint(opts.resume)
        fit_info = ckpt["training"].get("fit")
        # Refuse a checkpoint of another model (or width) before building anything.
        mio.check_checkpoint_matches(
            model, ckpt, n_features=int(X_probe.shape[1]) if X_probe.ndim == 2 else None)
        _check_resume(model, ckpt, opts.optimizer, opts.stopper)
    if not model.built and X_probe.ndim == 2:
        model.build(int(X_probe.shape[1]))
    if rows_src is not None:
        Xd = par.check_rows(model, rows_src)
    else:
        Xd = model.to_host_rows(X) if streamed else model.to_device_X(X)
    n = int(Xd.shape[0])
    if par is not None:  # every rank checks the call, then takes rank 0's random state
        par.sync_start(model, n_samples=n)
    Yd, labels = model.to_device_y(y, n)
    Wd = model.to_device_weights(opts.sample_weight, n)
    metrics = get_metrics(opts.metrics, output=model.output.name)
    if opts.class_weight is not None:
        Wd = _class_weights(model, Yd, labels, Wd, opts.class_weight)
    # The split is drawn from the host generator as it was when the (interrupted)
    # call started, so that a resumed run holds out the same samples.
    split_rng = model.train_rng
    if fit_info is not None:
        split_rng = mio.rng_from_state(fit_info["start_rng"])
    elif ckpt is not None:  # a checkpoint from save_checkpoint: as load_checkpoint + fit
        split_rng = mio.rng_from_state(ckpt["training"]["rng"]["train"])
    start_rng = mio.rng_state(split_rng)
    val = None
    n_val = 0
    xp = model.backend.xp
    if opts.validation_data is not None:
        vd = opts.validation_data
        if not isinstance(vd, (tuple, list)) or len(vd) != 2:
            raise ValueError("validation_data must be a tuple (X_val, y_val).")
        Xv = model.features(vd[0], "X_val")
        Yv, lv = model.to_device_y(vd[1], int(Xv.shape[0]), "y_val")
        val = (Xv, Yv, lv)
    elif opts.validation_split > 0:
        n_val = int(round(n * opts.validation_split))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"validation_split={opts.validation_split} leaves an empty "
                             f"training or validation set for {n} samples.")
        perm = split_rng.permutation(n)
        vi = _backend.to_device(perm[:n_val], backend=model.backend)
        ti = _backend.to_device(np.sort(perm[n_val:]), backend=model.backend)
        if rows_src is not None:
            Xv, Xd = par.take_rows(model, Xd, perm[:n_val]), Xd.subset(np.sort(perm[n_val:]))
        elif streamed:  # views of the memory map: no rows are read yet
            Xv, Xd = Xd.subset(perm[:n_val]), Xd.subset(np.sort(perm[n_val:]))
        else:
            Xv, Xd = xp.take(Xd, vi, axis=0), xp.take(Xd, ti, axis=0)
        val = (Xv, xp.take(Yd, vi, axis=0),
               None if labels is None else xp.take(labels, vi, axis=0))
        Yd = xp.take(Yd, ti, axis=0)
        labels = None if labels is None else xp.take(labels, ti, axis=0)
        Wd = None if Wd is None else xp.take(Wd, ti, axis=0)
        n = n - n_val
    if Wd is not None:
        Wd = normalise_weights(Wd, xp)
    stopper = opts.stopper
    if stopper is not None:
        if stopper.monitor is None and val is None:
            raise ValueError("early_stopping watches the validation loss ('val_loss') but "
                             "there is no validation data: pass validation_data or "
                             "validation_split (e.g. 0.1), or watch the training loss "
                             "explicitly with early_stopping={'monitor': 'loss', ...}.")
        check_monitor(stopper.monitor or "val_loss", model=model, has_val=val is not None,
                      metrics={m.name for m in metrics})
    for cb in opts.callbacks:  # SaveBest, ReduceLROnPlateau: fail before training
        if isinstance(getattr(cb, "monitor", None), str):
            check_monitor(cb.monitor, model=model, has_val=val is not None,
                          metrics={m.name for m in metrics}, who=type(cb).__name__)
    batch_size = opts.batch_size or n
    # Rows on disk: checked finite (and summed) by the ranks together, a slice each.
    x_sum = None if rows_src is None else par.scan_rows(model, Xd)
    record: dict[str, Any] | None = None
    if opts.checkpoint is not None or fit_info is not None:
        record = {
            "start_epoch": int(model.epoch_),
            "epochs": opts.epochs,
            "batch_size": min(batch_size, n),
            "shuffle": bool(opts.shuffle),
            "n_samples": n,
            "n_features": int(model.n_features),
            "n_val": n_val if val is None else int(val[0].shape[0]),
            "validation": ("data" if opts.validation_data is not None
                           else "split" if val is not None else None),
            "start_rng": start_rng,
            "early_stopping": None if stopper is None else stopper_config(stopper),
            "fingerprint": ([x_sum] if x_sum is not None else _fingerprint(model, Xd))
            + _fingerprint(model, Yd, Wd, *(val[:2] if val else ())),
        }
        if fit_info is not None and ckpt is not None:
            record["start_epoch"] = int(fit_info["start_epoch"])
            _check_same_run(fit_info, record, ckpt["path"])
        elif ckpt is not None:
            record["start_epoch"] = int(ckpt["training"]["epoch"])

    stopper_state = best_params = history = None
    if ckpt is not None:
        model.restore_checkpoint(ckpt, train_rng=None if fit_info is not None else split_rng)
        history = model.history_
        if history is None:
            history = History()
        if fit_info is not None:
            stopper_state = fit_info.get("stopper")
            target = int(fit_info["start_epoch"]) + opts.epochs
            remaining = 0 if history.stopped_early else max(0, target - model.epoch_)
        else:
            remaining = opts.epochs
        if stopper is not None and stopper_state is not None:
            best = mio.best_params(ckpt)
            if best is not None:
                best_params = [_backend.to_device(b, backend=model.backend) for b in best]
    else:
        if opts.optimizer is not None or model.state_ is None:
            model.compile(opts.optimizer if opts.optimizer is not None else "sgd")
        remaining = opts.epochs
    # An input Standardize layer not adapted yet learns its statistics from the
    # training data (after the validation split), once (mlpx.layers.Standardize).
    model.adapt_inputs(Xd)
    data = (HostData if streamed else DeviceData)(Xd, Yd, labels, Wd, xp=xp)
    hooks: list = []
    root = True
    if par is not None:  # rank 0's weights; each rank its share of every batch
        par.sync_state(model)
        hooks = par.hooks(model, data)
        data = par.shard(data, model)
        root = par.is_root
    if opts.clip_norm is not None or opts.clip_value is not None:
        # After the all-reduce: every rank clips the same summed gradients.
        hooks.append(ClipGradients(opts.clip_norm, opts.clip_value, xp=xp))
    trainer = Trainer(model, batch_size=batch_size, shuffle=bool(opts.shuffle),
                      validation=val, stopper=stopper, callbacks=opts.callbacks,
                      hooks=hooks, verbose=opts.verbose if root else 0,
                      checkpoint=opts.checkpoint if root else None,
                      checkpoint_every=opts.checkpoint_every,
                      on_nonfinite=opts.on_nonfinite, fit_record=record,
                      extra_metrics=metrics)
    try:
        return trainer.run(data, remaining, history=history, stopper_state=stopper_state,
                           best_params=best_params)
    finally:
        if par is not None:
            par.finish(model)


def _fit_stream(model, source, opts: FitOptions) -> History:
    """:func:`fit_model` for an iterable of ``(X, y)`` batches (see :class:`BatchStream`)."""
    for name, value, why in (
            ("validation_split", opts.validation_split > 0, "pass validation_data"),
            ("sample_weight", opts.sample_weight is not None, "pass arrays"),
            ("class_weight", opts.class_weight is not None, "pass arrays"),
            ("checkpoint", opts.checkpoint is not None, "pass arrays or a memory map"),
            ("resume", opts.resume is not None, "pass arrays or a memory map"),
            ("comm", opts.parallel is not None, "pass arrays")):
        if value:
            raise ValueError(f"fit({name}=...) does not take an iterable of batches yet; "
                             f"{why}.")
    stopper = opts.stopper
    vd = opts.validation_data
    if vd is not None and (not isinstance(vd, (tuple, list)) or len(vd) != 2):
        raise ValueError("validation_data must be a tuple (X_val, y_val).")
    metrics = get_metrics(opts.metrics, output=model.output.name)
    data = BatchStream(source, model)  # one checking pass; builds the model
    first = model.layers[0]
    if getattr(first, "adapted", True) is False:
        raise ValueError(f"The model's input {type(first).__name__} layer is not adapted "
                         "and an iterable of batches cannot adapt it: call "
                         "model.layers[0].adapt(X_sample) with a representative sample "
                         "first.")
    val = None
    if vd is not None:
        Xv = model.features(vd[0], "X_val")
        Yv, lv = model.to_device_y(vd[1], int(Xv.shape[0]), "y_val")
        val = (Xv, Yv, lv)
    names = {m.name for m in metrics}
    if stopper is not None:
        if stopper.monitor is None and val is None:
            raise ValueError("early_stopping watches the validation loss ('val_loss') but "
                             "there is no validation data: pass validation_data, or watch "
                             "the training loss explicitly with "
                             "early_stopping={'monitor': 'loss', ...}.")
        check_monitor(stopper.monitor or "val_loss", model=model, has_val=val is not None,
                      metrics=names)
    for cb in opts.callbacks:
        if isinstance(getattr(cb, "monitor", None), str):
            check_monitor(cb.monitor, model=model, has_val=val is not None, metrics=names,
                          who=type(cb).__name__)
    if opts.optimizer is not None or model.state_ is None:
        model.compile(opts.optimizer if opts.optimizer is not None else "sgd")
    hooks: list = []
    if opts.clip_norm is not None or opts.clip_value is not None:
        hooks.append(ClipGradients(opts.clip_norm, opts.clip_value, xp=model.backend.xp))
    trainer = Trainer(model, batch_size=max(data.sizes), shuffle=False, validation=val,
                      stopper=stopper, callbacks=opts.callbacks, hooks=hooks,
                      verbose=opts.verbose, on_nonfinite=opts.on_nonfinite,
                      extra_metrics=metrics)
    return trainer.run(data, opts.epochs)


# ---------------------------------------------------------------------- helpers
def _flat_totals(host) -> dict:
    """The metrics' host sums (``[m.totals() for m in metrics]``) as one float per key
    (``"metric 0 tp 3"``), so that a data-parallel hook's :meth:`StepHook.epoch_totals`
    can sum them like the others."""
    out: dict = {}
    for i, sums in enumerate(host):
        for key, value in sums.items():
            for j, v in enumerate(np.ravel(value).tolist()):
                out[f"metric {i} {key} {j}"] = float(v)
    return out


def _unflat_totals(totals, i, sums) -> dict:
    """Metric ``i``'s sums back from :func:`_flat_totals`'s keys (the shapes of
    ``sums``, its own)."""
    out = {}
    for key, value in sums.items():
        flat = [totals[f"metric {i} {key} {j}"] for j in range(int(np.size(value)))]
        out[key] = np.reshape(np.asarray(flat, dtype=np.float64), np.shape(value))
    return out


def check_monitor(monitor, *, model, has_val, metrics, who="EarlyStopping") -> None:
    """Raise a ValueError when ``monitor`` is not a log entry this ``fit`` will record.

    ``metrics`` are the metrics ``fit`` reports (their names); ``has_val`` whether there
    is validation data.
    """
    if monitor.startswith("val_") and not has_val:
        raise ValueError(f"{who} monitors {monitor!r} but there is no validation data; "
                         "pass validation_data or validation_split.")
    base = monitor[4:] if monitor.startswith("val_") else monitor
    if base == "accuracy" and not model.is_classifier:
        raise ValueError(f"{who} cannot monitor {monitor!r} for a regression model.")
    if base == "perplexity" and not getattr(model, "reports_perplexity", False):
        raise ValueError(f"{who} cannot monitor {monitor!r}: only language "
                         "models (mlpx.LanguageModel) report perplexity.")
    if base not in ("loss", "accuracy", "perplexity") and base not in metrics:
        raise ValueError(f"{who} monitors {monitor!r}, which this fit does not report: "
                         f"add {base!r} to fit(metrics=...) (it reports "
                         f"{sorted(metrics) or 'no metrics'}).")


def normalise_weights(W, xp):
    """Scale sample weights by a power of two so that the largest lies in [1, 2).

    A weighted mean ``sum(w l) / sum(w)`` does not change when every weight is scaled,
    and a power of two scales exactly, so this changes no result; it keeps the batch sums
    of weights far from the float range (weights near 1e38 in float32 would overflow to
    inf and give a loss of 0).
    """
    top = float(xp.max(W))
    if not top > 0 or not math.isfinite(top):
        return W
    exponent = math.frexp(top)[1] - 1  # top = m * 2**e with m in [0.5, 1): [1, 2) at e-1
    if exponent == 0:
        return W
    return W * math.ldexp(1.0, -exponent)


def _class_weights(model, Yd, labels, Wd, class_weight):
    """Sample weights times the class weights of ``fit(class_weight=...)`` (device)."""
    if not model.is_classifier:
        raise ValueError("class_weight needs a classifier (a softmax or sigmoid output); "
                         f"this model's output is {model.output.name!r}.")
    if labels is not None:  # softmax: integer labels, or argmax of the target rows
        y = _backend.to_numpy(labels)
        classes = np.arange(int(model.n_outputs))
    else:  # sigmoid: 0/1 targets, one column per label
        y = (_backend.to_numpy(Yd) > 0.5).astype(np.int64)
        classes = np.array([0, 1]) if y.shape[1] == 1 else None
    weights = class_sample_weight(y, class_weight, classes)
    if Wd is not None:
        weights = weights * _backend.to_numpy(Wd).astype(np.float64)
    if not np.any(weights > 0):
        raise ValueError("Sample weights times class weights are all zero; at least one "
                         "must be non-zero.")
    return _backend.to_device(weights, backend=model.backend, dtype=model.dtype)


def _check_resume(model, ckpt, opt, stopper) -> None:
    """Refuse a checkpoint trained with another optimizer or early stopping."""
    path = ckpt["path"]
    saved = _json_normal(ckpt["training"]["optimizer"]["config"])
    if opt is not None and _json_normal(mio.to_json(opt.get_config())) != saved:
        raise ValueError(f"The checkpoint {path} was trained with optimizer {saved}, "
                         f"not {opt.get_config()}; pass optimizer=None (or the same "
                         "one) to resume.")
    fit_info = ckpt["training"].get("fit")
    if fit_info is not None:
        had = fit_info.get("early_stopping")
        now = None if stopper is None else _json_normal(stopper_config(stopper))
        if _json_normal(had) != now:
            raise ValueError(f"The checkpoint {path} was trained with early_stopping="
                             f"{had}, not {now}; pass the same early_stopping to "
                             "resume.")


def _fingerprint(model, *arrays) -> list:
    """Sums of the training arrays: a cheap check that a resumed run sees the same data."""
    xp = model.backend.xp
    out: list = []
    for a in arrays:
        if a is None:
            out.append(None)
        elif isinstance(a, HostRows):
            out.append(a.sum())
        elif hasattr(xp, "float64"):
            out.append(float(xp.sum(a, dtype=xp.float64)))
        else:  # pragma: no cover - namespaces without float64
            out.append(float(xp.sum(a)))
    return out


def params_finite(model) -> bool:
    """Whether every parameter is finite (one device reduction, one host read)."""
    xp = model.backend.xp
    ok = None
    for p in model.params:
        f = xp.all(xp.isfinite(p))
        ok = f if ok is None else xp.logical_and(ok, f)
    return True if ok is None else bool(ok)


def memory_error(model, exc, batch_size) -> DeviceMemoryError:
    """Turn a device out-of-memory error into one that says what would fit."""
    requested = _backend.oom_requested_bytes(exc)
    info = _backend.device_memory_info(model.backend)
    free, total = info if info is not None else (None, None)
    itemsize = 8 if model.dtype == "float64" else 4
    # Rough bytes per sample of one step: inputs, every layer's output and cache, and
    # the gradients flowing back (about three copies of each activation).
    widths = [model.n_features] + [int(getattr(layer, "n_out", 0) or 0)
                                  for layer in model.layers]
    per_sample = itemsize * (widths[0] + 3 * sum(widths[1:]))
    suggested = None
    if free is not None and per_sample > 0:
        fits = int(0.8 * free // per_sample)
        suggested = min(fits, max(1, batch_size // 2)) if fits >= 1 else None
    parts = [f"The device ran out of memory during a training step with "
             f"batch_size={batch_size}"]
    if requested is not None:
        parts.append(f"an allocation of {_bytes(requested)} was refused")
    if free is not None:
        parts.append(f"{_bytes(free)} of {_bytes(total)} are free")
    msg = "; ".join(parts) + "."
    if suggested is not None:
        msg += (f" A step needs roughly {_bytes(per_sample)} per sample, so "
                f"batch_size={suggested} should fit (an estimate): pass it to fit "
                "(mlpx train --batch-size).")
    else:
        msg += (" Not even a single sample seems to fit: free device memory (other "
                "processes, cupy.get_default_memory_pool().free_all_blocks()) or use "
                "a smaller model.")
    return DeviceMemoryError(msg, requested=requested, free=free, total=total,
                             batch_size=batch_size, suggested_batch_size=suggested)


def _json_normal(obj):
    """``obj`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(obj, sort_keys=True))


def stopper_config(stopper) -> dict:
    """The JSON form of an :class:`EarlyStopping` a checkpoint records."""
    return {"patience": int(stopper.patience), "min_delta": float(stopper.min_delta),
            "restore_best": bool(stopper.restore_best), "monitor": stopper.monitor}


def _check_same_run(saved, now, path) -> None:
    """Raise a ValueError when a resumed fit does not see the interrupted run's data."""
    diffs = []
    for key in ("n_samples", "n_features", "batch_size", "shuffle", "validation", "n_val"):
        if saved.get(key) != now.get(key):
            diffs.append(f"{key}: {saved.get(key)!r} in the checkpoint, {now.get(key)!r} now")
    a, b = saved.get("fingerprint") or [], now["fingerprint"]
    same = len(a) == len(b) and all(
        (x is None) == (y is None)
        and (x is None or math.isclose(float(x), y, rel_tol=1e-5, abs_tol=1e-6))
        for x, y in zip(a, b))
    if not same:
        diffs.append("the data differ from the checkpoint's (their sums do not match)")
    if diffs:
        raise ValueError(f"resume={path!r} needs the same data and arguments as the "
                         f"interrupted run: {'; '.join(diffs)}.")


def _bytes(n) -> str:
    if n is None:
        return "an unknown amount"
    value, unit = float(n), "bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{int(n):,} bytes" if unit == "bytes" else f"{int(n):,} bytes ({value:.2f} {unit})"


def _copy(a, xp):
    return xp.asarray(a, copy=True)


__all__ += ["Callback", "normalise_weights", "params_finite", "memory_error",
            "stopper_config", "check_monitor"]
