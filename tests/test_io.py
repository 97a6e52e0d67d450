"""Safe model files: round trips, atomic writes, and every bad input we could think of.

Every file-damaging test asserts that loading raises :class:`mlpx.io.ModelFileError` with
a message that says what is wrong, and (for payloads that would run code when unpickled)
that nothing ran.
"""

import json
import os
import pickle
import signal
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import mlpx
from mlpx import MLP, Sequential, _backend, io
from mlpx.activations import ACTIVATIONS
from mlpx.io import ModelFileError
from mlpx.layers import ActivationLayer, Dense, Dropout, Maxout, PReLU
from mlpx.losses import LOSSES

from .helpers import assert_array, params_np, run_and_kill

ROOT = Path(__file__).resolve().parents[1]
X4 = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)



def trained(backend="numpy", **kw):
    model = MLP([4, 8, 8, 3], dropout=0.1, seed=0, backend=backend, **kw)
    model.fit(X4, np.arange(16) % 3, epochs=2, batch_size=4, optimizer="adam", verbose=0)
    return model


def meta_of(path):
    with np.load(path, allow_pickle=False) as f:
        return json.loads(f["mlpx"].tobytes().decode())


def rewrite(src, dst, *, meta=None, arrays=None, drop=(), raw=None):
    """Copy an mlpx archive, editing its metadata and arrays (written without mlpx.io)."""
    with np.load(src, allow_pickle=False) as f:
        members = {k: f[k] for k in f.files}
    if meta is not None:
        members["mlpx"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    members.update(arrays or {})
    for k in drop:
        members.pop(k)
    with zipfile.ZipFile(dst, "w") as zf:
        for k, a in members.items():
            with zf.open(f"{k}.npy", "w") as m:
                np.lib.format.write_array(m, a, allow_pickle=True)
        for name, data in (raw or {}).items():
            zf.writestr(name, data)
    return dst


# ------------------------------------------------------------------------ round trips
def test_save_load_round_trip_on_every_backend(backend, tmp_path):
    model = trained(backend)
    path = model.save(tmp_path / "model.npz")
    assert path == str(tmp_path / "model.npz")
    for target in ("numpy", backend):
        clone = mlpx.io.load(path, backend=target)
        assert clone.backend.name == _backend.resolve_backend(target).name
        assert clone.get_config() == model.get_config()
        for a, b in zip(clone.params, model.params):
            np.testing.assert_array_equal(_backend.to_numpy(a), _backend.to_numpy(b))
            assert _backend.to_numpy(a).dtype == np.float32
        same_device = clone.backend.name == model.backend.name
        expected = _backend.to_numpy(model.predict_proba(X4))
        # Same parameters: identical predictions on the same backend; across devices
        # (CuPy <-> NumPy) the same labels and probabilities to float32 rounding.
        assert_array(clone.predict_proba(X4), expected, backend=clone.backend,
                     rtol=0 if same_device else 1e-5, atol=0 if same_device else 1e-6)
        np.testing.assert_array_equal(_backend.to_numpy(clone.predict(X4)),
                                      _backend.to_numpy(model.predict(X4)))


def test_numpy_and_strict_predictions_are_identical_across_backends(tmp_path):
    model = trained("array_api_strict", dtype="float64")
    path = model.save(tmp_path / "m.npz")
    clone = io.load(path)
    np.testing.assert_array_equal(_backend.to_numpy(clone.predict_proba(X4)),
                                  _backend.to_numpy(model.predict_proba(X4)))
    assert _backend.to_numpy(clone.params[0]).dtype == np.float64


def test_file_is_a_plain_npz_with_config_versions_and_params(tmp_path):
    model = trained()
    path = model.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as f:
        files = f.files
        assert files == ["mlpx"] + [f"param.{i}" for i in range(len(model.params))]
    meta = meta_of(path)
    assert meta["format"] == "mlpx" and meta["format_version"] == io.FORMAT_VERSION
    assert meta["mlpx_version"] == mlpx.__version__
    assert meta["kind"] == "model"
    assert meta["config"] == json.loads(json.dumps(model.get_config()))
    assert [p["name"] for p in meta["params"]] == ["W", "b", "W", "b", "W", "b"]
    assert [p["shape"] for p in meta["params"]] == [list(p.shape) for p in model.params]
    with zipfile.ZipFile(path) as zf:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())


def test_save_refuses_unbuilt_model_and_bad_paths(tmp_path):
    lazy = Sequential([Dense(3)])
    with pytest.raises(ValueError, match="not built"):
        lazy.save(tmp_path / "m.npz")
    model = MLP([2, 2], seed=0)
    with pytest.raises(ValueError, match="does not exist"):
        model.save(tmp_path / "missing" / "m.npz")
    with pytest.raises(ValueError, match="is a directory"):
        model.save(tmp_path)
    with pytest.raises(TypeError, match="'path' parameter"):
        model.save(3)


HIDDEN = sorted(set(ACTIVATIONS) - {"softmax", "log_softmax"}) + ["prelu", "maxout"]


@st.composite
def built_models(draw):
    dtype = draw(st.sampled_from(["float32", "float64"]))
    seed = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        sizes = draw(st.lists(st.integers(1, 6), min_size=2, max_size=5))
        return MLP(sizes, activation=draw(st.sampled_from(HIDDEN)),
                   loss=draw(st.sampled_from(sorted(LOSSES))),
                   init=draw(st.sampled_from([None, "he_uniform", "glorot_normal",
                                              {"name": "normal", "std": 0.5}])),
                   dropout=draw(st.sampled_from([0.0, 0.25])),
                   alpha=draw(st.sampled_from([0.0, 1e-3])),
                   maxout_k=draw(st.integers(1, 3)), dtype=dtype, seed=seed)
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["dense", "act", "dropout", "prelu", "maxout"]))
        if kind == "dense":
            layers.append(Dense(draw(st.integers(1, 5)), bias=draw(st.booleans())))
        elif kind == "act":
            layers.append(ActivationLayer(draw(st.sampled_from(sorted(ACTIVATIONS)))))
        elif kind == "dropout":
            layers.append(Dropout(0.5))
        elif kind == "prelu":
            layers.append(PReLU(draw(st.floats(-1, 1))))
        else:
            layers.append(Maxout(draw(st.integers(1, 4)), draw(st.integers(1, 3))))
    layers.append(Dense(draw(st.integers(1, 4))))
    return Sequential(layers, loss=draw(st.sampled_from(sorted(LOSSES))),
                      alpha=draw(st.sampled_from([0.0, 0.5])),
                      n_features=draw(st.integers(1, 5)), dtype=dtype, seed=seed)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=built_models())
