"""Training that survives crashes and fails loudly: checkpoints, resume, NaN/inf, OOM.

Property tests that belong here live beside the code they test: softmax rows sum to 1
and are shift invariant (tests/test_activations.py), losses stay finite for logits up to
+-1e4 in float32 (tests/test_losses.py), the IDX reader never crashes on fuzzed bytes
(tests/test_data_idx.py), save/load round-trips any model the builders make
(tests/test_io.py).
"""

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from mlpx import MLP, NonFiniteLossError, _backend, _fast, io
from mlpx.io import ModelFileError
from mlpx.training import DeviceMemoryError, NonFiniteLossWarning

from .helpers import params_np, run_and_kill

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------ a small run
def make_data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((150, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y


def make_model(backend="numpy"):
    return MLP([6, 16, 16, 3], dropout=0.2, seed=3, backend=backend)


# Dropout, shuffling, a validation split, a learning-rate schedule, Adam's slots and
# early stopping with best-weight restoring: every piece of state a resume must carry.
FIT = dict(epochs=6, batch_size=16, verbose=0, validation_split=0.2,
           optimizer={"name": "adam", "lr": {"name": "cosine", "total_steps": 40,
                                             "lr": 0.02}},
           early_stopping={"patience": 50})


class Interrupt(Exception):
    pass


def interrupt_at(epoch):
    def cb(model, e, logs):
        if e == epoch:
            raise Interrupt
    return cb



def snapshot(model):
    h = model.history_
    return {
        "params": params_np(model),
        "slots": {k: [_backend.to_numpy(a).copy() for a in v]
                  for k, v in model.optimizer_state_["slots"].items()},
        "step": model.optimizer_state_["step"],
        "epoch": model.epoch_,
        "history": {k: v for k, v in h.history.items() if k != "seconds"},
        "epochs": list(h.epochs), "best_epoch": h.best_epoch, "stopped": h.stopped_early,
        "rng": model.train_rng.bit_generator.state,
    }


def assert_same(a, b, exact=True):
    assert a.keys() == b.keys()
    for key in a:
        if key in ("params",):
            for x, y in zip(a[key], b[key], strict=True):
                if exact:
                    np.testing.assert_array_equal(x, y)
                else:
                    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
        elif key == "slots":
            assert a[key].keys() == b[key].keys()
            for name in a[key]:
                for x, y in zip(a[key][name], b[key][name], strict=True):
                    if exact:
                        np.testing.assert_array_equal(x, y)
                    else:
                        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
        elif key == "history" and not exact:
            for k in a[key]:
                np.testing.assert_allclose(a[key][k], b[key][k], rtol=1e-4)
        else:
            assert a[key] == b[key], key


def uninterrupted(backend="numpy", **kw):
    X, y = make_data()
    model = make_model(backend)
    model.fit(X, y, **{**FIT, **kw})
    return snapshot(model)


# ------------------------------------------------------------------------ resume
@pytest.mark.parametrize("stop_at,every", [(1, 1), (3, 1), (5, 1), (4, 3), (6, 2)])
def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path, stop_at, every):
    X, y = make_data()
    ck = tmp_path / "ck.npz"
    model = make_model()
    with pytest.raises(Interrupt):
        model.fit(X, y, checkpoint=ck, checkpoint_every=every,
                  callbacks=[interrupt_at(stop_at)], **FIT)
    # The checkpoint holds the last multiple of `every` before the interruption.
    last = (stop_at - 1) // every * every
    assert (io.load_checkpoint(ck).epoch_ if ck.exists() else 0) == last
    fresh = make_model()
    if ck.exists():
        history = fresh.fit(X, y, checkpoint=ck, checkpoint_every=every, resume=ck, **FIT)
    else:  # interrupted before the first checkpoint: start again
        history = fresh.fit(X, y, checkpoint=ck, checkpoint_every=every, **FIT)
    assert history is fresh.history_
    assert_same(snapshot(fresh), uninterrupted())


def test_resume_on_each_backend(backend, tmp_path):
    X, y = make_data()
    ck = tmp_path / "ck.npz"
    with pytest.raises(Interrupt):
        make_model(backend).fit(X, y, checkpoint=ck, callbacks=[interrupt_at(4)], **FIT)
    fresh = make_model(backend)
    fresh.fit(X, y, resume=ck, **FIT)
    # Bit for bit on the CPU backends; CuPy within the documented tolerance.
    assert_same(snapshot(fresh), uninterrupted(backend), exact=backend.name != "cupy")


def test_resume_can_extend_a_finished_run(tmp_path):
    X, y = make_data()
    ck = tmp_path / "ck.npz"
    make_model().fit(X, y, checkpoint=ck, **FIT)
    assert io.load_checkpoint(ck).epoch_ == 6
    again = make_model()
    again.fit(X, y, resume=ck, **FIT)  # nothing left to do: same result
    assert_same(snapshot(again), uninterrupted())
    longer = make_model()
    longer.fit(X, y, resume=ck, **{**FIT, "epochs": 9})
    assert_same(snapshot(longer), uninterrupted(epochs=9))


def test_resume_into_a_model_made_by_load_checkpoint(tmp_path):
    X, y = make_data()
    ck = tmp_path / "ck.npz"
    with pytest.raises(Interrupt):
        make_model().fit(X, y, checkpoint=ck, callbacks=[interrupt_at(3)], **FIT)
    model = io.load_checkpoint(ck)
    model.fit(X, y, resume=ck, **FIT)
    assert_same(snapshot(model), uninterrupted())


def test_a_numpy_checkpoint_resumes_on_another_backend(tmp_path):
    # With the NumPy fast step (mlpx._fast) off, NumPy and array-api-strict run the same
    # generic step on the same numbers, so the hand-over can be checked bit for bit.
    X, y = make_data()
    ck = tmp_path / "ck.npz"
    with _fast.disabled():
        with pytest.raises(Interrupt):
            make_model().fit(X, y, checkpoint=ck, callbacks=[interrupt_at(3)], **FIT)
        strict = make_model("array_api_strict")
        strict.fit(X, y, resume=ck, **FIT)
        assert strict.backend.name == "array_api_strict"
        assert_same(snapshot(strict), uninterrupted())


def test_checkpoints_are_written_every_n_epochs_and_at_the_end(tmp_path):
    X, y = make_data()
    ck = tmp_path / "ck.npz"
    seen = []

    def look(model, epoch, logs):  # runs before that epoch's checkpoint is written
        seen.append(io.load_checkpoint(ck).epoch_ if ck.exists() else None)

    make_model().fit(X, y, checkpoint=ck, checkpoint_every=2, callbacks=[look],
                     **{**FIT, "epochs": 5})
    assert seen == [None, None, 2, 2, 4]
    assert io.load_checkpoint(ck).epoch_ == 5
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]


