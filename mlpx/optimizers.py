"""Optimizers (SGD, Adam, AdamW, RMSProp) and learning-rate schedules.

An optimizer holds hyper-parameters only; its state lives in a plain dict that the caller
keeps beside the parameters::

    opt = get_optimizer("adam", lr=1e-3)
    state = opt.init_state(params, xp=xp)      # {"step": 0, "slots": {"m": [...], "v": [...]}}
    params = opt.step(params, grads, state, xp=xp, decay_mask=None)

``params`` and ``grads`` are lists aligned by position and every slot of the state is a
list aligned with them too (one fresh array per parameter, never keyed by name, never
shared). ``state["step"]`` counts the updates made so far.

The generic path is functional: it builds new arrays with Array API operations and
returns a new list. On NumPy a fast path updates the parameters and slots in place and
returns the same array objects; tests prove it gives the same numbers as the generic
path. Both preserve dtypes: every scalar is a Python float, so float32 stays float32.

The update rules follow ``torch.optim`` (without dampening, amsgrad, centering or
maximisation) so results can be checked against PyTorch step by step.
"""

from __future__ import annotations

import inspect
import math
from numbers import Real

import numpy as np

from . import _backend
from ._validation import check_bool, check_float, check_int

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSProp",
    "OPTIMIZERS",
    "get_optimizer",
    "Schedule",
    "ConstantSchedule",
    "StepSchedule",
    "ExponentialSchedule",
    "CosineSchedule",
    "InverseScalingSchedule",
    "SCHEDULES",
    "get_schedule",
]


# --------------------------------------------------------------------------------------
# validation (one message style: "The 'lr' parameter of SGD must be a float > 0. Got 0
# instead.")
# --------------------------------------------------------------------------------------

def _init_params(cls):
    return [p for p in inspect.signature(cls).parameters]


def _build(registry, kind, name, params):
    if not isinstance(name, str):
        raise TypeError(f"A{'n' if kind[0] in 'aeiou' else ''} {kind} name must be a str. "
                        f"Got {name!r} instead.")
    cls = registry.get(name.lower())
    if cls is None:
        raise ValueError(f"Unknown {kind} {name!r}. Valid {kind}s: {sorted(registry)}.")
    valid = _init_params(cls)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"Unknown parameter(s) {unknown} for {kind} {cls.name!r}. "
                         f"Valid parameters: {valid}.")
    return cls(**params)


def _resolve(spec, params, *, base, registry, kind):
    if isinstance(spec, base):
        if params:
            raise TypeError(f"Parameters {sorted(params)} cannot be given with a "
                            f"{type(spec).__name__} instance; pass a name or a config "
                            "dict instead.")
        return spec
    if isinstance(spec, str):
        return _build(registry, kind, spec, params)
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ValueError(f"A{'n' if kind[0] in 'aeiou' else ''} {kind} config must be "
                             f"a dict with a 'name' key. Got {spec!r} instead.")
        cfg = dict(spec)
        name = cfg.pop("name")
        cfg.update(params)
        return _build(registry, kind, name, cfg)
    raise TypeError(f"Expected {kind} name, {base.__name__} or config dict. Got {spec!r} "
                    f"of type {type(spec).__name__} instead.")


def _repr(obj):
    cfg = obj.get_config()
    args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k != "name")
    return f"{type(obj).__name__}({args})"


# --------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------

