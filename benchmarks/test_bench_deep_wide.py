"""A deeper and wider net: one SGD step of 784-W-W-W-W-10 (W = 1024 by default, 2048)."""

import pytest

from benchmarks import workloads as W
from benchmarks.conftest import BATCH_SIZES, run_bench

WIDTHS = (1024, 2048)


def _sizes(width):
    return (784, width, width, width, width, 10)


def _group(width, batch):
    return f"deep_wide-{width}-batch{batch}"


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("width", WIDTHS)
def test_mlpx(benchmark, bench_backend, width, batch):
    fn = W.make_mlpx(bench_backend, _sizes(width), batch, optimizer="sgd")
    run_bench(benchmark, fn, group=_group(width, batch), batch=batch,
              impl=f"mlpx[{bench_backend.name}]")


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("width", WIDTHS)
def test_floor(benchmark, bench_backend, width, batch):
    fn = W.make_floor(bench_backend, _sizes(width), batch)
    run_bench(benchmark, fn, group=_group(width, batch), batch=batch,
              impl=f"floor[{bench_backend.name}]")


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("width", WIDTHS)
def test_torch(benchmark, torch_device, width, batch):
    fn = W.make_torch(torch_device, _sizes(width), batch, optimizer="sgd")
    run_bench(benchmark, fn, group=_group(width, batch), batch=batch,
              impl=f"torch[{torch_device}]")
