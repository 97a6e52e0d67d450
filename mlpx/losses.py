"""Loss functions: a registry of losses that return their value and the gradient w.r.t.
the logits.

A loss sees the logits ``z`` (the last layer's pre-activation output) together with the
output activation applied to them, so that the canonical pairs can use their fused,
numerically stable forms:

- ``"mse"`` (aliases ``"squared_error"``, ``"mean_squared_error"``, ``"quadratic"``):
  any output activation (default ``identity``); the gradient goes through the output's
  ``backward`` by the chain rule.
- ``"cross_entropy"`` (aliases ``"categorical_cross_entropy"``, ``"log_loss"``): needs a
  ``softmax`` output; fused gradient ``(softmax(z) - y) / n``.
- ``"binary_cross_entropy"``: needs a ``sigmoid`` output; fused gradient
  ``(sigmoid(z) - y) / n``.
- ``"poisson"``: needs an ``exp`` output (log link); fused gradient ``(exp(z) - y) / n``.

Every loss sums over outputs and averages over samples; with ``sample_weight`` the
average is the weighted mean ``sum(w * l) / sum(w)``. Values are 0-d arrays in the
logits' namespace and dtype (no host synchronisation).
"""

from __future__ import annotations

import array_api_compat

from . import _backend
from ._registry import Registry
from ._validation import Interval, validate_params
from .activations import Activation, Exp, Sigmoid, Softmax, get_activation
from .activations import log_softmax as _log_softmax

__all__ = [
    "Loss",
    "MeanSquaredError",
    "CrossEntropy",
    "BinaryCrossEntropy",
    "Poisson",
    "LOSSES",
    "get_loss",
    "one_hot",
    "l2_penalty",
]


class Loss:
    """Base class of losses.

    Subclasses set :attr:`name` and :attr:`default_output` and implement
    :meth:`_per_sample`, which returns the unweighted per-sample losses and the
    *unscaled* per-sample gradient w.r.t. the logits; this class applies the (weighted)
    mean over samples to both.
    """

    #: Canonical registry name.
    name: str = "loss"
    #: Name of the natural output activation (see :mod:`mlpx.activations`).
    default_output: str = "identity"
    #: Output activation class the loss requires, or None when any output works.
    _required_output: type[Activation] | None = None

    # ------------------------------------------------------------------ public API
    def value_and_grad(self, z, y, *, output=None, xp, sample_weight=None):
        """Return the mean loss and its gradient with respect to the logits ``z``.

        Parameters
        ----------
        z : array of shape (n_samples, n_outputs)
            Logits: the values the output activation is applied to.
        y : array of shape (n_samples, n_outputs)
            Targets (one-hot or probability rows for cross-entropy, values in [0, 1] for
            binary cross-entropy, counts >= 0 for Poisson). Cast to ``z``'s dtype; a
            1-D ``y`` is accepted when ``n_outputs == 1``.
        output : Activation, str or dict, default=None
            The output activation applied to ``z`` (None: :attr:`default_output`).
        xp : namespace
            The Array API namespace of ``z``.
        sample_weight : array of shape (n_samples,), default=None
            Non-negative weights with a positive sum; the loss becomes the weighted mean
            ``sum(w * l) / sum(w)``. Host data is moved to ``z``'s device; values are
            not checked here (that would synchronise the device).

        Returns
        -------
        loss : 0-d array of ``z``'s dtype
        grad : array of the same shape and dtype as ``z``
            ``dloss/dz``.
        """
        output = self._check_output(output)
        z, y, w = self._prepare(z, y, sample_weight, xp)
        per_sample, g = self._per_sample(z, y, output, xp, need_grad=True)
        n = z.shape[0]
        if w is None:
            return xp.sum(per_sample) / n, g * (1.0 / n)
        return xp.sum(w * per_sample), g * xp.reshape(w, (n, 1))

    def value(self, z, y, *, output=None, xp, sample_weight=None):
        """Return the mean loss only (see :meth:`value_and_grad` for the parameters).

        Returns
        -------
        loss : 0-d array of ``z``'s dtype
        """
        output = self._check_output(output)
        z, y, w = self._prepare(z, y, sample_weight, xp)
        per_sample, _ = self._per_sample(z, y, output, xp, need_grad=False)
        if w is None:
            return xp.sum(per_sample) / z.shape[0]
        return xp.sum(w * per_sample)

    def get_config(self) -> dict:
        """Return ``{"name": ...}``; :func:`get_loss` rebuilds the loss from it."""
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        if not isinstance(other, Loss):
            return NotImplemented
        return self.get_config() == other.get_config()

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    # ------------------------------------------------------------------ helpers
    def _per_sample(self, z, y, output, xp, *, need_grad):
        """Return ``(l, g)``: losses of shape (n,) and dl_i/dz of shape (n, k) (or None)."""
        raise NotImplementedError

    def _check_output(self, output):
        if output is None:
            output = self.default_output
        if not isinstance(output, Activation):
            output = get_activation(output)
        required = self._required_output
        if required is not None and not isinstance(output, required):
            raise ValueError(
                f"The {self.name} loss needs a {required.name!r} output activation (its "
                f"gradient is fused with it); got {output.name!r}. Use output="
                f"{required.name!r}, or the 'mse' loss, which works with any output."
            )
        return output

    def _prepare(self, z, y, sample_weight, xp):
        if z.ndim != 2:
            raise ValueError(
                f"The logits of {self.name} must be 2-D, of shape (n_samples, n_outputs). "
                f"Got shape {tuple(z.shape)} instead."
            )
        n, k = z.shape
        if n == 0:
            raise ValueError(f"The {self.name} loss needs at least one sample; got 0.")
        if y.ndim == 1 and k == 1 and y.shape[0] == n:
            y = xp.reshape(y, (n, 1))
        if tuple(y.shape) != tuple(z.shape):
            raise ValueError(
                f"The targets of {self.name} must have the logits' shape {tuple(z.shape)}. "
                f"Got shape {tuple(y.shape)} instead."
            )
        if y.dtype != z.dtype:
            y = xp.astype(y, z.dtype)
        if sample_weight is None:
            return z, y, None
        w = _as_weights(sample_weight, z, xp)
        if w.ndim != 1 or w.shape[0] != n:
            raise ValueError(
                f"The 'sample_weight' parameter of {self.name} must have shape ({n},). "
                f"Got shape {tuple(w.shape)} instead."
            )
        return z, y, w / xp.sum(w)


