"""Measure the one-pool prototype (pool.c) inside mlpx's NumPy step: OpenBLAS's jobs on
the prototype's two threads (through OpenBLAS's threads-callback hook), and with it the
Adam update split over the same two threads. Interleaved rounds in one process.

    gcc -O3 -march=native -ffp-contract=off -fno-math-errno -shared -fPIC -pthread \
        -o /tmp/libpool.so benchmarks/experiments/openblas_pool/pool.c
    python -m benchmarks.experiments.openblas_pool.measure /tmp/libpool.so [ROUNDS [0,1,2]]

The last argument picks the variants (0: OpenBLAS's own pool, 1: the prototype's pool,
2: the prototype's pool and the Adam split); run one per process, alternating, so that
no pool is left spinning beside another.
"""

import collections
import ctypes
import os
import re
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info

from benchmarks.workloads import mlpx_model
from mlpx._fast import _numba

SIZES = (784, 512, 512, 10)


def summary(path):
    """Best and median step time per (optimizer, batch, variant) over the runs in a
    log of ``run.sh``."""
    times = collections.defaultdict(list)
    for line in open(path):
        m = re.match(r"(\w+)\s+(\d+): (.+?) ([\d.]+) ms", line)
        if m:
            times[(m[1], int(m[2]), m[3])].append(float(m[4]))
    for opt, bs in sorted({k[:2] for k in times}):
        cells = []
        for v in ("OpenBLAS's pool", "one pool", "one pool + Adam split"):
            x = times[(opt, bs, v)]
            cells.append(f"{v}: best {min(x):.3f} median {statistics.median(x):.3f} ms")
        print(f"{opt} {bs}: " + " | ".join(cells) + f" (runs: {len(x)})")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[0] == "summary":
        return summary(argv[1])
    pool = ctypes.CDLL(argv[0])
    rounds = int(argv[1]) if len(argv) > 1 else 7
    only = argv[2].split(",") if len(argv) > 2 else None  # variants for this process
    path = next(i["filepath"] for i in threadpool_info()
                if i["internal_api"] == "openblas" and "numpy" in i["filepath"])
    blas = ctypes.CDLL(path)
    set_cb = blas.scipy_openblas_set_threads_callback_function64_
    set_cb.argtypes = [ctypes.c_void_p]
    cb = ctypes.cast(pool.pool_blas_callback, ctypes.c_void_p).value
    pool.pool_adam.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] + \
        [ctypes.c_float] * 5 + [ctypes.c_int]
    pool.pool_jobs_run.restype = ctypes.c_long

    # the products are the same with the jobs on either pool
    rng = np.random.default_rng(0)
    A, B = rng.random((256, 784), np.float32), rng.random((784, 512), np.float32)
    native = A @ B
    set_cb(cb)
    ours = A @ B
    set_cb(None)
    assert native.tobytes() == ours.tobytes(), "products differ"
    # the C Adam kernel is numba's, bit for bit
    k = _numba.kernels()
    n = 300_001
    arrs = [rng.random(n, np.float32) for _ in range(4)]
    twin = [a.copy() for a in arrs]
    sc = [np.float32(x) for x in (0.9, 0.999, 0.1, 1e-8, 1e-3)]
    k.adam(*arrs, *sc, np.float32(0), np.float32(0), 0)
    pool.pool_adam(*(a.ctypes.data for a in twin), n, *sc, 1)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(arrs, twin)), "Adam differs"

    # the update alone, 669,706 float32 parameters: numba, the C kernel, the C kernel
    # split over the two threads; hot, and right after a 64 MB pass (out of cache)
    n = sum(a * b + b for a, b in zip(SIZES[:-1], SIZES[1:]))
    arrs = [rng.random(n, np.float32) for _ in range(4)]
    ptrs = [a.ctypes.data for a in arrs]
    big = rng.random(16_000_000, np.float32)
    kernels = {"numba": lambda: k.adam(*arrs, *sc, np.float32(0), np.float32(0), 0),
               "C": lambda: pool.pool_adam(*ptrs, n, *sc, 0),
               "C split": lambda: pool.pool_adam(*ptrs, n, *sc, 1)}
    for label, before in (("hot", None), ("after a 64 MB pass", big.sum)):
        times = {}
        for name, fn in kernels.items():
            ts = []
            for _ in range(100):
                if before is not None:
                    before()
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            times[name] = sorted(ts)[50]
        print(f"Adam update, {n} parameters, {label} (median us): " + ", ".join(
            f"{name} {t * 1e6:.0f}" for name, t in times.items()), flush=True)

    orig_adam = k.adam
    split = {"on": False}

    def adam(p, g, m, v, b1, b2, c, eps_b, step, shrink, wd1, mode):
        if split["on"] and mode == 0 and p.dtype == np.float32 and p.size >= 65536:
            pool.pool_adam(p.ctypes.data, g.ctypes.data, m.ctypes.data, v.ctypes.data,
                           p.size, b1, b2, c, eps_b, step, 1)
        else:
            orig_adam(p, g, m, v, b1, b2, c, eps_b, step, shrink, wd1, mode)
    k.adam = adam

    print(f"NumPy {np.__version__}, {path.rsplit('/', 1)[-1]}, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    variants = {"OpenBLAS's pool": (None, False), "one pool": (cb, False),
                "one pool + Adam split": (cb, True)}
    if only is not None:  # one pool per process: no second pool left spinning
        variants = {k_: v for i, (k_, v) in enumerate(variants.items()) if str(i) in only}
    for opt, batches in (("adam", (64, 256, 1024)), ("sgd", (64, 1024))):
        for bs in batches:
            model, X, Y = mlpx_model(np, SIZES, bs, optimizer=opt)
            number = max(4, 4096 // bs)
            best = dict.fromkeys(variants, float("inf"))
            names = list(variants)
            for r in range(rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    fn, sp = variants[name]
                    set_cb(fn)
                    split["on"] = sp
                    for _ in range(2):
                        model.train_step(X, Y)
                    t0 = time.perf_counter()
                    for _ in range(number):
                        model.train_step(X, Y)
                    best[name] = min(best[name], (time.perf_counter() - t0) / number)
            set_cb(None)
            split["on"] = False
            base = next(iter(best.values()))
            print(f"{opt} {bs:>5}: " + ", ".join(
                f"{k_} {v * 1e3:.3f} ms (x{base / v:.2f})" for k_, v in best.items()),
                flush=True)
    k.adam = orig_adam
    print(f"jobs run on the prototype: {pool.pool_jobs_run()}; load "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
