"""What every fast training step shares: the plan, the input checks, the buffer cache.

A fast step (:class:`mlpx._fast.numpy_step.NumpyTrainStep`,
:class:`mlpx._fast.cupy_step.CupyTrainStep`) is built by :func:`mlpx._fast.select_step`
for one model and called as ``step(model, X, Y, sample_weight)``. :class:`FastStep`
does the part that is the same on every array library: decide whether this call can be
taken (fast paths on, the model unchanged since the plan was made or re-planned, inputs
of the expected type, shape and dtype, parameters and optimizer slots usable in place),
and keep per-batch-size buffers. Subclasses set :attr:`FastStep.kind` and implement
``_new_buffers(n)`` and ``_step(model, params, state, opt, names, X, Y, w)``.
"""

from __future__ import annotations

from collections import OrderedDict

from ..layers import ActivationLayer, Dense, Dropout

__all__ = ["Op", "build_plan", "FastStep", "optimizer_hyper", "check_hyper", "HYPER_KEYS"]

#: The keys of the ``hyper`` dict a step reads, per optimizer name ("lr" always).
HYPER_KEYS = {
    "sgd": ("lr", "momentum", "nesterov", "weight_decay"),
    "adam": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "adamw": ("lr", "beta1", "beta2", "eps", "weight_decay"),
    "rmsprop": ("lr", "rho", "eps", "momentum", "weight_decay"),
}


def optimizer_hyper(opt, step) -> dict:
    """The optimizer's scalar hyper-parameters for update number ``step`` (0-based).

    The one place a fast step reads them from the optimizer, used when the caller
    passes no ``hyper=`` dict: ``{"lr": opt.current_lr(step), ...}`` with the keys of
    :data:`HYPER_KEYS` for the optimizer's name. (Meant to become ``opt.hyper(step)``.)
    """
    out = {"lr": opt.current_lr(step)}
    for key in HYPER_KEYS[opt.name][1:]:
        out[key] = getattr(opt, key)
    return out

_MAX_SHAPES = 4  # batch shapes whose buffers are kept (full batch, last batch, ...)


def check_hyper(hyper, opt_name, slot_names) -> None:
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


class Op:
    """One layer of the plan."""

    def __init__(self, kind, layer, width, **kw):
        self.kind = kind          # "dense" | "act" | "dropout"
        self.layer = layer
        self.width = width
        self.inplace = False      # works on the buffer of the op before it
        self.after_dense = False  # an activation right after a Dense layer
        self.first = False
        self.last = False
        self.name = None
        self.n_in = None
        self.param_index = None   # position of this layer's first param in model.params
        self.__dict__.update(kw)


def build_plan(model):
    """Translate ``model.layers`` into ops; return None if a layer is not supported."""
    plan = []
    index = 0
    # who produced the buffer the next element-wise layer would overwrite:
    # "dense" / "dropout" outputs are not needed by their own backward, activations' are.
    producer = None
    for i, layer in enumerate(model.layers):
        if type(layer) is Dense:
            op = Op("dense", layer, layer.n_out, n_in=layer.n_in, param_index=index,
                    bias=layer.bias)
            op.first = i == 0
            producer = "dense"
        elif type(layer) is ActivationLayer:
            op = Op("act", layer, layer.n_out, name=layer.activation.name,
                    activation=layer.activation)
            op.inplace = producer in ("dense", "dropout")
            op.after_dense = producer == "dense"
            producer = "act"
        elif type(layer) is Dropout:
            op = Op("dropout", layer, layer.n_out, p=layer.p)
            op.inplace = producer in ("dense", "dropout")
            producer = "dropout"
        else:
            return None
        index += len(layer.params)
        plan.append(op)
    if plan[-1].kind != "dense":
        return None
    # the logits array is fresh every step (it is returned), so nothing works in place on it
    plan[-1].last = True
    return plan


