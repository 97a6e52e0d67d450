"""mlpx._fast.jax_step: the compiled JAX step equals the generic step it compiles.

Two models built with the same seed on ``jax.numpy`` (float64, ``jax_enable_x64`` on for
the test only) take the same steps, one through the jitted step and one with fast paths
switched off; parameters, optimizer slots and losses agree to 1e-12. Dropout masks are
drawn on the device from a carried key: fresh for every step, the same for the same
seed, and the same masks the generic code draws from that key.
"""

import contextlib
import copy

import numpy as np
import pytest

from mlpx import MLP, Sequential, _backend, _fast
from mlpx.layers import ActivationLayer, Dense, Dropout, PReLU

from .helpers import assert_array

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
jax_step = pytest.importorskip("mlpx._fast.jax_step")

TOL = dict(rtol=1e-12, atol=1e-12)

OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.1},
    "momentum": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "nesterov_wd": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                    "weight_decay": 1e-3},
    "adam": {"name": "adam", "lr": 1e-2},
    "adam_wd": {"name": "adam", "lr": 1e-2, "weight_decay": 1e-2},
    "adamw": {"name": "adamw", "lr": 1e-2},
    "rmsprop": {"name": "rmsprop", "lr": 1e-3, "momentum": 0.5},
    "sgd_schedule": {"name": "sgd", "lr": {"name": "step", "step_size": 2, "gamma": 0.5,
                                           "lr": 0.2}},
}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _model(opt="adam", *, layers=None, alpha=0.0, dtype="float64", seed=0):
    if layers is None:
        model = MLP([5, 16, 8, 3], activation="tanh", alpha=alpha, seed=seed,
                    backend=jnp, dtype=dtype)
    else:
        model = Sequential(layers, loss="cross_entropy", alpha=alpha, seed=seed,
                           backend=jnp, dtype=dtype).build(5)
    cfg = dict(OPTIMIZERS[opt])
    return model.compile(cfg.pop("name"), **cfg)


def _data(model, n=24, seed=1, weights=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    Y = np.eye(3)[rng.integers(0, 3, n)]
    W = rng.uniform(0.1, 2.0, n) if weights else None
    to = _backend.to_device
    return (to(X, backend=model.backend, dtype=model.dtype),
            to(Y, backend=model.backend, dtype=model.dtype),
            None if W is None else to(W, backend=model.backend, dtype=model.dtype))


def _assert_same(a, b, tol=TOL):
    for p, q in zip(a.params, b.params):
        assert_array(p, np.asarray(q), **tol)
    sa, sb = a.optimizer_state_, b.optimizer_state_
    assert sa["step"] == sb["step"]
    assert sorted(sa["slots"]) == sorted(sb["slots"])
    for name in sa["slots"]:
        for p, q in zip(sa["slots"][name], sb["slots"][name]):
            assert_array(p, np.asarray(q), **tol)


def test_the_policy_takes_jax_models():
    model = _model()
    assert _fast.unsupported_reason(model) is None
    assert isinstance(_fast.select_step(model), jax_step.JaxTrainStep)
    assert _backend.is_jax_namespace(model.backend.xp)
    assert not _backend.is_jax_namespace(_backend.resolve_backend("numpy").xp)
    # the generic-step layers NumPy's step refuses are traced as they are
    prelu = _model(layers=[Dense(8), PReLU(), Dense(3)])
    assert _fast.unsupported_reason(prelu) is None


def test_the_policy_refuses_unknown_layers():
    class Twice(ActivationLayer):
        pass

    model = _model(layers=[Dense(8), Twice("relu"), Dense(3)])
    assert _fast.unsupported_reason(model) == "layer Twice"
    assert _fast.select_step(model) is None


CASES = [("sgd", 0.0, False), ("momentum", 0.0, True), ("nesterov_wd", 1e-2, True),
         ("adam", 0.0, False), ("adam_wd", 1e-2, False), ("adamw", 1e-2, True),
         ("rmsprop", 1e-2, False), ("sgd_schedule", 1e-2, True)]


@pytest.mark.parametrize("opt,alpha,weights", CASES,
                         ids=[f"{o}-alpha{a}-{'w' if w else 'now'}" for o, a, w in CASES])
def test_jitted_step_equals_generic(opt, alpha, weights):
    fast, slow = _model(opt, alpha=alpha), _model(opt, alpha=alpha)
    step = _fast.select_step(fast)
    X, Y, W = _data(fast, weights=weights)
    for _ in range(4):
        loss_f, z_f = step(fast, X, Y, W)
        with _fast.disabled():
            loss_s, z_s = slow.train_step(X, Y, W)
        assert_array(loss_f, np.asarray(loss_s), **TOL)
        assert_array(z_f, np.asarray(z_s), **TOL)
    _assert_same(fast, slow)
    assert step.traces == 1


def test_train_step_and_fit_take_the_jitted_step():
    fast, slow = _model("adam", alpha=1e-3), _model("adam", alpha=1e-3)
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(50, 5)), rng.integers(0, 3, 50)
    h_fast = fast.fit(X, y, epochs=3, batch_size=16, verbose=0)
    with _fast.disabled():
        h_slow = slow.fit(X, y, epochs=3, batch_size=16, verbose=0)
    np.testing.assert_allclose(h_fast.history["loss"], h_slow.history["loss"], **TOL)
    _assert_same(fast, slow)


