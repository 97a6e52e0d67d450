"""Data-parallel training (mlpx.distributed).

Most of the logic is tested in one process: ``tests/distributed_helpers.ThreadComm`` is a
communicator between threads, so 2 or 3 "ranks" train side by side. The real thing runs
under ``mpiexec -n 2`` in a subprocess (``tests/mpi_worker.py``), bounded in time and
skipped with a reason when mpi4py or mpiexec is missing.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

import mlpx
from mlpx import _backend, distributed
from tests.distributed_helpers import (
    CASES,
    SpyRows,
    ThreadComm,
    ThreadGroup,
    make_data,
    make_pixels,
    run_ranks,
    train_case,
    train_rows,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "mpi_worker.py")


def _close(a, b, tol=1e-12):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=tol)


# ---------------------------------------------------------------------- pieces
@pytest.mark.parametrize("n,size", [(10, 2), (11, 2), (13, 3), (1, 2), (2, 3), (7, 1)])
def test_shard_bounds_cover_the_batch_once_and_evenly(n, size):
    bounds = [distributed.shard_bounds(n, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(size - 1))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(ImportError, match=r"mlpx\[mpi\]"):
        distributed.import_mpi()


def test_a_comm_that_is_not_one_is_refused():
    with pytest.raises(TypeError, match="'comm' parameter of fit"):
        distributed.as_communicator("COMM_WORLD")
    X, y, _ = make_data()
    with pytest.raises(TypeError, match="mpi4py communicator"):
        mlpx.MLP([5, 4, 3], seed=0).fit(X, y, epochs=1, verbose=0, comm=42)


def test_ranks_called_differently_get_the_same_error_on_every_rank():
    X, y, _ = make_data()

    def fit(comm):
        n = 45 if comm.rank == 0 else 40  # rank 1 was given other data
        try:
            mlpx.MLP([5, 4, 3], seed=0).fit(X[:n], y[:n], epochs=1, verbose=0, comm=comm)
        except ValueError as exc:
            return str(exc), comm.aborted
        return None, comm.aborted

    results, _ = run_ranks(2, fit)
    for message, aborted in results:
        assert "n_samples differs: [45, 40]" in message
        assert aborted is None  # every rank raises it: no abort needed


def test_a_diverging_run_raises_the_same_error_on_every_rank():
    X, y, _ = make_data()
    Y = np.eye(3)[y]

    def fit(comm):
        model = mlpx.MLP([5, 8, 3], loss="mse", output="identity", dtype="float64", seed=0)
        with pytest.raises(mlpx.NonFiniteLossError) as info:
            model.fit(X, Y, epochs=30, batch_size=10, verbose=0, comm=comm,
                      optimizer={"name": "sgd", "lr": 1.0})
        aborted = None if comm is None else comm.aborted
        return (info.value.epoch, info.value.batch), [p.copy() for p in model.params], aborted

    where, ref, _ = fit(None)
    results, _ = run_ranks(2, fit)
    for got, weights, aborted in results:
        assert got == where and aborted is None
        for a, b in zip(weights, ref):  # the weights of just before the bad batch (huge)
            np.testing.assert_allclose(a, b, rtol=1e-9)


def test_a_failing_rank_aborts_the_job_and_says_which(capsys):
    group = ThreadGroup(2)
    comm = ThreadComm(group, 1)
    with pytest.raises(RuntimeError, match="boom"):
        with distributed.DataParallel(comm).guard():
            raise RuntimeError("boom")
    assert comm.aborted == 1
    assert "rank 1 of 2 failed with RuntimeError: boom" in capsys.readouterr().err


# ---------------------------------------------------------------------- in one process
@pytest.mark.parametrize("name", sorted(CASES))
def test_two_thread_ranks_equal_one_process(name):
    ref, ref_model = train_case(name)
    results, group = run_ranks(2, lambda c: train_case(name, c, seed=7 * c.rank))
    n_batches = -(-45 // CASES[name].get("batch_size", 10))
    assert group.allreduces == 3 * n_batches  # one all-reduce per step
    for weights, model in results:
        _close(weights, ref)
        np.testing.assert_allclose(model.history_["loss"], ref_model.history_["loss"],
                                   rtol=1e-12)
        assert model.history_["accuracy"] == ref_model.history_["accuracy"]


def test_every_backend_trains_data_parallel(backend):
    X, y, w = make_data()
    def fit(comm):
        model = mlpx.MLP([5, 8, 3], alpha=0.01, dtype="float64", seed=0,
                           backend=backend.name)
        model.fit(X, y, epochs=2, batch_size=16, sample_weight=w, verbose=0, comm=comm,
                  optimizer={"name": "adam", "lr": 0.01})
        return [_backend.to_numpy(p) for p in model.params]

    ref = fit(None)
    results, _ = run_ranks(2, fit)
    for weights in results:
        _close(weights, ref)


def test_three_ranks_with_empty_and_weightless_shares():
    X, y, w = make_data()
    w = w.copy()
    w[::3] = 0.0  # some shares of some batches weigh nothing

    def fit(comm):
        model = mlpx.MLP([5, 8, 3], dtype="float64", seed=0)
        # batch 22 of 45 samples: the last batch has 1 sample, two ranks get none
        model.fit(X, y, epochs=2, batch_size=22, sample_weight=w, verbose=0, comm=comm,
                  optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9})
        return [p.copy() for p in model.params], model.history_["loss"]

    ref, ref_loss = fit(None)
    results, _ = run_ranks(3, fit)
    for weights, loss in results:
        _close(weights, ref)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)


def test_validation_split_and_early_stopping_agree_with_one_process():
    X, y, _ = make_data(n=60)

    def fit(comm):
        model = mlpx.MLP([5, 8, 3], dtype="float64", seed=0 if comm is None else comm.rank)
        hist = model.fit(X, y, epochs=6, batch_size=8, validation_split=0.25,
                         early_stopping={"patience": 1, "monitor": "val_loss"},
                         optimizer={"name": "sgd", "lr": 1.5}, verbose=0, comm=comm)
        return [p.copy() for p in model.params], hist

    ref, ref_hist = fit(None)
    results, _ = run_ranks(2, fit)
    for weights, hist in results:
        _close(weights, ref)
        assert hist.epochs == ref_hist.epochs and hist.best_epoch == ref_hist.best_epoch
        np.testing.assert_allclose(hist["val_loss"], ref_hist["val_loss"], rtol=1e-12)


def test_dropout_masks_differ_by_rank_and_the_replicas_stay_equal():
    X, y, _ = make_data()
    seen = {}

    def fit(comm):
        model = mlpx.MLP([5, 16, 3], dropout=0.5, dtype="float64", seed=0)
        par = []

        class Spy(mlpx.Callback):
            def on_epoch_end(self, model, epoch, logs):
                par.append(model.state_.noise_rng)

        model.fit(X, y, epochs=2, batch_size=10, verbose=0, comm=comm, callbacks=[Spy()])
        seen[comm.rank] = par[-1].random(4)  # the rank's own stream, where it ended
        return [p.copy() for p in model.params], model.state_.noise_rng is model.state_.rng

    results, _ = run_ranks(2, fit)
    _close(results[0][0], results[1][0], tol=0)  # one update everywhere
    assert results[0][1] and results[1][1]  # the state's own generator is back after fit
    assert not np.array_equal(seen[0], seen[1])
    # The shared stream (the shuffle) is one process's: dropout draws do not advance it.
    ref = mlpx.MLP([5, 16, 3], dropout=0.5, dtype="float64", seed=0)
    ref.fit(X, y, epochs=2, batch_size=10, verbose=0)
    assert not np.allclose(ref.params[0], results[0][0][0])  # other masks, other result


def test_only_rank_zero_writes_the_checkpoint_and_one_process_resumes_it(tmp_path):
    paths = {0: tmp_path / "r0.npz", 1: tmp_path / "r1.npz"}

    def fit(comm):
        X, y, _ = make_data()
        model = mlpx.MLP([5, 8, 3], dtype="float64", seed=0)
        model.fit(X, y, epochs=2, batch_size=10, verbose=0, comm=comm,
                  optimizer={"name": "adam", "lr": 0.01}, checkpoint=paths[comm.rank])
        return [p.copy() for p in model.params]

    results, _ = run_ranks(2, fit)
    assert paths[0].exists() and not paths[1].exists()
    full, _ = train_case("adam", epochs=2)
    _close(results[0], full)

    def resume(comm):  # the same 4-epoch call, resumed after epoch 2, on 3 ranks
        weights, _ = train_case("adam", comm, epochs=4, resume=paths[0])
        return weights

    longer, _ = train_case("adam", epochs=4)
    resumed, _ = run_ranks(3, resume)
    for weights in resumed:
        _close(weights, longer)


# ---------------------------------------------------------------------- data on disk
def test_row_source_gives_the_rows_of_scale_bit_for_bit(tmp_path):
    X, _, mapped = make_pixels(tmp_path / "X.npy")
    for dtype in ("float32", "float64"):
        rows = distributed.RowSource(mapped, divide=255, dtype=dtype)
        ref = mlpx.datasets.scale(X, dtype=dtype)
        np.testing.assert_array_equal(np.asarray(rows), ref)
        assert np.asarray(rows).dtype == np.dtype(dtype)
        order = np.array([7, 3, 99, 4, 5, 6])  # any order, consecutive runs included
        np.testing.assert_array_equal(rows.read(order), ref[order])
        sub = rows.subset(np.array([10, 2, 50]))
        np.testing.assert_array_equal(sub.read([2, 0]), ref[[50, 10]])
        assert sub.shape == (3, X.shape[1]) and len(sub) == 3
    three_d = distributed.RowSource(np.zeros((4, 2, 3), dtype=np.int16))
    assert three_d.shape == (4, 6) and three_d.dtype == np.int16
    with pytest.raises(ValueError, match="'divide' parameter of RowSource"):
        distributed.RowSource(mapped, divide=0)
    with pytest.raises(TypeError, match="'array' parameter of RowSource"):
        distributed.RowSource(3)


def test_row_source_on_two_ranks_equals_one_process_reading_only_its_rows(tmp_path):
    X, y, mapped = make_pixels(tmp_path / "X.npy")
    ref, ref_model = train_rows(mlpx.datasets.scale(X, dtype="float64"), y)
    # Without comm a RowSource is read whole, as an array.
    alone, _ = train_rows(distributed.RowSource(mapped, divide=255, dtype="float64"), y)
    _close(alone, ref, tol=0)
    spies = {}

    def fit(comm):
        spy = spies[comm.rank] = SpyRows(mapped)
        source = distributed.RowSource(spy, divide=255, dtype="float64")
        return train_rows(source, y, comm, checkpoint=tmp_path / f"ck{comm.rank}.npz")

    results, _ = run_ranks(2, fit)
    for weights, model in results:
        _close(weights, ref)
        np.testing.assert_allclose(model.history_["val_loss"], ref_model.history_["val_loss"],
                                   rtol=1e-12)
    n = X.shape[0]
    n_val = int(round(n * 0.2))
    share = -(-16 // 2)
    for spy in spies.values():
        sizes = [r.size for r in spy.requests]
        # the validation rows once, then reads no larger than a batch share
        assert sizes[0] == n_val and max(sizes[1:]) <= max(share, (n - n_val + 1) // 2)
        # the start-of-fit scan (its half of the training rows), then its shares:
        # half of the training rows per epoch, never all of them
        assert len(spy.rows()) == n_val + (n - n_val) // 2 * (1 + ROWS_EPOCHS)
    train0 = np.concatenate(spies[0].requests[2:])
    train1 = np.concatenate(spies[1].requests[2:])
    assert np.intersect1d(train0[:48], train1[:48]).size == 0  # epoch 1: disjoint shares
    # The checkpoint's fingerprint (from the ranks' partial sums) matches one process's:
    # the 2-rank checkpoint resumes in one process on the in-memory array.
    longer, _ = train_rows(mlpx.datasets.scale(X, dtype="float64"), y, epochs=5)
    resumed, _ = train_rows(mlpx.datasets.scale(X, dtype="float64"), y, epochs=5,
                            resume=tmp_path / "ck0.npz")
    _close(resumed, longer)


ROWS_EPOCHS = 3


def test_every_backend_trains_from_a_row_source(backend, tmp_path):
    X, y, mapped = make_pixels(tmp_path / "X.npy", n=40)

    def fit(comm, X):
        model = mlpx.MLP([6, 8, 3], dtype="float64", seed=0, backend=backend.name)
        model.fit(X, y, epochs=2, batch_size=7, verbose=0, comm=comm,
                  optimizer={"name": "adam", "lr": 0.01})
        return [_backend.to_numpy(p) for p in model.params]

    ref = fit(None, mlpx.datasets.scale(X, dtype="float64"))
    source = distributed.RowSource(mapped, divide=255, dtype="float64")
    results, _ = run_ranks(2, lambda c: fit(c, source.subset(np.arange(40))))
    for weights in results:
        _close(weights, ref)


def test_token_ids_in_a_memory_map_stay_token_ids(tmp_path):
    ids = np.random.default_rng(0).integers(0, 7, size=(30, 3))
    np.save(tmp_path / "ids.npy", ids)
    mapped = np.load(tmp_path / "ids.npy", mmap_mode="r")
    y = ids[:, 0] % 2

    def fit(comm):
        model = mlpx.Sequential([mlpx.layers.Embedding(7, 2), mlpx.Dense(2)],
                                n_features=3, dtype="float64", seed=0)
        model.fit(mapped, y, epochs=1, batch_size=10, verbose=0, comm=comm)
        return [p.copy() for p in model.params]

    ref = fit(None)
    results, _ = run_ranks(2, fit)
    for weights in results:
        _close(weights, ref)


def test_non_finite_rows_raise_the_same_error_on_every_rank(tmp_path):
    X = np.ones((20, 3))
    X[17, 1] = np.nan  # in rank 1's slice only
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    y = np.arange(20) % 3

    def fit(comm):
        with pytest.raises(distributed.SharedDataError, match="NaN or infinity"):
            mlpx.MLP([3, 4, 3], seed=0).fit(mapped, y, epochs=1, verbose=0, comm=comm)
        return comm.aborted

    results, _ = run_ranks(2, fit)
    assert results == [None, None]  # a collective error: nobody aborts


def test_decompressed_idx_is_mapped_and_equals_read_idx(tmp_path):
    import gzip

    from mlpx.datasets import decompress_idx, open_idx

    data = np.arange(2 * 3 * 4, dtype=">i2").reshape(2, 3, 4)
    header = bytes([0, 0, 0x0B, 3]) + b"".join(d.to_bytes(4, "big") for d in data.shape)
    raw = header + data.tobytes()
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    out = decompress_idx(tmp_path / "a.gz", tmp_path / "a")
    assert (tmp_path / "a").read_bytes() == raw and out == str(tmp_path / "a")
    mapped = open_idx(tmp_path / "a")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, mlpx.datasets.read_idx(tmp_path / "a.gz"))
    with pytest.raises(mlpx.datasets.IDXFormatError, match="gzip-compressed"):
        open_idx(tmp_path / "a.gz")
    (tmp_path / "short").write_bytes(raw[:-2])
    with pytest.raises(mlpx.datasets.IDXFormatError, match="needs 48"):
        open_idx(tmp_path / "short")
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-2]))
    with pytest.raises(mlpx.datasets.IDXFormatError, match="truncated"):
        decompress_idx(tmp_path / "short.gz", tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "a.gz", "short", "short.gz"]


# ---------------------------------------------------------------------- buckets
def test_bucket_edges_cover_the_buffer_in_order():
    assert distributed.bucket_edges(10, 8, None) == [(0, 10)]
    assert distributed.bucket_edges(10, 8, 80) == [(0, 10)]
    assert distributed.bucket_edges(10, 8, 24) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert distributed.bucket_edges(3, 8, 1) == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("bucket_bytes", [8, 100, 400])
def test_bucketed_all_reduce_equals_the_flat_buffer_bit_for_bit(bucket_bytes):
    def fit(comm, bucket):
        comm.bucket_bytes = bucket
        weights, _ = train_case("l2", comm, epochs=2)
        return weights

    flat, flat_group = run_ranks(2, lambda c: fit(c, None))
    bucketed, group = run_ranks(2, lambda c: fit(c, bucket_bytes))
    for a, b in zip(flat, bucketed):
        _close(a, b, tol=0)
    n_values = sum(int(np.prod(p.shape)) for p in flat[0]) + 2
    pieces = len(distributed.bucket_edges(n_values, 8, bucket_bytes))
    assert pieces > 1
    assert group.allreduces == flat_group.allreduces * pieces


# ---------------------------------------------------------------------- MPI, stand-ins
class _Done:
    def Test(self):  # noqa: N802 - mpi4py's names
        return True

    def Wait(self):  # noqa: N802
        return None


class _SoloWorld:
    """A one-rank mpi4py communicator that records the buffers its all-reduce gets."""

    def __init__(self):
        self.buffers = []

    def Get_rank(self):  # noqa: N802
        return 0

    def Get_size(self):  # noqa: N802
        return 1

    def Allreduce(self, *a, **kw):  # noqa: N802
        raise AssertionError("blocking collectives are not used")

    def Iallreduce(self, inplace, buf, op=None):  # noqa: N802
        self.buffers.append(buf)
        return _Done()


def test_cuda_aware_mpi_gets_the_device_buffer_and_others_a_host_copy(monkeypatch):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed")
    synced = []
    monkeypatch.setattr(_backend, "is_cupy_namespace", lambda xp: True)
    monkeypatch.setattr(_backend, "is_numpy_namespace", lambda xp: False)
    monkeypatch.setattr(_backend, "synchronize", synced.append)
    moved = []
    monkeypatch.setattr(_backend, "to_device",
                        lambda a, backend, **kw: moved.append(a) or a)
    monkeypatch.setattr(_backend, "to_numpy", lambda a: np.array(a))  # device -> host copy
    backend = SimpleNamespace(name="cupy-stand-in", xp=_FakeDeviceXP(), device=None)
    device_buf = np.arange(4.0).view(_FakeDevArray)  # shows a device pointer like CuPy

    world = _SoloWorld()
    direct = distributed.MPICommunicator(world, cuda_aware=True)
    out = direct.allreduce_sum(device_buf, backend=backend)
    assert world.buffers[-1] is device_buf and out is device_buf  # no staging
    assert synced == [backend] and moved == []  # the stream is synchronised first

    world = _SoloWorld()
    staged = distributed.MPICommunicator(world, cuda_aware=False)
    staged.allreduce_sum(device_buf, backend=backend)
    assert world.buffers[-1] is not device_buf and type(world.buffers[-1]) is np.ndarray
    assert len(moved) == 1  # back to the device once

    world = _SoloWorld()  # None: ask the library (the environment variable decides here)
    monkeypatch.setenv("MLPX_CUDA_AWARE_MPI", "1")
    asked = distributed.MPICommunicator(world)
    asked.allreduce_sum(device_buf, backend=backend)
    assert asked.cuda_aware is True and world.buffers[-1] is device_buf


def test_cuda_aware_mpi_is_asked_of_the_library(monkeypatch):
    MPI = pytest.importorskip("mpi4py.MPI", reason="mpi4py is not installed")
    monkeypatch.delenv("MLPX_CUDA_AWARE_MPI", raising=False)
    assert distributed.cuda_aware_mpi(SimpleNamespace(Query_cuda_support=lambda: 1))
    assert not distributed.cuda_aware_mpi(SimpleNamespace(Query_cuda_support=lambda: 0))
    # The MPICH wheels here are built without CUDA: MPIX_Query_cuda_support() says 0.
    assert distributed.cuda_aware_mpi(MPI) is False
    assert distributed.cuda_aware_mpi(SimpleNamespace(__file__="/nonexistent.so")) is False
    monkeypatch.setenv("MLPX_CUDA_AWARE_MPI", "1")
    assert distributed.cuda_aware_mpi(MPI) is True


def test_mpi_communicator_checks_its_parameters():
    with pytest.raises(ValueError, match="'timeout' parameter of MPICommunicator"):
        distributed.MPICommunicator(_SoloWorld(), timeout=0)
    with pytest.raises(ValueError, match="'bucket_bytes' parameter of MPICommunicator"):
        distributed.MPICommunicator(_SoloWorld(), bucket_bytes=0)


@pytest.mark.gpu
@pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device")
@pytest.mark.parametrize("cuda_aware", [False, True])
def test_mpi_trains_a_cupy_model_like_one_process(cuda_aware):
    MPI = pytest.importorskip("mpi4py.MPI", reason="mpi4py is not installed")
    if cuda_aware and not distributed.cuda_aware_mpi(MPI):
        pytest.skip("this MPI library is not CUDA-aware")
    X, y, w = make_data()

    def fit(comm):
        model = mlpx.MLP([5, 8, 3], alpha=0.01, dtype="float64", seed=0, backend="cupy")
        model.fit(X, y, epochs=2, batch_size=16, sample_weight=w, verbose=0, comm=comm,
                  optimizer={"name": "adam", "lr": 0.01})
        return [_backend.to_numpy(p) for p in model.params]

    comm = distributed.MPICommunicator(MPI.COMM_SELF, cuda_aware=cuda_aware,
                                       bucket_bytes=256)
    _close(fit(comm), fit(None))


# ---------------------------------------------------------------------- the CLI
def test_cli_distributed_without_mpi4py_names_the_extra(monkeypatch, capsys):
    from mlpx.cli import main

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    assert main(["train", "--distributed", "--n-train", "50", "--epochs", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert "--distributed" in err and "mlpx[mpi]" in err


# ---------------------------------------------------------------------- NCCL (fakes)
class _FakeDevArray(np.ndarray):
    """A NumPy array that shows a device pointer the way CuPy does (``a.data.ptr``)."""

    @property
    def data(self):  # type: ignore[override]
        return SimpleNamespace(ptr=self.ctypes.data)


class _FakeNcclComm:
    groups: dict = {}

    def __init__(self, size, uid, rank):
        self.group = self.groups.setdefault(uid, ThreadGroup(size))
        self.rank = rank
        self.calls = []

    def allReduce(self, send, recv, count, dtype, op, stream):  # noqa: N802 - NCCL's name
        assert op == "sum" and stream == 0
        ctype = {"f32": ctypes.c_float, "f64": ctypes.c_double}[dtype]
        view = lambda p: np.ctypeslib.as_array(ctypes.cast(p, ctypes.POINTER(ctype)),  # noqa
                                               shape=(count,))
        self.calls.append((count, dtype))
        comm = ThreadComm(self.group, self.rank)
        everyone = comm._exchange(view(send).copy())
        view(recv)[:] = np.sum(everyone, axis=0)


def _fake_nccl():
    return SimpleNamespace(get_unique_id=lambda: ("uid", time.perf_counter_ns()),
                           NcclCommunicator=_FakeNcclComm, NCCL_FLOAT32="f32",
                           NCCL_FLOAT64="f64", NCCL_SUM="sum")


class _FakeDeviceXP:
    """numpy, except that ``empty_like`` hands out device-looking arrays."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty_like(a):
        return np.empty_like(a).view(_FakeDevArray)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nccl_communicator_sums_device_buffers_through_nccl(dtype):
    nccl = _fake_nccl()
    backend = SimpleNamespace(name="fake", xp=_FakeDeviceXP(), device=None)

    def reduce(comm):
        nc = distributed.NCCLCommunicator(comm, nccl=nccl)
        buf = (np.arange(5, dtype=dtype) * (comm.rank + 1)).view(_FakeDevArray)
        out = nc.allreduce_sum(buf, backend=backend)
        return np.asarray(out), nc.nccl_comm.calls

    results, _ = run_ranks(2, reduce)
    for out, calls in results:
        np.testing.assert_array_equal(out, np.arange(5, dtype=dtype) * 3)
        assert calls == [(5, "f32" if dtype == "float32" else "f64")]


