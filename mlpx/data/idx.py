"""The IDX file reader: :func:`read_idx` and its error, :class:`IDXFormatError`.

IDX is the format of MNIST and Fashion-MNIST: a 4-byte magic number (two zero bytes, a
data type code, the number of dimensions), one big-endian 32-bit size per dimension, then
the big-endian data in C order; files are often gzip-compressed.

The reader is written for files that may be hostile: it reads the header first and then
exactly the number of bytes the header declares, so memory use is bounded by the
declared size (never by how far a gzip stream inflates); it refuses anything that is
not a regular file (FIFOs, devices such as ``/dev/zero``) without reading from it.

Public API at :mod:`mlpx.datasets`.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import math
import os
import struct
import tempfile
import zlib
from typing import Any, BinaryIO

import numpy as np

from .._files import NotARegularFileError, open_regular

__all__ = ["IDXFormatError", "read_idx", "open_idx", "decompress_idx", "MAX_NDIM"]


class IDXFormatError(ValueError):
    """An IDX file is corrupt, truncated or not an IDX file at all.

    The message names the file and says what was wrong; the file's path is kept in the
    ``path`` attribute and the bare reason in ``reason``.
    """

    # Shown (tracebacks, repr, pickle) under its public import path.
    __module__ = "mlpx.datasets"

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# IDX type codes (third byte of the magic number); the data are big-endian.
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_DTYPE_NAMES = ", ".join(
    f"0x{code:02X} ({dt.newbyteorder('=').name})" for code, dt in _IDX_DTYPES.items()
)
_CODE_OF = {dt: code for code, dt in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"

#: The most dimensions an IDX file may declare: the most a NumPy array can have
#: (64 since NumPy 2.0, 32 before).
MAX_NDIM = 64 if int(np.__version__.split(".")[0]) >= 2 else 32

# The payload is read in pieces of this size, so that a header declaring far more data
# than the file holds costs no more memory than the data actually present.
_CHUNK = 1 << 20
# At most this many bytes past the declared data are read, to count them for the
# message; a longer tail is reported as "more than" this.
_TRAILING_LIMIT = 1 << 16


def _open_regular(path: str) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file, else raise.

    Through :func:`mlpx._files.open_regular` (no device or FIFO is opened at all, and a
    swap after the check is caught on the descriptor); a folder is an
    IsADirectoryError, anything else that is not a regular file an IDXFormatError.
    """
    try:
        return open_regular(path)
    except NotARegularFileError as exc:
        if exc.kind == "a folder":
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path) from None
        raise IDXFormatError(
            path, f"not a regular file but {exc.kind}; IDX files are read from regular "
            "files only") from None


def _read(stream: BinaryIO, n: int, path: str) -> bytes:
    """Up to ``n`` bytes from ``stream`` (fewer only at its end); gzip errors translated."""
    try:
        return stream.read(n)
    except EOFError as exc:
        raise IDXFormatError(path, f"truncated gzip stream ({exc})") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise IDXFormatError(path, f"corrupt gzip stream ({exc})") from None


def _read_exactly(stream: BinaryIO, n: int, path: str) -> bytearray:
    """Read ``n`` bytes, in pieces, stopping early only at the end of the stream."""
    buf = bytearray()
    while len(buf) < n:
        chunk = _read(stream, min(_CHUNK, n - len(buf)), path)
        if not chunk:
            break
        buf += chunk
    return buf


def _count_trailing(stream: BinaryIO, path: str) -> int:
    """Bytes left in ``stream``, counted up to just past ``_TRAILING_LIMIT``.

    Reading to the end also makes a gzip stream check its CRC and length.
    """
    count = 0
    while count <= _TRAILING_LIMIT:
        chunk = _read(stream, _TRAILING_LIMIT + 1 - count, path)
        if not chunk:
            break
        count += len(chunk)
    return count


