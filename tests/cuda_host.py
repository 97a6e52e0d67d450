"""Run mlpx's CUDA kernels on the CPU, and compile them for a GPU without one.

Two checks of ``mlpx/_fast/kernels.cu`` that need no GPU:

- :class:`HostDevice` compiles the exact kernel source as C++ with g++ (a small shim
  defines ``__global__``, ``threadIdx`` and friends; every kernel is a grid-stride loop,
  so one "thread" covers the whole range) and offers the interface of
  :class:`mlpx._fast.cupy_step.CupyDevice` on NumPy arrays: ``launch`` calls the kernel
  through ctypes after checking every argument against the kernel's declared parameter
  list (count and C type, :func:`check_launch`), ``gemm`` is a NumPy product.
  :class:`mlpx._fast.cupy_step.CupyTrainStep` runs on it unchanged, so its arithmetic
  and its orchestration are tested on the CPU.
- :func:`nvrtc_compile` compiles the source for a GPU architecture with NVIDIA's NVRTC
  library (the ``nvidia-cuda-nvrtc-cu12`` wheel; no driver or device needed) and returns
  the compiler log on failure: the CUDA side of the same text.

What neither covers is CuPy's kernel launch and cuBLAS itself; the ``gpu`` tests do.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from mlpx._fast.cupy_step import KERNELS, CupyDevice, kernel_source

_SHIM = r"""
#include <cmath>
struct mlpx_dim3 { unsigned x, y, z; };
static const mlpx_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0};
static const mlpx_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
using std::exp; using std::log; using std::tanh; using std::sqrt;
"""

_LIBS = {}


def compiler_available() -> bool:
    """True when g++ is on PATH."""
    return shutil.which("g++") is not None


def _build(dtype_name):
    lib = _LIBS.get(dtype_name)
    if lib is not None:
        return lib
    src = _SHIM + kernel_source(dtype_name)
    tmp = tempfile.mkdtemp(prefix="mlpx-kernels-")
    path = os.path.join(tmp, f"kernels_{dtype_name}.so")
    cmd = ["g++", "-std=c++14", "-O2", "-Wall", "-Werror", "-Wno-unused-function",
           "-ffp-contract=off", "-shared", "-fPIC", "-x", "c++", "-", "-o", path]
    proc = subprocess.run(cmd, input=src, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"g++ could not compile kernels.cu ({dtype_name}):\n{proc.stderr}")
    try:
        lib = _LIBS[dtype_name] = ctypes.CDLL(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # loaded libraries stay mapped
    return lib


def _c_arg(a):
    if isinstance(a, np.ndarray):
        if not a.flags.c_contiguous:
            raise ValueError("kernel arguments must be C-contiguous arrays")
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, np.float32):
        return ctypes.c_float(a)
    if isinstance(a, np.float64):
        return ctypes.c_double(a)
    if isinstance(a, np.int32):
        return ctypes.c_int(a)
    if isinstance(a, np.int64):
        return ctypes.c_longlong(a)
    raise TypeError(f"kernel argument of type {type(a).__name__}: pass an array or a "
                    "NumPy scalar of the parameter's exact type")


_SCALARS = {"long long": np.int64, "int": np.int32}


def kernel_signatures(source: str) -> dict:
    """``{kernel name: [parameter C type, ...]}`` of every ``extern "C" __global__``
    kernel in ``source`` (types as written: ``"real*"``, ``"const real*"``, ``"real"``,
    ``"long long"``, ``"int"``)."""
    out = {}
    for m in re.finditer(r'extern "C" __global__ void (\w+)\(([^)]*)\)', source):
        params = [" ".join(p.split()) for p in m.group(2).split(",") if p.strip()]
        out[m.group(1)] = [re.match(r"^(.*?)\s*\w+$", p).group(1).replace(" *", "*")
                           for p in params]
    return out


def check_launch(signature, name, args, dtype):
    """Raise a TypeError unless ``args`` match the kernel's parameters one by one, in
    number and C type, as CuPy would pass them: a C-contiguous array of the kernel's
    ``real`` for a pointer (writeable unless ``const``), a NumPy scalar of exactly
    ``real``'s type, ``numpy.int64`` for ``long long`` and ``numpy.int32`` for ``int``
    (CuPy passes a scalar with its own width: a wrong type is wrong bits on the GPU)."""
    dtype = np.dtype(dtype)
    if len(args) != len(signature):
        raise TypeError(f"{name} takes {len(signature)} arguments {signature}; the launch "
                        f"passed {len(args)}")
    for i, (ctype, a) in enumerate(zip(signature, args)):
        where = f"{name} argument {i} ({ctype})"
        if ctype.endswith("*"):
            if not isinstance(a, np.ndarray) or a.dtype != dtype:
                raise TypeError(f"{where}: needs an array of {dtype}, got "
                                f"{type(a).__name__} {getattr(a, 'dtype', '')}")
            if not a.flags.c_contiguous:
                raise TypeError(f"{where}: the array is not C-contiguous")
            if not ctype.startswith("const") and not a.flags.writeable:
                raise TypeError(f"{where}: the kernel writes it, the array is read-only")
        elif ctype == "real":
            if type(a) is not dtype.type:
                raise TypeError(f"{where}: needs numpy.{dtype.name}, got "
                                f"{type(a).__name__}")
        elif ctype in _SCALARS:
            if type(a) is not _SCALARS[ctype]:
                raise TypeError(f"{where}: needs numpy.{_SCALARS[ctype].__name__}, got "
                                f"{type(a).__name__}")
        else:  # pragma: no cover - a new parameter type in kernels.cu
            raise TypeError(f"{where}: unknown parameter type; teach cuda_host about it")


class HostDevice(CupyDevice):
    """:class:`mlpx._fast.cupy_step.CupyDevice` on NumPy and g++.

    ``gemm`` is CupyDevice's own (so its choice between ``matmul`` and the alpha/beta
    product is tested too), with NumPy standing in for CuPy and ``cupy.cublas.gemm``.
    Also counts the kernel launches by name (``launches``), so tests can check that the
    fused kernels, not the generic fall-through, did the work.
    """

    def __init__(self, dtype):  # no super().__init__: it would import CuPy
        self.xp = np
        self.dtype = np.dtype(dtype)
        self._gemm = self._numpy_gemm
        lib = _build(self.dtype.name)
        self._fns = {k: getattr(lib, k) for k in KERNELS}  # as CupyDevice: all, up front
        self.signatures = kernel_signatures(kernel_source(self.dtype.name))
        self.launches = {}
        self.products = {"matmul": 0, "gemm": 0}

    def launch(self, name, n, *args):
        self.launches[name] = self.launches.get(name, 0) + 1
        check_launch(self.signatures[name], name, args, self.dtype)
        self._fns[name](*[_c_arg(a) for a in args])

    def gemm(self, ta, tb, a, b, out, alpha=1.0, beta=0.0):
        self.products["matmul" if (alpha, beta) == (1.0, 0.0) else "gemm"] += 1
        super().gemm(ta, tb, a, b, out, alpha, beta)

    def _numpy_gemm(self, ta, tb, a, b, out, alpha, beta):
        """``cupy.cublas.gemm``'s contract: ``out = alpha * op(a) @ op(b) + beta * out``."""
        prod = (a.T if ta == "T" else a) @ (b.T if tb == "T" else b)
        prod *= self.dtype.type(alpha)
        if beta == 0.0:  # as cuBLAS: out is not read (it may hold garbage)
            out[...] = prod
        else:
            out *= self.dtype.type(beta)
            out += prod


