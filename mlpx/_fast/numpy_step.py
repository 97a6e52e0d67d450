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
  preallocated buffer and update in place, layer by layer while the gradient is still in
  cache (Adam and AdamW through a scratch-buffer version of their NumPy update that
  allocates nothing, the others through their own ``_update_numpy``).

Parameters are updated in place, so ``model.params`` is always current. The step reads
``layer.params`` and the optimizer state afresh every call, so ``set_params`` and a new
``compile`` are seen at once.
"""

from __future__ import annotations

import math

import numpy as np

from ..optimizers import SGD, Adam, AdamW
from . import _blas
from ._step import FastStep

__all__ = ["NumpyTrainStep"]


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


class NumpyTrainStep(FastStep):
    """A training step for one model on NumPy; call it as ``step(model, X, Y, w)``.

    Built by :func:`mlpx._fast.select_step` after :func:`mlpx._fast.unsupported_reason`
    said yes. Returns ``(loss, logits)`` like :meth:`mlpx.Sequential.train_step`, or
    None when this call must take the generic path instead (see
    :meth:`mlpx._fast._step.FastStep.__call__`).
    """

    kind = "numpy"

    def __init__(self, model, plan, key):
        self._ptrs = {}         # id -> (array, data pointer) of long-lived arrays
        super().__init__(model, plan, key, np)

    def _setup(self, model):
        self._grads = None      # per-model gradient buffers for the optimizer route
        self._scratch = None
        opt = model.optimizer_
        self.opt_kind = opt.name
        self.fused_sgd = type(opt) is SGD and "velocity" not in opt.slot_names()
        self.fast_adam = type(opt) in (Adam, AdamW)
        self.decoupled = type(opt) is AdamW

    # ------------------------------------------------------------------ buffers
    def _new_buffers(self, n):
        return _Buffers(n, self.plan, self.dtype)

    def _evicted(self):
        self._ptrs = {}  # it may hold dropped buffers or params: let them go

    def _grad_buffers(self, params):
        if self._grads is None or any(g.shape != p.shape for g, p in zip(self._grads, params)):
            self._grads = [np.empty_like(p) for p in params]
            size = max(p.size for p in params)
            self._scratch = np.empty(size, dtype=self.dtype)
        return self._grads

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

    # ------------------------------------------------------------------ the step
    def _step(self, model, params, state, opt, names, X, Y, w, alpha, hyper, rng):
        n = X.shape[0]
        buf = self.buffers(n)
        plan = self.plan
        use_blas = _blas.available()
        fn = _blas.raw(self.dtype) if use_blas else None
        x_ok = X.flags.c_contiguous

        # ---------------------------------------------------------------- forward
        x = X
        for i, op in enumerate(plan):
            if op.kind == "dense":
                W = params[op.param_index]
                out = np.empty((n, op.width), dtype=self.dtype) if op.last else buf.act[i]
                if op.bias:
                    b = params[op.param_index + 1]
                    if fn is not None and (i > 0 or x_ok):
                        np.copyto(out, b)
                        self._gemm(fn, x, False, i > 0, W, False, True, out, not op.last,
                                   1.0, 1.0)
                    elif use_blas:
                        np.copyto(out, b)
                        _blas.gemm(x, W, out, beta=1.0)
                    else:
                        np.matmul(x, W, out=out)
                        out += b
                else:
                    np.matmul(x, W, out=out)
                x = out
            elif op.kind == "act":
                out = buf.act[i]
                _act_forward(op, x, out, buf.zeros.get(op.width))
                x = out
            else:  # dropout
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
                x = out
        z = x

        # ---------------------------------------------------------------- loss
        loss, dz = _loss_and_grad(model, z, Y, w)
        decay_mask = model.decay_mask
        loss = self._add_l2(loss, params, decay_mask, alpha)

        # ---------------------------------------------------------------- backward
        lr = hyper["lr"]
        t = state["step"] + 1
        if not self.fused_sgd:
            grads = self._grad_buffers(params)
            scratch = self._scratch
            slot_lists = [state["slots"][s] for s in names]
        wd = hyper["weight_decay"]
        g = dz
        for i in range(len(plan) - 1, -1, -1):
            op = plan[i]
            if op.kind == "act":
                _act_backward(op, g, buf.act[i], buf.masks[i])
                continue
            if op.kind == "dropout":
                g *= buf.masks[i][1]
                continue
            # dense: inputs are the previous op's output (or X)
            x_in = X if i == 0 else buf.act[i - 1]
            k = op.param_index
            W = params[k]
            dx = None
            if not op.first:
                dx = buf.grad[i]
                np.matmul(g, W.T, out=dx)   # with the weights before this step's update
            if self.fused_sgd:
                shrink = 1.0 - lr * (alpha + wd) if decay_mask[k] else 1.0
                if fn is not None and (i > 0 or x_ok) and g.flags.c_contiguous:
                    self._gemm(fn, x_in, True, i > 0, g, False, g is not dz, W, True,
                               -lr, shrink)
                else:
                    _blas.gemm(x_in.T, g, W, alpha=-lr, beta=shrink)
                if op.bias:
                    db = np.sum(g, axis=0)
                    if wd and decay_mask[k + 1]:  # pragma: no cover - biases never decay
                        db += wd * params[k + 1]
                    db *= lr
                    params[k + 1] -= db
            else:
                gW = grads[k]
                # Adam's gradients arrive pre-scaled by (1 - beta1) (see _adam_update)
                scale = 1.0 - hyper["beta1"] if self.fast_adam else 1.0
                if fn is not None and (i > 0 or x_ok) and g.flags.c_contiguous:
                    self._gemm(fn, x_in, True, i > 0, g, False, g is not dz, gW, True,
                               scale, 0.0)
                else:
                    _blas.gemm(x_in.T, g, gW, alpha=scale)
                if alpha > 0 and decay_mask[k]:
                    tmp = scratch[:W.size].reshape(W.shape)
                    np.multiply(W, alpha * scale, out=tmp)
                    gW += tmp
                self._update(hyper, params, grads, slot_lists, names, k, lr, t, decay_mask)
                if op.bias:
                    gb = grads[k + 1]
                    np.sum(g, axis=0, out=gb)
                    if scale != 1.0:
                        gb *= scale
                    if alpha > 0 and decay_mask[k + 1]:  # pragma: no cover
                        gb += (alpha * scale) * params[k + 1]
                    self._update(hyper, params, grads, slot_lists, names, k + 1, lr, t,
                                 decay_mask)
            g = dx
        state["step"] = t
        return loss, z

    def _update(self, hyper, params, grads, slot_lists, names, k, lr, t, decay_mask):
        p, gk = params[k], grads[k]
        own = {s: lst[k] for s, lst in zip(names, slot_lists)}
        if self.fast_adam:
            tmp = self._scratch[:p.size].reshape(p.shape)
            _adam_update(hyper, self.decoupled, p, gk, own["m"], own["v"], tmp, lr=lr, t=t,
                         decay=decay_mask[k])
        elif self.opt_kind == "sgd":
            _sgd_update(hyper, p, gk, own.get("velocity"), lr=lr, decay=decay_mask[k])
        else:
            _rmsprop_update(hyper, p, gk, own["square_avg"], own.get("velocity"), lr=lr,
                            decay=decay_mask[k])


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


def _sgd_update(hyper, p, g, vel, *, lr, decay):
    """SGD in place, the operations of ``SGD._update_numpy``; ``g`` is not modified."""
    wd = hyper["weight_decay"]
    if decay and wd:
        tmp = np.multiply(p, wd)
        tmp += g
        g = tmp
    if vel is not None:
        mu = hyper["momentum"]
        vel *= mu
        vel += g
        if hyper["nesterov"]:
            tmp = np.multiply(vel, mu)
            tmp += g
            g = tmp
        else:
            g = vel
    tmp = np.multiply(g, lr)
    p -= tmp


def _rmsprop_update(hyper, p, g, s, vel, *, lr, decay):
    """RMSProp in place, the operations of ``RMSProp._update_numpy``."""
    wd = hyper["weight_decay"]
    if decay and wd:
        tmp = np.multiply(p, wd)
        tmp += g
        g = tmp
    rho = hyper["rho"]
    s *= rho
    sq = np.multiply(g, g)
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
