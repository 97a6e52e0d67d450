"""Safe model files and training checkpoints (no pickle, atomic writes).

A model file is a plain ``.npz`` archive (an uncompressed zip of ``.npy`` arrays) that
any NumPy can open with ``numpy.load(path, allow_pickle=False)``. It holds:

``mlpx.npy``
    A uint8 array holding UTF-8 JSON: the format name and version, the mlpx version that
    wrote it, the model's config (:meth:`mlpx.Sequential.get_config`) and a table of the
    parameters (key, layer, name, shape, dtype).
``param.<i>.npy``
    Every parameter, in the order of :attr:`mlpx.Sequential.params`, as host (NumPy)
    arrays: a model saved from CuPy loads on NumPy and the other way round.

A checkpoint is the same format with ``"kind": "checkpoint"`` and a ``"training"``
section: the optimizer's config and step, its slot arrays (``slot.<name>.<i>.npy``,
aligned with the parameters by position), the epoch, the host random generators' states,
the history, and (when written by :meth:`mlpx.Sequential.fit`) what a resumed ``fit``
needs to continue bit for bit on NumPy.

Reading never executes anything: the archive is parsed with :mod:`zipfile`, every array
header is checked before its data is read, object (pickled) arrays are refused, the JSON
is parsed with :mod:`json` and names in the config are looked up in mlpx's registries.
Every problem raises :class:`ModelFileError` (a ``ValueError``) naming the file and what
is wrong with it.

Writing goes to a temporary file in the destination's directory, is flushed and fsynced,
then renamed over the destination with :func:`os.replace`: a process killed in the middle
of a save leaves the previous file intact (and, at worst, a stray ``.<name>.*.tmp`` file).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from . import _backend

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "save",
    "load",
    "save_checkpoint",
    "load_checkpoint",
]

#: Version of the file layout written by this mlpx; files with a higher one are refused.
FORMAT_VERSION = 1
_FORMAT_NAME = "mlpx"
_META_KEY = "mlpx"
_KINDS = ("model", "checkpoint")
_PARAM_DTYPES = ("float32", "float64")
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"
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
        unknown layer/activation/loss, or holds parameters whose shapes or dtypes
        disagree with its config. Nothing in the file is executed.
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
        "rng": {"train": _rng_state(ts.rng), "init": _rng_state(ts.init_rng)},
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
    meta["training"] = _to_json(training)
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
    ckpt = _read_checkpoint(path)
    model = _build_model(path, ckpt["meta"], ckpt["arrays"], backend)
    model.restore_checkpoint(ckpt)
    return model


# ====================================================================== internals used by fit
def _read_checkpoint(path) -> dict:
    """Read and check a checkpoint; return ``{"meta", "arrays", "training"}`` (host arrays)."""
    path = _fspath(path)
    meta, arrays = _read_archive(path)
    if meta["kind"] != "checkpoint":
        raise ModelFileError(f"{path} is a model file, not a checkpoint: it holds no "
                             "optimizer or random state to resume from. Load it with "
                             "mlpx.load(path) instead.")
    training = meta.get("training")
    try:
        training = _from_json(training)
        _check_training(training, meta, arrays)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ModelFileError(f"{path}: the checkpoint's training section is damaged "
                             f"({type(exc).__name__}: {exc}).") from None
    return {"meta": meta, "arrays": arrays, "training": training, "path": path}


def _check_training(t, meta, arrays):
    if not isinstance(t, dict):
        raise ModelFileError("the checkpoint has no training section.")
    shapes = [tuple(p["shape"]) for p in meta["params"]]
    dtypes = [p["dtype"] for p in meta["params"]]
    _check_int(t["epoch"], "epoch")
    opt = t["optimizer"]
    _check_int(opt["step"], "optimizer step")
    if not isinstance(opt["config"], dict) or not isinstance(opt["slots"], dict):
        raise ModelFileError("the optimizer entry is malformed.")
    groups = [("optimizer slot " + name, keys) for name, keys in opt["slots"].items()]
    if t.get("best_params") is not None:
        groups.append(("best weights", t["best_params"]))
    for what, keys in groups:
        if not isinstance(keys, list) or len(keys) != len(shapes):
            raise ModelFileError(f"the {what} entry must list one array per parameter "
                                 f"({len(shapes)}).")
        for key, shape, dtype in zip(keys, shapes, dtypes):
            if not isinstance(key, str) or key not in arrays:
                raise ModelFileError(f"the {what} array {key!r} is missing.")
            a = arrays[key]
            if tuple(a.shape) != shape or a.dtype.name != dtype:
                raise ModelFileError(f"the {what} array {key!r} has shape {a.shape} and "
                                     f"dtype {a.dtype.name}; the parameter it belongs to "
                                     f"has shape {shape} and dtype {dtype}.")
    for which in ("train", "init"):
        _rng_from_state(t["rng"][which])  # validates
    if t.get("history") is not None:
        _history_from_json(t["history"])  # validates
    if t.get("fit") is not None and not isinstance(t["fit"], dict):
        raise ModelFileError("the fit entry is malformed.")


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
    from .optimizers import get_optimizer

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
            "rng": _rng_from_state(t["rng"]["train"]),
            "init_rng": _rng_from_state(t["rng"]["init"]),
            "epoch": int(t["epoch"]),
            "history": None if t.get("history") is None else _history_from_json(t["history"])}


def _best_params(ckpt):
    keys = ckpt["training"].get("best_params")
    if keys is None:
        return None
    return [np.array(ckpt["arrays"][k], copy=True) for k in keys]


# ====================================================================== payload
def _model_payload(model, *, kind):
    import mlpx

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
        "mlpx_version": getattr(mlpx, "__version__", "unknown"),
        "saved_from": {"backend": model.backend.name, "numpy": np.__version__},
        "config": _to_json(config),
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
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED,
                                 allowZip64=True) as zf:
                for key, arr in members.items():
                    arr = np.ascontiguousarray(arr)
                    with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, arr, allow_pickle=False)
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
def _read_archive(path):
    """Parse ``path`` safely; return ``(meta, arrays)`` with host NumPy arrays."""
    path = _fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such model file: {path!r}")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith(_ZIP_MAGIC):
        raise ModelFileError(f"{path} is not an mlpx model file: {_describe(head)}. mlpx "
                             "model files are .npz archives written by model.save(); "
                             "mlpx never loads pickles or other formats that can run code.")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = [info.filename for info in infos]
            if len(set(names)) != len(names):
                raise ModelFileError("the archive holds duplicate member names")
            arrays = {}
            for info in infos:
                if not info.filename.endswith(".npy") or "/" in info.filename \
                        or info.filename.startswith("."):
                    raise ModelFileError(f"unexpected member {info.filename!r} (an mlpx "
                                         "file holds only .npy arrays)")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ModelFileError(f"member {info.filename!r} is compressed; mlpx "
                                         "writes uncompressed archives")
                arrays[info.filename[:-4]] = _read_member(zf, info)
    except ModelFileError as exc:
        raise ModelFileError(f"{path} cannot be loaded: {exc}.") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError,
            NotImplementedError, OverflowError) as exc:
        raise ModelFileError(f"{path} is truncated or damaged ({type(exc).__name__}: "
                             f"{exc}). Restore it from a backup or save the model again.") \
            from None
    meta_arr = arrays.pop(_META_KEY, None)
    if meta_arr is None:
        raise ModelFileError(f"{path} is a NumPy archive but not an mlpx model file (it has "
                             f"no {_META_KEY!r} entry; members: {sorted(arrays)[:8]}).")
    try:
        if meta_arr.dtype != np.uint8 or meta_arr.ndim != 1:
            raise ValueError("the metadata entry is not a byte string")
        meta = json.loads(meta_arr.tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: the metadata is not valid JSON ({exc}).") from None
    _check_meta(path, meta, arrays)
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


def _read_member(zf, info):
    """Read one .npy member: header first (checked), then exactly its data, then the CRC."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ModelFileError(f"member {info.filename!r} uses .npy version {version}")
        if dtype.hasobject or dtype.names is not None or dtype.kind not in "biuf":
            raise ModelFileError(f"member {info.filename!r} holds {dtype} data (Python "
                                 "objects or records); mlpx files hold plain numbers only "
                                 "and pickled objects are never loaded")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if info.file_size != f.tell() + nbytes:
            raise ModelFileError(f"member {info.filename!r} declares shape {shape} "
                                 f"({nbytes} bytes) but holds {info.file_size - f.tell()} "
                                 "bytes: the file is truncated or damaged")
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise ModelFileError(f"member {info.filename!r} is truncated")
        if f.read(1):
            raise ModelFileError(f"member {info.filename!r} has trailing data")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    native = dtype.newbyteorder("=")
    return np.array(arr, dtype=native, order="C", copy=True)


