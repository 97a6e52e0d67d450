"""The golden runs of ``tests/golden_cases.py`` reproduce bit for bit on NumPy.

``tests/data/golden.npz`` was recorded by ``tools/make_golden.py`` before the training
engine was reworked; every fit, optimizer, schedule, dropout, early stopping, sample
weight, checkpoint-and-resume and scikit-learn estimator case must give exactly the same
parameters and loss curves today.
"""

import os

import numpy as np
import pytest

from tests.golden_cases import CASES

pytest.importorskip("sklearn")

_PATH = os.path.join(os.path.dirname(__file__), "data", "golden.npz")


@pytest.fixture(scope="module")
def golden():
    with np.load(_PATH) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_run_is_bitwise_identical(case, golden):
    expected = {k.split("/", 1)[1]: v for k, v in golden.items() if k.startswith(case + "/")}
    assert expected, f"no golden arrays recorded for {case!r}"
    got = CASES[case]()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        actual = np.asarray(got[key])
        assert actual.dtype == value.dtype, (case, key)
        assert actual.shape == value.shape, (case, key, actual.shape, value.shape)
        # bitwise: compare the raw bytes (NaN == NaN, -0.0 != 0.0)
        assert actual.tobytes() == value.tobytes(), (
            f"{case}/{key} differs: max |diff| "
            f"{np.max(np.abs(actual.astype(np.float64) - value.astype(np.float64)))}")
