"""Streaming data: a memory-mapped X is read and converted one batch at a time.

The results equal those of the same data in memory bit for bit (same batches, same
order, same values), and a ``uint8`` memory map whose float32 copy would not fit under
a memory limit trains and predicts under that limit (a subprocess with RLIMIT_AS).
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mlpx
from mlpx import _backend
from mlpx.trainer import HostRows, is_streamed
from tests.helpers import assert_array


def _memmap(path, data):
    m = np.lib.format.open_memmap(path, mode="w+", dtype=data.dtype, shape=data.shape)
    m[...] = data
    m.flush()
    del m
    return np.load(path, mmap_mode="r")


def _data(n=300, d=12, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, d), dtype=np.uint8)
    w = rng.standard_normal((d, k))
    y = np.argmax((X / 255.0 - 0.5) @ w, axis=1)
    return X, y


def _curves(hist):
    return {k: v for k, v in hist.history.items() if k != "seconds"}


def _model(backend, d, k, **kw):
    return mlpx.MLP([d, 16, k], backend=backend, seed=3, **kw)


def test_memmap_is_streamed_and_arrays_are_not(tmp_path):
    X, _ = _data()
    Xm = _memmap(tmp_path / "x.npy", X)
    assert is_streamed(Xm)
    assert is_streamed(Xm[10:20])
    assert not is_streamed(X)
    assert not is_streamed(np.asarray(Xm))


@pytest.mark.parametrize("split", [0.0, 0.25])
def test_memmap_fit_equals_in_memory_fit_bit_for_bit(tmp_path, backend, split):
    X, y = _data()
    Xm = _memmap(tmp_path / "x.npy", X)
    runs = []
    for data in (X, Xm):
        model = _model(backend, X.shape[1], 3)
        hist = model.fit(data, y, epochs=3, batch_size=32, validation_split=split,
                         optimizer="adam", verbose=0)
        runs.append((model, hist))
    (a, ha), (b, hb) = runs
    assert _curves(ha) == _curves(hb)
    for pa, pb in zip(a.params, b.params):
        assert_array(pb, _backend.to_numpy(pa), backend=backend, rtol=0, atol=0)
    assert_array(b.predict_proba(Xm), _backend.to_numpy(a.predict_proba(X)),
                 backend=backend, rtol=0, atol=0)
    assert_array(b.predict(Xm, batch_size=50), _backend.to_numpy(a.predict(X)),
                 backend=backend, rtol=0, atol=0)
    assert b.evaluate(Xm, y) == a.evaluate(X, y)


def test_memmap_validation_data_and_unshuffled(tmp_path, backend):
    X, y = _data()
    Xm = _memmap(tmp_path / "x.npy", X)
    Xv, yv = _data(n=50, seed=1)
    Xvm = _memmap(tmp_path / "xv.npy", Xv)
    a = _model(backend, X.shape[1], 3)
    ha = a.fit(X, y, epochs=2, batch_size=64, shuffle=False, validation_data=(Xv, yv),
               verbose=0)
    b = _model(backend, X.shape[1], 3)
    hb = b.fit(Xm, y, epochs=2, batch_size=64, shuffle=False, validation_data=(Xvm, yv),
               verbose=0)
    assert _curves(ha) == _curves(hb)
    for pa, pb in zip(a.params, b.params):
        assert_array(pb, _backend.to_numpy(pa), rtol=0, atol=0)


def test_memmap_fast_path_is_taken(tmp_path, monkeypatch):
    """On NumPy the in-place fast step trains on the converted batches of a memmap."""
    X, y = _data()
    Xm = _memmap(tmp_path / "x.npy", X)
    model = _model("numpy", X.shape[1], 3)
    model.compile("sgd")
    assert model._fast_step is not None
    calls = []
    fast = model._fast_step

    def spy(m, Xb, *args, **kw):
        calls.append((type(Xb), Xb.dtype))
        return fast(m, Xb, *args, **kw)

    model._fast_step = spy
    model.fit(Xm, y, epochs=1, batch_size=100, verbose=0)
    assert calls and all(t is np.ndarray or issubclass(t, np.ndarray) for t, _ in calls)
    assert {dt for _, dt in calls} == {np.dtype("float32")}


def test_memmap_checks_before_training(tmp_path):
    X, y = _data()
    Xf = X.astype(np.float32)
    Xf[290, 3] = np.nan
    Xm = _memmap(tmp_path / "xf.npy", Xf)
    model = _model("numpy", X.shape[1], 3)
    before = [np.array(p) for p in model.params]
    with pytest.raises(ValueError, match=r"NaN or infinity \(rows 0 to 299\)"):
        model.fit(Xm, y, epochs=1, verbose=0)
    for p, q in zip(model.params, before):
        np.testing.assert_array_equal(p, q)
    wrong = _memmap(tmp_path / "w.npy", np.zeros((5, 7), np.uint8))
    with pytest.raises(ValueError, match="has 7 features, but this model expects 12"):
        model.predict(wrong)
    flat = _memmap(tmp_path / "flat.npy", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="must be a 2-D array"):
        model.fit(flat, y[:5], verbose=0)


def test_host_rows_gathers_in_the_batch_order(tmp_path):
    X, _ = _data(n=40, d=3)
    Xm = _memmap(tmp_path / "x.npy", X)
    rows = HostRows(Xm, lambda b: b.astype(np.float32))
    order = np.array([7, 2, 39, 0, 2])
    np.testing.assert_array_equal(rows.host(order), X[order])
    sub = rows.subset([5, 1, 30])
    assert sub.shape == (3, 3)
    np.testing.assert_array_equal(sub.host(slice(0, 2)), X[[5, 1]])
    np.testing.assert_array_equal(sub.host(np.array([2, 0])), X[[30, 5]])
    rows.block_bytes = 3 * 8 * 7  # 7 rows a block
    assert list(rows.blocks())[:2] == [(0, 7), (7, 14)]
    assert rows.sum() == float(X.sum())


_LIMITED = textwrap.dedent("""
    import resource, sys
    import numpy as np
    import mlpx

    path, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    X = np.load(path, mmap_mode="r")
    y = np.asarray(X[:, 0] > 127, dtype=np.int64)   # a 1-column read: small
    # Warm up everything a fit allocates once (BLAS, the fast step's buffers, tqdm).
    warm = mlpx.MLP([d, 32, 2], seed=0)
    warm.fit(np.asarray(X[:512]), y[:512], epochs=1, batch_size=256, verbose=0)
    status = open("/proc/self/status").read()
    vm = int(next(l for l in status.splitlines() if l.startswith("VmSize")).split()[1])
    headroom = 48 << 20
    resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + headroom,) * 2)
    try:
        np.asarray(X, dtype=np.float32)
    except MemoryError:
        print("float32 copy refused")
    else:
        sys.exit("the float32 copy fitted under the limit: the test proves nothing")
    model = mlpx.MLP([d, 32, 2], seed=0)
    hist = model.fit(X, y, epochs=2, batch_size=256, validation_split=0.1,
                     optimizer="adam", verbose=0)
    pred = mlpx.to_numpy(model.predict(X))                 # the whole map, block by block
    print("trained", hist.history["loss"][-1], hist.history["val_accuracy"][-1], pred.shape[0])
