"""Tests for mlpx.data.loaders: MNIST / Fashion-MNIST from a folder (the Debian files)
or downloaded from a local server, damaged and misplaced files, unusable folders, the
embedded sample and load_dataset."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import mlpx.data
from mlpx import datasets
from mlpx.datasets import (
    IDXFormatError,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    load_sample,
)
from tests.data_helpers import (
    DEBIAN_FASHION,
    MirrorServer,
    damage,
    idx_bytes,
    needs_debian,
    needs_rlimits,
    run_limited,
    write,
)

SAMPLE = Path(mlpx.data.__file__).parent / "fashion_mnist_sample.npz"


@pytest.fixture(scope="module")
def fashion():
    return load_fashion_mnist(DEBIAN_FASHION, download=False, flatten=False, progress=False)


# --------------------------------------------------------------- real Fashion-MNIST


@needs_debian
def test_load_fashion_mnist_debian(fashion):
    (X_tr, y_tr), (X_te, y_te) = fashion
    assert X_tr.shape == (60000, 28, 28) and X_te.shape == (10000, 28, 28)
    assert X_tr.dtype == np.uint8 and X_te.dtype == np.uint8
    assert y_tr.shape == (60000,) and y_te.shape == (10000,)
    assert y_tr.dtype == np.int64 and y_te.dtype == np.int64
    # Fashion-MNIST is balanced: 6000 / 1000 per class.
    np.testing.assert_array_equal(np.bincount(y_tr), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_te), [1000] * 10)
    assert X_tr.max() == 255 and X_tr.min() == 0


@needs_debian
def test_load_fashion_mnist_flatten_and_raw_files(tmp_path, fashion):
    # Uncompressed copies are found too (name without .gz), here mixed with a .gz one.
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                 "train-labels-idx1-ubyte"):
        write(tmp_path / name, gzip.decompress((DEBIAN_FASHION / f"{name}.gz").read_bytes()))
    os.symlink(DEBIAN_FASHION / "train-images-idx3-ubyte.gz",
               tmp_path / "train-images-idx3-ubyte.gz")
    (X_tr, y_tr), (X_te, y_te) = load_dataset("fashion-mnist", tmp_path, download=False)
    assert X_tr.shape == (60000, 784) and X_te.shape == (10000, 784)
    np.testing.assert_array_equal(X_te, fashion[1][0].reshape(10000, 784))
    np.testing.assert_array_equal(y_tr, fashion[0][1])


@needs_debian
def test_loader_reports_damaged_file(tmp_path):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz"):
        os.symlink(DEBIAN_FASHION / name, tmp_path / name)
    bad = write(tmp_path / "t10k-labels-idx1-ubyte.gz",
                damage("truncated gzip", (DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz")
                        .read_bytes()))
    with pytest.raises(IDXFormatError, match="truncated gzip") as info:
        load_fashion_mnist(tmp_path, download=False)
    assert str(bad) in str(info.value)


@needs_debian
def test_loader_rejects_swapped_files(tmp_path):
    # Valid IDX files in the wrong roles: train labels where the test labels belong.
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz"):
        os.symlink(DEBIAN_FASHION / name, tmp_path / name)
    os.symlink(DEBIAN_FASHION / "train-labels-idx1-ubyte.gz",
               tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ValueError, match=r"labels of shape \(10000,\)"):
        load_fashion_mnist(tmp_path, download=False)


def test_loader_missing_files_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz") as info:
        load_mnist(tmp_path, download=False)
    assert "download=True" in str(info.value) and str(tmp_path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ unusable folders


@pytest.mark.parametrize("download", [False, True])
def test_loader_data_dir_that_is_a_file(tmp_path, download):
    """A regular file as data_dir: a clear ValueError (not FileExistsError from mkdir,
    nor a FileNotFoundError that blames the dataset's files), before any download."""
    notes = write(tmp_path / "notes.txt", b"hello")
    for func, call in [("load_mnist", load_mnist), ("load_fashion_mnist", load_fashion_mnist),
                       ("load_dataset", lambda d, **kw: load_dataset("mnist", d, **kw))]:
        with pytest.raises(ValueError) as info:
            call(notes, download=download, progress=False)
        assert str(info.value) == (
            f"The 'data_dir' parameter of {func} must be a folder. Got '{notes}' "
            "instead, which is a regular file.")
        with pytest.raises(ValueError, match=f"lies under '{notes}', a regular file"):
            call(notes / "mnist", download=download, progress=False)
    assert notes.read_bytes() == b"hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_loader_cache_folder_under_a_file(tmp_path, monkeypatch):
    notes = write(tmp_path / "notes.txt", b"hello")
    monkeypatch.setenv("MLPX_DATA", str(notes))
    with pytest.raises(ValueError, match=r"The cache folder of load_mnist "
                       r"\(default_data_dir\('mnist'\); set MLPX_DATA or pass data_dir= to "
                       rf"use another\) must be a folder\. Got '{notes}/mnist' instead"):
        load_mnist(progress=False)


def _tiny_mnist_files(folder, skip=()):
    """Valid (tiny) files for the four MNIST roles, except those in ``skip``."""
    arrays = {
        "train-images-idx3-ubyte.gz": np.zeros((2, 28, 28), np.uint8),
        "train-labels-idx1-ubyte.gz": np.array([1, 2], np.uint8),
        "t10k-images-idx3-ubyte.gz": np.zeros((1, 28, 28), np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.array([3], np.uint8),
    }
    for name, arr in arrays.items():
        if name not in skip:
            write(Path(folder) / name, gzip.compress(idx_bytes(arr)))


@needs_rlimits
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_loader_refuses_fifo_in_data_dir(tmp_path):
    """A FIFO under a dataset file's name is refused (IDXFormatError), neither opened
    (which would block) nor passed over for a download."""
    _tiny_mnist_files(tmp_path, skip=["train-images-idx3-ubyte.gz"])
    os.mkfifo(tmp_path / "train-images-idx3-ubyte.gz")
    proc = run_limited(f"""
        from mlpx.datasets import IDXFormatError, load_mnist
        try:
            load_mnist({str(tmp_path)!r}, download=False)
        except IDXFormatError as exc:
            print("IDXFormatError:", exc)
        """, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == (
        f"IDXFormatError: {tmp_path / 'train-images-idx3-ubyte.gz'}: not a regular file but "
        "a FIFO (named pipe); IDX files are read from regular files only")


# ----------------------------------------------------------------- embedded sample


def test_load_sample_shapes_and_classes():
    (X_tr, y_tr), (X_te, y_te) = load_sample()
    assert X_tr.shape == (5000, 784) and X_te.shape == (1000, 784)
    assert X_tr.dtype == np.uint8 and y_tr.dtype == np.int64 and y_te.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y_tr, minlength=10), [500] * 10)
    np.testing.assert_array_equal(np.bincount(y_te, minlength=10), [100] * 10)
    assert 0 < X_tr.mean() < 255 and X_tr.max() == 255
    (X3, _), _ = load_sample(flatten=False)
    assert X3.shape == (5000, 28, 28)
    np.testing.assert_array_equal(X3.reshape(5000, -1), X_tr)
    orig = int(X_tr[0, 400])
    X_tr[0, 400] = orig ^ 0xFF  # a fresh, writable copy every call
    assert load_sample()[0][0][0, 400] == orig


def test_sample_file_is_plain_npz_and_small():
    assert SAMPLE.stat().st_size < 3_000_000
    with np.load(SAMPLE, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(
            ["X_train", "y_train", "idx_train", "X_test", "y_test", "idx_test"])
        for split, n, total in (("train", 5000, 60000), ("test", 1000, 10000)):
            idx = npz[f"idx_{split}"]
            assert idx.shape == (n,) and np.all(np.diff(idx.astype(int)) > 0)
            assert idx.max() < total
    for extra in ("README.md", "LICENSE-fashion-mnist.txt"):
        assert (SAMPLE.parent / extra).is_file()


@needs_debian
def test_sample_rows_are_the_documented_official_rows(fashion):
    """The sample is the first 500 (train) / 100 (test) images of each class, unchanged."""
    with np.load(SAMPLE, allow_pickle=False) as npz:
        for split, (X, y), per in (("train", fashion[0], 500), ("test", fashion[1], 100)):
            want = np.sort(np.concatenate(
                [np.flatnonzero(y == c)[:per] for c in range(10)]))
            np.testing.assert_array_equal(npz[f"idx_{split}"], want)
            np.testing.assert_array_equal(npz[f"X_{split}"], X[want])
            np.testing.assert_array_equal(npz[f"y_{split}"], y[want])


def test_load_dataset_dispatch_and_errors():
    (X, y), _ = load_dataset("sample", flatten=False)
    assert X.shape == (5000, 28, 28)
    with pytest.raises(ValueError, match=r"\['mnist', 'fashion-mnist', 'sample'\]"):
        load_dataset("cifar10")
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("sample", "/tmp")


# ----------------------------------------------------- downloads (local HTTP server)


@pytest.fixture(scope="module")
def server():
    s = MirrorServer()
    yield s
    s.close()


@pytest.mark.network
def test_load_mnist_downloads_verifies_and_caches(server, tmp_path, monkeypatch):
    """load_mnist end to end against the local server, with substituted mirrors/sums."""
    srv = server.reset()
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(20, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "test_labels": np.array([3, 1, 4, 1, 5], dtype=np.uint8),
    }
    spec = datasets.DATASETS["mnist"]
    remotes = {}
    for role, remote in spec.files().items():
        body = gzip.compress(idx_bytes(arrays[role]))
        srv.files[remote.filename] = body
        remotes[role] = datasets.RemoteFile(
            remote.filename, hashlib.sha256(body).hexdigest(), size=len(body))
    fake = dataclasses.replace(spec, mirrors=(srv.url("missing"), srv.url("good")),
                               n_train=20, n_test=5, **remotes)
    monkeypatch.setitem(datasets.DATASETS, "mnist", fake)
    monkeypatch.setenv("MLPX_DATA", str(tmp_path))

    (X_tr, y_tr), (X_te, y_te) = load_mnist(progress=False)
    assert X_tr.shape == (20, 784) and X_tr.dtype == np.uint8 and y_tr.dtype == np.int64
    np.testing.assert_array_equal(X_te.reshape(5, 28, 28), arrays["test_images"])
    np.testing.assert_array_equal(y_te, [3, 1, 4, 1, 5])
    assert len(srv.requests) == 8  # 4 files x (404 mirror, good mirror)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(
        r.filename for r in remotes.values())

    srv.requests.clear()
    (X_tr2, _), _ = load_dataset("mnist", flatten=False, progress=False)
    assert srv.requests == []  # served from the cache
    np.testing.assert_array_equal(X_tr2, arrays["train_images"])
