"""A CuPy training step for plain MLPs: cuBLAS products and fused CUDA kernels.

:class:`CupyTrainStep` computes what :meth:`mlpx.Sequential.train_step` computes on the
generic path for the models :func:`mlpx._fast.unsupported_reason` accepts on CuPy, with
the same numbers up to float rounding. Per Dense layer and step it launches:

- forward: one cuBLAS product into a preallocated buffer, then one kernel for
  ``act(z + b)`` in place (the activation layer after the Dense is fused into it); a
  Dropout layer is one kernel on uniform numbers drawn as :class:`~mlpx.layers.Dropout`
  draws them (same generator, same order, so the same masks as the generic path);
- backward: one kernel for the activation's (or dropout's) gradient in place, one
  product for the input gradient (skipped for the first layer), one for the weight
  gradient, one column sum for the bias gradient;
- update: plain SGD folds the learning rate and weight decay into the weight-gradient
  product (``W <- shrink W - lr x.T @ dz``, cuBLAS ``alpha``/``beta``), so that gradient
  is never written; SGD with momentum, Adam, AdamW and RMSProp update each parameter and
  its optimizer state in one kernel.

Softmax + cross-entropy (unweighted) is one kernel that writes the per-row loss and the
gradient; the other loss pairs and weighted samples use the generic loss code on the
small logits. Nothing synchronises with the host: the loss comes back as a 0-d device
array, like the generic path's.

The kernels are in ``kernels.cu`` beside this file. The same source is compiled for the
GPU by NVRTC and, in the tests, as plain C++ that runs this very class on the CPU (with a
NumPy stand-in for cuBLAS and the kernel launcher: ``tests/cuda_host.py``), which is how
its arithmetic is proven equal to the generic path on machines without a GPU.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from .. import _backend
from ..optimizers import SGD, AdamW
from ._step import FastStep
from .numpy_step import adam_corrections

__all__ = ["CupyTrainStep", "CupyDevice", "kernel_source", "ACTIVATION_CODES", "KERNELS"]

#: Activation name -> the ACT_* code in kernels.cu.
ACTIVATION_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}

#: Every kernel in kernels.cu, compiled and looked up when a step is made.
KERNELS = ("bias_act_forward", "act_forward", "act_backward", "dropout_forward",
           "multiply_inplace", "softmax_xent", "sgd_update", "adam_update", "rmsprop_update")

_THREADS = 256
_MAX_BLOCKS = 65535


def kernel_source(dtype) -> str:
    """The CUDA source of the step's kernels for ``dtype`` (float32 or float64)."""
    real = {"float32": "float", "float64": "double"}[np.dtype(dtype).name]
    path = os.path.join(os.path.dirname(__file__), "kernels.cu")
    with open(path, encoding="utf-8") as f:
        return f"typedef {real} real;\n" + f.read()