class FastStep:
    """Base of the fast steps; see the module docstring.

    Parameters
    ----------
    model : mlpx.Sequential
        Built and compiled, accepted by :func:`mlpx._fast.unsupported_reason`.
    plan : list of Op
        From :func:`build_plan`.
    key : tuple
        :func:`mlpx._fast._model_key` of ``model`` when the plan was made.
    xp : module
        The array module the step works with (``numpy`` or ``cupy``).
    """

    kind = None  # "numpy" | "cupy": which rules of mlpx._fast.structure_reason apply

    def __init__(self, model, plan, key, xp):
        self.key = key
        self.plan = plan
        self.xp = xp
        self.dtype = xp.dtype(model.dtype)
        self._buffers = OrderedDict()
        self._checked = None    # params/slots last seen usable (held, compared by identity)
        self._setup(model)

    def _setup(self, model):
        """Per-model state that depends on the optimizer; called again on a re-plan."""

    def _new_buffers(self, n):  # pragma: no cover - abstract
        raise NotImplementedError

    def _step(self, model, params, state, opt, names, X, Y, w, alpha, hyper,
              rng):  # pragma: no cover
        raise NotImplementedError

    def _add_l2(self, loss, params, decay_mask, alpha):
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

    def _evicted(self):
        """Called when a batch shape's buffers are dropped from the cache."""

    def buffers(self, n):
        """The buffers for batch size ``n`` (made on first use, a few shapes kept)."""
        buf = self._buffers.get(n)
        if buf is None:
            buf = self._new_buffers(n)
            self._buffers[n] = buf
            while len(self._buffers) > _MAX_SHAPES:
                self._buffers.popitem(last=False)
                self._evicted()
        else:
            self._buffers.move_to_end(n)
        return buf

    def _usable(self, params, slots):
        """Params and optimizer slots must be writable C-contiguous arrays of our dtype."""
        arrays = tuple(params) + tuple(a for s in slots for a in s)
        last = self._checked
        if last is not None and len(last) == len(arrays) and all(
                a is b for a, b in zip(arrays, last)):
            return True
        for a in arrays:
            if type(a) is not self.xp.ndarray or a.dtype != self.dtype \
                    or not a.flags.c_contiguous or not getattr(a.flags, "writeable", True):
                return False
        self._checked = arrays  # held, so their ids cannot be reused while cached
        self._evicted()
        return True

    def _inputs_ok(self, X, Y, sample_weight):
        nd = self.xp.ndarray
        if type(X) is not nd or type(Y) is not nd or X.ndim != 2 or Y.ndim != 2 \
                or X.dtype != self.dtype or Y.dtype != self.dtype \
                or X.shape[0] != Y.shape[0] or X.shape[0] == 0 \
                or X.shape[1] != self.plan[0].n_in or Y.shape[1] != self.plan[-1].width:
            return False
        return sample_weight is None or (type(sample_weight) is nd
                                         and sample_weight.shape == (X.shape[0],))

    def __call__(self, model, X, Y, sample_weight=None, *, alpha=None, hyper=None,
                 noise_rng=None):
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

        Returns
        -------
        (loss, logits) or None
        """
        from . import _model_key, enabled, structure_reason

        if not enabled():
            return None
        key = _model_key(model)
        if key != self.key:
            # compile() makes a new step; this only happens when attributes were
            # changed by hand. Re-check rather than guess.
            plan = build_plan(model) if structure_reason(model, self.kind) is None else None
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
        opt = model.optimizer_
        names = tuple(state["slots"])  # the optimizer's slot_names(), in its order
        slots = [state["slots"][s] for s in names]
        if not self._usable(params, slots):
            return None
        if alpha is None:
            alpha = model.alpha
        if hyper is None:
            hyper = optimizer_hyper(opt, state["step"])
        else:
            check_hyper(hyper, opt.name, names)
        if noise_rng is None and any(op.kind == "dropout" for op in self.plan):
            # transitional: the caller should pass noise_rng= (rule 2 of issue 10)
            noise_rng = model.state_.noise_rng
        return self._step(model, params, state, opt, names, X, Y, sample_weight,
                          float(alpha), hyper, noise_rng)
