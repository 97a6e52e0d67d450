"""Train MNIST on a CUDA GPU with ``backend="cupy"`` (and compare with NumPy on the CPU).

The model and the training loop are the same code as on the CPU; only ``backend=``
changes. Data are loaded on the host and moved to the GPU once by ``fit``.

    pip install 'mlpx[cuda12]'        # or mlpx[cuda13], matching the CUDA driver
    python examples/mnist_gpu.py --dataset mnist                 # downloads MNIST once
    python examples/mnist_gpu.py --dataset mnist --compare-cpu   # also one CPU epoch

Without CuPy or without a CUDA device it prints why and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
import time

import mlpx
from mlpx._backend import device_name

from _common import add_data_args, load


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_args(parser)
    parser.add_argument("--hidden", default="512,512")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-cpu", action="store_true",
                        help="also time one epoch of the same model with backend='numpy'")
    args = parser.parse_args(argv)

    try:
        backend = mlpx.resolve_backend("cupy")
    except (ImportError, RuntimeError) as exc:
        print(f"mnist_gpu.py needs CuPy and a CUDA GPU: {exc}", file=sys.stderr)
        return 1

    hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    X_train, y_train, X_test, y_test = load(args)
    model = mlpx.MLP([784, *hidden, 10], activation="relu", backend=backend,
                     dtype=args.dtype, seed=args.seed)
    t0 = time.perf_counter()
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer={"name": "adam", "lr": args.lr})
    seconds = time.perf_counter() - t0
    loss, accuracy = model.evaluate(X_test, y_test)
    # The first epoch includes CUDA start-up and kernel compilation; report the rest.
    steady = history["seconds"][1:] or history["seconds"]
    throughput = len(y_train) * len(steady) / sum(steady)
    arch = "-".join(map(str, model.layer_sizes))
    print(f"{args.dataset}: {arch} ReLU/Adam, batch {args.batch_size}, {args.epochs} epochs, "
          f"{args.dtype}: test accuracy {accuracy:.4f}, test loss {loss:.4f}, "
          f"{throughput:,.0f} samples/s after the first epoch, {seconds:.1f} s in all, "
          f"backend cupy on {device_name(model.backend)}")
    if args.compare_cpu:
        cpu = mlpx.MLP([784, *hidden, 10], activation="relu", dtype=args.dtype,
                       seed=args.seed)
        h = cpu.fit(X_train, y_train, epochs=1, batch_size=args.batch_size,
                    optimizer={"name": "adam", "lr": args.lr}, verbose=0)
        cpu_rate = len(y_train) / h["seconds"][0]
        print(f"numpy on the CPU: {cpu_rate:,.0f} samples/s for one epoch; the GPU is "
              f"{throughput / cpu_rate:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
