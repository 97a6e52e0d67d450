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
``bounds``     how close to the floor a step *can* get: the bare step on one batch,
               its time split into the matrix products and everything else (the
               element-wise passes, the optimizer update, the loss, Python), against
               the floor of ``benchmarks.fit_table`` (the same products, nothing else;
               the split comes from a second run of the step with a timer around each
               operation: the rest is that run's time less its products, so the
               timers' own cost, about 1 us for each of the 30-odd operations of a
               step, counts in the rest);
               and inference's passes outside the products (bias + ReLU, the softmax;
               and the input's NaN/inf check) against its floor. The bounds assume the
               products at the floor's speed and the rest left as measured (serial) or
               split perfectly over two cores; and the step on batches gathered
               beforehand from all of X (rows read from memory, as in a fit) against
               the step on one cached batch (what ``fit_table``'s bare step runs)

Usage::

    python -m benchmarks.fit_overheads                         # all four, 2 threads
    python -m benchmarks.fit_overheads --parts fit --samples 60000 --threads 1
    python -m benchmarks.fit_overheads --parts bounds --batches 64,256,1024,4096

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


def _forward_floor(model, xb):
    """Inference's floor: the forward products of ``model`` on ``xb`` into kept
    outputs, nothing else; returns the callable and the outputs."""
    Ws = [p for p in model.params if p.ndim == 2]
    outs = [np.empty((xb.shape[0], W.shape[1]), dtype=xb.dtype) for W in Ws]

    def floor():
        x = xb
        for W, out in zip(Ws, outs):
            np.matmul(x, W, out=out)
            x = out
    return floor, outs


def part_inference(X, args, log):
    from mlpx import _fast

    model = _model("sgd", X.dtype.name)
    for bs in args.batches:
        xb = np.ascontiguousarray(X[:bs])
        floor, _ = _forward_floor(model, xb)

        def generic(xb=xb):
            with _fast.disabled():
                model.predict_proba(xb)
        bench({"floor (products)": floor,
               "predict_proba": lambda xb=xb: model.predict_proba(xb),
               "predict_proba, MLPX_FAST off": generic},
              args.rounds, max(1, 2048 // bs), f"inference {bs}", log)


class _OpTimer:
    """Exclusive time per category of the NumPy step's operations: each wrapped method
    of :class:`mlpx._fast.numpy_step.NumpyOps` adds its time minus that of the wrapped
    calls inside it (a product inside ``dense_forward`` counts as a product)."""

    CATEGORY = {"_gemm": "products", "input_grad": "products",
                "update": "optimizer update", "act_forward": "activations",
                "act_backward": "activations", "loss_and_grad": "loss",
                "dense_forward": "bias copies", "weight_grad": "other",
                "bias_grad": "other", "sgd_fused_weight": "other", "begin": "other",
                "grad_buffers": "other"}

    def __init__(self):
        from mlpx._fast import numpy_step

        self.cls = numpy_step.NumpyOps
        self.saved = {}
        self.totals = dict.fromkeys(set(self.CATEGORY.values()), 0.0)
        self.stack = [0.0]

    def __enter__(self):
        for name, cat in self.CATEGORY.items():
            orig = self.saved[name] = self.cls.__dict__[name]

            def wrapped(*a, _orig=orig, _cat=cat, **kw):
                self.stack.append(0.0)
                t0 = time.perf_counter()
                try:
                    return _orig(*a, **kw)
                finally:
                    dt = time.perf_counter() - t0
                    inner = self.stack.pop()
                    self.totals[_cat] += dt - inner
                    self.stack[-1] += dt
            setattr(self.cls, name, wrapped)
        return self

    def __exit__(self, *exc):
        for name, orig in self.saved.items():
            setattr(self.cls, name, orig)

    def reset(self):
        self.totals = dict.fromkeys(self.totals, 0.0)


def part_bounds(X, labels, args, log):
    from .fit_table import floor as floor_run

    eye = np.eye(SIZES[-1], dtype=X.dtype)
    for opt in args.optimizers:
        for bs in args.batches:
            number = max(1, min(max(2, 4096 // bs), len(X) // bs))  # steps per timing
            model = _model(opt, X.dtype.name)
            xb = np.ascontiguousarray(X[:bs])
            yb = eye[labels[:bs]]
            floor = floor_run(X[:bs * number], labels, bs, opt, X.dtype.name)
            # batches of a permutation of all of X, gathered beforehand: what a fit's
            # step reads (rows from memory, not the cache), without the gather itself
            perm = np.random.default_rng(3).permutation(len(X))
            pre = [(np.ascontiguousarray(X[perm[s:s + bs]]), eye[labels[perm[s:s + bs]]])
                   for s in range(0, len(X) - bs + 1, bs)]
            best_floor, best_mem, best_step, best = (float("inf"),) * 3 + (None,)
            timer = _OpTimer()

            def steps(xs, model=model):
                t0 = time.perf_counter()
                for xm, ym in xs:
                    model.train_step(xm, ym)
                return (time.perf_counter() - t0) / len(xs)
            cached = [(xb, yb)] * number
            steps(cached[:3])
            for _ in range(args.rounds):
                best_mem = min(best_mem, steps(pre))
                t0 = time.perf_counter()
                floor()
                best_floor = min(best_floor, (time.perf_counter() - t0) / number)
                best_step = min(best_step, steps(cached))
                with timer:  # the split, from a second run with the timers in
                    timer.reset()
                    timed = steps(cached)
                if best is None or timed < best[0]:
                    best = (timed, {k: v / number for k, v in timer.totals.items()})
            total, parts = best_step, best[1]
            rest = best[0] - parts["products"]  # of the same (timed) run
            shares = ", ".join(f"{k} {v * 1e3:.3f}" for k, v in sorted(
                parts.items(), key=lambda kv: -kv[1]) if k != "products")
            log(f"{opt} step {bs:>5}: floor {best_floor * 1e3:8.3f} ms, step "
                f"{total * 1e3:8.3f} ms (floor/step {best_floor / total:.2f}); products "
                f"in the step {parts['products'] * 1e3:8.3f} ms "
                f"(x{parts['products'] / best_floor:.2f} of the floor), the rest "
                f"{rest * 1e3:.3f} ms [{shares}; the remainder is Python and the timers]; "
                f"bound floor/(floor + rest) "
                f"{best_floor / (best_floor + rest):.2f}, with the rest split over two "
                f"cores {best_floor / (best_floor + rest / 2):.2f}; the step on batches "
                f"read from memory {best_mem * 1e3:.3f} ms (one cached batch / batches from "
                f"memory {total / best_mem:.2f}: the most fit / bare step can be)")
    part_inference_bounds(X, args, log)


def part_inference_bounds(X, args, log):
    from mlpx._fast import _numba, numpy_forward

    kern = _numba.kernels()
    model = _model("sgd", X.dtype.name)
    bs_ = [p for p in model.params if p.ndim == 1]
    zero = X.dtype.type(0)
    for bs in args.batches:
        xb = np.ascontiguousarray(X[:bs])
        floor, outs = _forward_floor(model, xb)
        zeros = [np.zeros((bs, w), dtype=X.dtype) for w in SIZES[1:-1]]

        def passes(outs=outs, zeros=zeros):
            for h, b, z in zip(outs[:-1], bs_[:-1], zeros):
                if kern is not None:
                    kern.bias_relu(h, b, zero)
                else:
                    np.add(h, b, out=h)
                    np.maximum(h, z, out=h)
            z = outs[-1]
            z += bs_[-1]
            m = np.max(z, axis=1, keepdims=True)
            np.subtract(z, m, out=z)
            np.exp(z, out=z)
            np.divide(z, np.sum(z, axis=1, keepdims=True), out=z)

        best = bench({"floor (products)": floor, "passes outside the products": passes,
                      "the input's NaN/inf check (a sum)": lambda xb=xb: np.sum(xb),
                      "numpy_forward.proba (no input checks)":
                          lambda xb=xb, bs=bs: numpy_forward.proba(model, xb, bs),
                      "predict_proba": lambda xb=xb: model.predict_proba(xb)},
                     args.rounds, max(1, 2048 // bs), f"inference {bs}", log)
        f = best["floor (products)"][0]
        r = best["passes outside the products"][0] + best["the input's NaN/inf check (a sum)"][0]
        inner, pp = best["numpy_forward.proba (no input checks)"][0], best["predict_proba"][0]
        log(f"{'inference':>18} {bs:>5}: bound floor/(floor + passes + check) "
            f"{f / (f + r):.2f}, split over two cores {f / (f + r / 2):.2f}; measured "
            f"floor/predict_proba {f / pp:.2f}, floor/numpy_forward.proba {f / inner:.2f}")


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
    if max(args.batches) > args.samples:
        p.error(f"--samples ({args.samples}) must be at least the largest batch "
                f"({max(args.batches)}).")
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
        if "bounds" in parts:
            part_bounds(X, labels, args, log)
    log(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
