"""Reference workload: one SGD training step of an MLP 784-W-W-10 (W = 512 by default).

Every group ("train_step_sgd-W-batch") holds mlpx, the matrix-product floor on the same
backend, and PyTorch eager, so ``pytest-benchmark compare`` shows the ratios directly.
"""

import pytest

from benchmarks.conftest import BATCH_SIZES, bench_impl

WIDTHS = (256, 512, 1024)


def _sizes(width):
    return (784, width, width, 10)


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("width", WIDTHS)
def test_mlpx(benchmark, bench_backend, width, batch):
    bench_impl(benchmark, "mlpx", bench_backend, _sizes(width), batch,
               group=f"train_step_sgd-{width}-batch{batch}", optimizer="sgd")


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("width", WIDTHS)
def test_floor(benchmark, bench_backend, width, batch):
    bench_impl(benchmark, "floor", bench_backend, _sizes(width), batch,
               group=f"train_step_sgd-{width}-batch{batch}", optimizer="sgd")


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("width", WIDTHS)
def test_torch(benchmark, torch_device, width, batch):
    bench_impl(benchmark, "torch", torch_device, _sizes(width), batch,
               group=f"train_step_sgd-{width}-batch{batch}", optimizer="sgd")
