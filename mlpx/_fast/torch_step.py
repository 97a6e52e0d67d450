"""A PyTorch training step for plain MLPs: preallocated tensors, in place, fused updates.

:class:`TorchTrainStep` computes what :meth:`mlpx.Sequential.train_step` computes on the
generic Array API path (``array_api_compat.torch``) for the models
:func:`mlpx._fast.unsupported_reason` accepts on torch (the NumPy step's structures), with
the same numbers up to float rounding (``tests/test_torch_step.py`` holds it to that).
The generic path makes many small eager calls and allocates every intermediate; this
step, per Dense layer and training step:

- forward: one ``torch.addmm(b, x, W, out=buf)`` (the bias broadcast into the output and
  the product accumulated on top) into a tensor allocated once per batch size, then the
  activation in place on it (``relu_``, ``tanh`` with ``out=``; sigmoid and leaky ReLU
  with the generic formula);
- backward: the activation's gradient in place (ReLU: one
  ``threshold_backward`` into the incoming gradient), the input gradient
  ``torch.mm(g, W.T, out=)`` (never for the first layer), the weight gradient
  ``torch.mm(x.T, g, out=)`` and the bias gradient ``torch.sum(g, 0, out=)``;
- plain SGD can fold the learning rate, the L2 term and weight decay into the
  weight-gradient product (``W.addmm_(x.T, g, beta=1 - lr*lambda, alpha=-lr)``, one
  BLAS call, the weight gradient never written to memory), but that product would run
  in the write phase, after the whole backward pass, when its operands have left the
  cache; it is off (:attr:`TorchOps.fuses_sgd`): the weight gradient is made during the
  backward pass, like every other optimizer's, and added to ``W`` in the write phase;
- the updates (SGD with or without momentum / Nesterov / weight decay, Adam, AdamW,
  RMSProp) run in place on preallocated gradients, allocating nothing: by default through
  PyTorch's own fused single-pass kernels (``torch._fused_sgd_``, ``torch._fused_adam_``,
  ``torch._fused_adamw_``: what ``torch.optim`` uses with ``fused=True``; tried once per
  device and dtype when the step is made), otherwise (:func:`set_fused_updates`, or a
  torch without them for that device) as chains of in-place tensor operations in the
  order of the generic update rules. RMSProp has no fused kernel, and plain SGD (no
  momentum) needs none: one ``add_`` per parameter.
  Multi-tensor ``torch._foreach_*`` calls were not used: on the CPU they are loops over
  the same per-tensor kernels, and with six parameters the Python calls they would save
  are a fraction of a percent of a step.

Everything runs under ``torch.no_grad()`` (parameters are plain tensors; no autograd
graph is ever recorded) and on the parameters' device, whatever it is (CPU, CUDA): the
code names no device. Nothing is read back to the host: the loss is a 0-d tensor and the
logits a fresh tensor each step, as on the generic path. As every fast step
(:mod:`mlpx._fast._step`), every product and allocation comes before the first write to
a parameter, an optimizer slot or ``state["step"]``.
"""

from __future__ import annotations

import torch

from .. import _backend
from ._step import FastStep, StepOps
from .numpy_step import adam_corrections

__all__ = ["TorchTrainStep", "TorchOps", "set_fused_updates", "fused_updates"]

# PyTorch's fused optimizer kernels (CPU since torch 2.4, CUDA since 2.0).
_HAS_FUSED = all(hasattr(torch, name) for name in ("_fused_sgd_", "_fused_adam_",
                                                   "_fused_adamw_"))
_FUSED = [_HAS_FUSED]


def fused_updates() -> bool:
    """Whether the updates run through PyTorch's fused optimizer kernels."""
    return _FUSED[0]


def set_fused_updates(flag: bool) -> bool:
    """Use PyTorch's fused optimizer kernels (where this torch has them) or chains of
    in-place operations; return the previous setting. Both give the generic update's
    numbers up to float rounding; the tests run both."""
    old = _FUSED[0]
    _FUSED[0] = bool(flag) and _HAS_FUSED
    return old


_threshold_backward = torch.ops.aten.threshold_backward.grad_input
_PROBED: dict = {}


