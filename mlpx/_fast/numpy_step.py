"""A NumPy training step for plain MLPs: preallocated, in place, products fused by BLAS.

:class:`NumpyTrainStep` computes what :meth:`mlpx.Sequential.train_step` computes on the
generic path (forward, loss gradient, backward, optimizer update) for the models that
:func:`mlpx._fast.unsupported_reason` accepts, with the same numbers up to float
rounding (``tests/test_fast.py`` holds it to that). What it does differently:

- Every intermediate lives in a buffer allocated once per batch shape (an LRU of a few
  shapes, so the last partial batch of an epoch does not evict the full one); gradient
  and scratch arrays are allocated once per model.
- ``Dense`` forward pre-fills its output with the bias and lets BLAS accumulate the
  product on top (``beta=1``): the bias add costs nothing, since BLAS would otherwise
  clear the output first anyway.
- Element-wise layers work in place on the buffer of the layer before them when nothing
  else needs it; ReLU is ``maximum`` against a preallocated zero block (NumPy's SIMD loop
  for two contiguous operands is several times faster than against the scalar 0) and its
  backward multiplies by the mask ``y > 0``, which is the same as ``x > 0``.
- The first layer never computes the gradient of its input.
- Plain SGD folds the learning rate (and L2 / weight decay) into the weight-gradient
  product: ``W <- (1 - lr*lambda) W - lr * x.T @ dz`` is one BLAS call, so the weight
  gradient is never written to memory at all. Other optimizers get the gradient in a
  preallocated buffer (Adam's pre-scaled by ``1 - beta1`` through the product's
  ``alpha``) and update in place through scratch-buffer versions of the optimizers' NumPy
  updates that allocate nothing.
- As every fast step (:mod:`mlpx._fast._step`), all products and allocations come
  first and the writes (those BLAS calls into the weights, the updates, the step
  counter) last, so an exception before the writes leaves the model as it was.

Parameters are updated in place, so ``model.params`` is always current. The step reads
``layer.params`` and the optimizer state afresh every call, so ``set_params`` and a new
``compile`` are seen at once.
"""

from __future__ import annotations

import math

import numpy as np

from . import _blas, _numba, _policy
from ._step import FastStep, StepOps

__all__ = ["NumpyTrainStep", "NumpyOps", "adam_corrections"]


class _Buffers:
    """Everything a step needs for one batch size ``n``."""

    def __init__(self, n, plan, dtype):
        self.n = n
        self.act = []      # forward outputs, one per plan entry (aliases when in place)
        self.grad = {}     # plan index of a Dense -> gradient of its input
        self.masks = {}    # plan index -> bool / float mask buffers
        self.zeros = {}    # width -> zero block for ReLU
        self.noise = {}    # width -> float64 uniform buffer for dropout
        for i, op in enumerate(plan):
            if op.inplace:
                self.act.append(self.act[-1])
            elif op.kind == "dense" and op.last:
                self.act.append(None)  # logits: a fresh array every step (it is returned)
            else:
                self.act.append(np.empty((n, op.width), dtype=dtype))
            if op.kind == "act" and op.name == "relu":
                self.masks[i] = np.empty((n, op.width), dtype=bool)
                if op.width not in self.zeros:
                    self.zeros[op.width] = np.zeros((n, op.width), dtype=dtype)
            elif op.kind == "dropout":
                self.masks[i] = (np.empty((n, op.width), dtype=bool),
                                 np.empty((n, op.width), dtype=dtype))
                if op.width not in self.noise:
                    self.noise[op.width] = np.empty((n, op.width), dtype=np.float64)
            elif op.kind == "act":
                self.masks[i] = np.empty((n, op.width), dtype=dtype)  # scratch
        # one per Dense (not per width: two Dense layers of equal input width in a row
        # would otherwise read and write the same buffer in one product)
        for i, op in enumerate(plan):
            if op.kind == "dense" and not op.first:
                self.grad[i] = np.empty((n, op.n_in), dtype=dtype)


