"""mlpx.toy: the XOR, two-moons and spirals generators."""

import numpy as np
import pytest

from mlpx import InvalidParameterError
from mlpx.toy import make_moons, make_spirals, make_xor


def test_xor_is_the_truth_table_and_noise_is_seeded():
    X, y = make_xor()
    assert X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and y.tolist() == [0, 1, 1, 0]
    a, b = make_xor(40, noise=0.1, seed=3), make_xor(40, noise=0.1, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], make_xor(40, noise=0.1, seed=4)[0])


@pytest.mark.parametrize("make,kw,counts", [
    (make_moons, dict(n_samples=101), [51, 50]),
    (make_spirals, dict(n_samples=100, n_classes=3), [34, 33, 33]),
])
def test_shapes_and_class_counts(make, kw, counts):
    X, y = make(**kw, seed=np.random.default_rng(0))
    assert X.shape == (sum(counts), 2) and X.dtype == np.float64
    assert np.bincount(y).tolist() == counts


@pytest.mark.parametrize("call,message", [
    (lambda: make_xor(3), "'n_samples' parameter of make_xor must be an int >= 4"),
    (lambda: make_moons(noise=-1.0), "'noise' parameter of make_moons must be a float >= 0"),
    (lambda: make_spirals(turns=0), "'turns' parameter of make_spirals must be a float > 0"),
    (lambda: make_spirals(2, n_classes=3), "'n_samples' parameter of make_spirals must be "
                                           "an int >= 3"),
    (lambda: make_spirals(seed="x"), "'seed' parameter of make_spirals must be an int, a "
                                     "numpy.random.Generator or None"),
    (lambda: make_moons(n_samples=True), "'n_samples' parameter of make_moons"),
])
def test_bad_parameters_name_what_is_expected(call, message):
    with pytest.raises(InvalidParameterError, match=message):
        call()
