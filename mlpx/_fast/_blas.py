"""General matrix products through the BLAS that NumPy itself is linked against.

NumPy's ``matmul`` computes ``C = A @ B`` only. BLAS ``gemm`` computes
``C = alpha * op(A) @ op(B) + beta * C``, which lets a training step fold work into the
product that would otherwise be a separate pass over memory:

- ``beta=1`` accumulates into ``C``: a weight update ``W -= lr * X.T @ dZ`` becomes one
  call (``alpha=-lr``), and a bias pre-filled into the output is added for free;
- ``alpha`` scales the product at no cost (the learning rate, a loss normalisation).

The BLAS is found in the current process: on Linux, the OpenBLAS that NumPy loaded (read
from ``/proc/self/maps``, restricted to NumPy's own directories), elsewhere the OpenBLAS
bundled in NumPy's wheel directory. Loading a library that is already loaded returns the
same handle, so the products share NumPy's thread pool; a second BLAS (SciPy's, say)
would start a second pool whose threads fight NumPy's for the cores. Only symbols whose
integer width is known from their name are used (``*64_``: 64-bit ILP64 integers), and
the binding is checked against ``numpy.matmul`` once before it is trusted. When anything
is missing, :func:`gemm` falls back to ``numpy.matmul`` plus NumPy arithmetic, which
gives the same values up to rounding.

Set the environment variable ``MLPX_NUMPY_BLAS=0`` to never use the binding.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys

import numpy as np

__all__ = ["gemm", "can_gemm", "raw", "available", "library_path", "set_enabled"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# symbol name -> integer type of its size arguments (known from the name only)
_SYMBOLS = (
    ("scipy_cblas_{p}gemm64_", ctypes.c_int64),
    ("cblas_{p}gemm64_", ctypes.c_int64),
)


class _Binding:
    def __init__(self, path, sgemm, dgemm):
        self.path = path
        self.fn = {np.dtype(np.float32): sgemm, np.dtype(np.float64): dgemm}


def _numpy_dirs():
    base = os.path.dirname(os.path.abspath(np.__file__))
    return [base, base + ".libs", os.path.join(base, ".dylibs")]


def _candidates():
    dirs = _numpy_dirs()
    found = []
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as fh:
                for line in fh:
                    parts = line.split(None, 5)
                    if len(parts) == 6:
                        path = parts[5].strip()
                        if "openblas" in os.path.basename(path).lower() and any(
                                path.startswith(d + os.sep) for d in dirs):
                            if path not in found:
                                found.append(path)
        except OSError:  # pragma: no cover - no procfs
            pass
        return found
    for d in dirs:  # pragma: no cover - macOS / Windows wheels
        for pattern in ("*openblas*.so*", "*openblas*.dylib", "*openblas*.dll"):
            for path in sorted(glob.glob(os.path.join(d, pattern))):
                if path not in found:
                    found.append(path)
    return found


def _bind(path):
    try:
        lib = ctypes.CDLL(path)
    except OSError:  # pragma: no cover - depends on the wheel
        return None
    for pattern, int_t in _SYMBOLS:
        fns = []
        for p, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
            fn = getattr(lib, pattern.format(p=p), None)
            if fn is None:
                break
            fn.restype = None
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t,
                           real, ctypes.c_void_p, int_t, ctypes.c_void_p, int_t, real,
                           ctypes.c_void_p, int_t]
            fns.append(fn)
        if len(fns) == 2:
            return _Binding(path, *fns)
    return None


def _probe(binding) -> bool:
    """Check the binding against numpy.matmul on small awkward shapes (all four transposes)."""
    rng = np.random.default_rng(12345)
    for dtype in (np.float32, np.float64):
        a: np.ndarray = rng.standard_normal((7, 5)).astype(dtype)
        b: np.ndarray = rng.standard_normal((5, 3)).astype(dtype)
        c0: np.ndarray = rng.standard_normal((7, 3)).astype(dtype)
        for ta in (False, True):
            for tb in (False, True):
                aa = np.ascontiguousarray(a.T) if ta else a
                bb = np.ascontiguousarray(b.T) if tb else b
                c = c0.copy()
                _call(binding, aa.T if ta else aa, bb.T if tb else bb, c, 0.5, -2.0)
                expect = 0.5 * (a @ b) - 2.0 * c0
                if not np.allclose(c, expect, rtol=1e-4, atol=1e-4):
                    return False
    return True


_binding = None
_enabled = os.environ.get("MLPX_NUMPY_BLAS", "1").strip().lower() not in ("0", "false", "no")
_resolved = False


def _resolve():
    global _binding, _resolved
    _resolved = True
    for path in _candidates():
        b = _bind(path)
        if b is not None:
            try:
                ok = _probe(b)
            except Exception:  # pragma: no cover - defensive: never trust a broken binding
                ok = False
            if ok:
                _binding = b
                return


def available() -> bool:
    """True when the BLAS binding is found, verified and enabled."""
    if not _resolved:
        _resolve()
    return _enabled and _binding is not None


def library_path():
    """Path of the bound BLAS library, or None."""
    return _binding.path if available() else None


def set_enabled(flag: bool) -> bool:
    """Turn the binding on or off (for tests and benchmarks); return the previous setting."""
    global _enabled
    old = _enabled
    _enabled = bool(flag)
    return old


def _layout(a):
    """(is_transposed, leading dimension) of a 2-D array BLAS can read, or None."""
    item = a.itemsize
    s0, s1 = a.strides
    if s1 == item and s0 >= max(1, a.shape[1]) * item and s0 % item == 0:
        return False, s0 // item
    if s0 == item and s1 >= max(1, a.shape[0]) * item and s1 % item == 0:
        return True, s1 // item
    return None


def _call(binding, a, b, c, alpha, beta, la=None, lb=None):
    m, k = a.shape
    ta, lda = la or _layout(a)
    tb, ldb = lb or _layout(b)
    binding.fn[c.dtype](_ROW_MAJOR, _TRANS if ta else _NO_TRANS, _TRANS if tb else _NO_TRANS,
                        m, b.shape[1], k, alpha, a.ctypes.data, lda, b.ctypes.data, ldb,
                        beta, c.ctypes.data, c.strides[0] // c.itemsize)


def raw(dtype):
    """The bound ``?gemm`` for ``dtype`` (call :func:`available` first), for callers that
    keep their own data pointers: ``fn(101, ta, tb, m, n, k, alpha, pa, lda, pb, ldb,
    beta, pc, ldc)`` with ``ta``/``tb`` 111 (as is) or 112 (transposed), row-major."""
    return _binding.fn[np.dtype(dtype)]


def can_gemm(a, b, c) -> bool:
    """True when :func:`gemm` on these arrays is one BLAS call (which allocates nothing),
    False when it would take the NumPy fallback."""
    binding = _binding if available() else None
    return bool(binding is not None and a.dtype == b.dtype == c.dtype and c.dtype in binding.fn
                and c.flags.c_contiguous and c.flags.writeable and a.size and b.size
                and _layout(a) is not None and _layout(b) is not None)


def gemm(a, b, c, *, alpha=1.0, beta=0.0):
    """``c[...] = alpha * (a @ b) + beta * c`` in place; return ``c``.

    Parameters
    ----------
    a : ndarray of shape (m, k)
    b : ndarray of shape (k, n)
        Transposed views (``x.T``) are passed to BLAS as transposed, never copied.
    c : ndarray of shape (m, n), C-contiguous and writeable
    alpha, beta : float

    Notes
    -----
    Without the BLAS binding (or for inputs it cannot take) this computes
    ``np.matmul(a, b)`` into a scratch array and combines with NumPy arithmetic: the
    same result up to rounding. With ``beta=0`` the old contents of ``c`` are ignored
    (NaN included), as BLAS specifies.
    """
    if a.shape[1] != b.shape[0] or c.shape != (a.shape[0], b.shape[1]):
        raise ValueError(f"gemm shapes do not agree: {a.shape} @ {b.shape} -> {c.shape}")
    if available() and a.dtype == b.dtype == c.dtype and c.dtype in _binding.fn \
            and c.flags.c_contiguous and c.flags.writeable and a.size and b.size:
        la, lb = _layout(a), _layout(b)
        if la is not None and lb is not None:
            _call(_binding, a, b, c, float(alpha), float(beta), la, lb)
            return c
    if beta == 0.0:
        np.matmul(a, b, out=c)
        if alpha != 1.0:
            c *= alpha
        return c
    prod = np.matmul(a, b)
    if alpha != 1.0:
        prod *= alpha
    if beta != 1.0:
        c *= beta
    c += prod
    return c
