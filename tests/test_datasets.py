"""Tests for mlpx.datasets: IDX reader, downloader (against a local HTTP server),
loaders on the real Fashion-MNIST files, the embedded sample and the helpers."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import os
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mlpx import datasets
from mlpx.datasets import (
    DownloadError,
    IDXFormatError,
    fetch,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    load_sample,
    one_hot,
    read_idx,
    scale,
    standardize,
)

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not all((DEBIAN_FASHION / f).is_file() for f in (
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")),
    reason=f"Fashion-MNIST IDX files not found in {DEBIAN_FASHION} "
           "(Debian package dataset-fashion-mnist)",
)

IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C,
             "float32": 0x0D, "float64": 0x0E}


def idx_bytes(arr, code=None):
    """Encode ``arr`` as IDX (big-endian), the reference the reader is checked against."""
    arr = np.asarray(arr)
    code = IDX_CODES[arr.dtype.name] if code is None else code
    header = bytes([0, 0, code, arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, data):
    path = Path(path)
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    data = idx_bytes(arr)
    # The name says nothing: compression is recognised by the magic bytes.
    path = write(tmp_path / "file.idx", gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, arr)
    assert out.flags.writeable  # a private copy, not a view of the read-only bytes


def test_read_idx_gz_suffix_on_raw_file_and_empty_dim(tmp_path):
    arr = np.zeros((0, 7), dtype=np.uint8)
    out = read_idx(write(tmp_path / "raw-but-named.gz", idx_bytes(arr)))
    assert out.shape == (0, 7) and out.dtype == np.uint8


def test_read_idx_multi_member_gzip(tmp_path):
    data = idx_bytes(np.arange(10, dtype=np.uint8))
    path = write(tmp_path / "x.gz", gzip.compress(data[:7]) + gzip.compress(data[7:]))
    np.testing.assert_array_equal(read_idx(path), np.arange(10, dtype=np.uint8))


GOOD = idx_bytes(np.arange(12, dtype=np.int16).reshape(3, 4))


@pytest.mark.parametrize("data, words", [
    (b"", "too short"),
    (b"\x00\x00\x08", "too short"),
    (b"\x01" + GOOD[1:], "two zero bytes"),
    (b"\x00\x07" + GOOD[2:], "two zero bytes"),
    (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown IDX data type code 0x0A"),
    (GOOD[:3] + b"\x00" + GOOD[4:], "number of dimensions is 0"),
    (GOOD[:10], "truncated header"),
    (GOOD[:-1], "truncated data"),
    (GOOD + b"\x00", "1 unexpected trailing byte"),
    (GOOD[:3] + b"\x01" + GOOD[4:], "trailing"),   # 3x4 read as 1 dim of 3
    (GOOD[:3] + b"\x03" + GOOD[4:], "truncated data"),
    (gzip.compress(GOOD)[:-5], "truncated gzip"),
    (gzip.compress(GOOD)[:15], "truncated gzip"),
    (gzip.compress(GOOD) + b"garbage!", "corrupt gzip"),
    (gzip.compress(GOOD)[:-8] + b"\0\0\0\0" + gzip.compress(GOOD)[-4:], "corrupt gzip"),
])
def test_read_idx_rejects(tmp_path, data, words):
    path = write(tmp_path / "bad-idx-file", data)
    with pytest.raises(IDXFormatError, match=words) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert isinstance(info.value, ValueError)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


@pytest.fixture(scope="module")
def fuzz_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "fuzzed"


def _read_fuzzed(path, data):
    path.write_bytes(data)
    try:
        out = read_idx(path)
    except IDXFormatError as exc:
        assert str(path) in str(exc)
        return None
    assert isinstance(out, np.ndarray)
    return out


_fuzz = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@_fuzz
@given(data=st.binary(max_size=300), gz=st.booleans())
def test_read_idx_fuzz_random_bytes(fuzz_path, data, gz):
    _read_fuzzed(fuzz_path, gzip.compress(data) if gz else data)


@_fuzz
@given(code=st.sampled_from([8, 9, 11, 12, 13, 14, 0, 10, 255]),
       dims=st.lists(st.integers(0, 6), min_size=0, max_size=4),
       extra=st.integers(-8, 8), gz=st.booleans(), cut=st.integers(0, 40))
def test_read_idx_fuzz_headers(fuzz_path, code, dims, extra, gz, cut):
    """Nearly valid files: any header, payload a little short or long, or a cut stream."""
    itemsize = {8: 1, 9: 1, 11: 2, 12: 4, 13: 4, 14: 8}.get(code, 1)
    need = int(np.prod(dims)) * itemsize
    n = max(0, need + extra)
    data = bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    data += bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    if gz:
        data = gzip.compress(data)
        data = data[: len(data) - cut] if cut else data
    out = _read_fuzzed(fuzz_path, data)
    valid = code in {8, 9, 11, 12, 13, 14} and dims and n == need and not (gz and cut)
    assert (out is not None) == bool(valid)
    if out is not None:
        assert out.shape == tuple(dims)


@_fuzz
@given(data=st.binary(min_size=1, max_size=200))
def test_read_idx_fuzz_corrupted_gzip_of_valid_file(fuzz_path, data):
    good = bytearray(gzip.compress(GOOD))
    pos = data[0] % len(good)
    good[pos:pos + len(data) - 1] = data[1:]
    _read_fuzzed(fuzz_path, bytes(good))


# --------------------------------------------------------------- real Fashion-MNIST


@pytest.fixture(scope="module")
def fashion():
    return load_fashion_mnist(DEBIAN_FASHION, download=False, flatten=False, progress=False)


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


def _damage(kind, gz):
    """Damaged versions of a real (gzipped) IDX file."""
    raw = gzip.decompress(gz)

    def recompress(data):
        return gzip.compress(data, compresslevel=1)  # level 9 on 8 MB takes seconds

    if kind == "truncated gzip":
        return gz[: len(gz) // 2]
    if kind == "truncated payload":
        return recompress(raw[:-3])
    if kind == "wrong magic":
        return recompress(b"\x08\x03" + raw[2:])
    if kind == "wrong dtype code":
        return recompress(raw[:2] + b"\x07" + raw[3:])
    if kind == "wrong dims count":
        return recompress(raw[:3] + bytes([raw[3] + 1]) + raw[4:])
    if kind == "trailing garbage":
        return recompress(raw + b"\xff" * 5)
    if kind == "garbage after gzip":
        return gz + b"not gzip"
    raise AssertionError(kind)


DAMAGE = {
    "truncated gzip": "truncated gzip stream",
    "truncated payload": "truncated data",
    "wrong magic": "two zero bytes",
    "wrong dtype code": "unknown IDX data type code 0x07",
    "wrong dims count": "truncated data|trailing byte",
    "trailing garbage": "5 unexpected trailing byte",
    "garbage after gzip": "corrupt gzip stream",
}


@needs_debian
@pytest.mark.parametrize("kind", list(DAMAGE))
@pytest.mark.parametrize("name", ["t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"])
def test_read_idx_damaged_real_files(tmp_path, kind, name):
    path = write(tmp_path / name, _damage(kind, (DEBIAN_FASHION / name).read_bytes()))
    with pytest.raises(IDXFormatError, match=DAMAGE[kind]) as info:
        read_idx(path)
    assert str(path) in str(info.value)


@needs_debian
def test_loader_reports_damaged_file(tmp_path):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz"):
        os.symlink(DEBIAN_FASHION / name, tmp_path / name)
    bad = write(tmp_path / "t10k-labels-idx1-ubyte.gz",
                _damage("truncated gzip", (DEBIAN_FASHION / "t10k-labels-idx1-ubyte.gz")
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


# ---------------------------------------------------------------- embedded sample


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
    path = Path(datasets.__file__).parent / "data" / "fashion_mnist_sample.npz"
    assert path.stat().st_size < 3_000_000
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(
            ["X_train", "y_train", "idx_train", "X_test", "y_test", "idx_test"])
        for split, n, total in (("train", 5000, 60000), ("test", 1000, 10000)):
            idx = npz[f"idx_{split}"]
            assert idx.shape == (n,) and np.all(np.diff(idx.astype(int)) > 0)
            assert idx.max() < total
    for extra in ("README.md", "LICENSE-fashion-mnist.txt"):
        assert (path.parent / extra).is_file()


@needs_debian
def test_sample_rows_are_the_documented_official_rows(fashion):
    """The sample is the first 500 (train) / 100 (test) images of each class, unchanged."""
    path = Path(datasets.__file__).parent / "data" / "fashion_mnist_sample.npz"
    with np.load(path, allow_pickle=False) as npz:
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


# ------------------------------------------------------------------------- helpers


def test_scale():
    X = np.array([[0, 128, 255]], dtype=np.uint8)
    out = scale(X)
    assert out.dtype == np.float32 and out.shape == (1, 3)
    np.testing.assert_allclose(out, [[0.0, 128 / 255, 1.0]], rtol=1e-7)
    assert scale(X, dtype="float64").dtype == np.float64
    assert X[0, 1] == 128  # input untouched
    with pytest.raises(ValueError, match="'dtype' parameter of scale"):
        scale(X, dtype="int32")


def test_standardize_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    X_tr = rng.integers(0, 256, size=(200, 5)).astype(np.uint8)
    X_tr[:, 2] = 9  # constant feature
    X_te = rng.integers(0, 256, size=(50, 5)).astype(np.uint8)
    Z_tr, Z_te = standardize(X_tr, X_te)
    assert Z_tr.dtype == np.float32 and Z_te.dtype == np.float32
    np.testing.assert_allclose(Z_tr.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(Z_tr.std(axis=0), [1, 1, 0, 1, 1], atol=1e-5)
    mu, sd = X_tr.mean(axis=0), X_tr.std(axis=0)
    sd[2] = 1
    np.testing.assert_allclose(Z_te, (X_te - mu) / sd, rtol=1e-5, atol=1e-5)
    # test data alone would give other numbers: the test set's statistics are unused
    assert not np.allclose(Z_te.mean(axis=0), 0, atol=1e-3)
    assert standardize(X_tr.astype(np.float64)).dtype == np.float64
    assert standardize(X_tr, dtype="float64").dtype == np.float64
    with pytest.raises(ValueError, match="per-sample shape"):
        standardize(X_tr, X_te[:, :4])
    with pytest.raises(ValueError, match="at least one sample"):
        standardize(np.zeros((0, 3)))


def test_one_hot():
    out = one_hot(np.array([2, 0, 1, 2]))
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[[2, 0, 1, 2]])
    assert one_hot([1], n_classes=4, dtype="float64").tolist() == [[0.0, 1.0, 0.0, 0.0]]
    assert one_hot(np.array([], dtype=np.int64), n_classes=3).shape == (0, 3)
    for bad, kwargs, words in [
        ([0.0, 1.0], {}, "array of integers"),
        ([[0, 1]], {}, "1-dimensional"),
        ([0, 3], {"n_classes": 3}, r"labels in \[0, 2\]"),
        ([-1, 0], {}, r"labels in \[0, 0\]"),
        ([0], {"n_classes": 0}, "int >= 1"),
        (np.array([], dtype=np.int64), {}, "must be given when y is empty"),
    ]:
        with pytest.raises(ValueError, match=words):
            one_hot(bad, **kwargs)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MLPX_DATA", str(tmp_path))
    assert datasets.default_data_dir("mnist") == tmp_path / "mnist"
    monkeypatch.delenv("MLPX_DATA")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.default_data_dir("fashion-mnist") == tmp_path / "xdg/mlpx/fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.default_data_dir("mnist") == tmp_path / "home/.cache/mlpx/mnist"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert datasets.default_data_dir("mnist") == tmp_path / "home/Library/Caches/mlpx/mnist"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert datasets.default_data_dir("mnist") == tmp_path / "local/mlpx/mnist"


def test_pinned_checksums_are_well_formed():
    for spec in datasets.DATASETS.values():
        assert len(spec.mirrors) >= 2
        assert all(m.startswith(("http://", "https://")) and m.endswith("/")
                   for m in spec.mirrors)
        for remote in spec.files().values():
            assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0
            assert remote.size and len(remote.md5) == 32


@needs_debian
def test_fashion_checksums_match_debian_payloads():
    """The Debian files carry the original deflate streams behind a rewritten gzip
    header: restoring the original header (file name, mtime) must reproduce files with
    the pinned SHA-256 and the published MD5 (see the provenance note in datasets.py)."""
    mtimes = {"train": 1504176606, "t10k": 1504176627}
    for remote in datasets.DATASETS["fashion-mnist"].files().values():
        gz = (DEBIAN_FASHION / remote.filename).read_bytes()
        name = remote.filename.removesuffix(".gz").encode() + b"\0"
        mtime = mtimes[remote.filename.split("-")[0]].to_bytes(4, "little")
        original = b"\x1f\x8b\x08\x08" + mtime + b"\x00\x03" + name + gz[10:]
        assert len(original) == remote.size
        assert hashlib.md5(original).hexdigest() == remote.md5
        assert hashlib.sha256(original).hexdigest() == remote.sha256


# ----------------------------------------------------- downloads (local HTTP server)

PAYLOAD = b"mlpx test payload\n" * 5000  # 90 kB: several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    def __init__(self):
        self.files = {"payload.bin": PAYLOAD}
        self.requests = []
        self.release = threading.Event()
        lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with lock:
                    server.requests.append(self.path)
                _, mode, name = self.path.split("/", 2)
                body = server.files.get(name)
                if mode == "missing" or body is None:
                    self.send_error(404, "Not Found")
                    return
                if mode == "corrupt":
                    body = bytes(b ^ 0x55 for b in body[:100]) + body[100:]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "truncated":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if mode == "stall":
                    self.wfile.write(body[:10])
                    self.wfile.flush()
                    server.release.wait(10)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        host, port = self.httpd.server_address[:2]
        self.base = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, mode):
        return f"{self.base}/{mode}/"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def srv(server):
    server.requests.clear()
    server.files = {"payload.bin": PAYLOAD}
    return server


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _only(dest, *names):
    assert sorted(p.name for p in Path(dest).iterdir()) == sorted(names)


@pytest.mark.network
def test_fetch_good_mirror(srv, tmp_path):
    dest = tmp_path / "cache" / "sub"  # created on demand
    path = fetch("payload.bin", [srv.url("good")], PAYLOAD_SHA, dest, progress=True)
    assert path == dest / "payload.bin" and path.read_bytes() == PAYLOAD
    assert srv.requests == ["/good/payload.bin"]
    _only(dest, "payload.bin")


@pytest.mark.network
def test_fetch_moves_past_bad_mirrors(srv, tmp_path):
    mirrors = [srv.url("corrupt"), srv.url("missing"), srv.url("truncated"),
               _closed_port_url(), srv.url("good")]
    path = fetch("payload.bin", mirrors, PAYLOAD_SHA, tmp_path, progress=False,
                 size=len(PAYLOAD))
    assert path.read_bytes() == PAYLOAD
    assert srv.requests == ["/corrupt/payload.bin", "/missing/payload.bin",
                            "/truncated/payload.bin", "/good/payload.bin"]
    _only(tmp_path, "payload.bin")


@pytest.mark.network
def test_fetch_all_mirrors_fail(srv, tmp_path):
    refused = _closed_port_url()
    mirrors = [srv.url("corrupt"), srv.url("missing"), srv.url("truncated"), refused]
    with pytest.raises(DownloadError) as info:
        fetch("payload.bin", mirrors, PAYLOAD_SHA, tmp_path, progress=False)
    err = info.value
    msg = str(err)
    assert isinstance(err, OSError)
    for m in mirrors:
        assert m + "payload.bin" in msg
    assert [url for url, _ in err.failures] == [m + "payload.bin" for m in mirrors]
    reasons = [why for _, why in err.failures]
    assert "checksum mismatch" in reasons[0]
    assert "404" in reasons[1]
    assert "truncated" in reasons[2]
    assert "connection failed" in reasons[3]
    _only(tmp_path)  # no temporary or partial file left behind


@pytest.mark.network
def test_fetch_timeout_and_wrong_size(srv, tmp_path):
    with pytest.raises(DownloadError) as info:
        fetch("payload.bin", [srv.url("stall")], PAYLOAD_SHA, tmp_path, progress=False,
              timeout=0.3)
    assert "timed out" in info.value.failures[0][1]
    _only(tmp_path)
    with pytest.raises(DownloadError) as info:
        fetch("payload.bin", [srv.url("good")], PAYLOAD_SHA, tmp_path, progress=False,
              size=len(PAYLOAD) + 1)
    why = info.value.failures[0][1]
    assert "wrong size" in why and str(len(PAYLOAD)) in why
    _only(tmp_path)
    path = fetch("payload.bin", [srv.url("stall"), srv.url("good")], PAYLOAD_SHA, tmp_path,
                 progress=False, timeout=0.3, size=len(PAYLOAD))
    assert path.read_bytes() == PAYLOAD
    _only(tmp_path, "payload.bin")


@pytest.mark.network
def test_fetch_uses_verified_cache_without_request(srv, tmp_path):
    write(tmp_path / "payload.bin", PAYLOAD)
    path = fetch("payload.bin", [srv.url("good")], PAYLOAD_SHA, tmp_path, progress=False)
    assert path == tmp_path / "payload.bin"
    assert srv.requests == []


@pytest.mark.network
def test_fetch_replaces_cached_file_with_wrong_checksum(srv, tmp_path):
    write(tmp_path / "payload.bin", PAYLOAD[:-1])
    with pytest.raises(DownloadError, match="does not match the checksum"):
        fetch("payload.bin", [srv.url("missing")], PAYLOAD_SHA, tmp_path, progress=False)
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD[:-1]  # left as it was
    fetch("payload.bin", [srv.url("good")], PAYLOAD_SHA, tmp_path, progress=False)
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD
    assert srv.requests == ["/missing/payload.bin", "/good/payload.bin"]
    _only(tmp_path, "payload.bin")


def test_fetch_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="'mirrors' parameter of fetch"):
        fetch("x", [], PAYLOAD_SHA, tmp_path)
    with pytest.raises(ValueError, match="'mirrors' parameter of fetch"):
        fetch("x", "http://127.0.0.1/", PAYLOAD_SHA, tmp_path)
    for bad in ("../x", "a/b", "", ".."):
        with pytest.raises(ValueError, match="'filename' parameter of fetch"):
            fetch(bad, ["http://127.0.0.1/"], PAYLOAD_SHA, tmp_path)
    with pytest.raises(ValueError, match="'sha256' parameter of fetch"):
        fetch("x", ["http://127.0.0.1/"], "abc", tmp_path)


@pytest.mark.network
def test_load_mnist_downloads_verifies_and_caches(srv, tmp_path, monkeypatch):
    """load_mnist end to end against the local server, with substituted mirrors/sums."""
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
    _only(tmp_path / "mnist", *(r.filename for r in remotes.values()))

    srv.requests.clear()
    (X_tr2, _), _ = load_dataset("mnist", flatten=False, progress=False)
    assert srv.requests == []  # served from the cache
    np.testing.assert_array_equal(X_tr2, arrays["train_images"])
