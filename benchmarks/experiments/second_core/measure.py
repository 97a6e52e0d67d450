"""Issue 17, third round: can the NumPy step's element-wise work use the second core?

Each subcommand is one row of the "Tried and discarded this round" table in
``docs/performance.md`` ("How close the step can get"); all use the reference model
784-512-512-10 (float32, ReLU, softmax cross-entropy) and print medians or bests of
repeated timings. Run from the repository root with the ``numba`` extra installed::

    python -m benchmarks.experiments.second_core.measure split
    OPENBLAS_THREAD_TIMEOUT=4 python -m benchmarks.experiments.second_core.measure split
    python -m benchmarks.experiments.second_core.measure step     # and with the variable
    python -m benchmarks.experiments.second_core.measure blas-threads
    python -m benchmarks.experiments.second_core.measure neighbour
    git apply benchmarks/experiments/second_core/bias_after_product.patch
    python -m benchmarks.experiments.second_core.measure ab       # then git checkout mlpx

``split``         the fused Adam update of all 669,706 parameters, serial against split in
                  halves over a persistent Python worker thread (``threading.Event``
                  hand-off, numba ``nogil`` kernels): hot, right after a matrix product
                  (OpenBLAS's worker then spins on the second core), and right after a
                  product with ``openblas_set_num_threads(1)`` around the update;
                  ``OPENBLAS_THREAD_TIMEOUT=4`` (read when OpenBLAS loads) makes its
                  workers sleep at once
``step``          the bare training step's time (SGD and Adam, batch 64 and 256), to
                  compare with and without ``OPENBLAS_THREAD_TIMEOUT=4``
``blas-threads``  the step with one BLAS thread against two, interleaved
``neighbour``     the Adam kernel and a one-thread product alone, beside a thread that
                  spins in compiled code, and the Adam kernel beside a ``sched_yield``
                  loop (are the two vCPUs hyper-thread siblings?)
``ab``            with ``bias_after_product.patch`` applied: the step with the forward's
                  bias added after a ``beta=0`` product (fused with the ReLU) against
                  the bias copied before a ``beta=1`` product, interleaved
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time

import numpy as np

from benchmarks.workloads import mlpx_model

SIZES = (784, 512, 512, 10)
N_PARAMS = sum(a * b + b for a, b in zip(SIZES[:-1], SIZES[1:]))  # 669,706


def _median_us(fn, before=None, number=300):
    ts = []
    for _ in range(number):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[number // 2] * 1e6


class _Worker:
    """One daemon thread that runs ``fn(*args)`` when told to (Event hand-off)."""

    def __init__(self):
        self.go, self.done, self.job = threading.Event(), threading.Event(), None
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            self.go.wait()
            self.go.clear()
            fn, args = self.job
            fn(*args)
            self.done.set()

    def run(self, fn, args):
        self.job = (fn, args)
        self.done.clear()
        self.go.set()


def _adam_setup():
    from mlpx._fast import _numba

    k = _numba.kernels()
    rng = np.random.default_rng(0)
    p, g, m, v = (rng.random(N_PARAMS, np.float32) for _ in range(4))
    sc = tuple(np.float32(x) for x in (0.9, 0.999, 0.5, 1e-8, 1e-3, 0.0, 0.0)) + (0,)
    return k, (p, g, m, v), sc


def split():
    from threadpoolctl import threadpool_limits

    k, (p, g, m, v), sc = _adam_setup()
    worker, h = _Worker(), N_PARAMS // 2

    def serial():
        k.adam(p, g, m, v, *sc)

    def halves():
        worker.run(k.adam, (p[:h], g[:h], m[:h], v[:h], *sc))
        k.adam(p[h:], g[h:], m[h:], v[h:], *sc)
        worker.done.wait()

    def hand_off():
        worker.run(lambda: None, ())
        worker.done.wait()
    A = np.random.default_rng(1).random((784, 64), np.float32)
    B = np.random.default_rng(2).random((64, 512), np.float32)
    C = np.empty((784, 512), np.float32)

    def product():
        np.matmul(A, B, out=C)
    print(f"hand-off to the worker and back: {_median_us(hand_off):.0f} us")
    for label, before in (("hot", None), ("right after a product", product)):
        print(f"Adam, {N_PARAMS} parameters, {label}: serial {_median_us(serial, before):.0f}"
              f" us, split {_median_us(halves, before):.0f} us (medians)")
    ts_serial, ts_split = [], []
    for _ in range(300):  # the update between a product and the next, one BLAS thread
        product()
        with threadpool_limits(1, "blas"):
            ts_serial.append(_median_us(serial, number=1))
        product()
        with threadpool_limits(1, "blas"):
            ts_split.append(_median_us(halves, number=1))
    print(f"Adam right after a product, BLAS set to 1 thread around it: serial "
          f"{sorted(ts_serial)[150]:.0f} us, split {sorted(ts_split)[150]:.0f} us")


def step():
    for opt in ("sgd", "adam"):
        for bs in (64, 256):
            model, X, Y = mlpx_model(np, SIZES, bs, optimizer=opt)
            for _ in range(20):
                model.train_step(X, Y)
            best = min(_median_us(lambda m=model, x=X, y=Y: m.train_step(x, y), number=50)
                       for _ in range(5))
            print(f"{opt} batch {bs}: step {best / 1e3:.3f} ms (best of 5 medians)")


def blas_threads():
    from threadpoolctl import threadpool_limits

    for opt in ("sgd", "adam"):
        for bs in (64, 128, 256, 1024):
            model, X, Y = mlpx_model(np, SIZES, bs, optimizer=opt)
            number = max(20, 6400 // bs)
            best = {1: float("inf"), 2: float("inf")}
            for r in range(5):
                for th in ((1, 2) if r % 2 else (2, 1)):
                    with threadpool_limits(th, "blas"):
                        for _ in range(3):
                            model.train_step(X, Y)
                        t0 = time.perf_counter()
                        for _ in range(number):
                            model.train_step(X, Y)
                        best[th] = min(best[th], (time.perf_counter() - t0) / number)
            print(f"{opt} batch {bs}: 1 thread {best[1] * 1e3:.3f} ms, 2 threads "
                  f"{best[2] * 1e3:.3f} ms, two threads faster by x{best[1] / best[2]:.2f}")


def neighbour():
    import numba
    from threadpoolctl import threadpool_limits

    k, (p, g, m, v), sc = _adam_setup()
    libc = ctypes.CDLL(None)
    sched_yield = libc.sched_yield
    sched_yield.restype, sched_yield.argtypes = ctypes.c_int, []

    @numba.njit(nogil=True)
    def spin(count):  # pragma: no cover - compiled
        acc = 0
        for i in range(count):
            acc = (acc * 1103515245 + i) % 2147483647
        return acc

    @numba.njit(nogil=True)
    def yielder(count):  # pragma: no cover - compiled
        acc = 0
        for _ in range(count):
            acc += sched_yield()
        return acc
    spin(10)
    yielder(10)
    big = np.random.default_rng(3).random((1500, 1500), np.float32)

    def adam():
        k.adam(p, g, m, v, *sc)

    def product():
        big @ big
    with threadpool_limits(1, "blas"):
        for label, fn, count in (("alone", None, 0), ("beside a spinning thread", spin,
                                                      400_000_000),
                                 ("beside a sched_yield loop", yielder, 3_000_000)):
            th = None
            if fn is not None:
                th = threading.Thread(target=fn, args=(count,))
                th.start()
                time.sleep(0.05)
            a = _median_us(adam, number=200)
            b = _median_us(product, number=10) / 1e3
            print(f"{label}: Adam {a:.0f} us, one-thread product {b:.1f} ms (medians)")
            if th is not None:
                th.join()


def ab():
    from mlpx._fast.numpy_step import NumpyOps

    if not hasattr(NumpyOps, "NEW"):
        sys.exit("apply benchmarks/experiments/second_core/bias_after_product.patch first")
    for opt in ("sgd", "adam"):
        for bs in (64, 256, 1024, 4096):
            model, X, Y = mlpx_model(np, SIZES, bs, optimizer=opt)
            number = max(4, 8192 // bs)
            res: dict = {True: [], False: []}
            for r in range(7):
                for new in ((True, False) if r % 2 else (False, True)):
                    NumpyOps.NEW = new
                    for _ in range(2):
                        model.train_step(X, Y)
                    t0 = time.perf_counter()
                    for _ in range(number):
                        model.train_step(X, Y)
                    res[new].append((time.perf_counter() - t0) / number * 1e3)
            old, new_ = sorted(res[False]), sorted(res[True])
            print(f"{opt} batch {bs}: old (copy, beta=1) best {old[0]:.3f} ms, new (beta=0, "
                  f"bias + ReLU after) best {new_[0]:.3f} ms; old/new best "
                  f"{old[0] / new_[0]:.3f}, median {old[3] / new_[3]:.3f}")


COMMANDS = {"split": split, "step": step, "blas-threads": blas_threads,
            "neighbour": neighbour, "ab": ab}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m benchmarks.experiments.second_core.measure "
                 f"{{{','.join(COMMANDS)}}}")
    import os

    print(f"NumPy {np.__version__}, load {os.getloadavg()[0]:.2f}", flush=True)
    COMMANDS[sys.argv[1]]()