def _fused_kernels_run(device, dtype) -> bool:
    """Whether PyTorch's fused optimizer kernels run for tensors of ``device`` and
    ``dtype`` (older releases have them for CUDA only): tried once on one-element
    tensors, so that the write phase never meets an unimplemented kernel."""
    key = (str(device), dtype)
    if key not in _PROBED:
        ok = _HAS_FUSED
        if ok:
            def one():
                return [torch.zeros(1, dtype=dtype, device=device)]
            try:
                with torch.no_grad():
                    torch._fused_sgd_(one(), one(), one(), weight_decay=0.1, momentum=0.5,
                                      lr=0.1, dampening=0.0, nesterov=True, maximize=False,
                                      is_first_step=False)
                    for kernel in (torch._fused_adam_, torch._fused_adamw_):
                        kernel(one(), one(), one(), one(), [],
                               [torch.ones((), dtype=torch.float32, device=device)], lr=0.1,
                               beta1=0.9, beta2=0.99, weight_decay=0.1, eps=1e-8,
                               amsgrad=False, maximize=False)
            except (RuntimeError, NotImplementedError, TypeError):
                ok = False
        _PROBED[key] = ok
    return _PROBED[key]


class _Buffers:
    """Everything a step needs for one batch size ``n``."""

    def __init__(self, n, plan, dtype, device):
        def empty(*shape, dt=dtype):
            return torch.empty(shape, dtype=dt, device=device)

        self.n = n
        self.act = []      # forward outputs, one per plan entry (aliases when in place)
        self.grad = {}     # plan index of a non-first Dense -> gradient of its input
        self.masks = {}    # plan index -> scratch (activations) or masks (dropout)
        for i, op in enumerate(plan):
            if op.inplace:
                self.act.append(self.act[-1])
            elif op.kind == "dense" and op.last:
                self.act.append(None)  # logits: a fresh tensor every step (it is returned)
            else:
                self.act.append(empty(n, op.width))
            if op.kind == "dropout":
                self.masks[i] = (empty(n, op.width, dt=torch.bool), empty(n, op.width))
            elif op.kind == "act" and op.name in ("tanh", "sigmoid", "leaky_relu"):
                self.masks[i] = empty(n, op.width)
            if op.kind == "dense" and not op.first:
                self.grad[i] = empty(n, op.n_in)
        k = plan[-1].width
        self.dz = empty(n, k)      # softmax cross-entropy: the gradient of the logits
        self.prod = empty(n, k)    # and Y * log p