def test_early_stopping_state_survives_a_resume(tmp_path):
    X, y = make_data()
    fit = {**FIT, "epochs": 30, "early_stopping": {"patience": 2, "monitor": "val_loss"},
           "optimizer": {"name": "sgd", "lr": 0.5}}
    ref = make_model()
    ref.fit(X, y, **fit)
    assert ref.history_.stopped_early and ref.history_.best_epoch < ref.epoch_
    stop_at = ref.history_.best_epoch + 1  # inside the patience window
    ck = tmp_path / "ck.npz"
    with pytest.raises(Interrupt):
        make_model().fit(X, y, checkpoint=ck, callbacks=[interrupt_at(stop_at + 1)], **fit)
    fresh = make_model()
    fresh.fit(X, y, resume=ck, checkpoint=ck, **fit)
    assert_same(snapshot(fresh), snapshot(ref))


_KILL_CHILD = """
import sys
from tests.test_safety import FIT, make_data, make_model
ck, kill_epoch, kill_batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
X, y = make_data()
model = make_model()
step, count = model.train_step, [0, 0]

def train_step(*args, **kw):
    out = step(*args, **kw)
    if model.epoch_ != count[0]:
        count[:] = [model.epoch_, 0]
    count[1] += 1
    if model.epoch_ == kill_epoch - 1 and count[1] == kill_batch:
        print("ready", flush=True)      # in the middle of epoch kill_epoch
        sys.stdin.read()                 # wait to be killed
    return out

model.train_step = train_step
model.fit(X, y, checkpoint=ck, checkpoint_every=1, **FIT)
print("finished", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_a_run_killed_mid_epoch_resumes_in_a_new_process_bit_for_bit(tmp_path):
    X, y = make_data()
    ck = tmp_path / "ck.npz"
    returncode = run_and_kill(_KILL_CHILD, [str(ck), "4", "3"], cwd=ROOT, timeout=300)
    assert returncode == -signal.SIGKILL
    assert io.load_checkpoint(ck).epoch_ == 3  # epoch 4 was cut short after batch 3
    fresh = make_model()
    fresh.fit(X, y, checkpoint=ck, resume=ck, **FIT)
    assert_same(snapshot(fresh), uninterrupted())
    assert io.load_checkpoint(ck).epoch_ == 6


def test_resume_refuses_what_does_not_match(tmp_path):
    X, y = make_data()
    ck = tmp_path / "ck.npz"
    with pytest.raises(Interrupt):
        make_model().fit(X, y, checkpoint=ck, callbacks=[interrupt_at(3)], **FIT)
    before = ck.read_bytes()
    model = make_model()
    weights = params_np(model)
    with pytest.raises(ValueError, match="data differ"):
        model.fit(X * 1.01, y, resume=ck, **FIT)
    with pytest.raises(ValueError, match="batch_size: 16 in the checkpoint, 8 now"):
        model.fit(X, y, resume=ck, **{**FIT, "batch_size": 8})
    with pytest.raises(ValueError, match="n_samples"):
        model.fit(X[:100], y[:100], resume=ck, **FIT)
    with pytest.raises(ValueError, match="optimizer"):
        model.fit(X, y, resume=ck, **{**FIT, "optimizer": "sgd"})
    with pytest.raises(ValueError, match="early_stopping"):
        model.fit(X, y, resume=ck, **{**FIT, "early_stopping": None})
    with pytest.raises(ValueError, match="different model.*layer_sizes"):
        MLP([6, 8, 3], seed=3).fit(X, y, resume=ck, **FIT)
    with pytest.raises(ModelFileError, match="not a checkpoint"):
        model.fit(X, y, resume=model.save(tmp_path / "m.npz"), **FIT)
    with pytest.raises(FileNotFoundError):
        model.fit(X, y, resume=tmp_path / "nope.npz", **FIT)
    with pytest.raises(ValueError, match="does not exist"):
        model.fit(X, y, checkpoint=tmp_path / "no" / "ck.npz", **FIT)
    with pytest.raises(ValueError, match="'checkpoint_every' parameter"):
        model.fit(X, y, checkpoint=ck, checkpoint_every=0, **FIT)
    for a, b in zip(params_np(model), weights):  # all refused before changing anything
        np.testing.assert_array_equal(a, b)
    assert model.epoch_ == 0 and ck.read_bytes() == before


# ------------------------------------------------------------------------ NaN / inf
def diverging():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)).astype(np.float32)
    y = X @ np.array([[1.0], [2.0], [-1.0]], np.float32)
    # Plain SGD at lr=0.5 without shuffling diverges in epoch 3, batch 7 of 8.
    fit = dict(batch_size=8, shuffle=False, optimizer={"name": "sgd", "lr": 0.5}, verbose=0)
    return X, y, fit


def test_nonfinite_loss_names_epoch_and_batch_and_keeps_the_weights_before_it():
    X, y, fit = diverging()
    model = MLP([3, 16, 1], loss="mse", seed=0)
    with pytest.raises(NonFiniteLossError,
                       match=r"loss became inf in epoch 3, batch 7 of 8.*Lower the learning "
                             r"rate \(now 0.5\)") as info:
        model.fit(X, y, epochs=10, **fit)
    err = info.value
    assert (err.epoch, err.batch, err.n_batches, err.what) == (3, 7, 8, "loss")
    assert model.epoch_ == 2 and model.history_.epochs == [1, 2]
    # The kept weights are exactly those after 2 epochs and 6 more batches.
    ref = MLP([3, 16, 1], loss="mse", seed=0)
    ref.fit(X, y, epochs=2, **fit)
    for j in range(6):
        ref.train_step(X[8 * j:8 * j + 8], y[8 * j:8 * j + 8])
    for a, b in zip(params_np(model), params_np(ref)):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer_state_["step"] == ref.optimizer_state_["step"] == 22
    # ... and the next batch is indeed the one that breaks.
    with np.errstate(all="ignore"):
        loss, _ = model.train_step(X[48:56], y[48:56])
    assert not np.isfinite(float(loss))


def test_nonfinite_stop_mode_warns_and_returns_the_history(tmp_path):
    X, y, fit = diverging()
    ck = tmp_path / "ck.npz"
    model = MLP([3, 16, 1], loss="mse", seed=0)
    with pytest.warns(NonFiniteLossWarning, match="epoch 3, batch 7 of 8"):
        history = model.fit(X, y, epochs=10, on_nonfinite="stop", checkpoint=ck, **fit)
    assert history.stopped_early and "epoch 3, batch 7" in history.stop_reason
    assert history.epochs == [1, 2]
    assert all(np.isfinite(p).all() for p in params_np(model))
    # The bad epoch never reached the checkpoint: it still holds the last good epoch.
    assert io.load_checkpoint(ck).epoch_ == 2
    assert all(np.isfinite(p).all() for p in params_np(io.load(ck)))
    with pytest.raises(ValueError, match="'on_nonfinite' parameter"):
        model.fit(X, y, on_nonfinite="ignore", **fit)


class _PoisonOnMarkedBatch:
    """Wrap train_step: when the batch holds the marked row, make one weight infinite
    (the loss of that batch stays finite). ``once`` makes the fault non-reproducible,
    like a flaky device."""

    def __init__(self, model, marker, once=False):
        self.model, self.marker, self.once = model, marker, once
        self.step, self.fired = model.train_step, 0

    def __call__(self, xb, yb, wb=None, **kw):
        out = self.step(xb, yb, wb, **kw)
        hit = bool(np.any(np.all(np.asarray(xb) == self.marker, axis=1)))
        if hit and self.model.epoch_ == 1 and not (self.once and self.fired):
            self.fired += 1
            params = self.model.params
            params[0] = params[0].copy()
            params[0][0, 0] = np.inf
            self.model.assign_params(params)
        return out


@pytest.mark.parametrize("once", [False, True])
def test_nonfinite_weights_are_caught_even_when_the_loss_is_finite(once):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3)).astype(np.float32)
    y = rng.integers(0, 2, 40)
    model = MLP([3, 4, 2], seed=0)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    start = params_np(model)
    model.train_step = _PoisonOnMarkedBatch(model, X[39], once=once)  # the last batch
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(X, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    err = info.value
    assert err.epoch == 2 and err.what == "weights"
    assert all(np.isfinite(p).all() for p in params_np(model))
    if once:
        # The replay could not reproduce it: the start of the epoch is kept.
        assert "weights of epoch 1 were restored" in str(err) and err.batch is None
        for a, b in zip(params_np(model), start):
            np.testing.assert_array_equal(a, b)
    else:
        assert "batch 5 of 5" in str(err) and err.batch == 5
        assert model.optimizer_state_["step"] == 5 + 4  # before the last batch


def test_nonfinite_fallback_names_the_first_bad_recorded_loss():
    X, y, fit = diverging()
    model = MLP([3, 16, 1], loss="mse", seed=0)
    real, calls = model.train_step, []

    def flaky(xb, yb, wb=None, **kw):  # the replay (later calls) never fails
        calls.append(1)
        loss, z = real(xb, yb, wb, **kw)
        if len(calls) == 4:
            loss = loss * np.float32(np.nan)
        return loss, z

    model.train_step = flaky
    with pytest.raises(NonFiniteLossError, match="epoch 1 \\(batch 4 of 8.*epoch 0 were "
                                                 "restored") as info:
        model.fit(X, y, epochs=1, **{**fit, "optimizer": {"name": "sgd", "lr": 0.01}})
    assert info.value.batch == 4
    for a, b in zip(params_np(model), params_np(MLP([3, 16, 1], loss="mse", seed=0))):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ device memory
class _FakeCupyOOM(MemoryError):
    """Looks like cupy.cuda.memory.OutOfMemoryError to mlpx._backend (no GPU here)."""


_FakeCupyOOM.__module__ = "cupy.cuda.memory"
_FakeCupyOOM.__name__ = "OutOfMemoryError"


def test_device_out_of_memory_says_requested_free_and_a_batch_size_that_fits(monkeypatch):
    X, y = make_data()
    model = make_model()

    def boom(*args, **kw):
        raise _FakeCupyOOM("Out of memory allocating 1,073,741,824 bytes (allocated so "
                           "far: 123 bytes).")

    model.train_step = boom
    monkeypatch.setattr(_backend, "device_memory_info", lambda b: (10_000, 80_000_000))
    with pytest.raises(DeviceMemoryError) as info:
        model.fit(X, y, epochs=1, batch_size=64, verbose=0)
    err = info.value
    assert isinstance(err, MemoryError) and isinstance(err.__cause__, _FakeCupyOOM)
    assert err.requested == 1_073_741_824 and err.free == 10_000
    assert err.total == 80_000_000 and err.batch_size == 64
    # Estimate: 4 bytes * (6 inputs + 3 * 99 layer outputs) = 1,212 bytes per sample, and
    # 80% of the free 10,000 bytes holds 6 of them.
    assert err.suggested_batch_size == 6
    msg = str(err)
    assert "1,073,741,824 bytes (1.00 GiB)" in msg and "10,000 bytes" in msg
    assert "batch_size=6 should fit" in msg
    monkeypatch.setattr(_backend, "device_memory_info", lambda b: (100, 80_000_000))
    with pytest.raises(DeviceMemoryError, match="Not even a single sample"):
        model.fit(X, y, epochs=1, batch_size=64, verbose=0)


def test_other_errors_are_not_dressed_up_as_device_memory_errors():
    assert not _backend.is_out_of_memory(MemoryError("host"))
    assert not _backend.is_out_of_memory(RuntimeError("cudaErrorMemoryAllocation"))
    assert _backend.is_out_of_memory(_FakeCupyOOM("x"))
    assert _backend.device_memory_info(_backend.resolve_backend("numpy")) is None
    X, y = make_data()
    model = make_model()

    def boom(*args, **kw):
        raise MemoryError("host memory")

    model.train_step = boom
    with pytest.raises(MemoryError, match="host memory") as info:
        model.fit(X, y, epochs=1, verbose=0)
    assert not isinstance(info.value, DeviceMemoryError)


@pytest.mark.gpu
@pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device")
def test_real_cupy_out_of_memory_raises_quickly_with_the_numbers():  # pragma: no cover
    import cupy

    pool = cupy.get_default_memory_pool()
    X = np.random.default_rng(0).standard_normal((4096, 512)).astype(np.float32)
    model = MLP([512, 4096, 4096, 10], backend="cupy", seed=0)
    old = pool.get_limit()
    pool.set_limit(size=model.n_params * 4 * 4 + X.nbytes + 8 * 2**20)
    try:
        with pytest.raises(DeviceMemoryError, match="batch_size=4096") as info:
            model.fit(X, np.arange(4096) % 10, epochs=1, batch_size=4096, verbose=0)
    finally:
        pool.set_limit(size=old)
    assert info.value.requested and info.value.free is not None


# ------------------------------------------------------------------------ determinism
def test_same_seed_same_result_bit_for_bit_on_cpu_backends():
    for backend in ("numpy", "array_api_strict"):
        assert_same(uninterrupted(backend), uninterrupted(backend))


@pytest.mark.gpu
@pytest.mark.skipif(not _backend.cuda_available(), reason="no CUDA device")
def test_same_seed_on_cupy_within_the_documented_tolerance():  # pragma: no cover
    a, b = uninterrupted("cupy"), uninterrupted("cupy")
    assert_same(a, b, exact=False)  # docs/safety.md: rtol 1e-4, atol 1e-5


# ------------------------------------------------------------------------ the command line
# A constant learning rate: the interruption is simulated by a shorter first run, and a
# cosine decay's length depends on --epochs.
CLI = ["train", "--quiet", "--hidden", "16", "--n-train", "400", "--batch-size", "64",
       "--dropout", "0.1", "--seed", "5", "--schedule", "constant"]


def test_cli_checkpoint_and_resume_match_an_uninterrupted_run(tmp_path, capsys):
    from mlpx import cli

    ck, a, b = tmp_path / "ck.npz", tmp_path / "a.npz", tmp_path / "b.npz"
    # "Interrupted" after 2 of 3 epochs: the checkpoint holds epoch 2.
    assert cli.main([*CLI, "--epochs", "2", "--checkpoint", str(ck)]) == 0
    assert io.load_checkpoint(ck).epoch_ == 2
    assert cli.main([*CLI, "--epochs", "3", "--checkpoint", str(ck), "--resume", str(ck),
                     "--save", str(a)]) == 0
    assert io.load_checkpoint(ck).epoch_ == 3
    assert cli.main([*CLI, "--epochs", "3", "--save", str(b)]) == 0
    lines = [line.split("|")[:2] for line in capsys.readouterr().out.splitlines()
             if line.startswith("test accuracy")]
    assert len(lines) == 3 and lines[1] == lines[2]
    for x, y in zip(params_np(io.load(a)), params_np(io.load(b)), strict=True):
        np.testing.assert_array_equal(x, y)


def test_cli_checkpoint_errors(tmp_path, capsys):
    from mlpx import cli

    code = cli.main([*CLI, "--epochs", "1", "--checkpoint", str(tmp_path / "no" / "ck")])
    assert code == 2 and "--checkpoint: folder" in capsys.readouterr().err
    code = cli.main([*CLI, "--epochs", "1", "--resume", str(tmp_path / "missing.npz")])
    assert code == 2 and "--resume: no checkpoint file" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"\x80\x04junk")
    code = cli.main([*CLI, "--epochs", "1", "--resume", str(tmp_path / "bad.npz")])
    assert code == 1 and "looks like a Python pickle" in capsys.readouterr().err
    code = cli.main([*CLI, "--epochs", "1", "--checkpoint-every", "0"])
    assert code == 2


def test_resume_from_a_hand_made_checkpoint_is_load_checkpoint_then_fit(tmp_path):
    X, y = make_data()
    model = make_model()
    model.fit(X, y, **{**FIT, "epochs": 2, "early_stopping": None})
    ck = io.save_checkpoint(model, tmp_path / "hand.npz")  # no fit state in it
    fit = {**FIT, "epochs": 2, "early_stopping": None, "optimizer": None}
    a = io.load_checkpoint(ck)
    a.fit(X, y, **fit)
    b = make_model()
    b.fit(X, y, resume=ck, checkpoint=tmp_path / "next.npz", **fit)
    assert b.epoch_ == 4 and io.load_checkpoint(tmp_path / "next.npz").epoch_ == 4
    sa, sb = snapshot(a), snapshot(b)
    # The resumed history goes on from the checkpoint's; a plain fit starts a new one.
    assert sb.pop("epochs") == [1, 2, 3, 4] and sa.pop("epochs") == [3, 4]
    assert {k: v[2:] for k, v in sb.pop("history").items()} == sa.pop("history")
    assert_same(sb, sa)
