"""The training loop behind :meth:`mlpx.Sequential.fit`.

``Sequential.fit`` checks its arguments and hands over to :func:`prepare`, which reads a
checkpoint to resume from, moves the data to the device, holds out the validation split
and compiles (or restores) the model; :meth:`FitRun.run` then trains: minibatch steps,
per-epoch logs and callbacks, early stopping, checkpoints, and the recovery from a NaN/inf
loss or weight. :mod:`mlpx.model` imports this module when ``fit`` is first called.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from . import _backend
from .model import _as_numeric, _copy, _has_f64, _map_arrays
from .training import DeviceMemoryError, History, NonFiniteLossError, NonFiniteLossWarning

__all__ = ["prepare", "FitRun"]


def prepare(model, X, y, *, epochs, batch_size, optimizer, validation_data,
            validation_split, shuffle, stopper, callbacks, sample_weight, verbose, checkpoint,
            checkpoint_every, resume, on_nonfinite) -> "FitRun":
    """Prepare one call of :meth:`mlpx.Sequential.fit` whose arguments are checked.

    Everything is validated before the model is changed: the checkpoint to resume from
    (config, optimizer, early stopping, data fingerprint), the data and the validation
    split. Then the checkpoint's weights and training state are restored, or the model is
    compiled when it needs an optimizer.

    Parameters
    ----------
    model : Sequential
        The model to train; built here from the data (or the checkpoint) if need be.
    X, y, validation_data, validation_split, shuffle, sample_weight, verbose
        As for :meth:`~mlpx.Sequential.fit`; ``validation_split`` already checked.
    checkpoint_every, resume, on_nonfinite
        As for :meth:`~mlpx.Sequential.fit`, already checked.
    epochs : int
        Epochs of this call (counted from the interrupted call's start with ``resume``).
    batch_size : int or None
        None uses the whole training set per step.
    optimizer : Optimizer or None
        An optimizer to compile with, or None to keep the model's (``"sgd"`` if none).
    stopper : EarlyStopping or None
    callbacks : list of Callback
    checkpoint : str or None
        The checked path to write checkpoints to.

    Returns
    -------
    FitRun
        Ready to :meth:`~FitRun.run`.

    Raises
    ------
    ValueError
        For bad data, or a checkpoint that does not match the model or data.
    mlpx.io.ModelFileError
        When ``resume`` names a file that is not a sound mlpx checkpoint.
    """
    from . import io as _io

    ckpt = fit_info = None
    if resume is not None:
        ckpt = _io.read_checkpoint(resume)
        fit_info = ckpt["training"].get("fit")
        if not model.built:
            width = ckpt["meta"]["config"].get("n_features")
            if isinstance(width, int) and not isinstance(width, bool) and width > 0:
                model.build(width)
        _check_resume(model, ckpt, optimizer, stopper)

    # Validate everything before changing anything.
    X_probe = _as_numeric(X, "X", model.backend)
    if not model.built and X_probe.ndim == 2:
        model.build(int(X_probe.shape[1]))
    Xd = model._to_device_X(X)
    n = int(Xd.shape[0])
    Yd, labels = model._to_device_y(y, n)
    Wd = model._to_device_weights(sample_weight, n)
    # The split is drawn from the host generator as it was when the (interrupted)
    # call started, so that a resumed run holds out the same samples.
    split_rng = model._train_rng
    if fit_info is not None:
        split_rng = _io.rng_from_state(fit_info["start_rng"])
    elif ckpt is not None:  # a checkpoint from save_checkpoint: as load_checkpoint + fit
        split_rng = _io.rng_from_state(ckpt["training"]["rng"]["train"])
    start_rng = _io.rng_state(split_rng)
    val = None
    n_val = 0
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (X_val, y_val).")
        Xv = model._to_device_X(validation_data[0], "X_val")
        Yv, lv = model._to_device_y(validation_data[1], int(Xv.shape[0]), "y_val")
        val = (Xv, Yv, lv)
    elif validation_split > 0:
        n_val = int(round(n * validation_split))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"validation_split={validation_split} leaves an empty "
                             f"training or validation set for {n} samples.")
        perm = split_rng.permutation(n)
        xp = model.backend.xp
        vi = _backend.to_device(perm[:n_val], backend=model.backend)
        ti = _backend.to_device(np.sort(perm[n_val:]), backend=model.backend)
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
        if monitor.endswith("accuracy") and not model.is_classifier:
            raise ValueError(f"EarlyStopping cannot monitor {monitor!r} for a "
                             "regression model.")
    fit_json = None
    if checkpoint is not None or fit_info is not None:
        fit_json = {
            "start_epoch": int(model.epoch_),
            "epochs": epochs,
            "batch_size": min(batch_size or n, n),
            "shuffle": bool(shuffle),
            "n_samples": n,
            "n_features": int(model.n_features),
            "n_val": n_val if val is None else int(val[0].shape[0]),
            "validation": ("data" if validation_data is not None
                           else "split" if val is not None else None),
            "start_rng": start_rng,
            "early_stopping": None if stopper is None else _stopper_config(stopper),
            "fingerprint": _fingerprint(model, Xd, Yd, Wd, *(val[:2] if val else ())),
        }
        if fit_info is not None:
            fit_json["start_epoch"] = int(fit_info["start_epoch"])
            _check_same_run(fit_info, fit_json, ckpt["path"])
        elif ckpt is not None:
            fit_json["start_epoch"] = int(ckpt["training"]["epoch"])

    stopper_state = best_params = history = None
    if ckpt is not None:
        model.set_params([ckpt["arrays"][e["key"]] for e in ckpt["meta"]["params"]])
        _io.apply_training(model, ckpt,
                            train_rng=None if fit_info is not None else split_rng)
        history = model.history_
        if history is None:
            history = History()
        if fit_info is not None:
            stopper_state = fit_info.get("stopper")
            target = int(fit_info["start_epoch"]) + epochs
            remaining = 0 if history.stopped_early else max(0, target - model.epoch_)
        else:
            remaining = epochs
        if stopper is not None and stopper_state is not None:
            best = _io.best_params(ckpt)
            if best is not None:
                best_params = [_backend.to_device(b, backend=model.backend) for b in best]
    else:
        if optimizer is not None or model.optimizer_ is None:
            model.compile(optimizer if optimizer is not None else "sgd")
        remaining = epochs
    return FitRun(model, (Xd, Yd, labels, Wd), val, epochs=remaining,
                  batch_size=batch_size or n, shuffle=shuffle, stopper=stopper,
                  callbacks=callbacks, verbose=int(verbose), history=history,
                  stopper_state=stopper_state, best_params=best_params,
                  checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                  fit_json=fit_json, on_nonfinite=on_nonfinite)


class FitRun:
    """The training loop of one :meth:`mlpx.Sequential.fit` call, made by :func:`prepare`.

    Parameters
    ----------
    model : Sequential
        Built and compiled; trained in place.
    data : tuple (X, Y, labels, W)
        Training data on the device: inputs, float targets of shape (n, n_outputs),
        integer labels (or None) and sample weights (or None).
    val : tuple (X_val, Y_val, labels_val) or None
        Validation data on the device.
    epochs : int
        Epochs left to train.
    batch_size : int
        Samples per step (at most the number of samples).
    shuffle, stopper, callbacks, verbose, checkpoint, checkpoint_every, on_nonfinite
        As checked by :meth:`~mlpx.Sequential.fit`.
    history : History, optional
        A resumed run's history to append to; None starts a new one.
    stopper_state : dict, optional
        A resumed run's early-stopping state: ``best``, ``best_epoch`` and ``wait``.
    best_params : list of arrays, optional
        A resumed run's best weights (early stopping with ``restore_best``).
    fit_json : dict, optional
        What each checkpoint records about this call (arguments, data fingerprint).
    """

    def __init__(self, model, data, val, *, epochs, batch_size, shuffle, stopper, callbacks,
                 verbose, history=None, stopper_state=None, best_params=None,
                 checkpoint=None, checkpoint_every=1, fit_json=None, on_nonfinite="raise"):
        self.model = model
        self.data = data
        self.val = val
        self.n = int(data[0].shape[0])
        self.batch_size = min(batch_size, self.n)
        self.n_batches = -(-self.n // self.batch_size)
        self.epochs = epochs
        self.shuffle = shuffle
        self.stopper = stopper
        self.callbacks = callbacks
        self.verbose = verbose
        self.history = history
        self.stopper_state = stopper_state
        self.best_params = best_params
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.fit_json = fit_json
        self.on_nonfinite = on_nonfinite

    def run(self) -> History:
        """Train for ``epochs`` epochs, or until stopped, and return the history.

        Sets ``model.history_`` and ``model.epoch_`` as it goes. The loss is read from
        the device once per epoch, together with a check that every weight is finite;
        when that fails, :meth:`_recover` finds the first bad batch.

        Returns
        -------
        History

        Raises
        ------
        NonFiniteLossError
            When the loss or the weights become NaN or infinite and ``on_nonfinite`` is
            ``"raise"`` (``"stop"`` warns with a :class:`NonFiniteLossWarning` instead).
        DeviceMemoryError
            When the device runs out of memory during a step.
        """
        from tqdm.auto import tqdm

        model = self.model
        xp = model.backend.xp
        n, batch_size, n_batches = self.n, self.batch_size, self.n_batches
        val, epochs, stopper, callbacks = self.val, self.epochs, self.stopper, self.callbacks
        verbose, on_nonfinite = self.verbose, self.on_nonfinite
        checkpoint, checkpoint_every = self.checkpoint, self.checkpoint_every
        stopper_state, best_params = self.stopper_state, self.best_params
        history = History() if self.history is None else self.history
        model.history_ = history
        model.stop_training = False
        monitor = None
        best, best_epoch, wait = math.inf, None, 0
        if stopper is not None:
            monitor = stopper.monitor or ("val_loss" if val is not None else "loss")
            sign = -1.0 if monitor.endswith("accuracy") else 1.0
            if stopper_state is not None:
                best = float(stopper_state["best"])
                best_epoch = stopper_state["best_epoch"]
                wait = int(stopper_state["wait"])
        good_params = [_copy(p, xp) for p in model.params]
        for cb in callbacks:
            cb.on_train_begin(model)
        bar = tqdm(total=epochs, unit="epoch", disable=verbose < 1, leave=True,
                   desc=f"{type(model).__name__} [{model.backend.name}]")
        # A diverging run is reported once, as NonFiniteLossError, not as a stream of
        # NumPy overflow warnings.
        quiet = np.errstate(over="ignore", invalid="ignore", divide="ignore")
        quiet.__enter__()
        try:
            for i in range(epochs):
                epoch = model.epoch_ + 1
                t0 = time.perf_counter()
                # What a replay of this epoch needs, should it fail (see _recover).
                rng_state = model._train_rng.bit_generator.state
                state0 = _map_arrays(model.optimizer_state_, lambda a: _copy(a, xp))
                perm = self._begin_epoch()
                total = 0.0
                correct = 0.0
                losses = []
                lr = model.optimizer_.current_lr(model.optimizer_state_["step"])
                inner = tqdm(total=n_batches, unit="batch", leave=False,
                             disable=verbose < 2, desc=f"epoch {epoch}")
                for start in range(0, n, batch_size):
                    stop = min(start + batch_size, n)
                    xb, yb, wb, lb = self._batch(perm, start, stop)
                    try:
                        loss, z = model.train_step(xb, yb, wb)
                    except Exception as exc:
                        if _backend.is_out_of_memory(exc):
                            raise _memory_error(model, exc, batch_size) from exc
                        raise
                    losses.append(loss)
                    total = total + loss * (stop - start)
                    if model.is_classifier:
                        correct = correct + model._count_correct(z, yb, lb)
                    inner.update(1)
                inner.close()
                train_loss = float(total) / n
                if not (math.isfinite(train_loss) and _params_finite(model)):
                    error = self._recover(epoch=epoch, lr=lr, losses=losses,
                                          train_loss=train_loss, params0=good_params,
                                          state0=state0, rng_state=rng_state)
                    if on_nonfinite == "raise":
                        raise error
                    # stacklevel 3 is fit's caller: Sequential.fit calls run() itself.
                    warnings.warn(str(error), NonFiniteLossWarning, stacklevel=3)
                    history.stopped_early = True
                    history.stop_reason = str(error)
                    break
                good_params = [_copy(p, xp) for p in model.params]
                model.epoch_ = epoch
                logs = {"loss": train_loss}
                if model.is_classifier:
                    logs["accuracy"] = float(correct) / n
                if val is not None:
                    vl, va = model._evaluate_device(*val)
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
                    cb.on_epoch_end(model, epoch, logs)
                if stopper is not None:
                    value = sign * logs[monitor]
                    if value < best - stopper.min_delta:
                        best, best_epoch, wait = value, epoch, 0
                        if stopper.restore_best:
                            best_params = [_copy(p, xp) for p in model.params]
                    else:
                        wait += 1
                        if wait >= stopper.patience:
                            model.stop_training = True
                if model.stop_training:
                    history.stopped_early = True
                if checkpoint is not None and (epoch % checkpoint_every == 0
                                               or i == epochs - 1 or model.stop_training):
                    self._write_checkpoint(best, best_epoch, wait, best_params)
                if model.stop_training:
                    break
        finally:
            quiet.__exit__(None, None, None)
            bar.close()
        if stopper is not None:
            history.best_epoch = best_epoch
            if stopper.restore_best and best_params is not None:
                model._assign_params(best_params)
        for cb in callbacks:
            cb.on_train_end(model, history)
        return history

    def _write_checkpoint(self, best, best_epoch, wait, best_params) -> None:
        """Write a checkpoint of the model and of this run's early-stopping state."""
        from . import io as _io

        stopper = self.stopper
        info = dict(self.fit_json)
        info["stopper"] = None if stopper is None else {
            "best": best, "best_epoch": best_epoch, "wait": wait}
        arrays = best_params if stopper is not None and stopper.restore_best else None
        _io.save_checkpoint(self.model, self.checkpoint,
                            fit_state={"json": info, "arrays": arrays})

    def _recover(self, *, epoch, lr, losses, train_loss, params0, state0,
                 rng_state) -> NonFiniteLossError:
        """Find the first bad batch of a failed epoch and keep the weights from before it.

        Replays the epoch from its start (weights ``params0``, optimizer state ``state0``,
        host random state ``rng_state``) with a host check after every batch. Returns the
        error to raise (or warn with); the model then holds the last good weights.
        """
        model = self.model
        n, batch_size, n_batches = self.n, self.batch_size, self.n_batches
        xp = model.backend.xp
        copy_state = lambda s: _map_arrays(s, lambda a: _copy(a, xp))  # noqa: E731
        model._assign_params([_copy(p, xp) for p in params0])
        model.optimizer_state_ = copy_state(state0)
        model._train_rng.bit_generator.state = rng_state
        perm = self._begin_epoch()
        found = None
        for j, start in enumerate(range(0, n, batch_size)):
            stop = min(start + batch_size, n)
            before = [_copy(p, xp) for p in model.params]
            before_state = copy_state(model.optimizer_state_)
            xb, yb, wb, _ = self._batch(perm, start, stop)
            loss, _ = model.train_step(xb, yb, wb)
            value = float(loss)
            if not math.isfinite(value):
                found = (j, "loss", value)
            elif not _params_finite(model):
                found = (j, "weights", value)
            if found is not None:
                model._assign_params(before)
                model.optimizer_state_ = before_state
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
        model._assign_params([_copy(p, xp) for p in params0])
        model.optimizer_state_ = copy_state(state0)
        values = _backend.to_numpy(xp.stack([xp.asarray(v) for v in losses]))
        bad = np.flatnonzero(~np.isfinite(values))
        batch = int(bad[0]) + 1 if bad.size else None
        what = "loss" if bad.size else "weights"
        where = f"batch {batch} of {n_batches}" if batch else "its last batch"
        return NonFiniteLossError(
            f"The training {what} became non-finite in epoch {epoch} ({where}; mean loss "
            f"{train_loss}); the weights of epoch {epoch - 1} were restored. {hint}",
            epoch=epoch, batch=batch, n_batches=n_batches, what=what)

    def _begin_epoch(self):
        """Draw the epoch's randomness from the host generator and return the permutation.

        The host generator's state at an epoch boundary is all a checkpoint needs: a
        device noise generator (CuPy's, for dropout) is re-seeded from it here, and on
        CPU backends dropout draws from the host generator itself.
        """
        model = self.model
        if model._noise_rng is not model._train_rng:
            model._noise_rng = _backend.noise_rng(model.backend, model._train_rng)
        if not self.shuffle:
            return None
        return _backend.to_device(model._train_rng.permutation(self.n), backend=model.backend)

    def _batch(self, perm, start, stop):
        """Return ``(X, Y, W, labels)`` of the epoch's samples ``start:stop``.

        Taken in the order ``perm`` (None: unshuffled); W and labels are None when the
        run has none.
        """
        X, Y, labels, W = self.data
        if perm is None:
            xb, yb = X[start:stop, ...], Y[start:stop, ...]
            wb = None if W is None else W[start:stop, ...]
            lb = None if labels is None else labels[start:stop, ...]
            return xb, yb, wb, lb
        xp = self.model.backend.xp
        idx = perm[start:stop]
        xb, yb = xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0)
        wb = None if W is None else xp.take(W, idx, axis=0)
        lb = None if labels is None else xp.take(labels, idx, axis=0)
        return xb, yb, wb, lb