def test_save_load_round_trips_any_model_the_builders_make(model):
    X = np.random.default_rng(1).standard_normal((3, model.n_features))
    with tempfile.TemporaryDirectory() as d:
        clone = io.load(model.save(os.path.join(d, "m.npz")))
    assert type(clone) is type(model)
    assert clone.get_config() == model.get_config()
    for a, b in zip(params_np(clone), params_np(model), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(clone.decision_function(X), model.decision_function(X))


# ------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_restores_training_state(tmp_path):
    model = trained()
    path = io.save_checkpoint(model, tmp_path / "ck.npz")
    clone = io.load_checkpoint(path)
    assert clone.epoch_ == model.epoch_ == 2
    assert clone.optimizer_.get_config() == model.optimizer_.get_config()
    assert clone.optimizer_state_["step"] == model.optimizer_state_["step"] == 8
    for name in ("m", "v"):
        for a, b in zip(clone.optimizer_state_["slots"][name],
                        model.optimizer_state_["slots"][name], strict=True):
            np.testing.assert_array_equal(a, b)
            assert a.flags.writeable
    assert clone._train_rng.integers(2**62) == model._train_rng.integers(2**62)
    assert clone._init_rng.integers(2**62) == model._init_rng.integers(2**62)
    assert clone._noise_rng is clone._train_rng
    assert clone.history_.epochs == [1, 2]
    assert clone.history_["loss"] == model.history_["loss"]
    # Training goes on identically from the loaded checkpoint.
    model.fit(X4, np.arange(16) % 3, epochs=1, batch_size=4, verbose=0)
    clone.fit(X4, np.arange(16) % 3, epochs=1, batch_size=4, verbose=0)
    for a, b in zip(params_np(clone), params_np(model)):
        np.testing.assert_array_equal(a, b)
    # A checkpoint is also a model file.
    np.testing.assert_array_equal(params_np(io.load(path))[0],
                                  params_np(io.load_checkpoint(path))[0])


def test_checkpoint_json_holds_no_int_beyond_double_precision(tmp_path):
    path = io.save_checkpoint(trained(), tmp_path / "ck.npz")
    meta = meta_of(path)
    big = []

    def walk(o):
        if isinstance(o, dict):
            if "$int" in o:
                big.append(int(o["$int"]))
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, int) and not isinstance(o, bool):
            assert abs(o) < 2**53
    walk(meta)
    assert big and max(big) > 2**53  # PCG64 states are 128-bit and survive exactly


def test_save_checkpoint_needs_an_optimizer(tmp_path):
    with pytest.raises(ValueError, match="needs a model with an optimizer"):
        io.save_checkpoint(MLP([2, 2], seed=0), tmp_path / "ck.npz")


def test_load_checkpoint_refuses_a_model_file_and_damaged_training(tmp_path):
    model = trained()
    plain = model.save(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="model file, not a checkpoint"):
        io.load_checkpoint(plain)
    ck = io.save_checkpoint(model, tmp_path / "ck.npz")
    meta = meta_of(ck)
    bad = json.loads(json.dumps(meta))
    bad["training"]["rng"]["train"]["bit_generator"] = "os.system"
    with pytest.raises(ModelFileError, match="bit generator 'os.system'"):
        io.load_checkpoint(rewrite(ck, tmp_path / "b1.npz", meta=bad))
    with pytest.raises(ModelFileError, match="slot m"):
        io.load_checkpoint(rewrite(ck, tmp_path / "b2.npz",
                                   arrays={"slot.m.0": np.zeros((2, 2), np.float32)}))
    bad = json.loads(json.dumps(meta))
    bad["training"]["optimizer"]["config"] = {"name": "nosuch"}
    with pytest.raises(ModelFileError, match="optimizer cannot be rebuilt.*nosuch"):
        io.load_checkpoint(rewrite(ck, tmp_path / "b3.npz", meta=bad))
    bad = json.loads(json.dumps(meta))
    bad["training"]["epoch"] = -1
    with pytest.raises(ModelFileError, match="epoch"):
        io.load_checkpoint(rewrite(ck, tmp_path / "b4.npz", meta=bad))


# ------------------------------------------------------------------------ bad inputs
class _Trap:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_pickle_payload_disguised_as_a_model_is_refused_without_running(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = tmp_path / "model.npz"
    evil.write_bytes(pickle.dumps(_Trap(str(sentinel))))
    with pytest.raises(ModelFileError, match="looks like a Python pickle"):
        io.load(evil)
    # A pickled mlpx model is refused too: mlpx never unpickles.
    evil.write_bytes(pickle.dumps(trained()))
    with pytest.raises(ModelFileError, match="pickle"):
        io.load(evil)
    # Protocol-0 pickles start with "c" / "(".
    evil.write_bytes(pickle.dumps(_Trap(str(sentinel)), protocol=0))
    with pytest.raises(ModelFileError, match="pickle"):
        io.load(evil)
    assert not sentinel.exists()


def test_object_array_inside_the_archive_is_refused_without_running(tmp_path):
    sentinel = tmp_path / "pwned"
    good = trained().save(tmp_path / "m.npz")
    payload = np.empty(1, dtype=object)
    payload[0] = _Trap(str(sentinel))
    # An undescribed extra member is refused from the metadata, before its header is read.
    for key, match in (("param.0", "Python objects"), ("mlpx", "Python objects"),
                       ("extra", "does not describe")):
        bad = rewrite(good, tmp_path / f"{key}.npz", arrays={key: payload})
        with pytest.raises(ModelFileError, match=match):
            io.load(bad)
        assert not sentinel.exists()


@pytest.mark.parametrize("cut", [0, 1, 4, 30, 100, 0.25, 0.5, 0.9, -22, -1])
def test_truncated_file_is_refused(tmp_path, cut):
    good = trained().save(tmp_path / "m.npz")
    data = Path(good).read_bytes()
    n = int(len(data) * cut) if isinstance(cut, float) else cut
    (tmp_path / "t.npz").write_bytes(data[:n])
    with pytest.raises(ModelFileError, match="truncated|damaged|not an mlpx|empty"):
        io.load(tmp_path / "t.npz")


def test_every_truncation_point_gives_a_clear_error(tmp_path):
    good = MLP([2, 2], seed=0).save(tmp_path / "m.npz")
    data = Path(good).read_bytes()
    for n in range(0, len(data), 7):
        (tmp_path / "t.npz").write_bytes(data[:n])
        with pytest.raises(ModelFileError):
            io.load(tmp_path / "t.npz")


def test_flipped_bits_in_parameter_data_are_caught_by_the_checksum(tmp_path):
    model = trained()
    good = model.save(tmp_path / "m.npz")
    data = bytearray(Path(good).read_bytes())
    raw = params_np(model)[0].tobytes()
    at = bytes(data).index(raw[:16]) + 5
    data[at] ^= 0x10
    (tmp_path / "f.npz").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="CRC|damaged"):
        io.load(tmp_path / "f.npz")


