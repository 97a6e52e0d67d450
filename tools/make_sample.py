"""Regenerate mlpx/data/fashion_mnist_sample.npz from the official Fashion-MNIST files.

The sample holds, for each of the 10 classes, the first 500 images of the official
training split and the first 100 images of the official test split (first = lowest
index in the file), kept in file order: 5000 training and 1000 test images. No random
numbers are involved, so the selection is the same on every machine.

Arrays in the archive (all uint8 except the indices):

    X_train  (5000, 28, 28)  y_train  (5000,)  idx_train  (5000,) uint16
    X_test   (1000, 28, 28)  y_test   (1000,)  idx_test   (1000,) uint16

``idx_*`` are the row numbers of the selected images in the official files.

The archive is written like ``numpy.savez_compressed`` (a zip of .npy members,
deflated) but with fixed member timestamps, so the same input gives the same bytes.

Usage::

    python tools/make_sample.py [--source /usr/share/datasets/fashion-mnist] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from mlpx.datasets import load_fashion_mnist

PER_CLASS = {"train": 500, "test": 100}
N_CLASSES = 10
DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "mlpx" / "data" / "fashion_mnist_sample.npz"


def first_per_class(labels, per_class, n_classes=N_CLASSES):
    """Indices of the first ``per_class`` samples of each class, in ascending order."""
    chosen = []
    for c in range(n_classes):
        idx = np.flatnonzero(labels == c)[:per_class]
        if idx.size < per_class:
            raise ValueError(f"class {c} has only {idx.size} samples, {per_class} needed")
        chosen.append(idx)
    return np.sort(np.concatenate(chosen))


def write_npz(path, arrays):
    """Write ``arrays`` as a deflated .npz whose bytes depend only on the arrays."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, member.getvalue(), compresslevel=9)
    Path(path).write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=DEFAULT_SOURCE,
                        help="folder with the four Fashion-MNIST IDX files "
                             f"(default: {DEFAULT_SOURCE}); downloaded if missing")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output .npz")
    args = parser.parse_args(argv)

    (X_tr, y_tr), (X_te, y_te) = load_fashion_mnist(args.source, flatten=False)
    arrays = {}
    for split, X, y in (("train", X_tr, y_tr), ("test", X_te, y_te)):
        idx = first_per_class(y, PER_CLASS[split])
        arrays[f"X_{split}"] = X[idx]
        arrays[f"y_{split}"] = y[idx].astype(np.uint8)
        arrays[f"idx_{split}"] = idx.astype(np.uint16)
    digest = write_npz(args.out, arrays)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {size} bytes, sha256 {digest}")
    for split in ("train", "test"):
        print(f"  {split}: {arrays[f'X_{split}'].shape}, "
              f"classes {np.bincount(arrays[f'y_{split}']).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