class NumpyOps(StepOps):
    """The device operations of :class:`NumpyTrainStep`: in-place NumPy and BLAS."""

    xp = np
    fuses_activation = False
    fuses_sgd = True

    def __init__(self):
        self._ptrs = {}         # id -> (array, data pointer) of long-lived arrays
        self._grads = None
        self._scratch = None
        self._fn = None
        self._use_blas = False
        self._x_ok = False
        self._dz = None
        self._k = None          # numba's fused kernels (_policy.fused_kernels) or None
        self._colsum = None     # (g, column sums of g) left by a fused ReLU backward
        self._sums = {}         # width -> buffer for those sums
        self._plan = ()
        self._n_params = 0
        self.adam_scalars = None  # (key, scalars) of the last fused Adam update

    def setup(self, model, plan, opt_name):
        self._grads = None      # per-model gradient buffers for the optimizer route
        self._scratch = None
        self.dtype = np.dtype(model.dtype)
        self.opt_name = opt_name
        self.fast_adam = opt_name in ("adam", "adamw")
        self.decoupled = opt_name == "adamw"
        self._plan = plan
        self._sums = {}
        self._n_params = sum(int(p.size) for p in model.params)
        self.adam_scalars = None

    # ------------------------------------------------------------------ buffers
    def new_buffers(self, n, plan, dtype):
        return _Buffers(n, plan, dtype)

    def evicted(self):
        self._ptrs = {}  # it may hold dropped buffers or params: let them go

    def grad_buffers(self, params, fused):
        """Per-param gradients (fused SGD: biases only) and two scratch arrays."""
        grads = self._grads
        if grads is None or len(grads) != len(params) or any(
                g is not None and g.shape != p.shape for g, p in zip(grads, params)):
            bias = [p.ndim == 1 for p in params]
            grads = [np.empty_like(p) if (b or not fused) else None
                     for p, b in zip(params, bias)]
            size = max((g.size for g in grads if g is not None), default=1)
            self._scratch = (np.empty(size, dtype=self.dtype),
                             np.empty(size, dtype=self.dtype))
            self._grads = grads
        return grads

    def _ptr(self, a):
        """Data pointer of a long-lived array (a buffer or a parameter), cached: NumPy's
        ``.ctypes.data`` costs more than the product itself for small layers."""
        hit = self._ptrs.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        if len(self._ptrs) > 256:
            self._ptrs = {}
        ptr = a.ctypes.data
        self._ptrs[id(a)] = (a, ptr)
        return ptr

    def _gemm(self, fn, x, xt, x_cached, y, yt, y_cached, out, out_cached, alpha, beta):
        """``out = alpha * op(x) @ op(y) + beta * out`` for C-contiguous x, y, out through
        the raw binding (``xt``/``yt``: use the transpose)."""
        m = x.shape[1] if xt else x.shape[0]
        k = x.shape[0] if xt else x.shape[1]
        n = y.shape[0] if yt else y.shape[1]
        fn(101, 112 if xt else 111, 112 if yt else 111, m, n, k, alpha,
           self._ptr(x) if x_cached else x.ctypes.data, x.shape[1],
           self._ptr(y) if y_cached else y.ctypes.data, y.shape[1], beta,
           self._ptr(out) if out_cached else out.ctypes.data, n)

    # ------------------------------------------------------------------ forward
    def begin(self, X):
        self._use_blas = _blas.available()
        self._fn = _blas.raw(self.dtype) if self._use_blas else None
        self._x_ok = X.flags.c_contiguous
        self._dz = None
        self._k = _policy.fused_kernels(self._n_params)
        self._colsum = None

    def dense_forward(self, i, op, x, W, b, buf, act):
        fn = self._fn
        out = np.empty((buf.n, op.width), dtype=self.dtype) if op.last else buf.act[i]
        if b is not None:
            if fn is not None and (i > 0 or self._x_ok):
                np.copyto(out, b)
                self._gemm(fn, x, False, i > 0, W, False, True, out, not op.last, 1.0, 1.0)
            elif self._use_blas:
                np.copyto(out, b)
                _blas.gemm(x, W, out, beta=1.0)
            else:
                np.matmul(x, W, out=out)
                out += b
        else:
            np.matmul(x, W, out=out)
        return out

    def act_forward(self, i, op, x, buf):
        out = buf.act[i]
        k = self._k
        if k is not None and op.name == "relu" and x.flags.c_contiguous \
                and out.flags.c_contiguous:
            k.relu_forward(x.reshape(-1), out.reshape(-1), self.dtype.type(0))
            return out
        _act_forward(op, x, out, buf.zeros.get(op.width))
        return out

    def dropout_forward(self, i, op, x, buf, rng):
        out = buf.act[i]
        bmask, fmask = buf.masks[i]
        u = buf.noise[op.width]
        rng.random(out=u)
        # the generic path draws float64, casts to the model dtype, compares
        if self.dtype != np.float64:
            np.copyto(fmask, u)
            np.greater_equal(fmask, op.p, out=bmask)
        else:
            np.greater_equal(u, op.p, out=bmask)
        np.copyto(fmask, bmask)
        fmask *= 1.0 / (1.0 - op.p)
        np.multiply(x, fmask, out=out)
        return out

    def loss_and_grad(self, model, z, Y, w, buf):
        loss, dz = _loss_and_grad(model, z, Y, w)
        self._dz = dz
        return loss, dz

    # ------------------------------------------------------------------ backward
    def act_backward(self, i, op, g, buf):
        k = self._k
        y = buf.act[i]
        if k is not None and op.name == "relu" and g.flags.c_contiguous \
                and y.flags.c_contiguous:
            one, zero = self.dtype.type(1), self.dtype.type(0)
            below = self._plan[i - 1] if i > 0 else None
            if below is not None and below.kind == "dense" and below.bias:
                # the Dense below sums this g for its bias gradient: do it in this pass
                sums = self._sums.get(g.shape[1])
                if sums is None:
                    sums = self._sums[g.shape[1]] = np.empty(g.shape[1], dtype=self.dtype)
                k.relu_backward_sum(g, y, one, zero, sums)
                self._colsum = (g, sums)
            else:
                k.relu_backward(g.reshape(-1), y.reshape(-1), one, zero)
            return
        if k is not None and op.name in ("tanh", "sigmoid") and g.flags.c_contiguous \
                and y.flags.c_contiguous:
            fn = k.tanh_backward if op.name == "tanh" else k.sigmoid_backward
            fn(g.reshape(-1), y.reshape(-1), self.dtype.type(1))
            return
        _act_backward(op, g, y, buf.masks[i])

    def dropout_backward(self, i, op, g, buf):
        g *= buf.masks[i][1]

    def input_grad(self, i, op, g, W, buf):
        dx = buf.grad[i]
        np.matmul(g, W.T, out=dx)
        return dx

    def _scale(self, hyper):
        # Adam's gradients arrive pre-scaled by (1 - beta1) (see _adam_update)
        return 1.0 - hyper["beta1"] if self.fast_adam else 1.0

    def weight_grad(self, i, x_in, g, W, gW, hyper, alpha, decay):
        fn = self._fn
        scale = self._scale(hyper)
        if fn is not None and (i > 0 or self._x_ok) and g.flags.c_contiguous:
            self._gemm(fn, x_in, True, i > 0, g, False, g is not self._dz, gW, True,
                       scale, 0.0)
        else:
            _blas.gemm(x_in.T, g, gW, alpha=scale)
        if alpha > 0 and decay:
            tmp = self._scratch[0][:W.size].reshape(W.shape)
            np.multiply(W, alpha * scale, out=tmp)
            gW += tmp

    def bias_grad(self, g, b, gb, hyper, alpha, decay):
        scale = self._scale(hyper)
        stash = self._colsum
        if stash is not None and stash[0] is g:  # summed by the fused ReLU backward
            np.copyto(gb, stash[1])
        else:
            np.sum(g, axis=0, out=gb)
        if scale != 1.0:
            gb *= scale
        if alpha > 0 and decay:  # pragma: no cover - biases never decay
            gb += (alpha * scale) * b

    def sgd_fused_weight(self, i, x_in, g, W, lr, shrink):
        fn = self._fn
        if fn is not None and (i > 0 or self._x_ok) and g.flags.c_contiguous:
            return self._gemm, (fn, x_in, True, i > 0, g, False, g is not self._dz, W,
                                True, -lr, shrink)
        if _blas.can_gemm(x_in.T, g, W):
            return _blas_gemm, (x_in.T, g, W, -lr, shrink)
        # NumPy arithmetic (no usable BLAS): the product now, W written in phase 4
        prod = np.matmul(x_in.T, g)
        prod *= -lr
        return _axpby, (prod, W, shrink)

    # ------------------------------------------------------------------ writes
    def update(self, k, p, g, slots, hyper, lr, t, decay, alpha):
        kern = self._k
        if kern is not None and _fused_update(kern, self, p, g, slots, hyper, lr, t, decay):
            return
        tmp, tmp2 = self._scratch
        tmp = tmp[:p.size].reshape(p.shape)
        if self.fast_adam:
            _adam_update(hyper, self.decoupled, p, g, slots["m"], slots["v"], tmp, lr=lr,
                         t=t, decay=decay)
        elif self.opt_name == "sgd":
            _sgd_update(hyper, p, g, slots.get("velocity"), tmp,
                        tmp2[:p.size].reshape(p.shape), lr=lr, decay=decay)
        else:
            _rmsprop_update(hyper, p, g, slots["square_avg"], slots.get("velocity"), tmp,
                            tmp2[:p.size].reshape(p.shape), lr=lr, decay=decay)