def test_nccl_refuses_other_dtypes_and_names_what_to_install(monkeypatch):
    comm = ThreadComm(ThreadGroup(1), 0)
    nc = distributed.NCCLCommunicator(comm, nccl=_fake_nccl())
    backend = SimpleNamespace(name="fake", xp=_FakeDeviceXP(), device=None)
    with pytest.raises(TypeError, match="float32 and float64"):
        nc.allreduce_sum(np.zeros(3, dtype=np.int32).view(_FakeDevArray), backend=backend)
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setitem(sys.modules, "cupy.cuda", None)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", None)
    with pytest.raises(ImportError, match=r"mlpx\[cuda12,mpi\]"):
        distributed.NCCLCommunicator(comm)


@pytest.mark.gpu
@pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device")
def test_nccl_trains_a_cupy_model_like_one_process():
    X, y, w = make_data()

    def fit(comm):
        model = mlpx.MLP([5, 8, 3], alpha=0.01, dtype="float64", seed=0, backend="cupy")
        model.fit(X, y, epochs=2, batch_size=16, sample_weight=w, verbose=0,
                  comm=None if comm is None else distributed.NCCLCommunicator(comm),
                  optimizer={"name": "adam", "lr": 0.01})
        return [_backend.to_numpy(p) for p in model.params]

    ref = fit(None)
    results, _ = run_ranks(1, fit)  # one GPU: a one-rank NCCL communicator
    _close(results[0], ref)


