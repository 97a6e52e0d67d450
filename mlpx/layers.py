"""Layers: parameters plus pure forward/backward math.

Every layer follows one contract (see ``docs/internals.md``)::

    n_out = layer.build(n_in, backend=backend, dtype=dtype, rng=rng)
    y, cache = layer.forward(x, xp=xp, training=False, rng=None)
    dx, grads = layer.backward(dy, cache, xp=xp, need_dx=True)

Gradients are returned (aligned with ``layer.params`` by position), never accumulated on
the layer, and ``backward`` never recomputes the forward pass: what it needs travels in
``cache``. The first layer of a network is called with ``need_dx=False`` and skips the
input-gradient product.
"""

from __future__ import annotations

import numpy as np

from . import _backend
from ._registry import Registry
from ._validation import Boolean, Interval, check_int, validate_params
from .activations import get_activation
from .initializers import get_initializer

__all__ = [
    "Layer",
    "Dense",
    "ActivationLayer",
    "Dropout",
    "PReLU",
    "Maxout",
    "Embedding",
    "embedding_grad",
    "LAYERS",
    "get_layer",
]


class Layer:
    """Base class of all layers.

    Attributes
    ----------
    params : list of arrays
        Trainable parameters in the model's namespace (empty before :meth:`build`).
    decay : list of bool
        Aligned with ``params``: which parameters are weights that L2 regularisation and
        weight decay apply to (biases and slopes are not).
    """

    #: Names of the parameters, aligned with ``params`` (used in saved files).
    param_names: tuple = ()
    #: Declarative constraints of the constructor parameters (see
    #: :func:`mlpx._validation.validate_params`).
    parameter_constraints: dict = {}

    def __init__(self):
        self.params = []
        self.decay = []
        self.n_in = None
        self.n_out = None

    def _set_params(self, **values):
        """Validate constructor parameters against :attr:`parameter_constraints` and store
        their normalised values as attributes."""
        for key, value in validate_params(type(self).__name__, values,
                                          self.parameter_constraints).items():
            setattr(self, key, value)

    @property
    def built(self) -> bool:
        return self.n_in is not None

    def build(self, n_in, *, backend, dtype, rng):
        """Create parameters for inputs of width ``n_in``; return the output width."""
        self.n_in = self.n_out = int(n_in)
        return self.n_out

    def forward(self, x, *, xp, training=False, rng=None):
        """Return ``(y, cache)`` for a batch ``x`` of shape (n_samples, n_in)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def backward(self, dy, cache, *, xp, need_dx=True):
        """Return ``(dx, grads)`` given ``dy = dL/dy``; ``dx`` is None if not needed."""
        raise NotImplementedError  # pragma: no cover - abstract

    def get_config(self) -> dict:
        """Return a JSON-serialisable description that :func:`get_layer` rebuilds."""
        return {"name": type(self).__name__}

    def __repr__(self):
        cfg = self.get_config()
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k != "name")
        return f"{cfg['name']}({args})"


class Dense(Layer):
    """Fully connected layer ``y = x @ W + b``.

    Parameters
    ----------
    units : int
        Output width.
    init : str, dict or Initializer, default="glorot_uniform"
        Weight initializer (biases start at zero).
    bias : bool, default=True
        Whether to learn a bias vector.

    Notes
    -----
    ``W`` has shape (n_in, units), so batches are rows. Backward computes
    ``dW = x.T @ dy``, ``db = sum(dy, axis=0)`` and, unless ``need_dx=False``,
    ``dx = dy @ W.T``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.layers import Dense
    >>> b = resolve_backend("numpy")
    >>> layer = Dense(3)
    >>> layer.build(2, backend=b, dtype="float32", rng=np.random.default_rng(0))
    3
    >>> y, _ = layer.forward(np.ones((4, 2), dtype=np.float32), xp=b.xp)
    >>> y.shape, y.dtype
    ((4, 3), dtype('float32'))
    """

    param_names = ("W", "b")
    parameter_constraints = {"units": Interval(int, 1, None, closed="left"),
                             "bias": Boolean()}

    def __init__(self, units, *, init="glorot_uniform", bias=True):
        super().__init__()
        self._set_params(units=units, bias=bias)
        self.init = get_initializer(init)

    def build(self, n_in, *, backend, dtype, rng):
        n_in = check_int(n_in, "n_in", "Dense")
        W = self.init((n_in, self.units), rng=rng, dtype=_backend.dtype_name(dtype))
        self.params = [_backend.to_device(W, backend=backend)]
        self.decay = [True]
        if self.bias:
            b = np.zeros(self.units, dtype=_backend.dtype_name(dtype))
            self.params.append(_backend.to_device(b, backend=backend))
            self.decay.append(False)
        self.n_in, self.n_out = n_in, self.units
        return self.units

    def forward(self, x, *, xp, training=False, rng=None):
        y = x @ self.params[0]
        if self.bias:
            y = y + self.params[1]
        return y, x

    def backward(self, dy, cache, *, xp, need_dx=True):
        x = cache
        grads = [x.T @ dy]
        if self.bias:
            grads.append(xp.sum(dy, axis=0))
        dx = dy @ self.params[0].T if need_dx else None
        return dx, grads

    def get_config(self):
        return {"name": "Dense", "units": self.units, "init": self.init.get_config(),
                "bias": self.bias}


class ActivationLayer(Layer):
    """Apply an element-wise activation (see :mod:`mlpx.activations`).

    Parameters
    ----------
    activation : str, dict or Activation
        e.g. ``"relu"``, ``{"name": "leaky_relu", "alpha": 0.1}``.
    **params
        Parameters of the activation when given by name.
    """

    def __init__(self, activation, **params):
        super().__init__()
        self.activation = get_activation(activation, **params)

    def forward(self, x, *, xp, training=False, rng=None):
        y = self.activation.forward(x, xp=xp)
        return y, (x, y)

    def backward(self, dy, cache, *, xp, need_dx=True):
        x, y = cache
        return self.activation.backward(dy, x, y, xp=xp), []

    def get_config(self):
        return {"name": "ActivationLayer", "activation": self.activation.get_config()}


class Dropout(Layer):
    """Inverted dropout: zero each input with probability ``p`` while training.

    Kept inputs are scaled by ``1 / (1 - p)`` so inference is the identity.

    Parameters
    ----------
    p : float in [0, 1), default=0.5
        Drop probability.
    """

    parameter_constraints = {"p": Interval(float, 0.0, 1.0, closed="left")}

    def __init__(self, p=0.5):
        super().__init__()
        self._set_params(p=p)
        self._backend = None

    def build(self, n_in, *, backend, dtype, rng):
        self._backend = backend
        self._dtype = _backend.dtype_name(dtype)
        return super().build(n_in, backend=backend, dtype=dtype, rng=rng)

    def forward(self, x, *, xp, training=False, rng=None):
        if not training or self.p == 0.0:
            return x, None
        if rng is None:
            raise ValueError("Dropout needs an rng while training (the model passes one).")
        u = _backend.random_uniform(x.shape, backend=self._backend, dtype=self._dtype, rng=rng)
        mask = xp.astype(u >= self.p, x.dtype) * (1.0 / (1.0 - self.p))
        return x * mask, mask

    def backward(self, dy, cache, *, xp, need_dx=True):
        if cache is None:
            return dy, []
        return dy * cache, []

    def get_config(self):
        return {"name": "Dropout", "p": self.p}


class PReLU(Layer):
    """Parametric ReLU with one learnable slope per unit: ``y = max(x, 0) + a * min(x, 0)``.

    Parameters
    ----------
    alpha_init : float, default=0.25
        Initial slope for negative inputs (He et al., 2015).
    """

    param_names = ("alpha",)
    parameter_constraints = {"alpha_init": Interval(float)}

    def __init__(self, alpha_init=0.25):
        super().__init__()
        self._set_params(alpha_init=alpha_init)

    def build(self, n_in, *, backend, dtype, rng):
        n_in = check_int(n_in, "n_in", "PReLU")
        a = np.full(n_in, self.alpha_init, dtype=_backend.dtype_name(dtype))
        self.params = [_backend.to_device(a, backend=backend)]
        self.decay = [False]
        self.n_in = self.n_out = n_in
        return n_in

    def forward(self, x, *, xp, training=False, rng=None):
        pos = x > 0
        return xp.where(pos, x, self.params[0] * x), (x, pos)

    def backward(self, dy, cache, *, xp, need_dx=True):
        x, pos = cache
        da = xp.sum(xp.where(pos, xp.zeros_like(x), x * dy), axis=0)
        dx = xp.where(pos, dy, self.params[0] * dy) if need_dx else None
        return dx, [da]

    def get_config(self):
        return {"name": "PReLU", "alpha_init": self.alpha_init}


class Maxout(Layer):
    """Maxout units (Goodfellow et al., 2013): the max over ``k`` affine pieces.

    Parameters
    ----------
    units : int
        Output width.
    k : int, default=2
        Pieces per unit.
    init : str, dict or Initializer, default="glorot_uniform"

    Notes
    -----
    ``z = x @ W + b`` with ``W`` of shape (n_in, units * k); columns ``j*k .. j*k+k-1``
    belong to unit ``j`` and ``y[:, j] = max_p z[:, j*k + p]``. The gradient flows to the
    winning piece only (the first one on ties).
    """

    param_names = ("W", "b")

    parameter_constraints = {"units": Interval(int, 1, None, closed="left"),
                             "k": Interval(int, 1, None, closed="left")}

    def __init__(self, units, k=2, *, init="glorot_uniform"):
        super().__init__()
        self._set_params(units=units, k=k)
        self.init = get_initializer(init)

    def build(self, n_in, *, backend, dtype, rng):
        n_in = check_int(n_in, "n_in", "Maxout")
        name = _backend.dtype_name(dtype)
        W = self.init((n_in, self.units * self.k), rng=rng, dtype=name)
        b = np.zeros(self.units * self.k, dtype=name)
        self.params = [_backend.to_device(W, backend=backend),
                       _backend.to_device(b, backend=backend)]
        self.decay = [True, False]
        self.n_in, self.n_out = n_in, self.units
        return self.units

    def forward(self, x, *, xp, training=False, rng=None):
        # -1, not x.shape[0]: the batch size may be symbolic (ONNX export, mlpx.export).
        z = xp.reshape(x @ self.params[0] + self.params[1], (-1, self.units, self.k))
        winner = xp.argmax(z, axis=-1)
        pieces = xp.arange(self.k, device=_backend.device_of(x))
        mask = xp.astype(pieces == winner[..., None], x.dtype)
        return xp.max(z, axis=-1), (x, mask)

    def backward(self, dy, cache, *, xp, need_dx=True):
        x, mask = cache
        dz = xp.reshape(mask * dy[..., None], (x.shape[0], self.units * self.k))
        grads = [x.T @ dz, xp.sum(dz, axis=0)]
        dx = dz @ self.params[0].T if need_dx else None
        return dx, grads

    def get_config(self):
        return {"name": "Maxout", "units": self.units, "k": self.k,
                "init": self.init.get_config()}


#: Elements of one one-hot block in the portable embedding gradient (bounds its memory).
_ONE_HOT_BLOCK = 1 << 22


def embedding_grad(ids, dy, vocab_size, *, xp, fast=True):
    """Gradient of an embedding table: ``G[v] = sum of dy[i] over i with ids[i] == v``.

    Parameters
    ----------
    ids : integer array of shape (m,)
        Token ids in ``[0, vocab_size)``; repeated ids accumulate.
    dy : array of shape (m, dim)
        Gradients of the looked-up rows.
    vocab_size : int
    xp : namespace
    fast : bool, default=True
        Use the backend's scatter-add where there is one (NumPy ``add.at``, CuPy
        ``cupyx.scatter_add``, see :func:`mlpx._backend.scatter_add_rows`); False (and
        every other backend) takes the portable path.

    Returns
    -------
    array of shape (vocab_size, dim), the dtype of ``dy``

    Notes
    -----
    The portable path is exact: with the one-hot matrix ``H`` of shape (m, vocab_size),
    ``G = H.T @ dy``, computed in blocks of rows so that ``H`` stays small.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.layers import embedding_grad
    >>> dy = np.ones((3, 2), dtype=np.float32)
    >>> embedding_grad(np.array([1, 1, 0]), dy, 3, xp=np).tolist()
    [[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]]
    """
    dim = int(dy.shape[1])
    device = _backend.device_of(dy)
    if fast and _backend.fast_path(xp) is not None:
        grad = xp.zeros((vocab_size, dim), dtype=dy.dtype, device=device)
        _backend.scatter_add_rows(grad, ids, dy)
        return grad
    m = int(ids.shape[0])
    vocab = xp.arange(vocab_size, dtype=ids.dtype, device=device)
    step = max(1, _ONE_HOT_BLOCK // max(1, vocab_size))
    grad = None
    for start in range(0, m, step):
        stop = min(m, start + step)
        hot = xp.astype(xp.reshape(ids[start:stop], (-1, 1)) == vocab, dy.dtype)
        part = hot.T @ dy[start:stop, ...]
        grad = part if grad is None else grad + part
    if grad is None:
        grad = xp.zeros((vocab_size, dim), dtype=dy.dtype, device=device)
    return grad


class Embedding(Layer):
    """A table of dense token vectors: integer ids in, concatenated vectors out.

    The input layer of a feedforward language model (Bengio et al., 2003): each of the
    ``window`` token ids of a row is replaced by its row of the table ``E`` of shape
    (vocab_size, dim), and the vectors are concatenated.

    Parameters
    ----------
    vocab_size : int >= 1
        Number of distinct ids; inputs must lie in ``[0, vocab_size)``.
    dim : int >= 1
        Length of each token's vector.
    init : str, dict or Initializer, default=None
        Initializer of the table; None draws from ``N(0, 1)`` (PyTorch's default).
    regularize : bool, default=True
        Whether the model's L2 penalty (``alpha``) and an optimizer's weight decay
        apply to the table.

    Notes
    -----
    For ids ``x`` of shape (n_samples, window), ``y[i] = concat(E[x[i, 0]], ...,
    E[x[i, window - 1]])`` of shape (n_samples, window * dim). Backward adds each
    row of ``dy`` into the row of ``E`` it came from, summing repeated ids
    (:func:`embedding_grad`). The layer takes no input gradient (ids are not
    differentiable), so it must be the first layer of a model.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.layers import Embedding
    >>> b = resolve_backend("numpy")
    >>> layer = Embedding(10, 4)
    >>> layer.build(3, backend=b, dtype="float32", rng=np.random.default_rng(0))
    12
    >>> y, _ = layer.forward(np.array([[1, 2, 1], [0, 0, 9]]), xp=b.xp)
    >>> y.shape, y.dtype
    ((2, 12), dtype('float32'))
    """

    param_names = ("E",)
    parameter_constraints = {"vocab_size": Interval(int, 1, None, closed="left"),
                             "dim": Interval(int, 1, None, closed="left"),
                             "regularize": Boolean()}

    def __init__(self, vocab_size, dim, *, init=None, regularize=True):
        super().__init__()
        self._set_params(vocab_size=vocab_size, dim=dim, regularize=regularize)
        self.init = get_initializer(init if init is not None
                                    else {"name": "normal", "std": 1.0})
        #: Whether :meth:`backward` may use the backend's scatter-add (tests compare).
        self.fast = True

    def build(self, n_in, *, backend, dtype, rng):
        n_in = check_int(n_in, "n_in", "Embedding")
        E = self.init((self.vocab_size, self.dim), rng=rng, dtype=_backend.dtype_name(dtype))
        self.params = [_backend.to_device(E, backend=backend)]
        self.decay = [self.regularize]
        self.n_in, self.n_out = n_in, n_in * self.dim
        return self.n_out

    def forward(self, x, *, xp, training=False, rng=None):
        n = int(x.shape[0])
        ids = xp.reshape(x, (-1,))
        rows = xp.take(self.params[0], ids, axis=0)
        return xp.reshape(rows, (n, int(x.shape[1]) * self.dim)), ids

    def backward(self, dy, cache, *, xp, need_dx=True):
        if need_dx:
            raise ValueError("An Embedding layer has no input gradient (its inputs are "
                             "integer ids); it must be the first layer of a model.")
        ids = cache
        rows = xp.reshape(dy, (int(ids.shape[0]), self.dim))
        return None, [embedding_grad(ids, rows, self.vocab_size, xp=xp, fast=self.fast)]

    def get_config(self):
        return {"name": "Embedding", "vocab_size": self.vocab_size, "dim": self.dim,
                "init": self.init.get_config(), "regularize": self.regularize}


#: Registry of layer classes by name (used to rebuild models from configs). Lookups ignore
#: case, ``-``, ``_`` and spaces, so ``"dense"`` finds ``Dense``.
LAYERS = Registry("layer", Layer)
for _cls in (Dense, ActivationLayer, Dropout, PReLU, Maxout, Embedding):
    LAYERS.register(_cls, _cls.__name__)
del _cls


def get_layer(spec, **params) -> Layer:
    """Return a :class:`Layer` from a config dict, a name or an instance.

    Parameters
    ----------
    spec : dict, str or Layer
        :meth:`Layer.get_config` output (``{"name": "Dense", "units": 3, ...}``), a key
        of :data:`LAYERS` (case, ``-``, ``_`` and spaces are ignored) or a Layer
        (returned as is).
    **params
        Constructor parameters with a name or a config dict (they override the dict's
        entries).

    Returns
    -------
    Layer

    Raises
    ------
    mlpx.InvalidParameterError
        (a ``ValueError`` and a ``TypeError``) if the config names an unknown layer (the
        message lists the valid ones), carries parameters the layer does not take (the
        message lists those it takes), misses a required one, or holds an invalid value.

    Examples
    --------
    >>> from mlpx.layers import get_layer
    >>> get_layer({"name": "Dense", "units": 3}).get_config()["units"]
    3
    >>> get_layer("dropout", p=0.2)
    Dropout(p=0.2)
    """
    return LAYERS.build(spec, **params)
