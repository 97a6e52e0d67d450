"""The training engine (mlpx/trainer.py): staged steps, hooks, all-or-nothing steps,
sample weights, one training thread per model, and resume checks before any change."""

import os
import signal
import threading

import numpy as np
import pytest

from mlpx import MLP, Sequential, _backend, _fast
from mlpx.layers import ActivationLayer, Dense, Dropout
from mlpx.trainer import DeviceData, StepHook, Trainer, normalise_weights
from tests.helpers import params_np


def _data(n=64, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    return X, y


def _model(backend="numpy", **kw):
    return MLP([5, 8, 3], backend=backend, seed=1, **kw)


def _trainer_run(model, X, y, hooks=(), epochs=2, batch_size=8, shuffle=True):
    xp = model.backend.xp
    Xd = model.to_device_X(X)
    Yd, labels = model.to_device_y(y, X.shape[0])
    trainer = Trainer(model, batch_size=batch_size, shuffle=shuffle, hooks=list(hooks))
    return trainer.run(DeviceData(Xd, Yd, labels, xp=xp), epochs)


class _Identity(StepHook):
    needs_gradients = True

    def __init__(self):
        self.calls = 0

    def on_gradients(self, grads, ctx):
        self.calls += 1
        return grads


def test_gradient_hook_stage_equals_the_fused_step(backend):
    X, y = _data()
    staged, fused = _model(backend.name), _model(backend.name)
    for m in (staged, fused):
        m.compile({"name": "adam", "lr": 0.01})
    hook = _Identity()
    with _fast.disabled():  # the generic fused step: the same operations, in one call
        _trainer_run(fused, X, y)
    _trainer_run(staged, X, y, hooks=[hook])
    assert hook.calls == 16
    for a, b in zip(params_np(staged), params_np(fused)):
        assert a.tobytes() == b.tobytes()


def test_gradient_hook_output_is_what_the_update_uses(backend):
    class Zero(StepHook):
        needs_gradients = True

        def on_gradients(self, grads, ctx):
            xp = backend.xp
            return [xp.zeros_like(g) for g in grads]

    X, y = _data()
    model = _model(backend.name).compile({"name": "sgd", "lr": 0.5})
    before = params_np(model)
    _trainer_run(model, X, y, hooks=[Zero()])
    assert model.optimizer_state_["step"] == 16
    for a, b in zip(params_np(model), before):
        np.testing.assert_array_equal(a, b)


def test_before_step_hook_sets_this_steps_hyper_parameters_and_skips(backend):
    class Steer(StepHook):
        def before_step(self, ctx, trainer):
            if ctx.index == 0:
                ctx.skip = True
            ctx.hyper["lr"] = 1e-30  # far below half an ulp: no movement at all
            ctx.alpha = 5.0          # nor with this L2

    X, y = _data()
    model = _model(backend.name).compile({"name": "sgd", "lr": 0.5})
    before = params_np(model)
    _trainer_run(model, X, y, hooks=[Steer()], shuffle=False)
    assert model.optimizer_state_["step"] == 2 * 7  # the first batch of each epoch skipped
    for a, b in zip(params_np(model), before):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-25)


