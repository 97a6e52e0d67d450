"""Issue 10: where one mlpx.sklearn fit spends its time on the issue's workload.

Fashion-MNIST (60000 training images, X / 255.0), MLPClassifier 784-256-256-10, adam,
batch 128, 10 epochs, alpha 0, random_state 0, BLAS limited to 1 thread, profiled with
cProfile and sorted by tottime. Prints the wall time without and with the profiler, the
top lines, and the same grouped into GEMMs / Adam update / the rest.

Usage: python benchmarks/results/issue10_profile_fit.py [--dtype float64] [--top 30]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import warnings

import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dtype", default="float64")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = p.parse_args()

    import sklearn.neural_network  # noqa: F401  (load every BLAS before limiting)
    import threadpoolctl

    import mlpx
    from mlpx.datasets import load_fashion_mnist
    from mlpx.sklearn import MLPClassifier

    (X, y), _ = load_fashion_mnist(args.data_dir, download=False, progress=False)
    X = X.reshape(len(X), -1).astype(args.dtype) / 255.0
    params = dict(hidden_layer_sizes=(256, 256), solver="adam", batch_size=128,
                  max_iter=10, alpha=0.0, random_state=0)
    with threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas"):
        blas = [f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
                for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        print(f"mlpx {mlpx.__version__} from {mlpx.__file__}; numpy {np.__version__}; "
              f"BLAS {'; '.join(blas)}; X {X.dtype} {X.shape}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            MLPClassifier(**params).fit(X, y)
            plain = time.perf_counter() - t0
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            MLPClassifier(**params).fit(X, y)
            prof.disable()
            profiled = time.perf_counter() - t0
    print(f"fit without profiler {plain:.2f} s, with cProfile {profiled:.2f} s")
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())

    groups = {"GEMMs (_blas / matmul)": 0.0, "Adam update": 0.0, "the rest": 0.0}
    total = 0.0
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        total += tt
        name = f"{filename}:{func}"
        if "gemm" in func.lower() or "matmul" in func or filename.endswith("_blas.py"):
            groups["GEMMs (_blas / matmul)"] += tt
        elif "adam" in name.lower() or (filename.endswith("numpy_step.py")
                                        and func == "update"):
            groups["Adam update"] += tt
        else:
            groups["the rest"] += tt
    print(f"total tottime {total:.2f} s")
    for k, v in groups.items():
        print(f"  {k:<24} {v:7.2f} s  {v / total:6.1%}")


if __name__ == "__main__":
    main()
