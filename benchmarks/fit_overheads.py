"""What a ``fit`` pays outside the step, and inference against its floor (issue 17).

Small interleaved measurements behind ``docs/performance.md`` ("The last tenth"): each
candidate runs once per round (the order rotating), in one process, and the best round of each is
reported with its ratio to the first candidate, so that a loaded machine moves all of
them alike.

``finite``     the whole-X NaN/inf check: ``all(isfinite(X))`` against one sum and
               a BLAS matrix-vector product (``X @ ones``)
``gather``     one batch of a fresh random permutation: ``take`` against ``take`` into
               a kept buffer (``mode="wrap"``, the trainer's NumPy path)
``fit``        a one-epoch ``MLP.fit`` against the same number of bare ``train_step``
               calls on batches gathered beforehand (wall and CPU time)
``inference``  ``predict_proba`` (the in-place NumPy path) and the generic path
               (``MLPX_FAST`` off) against the bare forward products

Usage::

    python -m benchmarks.fit_overheads                         # all four, 2 threads
    python -m benchmarks.fit_overheads --parts fit --samples 60000 --threads 1

Prints its lines (nothing is written): the load average, NumPy's version and the
thread count come first.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

SIZES = (784, 512, 512, 10)


def bench(cands, rounds, number, label, log):
    """Best per-call seconds of each candidate over interleaved rounds (wall, CPU)."""
    best = {k: (float("inf"), float("inf")) for k in cands}
    names = list(cands)
    for r in range(rounds):  # the order rotates every round
        for k in names[r % len(names):] + names[:r % len(names)]:
            f = cands[k]
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(number):
                f()
            w, c = (time.perf_counter() - t0) / number, (time.process_time() - c0) / number
            best[k] = (min(best[k][0], w), min(best[k][1], c))
    base = next(iter(best.values()))
    for k, (w, c) in best.items():
        log(f"{label:>18} {k:32s} wall {w * 1e3:9.3f} ms x{w / base[0]:.2f}   "
            f"cpu {c * 1e3:9.3f} ms x{c / base[1]:.2f}")
    return best


def part_finite(X, args, log):
    ones = np.ones(X.shape[1], dtype=X.dtype)
    bench({"all(isfinite(X))": lambda: np.all(np.isfinite(X)),
           "sum(X)": lambda: np.sum(X),
           "X @ ones": lambda: X @ ones}, args.rounds, 1, "finite", log)


def part_gather(X, args, log):
    rng = np.random.default_rng(1)
    n = X.shape[0]
    for bs in args.batches:
        buf = np.empty((bs, X.shape[1]), dtype=X.dtype)
        perms = [rng.permutation(n) for _ in range(4)]
        pos = {"i": 0}

        def rows(bs=bs, perms=perms, pos=pos):
            pos["i"] = (pos["i"] + 1) % (4 * (n // bs))
            s = (pos["i"] % (n // bs)) * bs
            return perms[pos["i"] % 4][s:s + bs]

        bench({"take": lambda rows=rows: np.take(X, rows(), axis=0),
               "take(out=buf, mode='wrap')":
                   lambda rows=rows, buf=buf: np.take(X, rows(), axis=0, out=buf,
                                                      mode="wrap")},
              args.rounds, max(1, 8192 // bs), f"gather {bs}", log)


def _model(opt, dtype):
    import mlpx

    model = mlpx.MLP(list(SIZES), activation="relu", dtype=dtype, seed=0)
    return model.compile(opt, lr=0.01 if opt == "sgd" else 1e-3)


def part_fit(X, labels, args, log):
    rng = np.random.default_rng(2)
    eye = np.eye(SIZES[-1], dtype=X.dtype)
    for opt in args.optimizers:
        for bs in args.batches:
            mf, ms = _model(opt, X.dtype.name), _model(opt, X.dtype.name)
            perm = rng.permutation(len(X))
            pre = [(np.ascontiguousarray(X[perm[s:s + bs]]), eye[labels[perm[s:s + bs]]])
                   for s in range(0, len(X), bs)]

            def fit(mf=mf, bs=bs):
                mf.fit(X, labels, epochs=1, batch_size=bs, verbose=0)

            def steps(ms=ms, pre=pre):
                for xb, yb in pre:
                    ms.train_step(xb, yb)
            fit()
            steps()
            bench({"fit (1 epoch)": fit, "bare steps, batches gathered": steps},
                  args.rounds, 1, f"{opt} fit {bs}", log)


def part_inference(X, args, log):
    from mlpx import _fast

    model = _model("sgd", X.dtype.name)
    Ws = [p for p in model.params if p.ndim == 2]
    for bs in args.batches:
        xb = np.ascontiguousarray(X[:bs])
        outs = [np.empty((bs, w), dtype=X.dtype) for w in SIZES[1:]]

        def floor(xb=xb, outs=outs):
            x = xb
            for W, out in zip(Ws, outs):
                np.matmul(x, W, out=out)
                x = out

        def generic(xb=xb):
            with _fast.disabled():
                model.predict_proba(xb)
        bench({"floor (products)": floor,
               "predict_proba": lambda xb=xb: model.predict_proba(xb),
               "predict_proba, MLPX_FAST off": generic},
              args.rounds, max(1, 2048 // bs), f"inference {bs}", log)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="finite,gather,fit,inference")
    p.add_argument("--batches", default="64,1024,4096")
    p.add_argument("--optimizers", default="sgd,adam")
    p.add_argument("--samples", type=int, default=16384)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.optimizers = [o for o in args.optimizers.split(",") if o]
    from threadpoolctl import threadpool_limits

    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    rng = np.random.default_rng(0)
    X = (rng.random((args.samples, SIZES[0])) + 0.01).astype(args.dtype)
    labels = rng.integers(0, SIZES[-1], args.samples)
    log(f"NumPy {np.__version__}, {args.threads} threads, {args.samples} samples, "
        f"{args.dtype}, load {os.getloadavg()[0]:.2f}")
    with threadpool_limits(limits=args.threads, user_api="blas"):
        parts = args.parts.split(",")
        if "finite" in parts:
            part_finite(X, args, log)
        if "gather" in parts:
            part_gather(X, args, log)
        if "fit" in parts:
            part_fit(X, labels, args, log)
        if "inference" in parts:
            part_inference(X, args, log)
    log(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