# ---------------------------------------------------------------------------- NVRTC
def _find_nvrtc():
    names = []
    for base in sys.path:
        names += glob.glob(os.path.join(base, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"))
        names += glob.glob(os.path.join(base, "nvidia", "cu*", "lib", "libnvrtc.so*"))
    names += ["libnvrtc.so"]
    for name in names:
        if "builtins" in os.path.basename(name) or "alt" in os.path.basename(name):
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


_NVRTC = []


def nvrtc():
    """The NVRTC library, or None when it is not installed."""
    if not _NVRTC:
        _NVRTC.append(_find_nvrtc())
    return _NVRTC[0]


def nvrtc_compile(source: str, arch: str = "compute_90"):
    """Compile CUDA ``source`` to PTX; return ``(ok, log)``."""
    lib = nvrtc()
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"kernels.cu", 0,
                                None, None)
    if rc != 0:
        raise RuntimeError(f"nvrtcCreateProgram failed with code {rc}")
    opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++14"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    ptx_size = ctypes.c_size_t()
    if rc == 0:
        lib.nvrtcGetPTXSize(prog, ctypes.byref(ptx_size))
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return rc == 0 and ptx_size.value > 0, log.value.decode(errors="replace")


# ---------------------------------------------------------------------------- tolerances
#: Unit roundoff u of each dtype (half an ulp of 1).
UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}
#: Worst-case ulps between two implementations of exp/log/tanh: CUDA's expf, tanhf
#: (2 ulp) and logf (1 ulp) against NumPy's SIMD float32 exp/log (up to 4 ulp).
TRANSCENDENTAL_ULPS = 6
#: Margin of the bound over what the error model predicts (error growth through the
#: nonlinearities and the optimizer, which the linear model leaves out).
SAFETY = 4.0


def gpu_tolerance(dtype, *, k, layers, steps):
    """``dict(rtol=..., atol=...)`` for CuPy results against NumPy ones after ``steps``
    training steps of a ``layers``-deep MLP whose longest dot product has ``k`` terms.

    The error model (docs/performance.md, "Tolerances"): per layer and step the two
    libraries differ by at most

    - ``2 k u`` from summation order: cuBLAS splits and reorders the ``k`` products of a
      dot product (split-K, tensor-core tiles), OpenBLAS sums in its own order, and two
      orders of the same sum differ by at most ``2 gamma_k ~ 2 k u`` relative to the sum
      of the absolute terms;
    - ``1 u`` from FMA contraction: NVRTC contracts ``a * b + c`` into one rounding (its
      default ``--fmad=true``), NumPy rounds twice;
    - ``TRANSCENDENTAL_ULPS u`` from exp, log and tanh;
    - nothing from ``-ftz``: CuPy does not pass it, and flushed subnormals (below 1.2e-38
      in float32) are far under any ``atol`` here; sqrt and division are IEEE-rounded
      on both sides (NVRTC's ``-prec-sqrt``/``-prec-div`` defaults).

    These add up linearly over layers and steps (training is stable: no amplification
    beyond :data:`SAFETY`). ``atol`` covers entries near zero at a tenth of ``rtol`` (the
    values compared are of order 1). The result is never tighter than the same-device
    tolerances of ``tests/test_fast.py``.
    """
    from .test_fast import TOL

    u = UNIT_ROUNDOFF[np.dtype(dtype).name]
    per_layer_step = (2 * k + 1 + TRANSCENDENTAL_ULPS) * u
    rtol = SAFETY * steps * layers * per_layer_step
    base = TOL[np.dtype(dtype).name]
    return {"rtol": max(rtol, base["rtol"]), "atol": max(rtol / 10, base["atol"])}

