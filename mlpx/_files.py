"""Opening files from strangers: only regular files, never a FIFO or a device.

Both readers of untrusted files (:mod:`mlpx.io` for model files and checkpoints,
:mod:`mlpx.data.idx` for IDX data) open them through :func:`open_regular`, and name
what they refused with :func:`file_kind`.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

__all__ = ["file_kind", "open_regular", "NotARegularFileError"]


class NotARegularFileError(OSError):
    """``path`` exists but is not a regular file; ``kind`` says what it is."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path} is {kind}, not a regular file")
        self.path = path
        self.kind = kind


def file_kind(mode: int) -> str:
    """Name the type of a file-system entry from its ``st_mode``, for messages.

    Returns
    -------
    str
        ``"a regular file"``, ``"a folder"``, ``"a FIFO (named pipe)"``, ``"a character
        device"``, ``"a block device"``, ``"a socket"`` or ``"a special file"``.

    Examples
    --------
    >>> import stat
    >>> file_kind(stat.S_IFIFO | 0o644)
    'a FIFO (named pipe)'
    """
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _check(path: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise NotARegularFileError(path, file_kind(mode))


def open_regular(path: str) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file.

    The type is checked before opening (so that no device or FIFO is opened at all) and
    again with ``fstat`` on the open descriptor (so that a swap in between is caught
    too); the descriptor is opened without blocking, so even a FIFO swapped in cannot
    block, and set back to blocking once it is known to be a regular file.

    Raises
    ------
    NotARegularFileError
        For a folder, FIFO, device, socket or other special file.
    OSError
        When the file cannot be opened (FileNotFoundError, PermissionError, ...).
    """
    _check(path, os.stat(path).st_mode)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        _check(path, os.fstat(fd).st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