# ---------------------------------------------------------------------- helpers
def _check_resume(model, ckpt, opt, stopper) -> None:
    """Refuse a checkpoint that belongs to another model, optimizer or stopper."""
    from . import io as _io

    path = ckpt["path"]
    mine = _json_normal(_io.to_json(model.get_config()))
    theirs = _json_normal(ckpt["meta"]["config"])
    if mine != theirs:
        keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"The checkpoint {path} belongs to a different model (config "
                         f"keys that differ: {keys}); build the model with the config "
                         "it was saved from, or load it with mlpx.io.load_checkpoint.")
    saved = _json_normal(ckpt["training"]["optimizer"]["config"])
    if opt is not None and _json_normal(_io.to_json(opt.get_config())) != saved:
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


def _fingerprint(model, *arrays) -> list:
    """Sums of the training arrays: a cheap check that a resumed run sees the same data."""
    xp = model.backend.xp
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


def _params_finite(model) -> bool:
    """Whether every parameter is finite (one device reduction, one host read)."""
    xp = model.backend.xp
    ok = None
    for p in model.params:
        f = xp.all(xp.isfinite(p))
        ok = f if ok is None else xp.logical_and(ok, f)
    return True if ok is None else bool(ok)


def _memory_error(model, exc, batch_size) -> DeviceMemoryError:
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