def _check_int(value, what, low=0):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ModelFileError(f"the {what} must be an int >= {low}; got {value!r}")
    return value


def _check_meta(path, meta, arrays):
    def fail(msg):
        raise ModelFileError(f"{path}: {msg}")

    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        fail("the metadata does not describe an mlpx model file.")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        fail(f"the format version {version!r} is not valid.")
    if version > FORMAT_VERSION:
        fail(f"it was written in format version {version} by mlpx "
             f"{meta.get('mlpx_version', '?')}, but this mlpx reads format versions up to "
             f"{FORMAT_VERSION}. Upgrade mlpx (pip install -U mlpx) to load it.")
    if meta.get("kind") not in _KINDS:
        fail(f"unknown kind {meta.get('kind')!r}; expected one of {list(_KINDS)}.")
    if not isinstance(meta.get("config"), dict):
        fail("the model config is missing.")
    table = meta.get("params")
    if not isinstance(table, list):
        fail("the parameter table is missing.")
    used = set()
    for i, entry in enumerate(table):
        if not isinstance(entry, dict):
            fail(f"parameter entry {i} is malformed.")
        key = entry.get("key")
        if not isinstance(key, str) or key not in arrays:
            fail(f"parameter {i} ({key!r}) is missing from the archive.")
        shape, dtype = entry.get("shape"), entry.get("dtype")
        a = arrays[key]
        if not isinstance(shape, list) or tuple(a.shape) != tuple(shape) \
                or a.dtype.name != dtype:
            fail(f"parameter {key!r} holds an array of shape {tuple(a.shape)} and dtype "
                 f"{a.dtype.name}, but the table says shape {shape} and dtype {dtype}.")
        if dtype not in _PARAM_DTYPES:
            fail(f"parameter {key!r} has dtype {dtype}; parameters are float32 or float64.")
        used.add(key)
    extra = sorted(k for k in arrays if not k.startswith(("slot.", "best.")) and k not in used)
    if extra:
        fail(f"the archive holds arrays the table does not describe: {extra[:8]}.")


