"""Shared helpers for the examples: data options and loading (not part of mlpx)."""

from __future__ import annotations

import argparse
import os

import numpy as np

from mlpx import datasets

#: Debian's dataset-fashion-mnist package installs the full set here.
DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def debian_fashion_available() -> bool:
    return all(os.path.exists(os.path.join(DEBIAN_FASHION_DIR, f))
               for f in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"))


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """--dataset and --data-dir: default Fashion-MNIST from Debian's folder, else the sample."""
    default = "fashion-mnist" if debian_fashion_available() else "sample"
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist", "sample"),
                        default=default,
                        help=f"default: fashion-mnist when {DEBIAN_FASHION_DIR} holds it, "
                             "else the sample embedded in mlpx")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the four IDX files (default: "
                             f"{DEBIAN_FASHION_DIR} for fashion-mnist when present, else "
                             "the mlpx cache, downloading what is missing)")


def load(args, n_train=None):
    """Return X_train, y_train, X_test, y_test: pixels scaled to float32 [0, 1]."""
    data_dir = args.data_dir
    if data_dir is None and args.dataset == "fashion-mnist" and debian_fashion_available():
        data_dir = DEBIAN_FASHION_DIR
    (X_train, y_train), (X_test, y_test) = datasets.load_dataset(args.dataset,
                                                                 data_dir=data_dir)
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    return datasets.scale(X_train), y_train, datasets.scale(X_test), y_test


def argmax_accuracy(model, X, y) -> float:
    """Share of rows whose largest output is the true label (softmax or sigmoid outputs)."""
    import mlpx

    xp = model.backend.xp
    pred = mlpx.to_numpy(xp.argmax(model.decision_function(X), axis=1))
    return float(np.mean(pred == np.asarray(y)))


class EpochTestAccuracy:
    """Callback printing test accuracy after every epoch, as the textbook's runs do."""

    def __init__(self, X, y, quiet=False):
        self.X, self.y, self.quiet = X, y, quiet
        self.accuracies = []

    def __call__(self, model, epoch, logs):
        acc = argmax_accuracy(model, self.X, self.y)
        self.accuracies.append(acc)
        if not self.quiet:
            correct = int(round(acc * len(self.y)))
            print(f"epoch {epoch:3d}: {correct} / {len(self.y)} test images correct "
                  f"({acc:.4f}), train loss {logs['loss']:.4f}, {logs['seconds']:.1f} s",
                  flush=True)
