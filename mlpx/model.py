"""Models: :class:`Sequential` (any stack of layers) and :class:`MLP` (the usual builder).

A model is bound to one backend (namespace + device) when it is built; its parameters
live there for its whole life. ``fit`` takes host (NumPy) data or arrays already in the
model's namespace, moves host data to the device once, and trains without host
synchronisation inside the epoch: losses accumulate on the device and are read once per
epoch. The training loop itself (checkpoints, resume, non-finite recovery) is in
:mod:`mlpx._fit`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading

import numpy as np

from . import _backend, _fast
from . import io as mio
from ._fast import numpy_forward
from ._registry import normalize_name
from ._validation import (
    Boolean,
    InstanceOf,
    Interval,
    ListOf,
    Options,
    check_int,
    validate_params,
)
from .activations import get_activation
from .distributed import DataParallel
from .initializers import default_initializer
from .layers import (
    ActivationLayer,
    BatchNorm,
    Dense,
    Dropout,
    Embedding,
    Layer,
    LayerNorm,
    Maxout,
    PReLU,
    Rescale,
    Standardize,
    get_layer,
)
from .losses import get_loss, l2_penalty, one_hot
from .optimizers import get_optimizer
from .state import TrainState, map_arrays
from .trainer import FitOptions, HostRows, fit_model, is_streamed
from .training import (
    Evaluation,
    History,
    LanguageEvaluation,
    as_callbacks,
    as_early_stopping,
    perplexity,
)

__all__ = ["Sequential", "MLP", "LanguageModel", "model_from_config"]

_CLASSIFIER_OUTPUTS = ("softmax", "sigmoid")
_WIDTH = Interval(int, 1, None, closed="left")
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
    backend : str or namespace, default="numpy"
        ``"numpy"``, ``"cupy"``, ``"array_api_strict"``, ``"torch"``, ``"jax"``,
        ``"dask"``, or a namespace module (``torch``, ``jax.numpy``, ``dask.array``,
        ``array_api_compat.torch`` or any other Array API namespace); see
        :func:`mlpx.resolve_backend`.
    dtype : {"float32", "float64"}, default="float32"
        Checked against what the backend really creates (JAX needs
        ``jax_enable_x64`` for float64).
    seed : int, numpy.random.Generator or None, default=None
        Seeds weight initialisation, shuffling and dropout. Same seed, same result.
    device : object, optional
        The device of the backend every parameter and every batch lives on (``"cuda:1"``,
        ``"mps"``, a JAX or array-api-strict device object, ...); None: the library's
        default device.

    Attributes
    ----------
    backend : mlpx._backend.Backend
    history_ : History or None
        What the last ``fit`` recorded.
    """

    #: Declarative checks of the constructor's parameters (see mlpx._validation); the
    #: names, losses, activations, backends and dtypes are checked by their registries.
    parameter_constraints: dict = {
        "layers": ListOf(InstanceOf((Layer, dict), "a Layer or a layer config dict"),
                         min_length=1),
        "alpha": Interval(float, 0.0, None, closed="left"),
        "n_features": [_WIDTH, None],
    }

    def __init__(self, layers, *, loss="cross_entropy", output=None, alpha=0.0,
                 n_features=None, backend="numpy", dtype="float32", seed=None,
                 device=None):
        checked = validate_params(
            type(self).__name__, {"layers": layers, "alpha": alpha, "n_features": n_features},
            Sequential.parameter_constraints)
        self.backend = _backend.resolve_backend(backend, device)
        self.dtype = _backend.check_dtype(self.backend, dtype)
        self.loss = get_loss(loss)
        self.output = get_activation(output if output is not None else self.loss.default_output)
        self.alpha = checked["alpha"]
        self.layers = [get_layer(layer) for layer in checked["layers"]]
        for i, layer in enumerate(self.layers[1:], start=1):
            if isinstance(layer, Embedding):
                raise ValueError(f"An Embedding layer must be the first layer of a model "
                                 f"(its inputs are integer ids); got one at position {i}.")
        _backend.host_rng(seed)  # validates the type
        self.seed = seed if not isinstance(seed, np.random.Generator) else None
        init_seed, train_seed = np.random.SeedSequence(
            None if isinstance(seed, np.random.Generator) else seed
        ).spawn(2)
        if isinstance(seed, np.random.Generator):
            self.init_rng = seed
            self.train_rng = np.random.default_rng(seed.integers(2**63))
        else:
            self.init_rng = np.random.default_rng(init_seed)
            self.train_rng = np.random.default_rng(train_seed)
        self.n_features = None
        self.state_ = None
        self._fast_step = None
        self._pending_stats = None
        self._busy = threading.Lock()
        self._busy_owner = None
        self.stop_training = False
        if n_features is not None:
            self.build(n_features)

    # ------------------------------------------------------------------ structure
    @property
    def built(self) -> bool:
        return self.n_features is not None

    def build(self, n_features: int) -> "Sequential":
        """Create every parameter for inputs of width ``n_features`` (on the device)."""
        width = validate_params(type(self).__name__, {"n_features": n_features},
                                {"n_features": _WIDTH})["n_features"]
        for layer in self.layers:
            width = layer.build(width, backend=self.backend, dtype=self.dtype,
                                rng=self.init_rng)
        self.n_features = int(n_features)
        self.n_outputs = width
        return self

    @property
    def params(self) -> list:
        """All parameters, layer by layer (arrays in the model's namespace).

        Besides the weights, they include the statistics of normalisation and
        preprocessing layers (:class:`~mlpx.layers.BatchNorm`'s running mean and
        variance, :class:`~mlpx.layers.Standardize`'s mean and std), which are saved and
        restored with the weights but never trained: see :attr:`trainable_mask`.
        """
        return [p for layer in self.layers for p in layer.params]

    @property
    def trainable_mask(self) -> list:
        """Aligned with :attr:`params`: False for statistics that are never trained."""
        return [t for layer in self.layers for t in layer.trainable]

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
        self.assign_params(new)

    def assign_params(self, params) -> None:
        """Install ``params`` as they are (no copy): the model now owns them.

        ``params`` must be aligned with :attr:`params` and already on the model's device
        in its dtype (:meth:`set_params` checks and copies; this does not).
        """
        params = list(params)
        i = 0
        for layer in self.layers:
            n = len(layer.params)
            layer.params = params[i:i + n]
            i += n
        if i != len(params):
            raise ValueError(f"Expected {i} parameters, got {len(params)}.")
        if self.state_ is not None:
            self.state_.params = params

    # ------------------------------------------------------------------ training state
    @property
    def optimizer_(self):
        """The optimizer of :attr:`state_` (None before :meth:`compile` or ``fit``)."""
        return None if self.state_ is None else self.state_.optimizer

    @property
    def optimizer_state_(self):
        """The optimizer's state ``{"step", "slots"}`` of :attr:`state_`, or None."""
        return None if self.state_ is None else self.state_.opt_state

    @optimizer_state_.setter
    def optimizer_state_(self, value):
        if self.state_ is None:
            raise RuntimeError("Call compile(optimizer) before setting optimizer_state_.")
        self.state_.opt_state = value

    @property
    def epoch_(self) -> int:
        """Epochs trained so far (0 before the first ``fit``)."""
        return 0 if self.state_ is None else self.state_.epoch

    @property
    def history_(self):
        """What the last ``fit`` recorded (:class:`History`), or None."""
        return None if self.state_ is None else self.state_.history

    @property
    def decay_mask(self) -> list:
        return [d for layer in self.layers for d in layer.decay]

    @property
    def takes_raw(self) -> bool:
        """Whether the first layer converts raw inputs itself (:class:`~mlpx.layers.Rescale`,
        :class:`~mlpx.layers.Standardize`): integer data then stays integer on the
        device and is converted one batch at a time."""
        return bool(self.layers[0].casts_input)

    def adapt_inputs(self, X, *, force: bool = False) -> bool:
        """Adapt a first :class:`~mlpx.layers.Standardize` layer to the inputs ``X``
        (see :meth:`~mlpx.layers.Standardize.adapt`); return whether it was.

        ``fit`` calls it with its training data (after any validation split) before the
        first step, so ``MLP(..., preprocess="standardize")`` learns its statistics from
        the data it is first fitted on, once; later ``fit`` calls keep them.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        force : bool, default=False
            Adapt again a layer that was already adapted (False: leave it).
        """
        layer = self.layers[0]
        if not isinstance(layer, Standardize) or not self.built or (
                layer.adapted and not force):
            return False
        layer.adapt(X)
        self.assign_params(self.params)  # the training state sees the new arrays
        return True

    @property
    def takes_ids(self) -> bool:
        """Whether the inputs are integer token ids (the first layer is an Embedding)."""
        return isinstance(self.layers[0], Embedding)

    @property
    def reports_perplexity(self) -> bool:
        """Whether ``evaluate`` and ``History`` report perplexity (language models)."""
        return False

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

    def summary(self, *, print_fn=print):
        """Print (or return) a table of the layers, their output shapes and parameters.

        Parameters
        ----------
        print_fn : callable or None, default=print
            Called once with the whole table (a str), as Keras' ``summary(print_fn=...)``
            does (e.g. ``logging.info``); None returns the table instead of printing it.

        Returns
        -------
        str or None
            The table when ``print_fn`` is None.

        Notes
        -----
        Output shapes are ``(None, width)``: the batch dimension is free. "Params"
        counts every parameter of a layer; the totals split them into trainable ones and
        non-trainable statistics (BatchNorm's running mean and variance, Standardize's
        mean and std), and give their memory in bytes (the model's dtype), and, once the
        model is compiled, the optimizer state's.

        Examples
        --------
        >>> from mlpx import MLP
        >>> MLP([4, 8, 3], norm="batch", seed=0).summary()
        Layer                   Output shape  Params
        ============================================
        Dense                   (None, 8)         32
        BatchNorm               (None, 8)         32
        ActivationLayer (relu)  (None, 8)          0
        Dense                   (None, 3)         27
        output (softmax)        (None, 3)          0
        ============================================
        Total params: 91 (364 bytes, float32)
        Trainable params: 75 (300 bytes)
        Non-trainable params: 16 (64 bytes)
        """
        if not self.built:
            raise RuntimeError(f"This {type(self).__name__} is not built yet, so its shapes "
                               "are unknown; call fit() first or pass n_features.")
        itemsize = np.dtype(self.dtype).itemsize
        rows = []
        for layer in self.layers:
            label = type(layer).__name__
            if isinstance(layer, ActivationLayer):
                label += f" ({layer.activation.name})"
            count = sum(math.prod(p.shape) for p in layer.params)
            rows.append((label, f"(None, {layer.n_out})", f"{count:,}"))
        rows.append((f"output ({self.output.name})", f"(None, {self.n_outputs})", "0"))
        head = ("Layer", "Output shape", "Params")
        w0 = max(len(r[0]) for r in rows + [head])
        w1 = max(len(r[1]) for r in rows + [head])
        w2 = max(len(r[2]) for r in rows + [head])

        def line(a, b, c):
            return f"{a:<{w0}}  {b:<{w1}}  {c:>{w2}}"

        rule = "=" * (w0 + w1 + w2 + 4)
        total = sum(math.prod(p.shape) for p in self.params)
        trainable = sum(math.prod(p.shape) for p, t in zip(self.params, self.trainable_mask)
                        if t)
        out = [line(*head), rule] + [line(*r) for r in rows] + [rule]
        out.append(f"Total params: {total:,} ({total * itemsize:,} bytes, {self.dtype})")
        out.append(f"Trainable params: {trainable:,} ({trainable * itemsize:,} bytes)")
        out.append(f"Non-trainable params: {total - trainable:,} "
                   f"({(total - trainable) * itemsize:,} bytes)")
        if self.state_ is not None:
            slots = self.state_.opt_state.get("slots", {})
            n_slot = sum(math.prod(a.shape) for arrays in slots.values() for a in arrays)
            out.append(f"Optimizer state ({type(self.state_.optimizer).__name__}): "
                       f"{n_slot:,} values ({n_slot * itemsize:,} bytes)")
        text = "\n".join(out)
        if print_fn is None:
            return text
        print_fn(text)
        return None

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
    def as_numeric(self, a, what="X"):
        """``a`` as a numeric array: host NumPy, or left as is in the model's namespace.

        Raises a ValueError naming ``what`` for non-numeric data, and the "how to move
        it" error for an array of another namespace.
        """
        return _as_numeric(a, what, self.backend)

    def to_device_X(self, X, what="X"):
        """Validate a feature matrix and return it on the device in the model's dtype.

        For a model whose first layer is an Embedding, ``X`` holds integer token ids,
        checked to lie in ``[0, vocab_size)`` and returned as int64.
        """
        X = self._checked_matrix(X, what)
        xp = self.backend.xp
        if self.takes_ids:
            return self._ids_to_device(X, what)
        if self.takes_raw and _is_integral(X, xp):
            # The first layer converts each batch (Rescale, Standardize): integer data
            # (uint8 pixels) stays as it is, never converted whole.
            return _backend.to_device(X, backend=self.backend)
        X = _backend.to_device(X, backend=self.backend, dtype=self.dtype)
        if not _all_finite(X, xp):
            raise ValueError(f"{what} contains NaN or infinity; clean or impute it first.")
        return X

    def _checked_matrix(self, X, what):
        """``X`` as a numeric array, refused unless 2-D, non-empty and as wide as the
        model (shared by in-memory and memory-mapped inputs)."""
        X = _as_numeric(X, what, self.backend)
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
        return X

    def to_host_rows(self, X, what="X") -> HostRows:
        """Check a memory-mapped feature matrix and wrap it for batch-by-batch use.

        The checks of :meth:`to_device_X` (shape, width, finite values, token ids) run
        over blocks of bounded size; nothing is copied or converted whole. Each batch
        is later converted by :meth:`to_device_X`.
        """
        X = self._checked_matrix(X, what)
        rows = HostRows(X, lambda block: self.to_device_X(np.asarray(block), what))
        if self.takes_ids:
            for a, b in rows.blocks():
                self._ids_to_device(np.asarray(X[a:b]), what)
        elif X.dtype.kind == "f":
            for a, b in rows.blocks():
                if not bool(np.all(np.isfinite(X[a:b]))):
                    raise ValueError(f"{what} contains NaN or infinity (rows {a} to "
                                     f"{b - 1}); clean or impute it first.")
        return rows

    def features(self, X, what="X"):
        """``X`` ready for the forward pass: a memory map as :class:`HostRows` (taken a
        batch at a time), anything else on the device (:meth:`to_device_X`)."""
        return self.to_host_rows(X, what) if is_streamed(X) else self.to_device_X(X, what)

    def _ids_to_device(self, X, what):
        """Token ids for a first Embedding layer: integers in [0, vocab_size), as int64."""
        vocab = self.layers[0].vocab_size
        if _backend.is_host_array(X):
            if X.dtype.kind not in "iu":
                raise ValueError(f"{what} must hold integer token ids for a model whose "
                                 f"first layer is an Embedding; got dtype {X.dtype}.")
            lo, hi = int(X.min()), int(X.max())
        else:
            xp = self.backend.xp
            if not xp.isdtype(X.dtype, "integral"):
                raise ValueError(f"{what} must hold integer token ids for a model whose "
                                 f"first layer is an Embedding; got dtype {X.dtype}.")
            lo, hi = int(xp.min(X)), int(xp.max(X))
        if lo < 0 or hi >= vocab:
            raise ValueError(f"{what} token ids must lie in [0, {vocab}) (the Embedding's "
                             f"vocab_size); got ids from {lo} to {hi}.")
        if _backend.is_host_array(X):
            return _backend.to_device(np.asarray(X, dtype=np.int64), backend=self.backend)
        X = _backend.to_device(X, backend=self.backend)
        xp = self.backend.xp
        return X if X.dtype == xp.int64 else xp.astype(X, xp.int64)

    def to_device_y(self, y, n_samples, what="y"):
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

    def to_device_weights(self, sample_weight, n_samples):
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
        rng = self.state_.noise_rng if training and self.state_ is not None else None
        for layer in self.layers:
            x, cache = layer.forward(x, xp=self.backend.xp, training=training, rng=rng)
            caches.append(cache)
        if training:
            # New values of the layers' statistics (BatchNorm's running mean and
            # variance), installed with the next optimizer step (apply_gradients).
            self._pending_stats = [layer.updated_statistics(c)
                                   for layer, c in zip(self.layers, caches)]
        return x, caches

    def forward_with(self, params, x, *, xp):
        """Logits of ``x`` computed with ``params`` in the namespace ``xp`` (inference).

        The generic forward pass (every layer's ``forward`` with ``training=False``, so
        dropout is the identity) with ``params`` in place of the model's own parameters,
        which are left untouched. ``params`` and ``x`` may live in any Array API
        namespace, e.g. ndonnx arrays that record an ONNX graph (:mod:`mlpx.export`).

        Parameters
        ----------
        params : list of arrays
            Aligned with :attr:`params` (same shapes), in the namespace ``xp``.
        x : array of shape (n_samples, n_features)
        xp : namespace
            The Array API namespace of ``params`` and ``x``.

        Returns
        -------
        z : array of shape (n_samples, n_outputs)
            The logits (before the output activation :attr:`output`).

        Examples
        --------
        >>> import numpy as np
        >>> import array_api_compat.numpy as xp
        >>> from mlpx import MLP
        >>> model = MLP([3, 4, 2], seed=0)
        >>> X = np.ones((5, 3), dtype=np.float32)
        >>> z = model.forward_with(model.params, X, xp=xp)
        >>> z.shape, bool(np.array_equal(z, model.decision_function(X)))
        ((5, 2), True)
        """
        self._check_ready()
        params = list(params)
        if len(params) != len(self.params):
            raise ValueError(f"Expected {len(self.params)} parameters, got {len(params)}.")
        i = 0
        for layer in self.layers:
            n = len(layer.params)
            twin = copy.copy(layer)
            twin.params = params[i:i + n]
            x, _ = twin.forward(x, xp=xp, training=False)
            i += n
        return x

    def _backward(self, dz, caches):
        xp = self.backend.xp
        grads: list = [None] * len(self.layers)
        # Layers before the first one with a trainable parameter (preprocessing layers)
        # need no input gradient: backprop stops there and their statistics get zeros.
        first = next((i for i, layer in enumerate(self.layers) if any(layer.trainable)), 0)
        for i in range(first):
            grads[i] = [xp.zeros_like(p) for p in self.layers[i].params]
        for i in range(len(self.layers) - 1, first - 1, -1):
            dz, grads[i] = self.layers[i].backward(dz, caches[i], xp=xp, need_dx=i > first)
        return [g for gs in grads for g in gs]

    def loss_and_grads(self, X, Y, sample_weight=None, *, training=True, alpha=None):
        """Return ``(loss, grads, logits)`` for one batch already on the device.

        ``loss`` is a 0-d array (L2 penalty included) and ``grads`` is aligned with
        :attr:`params`. This is the whole of backprop; :meth:`apply_gradients` is the
        update. ``alpha`` overrides the model's L2 strength for this call.
        """
        xp = self.backend.xp
        alpha = self.alpha if alpha is None else alpha
        z, caches = self._forward(X, training=training)
        loss, dz = self.loss.value_and_grad(z, Y, output=self.output, xp=xp,
                                            sample_weight=sample_weight)
        grads = self._backward(dz, caches)
        if alpha > 0:
            params = self.params
            weights = [p for p, d in zip(params, self.decay_mask) if d]
            loss = loss + l2_penalty(weights, alpha, xp=xp)
            grads = [g + alpha * p if d else g
                     for g, p, d in zip(grads, params, self.decay_mask)]
        return loss, grads, z

    def apply_gradients(self, grads, *, hyper=None) -> None:
        """The update stage: one optimizer step with ``grads`` (aligned with params).

        ``hyper`` overrides the optimizer's hyper-parameters for this step (see
        :meth:`mlpx.optimizers.Optimizer.hyper`).
        """
        self._update(grads, hyper)

    def _update(self, grads, hyper, also=()):
        """The update; on a lazy backend (Dask) the new parameters, the optimizer state
        and ``also`` are computed together once (:func:`mlpx._backend.persist`), so that
        the task graph does not grow step after step. Returns ``also``."""
        state = self._require_state("apply_gradients")
        params = self.params
        mask = self.trainable_mask
        frozen = not all(mask)
        xp = self.backend.xp
        if frozen:  # the optimizer works on copies of the statistics, discarded below
            params = [p if t else _copy(p, xp) for p, t in zip(params, mask)]
        new = state.optimizer.step(params, grads, state.opt_state, xp=xp,
                                   decay_mask=self.decay_mask, hyper=hyper)
        if frozen:
            new = self._with_statistics(new)
        new, state.opt_state, also = _backend.persist(self.backend,
                                                      (new, state.opt_state, also))
        self.assign_params(new)
        return also

    def _with_statistics(self, new):
        """``new`` with every statistic put back: the value the last training forward
        pass computed for it, or its current array (statistics are never trained)."""
        pending = self._pending_stats or [None] * len(self.layers)
        self._pending_stats = None
        out, i = [], 0
        for layer, stats in zip(self.layers, pending):
            k = 0
            for t, p in zip(layer.trainable, layer.params):
                if t:
                    out.append(new[i])
                else:
                    out.append(p if stats is None else stats[k])
                    k += 1
                i += 1
        return out

    def train_step(self, X, Y, sample_weight=None, *, alpha=None, hyper=None):
        """One step of forward, loss gradient, backward and optimizer update.

        ``X`` and ``Y`` (float targets of shape (n, n_outputs)) must already be on the
        device; :meth:`compile` or :meth:`fit` sets the optimizer first. ``alpha`` and
        ``hyper`` override the L2 strength and the optimizer's hyper-parameters for this
        step. Returns the loss and the logits as device arrays (no host
        synchronisation). A backend fast path (:mod:`mlpx._fast`) runs the same stages
        in place when it supports the model.
        """
        self._require_state("train_step")
        with _backend.device_scope(self.backend):
            return self._train_step(X, Y, sample_weight, alpha, hyper)

    def _train_step(self, X, Y, sample_weight, alpha, hyper):
        if self._fast_step is not None:
            done = self._fast_step(self, X, Y, sample_weight, alpha=alpha, hyper=hyper,
                                   noise_rng=self.state_.noise_rng)
            if done is not None:
                return done
        loss, grads, z = self.loss_and_grads(X, Y, sample_weight, alpha=alpha)
        return self._update(grads, hyper, (loss, z))

    def _require_state(self, what):
        if self.state_ is None:
            raise RuntimeError(f"Call compile(optimizer) or fit(...) before {what}.")
        return self.state_

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
        opt = get_optimizer(optimizer, **params)
        old = self.state_
        noise = old.noise_rng if old is not None else _backend.noise_rng(self.backend,
                                                                          self.train_rng)
        self.state_ = TrainState(params=self.params, optimizer=opt,
                                 opt_state=opt.init_state(self.params, xp=self.backend.xp),
                                 rng=self.train_rng, init_rng=self.init_rng,
                                 noise_rng=noise,
                                 epoch=0 if old is None else old.epoch,
                                 history=None if old is None else old.history)
        self._fast_step = _fast.select_step(self)
        return self

    def restore_checkpoint(self, ckpt, *, train_rng=None) -> None:
        """Install a checkpoint read by :func:`mlpx.io.read_checkpoint` (checked first).

        Sets the parameters and the whole :class:`~mlpx.state.TrainState`: optimizer and
        its state, epoch, random generators and history. ``train_rng`` replaces the
        generator rebuilt from the checkpoint (``fit`` passes one it has already drawn a
        validation split from).
        """
        params = [ckpt["arrays"][e["key"]] for e in ckpt["meta"]["params"]]
        parts = mio.training_state_parts(ckpt, backend=self.backend)
        self.set_params(params)
        self.train_rng = train_rng if train_rng is not None else parts["rng"]
        self.init_rng = parts["init_rng"]
        # The per-step noise generator is derived from the host one without advancing
        # it: on CPU backends it *is* the host generator; a device generator (CuPy) is
        # re-derived from the host state at the start of every epoch by the trainer.
        probe = copy.deepcopy(self.train_rng)
        noise = _backend.noise_rng(self.backend, probe)
        self.state_ = TrainState(params=self.params, optimizer=parts["optimizer"],
                                 opt_state=parts["opt_state"], rng=self.train_rng,
                                 init_rng=self.init_rng,
                                 noise_rng=self.train_rng if noise is probe else noise,
                                 epoch=parts["epoch"], history=parts["history"])
        # Train with the step compile() would pick, so that a resumed run computes
        # exactly what the interrupted one did.
        self._fast_step = _fast.select_step(self)

    # ------------------------------------------------------------------ training
    def fit(self, X, y, *, epochs=10, batch_size=32, optimizer=None, validation_data=None,
            validation_split=0.0, shuffle=True, early_stopping=None, callbacks=(),
            sample_weight=None, verbose=1, checkpoint=None, checkpoint_every=1,
            resume=None, on_nonfinite="raise", comm=None, metrics=None, class_weight=None,
            clip_norm=None, clip_value=None) -> History:
        """Train with minibatch gradient descent.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), or an iterable of (X, y) batches
            NumPy (moved to the device once) or an array of the model's namespace.
            Integer token ids in ``[0, vocab_size)`` when the first layer is an
            :class:`~mlpx.layers.Embedding` (they stay int64 on the device).
            A NumPy memory map (``numpy.load(path, mmap_mode="r")``) is never copied
            or converted whole: each batch's rows are read and converted on their own
            (checks run over the file in blocks first); the result equals that of the
            same array in memory. With ``y=None``, ``X`` may be a re-iterable of
            ``(X_batch, y_batch)`` pairs (a list, or an object whose ``__iter__``
            starts a new pass; not a one-shot iterator): each pair is one step, in
            the source's order (``batch_size`` and ``shuffle`` do not apply); it is
            read once to check it, then once per epoch. It takes ``validation_data``,
            ``metrics`` and clipping but not ``validation_split``, ``sample_weight``,
            ``class_weight``, ``checkpoint``, ``resume`` or ``comm``, and an input
            Standardize layer must be adapted beforehand.
        y : array of shape (n_samples,) or (n_samples, n_outputs), or None
            Integer class labels or one-hot / probability rows for a softmax output,
            0/1 targets for a sigmoid output, real values for regression. None when
            ``X`` is an iterable of batches.
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
            An int is the patience; a dict holds EarlyStopping's parameters. It watches
            the validation loss, so it needs ``validation_data`` or
            ``validation_split`` (a ValueError otherwise, as ``mlpx train
            --early-stopping`` without ``--validation-split``); to stop on the training
            loss, ask for it: ``early_stopping={"monitor": "loss", "patience": 5}``.
            It may also watch a metric of ``metrics`` (``{"monitor": "val_f1"}``).
        callbacks : sequence of Callback or callables, default=()
            E.g. :class:`mlpx.callbacks.CSVLogger`, :class:`mlpx.callbacks.SaveBest`,
            :class:`mlpx.callbacks.ReduceLROnPlateau`.
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
        comm : mpi4py communicator or mlpx.distributed.Communicator, optional
            Train data-parallel over the ranks of ``comm`` (e.g. ``MPI.COMM_WORLD``,
            every rank calling ``fit`` with the same data and arguments): each rank takes
            its share of every batch of ``batch_size`` samples and the gradients are
            summed, so the result is one process's with the same ``batch_size``. Only
            rank 0 prints and writes the checkpoint. See :mod:`mlpx.distributed`.
        metrics : list of str, dict or Metric, optional
            Metrics of :mod:`mlpx.metrics` to report every epoch, in the history and
            the progress bar: ``"accuracy"``, ``"top_k_accuracy"`` (``{"name":
            "top_k_accuracy", "k": 3}`` is recorded as ``"top_3_accuracy"``),
            ``"precision"``, ``"recall"``, ``"f1"`` (macro averages), ``"log_loss"``,
            ``"mse"``, ``"mae"``, ``"r2"``. Training values are over the epoch's
            batches as they were stepped on (dropout on, weights before each update),
            validation values (``"val_f1"``, ...) over the validation data at the end
            of the epoch. Each is accumulated batch by batch on the device; none changes
            the training. Unweighted.
        class_weight : dict, "balanced" or None, default=None
            Classifiers only: weights per class index (``{1: 5.0}``; a class left out
            weighs 1) or ``"balanced"`` (``n_samples / (n_classes * count)``, over the
            data given, before a validation split), multiplied into ``sample_weight``,
            as scikit-learn's ``class_weight`` (:func:`mlpx.metrics.class_sample_weight`).
            Softmax models take the class of each target row (its argmax); a sigmoid
            model with several outputs takes ``"balanced"`` per output.
        clip_norm : float > 0 or None, default=None
            Scale the gradient (all parameters together) down to this Euclidean norm
            when it is longer, before the update (PyTorch's ``clip_grad_norm_``).
        clip_value : float > 0 or None, default=None
            Clip every gradient entry to ``[-clip_value, clip_value]`` (before
            ``clip_norm`` when both are given). Clipping runs the generic step (the
            in-place fast step never materialises the gradients), which gives the
            same result.

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
        c = validate_params(
            f"{type(self).__name__}.fit",
            {"epochs": epochs, "batch_size": batch_size, "validation_split": validation_split,
             "shuffle": shuffle, "verbose": verbose, "checkpoint_every": checkpoint_every,
             "on_nonfinite": on_nonfinite, "clip_norm": clip_norm,
             "clip_value": clip_value, "class_weight": class_weight}, _FIT_CONSTRAINTS)
        opts = FitOptions(
            epochs=c["epochs"], batch_size=c["batch_size"],
            optimizer=None if optimizer is None else get_optimizer(optimizer),
            validation_data=validation_data, validation_split=c["validation_split"],
            shuffle=c["shuffle"], stopper=as_early_stopping(early_stopping),
            callbacks=as_callbacks(callbacks), sample_weight=sample_weight,
            verbose=c["verbose"],
            checkpoint=None if checkpoint is None
            else mio.check_writable_path(checkpoint, "checkpoint"),
            checkpoint_every=c["checkpoint_every"], resume=resume,
            on_nonfinite=c["on_nonfinite"],
            parallel=None if comm is None else DataParallel(comm),
            metrics=metrics, clip_norm=c["clip_norm"], clip_value=c["clip_value"],
            class_weight=c["class_weight"])
        guard = contextlib.nullcontext() if opts.parallel is None else opts.parallel.guard()
        with guard, self._exclusive("fit"), _backend.device_scope(self.backend):
            # fit_model's warnings count on being called from here (stacklevel).
            return fit_model(self, X, y, opts)

    @contextlib.contextmanager
    def _exclusive(self, what):
        """Hold the model for one ``fit``: a second concurrent one raises at once."""
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                f"{what} was called on a {type(self).__name__} that another thread is "
                "training; one model trains in one thread at a time (predict while it "
                "trains is refused too). Train copies (copy.deepcopy) in parallel instead.")
        self._busy_owner = threading.get_ident()
        try:
            yield
        finally:
            self._busy_owner = None
            self._busy.release()

    def count_correct(self, z, Y, labels):
        """Correct predictions in a batch as a device scalar (no host sync)."""
        xp = self.backend.xp
        if self.output.name == "softmax":
            if labels is None:
                labels = xp.argmax(Y, axis=1)
            hit = xp.argmax(z, axis=1) == labels
            if _backend.fast_path(xp) == "numpy":  # the same count, two calls fewer
                return z.dtype.type(np.count_nonzero(hit))
        else:  # sigmoid: a row counts when every output is right
            hit = xp.all((z > 0) == (Y > 0.5), axis=1)
        return xp.sum(xp.astype(hit, z.dtype))

    # ------------------------------------------------------------------ inference
    def _chunk(self, batch_size):
        """Rows per forward pass of the inference methods."""
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size", f"{type(self).__name__}.predict")
        return batch_size or _PREDICT_BATCH

    def _logits(self, X, batch_size=None):
        xp = self.backend.xp
        n = int(X.shape[0])
        step = self._chunk(batch_size)
        if not isinstance(X, HostRows):  # NumPy: the same numbers, without temporaries
            fast = numpy_forward.logits(self, X, step)
            if fast is not None:
                return fast
        if isinstance(X, HostRows):  # converted block by block, of bounded size
            if batch_size is None:
                step = min(step, max(1, HostRows.block_bytes // (8 * max(1, X.shape[1]))))
            parts = [self._forward(X.take(slice(i, min(i + step, n))), training=False)[0]
                     for i in range(0, n, step)]
            return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
        if n <= step:
            return self._forward(X, training=False)[0]
        parts = [self._forward(X[i:min(i + step, n), ...], training=False)[0]
                 for i in range(0, n, step)]
        return xp.concat(parts, axis=0)

    def _check_ready(self):
        if not self.built:
            raise RuntimeError(f"This {type(self).__name__} is not built yet; call fit() "
                               "first or pass n_features.")
        owner = self._busy_owner
        if owner is not None and owner != threading.get_ident():
            raise RuntimeError(f"This {type(self).__name__} is being trained by another "
                               "thread; predict after fit returns, or on a copy "
                               "(copy.deepcopy) of the model.")

    def decision_function(self, X, *, batch_size=None):
        """Logits (pre-output-activation values) of shape (n_samples, n_outputs)."""
        self._check_ready()
        with _backend.device_scope(self.backend):
            return self._logits(self.features(X), batch_size)

    def predict_proba(self, X, *, batch_size=None):
        """Output activations of shape (n_samples, n_outputs), in the model's namespace.

        Class probabilities for softmax / sigmoid outputs; predictions for regression.
        """
        self._check_ready()
        with _backend.device_scope(self.backend):
            X = self.features(X)
            if not isinstance(X, HostRows):  # NumPy: the softmax in place, no temporaries
                fast = numpy_forward.proba(self, X, self._chunk(batch_size))
                if fast is not None:
                    return fast
            return self.output.forward(self._logits(X, batch_size), xp=self.backend.xp)

    def predict(self, X, *, batch_size=None):
        """Predictions in the model's namespace.

        Softmax outputs give integer class labels of shape (n_samples,); a single sigmoid
        output gives 0/1 labels of shape (n_samples,), several give a 0/1 matrix;
        regression gives the outputs of shape (n_samples, n_outputs).
        """
        xp = self.backend.xp
        z = self.decision_function(X, batch_size=batch_size)
        name = self.output.name
        with _backend.device_scope(self.backend):
            if name == "softmax":
                return xp.argmax(z, axis=1)
            if name == "sigmoid":
                hit = xp.astype(z > 0, xp.int64)
                return hit[:, 0] if hit.shape[1] == 1 else hit
            return self.output.forward(z, xp=xp)

    def evaluate_device(self, X, Y, labels, sample_weight=None, *, metrics=()):
        """Mean loss (L2 included) and accuracy (None for regression) of device data.

        ``Y`` are float targets of shape (n, n_outputs) and ``labels`` integer labels or
        None, as :meth:`to_device_y` returns them. Returns Python floats. Each of
        ``metrics`` (:class:`mlpx.metrics.Metric`) is updated with the data too.
        """
        xp = self.backend.xp
        z = self._logits(X)
        for m in metrics:
            m.update(Y, z, labels, output=self.output, xp=xp)
        loss = self.loss.value(z, Y, output=self.output, xp=xp, sample_weight=sample_weight)
        if self.alpha > 0:
            weights = [p for p, d in zip(self.params, self.decay_mask) if d]
            loss = loss + l2_penalty(weights, self.alpha, xp=xp)
        acc = None
        if self.is_classifier:
            acc = float(self.count_correct(z, Y, labels)) / int(X.shape[0])
        return float(loss), acc

    def evaluate(self, X, y, *, sample_weight=None) -> Evaluation:
        """Mean loss (L2 penalty included) and accuracy (None for regression).

        Returns
        -------
        Evaluation
            A named tuple ``(loss, accuracy)`` of Python floats.
        """
        self._check_ready()
        with _backend.device_scope(self.backend):
            Xd = self.features(X)
            Yd, labels = self.to_device_y(y, int(Xd.shape[0]))
            Wd = self.to_device_weights(sample_weight, int(Xd.shape[0]))
            return Evaluation(*self.evaluate_device(Xd, Yd, labels, Wd))

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy for a classifier, R^2 for a regressor, as scikit-learn's ``score``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,) or (n_samples, n_outputs)
            Targets as ``fit`` takes them (class labels or one-hot rows for softmax).
        sample_weight : array of shape (n_samples,), optional

        Returns
        -------
        float
            The (weighted) share of samples whose predicted class is right (every
            output right, for several sigmoid outputs); or the coefficient of
            determination averaged uniformly over the outputs.

        Notes
        -----
        Like :meth:`predict`, this works before ``fit`` too: a built model predicts
        from its random initial weights (as Keras models do).

        Examples
        --------
        >>> import numpy as np
        >>> from mlpx import MLP
        >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
        >>> model = MLP([2, 16, 2], activation="tanh", seed=0)
        >>> _ = model.fit(X, [0, 1, 1, 0], epochs=300, batch_size=4, verbose=0,
        ...               optimizer={"name": "adam", "lr": 0.05})
        >>> model.score(X, [0, 1, 1, 0])
        1.0
        """
        self._check_ready()
        with _backend.device_scope(self.backend):
            Xd = self.to_device_X(X)
            n = int(Xd.shape[0])
            Yd, labels = self.to_device_y(y, n)
            w = self.to_device_weights(sample_weight, n)
            z = _backend.to_numpy(self._logits(Xd)).astype(np.float64)
            Y = _backend.to_numpy(Yd).astype(np.float64)
            w = np.ones(n) if w is None else _backend.to_numpy(w).astype(np.float64)
            if self.output.name == "softmax":
                truth = Y.argmax(axis=1) if labels is None else _backend.to_numpy(labels)
                return float(np.sum(w * (z.argmax(axis=1) == truth)) / np.sum(w))
            if self.output.name == "sigmoid":
                hit = np.all((z > 0) == (Y > 0.5), axis=1)
                return float(np.sum(w * hit) / np.sum(w))
            pred = _backend.to_numpy(self.output.forward(self._logits(Xd),
                                                         xp=self.backend.xp))
            pred = pred.astype(np.float64)
            col = w[:, None]
            mean = np.sum(col * Y, axis=0) / np.sum(w)
            res = np.sum(col * (Y - pred) ** 2, axis=0)
            tot = np.sum(col * (Y - mean) ** 2, axis=0)
            r2 = np.where(tot > 0, 1.0 - res / np.where(tot > 0, tot, 1.0),
                          np.where(res > 0, 0.0, 1.0))
            return float(np.mean(r2))

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

    def export_onnx(self, path, *, predict: bool = True) -> str:
        """Export the inference graph to an ONNX file, written atomically.

        The graph is traced from the generic forward pass on the ndonnx namespace
        (:func:`mlpx.export.export_onnx`, which documents the graph's inputs and
        outputs); it takes any batch size. Needs ``pip install 'mlpx[onnx]'``.

        Returns
        -------
        str
            The absolute path written.
        """
        from .export import export_onnx

        return export_onnx(self, path, predict=predict)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = self.__dict__.copy()
        layers = []
        for layer in self.layers:
            c = copy.copy(layer)
            c.params = [_backend.to_numpy(p) for p in layer.params]
            layers.append(c)
        state["layers"] = layers
        ts = self.state_
        if ts is not None:
            # The host generators pickle as they are; a device noise generator (CuPy)
            # is derived again from the host one on unpickling.
            noise = ts.noise_rng if ts.noise_rng is ts.rng else None
            state["state_"] = TrainState(
                params=[], optimizer=ts.optimizer,
                opt_state=map_arrays(ts.opt_state, _backend.to_numpy), rng=ts.rng,
                init_rng=ts.init_rng, noise_rng=noise, epoch=ts.epoch, history=ts.history)
        state["backend"] = self.backend  # pickles as its name (and a non-default device)
        state.pop("_fast_step", None)  # buffers are never pickled
        state["_pending_stats"] = None  # a step's statistics not installed yet
        state["_busy"] = None       # locks neither
        state["_busy_owner"] = None
        return state

    def __setstate__(self, state):
        backend = _backend.resolve_backend(state["backend"])
        state["backend"] = backend
        move = lambda a: _backend.to_device(a, backend=backend)  # noqa: E731
        for layer in state["layers"]:
            layer.params = [move(p) for p in layer.params]
        ts = state.get("state_")
        if ts is not None:
            ts.opt_state = map_arrays(ts.opt_state, move)
        self.__dict__.update(state)
        self._busy = threading.Lock()
        self._fast_step = None
        self._pending_stats = None
        if ts is not None:
            ts.params = self.params
            if ts.noise_rng is None:
                ts.noise_rng = _backend.noise_rng(backend, ts.rng)
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
    norm : {None, "batch", "layer"}, default=None
        A normalisation layer after every hidden layer's affine map and *before* its
        activation (Ioffe and Szegedy's placement): :class:`~mlpx.layers.BatchNorm`
        (``"batch"``; the hidden Dense layers then have no bias, which BatchNorm's
        ``beta`` replaces) or :class:`~mlpx.layers.LayerNorm` (``"layer"``). With
        ``activation="maxout"`` it follows each Maxout layer. The output layer is never
        normalised.
    preprocess : {None, "standardize"}, Rescale, Standardize or layer config dict, \
default=None
        An input layer that travels with the model (saved and loaded with it):
        ``"standardize"`` puts a :class:`~mlpx.layers.Standardize` first, whose mean
        and std are computed from the training data of the first ``fit`` (or by
        ``model.adapt_inputs(X, force=True)``); ``Rescale(1 / 255)`` scales raw pixels. Either
        takes ``uint8`` inputs and converts them one batch at a time. A layer given here
        is used through its config (a fresh copy is built).
    backend, dtype, seed, device
        As for :class:`Sequential`.

    Notes
    -----
    An MLP is built (its weights drawn) when it is created, so :meth:`predict`,
    :meth:`predict_proba` and :meth:`score` work before ``fit``: they answer from the
    random initial weights, as a Keras model does (a scikit-learn estimator would raise
    NotFittedError; :class:`mlpx.sklearn.MLPClassifier` does).

    Models with ``norm`` or ``preprocess`` train on the generic Array API step (the
    fast NumPy/CuPy steps implement plain stacks only; ``mlpx._fast.unsupported_reason``
    names the layer).

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

    Normalisation and preprocessing are options:

    >>> from mlpx.layers import Rescale
    >>> pixels = np.array([[0, 0], [0, 255], [255, 0], [255, 255]], dtype=np.uint8)
    >>> model = MLP([2, 16, 2], activation="tanh", norm="layer",
    ...             preprocess=Rescale(1 / 255), seed=0)
    >>> history = model.fit(pixels, y, epochs=300, batch_size=4, optimizer={"name": "adam",
    ...                     "lr": 0.05}, verbose=0)
    >>> model.predict(pixels).tolist()
    [0, 1, 1, 0]
    """

    parameter_constraints: dict = {
        "layer_sizes": ListOf(_WIDTH, min_length=2),
        "dropout": Interval(float, 0.0, 1.0, closed="left"),
        "maxout_k": Interval(int, 1, None, closed="left"),
        "norm": Options((None, "batch", "layer")),
        "preprocess": [Options(("standardize",)),
                       InstanceOf((Rescale, Standardize, dict),
                                  "a Rescale or Standardize layer or its config dict"),
                       None],
    }

    def __init__(self, layer_sizes, activation="relu", loss="cross_entropy", output=None, *,
                 init=None, dropout=0.0, alpha=0.0, maxout_k=2, norm=None, preprocess=None,
                 backend="numpy", dtype="float32", seed=None, device=None):
        checked = validate_params(
            "MLP", {"layer_sizes": layer_sizes, "dropout": dropout, "maxout_k": maxout_k,
                    "norm": norm, "preprocess": preprocess},
            MLP.parameter_constraints)
        dropout = checked["dropout"]
        self.layer_sizes = checked["layer_sizes"]
        self.activation = activation
        self.init = init
        self.dropout = dropout
        self.maxout_k = maxout_k
        self.norm = checked["norm"]
        first = _preprocess_layer(checked["preprocess"])
        self.preprocess = checked["preprocess"] if first is None or isinstance(
            checked["preprocess"], str) else first.get_config()
        act_name = activation if isinstance(activation, str) else None
        if act_name is not None and normalize_name(act_name) in ("prelu", "maxout"):
            act_name = normalize_name(act_name)  # the layer "activations", any spelling
        hidden_init = init or default_initializer(act_name or get_activation(activation).name)
        loss_obj = get_loss(loss)
        out = get_activation(output if output is not None else loss_obj.default_output)
        layers = [] if first is None else [first]
        for width in self.layer_sizes[1:-1]:
            if act_name == "maxout":
                layers.append(Maxout(width, maxout_k, init=init or "glorot_uniform"))
                if self.norm is not None:
                    layers.append(_norm_layer(self.norm))
            else:
                layers.append(Dense(width, init=hidden_init, bias=self.norm != "batch"))
                if self.norm is not None:
                    layers.append(_norm_layer(self.norm))
                if act_name == "prelu":
                    layers.append(PReLU())
                else:
                    layers.append(ActivationLayer(activation))
            if dropout > 0:
                layers.append(Dropout(dropout))
        layers.append(Dense(self.layer_sizes[-1], init=init or default_initializer(out.name)))
        super().__init__(layers, loss=loss_obj, output=out, alpha=alpha,
                         n_features=self.layer_sizes[0], backend=backend, dtype=dtype,
                         seed=seed, device=device)

    def get_config(self) -> dict:
        act = self.activation
        if not isinstance(act, (str, dict)):
            act = act.get_config()
        config = {
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
        # Only when set, so that the configs (and files) of other models are unchanged.
        if self.norm is not None:
            config["norm"] = self.norm
        if self.preprocess is not None:
            config["preprocess"] = self.preprocess
        return config


class LanguageModel(Sequential):
    """The feedforward neural language model (Bengio et al., 2003): the previous
    ``window`` tokens, each as a learned vector, concatenated into an MLP that predicts
    the next token.

    Parameters
    ----------
    vocab_size : int >= 1
        Number of token ids (inputs and outputs lie in ``[0, vocab_size)``).
    window : int >= 1
        Tokens of context per prediction.
    dim : int >= 1, default=16
        Length of each token's vector (the :class:`~mlpx.layers.Embedding`).
    hidden_sizes : list of int, default=[128]
        Widths of the hidden layers.
    activation : str, dict or Activation, default="tanh"
        Hidden activation.
    init : str, dict or None, default=None
        Hidden weight initializer; None picks He for the ReLU family, Glorot otherwise.
    dropout : float in [0, 1), default=0.0
        Dropout after every hidden activation.
    backend, dtype, seed, device
        As for :class:`Sequential`.

    Notes
    -----
    For ids ``x`` of shape (n_samples, window) the logits are
    ``MLP(concat(E[x[:, 0]], ..., E[x[:, window - 1]]))`` and the loss is the mean
    cross-entropy of the next token. ``evaluate`` returns a
    :class:`~mlpx.training.LanguageEvaluation` with the perplexity ``exp(loss)``, and
    ``History`` records ``perplexity`` (and ``val_perplexity``) every epoch. There is no
    L2 ``alpha`` (the loss stays the cross-entropy); use ``optimizer="adamw"`` for
    weight decay. Text to ids and back: :mod:`mlpx.datasets` (``Vocabulary``,
    ``make_windows``).

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx import LanguageModel
    >>> X = np.array([[0, 1], [1, 2], [2, 0]] * 20)      # 0 1 2 0 1 2 ...
    >>> y = np.array([2, 0, 1] * 20)
    >>> lm = LanguageModel(3, window=2, dim=4, hidden_sizes=[16], seed=0)
    >>> _ = lm.fit(X, y, epochs=60, optimizer={"name": "adam", "lr": 0.05}, verbose=0)
    >>> lm.evaluate(X, y).perplexity < 1.1
    True
    >>> lm.generate([0, 1], 5, temperature=0.5, seed=0)
    [[2, 0, 1, 2, 0]]
    """

    parameter_constraints: dict = {
        "vocab_size": _WIDTH,
        "window": _WIDTH,
        "dim": _WIDTH,
        "hidden_sizes": ListOf(_WIDTH, min_length=0),
        "dropout": Interval(float, 0.0, 1.0, closed="left"),
    }

    def __init__(self, vocab_size, window, dim=16, hidden_sizes=(128,), activation="tanh", *,
                 init=None, dropout=0.0, backend="numpy", dtype="float32", seed=None,
                 device=None):
        c = validate_params(
            "LanguageModel", {"vocab_size": vocab_size, "window": window, "dim": dim,
                              "hidden_sizes": list(hidden_sizes)
                              if isinstance(hidden_sizes, tuple) else hidden_sizes,
                              "dropout": dropout}, LanguageModel.parameter_constraints)
        self.vocab_size, self.window, self.dim = c["vocab_size"], c["window"], c["dim"]
        self.hidden_sizes = list(c["hidden_sizes"])
        self.activation = activation
        self.init = init
        self.dropout = c["dropout"]
        act_name = activation if isinstance(activation, str) else None
        if act_name is not None and normalize_name(act_name) in ("prelu", "maxout"):
            act_name = normalize_name(act_name)  # the layer "activations", any spelling
        hidden_init = init or default_initializer(act_name or get_activation(activation).name)
        layers: list = [Embedding(self.vocab_size, self.dim)]
        for width in self.hidden_sizes:
            layers += [Dense(width, init=hidden_init), ActivationLayer(activation)]
            if self.dropout > 0:
                layers.append(Dropout(self.dropout))
        layers.append(Dense(self.vocab_size, init=init or default_initializer("softmax")))
        super().__init__(layers, loss="cross_entropy", n_features=self.window,
                         backend=backend, dtype=dtype, seed=seed, device=device)

    @property
    def reports_perplexity(self) -> bool:
        return True

    def get_config(self) -> dict:
        act = self.activation
        if not isinstance(act, (str, dict)):
            act = act.get_config()
        init = self.init
        if hasattr(init, "get_config"):
            init = init.get_config()
        return {"class": "LanguageModel", "vocab_size": self.vocab_size,
                "window": self.window, "dim": self.dim,
                "hidden_sizes": list(self.hidden_sizes), "activation": act, "init": init,
                "dropout": self.dropout, "dtype": self.dtype}

    def evaluate(  # type: ignore[override]  # a NamedTuple with one more field
            self, X, y, *, sample_weight=None) -> LanguageEvaluation:
        """Mean cross-entropy (nats per token), next-token accuracy and perplexity.

        Returns
        -------
        LanguageEvaluation
            A named tuple ``(loss, accuracy, perplexity)`` of Python floats;
            ``perplexity = exp(loss)``.
        """
        loss, acc = super().evaluate(X, y, sample_weight=sample_weight)
        return LanguageEvaluation(loss, acc, perplexity(loss))

    def generate(self, context, n_tokens, *, temperature=1.0, seed=None,
                 stop_id=None) -> list:
        """Draw continuations of ``context`` token by token.

        Parameters
        ----------
        context : int array of shape (window,) or (n_sequences, window)
            The ids the model sees first (pad short contexts with the vocabulary's
            boundary id, as :func:`mlpx.datasets.make_windows` does).
        n_tokens : int >= 1
            Most tokens drawn per sequence.
        temperature : float > 0, default=1.0
            Divides the logits: below 1 sharper (more likely tokens), above 1 flatter.
        seed : int, numpy.random.Generator or None, default=None
            Same seed, same text.
        stop_id : int or None, default=None
            A sequence ends when it draws this id (which is not included).

        Returns
        -------
        list of list of int
            The drawn ids of each sequence (without the context).
        """
        c = validate_params("LanguageModel.generate",
                            {"n_tokens": n_tokens, "temperature": temperature},
                            {"n_tokens": _WIDTH,
                             "temperature": Interval(float, 0.0, None, closed="neither")})
        rng = _backend.host_rng(seed)
        ctx = np.asarray(context)
        if ctx.ndim == 1:
            ctx = ctx[None, :]
        if ctx.ndim != 2 or ctx.shape[1] != self.window or ctx.shape[0] < 1:
            raise ValueError(f"The 'context' parameter of LanguageModel.generate must have "
                             f"shape (window,) or (n_sequences, window) with window="
                             f"{self.window}. Got shape {tuple(np.shape(context))} instead.")
        ctx = ctx.astype(np.int64, copy=True)
        out: list[list[int]] = [[] for _ in range(ctx.shape[0])]
        alive = np.ones(ctx.shape[0], dtype=bool)
        for _ in range(c["n_tokens"]):
            rows = np.flatnonzero(alive)
            if rows.size == 0:
                break
            z = _backend.to_numpy(self.decision_function(ctx[rows])).astype(np.float64)
            z = z / c["temperature"]
            p = np.exp(z - z.max(axis=1, keepdims=True))
            cdf = np.cumsum(p, axis=1)
            u = rng.random(rows.size) * cdf[:, -1]
            draw = np.minimum((cdf <= u[:, None]).sum(axis=1), self.vocab_size - 1)
            for r, t in zip(rows, draw):
                if stop_id is not None and int(t) == stop_id:
                    alive[r] = False
                else:
                    out[r].append(int(t))
            ctx[rows] = np.concatenate([ctx[rows, 1:], draw[:, None]], axis=1)
        return out


def model_from_config(config: dict, *, backend="numpy", seed=None) -> Sequential:
    """Rebuild an (untrained) model from :meth:`Sequential.get_config` output."""
    if not isinstance(config, dict) or config.get("class") not in ("MLP", "Sequential",
                                                                   "LanguageModel"):
        raise ValueError("A model config must be a dict with 'class' 'MLP', 'Sequential' "
                         f"or 'LanguageModel'; got {config!r}.")
    cfg = dict(config)
    cls = cfg.pop("class")
    if cls == "LanguageModel":
        return LanguageModel(backend=backend, seed=seed, **cfg)
    if cls == "MLP":
        sizes = cfg.pop("layer_sizes")
        return MLP(sizes, backend=backend, seed=seed, **cfg)
    layers = [get_layer(c) for c in cfg.pop("layers")]
    return Sequential(layers, backend=backend, seed=seed, **cfg)


# ---------------------------------------------------------------------- helpers
def _has_f64(xp) -> bool:
    return hasattr(xp, "float64")


def _norm_layer(kind):
    return BatchNorm() if kind == "batch" else LayerNorm()


def _preprocess_layer(spec):
    """The input layer ``MLP(preprocess=spec)`` puts first (a fresh one), or None."""
    if spec is None:
        return None
    if spec == "standardize":
        return Standardize()
    layer = get_layer(spec if isinstance(spec, dict) else spec.get_config())
    if not isinstance(layer, (Rescale, Standardize)):
        raise ValueError(f"The 'preprocess' parameter of MLP must be 'standardize', a "
                         f"Rescale or Standardize layer or its config dict. Got a "
                         f"{type(layer).__name__} config instead.")
    return layer


def _all_finite(X, xp) -> bool:
    """Whether every entry of the float array ``X`` is finite, in one pass without a
    temporary: NaN and infinity propagate into a sum (inf - inf is NaN), so a finite
    sum means finite entries. Only a sum that is not finite (a NaN or an infinity in
    ``X``, or finite values whose sum overflows) takes the element-wise test, so the
    answer is always that of ``all(isfinite(X))``, without NumPy's overflow or
    invalid-value warnings from the sum."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(xp.sum(X))
    if math.isfinite(total):
        return True
    return bool(xp.all(xp.isfinite(X)))


def _is_integral(X, xp) -> bool:
    """Whether ``X`` (host NumPy or the model's namespace) holds integers or bools."""
    if _backend.is_host_array(X):
        return np.asarray(X).dtype.kind in "biu"
    return bool(xp.isdtype(X.dtype, ("bool", "integral")))


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


_FIT_CONSTRAINTS = {
    "epochs": Interval(int, 0, None, closed="left"),
    "batch_size": [_WIDTH, None],
    "validation_split": Interval(float, 0.0, 1.0, closed="left"),
    "shuffle": Boolean(),
    "verbose": Interval(int, 0, None, closed="left"),
    "checkpoint_every": _WIDTH,
    "on_nonfinite": Options(("raise", "stop")),
    "clip_norm": [Interval(float, 0.0, None, closed="neither"), None],
    "clip_value": [Interval(float, 0.0, None, closed="neither"), None],
    "class_weight": [Options(("balanced",)), InstanceOf(dict), None],
}


def _copy(a, xp):
    return xp.asarray(a, copy=True)


mio.register_model_class("MLP", MLP)
mio.register_model_class("Sequential", Sequential)
mio.register_model_class("LanguageModel", LanguageModel)