def _header(stream: BinaryIO, path: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Read and validate an IDX header: ``(dims, big-endian dtype, header bytes)``."""
    magic = _read_exactly(stream, 4, path)
    n = len(magic)
    if n < 4:
        raise IDXFormatError(
            path, f"too short for an IDX file: {n} byte(s), the magic number alone is 4"
        )
    if magic[0] != 0 or magic[1] != 0:
        raise IDXFormatError(
            path,
            "not an IDX file: the magic number must start with two zero bytes, "
            f"got 0x{magic[0]:02X} 0x{magic[1]:02X}",
        )
    code, ndim = magic[2], magic[3]
    if code not in _IDX_DTYPES:
        raise IDXFormatError(
            path, f"unknown IDX data type code 0x{code:02X}; valid codes: {_IDX_DTYPE_NAMES}"
        )
    if ndim == 0:
        raise IDXFormatError(path, "the number of dimensions is 0; it must be at least 1")
    if ndim > MAX_NDIM:
        raise IDXFormatError(
            path,
            f"the number of dimensions is {ndim}; NumPy arrays have at most {MAX_NDIM}",
        )
    header = 4 + 4 * ndim
    sizes = _read_exactly(stream, 4 * ndim, path)
    if len(sizes) < 4 * ndim:
        raise IDXFormatError(
            path,
            f"truncated header: {ndim} dimension(s) need a {header}-byte header, "
            f"the data hold {4 + len(sizes)} byte(s)",
        )
    dims = struct.unpack(f">{ndim}I", sizes)
    return dims, _IDX_DTYPES[code], header


def _parse(stream: BinaryIO, path: str, file_size: int | None) -> np.ndarray:
    """Read and validate one IDX file from ``stream``.

    ``file_size`` is the stream's total length when it is known (an uncompressed
    file), which lets a wrong payload length be reported without reading the payload.
    """
    dims, dtype, header = _header(stream, path)
    count = math.prod(dims)
    expected = count * dtype.itemsize
    shape_txt = "x".join(map(str, dims))
    native = dtype.newbyteorder("=")
    dtype_name = native.name

    def truncated(got: int) -> IDXFormatError:
        return IDXFormatError(
            path,
            f"truncated data: shape {shape_txt} of {dtype_name} needs "
            f"{expected} byte(s) after the header, found {got}",
        )

    def trailing(extra: int, exact: bool) -> IDXFormatError:
        amount = str(extra) if exact or extra <= _TRAILING_LIMIT else f"more than {_TRAILING_LIMIT}"
        return IDXFormatError(
            path,
            f"{amount} unexpected trailing byte(s) after the data of shape "
            f"{shape_txt} ({dtype_name}, {expected} byte(s))",
        )

    if file_size is not None:
        got = file_size - header
        if got < expected:
            raise truncated(got)
        if got > expected:
            raise trailing(got - expected, exact=True)
    data = _read_exactly(stream, expected, path)
    if len(data) < expected:
        raise truncated(len(data))
    extra = _count_trailing(stream, path)
    if extra:
        raise trailing(extra, exact=False)
    arr = np.frombuffer(data, dtype=dtype, count=count)  # writable: data is a bytearray
    if not dtype.isnative:
        arr.byteswap(inplace=True)
        arr = arr.view(native)
    return arr.reshape(dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a NumPy array.

    The IDX format (used by MNIST and Fashion-MNIST) is a 4-byte magic number -- two
    zero bytes, a data type code and the number of dimensions -- followed by one
    big-endian 32-bit size per dimension and the big-endian data in C order.
    Compression is recognised by the gzip magic bytes, whatever the file is called.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read; it must be a regular file (or a link to one).

    Returns
    -------
    numpy.ndarray
        A writable, native-endian array of the shape and dtype the header declares
        (uint8, int8, int16, int32, float32 or float64).

    Raises
    ------
    IDXFormatError
        A ``ValueError`` naming the file and what is wrong with it: a gzip stream that
        is corrupt or truncated, a magic number that does not start with two zero
        bytes, an unknown data type code, zero dimensions or more than
        :data:`MAX_NDIM` (64 with NumPy 2), a truncated header, or data whose length
        differs from the product of the dimensions (truncated data or trailing bytes).
        Also raised, before anything is read, for a path that is not a regular file:
        a FIFO, a device such as ``/dev/zero``, a socket.
    OSError
        The file cannot be opened or read (``IsADirectoryError`` for a folder).

    Notes
    -----
    The header is read and checked first; then exactly the number of bytes it declares
    is read (in pieces, so a header promising more than the file holds costs only what
    the file holds), and at most 64 KiB more to detect and count trailing data. Memory
    use is therefore bounded by the declared size -- about one copy of the returned
    array -- whatever the compression ratio of a gzip stream. An uncompressed file
    whose size disagrees with its header is rejected without reading its data.

    Examples
    --------
    >>> import gzip, os, tempfile
    >>> import numpy as np
    >>> from mlpx.datasets import IDXFormatError, read_idx
    >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny-idx2-ubyte.gz")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(gzip.compress(header + bytes(range(6))))
    >>> read_idx(path)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    >>> with open(path, "wb") as f:
    ...     _ = f.write(header + bytes(range(5)))
    >>> try:
    ...     read_idx(path)
    ... except IDXFormatError as exc:
    ...     print(type(exc).__name__, exc.reason)
    IDXFormatError truncated data: shape 2x3 of uint8 needs 6 byte(s) after the header, found 5
    """
    path = os.fsdecode(path)
    with _open_regular(path) as f:
        if _read(f, 2, path) == _GZIP_MAGIC:
            f.seek(0)
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                return _parse(gz, path, None)  # type: ignore[arg-type]
        f.seek(0)
        return _parse(f, path, os.fstat(f.fileno()).st_size)


