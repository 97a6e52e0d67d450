"""One Adam training step of an MLP 784-512-512-10, mlpx against floor and PyTorch."""

import pytest

from benchmarks import workloads as W
from benchmarks.conftest import BATCH_SIZES, run_bench

SIZES = (784, 512, 512, 10)


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_mlpx(benchmark, bench_backend, batch):
    fn = W.make_mlpx(bench_backend, SIZES, batch, optimizer="adam")
    run_bench(benchmark, fn, group=f"train_step_adam-batch{batch}", batch=batch,
              impl=f"mlpx[{bench_backend.name}]")


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_floor(benchmark, bench_backend, batch):
    fn = W.make_floor(bench_backend, SIZES, batch)
    run_bench(benchmark, fn, group=f"train_step_adam-batch{batch}", batch=batch,
              impl=f"floor[{bench_backend.name}]")


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_torch(benchmark, torch_device, batch):
    fn = W.make_torch(torch_device, SIZES, batch, optimizer="adam")
    run_bench(benchmark, fn, group=f"train_step_adam-batch{batch}", batch=batch,
              impl=f"torch[{torch_device}]")
