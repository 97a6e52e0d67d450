"""Backend resolution: the only module that knows NumPy, CuPy and array-api-strict by name.

Everything else in mlpx receives an Array API namespace ``xp`` (and a ``device``) that
was resolved here once, at a public entry point, and passes it down as a keyword-only
argument.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
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


    "fast_path",
    "fast_enabled",
    "set_fast_enabled",
    "persist",
    "check_dtype",
    "device_of",
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

#: Backend names accepted by ``backend=`` (a namespace module is accepted too, and any
#: other Array API namespace by its module name).
BACKENDS = ("numpy", "cupy", "array_api_strict", "torch", "jax", "dask")

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
        # Namespaces are modules and cannot be pickled: rebuild from the name (and the
        # device, when it is not the library's default one).
        spec = _device_spec(self)
        if spec is None:
            return (resolve_backend, (self.name,))
        return (resolve_backend, (self.name, spec))


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


# Every library mlpx knows by name: the canonical name, the module to import, what to
# install when it is missing. Any other Array API namespace is accepted as a module and
# stored by its module name (imported again by that name, e.g. when unpickling).
_LIBRARIES = {
    "numpy": ("numpy", "pip install numpy"),
    "cupy": ("cupy", "pip install 'mlpx[cuda12]' or 'mlpx[cuda13]'"),
    "array_api_strict": ("array_api_strict", "pip install array-api-strict"),
    "torch": ("torch", "pip install torch (the CPU-only wheel: pip install torch "
                       "--index-url https://download.pytorch.org/whl/cpu)"),
    "jax": ("jax.numpy", "pip install jax (CPU; see the JAX documentation for GPU wheels)"),
    "dask": ("dask.array", "pip install 'dask[array]'"),
}

# Names users (and older pickles) spell a known library by, including the module names of
# the namespaces themselves.
_ALIASES = {
    "np": "numpy", "array_api_compat.numpy": "numpy",
    "array_api_compat.cupy": "cupy",
    "strict": "array_api_strict",
    "pytorch": "torch", "array_api_compat.torch": "torch",
    "jax.numpy": "jax", "jax.experimental.array_api": "jax",
    "dask.array": "dask", "array_api_compat.dask.array": "dask",
}


def _canonical(name: str) -> str | None:
    """The canonical name of a library mlpx knows, or None."""
    key = name.strip().lower().replace("-", "_")
    if key in _LIBRARIES:
        return key
    return _ALIASES.get(name.strip(), _ALIASES.get(key))


def _import_library(name: str) -> ModuleType:
    module, install = _LIBRARIES[name]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"backend={name!r} needs the {module.split('.')[0]} package, which is not "
            f"installed ({exc}). Install it: {install}."
        ) from exc


def _probe_array(lib: ModuleType, name: str, device: Any = None):
    """A 0-d float array of library ``lib`` (on ``device`` when given)."""
    if name == "torch":
        return lib.zeros((), device=device)
    if device is None:
        return lib.asarray(0.0)
    return lib.asarray(0.0, device=device)


def _parse_device(name: str, lib: ModuleType, device: Any) -> Any:
    """Turn a user's device (a string, an int or the library's own object) into the
    library's device object; strings are ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``
    (PyTorch), ``"gpu:0"`` (JAX), ``"device1"`` (array-api-strict)."""
    if name == "torch":
        return lib.device(device) if isinstance(device, (str, int)) else device
    if name == "jax" and isinstance(device, (str, int)):
        jax = importlib.import_module("jax")
        if isinstance(device, int):
            return jax.devices()[device]
        platform, _, index = device.partition(":")
        platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform.lower(), platform.lower())
        found = jax.devices(platform)
        if index:
            by_id = [d for d in found if d.id == int(index)]
            return by_id[0] if by_id else found[int(index)]
        return found[0]
    if name == "array_api_strict" and isinstance(device, str):
        return lib.Device("CPU_DEVICE" if device.lower() == "cpu" else device)
    return device


def _device_spec(backend: Backend) -> Any:
    """What :meth:`Backend.__reduce__` stores for the device: None for the library's
    default device, else a string :func:`_parse_device` reads back."""
    if backend.device == _default_device(backend.name, backend.xp):
        return None
    if backend.name == "array_api_strict":
        for spec in ("CPU_DEVICE", "device1", "device2"):
            if backend.device == backend.xp.Device(spec):
                return spec
    if backend.name == "cupy":  # pragma: no cover - GPU only
        return int(backend.device.id)
    if backend.name == "jax":
        return f"{backend.device.platform}:{backend.device.id}"
    return str(backend.device)


def _default_device(name: str, xp: Any) -> Any:
    if name == "numpy":
        return "cpu"
    if name == "cupy":  # pragma: no cover - GPU only
        return importlib.import_module("cupy").cuda.Device()
    return array_api_compat.device(xp.asarray(0.0))


def resolve_backend(backend: Any = "numpy", device: Any = None) -> Backend:
    """Resolve a backend name or namespace module into a :class:`Backend`.

    Parameters
    ----------
    backend : str, module or Backend, default="numpy"
        The array library to compute with: ``"numpy"``, ``"cupy"``,
        ``"array_api_strict"``, ``"torch"``, ``"jax"`` or ``"dask"``; or a module: the
        library (``torch``, ``jax.numpy``, ``dask.array``), its array-api-compat
        namespace (``array_api_compat.torch``) or any other Array API namespace, which is
        stored by its module name. A Backend is returned as it is (``device`` must be
        None then).
    device : object, optional
        The device arrays live on, in the library's spelling: its device object, or a
        string such as ``"cpu"``, ``"cuda:1"``, ``"mps"`` (PyTorch), ``"gpu:0"`` (JAX),
        ``"device1"`` (array-api-strict), or an int (a GPU number for CuPy, PyTorch and
        JAX). None: the library's default device.

    Returns
    -------
    Backend

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones), a module that is not an
        Array API namespace, or a device the library does not have.
    ImportError
        When the library is not installed (the message says what to install).
    CudaUnavailableError
        ``"cupy"`` where CuPy cannot compute (not installed, no driver or GPU, no cuBLAS,
        NVRTC or the CUDA headers): one message that names what to install. It is a
        RuntimeError and an ImportError.

    Examples
    --------
    >>> from mlpx._backend import resolve_backend
    >>> resolve_backend("numpy").name
    'numpy'
    >>> import numpy
    >>> resolve_backend(numpy).name
    'numpy'
    """
    if isinstance(backend, Backend):
        if device is not None:
            return resolve_backend(backend.name, device)
        return backend
    if backend is None:
        backend = "numpy"
    if isinstance(backend, str):
        name = _canonical(backend)
        if name is None:
            return _resolve_module_name(backend, device)
        return _resolve_known(name, device)
    if isinstance(backend, ModuleType):
        name = _canonical(backend.__name__)
        if name is not None:
            return _resolve_known(name, device)
        return _resolve_module(backend, device)
    raise ValueError(
        f"The 'backend' parameter must be one of {list(BACKENDS)} or an Array API namespace "
        f"module. Got {backend!r} of type {type(backend).__name__} instead."
    )


def _resolve_module_name(name: str, device: Any) -> Backend:
    """A namespace stored by its module name (one mlpx does not know by name)."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(
            f"The 'backend' parameter must be one of {list(BACKENDS)} or an Array API "
            f"namespace module. Got {name!r} instead."
        )
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(
            f"The 'backend' parameter must be one of {list(BACKENDS)} or an Array API "
            f"namespace module. Got {name!r} instead, which is not an importable module "
            f"({exc})."
        ) from exc
    return _resolve_module(module, device)


