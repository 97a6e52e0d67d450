"""The program ``tests/test_distributed.py`` runs under ``mpiexec -n 2``.

``python tests/mpi_worker.py OUT [--fail kill|raise|hang] [--timeout S]
[--checkpoint-dir DIR] [--rows DIR]``: trains every case of ``distributed_helpers.CASES``
on ``MPI.COMM_WORLD`` (and "adam" again with the gradients all-reduced in 64-byte
buckets) and rank 0 saves the weights to OUT (an .npz); ``--fail`` makes rank 1 die
(SIGKILL), raise, or hang (sleep) during training while rank 0 would go on for a long
time; ``--checkpoint-dir`` trains the "adam" case with a checkpoint every epoch and keeps
a copy of the one written after epoch 2; ``--rows`` trains from the memory-mapped file
DIR/X.npy through a RowSource and saves, with the weights, the rows each rank read and
the peak of its anonymous memory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.distributed_helpers import (  # noqa: E402
    CASES,
    SpyRows,
    make_data,
    make_pixels,
    train_case,
    train_rows,
)

#: Rows of the --rows data set: 10,000 x 784, 62.7 MB as float64 (7.8 MB as uint8).
ROWS_N = 10_000


def anon_kib() -> int:
    """This process's resident anonymous memory (heap, not file pages), in KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--fail", choices=("kill", "raise", "hang"), default=None)
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--rows", default=None)
    args = parser.parse_args()
    from mpi4py import MPI

    import mlpx
    from mlpx import distributed

    comm = MPI.COMM_WORLD
    if args.fail is not None:
        X, y, _ = make_data(n=400)
        model = mlpx.MLP([5, 8, 3], dtype="float64", seed=0)

        def fail(model, epoch, logs):
            if comm.rank == 1 and epoch == 2:
                if args.fail == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if args.fail == "hang":
                    time.sleep(3600)
                raise RuntimeError("rank 1 broke on purpose")

        on = comm if args.timeout is None else distributed.MPICommunicator(
            comm, timeout=args.timeout)
        model.fit(X, y, epochs=100000, batch_size=8, verbose=0, comm=on, callbacks=[fail])
        return
    if args.rows is not None:
        X, y, mapped = make_pixels(os.path.join(args.rows, f"X{comm.rank}.npy"), n=ROWS_N,
                                   d=784)
        del X
        spy = SpyRows(mapped)
        # The peak of anonymous memory during fit, sampled by a thread every 2 ms.
        base, peak, done = anon_kib(), [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], anon_kib())
                time.sleep(0.002)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        source = distributed.RowSource(spy, divide=255, dtype="float64",
                                       chunk_bytes=1 << 20)
        weights, _ = train_rows(source, y, comm, batch_size=200, validation_split=0.0)
        done.set()
        thread.join()
        stats = comm.gather((spy.rows(), [r.size for r in spy.requests], peak[0] - base),
                            root=0)
        if comm.rank == 0:
            out = {f"w{i}": w for i, w in enumerate(weights)}
            for r, (rows, sizes, grew) in enumerate(stats):
                out[f"rows{r}"], out[f"sizes{r}"] = rows, np.asarray(sizes)
                out[f"grew{r}"] = np.asarray(grew)
            np.savez(args.out, **out)
        return
    if args.checkpoint_dir is not None:
        path = os.path.join(args.checkpoint_dir, "run.npz")
        keep = os.path.join(args.checkpoint_dir, "epoch2.npz")

        def copy_epoch2(model, epoch, logs):
            if comm.rank == 0 and epoch == 3:  # the file still holds epoch 2's checkpoint
                shutil.copyfile(path, keep)

        CASES["adam_ckpt"] = dict(CASES["adam"], callbacks=[copy_epoch2])
        weights, _ = train_case("adam_ckpt", comm, epochs=4, checkpoint=path)
        del CASES["adam_ckpt"]
        if comm.rank == 0:
            np.savez(args.out, *weights)
        return
    out = {}
    for name in CASES:
        weights, model = train_case(name, comm, seed=comm.rank)  # rank 0's weights win
        for i, w in enumerate(weights):
            out[f"{name}/{i}"] = w
        out[f"{name}/loss"] = np.asarray(model.history_["loss"])
    bucketed = distributed.MPICommunicator(comm, bucket_bytes=64)
    weights, _ = train_case("adam", bucketed, seed=comm.rank)
    for i, w in enumerate(weights):
        out[f"adam_buckets/{i}"] = w
    if comm.rank == 0:
        np.savez(args.out, **out)


if __name__ == "__main__":
    main()
