"""End to end on real data: Fashion-MNIST, mlpx against PyTorch (and scikit-learn).

``python -m benchmarks.end_to_end [--data-dir DIR] [--repeats 3] [--sklearn] [--device cuda]``

The same network and schedule for every library: 784-256-256-10, ReLU, softmax
cross-entropy, Adam (lr 1e-3), batch 128, 10 epochs, reshuffled every epoch, pixels
scaled to [0, 1], float32, on the CPU (mlpx on NumPy) or with ``--device cuda`` on the GPU
(mlpx on CuPy, PyTorch on CUDA, no scikit-learn; the training data are copied to the GPU
before the clock starts and the clock stops after the device has finished). The timed
span is training only, data already in memory in each library's own arrays (mlpx:
``MLP.fit`` with ``verbose=0``, which includes its input validation and per-epoch
bookkeeping; PyTorch: the usual loop of ``randperm``, indexing, ``zero_grad``, forward,
``CrossEntropyLoss``, ``backward``, ``Adam.step``; scikit-learn: ``MLPClassifier.fit``
with ``max_iter=10``). Accuracy is on the 10,000 test images.
Runs alternate between libraries; the best and the median wall time are reported (on a
shared machine the best run is the least disturbed one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

if __name__ == "__main__":  # --threads must reach BLAS/OpenMP before NumPy loads
    from benchmarks.__main__ import _early_threads

    _early_threads(sys.argv[1:])

import numpy as np  # noqa: E402

from . import timing  # noqa: E402

SIZES = (784, 256, 256, 10)
EPOCHS, BATCH, LR = 10, 128, 1e-3


def load(data_dir):
    from mlpx import datasets

    (Xtr, ytr), (Xte, yte) = datasets.load_fashion_mnist(data_dir, download=False,
                                                         progress=False)
    return (datasets.scale(Xtr), ytr.astype(np.int64)), (datasets.scale(Xte),
                                                         yte.astype(np.int64))


def run_mlpx(train, test, seed, device="cpu"):
    import mlpx
    from mlpx._backend import synchronize, to_device

    backend = mlpx.resolve_backend("numpy" if device == "cpu" else "cupy")
    model = mlpx.MLP(list(SIZES), activation="relu", backend=backend, seed=seed)
    X, y = to_device(train[0], backend=backend), to_device(train[1], backend=backend)
    synchronize(backend)
    t0 = time.perf_counter()
    model.fit(X, y, epochs=EPOCHS, batch_size=BATCH,
              optimizer={"name": "adam", "lr": LR}, verbose=0)
    synchronize(backend)
    seconds = time.perf_counter() - t0
    acc = float(np.mean(mlpx.to_numpy(model.predict(test[0])) == test[1]))
    return seconds, acc


def run_torch(train, test, seed, device="cpu"):
    import torch

    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    X, y = torch.from_numpy(train[0]).to(device), torch.from_numpy(train[1]).to(device)
    n = X.shape[0]
    g = torch.Generator().manual_seed(seed)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(EPOCHS):
        perm = torch.randperm(n, generator=g).to(device)
        for s in range(0, n, BATCH):
            idx = perm[s:s + BATCH]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(X[idx]), y[idx])
            loss.backward()
            opt.step()
    sync()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        pred = net(torch.from_numpy(test[0]).to(device)).argmax(1).cpu().numpy()
    return seconds, float(np.mean(pred == test[1]))


def run_sklearn(train, test, seed, device="cpu"):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=SIZES[1:-1], activation="relu", solver="adam",
                        learning_rate_init=LR, batch_size=BATCH, max_iter=EPOCHS, alpha=0.0,
                        tol=0.0, n_iter_no_change=EPOCHS + 1, shuffle=True,
                        random_state=seed)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(*train)
    seconds = time.perf_counter() - t0
    return seconds, float(np.mean(clf.predict(test[0]) == test[1]))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.end_to_end", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sklearn", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every library (applied before NumPy loads)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: mlpx on NumPy, torch on CPU; cuda: mlpx on CuPy, torch on CUDA")
    args = p.parse_args(argv)
    gpu_label = None
    if args.device == "cuda":
        if args.sklearn:
            p.error("--sklearn runs on the CPU only; leave it out with --device cuda")
        import mlpx
        from mlpx._backend import device_name

        try:
            gpu_label = timing.slug(device_name(mlpx.resolve_backend("cupy")))
        except (ImportError, RuntimeError) as exc:
            p.error(f"--device cuda needs CuPy and a CUDA GPU: {exc}")
    if args.threads:
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass

    train, test = load(args.data_dir)
    runners = {"mlpx": run_mlpx}
    if not args.no_torch:
        try:
            import torch  # noqa: F401

            runners["torch"] = run_torch
        except ImportError:
            print("torch is not installed: no PyTorch row", file=sys.stderr)
    if args.sklearn:
        runners["sklearn"] = run_sklearn
    info = timing.machine()
    label = gpu_label or info["device_label"]
    print(f"device: {label}; load {info.get('load_average')}", file=sys.stderr)
    runs = {k: [] for k in runners}
    for r in range(args.repeats):
        names = list(runners)
        names = names[r % len(names):] + names[:r % len(names)]
        for name in names:
            seconds, acc = runners[name](train, test, seed=r, device=args.device)
            runs[name].append({"seconds": seconds, "accuracy": acc})
            print(f"  round {r + 1} {name}: {seconds:.2f} s, test accuracy {acc:.4f}",
                  file=sys.stderr, flush=True)
    summary = {}
    for name, rs in runs.items():
        summary[name] = {"seconds_best": min(x["seconds"] for x in rs),
                         "seconds_median": statistics.median(x["seconds"] for x in rs),
                         "accuracy_median": statistics.median(x["accuracy"] for x in rs),
                         "accuracy_all": [x["accuracy"] for x in rs]}
    ratios = {}
    if "torch" in runs:
        ratios["mlpx/torch wall time (best runs)"] = (summary["mlpx"]["seconds_best"]
                                                      / summary["torch"]["seconds_best"])
        ratios["mlpx/torch wall time (median of per-round ratios)"] = statistics.median(
            a["seconds"] / b["seconds"] for a, b in zip(runs["mlpx"], runs["torch"]))
        ratios["accuracy difference mlpx - torch (medians)"] = (
            summary["mlpx"]["accuracy_median"] - summary["torch"]["accuracy_median"])
    lines = ["| library | wall time (s), best | wall time (s), median | test accuracy, median "
             "| all runs (s / accuracy) |", "|---|---:|---:|---:|---|"]
    for name, s in summary.items():
        every = ", ".join(f"{x['seconds']:.2f} / {x['accuracy']:.4f}" for x in runs[name])
        lines.append(f"| {name} | {s['seconds_best']:.2f} | {s['seconds_median']:.2f} | "
                     f"{s['accuracy_median']:.4f} | {every} |")
    lines.append("")
    for k, v in ratios.items():
        lines.append(f"- {k}: {v:.3f}")
    text = "\n".join(lines)
    print(f"Fashion-MNIST {'-'.join(map(str, SIZES))} ReLU, Adam lr {LR}, batch {BATCH}, "
          f"{EPOCHS} epochs, {args.repeats} rounds, {args.device}")
    print(text)
    if not args.no_save:
        os.makedirs(args.out, exist_ok=True)
        base = os.path.join(args.out, f"end_to_end-{label}"
                            + (f"-{args.threads}thread" if args.threads else ""))
        payload = {"command": "python -m benchmarks.end_to_end " + " ".join(
                       argv if argv is not None else sys.argv[1:]),
                   "machine": info, "load_average_after": timing.machine().get(
                       "load_average"),
                   "versions": timing.versions(),
                   "settings": {"sizes": SIZES, "epochs": EPOCHS, "batch_size": BATCH,
                                "device": args.device,
                                "threads": args.threads,
                                "optimizer": "adam", "lr": LR, "dtype": "float32",
                                "repeats": args.repeats},
                   "runs": runs, "summary": summary, "ratios": ratios}
        with open(base + ".json", "w") as fh:
            json.dump(payload, fh, indent=1)
        with open(base + ".md", "w") as fh:
            fh.write(f"Command: `{payload['command']}`  \nDevice: {label}; "
                     f"load average {info.get('load_average')}\n\n{text}\n")
        print(f"wrote {base}.json and {base}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