def _as_weights(sample_weight, z, xp):
    """``sample_weight`` as an array of ``z``'s namespace, device and dtype."""
    try:
        same = _backend.array_namespace(sample_weight) is xp
    except TypeError:
        same = False
    if not same:
        backend = _backend.backend_of(z)
        sample_weight = _backend.to_device(sample_weight, backend=backend)
    if sample_weight.dtype != z.dtype:
        sample_weight = xp.astype(sample_weight, z.dtype)
    return sample_weight


class MeanSquaredError(Loss):
    """Half mean squared error, for any output activation.

    Aliases: ``"squared_error"``, ``"mean_squared_error"``, ``"quadratic"``.

    Notes
    -----
    With :math:`a = f(z)` the output activation:

    .. math:: L = \\frac{1}{2n} \\sum_{i=1}^{n} \\sum_{j=1}^{k} (a_{ij} - y_{ij})^2,
              \\qquad \\frac{\\partial L}{\\partial a} = \\frac{a - y}{n}

    and :math:`\\partial L / \\partial z` is ``output.backward(dL/da, z, a)`` (so any
    output works; with the identity it is :math:`(z - y)/n`). With weights,
    :math:`L = \\sum_i w_i l_i / \\sum_i w_i` and row :math:`i` of the gradient is
    scaled by :math:`w_i / \\sum w` instead of :math:`1/n`.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.losses import get_loss
    >>> z = np.array([[1.0], [3.0]]); y = np.array([[0.0], [1.0]])
    >>> loss, grad = get_loss("mse").value_and_grad(z, y, output="identity", xp=xp)
    >>> float(loss), grad.tolist()
    (1.25, [[0.5], [1.0]])
    """

    name = "mse"
    default_output = "identity"

    def _per_sample(self, z, y, output, xp, *, need_grad):
        a = output.forward(z, xp=xp)
        r = a - y
        per_sample = 0.5 * xp.sum(r * r, axis=1)
        if not need_grad:
            return per_sample, None
        # backward is linear in dy, so scaling by 1/n (or w) afterwards is exact.
        return per_sample, output.backward(r, z, a, xp=xp)


