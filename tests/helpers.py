"""Test helpers: the one place where results are compared (and converted to NumPy)."""

import numpy as np

from mlpx import _backend


def assert_array(actual, expected=None, *, backend=None, dtype=None, shape=None,
                 rtol=1e-6, atol=0.0):
    """Check namespace, dtype and shape of ``actual`` and, if given, its values.

    Parameters
    ----------
    actual : array
        The array under test; it must belong to ``backend`` when that is given.
    expected : array_like, optional
        Reference values (any namespace; converted to NumPy here).
    backend : Backend, optional
    dtype : str, optional
        "float32", "float64", ... compared by name.
    shape : tuple, optional
    """
    if backend is not None:
        got = _backend.backend_of(actual).name
        assert got == backend.name, f"array is on backend {got!r}, expected {backend.name!r}"
    a = _backend.to_numpy(actual)
    if dtype is not None:
        assert a.dtype.name == str(dtype), f"dtype {a.dtype.name}, expected {dtype}"
    if shape is not None:
        assert a.shape == tuple(shape), f"shape {a.shape}, expected {tuple(shape)}"
    if expected is not None:
        e = _backend.to_numpy(expected)
        if shape is None:
            assert a.shape == e.shape, f"shape {a.shape}, expected {e.shape}"
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def numerical_grad(f, x, eps=1e-6):
    """Central finite differences of scalar ``f`` at NumPy float64 array ``x``."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def run_and_kill(code, args, *, cwd, timeout=300):
    """Run ``python -c code *args``, wait for it to print "ready", then SIGKILL it.

    Returns the child's return code (``-SIGKILL`` when the kill landed).
    """
    import os
    import signal
    import subprocess
    import sys
    import threading

    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        watchdog.cancel()
        proc.kill()
    return proc.returncode


def params_np(model):
    """Copies of a model's parameters as NumPy arrays."""
    return [_backend.to_numpy(p).copy() for p in model.params]
