"""Downloading with mirrors: :func:`fetch` and its error, :class:`DownloadError`.

:func:`fetch` streams a file from the first of several mirrors that serves it intact,
checking its size and SHA-256 on the fly, into a temporary file that is renamed into
place only once verified. It takes its mirrors and checksum as arguments, so it works
(and is tested) on any file; the loaders call it with entries of
:data:`mlpx.data.catalog.DATASETS`.

Public API at :mod:`mlpx.datasets`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from .._files import file_kind
from .cache import check_folder

__all__ = ["DownloadError", "fetch"]


class DownloadError(OSError):
    """No mirror delivered a file that matches its pinned checksum.

    Attributes
    ----------
    target : str
        The file name that was requested.
    failures : list of (str, str)
        Every URL tried, in order, with the reason it failed.
    """

    # Shown (tracebacks, repr, pickle) under its public import path.
    __module__ = "mlpx.datasets"

    def __init__(self, target: str, failures: Iterable[tuple[str, str]], note: str = "") -> None:
        self.target = target
        self.failures = list(failures)
        lines = [f"could not download {target!r}: every mirror failed"]
        if note:
            lines[0] += f" ({note})"
        lines += [f"  {url}: {why}" for url, why in self.failures]
        # One argument only: OSError(a, b) would read them as (errno, strerror).
        super().__init__("\n".join(lines))


class _MirrorFailed(Exception):
    """Internal: one URL did not deliver a verified file; the reason is the message."""


_CHUNK = 1 << 16
_USER_AGENT = "mlpx-datasets (Python urllib)"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sha256(sha256: object) -> str:
    if not (
        isinstance(sha256, str)
        and len(sha256) == 64
        and all(c in "0123456789abcdefABCDEF" for c in sha256)
    ):
        raise ValueError(
            "The 'sha256' parameter of fetch must be a 64-character hexadecimal string. "
            f"Got {sha256!r} instead."
        )
    return sha256.lower()


def _url(base: str, filename: str) -> str:
    if not base.endswith("/"):
        base += "/"
    return base + urllib.parse.quote(filename)


# What a failing mirror can raise while we talk to it (URLError and HTTPError are
# OSErrors, and so are timeouts and refused or reset connections).
_NETWORK_ERRORS = (OSError, http.client.HTTPException, ValueError)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP error {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"connection failed ({exc.reason})"
    if isinstance(exc, TimeoutError):
        return f"timed out (no answer within {timeout} s)"
    if isinstance(exc, http.client.IncompleteRead):
        more = f", {exc.expected} more expected" if exc.expected is not None else ""
        return f"truncated response ({len(exc.partial)} byte(s) read{more})"
    return f"{type(exc).__name__}: {exc}"


def _download_one(
    url: str, tmp: BinaryIO, sha256: str, size: int | None, timeout: float, progress: bool,
    desc: str,
) -> None:
    """Stream ``url`` into the open temp file ``tmp``; raise _MirrorFailed on failure."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except _NETWORK_ERRORS as exc:
        raise _MirrorFailed(_describe(exc, timeout)) from None
    with response:
        announced = response.headers.get("Content-Length")
        length: int | None
        try:
            length = int(announced) if announced is not None else None
        except ValueError:
            length = None
        if size is not None and length is not None and length != size:
            raise _MirrorFailed(
                f"wrong size: the server announces {length} byte(s), expected {size}"
            )
        total = length if length is not None else size
        digest = hashlib.sha256()
        received = 0
        with tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024,
            desc=desc, disable=not progress, leave=False,
        ) as bar:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except _NETWORK_ERRORS as exc:
                    raise _MirrorFailed(_describe(exc, timeout)) from None
                if not chunk:
                    break
                received += len(chunk)
                if size is not None and received > size:
                    raise _MirrorFailed(f"wrong size: more than the expected {size} byte(s)")
                digest.update(chunk)
                tmp.write(chunk)
                bar.update(len(chunk))
    if length is not None and received != length:
        raise _MirrorFailed(
            f"truncated response: {received} of {length} announced byte(s) received"
        )
    actual = digest.hexdigest()
    if actual != sha256:
        raise _MirrorFailed(
            f"checksum mismatch: sha256 {actual} ({received} byte(s)), expected {sha256}"
        )


