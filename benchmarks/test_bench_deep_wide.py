"""A deeper and wider net: one SGD step of 784-W-W-W-W-10 (W = 1024 by default, 2048)."""

import pytest

from benchmarks.conftest import BATCH_SIZES, bench_impl

WIDTHS = (1024, 2048)


def _sizes(width):
    return (784, width, width, width, width, 10)


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("width", WIDTHS)
def test_mlpx(benchmark, bench_backend, width, batch):
    bench_impl(benchmark, "mlpx", bench_backend, _sizes(width), batch,
               group=f"deep_wide-{width}-batch{batch}", optimizer="sgd")


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("width", WIDTHS)
def test_floor(benchmark, bench_backend, width, batch):
    bench_impl(benchmark, "floor", bench_backend, _sizes(width), batch,
               group=f"deep_wide-{width}-batch{batch}", optimizer="sgd")


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("width", WIDTHS)
def test_torch(benchmark, torch_device, width, batch):
    bench_impl(benchmark, "torch", torch_device, _sizes(width), batch,
               group=f"deep_wide-{width}-batch{batch}", optimizer="sgd")
