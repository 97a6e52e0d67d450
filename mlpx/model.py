"""Models: :class:`Sequential` (any stack of layers) and :class:`MLP` (the usual builder).

A model is bound to one backend (namespace + device) when it is built; its parameters
live there for its whole life. ``fit`` takes host (NumPy) data or arrays already in the
model's namespace, moves host data to the device once, and trains without host
synchronisation inside the epoch: losses accumulate on the device and are read once per
epoch.
"""

from __future__ import annotations

import copy
import math
import time
import warnings

import numpy as np

from . import _backend, _fast
from .activations import get_activation
from .initializers import default_initializer
from ._validation import check_float, check_int
from .layers import ActivationLayer, Dense, Dropout, Maxout, PReLU, get_layer
from .losses import get_loss, l2_penalty, one_hot
from .optimizers import get_optimizer
from .training import (Callback, DeviceMemoryError, EarlyStopping, Evaluation, History,
                       NonFiniteLossError, NonFiniteLossWarning, as_callbacks,
                       as_early_stopping)

__all__ = ["Sequential", "MLP", "model_from_config"]

_CLASSIFIER_OUTPUTS = ("softmax", "sigmoid")
_PREDICT_BATCH = 8192


class Sequential:
    """A stack of layers followed by an output activation and a loss.

    Parameters
    ----------
    layers : list of Layer or layer config dicts
        The hidden stack; the last layer produces the logits.
    loss : str, dict or Loss, default="cross_entropy"
        See :mod:`mlpx.losses`.
    output : str, dict, Activation or None, default=None
        Output activation; None picks the loss's natural one (softmax for cross-entropy,
        sigmoid for binary cross-entropy, identity for squared error).
    alpha : float, default=0.0
        L2 penalty ``alpha / 2 * sum ||W||^2`` over weights (never biases).
    n_features : int or None, default=None
        Input width; None builds the model on the first call to ``fit``.
    backend : {"numpy", "cupy", "array_api_strict"} or namespace, default="numpy"
    dtype : {"float32", "float64"}, default="float32"
    seed : int, numpy.random.Generator or None, default=None
        Seeds weight initialisation, shuffling and dropout. Same seed, same result.

    Attributes
    ----------
    backend : mlpx._backend.Backend
    history_ : History or None
        What the last ``fit`` recorded.
    """

    def __init__(self, layers, *, loss="cross_entropy", output=None, alpha=0.0,
                 n_features=None, backend="numpy", dtype="float32", seed=None):
        self.backend = _backend.resolve_backend(backend)
        self.dtype = _backend.dtype_name(dtype)
        self.loss = get_loss(loss)
        self.output = get_activation(output if output is not None else self.loss.default_output)
        self.alpha = check_float(alpha, "alpha", type(self).__name__, low=0.0)
        if not isinstance(layers, (list, tuple)) or len(layers) == 0:
            raise ValueError(
                f"The 'layers' parameter of {type(self).__name__} must be a non-empty list "
                f"of layers. Got {layers!r} instead."
            )
        self.layers = [get_layer(layer) for layer in layers]
        _backend.host_rng(seed)  # validates the type
        self.seed = seed if not isinstance(seed, np.random.Generator) else None
        init_seed, train_seed = np.random.SeedSequence(
            None if isinstance(seed, np.random.Generator) else seed
        ).spawn(2)
        if isinstance(seed, np.random.Generator):
            self._init_rng = seed
            self._train_rng = np.random.default_rng(seed.integers(2**63))
        else:
            self._init_rng = np.random.default_rng(init_seed)
            self._train_rng = np.random.default_rng(train_seed)
        self._noise_rng = None
        self.n_features = None
        self.optimizer_ = None
        self.optimizer_state_ = None
        self.history_ = None
        self.epoch_ = 0
        self.stop_training = False
        if n_features is not None:
            self.build(n_features)

    # ------------------------------------------------------------------ structure
    @property
    def built(self) -> bool:
        return self.n_features is not None

    def build(self, n_features: int) -> "Sequential":
        """Create every parameter for inputs of width ``n_features`` (on the device)."""
        if isinstance(n_features, bool) or not isinstance(n_features, (int, np.integer)) \
                or n_features < 1:
            raise ValueError(
                f"The 'n_features' parameter of {type(self).__name__} must be an int >= 1. "
                f"Got {n_features!r} instead."
            )
        width = int(n_features)
        for layer in self.layers:
            width = layer.build(width, backend=self.backend, dtype=self.dtype,
                                rng=self._init_rng)
        self.n_features = int(n_features)
        self.n_outputs = width
        return self

    @property
    def params(self) -> list:
        """All trainable parameters, layer by layer (arrays in the model's namespace)."""
        return [p for layer in self.layers for p in layer.params]

    def set_params(self, params) -> None:
        """Replace all parameters with copies of ``params`` (aligned with :attr:`params`).

        Host arrays are moved to the model's device; shapes and dtypes must match.
        """
        params = list(params)
        current = self.params
        if len(params) != len(current):
            raise ValueError(f"Expected {len(current)} parameters, got {len(params)}.")
        xp = self.backend.xp
        new = []
        for i, (p, old) in enumerate(zip(params, current)):
            p = _backend.to_device(p, backend=self.backend, dtype=self.dtype)
            if tuple(p.shape) != tuple(old.shape):
                raise ValueError(f"Parameter {i} must have shape {tuple(old.shape)}; got "
                                 f"{tuple(p.shape)}.")
            new.append(_copy(p, xp))
        self._assign_params(new)

    def _assign_params(self, params) -> None:
        """Install ``params`` as they are (no copy): the model now owns them."""
        params = list(params)
        i = 0
        for layer in self.layers:
            n = len(layer.params)
            layer.params = params[i:i + n]
            i += n
        if i != len(params):
            raise ValueError(f"Expected {i} parameters, got {len(params)}.")

    @property
    def decay_mask(self) -> list:
        return [d for layer in self.layers for d in layer.decay]

    @property
    def is_classifier(self) -> bool:
        return self.output.name in _CLASSIFIER_OUTPUTS

    @property
    def n_params(self) -> int:
        return int(sum(math.prod(p.shape) for p in self.params))

    def __repr__(self):
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return (f"{type(self).__name__}([\n  {inner}\n], loss={self.loss.name!r}, "
                f"output={self.output.name!r}, backend={self.backend.name!r}, "
                f"dtype={self.dtype!r})")

    def get_config(self) -> dict:
        """JSON-serialisable description; :func:`model_from_config` rebuilds the model."""
        return {
            "class": "Sequential",
            "layers": [layer.get_config() for layer in self.layers],
            "loss": self.loss.get_config(),
            "output": self.output.get_config(),
            "alpha": self.alpha,
            "n_features": self.n_features,
            "dtype": self.dtype,
        }

    # ------------------------------------------------------------------ input checks
    def _to_device_X(self, X, what="X"):
        """Validate a feature matrix and return it on the device in the model's dtype."""
        X = _as_numeric(X, what, self.backend)
        xp = self.backend.xp
        if X.ndim != 2:
            hint = " Reshape a single feature with X.reshape(-1, 1) or a single sample " \
                   "with X.reshape(1, -1)." if X.ndim == 1 else ""
            raise ValueError(f"{what} must be a 2-D array of shape (n_samples, n_features); "
                             f"got an array of shape {tuple(X.shape)}.{hint}")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"{what} is empty (shape {tuple(X.shape)}); it needs at least one "
                             "sample and one feature.")
        if self.built and X.shape[1] != self.n_features:
            raise ValueError(f"{what} has {X.shape[1]} features, but this model expects "
                             f"{self.n_features}.")
        X = _backend.to_device(X, backend=self.backend, dtype=self.dtype)
        if not bool(xp.all(xp.isfinite(X))):
            raise ValueError(f"{what} contains NaN or infinity; clean or impute it first.")
        return X

    def _to_device_y(self, y, n_samples, what="y"):
        """Validate targets; return (float targets of shape (n, k), int labels or None)."""
        xp = self.backend.xp
        y = _as_numeric(y, what, self.backend)
        k = self.n_outputs if self.built else None
        if y.ndim == 0 or y.shape[0] != n_samples:
            raise ValueError(f"{what} has {y.shape[0] if y.ndim else 0} samples but X has "
                             f"{n_samples}; they must match.")
        if y.ndim not in (1, 2):
            raise ValueError(f"{what} must be 1-D or 2-D; got shape {tuple(y.shape)}.")
        yd = _backend.to_device(y, backend=self.backend)
        if not bool(xp.all(xp.isfinite(xp.astype(yd, xp.float64 if _has_f64(xp) else xp.float32)))):
            raise ValueError(f"{what} contains NaN or infinity.")
        name = self.output.name
        if name == "softmax" and yd.ndim == 1:
            if k is None:
                raise ValueError("Build the model (n_features=...) before passing integer "
                                 "labels, or pass one-hot targets.")
            yf = xp.astype(yd, xp.float64 if _has_f64(xp) else xp.float32)
            if not bool(xp.all(yf == xp.round(yf))):
                raise ValueError(f"{what} holds class labels and must be integers; got "
                                 "non-integer values.")
            lo, hi = float(xp.min(yf)), float(xp.max(yf))
            if lo < 0 or hi >= k:
                raise ValueError(f"{what} labels must lie in [0, {k}) for a model with {k} "
                                 f"outputs; got labels from {lo:g} to {hi:g}.")
            labels = xp.astype(yd, xp.int64)
            Y = one_hot(labels, k, xp=xp, dtype=_backend.resolve_dtype(self.dtype, xp),
                        device=self.backend.device)
            return Y, labels
        if yd.ndim == 1:
            yd = xp.reshape(yd, (n_samples, 1))
        if k is not None and yd.shape[1] != k:
            raise ValueError(f"{what} has {yd.shape[1]} columns, but the model has {k} "
                             "outputs.")
        Y = xp.astype(yd, _backend.resolve_dtype(self.dtype, xp))
        if name in _CLASSIFIER_OUTPUTS:
            lo, hi = float(xp.min(Y)), float(xp.max(Y))
            if lo < 0 or hi > 1:
                raise ValueError(f"{what} must hold probabilities in [0, 1] for a {name} "
                                 f"output; got values from {lo:g} to {hi:g}.")
            labels = xp.argmax(Y, axis=1) if name == "softmax" else None
            return Y, labels
        return Y, None

    def _to_device_weights(self, sample_weight, n_samples):
        if sample_weight is None:
            return None
        xp = self.backend.xp
        w = _as_numeric(sample_weight, "sample_weight", self.backend)
        if w.ndim != 1 or w.shape[0] != n_samples:
            raise ValueError(f"sample_weight must be 1-D with {n_samples} entries; got shape "
                             f"{tuple(w.shape)}.")
        w = _backend.to_device(w, backend=self.backend, dtype=self.dtype)
        if not bool(xp.all(xp.isfinite(w))) or bool(xp.any(w < 0)):
            raise ValueError("sample_weight must be finite and >= 0.")
        if not bool(xp.any(w > 0)):
            raise ValueError("sample_weight must have at least one positive entry.")
        return w

    # ------------------------------------------------------------------ math
    def _forward(self, x, *, training):
        caches = []
        for layer in self.layers:
            x, cache = layer.forward(x, xp=self.backend.xp, training=training,
                                     rng=self._noise_rng if training else None)
            caches.append(cache)
        return x, caches

    def _backward(self, dz, caches):
        xp = self.backend.xp
        grads = [None] * len(self.layers)
        for i in range(len(self.layers) - 1, -1, -1):
            dz, grads[i] = self.layers[i].backward(dz, caches[i], xp=xp, need_dx=i > 0)
        return [g for gs in grads for g in gs]

    def loss_and_grads(self, X, Y, sample_weight=None, *, training=True):
        """Return ``(loss, grads, logits)`` for one batch already on the device.

        ``loss`` is a 0-d array (L2 penalty included) and ``grads`` is aligned with
        :attr:`params`. This is the whole of backprop; :meth:`fit` adds the update.
        """
        xp = self.backend.xp
        z, caches = self._forward(X, training=training)
        loss, dz = self.loss.value_and_grad(z, Y, output=self.output, xp=xp,
                                            sample_weight=sample_weight)
        grads = self._backward(dz, caches)
        if self.alpha > 0:
            params = self.params
            weights = [p for p, d in zip(params, self.decay_mask) if d]
            loss = loss + l2_penalty(weights, self.alpha, xp=xp)
            grads = [g + self.alpha * p if d else g
                     for g, p, d in zip(grads, params, self.decay_mask)]
        return loss, grads, z

    def train_step(self, X, Y, sample_weight=None):
        """One step of forward, loss gradient, backward and optimizer update.

        ``X`` and ``Y`` (float targets of shape (n, n_outputs)) must already be on the
        device; :meth:`compile` or :meth:`fit` sets the optimizer first. Returns the loss
        and the logits as device arrays (no host synchronisation).
        """
        if self.optimizer_ is None:
            raise RuntimeError("Call compile(optimizer) or fit(...) before train_step.")
        fast = getattr(self, "_fast_step", None)  # see mlpx._fast; None: generic path
        if fast is not None:
            done = fast(self, X, Y, sample_weight)
            if done is not None:
                return done
        loss, grads, z = self.loss_and_grads(X, Y, sample_weight)
        new = self.optimizer_.step(self.params, grads, self.optimizer_state_,
                                   xp=self.backend.xp, decay_mask=self.decay_mask)
        self._assign_params(new)
        return loss, z

    def compile(self, optimizer="sgd", **params) -> "Sequential":
        """Set the optimizer (name, config dict or instance) and fresh optimizer state.

        Parameters
        ----------
        optimizer : str, dict or Optimizer, default="sgd"
        **params
            Optimizer parameters when given by name, e.g. ``lr=0.1``.
        """
        if not self.built:
            raise RuntimeError("Build the model (n_features=... or fit) before compile().")
        self.optimizer_ = get_optimizer(optimizer, **params)
        self.optimizer_state_ = self.optimizer_.init_state(self.params, xp=self.backend.xp)
        if self._noise_rng is None:
            self._noise_rng = _backend.noise_rng(self.backend, self._train_rng)
        self._fast_step = _fast.select_step(self)
        return self

    # ------------------------------------------------------------------ training
    def fit(self, X, y, *, epochs=10, batch_size=32, optimizer=None, validation_data=None,
            validation_split=0.0, shuffle=True, early_stopping=None, callbacks=(),
            sample_weight=None, verbose=1, checkpoint=None, checkpoint_every=1,
            resume=None, on_nonfinite="raise") -> History:
        """Train with minibatch gradient descent.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            NumPy (moved to the device once) or an array of the model's namespace.
        y : array of shape (n_samples,) or (n_samples, n_outputs)
            Integer class labels or one-hot / probability rows for a softmax output,
            0/1 targets for a sigmoid output, real values for regression.
        epochs : int, default=10
            Epochs to train in this call. With ``resume``, counted from the start of the
            interrupted call: training goes on until the epoch that call would have
            reached.
        batch_size : int or None, default=32
            1 is online SGD; None uses the whole training set per step.
        optimizer : str, dict, Optimizer or None, default=None
            None keeps the optimizer (and its state) of a previous ``fit`` or
            :meth:`compile`, else uses ``"sgd"``. A name or config starts fresh state.
            With ``resume`` the checkpoint's optimizer is used; a different one given
            here is an error.
        validation_data : tuple (X_val, y_val), optional
        validation_split : float in [0, 1), default=0.0
            Fraction of the training data held out at random (seeded) for validation
            when ``validation_data`` is not given.
        shuffle : bool, default=True
            Reshuffle the training set every epoch (permutation drawn on the host).
        early_stopping : None, int, dict or EarlyStopping, default=None
            An int is the patience; a dict holds EarlyStopping's parameters.
        callbacks : sequence of Callback or callables, default=()
        sample_weight : array of shape (n_samples,), optional
            Per-sample weights for the loss (a weighted mean per batch).
        verbose : int, default=1
            0 silent, 1 a progress bar over epochs, 2 also a bar over batches.
        checkpoint : str or os.PathLike, optional
            Write a checkpoint (see :func:`mlpx.io.save_checkpoint`) to this file at the
            end of every ``checkpoint_every`` epochs and of the last epoch, atomically:
            weights, optimizer state (hence the schedule's position), epoch, random
            state, history and early-stopping state. Its directory must exist.
        checkpoint_every : int, default=1
            Epochs between checkpoints (counted from epoch 1 of the model).
        resume : str or os.PathLike, optional
            A checkpoint written by ``fit(..., checkpoint=...)`` to continue from. Pass the
            same data and arguments as the interrupted call: on NumPy the result then
            equals an uninterrupted run bit for bit. The model's config must match the
            checkpoint's, and the data are checked against a fingerprint stored in it.
        on_nonfinite : {"raise", "stop"}, default="raise"
            What a NaN/inf loss or weight does: ``"raise"`` a :class:`NonFiniteLossError`
            naming the epoch and batch, ``"stop"`` end training with a
            :class:`NonFiniteLossWarning` (like Keras' TerminateOnNaN) and return the
            history, whose ``stop_reason`` says what happened. Either way the weights
            (and optimizer state) from just before the first bad batch are kept.

        Returns
        -------
        History

        Raises
        ------
        ValueError
            For bad data or parameters, or a checkpoint that does not match the model or
            data; the model is left unchanged.
        mlpx.io.ModelFileError
            When ``resume`` names a file that is not a sound mlpx checkpoint.
        NonFiniteLossError
            When the loss or the weights become NaN or infinite (``on_nonfinite="raise"``).
        DeviceMemoryError
            When the device (CuPy) runs out of memory; the message gives the requested
            and free bytes and a batch size that should fit.

        Notes
        -----
        The loss is accumulated on the device and read once per epoch, together with a
        check that every weight is finite. Only when that check fails is the epoch
        replayed from its start (same weights, optimizer state and random state) with a
        check after every batch, to name the first bad batch and keep the weights from
        just before it. If the replay does not reproduce the failure (a
        non-deterministic device), the weights from the start of the epoch are kept and
        the batch is the first whose recorded loss is not finite.
        """
        from . import io as _io

        owner = type(self).__name__
        epochs = check_int(epochs, "epochs", f"{owner}.fit", low=0)
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", f"{owner}.fit")
        validation_split = check_float(validation_split, "validation_split", owner,
                                       low=0.0, high=1.0, high_open=True)
        stopper = as_early_stopping(early_stopping)
        cbs = as_callbacks(callbacks)
        opt = None if optimizer is None else get_optimizer(optimizer)
        checkpoint_every = check_int(checkpoint_every, "checkpoint_every", f"{owner}.fit")
        if on_nonfinite not in _ON_NONFINITE:
            raise ValueError(f"The 'on_nonfinite' parameter of {owner}.fit must be one of "
                             f"{list(_ON_NONFINITE)}. Got {on_nonfinite!r} instead.")
        if checkpoint is not None:
            checkpoint = _io.check_writable_path(checkpoint, "checkpoint")
        ckpt = fit_info = None
        if resume is not None:
            ckpt = _io._read_checkpoint(resume)
            fit_info = ckpt["training"].get("fit")
            if not self.built:
                width = ckpt["meta"]["config"].get("n_features")
                if isinstance(width, int) and not isinstance(width, bool) and width > 0:
                    self.build(width)
            self._check_resume(ckpt, opt, stopper)

        # Validate everything before changing anything.
        X_probe = _as_numeric(X, "X", self.backend)
        if not self.built and X_probe.ndim == 2:
            self.build(int(X_probe.shape[1]))
        Xd = self._to_device_X(X)
        n = int(Xd.shape[0])
        Yd, labels = self._to_device_y(y, n)
        Wd = self._to_device_weights(sample_weight, n)
        # The split is drawn from the host generator as it was when the (interrupted)
        # call started, so that a resumed run holds out the same samples.
        split_rng = self._train_rng
        if fit_info is not None:
            split_rng = _io._rng_from_state(fit_info["start_rng"])
        elif ckpt is not None:  # a checkpoint from save_checkpoint: as load_checkpoint + fit
            split_rng = _io._rng_from_state(ckpt["training"]["rng"]["train"])
        start_rng = _io._rng_state(split_rng)
        val = None
        n_val = 0
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (X_val, y_val).")
            Xv = self._to_device_X(validation_data[0], "X_val")
            Yv, lv = self._to_device_y(validation_data[1], int(Xv.shape[0]), "y_val")
            val = (Xv, Yv, lv)
        elif validation_split > 0:
            n_val = int(round(n * validation_split))
            if n_val < 1 or n - n_val < 1:
                raise ValueError(f"validation_split={validation_split} leaves an empty "
                                 f"training or validation set for {n} samples.")
            perm = split_rng.permutation(n)
            xp = self.backend.xp
            vi = _backend.to_device(perm[:n_val], backend=self.backend)
            ti = _backend.to_device(np.sort(perm[n_val:]), backend=self.backend)
            val = (xp.take(Xd, vi, axis=0), xp.take(Yd, vi, axis=0),
                   None if labels is None else xp.take(labels, vi, axis=0))
            Xd, Yd = xp.take(Xd, ti, axis=0), xp.take(Yd, ti, axis=0)
            labels = None if labels is None else xp.take(labels, ti, axis=0)
            Wd = None if Wd is None else xp.take(Wd, ti, axis=0)
            n = n - n_val
        if stopper is not None:
            monitor = stopper.monitor or ("val_loss" if val is not None else "loss")
            if monitor.startswith("val_") and val is None:
                raise ValueError(f"EarlyStopping monitors {monitor!r} but there is no "
                                 "validation data; pass validation_data or "
                                 "validation_split.")
            if monitor.endswith("accuracy") and not self.is_classifier:
                raise ValueError(f"EarlyStopping cannot monitor {monitor!r} for a "
                                 "regression model.")
        fit_json = None
        if checkpoint is not None or fit_info is not None:
            fit_json = {
                "start_epoch": int(self.epoch_),
                "epochs": epochs,
                "batch_size": min(batch_size or n, n),
                "shuffle": bool(shuffle),
                "n_samples": n,
                "n_features": int(self.n_features),
                "n_val": n_val if val is None else int(val[0].shape[0]),
                "validation": ("data" if validation_data is not None
                               else "split" if val is not None else None),
                "start_rng": start_rng,
                "early_stopping": None if stopper is None else _stopper_config(stopper),
                "fingerprint": self._fingerprint(Xd, Yd, Wd, *(val[:2] if val else ())),
            }
            if fit_info is not None:
                fit_json["start_epoch"] = int(fit_info["start_epoch"])
                _check_same_run(fit_info, fit_json, ckpt["path"])
            elif ckpt is not None:
                fit_json["start_epoch"] = int(ckpt["training"]["epoch"])

        stopper_state = best_params = history = None
        if ckpt is not None:
            self.set_params([ckpt["arrays"][e["key"]] for e in ckpt["meta"]["params"]])
            _io._apply_training(self, ckpt,
                                train_rng=None if fit_info is not None else split_rng)
            history = self.history_
            if history is None:
                history = History()
            if fit_info is not None:
                stopper_state = fit_info.get("stopper")
                target = int(fit_info["start_epoch"]) + epochs
                remaining = 0 if history.stopped_early else max(0, target - self.epoch_)
            else:
                remaining = epochs
            if stopper is not None and stopper_state is not None:
                best = _io._best_params(ckpt)
                if best is not None:
                    best_params = [_backend.to_device(b, backend=self.backend) for b in best]
        else:
            if opt is not None or self.optimizer_ is None:
                self.compile(opt if opt is not None else "sgd")
            remaining = epochs
        return self._fit_loop(Xd, Yd, labels, Wd, val, epochs=remaining,
                              batch_size=batch_size or n, shuffle=shuffle, stopper=stopper,
                              callbacks=cbs, verbose=int(verbose), history=history,
                              stopper_state=stopper_state, best_params=best_params,
                              checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                              fit_json=fit_json, on_nonfinite=on_nonfinite)

    def _check_resume(self, ckpt, opt, stopper) -> None:
        """Refuse a checkpoint that belongs to another model, optimizer or stopper."""
        from . import io as _io

        path = ckpt["path"]
        mine = _json_normal(_io._to_json(self.get_config()))
        theirs = _json_normal(ckpt["meta"]["config"])
        if mine != theirs:
            keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise ValueError(f"The checkpoint {path} belongs to a different model (config "
                             f"keys that differ: {keys}); build the model with the config "
                             "it was saved from, or load it with mlpx.io.load_checkpoint.")
        saved = _json_normal(ckpt["training"]["optimizer"]["config"])
        if opt is not None and _json_normal(_io._to_json(opt.get_config())) != saved:
            raise ValueError(f"The checkpoint {path} was trained with optimizer {saved}, "
                             f"not {opt.get_config()}; pass optimizer=None (or the same "
                             "one) to resume.")
        fit_info = ckpt["training"].get("fit")
        if fit_info is not None:
            had = fit_info.get("early_stopping")
            now = None if stopper is None else _json_normal(_stopper_config(stopper))
            if _json_normal(had) != now:
                raise ValueError(f"The checkpoint {path} was trained with early_stopping="
                                 f"{had}, not {now}; pass the same early_stopping to "
                                 "resume.")

    def _fingerprint(self, *arrays) -> list:
        """Sums of the training arrays: a cheap check that a resumed run sees the same data."""
        xp = self.backend.xp
        out = []
        for a in arrays:
            if a is None:
                out.append(None)
                continue
            if _has_f64(xp):
                out.append(float(xp.sum(a, dtype=xp.float64)))
            else:  # pragma: no cover - namespaces without float64
                out.append(float(xp.sum(a)))
        return out

    def _begin_epoch(self, n, shuffle):
        """Draw the epoch's randomness from the host generator and return the permutation.

        The host generator's state at an epoch boundary is all a checkpoint needs: a
        device noise generator (CuPy's, for dropout) is re-seeded from it here, and on
        CPU backends dropout draws from the host generator itself.
        """
        if self._noise_rng is not self._train_rng:
            self._noise_rng = _backend.noise_rng(self.backend, self._train_rng)
        if not shuffle:
            return None
        return _backend.to_device(self._train_rng.permutation(n), backend=self.backend)

    def _batch(self, data, perm, start, stop):
        X, Y, labels, W = data
        if perm is None:
            xb, yb = X[start:stop, ...], Y[start:stop, ...]
            wb = None if W is None else W[start:stop, ...]
            lb = None if labels is None else labels[start:stop, ...]
            return xb, yb, wb, lb
        xp = self.backend.xp
        idx = perm[start:stop]
        xb, yb = xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0)
        wb = None if W is None else xp.take(W, idx, axis=0)
        lb = None if labels is None else xp.take(labels, idx, axis=0)
        return xb, yb, wb, lb

    def _params_finite(self) -> bool:
        """Whether every parameter is finite (one device reduction, one host read)."""
        xp = self.backend.xp
        ok = None
        for p in self.params:
            f = xp.all(xp.isfinite(p))
            ok = f if ok is None else xp.logical_and(ok, f)
        return True if ok is None else bool(ok)

    def _fit_loop(self, X, Y, labels, W, val, *, epochs, batch_size, shuffle, stopper,
                  callbacks, verbose, history=None, stopper_state=None, best_params=None,
                  checkpoint=None, checkpoint_every=1, fit_json=None, on_nonfinite="raise"):
        from tqdm.auto import tqdm

        xp = self.backend.xp
        n = int(X.shape[0])
        batch_size = min(batch_size, n)
        n_batches = -(-n // batch_size)
        data = (X, Y, labels, W)
        history = History() if history is None else history
        self.history_ = history
        self.stop_training = False
        monitor = None
        best, best_epoch, wait = math.inf, None, 0
        if stopper is not None:
            monitor = stopper.monitor or ("val_loss" if val is not None else "loss")
            sign = -1.0 if monitor.endswith("accuracy") else 1.0
            if stopper_state is not None:
                best = float(stopper_state["best"])
                best_epoch = stopper_state["best_epoch"]
                wait = int(stopper_state["wait"])
        good_params = [_copy(p, xp) for p in self.params]
        for cb in callbacks:
            cb.on_train_begin(self)
        bar = tqdm(total=epochs, unit="epoch", disable=verbose < 1, leave=True,
                   desc=f"{type(self).__name__} [{self.backend.name}]")
        # A diverging run is reported once, as NonFiniteLossError, not as a stream of
        # NumPy overflow warnings.
        quiet = np.errstate(over="ignore", invalid="ignore", divide="ignore")
        quiet.__enter__()
        try:
            for i in range(epochs):
                epoch = self.epoch_ + 1
                t0 = time.perf_counter()
                # What a replay of this epoch needs, should it fail (see _recover).
                rng_state = self._train_rng.bit_generator.state
                state0 = _map_arrays(self.optimizer_state_, lambda a: _copy(a, xp))
                perm = self._begin_epoch(n, shuffle)
                total = 0.0
                correct = 0.0
                losses = []
                lr = self.optimizer_.current_lr(self.optimizer_state_["step"])
                inner = tqdm(total=n_batches, unit="batch", leave=False,
                             disable=verbose < 2, desc=f"epoch {epoch}")
                for start in range(0, n, batch_size):
                    stop = min(start + batch_size, n)
                    xb, yb, wb, lb = self._batch(data, perm, start, stop)
                    try:
                        loss, z = self.train_step(xb, yb, wb)
                    except Exception as exc:
                        if _backend.is_out_of_memory(exc):
                            raise self._memory_error(exc, batch_size) from exc
                        raise
                    losses.append(loss)
                    total = total + loss * (stop - start)
                    if self.is_classifier:
                        correct = correct + self._count_correct(z, yb, lb)
                    inner.update(1)
                inner.close()
                train_loss = float(total) / n
                if not (math.isfinite(train_loss) and self._params_finite()):
                    error = self._recover(data, n, batch_size, shuffle, epoch=epoch,
                                          n_batches=n_batches, lr=lr, losses=losses,
                                          train_loss=train_loss, params0=good_params,
                                          state0=state0, rng_state=rng_state)
                    if on_nonfinite == "raise":
                        raise error
                    warnings.warn(str(error), NonFiniteLossWarning, stacklevel=3)
                    history.stopped_early = True
                    history.stop_reason = str(error)
                    break
                good_params = [_copy(p, xp) for p in self.params]
                self.epoch_ = epoch
                logs = {"loss": train_loss}
                if self.is_classifier:
                    logs["accuracy"] = float(correct) / n
                if val is not None:
                    vl, va = self._evaluate_device(*val)
                    logs["val_loss"] = vl
                    if va is not None:
                        logs["val_accuracy"] = va
                seconds = time.perf_counter() - t0
                logs["seconds"] = seconds
                logs["lr"] = lr
                history.append(epoch, logs)
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()
                                 if k not in ("seconds", "lr")} | {"samples/s": f"{n / seconds:.3g}"})
                for cb in callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                if stopper is not None:
                    value = sign * logs[monitor]
                    if value < best - stopper.min_delta:
                        best, best_epoch, wait = value, epoch, 0
                        if stopper.restore_best:
                            best_params = [_copy(p, xp) for p in self.params]
                    else:
                        wait += 1
                        if wait >= stopper.patience:
                            self.stop_training = True
                if self.stop_training:
                    history.stopped_early = True
                if checkpoint is not None and (epoch % checkpoint_every == 0
                                               or i == epochs - 1 or self.stop_training):
                    self._write_checkpoint(checkpoint, fit_json, stopper, best, best_epoch,
                                           wait, best_params)
                if self.stop_training:
                    break
        finally:
            quiet.__exit__(None, None, None)
            bar.close()
        if stopper is not None:
            history.best_epoch = best_epoch
            if stopper.restore_best and best_params is not None:
                self._assign_params(best_params)
        for cb in callbacks:
            cb.on_train_end(self, history)
        return history

    def _write_checkpoint(self, path, fit_json, stopper, best, best_epoch, wait,
                          best_params) -> None:
        from . import io as _io

        info = dict(fit_json)
        info["stopper"] = None if stopper is None else {
            "best": best, "best_epoch": best_epoch, "wait": wait}
        arrays = best_params if stopper is not None and stopper.restore_best else None
        _io.save_checkpoint(self, path, fit_state={"json": info, "arrays": arrays})

    def _recover(self, data, n, batch_size, shuffle, *, epoch, n_batches, lr, losses,
                 train_loss, params0, state0, rng_state) -> NonFiniteLossError:
        """Find the first bad batch of a failed epoch and keep the weights from before it.

        Replays the epoch from its start (weights ``params0``, optimizer state ``state0``,
        host random state ``rng_state``) with a host check after every batch. Returns the
        error to raise (or warn with); the model then holds the last good weights.
        """
        xp = self.backend.xp
        copy_state = lambda s: _map_arrays(s, lambda a: _copy(a, xp))  # noqa: E731
        self._assign_params([_copy(p, xp) for p in params0])
        self.optimizer_state_ = copy_state(state0)
        self._train_rng.bit_generator.state = rng_state
        perm = self._begin_epoch(n, shuffle)
        found = None
        for j, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            before = [_copy(p, xp) for p in self.params]
            before_state = copy_state(self.optimizer_state_)
            xb, yb, wb, _ = self._batch(data, perm, start, stop)
            loss, _ = self.train_step(xb, yb, wb)
            value = float(loss)
            if not math.isfinite(value):
                found = (j, "loss", value)
            elif not self._params_finite():
                found = (j, "weights", value)
            if found is not None:
                self._assign_params(before)
                self.optimizer_state_ = before_state
                break
        hint = (f"Lower the learning rate (now {lr:g}), scale the inputs, or add "
                "regularisation; fit(..., on_nonfinite='stop') ends training without an "
                "error instead.")
        if found is not None:
            j, what, value = found
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
        self._assign_params([_copy(p, xp) for p in params0])
        self.optimizer_state_ = copy_state(state0)
        values = _backend.to_numpy(xp.stack([xp.asarray(v) for v in losses]))
        bad = np.flatnonzero(~np.isfinite(values))
        batch = int(bad[0]) + 1 if bad.size else None
        what = "loss" if bad.size else "weights"
        where = f"batch {batch} of {n_batches}" if batch else "its last batch"
        return NonFiniteLossError(
            f"The training {what} became non-finite in epoch {epoch} ({where}; mean loss "
            f"{train_loss}); the weights of epoch {epoch - 1} were restored. {hint}",
            epoch=epoch, batch=batch, n_batches=n_batches, what=what)

    def _memory_error(self, exc, batch_size) -> DeviceMemoryError:
        """Turn a device out-of-memory error into one that says what would fit."""
        requested = _backend.oom_requested_bytes(exc)
        info = _backend.device_memory_info(self.backend)
        free, total = info if info is not None else (None, None)
        itemsize = 8 if self.dtype == "float64" else 4
        # Rough bytes per sample of one step: inputs, every layer's output and cache, and
        # the gradients flowing back (about three copies of each activation).
        widths = [self.n_features] + [int(getattr(layer, "n_out", 0) or 0)
                                      for layer in self.layers]
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

    def _count_correct(self, z, Y, labels):
        """Correct predictions in a batch as a device scalar (no host sync)."""
        xp = self.backend.xp
        if self.output.name == "softmax":
            if labels is None:
                labels = xp.argmax(Y, axis=1)
            hit = xp.argmax(z, axis=1) == labels
        else:  # sigmoid: a row counts when every output is right
            hit = xp.all((z > 0) == (Y > 0.5), axis=1)
        return xp.sum(xp.astype(hit, z.dtype))

    # ------------------------------------------------------------------ inference
    def _logits(self, X, batch_size=None):
        xp = self.backend.xp
        n = int(X.shape[0])
        step = batch_size or _PREDICT_BATCH
        if n <= step:
            return self._forward(X, training=False)[0]
        parts = [self._forward(X[i:min(i + step, n), ...], training=False)[0]
                 for i in range(0, n, step)]
        return xp.concat(parts, axis=0)

    def _check_ready(self):
        if not self.built:
            raise RuntimeError(f"This {type(self).__name__} is not built yet; call fit() "
                               "first or pass n_features.")

    def decision_function(self, X, *, batch_size=None):
        """Logits (pre-output-activation values) of shape (n_samples, n_outputs)."""
        self._check_ready()
        return self._logits(self._to_device_X(X), batch_size)

    def predict_proba(self, X, *, batch_size=None):
        """Output activations of shape (n_samples, n_outputs), in the model's namespace.

        Class probabilities for softmax / sigmoid outputs; predictions for regression.
        """
        z = self.decision_function(X, batch_size=batch_size)
        return self.output.forward(z, xp=self.backend.xp)

    def predict(self, X, *, batch_size=None):
        """Predictions in the model's namespace.

        Softmax outputs give integer class labels of shape (n_samples,); a single sigmoid
        output gives 0/1 labels of shape (n_samples,), several give a 0/1 matrix;
        regression gives the outputs of shape (n_samples, n_outputs).
        """
        xp = self.backend.xp
        z = self.decision_function(X, batch_size=batch_size)
        name = self.output.name
        if name == "softmax":
            return xp.argmax(z, axis=1)
        if name == "sigmoid":
            hit = xp.astype(z > 0, xp.int64)
            return hit[:, 0] if hit.shape[1] == 1 else hit
        return self.output.forward(z, xp=xp)

    def _evaluate_device(self, X, Y, labels, sample_weight=None):
        xp = self.backend.xp
        z = self._logits(X)
        loss = self.loss.value(z, Y, output=self.output, xp=xp, sample_weight=sample_weight)
        if self.alpha > 0:
            weights = [p for p, d in zip(self.params, self.decay_mask) if d]
            loss = loss + l2_penalty(weights, self.alpha, xp=xp)
        acc = None
        if self.is_classifier:
            acc = float(self._count_correct(z, Y, labels)) / int(X.shape[0])
        return float(loss), acc

    def evaluate(self, X, y, *, sample_weight=None) -> Evaluation:
        """Mean loss (L2 penalty included) and accuracy (None for regression).

        Returns
        -------
        Evaluation
            A named tuple ``(loss, accuracy)`` of Python floats.
        """
        self._check_ready()
        Xd = self._to_device_X(X)
        Yd, labels = self._to_device_y(y, int(Xd.shape[0]))
        Wd = self._to_device_weights(sample_weight, int(Xd.shape[0]))
        return Evaluation(*self._evaluate_device(Xd, Yd, labels, Wd))

    # ------------------------------------------------------------------ saving
    def save(self, path) -> str:
        """Save the config and parameters to ``path``: a safe ``.npz`` (no pickle), written
        atomically. :func:`mlpx.load` reads it back on any backend. See :mod:`mlpx.io`.

        Returns
        -------
        str
            The absolute path written.
        """
        from . import io as _io

        return _io.save(self, path)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = self.__dict__.copy()
        layers = []
        for layer in self.layers:
            c = copy.copy(layer)
            c.params = [_backend.to_numpy(p) for p in layer.params]
            layers.append(c)
        state["layers"] = layers
        if self.optimizer_state_ is not None:
            state["optimizer_state_"] = _map_arrays(self.optimizer_state_, _backend.to_numpy)
        state["backend"] = self.backend.name
        state["_noise_rng"] = None
        state.pop("_fast_step", None)  # buffers are never pickled
        return state

    def __setstate__(self, state):
        backend = _backend.resolve_backend(state["backend"])
        state["backend"] = backend
        move = lambda a: _backend.to_device(a, backend=backend)  # noqa: E731
        for layer in state["layers"]:
            layer.params = [move(p) for p in layer.params]
        if state.get("optimizer_state_") is not None:
            state["optimizer_state_"] = _map_arrays(state["optimizer_state_"], move)
        self.__dict__.update(state)
        if self.optimizer_ is not None:
            self._noise_rng = _backend.noise_rng(backend, self._train_rng)
            self._fast_step = _fast.select_step(self)


