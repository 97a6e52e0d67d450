"""Issue 10: time of one ``model.train_step`` before vs after the refactor, directly.

The ratios of ``python -m benchmarks`` divide by a floor measured in other blocks, which
adds the floor's noise. This times mlpx's own step only (``benchmarks.workloads.make_mlpx``,
784-512-512-10, float32, 1 BLAS thread) in child processes that alternate between the
before and the after code (``PYTHONPATH`` set to each tree), several times each, and
reports for each side the best and the median over all blocks of the per-block median
time per call.

Usage: python benchmarks/results/issue10_step_time.py BEFORE_TREE AFTER_TREE [--pairs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
import mlpx
from benchmarks import workloads as W
blocks, budget = int(sys.argv[1]), float(sys.argv[2])
out = {"mlpx": mlpx.__file__, "numpy": np.__version__, "times": {}}
for opt in ("sgd", "adam"):
    for n in (64, 256, 1024):
        run = W.make_mlpx("numpy", (784, 512, 512, 10), n, optimizer=opt)
        for _ in range(5):
            run()
        meds = []
        for _ in range(blocks):
            ts = []
            end = time.perf_counter() + budget
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                run()
                ts.append(time.perf_counter() - t0)
            meds.append(sorted(ts)[len(ts) // 2])
        out["times"][f"{opt}-{n}"] = meds
print(json.dumps(out))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--budget", type=float, default=0.2)
    p.add_argument("--json", default=None, help="write every block's time here")
    args = p.parse_args()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MLPX_FAST_THREADS="1")
    times = {"before": {}, "after": {}}
    for k in range(args.pairs):
        for side in ("before", "after") if k % 2 == 0 else ("after", "before"):
            tree = getattr(args, side)
            res = subprocess.run([sys.executable, "-c", CHILD, str(args.blocks),
                                  str(args.budget)], cwd=tree, env=dict(env, PYTHONPATH=tree),
                                 capture_output=True, text=True, check=True)
            d = json.loads(res.stdout.strip().splitlines()[-1])
            print(f"{side} pass {k + 1}: mlpx from {d['mlpx']}, numpy {d['numpy']}, "
                  f"load {os.getloadavg()[0]:.2f}", file=sys.stderr)
            for key, v in d["times"].items():
                times[side].setdefault(key, []).extend(v)
    print("| step | before best us | after best us | after/before best | "
          "before median us | after median us | after/before median |")
    print("|---|---|---|---|---|---|---|")
    for key in times["before"]:
        b, a = times["before"][key], times["after"][key]
        bb, ab = min(b) * 1e6, min(a) * 1e6
        bm, am = statistics.median(b) * 1e6, statistics.median(a) * 1e6
        print(f"| {key} | {bb:.0f} | {ab:.0f} | {ab / bb:.3f} | {bm:.0f} | {am:.0f} | "
              f"{am / bm:.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(times, fh, indent=1)


if __name__ == "__main__":
    main()
