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
    np.testing.assert_array_equal(params_np(io.load(path))[0], params_np(io.load_checkpoint(path))[0])


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