def _resolve_module(module: ModuleType, device: Any) -> Backend:
    name = module.__name__
    if not hasattr(module, "asarray") or not hasattr(module, "matmul"):
        raise ValueError(
            f"The 'backend' parameter must be an Array API namespace; module {name!r} "
            "has no asarray/matmul."
        )
    try:
        x = _probe_array(module, name, device)
    except Exception as exc:
        raise ValueError(f"The 'device' parameter: the {name!r} namespace cannot create an "
                         f"array on {device!r} ({type(exc).__name__}: {exc}).") from exc
    return Backend(name, array_api_compat.array_namespace(x), array_api_compat.device(x))


def _resolve_known(name: str, device: Any) -> Backend:
    if name == "cupy":
        cupy = require_cuda()
        xp = array_api_compat.array_namespace(cupy.empty(0))
        if device is None:
            return Backend("cupy", xp, cupy.cuda.Device())
        number = device if isinstance(device, int) else getattr(device, "id", None)
        if isinstance(device, str):
            number = int(device.rpartition(":")[2] or 0)
        if not isinstance(number, int) or not 0 <= number < \
                int(cupy.cuda.runtime.getDeviceCount()):  # pragma: no cover - GPU only
            raise ValueError(f"The 'device' parameter must name a CUDA device for "
                             f"backend='cupy'. Got {device!r} instead.")
        return Backend("cupy", xp, cupy.cuda.Device(number))  # pragma: no cover
    if name == "numpy":
        if device is not None and str(device).lower() != "cpu":
            raise ValueError(f"The 'device' parameter must be 'cpu' or None for "
                             f"backend='numpy'. Got {device!r} instead.")
        return Backend("numpy", array_api_compat.array_namespace(np.empty(0)), "cpu")
    lib = _import_library(name)
    try:
        dev = None if device is None else _parse_device(name, lib, device)
        x = _probe_array(lib, name, dev)
    except Exception as exc:
        raise ValueError(f"The 'device' parameter: backend={name!r} cannot create an array "
                         f"on {device!r} ({type(exc).__name__}: {exc}).") from exc
    xp = lib if name == "array_api_strict" else array_api_compat.array_namespace(x)
    return Backend(name, xp, array_api_compat.device(x))


