"""Where one mlpx training step on PyTorch spends its time, against the hand-written loop.

``python -m benchmarks.profile_step [--batch 1024] [--optimizer sgd] [--rounds 12]``

Two things, on one thread (``--threads``), MLP 784-512-512-10, float32:

1. an interleaved A/B of mlpx's PyTorch step (``model.train_step``) and the hand-written
   torch loop of :func:`benchmarks.workloads.make_torch` (the order alternates every
   round; each round times ``--steps`` steps of each), printing the median step time of
   each and ``mlpx / torch`` as a throughput ratio;
2. a cProfile of 20 mlpx steps, printing the functions with the most own time (on the
   reference workload nearly all of it is in ``torch.mm`` / ``torch.addmm``: the same
   matrix products the hand-written loop calls).

Printed only (nothing is written): it answers "is the gap in the products or around
them" on the machine it runs on.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time

import numpy as np

SIZES = (784, 512, 512, 10)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=6, help="steps per round and library")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--top", type=int, default=12, help="profile rows to print")
    args = ap.parse_args(argv)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import torch

    from . import workloads

    torch.set_num_threads(args.threads)
    mlpx_step = workloads.make_mlpx_on(workloads.torch_namespace(), SIZES, args.batch,
                                       optimizer=args.optimizer)
    torch_step = workloads.make_torch("cpu", SIZES, args.batch, optimizer=args.optimizer)
    for fn in (mlpx_step, torch_step):  # warm up: buffers, kernels, allocator
        fn()
        fn()
    times: dict = {"mlpx": [], "torch": []}
    pair = [("mlpx", mlpx_step), ("torch", torch_step)]
    for r in range(args.rounds):
        for name, fn in (pair if r % 2 else pair[::-1]):
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn()
            times[name].append((time.perf_counter() - t0) / args.steps)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"torch {torch.__version__}, threads {args.threads}, batch {args.batch}, "
          f"{args.optimizer}, {args.rounds} rounds x {args.steps} steps, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"median step: mlpx[torch] {med['mlpx'] * 1e3:.2f} ms, torch loop "
          f"{med['torch'] * 1e3:.2f} ms; mlpx/torch throughput {med['torch'] / med['mlpx']:.3f}")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        mlpx_step()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("tottime")
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    products = sum(row[2] for key, row in stats.stats.items()  # type: ignore[attr-defined]
                   if key[2] in ("<built-in method torch.mm>", "<built-in method torch.addmm>"))
    print(f"20 mlpx steps: {total:.3f} s of own time, {100 * products / total:.1f}% in "
          "torch.mm / torch.addmm")
    stats.print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