class NumpyTrainStep(FastStep):
    """The fast step on NumPy (:class:`NumpyOps`); call it as ``step(model, X, Y, w)``.

    Built by :func:`mlpx._fast.select_step` after :func:`mlpx._fast.unsupported_reason`
    said yes. Returns ``(loss, logits)`` like :meth:`mlpx.Sequential.train_step`, or
    None when this call must take the generic path instead (see
    :meth:`mlpx._fast._step.FastStep.__call__`).
    """

    kind = "numpy"

    def __init__(self, model, plan, key):
        super().__init__(model, plan, key, NumpyOps())


# ---------------------------------------------------------------------- helpers
def _act_forward(op, x, out, zeros):
    name = op.name
    if name == "relu":
        np.maximum(x, zeros, out=out)
    elif name == "identity":
        if out is not x:
            np.copyto(out, x)
    elif name == "tanh":
        np.tanh(x, out=out)
    else:  # sigmoid, leaky_relu: the generic formula (exactly), then into the buffer
        np.copyto(out, op.activation.forward(x, xp=_xp()))


def _act_backward(op, g, y, scratch):
    """``g <- dL/dx`` in place from ``g = dL/dy`` and the output ``y``."""
    name = op.name
    if name == "relu":
        np.greater(y, 0, out=scratch)
        np.multiply(g, scratch, out=g)
    elif name == "identity":
        return
    elif name == "tanh":  # dy * (1 - y*y), the generic order of operations
        np.multiply(y, y, out=scratch)
        np.subtract(1.0, scratch, out=scratch)
        g *= scratch
    elif name == "sigmoid":  # dy * (y * (1 - y))
        np.subtract(1.0, y, out=scratch)
        scratch *= y
        g *= scratch
    else:  # leaky_relu: where(y > 0, dy, alpha * dy); y > 0 exactly when x > 0
        np.copyto(g, op.activation.backward(g, None, y, xp=_xp()))