class MLP(Sequential):
    """A multilayer perceptron built from a list of layer widths.

    Parameters
    ----------
    layer_sizes : list of int
        ``[n_features, hidden_1, ..., n_outputs]``, e.g. ``[784, 512, 512, 10]``.
    activation : str, dict or Activation, default="relu"
        Hidden activation (see :mod:`mlpx.activations`), or ``"prelu"`` for learnable
        per-unit slopes, or ``"maxout"`` for maxout units with ``maxout_k`` pieces.
    loss : str, dict or Loss, default="cross_entropy"
    output : str or None, default=None
        None picks the loss's natural output activation.
    init : str, dict or None, default=None
        Weight initializer; None picks He for the ReLU family, Glorot otherwise.
    dropout : float in [0, 1), default=0.0
        Dropout after every hidden activation.
    alpha : float, default=0.0
        L2 penalty ``alpha / 2 * sum ||W||^2``.
    maxout_k : int, default=2
        Pieces per unit when ``activation="maxout"``.
    backend, dtype, seed
        As for :class:`Sequential`.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx import MLP
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    >>> y = np.array([0, 1, 1, 0])
    >>> model = MLP([2, 16, 2], activation="tanh", seed=0)
    >>> history = model.fit(X, y, epochs=300, batch_size=4, optimizer={"name": "adam",
    ...                     "lr": 0.05}, verbose=0)
    >>> model.predict(X).tolist()
    [0, 1, 1, 0]
    """

    def __init__(self, layer_sizes, activation="relu", loss="cross_entropy", output=None, *,
                 init=None, dropout=0.0, alpha=0.0, maxout_k=2, backend="numpy",
                 dtype="float32", seed=None):
        if not isinstance(layer_sizes, (list, tuple)) or len(layer_sizes) < 2 or any(
                isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                for s in layer_sizes):
            raise ValueError(
                "The 'layer_sizes' parameter of MLP must be a list of at least two ints "
                f">= 1 ([n_features, hidden..., n_outputs]). Got {layer_sizes!r} instead."
            )
        dropout = check_float(dropout, "dropout", "MLP", low=0.0, high=1.0, high_open=True)
        self.layer_sizes = [int(s) for s in layer_sizes]
        self.activation = activation
        self.init = init
        self.dropout = dropout
        self.maxout_k = maxout_k
        act_name = activation if isinstance(activation, str) else None
        hidden_init = init or default_initializer(act_name or get_activation(activation).name)
        loss_obj = get_loss(loss)
        out = get_activation(output if output is not None else loss_obj.default_output)
        layers = []
        for width in self.layer_sizes[1:-1]:
            if act_name == "maxout":
                layers.append(Maxout(width, maxout_k, init=init or "glorot_uniform"))
            else:
                layers.append(Dense(width, init=hidden_init))
                if act_name == "prelu":
                    layers.append(PReLU())
                else:
                    layers.append(ActivationLayer(activation))
            if dropout > 0:
                layers.append(Dropout(dropout))
        layers.append(Dense(self.layer_sizes[-1], init=init or default_initializer(out.name)))
        super().__init__(layers, loss=loss_obj, output=out, alpha=alpha,
                         n_features=self.layer_sizes[0], backend=backend, dtype=dtype,
                         seed=seed)

    def get_config(self) -> dict:
        act = self.activation
        if not isinstance(act, (str, dict)):
            act = act.get_config()
        return {
            "class": "MLP",
            "layer_sizes": list(self.layer_sizes),
            "activation": act,
            "loss": self.loss.get_config(),
            "output": self.output.get_config(),
            "init": self.init if not hasattr(self.init, "get_config") else self.init.get_config(),
            "dropout": self.dropout,
            "alpha": self.alpha,
            "maxout_k": self.maxout_k,
            "dtype": self.dtype,
        }