class CrossEntropy(Loss):
    """Categorical cross-entropy with a softmax output (fused).

    Aliases: ``"categorical_cross_entropy"``, ``"log_loss"``. Targets are one-hot or
    probability rows (each row sums to 1).

    Notes
    -----
    .. math:: L = -\\frac1n \\sum_{i=1}^{n} \\sum_{j=1}^{k} y_{ij}
              \\log \\mathrm{softmax}(z_i)_j, \\qquad
              \\frac{\\partial L}{\\partial z} = \\frac{\\mathrm{softmax}(z) - y}{n}

    The value uses :func:`mlpx.activations.log_softmax`, finite for any finite logits;
    the gradient relies on each target row summing to 1. Any output other than softmax
    raises a ValueError.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.losses import get_loss, one_hot
    >>> z = np.array([[2.0, 0.0], [0.0, 0.0]])
    >>> y = one_hot(np.array([0, 1]), 2, xp=xp, dtype="float64", device="cpu")
    >>> loss, grad = get_loss("cross_entropy").value_and_grad(z, y, output="softmax", xp=xp)
    >>> round(float(loss), 6)
    0.410038
    >>> np.round(grad, 4).tolist()
    [[-0.0596, 0.0596], [0.25, -0.25]]
    """

    name = "cross_entropy"
    default_output = "softmax"
    _required_output = Softmax

    def _per_sample(self, z, y, output, xp, *, need_grad):
        logp = _log_softmax(z, xp=xp, axis=-1)
        per_sample = -xp.sum(y * logp, axis=1)
        if not need_grad:
            return per_sample, None
        return per_sample, xp.exp(logp) - y


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy (independent labels) with a sigmoid output, from logits.

    Notes
    -----
    .. math:: L = \\frac1n \\sum_{i,j} -y_{ij}\\log\\sigma(z_{ij})
              - (1 - y_{ij})\\log(1 - \\sigma(z_{ij}))
              = \\frac1n \\sum_{i,j} \\max(z_{ij}, 0) - z_{ij} y_{ij}
              + \\log\\bigl(1 + e^{-|z_{ij}|}\\bigr)

    .. math:: \\frac{\\partial L}{\\partial z} = \\frac{\\sigma(z) - y}{n}

    The right-hand form never overflows and never takes ``log(0)``. Any output other
    than sigmoid raises a ValueError.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.losses import get_loss
    >>> bce = get_loss("binary_cross_entropy")
    >>> loss, grad = bce.value_and_grad(np.array([[0.0], [1e4]]), np.array([[1.0], [1.0]]),
    ...                                 output="sigmoid", xp=xp)
    >>> round(float(loss), 6), grad.tolist()
    (0.346574, [[-0.25], [0.0]])
    """

    name = "binary_cross_entropy"
    default_output = "sigmoid"
    _required_output = Sigmoid

    def _per_sample(self, z, y, output, xp, *, need_grad):
        e = xp.exp(-xp.abs(z))
        zero = xp.asarray(0.0, dtype=z.dtype, device=_backend.device_of(z))
        per_sample = xp.sum(xp.maximum(z, zero) - z * y + xp.log1p(e), axis=1)
        if not need_grad:
            return per_sample, None
        r = 1.0 / (1.0 + e)
        s = xp.where(z >= 0, r, e * r)  # sigmoid(z), sharing exp(-|z|)
        return per_sample, s - y


class Poisson(Loss):
    """Poisson negative log-likelihood with an exponential output (log link).

    Notes
    -----
    With the mean :math:`\\mu = e^{z}` and counts :math:`y \\ge 0`:

    .. math:: L = \\frac1n \\sum_{i,j} \\bigl(e^{z_{ij}} - y_{ij} z_{ij}\\bigr), \\qquad
              \\frac{\\partial L}{\\partial z} = \\frac{e^{z} - y}{n}

    This is the half Poisson deviance :math:`y \\log(y/\\mu) - y + \\mu` up to the term
    :math:`y \\log y - y`, which does not depend on :math:`z`: the same minimiser and
    gradient, but the value is not 0 at a perfect fit. Any output other than ``exp``
    raises a ValueError.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.losses import get_loss
    >>> loss, grad = get_loss("poisson").value_and_grad(
    ...     np.array([[0.0]]), np.array([[2.0]]), output="exp", xp=xp)
    >>> float(loss), grad.tolist()
    (1.0, [[-1.0]])
    """

    name = "poisson"
    default_output = "exp"
    _required_output = Exp

    def _per_sample(self, z, y, output, xp, *, need_grad):
        mu = xp.exp(z)
        per_sample = xp.sum(mu - y * z, axis=1)
        if not need_grad:
            return per_sample, None
        return per_sample, mu - y


# --------------------------------------------------------------------------- registry
#: Registry: every accepted name (aliases included) -> Loss class. Lookups ignore case,
#: ``-``, ``_`` and spaces (see :func:`mlpx._registry.normalize_name`).
LOSSES = Registry("loss", Loss)
LOSSES.register(MeanSquaredError, "mse",
                aliases=("squared_error", "mean_squared_error", "quadratic"))
LOSSES.register(CrossEntropy, "cross_entropy", aliases=("categorical_cross_entropy", "log_loss"))
LOSSES.register(BinaryCrossEntropy, "binary_cross_entropy")
LOSSES.register(Poisson, "poisson")


def get_loss(spec, **params) -> Loss:
    """Return a :class:`Loss` from a name, an instance or a config dict.

    Parameters
    ----------
    spec : str, Loss or dict
        A registry name or alias (see :data:`LOSSES`; case, ``-``, ``_`` and spaces are
        ignored), a Loss (returned as is), or ``{"name": ...}`` as produced by
        :meth:`Loss.get_config`.
    **params
        Constructor parameters (the built-in losses take none; any given is refused
        with the list of valid ones).

    Returns
    -------
    Loss

    Raises
    ------
    mlpx.InvalidParameterError
        (a ``ValueError`` and a ``TypeError``) for an unknown name (the message lists
        the valid ones), an unknown parameter, or a ``spec`` of another type.

    Examples
    --------
    >>> from mlpx.losses import get_loss
    >>> get_loss("log_loss")
    CrossEntropy()
    >>> get_loss("Squared-Error").default_output
    'identity'
    """
    return LOSSES.build(spec, **params)


# --------------------------------------------------------------------------- helpers
def one_hot(labels, n_classes, *, xp, dtype="float32", device=None):
    """One-hot encode integer class labels.

    Parameters
    ----------
    labels : array of shape (n_samples,), integer dtype
        Class indices in ``[0, n_classes)``; host data is moved to ``device``.
    n_classes : int >= 1
    xp : namespace
        The Array API namespace to build the result in.
    dtype : {"float32", "float64"} or dtype, default="float32"
    device : device, default=None
        Where the result lives (None: the labels' device, or the namespace's default).

    Returns
    -------
    Y : array of shape (n_samples, n_classes) and dtype ``dtype``
        ``Y[i, j] = 1`` when ``labels[i] == j``, else 0.

    Raises
    ------
    ValueError
        For labels outside ``[0, n_classes)`` (this check reads one boolean from the
        device), a non-1-D ``labels`` or an invalid ``n_classes``.
    TypeError
        For non-integer labels.

    Notes
    -----
    Built as ``labels[:, None] == arange(n_classes)`` cast to ``dtype``: one
    broadcast comparison, no Python loop, no scatter.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.losses import one_hot
    >>> one_hot(np.array([0, 2, 1]), 3, xp=xp, dtype="float32", device="cpu").tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    n_classes = validate_params("one_hot", {"n_classes": n_classes},
                                {"n_classes": Interval(int, 1, None, closed="left")})["n_classes"]
    try:
        same = _backend.array_namespace(labels) is xp
    except TypeError:
        same = False
    if not same:
        labels = xp.asarray(labels, device=device) if device is not None else xp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(
            f"The 'labels' parameter of one_hot must be 1-D, of shape (n_samples,). Got "
            f"shape {tuple(labels.shape)} instead."
        )
    if not xp.isdtype(labels.dtype, "integral"):
        raise TypeError(
            f"The 'labels' parameter of one_hot must hold integers. Got dtype {labels.dtype} "
            "instead."
        )
    if labels.shape[0] > 0 and bool(xp.any((labels < 0) | (labels >= n_classes))):
        raise ValueError(
            f"The 'labels' parameter of one_hot must lie in [0, {n_classes}). Got labels "
            f"from {int(xp.min(labels))} to {int(xp.max(labels))} instead."
        )
    if device is None:
        device = array_api_compat.device(labels)
    classes = xp.arange(n_classes, dtype=labels.dtype, device=device)
    target = _backend.resolve_dtype(dtype, xp)
    return xp.astype(labels[:, None] == classes, target)