@pytest.mark.parametrize("fast", [True, False])
def test_sigint_during_a_step_is_held_until_the_step_is_complete(fast):
    X, y = _data()
    model = _model().compile({"name": "adam", "lr": 0.01})
    ref = _model().compile({"name": "adam", "lr": 0.01})

    class Interrupt(StepHook):
        def before_step(self, ctx, trainer):
            if ctx.index == 3:
                os.kill(os.getpid(), signal.SIGINT)  # arrives while this step runs

    def path():
        return _fast.disabled() if not fast else _nothing()

    with path(), pytest.raises(KeyboardInterrupt):
        _trainer_run(model, X, y, hooks=[Interrupt()], shuffle=False)
    assert model.optimizer_state_["step"] == 4  # steps 1 to 4, each whole
    Yd, _ = ref.to_device_y(y, X.shape[0])
    with path():
        for j in range(4):
            ref.train_step(X[8 * j:8 * j + 8], Yd[8 * j:8 * j + 8])
    for a, b in zip(params_np(model), params_np(ref)):
        assert a.tobytes() == b.tobytes()
    for a, b in zip(model.optimizer_state_["slots"]["m"], ref.optimizer_state_["slots"]["m"]):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("layer_index", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("where", ["forward", "backward"])
def test_an_exception_inside_a_generic_step_changes_nothing(backend, where, layer_index):
    X, y = _data()
    model = Sequential([Dense(8), ActivationLayer("tanh"), Dropout(0.2), Dense(6),
                        Dense(3)], n_features=5, backend=backend.name,
                       seed=0).compile("adam")
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    before = params_np(model)
    slots = {k: [_backend.to_numpy(a).copy() for a in v]
             for k, v in model.optimizer_state_["slots"].items()}
    step = model.optimizer_state_["step"]
    layer = model.layers[layer_index]
    real = getattr(layer, where)

    def boom(*args, **kw):
        raise KeyboardInterrupt

    setattr(layer, where, boom)
    try:
        with _fast.disabled(), pytest.raises(KeyboardInterrupt):
            model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    finally:
        setattr(layer, where, real)
    assert model.optimizer_state_["step"] == step
    for a, b in zip(params_np(model), before):
        assert a.tobytes() == b.tobytes()
    for k, v in model.optimizer_state_["slots"].items():
        for a, b in zip(v, slots[k]):
            assert _backend.to_numpy(a).tobytes() == b.tobytes()


def test_a_batch_whose_weights_are_all_zero_is_skipped_not_a_divergence(backend):
    X, y = _data()
    w = np.ones(64)
    w[:8] = 0.0  # the first batch (no shuffling) carries no weight
    model = _model(backend.name)
    hist = model.fit(X, y, epochs=2, batch_size=8, shuffle=False, sample_weight=w,
                     optimizer="sgd", verbose=0)
    assert np.all(np.isfinite(hist["loss"]))
    assert model.optimizer_state_["step"] == 2 * 7
    # the other batches train exactly as without the first batch
    ref = _model(backend.name)
    ref.fit(X[8:], y[8:], epochs=2, batch_size=8, shuffle=False, optimizer="sgd", verbose=0)
    for a, b in zip(params_np(model), params_np(ref)):
        assert a.tobytes() == b.tobytes()


def test_huge_sample_weights_train_as_their_scaled_copies(backend):
    X, y = _data()
    w = np.random.default_rng(3).uniform(0.5, 1.5, size=64)
    huge = w * 2.0 ** 120  # each weight fits float32, a batch sum of 8 does not
    a = _model(backend.name)
    ha = a.fit(X, y, epochs=2, batch_size=8, sample_weight=huge, optimizer="sgd", verbose=0)
    b = _model(backend.name)
    hb = b.fit(X, y, epochs=2, batch_size=8, sample_weight=w, optimizer="sgd", verbose=0)
    assert ha["loss"] == hb["loss"] and ha["loss"][0] > 0.1
    for p, q in zip(params_np(a), params_np(b)):
        assert p.tobytes() == q.tobytes()


def test_normalise_weights_scales_by_a_power_of_two():
    xp = _backend.resolve_backend("numpy").xp
    w = np.array([3.0, 0.0, 12.5], dtype=np.float32)
    out = normalise_weights(w, xp)
    assert 1.0 <= out.max() < 2.0
    assert out.max() == np.float32(12.5 / 8) and out.dtype == np.float32  # scaled by 2**-3
    np.testing.assert_array_equal(out * 8.0, w)
    tiny = np.array([1e-30, 3e-31], dtype=np.float64)  # scaled up just as exactly
    up = normalise_weights(tiny, xp)
    assert 1.0 <= up.max() < 2.0 and up[1] / up[0] == tiny[1] / tiny[0]
    ones = np.array([1.0, 1.5])
    assert normalise_weights(ones, xp) is ones


def test_a_second_thread_cannot_fit_or_predict_while_one_trains():
    X, y = _data()
    model = _model()
    started, release = threading.Event(), threading.Event()
    errors = []

    def hold(m, epoch, logs):
        started.set()
        release.wait(10)

    def train():
        try:
            model.fit(X, y, epochs=1, batch_size=8, callbacks=[hold], verbose=0)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=train)
    t.start()
    try:
        assert started.wait(10)
        with pytest.raises(RuntimeError, match="another thread"):
            model.fit(X, y, epochs=1, verbose=0)
        with pytest.raises(RuntimeError, match="another thread"):
            model.predict(X)
    finally:
        release.set()
        t.join(10)
    assert not errors
    assert model.optimizer_state_["step"] == 8
    model.predict(X)  # free again
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)


