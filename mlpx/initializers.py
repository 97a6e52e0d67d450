"""Weight initializers: name -> seeded initializer, drawn on the host and moved once.

Every initializer is a small callable object::

    W = init((n_in, n_out), rng=numpy.random.default_rng(0), dtype="float32")

that returns a :class:`numpy.ndarray` on the host. The layer that owns the weights moves
it to its device once (:func:`mlpx._backend.to_device`); nothing here touches a device or
the global NumPy random state.

Numbers are always drawn in float64 and then cast to the requested dtype, so one seed
gives the same weights in float32 and float64 up to rounding.

Shapes follow the Dense convention ``(fan_in, fan_out)``: ``fan_in = shape[0]`` and
``fan_out = prod(shape[1:])``. A 1-d shape ``(n,)`` has ``fan_in = fan_out = n`` and a 0-d
shape ``()`` has fans of 1.
"""

from __future__ import annotations

import math

import numpy as np

from . import _backend
from ._registry import Registry, normalize_name
from ._validation import Interval, validate_params

__all__ = [
    "Initializer",
    "Zeros",
    "Constant",
    "Normal",
    "Uniform",
    "HeUniform",
    "HeNormal",
    "GlorotUniform",
    "GlorotNormal",
    "LecunNormal",
    "INITIALIZERS",
    "get_initializer",
    "default_initializer",
    "compute_fans",
]


