"""Safe model files and training checkpoints (no pickle, atomic writes).

A model file is a plain ``.npz`` archive (an uncompressed zip of ``.npy`` arrays) that
any NumPy can open with ``numpy.load(path, allow_pickle=False)``. It holds:

``mlpx.npy``
    A uint8 array holding UTF-8 JSON: the format name and version, the mlpx version that
    wrote it, the model's config (:meth:`mlpx.Sequential.get_config`) and a table of the
    parameters (key, layer, name, shape, dtype).
``param.<i>.npy``
    Every parameter, in the order of :attr:`mlpx.Sequential.params`, as host (NumPy)
    arrays: a model saved from CuPy loads on NumPy and the other way round. The
    statistics of :class:`~mlpx.layers.BatchNorm` (running mean and variance) and
    :class:`~mlpx.layers.Standardize` (mean, std, count) are parameters that are never
    trained, stored and checked like the others.

A checkpoint is the same format with ``"kind": "checkpoint"`` and a ``"training"``
section: the optimizer's config and step, its slot arrays (``slot.<name>.<i>.npy``,
aligned with the parameters by position), the epoch, the host random generators' states,
the history, and (when written by :meth:`mlpx.Sequential.fit`) what a resumed ``fit``
needs to continue bit for bit on NumPy.

Reading never executes anything, and never allocates more than the file really holds.
Only a regular file is opened. The zip's central directory is parsed here (stored
members only, at most :data:`MAX_MEMBERS`), every member's bytes are located and checked
not to overlap another's; the metadata is read first (within :data:`MAX_META_BYTES`,
:data:`MAX_META_ITEMS` and :data:`MAX_META_DEPTH`) and must name every other member
exactly once; every ``.npy`` header is checked against the parameter table, and the
parameter shapes the config implies (:func:`config_param_shapes`, computed without
building anything) against the table, before any array data is read or allocated.
Object (pickled) arrays are refused, the JSON is parsed with :mod:`json` and names in
the config are looked up in mlpx's registries. Every problem raises
:class:`ModelFileError` (a ``ValueError``) naming the file and what is wrong with it; a
missing file raises ``FileNotFoundError``.

Writing goes to a temporary file in the destination's directory, is flushed and fsynced,
then renamed over the destination with :func:`os.replace`: a process killed in the middle
of a save leaves the previous file intact (and, at worst, a stray ``.<name>.*.tmp`` file).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import tempfile
import zipfile
import zlib
from io import BytesIO
from typing import Any

import numpy as np

from . import _backend
from ._files import NotARegularFileError, open_regular
from ._version import __version__
from .layers import LAYERS, get_layer
from .optimizers import get_optimizer
from .training import History

__all__ = [
    "FORMAT_VERSION",
    "MAX_MEMBERS",
    "MAX_META_BYTES",
    "MAX_META_ITEMS",
    "MAX_META_DEPTH",
    "ModelFileError",
    "save",
    "load",
    "write_atomic",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "check_checkpoint_matches",
    "config_param_shapes",
    "register_model_class",
    "check_writable_path",
    "training_state_parts",
    "best_params",
    "rng_state",
    "rng_from_state",
    "to_json",
]

#: Version of the file layout written by this mlpx; files with a higher one are refused.
FORMAT_VERSION = 1
_FORMAT_NAME = "mlpx"
_META_KEY = "mlpx"
_KINDS = ("model", "checkpoint")
_PARAM_DTYPES = ("float32", "float64")
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
# Integers in the JSON are exact below this (larger ones are written as {"$int": "..."}).
_SAFE_INT = 2 ** 53
# The bit generators a saved random state may name (looked up in this table, never by an
# arbitrary attribute name from the file).
_BIT_GENERATORS = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "MT19937": np.random.MT19937,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
}


class ModelFileError(ValueError):
    """A model or checkpoint file is not one mlpx can load safely (the message says why)."""


# ====================================================================== public API
def save(model, path) -> str:
    """Save ``model``'s config and parameters to ``path`` (atomically, no pickle).

    Parameters
    ----------
    model : Sequential
        A built model (any backend).
    path : str or os.PathLike
        Destination, used as given (``.npz`` is the customary suffix). Its directory
        must exist. An existing file is replaced only once the new one is complete.

    Returns
    -------
    str
        The absolute path written.

    Examples
    --------
    >>> import os, tempfile
    >>> from mlpx import MLP, io
    >>> model = MLP([4, 8, 3], seed=0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = io.save(model, os.path.join(d, "model.npz"))
    ...     clone = io.load(path)
    >>> clone.get_config() == model.get_config()
    True
    """
    meta, arrays = _model_payload(model, kind="model")
    return _write_archive(path, meta, arrays)


def load(path, *, backend="numpy"):
    """Load a model saved by :func:`save` (or the model inside a checkpoint).

    Parameters
    ----------
    path : str or os.PathLike
    backend : {"numpy", "cupy", "array_api_strict"} or namespace, default="numpy"
        Where the loaded model lives; it need not be the backend it was saved from.

    Returns
    -------
    Sequential or MLP
        The model with its saved parameters (no optimizer state: see
        :func:`load_checkpoint` to continue training).

    Raises
    ------
    ModelFileError
        When the file is not an mlpx model file (a pickle, a bare ``.npy``, anything
        else), is truncated or damaged, was written by a newer format version, names an
        unknown layer/activation/loss, holds parameters whose shapes or dtypes
        disagree with its config, or is not a regular file (a directory, FIFO or device).
        Nothing in the file is executed, and nothing is allocated beyond what the file's
        members really hold (see ``docs/safety.md``, "Limits").
    FileNotFoundError
        When ``path`` does not exist.
    """
    path = _fspath(path)
    meta, arrays = _read_archive(path)
    model = _build_model(path, meta, arrays, backend)
    return model


def save_checkpoint(model, path, *, fit_state=None) -> str:
    """Save everything needed to continue training ``model`` (atomically, no pickle).

    Stores the parameters, the optimizer's config, step (hence the learning-rate
    schedule's position) and slot arrays, ``model.epoch_``, the states of the host random
    generators, and ``model.history_``.

    Parameters
    ----------
    model : Sequential
        A built model whose optimizer is set (after :meth:`~mlpx.Sequential.compile` or
        ``fit``).
    path : str or os.PathLike
    fit_state : dict, optional
        Written by :meth:`mlpx.Sequential.fit` (``{"json": dict, "arrays": list}``):
        what a resumed ``fit`` needs beyond the model (data fingerprint, early-stopping
        state and best weights).

    Returns
    -------
    str
        The absolute path written.
    """
    ts = model.state_
    if ts is None:
        raise ValueError("save_checkpoint needs a model with an optimizer: call "
                         "compile(...) or fit(...) first, or use mlpx.io.save for the "
                         "weights alone.")
    meta, arrays = _model_payload(model, kind="checkpoint")
    state = ts.opt_state
    slot_keys = {}
    for name in ts.optimizer.slot_names():
        keys = []
        for i, a in enumerate(state["slots"][name]):
            key = f"slot.{name}.{i}"
            arrays[key] = _backend.to_numpy(a)
            keys.append(key)
        slot_keys[name] = keys
    training = {
        "epoch": int(ts.epoch),
        "optimizer": {"config": ts.optimizer.get_config(), "step": int(state["step"]),
                      "slots": slot_keys},
        "rng": {"train": rng_state(ts.rng), "init": rng_state(ts.init_rng)},
        "history": _history_to_json(ts.history),
        "fit": None,
        "best_params": None,
    }
    if fit_state is not None:
        training["fit"] = fit_state.get("json")
        best = fit_state.get("arrays")
        if best is not None:
            keys = []
            for i, a in enumerate(best):
                key = f"best.{i}"
                arrays[key] = _backend.to_numpy(a)
                keys.append(key)
            training["best_params"] = keys
    meta["training"] = to_json(training)
    return _write_archive(path, meta, arrays)


def load_checkpoint(path, *, backend="numpy"):
    """Load a checkpoint into a new model, ready to go on training.

    The returned model has its parameters, optimizer (config, step and slots),
    ``epoch_``, random generators and ``history_`` restored. To continue an interrupted
    :meth:`~mlpx.Sequential.fit` exactly, call ``fit(..., resume=path)`` with the same
    arguments instead.

    Raises
    ------
    ModelFileError
        For everything :func:`load` refuses, and for a model file (no training state)
        or a damaged training section.
    """
    path = _fspath(path)
    ckpt = read_checkpoint(path)
    model = _build_model(path, ckpt["meta"], ckpt["arrays"], backend)
    model.restore_checkpoint(ckpt)
    return model


# ====================================================================== used by fit(resume=...)
def read_checkpoint(path) -> dict:
    """Read and check a checkpoint completely, without touching any model.

    Everything :func:`load` checks is checked here too (no member is read or allocated
    before the whole parameter table, the optimizer slots, the best weights and the
    parameter shapes the config implies have been checked against the members' real,
    non-overlapping sizes), and so is the training section: epoch, optimizer (rebuilt to
    check its config and slot names), random states, history and the state a resumed
    ``fit`` continues from.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``{"meta": dict, "arrays": dict, "training": dict, "path": str}``: the metadata
        (config in JSON form), the host arrays by key (parameters, ``slot.<name>.<i>``,
        ``best.<i>``), the decoded training section and the path as a str.

    Raises
    ------
    ModelFileError
        For every problem with the file, including a model file (no training state).
    FileNotFoundError
        When ``path`` does not exist.
    """
    path = _fspath(path)
    meta, arrays = _read_archive(path, checkpoint=True)
    if meta["kind"] != "checkpoint":
        raise ModelFileError(f"{path} is a model file, not a checkpoint: it holds no "
                             "optimizer or random state to resume from. Load it with "
                             "mlpx.load(path) instead.")
    try:
        training = _from_json(meta.get("training"))
        _check_training(training)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError,
            RecursionError) as exc:
        raise ModelFileError(f"{path}: the checkpoint's training section is damaged "
                             f"({type(exc).__name__}: {exc}).") from None
    return {"meta": meta, "arrays": arrays, "training": training, "path": path}


def _check_training(t):
    """Check a decoded training section (array names and shapes are checked already)."""
    if not isinstance(t, dict):
        raise ModelFileError("the checkpoint has no training section.")
    _check_int(t["epoch"], "epoch")
    opt = t["optimizer"]
    if not isinstance(opt, dict) or not isinstance(opt.get("config"), dict):
        raise ModelFileError("the optimizer entry is malformed.")
    _check_int(opt["step"], "optimizer step")
    try:
        rebuilt = get_optimizer(opt["config"])
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError,
            RecursionError) as exc:
        raise ModelFileError(f"the checkpoint's optimizer cannot be rebuilt: {exc}") \
            from None
    if set(opt["slots"]) != set(rebuilt.slot_names()):
        raise ModelFileError(f"the checkpoint holds optimizer slots {sorted(opt['slots'])} "
                             f"but {type(rebuilt).__name__} keeps "
                             f"{sorted(rebuilt.slot_names())}.")
    rng = t["rng"]
    if not isinstance(rng, dict):
        raise ModelFileError("the random state entry is malformed.")
    for which in ("train", "init"):
        rng_from_state(rng[which])  # validates
    if t.get("history") is not None:
        _history_from_json(t["history"])  # validates
    if t.get("fit") is not None:
        _check_fit_section(t["fit"])


def _check_fit_section(fit):
    """Check the state :meth:`mlpx.Sequential.fit` saved to continue from."""
    if not isinstance(fit, dict):
        raise ModelFileError("the fit entry is malformed.")
    rng_from_state(fit["start_rng"])
    _check_int(fit["start_epoch"], "fit start epoch")
    for key in ("epochs", "batch_size", "n_samples", "n_features", "n_val"):
        if fit.get(key) is not None:
            _check_int(fit[key], f"fit entry {key}")
    if not isinstance(fit.get("shuffle", False), bool):
        raise ModelFileError("the fit entry's shuffle is not a bool.")
    if fit.get("validation") not in (None, "data", "split"):
        raise ModelFileError("the fit entry's validation is malformed.")
    fingerprint = fit.get("fingerprint")
    if fingerprint is not None and (not isinstance(fingerprint, list) or not all(
            x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))
            for x in fingerprint)):
        raise ModelFileError("the fit entry's data fingerprint is malformed.")
    if fit.get("early_stopping") is not None and not isinstance(fit["early_stopping"], dict):
        raise ModelFileError("the fit entry's early_stopping is malformed.")
    stopper = fit.get("stopper")
    if stopper is not None:
        if not isinstance(stopper, dict) or isinstance(stopper.get("best"), bool) \
                or not isinstance(stopper.get("best"), (int, float)):
            raise ModelFileError("the fit entry's early-stopping state is malformed.")
        _check_int(stopper["wait"], "early-stopping wait")
        if stopper.get("best_epoch") is not None:
            _check_int(stopper["best_epoch"], "early-stopping best epoch")


def _json_normal(obj):
    return json.loads(json.dumps(obj, sort_keys=True))


def check_checkpoint_matches(model, ckpt: dict, *, n_features: int | None = None) -> None:
    """Refuse a checkpoint that belongs to another model, without changing ``model``.

    Call it after :func:`read_checkpoint` and before building, compiling or changing
    ``model`` in any way. A built model's config must equal the checkpoint's. An unbuilt
    model's config must equal it except for ``n_features`` (so that the model may then be
    built for the checkpoint's width, a size the checkpoint file really holds).

    Parameters
    ----------
    model : Sequential
        The model ``fit(resume=...)`` was called on; only read.
    ckpt : dict
        From :func:`read_checkpoint`.
    n_features : int, optional
        The width of the data about to be trained on: refused when the checkpoint's
        model was built for another width.

    Raises
    ------
    ValueError
        When the configs differ (the message names the keys) or the widths differ.
    """
    path = ckpt["path"]
    mine = _json_normal(to_json(model.get_config()))
    theirs = _json_normal(ckpt["meta"]["config"])
    width = theirs.get("n_features")
    if "layer_sizes" in theirs:
        width = theirs["layer_sizes"][0]
    elif "window" in theirs:  # LanguageModel
        width = theirs["window"]
    if mine.get("n_features", 0) is None:  # unbuilt: it takes the checkpoint's width
        mine.pop("n_features")
        theirs.pop("n_features", None)
    if mine != theirs:
        keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"The checkpoint {path} belongs to a different model (config "
                         f"keys that differ: {keys}); build the model with the config "
                         "it was saved from, or load it with mlpx.io.load_checkpoint.")
    if n_features is not None and n_features != width:
        raise ValueError(f"The checkpoint {path} holds a model for {width} features, but "
                         f"the data have {n_features}.")


def training_state_parts(ckpt, *, backend) -> dict:
    """The training state a checkpoint holds, rebuilt on ``backend``.

    Parameters
    ----------
    ckpt : dict
        From :func:`read_checkpoint` (already checked).
    backend : mlpx._backend.Backend
        Where the optimizer's slot arrays go.

    Returns
    -------
    dict
        ``optimizer`` (rebuilt from its config), ``opt_state`` (step and fresh writable
        slot arrays on the device), ``rng`` and ``init_rng`` (host generators), ``epoch``
        and ``history`` (or None): what :class:`mlpx.state.TrainState` needs besides the
        parameters.
    """
    t, arrays, path = ckpt["training"], ckpt["arrays"], ckpt["path"]
    try:
        opt = get_optimizer(t["optimizer"]["config"])
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the checkpoint's optimizer cannot be rebuilt: "
                             f"{exc}") from None
    saved = t["optimizer"]["slots"]
    if set(saved) != set(opt.slot_names()):
        raise ModelFileError(f"{path}: the checkpoint holds optimizer slots "
                             f"{sorted(saved)} but {type(opt).__name__} keeps "
                             f"{sorted(opt.slot_names())}.")
    # Fresh writable copies: the NumPy update writes them in place.
    move = lambda a: _backend.to_device(np.array(a, copy=True), backend=backend)  # noqa: E731
    state = {"step": int(t["optimizer"]["step"]),
             "slots": {name: [move(arrays[k]) for k in saved[name]]
                       for name in opt.slot_names()}}
    return {"optimizer": opt, "opt_state": state,
            "rng": rng_from_state(t["rng"]["train"]),
            "init_rng": rng_from_state(t["rng"]["init"]),
            "epoch": int(t["epoch"]),
            "history": None if t.get("history") is None else _history_from_json(t["history"])}


def best_params(ckpt) -> list | None:
    """The best weights stored in a checkpoint by early stopping (fresh host copies).

    ``ckpt`` comes from :func:`read_checkpoint`; None when it holds no best weights.
    """
    keys = ckpt["training"].get("best_params")
    if keys is None:
        return None
    return [np.array(ckpt["arrays"][k], copy=True) for k in keys]


# ====================================================================== payload
def _model_payload(model, *, kind):
    if not model.built:
        raise ValueError(f"This {type(model).__name__} is not built yet, so there is nothing "
                         "to save; call fit() first or pass n_features.")
    arrays = {}
    table = []
    i = 0
    for li, layer in enumerate(model.layers):
        names = tuple(getattr(layer, "param_names", ()))
        for j, p in enumerate(layer.params):
            host = _backend.to_numpy(p)
            key = f"param.{i}"
            arrays[key] = host
            table.append({"key": key, "layer": li,
                          "name": names[j] if j < len(names) else str(j),
                          "shape": [int(s) for s in host.shape], "dtype": host.dtype.name})
            i += 1
    config = model.get_config()
    meta = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "mlpx_version": __version__,
        "saved_from": {"backend": model.backend.name, "numpy": np.__version__},
        "config": to_json(config),
        "params": table,
    }
    return meta, arrays


# ====================================================================== writing
def _fspath(path) -> str:
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"The 'path' parameter must be a str or os.PathLike. Got {path!r} "
                        "instead.")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return path


def check_writable_path(path, what="path") -> str:
    """Return ``path`` as an absolute str, raising a ValueError if its directory is missing."""
    path = os.path.abspath(_fspath(path))
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ValueError(f"The {what!r} parameter names {path!r}, but the directory "
                         f"{directory!r} does not exist; create it first.")
    if os.path.isdir(path):
        raise ValueError(f"The {what!r} parameter names {path!r}, which is a directory; "
                         "give a file name such as 'model.npz'.")
    return path


def _write_archive(path, meta, arrays) -> str:
    path = check_writable_path(path)
    blob = json.dumps(meta, allow_nan=True, sort_keys=False).encode("utf-8")
    members = {_META_KEY: np.frombuffer(blob, dtype=np.uint8)}
    members.update(arrays)

    def write(f):
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED,
                             allowZip64=True) as zf:
            for key, arr in members.items():
                arr = np.ascontiguousarray(arr)
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)

    return write_atomic(path, write)


def write_atomic(path, write, *, what: str = "path") -> str:
    """Write a file atomically: all of it or, on any failure, the previous file untouched.

    ``write(f)`` writes the content to ``f``, a binary file opened on a temporary file
    in the folder of ``path``; the temporary file is flushed, synced, given the old
    file's permissions (or the umask's default) and renamed over ``path``. If ``write``
    raises (or the process is interrupted), the temporary file is removed and ``path``
    keeps its previous content.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its folder must exist (see :func:`check_writable_path`).
    write : callable
        ``write(f)`` with ``f`` a writable binary file object.
    what : str, default="path"
        The parameter's name, for the error raised when ``path`` is not writable.

    Returns
    -------
    str
        The absolute path written.
    """
    path = check_writable_path(path, what)
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _copy_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return path


def _copy_mode(path, tmp):
    """Give the new file the old file's permissions (or the umask's default)."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        mode = 0o666 & ~mask
    with contextlib.suppress(OSError, NotImplementedError):
        os.chmod(tmp, mode)


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows
        return
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # pragma: no cover - unusual file systems
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - unusual file systems
        pass
    finally:
        os.close(fd)


