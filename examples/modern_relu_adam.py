"""A modern MLP: 784-512-512-10 ReLU, dropout 0.2, Adam, minibatches of 128.

Adam's learning rate (1e-3) decays to 0 along a cosine over the 20 epochs. Holds out
10% of the training images for validation, stops when the validation loss has not
improved for 4 epochs and restores the best weights, then scores the test set. Training
curves (loss and accuracy, train and validation) go to --plot.

    python examples/modern_relu_adam.py --plot curves.png    # Fashion-MNIST if installed
    python examples/modern_relu_adam.py --dataset mnist --data-dir DIR

The same configuration from the command line:

    mlpx train --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist \\
        --hidden 512,512 --dropout 0.2 --epochs 20 --validation-split 0.1 \\
        --early-stopping 4 --plot curves.png
"""

from __future__ import annotations

import argparse
import sys
import time

import mlpx
from mlpx._backend import device_name

from _common import add_data_args, load


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_args(parser)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="save training curves to this PNG")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test = load(args)
    model = mlpx.MLP([784, 512, 512, 10], activation="relu", dropout=args.dropout,
                     backend=args.backend, seed=args.seed)
    n_fit = len(y_train) - int(round(0.1 * len(y_train)))
    lr = args.lr
    if args.schedule == "cosine":
        steps = args.epochs * -(-n_fit // args.batch_size)
        lr = {"name": "cosine", "total_steps": steps, "lr": args.lr}
    t0 = time.perf_counter()
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer={"name": "adam", "lr": lr}, validation_split=0.1,
                        early_stopping=args.patience, verbose=0 if args.quiet else 1)
    seconds = time.perf_counter() - t0
    loss, accuracy = model.evaluate(X_test, y_test)
    if args.plot:
        from mlpx.plotting import plot_history

        plot_history(history, args.plot,
                     title=f"{args.dataset}: 784-512-512-10 ReLU, dropout {args.dropout:g}, "
                           f"Adam ({args.schedule} lr)")
    throughput = n_fit * len(history.epochs) / sum(history["seconds"])
    stop = (f"stopped after {len(history.epochs)} epochs, best epoch {history.best_epoch}"
            if history.stopped_early else f"{len(history.epochs)} epochs, best epoch "
            f"{history.best_epoch}")
    print(f"{args.dataset}: 784-512-512-10 ReLU/Adam ({args.schedule} lr {args.lr:g}), "
          f"dropout {args.dropout:g}: test "
          f"accuracy {accuracy:.4f}, test loss {loss:.4f} ({stop}), {throughput:,.0f} "
          f"samples/s, {seconds:.0f} s, backend {model.backend.name} on "
          f"{device_name(model.backend)}")
    return {"accuracy": accuracy, "loss": loss, "epochs": len(history.epochs),
            "seconds": seconds}


if __name__ == "__main__":
    main()
    sys.exit(0)