def _xp():
    from .._backend import resolve_backend

    return resolve_backend("numpy").xp


def _loss_and_grad(model, z, Y, w):
    """The loss value and dL/dz: a lean copy of the generic softmax + cross-entropy (same
    operations, same order), the generic loss itself for the other pairs (the logits are
    small next to everything else)."""
    n = z.shape[0]
    if model.loss.name == "cross_entropy" and w is None:
        s = z - np.max(z, axis=1, keepdims=True)
        e = np.exp(s)
        logp = s - np.log(np.sum(e, axis=1, keepdims=True))
        per_sample = -np.sum(Y * logp, axis=1)
        g = np.exp(logp, out=e)
        g -= Y
        g *= 1.0 / n
        return np.sum(per_sample) / n, g
    return model.loss.value_and_grad(z, Y, output=model.output, xp=_xp(), sample_weight=w)


def adam_corrections(hyper, lr, t):
    """``(lr / (1 - beta1^t), sqrt(1 - beta2^t))``: Adam's bias corrections."""
    return lr / (1.0 - hyper["beta1"] ** t), math.sqrt(1.0 - hyper["beta2"] ** t)


def _sgd_update(hyper, p, g, vel, tmp, tmp2, *, lr, decay):
    """SGD in place with the operations of ``SGD._update_numpy`` (so the same numbers),
    into the scratch arrays ``tmp``/``tmp2`` of ``p``'s shape; ``g`` is not modified."""
    wd = hyper["weight_decay"]
    if decay and wd:
        np.multiply(p, wd, out=tmp)
        tmp += g
        g = tmp
    if vel is not None:
        mu = hyper["momentum"]
        vel *= mu
        vel += g
        if hyper["nesterov"]:
            np.multiply(vel, mu, out=tmp2)
            tmp2 += g
            g = tmp2
        else:
            g = vel
    out = g if (g is tmp or g is tmp2) else tmp
    np.multiply(g, lr, out=out)
    p -= out