class TorchOps(StepOps):
    """The device operations of :class:`TorchTrainStep`: in-place torch calls."""

    xp = torch
    fuses_activation = False
    #: Fold plain SGD into the weight product in the write phase (``W.addmm_``). Off:
    #: the product made there, after the whole backward pass, reads activations and
    #: gradients that have left the cache; made during the backward pass into a buffer
    #: (as for the other optimizers) and added in the write phase, the step measured
    #: 3-10 % faster from batch 256 up and the same at 64 (docs/performance.md).
    fuses_sgd = False

    def __init__(self, device):
        self.device = device
        self._grads = None
        self._scratch = None
        self._step_t = None
        self._t = None

    def setup(self, model, plan, opt_name):
        self._grads = None
        self._scratch = None
        self._step_t = None
        self._t = None
        self.dtype = getattr(torch, model.dtype)
        self.dtype_name = model.dtype
        self.opt_name = opt_name
        self.decoupled = opt_name == "adamw"
        self.backend = model.backend
        self.fused_kernels = _fused_kernels_run(self.device, self.dtype)

    # ------------------------------------------------------------------ checks
    def resolve_dtype(self, name):
        return getattr(torch, name)

    def is_array(self, a):
        return type(a) is torch.Tensor and a.device == self.device

    def usable(self, a, dtype):
        # a tensor autograd tracks, or an inference tensor, must not be written in place
        return type(a) is torch.Tensor and a.dtype == dtype and a.device == self.device \
            and a.layout == torch.strided and a.is_contiguous() and not a.requires_grad \
            and not a.is_inference()

    # ------------------------------------------------------------------ buffers
    def new_buffers(self, n, plan, dtype):
        return _Buffers(n, plan, dtype, self.device)

    def grad_buffers(self, params, fused):
        """Per-param gradients (SGD folded into the products: biases only) and one
        scratch tensor."""
        grads = self._grads
        if grads is None or len(grads) != len(params) or any(
                g is not None and g.shape != p.shape for g, p in zip(grads, params)):
            grads = [torch.empty_like(p) if (p.ndim == 1 or not fused) else None
                     for p in params]
            size = max((g.numel() for g in grads if g is not None), default=1)
            self._scratch = torch.empty(size, dtype=self.dtype, device=self.device)
            self._step_t = torch.zeros((), dtype=torch.float32, device=self.device)
            self._t = None
            self._grads = grads
        return grads

    # ------------------------------------------------------------------ forward
    def dense_forward(self, i, op, x, W, b, buf, act):
        if op.last:  # the logits: fresh, they are returned
            return torch.mm(x, W) if b is None else torch.addmm(b, x, W)
        out = buf.act[i]
        if b is None:
            torch.mm(x, W, out=out)
        else:
            torch.addmm(b, x, W, out=out)
        return out

    def act_forward(self, i, op, x, buf):
        out = buf.act[i]
        name = op.name
        if name == "relu":
            if out is x:
                torch.relu_(x)
            else:
                torch.clamp_min(x, 0.0, out=out)
        elif name == "tanh":
            torch.tanh(x, out=out)
        elif name == "sigmoid":  # the generic formula (exactly), then into the buffer
            out.copy_(op.activation.forward(x, xp=self.backend.xp))
        elif name == "leaky_relu":  # where(x > 0, x, alpha * x), as the generic code
            torch.where(x > 0, x, op.activation.alpha * x, out=out)
        elif out is not x:  # identity
            out.copy_(x)
        return out

    def dropout_forward(self, i, op, x, buf, rng):
        out = buf.act[i]
        if op.p == 0.0:  # Dropout(0) draws nothing
            if out is not x:
                out.copy_(x)
            return out
        # the draws of Dropout.forward (same generator, same order, same cast)
        u = _backend.random_uniform(tuple(x.shape), backend=self.backend,
                                    dtype=self.dtype_name, rng=rng)
        bmask, fmask = buf.masks[i]
        torch.ge(u, op.p, out=bmask)
        fmask.copy_(bmask)
        fmask.mul_(1.0 / (1.0 - op.p))
        torch.mul(x, fmask, out=out)
        return out

    def loss_and_grad(self, model, z, Y, w, buf):
        if model.loss.name == "cross_entropy" and w is None:
            # The generic softmax cross-entropy: the same operations in the same order
            # (so the same bits: a weighted batch, which takes the generic loss, trains
            # as the unweighted one when the weights are equal), fewer temporaries.
            n = z.shape[0]
            s = torch.sub(z, torch.amax(z, 1, keepdim=True))
            e = torch.exp(s, out=buf.dz)
            logp = s.sub_(torch.log(torch.sum(e, 1, keepdim=True)))
            rows = torch.sum(torch.mul(Y, logp, out=buf.prod), 1)
            loss = torch.sum(rows).div_(-n)  # sum(-rows) / n, exactly
            dz = torch.exp(logp, out=buf.dz)
            dz.sub_(Y)
            dz.mul_(1.0 / n)
            return loss, dz
        return model.loss.value_and_grad(z, Y, output=model.output, xp=model.backend.xp,
                                         sample_weight=w)

    def add_l2(self, loss, params, decay_mask, alpha):
        """``loss + alpha/2 * sum ||p||^2`` over the decayed params (dot products)."""
        if alpha > 0:
            total = None
            for p, d in zip(params, decay_mask):
                if d:
                    flat = p.reshape(-1)
                    s = torch.dot(flat, flat)
                    total = s if total is None else total + s
            if total is not None:
                loss = loss + (0.5 * alpha) * total
        return loss

    # ------------------------------------------------------------------ backward
    def act_backward(self, i, op, g, buf):
        y = buf.act[i]
        name = op.name
        if name == "relu":  # g where y > 0 (the same as x > 0), else 0
            _threshold_backward(g, y, 0, grad_input=g)
        elif name == "tanh":  # dy * (1 - y*y)
            s = buf.masks[i]
            torch.mul(y, y, out=s)
            s.neg_().add_(1.0)  # -s + 1 is 1 - s exactly
            g.mul_(s)
        elif name == "sigmoid":  # dy * (y * (1 - y))
            s = buf.masks[i]
            torch.neg(y, out=s).add_(1.0)
            s.mul_(y)
            g.mul_(s)
        elif name == "leaky_relu":  # where(y > 0, dy, alpha * dy)
            s = buf.masks[i]
            torch.mul(g, op.activation.alpha, out=s)
            torch.where(y > 0, g, s, out=g)

    def dropout_backward(self, i, op, g, buf):
        if op.p > 0.0:
            g.mul_(buf.masks[i][1])

    def input_grad(self, i, op, g, W, buf):
        dx = buf.grad[i]
        torch.mm(g, W.t(), out=dx)
        return dx

    def weight_grad(self, i, x_in, g, W, gW, hyper, alpha, decay):
        torch.mm(x_in.t(), g, out=gW)
        if alpha > 0 and decay:
            gW.add_(W, alpha=alpha)

    def bias_grad(self, g, b, gb, hyper, alpha, decay):
        torch.sum(g, 0, out=gb)
        if alpha > 0 and decay:  # pragma: no cover - biases never decay
            gb.add_(b, alpha=alpha)

    def sgd_fused_weight(self, i, x_in, g, W, lr, shrink):
        return _addmm_into, (W, x_in.t(), g, shrink, -lr)

    # ------------------------------------------------------------------ writes
    def update(self, k, p, g, slots, hyper, lr, t, decay, alpha):
        wd = hyper["weight_decay"] if decay else 0.0
        name = self.opt_name
        fused = _FUSED[0] and self.fused_kernels
        if name == "sgd":
            vel = slots.get("velocity")
            if vel is not None and fused:
                torch._fused_sgd_([p], [g], [vel], weight_decay=wd,
                                  momentum=hyper["momentum"], lr=lr, dampening=0.0,
                                  nesterov=bool(hyper["nesterov"]), maximize=False,
                                  is_first_step=False)
            else:
                _sgd_update(p, g, vel, wd, hyper, lr)
        elif name in ("adam", "adamw"):
            if fused:
                if self._t != t:  # the step number the kernel reads (bias corrections)
                    self._step_t.fill_(t)
                    self._t = t
                kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
                kernel([p], [g], [slots["m"]], [slots["v"]], [], [self._step_t], lr=lr,
                       beta1=hyper["beta1"], beta2=hyper["beta2"], weight_decay=wd,
                       eps=hyper["eps"], amsgrad=False, maximize=False)
            else:
                _adam_update(p, g, slots["m"], slots["v"], self._tmp(p), wd, self.decoupled,
                             hyper, lr, t)
        else:  # RMSProp: unsupported_reason admits no other optimizer
            _rmsprop_update(p, g, slots["square_avg"], slots.get("velocity"), self._tmp(p),
                            wd, hyper, lr)

    def _tmp(self, p):
        return self._scratch[:p.numel()].view(p.shape)