# ====================================================================== building
def _config_weight_count(config):
    """Weights the config asks for, counted without building (None if not understood).

    Only a guard: a file cannot make :func:`load` allocate (and randomly initialise) a
    model far larger than the parameters it actually holds. Exact shapes are compared
    after building.
    """
    try:
        if config.get("class") == "MLP":
            sizes = [int(s) for s in config["layer_sizes"]]
            act = config.get("activation")
            k = int(config.get("maxout_k", 2)) if act == "maxout" else 1
            hidden = sum(a * b * k for a, b in zip(sizes[:-2], sizes[1:-1]))
            return hidden + sizes[-2] * sizes[-1]
        width = int(config["n_features"])
        total = 0
        for layer in config["layers"]:
            if isinstance(layer, dict) and "units" in layer:
                units = int(layer["units"])
                total += width * units * int(layer.get("k", 1))
                width = units
        return total
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None


def _build_model(path, meta, arrays, backend):
    from .model import model_from_config

    config = _from_json(meta["config"])
    table = meta["params"]
    held = sum(math.prod(arrays[e["key"]].shape) for e in table)
    wanted = _config_weight_count(config)
    if wanted is not None and wanted > held:
        raise ModelFileError(f"{path}: the config describes a model with at least {wanted} "
                             f"weights but the file holds {held} parameter values; the "
                             "parameters disagree with the config.")
    try:
        model = model_from_config(config, backend=backend)
    except (ValueError, TypeError, KeyError) as exc:
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
_SAFE_INT = 2 ** 53


