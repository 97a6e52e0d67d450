"""Helpers for tests/test_distributed.py: an in-process communicator over threads, and
the script that ``mpiexec`` runs."""

from __future__ import annotations

import copy
import threading

import numpy as np

import mlpx
from mlpx import distributed


class ThreadGroup:
    """What the ranks of one in-process job share: a barrier and the deposit slots."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots = [None] * size
        self.allreduces = 0


class ThreadComm(distributed.Communicator):
    """A :class:`mlpx.distributed.Communicator` between threads of one process."""

    def __init__(self, group, rank):
        self.group, self.rank, self.size = group, rank, group.size
        self.aborted = None

    def _exchange(self, obj):
        g = self.group
        g.barrier.wait()
        g.slots[self.rank] = obj
        g.barrier.wait()
        out = copy.deepcopy(g.slots)  # as if pickled: no array shared between ranks
        g.barrier.wait()
        return out

    def allreduce_sum(self, buf, *, backend):
        host = mlpx._backend.to_numpy(buf)
        everyone = self._exchange(host)
        if self.rank == 0:
            self.group.allreduces += 1
        total = everyone[0].copy()
        for other in everyone[1:]:
            total = total + other
        return mlpx._backend.to_device(total, backend=backend)

    def bcast(self, obj):
        return self._exchange(obj)[0]

    def allgather(self, obj):
        return self._exchange(obj)

    def abort(self, code=1):
        self.aborted = code  # recorded only: every rank of these tests fails or none


def run_ranks(size, fn):
    """Run ``fn(comm)`` on ``size`` threads; return their results by rank (re-raise)."""
    group = ThreadGroup(size)
    results, errors = [None] * size, [None] * size

    def target(rank):
        try:
            results[rank] = fn(ThreadComm(group, rank))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            errors[rank] = exc

    threads = [threading.Thread(target=target, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for exc in errors:
        if exc is not None:
            raise exc
    return results, group


def make_data(n=45, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, size=n)
    w = rng.uniform(0.1, 2.0, size=n)
    return X, y, w


CASES = {
    "sgd": dict(optimizer={"name": "sgd", "lr": 0.1}),
    "momentum": dict(optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9}),
    "adam": dict(optimizer={"name": "adam", "lr": 0.01}),
    "l2": dict(optimizer={"name": "adam", "lr": 0.01}, alpha=0.01),
    "weights": dict(optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9},
                    sample_weight=True),
    "uneven": dict(optimizer={"name": "adam", "lr": 0.01}, batch_size=13),
}


def train_case(name, comm=None, *, epochs=3, seed=0, checkpoint=None, resume=None,
               verbose=0):
    """Train case ``name`` (one process when comm is None); return the weights (host)."""
    case = dict(CASES[name])
    X, y, w = make_data()
    model = mlpx.MLP([5, 8, 3], alpha=case.pop("alpha", 0.0), dtype="float64", seed=seed)
    weights = w if case.pop("sample_weight", False) else None
    model.fit(X, y, epochs=epochs, batch_size=case.pop("batch_size", 10),
              sample_weight=weights, verbose=verbose, comm=comm, checkpoint=checkpoint,
              resume=resume, **case)
    return [mlpx._backend.to_numpy(p) for p in model.params], model


class SpyRows:
    """An array-like over ``array`` that records the rows of every read (a memory map
    read through it reads those rows and no others)."""

    def __init__(self, array):
        self.array = array
        self.shape, self.dtype = array.shape, array.dtype
        self.requests: list = []

    def __getitem__(self, key):
        rows = np.arange(self.shape[0])[key] if isinstance(key, slice) else np.asarray(key)
        self.requests.append(np.array(rows, copy=True))
        return self.array[key]

    def rows(self):
        return np.concatenate(self.requests) if self.requests else np.empty(0, np.int64)


def make_pixels(path, n=120, d=6, seed=1):
    """A uint8 data set saved as ``path`` (.npy), its labels, and the file memory-mapped."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, d), dtype=np.uint8)
    y = rng.integers(0, 3, size=n)
    np.save(path, X)
    return X, y, np.load(path, mmap_mode="r")


ROWS_FIT = dict(epochs=3, batch_size=16, validation_split=0.2, verbose=0,
                optimizer={"name": "adam", "lr": 0.01})


def train_rows(X, y, comm=None, **kw):
    """Train the row-source case on X (an array or a RowSource); return (weights, model)."""
    model = mlpx.MLP([X.shape[1], 8, 3], dtype="float64", seed=0)
    model.fit(X, y, comm=comm, **dict(ROWS_FIT, **kw))
    return [mlpx._backend.to_numpy(p) for p in model.params], model
