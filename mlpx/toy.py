"""Two-dimensional toy problems generated in code: XOR, two moons, spirals.

Each generator returns host NumPy arrays ``X`` of shape (n_samples, 2) (float64) and
``y`` of shape (n_samples,) (int64 class labels), drawn from an explicit seed: the same
seed gives the same data. They are small enough to train on in a second and to draw
with :func:`mlpx.plotting.plot_decision_boundary`.
"""

from __future__ import annotations

import math

import numpy as np

from ._validation import InstanceOf, Interval, validate_params

__all__ = ["make_xor", "make_moons", "make_spirals"]


_NOISE = Interval(float, 0.0, None, closed="left")
_SEED = [Interval(int, None, None), InstanceOf(np.random.Generator, "a numpy.random.Generator"),
         None]


def _checked(func, **values):
    """``values`` checked for ``func``: sample counts are ints >= their minimum (given as
    ``(value, minimum)``), ``noise`` a float >= 0, ``turns`` a float > 0, ``seed`` an int,
    a Generator or None; returns the normalised values and the generator."""
    constraints = {}
    plain = {}
    for name, value in values.items():
        if name == "noise":
            constraints[name] = _NOISE
        elif name == "turns":
            constraints[name] = Interval(float, 0.0, None, closed="neither")
        elif name == "seed":
            constraints[name] = _SEED
        else:
            value, minimum = value
            constraints[name] = Interval(int, minimum, None, closed="left")
        plain[name] = value
    out = validate_params(func, plain, constraints)
    seed = out.pop("seed", None)
    out["rng"] = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return out


def make_xor(n_samples=4, *, noise=0.0, seed=None):
    """The XOR problem: the corners of the unit square, labelled ``x1 != x2``.

    Parameters
    ----------
    n_samples : int >= 4, default=4
        Points to draw. The corners (0, 0), (0, 1), (1, 0), (1, 1) are repeated in
        turn, so the default is the four-point truth table.
    noise : float >= 0, default=0.0
        Standard deviation of Gaussian noise added to every coordinate.
    seed : int, numpy.random.Generator or None, default=None
        Seeds the noise.

    Returns
    -------
    X : numpy.ndarray of shape (n_samples, 2)
    y : numpy.ndarray of shape (n_samples,)
        0 for (0, 0) and (1, 1), 1 for (0, 1) and (1, 0).

    Examples
    --------
    >>> from mlpx.toy import make_xor
    >>> X, y = make_xor()
    >>> X.tolist(), y.tolist()
    ([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1, 0])
    """
    c = _checked("make_xor", n_samples=(n_samples, 4), noise=noise, seed=seed)
    n, noise, rng = c["n_samples"], c["noise"], c["rng"]
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    X = corners[np.arange(n) % 4].copy()
    y = (X[:, 0] != X[:, 1]).astype(np.int64)
    if noise > 0:
        X += rng.normal(0.0, noise, size=X.shape)
    return X, y


def make_moons(n_samples=200, *, noise=0.1, seed=None):
    """Two interleaving half circles (class 0 on top, class 1 below), shuffled.

    Parameters
    ----------
    n_samples : int >= 2, default=200
        Total points; class 0 gets ``n_samples // 2`` of them (rounded up).
    noise : float >= 0, default=0.1
        Standard deviation of Gaussian noise added to every coordinate.
    seed : int, numpy.random.Generator or None, default=None

    Returns
    -------
    X : numpy.ndarray of shape (n_samples, 2)
    y : numpy.ndarray of shape (n_samples,)

    Notes
    -----
    Class 0 lies on :math:`(\\cos t, \\sin t)` and class 1 on
    :math:`(1 - \\cos t, \\tfrac12 - \\sin t)` for :math:`t` evenly spaced in
    :math:`[0, \\pi]`.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.toy import make_moons
    >>> X, y = make_moons(100, seed=0)
    >>> X.shape, np.bincount(y).tolist()
    ((100, 2), [50, 50])
    """
    c = _checked("make_moons", n_samples=(n_samples, 2), noise=noise, seed=seed)
    n, noise, rng = c["n_samples"], c["noise"], c["rng"]
    n0 = n - n // 2
    n1 = n // 2
    t0 = np.linspace(0.0, math.pi, n0)
    t1 = np.linspace(0.0, math.pi, n1)
    X = np.concatenate([
        np.stack([np.cos(t0), np.sin(t0)], axis=1),
        np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1),
    ])
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    if noise > 0:
        X = X + rng.normal(0.0, noise, size=X.shape)
    order = rng.permutation(n)
    return X[order], y[order]


def make_spirals(n_samples=300, *, n_classes=3, turns=1.0, noise=0.2, seed=None):
    """Interleaved spiral arms, one per class, starting at the origin; shuffled.

    Parameters
    ----------
    n_samples : int >= n_classes, default=300
        Total points, split as evenly as possible between the arms.
    n_classes : int >= 2, default=3
    turns : float > 0, default=1.0
        How many times each arm winds around the origin.
    noise : float >= 0, default=0.2
        Standard deviation of Gaussian noise on the angle (radians); the shift it
        causes grows with the radius, so the arms stay thin near the centre.
    seed : int, numpy.random.Generator or None, default=None

    Returns
    -------
    X : numpy.ndarray of shape (n_samples, 2)
        Points inside the unit disc.
    y : numpy.ndarray of shape (n_samples,)

    Notes
    -----
    Arm :math:`c` is :math:`r (\\cos\\theta, \\sin\\theta)` with :math:`r` evenly spaced
    in :math:`[0, 1]` and :math:`\\theta = 2\\pi c / K + 2\\pi \\cdot turns \\cdot r +
    \\epsilon`, :math:`\\epsilon \\sim N(0, noise^2)`.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.toy import make_spirals
    >>> X, y = make_spirals(300, n_classes=3, seed=0)
    >>> X.shape, np.bincount(y).tolist()
    ((300, 2), [100, 100, 100])
    """
    k = _checked("make_spirals", n_classes=(n_classes, 2))["n_classes"]
    c = _checked("make_spirals", n_samples=(n_samples, k), noise=noise, turns=turns,
                 seed=seed)
    n, noise, turns, rng = c["n_samples"], c["noise"], c["turns"], c["rng"]
    counts = [n // k + (1 if c < n % k else 0) for c in range(k)]
    parts, labels = [], []
    for c, m in enumerate(counts):
        r = np.linspace(0.0, 1.0, m)
        theta = 2.0 * math.pi * c / k + 2.0 * math.pi * float(turns) * r
        if noise > 0:
            theta = theta + rng.normal(0.0, noise, size=m)
        parts.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        labels.append(np.full(m, c, dtype=np.int64))
    X, y = np.concatenate(parts), np.concatenate(labels)
    order = rng.permutation(n)
    return X[order], y[order]
