"""Inference on NumPy without temporaries: the generic forward pass, in place.

:func:`logits` and :func:`proba` compute what :meth:`mlpx.Sequential.decision_function`
and :meth:`mlpx.Sequential.predict_proba` compute on the generic path, bit for bit, for
the plain stacks the fast step takes (:func:`forward_reason`): the same operations in
the same order, only written into buffers instead of new arrays.

- ``Dense``: ``numpy.matmul(x, W, out=buf)`` then ``buf += b`` (what ``x @ W + b``
  rounds to: the product, then one addition per entry);
- ReLU: ``numpy.maximum`` against a zero block kept per width (the values of
  ``maximum(x, 0)``, NaN and -0.0 included), or with numba's fused kernels
  (:func:`mlpx._fast._policy.fused_kernels`) the bias and the ReLU in one pass
  (``bias_relu``: the same two operations per entry); tanh in place, identity nothing,
  the sigmoid and leaky ReLU through their generic formula; Dropout is the identity;
- the softmax output: ``z - max``, ``exp``, ``/ sum`` in place in the logits array;
- the logits are written straight into the rows of the returned array, a chunk of
  at most ``chunk`` rows at a time (no concatenation), with the hidden activations in
  buffers kept per chunk size (two sizes at most, each of at most :data:`KEEP_BYTES`).

A model holds no reference to this module's state (a weak dictionary keyed by the model
holds the buffers), so pickling and ``copy.deepcopy`` are unaffected; two threads
predicting with one model do not share buffers (a call that finds them in use takes
the generic path). The generic path also runs when :func:`mlpx._backend.fast_path` is
not ``"numpy"`` (``MLPX_FAST=0``). ``tests/test_fast.py`` checks the equality.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

from .. import _backend
from ..activations import ACTIVATIONS
from . import _policy
from ._plan import build_plan

__all__ = ["forward_reason", "logits", "proba", "KEEP_BYTES"]

_INPLACE = ("relu", "tanh", "identity")
_FORMULA = ("sigmoid", "leaky_relu")
_MAX_SHAPES = 2
#: Hidden-activation buffers larger than this (bytes, per chunk size) are not kept
#: between calls: a large ``predict`` leaves no memory held behind.
KEEP_BYTES = 1 << 25

_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FORWARDS_LOCK = threading.Lock()


def forward_reason(model):
    """Why the in-place forward pass does not take ``model``, or None when it does.

    It takes built NumPy models (fast paths on) of float32 or float64 whose layers are
    ``Dense``, ``ActivationLayer`` (relu, tanh, identity, sigmoid, leaky_relu) and
    ``Dropout``, the first and last being ``Dense``; no optimizer is needed.

    Examples
    --------
    >>> from mlpx import MLP
    >>> from mlpx._fast.numpy_forward import forward_reason
    >>> forward_reason(MLP([4, 8, 3], seed=0)) is None
    True
    >>> forward_reason(MLP([4, 8, 3], activation="gelu", seed=0))
    "activation 'gelu'"
    """
    if _backend.fast_path(model.backend.xp) != "numpy":
        return "not NumPy with fast paths on"
    if not getattr(model, "built", False):
        return "the model is not built"
    if model.dtype not in ("float32", "float64"):
        return f"dtype {model.dtype!r}"
    plan = build_plan(model)
    if plan is None or not plan[0].first:
        return "a layer other than Dense, ActivationLayer and Dropout"
    for op in plan:
        if op.kind == "act" and (op.name not in _INPLACE + _FORMULA
                                 or type(op.activation) is not ACTIVATIONS[op.name]):
            return f"activation {op.name!r}"
    return None


class _Forward:
    """The plan and buffers of one model (see the module docstring)."""

    def __init__(self, model):
        self.key = _key(model)
        self.plan = build_plan(model)
        self.dtype = np.dtype(model.dtype)
        self.softmax = (model.output.name == "softmax"
                        and type(model.output) is ACTIVATIONS["softmax"])
        self.n_params = sum(int(p.size) for p in model.params)
        self.buffers: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def hidden(self, n):
        """The hidden activations' buffers for ``n`` rows (one per Dense but the last)
        and room for a zero block per ReLU width (made when first needed). Kept for the
        next call unless they exceed :data:`KEEP_BYTES`."""
        buf = self.buffers.get(n)
        if buf is None:
            outs = {i: np.empty((n, op.width), dtype=self.dtype)
                    for i, op in enumerate(self.plan) if op.kind == "dense" and not op.last}
            buf = (outs, {})
            if sum(a.nbytes for a in outs.values()) <= KEEP_BYTES:
                self.buffers[n] = buf
                while len(self.buffers) > _MAX_SHAPES:
                    self.buffers.popitem(last=False)
        else:
            self.buffers.move_to_end(n)
        return buf

    def run(self, params, X, out, kern):
        """The logits of ``X`` into ``out`` (rows of the result); ``kern``: numba's fused
        kernels or None."""
        outs, zeros = self.hidden(X.shape[0])
        plan = self.plan
        x = X
        done = -1  # an activation already applied with the bias
        for i, op in enumerate(plan):
            if op.kind == "dense":
                k = op.param_index
                y = out if op.last else outs[i]
                np.matmul(x, params[k], out=y)
                if op.bias:
                    nxt = plan[i + 1] if not op.last else None
                    if kern is not None and nxt is not None and nxt.kind == "act" \
                            and nxt.name == "relu":
                        kern.bias_relu(y, params[k + 1], self.dtype.type(0))
                        done = i + 1
                    else:
                        np.add(y, params[k + 1], out=y)
                x = y
            elif op.kind == "act" and i != done:
                name = op.name
                if name == "relu":
                    zero = zeros.get(op.width)
                    if zero is None:
                        zero = zeros[op.width] = np.zeros(x.shape, dtype=self.dtype)
                    np.maximum(x, zero, out=x)
                elif name == "tanh":
                    np.tanh(x, out=x)
                elif name != "identity":  # sigmoid, leaky_relu: the generic formula
                    np.copyto(x, op.activation.forward(x, xp=_namespace()))
            # Dropout: the identity outside training

    def softmax_rows(self, z):
        """The generic softmax of ``z`` (``exp(z - max) / sum``), in place."""
        m = np.max(z, axis=1, keepdims=True)
        np.subtract(z, m, out=z)
        np.exp(z, out=z)
        s = np.sum(z, axis=1, keepdims=True)
        np.divide(z, s, out=z)


def _key(model):
    """What the plan was made from, compared on every call (a layer's activation or
    dropout rate set by hand is seen)."""
    return (tuple((layer, getattr(layer, "activation", None), getattr(layer, "p", None),
                   getattr(layer, "bias", None)) for layer in model.layers),
            model.output, model.dtype)


def _namespace():
    return _backend.resolve_backend("numpy").xp


def _forward_of(model):
    """The model's :class:`_Forward` (made, or made again when its layers changed), or
    None when the model is not taken."""
    if _backend.fast_path(model.backend.xp) != "numpy":  # also when switched off later
        return None
    fwd = _FORWARDS.get(model)
    if fwd is not None and fwd.key == _key(model):
        return fwd
    if forward_reason(model) is not None:
        return None
    fwd = _Forward(model)
    with _FORWARDS_LOCK:
        _FORWARDS[model] = fwd
    return fwd


def _run(model, X, chunk, proba):
    if type(X) is not np.ndarray or X.ndim != 2 or X.shape[0] == 0:
        return None
    fwd = _forward_of(model)
    if fwd is None or X.dtype != fwd.dtype or X.shape[1] != fwd.plan[0].n_in:
        return None
    params = model.params
    if any(type(p) is not np.ndarray or p.dtype != fwd.dtype for p in params):
        return None
    if not fwd.lock.acquire(blocking=False):  # another thread predicts with this model
        return None
    try:
        n = X.shape[0]
        out = np.empty((n, fwd.plan[-1].width), dtype=fwd.dtype)
        kern = _policy.fused_kernels(fwd.n_params)
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            z = out[a:b]
            fwd.run(params, X[a:b], z, kern)
            if proba and fwd.softmax:
                fwd.softmax_rows(z)
    finally:
        fwd.lock.release()
    if proba and not fwd.softmax:
        return model.output.forward(out, xp=_namespace())
    return out


def logits(model, X, chunk):
    """The logits of ``X`` (a NumPy array of the model's dtype) computed ``chunk`` rows
    at a time, or None when the generic path must run (:func:`forward_reason`, or an
    input of another type, dtype or width)."""
    return _run(model, X, chunk, False)


def proba(model, X, chunk):
    """The output activations of ``X`` (:meth:`mlpx.Sequential.predict_proba`), the
    softmax in place; None as for :func:`logits`."""
    return _run(model, X, chunk, True)
