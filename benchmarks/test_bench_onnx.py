"""Inference of the exported reference model: ONNX Runtime vs mlpx vs PyTorch.

The rows of ``python -m benchmarks.onnx_inference`` (see its docstring) under
pytest-benchmark; skipped without the ``onnx`` extra (and the torch row without torch).
"""

import pytest

from benchmarks.conftest import run_bench

BATCHES = (1, 64, 4096)


@pytest.fixture(scope="module")
def rows():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ndonnx")
    from benchmarks.onnx_inference import make_rows

    cache = {}

    def get(batch):
        if batch not in cache:
            cache[batch] = make_rows(batch)
        return cache[batch]

    return get


@pytest.mark.parametrize("impl", ["onnxruntime", "mlpx[numpy]", "torch[cpu]"])
@pytest.mark.parametrize("batch", BATCHES)
def test_onnx_inference(benchmark, rows, impl, batch):
    fns = rows(batch)
    if impl not in fns:
        pytest.skip(f"{impl} is not installed")
    run_bench(benchmark, fns[impl], group=f"onnx-inference-batch{batch}", batch=batch,
              impl=impl)
