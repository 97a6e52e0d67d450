"""The one fast training step: a skeleton over a small interface of device operations.

A fast step (:class:`FastStep`; :class:`mlpx._fast.numpy_step.NumpyTrainStep`,
:class:`mlpx._fast.cupy_step.CupyTrainStep` and
:class:`mlpx._fast.torch_step.TorchTrainStep` only choose its operations) is built by
:func:`mlpx._fast.select_step` for one model and called as::

    step(model, X, Y, sample_weight=None, *, alpha=None, hyper=None, noise_rng=None,
         write_scope=None)

It decides whether this call can be taken (fast paths on, the model unchanged since the
plan was made or re-planned, inputs of the expected type, shape and dtype, parameters
and optimizer slots usable in place), keeps per-batch-size buffers, and runs the loop
over the plan in four phases:

1. forward, layer by layer (:meth:`StepOps.dense_forward`, ``act_forward``,
   ``dropout_forward``);
2. the loss and its gradient (``loss_and_grad``, ``add_l2``);
3. backward, layer by layer, down to every parameter's gradient (``act_backward``,
   ``dropout_backward``, ``input_grad``, ``weight_grad``, ``bias_grad``); nothing in the
   model is written yet, and every product, kernel launch that can fail and allocation
   of the step happens in phases 1 to 3;
4. the writes: one optimizer update per parameter (``update``, or on NumPy the product
   that folds plain SGD into the weights) and then ``state["step"]``.

So an exception in phases 1 to 3 (KeyboardInterrupt, MemoryError, a CUDA error) leaves
the parameters, the optimizer slots and the step counter exactly as they were; phase 4
allocates nothing and runs inside the caller's ``write_scope`` (a context manager that
defers SIGINT, say), which makes a step all or nothing.

The operations are one object (:class:`StepOps`): :class:`mlpx._fast.numpy_step.NumpyOps`
(in-place NumPy and BLAS), :class:`mlpx._fast.cupy_step.CupyOps` (cuBLAS and the
kernels of ``kernels.cu``) and :class:`mlpx._fast.torch_step.TorchOps` (in-place torch
calls and PyTorch's fused optimizer kernels). Which arrays a step takes is asked of the
operations too (:meth:`StepOps.is_array`, :meth:`StepOps.usable`): NumPy and CuPy
arrays of the array module's own type, torch tensors on the model's device.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Any

from .. import _backend
from . import _policy
from ._plan import Op, build_plan

__all__ = ["Op", "build_plan", "StepOps", "FastStep", "optimizer_hyper", "check_hyper",
           "HYPER_KEYS"]

#: The keys of the ``hyper`` dict a step reads, per optimizer name ("lr" always).
HYPER_KEYS = {
    "sgd": ("lr", "momentum", "nesterov", "weight_decay"),
    "adam": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "adamw": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "rmsprop": ("lr", "rho", "eps", "momentum", "weight_decay"),
}


def optimizer_hyper(opt: Any, step: int) -> dict:
    """The optimizer's scalar hyper-parameters for update number ``step`` (0-based).

    The one place a fast step reads them from the optimizer, used when the caller
    passes no ``hyper=`` dict: ``{"lr": opt.current_lr(step), ...}`` with the keys of
    :data:`HYPER_KEYS` for the optimizer's name. (Meant to become ``opt.hyper(step)``.)
    """
    out = {"lr": opt.current_lr(step)}
    for key in HYPER_KEYS[opt.name][1:]:
        out[key] = getattr(opt, key)
    return out

_NO_SCOPE = contextlib.nullcontext()
_MAX_SHAPES = 4  # batch shapes whose buffers are kept (full batch, last batch, ...)


def check_hyper(hyper: Any, opt_name: str, slot_names: Any) -> None:
    """Raise a ValueError unless ``hyper`` holds every key the step reads for the
    optimizer ``opt_name`` and agrees with the optimizer state's slots (SGD and RMSProp
    keep a "velocity" slot exactly when their momentum is > 0)."""
    keys = HYPER_KEYS[opt_name]
    if not isinstance(hyper, dict) or any(k not in hyper for k in keys):
        got = sorted(hyper) if isinstance(hyper, dict) else repr(hyper)
        raise ValueError(f"The 'hyper' parameter of the fast step must be a dict with the "
                         f"keys {list(keys)} for optimizer {opt_name!r}. Got {got} instead.")
    if "momentum" in keys and (hyper["momentum"] > 0) != ("velocity" in slot_names):
        raise ValueError(f"The 'hyper' parameter of the fast step must keep momentum "
                         f"{'> 0' if 'velocity' in slot_names else '= 0'}: the optimizer "
                         f"state {'has' if 'velocity' in slot_names else 'has no'} velocity "
                         f"slot. Got momentum={hyper['momentum']!r} instead.")


class StepOps:
    """The device operations the skeleton of :class:`FastStep` calls; see the module doc.

    ``i`` is the op's index in the plan, ``op`` the :class:`Op`, ``buf`` the buffers
    of this batch size (from :meth:`new_buffers`; ``buf.act[i]`` is op ``i``'s forward
    output). Every method of phases 1 to 3 may fail and writes only into buffers;
    :meth:`update` and the callables returned by :meth:`sgd_fused_weight` are phase 4.
    """

    #: The array module (``numpy`` or ``cupy``; a stand-in in the tests).
    xp: Any = None
    #: Whether :meth:`dense_forward` also applies the activation after a Dense layer.
    fuses_activation = False
    #: Whether plain SGD (no momentum) is folded into the weight-gradient product.
    fuses_sgd = False

    def setup(self, model, plan, opt_name):
        """Per-model state; called when the step is made and on a re-plan."""

    def resolve_dtype(self, name):
        """The array module's dtype object for the model's dtype name."""
        return self.xp.dtype(name)

    def is_array(self, a):
        """Whether ``a`` is an array of this step's kind (inputs, targets, weights)."""
        return type(a) is self.xp.ndarray

    def usable(self, a, dtype):
        """Whether a parameter or optimizer slot can be updated in place: an array of
        this step's kind, of ``dtype``, C-contiguous and writable."""
        return type(a) is self.xp.ndarray and a.dtype == dtype \
            and a.flags.c_contiguous and getattr(a.flags, "writeable", True)

    def new_buffers(self, n, plan, dtype):  # pragma: no cover - abstract
        """The buffers for batch size ``n`` (an object with a list ``act``)."""
        raise NotImplementedError

    def evicted(self):
        """A batch size's buffers, or the params last seen usable, were dropped."""

    def begin(self, X):
        """Start a step on input ``X``."""

    def dense_forward(self, i, op, x, W, b, buf, act):  # pragma: no cover - abstract
        """``x @ W + b`` (then ``act``, an activation op, when :attr:`fuses_activation`
        and the next op is one); return the output."""
        raise NotImplementedError

    def act_forward(self, i, op, x, buf):  # pragma: no cover - abstract
        raise NotImplementedError

    def dropout_forward(self, i, op, x, buf, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    def loss_and_grad(self, model, z, Y, w, buf):  # pragma: no cover - abstract
        """``(loss, dL/dz)`` of the model's loss and output activation on logits ``z``."""
        raise NotImplementedError

    def add_l2(self, loss, params, decay_mask, alpha):
        """``loss + alpha/2 * sum ||p||^2`` over the decayed params (dot products)."""
        if alpha > 0:
            total = None
            for p, d in zip(params, decay_mask):
                if d:
                    s = self.xp.vdot(p, p)
                    total = s if total is None else total + s
            if total is not None:
                loss = loss + (0.5 * alpha) * total
        return loss

    def grad_buffers(self, params, fused):  # pragma: no cover - abstract
        """Gradient buffers aligned with ``params`` (None for a weight whose update is
        fused into its product) and scratch for :meth:`update`."""
        raise NotImplementedError

    def act_backward(self, i, op, g, buf):  # pragma: no cover - abstract
        """``g <- dL/dx`` in place from ``g = dL/dy``."""
        raise NotImplementedError

    def dropout_backward(self, i, op, g, buf):  # pragma: no cover - abstract
        raise NotImplementedError

    def input_grad(self, i, op, g, W, buf):  # pragma: no cover - abstract
        """``g @ W.T`` into ``buf.grad[i]``; return it."""
        raise NotImplementedError

    def weight_grad(self, i, x_in, g, W, gW, hyper, alpha, decay):  # pragma: no cover
        """The gradient ``x_in.T @ g`` (in the form :meth:`update` takes) into ``gW``."""
        raise NotImplementedError

    def bias_grad(self, g, b, gb, hyper, alpha, decay):  # pragma: no cover - abstract
        """The bias gradient (column sums of ``g``) into ``gb``."""
        raise NotImplementedError

    def sgd_fused_weight(self, i, x_in, g, W, lr, shrink):  # pragma: no cover - abstract
        """Prepare ``W <- shrink * W - lr * x_in.T @ g``; return ``(fn, args)`` that does
        it in phase 4 (only when :attr:`fuses_sgd`)."""
        raise NotImplementedError

    def update(self, k, p, g, slots, hyper, lr, t, decay, alpha):  # pragma: no cover
        """Phase 4: the optimizer's update of param ``p`` (index ``k``) and its
        ``slots`` (a dict) in place, from the gradient ``g``; allocates nothing."""
        raise NotImplementedError


class FastStep:
    """The fast training step; see the module docstring.

    Parameters
    ----------
    model : mlpx.Sequential
        Built and compiled, accepted by :func:`mlpx._fast.unsupported_reason`.
    plan : list of Op
        From :func:`build_plan`.
    key : tuple
        :func:`mlpx._fast._policy.model_key` of ``model`` when the plan was made.
    ops : StepOps
        The device operations.
    """

    kind: str | None = None  # "numpy" | "cupy" | "torch": the rules of structure_reason

    def __init__(self, model, plan, key, ops):
        self.key = key
        self.plan = plan
        self.ops = ops
        self.xp = ops.xp
        self.dtype = ops.resolve_dtype(model.dtype)
        self._buffers = OrderedDict()
        self._checked = None    # params/slots last seen usable (held, compared by identity)
        self._setup(model)

    def _setup(self, model):
        """Per-model state that depends on the optimizer; called again on a re-plan."""
        opt_name = model.optimizer_.name
        self.fused_sgd = self.ops.fuses_sgd and opt_name == "sgd" \
            and "velocity" not in model.optimizer_state_["slots"]
        self.ops.setup(model, self.plan, opt_name)

    def buffers(self, n):
        """The buffers for batch size ``n`` (made on first use, a few shapes kept)."""
        buf = self._buffers.get(n)
        if buf is None:
            buf = self.ops.new_buffers(n, self.plan, self.dtype)
            self._buffers[n] = buf
            while len(self._buffers) > _MAX_SHAPES:
                self._buffers.popitem(last=False)
                self.ops.evicted()
        else:
            self._buffers.move_to_end(n)
        return buf

    def _usable(self, params, slots):
        """Params and optimizer slots must be usable in place (:meth:`StepOps.usable`)."""
        arrays = tuple(params) + tuple(a for s in slots for a in s)
        last = self._checked
        if last is not None and len(last) == len(arrays) and all(
                a is b for a, b in zip(arrays, last)):
            return True
        usable, dtype = self.ops.usable, self.dtype
        for a in arrays:
            if not usable(a, dtype):
                return False
        self._checked = arrays  # held, so their ids cannot be reused while cached
        self.ops.evicted()
        return True

    def _inputs_ok(self, X, Y, sample_weight):
        is_array = self.ops.is_array
        if not is_array(X) or not is_array(Y) or X.ndim != 2 or Y.ndim != 2 \
                or X.dtype != self.dtype or Y.dtype != self.dtype \
                or X.shape[0] != Y.shape[0] or X.shape[0] == 0 \
                or X.shape[1] != self.plan[0].n_in or Y.shape[1] != self.plan[-1].width:
            return False
        return sample_weight is None or (is_array(sample_weight)
                                         and sample_weight.shape == (X.shape[0],))

    def __call__(self, model, X, Y, sample_weight=None, *, alpha=None, hyper=None,
                 noise_rng=None, write_scope=None):
        """One training step, or None when this call must take the generic path.

        Parameters
        ----------
        model : mlpx.Sequential
            The model the step was made for (its params and optimizer state are
            updated in place).
        X, Y : arrays of the model's namespace and dtype, shapes (n, n_in), (n, n_out)
        sample_weight : array of shape (n,), optional
        alpha : float, optional
            The L2 strength for this step; None reads ``model.alpha``.
        hyper : dict, optional
            The optimizer's scalar hyper-parameters for this step: ``"lr"`` and the keys
            of :data:`HYPER_KEYS` for the optimizer. None builds it with
            :func:`optimizer_hyper` from the optimizer and ``state["step"]``. When given,
            no hyper-parameter is read from the optimizer.
        noise_rng : generator, optional
            The dropout generator (what :func:`mlpx._backend.noise_rng` returned); None
            uses the model's own. Only read when the model has a Dropout layer.
        write_scope : context manager, optional
            Entered around the write phase only (every product, kernel and allocation
            of the step is done by then; the updates and ``state["step"]`` follow): a
            training loop passes one that defers SIGINT, which makes the step all or
            nothing for Ctrl-C too.

        Returns
        -------
        (loss, logits) or None
        """
        if not _policy.enabled():
            return None
        key = _policy.model_key(model)
        if key != self.key:
            # compile() makes a new step; this only happens when attributes were
            # changed by hand. Re-check rather than guess.
            plan = build_plan(model) if _policy.structure_reason(model, self.kind) is None \
                else None
            if plan is None:
                return None
            self.key, self.plan = key, plan
            self._buffers = OrderedDict()
            self._checked = None
            self._setup(model)
        if not self._inputs_ok(X, Y, sample_weight):
            return None
        params = model.params
        state = model.optimizer_state_
        names = tuple(state["slots"])  # the optimizer's slot_names(), in its order
        slots = [state["slots"][s] for s in names]
        if not self._usable(params, slots):
            return None
        if alpha is None:
            alpha = model.alpha
        if hyper is None:
            hyper = optimizer_hyper(model.optimizer_, state["step"])
        else:
            check_hyper(hyper, model.optimizer_.name, names)
        if noise_rng is None and any(op.kind == "dropout" for op in self.plan):
            # transitional: the caller should pass noise_rng= (rule 2 of issue 10)
            noise_rng = model.state_.noise_rng
        with _backend.device_scope(model.backend):  # CuPy computes on its current device
            return self._run(model, params, state, names, X, Y, sample_weight,
                             float(alpha), hyper, noise_rng, write_scope)

    def _run(self, model, params, state, names, X, Y, w, alpha, hyper, rng,
             write_scope=None):
        """The skeleton: phases 1 to 3 compute, phase 4 writes (module docstring)."""
        ops, plan = self.ops, self.plan
        buf = self.buffers(X.shape[0])
        ops.begin(X)
        fuse_act = ops.fuses_activation

        # ---------------------------------------------------------------- 1. forward
        x = X
        for i, op in enumerate(plan):
            if op.kind == "dense":
                k = op.param_index
                nxt = plan[i + 1] if fuse_act and not op.last else None
                x = ops.dense_forward(i, op, x, params[k],
                                      params[k + 1] if op.bias else None, buf,
                                      nxt if nxt is not None and nxt.kind == "act" else None)
            elif op.kind == "act":
                if not (fuse_act and op.after_dense):
                    x = ops.act_forward(i, op, x, buf)
            else:
                x = ops.dropout_forward(i, op, x, buf, rng)
        z = x

        # ---------------------------------------------------------------- 2. loss
        loss, dz = ops.loss_and_grad(model, z, Y, w, buf)
        decay_mask = model.decay_mask
        loss = ops.add_l2(loss, params, decay_mask, alpha)

        # ---------------------------------------------------------------- 3. backward
        lr = hyper["lr"]
        t = state["step"] + 1
        fused = self.fused_sgd
        grads = ops.grad_buffers(params, fused)
        writes = []  # phase 4, in order: (fn, args)
        g = dz
        for i in range(len(plan) - 1, -1, -1):
            op = plan[i]
            if op.kind == "act":
                ops.act_backward(i, op, g, buf)
                continue
            if op.kind == "dropout":
                ops.dropout_backward(i, op, g, buf)
                continue
            k = op.param_index
            W = params[k]
            x_in = X if i == 0 else buf.act[i - 1]
            # the input gradient with the weights before this step's update
            dx = None if op.first else ops.input_grad(i, op, g, W, buf)
            if fused:
                shrink = 1.0 - lr * (alpha + hyper["weight_decay"]) if decay_mask[k] else 1.0
                writes.append(ops.sgd_fused_weight(i, x_in, g, W, lr, shrink))
            else:
                ops.weight_grad(i, x_in, g, W, grads[k], hyper, alpha, decay_mask[k])
                writes.append((k, grads[k]))
            if op.bias:
                ops.bias_grad(g, params[k + 1], grads[k + 1], hyper, alpha,
                              decay_mask[k + 1])
                writes.append((k + 1, grads[k + 1]))
            g = dx

        # ---------------------------------------------------------------- 4. writes
        update = ops.update
        all_slots = state["slots"]
        with _NO_SCOPE if write_scope is None else write_scope:
            for fn, arg in writes:
                if type(fn) is int:  # (param index, gradient): an optimizer update
                    update(fn, params[fn], arg, {s: all_slots[s][fn] for s in names},
                           hyper, lr, t, decay_mask[fn], alpha)
                else:
                    fn(*arg)
            state["step"] = t
        return loss, z