def test_a_callback_may_predict_from_the_training_thread():
    X, y = _data()
    model = _model()
    seen = []
    model.fit(X, y, epochs=2, verbose=0,
              callbacks=[lambda m, e, logs: seen.append(m.predict(X[:3]).shape)])
    assert seen == [(3,), (3,)]


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_predict_batch_size_must_be_a_positive_int(bad):
    X, _ = _data()
    with pytest.raises(ValueError, match="'batch_size' parameter"):
        _model().predict(X, batch_size=bad)


def test_resume_refuses_another_width_before_building(tmp_path):
    X, y = _data()
    path = str(tmp_path / "ck.npz")
    Sequential([Dense(4), ActivationLayer("relu"), Dense(3)], seed=0).fit(
        X, y, epochs=1, verbose=0, checkpoint=path)
    other = Sequential([Dense(4), ActivationLayer("relu"), Dense(3)], seed=0)
    with pytest.raises(ValueError, match="features"):
        other.fit(np.zeros((10, 7), np.float32), y[:10], epochs=1, verbose=0, resume=path)
    assert not other.built
    wrong = Sequential([Dense(6), ActivationLayer("relu"), Dense(3)], seed=0)
    with pytest.raises(ValueError, match="different model"):
        wrong.fit(X, y, epochs=1, verbose=0, resume=path)
    assert not wrong.built


def test_trainer_checks_its_parameters():
    from mlpx import InvalidParameterError

    model = _model()
    with pytest.raises(RuntimeError, match="compiled model"):
        Trainer(model, batch_size=8)
    model.compile("sgd")
    for kw, name in ((dict(batch_size=0), "batch_size"), (dict(shuffle="yes"), "shuffle"),
                     (dict(on_nonfinite="later"), "on_nonfinite"),
                     (dict(hooks=[object()]), "hooks")):
        with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of Trainer"):
            Trainer(model, **{"batch_size": 8, **kw})
    order = Trainer(model, batch_size=8, shuffle=lambda n: np.arange(n)[::-1])
    assert order.epoch_order(4)[0].tolist() == [3, 2, 1, 0]


def test_skipped_batches_count_in_neither_the_loss_nor_the_accuracy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    w = np.ones(100)
    w[:50] = 0.0  # the first five batches of ten carry no weight and are skipped
    model = MLP([4, 8, 2], seed=0)
    h = model.fit(X, y, epochs=1, batch_size=10, shuffle=False, sample_weight=w,
                  optimizer="sgd", verbose=0)
    ref = MLP([4, 8, 2], seed=0)
    hr = ref.fit(X[50:], y[50:], epochs=1, batch_size=10, shuffle=False, optimizer="sgd",
                 verbose=0)
    assert h["loss"] == hr["loss"] and h["accuracy"] == hr["accuracy"]