def model_from_config(config: dict, *, backend="numpy", seed=None) -> Sequential:
    """Rebuild an (untrained) model from :meth:`Sequential.get_config` output."""
    if not isinstance(config, dict) or config.get("class") not in ("MLP", "Sequential"):
        raise ValueError("A model config must be a dict with 'class' 'MLP' or 'Sequential'; "
                         f"got {config!r}.")
    cfg = dict(config)
    cls = cfg.pop("class")
    if cls == "MLP":
        sizes = cfg.pop("layer_sizes")
        return MLP(sizes, backend=backend, seed=seed, **cfg)
    layers = [get_layer(c) for c in cfg.pop("layers")]
    return Sequential(layers, backend=backend, seed=seed, **cfg)


# ---------------------------------------------------------------------- helpers
def _has_f64(xp) -> bool:
    return hasattr(xp, "float64")


def _as_numeric(a, what, backend):
    """Return ``a`` as an array (host NumPy or the model's namespace) of numeric dtype."""
    import array_api_compat

    if array_api_compat.is_array_api_obj(a) and not isinstance(a, (np.ndarray, np.generic)):
        other = _backend.backend_of(a)
        if other.name != backend.name:
            _backend.to_device(a, backend=backend)  # raises the "how to move it" error
        xp = other.xp
        if not xp.isdtype(a.dtype, ("bool", "integral", "real floating")):
            raise ValueError(f"{what} must be numeric; got dtype {a.dtype}.")
        return a
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{what} could not be read as a numeric array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric; got dtype {arr.dtype}. Encode strings or "
                         "objects as numbers first.")
    return arr


_ON_NONFINITE = ("raise", "stop")


def _json_normal(obj):
    """``obj`` as it reads back from JSON (tuples become lists, keys strings)."""
    import json

    return json.loads(json.dumps(obj, sort_keys=True))


def _stopper_config(stopper) -> dict:
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


def _map_arrays(tree, fn):
    if isinstance(tree, dict):
        return {k: _map_arrays(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_arrays(v, fn) for v in tree)
    if isinstance(tree, (int, float, str, bool)) or tree is None:
        return tree
    return fn(tree)