def l2_penalty(weights, alpha, *, xp):
    """L2 (weight decay) penalty ``alpha / 2 * sum of squared entries`` of ``weights``.

    Parameters
    ----------
    weights : list of arrays
        The weight matrices to penalise (never the biases).
    alpha : float >= 0
        Regularisation strength.
    xp : namespace
        The Array API namespace of the weights.

    Returns
    -------
    penalty : 0-d array, or the Python float 0.0 when ``alpha == 0`` or ``weights`` is
        empty (so that adding it costs nothing).

    Notes
    -----
    .. math:: R(W) = \\frac{\\alpha}{2} \\sum_{l} \\lVert W_l \\rVert_F^2, \\qquad
              \\frac{\\partial R}{\\partial W_l} = \\alpha W_l

    The gradient is not computed here: the model adds ``alpha * W`` to each weight's
    gradient itself.

    Examples
    --------
    >>> import numpy as np
    >>> import array_api_compat.numpy as xp
    >>> from mlpx.losses import l2_penalty
    >>> float(l2_penalty([np.array([[1.0, 2.0]]), np.array([[2.0]])], 0.5, xp=xp))
    2.25
    """
    alpha = validate_params("l2_penalty", {"alpha": alpha},
                            {"alpha": Interval(float, 0, None, closed="left")})["alpha"]
    if alpha == 0.0 or len(weights) == 0:
        return 0.0
    total = None
    for w in weights:
        s = xp.sum(w * w)
        total = s if total is None else total + s
    return (0.5 * alpha) * total