def test_compiled_once_per_shape():
    model = _model("adam")
    step = _fast.select_step(model)
    X, Y, _ = _data(model, n=50)
    for _ in range(3):  # three epochs of batches of 16, 16, 16 and 2
        for start in range(0, 50, 16):
            assert step(model, X[start:start + 16], Y[start:start + 16]) is not None
    assert step.traces == 2
    # a new learning rate (a schedule) or update number compiles nothing new
    hyper = model.optimizer_.hyper(0) | {"lr": 0.5}
    step(model, X[:16], Y[:16], hyper=hyper)
    assert step.traces == 2
    # sample weights are another signature
    w = jnp.ones((16,), dtype=jnp.float64)
    step(model, X[:16], Y[:16], w)
    assert step.traces == 3


def test_no_host_reads_inside_a_step():
    model = _model("adam", layers=[Dense(8), ActivationLayer("relu"), Dropout(0.3),
                                   Dense(3)])
    step = _fast.select_step(model)
    X, Y, _ = _data(model)
    step(model, X, Y)  # the first call derives the dropout key and compiles
    with jax.transfer_guard_device_to_host("disallow"):
        for _ in range(3):
            loss, z = step(model, X, Y)
    assert np.isfinite(float(loss))


def _dropout_model(seed=0, opt="sgd"):
    return _model(opt, layers=[Dense(16), ActivationLayer("relu"), Dropout(0.5),
                               Dense(3)], seed=seed)


def test_dropout_masks_are_fresh_every_step():
    model = _dropout_model()
    step = _fast.select_step(model)
    X, Y, _ = _data(model)
    frozen = model.optimizer_.hyper(0) | {"lr": 0.0}  # the weights never move
    logits = [np.asarray(step(model, X, Y, hyper=frozen)[1]) for _ in range(3)]
    assert not np.array_equal(logits[0], logits[1])
    assert not np.array_equal(logits[1], logits[2])
    assert step.traces == 1


def test_dropout_is_reproducible_from_the_seed():
    runs = []
    for seed in (0, 0, 7):
        model = _dropout_model(seed=seed)
        rng = np.random.default_rng(3)
        X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
        hist = model.fit(X, y, epochs=2, batch_size=16, verbose=0)
        runs.append((hist.history["loss"], [np.asarray(p) for p in model.params]))
    assert runs[0][0] == runs[1][0]
    for p, q in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(p, q)
    assert runs[0][0] != runs[2][0]


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_dropout_masks_are_those_the_generic_code_draws_from_the_key(opt):
    fast, slow = _dropout_model(opt=opt), _dropout_model(opt=opt)
    # the key the step derives at its first call: one draw from the host generator
    seed = int(copy.deepcopy(fast.state_.noise_rng).integers(2**63))
    slow.state_.noise_rng = jax_step.KeyNoise(jax.random.key(seed))
    step = _fast.select_step(fast)
    X, Y, _ = _data(fast)
    for _ in range(3):
        _, z_f = step(fast, X, Y)
        with _fast.disabled():
            _, z_s = slow.train_step(X, Y)
        assert_array(z_f, np.asarray(z_s), **TOL)
    _assert_same(fast, slow)


def test_model_with_params_leaves_the_model_alone():
    model = _dropout_model()
    before = [np.asarray(p) for p in model.params]
    zeros = [jnp.zeros_like(p) for p in model.params]
    twin = jax_step.model_with_params(model, zeros, jax_step.KeyNoise(jax.random.key(0)))
    X, Y, _ = _data(model)
    _, _, z = twin.loss_and_grads(X, Y)
    np.testing.assert_array_equal(np.asarray(z), 0.0)
    for p, q in zip(model.params, before):
        np.testing.assert_array_equal(np.asarray(p), q)
    assert model.state_.noise_rng is model.state_.rng


def test_switched_off_and_foreign_inputs_take_the_generic_path():
    model = _model("sgd")
    step = _fast.select_step(model)
    X, Y, _ = _data(model)
    with _fast.disabled():
        assert step(model, X, Y) is None
    assert step(model, np.asarray(X), np.asarray(Y)) is None  # host arrays
    assert step(model, X.astype(jnp.float32), Y.astype(jnp.float32)) is None
    assert model.optimizer_state_["step"] == 0
    assert step(model, X, Y) is not None
    assert model.optimizer_state_["step"] == 1