# ---------------------------------------------------------------------- real MPI
def _mpiexec():
    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install 'mlpx[mpi]')")
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec (pip install mpich, or your MPI's launcher on PATH)")
    return found


def _launch(*args, timeout=120, program=(WORKER,), ranks=2):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, *program, *args]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)
    return proc, time.monotonic() - t0


@pytest.fixture(scope="module")
def mpi_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi") / "weights.npz"
    proc, _ = _launch(str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mpiexec_two_ranks_equal_one_process(mpi_run, name):
    ref, model = train_case(name)
    got = [mpi_run[f"{name}/{i}"] for i in range(len(ref))]
    _close(got, ref)
    np.testing.assert_allclose(mpi_run[f"{name}/loss"], model.history_["loss"], rtol=1e-12)


def test_mpiexec_bucketed_all_reduce_equals_the_flat_buffer(mpi_run):
    ref, _ = train_case("adam")
    bucketed = [mpi_run[f"adam_buckets/{i}"] for i in range(len(ref))]
    _close(bucketed, [mpi_run[f"adam/{i}"] for i in range(len(ref))], tol=0)
    _close(bucketed, ref)


def test_mpiexec_ranks_read_only_their_rows_of_a_memory_map(tmp_path):
    from tests.mpi_worker import ROWS_N

    proc, _ = _launch(str(tmp_path / "out.npz"), "--rows", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    X, y, _ = make_pixels(tmp_path / "ref.npy", n=ROWS_N, d=784)
    ref, _ = train_rows(mlpx.datasets.scale(X, dtype="float64"), y, batch_size=200,
                        validation_split=0.0)
    _close([got[f"w{i}"] for i in range(len(ref))], ref)
    half, epochs = ROWS_N // 2, 3
    for r in (0, 1):
        rows, sizes = got[f"rows{r}"], got[f"sizes{r}"]
        # its slice once (the start-of-fit check), then its shares: half the rows per epoch
        assert rows.size == half * (1 + epochs)
        np.testing.assert_array_equal(np.sort(rows[:half]), np.arange(r * half, (r + 1) * half))
        assert sizes.max() <= (1 << 20) // (784 * 8)  # a 1 MiB scan piece or a 100-row share
    for e in range(epochs):  # the two ranks' shares of an epoch: every row once
        part = slice(half * (1 + e), half * (2 + e))
        both = np.concatenate([got["rows0"][part], got["rows1"][part]])
        np.testing.assert_array_equal(np.sort(both), np.arange(ROWS_N))
    # One process holds the whole float64 array (62.7 MB); a rank's anonymous memory
    # grows by about 11 MB here, the same for 2,000 or 20,000 rows (imports, buffers).
    full_kib = ROWS_N * 784 * 8 // 1024
    for r in (0, 1):
        assert int(got[f"grew{r}"]) < 0.4 * full_kib, (int(got[f"grew{r}"]), full_kib)


@pytest.mark.parametrize("ranks", [2, 3])
def test_mpiexec_a_hanging_rank_ends_the_job_within_the_timeout(tmp_path, ranks):
    # Rank 1 sleeps; with 3 ranks, rank 2 waits too and answers rank 0's question, so
    # only rank 1 is named.
    proc, seconds = _launch(str(tmp_path / "x.npz"), "--fail", "hang", "--timeout", "3",
                            timeout=90, ranks=ranks)
    assert proc.returncode != 0
    assert seconds < 30
    assert f"of {ranks} failed with CollectiveTimeoutError" in proc.stderr
    assert "within 3 s: rank(s) [1] did not arrive" in proc.stderr
    assert "[1, 2]" not in proc.stderr and "rank(s) [2]" not in proc.stderr


def test_mpiexec_checkpoint_on_two_ranks_resumes_on_one(tmp_path):
    out = tmp_path / "final.npz"
    proc, _ = _launch(str(out), "--checkpoint-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = np.load(out)
    two = [two[f"arr_{i}"] for i in range(len(two.files))]
    uninterrupted, _ = train_case("adam", epochs=4)
    _close(two, uninterrupted)
    resumed, _ = train_case("adam", epochs=4, resume=str(tmp_path / "epoch2.npz"))
    _close(resumed, uninterrupted)


@pytest.mark.parametrize("how", ["kill", "raise"])
def test_mpiexec_a_dead_rank_ends_the_job_quickly(tmp_path, how):
    proc, seconds = _launch(str(tmp_path / "x.npz"), "--fail", how, timeout=60)
    assert proc.returncode != 0
    assert seconds < 30
    if how == "raise":
        assert "rank 1 of 2 failed with RuntimeError: rank 1 broke on purpose" in proc.stderr
    else:
        assert "signal 9" in proc.stdout + proc.stderr


def test_mpiexec_cli_distributed_equals_one_process(tmp_path):
    from mlpx.cli import main

    args = ["--n-train", "200", "--hidden", "16", "--epochs", "2", "--dtype", "float64",
            "--batch-size", "50", "--checkpoint", str(tmp_path / "ck.npz"), "-q"]
    proc, _ = _launch("train", "--distributed", "--save", str(tmp_path / "two.npz"), *args,
                      program=("-m", "mlpx"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("test accuracy")]
    assert len(lines) == 1 and lines[0].endswith("| 2 ranks")  # rank 0 reports, alone
    assert main(["train", "--save", str(tmp_path / "one.npz"), *args]) == 0
    two, one = mlpx.load(tmp_path / "two.npz"), mlpx.load(tmp_path / "one.npz")
    _close([np.asarray(p) for p in two.params], [np.asarray(p) for p in one.params])


def test_mpiexec_cli_distributed_reads_fashion_mnist_from_its_mapped_file(tmp_path):
    from mlpx.cli import main
    from tests.data_helpers import DEBIAN_FASHION

    if not DEBIAN_FASHION.is_dir():
        pytest.skip(f"no Fashion-MNIST files in {DEBIAN_FASHION}")
    data = tmp_path / "fashion"
    data.mkdir()
    for f in DEBIAN_FASHION.iterdir():  # a writable folder: the images are decompressed
        (data / f.name).symlink_to(f)
    args = ["--dataset", "fashion-mnist", "--data-dir", str(data), "--n-train", "1000",
            "--hidden", "16", "--epochs", "2", "--dtype", "float64", "--batch-size", "100",
            "--validation-split", "0.1", "-q"]
    proc, _ = _launch("train", "--distributed", "--save", str(tmp_path / "two.npz"), *args,
                      program=("-m", "mlpx"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both ranks decompressed the images (or found them done): whole files, no temporary
    assert sorted(p.name for p in data.iterdir() if not p.name.endswith(".gz")) == [
        "t10k-images-idx3-ubyte", "train-images-idx3-ubyte"]
    assert (data / "train-images-idx3-ubyte").stat().st_size == 16 + 60000 * 784
    assert main(["train", "--save", str(tmp_path / "one.npz"), *args]) == 0
    two, one = mlpx.load(tmp_path / "two.npz"), mlpx.load(tmp_path / "one.npz")
    _close([np.asarray(p) for p in two.params], [np.asarray(p) for p in one.params])


def test_a_memory_mapped_x_is_trained_on_without_a_copy(tmp_path):
    X, y, _ = make_data()
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")

    def fit(comm):
        model = mlpx.MLP([5, 8, 3], dtype="float64", seed=0)
        assert np.shares_memory(model.to_device_X(mapped), mapped)
        model.fit(mapped, y, epochs=2, batch_size=10, verbose=0, comm=comm)
        return [p.copy() for p in model.params]

    ref = fit(None)
    results, _ = run_ranks(2, fit)
    for weights in results:
        _close(weights, ref)


def test_cuda_communicator_takes_the_local_rank_gpu_then_nccl(monkeypatch):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed")
    used = []
    monkeypatch.setattr(_backend, "use_cuda_device", used.append)

    class Node:  # what Split_type(COMM_TYPE_SHARED) returns: the ranks of one machine
        freed = False

        def Get_rank(self):  # noqa: N802 - mpi4py's names
            return 3

        def Free(self):  # noqa: N802
            Node.freed = True

    class World:  # an mpi4py communicator, as far as this goes
        def Split_type(self, kind):  # noqa: N802
            return Node()

        def Get_rank(self):  # noqa: N802
            return 0

        def Get_size(self):  # noqa: N802
            return 1

        def Allreduce(self, *args, **kw):  # noqa: N802
            raise AssertionError("not used")

        def Ibcast(self, buf, root=0):  # noqa: N802 - one rank: nothing to send
            return SimpleNamespace(Test=lambda: True, Wait=lambda: None)

    comm = distributed.cuda_communicator(World(), nccl=_fake_nccl())
    assert used == [3] and Node.freed
    assert isinstance(comm, distributed.NCCLCommunicator) and comm.size == 1