def check_dtype(backend: Backend, dtype) -> str:
    """Return the dtype name after checking that ``backend`` really creates arrays of it.

    JAX without ``jax_enable_x64`` turns a float64 request into float32 (with a
    warning); PyTorch on an Apple GPU (MPS) has no float64. Either would train in
    another precision than ``model.dtype`` says, so it is an error here.

    Raises
    ------
    ValueError
        For a dtype that is not float32/float64, or one the backend does not keep.

    Examples
    --------
    >>> from mlpx._backend import check_dtype, resolve_backend
    >>> check_dtype(resolve_backend("numpy"), "float64")
    'float64'
    """
    name = dtype_name(dtype)
    if backend.name == "numpy":
        return name
    xp = backend.xp
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = xp.asarray(0.0, dtype=getattr(xp, name), device=backend.device).dtype
        ok = got == getattr(xp, name)
    except Exception as exc:  # e.g. PyTorch on MPS: "Cannot convert a MPS Tensor to float64"
        got, ok = f"an error ({type(exc).__name__}: {exc})", False
    if ok:
        return name
    if backend.name == "jax":
        raise ValueError(
            f"dtype={name!r} on backend 'jax' needs 64-bit floats, which JAX switches off "
            "by default (it made float32 arrays instead). Enable them before building the "
            "model: jax.config.update('jax_enable_x64', True) or the environment variable "
            "JAX_ENABLE_X64=1; or use dtype='float32'."
        )
    raise ValueError(
        f"The 'dtype' parameter: backend {backend.name!r} on device {backend.device!r} "
        f"does not keep {name} (asking for it gave {got}). Use dtype='float32' or "
        "another device."
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
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    if array_api_compat.is_dask_namespace(xp):
        return "dask"
    return getattr(xp, "__name__", repr(xp))


def array_namespace(*arrays):
    """Return the Array API namespace of ``arrays`` (they must agree)."""
    return array_api_compat.array_namespace(*arrays)


def device_of(x):
    """Return the device an array lives on."""
    return array_api_compat.device(x)


def is_numpy_namespace(xp) -> bool:
    """True for NumPy's namespace (whether or not fast paths are on: see
    :func:`fast_path`)."""
    return array_api_compat.is_numpy_namespace(xp)


def is_cupy_namespace(xp) -> bool:
    """True for CuPy's namespace (whether or not fast paths are on: see
    :func:`fast_path`)."""
    return array_api_compat.is_cupy_namespace(xp)


def is_torch_namespace(xp) -> bool:
    """True for PyTorch's namespace (``torch`` or ``array_api_compat.torch``), whether
    or not fast paths are on (see :func:`fast_path`): the predicate that guards the
    PyTorch training step (:mod:`mlpx._fast.torch_step`)."""
    return array_api_compat.is_torch_namespace(xp)


def is_jax_namespace(xp) -> bool:
    """The predicate that guards the compiled JAX step (:mod:`mlpx._fast.jax_step`)."""
    return array_api_compat.is_jax_namespace(xp)


# The one switch of every backend-specific path: MLPX_FAST=0 in the environment, or
# set_fast_enabled(False) (mlpx._fast.set_enabled / disabled forward here).
_FAST = [os.environ.get("MLPX_FAST", "1").strip().lower() not in ("0", "false", "no")]


def fast_enabled() -> bool:
    """True unless backend-specific paths were switched off (``MLPX_FAST=0`` or
    :func:`set_fast_enabled`)."""
    return _FAST[0]


def set_fast_enabled(flag: bool) -> bool:
    """Switch every backend-specific path on or off; return the previous setting."""
    old = _FAST[0]
    _FAST[0] = bool(flag)
    return old


def fast_path(xp) -> str | None:
    """The one predicate of every backend-specific path: ``"numpy"``, ``"cupy"``,
    ``"torch"`` or None.

    None (take the generic Array API path) for every other namespace, and for every
    namespace while fast paths are switched off (``MLPX_FAST=0``): the NumPy and PyTorch
    training steps, the in-place optimizer update (NumPy), SciPy's normal CDF in GELU
    (NumPy, CuPy) and the scatter-add of an embedding's gradient all ask this.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx._backend import fast_path, set_fast_enabled
    >>> fast_path(np)
    'numpy'
    >>> old = set_fast_enabled(False); fast_path(np) is None
    True
    >>> _ = set_fast_enabled(old)
    """
    if not _FAST[0]:
        return None
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    return None


def persist(backend: Backend, tree):
    """Compute a lazy backend's arrays now and keep the results; return the same nest.

    On Dask every training step would otherwise add its operations to the graph of the
    parameters, so that each step (and each epoch) is slower than the one before: the
    model persists its parameters, optimizer state and the step's loss and logits
    together, once per step (one ``dask.persist`` call). Eager backends return ``tree``
    unchanged.

    Parameters
    ----------
    backend : Backend
    tree : nest of dicts, lists and tuples of arrays (and Python scalars)

    Returns
    -------
    The same nest, with Dask arrays replaced by persisted ones.
    """
    if backend.name != "dask":
        return tree
    dask = importlib.import_module("dask")
    (out,) = dask.persist(tree)
    return out


def scatter_add_rows(target, ids, values) -> None:
    """Add ``values[i]`` to row ``ids[i]`` of ``target`` in place, repeated ids summed.

    The backend fast path of an embedding's gradient (the Array API has no scatter-add):
    ``numpy.add.at`` on NumPy, ``cupyx.scatter_add`` on CuPy, ``Tensor.index_add_`` on
    PyTorch. Guard a call with :func:`fast_path`.

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
    elif is_torch_namespace(xp):
        target.index_add_(0, ids, values)
    else:
        raise TypeError("scatter_add_rows has fast paths for NumPy, CuPy and PyTorch "
                        "arrays only; "
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
    if array_api_compat.is_torch_array(x):
        # Also on a CUDA or MPS device (DLPack would refuse it); detach drops autograd.
        return x.detach().cpu().numpy()
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
