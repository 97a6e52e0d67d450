"""Activation functions: a registry of small, picklable objects with forward and backward.

Every activation is written once against the Python Array API: it receives the
namespace as a keyword-only ``xp`` argument and uses only functions of that namespace, so
the same code runs on NumPy, CuPy and array-api-strict. Outputs and gradients keep the
input's floating dtype (float32 in, float32 out).

Look an activation up by name with :func:`get_activation`; the registry
:data:`ACTIVATIONS` maps every accepted name (aliases included) to its class.

====================  ============================================  =====================
name (aliases)        forward ``f(x)``                              parameters
====================  ============================================  =====================
identity (linear)     ``x``
affine                ``slope * x + intercept``                     slope=1, intercept=0
sigmoid (logistic)    ``1 / (1 + exp(-x))``
tanh                  ``tanh(x)``
relu                  ``max(x, 0)``
leaky_relu            ``x if x > 0 else alpha * x``                 alpha=0.01
elu                   ``x if x > 0 else alpha * (exp(x) - 1)``      alpha=1.0
softplus              ``log(1 + exp(x))``
swish (silu)          ``x * sigmoid(beta * x)``                     beta=1.0
gelu                  ``x * Phi(x)``, Phi the normal CDF            approximate="none"
hard_sigmoid          ``clip(0.25 * x + 0.5, 0, 1)``
hard_tanh             ``clip(x, -1, 1)``
exp (exponential)     ``exp(x)``
softmax               ``exp(x) / sum(exp(x))``, last axis
log_softmax           ``x - log(sum(exp(x)))``, last axis
====================  ============================================  =====================

``"prelu"`` and ``"maxout"`` are accepted as ``MLP(activation=...)`` and ``mlpx train
--activation`` but are not in :data:`ACTIVATIONS`: they have weights of their own, so
they are layers (:class:`mlpx.layers.PReLU`, :class:`mlpx.layers.Maxout`), not plain
functions. PReLU is a leaky ReLU whose negative slope is learnt per unit (it follows a
Dense layer like any activation); Maxout replaces the Dense layer and its activation by
the maximum over ``maxout_k`` affine pieces per unit. Neither can be an output
activation or be passed to :func:`get_activation`; :data:`LAYER_ACTIVATIONS` names
them.
"""

from __future__ import annotations

import math

from . import _backend
from ._registry import Registry, normalize_name
from ._validation import Interval, InvalidParameterError, Options, validate_params

__all__ = [
    "Activation",
    "Identity",
    "Affine",
    "Sigmoid",
    "Tanh",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softplus",
    "Swish",
    "GELU",
    "HardSigmoid",
    "HardTanh",
    "Exp",
    "Softmax",
    "LogSoftmax",
    "ACTIVATIONS",
    "LAYER_ACTIVATIONS",
    "get_activation",
    "softmax",
    "log_softmax",
    "sigmoid",
]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------- validation
# --------------------------------------------------------------------------- functions
def sigmoid(x, *, xp):
    """Logistic sigmoid, computed without overflow for any finite input.

    Parameters
    ----------
    x : array of any shape, floating dtype
    xp : namespace
        The Array API namespace of ``x``.

    Returns
    -------
    y : array of the same shape and dtype as ``x``, values in [0, 1].

    Notes
    -----
    .. math:: \\sigma(x) = \\frac{1}{1 + e^{-x}}

    With :math:`e = \\exp(-|x|) \\in (0, 1]`, :math:`\\sigma(x) = 1/(1+e)` for
    :math:`x \\ge 0` and :math:`e/(1+e)` for :math:`x < 0`: the exponential never
    overflows, so there are no warnings even for :math:`|x| = 10^4` in float32.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.activations import sigmoid
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0]), xp=xp).tolist()
    [0.0, 0.5, 1.0]
    """
    e = xp.exp(-xp.abs(x))
    r = 1.0 / (1.0 + e)
    return xp.where(x >= 0, r, e * r)