def test_new_alphas_beyond_the_limit_take_the_generic_path():
    model = _model("sgd")
    step = _fast.select_step(model)
    X, Y, _ = _data(model)
    for i in range(jax_step.MAX_ALPHAS):
        assert step(model, X, Y, alpha=1e-3 * (i + 1)) is not None
    assert step(model, X, Y, alpha=1.0) is None
    assert step(model, X, Y, alpha=1e-3) is not None  # one it has compiled
    assert step.traces == jax_step.MAX_ALPHAS


def test_float32_without_x64():
    with jax.enable_x64(False):
        fast, slow = _model("adam", dtype="float32"), _model("adam", dtype="float32")
        step = _fast.select_step(fast)
        X, Y, _ = _data(fast)
        for _ in range(3):
            assert step(fast, X, Y) is not None
            with _fast.disabled():
                slow.train_step(X, Y)
        _assert_same(fast, slow, tol=dict(rtol=2e-5, atol=2e-6))
        assert fast.params[0].dtype == jnp.float32


def test_write_scope_wraps_only_the_writes():
    model = _model("adam")
    step = _fast.select_step(model)
    X, Y, _ = _data(model)
    seen = []

    @contextlib.contextmanager
    def scope():
        seen.append(model.optimizer_state_["step"])
        yield
        seen.append(model.optimizer_state_["step"])

    step(model, X, Y, write_scope=scope())
    assert seen == [0, 1]


def test_no_host_transfers_while_the_rate_is_constant():
    # The learning rate and the other scalars are copied to the device once; the
    # update number is the one the previous step returned, already on the device.
    model = _model("adam")
    step = _fast.select_step(model)
    X, Y, _ = _data(model)
    step(model, X, Y)
    with jax.transfer_guard_host_to_device("disallow_explicit"):
        for _ in range(3):
            assert step(model, X, Y) is not None
    assert model.optimizer_state_["step"] == 4
    # a new rate is copied again (and compiles nothing new)
    hyper = model.optimizer_.hyper(4) | {"lr": 0.5}
    with jax.transfer_guard_host_to_device("disallow_explicit"), \
            pytest.raises(RuntimeError, match="host-to-device"):
        step(model, X, Y, hyper=hyper)
    assert model.optimizer_state_["step"] == 4
    step(model, X, Y, hyper=hyper)
    assert step.traces == 1


def test_an_update_number_set_by_hand_is_the_one_used():
    fast, slow = _model("adam"), _model("adam")
    step = _fast.select_step(fast)
    X, Y, _ = _data(fast)
    for jump in (None, 41, 3):
        if jump is not None:  # e.g. a checkpoint restored into the same model
            fast.optimizer_state_["step"] = slow.optimizer_state_["step"] = jump
        step(fast, X, Y)
        with _fast.disabled():
            slow.train_step(X, Y)
        _assert_same(fast, slow)
    assert fast.optimizer_state_["step"] == 4


def test_update_numbers_beyond_the_limit_take_the_generic_path():
    model = _model("sgd")
    step = _fast.select_step(model)
    X, Y, _ = _data(model)
    model.optimizer_state_["step"] = jax_step.MAX_STEP
    assert step(model, X, Y) is None
    model.optimizer_state_["step"] = jax_step.MAX_STEP - 1
    assert step(model, X, Y) is not None
    assert model.optimizer_state_["step"] == jax_step.MAX_STEP


def test_a_step_that_fails_leaves_the_model_unchanged(monkeypatch):
    model = _model("adam")
    step = _fast.select_step(model)
    X, Y, _ = _data(model)
    step(model, X, Y)
    params = [np.asarray(p) for p in model.params]
    slots = {s: [np.asarray(a) for a in v] for s, v in model.optimizer_state_["slots"].items()}

    def broken(*args, **kwargs):
        raise FloatingPointError("broken rule")

    with monkeypatch.context() as m:
        m.setattr(model.optimizer_, "update", broken)
        with pytest.raises(FloatingPointError):
            step(model, X[:7], Y[:7])  # a new shape: traced again, and fails
    assert model.optimizer_state_["step"] == 1
    for p, q in zip(model.params, params):
        np.testing.assert_array_equal(np.asarray(p), q)
    for s, v in model.optimizer_state_["slots"].items():
        for a, b in zip(v, slots[s]):
            np.testing.assert_array_equal(np.asarray(a), b)
    assert step(model, X[:7], Y[:7]) is not None  # usable: the next call compiles
    assert model.optimizer_state_["step"] == 2
