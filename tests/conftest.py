"""Shared fixtures: the backend matrix every test runs over.

``MLPX_BACKENDS=numpy,torch pytest`` narrows the set (valid names: :data:`ALL_BACKENDS`).
A library that is not installed skips its parameters with a reason (``pip install -e
'.[test]'`` installs all of them but CuPy). CuPy tests carry the ``gpu`` marker and are
skipped (not failed) unless a CUDA device answers. PyTorch and JAX run on their CPU
device here; JAX with ``jax_enable_x64`` switched on by the fixture (float64 tests).
"""

import importlib.util
import os

import numpy as np
import pytest

from mlpx import _backend

ALL_BACKENDS = ("numpy", "array_api_strict", "torch", "jax", "dask", "cupy")

#: What a plain ``python -m pytest`` runs. JAX (compiles every new shape) and Dask (builds
#: a task graph per operation) take 17 and 28 minutes for the backend-parametrised tests
#: on the 2-core CI machine, so they run when named: ``MLPX_BACKENDS=jax,dask``.
#: ``.ci/run`` runs the cross-backend files on them (see CONTRIBUTING.md).
DEFAULT_BACKENDS = ("numpy", "array_api_strict", "torch", "cupy")

#: The module each backend needs (skip with a reason when it is not importable).
_NEEDS = {"array_api_strict": "array_api_strict", "torch": "torch", "jax": "jax",
          "dask": "dask.array"}


def _selected():
    env = os.environ.get("MLPX_BACKENDS")
    if not env:
        return DEFAULT_BACKENDS
    names = tuple(n.strip() for n in env.split(",") if n.strip())
    unknown = set(names) - set(ALL_BACKENDS)
    if unknown or not names:
        raise pytest.UsageError(
            f"MLPX_BACKENDS names unknown backends {sorted(unknown)}; valid: "
            f"{list(ALL_BACKENDS)} (comma-separated, e.g. MLPX_BACKENDS=numpy,torch)."
        )
    return names


def library_installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # the parent package is missing
        return False


def _params():
    params = []
    for name in _selected():
        marks = []
        if name == "cupy":
            marks = [
                pytest.mark.gpu,
                pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device"),
            ]
        elif name in _NEEDS and not library_installed(_NEEDS[name]):
            marks = [pytest.mark.skip(reason=f"{name} is not installed (pip install -e "
                                             "'.[test]' installs it)")]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def enable_jax_x64():
    """Let JAX create float64 arrays (its default is float32 only); process-wide."""
    import jax

    jax.config.update("jax_enable_x64", True)


@pytest.fixture(params=_params())
def backend(request):
    """A resolved :class:`mlpx._backend.Backend`: numpy, array_api_strict, torch (CPU),
    jax (CPU, float64 enabled), dask or cupy."""
    if request.param == "jax":
        enable_jax_x64()
    return _backend.resolve_backend(request.param)


@pytest.fixture
def xp(backend):
    """The Array API namespace of the ``backend`` fixture."""
    return backend.xp


@pytest.fixture
def rng():
    return np.random.default_rng(0)
