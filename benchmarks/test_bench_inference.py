"""Inference only: a forward pass of an MLP 784-512-512-10 (logits, no loss)."""

import pytest

from benchmarks import workloads as W
from benchmarks.conftest import BATCH_SIZES, run_bench

SIZES = (784, 512, 512, 10)


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_mlpx(benchmark, bench_backend, batch):
    fn = W.make_mlpx(bench_backend, SIZES, batch, kind="inference")
    run_bench(benchmark, fn, group=f"inference-batch{batch}", batch=batch,
              impl=f"mlpx[{bench_backend.name}]")


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_floor(benchmark, bench_backend, batch):
    fn = W.make_floor(bench_backend, SIZES, batch, kind="inference")
    run_bench(benchmark, fn, group=f"inference-batch{batch}", batch=batch,
              impl=f"floor[{bench_backend.name}]")


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_torch(benchmark, torch_device, batch):
    fn = W.make_torch(torch_device, SIZES, batch, kind="inference")
    run_bench(benchmark, fn, group=f"inference-batch{batch}", batch=batch,
              impl=f"torch[{torch_device}]")
