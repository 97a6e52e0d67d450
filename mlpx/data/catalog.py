"""The catalogue of downloadable datasets: their files, mirrors and pinned checksums.

* :class:`RemoteFile` is one downloadable file and the SHA-256 it must hash to.
* :class:`IDXDataset` is an MNIST-like dataset: four IDX files, the mirrors serving
  them, their shapes.
* :data:`DATASETS` maps names to them (``"mnist"``, ``"fashion-mnist"``); the loaders
  look entries up at call time, so they can be replaced (a private mirror, a test
  server).
* :data:`FASHION_MNIST_CLASSES` are the class names of Fashion-MNIST.

Public API at :mod:`mlpx.datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "RemoteFile",
    "IDXDataset",
    "MNIST",
    "FASHION_MNIST",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
]


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file and what it must hash to.

    Attributes
    ----------
    filename : str
        The name on the mirrors and in the cache folder.
    sha256 : str
        Lower-case hex SHA-256 of the file as served (the ``.gz`` file). Checked on
        every download.
    size : int or None
        Its size in bytes, used to reject a wrong file early and for the progress bar.
    md5 : str or None
        The MD5 published by the dataset's authors, kept for reference only.
    """

    # Shown (repr of the class, pickle) under its public import path.
    __module__ = "mlpx.datasets"

    filename: str
    sha256: str
    size: int | None = None
    md5: str | None = None


@dataclass(frozen=True)
class IDXDataset:
    """An MNIST-like dataset: four IDX files, the mirrors serving them, their shapes.

    Tests (or users with a private mirror) substitute entries of :data:`DATASETS`,
    e.g. with ``dataclasses.replace(DATASETS["mnist"], mirrors=(...,))``.
    """

    __module__ = "mlpx.datasets"

    name: str
    title: str
    mirrors: tuple[str, ...]
    train_images: RemoteFile
    train_labels: RemoteFile
    test_images: RemoteFile
    test_labels: RemoteFile
    n_train: int = 60000
    n_test: int = 10000
    image_shape: tuple[int, ...] = (28, 28)
    n_classes: int = 10

    def files(self) -> dict[str, RemoteFile]:
        """The four :class:`RemoteFile` entries, as ``{role: RemoteFile}``."""
        return {
            "train_images": self.train_images,
            "train_labels": self.train_labels,
            "test_images": self.test_images,
            "test_labels": self.test_labels,
        }


# Checksum provenance.
#
# MNIST: the SHA-256 values are those of the four original .gz files (sizes 9912422,
# 28881, 1648877 and 4542 bytes) as served by both mirrors below; they are pinned by
# many independent projects (torchvision-style downloaders, TensorFlow Datasets users,
# Julia and Go MNIST loaders) and agree with each other. We could not hash the files
# here (no network); the MD5s are the widely published ones torchvision checks.
#
# Fashion-MNIST: computed by us. Debian's dataset-fashion-mnist ships the original
# deflate streams, but with a rewritten gzip header (original file name dropped, mtime
# set to the package build time), so its .gz files hash differently. Restoring the
# original header (FNAME flag, the file name, mtime 2017-08-31 10:50:06 UTC for the
# train files and 10:50:27 UTC for the test files, XFL 0, OS 3) reproduces, byte for
# byte, files whose MD5s equal the ones published in the Fashion-MNIST README; the
# SHA-256s below are of those reconstructed originals, and they agree with the values
# other projects pin. The decompressed IDX payloads of the Debian files also match the
# published MD5s of the raw files.
MNIST = IDXDataset(
    name="mnist",
    title="MNIST",
    # yann.lecun.com, the canonical home, has refused downloads for years.
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    train_images=RemoteFile(
        "train-images-idx3-ubyte.gz",
        sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        size=9912422,
        md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    train_labels=RemoteFile(
        "train-labels-idx1-ubyte.gz",
        sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        size=28881,
        md5="d53e105ee54ea40749a09fcbcd1e9432",
    ),
    test_images=RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        size=1648877,
        md5="9fb629c4189551a2d022fa330f9573f3",
    ),
    test_labels=RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        size=4542,
        md5="ec29112dd5afa0611ce80d1b7f02629c",
    ),
)

FASHION_MNIST = IDXDataset(
    name="fashion-mnist",
    title="Fashion-MNIST",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    train_images=RemoteFile(
        "train-images-idx3-ubyte.gz",
        sha256="3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        size=26421880,
        md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    ),
    train_labels=RemoteFile(
        "train-labels-idx1-ubyte.gz",
        sha256="a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        size=29515,
        md5="25c81989df183df01b3e8a0aad5dffbe",
    ),
    test_images=RemoteFile(
        "t10k-images-idx3-ubyte.gz",
        sha256="346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        size=4422102,
        md5="bef4ecab320f06d8554ea6380940ec79",
    ),
    test_labels=RemoteFile(
        "t10k-labels-idx1-ubyte.gz",
        sha256="67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        size=5148,
        md5="bb300cfdad3c16e7a12a480ee83cd310",
    ),
)

#: The downloadable datasets by name. Looked up at call time, so entries can be
#: replaced (a private mirror, a test server).
DATASETS: dict[str, IDXDataset] = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}

#: Class names of Fashion-MNIST (and of the embedded sample), indexed by label.
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