def test_the_replay_starts_from_the_weights_a_callback_left():
    # A callback scales the weights after epoch 1; epoch 2 then diverges. The replay must
    # start from the scaled weights (those epoch 2 started from) and name the bad batch.
    from mlpx import NonFiniteLossError

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    y = X @ np.array([[1.0], [2.0], [-1.0]], dtype=np.float32)

    before = []

    def blow_up(model, epoch, logs):
        if epoch == 1:
            before.extend(params_np(model))
            model.set_params([p * 10 for p in model.params])

    model = MLP([3, 16, 1], loss="mse", seed=0)
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                  optimizer={"name": "sgd", "lr": 0.05}, callbacks=[blow_up])
    assert info.value.epoch == 2 and info.value.batch is not None
    kept = params_np(model)
    assert all(np.isfinite(p).all() for p in kept)
    # the kept weights descend from the scaled ones, not from those before the callback
    assert np.linalg.norm(kept[0]) > 5 * np.linalg.norm(before[0])


def test_the_replay_uses_the_epochs_own_order_from_a_callable_shuffle():
    from mlpx import NonFiniteLossError

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    X[13] = np.inf  # one poisoned sample (put on the "device" as is, unchecked)
    y = rng.integers(0, 2, 80)
    model = MLP([4, 8, 2], seed=0).compile("sgd")
    order_rng = np.random.default_rng(1)
    calls = []

    def order(n):
        calls.append(1)
        return order_rng.permutation(n)

    Xd = X
    Yd, labels = model.to_device_y(y, 80)
    expected_batch = int(np.flatnonzero(np.random.default_rng(1).permutation(80) == 13)[0]
                         // 8) + 1
    trainer = Trainer(model, batch_size=8, shuffle=order)
    with pytest.raises(NonFiniteLossError) as info:
        trainer.run(DeviceData(Xd, Yd, labels, xp=model.backend.xp), 1)
    assert calls == [1]  # the replay did not ask for a new order
    assert info.value.batch == expected_batch


def test_numpy_gather_equals_generic_and_reuses_its_buffers():
    # DeviceData.batch on NumPy gathers into buffers kept from batch to batch; with fast
    # paths off it takes xp.take: the same rows, and a step's batch never aliases X.
    if not _fast.enabled():
        pytest.skip("fast paths are switched off (MLPX_FAST=0)")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    Y = rng.random((50, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    W = rng.random(50).astype(np.float32)
    xp = _backend.resolve_backend("numpy").xp
    data = DeviceData(X, Y, labels, W, xp=xp)
    rows = rng.permutation(50)
    rows[:3] = [-1, -50, 49]  # negative indices count from the end, as in take
    seen = []
    for start, stop in ((0, 16), (16, 32), (32, 50), (48, 50)):
        fast = data.batch(rows, rows[start:stop], start, stop)
        with _fast.disabled():
            slow = data.batch(rows, rows[start:stop], start, stop)
        for a, b, src in zip(fast, slow, (X, Y, W, labels)):
            assert a.dtype == b.dtype == src.dtype
            np.testing.assert_array_equal(a, b)
            assert not np.shares_memory(a, src)
        seen.append(fast[0])
    assert np.shares_memory(seen[0], seen[1])  # one buffer, no allocation per batch
    assert not np.shares_memory(slow[0], seen[0])


def test_numpy_gather_refuses_out_of_range_rows_as_take_does():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    xp = _backend.resolve_backend("numpy").xp
    data = DeviceData(X, X.copy(), None, xp=xp)
    for bad in ([0, 6], [-7, 1], [0, 1, 2, 3, 4, 6]):
        idx = np.array(bad)
        assert not data.gathers_in_place(idx)
        with pytest.raises(IndexError):
            data.batch(idx, idx[-2:], len(bad) - 2, len(bad))
    order = np.array([0, 1, 2, 3, 4, 6])  # checked whole: every batch takes xp.take
    first = data.batch(order, order[:2], 0, 2)
    np.testing.assert_array_equal(first[0], X[:2])
    assert not np.shares_memory(first[0], data.batch(order, order[2:4], 2, 4)[0])
    assert data.gathers_in_place(np.array([5, -6]))