def softmax(z, *, xp, axis=-1):
    """Numerically stable softmax along ``axis``.

    Parameters
    ----------
    z : array of shape (n_samples, n_classes) (any shape is accepted)
    xp : namespace
        The Array API namespace of ``z``.
    axis : int, default=-1
        The axis that sums to one.

    Returns
    -------
    p : array of the same shape and dtype as ``z``.

    Notes
    -----
    .. math:: \\mathrm{softmax}(z)_i = \\frac{e^{z_i - m}}{\\sum_j e^{z_j - m}},
              \\quad m = \\max_j z_j

    Subtracting the row maximum :math:`m` changes nothing mathematically (softmax is
    shift invariant) and keeps every exponent :math:`\\le 0`, so nothing overflows.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.activations import softmax
    >>> p = softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0]]), xp=xp)
    >>> np.round(p, 4).tolist()
    [[0.09, 0.2447, 0.6652], [0.3333, 0.3333, 0.3333]]
    """
    m = xp.max(z, axis=axis, keepdims=True)
    e = xp.exp(z - m)
    return e / xp.sum(e, axis=axis, keepdims=True)


def log_softmax(z, *, xp, axis=-1):
    """Numerically stable logarithm of :func:`softmax` along ``axis``.

    Parameters
    ----------
    z : array of shape (n_samples, n_classes) (any shape is accepted)
    xp : namespace
        The Array API namespace of ``z``.
    axis : int, default=-1

    Returns
    -------
    log_p : array of the same shape and dtype as ``z``; every entry is <= 0.

    Notes
    -----
    .. math:: \\log \\mathrm{softmax}(z)_i = (z_i - m) - \\log \\sum_j e^{z_j - m},
              \\quad m = \\max_j z_j

    Finite for every finite input (no ``log(0)``), unlike ``log(softmax(z))``.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.activations import log_softmax
    >>> np.round(log_softmax(np.array([[0.0, 1000.0]]), xp=xp), 4).tolist()
    [[-1000.0, 0.0]]
    """
    s = z - xp.max(z, axis=axis, keepdims=True)
    return s - xp.log(xp.sum(xp.exp(s), axis=axis, keepdims=True))


# The standard normal CDF Phi(x), needed by the exact GELU. Neither the Array API
# standard nor array-api-strict (nor NumPy) has erf/erfc, so the generic path evaluates
#
#   Phi(x) = h for x < 0,  1 - h for x >= 0,  h = erfc(t) / 2,  t = |x| / sqrt(2),
#
# so only h is needed, and to good *relative* accuracy (the lower tail). With the change
# of variable s = (t - 2) / (t + 2), which maps [0, inf) onto [-1, 1),
#
#   h = exp(-x^2 / 2) * G(s) / (2 + t),   G(s) = (1 + t/2) * exp(t^2) * erfc(t),
#
# where G is smooth on [-1, 1] (it tends to 1/(2 sqrt(pi)) as t -> inf), so a short
# Chebyshev series in s represents it to machine precision (a classic change of variable
# for Chebyshev expansions of erfc; the coefficients here are our own). They are
# computed once, at import, by Chebyshev interpolation of G at 48 nodes from the
# host's math.erfc (t < 3) and Laplace's continued fraction for exp(t^2) erfc(t)
# (t >= 3, 100 levels), and evaluated with Clenshaw's recurrence in Array API operations.
# exp(-x^2/2) is split as exp(-hi^2/2) * exp(-(x - hi)(x + hi)/2) with hi = x rounded to
# 1/16 (hi^2/2 is exact), so the rounding of x*x does not cost relative accuracy.
# Measured against mpmath (50 digits) for |x| <= 37: the relative error of h is below
# 1e-14 in float64 (25 terms) and 1e-6 in float32 (13 terms); Phi near 1 is accurate to
# a few ulp. That is far more than central-difference gradient checks at 1e-6 need.
_CHEB_NODES = 48
_CHEB_TERMS = {"float64": 25, "float32": 13}
_X_MAX = 42.0  # Phi(-42) ~ 1e-386 underflows even in float64


