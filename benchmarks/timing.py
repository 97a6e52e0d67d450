"""Timing: interleaved rounds, medians, and a description of the machine.

A shared machine drifts: other processes come and go. So implementations are not timed
one after the other but in rounds: in each round every implementation runs for a short
block (after a warm-up), in a rotated order, and the block's median call time is kept.
Two summaries are kept: the best round of each implementation (its least disturbed
moment: the default, because interference only ever slows a block down) and the median
over rounds of the per-round ratios (same moment, same load).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np


def time_block(fn, *, budget, min_calls=3, max_calls=10_000, warmup=2):
    """Median seconds per call of ``fn`` over a block of about ``budget`` seconds.

    ``fn`` must block until its work is done (GPU callables synchronise inside).
    """
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while (time.perf_counter() - start < budget or len(times) < min_calls) \
            and len(times) < max_calls:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(impls, *, rounds, budget, warmup=2):
    """Time every callable of ``impls`` (name -> fn) in ``rounds`` rotated rounds.

    Returns
    -------
    dict of name -> list of float
        The per-round median seconds per call, aligned across names by round.
    """
    names = list(impls)
    out = {k: [] for k in names}
    for r in range(rounds):
        shift = r % len(names)
        for k in names[shift:] + names[:shift]:
            out[k].append(time_block(impls[k], budget=budget, warmup=warmup))
    return out


def ratio(a, b, stat="best"):
    """Throughput of ``a`` relative to ``b`` from per-round seconds per call.

    ``stat="best"``: best round of ``b`` over best round of ``a`` (each implementation at
    its least disturbed moment); ``stat="median"``: median over rounds of the per-round
    ratio ``b / a`` (both measured at the same moment).
    """
    if stat == "best":
        return min(b) / min(a)
    return statistics.median(y / x for x, y in zip(a, b))


def summary(seconds, stat="best"):
    """One number of seconds per call from per-round medians: the best or the median."""
    return min(seconds) if stat == "best" else statistics.median(seconds)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def cpu_label() -> str:
    """``cpu-<n>core-<cpu model>``, the device part of result file names."""
    return f"cpu-{n_cpus()}core-{slug(cpu_model())}"


def blas_info() -> dict:
    info = {}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info = {k: blas.get(k) for k in ("name", "version", "openblas configuration")
                if blas.get(k)}
    except Exception:  # pragma: no cover - old NumPy
        pass
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads",
                                   "architecture", "threading_layer")}
            for p in threadpool_info()]
    except Exception:
        pass
    from mlpx._fast import _blas

    info["mlpx_gemm_binding"] = _blas.library_path()
    return info


def versions() -> dict:
    import mlpx

    out = {"python": sys.version.split()[0], "numpy": np.__version__,
           "mlpx": getattr(mlpx, "__version__", None)}
    for mod in ("torch", "cupy", "sklearn", "array_api_strict", "array_api_compat", "jax",
                "jaxlib", "dask"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", None)
        except Exception:
            out[mod] = None
    return out


def machine() -> dict:
    """Device, CPU, thread counts, load: what a reader needs to judge the numbers."""
    info = {"cpu_model": cpu_model(), "n_cpus": n_cpus(), "platform": platform.platform(),
            "device_label": cpu_label()}
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS", "MLPX_FAST", "MLPX_NUMPY_BLAS")
           if k in os.environ}
    info["thread_env"] = env
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():  # pragma: no cover - GPU only
            info["cuda_device"] = torch.cuda.get_device_name()
    except Exception:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():  # pragma: no cover - GPU only
            info["gpus"] = out.stdout.strip().splitlines()
    except Exception:
        pass
    return info
