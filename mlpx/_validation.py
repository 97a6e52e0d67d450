"""Parameter validation in one place, with one message style and one exception type.

Constructors declare what each parameter accepts and call :func:`validate_params`::

    constraints = {"alpha": [Interval(float, 0, None, closed="left")],
                   "solver": [Options(("adam", "sgd"))],
                   "verbose": [Boolean()]}
    values = validate_params("MLP", {"alpha": alpha, ...}, constraints)

A value that satisfies none of its constraints raises :class:`InvalidParameterError`
(a subclass of both ``ValueError`` and ``TypeError``) with the scikit-learn style message
``"The 'alpha' parameter of MLP must be a float >= 0. Got -1 instead."``; otherwise the
value comes back normalised to a plain Python type (``numpy.float32(0.5)`` -> ``0.5``).

When the value has the type some constraints are about (a number that is out of range),
the message names only those constraints; otherwise it names them all, joined with
"or" (``"a float > 0 or a Schedule"``).

The older helpers :func:`check_float`, :func:`check_int`, :func:`check_bool` and
:func:`check_options` remain and are thin wrappers over the same constraints.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = [
    "InvalidParameterError",
    "Constraint",
    "Interval",
    "Options",
    "ListOf",
    "Boolean",
    "InstanceOf",
    "NoneValue",
    "validate_params",
    "describe",
    "check_float",
    "check_int",
    "check_bool",
    "check_options",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter has an invalid type or value (or is unknown to its owner).

    It subclasses both ``ValueError`` and ``TypeError`` (as scikit-learn's
    ``InvalidParameterError`` does), so callers that catch either keep working.

    Examples
    --------
    >>> from mlpx._validation import InvalidParameterError
    >>> issubclass(InvalidParameterError, ValueError), issubclass(InvalidParameterError,
    ...                                                             TypeError)
    (True, True)
    """


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _fmt(bound) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


