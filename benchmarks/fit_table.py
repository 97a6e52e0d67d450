"""Issue 17's CPU table: whole epochs through ``MLP.fit`` against PyTorch, JAX and the floor.

For each optimizer (SGD, Adam) and batch size, one *epoch* of ``--samples`` samples of
the reference workload (784-512-512-10, ReLU, softmax cross-entropy) is timed for each
implementation, in interleaved rounds (the order rotates every round):

``mlpx fit``    ``MLP.fit(X, labels, epochs=1, batch_size=b)``: shuffling, batching,
                loss and accuracy bookkeeping, the checks of ``fit``, the fast step
``mlpx step``   the bare ``train_step`` on one fixed batch, ``samples // b`` times (what
                the fit would cost with its loop for free)
``torch``       PyTorch eager, written by hand as a user would: ``randperm`` every
                epoch, ``X[idx]``, ``zero_grad``/forward/backward/``step`` per batch
``jax``         JAX ``jit``: one jitted step (gather of the batch from the epoch's
                permutation inside the jit, forward, ``grad``, the optimizer by hand),
                looped over the epoch; when ``jax`` is installed
``floor``       the bare NumPy matrix products of ``samples // b`` steps into
                preallocated outputs (forward ``x @ W`` per layer, backward ``x.T @ dz``
                per layer and ``dz @ W.T`` per layer but the first): no bias, activation,
                loss, update or data movement

Throughputs are samples per second; ratios are medians over rounds of the per-round
ratio (both sides timed minutes apart at most, under the same load), with the ratio of
the best rounds beside them. ``--inference`` adds ``predict_proba`` rows (batch by
batch) against the forward products alone and PyTorch under ``no_grad``.

Usage::

    python -m benchmarks.fit_table                       # the issue-17 table, 2 threads
    python -m benchmarks.fit_table --threads 1 --rounds 3 --samples 16384   # quicker
    python -m benchmarks.fit_table --dtype float64 --no-torch --no-jax
    bash benchmarks/cpu_targets.sh                       # this table and issue 10's

Writes ``benchmarks/results/fit_table-<device>[-<threads>thread].md`` and ``.json``
(every round kept), and prints the table. The machine, the load before and after, the
NumPy/BLAS versions and the thread counts are in both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

SIZES = (784, 512, 512, 10)
LR = {"sgd": 0.01, "adam": 1e-3}
RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------- data
def make_data(n, dtype, seed=0):
    """Random inputs in [0.01, 1.01) and integer labels, as ``benchmarks.workloads``."""
    rng = np.random.default_rng(seed)
    X = (rng.random((n, SIZES[0])) + 0.01).astype(dtype)
    labels = rng.integers(0, SIZES[-1], n)
    return X, labels


# ---------------------------------------------------------------------------- mlpx
def mlpx_fit(X, labels, bs, opt, dtype):
    import mlpx

    model = mlpx.MLP(list(SIZES), activation="relu", dtype=dtype, seed=0)
    model.compile(opt, lr=LR[opt])

    def run():
        model.fit(X, labels, epochs=1, batch_size=bs, verbose=0)
    return run


def mlpx_step(X, labels, bs, opt, dtype):
    import mlpx

    model = mlpx.MLP(list(SIZES), activation="relu", dtype=dtype, seed=0)
    model.compile(opt, lr=LR[opt])
    Xb = np.ascontiguousarray(X[:bs])
    Yb = np.eye(SIZES[-1], dtype=dtype)[labels[:bs]]
    steps = len(X) // bs

    def run():
        for _ in range(steps):
            model.train_step(Xb, Yb)
    return run


def mlpx_predict(X, labels, bs, opt, dtype):
    import mlpx

    model = mlpx.MLP(list(SIZES), activation="relu", dtype=dtype, seed=0)
    steps = len(X) // bs
    batches = [np.ascontiguousarray(X[i * bs:(i + 1) * bs]) for i in range(steps)]

    def run():
        for xb in batches:
            model.predict_proba(xb)
    return run


# ---------------------------------------------------------------------------- floor
def floor(X, labels, bs, opt, dtype, kind="train"):
    rng = np.random.default_rng(0)
    n = bs
    acts = [np.ascontiguousarray(X[:n])] + [np.zeros((n, w), dtype) for w in SIZES[1:]]
    Ws = [(rng.random((i, o)) * 0.01 + 0.001).astype(dtype)
          for i, o in zip(SIZES[:-1], SIZES[1:])]
    dz = [(rng.random((n, o)) + 0.01).astype(dtype) for o in SIZES[1:]]
    dW = [np.zeros((i, o), dtype) for i, o in zip(SIZES[:-1], SIZES[1:])]
    dx = [None] + [np.zeros((n, w), dtype) for w in SIZES[1:-1]]
    L = len(Ws)
    steps = len(X) // bs
    mm = np.matmul

    def run():
        for _ in range(steps):
            for i in range(L):
                mm(acts[i], Ws[i], out=acts[i + 1])
            if kind == "train":
                for i in range(L - 1, -1, -1):
                    mm(acts[i].T, dz[i], out=dW[i])
                    if i:
                        mm(dz[i], Ws[i].T, out=dx[i])
    return run


# ---------------------------------------------------------------------------- torch
def _torch_net(dtype):
    import torch

    torch.manual_seed(0)
    layers = []
    for i, (a, c) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(a, c))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    return net.to(torch.float64) if dtype == "float64" else net


def torch_fit(X, labels, bs, opt, dtype):
    import torch

    net = _torch_net(dtype)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(labels)
    loss_fn = torch.nn.CrossEntropyLoss()
    optim = (torch.optim.SGD(net.parameters(), lr=LR["sgd"]) if opt == "sgd"
             else torch.optim.Adam(net.parameters(), lr=LR["adam"]))
    gen = torch.Generator().manual_seed(0)
    n = len(X)

    def run():
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, bs):
            idx = perm[s:s + bs]
            optim.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xt[idx]), yt[idx])
            loss.backward()
            optim.step()
    return run


def torch_predict(X, labels, bs, opt, dtype):
    import torch

    net = _torch_net(dtype)
    steps = len(X) // bs
    batches = [torch.from_numpy(np.ascontiguousarray(X[i * bs:(i + 1) * bs]))
               for i in range(steps)]

    def run():
        with torch.no_grad():
            for xb in batches:
                torch.softmax(net(xb), dim=1)
    return run


# ---------------------------------------------------------------------------- jax
def jax_fit(X, labels, bs, opt, dtype):
    import jax
    import jax.numpy as jnp

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    key = jax.random.PRNGKey(0)
    params = []
    for a, c in zip(SIZES[:-1], SIZES[1:]):
        key, sub = jax.random.split(key)
        bound = 1.0 / np.sqrt(a)
        params.append((jax.random.uniform(sub, (a, c), dtype, -bound, bound),
                       jnp.zeros((c,), dtype)))
    Xd, yd = jnp.asarray(X), jnp.asarray(labels)
    n = len(X)
    n_full = n // bs

    def loss_fn(ps, xb, yb):
        h = xb
        for i, (W, b) in enumerate(ps):
            h = h @ W + b
            if i < len(ps) - 1:
                h = jnp.maximum(h, 0)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    grad = jax.grad(loss_fn)
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, LR[opt]

    @jax.jit
    def step(ps, state, perm, start):
        idx = jax.lax.dynamic_slice(perm, (start,), (bs,))
        g = grad(ps, Xd[idx], yd[idx])
        if opt == "sgd":
            return jax.tree_util.tree_map(lambda p, d: p - lr * d, ps, g), state
        m, v, t = state
        t = t + 1
        m = jax.tree_util.tree_map(lambda a, d: b1 * a + (1 - b1) * d, m, g)
        v = jax.tree_util.tree_map(lambda a, d: b2 * a + (1 - b2) * d * d, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        ps = jax.tree_util.tree_map(
            lambda p, a, s: p - lr * (a / c1) / (jnp.sqrt(s / c2) + eps), ps, m, v)
        return ps, (m, v, t)

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    box = {"ps": params, "state": (zeros, zeros, jnp.asarray(0.0, dtype))}
    rng = np.random.default_rng(0)

    def run():
        perm = jnp.asarray(rng.permutation(n)[:n_full * bs])
        ps, state = box["ps"], box["state"]
        for j in range(n_full):
            ps, state = step(ps, state, perm, j * bs)
        jax.block_until_ready(ps)
        box["ps"], box["state"] = ps, state
    return run


# ---------------------------------------------------------------------------- timing
def time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_config(impls, rounds, samples, log, label):
    """Interleaved rounds: every implementation once per round, the order rotating."""
    names = list(impls)
    for name in names:  # warm-up: compilation, buffers, caches
        impls[name]()
    rates = {k: [] for k in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(samples / time_once(impls[name]))
        log(f"  {label} round {r + 1}/{rounds}: "
            + ", ".join(f"{k} {rates[k][-1]:,.0f}/s" for k in names))
    return rates


def ratio(rates, a, b):
    """(median over rounds of a/b, best a / best b)."""
    if a not in rates or b not in rates:
        return None, None
    med = statistics.median(x / y for x, y in zip(rates[a], rates[b]))
    return med, max(rates[a]) / max(rates[b])


def environment(threads):
    from benchmarks import timing

    info = {"machine": timing.machine(), "versions": timing.versions(),
            "blas": timing.blas_info(), "threads": threads}
    try:
        import numba

        info["versions"]["numba"] = numba.__version__
    except ImportError:
        info["versions"]["numba"] = None
    try:
        import jax

        info["versions"]["jax"] = jax.__version__
    except ImportError:
        info["versions"]["jax"] = None
    from threadpoolctl import threadpool_info

    from mlpx._fast import _policy

    info["blas_pools"] = [
        f"{p.get('internal_api')} {p.get('version')} {Path(p.get('filepath', '')).name} "
        f"({p.get('num_threads')} threads)"
        for p in threadpool_info() if p.get("user_api") == "blas"]
    info["mlpx_fused_kernels"] = _policy.fused_kernels() is not None
    return info


def fmt(x):
    return "n/a" if x is None else f"{x:.2f}"


def markdown(rows, info, command, load0, load1):
    v = info["versions"]
    lines = [
        "# Through `fit`: mlpx against PyTorch eager, JAX jit and the NumPy floor",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info['machine'].get('cpu_model')}, {info['machine'].get('n_cpus')} "
        f"CPUs; threads per library: {info['threads']}; load average before / after: "
        f"{load0} / {load1}.",
        f"Versions: Python {v.get('python')}, NumPy {v.get('numpy')}, torch "
        f"{v.get('torch')}, jax {v.get('jax')}, numba {v.get('numba')} (mlpx's fused "
        f"kernels {'on' if info['mlpx_fused_kernels'] else 'off'}). BLAS: "
        + "; ".join(info["blas_pools"]) + ".",
        "",
        "Ratios of samples/s, median over rounds of the per-round ratio (best-round "
        "ratio in brackets). *best peer*: the faster of PyTorch and JAX in that round.",
        "",
        "| workload | batch | mlpx fit /s | fit / best peer | fit / floor | fit / bare step "
        "| torch / floor | jax / floor |",
        "|---|---:|---:|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['batch']} | {r['fit_rate']:,.0f} | "
            f"{fmt(r['vs_peer'][0])} ({fmt(r['vs_peer'][1])}) | "
            f"{fmt(r['vs_floor'][0])} ({fmt(r['vs_floor'][1])}) | "
            f"{fmt(r['vs_step'][0])} ({fmt(r['vs_step'][1])}) | "
            f"{fmt(r['torch_floor'][0])} | {fmt(r['jax_floor'][0])} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="64,256,1024,4096")
    p.add_argument("--optimizers", default="sgd,adam")
    p.add_argument("--samples", type=int, default=60_000,
                   help="samples per epoch (default: %(default)s, Fashion-MNIST's)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", default="2",
                   help="threads for every library: an int or 'default'")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--inference", action="store_true", help="add predict_proba rows")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    threads = None if args.threads == "default" else int(args.threads)
    if threads is not None:  # before torch/jax start their pools
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen="
                              + ("false" if threads == 1 else "true")
                              + f" intra_op_parallelism_threads={threads}")
    from threadpoolctl import threadpool_limits

    have_torch = have_jax = False
    if not args.no_torch:
        try:
            import torch

            have_torch = True
            if threads is not None:
                torch.set_num_threads(threads)
        except ImportError:
            pass
    if not args.no_jax:
        try:
            import jax  # noqa: F401

            have_jax = True
        except ImportError:
            pass
    try:
        import numba

        if threads is not None:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass

    log = lambda msg: print(msg, flush=True)  # noqa: E731
    load0 = f"{os.getloadavg()[0]:.2f}"
    X, labels = make_data(args.samples, args.dtype)
    rows, raw = [], []
    with threadpool_limits(limits=threads, user_api="blas"):
        info = environment(args.threads)
        log(f"NumPy {np.__version__}, threads {args.threads}, fused kernels "
            f"{info['mlpx_fused_kernels']}, torch {have_torch}, jax {have_jax}")
        workloads = [o for o in args.optimizers.split(",") if o]
        if args.inference:
            workloads.append("inference")
        for opt in workloads:
            for bs in (int(b) for b in args.batches.split(",")):
                if opt == "inference":
                    impls = {"mlpx fit": mlpx_predict(X, labels, bs, opt, args.dtype),
                             "floor": floor(X, labels, bs, opt, args.dtype, "inference")}
                    if have_torch:
                        impls["torch"] = torch_predict(X, labels, bs, opt, args.dtype)
                    samples = (args.samples // bs) * bs
                else:
                    impls = {"mlpx fit": mlpx_fit(X, labels, bs, opt, args.dtype),
                             "mlpx step": mlpx_step(X, labels, bs, opt, args.dtype),
                             "floor": floor(X, labels, bs, opt, args.dtype)}
                    if have_torch:
                        impls["torch"] = torch_fit(X, labels, bs, opt, args.dtype)
                    if have_jax:
                        impls["jax"] = jax_fit(X, labels, bs, opt, args.dtype)
                    samples = args.samples
                label = f"{opt} batch {bs}"
                rates = run_config(impls, args.rounds, samples, log, label)
                # the bare step and the floor do samples // bs full batches
                full = (args.samples // bs) * bs
                for k in ("mlpx step", "floor", "jax"):
                    if k in rates and opt != "inference":
                        rates[k] = [x * full / samples for x in rates[k]]
                peers = [k for k in ("torch", "jax") if k in rates]
                if peers:
                    rates["best peer"] = [max(rates[k][i] for k in peers)
                                          for i in range(args.rounds)]
                row = {"workload": opt if opt == "inference" else f"{opt} fit",
                       "batch": bs, "fit_rate": statistics.median(rates["mlpx fit"]),
                       "vs_peer": ratio(rates, "mlpx fit", "best peer"),
                       "vs_floor": ratio(rates, "mlpx fit", "floor"),
                       "vs_step": ratio(rates, "mlpx fit", "mlpx step"),
                       "torch_floor": ratio(rates, "torch", "floor"),
                       "jax_floor": ratio(rates, "jax", "floor")}
                rows.append(row)
                raw.append({"config": label, "rates": rates})
                log(f"  -> fit/peer {fmt(row['vs_peer'][0])}, fit/floor "
                    f"{fmt(row['vs_floor'][0])}, fit/step {fmt(row['vs_step'][0])}")
    load1 = f"{os.getloadavg()[0]:.2f}"
    given = argv if argv is not None else __import__("sys").argv[1:]
    command = " ".join(["python -m benchmarks.fit_table", *given])
    text = markdown(rows, info, command, load0, load1)
    print(text)
    from benchmarks import timing

    name = f"fit_table-{timing.cpu_label()}"
    if threads is not None:
        name += f"-{threads}thread"
    if args.dtype != "float32":
        name += f"-{args.dtype}"
    if args.tag:
        name += f"-{args.tag}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.md").write_text(text)
    (args.out_dir / f"{name}.json").write_text(json.dumps(
        {"command": command, "info": info, "rows": rows, "raw": raw,
         "load": [load0, load1]}, indent=1, default=str))
    log(f"wrote {args.out_dir / name}.md/.json")
    return rows


if __name__ == "__main__":
    main()
