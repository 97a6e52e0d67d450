"""When a fast step may run: the on/off switch and the structural test of a model.

Below :mod:`mlpx._fast._step` (which asks it on every call) and re-exported by
:mod:`mlpx._fast`.
"""

from __future__ import annotations

import contextlib
import os

from .. import _backend
from ..activations import ACTIVATIONS
from ..layers import (
    ActivationLayer,
    BatchNorm,
    Dense,
    Dropout,
    LayerNorm,
    Maxout,
    PReLU,
    Rescale,
    Standardize,
)
from ..losses import LOSSES
from ..optimizers import OPTIMIZERS
from . import _numba
from ._plan import build_plan

__all__ = ["enabled", "set_enabled", "disabled", "structure_reason", "jax_structure_reason",
           "model_key", "NUMPY_ACTIVATIONS", "NUMPY_LOSSES", "FAST_OPTIMIZERS", "fused_kernels",
           "set_numba_enabled", "FUSED_MIN_PARAMS"]

_NUMBA = os.environ.get("MLPX_NUMBA", "1").strip().lower() not in ("0", "false", "no", "off")

#: Activations the NumPy step implements (forward and backward in place).
NUMPY_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")
#: (loss name, output activation name) pairs the NumPy step implements.
NUMPY_LOSSES = (("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
                ("mse", "identity"))
FAST_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def enabled() -> bool:
    """True unless fast paths were switched off (``MLPX_FAST=0`` or :func:`set_enabled`).

    The switch lives in :func:`mlpx._backend.fast_enabled`: it turns off every
    backend-specific path (the training steps, the in-place optimizer update, SciPy's
    normal CDF, the embedding scatter-add), not only the steps of this package.
    """
    return _backend.fast_enabled()


def set_enabled(flag: bool) -> bool:
    """Switch every fast path on or off; return the previous setting."""
    return _backend.set_fast_enabled(flag)


def set_numba_enabled(flag: bool) -> bool:
    """Let the NumPy step use numba's fused kernels (when installed) or not; return the
    previous setting. The environment variable ``MLPX_NUMBA=0`` sets it off at import."""
    global _NUMBA
    old = _NUMBA
    _NUMBA = bool(flag)
    return old


#: Models with fewer parameters than this never use (or import) numba: its import and
#: the load of the cached kernels (about a second) would outweigh what they save.
FUSED_MIN_PARAMS = 1 << 15


def fused_kernels(n_params=None):
    """The fused element-wise kernels for the NumPy step (:mod:`mlpx._fast._numba`), or
    None: without numba, with ``MLPX_NUMBA=0``, with fast paths off, or for a model of
    fewer than :data:`FUSED_MIN_PARAMS` parameters (``n_params``). The kernels give the
    NumPy step's numbers bit for bit, so this changes speed only.

    Examples
    --------
    >>> from mlpx._fast._policy import fused_kernels
    >>> fused_kernels(n_params=100) is None  # too small to be worth numba's import
    True
    """
    if not (_backend.fast_enabled() and _NUMBA):
        return None
    if n_params is not None and n_params < FUSED_MIN_PARAMS:
        return None
    return _numba.kernels()


@contextlib.contextmanager
def disabled():
    """Context manager: run the generic path inside, whatever the model supports."""
    old = set_enabled(False)
    try:
        yield
    finally:
        set_enabled(old)


def _state_reason(model, update_kind):
    """What every fast step needs of the model's state (built, a float dtype, compiled
    with a built-in optimizer), or None."""
    if not getattr(model, "built", False):
        return "the model is not built"
    if model.dtype not in ("float32", "float64"):
        return f"dtype {model.dtype!r}"
    opt = getattr(model, "optimizer_", None)
    if opt is None or getattr(model, "optimizer_state_", None) is None:
        return "the model is not compiled"
    if not any(type(opt) is OPTIMIZERS[name] for name in FAST_OPTIMIZERS):
        return f"optimizer {type(opt).__name__} has no {update_kind} update"
    return None


def structure_reason(model, kind):
    """The structural half of :func:`unsupported_reason` for the ``kind`` of step.

    ``kind`` is ``"numpy"``, ``"cupy"``, ``"torch"`` or ``"jax"``. The PyTorch step
    takes what the NumPy step takes (the same rules). The CuPy step also needs every
    activation layer to follow a Dense layer directly (it fuses bias and activation into
    one kernel). The JAX step compiles the generic step itself, so it takes every
    built-in layer, activation and loss (see :func:`jax_structure_reason`).
    """
    if kind == "jax":
        return jax_structure_reason(model)
    reason = _state_reason(model, "fast")
    if reason:
        return reason
    pair = (model.loss.name, model.output.name)
    if pair not in NUMPY_LOSSES or type(model.loss) is not LOSSES[pair[0]] \
            or type(model.output) is not ACTIVATIONS[pair[1]]:
        return f"loss {model.loss.name!r} with output {model.output.name!r}"
    layers = model.layers
    for layer in layers:
        if isinstance(layer, (BatchNorm, LayerNorm, Standardize, Rescale)):
            return (f"layer {type(layer).__name__} (normalisation and preprocessing layers "
                    "train on the generic step)")
    if type(layers[0]) is not Dense or type(layers[-1]) is not Dense:
        return "the first and last layers must be Dense"
    for layer in layers:
        if type(layer) is Dense:
            continue
        if type(layer) is Dropout:
            continue
        if type(layer) is ActivationLayer:
            act = layer.activation
            if act.name not in NUMPY_ACTIVATIONS or type(act) is not ACTIVATIONS[act.name]:
                return f"activation {act.name!r}"
            continue
        return f"layer {type(layer).__name__}"
    if kind == "cupy" and any(op.kind == "act" and not op.after_dense
                              for op in build_plan(model)):
        return "an activation layer that does not follow a Dense layer (CuPy step)"
    return None


def jax_structure_reason(model):
    """The structural test of the compiled JAX step (:mod:`mlpx._fast.jax_step`).

    It traces :meth:`mlpx.Sequential.loss_and_grads` and the optimizer's ``update``
    under ``jax.jit``, so what it needs is code known to trace: the built-in layers
    (Dense, ActivationLayer, Dropout, PReLU, Maxout), activations and losses of the
    registries, and the optimizers SGD, Adam, AdamW and RMSProp.
    """
    reason = _state_reason(model, "compiled")
    if reason:
        return reason
    if model.loss.name not in LOSSES or type(model.loss) is not LOSSES[model.loss.name]:
        return f"loss {type(model.loss).__name__}"
    acts = [model.output] + [layer.activation for layer in model.layers
                             if type(layer) is ActivationLayer]
    for act in acts:
        if act.name not in ACTIVATIONS or type(act) is not ACTIVATIONS[act.name]:
            return f"activation {type(act).__name__}"
    for layer in model.layers:
        if type(layer) not in (Dense, ActivationLayer, Dropout, PReLU, Maxout):
            return f"layer {type(layer).__name__}"
    return None


def model_key(model):
    """What a step was planned for; compared by identity (and value) on every call.

    Not in it: ``model.alpha`` and the optimizer's hyper-parameters, which the steps
    read afresh on every call (the scikit-learn wrapper sets ``alpha`` per batch).
    """
    return (tuple(model.layers), model.loss, model.output, model.optimizer_,
            model.dtype, model.backend.name)
