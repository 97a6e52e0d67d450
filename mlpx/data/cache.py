"""Where dataset files are cached, and which paths may serve as folders or data files.

* :func:`default_data_dir` is the cache-folder policy: ``$MLPX_DATA/<dataset>``, else
  the platform's user cache folder followed by ``mlpx/<dataset>``.
* :func:`user_cache_dir` is the platform's user cache folder.
* :func:`check_folder` rejects, with a ``ValueError``, a folder argument that names (or
  lies under) something that is not a folder, such as a regular file or a FIFO.

Public within :mod:`mlpx.data`; users import :func:`default_data_dir` from
:mod:`mlpx.datasets`.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from .._files import file_kind

__all__ = ["default_data_dir", "user_cache_dir", "check_folder"]


def check_folder(path: str | os.PathLike[str], what: str) -> Path:
    """Check that ``path`` is a folder, or can be created as one, and return it.

    The path is accepted when it is an existing folder (or a link to one), or when it
    does not exist and its nearest existing ancestor is a folder (so that
    ``mkdir(parents=True)`` can create it). Nothing is created here.

    Parameters
    ----------
    path : str or os.PathLike
        The folder (``~`` is expanded).
    what : str
        How the message names the argument, e.g. ``"The 'data_dir' parameter of
        load_mnist"``.

    Returns
    -------
    pathlib.Path
        ``path`` with ``~`` expanded.

    Raises
    ------
    ValueError
        ``path``, or the nearest of its ancestors that exists, is not a folder (a
        regular file, a FIFO, a device...). The message names the offending entry and
        its type.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> from mlpx.data.cache import check_folder
    >>> f = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> open(f, "w").close()
    >>> check_folder(os.path.dirname(f), "data_dir") == Path(os.path.dirname(f))
    True
    >>> try:
    ...     check_folder(f, "data_dir")
    ... except ValueError as exc:
    ...     print(str(exc).replace(f, "FILE"))
    data_dir must be a folder. Got 'FILE' instead, which is a regular file.
    """
    folder = Path(path).expanduser()
    current = folder
    while True:
        try:
            mode = os.stat(current).st_mode
        except FileNotFoundError:
            if current.parent == current:  # pragma: no cover - the root always exists
                return folder
            current = current.parent
            continue
        except NotADirectoryError:
            # A component above ``current`` is not a folder; walk up to report it.
            current = current.parent
            continue
        if stat.S_ISDIR(mode):
            return folder
        if current == folder:
            raise ValueError(
                f"{what} must be a folder. Got {str(folder)!r} instead, which is "
                f"{file_kind(mode)}."
            )
        raise ValueError(
            f"{what} must be a folder. Got {str(folder)!r} instead, which lies under "
            f"{str(current)!r}, {file_kind(mode)}."
        )


def user_cache_dir() -> Path:
    """The platform's user cache folder (not specific to mlpx).

    ``%LOCALAPPDATA%`` (else ``~/AppData/Local``) on Windows, ``~/Library/Caches`` on
    macOS, elsewhere ``$XDG_CACHE_HOME`` when it is an absolute path (the XDG
    specification says to ignore relative ones), else ``~/.cache``.

    Returns
    -------
    pathlib.Path
    """
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return Path(local) if local else Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    return Path.home() / ".cache"


def default_data_dir(dataset: str) -> Path:
    """The folder a dataset is cached in when no ``data_dir`` is given.

    ``$MLPX_DATA/<dataset>`` when the environment variable ``MLPX_DATA`` is set, else
    ``<user cache>/mlpx/<dataset>``, where the user cache is ``$XDG_CACHE_HOME`` (or
    ``~/.cache``) on Linux, ``~/Library/Caches`` on macOS and ``%LOCALAPPDATA%`` on
    Windows.

    Parameters
    ----------
    dataset : str
        The dataset's name, e.g. ``"mnist"``.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> from mlpx.datasets import default_data_dir
    >>> default_data_dir("fashion-mnist").name
    'fashion-mnist'
    """
    env = os.environ.get("MLPX_DATA")
    base = Path(env).expanduser() if env else user_cache_dir() / "mlpx"
    return base / dataset