def _edit_config(good, tmp_path, name, edit):
    meta = meta_of(good)
    edit(meta)
    return rewrite(good, tmp_path / f"{name}.npz", meta=meta)


@pytest.mark.parametrize("name,edit,match", [
    ("layer", lambda m: m["config"].__setitem__("class", "Sequential") or
     m["config"].update(layers=[{"name": "Evil", "units": 3}], n_features=4),
     "Unknown layer 'Evil'"),
    ("activation", lambda m: m["config"].__setitem__("activation", "__import__"),
     "Unknown activation '__import__'"),
    ("output", lambda m: m["config"].__setitem__("output", {"name": "eval"}),
     "Unknown activation 'eval'"),
    ("loss", lambda m: m["config"].__setitem__("loss", {"name": "nope"}), "nope"),
    ("class", lambda m: m["config"].__setitem__("class", "os.system"), "'class'"),
    ("kwarg", lambda m: m["config"].__setitem__("bogus", 1), "bogus"),
    ("version", lambda m: m.__setitem__("format_version", 99),
     "format version 99.*reads format versions up to 1.*Upgrade mlpx"),
    ("version0", lambda m: m.__setitem__("format_version", "1"), "format version"),
    ("format", lambda m: m.__setitem__("format", "keras"), "does not describe"),
    ("kind", lambda m: m.__setitem__("kind", "script"), "unknown kind"),
    ("table", lambda m: m["params"][0].__setitem__("shape", [1, 1]), "table says"),
    ("missing", lambda m: m["params"].append({"key": "param.99"}), "missing"),
    ("noconfig", lambda m: m.pop("config"), "config is missing"),
])
def test_bad_metadata_is_refused(tmp_path, name, edit, match):
    good = trained().save(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match=match):
        io.load(_edit_config(good, tmp_path, name, edit))


def test_parameters_that_disagree_with_the_config_are_refused(tmp_path):
    model = trained()
    good = model.save(tmp_path / "m.npz")
    meta = meta_of(good)
    # Wrong shape, consistent table: the config needs (4, 8).
    meta["params"][0]["shape"] = [4, 7]
    bad = rewrite(good, tmp_path / "s.npz", meta=meta,
                  arrays={"param.0": np.zeros((4, 7), np.float32)})
    with pytest.raises(ModelFileError, match=r"shape \(4, 7\).*config needs shape \(4, 8\)"):
        io.load(bad)
    # Wrong dtype: float64 weights in a float32 model.
    meta = meta_of(good)
    meta["params"][0]["dtype"] = "float64"
    bad = rewrite(good, tmp_path / "d.npz", meta=meta,
                  arrays={"param.0": params_np(model)[0].astype(np.float64)})
    with pytest.raises(ModelFileError, match="dtype float64.*dtype float32"):
        io.load(bad)
    # Integer "parameters".
    meta = meta_of(good)
    meta["params"][0]["dtype"] = "int32"
    bad = rewrite(good, tmp_path / "i.npz", meta=meta,
                  arrays={"param.0": np.zeros((4, 8), np.int32)})
    with pytest.raises(ModelFileError, match="float32 or float64"):
        io.load(bad)
    # One parameter too few.
    meta = meta_of(good)
    meta["params"].pop()
    bad = rewrite(good, tmp_path / "n.npz", meta=meta, drop=["param.5"])
    with pytest.raises(ModelFileError, match="6 parameters but the file holds 5"):
        io.load(bad)
    # An array nobody describes.
    bad = rewrite(good, tmp_path / "e.npz", arrays={"param.9": np.zeros(2, np.float32)})
    with pytest.raises(ModelFileError, match="does not describe"):
        io.load(bad)


def test_config_far_larger_than_the_file_is_refused_before_building(tmp_path):
    good = MLP([2, 2], seed=0).save(tmp_path / "m.npz")
    meta = meta_of(good)
    meta["config"]["layer_sizes"] = [100_000, 100_000, 2]  # 10**10 weights
    # 10**10 + 2 * 10**5 weights and 10**5 + 2 biases, counted exactly from the config.
    with pytest.raises(ModelFileError, match="describes a model with 4 parameters but "
                                             "the file holds 2 .10000300002 parameter"):
        io.load(rewrite(good, tmp_path / "big.npz", meta=meta))
    meta = meta_of(good)
    meta["config"] = {"class": "Sequential", "layers": [{"name": "Maxout", "units": 10**6,
                                                          "k": 10**6}],
                      "n_features": 10**6, "loss": "mse", "output": "identity",
                      "alpha": 0.0, "dtype": "float32"}
    with pytest.raises(ModelFileError, match=r"config needs shape \(1000000, 1000000000000\)"):
        io.load(rewrite(good, tmp_path / "big2.npz", meta=meta))


def test_header_claiming_more_data_than_present_is_refused(tmp_path):
    good = MLP([2, 2], seed=0).save(tmp_path / "m.npz")
    buf = tmp_path / "h.npz"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "param.0.npy":
                data = data.replace(b"(2, 2)", b"(2000000000, 2)")
            zout.writestr(info.filename, data)
    with pytest.raises(ModelFileError, match="declares shape"):
        io.load(buf)


@pytest.mark.parametrize("kind", ["npy", "empty", "text", "hdf5", "plain_npz", "compressed",
                                  "dirmember", "dup", "notjson", "fortran_npy_v3"])
def test_other_files_are_refused_with_a_clear_error(tmp_path, kind):
    good = MLP([2, 2], seed=0).save(tmp_path / "m.npz")
    path = tmp_path / "x.npz"
    if kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
        match = "bare .npy"
    elif kind == "empty":
        path.write_bytes(b"")
        match = "empty"
    elif kind == "text":
        path.write_text("import os; os.system('true')")
        match = "not a zip"
    elif kind == "hdf5":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
        match = "HDF5"
    elif kind == "plain_npz":
        with open(path, "wb") as f:
            np.savez(f, W=np.zeros(2))
        match = "not an mlpx model file"
    elif kind == "compressed":
        with np.load(good) as f:
            members = {k: f[k] for k in f.files}
        with open(path, "wb") as f:
            np.savez_compressed(f, **members)
        match = "compressed"
    elif kind == "dirmember":
        rewrite(good, path, raw={"../evil.npy": b"x"})
        match = "unexpected member"
    elif kind == "dup":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rewrite(good, path, raw={"param.0.npy": Path(good).read_bytes()[:10]})
        match = "duplicate"
    elif kind == "notjson":
        rewrite(good, path, arrays={"mlpx": np.frombuffer(b"{not json", np.uint8)})
        match = "not valid JSON"
    else:
        rewrite(good, path, drop=["param.0"],
                raw={"param.0.npy": b"\x93NUMPY\x03\x00" + b"\0" * 20})
        match = "version"
    with pytest.raises(ModelFileError, match=match):
        io.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such model file"):
        io.load(tmp_path / "nope.npz")