""")


def test_uint8_memmap_larger_than_the_memory_limit_trains(tmp_path):
    """A uint8 memory map whose float32 copy exceeds the process's free address space."""
    n, d = 60_000, 784  # 47 MB on disk; its float32 copy takes 188 MB
    path = tmp_path / "big.npy"
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, d))
    rng = np.random.default_rng(0)
    for a in range(0, n, 10_000):
        m[a:a + 10_000] = rng.integers(0, 256, size=(10_000, d), dtype=np.uint8)
    m.flush()
    del m
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MALLOC_ARENA_MAX="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _LIMITED, str(path), str(n), str(d)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "float32 copy refused"
    _, loss, val_acc, n_pred = lines[1].split()
    assert np.isfinite(float(loss)) and 0.0 <= float(val_acc) <= 1.0
    assert int(n_pred) == n


# ---------------------------------------------------------------- iterables of batches
class Batches:
    """A re-iterable source: every pass yields the same (X, y) batches."""

    def __init__(self, X, y, size):
        self.X, self.y, self.size = X, y, size
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        for a in range(0, len(self.y), self.size):
            yield self.X[a:a + self.size], self.y[a:a + self.size]


def test_iterable_of_batches_equals_unshuffled_arrays(backend):
    X, y = _data()
    Xf = X.astype(np.float32) / 255
    a = _model(backend, X.shape[1], 3)
    ha = a.fit(Xf, y, epochs=3, batch_size=50, shuffle=False, optimizer="adam", verbose=0,
               validation_data=(Xf[:40], y[:40]), metrics=["f1_macro"], clip_norm=1.0)
    b = _model(backend, X.shape[1], 3)
    source = Batches(Xf, y, 50)
    hb = b.fit(source, None, epochs=3, optimizer="adam", verbose=0,
               validation_data=(Xf[:40], y[:40]), metrics=["f1_macro"], clip_norm=1.0)
    assert any(k.startswith("val_f1") for k in hb.history)
    assert source.passes == 4  # one checking pass, then one per epoch
    assert _curves(ha) == _curves(hb)
    for pa, pb in zip(a.params, b.params):
        assert_array(pb, _backend.to_numpy(pa), backend=backend, rtol=0, atol=0)


