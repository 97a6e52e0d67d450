"""The textbook's first network: 784-30-10 sigmoid units, quadratic cost, plain SGD.

Learning rate 3.0, minibatches of 10, 30 epochs, trained on the first 50,000 training
images (the textbook keeps the other 10,000 as a validation set) and scored on the
10,000 test images after every epoch. The textbook reports about 95% on MNIST.

mlpx's ``mse`` loss is the textbook's quadratic cost, C = 1/(2n) sum_x ||y(x) - a||^2,
so the gradient of a minibatch is the mean over its samples and ``lr=3.0`` means what
the textbook's eta = 3.0 means. Targets are one-hot rows; the prediction is the output
unit with the largest activation.

The textbook draws weights and biases from N(0, 1); ``--init normal`` (the default)
draws weights from N(0, 1) and starts biases at zero. ``--init glorot_uniform`` is the
modern choice.

    python examples/textbook_sigmoid_quadratic.py            # Fashion-MNIST if installed
    python examples/textbook_sigmoid_quadratic.py --dataset mnist --data-dir DIR
"""

from __future__ import annotations

import argparse
import sys
import time

import mlpx
from mlpx import datasets

from _common import EpochTestAccuracy, add_data_args, load


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_args(parser)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3.0)
    parser.add_argument("--hidden", type=int, default=30)
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--init", default="normal",
                        help="weight initializer: normal (N(0, 1), the textbook's) or "
                             "glorot_uniform, ...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="save training curves to this PNG")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test = load(args, n_train=args.n_train)
    model = mlpx.MLP([784, args.hidden, 10], activation="sigmoid", loss="mse",
                     output="sigmoid", init=args.init, seed=args.seed)
    per_epoch = EpochTestAccuracy(X_test, y_test, quiet=args.quiet)
    t0 = time.perf_counter()
    history = model.fit(X_train, datasets.one_hot(y_train, 10), epochs=args.epochs,
                        batch_size=args.batch_size,
                        optimizer={"name": "sgd", "lr": args.lr},
                        validation_data=(X_test, datasets.one_hot(y_test, 10)),
                        callbacks=[per_epoch], verbose=0)
    seconds = time.perf_counter() - t0
    if args.plot:
        from mlpx.plotting import plot_history

        # Accuracy as the textbook counts it: the largest output is the right class.
        # (fit's own "accuracy" for sigmoid outputs asks every output to be right.)
        curves = {"loss": history["loss"], "val_loss": history["val_loss"],
                  "val_accuracy": per_epoch.accuracies}
        plot_history(curves, args.plot, val_label="test",
                     title=f"{args.dataset}: 784-{args.hidden}-10 sigmoid, quadratic cost, "
                           f"SGD lr {args.lr:g}")
    best = max(per_epoch.accuracies)
    final = per_epoch.accuracies[-1]
    print(f"{args.dataset}: 784-{args.hidden}-10 sigmoid/quadratic, SGD lr {args.lr:g}, "
          f"batch {args.batch_size}, {args.epochs} epochs on {len(y_train):,} images, "
          f"init {args.init}: final test accuracy {final:.4f} (best epoch {best:.4f}), "
          f"{seconds:.0f} s")
    return {"final": final, "best": best, "seconds": seconds}


if __name__ == "__main__":
    main()
    sys.exit(0)
