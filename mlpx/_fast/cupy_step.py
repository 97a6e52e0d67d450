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
- update, after every product and kernel above has run (so that a failure, an
  out-of-memory error in cuBLAS say, leaves the model untouched): one kernel per
  parameter updates it and its optimizer state in place (SGD with or without momentum,
  Adam, AdamW, RMSProp). Plain SGD is not folded into the weight-gradient product
  (``W <- shrink W - lr x.T @ dz`` would be a cuBLAS call among the writes).

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
from ._step import FastStep, StepOps
from .numpy_step import adam_corrections

__all__ = ["CupyTrainStep", "CupyOps", "CupyDevice", "kernel_source", "ACTIVATION_CODES", "KERNELS"]

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
        try:
            import cupy
            import cupy.cublas
        except ImportError as exc:  # e.g. CuPy without its cuBLAS library
            reason = _backend.cuda_probe()
            raise _backend.CudaUnavailableError(
                reason or f"backend='cupy' cannot run on this machine: {exc}") from exc

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


class CupyOps(StepOps):
    """The device operations of :class:`CupyTrainStep`: cuBLAS products and the kernels.

    Parameters
    ----------
    device : CupyDevice or a stand-in with its interface (``xp``, ``launch``, ``gemm``)
    """

    fuses_activation = True
    fuses_sgd = False  # W in the product would be a cuBLAS call in phase 4 (it can fail)

    def __init__(self, device):
        self.device = device
        self.xp = device.xp
        self._grads = None

    def setup(self, model, plan, opt_name):
        self._grads = None
        self.dtype = np.dtype(model.dtype)
        self.opt_name = opt_name
        self.decoupled = opt_name == "adamw"
        self.backend = model.backend

    def new_buffers(self, n, plan, dtype):
        return _Buffers(n, plan, self.xp, dtype)

    def grad_buffers(self, params, fused):
        if self._grads is None or any(g.shape != p.shape for g, p in zip(self._grads, params)):
            self._grads = [self.xp.empty_like(p) for p in params]
        return self._grads

    def _real(self, x):
        return self.dtype.type(x)

    def _activation(self, op):
        """(code, slope) of the activation op, for the kernels."""
        if op is None:
            return np.int32(0), self._real(0.0)
        slope = getattr(op.activation, "alpha", 0.0) if op.name == "leaky_relu" else 0.0
        return np.int32(ACTIVATION_CODES[op.name]), self._real(slope)

    # ------------------------------------------------------------------ forward
    def dense_forward(self, i, op, x, W, b, buf, act):
        dev = self.device
        out = self.xp.empty((buf.n, op.width), dtype=self.dtype) if op.last else buf.act[i]
        dev.gemm("N", "N", x, W, out)
        code, slope = self._activation(act)
        size = np.int64(out.size)
        if b is not None:
            dev.launch("bias_act_forward", out.size, out, b, size, np.int64(op.width), code,
                       slope)
        elif code != 0:
            dev.launch("act_forward", out.size, out, size, code, slope)
        return out

    def act_forward(self, i, op, x, buf):  # pragma: no cover - structure_reason: fused
        out = buf.act[i]
        if out is not x:
            self.xp.copyto(out, x)
        code, slope = self._activation(op)
        if code != 0:
            self.device.launch("act_forward", out.size, out, np.int64(out.size), code, slope)
        return out

    def dropout_forward(self, i, op, x, buf, rng):
        out = buf.act[i]
        if op.p > 0:  # p = 0 draws nothing, as Dropout itself
            u = _backend.random_uniform(x.shape, backend=self.backend,
                                        dtype=self.dtype.name, rng=rng)
            self.device.launch("dropout_forward", x.size, x, u, buf.masks[i], out,
                               np.int64(x.size), self._real(op.p),
                               self._real(1.0 / (1.0 - op.p)))
            return out
        if out is not x:
            self.xp.copyto(out, x)
        return out

    def loss_and_grad(self, model, z, Y, w, buf):
        if model.loss.name == "cross_entropy" and w is None:
            n = z.shape[0]
            Yc = self.xp.ascontiguousarray(Y)
            dz = buf.dz
            self.device.launch("softmax_xent", n, z, Yc, dz, buf.loss_rows, np.int64(n),
                               np.int64(z.shape[1]), self._real(1.0 / n))
            return self.xp.sum(buf.loss_rows) / n, dz
        return model.loss.value_and_grad(z, Y, output=model.output, xp=model.backend.xp,
                                         sample_weight=w)

    # ------------------------------------------------------------------ backward
    def act_backward(self, i, op, g, buf):
        code, slope = self._activation(op)
        if code != 0:
            self.device.launch("act_backward", g.size, g, buf.act[i], np.int64(g.size),
                               code, slope)

    def dropout_backward(self, i, op, g, buf):
        if op.p > 0:
            self.device.launch("multiply_inplace", g.size, g, buf.masks[i],
                               np.int64(g.size))

    def input_grad(self, i, op, g, W, buf):
        dx = buf.grad[i]
        self.device.gemm("N", "T", g, W, dx)
        return dx

    def weight_grad(self, i, x_in, g, W, gW, hyper, alpha, decay):
        self.device.gemm("T", "N", x_in, g, gW)  # L2 and decay: in the update kernel

    def bias_grad(self, g, b, gb, hyper, alpha, decay):
        self.xp.sum(g, axis=0, out=gb)

    # ------------------------------------------------------------------ writes
    def update(self, k, p, g, slots, hyper, lr, t, decay, alpha):
        """One kernel: parameter ``p`` and its optimizer state, in place."""
        r = self._real
        size = np.int64(p.size)
        l2 = r(alpha if decay else 0.0)
        wd = hyper["weight_decay"] if decay else 0.0
        launch = self.device.launch
        if self.opt_name == "sgd":
            vel = slots.get("velocity", p)  # p stands in for the absent slot (unused)
            launch("sgd_update", p.size, p, g, vel, size, r(lr), l2, r(wd),
                   r(hyper["momentum"]), np.int32("velocity" in slots),
                   np.int32(hyper["nesterov"]))
        elif self.opt_name in ("adam", "adamw"):
            b1, b2 = hyper["beta1"], hyper["beta2"]
            step_size, bc2_sqrt = adam_corrections(hyper, lr, t)
            coupled = 0.0 if self.decoupled else wd
            shrink = 1.0 - lr * wd if self.decoupled else 1.0
            launch("adam_update", p.size, p, g, slots["m"], slots["v"], size, r(step_size),
                   r(bc2_sqrt), r(b1), r(1.0 - b1), r(b2), r(1.0 - b2), r(hyper["eps"]), l2,
                   r(coupled), r(shrink))
        else:  # RMSProp: unsupported_reason admits no other optimizer
            vel = slots.get("velocity", p)
            launch("rmsprop_update", p.size, p, g, slots["square_avg"], vel, size, r(lr),
                   r(hyper["rho"]), r(1.0 - hyper["rho"]), r(hyper["eps"]),
                   r(hyper["momentum"]), l2, r(wd), np.int32("velocity" in slots))


class CupyTrainStep(FastStep):
    """The fast step on CuPy (:class:`CupyOps`); call it as ``step(model, X, Y, w)``.

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
        super().__init__(model, plan, key, CupyOps(self.device))
