"""Tests for mlpx.data.idx: the IDX reader (round trips, every rejection, fuzzing,
damaged real files) and its limits on hostile input (memory, FIFOs, devices)."""

from __future__ import annotations

import gzip
import os
import socket
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpx.data import idx
from mlpx.datasets import IDXFormatError, read_idx
from tests.data_helpers import (
    DEBIAN_FASHION,
    IDX_CODES,
    damage,
    idx_bytes,
    idx_header,
    needs_debian,
    needs_rlimits,
    read_idx_limited,
    write,
)


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
    # the same cases, compressed: the checks do not depend on how the bytes arrive
    (gzip.compress(b"\x00\x00\x08"), "too short"),
    (gzip.compress(GOOD[:10]), "truncated header"),
    (gzip.compress(GOOD[:-1]), "truncated data"),
    (gzip.compress(GOOD + b"\x00"), "1 unexpected trailing byte"),
    (gzip.compress(GOOD[:2] + b"\x0a" + GOOD[3:]), "unknown IDX data type code 0x0A"),
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


def test_read_idx_folder_is_an_oserror(tmp_path):
    with pytest.raises(IsADirectoryError):
        read_idx(tmp_path)


# ------------------------------------------------------ dimensions, declared sizes


@pytest.mark.parametrize("dims", [(1,) * (idx.MAX_NDIM + 1), (0,) * 255, (2,) + (1,) * 99])
@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_too_many_dimensions(tmp_path, dims, compress):
    """More dimensions than a NumPy array can have: IDXFormatError, not a bare
    ValueError from NumPy."""
    data = idx_header(0x08, dims) + bytes(int(np.prod(dims)))
    path = write(tmp_path / "many-dims", gzip.compress(data) if compress else data)
    with pytest.raises(IDXFormatError, match=f"number of dimensions is {len(dims)}; "
                       f"NumPy arrays have at most {idx.MAX_NDIM}") as info:
        read_idx(path)
    assert info.value.path == str(path)


def test_read_idx_most_dimensions_allowed(tmp_path):
    dims = (1,) * (idx.MAX_NDIM - 1) + (3,)
    path = write(tmp_path / "max-dims", idx_header(0x08, dims) + b"\x01\x02\x03")
    out = read_idx(path)
    assert out.shape == dims and out.ravel().tolist() == [1, 2, 3]


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_huge_declared_size_costs_only_what_is_there(tmp_path, compress):
    """A header declaring 2**96 bytes over 10 bytes of data: the reader must not try to
    allocate the declared size (that would be a MemoryError, not IDXFormatError)."""
    data = idx_header(0x08, (2**32 - 1,) * 3) + bytes(10)
    path = write(tmp_path / "liar", gzip.compress(data) if compress else data)
    with pytest.raises(IDXFormatError, match=r"truncated data: shape 4294967295x4294967295"
                       r"x4294967295 of uint8 needs \d+ byte\(s\) after the header, found 10"):
        read_idx(path)


def test_read_idx_long_gzip_tail_is_counted_up_to_a_limit(tmp_path):
    data = idx_bytes(np.arange(3, dtype=np.uint8)) + bytes(1 << 20)
    path = write(tmp_path / "tail.gz", gzip.compress(data))
    with pytest.raises(IDXFormatError, match="more than 65536 unexpected trailing byte"):
        read_idx(path)
    # An uncompressed file's tail is counted exactly from its size, without reading it.
    path = write(tmp_path / "tail", data)
    with pytest.raises(IDXFormatError, match=f"{1 << 20} unexpected trailing byte"):
        read_idx(path)


# ------------------------------------------ hostile input: memory, FIFOs, devices
# Run in a child process with a 512 MiB address-space limit and a time limit; the
# child reports which exception read_idx raised.


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory):
    """~1 MiB of gzip whose IDX header declares 1 byte, followed by 1 GiB of zeros
    (64 gzip members of 16 MiB each: built in a fraction of a second)."""
    head = gzip.compress(idx_header(0x08, (1,)) + b"\x07", mtime=0)
    block = gzip.compress(bytes(16 << 20), compresslevel=9, mtime=0)
    path = tmp_path_factory.mktemp("bomb") / "bomb-idx1-ubyte.gz"
    with open(path, "wb") as f:
        f.write(head)
        for _ in range(64):
            f.write(block)
    assert path.stat().st_size < 2 << 20
    return path


@needs_rlimits
def test_read_idx_gzip_bomb_stops_at_declared_size(gzip_bomb):
    verdict, proc = read_idx_limited(gzip_bomb)
    assert verdict is not None, proc.stderr[-2000:]
    assert verdict.startswith("IDXFormatError:"), verdict
    assert "more than 65536 unexpected trailing byte(s) after the data of shape 1" in verdict


@needs_rlimits
def test_read_idx_huge_raw_file_rejected_without_reading(tmp_path):
    """A 1 GiB (sparse) raw file whose header declares 1 byte."""
    path = write(tmp_path / "big-idx1-ubyte", idx_header(0x08, (1,)) + b"\x07")
    os.truncate(path, 1 << 30)
    verdict, proc = read_idx_limited(path)
    assert verdict is not None, proc.stderr[-2000:]
    assert f"IDXFormatError: {path}: {(1 << 30) - 9} unexpected trailing byte(s)" in verdict


@needs_rlimits
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_read_idx_refuses_dev_zero():
    verdict, proc = read_idx_limited("/dev/zero")
    assert verdict is not None, proc.stderr[-2000:]
    assert verdict == ("IDXFormatError: /dev/zero: not a regular file but a character "
                       "device; IDX files are read from regular files only")


@needs_rlimits
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_read_idx_refuses_fifo_without_blocking(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: it must be refused
    before that (the child is given 60 s; a blocked open fails the test)."""
    fifo = tmp_path / "train-images-idx3-ubyte.gz"
    os.mkfifo(fifo)
    verdict, proc = read_idx_limited(fifo, timeout=60)
    assert verdict is not None, proc.stderr[-2000:]
    assert verdict == (f"IDXFormatError: {fifo}: not a regular file but a FIFO (named "
                       "pipe); IDX files are read from regular files only")


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no UNIX sockets")
def test_read_idx_refuses_socket(tmp_path):
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(IDXFormatError, match="not a regular file but a socket"):
            read_idx(path)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX links")
def test_read_idx_follows_links_to_regular_files(tmp_path):
    target = write(tmp_path / "real", GOOD)
    os.symlink(target, tmp_path / "link")
    np.testing.assert_array_equal(read_idx(tmp_path / "link"), np.arange(12).reshape(3, 4))


# --------------------------------------------------------------------------- fuzzing


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


# --------------------------------------------------------- damaged real Fashion-MNIST


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
    path = write(tmp_path / name, damage(kind, (DEBIAN_FASHION / name).read_bytes()))
    with pytest.raises(IDXFormatError, match=DAMAGE[kind]) as info:
        read_idx(path)
    assert str(path) in str(info.value)