class Constraint:
    """Base class of parameter constraints.

    Subclasses implement :meth:`is_satisfied_by`, :meth:`convert` and ``__str__`` (the
    description used in messages, e.g. ``"a float >= 0"``), and may narrow
    :meth:`has_type_of`.
    """

    def is_satisfied_by(self, value: Any) -> bool:  # pragma: no cover - abstract
        """Return True when ``value`` is accepted."""
        raise NotImplementedError

    def convert(self, value: Any) -> Any:
        """Return the accepted ``value`` as a plain Python value (identity by default)."""
        return value

    def has_type_of(self, value: Any) -> bool:
        """Return True when ``value`` has the type this constraint is about (used to pick
        the constraints named in the message)."""
        return self.is_satisfied_by(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class Interval(Constraint):
    """A real or integral number within bounds.

    Parameters
    ----------
    type : {float, int, numbers.Real, numbers.Integral}
        ``float``/``Real`` accepts any real number except bools and requires it to be
        finite (converted to ``float``); ``int``/``Integral`` accepts Python and NumPy
        integers except bools (converted to ``int``).
    low, high : number or None
        Bounds; None leaves that side open-ended.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds are included.

    Examples
    --------
    >>> from mlpx._validation import Interval
    >>> str(Interval(float, 0, 1, closed="left")), str(Interval(int, 1, None, closed="left"))
    ('a float in [0, 1)', 'an int >= 1')
    >>> Interval(float, 0, None, closed="neither").is_satisfied_by(0.0)
    False
    """

    def __init__(self, type, low=None, high=None, *, closed="both"):
        if type in (float, Real):
            self.integral = False
        elif type in (int, Integral):
            self.integral = True
        else:
            raise TypeError(f"Interval type must be float or int. Got {type!r} instead.")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError("The 'closed' parameter of Interval must be one of ['both', "
                             f"'left', 'right', 'neither']. Got {closed!r} instead.")
        self.low, self.high, self.closed = low, high, closed

    def has_type_of(self, value) -> bool:
        if _is_bool(value):
            return False
        return isinstance(value, (Integral, np.integer) if self.integral else Real)

    def is_satisfied_by(self, value) -> bool:
        if not self.has_type_of(value):
            return False
        v = int(value) if self.integral else float(value)
        if not self.integral and not math.isfinite(v):
            return False
        if self.low is not None:
            if not (v >= self.low if self.closed in ("both", "left") else v > self.low):
                return False
        if self.high is not None:
            if not (v <= self.high if self.closed in ("both", "right") else v < self.high):
                return False
        return True

    def convert(self, value):
        return int(value) if self.integral else float(value)

    def __str__(self) -> str:
        kind = "an int" if self.integral else "a float"
        left_in = self.closed in ("both", "left")
        right_in = self.closed in ("both", "right")
        if self.low is not None and self.high is not None:
            return (f"{kind} in {'[' if left_in else '('}{_fmt(self.low)}, "
                    f"{_fmt(self.high)}{']' if right_in else ')'}")
        if self.low is not None:
            return f"{kind} {'>=' if left_in else '>'} {_fmt(self.low)}"
        if self.high is not None:
            return f"{kind} {'<=' if right_in else '<'} {_fmt(self.high)}"
        return kind if self.integral else "a finite float"


class Options(Constraint):
    """One of a fixed collection of values (strings, None, ...).

    Parameters
    ----------
    options : iterable
        The accepted values, in the order the message lists them. A value matches an
        option when it is equal to it and an instance of the option's type (so ``1``
        does not match ``True``, ``numpy.bool_(True)`` does and ``numpy.str_("a")`` matches
        ``"a"``); the option itself is returned.

    Examples
    --------
    >>> from mlpx._validation import Options
    >>> str(Options(("none", "tanh")))
    "one of ['none', 'tanh']"
    """

    def __init__(self, options: Iterable):
        self.options = tuple(options)

    def _match(self, value):
        for option in self.options:
            if option is None:
                if value is None:
                    return True, option
                continue
            if _is_bool(value) or _is_bool(option):  # bools match bools only
                if _is_bool(value) and _is_bool(option) and bool(value) == bool(option):
                    return True, option
                continue
            if isinstance(value, type(option)) and value == option:
                return True, option
        return False, None

    def is_satisfied_by(self, value) -> bool:
        return self._match(value)[0]

    def convert(self, value):
        return self._match(value)[1]

    def has_type_of(self, value) -> bool:
        return any(isinstance(value, type(o)) for o in self.options)

    def __str__(self) -> str:
        return f"one of {list(self.options)}"


class Boolean(Constraint):
    """A Python or NumPy bool (converted to ``bool``); ints are not bools here."""

    def is_satisfied_by(self, value) -> bool:
        return _is_bool(value)

    def convert(self, value):
        return bool(value)

    def __str__(self) -> str:
        return "a bool"


class InstanceOf(Constraint):
    """An instance of a class (or tuple of classes), returned as is.

    Parameters
    ----------
    types : type or tuple of types
    description : str, optional
        How the message names it; default ``"a <ClassName>"``.
    """

    def __init__(self, types, description: str | None = None):
        self.types = types
        if description is None:
            first = types[0] if isinstance(types, tuple) else types
            name = first.__name__
            description = f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"
        self.description = description

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, self.types)

    def __str__(self) -> str:
        return self.description


class ListOf(Constraint):
    """A list or tuple of at least ``min_length`` items, each satisfying ``item``.

    Converted to a list of the items' converted values.

    Examples
    --------
    >>> from mlpx._validation import Interval, ListOf
    >>> c = ListOf(Interval(int, 1, None, closed="left"), min_length=2)
    >>> str(c), c.is_satisfied_by([784, 10]), c.is_satisfied_by([784])
    ('a list of at least 2 ints >= 1', True, False)
    """

    def __init__(self, item: Constraint, *, min_length: int = 0):
        self.item = item
        self.min_length = min_length

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, (list, tuple)) and len(value) >= self.min_length and all(
            self.item.is_satisfied_by(v) for v in value)

    def convert(self, value) -> list:
        return [self.item.convert(v) for v in value]

    def has_type_of(self, value) -> bool:
        return isinstance(value, (list, tuple))

    def __str__(self) -> str:
        what = str(self.item)
        for article in ("an ", "a "):
            if what.startswith(article):
                what = what[len(article):]
                break
        head, _, rest = what.partition(" ")
        plural = f"{head}s {rest}".rstrip()
        if self.min_length > 1:
            return f"a list of at least {self.min_length} {plural}"
        if self.min_length == 1:
            return f"a non-empty list of {plural}"
        return f"a list of {plural}"


