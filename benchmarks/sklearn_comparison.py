"""Side by side: scikit-learn's MLPClassifier and mlpx.sklearn.MLPClassifier.

The same "user script" (build the estimator, fit, score) runs twice per repeat, once
with each class, on the same data and settings; only the import differs. Repeats are
interleaved (the order alternates) so that both libraries see the same machine load,
and the fit-time ratio is taken from medians of the same run.

Datasets: Fashion-MNIST (Debian's ``dataset-fashion-mnist`` files) and scikit-learn's
bundled digits. Writes a Markdown report (default
``benchmarks/results/sklearn_comparison.md``).

Usage::

    python benchmarks/sklearn_comparison.py                    # defaults below
    python benchmarks/sklearn_comparison.py --max-iter 10 --repeats 5 --threads 1
    python benchmarks/sklearn_comparison.py --skip-fashion     # digits only (seconds)
    # issue 10's workload: 784-256-256-10, adam, batch 128, 10 epochs, alpha 0
    python benchmarks/sklearn_comparison.py --hidden 256,256 --batch-size 128 --alpha 0 \
        --max-iter 10 --repeats 3 --threads 1

``--hidden``, ``--batch-size``, ``--alpha`` and ``--max-iter`` set the Fashion-MNIST rows;
the digits row keeps its fixed settings.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sklearn_comparison.md"


def user_script(MLPClassifier, X_train, y_train, X_test, y_test, **params):
    """What a scikit-learn user writes; ``MLPClassifier`` is the only thing swapped."""
    clf = MLPClassifier(**params)
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter, in both
        clf.fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {"seconds": seconds, "cpu_seconds": cpu, "accuracy": float(clf.score(X_test, y_test)),
            "loss_curve": list(getattr(clf, "loss_curve_", [])), "n_iter": clf.n_iter_}


def compare(name, data, params, repeats, log):
    """Run both libraries ``repeats`` times, interleaved; return a summary dict."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from mlpx.sklearn import MLPClassifier as MxMLP

    libs = {"scikit-learn": SkMLP, "mlpx": MxMLP}
    runs = {k: [] for k in libs}
    for rep in range(repeats):
        order = list(libs) if rep % 2 == 0 else list(libs)[::-1]
        for lib in order:
            r = user_script(libs[lib], *data, **params)
            runs[lib].append(r)
            log(f"  [{name}] repeat {rep + 1}/{repeats} {lib:>12}: fit {r['seconds']:8.2f} s "
                f"(CPU {r['cpu_seconds']:8.2f} s), accuracy {r['accuracy']:.4f}, "
                f"epochs {r['n_iter']}")
    sk, mx = runs["scikit-learn"], runs["mlpx"]
    t_sk = statistics.median(r["seconds"] for r in sk)
    t_mx = statistics.median(r["seconds"] for r in mx)
    pair_ratios = [a["seconds"] / b["seconds"] for a, b in zip(sk, mx)]
    c_sk = statistics.median(r["cpu_seconds"] for r in sk)
    c_mx = statistics.median(r["cpu_seconds"] for r in mx)
    curve_sk, curve_mx = sk[0]["loss_curve"], mx[0]["loss_curve"]
    m = min(len(curve_sk), len(curve_mx))
    rel = [abs(a - b) / abs(a) for a, b in zip(curve_sk[:m], curve_mx[:m])]
    return {
        "name": name, "params": params, "n_train": len(data[1]), "n_test": len(data[3]),
        "acc_sk": sk[0]["accuracy"], "acc_mx": mx[0]["accuracy"],
        "acc_sk_all": sorted({r["accuracy"] for r in sk}),
        "acc_mx_all": sorted({r["accuracy"] for r in mx}),
        "t_sk": t_sk, "t_mx": t_mx, "ratio": t_sk / t_mx,
        "pair_ratio_median": statistics.median(pair_ratios),
        "c_sk": c_sk, "c_mx": c_mx, "cpu_ratio": c_sk / c_mx,
        "best_ratio": min(r["seconds"] for r in sk) / min(r["seconds"] for r in mx),
        "times_sk": [r["seconds"] for r in sk], "times_mx": [r["seconds"] for r in mx],
        "curve_sk": curve_sk, "curve_mx": curve_mx,
        "curve_max_rel_diff": max(rel) if rel else float("nan"),
        "epochs_sk": sk[0]["n_iter"], "epochs_mx": mx[0]["n_iter"],
    }


def load_fashion(data_dir, dtype):
    from mlpx.datasets import load_fashion_mnist

    (X, y), (Xt, yt) = load_fashion_mnist(data_dir, download=False, progress=False)
    # The usual preprocessing of a scikit-learn script: scale to [0, 1].
    X = X.reshape(len(X), -1).astype(dtype) / 255.0
    Xt = Xt.reshape(len(Xt), -1).astype(dtype) / 255.0
    return X.astype(dtype, copy=False), y, Xt.astype(dtype, copy=False), yt


