"""Issue 10's workload in one process: scikit-learn vs mlpx with numba's kernels on and
off, interleaved (the order rotates), CPU seconds (process_time) and wall seconds, 2
epochs per fit, one BLAS thread.

Usage: python benchmarks/results/issue17_sklearn_numba_onoff.py ROUNDS
(output kept in benchmarks/results/issue17_sklearn_numba_onoff.log)
"""

import os
import statistics
import sys
import time
import warnings

import numpy as np
import sklearn.neural_network
from threadpoolctl import threadpool_limits

from mlpx._fast import _policy
from mlpx.datasets import load_fashion_mnist
from mlpx.sklearn import MLPClassifier as Mx

Sk = sklearn.neural_network.MLPClassifier


def fit(cls, params, X, y, numba=None):
    if numba is not None:
        _policy.set_numba_enabled(numba)
    cls(**params).fit(X, y)


def main(rounds):
    (X0, y), _ = load_fashion_mnist("/usr/share/datasets/fashion-mnist", download=False,
                                    progress=False)
    params = dict(hidden_layer_sizes=(256, 256), solver="adam", batch_size=128,
                  max_iter=2, alpha=0.0, random_state=0)
    print(os.popen("uptime").read().strip(), "numpy", np.__version__)
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dt in ("float64", "float32"):
            X = (X0.reshape(len(X0), -1).astype(dt) / 255.0).astype(dt, copy=False)
            Mx(**dict(params, max_iter=1)).fit(X[:500], y[:500])  # load the kernels
            impls = {"sklearn": (Sk, None), "mlpx numba": (Mx, True),
                     "mlpx numpy": (Mx, False)}
            cpu = {k: [] for k in impls}
            wall = {k: [] for k in impls}
            names = list(impls)
            for r in range(rounds):
                for k in names[r % 3:] + names[:r % 3]:
                    t0, c0 = time.perf_counter(), time.process_time()
                    fit(impls[k][0], params, X, y, impls[k][1])
                    cpu[k].append(time.process_time() - c0)
                    wall[k].append(time.perf_counter() - t0)
                print(dt, "round", r, {k: (round(cpu[k][-1], 2), round(wall[k][-1], 2))
                                       for k in names}, flush=True)
            _policy.set_numba_enabled(True)
            for k in ("mlpx numba", "mlpx numpy"):
                rc = [a / b for a, b in zip(cpu["sklearn"], cpu[k])]
                rw = [a / b for a, b in zip(wall["sklearn"], wall[k])]
                print(f"{dt}: sklearn / {k}: CPU-time ratio median "
                      f"{statistics.median(rc):.2f} (rounds "
                      f"{', '.join(f'{x:.2f}' for x in rc)}), wall median "
                      f"{statistics.median(rw):.2f}")
            g = [a / b for a, b in zip(cpu["mlpx numpy"], cpu["mlpx numba"])]
            print(f"{dt}: numba kernels speed-up of the mlpx fit (CPU time): "
                  f"{', '.join(f'{x:.2f}' for x in g)}")
    print(os.popen("uptime").read().strip())


if __name__ == "__main__":
    main(int(sys.argv[1]))
