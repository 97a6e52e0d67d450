"""mlpx: multilayer perceptrons on any Array API backend (NumPy, CuPy, array-api-strict)."""

from ._backend import to_numpy, resolve_backend, BACKENDS

__version__ = "0.1.0"

__all__ = ["to_numpy", "resolve_backend", "BACKENDS", "__version__"]