def _erfcx_host(t):
    """exp(t^2) * erfc(t) for a Python float t >= 0 (host-side, import time only)."""
    if t < 3.0:
        return math.exp(t * t) * math.erfc(t)
    f = t
    for k in range(100, 0, -1):  # Laplace's continued fraction, bottom up
        f = t + 0.5 * k / f
    return 1.0 / (math.sqrt(math.pi) * f)


def _erfc_chebyshev_coefficients(n_nodes):
    """Chebyshev coefficients c_j of G(s) on [-1, 1], G ~ sum_j c_j T_j(s)."""
    thetas = [math.pi * (k + 0.5) / n_nodes for k in range(n_nodes)]
    values = []
    for theta in thetas:
        s = math.cos(theta)
        t = 2.0 * (1.0 + s) / (1.0 - s)
        values.append((1.0 + 0.5 * t) * _erfcx_host(t))
    coefs = [2.0 / n_nodes * sum(v * math.cos(j * th) for v, th in zip(values, thetas))
             for j in range(n_nodes)]
    coefs[0] *= 0.5
    return tuple(coefs)


_ERFC_COEFS = _erfc_chebyshev_coefficients(_CHEB_NODES)


def _gauss(ax, *, xp):
    """exp(-ax^2 / 2) for ``0 <= ax <= _X_MAX`` without losing relative accuracy."""
    hi = xp.round(ax * 16.0) * 0.0625
    return xp.exp(-0.5 * hi * hi) * xp.exp(-0.5 * (ax - hi) * (ax + hi))


def _normal_cdf_generic(x, *, xp):
    """Phi(x) in Array API operations (see the comment above for method and accuracy)."""
    n_terms = _CHEB_TERMS["float32" if x.dtype == xp.float32 else "float64"]
    c = _ERFC_COEFS[:n_terms]
    ax = xp.clip(xp.abs(x), 0.0, _X_MAX)
    t = ax * _INV_SQRT_2
    s = (t - 2.0) / (t + 2.0)
    s2 = 2.0 * s
    b1, b2 = c[-1], 0.0  # Clenshaw: b_k = c_k + 2 s b_{k+1} - b_{k+2}
    for ck in c[-2:0:-1]:
        b1, b2 = ck + s2 * b1 - b2, b1
    g = c[0] + s * b1 - b2
    h = _gauss(ax, xp=xp) * g / (2.0 + t)
    return xp.where(x < 0, h, 1.0 - h)


def _const(value, like, xp):
    """``value`` as a 0-d array of ``like``'s dtype and device.

    Functions such as ``maximum``, ``minimum`` and ``where`` accept Python scalars only
    from the 2024.12 standard on; a 0-d array works with every version (2023.12
    included) and broadcasts the same way.
    """
    return xp.asarray(value, dtype=like.dtype, device=_backend.device_of(like))


_FAST_NDTR_CACHE: dict = {}


def _fast_ndtr(xp):
    """A library normal-CDF ufunc for ``xp`` if one is importable, else None.

    NumPy: ``scipy.special.ndtr`` (SciPy is optional); CuPy: ``cupyx.scipy.special.ndtr``.
    Both keep float32 as float32. Tested equal to :func:`_normal_cdf_generic`.
    """
    kind = _backend.fast_path(xp)
    if kind == "numpy":
        key, module = "numpy", "scipy.special"
    elif kind == "cupy":  # pragma: no cover - GPU only
        key, module = "cupy", "cupyx.scipy.special"
    else:
        return None
    if key not in _FAST_NDTR_CACHE:
        try:
            import importlib

            _FAST_NDTR_CACHE[key] = importlib.import_module(module).ndtr
        except (ImportError, AttributeError):
            _FAST_NDTR_CACHE[key] = None
    return _FAST_NDTR_CACHE[key]


def _normal_cdf(x, *, xp, generic=False):
    """Standard normal CDF Phi(x) of an array, dtype preserved.

    Uses, in order: a library ufunc fenced by the namespace predicates, the namespace's
    own ``erfc`` in float64 when it has one (PyTorch; its float32 ``erfc`` is off by a
    few 1e-6 in the far lower tail), and otherwise the generic expansion.
    ``generic=True`` forces the generic expansion (tests compare the paths). ``erf``
    alone is not used: ``1 + erf(x / sqrt(2))`` loses the lower tail (Phi(-10) ~ 8e-24
    would come out as 0).
    """
    if not generic:
        fast = _fast_ndtr(xp)
        if fast is not None:
            return fast(x)
        if hasattr(xp, "erfc") and x.dtype == xp.float64:
            return 0.5 * xp.erfc(x * -_INV_SQRT_2)
    return _normal_cdf_generic(x, xp=xp)


