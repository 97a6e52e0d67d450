"""Backend-specific fast paths, each proven equal to the generic path by tests.

Today there is one: a NumPy training step for plain MLPs
(:class:`mlpx._fast.numpy_step.NumpyTrainStep`). The model asks for it once, in
:meth:`mlpx.Sequential.compile`::

    self._fast_step = _fast.select_step(self)      # a callable, or None

and :meth:`mlpx.Sequential.train_step` calls it when there is one; a call that returns
None (inputs the fast step does not take, fast paths switched off) falls through to the
generic Array API step, which is also the only path on array-api-strict, CuPy or any
other namespace.

One predicate decides, :func:`unsupported_reason`: the model's namespace must be NumPy
(:func:`mlpx._backend.is_numpy_namespace`) and its structure one the step implements.
It returns None when the fast step applies and otherwise says why not, which is what
tests and curious users look at.

Supported: a stack whose first and last layers are :class:`~mlpx.layers.Dense` (with or
without bias), with :class:`~mlpx.layers.ActivationLayer` (``relu``, ``leaky_relu``,
``tanh``, ``sigmoid``, ``identity``) and :class:`~mlpx.layers.Dropout` layers between
them; the loss/output pairs softmax + cross-entropy, sigmoid + binary cross-entropy and
identity + MSE; float32 or float64; L2 (``alpha``) and sample weights; the optimizers
SGD (any momentum, Nesterov, weight decay), Adam, AdamW and RMSProp with any schedule.
Everything else (PReLU, Maxout, other activations or losses) trains on the generic path.

``MLPX_FAST=0`` in the environment, or :func:`set_enabled` / :func:`disabled`, switches
every fast path off (the benchmarks and tests compare both ways).
"""

from __future__ import annotations

import contextlib
import os

from .. import _backend

__all__ = ["select_step", "unsupported_reason", "enabled", "set_enabled", "disabled"]

_ENABLED = os.environ.get("MLPX_FAST", "1").strip().lower() not in ("0", "false", "no")

#: Activations the NumPy step implements (forward and backward in place).
NUMPY_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")
#: (loss name, output activation name) pairs the NumPy step implements.
NUMPY_LOSSES = (("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
                ("mse", "identity"))
_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def enabled() -> bool:
    """True unless fast paths were switched off (``MLPX_FAST=0`` or :func:`set_enabled`)."""
    return _ENABLED


def set_enabled(flag: bool) -> bool:
    """Switch every fast path on or off; return the previous setting."""
    global _ENABLED
    old = _ENABLED
    _ENABLED = bool(flag)
    return old


@contextlib.contextmanager
def disabled():
    """Context manager: run the generic path inside, whatever the model supports."""
    old = set_enabled(False)
    try:
        yield
    finally:
        set_enabled(old)


def unsupported_reason(model):
    """Why ``model`` cannot use the NumPy fast step, or None when it can.

    This is the one predicate: the namespace test plus the structural test.

    Parameters
    ----------
    model : mlpx.Sequential
        A built, compiled model.

    Returns
    -------
    str or None

    Examples
    --------
    >>> from mlpx import MLP
    >>> from mlpx._fast import unsupported_reason
    >>> unsupported_reason(MLP([4, 8, 3], seed=0).compile("adam")) is None
    True
    >>> unsupported_reason(MLP([4, 8, 3], activation="gelu", seed=0).compile("adam"))
    "activation 'gelu'"
    """
    from ..activations import ACTIVATIONS
    from ..layers import ActivationLayer, Dense, Dropout
    from ..losses import LOSSES
    from ..optimizers import OPTIMIZERS

    if not _backend.is_numpy_namespace(model.backend.xp):
        return f"the backend is {model.backend.name!r}, not NumPy"
    if not getattr(model, "built", False):
        return "the model is not built"
    if model.dtype not in ("float32", "float64"):
        return f"dtype {model.dtype!r}"
    opt = getattr(model, "optimizer_", None)
    if opt is None or getattr(model, "optimizer_state_", None) is None:
        return "the model is not compiled"
    if not any(type(opt) is OPTIMIZERS[name] for name in _OPTIMIZERS):
        return f"optimizer {type(opt).__name__} has no fast update"
    pair = (model.loss.name, model.output.name)
    if pair not in NUMPY_LOSSES or type(model.loss) is not LOSSES[pair[0]] \
            or type(model.output) is not ACTIVATIONS[pair[1]]:
        return f"loss {model.loss.name!r} with output {model.output.name!r}"
    layers = model.layers
    if type(layers[0]) is not Dense or type(layers[-1]) is not Dense:
        return "the first and last layers must be Dense"
    for layer in layers:
        if type(layer) is Dense or type(layer) is Dropout:
            continue
        if type(layer) is ActivationLayer:
            act = layer.activation
            if act.name not in NUMPY_ACTIVATIONS or type(act) is not ACTIVATIONS[act.name]:
                return f"activation {act.name!r}"
            continue
        return f"layer {type(layer).__name__}"
    return None


def _model_key(model):
    """What a step was planned for; compared by identity (and value) on every call."""
    return (tuple(model.layers), model.loss, model.output, model.optimizer_, model.alpha,
            model.dtype, model.backend.name)


def select_step(model):
    """Return a fast training step for ``model``, or None for the generic path.

    The step is called as ``step(model, X, Y, sample_weight)`` and returns
    ``(loss, logits)`` or None (take the generic path for this call). It keeps its
    buffers to itself; the model stores it in ``model._fast_step`` and never pickles it.
    """
    if unsupported_reason(model) is not None:
        return None
    from .numpy_step import NumpyTrainStep, build_plan

    plan = build_plan(model)
    if plan is None:  # pragma: no cover - unsupported_reason covers the same ground
        return None
    return NumpyTrainStep(model, plan, _model_key(model))