class TorchTrainStep(FastStep):
    """The fast step on PyTorch (:class:`TorchOps`); call it as ``step(model, X, Y, w)``.

    Built by :func:`mlpx._fast.select_step` for a model on ``array_api_compat.torch``
    after :func:`mlpx._fast.unsupported_reason` said yes. Returns ``(loss, logits)`` like
    :meth:`mlpx.Sequential.train_step`, or None when this call must take the generic
    path instead (inputs that are not tensors of the model's dtype on its device,
    parameters autograd tracks; see :meth:`mlpx._fast._step.FastStep.__call__`).
    """

    kind = "torch"

    def __init__(self, model, plan, key):
        device = model.params[0].device if model.params else torch.device("cpu")
        super().__init__(model, plan, key, TorchOps(device))

    def _run(self, *args, **kwargs):
        with torch.no_grad():
            return super()._run(*args, **kwargs)


# ---------------------------------------------------------------------- updates
def _addmm_into(W, xt, g, beta, alpha):
    """``W <- beta * W + alpha * xt @ g`` in place (plain SGD folded into the product)."""
    W.addmm_(xt, g, beta=beta, alpha=alpha)


def _sgd_update(p, g, vel, wd, hyper, lr):
    """SGD in place with the operations of ``SGD.update``; ``g`` is our own buffer."""
    if wd:
        g.add_(p, alpha=wd)
    if vel is not None:
        mu = hyper["momentum"]
        vel.mul_(mu).add_(g)
        if hyper["nesterov"]:
            g.add_(vel, alpha=mu)
        else:
            g = vel
    p.add_(g, alpha=-lr)


def _adam_update(p, g, m, v, tmp, wd, decoupled, hyper, lr, t):
    """Adam / AdamW in place with the operations of ``Adam.update``, the bias correction
    of ``sqrt(v)`` moved onto ``eps`` and the step size (as the NumPy step does):
    ``p - s m / (sqrt(v) / c + eps) == p - (s c) m / (sqrt(v) + eps c)``."""
    b1, b2 = hyper["beta1"], hyper["beta2"]
    if wd:
        if decoupled:
            p.mul_(1.0 - lr * wd)
        else:
            g.add_(p, alpha=wd)
    m.mul_(b1).add_(g, alpha=1.0 - b1)
    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
    step_size, bc2_sqrt = adam_corrections(hyper, lr, t)
    torch.sqrt(v, out=tmp)
    tmp.add_(hyper["eps"] * bc2_sqrt)
    p.addcdiv_(m, tmp, value=-step_size * bc2_sqrt)


def _rmsprop_update(p, g, s, vel, tmp, wd, hyper, lr):
    """RMSProp in place with the operations of ``RMSProp.update``."""
    if wd:
        g.add_(p, alpha=wd)
    rho = hyper["rho"]
    s.mul_(rho).addcmul_(g, g, value=1.0 - rho)
    torch.sqrt(s, out=tmp)
    tmp.add_(hyper["eps"])
    if vel is not None:
        vel.mul_(hyper["momentum"]).addcdiv_(g, tmp)
        p.add_(vel, alpha=-lr)
    else:
        p.addcdiv_(g, tmp, value=-lr)