# --------------------------------------------------------------------------- base class
class Activation:
    """Base class of element-wise (and row-wise) activation functions.

    Subclasses set :attr:`name` (the canonical registry name) and :attr:`_params` (the
    names of their constructor parameters, stored as attributes of the same names), and
    implement :meth:`forward` and :meth:`backward`. Instances are small, immutable in
    practice, picklable and compare equal when their configs are equal.
    """

    #: Canonical registry name.
    name: str = "activation"
    #: Names of the constructor parameters (attributes of the same name).
    _params: tuple = ()
    #: Declarative constraints of the constructor parameters (see
    #: :func:`mlpx._validation.validate_params`).
    parameter_constraints: dict = {}

    def forward(self, x, *, xp):
        """Return ``f(x)``, of the same shape and dtype as ``x``.

        Parameters
        ----------
        x : array of shape (n_samples, n_units)
        xp : namespace
            The Array API namespace of ``x``.
        """
        raise NotImplementedError

    def backward(self, dy, x, y, *, xp):
        """Return ``dL/dx`` given ``dy = dL/dy``, the input ``x`` and the output ``y``.

        For element-wise activations this is ``dy * f'(x)``; for softmax and
        log-softmax the Jacobian-vector product along the last axis.

        Parameters
        ----------
        dy : array of shape (n_samples, n_units)
        x : array of shape (n_samples, n_units)
            The input given to :meth:`forward`. Activations whose derivative is written
            in terms of the output accept ``x=None``.
        y : array of shape (n_samples, n_units) or None
            The output of :meth:`forward`; recomputed from ``x`` when None.
        xp : namespace

        Returns
        -------
        dx : array of the same shape and dtype as ``dy``.
        """
        raise NotImplementedError

    def __call__(self, x, *, xp):
        return self.forward(x, xp=xp)

    def get_config(self) -> dict:
        """Return ``{"name": ..., **params}``; :func:`get_activation` rebuilds from it."""
        config = {"name": self.name}
        for p in self._params:
            config[p] = getattr(self, p)
        return config

    def __repr__(self):
        args = ", ".join(f"{p}={getattr(self, p)!r}" for p in self._params)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        if not isinstance(other, Activation):
            return NotImplemented
        return self.get_config() == other.get_config()

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    # helpers for subclasses
    def _set_params(self, **values):
        """Validate constructor parameters against :attr:`parameter_constraints` and store
        their normalised values as attributes."""
        for key, value in validate_params(self.name, values,
                                          self.parameter_constraints).items():
            setattr(self, key, value)

    def _output(self, x, y, xp):
        if y is None:
            if x is None:
                raise ValueError(f"{self.name}.backward needs the input x or the output y.")
            y = self.forward(x, xp=xp)
        return y

    def _input(self, x):
        if x is None:
            raise ValueError(f"{self.name}.backward needs the input x (got None).")
        return x


# --------------------------------------------------------------------------- activations
class Identity(Activation):
    """The identity ``f(x) = x`` (alias ``"linear"``); its derivative is 1."""

    name = "identity"

    def forward(self, x, *, xp):
        return x

    def backward(self, dy, x, y, *, xp):
        return dy


class Affine(Activation):
    """An affine map ``f(x) = slope * x + intercept``.

    Parameters
    ----------
    slope : float, default=1.0
    intercept : float, default=0.0

    Notes
    -----
    .. math:: f(x) = a x + b, \\qquad f'(x) = a
    """

    name = "affine"
    _params = ("slope", "intercept")
    parameter_constraints = {"slope": Interval(float), "intercept": Interval(float)}

    def __init__(self, slope=1.0, intercept=0.0):
        self._set_params(slope=slope, intercept=intercept)

    def forward(self, x, *, xp):
        return self.slope * x + self.intercept

    def backward(self, dy, x, y, *, xp):
        return self.slope * dy


