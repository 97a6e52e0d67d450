"""Optimizers (SGD, Adam, AdamW, RMSProp) and learning-rate schedules.

An optimizer holds hyper-parameters only; its state lives in a plain dict that the caller
keeps beside the parameters::

    opt = get_optimizer("adam", lr=1e-3)
    state = opt.init_state(params, xp=xp)      # {"step": 0, "slots": {"m": [...], "v": [...]}}
    params = opt.step(params, grads, state, xp=xp, decay_mask=None)

``params`` and ``grads`` are lists aligned by position and every slot of the state is a
list aligned with them too (one fresh array per parameter, never keyed by name, never
shared). ``state["step"]`` counts the updates made so far.

Each optimizer has ONE update rule, :meth:`Optimizer.update`, written with Array API
operations: it returns the new parameter and slot arrays and reads every scalar from the
``hyper`` dict of :meth:`Optimizer.hyper` (``lr``, ``eps``, ...), which a caller may
override per step (``step(..., hyper={"eps": 1e-6})``). On every backend but writable
NumPy arrays :meth:`Optimizer.step` returns the new arrays; on writable NumPy arrays it
writes them back into the existing parameter and slot arrays
(:meth:`Optimizer.update_in_place`), so their identities are kept. Both are therefore the
same numbers, bit for bit. Every scalar is a Python float, so float32 stays float32.

The update rules follow ``torch.optim`` (without dampening, amsgrad, centering or
maximisation) so results can be checked against PyTorch step by step.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _backend
from ._registry import Registry
from ._validation import (
    Boolean,
    InstanceOf,
    Interval,
    InvalidParameterError,
    check_float,
    check_int,
    validate_params,
)

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
    "WarmupSchedule",
    "SCHEDULES",
    "get_schedule",
]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

_POSITIVE = Interval(float, 0.0, None, closed="neither")
_NON_NEGATIVE = Interval(float, 0.0, None, closed="left")
_UNIT_LEFT_CLOSED = Interval(float, 0.0, 1.0, closed="left")    # [0, 1)
_UNIT_RIGHT_CLOSED = Interval(float, 0.0, 1.0, closed="right")  # (0, 1]
_COUNT = Interval(int, 1, None, closed="left")


def _set_params(obj, values):
    """Validate ``values`` against ``obj.parameter_constraints`` (owner: the class name)
    and store the normalised values as attributes of ``obj``."""
    checked = validate_params(type(obj).__name__, values, obj.parameter_constraints)
    for key, value in checked.items():
        setattr(obj, key, value)


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
    lr: float | None
    #: Declarative constraints of the constructor parameters (see
    #: :func:`mlpx._validation.validate_params`).
    parameter_constraints: dict = {"lr": [_POSITIVE, None]}

    def __init__(self, lr=None):
        _set_params(self, {"lr": lr})

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
    parameter_constraints = {**Schedule.parameter_constraints, "step_size": _COUNT,
                             "gamma": _UNIT_RIGHT_CLOSED}

    def __init__(self, step_size, gamma=0.1, lr=None):
        super().__init__(lr)
        _set_params(self, {"step_size": step_size, "gamma": gamma})

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
    parameter_constraints = {**Schedule.parameter_constraints, "gamma": _UNIT_RIGHT_CLOSED}

    def __init__(self, gamma, lr=None):
        super().__init__(lr)
        _set_params(self, {"gamma": gamma})

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
    parameter_constraints = {**Schedule.parameter_constraints, "total_steps": _COUNT,
                             "min_lr": _NON_NEGATIVE}

    def __init__(self, total_steps, min_lr=0.0, lr=None):
        super().__init__(lr)
        _set_params(self, {"total_steps": total_steps, "min_lr": min_lr})

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
    parameter_constraints = {**Schedule.parameter_constraints, "power_t": _NON_NEGATIVE}

    def __init__(self, power_t=0.5, lr=None):
        super().__init__(lr)
        _set_params(self, {"power_t": power_t})

    def _value(self, base_lr, step):
        return base_lr / (step + 1.0) ** self.power_t

    def _params(self):
        return {"power_t": self.power_t}


class WarmupSchedule(Schedule):
    """Linear warm-up over the first ``warmup_steps`` updates, then another schedule.

    The rate rises in equal steps from ``base_lr / warmup_steps`` (the first update) to
    ``base_lr`` (update ``warmup_steps - 1``); from then on ``then`` decides, counting
    its steps from the end of the warm-up (so a cosine decay over ``total_steps`` starts
    at the full rate).

    Parameters
    ----------
    warmup_steps : int >= 1
    then : str, dict, Schedule or None, default=None
        The schedule after the warm-up (:func:`get_schedule`); None keeps ``base_lr``.
        When this schedule has no ``lr`` of its own, it takes ``then``'s.
    lr : float > 0 or None, default=None

    Notes
    -----
    .. math:: \\eta_t = \\eta_0 \\, \\frac{t + 1}{W} \\;(t < W), \\qquad
              \\eta_t = \\mathrm{then}(\\eta_0, t - W) \\;(t \\ge W)

    Examples
    --------
    >>> from mlpx.optimizers import WarmupSchedule
    >>> s = WarmupSchedule(4, then={"name": "step", "step_size": 2, "gamma": 0.5})
    >>> [s(1.0, t) for t in range(8)]
    [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5, 0.5]
    """

    name = "warmup"
    parameter_constraints = {**Schedule.parameter_constraints, "warmup_steps": _COUNT,
                             "then": [InstanceOf((Schedule, dict, str), "a Schedule"), None]}

    def __init__(self, warmup_steps, then=None, lr=None):
        super().__init__(lr)
        _set_params(self, {"warmup_steps": warmup_steps, "then": then})
        if self.then is not None:
            self.then = get_schedule(self.then)
            if self.lr is None:
                self.lr = self.then.lr

    def _value(self, base_lr, step):
        if step < self.warmup_steps:
            return base_lr * (step + 1) / self.warmup_steps
        if self.then is None:
            return base_lr
        return self.then(base_lr, step - self.warmup_steps)

    def _params(self):
        return {"warmup_steps": self.warmup_steps,
                "then": None if self.then is None else self.then.get_config()}


#: Registry of schedule classes by name (``"invscaling"`` is scikit-learn's spelling).
#: Lookups ignore case, ``-``, ``_`` and spaces (see :func:`mlpx._registry.normalize_name`).
SCHEDULES = Registry("schedule", Schedule)
for _sched in (ConstantSchedule, StepSchedule, ExponentialSchedule, CosineSchedule):
    SCHEDULES.register(_sched, _sched.name)
del _sched
SCHEDULES.register(InverseScalingSchedule, "inverse_scaling", aliases=("invscaling",))
SCHEDULES.register(WarmupSchedule, "warmup", aliases=("linear_warmup",))


def get_schedule(spec, **params) -> Schedule:
    """Return a :class:`Schedule` from a name, an instance or a config dict.

    Parameters
    ----------
    spec : str, Schedule or dict
        A key of :data:`SCHEDULES` (case, ``-``, ``_`` and spaces are ignored), a
        :class:`Schedule` (returned as is) or the output of :meth:`Schedule.get_config`.
    **params
        Parameters of the schedule when ``spec`` is a name or a config dict.

    Raises
    ------
    mlpx.InvalidParameterError
        (a ``ValueError`` and a ``TypeError``) for an unknown name (the message lists the
        valid ones), an unknown parameter, an invalid value, a spec of another type, or
        parameters given with an instance.

    Examples
    --------
    >>> from mlpx.optimizers import get_schedule
    >>> get_schedule("step", step_size=30, gamma=0.1)
    StepSchedule(step_size=30, gamma=0.1, lr=None)
    """
    return SCHEDULES.build(spec, **params)


# --------------------------------------------------------------------------------------
# optimizers
# --------------------------------------------------------------------------------------

def _writable_ndarrays(arrays):
    return all(isinstance(a, np.ndarray) and a.flags.writeable for a in arrays)


class Optimizer:
    """Base class of optimizers: hyper-parameters here, state in a dict beside the params.

    Subclasses set :attr:`name`, :attr:`default_lr` and :attr:`hyper_names`, declare
    :attr:`parameter_constraints`, list their slots in :meth:`slot_names`, and implement
    the update of one parameter once, with Array API operations (:meth:`update`).

    Parameters
    ----------
    lr : float > 0, Schedule or dict
        Learning rate, or a schedule (a :class:`Schedule` or its config dict). A schedule
        starts from its own ``lr`` when set, else from :attr:`default_lr`.
    """

    name = "optimizer"
    lr: float | Schedule
    #: Learning rate a schedule without its own ``lr`` starts from.
    default_lr = 0.01
    #: Scalar hyper-parameters that :meth:`hyper` returns besides ``"lr"`` (attributes
    #: of the same names).
    hyper_names: tuple = ()
    #: Declarative constraints of the constructor parameters (see
    #: :func:`mlpx._validation.validate_params`); those of :attr:`hyper_names` also
    #: check the values a caller passes to :meth:`step` in ``hyper``.
    parameter_constraints: dict = {
        "lr": [_POSITIVE, InstanceOf((Schedule, dict), "a Schedule")],
    }

    def __init__(self, lr):
        _set_params(self, {"lr": lr})
        if isinstance(self.lr, (Schedule, dict)):
            self.lr = get_schedule(self.lr)

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
        if type(step) is not int or step < 0:  # the common case skips the full check
            step = check_int(step, "step", type(self).__name__, low=0)
        if isinstance(self.lr, Schedule):
            return self.lr(self.base_lr, step)
        return self.lr

    def hyper(self, step) -> dict:
        """Return the scalar hyper-parameters of update number ``step`` (0-based).

        Parameters
        ----------
        step : int >= 0
            The number of updates already made (``state["step"]``).

        Returns
        -------
        dict
            ``{"lr": current_lr(step), **{name: value for name in hyper_names}}`` with
            Python scalars: SGD adds ``momentum``, ``nesterov`` and ``weight_decay``;
            Adam and AdamW ``beta1``, ``beta2``, ``eps`` and ``weight_decay``; RMSProp
            ``rho``, ``eps``, ``momentum`` and ``weight_decay``.

        Examples
        --------
        >>> from mlpx.optimizers import Adam
        >>> Adam(lr=0.1).hyper(0)
        {'lr': 0.1, 'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-08, 'weight_decay': 0.0}
        """
        h = {"lr": self.current_lr(step)}
        for key in self.hyper_names:
            h[key] = getattr(self, key)
        return h

    def _resolve_hyper(self, step, hyper):
        """``hyper(step)`` updated with the caller's (checked, normalised) overrides."""
        h = self.hyper(step)
        if hyper is None:
            return h
        if not isinstance(hyper, dict):
            raise InvalidParameterError(f"The 'hyper' parameter of {type(self).__name__}."
                                        f"step must be a dict or None. Got {hyper!r} "
                                        "instead.")
        # A schedule may reach a rate of 0 (cosine decay to min_lr=0): >= 0, not > 0.
        constraints = {"lr": _NON_NEGATIVE}
        for key in self.hyper_names:
            constraints[key] = self.parameter_constraints[key]
        h.update(validate_params(f"{type(self).__name__}.step", hyper, constraints))
        if h.get("momentum", 0.0) > 0.0 and "velocity" not in self.slot_names():
            raise InvalidParameterError(
                f"The 'momentum' parameter of {type(self).__name__}.step must be 0 for an "
                "optimizer built without momentum (it keeps no velocity slot). Got "
                f"{h['momentum']!r} instead.")
        if h.get("nesterov") and h["momentum"] == 0.0:
            raise InvalidParameterError(
                f"The 'nesterov' parameter of {type(self).__name__}.step needs momentum > 0. "
                f"Got nesterov=True with momentum={h['momentum']!r} instead.")
        return h

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
    def step(self, params, grads, state, *, xp, decay_mask=None, hyper=None) -> list:
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
        hyper : dict, optional
            Hyper-parameters for this update that override those of
            ``self.hyper(state["step"])`` (e.g. ``{"eps": 1e-6}`` or ``{"lr": 0.05}``);
            keys must be ``"lr"`` or names in :attr:`hyper_names`, and values satisfy
            the constructor's constraints. None uses ``self.hyper(state["step"])``.

        Returns
        -------
        list of arrays
            New arrays, except for writable NumPy parameters and slots: those are
            updated in place (the same objects come back), with the same numbers.
        """
        return self._apply(params, grads, state, xp=xp, decay_mask=decay_mask, hyper=hyper,
                           in_place=None)

    def _apply(self, params, grads, state, *, xp, decay_mask=None, hyper=None,
               in_place=None, fast=None):
        """:meth:`step`, with ``in_place`` (or its older name ``fast``) forcing
        (True/False) or choosing (None) whether results are written back."""
        params, grads = list(params), list(grads)
        mask = self._check(params, grads, state, decay_mask)
        h = self._resolve_hyper(state["step"], hyper)
        slots = state["slots"]
        names = self.slot_names()
        if in_place is None:
            in_place = fast
        if in_place is None:
            in_place = _backend.fast_path(xp) == "numpy" and _writable_ndarrays(params) and all(
                _writable_ndarrays(slots[s]) for s in names)
        t = state["step"] + 1
        out = []
        for i, (p, g, decay) in enumerate(zip(params, grads, mask)):
            own = {s: slots[s][i] for s in names}
            if in_place:
                self.update_in_place(p, g, own, hyper=h, t=t, decay=decay, xp=xp)
                out.append(p)
            else:
                new_p, new_slots = self.update(p, g, own, hyper=h, t=t, decay=decay, xp=xp)
                for s in names:
                    slots[s][i] = new_slots[s]
                out.append(new_p)
        state["step"] = t
        return out

    def update(self, p, g, slots, *, hyper, t, decay, xp) -> tuple:  # pragma: no cover
        """The update rule of one parameter: return ``(new_p, new_slots)``.

        Functional: written with Array API operations of ``xp``; ``p``, ``g`` and the
        slot arrays are never modified.

        Parameters
        ----------
        p, g : arrays
            The parameter and its gradient.
        slots : dict
            ``{slot name: array}`` of this parameter (see :meth:`slot_names`).
        hyper : dict
            From :meth:`hyper` (possibly overridden); every scalar is read from it.
        t : int >= 1
            The 1-based number of this update.
        decay : bool
            Whether weight decay applies to this parameter.
        xp : namespace

        Returns
        -------
        new_p : array
        new_slots : dict
            ``{slot name: new array}`` for every slot.
        """
        raise NotImplementedError

    def update_in_place(self, p, g, slots, *, hyper, t, decay, xp) -> None:
        """Apply :meth:`update` and write the results into ``p`` and the slot arrays.

        For writable arrays (NumPy): the objects keep their identity and hold the same
        numbers :meth:`update` returns. ``g`` is never modified.
        """
        new_p, new_slots = self.update(p, g, slots, hyper=hyper, t=t, decay=decay, xp=xp)
        for key, new in new_slots.items():
            slots[key][...] = new
        p[...] = new_p

    def _update_numpy(self, p, g, slots, *, lr, t, decay):
        """Compatibility shim for ``mlpx._fast`` until it calls :meth:`update_in_place`:
        the one update rule, in place, with this optimizer's hyper-parameters and ``lr``.
        """
        h = {"lr": lr}
        for key in self.hyper_names:
            h[key] = getattr(self, key)
        self.update_in_place(p, g, slots, hyper=h, t=t, decay=decay,
                             xp=_backend.array_namespace(p))

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
    hyper_names = ("momentum", "nesterov", "weight_decay")
    parameter_constraints = {**Optimizer.parameter_constraints, "momentum": _UNIT_LEFT_CLOSED,
                             "nesterov": Boolean(), "weight_decay": _NON_NEGATIVE}

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr)
        _set_params(self, {"momentum": momentum, "nesterov": nesterov,
                           "weight_decay": weight_decay})
        if self.nesterov and self.momentum == 0.0:
            raise InvalidParameterError("The 'nesterov' parameter of SGD needs momentum > 0. "
                                        f"Got nesterov=True with momentum={momentum!r} "
                                        "instead.")

    def slot_names(self):
        return ("velocity",) if self.momentum > 0.0 else ()

    def update(self, p, g, slots, *, hyper, t, decay, xp):
        if decay and hyper["weight_decay"]:
            g = g + hyper["weight_decay"] * p
        new = {}
        if "velocity" in slots:  # momentum > 0 at construction
            mu = hyper["momentum"]
            b = mu * slots["velocity"] + g
            new["velocity"] = b
            g = g + mu * b if hyper["nesterov"] else b
        return p - hyper["lr"] * g, new

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
    hyper_names = ("beta1", "beta2", "eps", "weight_decay")
    parameter_constraints = {**Optimizer.parameter_constraints, "beta1": _UNIT_LEFT_CLOSED,
                             "beta2": _UNIT_LEFT_CLOSED, "eps": _POSITIVE,
                             "weight_decay": _NON_NEGATIVE}
    #: Whether weight decay is decoupled (AdamW: shrink ``p``) rather than coupled L2
    #: (Adam: add ``weight_decay * p`` to the gradient).
    decoupled = False
    _decoupled = False  # the same, for mlpx._fast until it reads ``decoupled``

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr)
        _set_params(self, {"beta1": beta1, "beta2": beta2, "eps": eps,
                           "weight_decay": weight_decay})

    def slot_names(self):
        return ("m", "v")

    @staticmethod
    def bias_corrections(hyper, t) -> tuple:
        """Return ``(step_size, bc2_sqrt)`` of update number ``t`` (1-based).

        ``step_size = lr / (1 - beta1**t)`` and ``bc2_sqrt = sqrt(1 - beta2**t)``, from
        the ``lr``, ``beta1`` and ``beta2`` of ``hyper`` (see :meth:`hyper`). The one
        place Adam's bias correction is written; fused kernels call it too.

        Examples
        --------
        >>> from mlpx.optimizers import Adam
        >>> Adam.bias_corrections({"lr": 0.1, "beta1": 0.5, "beta2": 0.75}, 1)
        (0.2, 0.5)
        """
        c2 = 1.0 - hyper["beta2"] ** t
        # math.sqrt for Python numbers; a traced 0-d array (t under jax.jit) takes **0.5
        return (hyper["lr"] / (1.0 - hyper["beta1"] ** t),
                math.sqrt(c2) if isinstance(c2, numbers.Real) else c2 ** 0.5)

    def _corrections(self, lr, t):
        """Compatibility shim for ``mlpx._fast`` until it calls :meth:`bias_corrections`."""
        return self.bias_corrections({"lr": lr, "beta1": self.beta1, "beta2": self.beta2}, t)

    def update(self, p, g, slots, *, hyper, t, decay, xp):
        b1, b2, wd = hyper["beta1"], hyper["beta2"], hyper["weight_decay"]
        if decay and wd:
            if self.decoupled:
                p = p * (1.0 - hyper["lr"] * wd)
            else:
                g = g + wd * p
        m = b1 * slots["m"] + (1.0 - b1) * g
        v = b2 * slots["v"] + (1.0 - b2) * (g * g)
        step_size, bc2_sqrt = self.bias_corrections(hyper, t)
        denom = xp.sqrt(v) / bc2_sqrt + hyper["eps"]
        return p - step_size * (m / denom), {"m": m, "v": v}

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
    decoupled = True
    _decoupled = True  # the same, for mlpx._fast until it reads ``decoupled``

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
    hyper_names = ("rho", "eps", "momentum", "weight_decay")
    parameter_constraints = {**Optimizer.parameter_constraints, "rho": _UNIT_LEFT_CLOSED,
                             "eps": _POSITIVE, "momentum": _UNIT_LEFT_CLOSED,
                             "weight_decay": _NON_NEGATIVE}

    def __init__(self, lr=1e-3, rho=0.9, eps=1e-8, momentum=0.0, weight_decay=0.0):
        super().__init__(lr)
        _set_params(self, {"rho": rho, "eps": eps, "momentum": momentum,
                           "weight_decay": weight_decay})

    def slot_names(self):
        return ("square_avg", "velocity") if self.momentum > 0.0 else ("square_avg",)

    def update(self, p, g, slots, *, hyper, t, decay, xp):
        rho, wd = hyper["rho"], hyper["weight_decay"]
        if decay and wd:
            g = g + wd * p
        s = rho * slots["square_avg"] + (1.0 - rho) * (g * g)
        new = {"square_avg": s}
        scaled = g / (xp.sqrt(s) + hyper["eps"])
        if "velocity" in slots:  # momentum > 0 at construction
            scaled = hyper["momentum"] * slots["velocity"] + scaled
            new["velocity"] = scaled
        return p - hyper["lr"] * scaled, new

    def _params(self):
        return {"rho": self.rho, "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay}


#: Registry of optimizer classes by name. Lookups ignore case, ``-``, ``_`` and spaces.
OPTIMIZERS = Registry("optimizer", Optimizer)
for _cls in (SGD, Adam, AdamW, RMSProp):
    OPTIMIZERS.register(_cls, _cls.name)
del _cls


def get_optimizer(spec, **params) -> Optimizer:
    """Return an :class:`Optimizer` from a name, an instance or a config dict.

    Parameters
    ----------
    spec : str, Optimizer or dict
        A key of :data:`OPTIMIZERS` (case, ``-``, ``_`` and spaces are ignored, so
        ``"Adam-W"`` is ``"adamw"``), an :class:`Optimizer` (returned as is) or the
        output of :meth:`Optimizer.get_config`.
    **params
        Hyper-parameters when ``spec`` is a name or a config dict (they override the
        dict's values), e.g. ``lr=0.1, momentum=0.9`` for ``"sgd"``.

    Returns
    -------
    Optimizer

    Raises
    ------
    mlpx.InvalidParameterError
        (a ``ValueError`` and a ``TypeError``) for an unknown name (the message lists the
        valid ones), an unknown parameter, an invalid value ("The 'lr' parameter of SGD
        must be a float > 0. Got 0 instead."), a spec of another type, or parameters
        given with an instance.

    Examples
    --------
    >>> from mlpx.optimizers import get_optimizer
    >>> get_optimizer("sgd", lr=0.1, momentum=0.9, nesterov=True)
    SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0)
    >>> opt = get_optimizer({"name": "adamw", "lr": {"name": "cosine", "total_steps": 100}})
    >>> opt.current_lr(0), round(opt.current_lr(50), 10)  # cosine from AdamW's default lr
    (0.001, 0.0005)
    """
    return OPTIMIZERS.build(spec, **params)