def fetch(
    filename: str,
    mirrors: Sequence[str],
    sha256: str,
    dest_dir: str | os.PathLike[str],
    *,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download ``filename`` from the first mirror that serves it intact.

    A file already at ``dest_dir/filename`` whose SHA-256 matches is returned at once,
    without any request. Otherwise the mirrors are tried in order: the body is streamed
    into a temporary file in ``dest_dir`` while it is hashed, and renamed to
    ``filename`` (``os.replace``, atomic) only once the checksum matches, so no partial
    or unverified file ever appears under the final name. An HTTP error, a connection
    error, a timeout, a truncated body, a wrong size or a wrong checksum moves on to the
    next mirror.

    Parameters
    ----------
    filename : str
        The file's name on the mirrors and in ``dest_dir``.
    mirrors : sequence of str
        Base URLs (``.../``); the file's URL is the base followed by ``filename``.
    sha256 : str
        Expected hex SHA-256 of the file.
    dest_dir : str or os.PathLike
        Folder to store the file in; created when missing.
    size : int, optional
        Expected size in bytes: a server announcing another size, or sending more, is
        rejected without reading the rest. Also the progress bar's total.
    progress : bool, default=True
        Show a tqdm progress bar (on stderr) while downloading.
    timeout : float, default=30.0
        Seconds to wait for a connection or for each read before giving up on a mirror.

    Returns
    -------
    pathlib.Path
        ``dest_dir/filename``, verified.

    Raises
    ------
    DownloadError
        Every mirror failed; the message lists each URL tried and why it failed.
    ValueError
        ``filename`` is not a plain file name, ``mirrors`` is empty, ``sha256`` is not
        a hex SHA-256, ``dest_dir`` is (or lies under) something that is not a folder,
        such as a regular file, or ``dest_dir/filename`` exists but is not a regular
        file (a folder, a FIFO, a device): it is never replaced.

    Examples
    --------
    >>> from mlpx.datasets import DATASETS, fetch
    >>> spec = DATASETS["mnist"]
    >>> path = fetch(spec.test_labels.filename, spec.mirrors, spec.test_labels.sha256,
    ...              "mnist-cache", size=spec.test_labels.size)  # doctest: +SKIP
    """
    sha256 = _check_sha256(sha256)
    if not isinstance(filename, str) or filename in ("", ".", "..") or any(
        sep in filename for sep in ("/", "\\", os.sep)
    ):
        raise ValueError(
            "The 'filename' parameter of fetch must be a plain file name (no folder). "
            f"Got {filename!r} instead."
        )
    if isinstance(mirrors, str) or len(mirrors) == 0:
        raise ValueError(
            "The 'mirrors' parameter of fetch must be a non-empty sequence of base URLs. "
            f"Got {mirrors!r} instead."
        )
    dest_dir = check_folder(dest_dir, "The 'dest_dir' parameter of fetch")
    final = dest_dir / filename
    note = ""
    if final.exists() and not final.is_file():
        raise ValueError(
            "The 'filename' parameter of fetch must name a regular file or nothing in "
            f"dest_dir. Got {filename!r} instead, and {final} is "
            f"{file_kind(final.stat().st_mode)}."
        )
    if final.is_file():
        if _file_sha256(final) == sha256:
            return final
        note = f"the existing {final} does not match the checksum and was left as it is"
    dest_dir.mkdir(parents=True, exist_ok=True)

    failures: list[tuple[str, str]] = []
    for base in mirrors:
        url = _url(base, filename)
        tmp_name: str | None
        fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as tmp:
                _download_one(url, tmp, sha256, size, timeout, progress, filename)
            os.replace(tmp_name, final)
            tmp_name = None
            return final
        except _MirrorFailed as exc:
            failures.append((url, str(exc)))
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except FileNotFoundError:
                    pass
    raise DownloadError(filename, failures, note)


