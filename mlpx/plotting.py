"""Plots: training curves and decision boundaries (matplotlib, an optional extra).

matplotlib is imported only when a function here is called; without it the call raises
an ImportError that names the extra to install (``pip install 'mlpx[plot]'``). Figures
are built with :class:`matplotlib.figure.Figure` directly, never through
``matplotlib.pyplot``, so plotting touches no global state and needs no display.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["plot_history", "plot_decision_boundary"]

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _require_matplotlib():
    """Import matplotlib or raise an ImportError that says how to install it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "Plotting needs matplotlib, which is not installed. Install it with "
            "pip install 'mlpx[plot]' (or pip install matplotlib)."
        ) from exc
    return Figure


def _save(fig, path, dpi):
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi, bbox_inches="tight")


def _as_history_dict(history):
    data = getattr(history, "history", history)
    if not isinstance(data, dict) or "loss" not in data:
        raise ValueError("The 'history' parameter of plot_history must be a History (from "
                         "fit) or a dict with at least a 'loss' list. Got "
                         f"{type(history).__name__} instead.")
    epochs = list(getattr(history, "epochs", None) or range(1, len(data["loss"]) + 1))
    return data, epochs


def plot_history(history, path=None, *, title=None, val_label="validation", dpi=120):
    """Plot loss and accuracy per epoch, training and validation, side by side.

    Parameters
    ----------
    history : History or dict of str to list of float
        What :meth:`mlpx.Sequential.fit` returned (or its ``history`` dict): ``"loss"``
        and optionally ``"val_loss"``, ``"accuracy"``, ``"val_accuracy"``.
    path : str or os.PathLike, optional
        Where to save the figure (the format follows the extension, e.g. ``.png``).
    title : str, optional
        A title over both panels.
    val_label : str, default="validation"
        Legend of the ``val_*`` curves (e.g. ``"test"`` when the held-out data passed
        as ``validation_data`` is the test set).
    dpi : int, default=120

    Returns
    -------
    matplotlib.figure.Figure
        One panel for the loss, a second for the accuracy when it was recorded.

    Raises
    ------
    ImportError
        matplotlib is not installed (``pip install 'mlpx[plot]'``).

    Examples
    --------
    >>> from mlpx.plotting import plot_history
    >>> fig = plot_history({"loss": [0.9, 0.5, 0.4], "val_loss": [0.8, 0.6, 0.55],
    ...                     "accuracy": [0.6, 0.8, 0.85], "val_accuracy": [0.7, 0.78, 0.8]})
    >>> len(fig.axes)
    2
    """
    Figure = _require_matplotlib()
    data, epochs = _as_history_dict(history)
    panels = [("loss", "loss")]
    if data.get("accuracy") or data.get("val_accuracy"):
        panels.append(("accuracy", "accuracy"))
    fig = Figure(figsize=(5.0 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, label) in zip(axes, panels):
        for prefix, name, style in (("", "train", "-o"), ("val_", val_label, "-s")):
            values = data.get(prefix + key)
            if values:
                ax.plot(epochs[:len(values)], values, style, markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    _save(fig, path, dpi)
    return fig


def plot_decision_boundary(model, X, y, path=None, *, ax=None, resolution=200,
                           padding=0.25, title=None, dpi=120):
    """Draw a 2-D classifier's decision regions with the data on top.

    Parameters
    ----------
    model : Sequential
        A trained model with two input features.
    X : array_like of shape (n_samples, 2)
        Points to draw (host data); the plotted area is their bounding box plus
        ``padding`` times its size on every side.
    y : array_like of shape (n_samples,)
        Their integer class labels (colours).
    path : str or os.PathLike, optional
        Where to save the figure.
    ax : matplotlib.axes.Axes, optional
        Draw into these axes (e.g. one panel of a larger figure) instead of a new figure.
    resolution : int, default=200
        Grid points per axis.
    padding : float, default=0.25
    title : str, optional
    dpi : int, default=120

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    With one output (a sigmoid, or a linear output trained with MSE on 0/1 targets) the
    shading is that output and the boundary is where it crosses 0.5. With two outputs
    the shading is the probability of class 1; with more, each region takes the colour
    of its predicted class.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx import MLP
    >>> from mlpx.plotting import plot_decision_boundary
    >>> from mlpx.toy import make_moons
    >>> X, y = make_moons(60, seed=0)
    >>> model = MLP([2, 8, 2], seed=0)
    >>> _ = model.fit(X, y, epochs=2, verbose=0)
    >>> fig = plot_decision_boundary(model, X, y, resolution=20)
    >>> fig.axes[0].get_xlabel()
    '$x_1$'
    """
    Figure = _require_matplotlib()
    from matplotlib.colors import ListedColormap

    from ._backend import to_numpy

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError("The 'X' parameter of plot_decision_boundary must be of shape "
                         f"(n_samples, 2). Got shape {X.shape} instead.")
    if y.shape != (X.shape[0],):
        raise ValueError("The 'y' parameter of plot_decision_boundary must be of shape "
                         f"({X.shape[0]},). Got shape {y.shape} instead.")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or resolution < 2:
        raise ValueError("The 'resolution' parameter of plot_decision_boundary must be an "
                         f"int >= 2. Got {resolution!r} instead.")
    lo, hi = X.min(axis=0), X.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    lo, hi = lo - padding * span, hi + padding * span
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    out = to_numpy(model.predict_proba(grid)).astype(np.float64)
    k = out.shape[1]

    if ax is None:
        fig = Figure(figsize=(4.8, 4.2), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    n_classes = max(int(y.max()) + 1 if y.size else 0, k, 2)
    colors = [_COLORS[i % len(_COLORS)] for i in range(n_classes)]
    if k <= 2:
        score = (out[:, 0] if k == 1 else out[:, 1]).reshape(gx.shape)
        fill = ax.contourf(gx, gy, np.clip(score, 0.0, 1.0), levels=np.linspace(0, 1, 11),
                           cmap="RdBu_r", alpha=0.6)
        ax.contour(gx, gy, score, levels=[0.5], colors="k", linewidths=1.2)
        fig.colorbar(fill, ax=ax, label="output" if k == 1 else "P(class 1)")
    else:
        pred = out.argmax(axis=1).reshape(gx.shape)
        ax.contourf(gx, gy, pred, levels=np.arange(k + 1) - 0.5,
                    cmap=ListedColormap(colors[:k]), alpha=0.35)
        ax.contour(gx, gy, pred, levels=np.arange(k) + 0.5, colors="k", linewidths=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=[colors[int(c) % len(colors)] for c in y], s=18,
               edgecolors="k", linewidths=0.5)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    _save(fig, path, dpi)
    return fig