def test_iterable_of_batches_builds_the_model_and_uneven_batches():
    X, y = _data(n=70)
    model = mlpx.Sequential([mlpx.Dense(8), mlpx.ActivationLayer("relu"), mlpx.Dense(3)],
                            seed=0)
    pairs = [(X[:30] / 255, y[:30]), (X[30:70] / 255, y[30:70])]
    hist = model.fit(pairs, None, epochs=2, verbose=0)
    assert model.n_features == 12 and len(hist.epochs) == 2


def test_iterable_of_batches_errors():
    X, y = _data(n=60)
    model = _model("numpy", X.shape[1], 3)
    gen = ((X[a:a + 20], y[a:a + 20]) for a in range(0, 60, 20))
    with pytest.raises(TypeError, match="iterator of batches, which can be read only once"):
        model.fit(gen, None, verbose=0)
    with pytest.raises(ValueError, match="empty iterable of batches"):
        model.fit([], None, verbose=0)
    with pytest.raises(ValueError, match="Batch 2 of the iterable is not an"):
        model.fit([(X[:5], y[:5]), X[5:10]], None, verbose=0)
    with pytest.raises(ValueError, match="X of batch 2 has 3 features"):
        model.fit([(X[:5], y[:5]), (X[5:10, :3], y[5:10])], None, verbose=0)
    with pytest.raises(ValueError, match=r"validation_split=\.\.\.\) does not take"):
        model.fit([(X[:5], y[:5])], None, validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match=r"class_weight=\.\.\.\) does not take"):
        model.fit([(X[:5], y[:5])], None, class_weight="balanced", verbose=0)
    std = _model("numpy", X.shape[1], 3, preprocess="standardize")
    with pytest.raises(ValueError, match="Standardize layer is not adapted"):
        std.fit([(X[:5], y[:5])], None, verbose=0)

    class Shrinking:
        def __init__(self):
            self.n = 0

        def __iter__(self):
            self.n += 1
            yield X[:10], y[:10]
            if self.n == 1:
                yield X[10:20], y[10:20]

    before = [np.array(p) for p in model.params]
    with pytest.raises(ValueError, match="ended after 1 batches in this epoch"):
        model.fit(Shrinking(), None, verbose=0)
    assert not all(np.array_equal(p, q) for p, q in zip(model.params, before))


def test_memmap_checkpoint_resumes_with_the_in_memory_data(tmp_path):
    """The data fingerprint of a memory map (summed block by block) is the array's."""
    X, y = _data()
    Xm = _memmap(tmp_path / "x.npy", X)
    ckpt = str(tmp_path / "run.npz")
    a = _model("numpy", X.shape[1], 3)
    a.fit(Xm, y, epochs=2, batch_size=32, checkpoint=ckpt, verbose=0)
    b = _model("numpy", X.shape[1], 3)
    b.fit(X, y, epochs=2, batch_size=32, resume=ckpt, verbose=0)  # accepted: same data
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_array_equal(pa, pb)
    other = _memmap(tmp_path / "o.npy", np.full_like(X, 7))
    with pytest.raises(ValueError, match="the data differ"):
        _model("numpy", X.shape[1], 3).fit(other, y, epochs=2, batch_size=32, resume=ckpt,
                                            verbose=0)


def test_memmap_adapts_an_input_standardize_layer_as_in_memory(tmp_path, backend):
    X, y = _data()
    Xm = _memmap(tmp_path / "x.npy", X)
    runs = []
    for data in (X, Xm):
        model = _model(backend, X.shape[1], 3, preprocess="standardize")
        model.fit(data, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
        runs.append(model)
    for pa, pb in zip(runs[0].params, runs[1].params):
        assert_array(pb, _backend.to_numpy(pa), backend=backend, rtol=0, atol=0)