class Sigmoid(Activation):
    """Logistic sigmoid (alias ``"logistic"``), stable for any finite input.

    Notes
    -----
    .. math:: \\sigma(x) = \\frac{1}{1+e^{-x}}, \\qquad \\sigma'(x) = \\sigma(x)(1-\\sigma(x))

    See :func:`sigmoid` for the overflow-free evaluation.
    """

    name = "sigmoid"

    def forward(self, x, *, xp):
        return sigmoid(x, xp=xp)

    def backward(self, dy, x, y, *, xp):
        y = self._output(x, y, xp)
        return dy * (y * (1.0 - y))


class Tanh(Activation):
    """Hyperbolic tangent.

    Notes
    -----
    .. math:: f(x) = \\tanh x, \\qquad f'(x) = 1 - \\tanh^2 x
    """

    name = "tanh"

    def forward(self, x, *, xp):
        return xp.tanh(x)

    def backward(self, dy, x, y, *, xp):
        y = self._output(x, y, xp)
        return dy * (1.0 - y * y)


class ReLU(Activation):
    """Rectified linear unit.

    Notes
    -----
    .. math:: f(x) = \\max(x, 0), \\qquad f'(x) = [x > 0]

    The derivative at 0 is taken as 0. The gradient is built with ``where`` from ``dy``,
    so it keeps ``dy``'s floating dtype (never an integer or boolean array).
    """

    name = "relu"

    def forward(self, x, *, xp):
        return xp.maximum(x, _const(0.0, x, xp))

    def backward(self, dy, x, y, *, xp):
        ref = x if x is not None else self._output(x, y, xp)
        return xp.where(ref > 0, dy, _const(0.0, dy, xp))


class LeakyReLU(Activation):
    """Leaky rectified linear unit.

    Parameters
    ----------
    alpha : float >= 0, default=0.01
        Slope for negative inputs.

    Notes
    -----
    .. math:: f(x) = \\begin{cases} x & x > 0 \\\\ \\alpha x & x \\le 0 \\end{cases},
              \\qquad f'(x) = \\begin{cases} 1 & x > 0 \\\\ \\alpha & x \\le 0 \\end{cases}
    """

    name = "leaky_relu"
    _params = ("alpha",)
    parameter_constraints = {"alpha": Interval(float, 0, None, closed="left")}

    def __init__(self, alpha=0.01):
        self._set_params(alpha=alpha)

    def forward(self, x, *, xp):
        return xp.where(x > 0, x, self.alpha * x)

    def backward(self, dy, x, y, *, xp):
        ref = x if x is not None else self._output(x, y, xp)
        return xp.where(ref > 0, dy, self.alpha * dy)


class ELU(Activation):
    """Exponential linear unit.

    Parameters
    ----------
    alpha : float >= 0, default=1.0
        Saturation value ``-alpha`` for large negative inputs.

    Notes
    -----
    .. math:: f(x) = \\begin{cases} x & x > 0 \\\\ \\alpha (e^x - 1) & x \\le 0
              \\end{cases}, \\qquad
              f'(x) = \\begin{cases} 1 & x > 0 \\\\ \\alpha e^x = f(x) + \\alpha
              & x \\le 0 \\end{cases}

    The exponential is evaluated at ``min(x, 0)`` only, so large inputs never overflow.
    """

    name = "elu"
    _params = ("alpha",)
    parameter_constraints = {"alpha": Interval(float, 0, None, closed="left")}

    def __init__(self, alpha=1.0):
        self._set_params(alpha=alpha)

    def forward(self, x, *, xp):
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, _const(0.0, x, xp))))

    def backward(self, dy, x, y, *, xp):
        x = self._input(x)
        return xp.where(x > 0, dy,
                        dy * (self.alpha * xp.exp(xp.minimum(x, _const(0.0, x, xp)))))