def _check_shape(shape):
    """Return ``shape`` as a tuple of non-negative Python ints, or raise a ValueError."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0
        for d in dims
    ):
        raise ValueError(
            f"The 'shape' parameter must be a tuple of ints >= 0. Got {shape!r} instead."
        )
    return tuple(int(d) for d in dims)


def compute_fans(shape):
    """Return ``(fan_in, fan_out)`` for a weight of ``shape``.

    Parameters
    ----------
    shape : tuple of int
        ``(n_in, n_out)`` for Dense weights; more trailing axes count towards
        ``fan_out``.

    Returns
    -------
    fan_in, fan_out : int
        ``shape[0]`` and ``prod(shape[1:])``; ``(n, n)`` for a 1-d shape ``(n,)`` and
        ``(1, 1)`` for ``()``.

    Examples
    --------
    >>> from mlpx.initializers import compute_fans
    >>> compute_fans((784, 128))
    (784, 128)
    """
    shape = _check_shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], math.prod(shape[1:])


class Initializer:
    """Base class of weight initializers: ``init(shape, *, rng, dtype) -> numpy.ndarray``.

    Subclasses set :attr:`name`, validate their parameters in ``__init__``, implement
    :meth:`_draw` (float64 numbers on the host) and list their parameters in
    :meth:`get_config`. Instances are small and picklable.

    Attributes
    ----------
    name : str
        The registry name (a key of :data:`INITIALIZERS`).
    """

    name = "initializer"
    #: Declarative constraints of the constructor parameters (see
    #: :func:`mlpx._validation.validate_params`).
    parameter_constraints: dict = {}

    def _set_params(self, **values):
        """Validate constructor parameters against :attr:`parameter_constraints` and store
        their normalised values as attributes."""
        for key, value in validate_params(self.name, values,
                                          self.parameter_constraints).items():
            setattr(self, key, value)

    def __call__(self, shape, *, rng, dtype="float32"):
        """Draw a weight array of ``shape`` on the host.

        Parameters
        ----------
        shape : tuple of int
            e.g. ``(n_in, n_out)`` for a Dense weight.
        rng : numpy.random.Generator
            The only source of randomness (never the global NumPy state).
        dtype : {"float32", "float64"} or dtype, default="float32"

        Returns
        -------
        numpy.ndarray
            Of shape ``shape`` and dtype ``dtype``, drawn in float64 then cast.

        Raises
        ------
        ValueError
            For a bad shape or dtype.
        TypeError
            If ``rng`` is not a :class:`numpy.random.Generator`.
        """
        shape = _check_shape(shape)
        name = _backend.dtype_name(dtype)
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"The 'rng' parameter of {self.name} must be a numpy.random.Generator "
                f"(e.g. numpy.random.default_rng(seed)). Got {rng!r} instead."
            )
        out = self._draw(shape, rng)
        return np.asarray(out, dtype=name, order="C")

    def _draw(self, shape, rng):  # pragma: no cover - abstract
        """Return float64 numbers of ``shape`` (subclasses override)."""
        raise NotImplementedError

    def get_config(self) -> dict:
        """Return ``{"name": ..., **params}``; :func:`get_initializer` rebuilds from it."""
        return {"name": self.name}

    def __repr__(self):
        cfg = self.get_config()
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))


class Zeros(Initializer):
    """All zeros (the usual bias initializer). Consumes no random numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.initializers import get_initializer
    >>> get_initializer("zeros")((2,), rng=np.random.default_rng(0)).tolist()
    [0.0, 0.0]
    """

    name = "zeros"

    def _draw(self, shape, rng):
        return np.zeros(shape, dtype=np.float64)


class Constant(Initializer):
    """Every entry equal to ``value``. Consumes no random numbers.

    Parameters
    ----------
    value : float, default=0.0

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.initializers import get_initializer
    >>> get_initializer("constant", value=0.5)((2,), rng=np.random.default_rng(0)).tolist()
    [0.5, 0.5]
    """

    name = "constant"

    parameter_constraints = {"value": Interval(float)}

    def __init__(self, value=0.0):
        self._set_params(value=value)

    def _draw(self, shape, rng):
        return np.full(shape, self.value, dtype=np.float64)

    def get_config(self):
        return {"name": self.name, "value": self.value}


class Normal(Initializer):
    """Independent draws from a normal distribution ``N(mean, std**2)`` (untruncated).

    This is what the textbooks call ``std_normal(gain)``: a standard normal scaled by a
    gain, here with ``gain == std``.

    Parameters
    ----------
    std : float > 0, default=1.0
        Standard deviation.
    mean : float, default=0.0

    Notes
    -----
    .. math:: W_{ij} = \\mathrm{mean} + \\mathrm{std} \\cdot z_{ij},
              \\quad z_{ij} \\sim \\mathcal{N}(0, 1)

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.initializers import get_initializer
    >>> W = get_initializer("normal", std=0.01)((784, 128), rng=np.random.default_rng(0))
    >>> W.shape, W.dtype
    ((784, 128), dtype('float32'))
    """

    name = "normal"

    parameter_constraints = {"std": Interval(float, 0.0, None, closed="neither"),
                             "mean": Interval(float)}

    def __init__(self, std=1.0, mean=0.0):
        self._set_params(std=std, mean=mean)

    def _draw(self, shape, rng):
        return self.mean + self.std * rng.standard_normal(shape, dtype=np.float64)

    def get_config(self):
        return {"name": self.name, "std": self.std, "mean": self.mean}


class Uniform(Initializer):
    """Independent draws from the uniform distribution on ``[a, b)``.

    Parameters
    ----------
    a : float, default=-0.05
        Lower bound.
    b : float, default=0.05
        Upper bound, > ``a``.

    Notes
    -----
    .. math:: W_{ij} \\sim \\mathcal{U}[a, b)

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.initializers import get_initializer
    >>> W = get_initializer("uniform", a=0.0, b=1.0)((3, 2), rng=np.random.default_rng(0))
    >>> bool(((W >= 0) & (W < 1)).all())
    True
    """

    name = "uniform"

    parameter_constraints = {"a": Interval(float), "b": Interval(float)}

    def __init__(self, a=-0.05, b=0.05):
        self._set_params(a=a)
        # b's lower bound depends on a: checked against a constraint built from it
        self.b = validate_params(self.name, {"b": b},
                                 {"b": Interval(float, self.a, None, closed="neither")})["b"]

    def _draw(self, shape, rng):
        return rng.uniform(self.a, self.b, size=shape)

    def get_config(self):
        return {"name": self.name, "a": self.a, "b": self.b}


class _VarianceScaling(Initializer):
    """Zero-mean draws with a variance set by the fans (shared by He/Glorot/LeCun).

    Subclasses set ``distribution`` ("normal" or "uniform") and implement :meth:`_std`.
    The uniform variant draws on ``[-limit, limit)`` with ``limit = sqrt(3) * std``, so
    both variants have the same variance. The normal variant is a plain, untruncated
    normal.
    """

    distribution = "normal"

    def _std(self, fan_in, fan_out):  # pragma: no cover - abstract
        raise NotImplementedError

    def _draw(self, shape, rng):
        fan_in, fan_out = compute_fans(shape)
        std = self._std(max(fan_in, 1), max(fan_out, 1))
        if self.distribution == "normal":
            return std * rng.standard_normal(shape, dtype=np.float64)
        limit = math.sqrt(3.0) * std
        return rng.uniform(-limit, limit, size=shape)


class HeUniform(_VarianceScaling):
    """He (Kaiming) uniform initializer for the ReLU family (He et al., 2015).

    Notes
    -----
    .. math:: W_{ij} \\sim \\mathcal{U}[-\\ell, \\ell),
              \\quad \\ell = \\sqrt{6 / \\mathrm{fan\\_in}}

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.initializers import get_initializer
    >>> W = get_initializer("he_uniform")((6, 4), rng=np.random.default_rng(0))
    >>> bool(np.abs(W).max() <= 1.0)
    True
    """

    name = "he_uniform"
    distribution = "uniform"

    def _std(self, fan_in, fan_out):
        return math.sqrt(2.0 / fan_in)


class HeNormal(_VarianceScaling):
    """He (Kaiming) normal initializer for the ReLU family (He et al., 2015).

    A plain (untruncated) normal.

    Notes
    -----
    .. math:: W_{ij} \\sim \\mathcal{N}(0, \\sigma^2),
              \\quad \\sigma = \\sqrt{2 / \\mathrm{fan\\_in}}

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.initializers import get_initializer
    >>> W = get_initializer("he_normal")((2000, 500), rng=np.random.default_rng(0))
    >>> round(float(W.std()), 3)  # sqrt(2 / 2000)
    0.032
    """

    name = "he_normal"

    def _std(self, fan_in, fan_out):
        return math.sqrt(2.0 / fan_in)


class GlorotUniform(_VarianceScaling):
    """Glorot (Xavier) uniform initializer for sigmoid/tanh units (Glorot & Bengio, 2010).

    Notes
    -----
    .. math:: W_{ij} \\sim \\mathcal{U}[-\\ell, \\ell),
              \\quad \\ell = \\sqrt{6 / (\\mathrm{fan\\_in} + \\mathrm{fan\\_out})}

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.initializers import get_initializer
    >>> W = get_initializer("glorot_uniform")((3, 3), rng=np.random.default_rng(0))
    >>> bool(np.abs(W).max() <= 1.0)
    True
    """

    name = "glorot_uniform"
    distribution = "uniform"

    def _std(self, fan_in, fan_out):
        return math.sqrt(2.0 / (fan_in + fan_out))


class GlorotNormal(_VarianceScaling):
    """Glorot (Xavier) normal initializer (Glorot & Bengio, 2010); untruncated.

    Notes
    -----
    .. math:: W_{ij} \\sim \\mathcal{N}(0, \\sigma^2),
              \\quad \\sigma = \\sqrt{2 / (\\mathrm{fan\\_in} + \\mathrm{fan\\_out})}

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.initializers import get_initializer
    >>> W = get_initializer("glorot_normal")((1000, 1000), rng=np.random.default_rng(0))
    >>> round(float(W.std()), 3)  # sqrt(2 / 2000)
    0.032
    """

    name = "glorot_normal"

    def _std(self, fan_in, fan_out):
        return math.sqrt(2.0 / (fan_in + fan_out))


class LecunNormal(_VarianceScaling):
    """LeCun normal initializer (LeCun et al., 1998), the usual choice for SELU; untruncated.

    Notes
    -----
    .. math:: W_{ij} \\sim \\mathcal{N}(0, \\sigma^2),
              \\quad \\sigma = \\sqrt{1 / \\mathrm{fan\\_in}}

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.initializers import get_initializer
    >>> W = get_initializer("lecun_normal")((2500, 400), rng=np.random.default_rng(0))
    >>> round(float(W.std()), 3)  # sqrt(1 / 2500)
    0.02
    """

    name = "lecun_normal"

    def _std(self, fan_in, fan_out):
        return math.sqrt(1.0 / fan_in)


#: Registry of initializer classes by name; ``xavier_*`` and ``kaiming_*`` are aliases.
#: Lookups ignore case, ``-``, ``_`` and spaces (see :func:`mlpx._registry.normalize_name`).
INITIALIZERS = Registry("initializer", Initializer)
for _cls in (Zeros, Constant, Normal, Uniform, HeUniform, HeNormal, GlorotUniform,
             GlorotNormal, LecunNormal):
    INITIALIZERS.register(_cls, _cls.name)
INITIALIZERS.register(GlorotUniform, "glorot_uniform", aliases=("xavier_uniform",))
INITIALIZERS.register(GlorotNormal, "glorot_normal", aliases=("xavier_normal",))
INITIALIZERS.register(HeUniform, "he_uniform", aliases=("kaiming_uniform",))
INITIALIZERS.register(HeNormal, "he_normal", aliases=("kaiming_normal",))
del _cls


def get_initializer(spec, **params) -> Initializer:
    """Return an :class:`Initializer` from a name, an instance or a config dict.

    Parameters
    ----------
    spec : str, Initializer or dict
        A key of :data:`INITIALIZERS` (case, ``-``, ``_`` and spaces are ignored), an
        :class:`Initializer` (returned as is), or the output of
        :meth:`Initializer.get_config` (``{"name": ..., **params}``).
    **params
        Parameters of the initializer when ``spec`` is a name or a config dict (they
        override the dict's values), e.g. ``std=0.01`` for ``"normal"``.

    Returns
    -------
    Initializer

    Raises
    ------
    mlpx.InvalidParameterError
        (a ``ValueError`` and a ``TypeError``) for an unknown name (the message lists
        the valid ones), an unknown parameter, an invalid parameter value, parameters
        given with an instance, or a spec of another type.

    Examples
    --------
    >>> from mlpx.initializers import get_initializer
    >>> get_initializer("normal", std=0.01)
    Normal(std=0.01, mean=0.0)
    >>> get_initializer({"name": "uniform", "a": -0.1, "b": 0.1}).get_config()
    {'name': 'uniform', 'a': -0.1, 'b': 0.1}
    >>> get_initializer("He-Normal")
    HeNormal()
    """
    return INITIALIZERS.build(spec, **params)


_HE_FAMILY = frozenset(normalize_name(n) for n in (
    "relu", "relu6", "leaky_relu", "prelu", "elu", "gelu", "swish", "silu", "mish",
    "softplus", "hard_swish",
))
_LECUN_FAMILY = frozenset({normalize_name("selu")})


def default_initializer(activation_name) -> str:
    """Return the name of the usual weight initializer for an activation.

    Parameters
    ----------
    activation_name : str, object with a ``name`` attribute, or None
        An activation name (case, ``-``, ``_`` and spaces ignored) or an Activation;
        None means identity.

    Returns
    -------
    str
        ``"he_normal"`` for the ReLU family (relu, leaky_relu, prelu, elu, gelu,
        swish/silu, mish, softplus, ...), ``"lecun_normal"`` for selu, and
        ``"glorot_uniform"`` for sigmoid/logistic, tanh, hard_sigmoid, hard_tanh,
        identity, softmax and any name it does not know.

    Examples
    --------
    >>> from mlpx.initializers import default_initializer
    >>> default_initializer("relu"), default_initializer("tanh")
    ('he_normal', 'glorot_uniform')
    """
    if activation_name is None:
        return "glorot_uniform"
    name = getattr(activation_name, "name", activation_name)
    if isinstance(activation_name, dict):
        name = activation_name.get("name")
    if not isinstance(name, str):
        return "glorot_uniform"
    key = normalize_name(name)
    if key in _HE_FAMILY:
        return "he_normal"
    if key in _LECUN_FAMILY:
        return "lecun_normal"
    return "glorot_uniform"
