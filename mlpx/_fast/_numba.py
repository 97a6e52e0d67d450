"""Fused element-wise kernels for the NumPy step, compiled by numba (optional).

With the ``numba`` extra installed (``pip install mlpx[numba]``), the NumPy step
(:mod:`mlpx._fast.numpy_step`) runs its element-wise work through the kernels of this
module instead of chains of NumPy ufuncs (and inference, :mod:`mlpx._fast.numpy_forward`, its
bias and ReLU): the Adam/AdamW update in one pass over the
parameter, its gradient and both moments instead of 11; SGD with momentum (and
Nesterov, weight decay) in one pass instead of up to six; ReLU's forward in place
without reading a zero block; its backward in one pass without a mask buffer, together
with the column sums that are the bias gradient of the Dense layer below it; tanh's and
the sigmoid's backward in one pass without scratch.

**The same numbers, bit for bit.** Every kernel evaluates, per element, exactly the
operations of the NumPy code it replaces, in the same order and in the same float type:
a float operation is rounded per element, so the result does not depend on how the work
is split into passes, and numba (no ``fastmath``) neither reorders nor contracts
``a * b + c`` into a fused multiply-add. Scalars are passed already cast the way NumPy
casts them: a Python float meets a float32 array as a float32 (NEP 50). Where NumPy
would promote instead (a NumPy float64 scalar against float32 arrays),
:func:`scalar_as` says so and the caller keeps the NumPy code for that call.
``tests/test_fused.py`` checks bitwise equality against the NumPy updates.

**Switches.** :func:`mlpx._fast._policy.fused_kernels` (the fast-path policy) hands
these kernels to the step, or None when numba is not installed, when the environment
variable ``MLPX_NUMBA=0`` is set (or after ``_policy.set_numba_enabled(False)``) or when
``MLPX_FAST=0`` switched off the whole fast step; the NumPy step then runs exactly as
without this module. All kernels are compiled for float32 and float64 on the first
call of :func:`kernels` (the first fast step of a process) and cached on disk by numba
(``cache=True``): the first ever run pays the compilation (seconds), later processes
the import of numba and the load (about a second).

Threads: the kernels are compiled serial. ``parallel=True`` variants (bit for bit the
same) made the whole step 3-5x slower on two cores, numba's pool and OpenBLAS's
spinning for each other's core (``docs/performance.md``, "The last tenth").

This module is the only one that imports numba, and it does so lazily: importing mlpx
never imports numba.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["kernels", "scalar_as"]

_KERNELS: Any = None
_IMPORT_FAILED = False


def kernels():
    """The compiled kernels (a namespace), or None without a working numba.

    The first call imports numba and compiles (or loads from numba's cache) every kernel
    for float32 and float64, so no step ever compiles half-way; a numba that fails to
    import or to compile (one too old for this NumPy, say) means None, with a warning
    when it is installed but broken.
    """
    global _KERNELS, _IMPORT_FAILED
    if _KERNELS is None and not _IMPORT_FAILED:
        try:
            k = _build()
        except ImportError as exc:
            _IMPORT_FAILED = True
            if getattr(exc, "name", None) != "numba":
                warnings.warn(f"numba is installed but does not import ({exc}); the NumPy "
                              "step runs without its fused kernels.", stacklevel=2)
            return None
        try:
            _warm_up(k)
        except Exception as exc:  # a numba/NumPy mismatch surfaces here
            _IMPORT_FAILED = True
            warnings.warn(f"numba could not compile mlpx's fused kernels "
                          f"({type(exc).__name__}: {exc}); the NumPy step runs without "
                          "them. MLPX_NUMBA=0 silences this.", stacklevel=2)
            return None
        _KERNELS = k
    return _KERNELS


def _warm_up(k):
    """Compile (or load) every kernel for both float types, with the argument types the
    NumPy step passes."""
    for dt in (np.float32, np.float64):
        a, b, c, d = (np.ones(4, dtype=dt) for _ in range(4))
        one, zero = dt(1), dt(0)
        k.adam(a, b, c, d, *(dt(0.5),) * 7, 0)
        k.sgd(a, b, c, dt(0.1), dt(0.0), dt(0.9), 0, False)
        k.relu_forward(a, b, zero)
        k.relu_backward(a, b, one, zero)
        k.relu_backward_sum(a.reshape(2, 2), b.reshape(2, 2), one, zero, c[:2])
        k.tanh_backward(a, b, one)
        k.sigmoid_backward(a, b, one)
        k.bias_relu(a.reshape(2, 2), b[:2], zero)


def scalar_as(value, dtype):
    """``value`` as NumPy would apply it to an array of ``dtype`` in place, or None.

    A Python int or float (and a NumPy scalar of a float type no wider than ``dtype``)
    is cast to ``dtype``, which is what NumPy does before the operation; anything that
    would make NumPy compute in a wider type returns None (the caller then keeps NumPy).
    """
    t = type(value)
    if t is float or t is int:
        return dtype.type(value)
    if isinstance(value, np.floating | np.integer) and np.result_type(
            dtype, value) == dtype:
        return dtype.type(value)
    return None


def _build():
    import numba  # the optional extra; ImportError without it

    njit = numba.njit(cache=True, nogil=True, error_model="numpy")

    @njit
    def adam(p, g1, m, v, b1, b2, c, eps_b, step, shrink, wd1, mode):  # pragma: no cover
        # _adam_update of numpy_step, element by element, the same operations in the
        # same order; mode 0: no decay, 1: decoupled (AdamW), 2: coupled L2.
        for i in range(p.size):
            g = g1[i]
            pi = p[i]
            if mode == 1:
                pi = pi * shrink
            elif mode == 2:
                g = g + pi * wd1
            mi = m[i] * b1
            mi = mi + g
            vi = v[i] * b2
            g2 = g * g
            g2 = g2 * c
            vi = vi + g2
            d = np.sqrt(vi)
            d = d + eps_b
            d = mi / d
            d = d * step
            m[i] = mi
            v[i] = vi
            p[i] = pi - d

    @njit
    def sgd(p, g, vel, lr, wd, mu, mode, nesterov):  # pragma: no cover
        # _sgd_update of numpy_step with a velocity slot; mode 1: weight decay
        for i in range(p.size):
            gi = g[i]
            if mode == 1:
                t = p[i] * wd
                gi = t + gi
            vi = vel[i] * mu
            vi = vi + gi
            vel[i] = vi
            if nesterov:
                u = vi * mu
                gi = u + gi
            else:
                gi = vi
            p[i] = p[i] - gi * lr

    @njit
    def relu_backward(g, y, one, zero):  # pragma: no cover
        # multiply(g, greater(y, 0)): the bool mask cast to the float type
        for i in range(g.size):
            g[i] = g[i] * (one if y[i] > 0 else zero)

    @njit
    def relu_forward(x, out, zero):  # pragma: no cover
        # numpy.maximum(x, zeros): NaN propagates (with its sign), -0.0 gives +0.0
        for i in range(x.size):
            v = x[i]
            out[i] = v if (v > zero or v != v) else zero

    @njit
    def relu_backward_sum(g, y, one, zero, out):  # pragma: no cover
        # relu_backward on 2-D g, y, and the column sums of the result into out: the
        # sums of numpy.sum(g, axis=0) (row by row, in order), so the same numbers
        n, w = g.shape
        for i in range(n):
            for j in range(w):
                x = g[i, j] * (one if y[i, j] > 0 else zero)
                g[i, j] = x
                if i == 0:
                    out[j] = x
                else:
                    out[j] = out[j] + x

    @njit
    def bias_relu(y, b, zero):  # pragma: no cover
        # inference: numpy.maximum(y + b, 0) on 2-D y in place, in one pass: Dense's bias
        # addition, then relu_forward's rule
        n, w = y.shape
        for i in range(n):
            for j in range(w):
                v = y[i, j] + b[j]
                y[i, j] = v if (v > zero or v != v) else zero

    @njit
    def tanh_backward(g, y, one):  # pragma: no cover
        # g *= 1 - y*y, in _act_backward's order: s = y*y; s = 1 - s; g = g*s
        for i in range(g.size):
            s = y[i] * y[i]
            s = one - s
            g[i] = g[i] * s

    @njit
    def sigmoid_backward(g, y, one):  # pragma: no cover
        # g *= y * (1 - y), in _act_backward's order: s = 1 - y; s = s*y; g = g*s
        for i in range(g.size):
            s = one - y[i]
            s = s * y[i]
            g[i] = g[i] * s

    class _K:
        pass

    k = _K()
    k.adam, k.sgd, k.relu_backward = adam, sgd, relu_backward
    k.relu_backward_sum, k.relu_forward = relu_backward_sum, relu_forward
    k.tanh_backward, k.sigmoid_backward = tanh_backward, sigmoid_backward
    k.bias_relu = bias_relu
    return k