class NoneValue(Constraint):
    """The value None (also written as ``None`` directly in a constraint list)."""

    def is_satisfied_by(self, value) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


def _as_constraint(c) -> Constraint:
    if c is None:
        return NoneValue()
    if isinstance(c, Constraint):
        return c
    raise TypeError(f"Not a parameter constraint: {c!r}.")


def describe(constraints) -> str:
    """Join constraint descriptions as a message does: ``"a, b or c"``."""
    parts = [str(_as_constraint(c)) for c in constraints]
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} or {parts[-1]}"


def _check_one(owner: str, name: str, value, constraints) -> Any:
    if isinstance(constraints, (Constraint, type(None))):
        constraints = [constraints]
    cs = [_as_constraint(c) for c in constraints]
    for c in cs:
        if c.is_satisfied_by(value):
            return c.convert(value)
    typed = [c for c in cs if c.has_type_of(value)]
    raise InvalidParameterError(f"The {name!r} parameter of {owner} must be "
                                f"{describe(typed or cs)}. Got {value!r} instead.")


def validate_params(owner: str, values: Mapping[str, Any],
                    constraints: Mapping[str, Any]) -> dict:
    """Check parameter values against declarative constraints and normalise them.

    Parameters
    ----------
    owner : str
        Who owns the parameters, for the message (``"MLP"``, ``"leaky_relu"``, ...).
    values : mapping
        ``{parameter name: value}``.
    constraints : mapping
        ``{parameter name: constraint or list of constraints}``; a value is accepted
        when it satisfies at least one. ``None`` in a list stands for the value None.

    Returns
    -------
    dict
        ``{parameter name: normalised value}`` in the order of ``values``.

    Raises
    ------
    InvalidParameterError
        For the first value that satisfies none of its constraints, or a name without
        constraints.

    Examples
    --------
    >>> from mlpx._validation import Interval, Options, validate_params
    >>> validate_params("MLP", {"alpha": 1, "solver": "adam"},
    ...                 {"alpha": Interval(float, 0, None, closed="left"),
    ...                  "solver": [Options(("adam", "sgd"))]})
    {'alpha': 1.0, 'solver': 'adam'}
    >>> try:
    ...     validate_params("MLP", {"alpha": -1}, {"alpha": Interval(float, 0, None)})
    ... except ValueError as exc:
    ...     print(type(exc).__name__, exc)
    InvalidParameterError The 'alpha' parameter of MLP must be a float >= 0. Got -1 instead.
    """
    unknown = [k for k in values if k not in constraints]
    if unknown:
        raise InvalidParameterError(f"Unknown parameter(s) {sorted(unknown)} for {owner}. "
                                    f"Valid parameters: {list(constraints)}.")
    return {k: _check_one(owner, k, v, constraints[k]) for k, v in values.items()}


# ------------------------------------------------------------------ older helpers
def check_float(value, name, owner, *, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a finite Python float within bounds, or raise.

    Parameters
    ----------
    value : object
    name, owner : str
        The parameter and its owner, for the message.
    low, high : float, optional
        Bounds, inclusive unless ``low_open`` / ``high_open``.

    Raises
    ------
    InvalidParameterError
        A ``ValueError`` (and ``TypeError``) with the standard message.

    Examples
    --------
    >>> check_float(0.5, "p", "Dropout", low=0.0, high=1.0, high_open=True)
    0.5
    >>> try:
    ...     check_float(-1, "alpha", "MLP", low=0.0)
    ... except ValueError as exc:
    ...     print(exc)
    The 'alpha' parameter of MLP must be a float >= 0. Got -1 instead.
    """
    closed = {(False, False): "both", (False, True): "left", (True, False): "right",
              (True, True): "neither"}[(bool(low_open), bool(high_open))]
    return _check_one(owner, name, value, Interval(float, low, high, closed=closed))


def check_int(value, name, owner, *, low=1):
    """Return ``value`` as a Python int >= ``low``, or raise :class:`InvalidParameterError`."""
    return _check_one(owner, name, value, Interval(int, low, None, closed="left"))


def check_bool(value, name, owner):
    """Return ``value`` as a Python bool, or raise :class:`InvalidParameterError`."""
    return _check_one(owner, name, value, Boolean())


def check_options(value, name, owner, options):
    """Return ``value`` if it is one of ``options``, or raise listing them."""
    return _check_one(owner, name, value, Options(options))