def open_idx(path: str | os.PathLike[str]) -> np.memmap:
    """Map an uncompressed IDX file into memory, read-only, without reading its data.

    The header is checked as :func:`read_idx` checks it, and the file's size must be
    exactly the header plus the data it declares. Rows are then read from the file only
    when indexed: what :class:`mlpx.distributed.RowSource` needs so that each rank of a
    data-parallel run reads only its own rows. A gzip-compressed file cannot be mapped:
    decompress it first (:func:`decompress_idx`).

    Returns
    -------
    numpy.memmap
        Read-only, in the file's (big-endian for multi-byte types) byte order.

    Raises
    ------
    IDXFormatError
        As :func:`read_idx`, and for a gzip-compressed file.

    Examples
    --------
    >>> import os, tempfile
    >>> from mlpx.datasets import open_idx
    >>> header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny-idx2-ubyte")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(header + bytes(range(6)))
    >>> rows = open_idx(path)
    >>> rows.shape, rows[1].tolist()
    ((2, 3), [3, 4, 5])
    """
    path = os.fsdecode(path)
    with _open_regular(path) as f:
        if _read(f, 2, path) == _GZIP_MAGIC:
            raise IDXFormatError(path, "gzip-compressed; decompress it (decompress_idx, or "
                                 "gunzip) to map it into memory")
        f.seek(0)
        dims, dtype, header = _header(f, path)
        size = os.fstat(f.fileno()).st_size
    expected = math.prod(dims) * dtype.itemsize
    if size - header != expected:
        raise IDXFormatError(path, f"the data hold {size - header} byte(s) after the header; "
                             f"shape {'x'.join(map(str, dims))} of "
                             f"{dtype.newbyteorder('=').name} needs {expected}")
    return np.memmap(path, dtype=dtype, mode="r", offset=header, shape=dims)


def decompress_idx(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> str:
    """Write the uncompressed IDX file of ``src`` (gzip or raw) to ``dst``, atomically.

    The data are copied a piece at a time (memory stays bounded whatever the file's
    size); the header and the length are checked as :func:`read_idx` checks them, and
    ``dst`` appears only once it is whole (a temporary file in its folder, then a
    rename), so processes that decompress the same file at once cannot see half of it.

    Returns
    -------
    str
        ``dst``.

    Raises
    ------
    IDXFormatError
        As :func:`read_idx`.
    """
    src, dst = os.fsdecode(src), os.fsdecode(dst)
    folder = os.path.dirname(os.path.abspath(dst))
    with _open_regular(src) as f:
        gz = _read(f, 2, src) == _GZIP_MAGIC
        f.seek(0)
        stream: BinaryIO = gzip.GzipFile(fileobj=f, mode="rb") if gz else f  # type: ignore
        dims, dtype, header = _header(stream, src)
        expected = math.prod(dims) * dtype.itemsize
        fd, tmp = tempfile.mkstemp(prefix=".idx-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(bytes([0, 0, _CODE_OF[dtype], len(dims)]))
                out.write(struct.pack(f">{len(dims)}I", *dims))
                left = expected
                while left:
                    chunk = _read(stream, min(_CHUNK, left), src)
                    if not chunk:
                        raise IDXFormatError(src, f"truncated data: shape "
                                             f"{'x'.join(map(str, dims))} needs {expected} "
                                             f"byte(s) after the header, found "
                                             f"{expected - left}")
                    out.write(chunk)
                    left -= len(chunk)
                extra = _count_trailing(stream, src)
                if extra:
                    raise IDXFormatError(src, f"{extra} unexpected trailing byte(s) after "
                                         "the data")
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return dst
