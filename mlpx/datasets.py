"""Datasets: an IDX reader, MNIST / Fashion-MNIST download + verify + cache, a sample.

This module is the public import path (``from mlpx.datasets import load_sample``, or
``mlpx.datasets.load_sample``); it only re-exports the names below from the
:mod:`mlpx.data` package, where each job has its own module. Import from here: the
modules of :mod:`mlpx.data` are the implementation and may be reorganised.

Everything here is host-side NumPy; moving data to a device is the model's business
(``fit`` accepts NumPy arrays).

* :func:`read_idx` reads an IDX file (gzip-compressed or raw) and validates it
  (:mod:`mlpx.data.idx`); :func:`open_idx` maps an uncompressed one into memory without
  reading it, :func:`decompress_idx` writes the uncompressed file of a gzip one.
* :func:`load_mnist`, :func:`load_fashion_mnist` return ``(X_train, y_train),
  (X_test, y_test)``, reading the four files from a folder or downloading them (from a
  list of mirrors, each file checked against a pinned SHA-256) into a cache folder
  (:mod:`mlpx.data.loaders`).
* :func:`load_sample` returns a small Fashion-MNIST sample shipped inside the package,
  so that examples and tests train offline.
* :func:`load_dataset` dispatches on a name; :func:`scale`, :func:`standardize` and
  :func:`one_hot` are the usual preprocessing helpers (:mod:`mlpx.data.preprocessing`).
* :func:`fetch` is the downloader the loaders use; it takes its mirrors and checksum as
  arguments, so it can be used (and tested) on any file (:mod:`mlpx.data.download`).
* :data:`DATASETS` lists the downloadable datasets, their mirrors and pinned checksums
  (:mod:`mlpx.data.catalog`).

Where files are looked for and cached: ``data_dir`` when given (the files are looked
for directly in it, e.g. ``/usr/share/datasets/fashion-mnist``), else
``$MLPX_DATA/<dataset>``, else the user cache folder of the platform
(``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
``%LOCALAPPDATA%`` on Windows) followed by ``mlpx/<dataset>``. See
:func:`default_data_dir` (:mod:`mlpx.data.cache`).
"""

from __future__ import annotations

from .data.cache import default_data_dir

# The two shipped entries of DATASETS, importable from here as before the split
# (``mlpx.datasets.MNIST``) but, as before, not in ``__all__``.
from .data.catalog import (  # noqa: F401
    DATASETS,
    FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    MNIST,
    IDXDataset,
    RemoteFile,
)
from .data.download import DownloadError, fetch
from .data.idx import IDXFormatError, decompress_idx, open_idx, read_idx
from .data.loaders import (
    DATASET_NAMES,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    load_sample,
)
from .data.preprocessing import one_hot, scale, standardize
from .data.text import (
    WORD_LISTS,
    Vocabulary,
    load_word_list,
    make_windows,
    text_windows,
    tokenize,
)

__all__ = [
    "IDXFormatError",
    "DownloadError",
    "RemoteFile",
    "IDXDataset",
    "DATASETS",
    "DATASET_NAMES",
    "FASHION_MNIST_CLASSES",
    "read_idx",
    "open_idx",
    "decompress_idx",
    "fetch",
    "default_data_dir",
    "load_mnist",
    "load_fashion_mnist",
    "load_sample",
    "load_dataset",
    "scale",
    "standardize",
    "one_hot",
    "Vocabulary",
    "tokenize",
    "make_windows",
    "text_windows",
    "load_word_list",
    "WORD_LISTS",
]