def _rmsprop_update(hyper, p, g, s, vel, tmp, tmp2, *, lr, decay):
    """RMSProp in place with the operations of ``RMSProp._update_numpy``, into scratch."""
    wd = hyper["weight_decay"]
    if decay and wd:
        np.multiply(p, wd, out=tmp)
        tmp += g
        g = tmp
    rho = hyper["rho"]
    s *= rho
    sq = np.multiply(g, g, out=tmp2)
    sq *= 1.0 - rho
    s += sq
    denom = np.sqrt(s, out=sq)
    denom += hyper["eps"]
    scaled = np.divide(g, denom, out=denom)
    if vel is not None:
        vel *= hyper["momentum"]
        vel += scaled
        scaled = np.multiply(vel, lr, out=scaled)
    else:
        scaled *= lr
    p -= scaled


def _fused_update(kern, ops, p, g, slots, hyper, lr, t, decay):
    """The update of ``NumpyOps.update`` through numba's fused kernels, bit for bit the
    NumPy code's numbers; False (nothing written) where there is no kernel for it or
    NumPy would compute in a wider type than the arrays' (a NumPy float64 scalar)."""
    dt = ops.dtype
    if ops.fast_adam:
        b1, b2 = hyper["beta1"], hyper["beta2"]
        wd = hyper["weight_decay"]
        decayed = bool(decay and wd)
        # the same scalars for every parameter of a step: worked out once per step
        # (the types too: 1e-3 == np.float64(1e-3), but NumPy computes with them apart)
        eps = hyper["eps"]
        key = (t, lr, b1, b2, eps, wd, decayed,
               type(lr), type(b1), type(b2), type(eps), type(wd))
        cached = ops.adam_scalars
        if cached is not None and cached[0] == key:
            scalars = cached[1]
        else:
            scalars = _adam_scalars(hyper, ops.decoupled, dt, lr, t, decayed)
            ops.adam_scalars = (key, scalars)
        if scalars is None:
            return False
        kern.adam(p.reshape(-1), g.reshape(-1), slots["m"].reshape(-1),
                  slots["v"].reshape(-1), *scalars)
        return True
    if ops.opt_name != "sgd":
        return False
    vel = slots.get("velocity")
    if vel is None:
        return False
    wd = hyper["weight_decay"]
    mode = 1 if (decay and wd) else 0
    scalars = [_numba.scalar_as(x, dt) for x in (lr, wd if mode else 0.0,
                                                 hyper["momentum"])]
    if any(x is None for x in scalars):
        return False
    kern.sgd(p.reshape(-1), g.reshape(-1), vel.reshape(-1), *scalars, mode,
             bool(hyper["nesterov"]))
    return True


