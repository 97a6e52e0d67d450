"""Tests for mlpx.data.preprocessing: scale, standardize, one_hot."""

from __future__ import annotations

import numpy as np
import pytest

from mlpx.datasets import one_hot, scale, standardize


def test_scale():
    X = np.array([[0, 128, 255]], dtype=np.uint8)
    out = scale(X)
    assert out.dtype == np.float32 and out.shape == (1, 3)
    np.testing.assert_allclose(out, [[0.0, 128 / 255, 1.0]], rtol=1e-7)
    assert scale(X, dtype="float64").dtype == np.float64
    assert X[0, 1] == 128  # input untouched
    with pytest.raises(ValueError, match="'dtype' parameter of scale"):
        scale(X, dtype="int32")


def test_standardize_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    X_tr = rng.integers(0, 256, size=(200, 5)).astype(np.uint8)
    X_tr[:, 2] = 9  # constant feature
    X_te = rng.integers(0, 256, size=(50, 5)).astype(np.uint8)
    Z_tr, Z_te = standardize(X_tr, X_te)
    assert Z_tr.dtype == np.float32 and Z_te.dtype == np.float32
    np.testing.assert_allclose(Z_tr.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z_tr.std(axis=0), [1, 1, 0, 1, 1], atol=1e-5)
    mu, sd = X_tr.mean(axis=0), X_tr.std(axis=0)
    sd[2] = 1
    np.testing.assert_allclose(Z_te, (X_te - mu) / sd, rtol=1e-5, atol=1e-5)
    # test data alone would give other numbers: the test set's statistics are unused
    assert not np.allclose(Z_te.mean(axis=0), 0, atol=1e-3)
    assert standardize(X_tr.astype(np.float64)).dtype == np.float64
    assert standardize(X_tr, dtype="float64").dtype == np.float64
    with pytest.raises(ValueError, match="per-sample shape"):
        standardize(X_tr, X_te[:, :4])
    with pytest.raises(ValueError, match="at least one sample"):
        standardize(np.zeros((0, 3)))


def test_one_hot():
    out = one_hot(np.array([2, 0, 1, 2]))
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[[2, 0, 1, 2]])
    assert one_hot([1], n_classes=4, dtype="float64").tolist() == [[0.0, 1.0, 0.0, 0.0]]
    assert one_hot(np.array([], dtype=np.int64), n_classes=3).shape == (0, 3)
    for bad, kwargs, words in [
        ([0.0, 1.0], {}, "array of integers"),
        ([[0, 1]], {}, "1-dimensional"),
        ([0, 3], {"n_classes": 3}, r"labels in \[0, 2\]"),
        ([-1, 0], {}, r"labels in \[0, 0\]"),
        ([0], {"n_classes": 0}, "int >= 1"),
        (np.array([], dtype=np.int64), {}, "must be given when y is empty"),
    ]:
        with pytest.raises(ValueError, match=words):
            one_hot(bad, **kwargs)
