"""Preprocessing helpers (host side, NumPy): :func:`scale`, :func:`standardize`,
:func:`one_hot`.

Public API at :mod:`mlpx.datasets`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["scale", "standardize", "one_hot"]


def _float_dtype(dtype: Any, func: str) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind != "f":
        raise ValueError(
            f"The 'dtype' parameter of {func} must be a floating dtype such as 'float32' "
            f"or 'float64'. Got {dtype!r} instead."
        )
    return dt


def scale(X: ArrayLike, dtype: DTypeLike = "float32") -> np.ndarray:
    """Scale 8-bit pixel values to [0, 1]: ``X / 255`` in a floating dtype.

    Parameters
    ----------
    X : array_like
        Pixel values in [0, 255], any shape (typically uint8).
    dtype : str or numpy.dtype, default="float32"
        Floating dtype of the result.

    Returns
    -------
    numpy.ndarray
        A new array of the same shape and the requested dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.datasets import scale
    >>> scale(np.array([[0, 51, 255]], dtype=np.uint8))
    array([[0. , 0.2, 1. ]], dtype=float32)
    """
    dt = _float_dtype(dtype, "scale")
    out = np.array(X, dtype=dt, copy=True)
    out /= 255
    return out


def standardize(
    X_train: ArrayLike, X_test: ArrayLike | None = None, *, dtype: DTypeLike | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Centre and scale each feature to zero mean and unit variance, with train statistics.

    Parameters
    ----------
    X_train : array_like of shape (n_samples, n_features)
        Data the statistics are computed from (more dimensions are allowed: statistics
        are taken over the first axis).
    X_test : array_like of shape (n_test_samples, n_features), optional
        Data transformed with the statistics of ``X_train`` (never its own).
    dtype : str or numpy.dtype, optional
        Floating dtype of the result. Default: the input's dtype if it is floating,
        float32 otherwise.

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        ``X_train`` standardized, or ``(X_train, X_test)`` standardized when
        ``X_test`` is given.

    Notes
    -----
    :math:`z = (x - \\mu) / \\sigma` with :math:`\\mu` and :math:`\\sigma` the mean and
    (population) standard deviation of each feature over ``X_train``, computed in
    float64. Features with :math:`\\sigma = 0` (MNIST's blank border pixels) are only
    centred (divided by 1).

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.datasets import standardize
    >>> X_tr = np.array([[0, 5], [2, 5]], dtype=np.uint8)
    >>> X_te = np.array([[4, 6]], dtype=np.uint8)
    >>> Z_tr, Z_te = standardize(X_tr, X_te)
    >>> Z_tr
    array([[-1.,  0.],
           [ 1.,  0.]], dtype=float32)
    >>> Z_te
    array([[3., 1.]], dtype=float32)
    """
    train = np.asarray(X_train)
    if train.ndim == 0 or train.shape[0] == 0:
        raise ValueError(
            "The 'X_train' parameter of standardize must be an array with at least one "
            f"sample. Got shape {train.shape} instead."
        )
    if dtype is None:
        dt = train.dtype if train.dtype.kind == "f" else np.dtype("float32")
    else:
        dt = _float_dtype(dtype, "standardize")
    mean = train.mean(axis=0, dtype=np.float64)
    std = train.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0

    def apply(X_in: ArrayLike, what: str) -> np.ndarray:
        X = np.asarray(X_in)
        if X.shape[1:] != train.shape[1:]:
            raise ValueError(
                f"The '{what}' parameter of standardize must have per-sample shape "
                f"{train.shape[1:]} like X_train. Got shape {X.shape} instead."
            )
        return ((X - mean) / std).astype(dt)

    if X_test is None:
        return apply(train, "X_train")
    return apply(train, "X_train"), apply(X_test, "X_test")


def one_hot(
    y: ArrayLike, n_classes: int | None = None, dtype: DTypeLike = "float32"
) -> np.ndarray:
    """One-hot encode integer class labels (host side, NumPy).

    Parameters
    ----------
    y : array_like of shape (n_samples,)
        Integer labels in [0, n_classes).
    n_classes : int, optional
        Number of classes. Default: ``y.max() + 1``.
    dtype : str or numpy.dtype, default="float32"
        Dtype of the result.

    Returns
    -------
    numpy.ndarray of shape (n_samples, n_classes)
        Row ``i`` is 1 in column ``y[i]`` and 0 elsewhere.

    Examples
    --------
    >>> from mlpx.datasets import one_hot
    >>> one_hot([0, 2, 1])
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]], dtype=float32)
    """
    labels = np.asarray(y)
    if labels.ndim != 1:
        raise ValueError(
            f"The 'y' parameter of one_hot must be 1-dimensional. Got shape {labels.shape} "
            "instead."
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(
            "The 'y' parameter of one_hot must be an array of integers. "
            f"Got dtype {labels.dtype} instead."
        )
    if n_classes is None:
        if labels.size == 0:
            raise ValueError(
                "The 'n_classes' parameter of one_hot must be given when y is empty. "
                "Got None instead."
            )
        n_classes = int(labels.max()) + 1
    elif isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) \
            or n_classes < 1:
        raise ValueError(
            "The 'n_classes' parameter of one_hot must be an int >= 1. "
            f"Got {n_classes!r} instead."
        )
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"The 'y' parameter of one_hot must hold labels in [0, {n_classes - 1}]. "
            f"Got values in [{int(labels.min())}, {int(labels.max())}] instead."
        )
    out = np.zeros((labels.shape[0], int(n_classes)), dtype=np.dtype(dtype))
    out[np.arange(labels.shape[0]), labels] = 1
    return out
