"""Parameter validation in one place, with one message style.

Every check raises ``ValueError("The 'alpha' parameter of MLP must be a float >= 0. Got -1
instead.")`` (the scikit-learn ``_parameter_constraints`` style) and returns the value
normalised to a Python type.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

__all__ = ["check_float", "check_int", "check_bool", "check_options"]


def check_float(value, name, owner, *, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a finite Python float within bounds, or raise a ValueError.

    Parameters
    ----------
    value : object
    name, owner : str
        The parameter and its owner, for the message.
    low, high : float, optional
        Bounds, inclusive unless ``low_open`` / ``high_open``.

    Examples
    --------
    >>> check_float(0.5, "p", "Dropout", low=0.0, high=1.0, high_open=True)
    0.5
    >>> check_float(-1, "alpha", "MLP", low=0.0)
    Traceback (most recent call last):
    ...
    ValueError: The 'alpha' parameter of MLP must be a float >= 0. Got -1 instead.
    """
    if low is not None and high is not None:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        what = f"a float in {left}{low:g}, {high:g}{right}"
    elif low is not None:
        what = f"a float {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        what = f"a float {'<' if high_open else '<='} {high:g}"
    else:
        what = "a finite float"
    ok = isinstance(value, Real) and not isinstance(value, (bool, np.bool_))
    if ok:
        v = float(value)
        ok = math.isfinite(v)
        if ok and low is not None:
            ok = v > low if low_open else v >= low
        if ok and high is not None:
            ok = v < high if high_open else v <= high
    if not ok:
        raise ValueError(f"The {name!r} parameter of {owner} must be {what}. "
                         f"Got {value!r} instead.")
    return float(value)


def check_int(value, name, owner, *, low=1):
    """Return ``value`` as a Python int >= ``low``, or raise a ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < low:
        raise ValueError(f"The {name!r} parameter of {owner} must be an int >= {low}. "
                         f"Got {value!r} instead.")
    return int(value)


def check_bool(value, name, owner):
    """Return ``value`` as a Python bool, or raise a ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"The {name!r} parameter of {owner} must be a bool. "
                         f"Got {value!r} instead.")
    return bool(value)


def check_options(value, name, owner, options):
    """Return ``value`` if it is one of ``options``, or raise a ValueError listing them."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"The {name!r} parameter of {owner} must be one of "
                         f"{list(options)}. Got {value!r} instead.")
    return value