# ------------------------------------------------------------------------ atomic writes
def test_save_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "m.npz"
    MLP([3, 2], seed=0).save(path)
    os.chmod(path, 0o640)
    second = MLP([3, 2], seed=1)
    second.save(path)
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]
    assert (os.stat(path).st_mode & 0o777) == 0o640
    np.testing.assert_array_equal(params_np(io.load(path))[0], params_np(second)[0])


def test_a_failing_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    first = MLP([3, 4, 2], seed=0)
    first.save(path)
    calls = []
    real = np.lib.format.write_array

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(*args, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="No space left"):
        MLP([3, 4, 2], seed=1).save(path)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # the temporary file is removed
    np.testing.assert_array_equal(params_np(io.load(path))[0], params_np(first)[0])


_KILL_CHILD = """
import sys, os, numpy as np
from mlpx import MLP
path, where = sys.argv[1], sys.argv[2]
model = MLP([8, 64, 64, 4], seed=1)

def block():
    print("ready", flush=True)
    sys.stdin.read()          # wait here until the test kills us

if where == "write":          # in the middle of writing the parameter arrays
    real, calls = np.lib.format.write_array, []
    def write_array(*a, **k):
        calls.append(1)
        if len(calls) == 4:
            block()
        return real(*a, **k)
    np.lib.format.write_array = write_array
else:                         # written, about to be made durable and renamed
    real_fsync = os.fsync
    os.fsync = lambda fd: block()
model.save(path)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_save_killed_midway_leaves_the_previous_file_intact(tmp_path, where):
    path = tmp_path / "model.npz"
    first = MLP([8, 64, 64, 4], seed=0)
    first.save(path)
    before = Path(path).read_bytes()
    returncode = run_and_kill(_KILL_CHILD, [str(path), where], cwd=ROOT, timeout=120)
    assert returncode == -signal.SIGKILL
    leftovers = [p for p in os.listdir(tmp_path) if p != "model.npz"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.npz.")  # killed midway
    assert Path(path).read_bytes() == before
    np.testing.assert_array_equal(params_np(io.load(path))[0], params_np(first)[0])


# ------------------------------------------------------------------------ limits (issue 11)
# Files that ask the reader for far more memory or time than they honestly contain. The
# memory cases run in a child process limited to 512 MiB of address space and a few
# seconds, and must end in a ModelFileError (today's reader ran out of memory on them).
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402

LIMIT_AS = 512 * 2 ** 20

_LIMITED_CHILD = """
import json, resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import mlpx
from mlpx import io
path, how = sys.argv[1], sys.argv[2]
try:
    if how == "load":
        io.load(path)
    elif how == "checkpoint":
        io.load_checkpoint(path)
    else:
        io.read_checkpoint(path)
    out = {{"outcome": "loaded"}}
except io.ModelFileError as exc:
    out = {{"outcome": "ModelFileError", "message": str(exc)}}
except BaseException as exc:
    out = {{"outcome": type(exc).__name__, "message": traceback.format_exc()[-2000:]}}