def _adam_scalars(hyper, decoupled, dt, lr, t, decayed):
    """The scalar arguments of the fused Adam kernel (the constants of _adam_update,
    cast as NumPy casts them for arrays of ``dt``, and the mode), or None when NumPy
    would compute in a wider type."""
    b1, b2 = hyper["beta1"], hyper["beta2"]
    wd = hyper["weight_decay"]
    mode, shrink, wd1 = 0, 0.0, 0.0
    if decayed:
        if decoupled:
            mode, shrink = 1, 1.0 - lr * wd
        else:
            mode, wd1 = 2, wd * (1.0 - b1)
    step_size, bc2_sqrt = adam_corrections(hyper, lr, t)
    c = (1.0 - b2) / ((1.0 - b1) * (1.0 - b1))
    scalars = [_numba.scalar_as(x, dt) for x in (
        b1, b2, c, hyper["eps"] * bc2_sqrt, step_size * bc2_sqrt, shrink, wd1)]
    if any(x is None for x in scalars):
        return None
    return (*scalars, mode)


def _blas_gemm(a, b, c, alpha, beta):
    _blas.gemm(a, b, c, alpha=alpha, beta=beta)


def _axpby(prod, c, beta):
    """``c <- beta * c + prod`` in place, as :func:`mlpx._fast._blas.gemm`'s fallback."""
    if beta == 0.0:
        np.copyto(c, prod)
        return
    if beta != 1.0:
        c *= beta
    c += prod


def _adam_update(hyper, decoupled, p, g1, m, v, tmp, *, lr, t, decay):
    """Adam / AdamW in place from ``g1 = (1 - beta1) * g`` (the product's ``alpha`` did
    the scaling for free): the update of ``Adam._update_numpy`` in 11 passes over memory
    instead of 13 and without temporaries. ``g1`` is our own buffer and is consumed;
    ``tmp`` is scratch of ``p``'s shape. Equal to the generic update up to rounding:

        m <- b1 m + g1                        (= b1 m + (1 - b1) g)
        v <- b2 v + c g1^2,  c = (1 - b2) / (1 - b1)^2
        p <- p - (s bc2) m / (sqrt(v) + eps bc2),  s = lr / (1 - b1^t), bc2 = sqrt(1 - b2^t)
             (the same as the generic p - s m / (sqrt(v) / bc2 + eps))
    """
    b1, b2 = hyper["beta1"], hyper["beta2"]
    wd = hyper["weight_decay"]
    if decay and wd:
        if decoupled:
            p *= 1.0 - lr * wd
        else:  # coupled L2: g + wd p, scaled like g
            np.multiply(p, wd * (1.0 - b1), out=tmp)
            g1 += tmp
    m *= b1
    m += g1
    v *= b2
    np.multiply(g1, g1, out=g1)
    g1 *= (1.0 - b2) / ((1.0 - b1) * (1.0 - b1))
    v += g1
    step_size, bc2_sqrt = adam_corrections(hyper, lr, t)
    np.sqrt(v, out=tmp)
    tmp += hyper["eps"] * bc2_sqrt
    np.divide(m, tmp, out=tmp)
    tmp *= step_size * bc2_sqrt
    p -= tmp
