"""The benchmark report flags a run where mlpx beat its matrix-product floor."""

from benchmarks import run as bench_run


def _row(ratios):
    return {"workload": "mnist", "batch_size": 64, "ratios": ratios,
            "disturbed": bench_run.disturbed(ratios)}


def test_mlpx_faster_than_floor_is_flagged():
    row = _row({"mlpx/floor": 1.10, "mlpx/floor[torch]": 0.90, "mlpx/torch": 1.5})
    assert row["disturbed"] == {"mlpx/floor": 1.10}
    note = bench_run.disturbed_note([row])
    assert "mnist batch 64" in note and "disturbed" in note and "mlpx/floor=1.10" in note
    assert "DISTURBED" in bench_run._row_text(dict(row, samples_per_s={"mlpx[numpy]": 1.0}))


def test_honest_run_is_not_flagged():
    row = _row({"mlpx/floor": 0.97, "mlpx/torch": 1.3, "torch/floor": 1.2})
    assert row["disturbed"] == {}
    assert bench_run.disturbed_note([row]) == ""
    assert "DISTURBED" not in bench_run._row_text(dict(row, samples_per_s={"x": 1.0}))


def test_profile_step_prints_the_ab_and_the_profile(capsys):
    import pytest

    pytest.importorskip("torch")
    from benchmarks import profile_step

    profile_step.main(["--batch", "8", "--rounds", "2", "--steps", "1", "--top", "3"])
    out = capsys.readouterr().out
    assert "mlpx/torch throughput" in out
    assert "% in torch.mm / torch.addmm" in out
    assert "tottime" in out


def test_fit_overheads_bounds_splits_the_step_and_restores_the_ops(capsys):
    from benchmarks import fit_overheads
    from mlpx._fast import numpy_step

    before = dict(vars(numpy_step.NumpyOps))
    fit_overheads.main(["--parts", "bounds", "--batches", "8", "--rounds", "1",
                        "--samples", "32", "--optimizers", "adam", "--threads", "1"])
    out = capsys.readouterr().out
    step = next(line for line in out.splitlines() if line.startswith("adam step"))
    assert "products in the step" in step and "optimizer update" in step
    assert "bound floor/(floor + rest)" in step and "batches from memory" in step
    assert "inference" in out and "bound floor/(floor + passes + check)" in out
    assert dict(vars(numpy_step.NumpyOps)) == before  # the timers are gone again
