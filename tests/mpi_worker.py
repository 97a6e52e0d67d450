"""The program ``tests/test_distributed.py`` runs under ``mpiexec -n 2``.

``python tests/mpi_worker.py OUT [--fail kill|raise] [--checkpoint-dir DIR]``: trains
every case of ``distributed_helpers.CASES`` on ``MPI.COMM_WORLD`` and rank 0 saves the
weights to OUT (an .npz); ``--fail`` makes rank 1 die (SIGKILL) or raise during training
while rank 0 would go on for a long time; ``--checkpoint-dir`` trains the "adam" case with
a checkpoint every epoch and keeps a copy of the one written after epoch 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.distributed_helpers import CASES, make_data, train_case  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--fail", choices=("kill", "raise"), default=None)
    parser.add_argument("--checkpoint-dir", default=None)
    args = parser.parse_args()
    from mpi4py import MPI

    import mlpx

    comm = MPI.COMM_WORLD
    if args.fail is not None:
        X, y, _ = make_data(n=400)
        model = mlpx.MLP([5, 8, 3], dtype="float64", seed=0)

        def fail(model, epoch, logs):
            if comm.rank == 1 and epoch == 2:
                if args.fail == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("rank 1 broke on purpose")

        model.fit(X, y, epochs=100000, batch_size=8, verbose=0, comm=comm, callbacks=[fail])
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
    if comm.rank == 0:
        np.savez(args.out, **out)


if __name__ == "__main__":
    main()