class Softplus(Activation):
    """Softplus, a smooth ReLU, evaluated without overflow.

    Notes
    -----
    .. math:: f(x) = \\log(1 + e^x) = \\max(x, 0) + \\log(1 + e^{-|x|}),
              \\qquad f'(x) = \\sigma(x)
    """

    name = "softplus"

    def forward(self, x, *, xp):
        return xp.maximum(x, _const(0.0, x, xp)) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, dy, x, y, *, xp):
        return dy * sigmoid(self._input(x), xp=xp)


class Swish(Activation):
    """Swish / SiLU (alias ``"silu"``): ``x * sigmoid(beta * x)``.

    Parameters
    ----------
    beta : float, default=1.0
        ``beta=1`` is SiLU; ``beta=1.702`` is the sigmoid approximation of GELU.

    Notes
    -----
    .. math:: f(x) = x\\,\\sigma(\\beta x), \\qquad
              f'(x) = \\sigma(\\beta x)\\,\\bigl(1 + \\beta x (1 - \\sigma(\\beta x))\\bigr)
    """

    name = "swish"
    _params = ("beta",)
    parameter_constraints = {"beta": Interval(float)}

    def __init__(self, beta=1.0):
        self._set_params(beta=beta)

    def forward(self, x, *, xp):
        return x * sigmoid(self.beta * x, xp=xp)

    def backward(self, dy, x, y, *, xp):
        x = self._input(x)
        s = sigmoid(self.beta * x, xp=xp)
        return dy * (s * (1.0 + self.beta * x * (1.0 - s)))


class GELU(Activation):
    """Gaussian error linear unit.

    Parameters
    ----------
    approximate : {"none", "tanh", "sigmoid"}, default="none"
        ``"none"``: exact, ``x * Phi(x)`` with the standard normal CDF ``Phi``;
        ``"tanh"``: the tanh approximation of Hendrycks & Gimpel;
        ``"sigmoid"``: ``x * sigmoid(1.702 x)``.

    Notes
    -----
    Exact:

    .. math:: f(x) = x\\,\\Phi(x) = \\frac{x}{2}\\Bigl(1 + \\mathrm{erf}\\frac{x}{\\sqrt 2}
              \\Bigr), \\qquad f'(x) = \\Phi(x) + x\\,\\varphi(x),
              \\quad \\varphi(x) = \\frac{e^{-x^2/2}}{\\sqrt{2\\pi}}

    ``Phi`` comes from ``scipy.special.ndtr`` (NumPy, when SciPy is installed) or
    ``cupyx.scipy.special.ndtr`` (CuPy), from the namespace's ``erf`` if it has one,
    and otherwise from a generic Array API evaluation of erfc (a Chebyshev series in
    ``(t - 2)/(t + 2)``, coefficients computed at import), whose relative error is
    below 1e-14 in float64 and 1e-6 in float32, in both tails.

    Tanh approximation, with :math:`c = \\sqrt{2/\\pi}` and
    :math:`u = c (x + 0.044715 x^3)`:

    .. math:: f(x) = \\tfrac{x}{2}(1 + \\tanh u), \\qquad
              f'(x) = \\tfrac12 (1 + \\tanh u) + \\tfrac{x}{2}(1 - \\tanh^2 u)\\,
              c\\,(1 + 3 \\cdot 0.044715\\, x^2)

    Sigmoid approximation: :math:`f(x) = x\\,\\sigma(1.702 x)` (see :class:`Swish`).

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.activations import GELU
    >>> round(float(GELU().forward(np.array(1.0), xp=xp)), 10)
    0.8413447461
    """

    name = "gelu"
    _params = ("approximate",)
    _APPROXIMATIONS = ("none", "tanh", "sigmoid")
    _TANH_COEF = 0.044715
    _SIGMOID_COEF = 1.702
    # Beyond |x| = 40 the Gaussian factors are exactly 0/1 in float64; clipping there
    # keeps x*x from overflowing for huge inputs.
    _CLIP = 40.0

    parameter_constraints = {"approximate": Options(_APPROXIMATIONS)}

    def __init__(self, approximate="none"):
        self._set_params(approximate=approximate)

    def forward(self, x, *, xp):
        if self.approximate == "none":
            return x * _normal_cdf(x, xp=xp)
        if self.approximate == "tanh":
            xc = xp.clip(x, -self._CLIP, self._CLIP)
            u = _SQRT_2_OVER_PI * (xc + self._TANH_COEF * xc * xc * xc)
            return 0.5 * x * (1.0 + xp.tanh(u))
        return x * sigmoid(self._SIGMOID_COEF * x, xp=xp)

    def backward(self, dy, x, y, *, xp):
        x = self._input(x)
        if self.approximate == "none":
            xc = xp.clip(x, -self._CLIP, self._CLIP)
            pdf = _INV_SQRT_2PI * _gauss(xp.abs(xc), xp=xp)
            return dy * (_normal_cdf(x, xp=xp) + xc * pdf)
        if self.approximate == "tanh":
            xc = xp.clip(x, -self._CLIP, self._CLIP)
            x2 = xc * xc
            t = xp.tanh(_SQRT_2_OVER_PI * (xc + self._TANH_COEF * x2 * xc))
            du = _SQRT_2_OVER_PI * (1.0 + 3.0 * self._TANH_COEF * x2)
            return dy * (0.5 * (1.0 + t) + 0.5 * xc * (1.0 - t * t) * du)
        b = self._SIGMOID_COEF
        s = sigmoid(b * x, xp=xp)
        return dy * (s * (1.0 + b * x * (1.0 - s)))


