"""Backend resolution: the only module that knows NumPy, CuPy and array-api-strict by name.

Everything else in mlpx receives an Array API namespace ``xp`` (and a ``device``) that
was resolved here once, at a public entry point, and passes it down as a keyword-only
argument.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

__all__ = [
    "Backend",
    "resolve_backend",
    "backend_of",
    "array_namespace",
    "to_numpy",
    "to_device",
    "is_numpy_namespace",
    "is_cupy_namespace",
    "is_jax_namespace",
    "scatter_add_rows",
    "host_rng",
    "resolve_dtype",
    "dtype_name",
    "eps",
    "synchronize",
    "device_name",
    "BACKENDS",
    "CudaUnavailableError",
    "cuda_probe",
    "cuda_unavailable_reason",
    "reset_cuda_probe",
    "require_cuda",
    "cuda_available",
    "device_scope",
    "noise_rng",
    "DeviceNoiseRng",
]

#: Backend names accepted by ``backend=`` (a namespace module is accepted too).
BACKENDS = ("numpy", "cupy", "array_api_strict")

_FLOAT_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Backend:
    """A resolved backend: an Array API namespace plus the device arrays live on.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"cupy"``, ``"array_api_strict"`` or the namespace's module name.
    xp : module
        The Array API compatible namespace (``array_api_compat.numpy`` for NumPy).
    device : object
        The device every array of a model on this backend is created on.
    """

    name: str
    xp: ModuleType
    device: Any

    def __reduce__(self):
        # Namespaces are modules and cannot be pickled: rebuild from the name.
        return (resolve_backend, (self.name,))


# ---------------------------------------------------------------------- CUDA probe
_INSTALL_CUPY = ("Install CuPy with the extra that matches the CUDA version of your NVIDIA "
                 "driver (nvidia-smi shows it): pip install 'mlpx[cuda12]' or pip install "
                 "'mlpx[cuda13]'.")
_INSTALL_CTK = ("Install the CUDA libraries CuPy loads at run time (cuBLAS, NVRTC and the "
                "CUDA headers): pip install 'mlpx[cuda12]' or 'mlpx[cuda13]' brings them as "
                "cupy-cuda12x[ctk] / cupy-cuda13x[ctk]; with an older CuPy wheel, install "
                "that [ctk] extra or a CUDA Toolkit of the same major version.")


class CudaUnavailableError(RuntimeError, ImportError):
    """``backend='cupy'`` cannot compute on this machine; the message says what to install.

    One error for every missing piece (no CuPy; CuPy without an NVIDIA driver or GPU;
    CuPy and a driver without cuBLAS, NVRTC or the CUDA headers). It is both a
    RuntimeError and an ImportError, so code that caught either before still does.
    """


def cuda_probe(import_module: Any = None) -> str | None:
    """Prove that CuPy computes on this machine; return None if it does, else why not.

    Imports CuPy and ``cupy.cublas``, counts the devices, creates a cuBLAS handle, runs a
    cuBLAS product, compiles and runs an element-wise kernel and a reduction (NVRTC and
    CuPy's CUDA headers) on the current device, and reads the result back. Not cached:
    :func:`cuda_unavailable_reason` caches it for the process.

    Parameters
    ----------
    import_module : callable, optional
        ``importlib.import_module`` (the default); tests pass stand-ins.

    Returns
    -------
    str or None
        The one message of :class:`CudaUnavailableError`: what failed and what to
        install.
    """
    imp = importlib.import_module if import_module is None else import_module
    head = "backend='cupy' cannot run on this machine: "
    try:
        cupy = imp("cupy")
    except ImportError as exc:
        return f"{head}CuPy is not installed ({exc}). {_INSTALL_CUPY}"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError, or a CuPy built without a driver stub
        return (f"{head}CuPy is installed but no CUDA device answers ({type(exc).__name__}: "
                f"{exc}). Install the NVIDIA driver (nvidia-smi must list the GPU), or use "
                "backend='numpy'.")
    if n < 1:
        return (f"{head}CuPy is installed but the driver reports no CUDA device. Install "
                "the NVIDIA driver (nvidia-smi must list the GPU), or use backend='numpy'.")
    expect = np.array([[7.0, 10.0], [15.0, 22.0]], dtype=np.float32)
    try:
        imp("cupy.cublas")
        cupy.cuda.device.get_cublas_handle()
        a = cupy.asarray(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
        prod = cupy.matmul(a, a)
        cupy.cuda.runtime.deviceSynchronize()
    except Exception as exc:
        return (f"{head}CuPy sees {n} GPU(s) but cannot use cuBLAS ({type(exc).__name__}: "
                f"{exc}). {_INSTALL_CTK}")
    try:
        kernel = cupy.ElementwiseKernel("float32 x", "float32 y", "y = 2 * x + 1",
                                        "mlpx_cuda_probe")
        total = float(kernel(prod).sum())  # compiled by NVRTC, read back to the host
    except Exception as exc:
        return (f"{head}CuPy sees {n} GPU(s) but cannot compile a CUDA kernel "
                f"({type(exc).__name__}: {exc}). {_INSTALL_CTK}")
    if total != float(np.sum(2 * expect + 1)):
        return (f"{head}a test computation on the GPU gave {total} instead of "
                f"{float(np.sum(2 * expect + 1))}. Please report this with the output of "
                "`python -c 'import cupy; cupy.show_config()'`.")
    return None


_CUDA_REASON: list[str | None] = []


def cuda_unavailable_reason() -> str | None:
    """Why ``backend='cupy'`` cannot run here (a message), or None when it can.

    The :func:`cuda_probe` of the first call, kept for the process (call
    :func:`reset_cuda_probe` to probe again).
    """
    if not _CUDA_REASON:
        _CUDA_REASON.append(cuda_probe())
    return _CUDA_REASON[0]


def reset_cuda_probe() -> None:
    """Forget the cached result of :func:`cuda_unavailable_reason`."""
    _CUDA_REASON.clear()


def require_cuda() -> ModuleType:
    """Return the ``cupy`` module once :func:`cuda_probe` proved it works.

    Raises
    ------
    CudaUnavailableError
        With the probe's message (what failed, what to install).
    """
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise CudaUnavailableError(reason)
    return importlib.import_module("cupy")


def cuda_available() -> bool:
    """True when CuPy computes on a CUDA device here (:func:`cuda_probe` passed)."""
    return cuda_unavailable_reason() is None


_NO_SCOPE = contextlib.nullcontext()  # reusable


def device_scope(backend: Backend) -> contextlib.AbstractContextManager:
    """Context manager: make ``backend``'s device CuPy's current device inside.

    CuPy launches kernels and cuBLAS products on its *current* device, whatever device
    the arrays live on; wrap everything that computes for a model (fit, predict, a
    training step) in this. A no-op for NumPy and every other backend.

    Examples
    --------
    >>> from mlpx._backend import device_scope, resolve_backend
    >>> with device_scope(resolve_backend("numpy")):
    ...     pass
    """
    if backend.name == "cupy":
        return backend.device
    return _NO_SCOPE


def resolve_backend(backend: Any = "numpy") -> Backend:
    """Resolve a backend name or namespace module into a :class:`Backend`.

    Parameters
    ----------
    backend : {"numpy", "cupy", "array_api_strict"}, module or Backend, default="numpy"
        The array library to compute with. A module must be an Array API namespace
        (anything :func:`array_api_compat.array_namespace` recognises).

    Returns
    -------
    Backend

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    CudaUnavailableError
        ``"cupy"`` where CuPy cannot compute (not installed, no driver or GPU, no cuBLAS,
        NVRTC or CUDA headers): one message that names what to install. It is a
        RuntimeError and an ImportError.

    Examples
    --------
    >>> from mlpx._backend import resolve_backend
    >>> resolve_backend("numpy").name
    'numpy'
    """
    if isinstance(backend, Backend):
        return backend
    if backend is None:
        backend = "numpy"
    if isinstance(backend, str):
        key = backend.lower().replace("-", "_")
        if key in ("numpy", "np"):
            xp = array_api_compat.array_namespace(np.empty(0))
            return Backend("numpy", xp, "cpu")
        if key == "cupy":
            cupy = require_cuda()
            xp = array_api_compat.array_namespace(cupy.empty(0))
            return Backend("cupy", xp, cupy.cuda.Device())
        if key in ("array_api_strict", "strict"):
            try:
                strict = importlib.import_module("array_api_strict")
            except ImportError as exc:
                raise ImportError(
                    "backend='array_api_strict' needs the array-api-strict package: "
                    "pip install 'mlpx[test]'."
                ) from exc
            x = strict.asarray(0.0)
            return Backend("array_api_strict", strict, x.device)
        raise ValueError(
            f"The 'backend' parameter must be one of {list(BACKENDS)} or an Array API "
            f"namespace module. Got {backend!r} instead."
        )
    if isinstance(backend, ModuleType):
        name = backend.__name__
        if name in ("numpy", "array_api_compat.numpy"):
            return resolve_backend("numpy")
        if name in ("cupy", "array_api_compat.cupy"):
            return resolve_backend("cupy")
        if name == "array_api_strict":
            return resolve_backend("array_api_strict")
        if not hasattr(backend, "asarray") or not hasattr(backend, "matmul"):
            raise ValueError(
                f"The 'backend' parameter must be an Array API namespace; module {name!r} "
                "has no asarray/matmul."
            )
        x = backend.asarray(0.0)
        return Backend(name, array_api_compat.array_namespace(x), array_api_compat.device(x))
    raise ValueError(
        f"The 'backend' parameter must be one of {list(BACKENDS)} or an Array API namespace "
        f"module. Got {backend!r} of type {type(backend).__name__} instead."
    )


def backend_of(x) -> Backend:
    """Return the :class:`Backend` an array belongs to."""
    xp = array_namespace(x)
    return Backend(_namespace_name(xp), xp, array_api_compat.device(x))


def _namespace_name(xp) -> str:
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    return getattr(xp, "__name__", repr(xp))


def array_namespace(*arrays):
    """Return the Array API namespace of ``arrays`` (they must agree)."""
    return array_api_compat.array_namespace(*arrays)


def device_of(x):
    """Return the device an array lives on."""
    return array_api_compat.device(x)


def is_numpy_namespace(xp) -> bool:
    """The predicate that guards every NumPy-specific fast path."""
    return array_api_compat.is_numpy_namespace(xp)


def is_cupy_namespace(xp) -> bool:
    """The predicate that guards every CuPy-specific fast path."""
    return array_api_compat.is_cupy_namespace(xp)


def is_jax_namespace(xp) -> bool:
    """The predicate that guards the compiled JAX step (:mod:`mlpx._fast.jax_step`)."""
    return array_api_compat.is_jax_namespace(xp)


def scatter_add_rows(target, ids, values) -> None:
    """Add ``values[i]`` to row ``ids[i]`` of ``target`` in place, repeated ids summed.

    The backend fast path of an embedding's gradient (the Array API has no scatter-add):
    ``numpy.add.at`` on NumPy, ``cupyx.scatter_add`` on CuPy. Guard a call with
    :func:`is_numpy_namespace` / :func:`is_cupy_namespace`.

    Parameters
    ----------
    target : array of shape (n_rows, dim)
        Written in place.
    ids : integer array of shape (n,)
        Row indices in ``[0, n_rows)``.
    values : array of shape (n, dim)

    Raises
    ------
    TypeError
        For arrays of any other namespace (the portable path is the caller's).
    """
    xp = array_api_compat.array_namespace(target)
    if is_numpy_namespace(xp):
        np.add.at(target, ids, values)
    elif is_cupy_namespace(xp):
        cupyx = importlib.import_module("cupyx")
        cupyx.scatter_add(target, ids, values)
    else:
        raise TypeError("scatter_add_rows has fast paths for NumPy and CuPy arrays only; "
                        f"got an array of {_namespace_name(xp)}.")


def is_host_array(x) -> bool:
    """True for NumPy arrays and plain Python sequences (data on the host)."""
    return isinstance(x, (np.ndarray, np.generic, list, tuple, int, float))


def to_numpy(x) -> np.ndarray:
    """Move an array to the host as a NumPy array (an explicit device->host copy).

    Parameters
    ----------
    x : array of any supported namespace, or array_like

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> import mlpx
    >>> mlpx.to_numpy([1, 2]).tolist()
    [1, 2]
    """
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_array_api_obj(x) and not isinstance(x, np.generic):
        if array_api_compat.is_array_api_strict_namespace(array_namespace(x)):
            # array-api-strict exposes the buffer protocol through DLPack / __array__.
            return np.asarray(np.from_dlpack(x))
        try:
            return np.from_dlpack(x)
        except Exception:
            return np.asarray(x)
    return np.asarray(x)


def to_device(x, *, backend: Backend, dtype=None, copy: bool | None = None):
    """Move host data (NumPy / Python sequences) into ``backend``'s namespace and device.

    Arrays already in the backend's namespace are returned (cast to ``dtype`` if given).
    Arrays from another namespace raise a ValueError that says how to move them.
    """
    xp = backend.xp
    if is_host_array(x):
        arr = np.asarray(x)
        if dtype is not None:
            arr = arr.astype(dtype_name(dtype), copy=False)
        if backend.name == "numpy":
            return arr
        return xp.asarray(arr, device=backend.device, copy=copy)
    if not array_api_compat.is_array_api_obj(x):
        return to_device(np.asarray(x), backend=backend, dtype=dtype)
    other = backend_of(x)
    if other.name != backend.name:
        raise ValueError(
            f"Got an array from the {other.name!r} backend, but this model lives on "
            f"{backend.name!r}. Move the data explicitly: pass mlpx.to_numpy(x) (host "
            "data is moved to the model's device once), or build the model with "
            f"backend={other.name!r}."
        )
    if str(other.device) != str(backend.device):
        raise ValueError(
            f"Got an array on device {other.device!r}, but this model lives on "
            f"{backend.device!r}. Move it with mlpx.to_numpy(x) or to the model's device "
            "first."
        )
    if dtype is not None:
        target = resolve_dtype(dtype, xp)
        if x.dtype != target:
            x = xp.astype(x, target)
    return x


def host_rng(seed=None) -> np.random.Generator:
    """Return a NumPy Generator: mlpx never touches global random state.

    Parameters
    ----------
    seed : None, int, or numpy.random.Generator
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise ValueError(
            f"The 'seed' parameter must be None, an int or a numpy.random.Generator. "
            f"Got {seed!r} instead."
        )
    return np.random.default_rng(seed)


def resolve_dtype(dtype, xp):
    """Return ``xp``'s floating dtype for ``dtype`` ("float32", "float64" or a dtype)."""
    name = dtype_name(dtype)
    return getattr(xp, name)


def dtype_name(dtype) -> str:
    """Return "float32" or "float64" for a dtype spec; raise a ValueError otherwise."""
    if isinstance(dtype, str):
        name = dtype
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = str(dtype).rsplit(".", 1)[-1]
    if name not in _FLOAT_DTYPES:
        raise ValueError(
            f"The 'dtype' parameter must be one of {list(_FLOAT_DTYPES)}. Got {dtype!r} "
            "instead."
        )
    return name


def eps(dtype, xp) -> float:
    """Machine epsilon of ``dtype`` in ``xp`` (never float64's for float32 data)."""
    return float(xp.finfo(dtype).eps)


def synchronize(backend: Backend) -> None:
    """Block until queued device work is done (no-op on CPU backends)."""
    if backend.name == "cupy":  # pragma: no cover - GPU only
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def device_name(backend: Backend) -> str:
    """A human readable device name, e.g. ``"cpu"`` or ``"NVIDIA H100 (cuda:0)"``."""
    if backend.name == "cupy":  # pragma: no cover - GPU only
        import cupy

        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        if isinstance(name, bytes):
            name = name.decode()
        return f"{name} (cuda:{dev.id})"
    return "cpu"


class DeviceNoiseRng:
    """CuPy's device generator for dropout, created on its first draw.

    A CuPy generator holds curand states for many threads (about 13 MB); a model without
    Dropout never draws, so it never pays for one. The seed is fixed when this object is
    made (drawn from the host generator by :func:`noise_rng`), so the numbers are the
    same as if the generator had been created at once.

    Parameters
    ----------
    seed : int
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._generator: Any = None

    @property
    def created(self) -> bool:
        """True once the device generator exists (after the first draw)."""
        return self._generator is not None

    def random(self, *args: Any, **kwargs: Any) -> Any:
        """``cupy.random.Generator.random``; creates the generator on the first call."""
        if self._generator is None:
            import cupy

            self._generator = cupy.random.default_rng(self.seed)
        return self._generator.random(*args, **kwargs)


def noise_rng(backend: Backend, rng: np.random.Generator) -> Any:
    """Return the generator used for per-step noise (dropout masks) on ``backend``.

    On CuPy this is a :class:`DeviceNoiseRng`: CuPy's own device generator, seeded from
    ``rng`` now (one draw, so the host stream is the same with or without Dropout) but
    created only when Dropout first draws from it, so that no host data crosses the bus
    per step and a model without Dropout allocates no curand states. Elsewhere it is
    ``rng`` itself (draw on the host, move once per step).
    """
    if backend.name == "cupy":
        return DeviceNoiseRng(int(rng.integers(2**63)))
    return rng


def random_uniform(shape, *, backend: Backend, dtype, rng):
    """Draw uniform [0, 1) numbers of ``shape`` with a generator from :func:`noise_rng`."""
    if isinstance(rng, np.random.Generator):
        arr = rng.random(shape, dtype=np.float64).astype(dtype_name(dtype))
        return to_device(arr, backend=backend)
    return rng.random(shape, dtype=dtype_name(dtype))  # pragma: no cover - GPU only


# ---------------------------------------------------------------------- device memory
_OOM_MARKERS = ("cudaErrorMemoryAllocation", "CUBLAS_STATUS_ALLOC_FAILED",
                "CUDA_ERROR_OUT_OF_MEMORY", "CUSOLVER_STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` is a device out-of-memory error raised by CuPy.

    That is CuPy's ``OutOfMemoryError`` or a CUDA / cuBLAS allocation failure. Decided
    from the exception's class and message, so CuPy is never imported here.
    """
    cls = type(exc)
    module = getattr(cls, "__module__", "") or ""
    if not module.startswith(("cupy", "cupy_backends")):
        return False
    if cls.__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return any(marker in text for marker in _OOM_MARKERS)


def oom_requested_bytes(exc: BaseException):
    """The size of the refused allocation named in an out-of-memory message, or None."""
    import re

    match = re.search(r"allocating ([\d,]+) bytes", str(exc))
    return int(match.group(1).replace(",", "")) if match else None


def device_memory_info(backend: Backend):
    """Return ``(free, total)`` bytes of the backend's device, or None on CPU backends.

    On CuPy ``free`` counts the CUDA driver's free memory plus the blocks CuPy's memory
    pool holds but does not use (they are handed out before the driver is asked).
    """
    if backend.name != "cupy":
        return None
    import cupy  # pragma: no cover - GPU only

    with backend.device:  # pragma: no cover - GPU only
        free, total = cupy.cuda.runtime.memGetInfo()
        pool = cupy.get_default_memory_pool()
        return int(free) + int(pool.free_bytes()), int(total)


# ---------------------------------------------------------------------- collectives
def nccl_module() -> ModuleType:
    """Return ``cupy.cuda.nccl`` (GPU all-reduce), or raise an ImportError naming what to
    install."""
    try:
        return importlib.import_module("cupy.cuda.nccl")
    except ImportError as exc:
        raise ImportError("NCCL all-reduce needs CuPy with NCCL: pip install "
                          "'mlpx[cuda12,mpi]' (or cuda13) and the NCCL wheel "
                          f"(nvidia-nccl-cu12). ({exc})") from exc


def current_stream_ptr(backend: Backend) -> int:
    """The raw pointer of the current CUDA stream on CuPy (0, the null stream, elsewhere)."""
    if backend.name != "cupy":
        return 0
    cupy = importlib.import_module("cupy")
    return int(cupy.cuda.get_current_stream().ptr)


def use_cuda_device(index: int) -> int:
    """Make GPU ``index`` modulo the device count CuPy's current device; return its number.

    Data-parallel ranks on one machine call it with their local rank, before the model
    is built (the cupy backend computes on the current device).
    """
    cupy = require_cuda()
    number = int(index) % int(cupy.cuda.runtime.getDeviceCount())
    cupy.cuda.Device(number).use()
    return number