def load_digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25,
                                                        random_state=0, stratify=y)
    return X_train, y_train, X_test, y_test


def machine_info(threads):
    import scipy
    import sklearn
    import threadpoolctl

    import mlpx

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads)"
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__, "sklearn": sklearn.__version__,
        "mlpx": mlpx.__version__, "blas": "; ".join(blas) or "unknown",
        "threads": threads, "fused": _fused_info(),
    }


def _fused_info():
    from mlpx._fast import _policy

    if _policy.fused_kernels() is None:
        return "off (numba not installed, or MLPX_NUMBA=0)"
    import numba

    return f"on (numba {numba.__version__})"


def fmt_params(params):
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def markdown(results, info, command, effective, load_before, load_after):
    lines = [
        "# mlpx.sklearn vs scikit-learn: MLPClassifier side by side",
        "",
        "The same script (construct, `fit`, `score`) with only the import swapped:",
        "`from sklearn.neural_network import MLPClassifier` vs "
        "`from mlpx.sklearn import MLPClassifier`.",
        "Fit times are medians over interleaved repeats taken in the same run; the ratio is "
        "scikit-learn's median over mlpx's (above 1: mlpx is faster). The CPU time "
        "(`time.process_time`, all threads of the process) is less disturbed by other "
        "jobs than the wall time when both libraries run on one thread.",
        "",
        f"Command: `{command}` (effective settings: `{effective}`)",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; BLAS threads for both libraries: "
        f"{info['threads']}; {info['blas']}; mlpx's fused numba kernels: "
        f"{info['fused']}.",
        f"Versions: Python {info['python']}, NumPy {info['numpy']}, SciPy {info['scipy']}, "
        f"scikit-learn {info['sklearn']}, mlpx {info['mlpx']}.",
        f"Load average (1 min) before / after: {load_before} / {load_after} "
        "(the machine is shared; times under load are noisy, the ratio less so).",
        "",
        "| workload | train / test | settings | accuracy scikit-learn | accuracy mlpx | "
        "difference | fit s scikit-learn | fit s mlpx | speed-up (median ratio) | "
        "per-repeat ratio, median | best / best | CPU s scikit-learn | CPU s mlpx | "
        "CPU-time ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['n_train']} / {r['n_test']} | {fmt_params(r['params'])} | "
            f"{r['acc_sk']:.4f} | {r['acc_mx']:.4f} | {r['acc_mx'] - r['acc_sk']:+.4f} | "
            f"{r['t_sk']:.2f} | {r['t_mx']:.2f} | **{r['ratio']:.2f}x** | "
            f"{r['pair_ratio_median']:.2f}x | {r['best_ratio']:.2f}x | {r['c_sk']:.2f} | "
            f"{r['c_mx']:.2f} | {r['cpu_ratio']:.2f}x |")
    lines += ["", "Every repeat's fit time (s):", ""]
    for r in results:
        lines.append(f"- {r['name']}: scikit-learn "
                     f"{', '.join(f'{t:.2f}' for t in r['times_sk'])}; mlpx "
                     f"{', '.join(f'{t:.2f}' for t in r['times_mx'])}")
    lines += ["", "## Learning curves (training loss per epoch, first repeat)", ""]
    for r in results:
        lines += [f"### {r['name']}", "",
                  f"Epochs run: scikit-learn {r['epochs_sk']}, mlpx {r['epochs_mx']}; "
                  f"largest relative difference of the loss at the same epoch: "
                  f"{r['curve_max_rel_diff']:.2%}.", "",
                  "| epoch | scikit-learn | mlpx |", "|---|---|---|"]
        n = max(len(r["curve_sk"]), len(r["curve_mx"]))
        step = 1 if n <= 30 else max(1, n // 20)
        for i in range(0, n, step):
            a = f"{r['curve_sk'][i]:.5f}" if i < len(r["curve_sk"]) else ""
            b = f"{r['curve_mx'][i]:.5f}" if i < len(r["curve_mx"]) else ""
            lines.append(f"| {i + 1} | {a} | {b} |")
        lines.append("")
    lines += [
        "## What is compared",
        "",
        "Both libraries start from the same weights (mlpx draws scikit-learn's Glorot "
        "initialisation from the same `random_state`), visit the minibatches in the same "
        "order and compute in the data's float type (mlpx's default `dtype='auto'` "
        "follows the data, as scikit-learn does), so the float64 row and the "
        "float32-input row each compare equal arithmetic; mlpx reproduces scikit-learn's "
        "training to rounding (see `tests/test_sklearn.py::test_matches_sklearn_float64`). "
        "Any speed-up comes from the implementation: the same matrix products through "
        "the same kind of BLAS, fused in-place element-wise work and no temporaries in "
        "mlpx's step. `dtype='float32'` on float64 data trades precision for about twice "
        "the speed; it is not what these rows measure.",
        "",
    ]
    return "\n".join(lines)


def hidden_sizes(text):
    """``--hidden`` as a tuple of ints: ``"256"`` -> ``(256,)``, ``"256,256"`` -> ``(256, 256)``."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden must be positive ints separated by commas. Got {text!r} instead."
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"--hidden must be positive ints separated by commas. Got {text!r} instead.")
    return sizes


def load_avg():
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:  # pragma: no cover - platform dependent
        return "n/a"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="Fashion-MNIST IDX files (default: %(default)s)")
    parser.add_argument("--max-iter", type=int, default=15,
                        help="epochs on Fashion-MNIST (default: %(default)s)")
    parser.add_argument("--hidden", type=hidden_sizes, default=(256,),
                        help="hidden layer sizes on Fashion-MNIST, comma-separated, e.g. "
                             "256,256 (default: 256)")
    parser.add_argument("--batch-size", type=int, default=200,
                        help="minibatch size on Fashion-MNIST (default: %(default)s)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="L2 penalty on Fashion-MNIST for both estimators (default: "
                             "not passed, so each estimator's own default, 1e-4)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats per workload (default: %(default)s)")
    parser.add_argument("--threads", default="1",
                        help="BLAS threads for both libraries: an int or 'default' "
                             "(default: %(default)s; 1 is the most repeatable on a shared "
                             "machine)")
    parser.add_argument("--skip-fashion", action="store_true",
                        help="run the digits comparison only")
    parser.add_argument("--skip-float32", action="store_true",
                        help="skip the Fashion-MNIST row with float32 input")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown report (default: %(default)s)")
    args = parser.parse_args(argv)

    # Load every BLAS (NumPy's, SciPy's) before limiting threads, so the limit reaches all.
    import sklearn.neural_network  # noqa: F401
    from threadpoolctl import threadpool_limits

    import mlpx.sklearn  # noqa: F401

    log = lambda msg: print(msg, flush=True)  # noqa: E731
    limits = None if args.threads == "default" else int(args.threads)
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/sklearn_comparison.py", *given])
    effective = (f"--max-iter {args.max_iter} --hidden {','.join(map(str, args.hidden))} "
                 f"--batch-size {args.batch_size} "
                 + (f"--alpha {args.alpha} " if args.alpha is not None else "")
                 + f"--repeats {args.repeats} --threads {args.threads}")
    load_before = load_avg()
    results = []
    with threadpool_limits(limits=limits, user_api="blas"):
        info = machine_info(args.threads)
        log(f"{info['cpu']}, {info['cores']} cores, BLAS: {info['blas']}")
        params = dict(hidden_layer_sizes=(64,), random_state=0)
        log("digits (scikit-learn's bundled 8x8 digits)")
        results.append(compare("digits", load_digits_split(), params,
                               max(args.repeats, 5), log))
        if not args.skip_fashion:
            if not Path(args.data_dir).is_dir():
                sys.exit(f"Fashion-MNIST not found in {args.data_dir}; install Debian's "
                         "dataset-fashion-mnist or pass --data-dir (or --skip-fashion).")
            params = dict(hidden_layer_sizes=args.hidden, solver="adam",
                          max_iter=args.max_iter, batch_size=args.batch_size, random_state=0)
            if args.alpha is not None:
                params["alpha"] = args.alpha
            log("Fashion-MNIST, float64 input (X / 255.0)")
            results.append(compare("Fashion-MNIST", load_fashion(args.data_dir, np.float64),
                                   params, args.repeats, log))
            if not args.skip_float32:
                log("Fashion-MNIST, float32 input")
                results.append(compare("Fashion-MNIST, float32 input",
                                       load_fashion(args.data_dir, np.float32), params,
                                       args.repeats, log))
    load_after = load_avg()
    for r in results:
        log(f"{r['name']}: accuracy scikit-learn {r['acc_sk']:.4f}, mlpx {r['acc_mx']:.4f} "
            f"(difference {r['acc_mx'] - r['acc_sk']:+.4f}); fit {r['t_sk']:.2f} s vs "
            f"{r['t_mx']:.2f} s -> speed-up {r['ratio']:.2f}x (best/best "
            f"{r['best_ratio']:.2f}x, CPU time {r['cpu_ratio']:.2f}x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results, info, command, effective, load_before, load_after))
    log(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