class HardSigmoid(Activation):
    """Piecewise-linear sigmoid ``clip(0.25 x + 0.5, 0, 1)``.

    Notes
    -----
    .. math:: f(x) = \\min(\\max(x/4 + 1/2, 0), 1), \\qquad
              f'(x) = \\tfrac14 [-2 < x < 2]

    The slope 1/4 matches the logistic sigmoid's slope at 0. The derivative at the
    kinks ``x = +-2`` is taken as 0.
    """

    name = "hard_sigmoid"

    def forward(self, x, *, xp):
        return xp.clip(0.25 * x + 0.5, 0.0, 1.0)

    def backward(self, dy, x, y, *, xp):
        x = self._input(x)
        return xp.where((x > -2.0) & (x < 2.0), 0.25 * dy, _const(0.0, dy, xp))


class HardTanh(Activation):
    """Piecewise-linear tanh ``clip(x, -1, 1)``.

    Notes
    -----
    .. math:: f(x) = \\min(\\max(x, -1), 1), \\qquad f'(x) = [-1 < x < 1]

    The derivative at the kinks ``x = +-1`` is taken as 0.
    """

    name = "hard_tanh"

    def forward(self, x, *, xp):
        return xp.clip(x, -1.0, 1.0)

    def backward(self, dy, x, y, *, xp):
        x = self._input(x)
        return xp.where((x > -1.0) & (x < 1.0), dy, _const(0.0, dy, xp))


class Exp(Activation):
    """The exponential ``exp(x)`` (alias ``"exponential"``), the natural output of the
    Poisson loss (a log link).

    Notes
    -----
    .. math:: f(x) = e^x, \\qquad f'(x) = e^x

    Inputs above ``log(finfo.max)`` (about 88.7 in float32) overflow to ``inf``.
    """

    name = "exp"

    def forward(self, x, *, xp):
        return xp.exp(x)

    def backward(self, dy, x, y, *, xp):
        return dy * self._output(x, y, xp)


class Softmax(Activation):
    """Softmax along the last axis (see :func:`softmax`).

    Notes
    -----
    The backward pass is the Jacobian-vector product, one reduction per row:

    .. math:: \\frac{\\partial L}{\\partial x} = y \\odot \\Bigl(\\frac{\\partial L}{\\partial
              y} - \\sum_j \\frac{\\partial L}{\\partial y_j} y_j\\Bigr)

    No per-sample Jacobian is ever built. Paired with cross-entropy, the loss uses the
    fused gradient instead (see :mod:`mlpx.losses`).
    """

    name = "softmax"

    def forward(self, x, *, xp):
        return softmax(x, xp=xp, axis=-1)

    def backward(self, dy, x, y, *, xp):
        y = self._output(x, y, xp)
        return y * (dy - xp.sum(dy * y, axis=-1, keepdims=True))


