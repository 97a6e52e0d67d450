"""Scaling of data-parallel training (mlpx.distributed) over MPI ranks.

Run from the repository root, once per number of ranks::

    mpiexec -n 1 python -m benchmarks.mpi_scaling
    mpiexec -n 2 python -m benchmarks.mpi_scaling
    mpiexec -n 2 python -m benchmarks.mpi_scaling --steps 40 --out benchmarks/results
    mpiexec -n 2 python -m benchmarks.mpi_scaling --bucket-bytes 262144 1048576

Rank 0 prints one JSON object: the reference MLP (784-512-512-10, ReLU, softmax
cross-entropy, float32, SGD) trained with ``--batch-per-rank`` samples per rank per step
(the global batch grows with the ranks: weak scaling), samples/s, the time per step and
the part of it spent in the gradient all-reduce, and a sweep of ``MPI_Allreduce`` over
float32 buffers (latency and bandwidth, the inputs of the cost model in
docs/distributed.md). With one rank it also times the plain single-process ``fit`` (the
fused fast step), which a data-parallel run gives up for the unfused
gradient-then-update path. ``--bucket-bytes`` also times the same training with the
gradients all-reduced in buckets of each size (all in flight at once), interleaved with
the one-buffer runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from mlpx import _backend, distributed
from mlpx.model import MLP


class TimedMPI(distributed.MPICommunicator):
    """The MPI communicator, timing the gradient all-reduce of every step (from the
    start of its first bucket to the end of its last)."""

    def __init__(self, comm, bucket_bytes=None):
        super().__init__(comm, bucket_bytes=bucket_bytes)
        self.seconds: list[float] = []
        self.pending = 0
        self.t0 = 0.0

    def allreduce_sum_async(self, buf, *, backend):
        if self.pending == 0:
            self.t0 = time.perf_counter()
        self.pending += 1
        wait = super().allreduce_sum_async(buf, backend=backend)

        def timed():
            out = wait()
            self.pending -= 1
            if self.pending == 0:
                self.seconds.append(time.perf_counter() - self.t0)
            return out

        return timed

    def allreduce_sum(self, buf, *, backend):
        return self.allreduce_sum_async(buf, backend=backend)()


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.01, 1.01, size=(n, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    return X, y


def _fit(comm, batch, steps, repeats):
    """Best of ``repeats`` one-epoch fits of ``steps`` steps: (seconds/step, all-reduce)."""
    size = 1 if comm is None else comm.size
    X, y = _data(batch * size * steps)
    best = None
    for _ in range(repeats):
        model = MLP([784, 512, 512, 10], dtype="float32", seed=0)
        if comm is not None:
            comm.seconds.clear()
            comm.comm.Barrier()
        t0 = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=batch * size, shuffle=False, verbose=0,
                  optimizer={"name": "sgd", "lr": 0.01}, comm=comm)
        seconds = (time.perf_counter() - t0) / steps
        reduce = 0.0 if comm is None else float(np.median(comm.seconds))
        if best is None or seconds < best[0]:
            best = (seconds, reduce)
    return best


def _allreduce_sweep(comm, repeats):
    MPI = distributed.import_mpi()
    rows = []
    for count in [2**k for k in range(8, 23, 2)] + [669_708]:
        buf = np.ones(count, dtype=np.float32)
        times = []
        for _ in range(repeats):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t0)
        rows.append({"floats": count, "bytes": 4 * count, "seconds": float(np.median(times))})
    return rows


def _wait_modes(world, repeats, floats=669_708, bucket_bytes=1 << 20):
    """Median seconds of one all-reduce of the model's gradient buffer, three ways,
    interleaved: blocking ``Allreduce``; ``MPICommunicator`` (``Iallreduce`` polled
    under the timeout); the same in buckets of ``bucket_bytes``, all in flight."""
    MPI = distributed.import_mpi()
    backend = _backend.resolve_backend("numpy")
    polled = distributed.MPICommunicator(world)
    edges = distributed.bucket_edges(floats, 4, bucket_bytes)
    times: dict[str, list[float]] = {"blocking": [], "polled": [], "polled_bucketed": []}
    for _ in range(repeats):
        for mode, seconds in times.items():
            buf = np.ones(floats, dtype=np.float32)
            world.Barrier()
            t0 = time.perf_counter()
            if mode == "blocking":
                world.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            elif mode == "polled":
                polled.allreduce_sum(buf, backend=backend)
            else:
                waits = [polled.allreduce_sum_async(buf[a:b], backend=backend)
                         for a, b in edges]
                for wait in waits:
                    wait()
            seconds.append(time.perf_counter() - t0)
    return {mode: float(np.median(seconds)) for mode, seconds in times.items()} | {
        "floats": floats, "bucket_bytes": bucket_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-per-rank", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="folder to write the JSON to")
    parser.add_argument("--bucket-bytes", type=int, nargs="*", default=[],
                        help="also time all-reduces in buckets of these sizes")
    args = parser.parse_args()
    MPI = distributed.import_mpi()
    world = MPI.COMM_WORLD
    comm = TimedMPI(world)
    bucketed = {b: TimedMPI(world, bucket_bytes=b) for b in args.bucket_bytes}
    runs: dict = {None: []}
    runs.update({b: [] for b in bucketed})
    for _ in range(args.repeats):  # interleaved: one of each per round, best kept
        runs[None].append(_fit(comm, args.batch_per_rank, args.steps, 1))
        for b, c in bucketed.items():
            runs[b].append(_fit(c, args.batch_per_rank, args.steps, 1))
    step, reduce = min(runs[None])
    result = {
        "ranks": comm.size,
        "model": "784-512-512-10 relu float32 sgd",
        "batch_per_rank": args.batch_per_rank,
        "global_batch": args.batch_per_rank * comm.size,
        "steps": args.steps,
        "seconds_per_step": step,
        "allreduce_seconds_per_step": reduce,
        "allreduce_share": reduce / step,
        "samples_per_second": args.batch_per_rank * comm.size / step,
        "bucketed": [{"bucket_bytes": b, "seconds_per_step": min(runs[b])[0],
                      "allreduce_seconds_per_step": min(runs[b])[1],
                      "samples_per_second": args.batch_per_rank * comm.size
                      / min(runs[b])[0]} for b in bucketed],
        "allreduce_sweep": _allreduce_sweep(world, 20),
        "allreduce_wait_modes": _wait_modes(world, 40),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "mpi": MPI.Get_library_version().splitlines()[0].strip(),
        "backend": _backend.resolve_backend("numpy").name,
    }
    if comm.size == 1:
        plain, _ = _fit(None, args.batch_per_rank, args.steps, args.repeats)
        result["plain_fit_seconds_per_step"] = plain
        result["plain_fit_samples_per_second"] = args.batch_per_rank / plain
    if comm.rank == 0:
        text = json.dumps(result, indent=1)
        print(text)
        if args.out is not None:
            tag = "-buckets" if bucketed else ""
            path = os.path.join(args.out, f"mpi_scaling{tag}-{comm.size}rank.json")
            with open(path, "w") as fh:
                fh.write(text + "\n")


if __name__ == "__main__":
    main()
