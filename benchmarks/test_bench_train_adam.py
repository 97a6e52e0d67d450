"""One Adam training step of an MLP 784-512-512-10, mlpx against floor and PyTorch."""

import pytest

from benchmarks.conftest import BATCH_SIZES, bench_impl

SIZES = (784, 512, 512, 10)


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_mlpx(benchmark, bench_backend, batch):
    bench_impl(benchmark, "mlpx", bench_backend, SIZES, batch,
               group=f"train_step_adam-batch{batch}", optimizer="adam")


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_floor(benchmark, bench_backend, batch):
    bench_impl(benchmark, "floor", bench_backend, SIZES, batch,
               group=f"train_step_adam-batch{batch}", optimizer="adam")


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_torch(benchmark, torch_device, batch):
    bench_impl(benchmark, "torch", torch_device, SIZES, batch,
               group=f"train_step_adam-batch{batch}", optimizer="adam")
