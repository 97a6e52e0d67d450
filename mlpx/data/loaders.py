"""The dataset loaders: MNIST, Fashion-MNIST, the embedded sample, and by name.

* :func:`load_mnist`, :func:`load_fashion_mnist` return ``(X_train, y_train),
  (X_test, y_test)``, reading the four IDX files from a folder or downloading them
  (:func:`mlpx.data.download.fetch`) into the cache folder
  (:func:`mlpx.data.cache.default_data_dir`).
* :func:`load_sample` returns the small Fashion-MNIST sample shipped in this package
  (``mlpx/data/fashion_mnist_sample.npz``), so that examples and tests train offline.
* :func:`load_dataset` dispatches on a name (:data:`DATASET_NAMES`).

Public API at :mod:`mlpx.datasets`.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from .cache import check_folder, default_data_dir
from .catalog import DATASETS, IDXDataset, RemoteFile
from .download import fetch
from .idx import decompress_idx, open_idx, read_idx

__all__ = [
    "DATASET_NAMES",
    "SAMPLE_FILE",
    "load_mnist",
    "load_fashion_mnist",
    "load_sample",
    "load_dataset",
]

#: The sample's file name inside the :mod:`mlpx.data` package.
SAMPLE_FILE = "fashion_mnist_sample.npz"

#: Names accepted by :func:`load_dataset` (aliases map to these).
DATASET_NAMES = ("mnist", "fashion-mnist", "sample")
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashion": "fashion-mnist"}

Split = tuple[np.ndarray, np.ndarray]


def _locate(directory: Path, remote: RemoteFile) -> Path | None:
    """``directory/name.gz`` or the uncompressed ``directory/name``, whichever exists.

    Anything that exists under either name counts, not only regular files: a FIFO or a
    device there is then refused by :func:`read_idx`, rather than passed over in favour
    of the other name or a download.
    """
    names = [remote.filename]
    if remote.filename.endswith(".gz"):
        names.append(remote.filename[: -len(".gz")])
    for name in names:
        if (directory / name).exists():
            return directory / name
    return None


def _check_split(
    spec: IDXDataset, images: np.ndarray, labels: np.ndarray, n_expected: int,
    img_path: Path, lbl_path: Path,
) -> None:
    want = (n_expected, *spec.image_shape)
    if images.dtype != np.uint8 or images.shape != want:
        raise ValueError(
            f"{img_path}: expected {spec.title} images of shape {want} and dtype uint8, "
            f"got shape {images.shape} and dtype {images.dtype}"
        )
    if labels.dtype != np.uint8 or labels.shape != (n_expected,):
        raise ValueError(
            f"{lbl_path}: expected {spec.title} labels of shape ({n_expected},) and dtype "
            f"uint8, got shape {labels.shape} and dtype {labels.dtype}"
        )
    if labels.size and int(labels.max()) >= spec.n_classes:
        raise ValueError(
            f"{lbl_path}: labels must lie in [0, {spec.n_classes - 1}], "
            f"found {int(labels.max())}"
        )


def _mapped(path: Path) -> np.ndarray:
    """``path`` memory-mapped; a gzip file is first decompressed next to it, once."""
    if path.name.endswith(".gz"):
        bare = path.with_name(path.name[: -len(".gz")])
        if not bare.exists():
            decompress_idx(path, bare)
        path = bare
    return open_idx(path)


def _load_idx_dataset(
    name: str, data_dir: str | os.PathLike[str] | None, download: bool, flatten: bool,
    progress: bool, func: str, mmap: bool = False,
) -> tuple[Split, Split]:
    spec = DATASETS[name]
    if data_dir is not None:
        directory = check_folder(data_dir, f"The 'data_dir' parameter of {func}")
    else:
        directory = check_folder(
            default_data_dir(spec.name),
            f"The cache folder of {func} (default_data_dir({spec.name!r}); set MLPX_DATA "
            "or pass data_dir= to use another)",
        )
    paths: dict[str, Path] = {}
    for role, remote in spec.files().items():
        path = _locate(directory, remote)
        if path is None:
            if not download:
                bare = remote.filename.removesuffix(".gz")
                raise FileNotFoundError(
                    f"{spec.title} file {remote.filename!r} (or {bare!r}) not found in "
                    f"{directory}. Pass download=True to download it, or data_dir= a "
                    "folder that holds the four files."
                )
            path = fetch(
                remote.filename, spec.mirrors, remote.sha256, directory,
                size=remote.size, progress=progress,
            )
        paths[role] = path

    out: list[Split] = []
    for split, n in (("train", spec.n_train), ("test", spec.n_test)):
        img_path, lbl_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        images = _mapped(img_path) if mmap else read_idx(img_path)
        labels = read_idx(lbl_path)
        _check_split(spec, images, labels, n, img_path, lbl_path)
        if flatten:
            images = images.reshape(n, -1)
        out.append((images, labels.astype(np.int64)))
    return out[0], out[1]


_LOADER_PARAMS_DOC = """
    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Folder holding the four files (``train-images-idx3-ubyte.gz``,
        ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
        ``t10k-labels-idx1-ubyte.gz``), each compressed or not (then without ``.gz``);
        missing files are downloaded into it. Default: :func:`default_data_dir`.
    download : bool, default=True
        Download missing files. With ``False`` a missing file raises
        ``FileNotFoundError``.
    flatten : bool, default=True
        Return images of shape (n_samples, 784) rather than (n_samples, 28, 28).
    progress : bool, default=True
        Show a progress bar while downloading.

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuples of numpy.ndarray
        ``X_train`` uint8 of shape (60000, 784) (or (60000, 28, 28)), ``y_train`` int64
        of shape (60000,) with values 0 to 9; the test split has 10000 samples.

    Raises
    ------
    DownloadError
        A file had to be downloaded and no mirror delivered it intact.
    IDXFormatError
        A file is corrupt or truncated.
    ValueError
        A file is a valid IDX file of the wrong shape, dtype or label range.
    FileNotFoundError
        A file is missing and ``download`` is False.
    ValueError
        ``data_dir`` (or the default cache folder) is, or lies under, something that
        is not a folder, such as a regular file.

    Notes
    -----
    Files found in ``data_dir`` are used as they are (they are validated by
    :func:`read_idx` and checked for shape, dtype and label range, but not hashed:
    repackaged copies such as Debian's differ in their gzip headers). Downloads are
    verified against the SHA-256 pinned in :data:`DATASETS`.
"""


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    flatten: bool = True,
    progress: bool = True,
) -> tuple[Split, Split]:
    return _load_idx_dataset("mnist", data_dir, download, flatten, progress, "load_mnist")


load_mnist.__doc__ = (
    """Load MNIST (LeCun, Cortes & Burges): 70000 handwritten digits, 28x28, 10 classes.
"""
    + _LOADER_PARAMS_DOC
    + """
    Examples
    --------
    >>> from mlpx.datasets import load_mnist
    >>> (X_train, y_train), (X_test, y_test) = load_mnist()  # doctest: +SKIP
    >>> X_train.shape, y_train.dtype  # doctest: +SKIP
    ((60000, 784), dtype('int64'))
    """
)


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    flatten: bool = True,
    progress: bool = True,
) -> tuple[Split, Split]:
    return _load_idx_dataset(
        "fashion-mnist", data_dir, download, flatten, progress, "load_fashion_mnist"
    )


load_fashion_mnist.__doc__ = (
    """Load Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70000 Zalando article images.

    Same format as MNIST: 28x28 grayscale images, 10 classes (names in
    :data:`FASHION_MNIST_CLASSES`). Released by Zalando Research under the MIT License.
"""
    + _LOADER_PARAMS_DOC
    + """
    Examples
    --------
    Debian's ``dataset-fashion-mnist`` package installs the four files:

    >>> from mlpx.datasets import load_fashion_mnist
    >>> (X_train, y_train), (X_test, y_test) = load_fashion_mnist(
    ...     "/usr/share/datasets/fashion-mnist", download=False)  # doctest: +SKIP
    >>> X_test.shape  # doctest: +SKIP
    (10000, 784)
    """
)

def load_sample(*, flatten: bool = True) -> tuple[Split, Split]:
    """Load the Fashion-MNIST sample shipped with mlpx (works offline).

    5000 training and 1000 test images: the first 500 images of each class in the
    official training split and the first 100 of each class in the official test split,
    kept in file order (see ``mlpx/data/README.md``). Fashion-MNIST is by Zalando
    Research (Xiao, Rasul & Vollgraf 2017), MIT License.

    Parameters
    ----------
    flatten : bool, default=True
        Return images of shape (n_samples, 784) rather than (n_samples, 28, 28).

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuples of numpy.ndarray
        ``X_train`` uint8 of shape (5000, 784), ``y_train`` int64 of shape (5000,),
        ``X_test`` uint8 of shape (1000, 784), ``y_test`` int64 of shape (1000,).
        Labels index :data:`FASHION_MNIST_CLASSES`.

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.datasets import load_sample, FASHION_MNIST_CLASSES
    >>> (X_train, y_train), (X_test, y_test) = load_sample()
    >>> X_train.shape, X_train.dtype, y_train.dtype
    ((5000, 784), dtype('uint8'), dtype('int64'))
    >>> np.bincount(y_test)
    array([100, 100, 100, 100, 100, 100, 100, 100, 100, 100])
    >>> FASHION_MNIST_CLASSES[y_train[0]]
    'Ankle boot'
    """
    ref = resources.files("mlpx.data").joinpath(SAMPLE_FILE)
    with resources.as_file(ref) as path:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("X_train", "y_train", "X_test", "y_test")}
    out: list[Split] = []
    for split in ("train", "test"):
        X, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
        if flatten:
            X = X.reshape(X.shape[0], -1)
        out.append((X, y.astype(np.int64)))
    return out[0], out[1]


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    flatten: bool = True,
    progress: bool = True,
    mmap: bool = False,
) -> tuple[Split, Split]:
    """Load a dataset by name: ``"mnist"``, ``"fashion-mnist"`` or ``"sample"``.

    Parameters
    ----------
    name : str
        ``"mnist"`` (:func:`load_mnist`), ``"fashion-mnist"`` (alias
        ``"fashion_mnist"``; :func:`load_fashion_mnist`) or ``"sample"``
        (:func:`load_sample`, the embedded Fashion-MNIST sample).
    data_dir, download, flatten, progress
        As for :func:`load_mnist`. The sample ignores ``download`` and ``progress``
        and accepts no ``data_dir``.
    mmap : bool, default=False
        Return the training and test images of MNIST and Fashion-MNIST as read-only
        memory maps of the uncompressed IDX files (a ``.gz`` file is decompressed next
        to it once, atomically): nothing is read until rows are indexed, so that
        ``mlpx.distributed.RowSource`` can give each rank only its rows. The labels are
        read whole. The embedded sample (a few MB) is always loaded into memory.

    Returns
    -------
    (X_train, y_train), (X_test, y_test) : tuples of numpy.ndarray

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), ``data_dir`` with
        ``"sample"``, or as for :func:`load_mnist`.

    Examples
    --------
    >>> from mlpx.datasets import load_dataset
    >>> (X_train, y_train), (X_test, y_test) = load_dataset("sample", flatten=False)
    >>> X_test.shape
    (1000, 28, 28)
    """
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key == "sample":
        if data_dir is not None:
            raise ValueError(
                "The 'data_dir' parameter of load_dataset must be None for the embedded "
                f"'sample' dataset. Got {data_dir!r} instead."
            )
        return load_sample(flatten=flatten)
    if key not in DATASET_NAMES:
        raise ValueError(
            f"The 'name' parameter of load_dataset must be one of {list(DATASET_NAMES)}. "
            f"Got {name!r} instead."
        )
    return _load_idx_dataset(key, data_dir, download, flatten, progress, "load_dataset",
                             mmap=mmap)