print("RESULT " + json.dumps(out), flush=True)
"""


def load_limited(path, how="load", timeout=20):
    """Load ``path`` in a child process with a 512 MiB address-space limit.

    Returns ``(outcome, message, seconds)``; outcome is ``"loaded"``, ``"ModelFileError"``,
    another exception's name, ``"timeout"`` or ``"died"``.
    """
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    code = _LIMITED_CHILD.format(limit=LIMIT_AS)
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(path), how], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", "", time.perf_counter() - start
    seconds = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[7:])
            return out["outcome"], out.get("message", ""), seconds
    return "died", proc.stderr[-2000:], seconds


def npy_bytes(arr):
    buf = __import__("io").BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_header(dtype, shape):
    buf = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _local(name, data, crc):
    n = name.encode()
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, len(data),
                       len(data), len(n), 0) + n


def _central(name, size, crc, offset, extra=b""):
    n = name.encode()
    return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, crc, size, size,
                       len(n), len(extra), 0, 0, 0, 0, offset) + n + extra


def _end(count, cd_size, cd_offset):
    out = b""
    if count > 0xFFFE:
        rec_pos = cd_offset + cd_size
        out += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count,
                           cd_size, cd_offset)
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, rec_pos, 1)
    return out + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF),
                             min(count, 0xFFFF), cd_size, cd_offset, 0)


def build_zip(members):
    """A stored zip of ``[(name, bytes)]`` written byte by byte (fast, no zipfile)."""
    body, central, offset = [], [], 0
    for name, data in members:
        crc = zlib.crc32(data)
        head = _local(name, data, crc)
        body += [head, data]
        central.append(_central(name, len(data), crc, offset))
        offset += len(head) + len(data)
    cd = b"".join(central)
    return b"".join(body) + cd + _end(len(members), len(cd), offset)


def members_of(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def meta_bytes(meta):
    return npy_bytes(np.frombuffer(json.dumps(meta).encode(), np.uint8))


def small_model_file(tmp_path, name="m.npz"):
    return MLP([3, 4, 2], seed=0).save(tmp_path / name)


def test_parameters_of_layers_without_units_are_counted(tmp_path):
    path = small_model_file(tmp_path)
    meta = meta_of(path)
    meta["config"] = {"class": "Sequential", "layers": [{"name": "PReLU"}],
                      "n_features": 250_000_000, "loss": "mse", "output": "identity",
                      "alpha": 0.0, "dtype": "float32"}
    meta["params"] = [{"key": "param.0", "layer": 0, "name": "alpha",
                       "shape": [2], "dtype": "float32"}]
    bad = tmp_path / "prelu.npz"
    bad.write_bytes(build_zip([("mlpx.npy", meta_bytes(meta)),
                               ("param.0.npy", npy_bytes(np.zeros(2, np.float32)))]))
    assert bad.stat().st_size < 3000
    outcome, message, _ = load_limited(bad)
    # A Sequential of one PReLU for 250,000,000 features: 1 GB of slopes in a 2 KB file.
    # Today: not counted (no 'units'), built, MemoryError.
    assert outcome == "ModelFileError", message
    assert "config needs shape (250000000,)" in message and str(bad) in message


def test_overlapping_members_are_refused_before_reading(tmp_path):
    meta = meta_of(small_model_file(tmp_path))
    n, payload = 120, 4 * 2 ** 20
    # Physical layout: mlpx, then LH_0 H_0 LH_1 H_1 ... LH_159 H_159 payload, where LH_i
    # is member i's local header, H_i its .npy header, and member i's data runs from H_i
    # to the end of the payload: 120 members of 4 MiB each in a 4 MiB file.
    names = [f"slot.x.{i}.npy" for i in range(n)]
    chain, sizes, crcs = b"\0" * payload, [0] * n, [0] * n
    for i in reversed(range(n)):
        data = npy_header(np.uint8, (len(chain),)) + chain
        sizes[i], crcs[i] = len(data), zlib.crc32(data)
        chain = _local(names[i], data, crcs[i]) + data
    meta_member = meta_bytes(meta)
    mcrc = zlib.crc32(meta_member)
    blob = _local("mlpx.npy", meta_member, mcrc) + meta_member
    central = [_central("mlpx.npy", len(meta_member), mcrc, 0)]
    offset = len(blob)
    for i in range(n):
        central.append(_central(names[i], sizes[i], crcs[i], offset))
        offset += len(_local(names[i], b"", 0)) + sizes[i] - sizes[i + 1] \
            - len(_local(names[i + 1], b"", 0)) if i + 1 < n else 0
    cd = b"".join(central)
    path = tmp_path / "overlap.npz"
    path.write_bytes(blob + chain + cd + _end(n + 1, len(cd), len(blob) + len(chain)))
    assert path.stat().st_size < 5 * 2 ** 20
    with zipfile.ZipFile(path) as zf:  # a valid zip: every member reads back, CRC and all
        assert zf.read(names[-2])[-payload:] == b"\0" * payload
    outcome, message, _ = load_limited(path)
    # Today: every member is read before the table is checked (480 MiB here).
    assert outcome == "ModelFileError", message
    assert "overlap" in message and str(path) in message


def test_a_table_naming_one_array_many_times_is_refused(tmp_path):
    # 1,001 square Dense layers whose table entries all name the same 0.46 MiB array:
    # today each entry is counted, the model built (463 MB) and the array copied in.
    w = np.zeros((340, 340), np.float32)
    good = small_model_file(tmp_path)
    meta = meta_of(good)
    meta["config"] = {"class": "Sequential", "n_features": 340,
                      "layers": [{"name": "Dense", "units": 340, "bias": False}] * 1001,
                      "loss": "mse", "output": "identity", "alpha": 0.0, "dtype": "float32"}
    meta["params"] = [{"key": "param.0", "layer": i, "name": "W", "shape": [340, 340],
                       "dtype": "float32"} for i in range(1001)]
    path = tmp_path / "same.npz"
    path.write_bytes(build_zip([("mlpx.npy", meta_bytes(meta)),
                                ("param.0.npy", npy_bytes(w))]))
    assert path.stat().st_size < 0.6 * 2 ** 20
    outcome, message, _ = load_limited(path)
    assert outcome == "ModelFileError", message
    assert "'param.0' is named more than once" in message and str(path) in message


def test_a_zip64_size_beyond_the_file_is_refused(tmp_path):
    # A 2 KB file whose zip64 entry declares 2**44 bytes, and whose .npy header declares
    # as many: today a bare MemoryError.
    good = small_model_file(tmp_path)
    n = 2 ** 44 - len(npy_header(np.uint8, (2 ** 44,)))
    data = npy_header(np.uint8, (n,))
    assert len(data) + n == 2 ** 44
    body, central, offset = [], [], 0
    meta_member = npy_bytes(members_of(good)["mlpx"])
    for name, raw in (("mlpx.npy", meta_member), ("param.0.npy", data)):
        crc = zlib.crc32(raw)
        head = _local(name, raw, crc)
        extra = b""
        size = len(raw)
        if name == "param.0.npy":
            extra = struct.pack("<2H2Q", 1, 16, 2 ** 44, 2 ** 44)
            size = 0xFFFFFFFF
        n = name.encode()
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, 0, 0, 0x21, crc,
                                   size, size, len(n), len(extra), 0, 0, 0, 0, offset)
                       + n + extra)
        body += [head, raw]
        offset += len(head) + len(raw)
    cd = b"".join(central)
    path = tmp_path / "zip64.npz"
    path.write_bytes(b"".join(body) + cd + _end(2, len(cd), offset))
    assert path.stat().st_size < 3000
    outcome, message, _ = load_limited(path)
    assert outcome == "ModelFileError", message
    assert "17592186044416 bytes" in message and "run past" in message


def _with_meta(tmp_path, name, edit, base=None):
    base = base or trained().save(tmp_path / "base.npz")
    meta = meta_of(base)
    edit(meta)
    members = members_of(base)
    members.pop("mlpx")
    path = tmp_path / name
    path.write_bytes(build_zip([("mlpx.npy", meta_bytes(meta))]
                               + [(f"{k}.npy", npy_bytes(a)) for k, a in members.items()]))
    return path


def _nest(depth):
    obj = 0
    for _ in range(depth):
        obj = {"a": obj}
    return obj


@pytest.mark.parametrize("name,edit,match", [
    # Today: RecursionError (the config is decoded recursively).
    ("deep", lambda m: m["config"].__setitem__("init", _nest(500)), "nested more than 64"),
    # Today: OverflowError.
    ("inf_width", lambda m: m.__setitem__("config", {
        "class": "Sequential", "layers": [{"name": "PReLU"}], "n_features": float("inf"),
        "loss": "mse", "output": "identity", "alpha": 0.0, "dtype": "float32"}),
     "non-finite number inf"),
    ("big_width", lambda m: m.__setitem__("config", {
        "class": "Sequential", "layers": [{"name": "PReLU"}], "n_features": 10 ** 400,
        "loss": "mse", "output": "identity", "alpha": 0.0, "dtype": "float32"}),
     "beyond 2\\*\\*53"),
    ("inf_alpha", lambda m: m["config"].__setitem__("alpha", float("inf")), "non-finite"),
    ("nan_dropout", lambda m: m["config"].__setitem__("dropout", float("nan")), "non-finite"),
    ("big_int_entry", lambda m: m["config"].__setitem__("alpha", {"$int": "9" * 400}),
     "damaged|cannot be rebuilt"),
    # Today: TypeError (np.dtype of an unknown name).
    ("dtype", lambda m: m["config"].__setitem__("init", {"$array": [1], "dtype": "nosuch"}),
     "bad array dtype 'nosuch'"),
    ("shape_str", lambda m: m["params"][0].__setitem__("shape", ["4", 8]), "malformed shape"),
    ("table_not_dicts", lambda m: m.__setitem__("params", [1, 2]), "malformed"),
    ("class_list", lambda m: m["config"].__setitem__("class", ["MLP"]), "'class'"),
    ("sizes_float", lambda m: m["config"].__setitem__("layer_sizes", [4, 8.5, 8, 3]),
     "int >= 1"),
])
def test_hostile_metadata_is_a_model_file_error(tmp_path, name, edit, match):
    path = _with_meta(tmp_path, f"{name}.npz", edit)
    with pytest.raises(ModelFileError, match=match) as info:
        io.load(path)
    assert type(info.value) is ModelFileError and str(path) in str(info.value)


def test_json_nested_beyond_the_parser_is_a_model_file_error(tmp_path):
    good = small_model_file(tmp_path)
    meta = meta_of(good)
    meta["config"]["init"] = "DEEP"
    text = json.dumps(meta).replace('"DEEP"', '{"a": ' * 5000 + "0" + "}" * 5000)
    path = tmp_path / "deeper.npz"
    path.write_bytes(build_zip([("mlpx.npy", npy_bytes(np.frombuffer(text.encode(), np.uint8)))]
                               + [(f"{k}.npy", npy_bytes(a))
                                  for k, a in members_of(good).items() if k != "mlpx"]))
    with pytest.raises(ModelFileError, match="nested") as info:
        io.load(path)
    assert str(path) in str(info.value)


def test_a_malformed_random_state_is_a_model_file_error(tmp_path):
    ck = io.save_checkpoint(trained(), tmp_path / "ck.npz")
    philox = {"bit_generator": "Philox",
              "state": {"counter": {"$array": [0], "dtype": "uint64"},
                        "key": {"$array": [1], "dtype": "uint64"}},
              "buffer": {"$array": [0], "dtype": "uint64"}, "buffer_pos": 4,
              "has_uint32": 0, "uinteger": 0}
    sfc = {"bit_generator": "SFC64", "state": {"state": {"$array": [1], "dtype": "uint64"}},
           "has_uint32": 0, "uinteger": 0}
    for i, state in enumerate([philox, sfc, {"bit_generator": "PCG64"}, [1, 2], "PCG64"]):
        path = _with_meta(tmp_path, f"rng{i}.npz",
                          lambda m: m["training"]["rng"].__setitem__("train", state), base=ck)
        # Today: IndexError for the short Philox arrays; the short SFC64 state loads.
        with pytest.raises(ModelFileError, match="random state|bit generator") as info:
            io.read_checkpoint(path)
        assert str(path) in str(info.value)
        with pytest.raises(ModelFileError):
            io.load_checkpoint(path)


@pytest.mark.parametrize("where,edit,match", [
    ("history", lambda t: t.__setitem__("history", {"history": {"loss": [[1]]},
                                                    "epochs": [1]}), "damaged"),
    ("history_inf", lambda t: t["history"].__setitem__("epochs", [float("inf")]), "damaged"),
    ("epoch", lambda t: t.__setitem__("epoch", 10 ** 400), "epoch"),
    ("step", lambda t: t["optimizer"].__setitem__("step", "3"), "step"),
    ("slots", lambda t: t["optimizer"].__setitem__("slots", {"m": "slot.m.0"}), "slot"),
    ("slots_missing", lambda t: t["optimizer"].__setitem__("slots", {}), "does not describe"),
    ("fit", lambda t: t.__setitem__("fit", [1]), "fit entry"),
    ("fit_rng", lambda t: t.__setitem__("fit", {"start_rng": None, "start_epoch": 0}),
     "bit generator"),
    ("optimizer", lambda t: t["optimizer"].__setitem__("config", {"name": "adam",
                                                                  "lr": [1]}),
     "optimizer cannot be rebuilt"),
])
def test_a_damaged_training_section_is_a_model_file_error(tmp_path, where, edit, match):
    ck = io.save_checkpoint(trained(), tmp_path / "ck.npz")
    path = _with_meta(tmp_path, f"{where}.npz", lambda m: edit(m["training"]), base=ck)
    with pytest.raises(ModelFileError, match=match) as info:
        io.read_checkpoint(path)
    assert type(info.value) is ModelFileError and str(path) in str(info.value)


def test_only_regular_files_are_opened(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory, not a regular file") as info:
        io.load(tmp_path)  # today: IsADirectoryError
    assert str(tmp_path) in str(info.value)
    with pytest.raises(ModelFileError, match="directory"):
        io.read_checkpoint(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ModelFileError, match="character device"):
            io.load("/dev/zero")
        link = tmp_path / "zero.npz"
        link.symlink_to("/dev/zero")
        with pytest.raises(ModelFileError, match="character device"):
            io.load(link)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    outcome, message, _ = load_limited(fifo, timeout=20)  # today: blocks forever
    assert outcome == "ModelFileError", message
    assert "FIFO" in message


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_an_unreadable_file_is_a_model_file_error(tmp_path):
    path = small_model_file(tmp_path)
    os.chmod(path, 0)
    with pytest.raises(ModelFileError, match="cannot be opened"):
        io.load(path)


def test_many_tiny_extra_members_are_refused_quickly(tmp_path):
    good = small_model_file(tmp_path)
    base = [(f"{k}.npy", npy_bytes(a)) for k, a in members_of(good).items()]
    tiny = npy_bytes(np.zeros(0, np.float32))
    many = tmp_path / "many.npz"
    many.write_bytes(build_zip(base + [(f"slot.x.{i}.npy", tiny) for i in range(100_000)]))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="holds 100005 members.*at most 65000"):
        io.load(many)  # today: about 20 s, then loaded
    assert time.perf_counter() - start < 1.0
    some = tmp_path / "some.npz"
    some.write_bytes(build_zip(base + [(f"slot.x.{i}.npy", tiny) for i in range(20_000)]))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="does not describe.*20000 in all"):
        io.load(some)  # today: loaded (extra slot.* members were never questioned)
    assert time.perf_counter() - start < 2.0


# ------------------------------------------------------------------------ for fit(resume=...)
def test_read_checkpoint_returns_everything_resume_needs(tmp_path):
    model = trained()
    ck = io.save_checkpoint(model, tmp_path / "ck.npz")
    got = io.read_checkpoint(ck)
    assert set(got) == {"meta", "arrays", "training", "path"}
    assert got["path"] == str(ck) and got["meta"]["kind"] == "checkpoint"
    keys = [e["key"] for e in got["meta"]["params"]]
    slots = [k for ks in got["training"]["optimizer"]["slots"].values() for k in ks]
    assert sorted(got["arrays"]) == sorted(keys + slots)
    for key, p in zip(keys, params_np(model)):
        np.testing.assert_array_equal(got["arrays"][key], p)
    assert got["training"]["epoch"] == 2
    assert io.best_params(got) is None
    rng = io.rng_from_state(got["training"]["rng"]["train"])
    assert rng.integers(2**62) == model._train_rng.integers(2**62)
    with pytest.raises(ModelFileError, match="model file, not a checkpoint"):
        io.read_checkpoint(model.save(tmp_path / "m.npz"))


def test_read_checkpoint_refuses_a_config_larger_than_the_file(tmp_path):
    # A forged checkpoint: the config says 300,000 features, the weights are 4 wide.
    ck = io.save_checkpoint(trained(), tmp_path / "ck.npz")
    path = _with_meta(tmp_path, "wide.npz",
                      lambda m: m["config"]["layer_sizes"].__setitem__(0, 300_000), base=ck)
    with pytest.raises(ModelFileError, match=r"config needs shape \(300000, 8\)"):
        io.read_checkpoint(path)


def test_check_checkpoint_matches_refuses_without_changing_the_model(tmp_path):
    X = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    y = np.arange(12) % 2
    model = Sequential([Dense(4), Dense(2)], seed=0)
    model.fit(X, y, epochs=1, verbose=0)
    ckpt = io.read_checkpoint(io.save_checkpoint(model, tmp_path / "ck.npz"))
    io.check_checkpoint_matches(model, ckpt)  # the model it came from
    io.check_checkpoint_matches(model, ckpt, n_features=5)
    fresh = Sequential([Dense(4), Dense(2)], seed=0)  # unbuilt: takes the width
    io.check_checkpoint_matches(fresh, ckpt, n_features=5)
    assert not fresh.built
    with pytest.raises(ValueError, match="for 5 features, but the data have 6"):
        io.check_checkpoint_matches(fresh, ckpt, n_features=6)
    wide = Sequential([Dense(4), Dense(2)], n_features=6, seed=0)  # built for another width
    with pytest.raises(ValueError, match=r"different model.*\['n_features'\]"):
        io.check_checkpoint_matches(wide, ckpt)
    big = Sequential([Dense(1600), Dense(2)], seed=0)  # another architecture, unbuilt
    with pytest.raises(ValueError, match=r"different model.*\['layers'\]"):
        io.check_checkpoint_matches(big, ckpt, n_features=5)
    assert not big.built and big.params == []
    mlp = MLP([5, 3, 2], seed=0)
    with pytest.raises(ValueError, match="different model"):
        io.check_checkpoint_matches(mlp, ckpt)


_RESUME_CHILD = """
import sys, numpy as np
from mlpx import Sequential, Dense
model = Sequential([Dense(1600), Dense(2)], seed=0)
X = np.zeros((4, 6), np.float32)
try:
    model.fit(X, np.arange(4) % 2, epochs=1, verbose=0, resume=sys.argv[1])