class Schedule:
    """Base class of learning-rate schedules: ``schedule(base_lr, step) -> lr``.

    ``step`` counts the optimizer updates already made (0 for the first update). A
    schedule passed as an optimizer's ``lr`` starts from its own ``lr`` when it has one,
    else from the optimizer's default learning rate.

    Parameters
    ----------
    lr : float > 0 or None, default=None
        Optional base learning rate used when the schedule is an optimizer's ``lr``.
    """

    name = "schedule"

    def __init__(self, lr=None):
        self.lr = None if lr is None else check_float(lr, "lr", type(self).__name__,
                                                       low=0.0, low_open=True)

    def __call__(self, base_lr, step) -> float:
        """Return the learning rate for update number ``step`` (0-based) from ``base_lr``."""
        base_lr = check_float(base_lr, "base_lr", type(self).__name__, low=0.0,
                               low_open=True)
        step = check_int(step, "step", type(self).__name__, low=0)
        return float(self._value(base_lr, step))

    def _value(self, base_lr, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def _params(self) -> dict:
        return {}

    def get_config(self) -> dict:
        """Return ``{"name": ..., **params}``; :func:`get_schedule` rebuilds from it."""
        return {"name": self.name, **self._params(), "lr": self.lr}

    def __repr__(self):
        return _repr(self)


class ConstantSchedule(Schedule):
    """The base learning rate at every step.

    Examples
    --------
    >>> from mlpx.optimizers import ConstantSchedule
    >>> ConstantSchedule()(0.1, 1000)
    0.1
    """

    name = "constant"

    def _value(self, base_lr, step):
        return base_lr


class StepSchedule(Schedule):
    """Multiply the learning rate by ``gamma`` every ``step_size`` updates (torch StepLR).

    Parameters
    ----------
    step_size : int >= 1
    gamma : float in (0, 1], default=0.1
    lr : float > 0 or None, default=None

    Notes
    -----
    .. math:: \\eta_t = \\eta_0 \\, \\gamma^{\\lfloor t / \\mathrm{step\\_size} \\rfloor}

    Examples
    --------
    >>> from mlpx.optimizers import StepSchedule
    >>> s = StepSchedule(step_size=10, gamma=0.5)
    >>> s(1.0, 9), s(1.0, 10), s(1.0, 25)
    (1.0, 0.5, 0.25)
    """

    name = "step"

    def __init__(self, step_size, gamma=0.1, lr=None):
        super().__init__(lr)
        self.step_size = check_int(step_size, "step_size", "StepSchedule", low=1)
        self.gamma = check_float(gamma, "gamma", "StepSchedule", low=0.0, high=1.0,
                                  low_open=True)

    def _value(self, base_lr, step):
        return base_lr * self.gamma ** (step // self.step_size)

    def _params(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class ExponentialSchedule(Schedule):
    """Multiply the learning rate by ``gamma`` after every update (torch ExponentialLR).

    Parameters
    ----------
    gamma : float in (0, 1]
    lr : float > 0 or None, default=None

    Notes
    -----
    .. math:: \\eta_t = \\eta_0 \\, \\gamma^{t}

    Examples
    --------
    >>> from mlpx.optimizers import ExponentialSchedule
    >>> ExponentialSchedule(gamma=0.5)(1.0, 3)
    0.125
    """

    name = "exponential"

    def __init__(self, gamma, lr=None):
        super().__init__(lr)
        self.gamma = check_float(gamma, "gamma", "ExponentialSchedule", low=0.0,
                                  high=1.0, low_open=True)

    def _value(self, base_lr, step):
        return base_lr * self.gamma ** step

    def _params(self):
        return {"gamma": self.gamma}


class CosineSchedule(Schedule):
    """Cosine decay from the base rate to ``min_lr`` over ``total_steps``, then flat.

    Parameters
    ----------
    total_steps : int >= 1
    min_lr : float >= 0, default=0.0
    lr : float > 0 or None, default=None

    Notes
    -----
    .. math:: \\eta_t = \\eta_{\\min} + \\tfrac12 (\\eta_0 - \\eta_{\\min})
              \\bigl(1 + \\cos(\\pi \\min(t, T) / T)\\bigr)

    This is the closed form of torch's CosineAnnealingLR for ``t <= T``; after ``T``
    the rate stays at ``min_lr`` (torch's would rise again).

    Examples
    --------
    >>> from mlpx.optimizers import CosineSchedule
    >>> s = CosineSchedule(total_steps=100, min_lr=0.0)
    >>> s(1.0, 0), round(s(1.0, 50), 12), s(1.0, 100), s(1.0, 500)
    (1.0, 0.5, 0.0, 0.0)
    """

    name = "cosine"

    def __init__(self, total_steps, min_lr=0.0, lr=None):
        super().__init__(lr)
        self.total_steps = check_int(total_steps, "total_steps", "CosineSchedule", low=1)
        self.min_lr = check_float(min_lr, "min_lr", "CosineSchedule", low=0.0)

    def _value(self, base_lr, step):
        frac = min(step, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * frac))

    def _params(self):
        return {"total_steps": self.total_steps, "min_lr": self.min_lr}


class InverseScalingSchedule(Schedule):
    """Scikit-learn's ``learning_rate="invscaling"``: decay as a power of the step.

    Parameters
    ----------
    power_t : float >= 0, default=0.5
    lr : float > 0 or None, default=None

    Notes
    -----
    .. math:: \\eta_t = \\eta_0 / (t + 1)^{\\mathrm{power\\_t}}

    Examples
    --------
    >>> from mlpx.optimizers import InverseScalingSchedule
    >>> InverseScalingSchedule(power_t=0.5)(1.0, 3)
    0.5
    """

    name = "inverse_scaling"

    def __init__(self, power_t=0.5, lr=None):
        super().__init__(lr)
        self.power_t = check_float(power_t, "power_t", "InverseScalingSchedule", low=0.0)

    def _value(self, base_lr, step):
        return base_lr / (step + 1.0) ** self.power_t

    def _params(self):
        return {"power_t": self.power_t}


#: Registry of schedule classes by name (``"invscaling"`` is scikit-learn's spelling).
SCHEDULES = {
    cls.name: cls
    for cls in (ConstantSchedule, StepSchedule, ExponentialSchedule, CosineSchedule,
                InverseScalingSchedule)
}
SCHEDULES["invscaling"] = InverseScalingSchedule


def get_schedule(spec, **params) -> Schedule:
    """Return a :class:`Schedule` from a name, an instance or a config dict.

    Parameters
    ----------
    spec : str, Schedule or dict
        A key of :data:`SCHEDULES` (case-insensitive), a :class:`Schedule` (returned as
        is) or the output of :meth:`Schedule.get_config`.
    **params
        Parameters of the schedule when ``spec`` is a name or a config dict.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones), an unknown parameter or
        an invalid value.
    TypeError
        For a spec of another type, or parameters given with an instance.

    Examples
    --------
    >>> from mlpx.optimizers import get_schedule
    >>> get_schedule("step", step_size=30, gamma=0.1)
    StepSchedule(step_size=30, gamma=0.1, lr=None)
    """
    return _resolve(spec, params, base=Schedule, registry=SCHEDULES, kind="schedule")


# --------------------------------------------------------------------------------------
# optimizers
# --------------------------------------------------------------------------------------

def _writable_ndarrays(arrays):
    return all(isinstance(a, np.ndarray) and a.flags.writeable for a in arrays)


class Optimizer:
    """Base class of optimizers: hyper-parameters here, state in a dict beside the params.

    Subclasses set :attr:`name` and :attr:`default_lr`, list their slots in
    :meth:`slot_names`, and implement the update of one parameter twice: functionally
    with Array API operations (:meth:`_update`) and in place with NumPy
    (:meth:`_update_numpy`).

    Parameters
    ----------
    lr : float > 0, Schedule or dict
        Learning rate, or a schedule (a :class:`Schedule` or its config dict). A schedule
        starts from its own ``lr`` when set, else from :attr:`default_lr`.
    """

    name = "optimizer"
    #: Learning rate a schedule without its own ``lr`` starts from.
    default_lr = 0.01

    def __init__(self, lr):
        owner = type(self).__name__
        if isinstance(lr, (Schedule, dict)):
            self.lr = get_schedule(lr)
        elif isinstance(lr, Real) and not isinstance(lr, (bool, np.bool_)):
            self.lr = check_float(lr, "lr", owner, low=0.0, low_open=True)
        else:
            raise ValueError(f"The 'lr' parameter of {owner} must be a float > 0 or a "
                             f"Schedule. Got {lr!r} instead.")

    # -- learning rate ------------------------------------------------------------------
    @property
    def base_lr(self) -> float:
        """The learning rate at step 0 before any schedule is applied."""
        if isinstance(self.lr, Schedule):
            return self.default_lr if self.lr.lr is None else self.lr.lr
        return self.lr

    def current_lr(self, step) -> float:
        """Return the learning rate used for update number ``step`` (0-based).

        Parameters
        ----------
        step : int >= 0
            The number of updates already made (``state["step"]``).
        """
        step = check_int(step, "step", type(self).__name__, low=0)
        if isinstance(self.lr, Schedule):
            return self.lr(self.base_lr, step)
        return self.lr

    # -- state --------------------------------------------------------------------------
    def slot_names(self) -> tuple:
        """Names of the per-parameter state arrays this optimizer keeps."""
        return ()

    def init_state(self, params, *, xp) -> dict:
        """Return a fresh state for ``params``.

        Parameters
        ----------
        params : list of arrays
            The parameters to optimize, in the order :meth:`step` will receive them.
        xp : namespace
            Their Array API namespace.

        Returns
        -------
        dict
            ``{"step": 0, "slots": {name: [zeros_like(p) for p in params]}}``: every slot
            holds one new zero array per parameter, aligned by position.
        """
        params = list(params)
        return {"step": 0,
                "slots": {s: [xp.zeros_like(p) for p in params] for s in self.slot_names()}}

    # -- update -------------------------------------------------------------------------
    def step(self, params, grads, state, *, xp, decay_mask=None) -> list:
        """Apply one update and return the new parameter list.

        Parameters
        ----------
        params : list of arrays
            Current parameters.
        grads : list of arrays
            Gradients aligned with ``params`` by position (same shapes and dtypes). They
            are never modified.
        state : dict
            From :meth:`init_state`; ``state["step"]`` is incremented and the slot
            arrays are replaced (generic path) or updated in place (NumPy).
        xp : namespace
        decay_mask : list of bool, optional
            Aligned with ``params``: which ones weight decay applies to. Default: all.

        Returns
        -------
        list of arrays
            New arrays on the generic path; on NumPy the same (updated) arrays.
        """
        return self._apply(params, grads, state, xp=xp, decay_mask=decay_mask, fast=None)

    def _apply(self, params, grads, state, *, xp, decay_mask=None, fast=None):
        """:meth:`step`, with ``fast`` forcing (True/False) or choosing (None) the path."""
        params, grads = list(params), list(grads)
        mask = self._check(params, grads, state, decay_mask)
        slots = state["slots"]
        names = self.slot_names()
        if fast is None:
            fast = _backend.is_numpy_namespace(xp) and _writable_ndarrays(params) and all(
                _writable_ndarrays(slots[s]) for s in names)
        lr = self.current_lr(state["step"])
        t = state["step"] + 1
        out = []
        for i, (p, g, decay) in enumerate(zip(params, grads, mask)):
            own = {s: slots[s][i] for s in names}
            if fast:
                self._update_numpy(p, g, own, lr=lr, t=t, decay=decay)
                out.append(p)
            else:
                new_p, new_slots = self._update(p, g, own, lr=lr, t=t, decay=decay, xp=xp)
                for s in names:
                    slots[s][i] = new_slots[s]
                out.append(new_p)
        state["step"] = t
        return out

    def _check(self, params, grads, state, decay_mask):
        owner = type(self).__name__
        if len(grads) != len(params):
            raise ValueError(f"{owner}.step got {len(params)} params but {len(grads)} "
                             "grads; they must be aligned by position.")
        if not isinstance(state, dict) or "step" not in state or "slots" not in state:
            raise ValueError(f"{owner}.step needs the state dict made by init_state. "
                             f"Got {state!r} instead.")
        check_int(state["step"], "state['step']", owner, low=0)
        names = self.slot_names()
        if set(state["slots"]) != set(names):
            raise ValueError(f"The state has slots {sorted(state['slots'])} but {owner} "
                             f"keeps {sorted(names)}; build it with this optimizer's "
                             "init_state.")
        for s in names:
            if len(state["slots"][s]) != len(params):
                raise ValueError(f"The state's {s!r} slot holds {len(state['slots'][s])} "
                                 f"arrays for {len(params)} params; build the state with "
                                 "init_state(params).")
        for i, (p, g) in enumerate(zip(params, grads)):
            if tuple(p.shape) != tuple(g.shape):
                raise ValueError(f"grads[{i}] has shape {tuple(g.shape)} but params[{i}] "
                                 f"has shape {tuple(p.shape)}.")
            if g.dtype != p.dtype:
                raise ValueError(f"grads[{i}] has dtype {g.dtype} but params[{i}] has "
                                 f"dtype {p.dtype}; cast one of them explicitly.")
        if decay_mask is None:
            return [True] * len(params)
        mask = [bool(d) for d in decay_mask]
        if len(mask) != len(params):
            raise ValueError(f"The 'decay_mask' parameter of {owner}.step must have one "
                             f"bool per param ({len(params)}). Got {len(mask)} instead.")
        return mask

    def _update(self, p, g, slots, *, lr, t, decay, xp):  # pragma: no cover - abstract
        """Return ``(new_p, new_slots)`` for one parameter (functional, any namespace)."""
        raise NotImplementedError

    def _update_numpy(self, p, g, slots, *, lr, t, decay):  # pragma: no cover - abstract
        """Update ``p`` and ``slots`` in place (NumPy only); never modify ``g``."""
        raise NotImplementedError

    # -- config -------------------------------------------------------------------------
    def _params(self) -> dict:
        return {}

    def get_config(self) -> dict:
        """Return ``{"name": ..., "lr": ..., **params}``; :func:`get_optimizer` rebuilds.

        A schedule appears as its own config dict under ``"lr"``.
        """
        lr = self.lr.get_config() if isinstance(self.lr, Schedule) else self.lr
        return {"name": self.name, "lr": lr, **self._params()}

    def __repr__(self):
        return _repr(self)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    Parameters
    ----------
    lr : float > 0 or Schedule, default=0.01
    momentum : float in [0, 1), default=0.0
    nesterov : bool, default=False
        Nesterov momentum (needs ``momentum > 0``).
    weight_decay : float >= 0, default=0.0
        Coupled L2 penalty: ``weight_decay * p`` is added to the gradient of every
        parameter selected by ``decay_mask``.

    Notes
    -----
    The semantics of ``torch.optim.SGD`` with ``dampening=0``. With ``g`` the gradient,
    ``b`` the ``"velocity"`` slot (zero at start, kept only when ``momentum > 0``):

    .. math::

        g &\\leftarrow g + \\lambda p \\\\
        b &\\leftarrow \\mu b + g \\\\
        d &= g + \\mu b \\ \\text{(nesterov)} \\quad\\text{or}\\quad d = b \\\\
        p &\\leftarrow p - \\eta d

    Without momentum ``d = g``. Note the learning rate multiplies the velocity (PyTorch's
    convention), not the gradient inside it (Sutskever et al.'s); the two agree for a
    constant learning rate.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.optimizers import SGD
    >>> xp = resolve_backend("numpy").xp
    >>> opt = SGD(lr=0.1, momentum=0.9)
    >>> params = [np.array([1.0, 2.0])]
    >>> state = opt.init_state(params, xp=xp)
    >>> params = opt.step(params, [np.array([1.0, 1.0])], state, xp=xp)
    >>> params = opt.step(params, [np.array([1.0, 1.0])], state, xp=xp)
    >>> params[0].tolist(), state["step"]
    ([0.71, 1.71], 2)
    """

    name = "sgd"
    default_lr = 0.01

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr)
        self.momentum = check_float(momentum, "momentum", "SGD", low=0.0, high=1.0,
                                     high_open=True)
        self.nesterov = check_bool(nesterov, "nesterov", "SGD")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("The 'nesterov' parameter of SGD needs momentum > 0. Got "
                             f"nesterov=True with momentum={momentum!r} instead.")
        self.weight_decay = check_float(weight_decay, "weight_decay", "SGD", low=0.0)

    def slot_names(self):
        return ("velocity",) if self.momentum > 0.0 else ()

    def _update(self, p, g, slots, *, lr, t, decay, xp):
        if decay and self.weight_decay:
            g = g + self.weight_decay * p
        new = {}
        if self.momentum:
            b = self.momentum * slots["velocity"] + g
            new["velocity"] = b
            g = g + self.momentum * b if self.nesterov else b
        return p - lr * g, new

    def _update_numpy(self, p, g, slots, *, lr, t, decay):
        if decay and self.weight_decay:
            tmp = np.multiply(p, self.weight_decay)
            tmp += g
            g = tmp
        if self.momentum:
            b = slots["velocity"]
            b *= self.momentum
            b += g
            if self.nesterov:
                tmp = np.multiply(b, self.momentum)
                tmp += g
                g = tmp
            else:
                g = b
        tmp = np.multiply(g, lr)
        p -= tmp

    def _params(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with optional coupled L2 weight decay (torch.optim.Adam).

    Parameters
    ----------
    lr : float > 0 or Schedule, default=1e-3
    beta1 : float in [0, 1), default=0.9
        Decay of the first-moment (``"m"``) average.
    beta2 : float in [0, 1), default=0.999
        Decay of the second-moment (``"v"``) average.
    eps : float > 0, default=1e-8
    weight_decay : float >= 0, default=0.0
        Coupled L2: ``weight_decay * p`` is added to the gradient (as torch.optim.Adam;
        see :class:`AdamW` for the decoupled form).

    Notes
    -----
    With ``t`` the 1-based update number:

    .. math::

        g &\\leftarrow g + \\lambda p \\\\
        m &\\leftarrow \\beta_1 m + (1 - \\beta_1) g \\\\
        v &\\leftarrow \\beta_2 v + (1 - \\beta_2) g^2 \\\\
        p &\\leftarrow p - \\frac{\\eta}{1 - \\beta_1^t}
              \\frac{m}{\\sqrt{v} / \\sqrt{1 - \\beta_2^t} + \\epsilon}

    ``eps`` is added after the bias correction of ``sqrt(v)``, as PyTorch does. The
    bias-correction constants are Python floats, so float32 parameters stay float32.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.optimizers import get_optimizer
    >>> xp = resolve_backend("numpy").xp
    >>> opt = get_optimizer("adam", lr=0.1)
    >>> params = [np.array([1.0, -1.0], dtype=np.float32)]
    >>> state = opt.init_state(params, xp=xp)
    >>> params = opt.step(params, [np.array([3.0, -0.5], dtype=np.float32)], state, xp=xp)
    >>> [round(float(x), 4) for x in params[0]], params[0].dtype  # each moves by ~lr
    ([0.9, -0.9], dtype('float32'))
    """

    name = "adam"
    default_lr = 1e-3
    _decoupled = False

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr)
        owner = type(self).__name__
        self.beta1 = check_float(beta1, "beta1", owner, low=0.0, high=1.0, high_open=True)
        self.beta2 = check_float(beta2, "beta2", owner, low=0.0, high=1.0, high_open=True)
        self.eps = check_float(eps, "eps", owner, low=0.0, low_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay", owner, low=0.0)

    def slot_names(self):
        return ("m", "v")

    def _corrections(self, lr, t):
        return lr / (1.0 - self.beta1 ** t), math.sqrt(1.0 - self.beta2 ** t)

    def _update(self, p, g, slots, *, lr, t, decay, xp):
        if decay and self.weight_decay:
            if self._decoupled:
                p = p * (1.0 - lr * self.weight_decay)
            else:
                g = g + self.weight_decay * p
        m = self.beta1 * slots["m"] + (1.0 - self.beta1) * g
        v = self.beta2 * slots["v"] + (1.0 - self.beta2) * (g * g)
        step_size, bc2_sqrt = self._corrections(lr, t)
        denom = xp.sqrt(v) / bc2_sqrt + self.eps
        return p - step_size * (m / denom), {"m": m, "v": v}

    def _update_numpy(self, p, g, slots, *, lr, t, decay):
        if decay and self.weight_decay:
            if self._decoupled:
                p *= 1.0 - lr * self.weight_decay
            else:
                tmp = np.multiply(p, self.weight_decay)
                tmp += g
                g = tmp
        m, v = slots["m"], slots["v"]
        m *= self.beta1
        m += np.multiply(g, 1.0 - self.beta1)
        v *= self.beta2
        sq = np.multiply(g, g)
        sq *= 1.0 - self.beta2
        v += sq
        step_size, bc2_sqrt = self._corrections(lr, t)
        denom = np.sqrt(v, out=sq)
        denom /= bc2_sqrt
        denom += self.eps
        upd = np.divide(m, denom, out=denom)
        upd *= step_size
        p -= upd

    def _params(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019; torch.optim.AdamW).

    Parameters
    ----------
    lr : float > 0 or Schedule, default=1e-3
    beta1 : float in [0, 1), default=0.9
    beta2 : float in [0, 1), default=0.999
    eps : float > 0, default=1e-8
    weight_decay : float >= 0, default=0.01
        Each parameter selected by ``decay_mask`` is shrunk by ``lr * weight_decay``
        before the Adam step; the gradient is left alone.

    Notes
    -----
    .. math::

        p &\\leftarrow p \\, (1 - \\eta \\lambda) \\\\
        m &\\leftarrow \\beta_1 m + (1 - \\beta_1) g \\\\
        v &\\leftarrow \\beta_2 v + (1 - \\beta_2) g^2 \\\\
        p &\\leftarrow p - \\frac{\\eta}{1 - \\beta_1^t}
              \\frac{m}{\\sqrt{v} / \\sqrt{1 - \\beta_2^t} + \\epsilon}

    ``eta`` is the current (scheduled) learning rate, as in PyTorch.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.optimizers import AdamW
    >>> xp = resolve_backend("numpy").xp
    >>> opt = AdamW(lr=0.1, weight_decay=0.5)
    >>> params = [np.array([1.0]), np.array([1.0])]
    >>> state = opt.init_state(params, xp=xp)
    >>> zero = [np.array([0.0]), np.array([0.0])]
    >>> [p.tolist() for p in opt.step(params, zero, state, xp=xp, decay_mask=[True, False])]
    [[0.95], [1.0]]
    """

    name = "adamw"
    _decoupled = True

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)


class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton, 2012) with optional momentum and coupled L2 decay.

    Parameters
    ----------
    lr : float > 0 or Schedule, default=1e-3
    rho : float in [0, 1), default=0.9
        Decay of the squared-gradient average (Hinton's and Keras' 0.9;
        ``torch.optim.RMSprop`` calls it ``alpha`` and defaults to 0.99).
    eps : float > 0, default=1e-8
        Added to ``sqrt(s)`` (outside the root, as PyTorch and Keras do).
    momentum : float in [0, 1), default=0.0
    weight_decay : float >= 0, default=0.0
        Coupled L2, as in torch: ``weight_decay * p`` is added to the gradient.

    Notes
    -----
    Equal to ``torch.optim.RMSprop(alpha=rho, centered=False)``:

    .. math::

        g &\\leftarrow g + \\lambda p \\\\
        s &\\leftarrow \\rho s + (1 - \\rho) g^2 \\\\
        b &\\leftarrow \\mu b + g / (\\sqrt{s} + \\epsilon) \\\\
        p &\\leftarrow p - \\eta b

    Without momentum the last two lines are ``p <- p - eta * g / (sqrt(s) + eps)``.
    Slots: ``"square_avg"`` and, when ``momentum > 0``, ``"velocity"``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.optimizers import RMSProp
    >>> xp = resolve_backend("numpy").xp
    >>> opt = RMSProp(lr=0.01, rho=0.75)
    >>> params = [np.array([1.0])]
    >>> state = opt.init_state(params, xp=xp)
    >>> params = opt.step(params, [np.array([2.0])], state, xp=xp)
    >>> round(float(params[0][0]), 6)  # 1 - 0.01 * 2 / sqrt(0.25 * 4)
    0.98
    """

    name = "rmsprop"
    default_lr = 1e-3

    def __init__(self, lr=1e-3, rho=0.9, eps=1e-8, momentum=0.0, weight_decay=0.0):
        super().__init__(lr)
        self.rho = check_float(rho, "rho", "RMSProp", low=0.0, high=1.0, high_open=True)
        self.eps = check_float(eps, "eps", "RMSProp", low=0.0, low_open=True)
        self.momentum = check_float(momentum, "momentum", "RMSProp", low=0.0, high=1.0,
                                     high_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay", "RMSProp", low=0.0)

    def slot_names(self):
        return ("square_avg", "velocity") if self.momentum > 0.0 else ("square_avg",)

    def _update(self, p, g, slots, *, lr, t, decay, xp):
        if decay and self.weight_decay:
            g = g + self.weight_decay * p
        s = self.rho * slots["square_avg"] + (1.0 - self.rho) * (g * g)
        new = {"square_avg": s}
        scaled = g / (xp.sqrt(s) + self.eps)
        if self.momentum:
            scaled = self.momentum * slots["velocity"] + scaled
            new["velocity"] = scaled
        return p - lr * scaled, new

    def _update_numpy(self, p, g, slots, *, lr, t, decay):
        if decay and self.weight_decay:
            tmp = np.multiply(p, self.weight_decay)
            tmp += g
            g = tmp
        s = slots["square_avg"]
        s *= self.rho
        sq = np.multiply(g, g)
        sq *= 1.0 - self.rho
        s += sq
        denom = np.sqrt(s, out=sq)
        denom += self.eps
        scaled = np.divide(g, denom, out=denom)
        if self.momentum:
            b = slots["velocity"]
            b *= self.momentum
            b += scaled
            scaled = np.multiply(b, lr, out=scaled)
        else:
            scaled *= lr
        p -= scaled

    def _params(self):
        return {"rho": self.rho, "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay}


#: Registry of optimizer classes by name.
OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSProp)}


def get_optimizer(spec, **params) -> Optimizer:
    """Return an :class:`Optimizer` from a name, an instance or a config dict.

    Parameters
    ----------
    spec : str, Optimizer or dict
        A key of :data:`OPTIMIZERS` (case-insensitive), an :class:`Optimizer` (returned
        as is) or the output of :meth:`Optimizer.get_config`.
    **params
        Hyper-parameters when ``spec`` is a name or a config dict (they override the
        dict's values), e.g. ``lr=0.1, momentum=0.9`` for ``"sgd"``.

    Returns
    -------
    Optimizer

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones), an unknown parameter or
        an invalid value ("The 'lr' parameter of SGD must be a float > 0. Got 0
        instead.").
    TypeError
        For a spec of another type, or parameters given with an instance.

    Examples
    --------
    >>> from mlpx.optimizers import get_optimizer
    >>> get_optimizer("sgd", lr=0.1, momentum=0.9, nesterov=True)
    SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0)
    >>> opt = get_optimizer({"name": "adamw", "lr": {"name": "cosine", "total_steps": 100}})
    >>> opt.current_lr(0), round(opt.current_lr(50), 10)  # cosine from AdamW's default lr
    (0.001, 0.0005)
    """
    return _resolve(spec, params, base=Optimizer, registry=OPTIMIZERS, kind="optimizer")
