"""Toy data generators and the plots (training curves, decision boundaries)."""

import sys

import numpy as np
import pytest

from mlpx import MLP
from mlpx.toy import make_moons, make_spirals, make_xor

PNG = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------- toy data
@pytest.mark.parametrize("make, kwargs, n, k", [
    (make_xor, {"n_samples": 10, "noise": 0.1}, 10, 2),
    (make_moons, {"n_samples": 101}, 101, 2),
    (make_spirals, {"n_samples": 302, "n_classes": 4}, 302, 4),
])
def test_generators_shapes_labels_and_determinism(make, kwargs, n, k):
    X, y = make(**kwargs, seed=7)
    assert X.shape == (n, 2) and X.dtype == np.float64
    assert y.shape == (n,) and y.dtype == np.int64
    counts = np.bincount(y, minlength=k)
    assert len(counts) == k and counts.max() - counts.min() <= 1  # balanced classes
    X2, y2 = make(**kwargs, seed=7)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    X3, _ = make(**kwargs, seed=8)
    assert not np.array_equal(X, X3)
    X4, y4 = make(**kwargs, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(X, X4)


def test_xor_is_the_truth_table():
    X, y = make_xor()
    np.testing.assert_array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(y, [0, 1, 1, 0])
    X, y = make_xor(40, noise=0.05, seed=0)
    corners = np.round(X)
    np.testing.assert_array_equal(y, (corners[:, 0] != corners[:, 1]).astype(int))


def test_noise_free_moons_and_spirals_lie_on_their_curves():
    X, y = make_moons(50, noise=0.0, seed=0)
    top, bottom = X[y == 0], X[y == 1]
    np.testing.assert_allclose(np.hypot(*top.T), 1.0)
    np.testing.assert_allclose(np.hypot(bottom[:, 0] - 1.0, bottom[:, 1] - 0.5), 1.0)
    X, y = make_spirals(90, n_classes=3, noise=0.0, seed=0)
    assert np.all(np.hypot(*X.T) <= 1.0 + 1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: make_xor(3), "'n_samples' parameter of make_xor must be an int >= 4"),
    (lambda: make_moons(1), "'n_samples' parameter of make_moons must be an int >= 2"),
    (lambda: make_moons(10, noise=-1), "'noise' parameter of make_moons must be a float"),
    (lambda: make_spirals(10, n_classes=1), "'n_classes' parameter of make_spirals"),
    (lambda: make_spirals(2, n_classes=3), "'n_samples' parameter of make_spirals"),
    (lambda: make_spirals(10, turns=0), "'turns' parameter of make_spirals"),
    (lambda: make_moons(10, seed="x"), "'seed' parameter"),
])
def test_generators_reject_bad_parameters(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------- plots
def test_missing_matplotlib_names_the_extra(monkeypatch):
    from mlpx import plotting

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'mlpx\[plot\]'"):
        plotting.plot_history({"loss": [1.0]})


def test_plot_history_from_fit_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from mlpx.plotting import plot_history

    X, y = make_moons(80, seed=0)
    model = MLP([2, 8, 2], seed=0)
    history = model.fit(X, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    path = tmp_path / "curves.png"
    fig = plot_history(history, path, title="moons")
    assert path.read_bytes()[:8] == PNG
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["train", "validation"]
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), history["loss"])
    np.testing.assert_allclose(acc_ax.lines[1].get_ydata(), history["val_accuracy"])
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [1, 2, 3])


def test_plot_history_loss_only_and_bad_input():
    pytest.importorskip("matplotlib")
    from mlpx.plotting import plot_history

    fig = plot_history({"loss": [3.0, 2.0]})
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="'history' parameter of plot_history"):
        plot_history({"accuracy": [0.5]})


@pytest.mark.parametrize("n_out, loss", [(1, "binary_cross_entropy"), (2, "cross_entropy"),
                                         (3, "cross_entropy")])
def test_plot_decision_boundary_writes_a_png(tmp_path, n_out, loss):
    pytest.importorskip("matplotlib")
    from mlpx.plotting import plot_decision_boundary

    if n_out == 3:
        X, y = make_spirals(60, n_classes=3, seed=0)
    else:
        X, y = make_moons(60, seed=0)
    model = MLP([2, 8, n_out], loss=loss, seed=0)
    model.fit(X, y if n_out > 1 else y.astype(float), epochs=2, verbose=0)
    path = tmp_path / "boundary.png"
    fig = plot_decision_boundary(model, X, y, path, resolution=25, title="t")
    assert path.read_bytes()[:8] == PNG
    ax = fig.axes[0]
    assert ax.get_title() == "t"
    lo, hi = X.min(axis=0), X.max(axis=0)
    assert ax.get_xlim()[0] < lo[0] and ax.get_xlim()[1] > hi[0]
    assert len(ax.collections) >= 2  # filled regions and the scattered points


def test_plot_decision_boundary_into_given_axes_and_errors():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from mlpx.plotting import plot_decision_boundary

    X, y = make_xor(8)
    model = MLP([2, 4, 2], seed=0)
    model.fit(X, y, epochs=1, verbose=0)
    fig = Figure()
    axes = fig.subplots(1, 2)
    assert plot_decision_boundary(model, X, y, ax=axes[1], resolution=10) is fig
    assert axes[1].get_xlabel() == "$x_1$" and axes[0].get_xlabel() == ""
    with pytest.raises(ValueError, match="must be of shape \\(n_samples, 2\\)"):
        plot_decision_boundary(model, np.zeros((4, 3)), y[:4])
    with pytest.raises(ValueError, match="'y' parameter"):
        plot_decision_boundary(model, X, y[:3])
    with pytest.raises(ValueError, match="'resolution' parameter"):
        plot_decision_boundary(model, X, y, resolution=1)
