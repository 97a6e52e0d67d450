"""Issue 10: the Python work around one small training step, before vs after.

Profiles ``--steps`` calls of ``model.train_step`` (``benchmarks.workloads.make_mlpx``,
784-512-512-10, float32, batch ``--batch``, 1 BLAS thread) with cProfile in the tree this
runs from (set ``PYTHONPATH`` to it), and prints the function calls per step, the wall
time per step without the profiler (best of 5 blocks), and the top functions by tottime.

Usage: OPENBLAS_NUM_THREADS=1 PYTHONPATH=TREE python benchmarks/results/issue10_step_profile.py
       [--optimizer adam] [--batch 64] [--steps 2000]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=2000)
    args = p.parse_args()

    import mlpx
    from benchmarks import workloads as W

    run = W.make_mlpx("numpy", (784, 512, 512, 10), args.batch, optimizer=args.optimizer)
    for _ in range(20):
        run()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(args.steps // 5):
            run()
        best = min(best, (time.perf_counter() - t0) / (args.steps // 5))
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.steps):
        run()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    calls = sum(v[1] for v in stats.stats.values())
    print(f"mlpx from {mlpx.__file__}; {args.optimizer}, batch {args.batch}: "
          f"{best * 1e6:.0f} us per step (best block, no profiler); "
          f"{calls / args.steps:.1f} function calls per step")
    stats.sort_stats("tottime").print_stats(18)
    print(out.getvalue())


if __name__ == "__main__":
    main()