except ValueError as exc:
    print("REFUSED", type(exc).__name__, model.built, exc)
"""


@pytest.mark.xfail(strict=True, reason="the training loop must call "
                   "io.check_checkpoint_matches before building (the lead's Trainer)")
def test_resume_checks_the_checkpoint_before_building(tmp_path):
    # An honest 1 MB checkpoint of a one-layer model for 300,000 features; the model being
    # resumed is unbuilt. Today it is built for 300,000 features (1.9 GB) before the
    # configs are compared, and stays built after the refusal.
    X = np.zeros((4, 300_000), np.float32)
    src = Sequential([Dense(1)], seed=0, n_features=300_000)
    src.compile("sgd")
    ck = io.save_checkpoint(src, tmp_path / "ck.npz")
    del X, src
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    code = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_AS}, " \
           f"{LIMIT_AS}))\n" + _RESUME_CHILD
    proc = subprocess.run([sys.executable, "-c", code, str(ck)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "REFUSED ValueError False" in proc.stdout, proc.stderr[-2000:]


# ------------------------------------------------------------------------ fuzzing
_FUZZ_CHILD = r'''
import io as _stdio, json, math, os, random, resource, struct, sys, time, traceback, zlib
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
import numpy as np
from mlpx import io

seed, n_cases, out_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bases = sys.argv[4:]
rnd = random.Random(seed)


def members(data):
    """Parse a well-formed base archive into [(name, bytes)] (our own layout)."""
    out, pos = [], 0
    while data[pos:pos + 4] == b"PK\x03\x04":
        nlen, elen = struct.unpack_from("<2H", data, pos + 26)
        name = data[pos + 30:pos + 30 + nlen].decode()
        start = pos + 30 + nlen + elen
        size = struct.unpack_from("<L", data, pos + 18)[0]
        if size == 0xFFFFFFFF:  # zip64 local header (force_zip64): sizes in the extra
            size = struct.unpack_from("<Q", data, pos + 30 + nlen + 4)[0]
        out.append((name, data[start:start + size]))
        pos = start + size
    return out


def build(items):
    body, central, offset = [], [], 0
    for name, data in items:
        n, crc = name.encode(), zlib.crc32(data)
        head = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0x21, crc, len(data),
                           len(data), len(n), 0) + n
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, crc,
                                   len(data), len(data), len(n), 0, 0, 0, 0, 0, offset) + n)
        body += [head, data]
        offset += len(head) + len(data)
    cd = b"".join(central)
    return b"".join(body) + cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(items),
                                             len(items), len(cd), offset, 0)


def npy(header_dict, body):
    buf = _stdio.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header_dict)
    return buf.getvalue() + body


INTERESTING = [0, 1, -1, 2, 3, 2 ** 31, 2 ** 32 - 1, 2 ** 53, 2 ** 63, 10 ** 400, 300_000,
               250_000_000, float("inf"), float("-inf"), float("nan"), 0.5, "x", "", None,
               True, [], {{}}, [1, 2], {{"$int": "9" * 99}}, {{"$int": "x"}},
               {{"$array": [1, 2], "dtype": "uint64"}},
               {{"$array": [[1], [2, 3]], "dtype": "float64"}},
               {{"$array": [1], "dtype": "nosuch"}}, {{"name": "Dense", "units": 10 ** 9}},
               {{"name": "PReLU"}}, {{"name": "Maxout", "units": 3, "k": 10 ** 6}}]


def nodes(obj):
    stack = [((), obj)]
    while stack:
        path, o = stack.pop()
        yield path
        if len(path) > 20:
            continue
        if isinstance(o, dict):
            stack.extend((path + (k,), v) for k, v in o.items())
        elif isinstance(o, list):
            stack.extend((path + (i,), v) for i, v in enumerate(o))


def mutate_json(items):
    items = list(items)
    i = next(j for j, (name, _) in enumerate(items) if name == "mlpx.npy")
    arr = np.load(_stdio.BytesIO(items[i][1]))
    meta = json.loads(arr.tobytes())
    for _ in range(rnd.randint(1, 3)):
        paths = [p for p in nodes(meta) if p]
        p = rnd.choice(paths)
        parent = meta
        for k in p[:-1]:
            parent = parent[k]
        r = rnd.random()
        if r < 0.15 and isinstance(parent, dict):
            del parent[p[-1]]
        elif r < 0.3 and isinstance(parent, list):
            parent.append(parent[p[-1]])  # duplicate an entry (table, layers, lists)
        elif r < 0.4:
            value = 0
            for _ in range(rnd.choice([10, 70, 900])):
                value = [value]
            parent[p[-1]] = value
        else:
            parent[p[-1]] = rnd.choice(INTERESTING)
    blob = json.dumps(meta, allow_nan=True).encode()
    buf = _stdio.BytesIO()
    np.lib.format.write_array(buf, np.frombuffer(blob, np.uint8))
    items[i] = ("mlpx.npy", buf.getvalue())
    return items


def mutate_npy(items):
    items = list(items)
    i = rnd.randrange(len(items))
    name, data = items[i]
    arr = np.load(_stdio.BytesIO(data))
    shape = rnd.choice([(2_000_000_000, 2), (0,), (1,), arr.shape[::-1], arr.shape + (1,),
                        (2 ** 40,), (arr.size + 1,)])
    descr = rnd.choice([arr.dtype.str, "<f8", "<i4", "|u1", "|O", "<U3", "|V8",
                        [("a", "<f4")], ">f4"])
    body = arr.tobytes()
    if rnd.random() < 0.5:
        body = body[:rnd.randint(0, len(body))]
    items[i] = (name, npy({{"descr": descr, "fortran_order": rnd.random() < 0.3,
                           "shape": shape}}, body))
    return items


def mutate_members(items):
    items = list(items)
    r = rnd.random()
    if r < 0.3 and len(items) > 1:
        del items[rnd.randrange(1, len(items))]
    elif r < 0.6:
        name, data = rnd.choice(items)
        items.append((rnd.choice(["slot.m.0.npy", "best.0.npy", "param.99.npy", name,
                                  "x.npy", "../x.npy", "mlpx.npy"]), data))
    else:
        rnd.shuffle(items)
    return items


def mutate_zip(data):
    data = bytearray(data)
    sigs = [b"PK\x01\x02", b"PK\x03\x04", b"PK\x05\x06"]
    sig = rnd.choice(sigs)
    spots = []
    at = data.find(sig)
    while at >= 0:
        spots.append(at)
        at = data.find(sig, at + 1)
    if not spots:
        return bytes(data)
    at = rnd.choice(spots)
    fields = {{b"PK\x01\x02": [(10, "H"), (16, "L"), (20, "L"), (24, "L"), (28, "H"),
                               (30, "H"), (42, "L")],
              b"PK\x03\x04": [(8, "H"), (18, "L"), (22, "L"), (26, "H"), (28, "H")],
              b"PK\x05\x06": [(8, "H"), (10, "H"), (12, "L"), (16, "L"), (20, "H")]}}[sig]
    off, fmt = rnd.choice(fields)
    if at + off + struct.calcsize(fmt) > len(data):
        return bytes(data)
    old = struct.unpack_from("<" + fmt, data, at + off)[0]
    top = 0xFFFF if fmt == "H" else 0xFFFFFFFF
    new = rnd.choice([0, 1, top, top - 1, old + 1, max(old - 1, 0), old * 2 & top,
                      rnd.randint(0, top)])
    struct.pack_into("<" + fmt, data, at + off, new & top)
    return bytes(data)


def mutate_bytes(data):
    data = bytearray(data)
    r = rnd.random()
    if r < 0.4:
        for _ in range(rnd.randint(1, 8)):
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
    elif r < 0.6:
        del data[rnd.randint(0, len(data)):]
    elif r < 0.8:
        at = rnd.randrange(len(data))
        data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 64)))
    else:
        a = rnd.randrange(len(data))
        b = min(len(data), a + rnd.randint(1, 4096))
        at = rnd.randrange(len(data))
        data[at:at] = data[a:b]
    return bytes(data)


originals = [(p, open(p, "rb").read()) for p in bases]
failures, worst = [], 0.0
counts = {{}}
for case in range(n_cases):
    base, data = originals[case % len(originals)]
    kind = rnd.choice(["json", "json", "npy", "members", "zip", "bytes"])
    items = members(data)
    if kind == "json":
        data = build(mutate_json(items))
    elif kind == "npy":
        data = build(mutate_npy(items))
    elif kind == "members":
        data = build(mutate_members(items))
    elif kind == "zip":
        data = mutate_zip(build(items) if rnd.random() < 0.5 else data)
    else:
        data = mutate_bytes(data)
    path = os.path.join(out_dir, "case.npz")
    with open(path, "wb") as f:
        f.write(data)
    for how in (["load", "read_checkpoint", "load_checkpoint"] if "ck" in base else ["load"]):
        start = time.perf_counter()
        try:
            getattr(io, how)(path)
            outcome = "loaded"
        except io.ModelFileError as exc:
            outcome = "refused"
            if path not in str(exc):
                failures.append((case, kind, how, "message lacks the path: " + str(exc)[:300]))
        except BaseException:
            outcome = "error"
            failures.append((case, kind, how, traceback.format_exc()[-1500:]))
        worst = max(worst, time.perf_counter() - start)
        counts[outcome] = counts.get(outcome, 0) + 1
print("RESULT " + json.dumps({{"failures": failures[:5], "n_failures": len(failures),
                              "worst": worst, "counts": counts}}), flush=True)
'''


def test_fuzzed_model_files_load_or_raise_model_file_error(tmp_path):
    """Seeded random and structure-aware mutations of valid model files and checkpoints.

    Every outcome must be a successful load or a ModelFileError naming the file, within
    512 MiB of address space and a time limit.
    """
    X = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    y = np.arange(20) % 3
    model = MLP([4, 5, 3], activation="prelu", seed=0)
    model.fit(X, y, epochs=2, batch_size=5, optimizer="adam", verbose=0,
              validation_split=0.25, early_stopping={"patience": 5},
              checkpoint=tmp_path / "ck.npz")
    maxout = MLP([4, 3, 2], activation="maxout", maxout_k=2, dtype="float64", seed=1)
    seq = Sequential([Dense(3, bias=False), PReLU(), Dropout(0.2), Maxout(2, 3), Dense(2)],
                     n_features=4, seed=2)
    bases = [str(tmp_path / "ck.npz"), model.save(tmp_path / "m1.npz"),
             maxout.save(tmp_path / "m2.npz"), seq.save(tmp_path / "m3.npz")]
    assert io.read_checkpoint(bases[0])["training"]["fit"] is not None
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    code = _FUZZ_CHILD.format(limit=LIMIT_AS)
    proc = subprocess.run([sys.executable, "-c", code, "20261129", "300", str(work), *bases],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[0][7:])
    assert result["n_failures"] == 0, result["failures"]
    assert result["worst"] < 2.0, result
    # The mutations reach past the first checks: some files load, many are refused.
    assert result["counts"].get("loaded", 0) > 10 and result["counts"]["refused"] > 100