class LogSoftmax(Activation):
    """Log-softmax along the last axis (see :func:`log_softmax`).

    Notes
    -----
    With :math:`p = \\mathrm{softmax}(x) = e^{y}`:

    .. math:: \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y}
              - p \\sum_j \\frac{\\partial L}{\\partial y_j}
    """

    name = "log_softmax"

    def forward(self, x, *, xp):
        return log_softmax(x, xp=xp, axis=-1)

    def backward(self, dy, x, y, *, xp):
        y = self._output(x, y, xp)
        return dy - xp.exp(y) * xp.sum(dy, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- registry
#: Registry: every accepted name (aliases included) -> Activation class. Lookups ignore
#: case, ``-``, ``_`` and spaces (see :func:`mlpx._registry.normalize_name`).
ACTIVATIONS = Registry("activation", Activation)
for _cls in (Identity, Affine, Sigmoid, Tanh, ReLU, LeakyReLU, ELU, Softplus, Swish, GELU,
             HardSigmoid, HardTanh, Exp, Softmax, LogSoftmax):
    ACTIVATIONS.register(_cls, _cls.name)
ACTIVATIONS.register(Identity, "identity", aliases=("linear",))
ACTIVATIONS.register(Sigmoid, "sigmoid", aliases=("logistic",))
ACTIVATIONS.register(Swish, "swish", aliases=("silu",))
ACTIVATIONS.register(Exp, "exp", aliases=("exponential",))
del _cls

#: Hidden "activations" that are layers with weights (mlpx.layers.PReLU, Maxout): MLP
#: and ``mlpx train --activation`` accept them; :func:`get_activation` does not.
LAYER_ACTIVATIONS = {
    "prelu": "a PReLU layer: a leaky ReLU whose slope is learnt per unit",
    "maxout": "a Maxout layer: the max over maxout_k affine pieces, in place of Dense",
}


def get_activation(spec, **params) -> Activation:
    """Return an :class:`Activation` from a name, an instance or a config dict.

    Parameters
    ----------
    spec : str, Activation or dict
        A registry name or alias (see :data:`ACTIVATIONS`; case, ``-``, ``_`` and spaces
        are ignored), an Activation (returned as is), or a config dict
        ``{"name": ..., **params}`` as produced by :meth:`Activation.get_config`.
    **params
        Parameters of the activation (with a name or a config dict, where they override
        the dict's entries), e.g. ``alpha=0.1`` for ``"leaky_relu"``.

    Returns
    -------
    Activation

    Raises
    ------
    mlpx.InvalidParameterError
        (a ``ValueError`` and a ``TypeError``) for an unknown name (the message lists the
        valid ones), an unknown parameter, an invalid parameter value, parameters given
        with an instance, or a ``spec`` of another type.

    Examples
    --------
    >>> from mlpx.activations import get_activation
    >>> get_activation("leaky_relu", alpha=0.1)
    LeakyReLU(alpha=0.1)
    >>> get_activation({"name": "gelu", "approximate": "tanh"}).get_config()
    {'name': 'gelu', 'approximate': 'tanh'}
    >>> get_activation("silu"), get_activation("Leaky-ReLU")
    (Swish(beta=1.0), LeakyReLU(alpha=0.01))
    """
    name = spec.get("name") if isinstance(spec, dict) else spec
    if isinstance(name, str) and name not in ACTIVATIONS:
        layers = "; ".join(f"{k!r} ({v})" for k, v in LAYER_ACTIVATIONS.items())
        known = normalize_name(name) in LAYER_ACTIVATIONS
        raise InvalidParameterError(
            f"{'Not a plain' if known else 'Unknown'} activation {name!r}. Valid "
            f"activations: {sorted(ACTIVATIONS)}. As the hidden activation of MLP "
            f"(activation=...) or mlpx train --activation, also {layers}"
            f"{': a layer, not an output activation' if known else ''}.")
    return ACTIVATIONS.build(spec, **params)
