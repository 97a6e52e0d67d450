"""Shared fixtures: the backend matrix every test runs over.

``MLPX_BACKENDS=numpy,cupy pytest`` narrows the set. CuPy tests carry the ``gpu``
marker and are skipped (not failed) unless a CUDA device answers.
"""

import os

import numpy as np
import pytest

from mlpx import _backend

ALL_BACKENDS = ("numpy", "array_api_strict", "cupy")


def _selected():
    env = os.environ.get("MLPX_BACKENDS")
    if not env:
        return ALL_BACKENDS
    names = tuple(n.strip() for n in env.split(",") if n.strip())
    unknown = set(names) - set(ALL_BACKENDS)
    if unknown:
        raise pytest.UsageError(
            f"MLPX_BACKENDS names unknown backends {sorted(unknown)}; valid: {ALL_BACKENDS}"
        )
    return names


def _params():
    params = []
    for name in _selected():
        marks = []
        if name == "cupy":
            marks = [
                pytest.mark.gpu,
                pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device"),
            ]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=_params())
def backend(request):
    """A resolved :class:`mlpx._backend.Backend` (numpy, array_api_strict, cupy)."""
    return _backend.resolve_backend(request.param)


@pytest.fixture
def xp(backend):
    """The Array API namespace of the ``backend`` fixture."""
    return backend.xp


@pytest.fixture
def rng():
    return np.random.default_rng(0)
