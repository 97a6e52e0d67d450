"""Layers: parameters plus pure forward/backward math.

Every layer follows one contract (see ``docs/internals.md``)::

    n_out = layer.build(n_in, backend=backend, dtype=dtype, rng=rng)
    y, cache = layer.forward(x, xp=xp, training=False, rng=None)
    dx, grads = layer.backward(dy, cache, xp=xp, need_dx=True)

Gradients are returned (aligned with ``layer.params`` by position), never accumulated on
the layer, and ``backward`` never recomputes the forward pass: what it needs travels in
``cache``. The first layer of a network is called with ``need_dx=False`` and skips the
input-gradient product.

Some parameters are *statistics*, not weights: the running mean and variance of
:class:`BatchNorm` and the mean and standard deviation of :class:`Standardize`. They are
listed in a layer's :attr:`Layer.statistic_names`, live in ``params`` (so they are saved,
loaded, checkpointed and restored with the weights), get a zero gradient, are never
regularised and are never changed by an optimizer: the model installs the values a
training forward pass computed (:meth:`Layer.updated_statistics`) at the update stage
instead.
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
    "BatchNorm",
    "LayerNorm",
    "Standardize",
    "Rescale",
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
    #: Names (among :attr:`param_names`) of the non-trainable parameters: statistics
    #: that training computes from the data, never gradient steps (see the module doc).
    statistic_names: tuple = ()
    #: Whether the layer takes raw inputs of any real or integer dtype and converts each
    #: batch itself (preprocessing layers); the model then leaves integer data as it is.
    casts_input: bool = False
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

    @property
    def trainable(self) -> list:
        """Aligned with ``params``: False for the statistics of :attr:`statistic_names`."""
        names = self.param_names
        return [not (j < len(names) and names[j] in self.statistic_names)
                for j in range(len(self.params))]

    def updated_statistics(self, cache):
        """New values of the statistics after a training forward pass that returned
        ``cache``, aligned with the non-trainable entries of ``params``; None keeps them.

        The model calls it after ``forward(..., training=True)`` and installs the values
        at the update stage, with the optimizer's step (all or nothing).
        """
        return None

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


def _stat_zeros(n, dtype, backend):
    return _backend.to_device(np.zeros(n, dtype=_backend.dtype_name(dtype)), backend=backend)


def _stat_ones(n, dtype, backend):
    return _backend.to_device(np.ones(n, dtype=_backend.dtype_name(dtype)), backend=backend)


class BatchNorm(Layer):
    """Batch normalisation (Ioffe and Szegedy, 2015): each feature standardised over the
    batch while training, over running statistics at inference.

    Parameters
    ----------
    momentum : float in [0, 1), default=0.9
        Weight of the old running value in each update of the running statistics (the
        Keras convention; PyTorch's ``momentum=0.1`` is ``momentum=0.9`` here).
    epsilon : float > 0, default=1e-5
        Added to the variance before the square root.

    Attributes
    ----------
    params : list of arrays
        ``[gamma, beta, running_mean, running_var]``, each of shape (n_in,). ``gamma``
        starts at 1 and ``beta`` at 0 and both are trained; the running statistics
        (starting at 0 and 1) are not: they are :attr:`statistic_names`.

    Notes
    -----
    While training (``training=True``), for a batch ``x`` of shape (n, d)::

        mu = mean(x, axis=0),  var = mean((x - mu)**2, axis=0)      # biased variance
        x_hat = (x - mu) / sqrt(var + epsilon),  y = gamma * x_hat + beta
        running_mean <- momentum * running_mean + (1 - momentum) * mu
        running_var  <- momentum * running_var  + (1 - momentum) * var * n / (n - 1)

    (the running variance takes the unbiased estimate, as PyTorch does; the biased one
    for a batch of one). The running statistics change only when the model takes an
    optimizer step, together with the weights. At inference (``training=False``:
    ``predict``, ``evaluate``, validation, ONNX export) ``mu`` and ``var`` are the running
    statistics, so a sample's output does not depend on the rest of its batch. Backward
    through the batch statistics::

        dx = (n * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)) / (n * sqrt(var + eps))

    with ``dx_hat = dy * gamma`` and sums over the batch. ``gamma`` and ``beta`` are not
    regularised (``alpha``, weight decay), as in Keras (no regulariser on them by default)
    and in the usual PyTorch practice of excluding normalisation parameters.

    Statistics are per batch, so very small batches (below about 8) give noisy
    estimates; with data parallelism (``fit(comm=...)``) each rank normalises with the
    statistics of its own share of the batch and keeps its own running statistics
    (rank 0's are the ones checkpointed), like PyTorch's BatchNorm without SyncBatchNorm.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.layers import BatchNorm
    >>> b = resolve_backend("numpy")
    >>> layer = BatchNorm()
    >>> layer.build(2, backend=b, dtype="float64", rng=np.random.default_rng(0))
    2
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> y, cache = layer.forward(x, xp=b.xp, training=True)
    >>> np.round(y, 3).tolist()
    [[-1.0, -1.0], [1.0, 1.0]]
    >>> [np.round(s, 3).tolist() for s in layer.updated_statistics(cache)]
    [[0.2, 2.0], [1.1, 20.9]]
    """

    param_names = ("gamma", "beta", "running_mean", "running_var")
    statistic_names = ("running_mean", "running_var")
    parameter_constraints = {"momentum": Interval(float, 0.0, 1.0, closed="left"),
                             "epsilon": Interval(float, 0.0, None, closed="neither")}

    def __init__(self, momentum=0.9, epsilon=1e-5):
        super().__init__()
        self._set_params(momentum=momentum, epsilon=epsilon)

    def build(self, n_in, *, backend, dtype, rng):
        n_in = check_int(n_in, "n_in", "BatchNorm")
        self.params = [_stat_ones(n_in, dtype, backend), _stat_zeros(n_in, dtype, backend),
                       _stat_zeros(n_in, dtype, backend), _stat_ones(n_in, dtype, backend)]
        self.decay = [False, False, False, False]
        self.n_in = self.n_out = n_in
        return n_in

    def forward(self, x, *, xp, training=False, rng=None):
        gamma, beta, mean, var = self.params
        if training:
            n = int(x.shape[0])
            mu = xp.mean(x, axis=0)
            centred = x - mu
            bvar = xp.mean(centred * centred, axis=0)
            inv = 1.0 / xp.sqrt(bvar + self.epsilon)
            x_hat = centred * inv
            return x_hat * gamma + beta, (x_hat, inv, n, mu, bvar)
        inv = 1.0 / xp.sqrt(var + self.epsilon)
        x_hat = (x - mean) * inv
        return x_hat * gamma + beta, (x_hat, inv, None, None, None)

    def backward(self, dy, cache, *, xp, need_dx=True):
        x_hat, inv, n, _, _ = cache
        gamma = self.params[0]
        grads = [xp.sum(dy * x_hat, axis=0), xp.sum(dy, axis=0),
                 xp.zeros_like(self.params[2]), xp.zeros_like(self.params[3])]
        if not need_dx:
            return None, grads
        dx_hat = dy * gamma
        if n is None:  # inference statistics are constants
            return dx_hat * inv, grads
        dx = (dx_hat - xp.mean(dx_hat, axis=0)
              - x_hat * xp.mean(dx_hat * x_hat, axis=0)) * inv
        return dx, grads

    def updated_statistics(self, cache):
        _, _, n, mu, bvar = cache
        if n is None:
            return None
        m = self.momentum
        unbiased = bvar * (n / (n - 1)) if n > 1 else bvar
        return [self.params[2] * m + mu * (1.0 - m), self.params[3] * m + unbiased * (1.0 - m)]

    def get_config(self):
        return {"name": "BatchNorm", "momentum": self.momentum, "epsilon": self.epsilon}


class LayerNorm(Layer):
    """Layer normalisation (Ba et al., 2016): each sample standardised over its features.

    Parameters
    ----------
    epsilon : float > 0, default=1e-5
        Added to the variance before the square root.

    Attributes
    ----------
    params : list of arrays
        ``[gamma, beta]`` of shape (n_in,), starting at 1 and 0; not regularised.

    Notes
    -----
    For each row ``x`` of length ``d``: ``mu = mean(x)``, ``var = mean((x - mu)**2)``,
    ``x_hat = (x - mu) / sqrt(var + epsilon)`` and ``y = gamma * x_hat + beta``. The same
    computation runs while training and at inference (no running statistics), so a
    sample's output never depends on its batch. Backward, per row::

        dx = (d * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)) / (d * sqrt(var + eps))

    with ``dx_hat = dy * gamma``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.layers import LayerNorm
    >>> b = resolve_backend("numpy")
    >>> layer = LayerNorm()
    >>> layer.build(2, backend=b, dtype="float64", rng=np.random.default_rng(0))
    2
    >>> y, _ = layer.forward(np.array([[1.0, 3.0], [0.0, 10.0]]), xp=b.xp)
    >>> np.round(y, 3).tolist()
    [[-1.0, 1.0], [-1.0, 1.0]]
    """

    param_names = ("gamma", "beta")
    parameter_constraints = {"epsilon": Interval(float, 0.0, None, closed="neither")}

    def __init__(self, epsilon=1e-5):
        super().__init__()
        self._set_params(epsilon=epsilon)

    def build(self, n_in, *, backend, dtype, rng):
        n_in = check_int(n_in, "n_in", "LayerNorm")
        self.params = [_stat_ones(n_in, dtype, backend), _stat_zeros(n_in, dtype, backend)]
        self.decay = [False, False]
        self.n_in = self.n_out = n_in
        return n_in

    def forward(self, x, *, xp, training=False, rng=None):
        mu = xp.mean(x, axis=1, keepdims=True)
        centred = x - mu
        var = xp.mean(centred * centred, axis=1, keepdims=True)
        inv = 1.0 / xp.sqrt(var + self.epsilon)
        x_hat = centred * inv
        return x_hat * self.params[0] + self.params[1], (x_hat, inv)

    def backward(self, dy, cache, *, xp, need_dx=True):
        x_hat, inv = cache
        grads = [xp.sum(dy * x_hat, axis=0), xp.sum(dy, axis=0)]
        if not need_dx:
            return None, grads
        dx_hat = dy * self.params[0]
        dx = (dx_hat - xp.mean(dx_hat, axis=1, keepdims=True)
              - x_hat * xp.mean(dx_hat * x_hat, axis=1, keepdims=True)) * inv
        return dx, grads

    def get_config(self):
        return {"name": "LayerNorm", "epsilon": self.epsilon}


def _as_float(x, dtype, xp):
    """``x`` in the float dtype ``dtype`` (one batch: preprocessing layers convert here)."""
    return x if x.dtype == dtype else xp.astype(x, dtype)


class Standardize(Layer):
    """An input layer that standardises every feature with statistics of the training
    data: ``y = (x - mean) / std``.

    The statistics are computed by :meth:`adapt` (as Keras' ``Normalization.adapt``), or
    by ``fit`` from its training data when the layer has not been adapted yet (the model
    option ``MLP(..., preprocess="standardize")`` puts such a layer first). On a model
    that is already compiled, call ``model.adapt_inputs(X, force=True)`` rather than
    ``layer.adapt(X)``: it also hands the new arrays to the training state. They are
    parameters that are never trained and travel with the model: saved, loaded,
    checkpointed and exported, so a loaded model takes the same raw inputs as during
    training.

    Parameters
    ----------
    epsilon : float >= 0, default=0.0
        A feature whose standard deviation is at most ``epsilon`` (a constant feature)
        is only centred (its ``std`` is set to 1), as scikit-learn's StandardScaler does.

    Attributes
    ----------
    params : list of arrays
        ``[mean, std, count]``: ``mean`` and ``std`` of shape (n_in,) and ``count`` of
        shape (1,), the number of samples adapted on (0 before :meth:`adapt`: the layer
        is then the identity). All three are statistics (:attr:`statistic_names`).
    adapted : bool
        Whether :meth:`adapt` has run (``count > 0``).

    Notes
    -----
    Inputs of any real or integer dtype are accepted (``casts_input``) and converted to
    the model's dtype one batch at a time inside ``forward``: a model with this first
    layer keeps ``uint8`` pixels as ``uint8`` on the device (a quarter of the memory of
    float32) and never converts the whole data set at once. ``std`` is the population
    standard deviation (``ddof=0``); both statistics are accumulated in float64 on the
    host, in blocks of rows.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.layers import Standardize
    >>> b = resolve_backend("numpy")
    >>> layer = Standardize()
    >>> layer.build(2, backend=b, dtype="float32", rng=None)
    2
    >>> X = np.array([[0, 10], [2, 10], [4, 10]], dtype=np.uint8)
    >>> layer.adapt(X)
    >>> y, _ = layer.forward(X, xp=b.xp)
    >>> y.dtype, y.astype(np.float64).round(3).tolist()
    (dtype('float32'), [[-1.225, 0.0], [0.0, 0.0], [1.225, 0.0]])
    """

    param_names = ("mean", "std", "count")
    statistic_names = ("mean", "std", "count")
    casts_input = True
    parameter_constraints = {"epsilon": Interval(float, 0.0, None, closed="left")}

    #: Rows per block when :meth:`adapt` accumulates its sums.
    adapt_block = 4096
    epsilon: float

    def __init__(self, epsilon=0.0):
        super().__init__()
        self._set_params(epsilon=epsilon)
        self._backend = None

    def build(self, n_in, *, backend, dtype, rng):
        n_in = check_int(n_in, "n_in", "Standardize")
        self._backend = backend
        self.params = [_stat_zeros(n_in, dtype, backend), _stat_ones(n_in, dtype, backend),
                       _stat_zeros(1, dtype, backend)]
        self.decay = [False, False, False]
        self.n_in = self.n_out = n_in
        return n_in

    @property
    def adapted(self) -> bool:
        return self.built and float(_backend.to_numpy(self.params[2])[0]) > 0

    def adapt(self, X) -> None:
        """Compute ``mean`` and ``std`` from ``X`` (replacing any earlier statistics).

        Parameters
        ----------
        X : array of shape (n_samples, n_in)
            Host (NumPy, a memory map included) or the layer's namespace; any real or
            integer dtype. Read in blocks of :attr:`adapt_block` rows, each converted to
            float64 on the host, so a ``uint8`` memory map is never converted whole.

        Raises
        ------
        ValueError
            When the layer is not built, ``X`` is not 2-D with ``n_in`` columns and at
            least one row, is not numeric, or holds NaN or infinity. The layer is left
            unchanged.
        """
        if not self.built:
            raise ValueError("Build the Standardize layer (or the model holding it) "
                             "before adapt().")
        if not hasattr(X, "shape") or not hasattr(X, "dtype"):
            X = np.asarray(X)
        if len(X.shape) != 2 or int(X.shape[1]) != self.n_in or int(X.shape[0]) < 1:
            raise ValueError(f"Standardize.adapt needs a 2-D array of shape (n_samples, "
                             f"{self.n_in}) with at least one row; got shape "
                             f"{tuple(X.shape)}.")
        n = int(X.shape[0])
        total = np.zeros(self.n_in)
        for start in range(0, n, self.adapt_block):
            block = self._host_block(X, start, min(n, start + self.adapt_block))
            total += block.sum(axis=0)
        mean = total / n
        sq = np.zeros(self.n_in)
        for start in range(0, n, self.adapt_block):
            block = self._host_block(X, start, min(n, start + self.adapt_block)) - mean
            sq += (block * block).sum(axis=0)
        std = np.sqrt(sq / n)
        std[std <= self.epsilon] = 1.0
        dtype = _backend.to_numpy(self.params[0]).dtype
        self.params = [_backend.to_device(a.astype(dtype), backend=self._backend)
                       for a in (mean, std, np.array([n], dtype=np.float64))]

    @staticmethod
    def _host_block(X, start, stop):
        block = _backend.to_numpy(X[start:stop, ...])
        if block.dtype.kind not in "biuf":
            raise ValueError(f"Standardize.adapt needs numeric data; got dtype {block.dtype}.")
        block = block.astype(np.float64)
        if not np.isfinite(block).all():
            raise ValueError("Standardize.adapt got NaN or infinity; clean or impute the "
                             "data first.")
        return block

    def forward(self, x, *, xp, training=False, rng=None):
        mean, std = self.params[0], self.params[1]
        return (_as_float(x, mean.dtype, xp) - mean) / std, None

    def backward(self, dy, cache, *, xp, need_dx=True):
        grads = [xp.zeros_like(p) for p in self.params]
        return (dy / self.params[1] if need_dx else None), grads

    def get_config(self):
        return {"name": "Standardize", "epsilon": self.epsilon}


class Rescale(Layer):
    """An input layer with a fixed affine map: ``y = x * scale + offset``.

    The usual first layer for image pixels, ``Rescale(1 / 255)`` (Keras'
    ``Rescaling``): a model trained with it takes raw ``uint8`` pixels, and so does the
    same model loaded from its file. ``scale`` and ``offset`` are stored in the model's
    config.

    Parameters
    ----------
    scale : float, default=1.0
    offset : float, default=0.0

    Notes
    -----
    Inputs of any real or integer dtype are accepted and converted to the model's dtype
    one batch at a time (see :class:`Standardize`); the layer has no parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import resolve_backend
    >>> from mlpx.layers import Rescale
    >>> b = resolve_backend("numpy")
    >>> layer = Rescale(1 / 255)
    >>> layer.build(3, backend=b, dtype="float32", rng=None)
    3
    >>> y, _ = layer.forward(np.array([[0, 51, 255]], dtype=np.uint8), xp=b.xp)
    >>> y.dtype, y.astype(np.float64).round(4).tolist()
    (dtype('float32'), [[0.0, 0.2, 1.0]])
    """

    casts_input = True
    parameter_constraints = {"scale": Interval(float), "offset": Interval(float)}

    def __init__(self, scale=1.0, offset=0.0):
        super().__init__()
        self._set_params(scale=scale, offset=offset)
        self._dtype = "float32"

    def build(self, n_in, *, backend, dtype, rng):
        self._dtype = _backend.dtype_name(dtype)
        return super().build(n_in, backend=backend, dtype=dtype, rng=rng)

    def forward(self, x, *, xp, training=False, rng=None):
        if not xp.isdtype(x.dtype, "real floating"):
            x = xp.astype(x, getattr(xp, self._dtype))
        y = x * self.scale
        return (y + self.offset if self.offset != 0.0 else y), None

    def backward(self, dy, cache, *, xp, need_dx=True):
        return (dy * self.scale if need_dx else None), []

    def get_config(self):
        return {"name": "Rescale", "scale": self.scale, "offset": self.offset}


#: Registry of layer classes by name (used to rebuild models from configs). Lookups ignore
#: case, ``-``, ``_`` and spaces, so ``"dense"`` finds ``Dense``.
LAYERS = Registry("layer", Layer)
for _cls in (Dense, ActivationLayer, Dropout, PReLU, Maxout, Embedding, BatchNorm, LayerNorm,
             Standardize, Rescale):
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