def _to_json(obj):
    """Make ``obj`` JSON-safe: big ints become ``{"$int": "<decimal>"}`` (exact in any
    JSON reader), NumPy scalars become Python numbers, arrays ``{"$array", "dtype"}``."""
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
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
        return {"$array": _to_json(obj.tolist()), "dtype": obj.dtype.name}
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} {obj!r} as JSON")


def _from_json(obj):
    if isinstance(obj, dict):
        if set(obj) == {"$int"}:
            text = obj["$int"]
            if not isinstance(text, str) or len(text) > 400:
                raise ModelFileError(f"bad integer entry {text!r}")
            return int(text)
        if set(obj) == {"$array", "dtype"}:
            dtype = np.dtype(str(obj["dtype"]))
            if dtype.kind not in "biuf":
                raise ModelFileError(f"bad array dtype {dtype}")
            return np.array(_from_json(obj["$array"]), dtype=dtype)
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


def _rng_state(rng) -> dict:
    return _to_json(rng.bit_generator.state)


def _rng_from_state(state) -> np.random.Generator:
    state = _from_json(state)
    if not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS:
        name = state.get("bit_generator") if isinstance(state, dict) else state
        raise ModelFileError(f"the random state names bit generator {name!r}; known: "
                             f"{sorted(_BIT_GENERATORS)}.")
    bit_gen = _BIT_GENERATORS[state["bit_generator"]]()
    try:
        bit_gen.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ModelFileError(f"the random state is damaged ({exc}).") from None
    return np.random.Generator(bit_gen)


def _history_to_json(history) -> Any:
    if history is None:
        return None
    return _to_json({"history": history.history, "epochs": history.epochs,
                     "stopped_early": history.stopped_early,
                     "best_epoch": history.best_epoch,
                     "stop_reason": getattr(history, "stop_reason", None)})


def _history_from_json(data):
    from .training import History

    data = _from_json(data)
    if not isinstance(data, dict) or not isinstance(data.get("history"), dict) \
            or not isinstance(data.get("epochs"), list):
        raise ModelFileError("the history entry is malformed.")
    h = History(history={str(k): [float(x) for x in v] for k, v in data["history"].items()},
                epochs=[int(e) for e in data["epochs"]],
                stopped_early=bool(data.get("stopped_early", False)),
                best_epoch=data.get("best_epoch"))
    if data.get("stop_reason") is not None and hasattr(h, "stop_reason"):
        h.stop_reason = str(data["stop_reason"])
    return h


# TEMP: public names the trainer uses, until the io hardening branch lands.
read_checkpoint = _read_checkpoint
rng_state = _rng_state
rng_from_state = _rng_from_state
to_json = _to_json
best_params = _best_params


def check_checkpoint_matches(model, ckpt) -> None:
    """TEMP: refuse a checkpoint of another model (config) before changing the model."""
    import json

    def normal(obj):
        return json.loads(json.dumps(obj, sort_keys=True))

    mine = normal(_to_json(model.get_config()))
    theirs = normal(ckpt["meta"]["config"])
    if not model.built:
        mine = dict(mine, n_features=theirs.get("n_features"))
    if mine != theirs:
        keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"The checkpoint {ckpt['path']} belongs to a different model "
                         f"(config keys that differ: {keys}); build the model with the "
                         "config it was saved from, or load it with "
                         "mlpx.io.load_checkpoint.")
