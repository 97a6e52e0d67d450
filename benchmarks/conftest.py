"""Benchmark fixtures: the test suite's backend fixture, reused, plus the reference rows.

``python -m pytest benchmarks`` runs the pytest-benchmark suite (it is outside the
default test paths). The ``backend`` fixture is the one from ``tests/conftest.py``
(numpy, array_api_strict, and cupy when a CUDA device answers; ``MLPX_BACKENDS``
narrows it). array-api-strict is the referee of correctness, not a performance backend:
it is skipped here unless ``MLPX_BACKENDS`` names it explicitly.
"""

import os

import pytest

from tests.conftest import backend, rng, xp  # noqa: F401  (re-exported fixtures)

BATCH_SIZES = (64, 256, 1024, 4096)


@pytest.fixture
def bench_backend(backend):  # noqa: F811
    """The ``backend`` fixture minus array-api-strict (unless asked for by name)."""
    if backend.name == "array_api_strict" and "array_api_strict" not in os.environ.get(
            "MLPX_BACKENDS", ""):
        pytest.skip("array-api-strict is the referee, not a performance backend")
    return backend


@pytest.fixture
def torch_device(bench_backend):
    """The torch device matching the backend (cpu for numpy, cuda for cupy)."""
    torch = pytest.importorskip("torch")
    dev = {"numpy": "cpu", "cupy": "cuda"}.get(bench_backend.name)
    if dev is None:
        pytest.skip(f"no torch device for backend {bench_backend.name!r}")
    if dev == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    return dev


def run_bench(benchmark, fn, *, group, batch, **extra):
    """Time ``fn`` (which synchronises the device itself) and record samples/s."""
    benchmark.group = group
    benchmark.extra_info.update(batch_size=batch, **extra)
    fn()  # warm-up: buffers, BLAS threads, CUDA kernels
    fn()
    benchmark.pedantic(fn, rounds=15, warmup_rounds=2, iterations=1)
    if benchmark.stats is not None:  # None under --benchmark-disable (a smoke run)
        benchmark.extra_info["samples_per_s_median"] = batch / benchmark.stats.stats.median


def bench_impl(benchmark, impl, target, sizes, batch, *, group, **kwargs):
    """Build the ``impl`` workload ("mlpx", "floor" or "torch") on ``target`` and time it.

    ``target`` is a Backend for mlpx and the floor, a torch device name for torch;
    ``kwargs`` go to the workload builder (``optimizer=``, ``kind=``).
    """
    from benchmarks import workloads as W

    if impl == "torch":
        fn = W.make_torch(target, sizes, batch, **kwargs)
        label = f"torch[{target}]"
    elif impl == "floor":
        kwargs.pop("optimizer", None)  # the floor is the products alone
        fn = W.make_floor(target, sizes, batch, **kwargs)
        label = f"floor[{target.name}]"
    else:
        fn = W.make_mlpx(target, sizes, batch, **kwargs)
        label = f"mlpx[{target.name}]"
    run_bench(benchmark, fn, group=group, batch=batch, impl=label)