class CupyDevice:
    """What :class:`CupyTrainStep` needs from CuPy: arrays, cuBLAS and the kernels.

    ``launch(name, n, *args)`` runs kernel ``name`` over ``n`` items (grid-stride, so any
    ``n``); ``gemm(ta, tb, a, b, out, alpha, beta)`` is
    ``out = alpha * op(a) @ op(b) + beta * out``. Arguments are device arrays and NumPy
    scalars whose types match the kernel's parameters.

    The kernels are compiled here, when :meth:`mlpx.Sequential.compile` makes the step
    (CuPy caches the binary on disk, so only the first run on a machine pays for it). A
    compiler error is raised at once as a RuntimeError that says how to train without
    the kernels, never swallowed.
    """

    def __init__(self, dtype):
        import cupy
        import cupy.cublas

        self.xp = cupy
        self._gemm = cupy.cublas.gemm
        name = np.dtype(dtype).name
        try:
            module = _module(name)
            self._fns = {k: module.get_function(k) for k in KERNELS}
        except Exception as exc:
            raise RuntimeError(
                f"mlpx could not compile its CUDA kernels for {name} on this GPU "
                f"({type(exc).__name__}: {exc}). Set the environment variable MLPX_FAST=0 "
                "to train on the generic Array API path instead, and please report this "
                "with the output of `python -c 'import cupy; cupy.show_config()'`."
            ) from exc

    def launch(self, name, n, *args):
        fn = self._fns[name]
        blocks = max(1, min(_MAX_BLOCKS, -(-int(n) // _THREADS)))
        fn((blocks,), (_THREADS,), args)

    def gemm(self, ta, tb, a, b, out, alpha=1.0, beta=0.0):
        if alpha == 1.0 and beta == 0.0:
            # plain products through cupy.matmul (Cython all the way to cuBLAS); the
            # pure-Python cupy.cublas.gemm only where alpha/beta fold in the SGD update
            self.xp.matmul(a.T if ta == "T" else a, b.T if tb == "T" else b, out=out)
        else:
            self._gemm(ta, tb, a, b, out=out, alpha=alpha, beta=beta)


@functools.lru_cache(maxsize=None)
def _module(dtype_name):
    import cupy

    return cupy.RawModule(code=kernel_source(dtype_name), options=("--std=c++14",))


class _Buffers:
    """Everything a step needs for one batch size ``n``."""

    def __init__(self, n, plan, xp, dtype):
        self.n = n
        self.act = []    # forward outputs (an activation shares its Dense's buffer)
        self.grad = {}   # plan index of a non-first Dense -> gradient of its input
        self.masks = {}  # plan index of a Dropout -> its scaled mask
        for i, op in enumerate(plan):
            if op.kind == "dropout":
                self.masks[i] = xp.empty((n, op.width), dtype=dtype)
            if op.inplace:  # an activation right after its Dense, a Dropout after a Dense
                self.act.append(self.act[-1])
            elif op.last:
                self.act.append(None)  # logits: a fresh array every step (it is returned)
            else:
                self.act.append(xp.empty((n, op.width), dtype=dtype))
            if op.kind == "dense" and not op.first:
                self.grad[i] = xp.empty((n, op.n_in), dtype=dtype)
        width = plan[-1].width
        self.dz = xp.empty((n, width), dtype=dtype)      # softmax cross-entropy gradient
        self.loss_rows = xp.empty((n,), dtype=dtype)


class CupyTrainStep(FastStep):
    """A training step for one model on CuPy; call it as ``step(model, X, Y, w)``.

    Parameters
    ----------
    model, plan, key
        As for :class:`mlpx._fast._step.FastStep`.
    device : object, optional
        Array module, products and kernels (:class:`CupyDevice` for the model's dtype by
        default). The tests pass a CPU stand-in with the same interface.
    """

    kind = "cupy"

    def __init__(self, model, plan, key, device=None):
        self.device = device if device is not None else CupyDevice(model.dtype)
        super().__init__(model, plan, key, self.device.xp)

    def _setup(self, model):
        self._grads = None
        opt = model.optimizer_
        self.fused_sgd = type(opt) is SGD and "velocity" not in opt.slot_names()
        self.decoupled = type(opt) is AdamW
        self.opt_kind = opt.name

    def _new_buffers(self, n):
        return _Buffers(n, self.plan, self.xp, self.dtype)

    def _grad_buffers(self, params):
        if self._grads is None or any(g.shape != p.shape for g, p in zip(self._grads, params)):
            self._grads = [self.xp.empty_like(p) for p in params]
        return self._grads

    def _real(self, x):
        return self.dtype.type(x)

    def _activation(self, op):
        """(code, slope) of the activation op, for the kernels."""
        slope = getattr(op.activation, "alpha", 0.0) if op.name == "leaky_relu" else 0.0
        return np.int32(ACTIVATION_CODES[op.name]), self._real(slope)

    # ------------------------------------------------------------------ the step
    def _step(self, model, params, state, opt, names, X, Y, w, alpha, hyper, rng):
        xp, dev, plan = self.xp, self.device, self.plan
        n = X.shape[0]
        buf = self.buffers(n)
        identity = (np.int32(0), self._real(0.0))

        # ---------------------------------------------------------------- forward
        x = X
        for i, op in enumerate(plan):
            if op.kind == "act":
                continue  # fused into the Dense before it
            if op.kind == "dropout":
                if op.p > 0:  # p = 0 draws nothing, as Dropout itself
                    u = _backend.random_uniform((n, op.width), backend=model.backend,
                                                dtype=model.dtype, rng=rng)
                    out = buf.act[i]
                    dev.launch("dropout_forward", x.size, x, u, buf.masks[i], out,
                               np.int64(x.size), self._real(op.p),
                               self._real(1.0 / (1.0 - op.p)))
                    x = out
                elif buf.act[i] is not x:
                    xp.copyto(buf.act[i], x)
                    x = buf.act[i]
                continue
            W = params[op.param_index]
            out = xp.empty((n, op.width), dtype=self.dtype) if op.last else buf.act[i]
            dev.gemm("N", "N", x, W, out)
            code, slope = self._activation(plan[i + 1]) \
                if not op.last and plan[i + 1].kind == "act" else identity
            size = np.int64(out.size)
            if op.bias:
                dev.launch("bias_act_forward", out.size, out, params[op.param_index + 1],
                           size, np.int64(op.width), code, slope)
            elif code != 0:
                dev.launch("act_forward", out.size, out, size, code, slope)
            x = out
        z = x

        # ---------------------------------------------------------------- loss
        if model.loss.name == "cross_entropy" and w is None:
            Yc = xp.ascontiguousarray(Y)
            dz = buf.dz
            dev.launch("softmax_xent", n, z, Yc, dz, buf.loss_rows, np.int64(n),
                       np.int64(z.shape[1]), self._real(1.0 / n))
            loss = xp.sum(buf.loss_rows) / n
        else:
            loss, dz = model.loss.value_and_grad(z, Y, output=model.output,
                                                 xp=model.backend.xp, sample_weight=w)
        decay_mask = model.decay_mask
        loss = self._add_l2(loss, params, decay_mask, alpha)

        # ---------------------------------------------------------------- backward
        lr = hyper["lr"]
        t = state["step"] + 1
        grads = self._grad_buffers(params)
        slot_lists = [state["slots"][s] for s in names]
        wd = hyper["weight_decay"]
        g = dz
        for i in range(len(plan) - 1, -1, -1):
            op = plan[i]
            if op.kind == "act":
                code, slope = self._activation(op)
                if code != 0:
                    dev.launch("act_backward", g.size, g, buf.act[i], np.int64(g.size),
                               code, slope)
                continue
            if op.kind == "dropout":
                if op.p > 0:
                    dev.launch("multiply_inplace", g.size, g, buf.masks[i],
                               np.int64(g.size))
                continue
            x_in = X if i == 0 else buf.act[i - 1]
            k = op.param_index
            W = params[k]
            dx = None
            if not op.first:
                dx = buf.grad[i]
                dev.gemm("N", "T", g, W, dx)  # with the weights before this step's update
            if self.fused_sgd:
                shrink = 1.0 - lr * (alpha + wd) if decay_mask[k] else 1.0
                dev.gemm("T", "N", x_in, g, W, -lr, shrink)
            else:
                dev.gemm("T", "N", x_in, g, grads[k])
                self._update(hyper, params, grads, slot_lists, names, k, lr, t,
                             decay_mask[k], alpha)
            if op.bias:
                xp.sum(g, axis=0, out=grads[k + 1])
                self._update(hyper, params, grads, slot_lists, names, k + 1, lr, t,
                             decay_mask[k + 1], alpha)
            g = dx
        state["step"] = t
        return loss, z

    def _update(self, hyper, params, grads, slot_lists, names, k, lr, t, decay, alpha):
        """One kernel: parameter ``k`` and its optimizer state, in place."""
        p, g = params[k], grads[k]
        slots = {s: lst[k] for s, lst in zip(names, slot_lists)}
        r = self._real
        size = np.int64(p.size)
        l2 = r(alpha if decay else 0.0)
        wd = hyper["weight_decay"] if decay else 0.0
        if self.opt_kind == "sgd":
            vel = slots.get("velocity", p)  # p stands in for the absent slot (unused)
            self.device.launch("sgd_update", p.size, p, g, vel, size, r(lr), l2, r(wd),
                               r(hyper["momentum"]), np.int32("velocity" in slots),
                               np.int32(hyper["nesterov"]))
        elif self.opt_kind in ("adam", "adamw"):
            b1, b2 = hyper["beta1"], hyper["beta2"]
            step_size, bc2_sqrt = adam_corrections(hyper, lr, t)
            coupled = 0.0 if self.decoupled else wd
            shrink = 1.0 - lr * wd if self.decoupled else 1.0
            self.device.launch("adam_update", p.size, p, g, slots["m"], slots["v"], size,
                               r(step_size), r(bc2_sqrt), r(b1), r(1.0 - b1),
                               r(b2), r(1.0 - b2), r(hyper["eps"]), l2,
                               r(coupled), r(shrink))
        else:  # RMSProp: unsupported_reason admits no other optimizer
            vel = slots.get("velocity", p)
            self.device.launch("rmsprop_update", p.size, p, g, slots["square_avg"], vel,
                               size, r(lr), r(hyper["rho"]), r(1.0 - hyper["rho"]),
                               r(hyper["eps"]), r(hyper["momentum"]), l2, r(wd), np.int32("velocity" in slots))