# ====================================================================== reading
# Limits on what a file may ask of the reader (see docs/safety.md, "Limits").
#: Most members an archive may hold (one metadata member, then at most four arrays per
#: parameter: the parameter, two optimizer slots and the best weights).
MAX_MEMBERS = 65_000
#: Largest metadata member (UTF-8 JSON) in bytes.
MAX_META_BYTES = 64 * 2 ** 20
#: Most JSON values the metadata may hold (counted as ``,``, ``:``, ``[`` and ``{`` bytes).
MAX_META_ITEMS = 2_000_000
#: Deepest nesting of lists and objects in the metadata.
MAX_META_DEPTH = 64
_NPY_HEADER_MAX = 65_536
_EOCD = struct.Struct("<4s4H2LH")            # end of central directory (22 bytes)
_EOCD64_LOCATOR = struct.Struct("<4sLQL")     # zip64 end of central directory locator (20)
_EOCD64 = struct.Struct("<4sQ2H2L4Q")         # zip64 end of central directory record (56)
_CENTRAL = struct.Struct("<4s6H3L5H2L")       # central directory entry (46 bytes)
_LOCAL = struct.Struct("<4s5H3L2H")           # local file header (30 bytes)
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_JSON_DTYPES = frozenset(["bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                          "uint32", "uint64", "float16", "float32", "float64"])


class _Member:
    """Where one ``.npy`` member's bytes lie in the file, and what its header declares."""

    __slots__ = ("name", "key", "header_offset", "size", "crc", "start", "shape", "dtype",
                 "fortran", "header_len", "header")

    def __init__(self, name, header_offset, size, crc):
        self.name = name
        self.key = name[:-4]
        self.header_offset = header_offset
        self.size = size
        self.crc = crc
        self.start = None
        self.shape = self.dtype = self.fortran = self.header_len = self.header = None


class _Refused(Exception):
    """Internal: a problem found while reading; re-raised as ModelFileError with the path."""


def _open_regular(path):
    """Open ``path`` for reading if it is a regular file; return ``(file, size)``.

    Through :func:`mlpx._files.open_regular`: devices (``/dev/zero``), FIFOs, sockets and
    directories are refused before one byte is read, and nothing can block.
    """
    try:
        f = open_regular(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"No such model file: {path!r}") from None
    except NotARegularFileError as exc:
        raise ModelFileError(f"{path} is {exc.kind}, not a regular file; mlpx reads model "
                             "files only from regular files.") from None
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be opened as a model file: "
                             f"{exc.strerror or exc}.") from None
    return f, os.fstat(f.fileno()).st_size


def _read_at(f, offset, n) -> bytes:
    f.seek(offset)
    data = f.read(n)
    if len(data) != n:
        raise _Refused("it ends early: the file is truncated")
    return data


def _central_directory(f, size):
    """Parse the zip's central directory; return ``(members, cd_offset)``.

    The member count is read from the end record and checked against
    :data:`MAX_MEMBERS` before a single entry is parsed; entries are checked as they
    are parsed (stored, not encrypted, plain ``.npy`` names, no duplicates).
    """
    tail_len = min(size, _EOCD.size + 65_535)
    tail = _read_at(f, size - tail_len, tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise _Refused("it has no zip end record: the file is truncated or damaged")
    eocd_pos = size - tail_len + at
    _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    cd_end = eocd_pos
    if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        if eocd_pos < _EOCD64_LOCATOR.size:
            raise _Refused("its zip64 end record is missing")
        sig, _, rec_pos, _ = _EOCD64_LOCATOR.unpack(
            _read_at(f, eocd_pos - _EOCD64_LOCATOR.size, _EOCD64_LOCATOR.size))
        if sig != b"PK\x06\x07" or rec_pos + _EOCD64.size > eocd_pos:
            raise _Refused("its zip64 end record is damaged")
        rec = _EOCD64.unpack(_read_at(f, rec_pos, _EOCD64.size))
        if rec[0] != b"PK\x06\x06":
            raise _Refused("its zip64 end record is damaged")
        disk, cd_disk, count, cd_size, cd_offset = rec[4], rec[5], rec[7], rec[8], rec[9]
        cd_end = rec_pos
    if disk != 0 or cd_disk != 0:
        raise _Refused("it is a multi-volume zip archive")
    if count > MAX_MEMBERS:
        raise _Refused(f"it holds {count} members; an mlpx file holds at most "
                       f"{MAX_MEMBERS} (mlpx.io.MAX_MEMBERS)")
    if cd_offset + cd_size != cd_end:
        raise _Refused("its central directory is not where the end record says: the file "
                       "is truncated or damaged")
    data = _read_at(f, cd_offset, cd_size)
    members, names, pos = [], set(), 0
    for _ in range(count):
        if pos + _CENTRAL.size > len(data):
            raise _Refused("its central directory is truncated")
        (sig, _, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen, _, _, _,
         offset) = _CENTRAL.unpack_from(data, pos)
        if sig != b"PK\x01\x02":
            raise _Refused("its central directory is damaged")
        pos += _CENTRAL.size
        raw_name = data[pos:pos + nlen]
        extra = data[pos + nlen:pos + nlen + elen]
        pos += nlen + elen + clen
        if pos > len(data):
            raise _Refused("its central directory is truncated")
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            raise _Refused(f"unexpected member {raw_name!r} (an mlpx file holds only .npy "
                           "arrays)") from None
        if not name.endswith(".npy") or name.startswith(".") or len(name) > 200 \
                or not set(name) <= _KEY_CHARS:
            raise _Refused(f"unexpected member {name!r} (an mlpx file holds only .npy "
                           "arrays)")
        if name in names:
            raise _Refused(f"the archive holds duplicate member names ({name!r})")
        names.add(name)
        if method != 0:
            raise _Refused(f"member {name!r} is compressed; mlpx writes uncompressed "
                           "archives")
        if flags & 0x1:
            raise _Refused(f"member {name!r} is encrypted")
        usize, csize, offset = _zip64_fields(extra, usize, csize, offset, name)
        if csize != usize:
            raise _Refused(f"member {name!r} declares {usize} bytes but stores {csize}")
        members.append(_Member(name, offset, csize, crc))
    if pos != len(data):
        raise _Refused("its central directory holds more entries than its end record "
                       "counts")
    return members, cd_offset


def _zip64_fields(extra, usize, csize, offset, name):
    """Replace the 0xFFFFFFFF fields of a central directory entry by their zip64 values."""
    wanted = [v == 0xFFFFFFFF for v in (usize, csize, offset)]
    if not any(wanted):
        return usize, csize, offset
    values = [usize, csize, offset]
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, pos)
        body = extra[pos + 4:pos + 4 + length]
        if tag == 0x0001:
            i = 0
            for j, need in enumerate(wanted):
                if need:
                    if i + 8 > len(body):
                        raise _Refused(f"member {name!r} has a damaged zip64 field")
                    values[j] = struct.unpack_from("<Q", body, i)[0]
                    i += 8
            return tuple(values)
        pos += 4 + length
    raise _Refused(f"member {name!r} lacks its zip64 sizes")


def _locate(f, members, cd_offset, size):
    """Find each member's data and check that no two members' bytes overlap.

    After this, the declared sizes of all members together are at most the file's size:
    whatever the reader allocates for them is backed by bytes the file really holds.
    """
    ordered = sorted(members, key=lambda m: m.header_offset)
    for i, m in enumerate(ordered):
        (sig, _, flags, method, _, _, _, _, _, nlen, elen) = _LOCAL.unpack(
            _read_at(f, m.header_offset, _LOCAL.size))
        if sig != b"PK\x03\x04":
            raise _Refused(f"member {m.name!r} has no local header where the central "
                           "directory says")
        name = _read_at(f, m.header_offset + _LOCAL.size, nlen)
        if name != m.name.encode("ascii") or method != 0 or flags & 0x1:
            raise _Refused(f"member {m.name!r}'s local header disagrees with the central "
                           "directory")
        m.start = m.header_offset + _LOCAL.size + nlen + elen
        end = ordered[i + 1].header_offset if i + 1 < len(ordered) else cd_offset
        if m.start + m.size > end:
            raise _Refused(f"member {m.name!r} declares {m.size} bytes, which run past "
                           f"the next member or the end of the archive ({size} bytes): "
                           "members overlap or the file is truncated")


def _read_header(f, m):
    """Parse (and check) member ``m``'s ``.npy`` header without reading its data."""
    prefix = _read_at(f, m.start, min(m.size, _NPY_HEADER_MAX))
    buf = BytesIO(prefix)
    try:
        version = np.lib.format.read_magic(buf)
    except ValueError:
        raise _Refused(f"member {m.name!r} is not a .npy array") from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise _Refused(f"member {m.name!r} uses .npy version {version}")
    except _Refused:
        raise
    except Exception as exc:  # NumPy's header parser raises many kinds (TokenError...)
        raise _Refused(f"member {m.name!r} has a damaged .npy header "
                       f"({type(exc).__name__}: {exc})") from None
    if dtype.hasobject or dtype.names is not None or dtype.kind not in "biuf" \
            or dtype.subdtype is not None:
        raise _Refused(f"member {m.name!r} holds {dtype} data (Python objects or records); "
                       "mlpx files hold plain numbers only and pickled objects are never "
                       "loaded")
    m.header_len = buf.tell()
    m.header = prefix[:m.header_len]
    nbytes = math.prod(shape) * dtype.itemsize
    if m.size != m.header_len + nbytes:
        raise _Refused(f"member {m.name!r} declares shape {shape} ({nbytes} bytes) but "
                       f"holds {m.size - m.header_len} bytes: the file is truncated or "
                       "damaged")
    m.shape, m.fortran, m.dtype = tuple(int(s) for s in shape), bool(fortran), dtype


def _read_data(f, m):
    """Read member ``m``'s array (its header already checked) and verify its CRC-32."""
    count = math.prod(m.shape)
    arr = np.empty(count, dtype=m.dtype)
    view = memoryview(arr.view(np.uint8))
    f.seek(m.start + m.header_len)
    filled = 0
    while filled < len(view):
        n = f.readinto(view[filled:])
        if not n:
            raise _Refused(f"member {m.name!r} is truncated")
        filled += n
    if zlib.crc32(view, zlib.crc32(m.header)) != m.crc:
        raise _Refused(f"member {m.name!r} fails its CRC-32 check: the file is damaged")
    arr = arr.reshape(m.shape, order="F" if m.fortran else "C")
    native = m.dtype.newbyteorder("=")
    if arr.dtype != native or not arr.flags.c_contiguous:
        arr = np.array(arr, dtype=native, order="C", copy=True)
    return arr


def _parse_meta(blob: bytes):
    """Parse the metadata JSON within the limits on size, item count and depth."""
    items = blob.count(b",") + blob.count(b":") + blob.count(b"[") + blob.count(b"{")
    if items > MAX_META_ITEMS:
        raise _Refused(f"its metadata holds about {items} JSON values; at most "
                       f"{MAX_META_ITEMS} are read (mlpx.io.MAX_META_ITEMS)")
    try:
        meta = json.loads(blob.decode("utf-8"))
    except RecursionError:
        raise _Refused("its metadata is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(f"the metadata is not valid JSON ({exc})") from None
    stack = [(meta, 1)]
    while stack:
        obj, depth = stack.pop()
        if depth > MAX_META_DEPTH:
            raise _Refused(f"its metadata is nested more than {MAX_META_DEPTH} levels deep")
        if isinstance(obj, dict):
            stack.extend((v, depth + 1) for v in obj.values())
        elif isinstance(obj, list):
            stack.extend((v, depth + 1) for v in obj)
    return meta


def _read_archive(path, *, checkpoint=False):
    """Parse ``path`` safely; return ``(meta, arrays)`` with host NumPy arrays.

    Everything the metadata says (the parameter table, the slot and best-weight lists of
    a checkpoint, the parameter shapes the config implies) is checked against the
    members' headers and real, non-overlapping sizes before any array data is read or
    any array allocated. ``arrays`` holds the parameters, and with ``checkpoint=True``
    the optimizer slots and best weights too.
    """
    path = _fspath(path)
    f, size = _open_regular(path)
    with f:
        head = f.read(8)
        if not head.startswith(_ZIP_MAGIC):
            raise ModelFileError(f"{path} is not an mlpx model file: {_describe(head)}. "
                                 "mlpx model files are .npz archives written by "
                                 "model.save(); mlpx never loads pickles or other formats "
                                 "that can run code.")
        try:
            members, cd_offset = _central_directory(f, size)
            _locate(f, members, cd_offset, size)
            by_key = {m.key: m for m in members}
            meta_member = by_key.pop(_META_KEY, None)
            if meta_member is None:
                raise ModelFileError(f"{path} is a NumPy archive but not an mlpx model file "
                                     f"(it has no {_META_KEY!r} entry; members: "
                                     f"{sorted(by_key)[:8]}).")
            _read_header(f, meta_member)
            if meta_member.dtype != np.uint8 or len(meta_member.shape) != 1:
                raise _Refused("the metadata entry is not a byte string")
            if meta_member.shape[0] > MAX_META_BYTES:
                raise _Refused(f"its metadata is {meta_member.shape[0]} bytes; at most "
                               f"{MAX_META_BYTES} are read (mlpx.io.MAX_META_BYTES)")
            meta = _parse_meta(_read_data(f, meta_member).tobytes())
            _check_meta(path, meta, by_key)
            for m in by_key.values():
                _read_header(f, m)
            _check_members(path, meta, by_key)
            _check_config_shapes(path, meta)
            wanted = ([m.key for m in by_key.values()] if checkpoint
                      else [e["key"] for e in meta["params"]])
            arrays = {key: _read_data(f, by_key[key]) for key in wanted}
        except _Refused as exc:
            raise ModelFileError(f"{path} cannot be loaded: {exc}.") from None
        except (OSError, ValueError, OverflowError, MemoryError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"{path} is truncated or damaged ({type(exc).__name__}: "
                                 f"{exc}). Restore it from a backup or save the model "
                                 "again.") from None
    return meta, arrays


def _describe(head: bytes) -> str:
    if head[:1] == b"\x80" or head[:1] in (b"(", b"c", b"]", b"}"):
        return "it looks like a Python pickle"
    if head.startswith(_NPY_MAGIC):
        return "it is a bare .npy array"
    if head.startswith(b"\x89HDF"):
        return "it is an HDF5 file"
    if not head:
        return "it is empty"
    return f"it starts with bytes {head!r}, not a zip archive"


def _check_int(value, what, low=0, high=_SAFE_INT):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise ModelFileError(f"the {what} must be an int >= {low} (and < {high}); got "
                             f"{value!r}")
    return value


def _key_list(value, what, n):
    if not isinstance(value, list) or len(value) != n \
            or not all(isinstance(k, str) for k in value):
        raise ModelFileError(f"the {what} entry must list one array name per parameter "
                             f"({n}).")
    return value


def _array_groups(meta):
    """``[(what, keys)]``: the parameter table, then a checkpoint's slots and best weights."""
    table = meta["params"]
    groups = [("parameter", [e["key"] for e in table])]
    if meta["kind"] == "checkpoint":
        t = meta.get("training")
        opt = t.get("optimizer") if isinstance(t, dict) else None
        slots = opt.get("slots") if isinstance(opt, dict) else None
        if not isinstance(slots, dict):
            raise ModelFileError("the checkpoint's training section has no optimizer slot "
                                 "list.")
        for name, keys in slots.items():
            groups.append((f"optimizer slot {name}",
                           _key_list(keys, f"optimizer slot {name}", len(table))))
        best = t.get("best_params")
        if best is not None:
            groups.append(("best weights", _key_list(best, "best weights", len(table))))
    return groups


def _check_meta(path, meta, members):
    """Check the metadata's structure, and that it names exactly the archive's members."""
    def fail(msg):
        raise ModelFileError(f"{path}: {msg}")

    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        fail("the metadata does not describe an mlpx model file.")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        fail(f"the format version {version!r} is not valid.")
    if version > FORMAT_VERSION:
        fail(f"it was written in format version {version} by mlpx "
             f"{meta.get('mlpx_version', '?')!r:.40}, but this mlpx reads format versions "
             f"up to {FORMAT_VERSION}. Upgrade mlpx (pip install -U mlpx) to load it.")
    if meta.get("kind") not in _KINDS:
        fail(f"unknown kind {str(meta.get('kind'))[:40]!r}; expected one of {list(_KINDS)}.")
    if not isinstance(meta.get("config"), dict):
        fail("the model config is missing.")
    table = meta.get("params")
    if not isinstance(table, list):
        fail("the parameter table is missing.")
    for i, entry in enumerate(table):
        if not isinstance(entry, dict):
            fail(f"parameter entry {i} is malformed.")
        key = entry.get("key")
        if not isinstance(key, str) or key not in members:
            fail(f"parameter {i} ({str(key)[:40]!r}) is missing from the archive.")
        shape, dtype = entry.get("shape"), entry.get("dtype")
        if not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < _SAFE_INT
                for s in shape):
            fail(f"parameter {key!r} has a malformed shape {str(shape)[:40]}.")
        if dtype not in _PARAM_DTYPES:
            fail(f"parameter {key!r} has dtype {str(dtype)[:40]}; parameters are float32 or "
                 "float64.")
    try:
        groups = _array_groups(meta)
    except ModelFileError as exc:
        fail(str(exc))
    seen = set()
    for what, keys in groups:
        for key in keys:
            if key in seen:
                fail(f"the array {key!r} is named more than once (as a {what}); every "
                     "array in the file is named exactly once.")
            if key not in members:
                fail(f"the {what} array {key!r} is missing from the archive.")
            seen.add(key)
    extra = sorted(k for k in members if k not in seen)
    if extra:
        fail(f"the archive holds arrays the table does not describe: {extra[:8]} "
             f"({len(extra)} in all).")


def _check_members(path, meta, members):
    """Check every member's header against the table (and slots and best weights)."""
    table = meta["params"]
    for entry in table:
        key = entry["key"]
        m = members[key]
        if m.shape != tuple(entry["shape"]) or m.dtype.name != entry["dtype"]:
            raise ModelFileError(f"{path}: parameter {key!r} holds an array of shape "
                                 f"{m.shape} and dtype {m.dtype.name}, but the table says "
                                 f"shape {entry['shape']} and dtype {entry['dtype']}.")
    for what, keys in _array_groups(meta)[1:]:
        for key, entry in zip(keys, table):
            m = members[key]
            if m.shape != tuple(entry["shape"]) or m.dtype.name != entry["dtype"]:
                raise ModelFileError(f"{path}: the {what} array {key!r} has shape {m.shape} "
                                     f"and dtype {m.dtype.name}; the parameter it belongs "
                                     f"to has shape {tuple(entry['shape'])} and dtype "
                                     f"{entry['dtype']}.")


# ====================================================================== the config's shapes
def _check_plain(obj, what):
    """Refuse non-finite numbers and integers beyond 2**53 anywhere in ``obj``."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
        elif isinstance(o, float) and not math.isfinite(o):
            raise ModelFileError(f"the {what} holds the non-finite number {o!r}.")
        elif isinstance(o, int) and not isinstance(o, bool) and not -_SAFE_INT < o < _SAFE_INT:
            raise ModelFileError(f"the {what} holds the integer {str(o)[:20]}..., beyond "
                                 "2**53.")


def _size(cfg, key, owner, default=None):
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelFileError(f"the config's {owner} has {key}={str(value)[:40]!r}; it must "
                             "be an int >= 1.")
    return value


def _layer_shapes(layer, width):
    """Parameter shapes and output width of one layer config (no layer is built)."""
    if not isinstance(layer, dict):
        raise ModelFileError(f"a layer config must be a dict; got {str(layer)[:40]!r}.")
    name = layer.get("name")
    if name == "Dense":
        units = _size(layer, "units", "Dense layer")
        shapes = [(width, units)]
        if bool(layer.get("bias", True)):
            shapes.append((units,))
        return shapes, units
    if name == "Maxout":
        units = _size(layer, "units", "Maxout layer")
        k = _size(layer, "k", "Maxout layer", 2)
        return [(width, units * k), (units * k,)], units
    if name == "PReLU":
        return [(width,)], width
    if name == "Embedding":
        vocab = _size(layer, "vocab_size", "Embedding layer")
        dim = _size(layer, "dim", "Embedding layer")
        return [(vocab, dim)], width * dim
    if name in ("ActivationLayer", "Dropout", "Rescale"):
        return [], width
    if name == "BatchNorm":  # gamma, beta, running mean and variance
        return [(width,)] * 4, width
    if name == "LayerNorm":
        return [(width,)] * 2, width
    if name == "Standardize":  # mean, std, count
        return [(width,), (width,), (1,)], width
    if isinstance(name, str) and name in LAYERS:
        raise ModelFileError(f"the config uses layer {name!r}, whose parameter shapes mlpx "
                             "cannot check before building it; only Dense, Maxout, PReLU, "
                             "Embedding, ActivationLayer, Dropout, BatchNorm, LayerNorm, "
                             "Standardize and Rescale layers are loaded from files.")
    raise ModelFileError(f"Unknown layer {str(name)[:40]!r}. Valid layers: "
                         f"{sorted(LAYERS)}.")


def config_param_shapes(config: dict) -> list[tuple[int, ...]]:
    """The shapes of the parameters a model config describes, computed without building.

    Parameters
    ----------
    config : dict
        A model config as :meth:`mlpx.Sequential.get_config` returns it (as stored in a
        file); the model must be built (``n_features`` set).

    Returns
    -------
    list of tuple of int
        Aligned with the model's ``params``.

    Raises
    ------
    ModelFileError
        When the config names an unknown class or layer, or a width is not an int >= 1.
    """
    if not isinstance(config, dict):
        raise ModelFileError("the model config is not a dict.")
    cls = config.get("class")
    if not isinstance(cls, str) or cls not in _MODEL_CLASSES:
        raise ModelFileError(f"A model config must be a dict with 'class' one of "
                             f"{sorted(_MODEL_CLASSES)}; got {str(cls)[:40]!r}.")
    if cls == "MLP":
        sizes = config.get("layer_sizes")
        if not isinstance(sizes, list) or len(sizes) < 2:
            raise ModelFileError("the config's layer_sizes must list at least two widths.")
        sizes = [_size({"w": s}, "w", "MLP") for s in sizes]
        act = config.get("activation", "relu")
        norm = config.get("norm")
        if norm not in (None, "batch", "layer"):
            raise ModelFileError(f"the config's norm {str(norm)[:40]!r} is not one of "
                                 "[None, 'batch', 'layer'].")
        norm_layer = [] if norm is None else [
            {"name": "BatchNorm" if norm == "batch" else "LayerNorm"}]
        pre = config.get("preprocess")
        layers = [] if pre is None else [{"name": "Standardize"} if pre == "standardize"
                                         else pre]
        for w in sizes[1:-1]:
            if act == "maxout":
                layers.append({"name": "Maxout", "units": w,
                               "k": config.get("maxout_k", 2)})
                layers += norm_layer
            else:
                layers.append({"name": "Dense", "units": w, "bias": norm != "batch"})
                layers += norm_layer
                if act == "prelu":
                    layers.append({"name": "PReLU"})
        layers.append({"name": "Dense", "units": sizes[-1]})
        width = sizes[0]
    elif cls == "LanguageModel":
        vocab = _size(config, "vocab_size", "LanguageModel")
        hidden = config.get("hidden_sizes")
        if not isinstance(hidden, list):
            raise ModelFileError("the config's hidden_sizes entry is not a list.")
        layers = [{"name": "Embedding", "vocab_size": vocab,
                   "dim": _size(config, "dim", "LanguageModel")}]
        layers += [{"name": "Dense", "units": _size({"w": w}, "w", "LanguageModel")}
                   for w in hidden]
        layers.append({"name": "Dense", "units": vocab})
        width = _size(config, "window", "LanguageModel")
    else:
        given = config.get("layers")
        if not isinstance(given, list):
            raise ModelFileError("the config's layers entry is not a list.")
        layers = given
        width = _size(config, "n_features", "Sequential model")
    shapes = []
    for layer in layers:
        more, width = _layer_shapes(layer, width)
        shapes.extend(more)
    return shapes


def _check_config_shapes(path, meta):
    """The config must describe exactly the parameters the table lists (before building)."""
    try:
        _check_plain(meta["config"], "model config")
        shapes = config_param_shapes(meta["config"])
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    table = meta["params"]
    wanted = sum(math.prod(s) for s in shapes)
    held = sum(math.prod(e["shape"]) for e in table)
    if len(shapes) != len(table):
        raise ModelFileError(f"{path}: the config describes a model with {len(shapes)} "
                             f"parameters but the file holds {len(table)} ({wanted} "
                             f"parameter values described, {held} held); the parameters "
                             "disagree with the config.")
    dtype = meta["config"].get("dtype", "float32")
    for i, (shape, entry) in enumerate(zip(shapes, table, strict=True)):
        if tuple(entry["shape"]) != shape or entry["dtype"] != dtype:
            raise ModelFileError(f"{path}: parameter {i} (layer {entry.get('layer')}, "
                                 f"{str(entry.get('name'))[:20]!r}) has shape "
                                 f"{tuple(entry['shape'])} and dtype {entry['dtype']}, but "
                                 f"the config needs shape {shape} and dtype {dtype}.")


# ====================================================================== building
#: Model classes by the name their config gives (filled by :mod:`mlpx.model`).
_MODEL_CLASSES: dict = {}


def register_model_class(name: str, cls: type) -> None:
    """Let :func:`load` rebuild models whose config says ``"class": name``.

    :mod:`mlpx.model` registers ``"MLP"``, ``"Sequential"`` and ``"LanguageModel"`` when
    it is imported; io looks classes up here instead of importing the model module. The
    class registered as ``"MLP"`` is called as ``cls(layer_sizes, backend=..., **rest)``,
    ``"LanguageModel"`` as ``cls(backend=..., **rest)``, any other as
    ``cls(layers, backend=..., **rest)`` with the layers rebuilt by
    :func:`mlpx.layers.get_layer`.

    Parameters
    ----------
    name : str
        The config's ``"class"`` value.
    cls : type
        The model class.
    """
    if not isinstance(name, str) or not isinstance(cls, type):
        raise TypeError(f"register_model_class needs a str name and a class. Got {name!r} "
                        f"and {cls!r} instead.")
    _MODEL_CLASSES[name] = cls


def _model_from_config(config, backend):
    cfg = dict(config)
    name = cfg.pop("class")
    cls = _MODEL_CLASSES[name]
    if name == "MLP":
        return cls(cfg.pop("layer_sizes"), backend=backend, **cfg)
    if name == "LanguageModel":
        return cls(backend=backend, **cfg)
    return cls([get_layer(c) for c in cfg.pop("layers")], backend=backend, **cfg)


def _build_model(path, meta, arrays, backend):
    """Build the model the (already checked) config describes and install its parameters."""
    config = _decode(meta["config"], path, "model config")
    table = meta["params"]
    try:
        model = _model_from_config(config, backend)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            RecursionError) as exc:
        raise ModelFileError(f"{path}: the model config cannot be rebuilt: {exc}") from None
    current = model.params
    if len(current) != len(table):
        raise ModelFileError(f"{path}: the config builds a model with {len(current)} "
                             f"parameters but the file holds {len(table)}.")
    host = []
    for i, (entry, p) in enumerate(zip(table, current)):
        a = arrays[entry["key"]]
        want_shape, want_dtype = tuple(p.shape), model.dtype
        if tuple(a.shape) != want_shape or a.dtype.name != want_dtype:
            raise ModelFileError(f"{path}: parameter {i} (layer {entry.get('layer')}, "
                                 f"{entry.get('name')!r}) has shape {tuple(a.shape)} and "
                                 f"dtype {a.dtype.name}, but the config needs shape "
                                 f"{want_shape} and dtype {want_dtype}.")
        host.append(a)
    model.set_params(host)
    return model


# ====================================================================== JSON helpers
def to_json(obj):
    """Make ``obj`` JSON-safe, exactly: what :func:`json.dumps` then ``_from_json`` restore.

    Integers beyond 2**53 become ``{"$int": "<decimal>"}`` (exact in any JSON reader),
    NumPy scalars become Python numbers, NumPy arrays ``{"$array": [...], "dtype": name}``,
    tuples lists and dict keys strings.

    Raises
    ------
    TypeError
        For anything else (objects, strings arrays).
    """
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        v = int(obj)
        return v if -_SAFE_INT < v < _SAFE_INT else {"$int": str(v)}
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise TypeError(f"cannot store an array of dtype {obj.dtype} as JSON")
        return {"$array": to_json(obj.tolist()), "dtype": obj.dtype.name}
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} {obj!r} as JSON")


def _from_json(obj):
    if isinstance(obj, dict):
        if set(obj) == {"$int"}:
            text = obj["$int"]
            if not isinstance(text, str) or len(text) > 100:
                raise ModelFileError(f"bad integer entry {str(text)[:40]!r}")
            return int(text)
        if set(obj) == {"$array", "dtype"}:
            if not isinstance(obj["dtype"], str) or obj["dtype"] not in _JSON_DTYPES:
                raise ModelFileError(f"bad array dtype {str(obj['dtype'])[:40]!r}")
            return np.array(_from_json(obj["$array"]), dtype=np.dtype(obj["dtype"]))
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


def _decode(obj, path, what):
    """``_from_json(obj)``, every failure a ModelFileError naming ``path``."""
    try:
        return _from_json(obj)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: the {what} is damaged: {exc}.") from None
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ModelFileError(f"{path}: the {what} is damaged ({type(exc).__name__}: "
                             f"{exc}).") from None


def rng_state(rng: np.random.Generator) -> dict:
    """The state of ``rng``'s bit generator in JSON form (see :func:`to_json`).

    :func:`rng_from_state` rebuilds an identical generator from it.
    """
    return to_json(rng.bit_generator.state)


def rng_from_state(state) -> np.random.Generator:
    """Rebuild a generator from :func:`rng_state` output (as read back from JSON).

    The bit generator is looked up in a fixed table (PCG64, PCG64DXSM, MT19937, Philox,
    SFC64), never by an arbitrary name.

    Raises
    ------
    ModelFileError
        When the state names another bit generator or is damaged.
    """
    try:
        state = _from_json(state)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ModelFileError(f"the random state is damaged ({type(exc).__name__}: "
                             f"{exc}).") from None
    if not isinstance(state, dict) or not isinstance(state.get("bit_generator"), str) \
            or state["bit_generator"] not in _BIT_GENERATORS:
        name = state.get("bit_generator") if isinstance(state, dict) else state
        raise ModelFileError(f"the random state names bit generator {str(name)[:40]!r}; "
                             f"known: {sorted(_BIT_GENERATORS)}.")
    bit_gen = _BIT_GENERATORS[state["bit_generator"]]()
    try:
        bit_gen.state = state
        # NumPy copies what it needs and ignores the rest (a short array may even be read
        # past its end): only a state that reads back identically is accepted.
        same = _json_normal(to_json(bit_gen.state)) == _json_normal(to_json(state))
    except (TypeError, ValueError, KeyError, OverflowError, IndexError, AttributeError) \
            as exc:
        raise ModelFileError(f"the random state is damaged ({type(exc).__name__}: "
                             f"{exc}).") from None
    if not same:
        raise ModelFileError("the random state is damaged (it does not read back as "
                             "written).")
    return np.random.Generator(bit_gen)


def _history_to_json(history) -> Any:
    if history is None:
        return None
    return to_json({"history": history.history, "epochs": history.epochs,
                    "stopped_early": history.stopped_early,
                    "best_epoch": history.best_epoch,
                    "stop_reason": getattr(history, "stop_reason", None)})


def _history_from_json(data):
    data = _from_json(data)
    if not isinstance(data, dict) or not isinstance(data.get("history"), dict) \
            or not isinstance(data.get("epochs"), list) \
            or not all(isinstance(v, list) for v in data["history"].values()):
        raise ModelFileError("the history entry is malformed.")
    h = History(history={str(k): [float(x) for x in v] for k, v in data["history"].items()},
                epochs=[int(e) for e in data["epochs"]],
                stopped_early=bool(data.get("stopped_early", False)),
                best_epoch=data.get("best_epoch"))
    if data.get("stop_reason") is not None and hasattr(h, "stop_reason"):
        h.stop_reason = str(data["stop_reason"])
    return h
