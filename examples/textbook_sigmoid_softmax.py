"""The textbook's second network: 784-200-10, sigmoid hidden units, softmax output.

Cross-entropy loss, trained on the first 20,000 training images for 20 epochs and
scored on the 10,000 test images after every epoch. The textbook reports 89.4% on
MNIST for this run. It does not fix the optimizer for it here, so this script uses
plain minibatch SGD (``--lr 0.1``, ``--batch-size 32``); change them to explore.

    python examples/textbook_sigmoid_softmax.py             # Fashion-MNIST if installed
    python examples/textbook_sigmoid_softmax.py --dataset mnist --data-dir DIR
"""

from __future__ import annotations

import argparse
import sys
import time

import mlpx

from _common import EpochTestAccuracy, add_data_args, load


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_args(parser)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--hidden", type=int, default=200)
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="save training curves to this PNG")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    X_train, y_train, X_test, y_test = load(args, n_train=args.n_train)
    model = mlpx.MLP([784, args.hidden, 10], activation="sigmoid", loss="cross_entropy",
                     seed=args.seed)
    per_epoch = EpochTestAccuracy(X_test, y_test, quiet=args.quiet)
    t0 = time.perf_counter()
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer={"name": args.optimizer, "lr": args.lr},
                        validation_data=(X_test, y_test), callbacks=[per_epoch], verbose=0)
    seconds = time.perf_counter() - t0
    if args.plot:
        from mlpx.plotting import plot_history

        plot_history(history, args.plot, val_label="test",
                     title=f"{args.dataset}: 784-{args.hidden}-10 sigmoid/softmax, "
                           f"{len(y_train):,} images")
    final = per_epoch.accuracies[-1]
    best = max(per_epoch.accuracies)
    print(f"{args.dataset}: 784-{args.hidden}-10 sigmoid/softmax, cross-entropy, "
          f"{args.optimizer} lr {args.lr:g}, batch {args.batch_size}, {args.epochs} epochs "
          f"on {len(y_train):,} images: final test accuracy {final:.4f} (best epoch "
          f"{best:.4f}), {seconds:.0f} s")
    return {"final": final, "best": best, "seconds": seconds}


if __name__ == "__main__":
    main()
    sys.exit(0)
