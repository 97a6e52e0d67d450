"""Tests for mlpx.optimizers: update rules against plain NumPy and torch.optim,
schedules, state alignment, the NumPy fast path, dtypes, errors and configs."""

import json
import math
import pickle

import numpy as np
import pytest

from mlpx import _backend
from mlpx.optimizers import (
    OPTIMIZERS,
    SCHEDULES,
    SGD,
    Adam,
    AdamW,
    CosineSchedule,
    Optimizer,
    RMSProp,
    Schedule,
    WarmupSchedule,
    get_optimizer,
    get_schedule,
)
from tests.helpers import assert_array

SHAPES = [(4, 3), (3,)]          # a weight and a bias
DECAY = [True, False]            # weight decay applies to the weight only
N_STEPS = 5


def _problem(seed=0):
    """Initial parameters and a per-step gradient function (host, float64)."""
    rng = np.random.default_rng(seed)
    p0 = [rng.standard_normal(s) for s in SHAPES]
    noise = [[rng.standard_normal(s) for s in SHAPES] for _ in range(N_STEPS + 3)]

    def grad(k, params):
        # a quadratic bowl plus step-dependent noise, so the trajectory couples steps
        return [0.5 * p + n for p, n in zip(params, noise[k])]

    return p0, grad


def _run_mlpx(opt, backend, dtype="float64", steps=N_STEPS, decay_mask=DECAY, seed=0):
    p0, grad = _problem(seed)
    xp = backend.xp
    params = [_backend.to_device(p, backend=backend, dtype=dtype) for p in p0]
    state = opt.init_state(params, xp=xp)
    history = []
    for k in range(steps):
        host = [_backend.to_numpy(p).astype(np.float64) for p in params]
        grads = [_backend.to_device(g, backend=backend, dtype=dtype) for g in grad(k, host)]
        params = opt.step(params, grads, state, xp=xp, decay_mask=decay_mask)
        history.append(params)
    return params, state, history


# --------------------------------------------------------------------------------------
# independent plain-NumPy references (textbook forms, written from the equations)
# --------------------------------------------------------------------------------------

def _lr_at(lr, k):
    return lr(k) if callable(lr) else lr


def ref_sgd(lr, momentum=0.0, nesterov=False, weight_decay=0.0, steps=N_STEPS,
            decay_mask=DECAY):
    params, grad = _problem()
    params = [p.copy() for p in params]
    buf = [None] * len(params)
    for k in range(steps):
        grads = grad(k, params)
        for i in range(len(params)):
            d = grads[i] + (weight_decay * params[i] if decay_mask[i] else 0.0)
            if momentum:
                buf[i] = d.copy() if buf[i] is None else momentum * buf[i] + d
                d = d + momentum * buf[i] if nesterov else buf[i]
            params[i] = params[i] - _lr_at(lr, k) * d
    return params


def ref_adam(lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
             steps=N_STEPS, decay_mask=DECAY):
    params, grad = _problem()
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for k in range(steps):
        t = k + 1
        eta = _lr_at(lr, k)
        grads = grad(k, params)
        for i in range(len(params)):
            g = grads[i]
            if decay_mask[i] and weight_decay:
                if decoupled:
                    params[i] = params[i] - eta * weight_decay * params[i]
                else:
                    g = g + weight_decay * params[i]
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g ** 2
            m_hat = m[i] / (1 - beta1 ** t)
            v_hat = v[i] / (1 - beta2 ** t)
            params[i] = params[i] - eta * m_hat / (np.sqrt(v_hat) + eps)
    return params


def ref_rmsprop(lr, rho=0.9, eps=1e-8, momentum=0.0, weight_decay=0.0, steps=N_STEPS,
                decay_mask=DECAY):
    params, grad = _problem()
    params = [p.copy() for p in params]
    s = [np.zeros_like(p) for p in params]
    b = [np.zeros_like(p) for p in params]
    for k in range(steps):
        grads = grad(k, params)
        for i in range(len(params)):
            g = grads[i] + (weight_decay * params[i] if decay_mask[i] else 0.0)
            s[i] = rho * s[i] + (1 - rho) * g * g
            step = g / (np.sqrt(s[i]) + eps)
            if momentum:
                b[i] = momentum * b[i] + step
                step = b[i]
            params[i] = params[i] - _lr_at(lr, k) * step
    return params


CASES = [
    ("sgd", dict(lr=0.1), lambda: ref_sgd(0.1)),
    ("sgd", dict(lr=0.1, weight_decay=0.2), lambda: ref_sgd(0.1, weight_decay=0.2)),
    ("sgd", dict(lr=0.1, momentum=0.9), lambda: ref_sgd(0.1, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
     lambda: ref_sgd(0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("adam", dict(lr=0.01), lambda: ref_adam(0.01)),
    ("adam", dict(lr=0.01, beta1=0.5, beta2=0.9, eps=1e-6, weight_decay=0.3),
     lambda: ref_adam(0.01, beta1=0.5, beta2=0.9, eps=1e-6, weight_decay=0.3)),
    ("adamw", dict(lr=0.01, weight_decay=0.3),
     lambda: ref_adam(0.01, weight_decay=0.3, decoupled=True)),
    ("rmsprop", dict(lr=0.01), lambda: ref_rmsprop(0.01)),
    ("rmsprop", dict(lr=0.01, rho=0.7, momentum=0.6, weight_decay=0.2),
     lambda: ref_rmsprop(0.01, rho=0.7, momentum=0.6, weight_decay=0.2)),
]
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw, _ in CASES]


@pytest.mark.parametrize("name, kwargs, reference", CASES, ids=CASE_IDS)
def test_matches_numpy_reference_float64(backend, name, kwargs, reference):
    params, state, _ = _run_mlpx(get_optimizer(name, **kwargs), backend)
    expected = reference()
    assert state["step"] == N_STEPS
    for p, e in zip(params, expected):
        assert_array(p, e, backend=backend, dtype="float64", rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name, kwargs, reference", CASES, ids=CASE_IDS)
def test_float32_stays_float32(backend, name, kwargs, reference):
    params, state, history = _run_mlpx(get_optimizer(name, **kwargs), backend,
                                       dtype="float32")
    for step_params in history:
        for p in step_params:
            assert_array(p, backend=backend, dtype="float32")
    for slot in state["slots"].values():
        for a in slot:
            assert_array(a, backend=backend, dtype="float32")
    for p, e in zip(params, reference()):
        assert_array(p, e, rtol=2e-4, atol=2e-5)


def test_decay_mask_defaults_to_all():
    opt = SGD(lr=0.1, weight_decay=0.5)
    xp = _backend.resolve_backend("numpy").xp
    params = [np.ones(2), np.ones(2)]
    state = opt.init_state(params, xp=xp)
    zeros = [np.zeros(2), np.zeros(2)]
    out = opt.step(params, zeros, state, xp=xp)
    np.testing.assert_allclose(out[0], 0.95)
    np.testing.assert_allclose(out[1], 0.95)
    out = opt.step(out, zeros, state, xp=xp, decay_mask=[False, True])
    np.testing.assert_allclose(out[0], 0.95)
    np.testing.assert_allclose(out[1], 0.95 * 0.95)


# --------------------------------------------------------------------------------------
# against torch.optim, several steps in float64
# --------------------------------------------------------------------------------------

def _torch_run(torch, make_opt, steps=N_STEPS, make_sched=None):
    p0, grad = _problem()
    tparams = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in p0]
    groups = [{"params": [tp], "weight_decay": None if d else 0.0}
              for tp, d in zip(tparams, DECAY)]
    opt = make_opt(groups)
    sched = make_sched(opt) if make_sched else None
    for k in range(steps):
        host = [tp.detach().numpy().copy() for tp in tparams]
        for tp, g in zip(tparams, grad(k, host)):
            tp.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        if sched is not None:
            sched.step()
    return [tp.detach().numpy() for tp in tparams]


def _groups(groups, wd):
    # decayed group gets the optimizer's weight decay, the other one 0
    for g in groups:
        if g["weight_decay"] is None:
            g["weight_decay"] = wd
    return groups


TORCH_CASES = [
    ("sgd-momentum", lambda: SGD(lr=0.1, momentum=0.9),
     lambda t, g: t.optim.SGD(_groups(g, 0.0), lr=0.1, momentum=0.9)),
    ("sgd-nesterov", lambda: SGD(lr=0.1, momentum=0.9, nesterov=True),
     lambda t, g: t.optim.SGD(_groups(g, 0.0), lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd-weight-decay", lambda: SGD(lr=0.1, momentum=0.5, weight_decay=0.3),
     lambda t, g: t.optim.SGD(_groups(g, 0.3), lr=0.1, momentum=0.5)),
    ("sgd-nesterov-weight-decay", lambda: SGD(lr=0.05, momentum=0.7, nesterov=True,
                                              weight_decay=0.2),
     lambda t, g: t.optim.SGD(_groups(g, 0.2), lr=0.05, momentum=0.7, nesterov=True)),
    ("adam", lambda: Adam(lr=0.01),
     lambda t, g: t.optim.Adam(_groups(g, 0.0), lr=0.01)),
    ("adam-l2", lambda: Adam(lr=0.02, beta1=0.8, beta2=0.95, eps=1e-7, weight_decay=0.1),
     lambda t, g: t.optim.Adam(_groups(g, 0.1), lr=0.02, betas=(0.8, 0.95), eps=1e-7)),
    ("adamw", lambda: AdamW(lr=0.01, weight_decay=0.2),
     lambda t, g: t.optim.AdamW(_groups(g, 0.2), lr=0.01)),
    ("rmsprop", lambda: RMSProp(lr=0.01, rho=0.9),
     lambda t, g: t.optim.RMSprop(_groups(g, 0.0), lr=0.01, alpha=0.9, eps=1e-8)),
    ("rmsprop-momentum", lambda: RMSProp(lr=0.01, rho=0.8, momentum=0.5, weight_decay=0.1),
     lambda t, g: t.optim.RMSprop(_groups(g, 0.1), lr=0.01, alpha=0.8, eps=1e-8,
                                  momentum=0.5)),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_matches_torch_optim(backend, case):
    torch = pytest.importorskip("torch")
    _, make_ours, make_torch = case
    ours, _, _ = _run_mlpx(make_ours(), backend)
    theirs = _torch_run(torch, lambda g: make_torch(torch, g))
    for p, e in zip(ours, theirs):
        assert_array(p, e, backend=backend, dtype="float64", rtol=1e-9, atol=1e-12)


def test_scheduled_sgd_momentum_matches_torch_steplr(backend):
    torch = pytest.importorskip("torch")
    steps = 6
    opt = SGD(lr=get_schedule("step", step_size=2, gamma=0.5, lr=0.2), momentum=0.9)
    ours, _, _ = _run_mlpx(opt, backend, steps=steps)
    theirs = _torch_run(
        torch, lambda g: torch.optim.SGD(_groups(g, 0.0), lr=0.2, momentum=0.9), steps=steps,
        make_sched=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5))
    for p, e in zip(ours, theirs):
        assert_array(p, e, backend=backend, rtol=1e-9, atol=1e-12)


def test_scheduled_adamw_matches_torch_cosine():
    torch = pytest.importorskip("torch")
    steps = 6
    backend = _backend.resolve_backend("numpy")
    opt = AdamW(lr=CosineSchedule(total_steps=8, min_lr=1e-3, lr=0.05), weight_decay=0.1)
    ours, _, _ = _run_mlpx(opt, backend, steps=steps)
    theirs = _torch_run(
        torch, lambda g: torch.optim.AdamW(_groups(g, 0.1), lr=0.05), steps=steps,
        make_sched=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=8,
                                                                        eta_min=1e-3))
    for p, e in zip(ours, theirs):
        assert_array(p, e, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------
# schedules
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ({"name": "constant"}, {0: 0.1, 1: 0.1, 1000: 0.1}),
    ({"name": "step", "step_size": 3}, {0: 0.1, 2: 0.1, 3: 0.01, 5: 0.01, 6: 0.001}),
    ({"name": "step", "step_size": 2, "gamma": 0.5}, {0: 0.1, 1: 0.1, 2: 0.05, 4: 0.025}),
    ({"name": "exponential", "gamma": 0.9}, {0: 0.1, 1: 0.09, 2: 0.081, 10: 0.1 * 0.9 ** 10}),
    ({"name": "cosine", "total_steps": 10},
     {0: 0.1, 5: 0.05, 10: 0.0, 11: 0.0, 100: 0.0,
      2: 0.05 * (1 + math.cos(math.pi * 0.2))}),
    ({"name": "cosine", "total_steps": 4, "min_lr": 0.02},
     {0: 0.1, 2: 0.06, 4: 0.02, 9: 0.02}),
    ({"name": "inverse_scaling"}, {0: 0.1, 3: 0.05, 99: 0.01}),
    ({"name": "invscaling", "power_t": 1.0}, {0: 0.1, 1: 0.05, 9: 0.01}),
    ({"name": "inverse_scaling", "power_t": 0.0}, {0: 0.1, 50: 0.1}),
])
def test_schedule_values(spec, expected):
    schedule = get_schedule(spec)
    for step, lr in expected.items():
        assert schedule(0.1, step) == pytest.approx(lr, rel=1e-12, abs=1e-15)
        assert isinstance(schedule(0.1, step), float)


@pytest.mark.parametrize("ours, make_theirs", [
    (dict(name="step", step_size=3, gamma=0.3),
     lambda s, o: s.StepLR(o, step_size=3, gamma=0.3)),
    (dict(name="exponential", gamma=0.8), lambda s, o: s.ExponentialLR(o, gamma=0.8)),
    (dict(name="cosine", total_steps=7, min_lr=0.01),
     lambda s, o: s.CosineAnnealingLR(o, T_max=7, eta_min=0.01)),
])
def test_schedules_match_torch(ours, make_theirs):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
    sched = make_theirs(torch.optim.lr_scheduler, opt)
    schedule = get_schedule(ours)
    for step in range(8):  # torch's cosine leaves the closed form after T_max
        assert schedule(0.3, step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-10)
        opt.step()
        sched.step()


def test_current_lr_and_updates_use_the_schedule():
    xp = _backend.resolve_backend("numpy").xp
    opt = SGD(lr=get_schedule("exponential", gamma=0.5, lr=1.0))
    params = [np.zeros(1)]
    state = opt.init_state(params, xp=xp)
    for k in range(4):
        before = params[0].copy()
        assert opt.current_lr(state["step"]) == 0.5 ** k
        params = opt.step(params, [np.ones(1)], state, xp=xp)
        np.testing.assert_allclose(before - params[0], 0.5 ** k)
    assert state["step"] == 4


def test_schedule_without_lr_starts_from_the_optimizer_default():
    for cls, default in ((SGD, 0.01), (Adam, 1e-3), (AdamW, 1e-3), (RMSProp, 1e-3)):
        opt = cls(lr=get_schedule("step", step_size=1, gamma=0.5))
        assert opt.base_lr == default
        assert opt.current_lr(0) == default
        assert opt.current_lr(2) == pytest.approx(default / 4)
    assert SGD(lr=0.3).current_lr(10**6) == 0.3


# --------------------------------------------------------------------------------------
# state: by position, fresh, never shared
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kwargs, slots", [
    ("sgd", {}, []), ("sgd", {"momentum": 0.9}, ["velocity"]), ("adam", {}, ["m", "v"]),
    ("adamw", {}, ["m", "v"]), ("rmsprop", {}, ["square_avg"]),
    ("rmsprop", {"momentum": 0.5}, ["square_avg", "velocity"]),
])
def test_init_state_layout(backend, name, kwargs, slots):
    xp = backend.xp
    params = [_backend.to_device(np.ones(s), backend=backend, dtype="float32") for s in SHAPES]
    state = get_optimizer(name, **kwargs).init_state(params, xp=xp)
    assert state["step"] == 0
    assert sorted(state["slots"]) == sorted(slots)
    for slot in state["slots"].values():
        assert isinstance(slot, list) and len(slot) == len(params)
        for a, p in zip(slot, params):
            assert_array(a, np.zeros(tuple(p.shape)), backend=backend, dtype="float32")


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_same_shape_params_get_independent_slots(backend, name):
    xp = backend.xp
    opt = get_optimizer(name, lr=0.1, **({"momentum": 0.9} if name in ("sgd", "rmsprop")
                                         else {}))
    params = [_backend.to_device(np.ones(3), backend=backend) for _ in range(2)]
    state = opt.init_state(params, xp=xp)
    for slot in state["slots"].values():
        assert slot[0] is not slot[1]
    grads = [_backend.to_device(np.full(3, 1.0), backend=backend),
             _backend.to_device(np.full(3, -2.0), backend=backend)]
    for _ in range(3):
        params = opt.step(params, grads, state, xp=xp)
    for slot in state["slots"].values():
        a, b = (_backend.to_numpy(s) for s in slot)
        assert not np.allclose(a, b)
    # the first param's trajectory equals a run where it is alone
    alone = [_backend.to_device(np.ones(3), backend=backend)]
    alone_state = opt.init_state(alone, xp=xp)
    for _ in range(3):
        alone = opt.step(alone, grads[:1], alone_state, xp=xp)
    assert_array(params[0], alone[0], backend=backend, rtol=0)
    # two states of one optimizer (two layers, two models) share nothing
    other = opt.init_state(params, xp=xp)
    for s in state["slots"]:
        for a, b in zip(state["slots"][s], other["slots"][s]):
            assert a is not b
            assert np.all(_backend.to_numpy(b) == 0)


# --------------------------------------------------------------------------------------
# NumPy fast path == generic path
# --------------------------------------------------------------------------------------

FAST_CASES = [
    dict(name="sgd", lr=0.1), dict(name="sgd", lr=0.1, weight_decay=0.1),
    dict(name="sgd", lr=0.1, momentum=0.9, weight_decay=0.1),
    dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
    dict(name="adam", lr=0.01, weight_decay=0.1), dict(name="adamw", lr=0.01),
    dict(name="rmsprop", lr=0.01), dict(name="rmsprop", lr=0.01, momentum=0.5,
                                        weight_decay=0.1),
    dict(name="adam", lr={"name": "cosine", "total_steps": 3, "lr": 0.01}),
]


@pytest.mark.parametrize("cfg", FAST_CASES, ids=[json.dumps(c) for c in FAST_CASES])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_fast_path_equals_generic_path(cfg, dtype):
    xp = _backend.resolve_backend("numpy").xp
    opt = get_optimizer(cfg)
    p0, grad = _problem(1)
    fast = [p.astype(dtype) for p in p0]
    slow = [p.astype(dtype) for p in p0]
    fast_state = opt.init_state(fast, xp=xp)
    slow_state = opt.init_state(slow, xp=xp)
    fast_ids = [id(p) for p in fast]
    fast_slot_ids = {s: [id(a) for a in v] for s, v in fast_state["slots"].items()}
    for k in range(N_STEPS):
        grads = [g.astype(dtype) for g in grad(k, [p.astype(np.float64) for p in fast])]
        saved = [g.copy() for g in grads]
        out = opt.step(fast, grads, fast_state, xp=xp, decay_mask=DECAY)
        assert [id(p) for p in out] == fast_ids  # same objects, updated in place
        fast = out
        slow_out = opt._apply(slow, grads, slow_state, xp=xp, decay_mask=DECAY, fast=False)
        assert all(a is not b for a, b in zip(slow_out, slow))  # functional: new arrays
        slow = slow_out
        for g, s in zip(grads, saved):  # gradients are never modified
            np.testing.assert_array_equal(g, s)
    assert {s: [id(a) for a in v] for s, v in fast_state["slots"].items()} == fast_slot_ids
    assert fast_state["step"] == slow_state["step"] == N_STEPS
    for a, b in zip(fast, slow):
        assert_array(a, b, dtype=dtype, rtol=1e-6 if dtype == "float32" else 1e-14)
    for s in fast_state["slots"]:
        for a, b in zip(fast_state["slots"][s], slow_state["slots"][s]):
            assert_array(a, b, dtype=dtype, rtol=1e-6 if dtype == "float32" else 1e-14)


def test_generic_path_on_strict_does_not_touch_inputs():
    backend = _backend.resolve_backend("array_api_strict")
    xp = backend.xp
    opt = Adam(lr=0.1)
    params = [_backend.to_device(np.ones(3), backend=backend)]
    grads = [_backend.to_device(np.full(3, 2.0), backend=backend)]
    state = opt.init_state(params, xp=xp)
    m0 = state["slots"]["m"][0]
    out = opt.step(params, grads, state, xp=xp)
    assert out[0] is not params[0] and state["slots"]["m"][0] is not m0
    assert_array(params[0], np.ones(3), backend=backend)
    assert_array(m0, np.zeros(3), backend=backend)


def test_read_only_numpy_params_fall_back_to_the_generic_path():
    xp = _backend.resolve_backend("numpy").xp
    p = np.ones(3)
    p.flags.writeable = False
    opt = SGD(lr=0.5, momentum=0.5)
    state = opt.init_state([p], xp=xp)
    out = opt.step([p], [np.ones(3)], state, xp=xp)
    assert out[0] is not p
    np.testing.assert_allclose(out[0], 0.5)
    np.testing.assert_array_equal(p, 1.0)


# --------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------

def test_lr_message():
    with pytest.raises(ValueError) as exc:
        get_optimizer("sgd", lr=0)
    assert str(exc.value) == "The 'lr' parameter of SGD must be a float > 0. Got 0 instead."


@pytest.mark.parametrize("name, params, match", [
    ("sgd", {"lr": -1.0}, "'lr' parameter of SGD must be a float > 0"),
    ("sgd", {"lr": float("nan")}, "'lr' parameter of SGD"),
    ("sgd", {"lr": True}, "'lr' parameter of SGD"),
    ("sgd", {"lr": "0.1"}, "'lr' parameter of SGD must be a float > 0 or a Schedule"),
    ("sgd", {"momentum": -0.1}, r"'momentum' parameter of SGD must be a float in \[0, 1\)"),
    ("sgd", {"momentum": 1.0}, "'momentum' parameter of SGD"),
    ("sgd", {"nesterov": True}, "'nesterov' parameter of SGD needs momentum > 0"),
    ("sgd", {"nesterov": "yes", "momentum": 0.9}, "'nesterov' parameter of SGD must be a bool"),
    ("sgd", {"weight_decay": -1}, "'weight_decay' parameter of SGD must be a float >= 0"),
    ("adam", {"beta1": 1.0}, r"'beta1' parameter of Adam must be a float in \[0, 1\)"),
    ("adam", {"beta2": -0.5}, "'beta2' parameter of Adam"),
    ("adam", {"eps": 0.0}, "'eps' parameter of Adam must be a float > 0"),
    ("adamw", {"weight_decay": -0.01}, "'weight_decay' parameter of AdamW"),
    ("rmsprop", {"rho": 1.0}, "'rho' parameter of RMSProp"),
    ("rmsprop", {"eps": -1e-8}, "'eps' parameter of RMSProp"),
    ("rmsprop", {"momentum": 2.0}, "'momentum' parameter of RMSProp"),
])
def test_invalid_hyper_parameters(name, params, match):
    with pytest.raises(ValueError, match=match):
        get_optimizer(name, **params)


@pytest.mark.parametrize("name, params, match", [
    ("step", {"step_size": 0}, "'step_size' parameter of StepSchedule must be an int >= 1"),
    ("step", {"step_size": 2.5}, "'step_size' parameter of StepSchedule"),
    ("step", {"step_size": 2, "gamma": 0.0}, r"'gamma' parameter of StepSchedule .* \(0, 1\]"),
    ("exponential", {"gamma": 1.5}, "'gamma' parameter of ExponentialSchedule"),
    ("cosine", {"total_steps": 0}, "'total_steps' parameter of CosineSchedule"),
    ("cosine", {"total_steps": 5, "min_lr": -1}, "'min_lr' parameter of CosineSchedule"),
    ("inverse_scaling", {"power_t": -0.5}, "'power_t' parameter of InverseScalingSchedule"),
    ("constant", {"lr": 0}, "'lr' parameter of ConstantSchedule must be a float > 0"),
])
def test_invalid_schedule_parameters(name, params, match):
    with pytest.raises(ValueError, match=match):
        get_schedule(name, **params)


def test_schedule_call_errors():
    s = get_schedule("constant")
    with pytest.raises(ValueError, match="'step' parameter"):
        s(0.1, -1)
    with pytest.raises(ValueError, match="'base_lr' parameter"):
        s(0.0, 1)
    with pytest.raises(ValueError, match="'step' parameter of SGD"):
        SGD().current_lr(1.5)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="Unknown optimizer 'adma'") as exc:
        get_optimizer("adma")
    for name in ("sgd", "adam", "adamw", "rmsprop"):
        assert repr(name) in str(exc.value)
    with pytest.raises(ValueError, match="Unknown schedule 'cosin'") as exc:
        get_schedule("cosin")
    for name in ("constant", "step", "exponential", "cosine", "inverse_scaling"):
        assert repr(name) in str(exc.value)


def test_unknown_parameter_and_bad_specs():
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['momentun'\].*'momentum'"):
        get_optimizer("sgd", momentun=0.9)
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['betas'\]"):
        get_optimizer("adam", betas=(0.9, 0.99))
    with pytest.raises(TypeError):
        get_optimizer(3)
    with pytest.raises(ValueError, match="'name' key"):
        get_optimizer({"lr": 0.1})
    with pytest.raises(TypeError, match="cannot be given"):
        get_optimizer(SGD(), lr=0.1)
    with pytest.raises(TypeError, match="cannot be given"):
        get_schedule(get_schedule("constant"), lr=0.1)


def test_step_errors():
    xp = _backend.resolve_backend("numpy").xp
    opt = SGD(lr=0.1, momentum=0.9)
    params = [np.ones((2, 2)), np.ones(2)]
    state = opt.init_state(params, xp=xp)
    grads = [np.ones((2, 2)), np.ones(2)]
    with pytest.raises(ValueError, match="2 params but 1 grads"):
        opt.step(params, grads[:1], state, xp=xp)
    with pytest.raises(ValueError, match=r"grads\[1\] has shape \(3,\)"):
        opt.step(params, [grads[0], np.ones(3)], state, xp=xp)
    with pytest.raises(ValueError, match=r"grads\[0\] has dtype float32"):
        opt.step(params, [grads[0].astype(np.float32), grads[1]], state, xp=xp)
    with pytest.raises(ValueError, match="'decay_mask' parameter of SGD.step"):
        opt.step(params, grads, state, xp=xp, decay_mask=[True])
    with pytest.raises(ValueError, match="init_state"):
        opt.step(params, grads, Adam().init_state(params, xp=xp), xp=xp)
    with pytest.raises(ValueError, match="holds 2 arrays for 3 params"):
        opt.step(params + [np.ones(1)], grads + [np.ones(1)], state, xp=xp)
    with pytest.raises(ValueError, match="state dict"):
        opt.step(params, grads, {}, xp=xp)
    assert state["step"] == 0  # nothing was applied
    np.testing.assert_array_equal(params[0], 1.0)


# --------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    "sgd", {"name": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": True,
            "weight_decay": 1e-4},
    "adam", {"name": "adam", "lr": 3e-4, "beta1": 0.8, "beta2": 0.99, "eps": 1e-7,
             "weight_decay": 0.1},
    "adamw", "rmsprop", {"name": "rmsprop", "lr": 0.01, "rho": 0.99, "momentum": 0.9},
    {"name": "adam", "lr": {"name": "cosine", "total_steps": 100, "min_lr": 1e-5}},
    {"name": "sgd", "lr": {"name": "invscaling", "power_t": 0.25, "lr": 0.1}},
])
def test_config_round_trip(spec):
    opt = get_optimizer(spec)
    cfg = opt.get_config()
    assert cfg["name"] in OPTIMIZERS
    assert json.loads(json.dumps(cfg)) == cfg
    again = get_optimizer(cfg)
    assert type(again) is type(opt) and again.get_config() == cfg
    clone = pickle.loads(pickle.dumps(opt))
    assert clone.get_config() == cfg
    for step in (0, 7, 150):
        assert again.current_lr(step) == opt.current_lr(step)


def test_config_defaults_and_overrides():
    assert SGD().get_config() == {"name": "sgd", "lr": 0.01, "momentum": 0.0,
                                  "nesterov": False, "weight_decay": 0.0}
    assert Adam().get_config() == {"name": "adam", "lr": 1e-3, "beta1": 0.9,
                                   "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    assert AdamW().weight_decay == 0.01
    assert RMSProp().rho == 0.9 and RMSProp().lr == 1e-3
    assert get_optimizer({"name": "sgd", "lr": 0.5}, lr=0.2).lr == 0.2
    assert get_optimizer("ADAM").name == "adam"
    opt = Adam()
    assert get_optimizer(opt) is opt and isinstance(opt, Optimizer)
    sched = get_schedule("cosine", total_steps=3)
    assert get_schedule(sched) is sched and isinstance(sched, Schedule)
    assert set(SCHEDULES) >= {"constant", "step", "exponential", "cosine", "inverse_scaling"}
    for name, cls in SCHEDULES.items():
        assert get_schedule(get_schedule({"name": name, **(
            {"step_size": 1} if name == "step" else {"gamma": 0.5} if name == "exponential"
            else {"total_steps": 2} if name == "cosine"
            else {"warmup_steps": 2} if cls is WarmupSchedule else {})}).get_config()).name \
            == cls.name


# --------------------------------------------------------------------------------------
# hyper(): the scalars of one update, and step(hyper=...) overrides (issue 10)
# --------------------------------------------------------------------------------------

def test_hyper_per_optimizer():
    h = SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01).hyper(0)
    assert h == {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}
    assert Adam(lr=0.2, beta1=0.8, beta2=0.99, eps=1e-6).hyper(5) == {
        "lr": 0.2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.0}
    assert AdamW().hyper(0) == {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                "weight_decay": 0.01}
    h = RMSProp(rho=0.5, momentum=0.25).hyper(1)
    assert list(h) == ["lr", "rho", "eps", "momentum", "weight_decay"]
    assert h == {"lr": 1e-3, "rho": 0.5, "eps": 1e-8, "momentum": 0.25, "weight_decay": 0.0}
    for opt in (SGD(momentum=np.float32(0.5)), Adam(eps=np.float64(1e-7)), RMSProp()):
        assert all(type(v) in (float, bool) for v in opt.hyper(0).values())
    assert SGD.hyper_names == ("momentum", "nesterov", "weight_decay")


def test_hyper_lr_follows_the_schedule():
    opt = SGD(lr={"name": "step", "step_size": 2, "gamma": 0.5, "lr": 1.0})
    assert [opt.hyper(k)["lr"] for k in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert all(opt.hyper(k)["lr"] == opt.current_lr(k) for k in range(5))
    with pytest.raises(ValueError, match="'step' parameter of SGD"):
        opt.hyper(-1)


def _bits(a):
    a = np.ascontiguousarray(_backend.to_numpy(a))
    return a.view(np.uint64 if a.dtype == np.float64 else np.uint32)


def _assert_bitwise(a, b):
    assert _backend.to_numpy(a).dtype == _backend.to_numpy(b).dtype
    np.testing.assert_array_equal(_bits(a), _bits(b))


def _steps(opt, backend, dtype, *, hyper=None, in_place=None, steps=N_STEPS):
    """Run ``steps`` updates of the shared problem; return params, state, identities."""
    p0, grad = _problem(2)
    xp = backend.xp
    params = [_backend.to_device(p, backend=backend, dtype=dtype) for p in p0]
    ids = [id(p) for p in params]
    state = opt.init_state(params, xp=xp)
    slot_ids = {s: [id(a) for a in v] for s, v in state["slots"].items()}
    for k in range(steps):
        host = [_backend.to_numpy(p).astype(np.float64) for p in params]
        grads = [_backend.to_device(g, backend=backend, dtype=dtype) for g in grad(k, host)]
        params = opt._apply(params, grads, state, xp=xp, decay_mask=DECAY, hyper=hyper,
                            in_place=in_place)
    same = ([id(p) for p in params] == ids
            and {s: [id(a) for a in v] for s, v in state["slots"].items()} == slot_ids)
    return params, state, same


@pytest.mark.parametrize("cfg", FAST_CASES, ids=[json.dumps(c) for c in FAST_CASES])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_in_place_numpy_and_array_api_strict_are_bitwise_equal(cfg, dtype):
    numpy_b = _backend.resolve_backend("numpy")
    strict = _backend.resolve_backend("array_api_strict")
    p_inplace, s_inplace, same = _steps(get_optimizer(cfg), numpy_b, dtype)
    assert same  # writable NumPy arrays: updated in place, identities kept
    p_func, s_func, same_func = _steps(get_optimizer(cfg), numpy_b, dtype, in_place=False)
    assert not same_func
    p_strict, s_strict, _ = _steps(get_optimizer(cfg), strict, dtype)
    for others in ((p_func, s_func), (p_strict, s_strict)):
        for a, b in zip(p_inplace, others[0]):
            _assert_bitwise(a, b)
        assert set(s_inplace["slots"]) == set(others[1]["slots"])
        for s in s_inplace["slots"]:
            for a, b in zip(s_inplace["slots"][s], others[1]["slots"][s]):
                _assert_bitwise(a, b)


@pytest.mark.parametrize("name, base, key, value", [
    ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}, "lr", 0.05),
    ("sgd", {"lr": 0.1, "momentum": 0.9}, "momentum", 0.5),
    ("sgd", {"lr": 0.1, "momentum": 0.9}, "nesterov", True),
    ("sgd", {"lr": 0.1}, "weight_decay", 0.3),
    ("adam", {"lr": 0.01, "weight_decay": 0.1}, "eps", 1e-3),
    ("adam", {"lr": 0.01}, "lr", 0.02),
    ("adam", {"lr": 0.01}, "beta1", 0.5),
    ("adam", {"lr": 0.01}, "beta2", 0.9),
    ("adamw", {"lr": 0.01}, "eps", 0.1),
    ("adamw", {"lr": 0.01}, "weight_decay", 0.5),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5}, "eps", 1e-2),
    ("rmsprop", {"lr": 0.01}, "rho", 0.5),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5}, "momentum", 0.25),
    ("rmsprop", {"lr": 0.01, "weight_decay": 0.1}, "lr", 0.001),
])
@pytest.mark.parametrize("backend_name", ["numpy", "array_api_strict"])
def test_step_hyper_override_equals_an_optimizer_built_with_it(name, base, key, value,
                                                              backend_name):
    backend = _backend.resolve_backend(backend_name)
    opt = get_optimizer(name, **base)
    config = opt.get_config()
    overridden, _, _ = _steps(opt, backend, "float64", hyper={key: value})
    built, _, _ = _steps(get_optimizer(name, **{**base, key: value}), backend, "float64")
    plain, _, _ = _steps(get_optimizer(name, **base), backend, "float64")
    for a, b in zip(overridden, built):
        _assert_bitwise(a, b)
    # the weight (decayed, so every override reaches it) moved differently
    assert not np.array_equal(_backend.to_numpy(overridden[0]), _backend.to_numpy(plain[0]))
    assert opt.get_config() == config  # the override left the optimizer alone


def test_step_hyper_eps_changes_the_first_adam_step_as_expected():
    # first step from zero moments: p - lr * g / (|g| + eps) exactly in exact arithmetic
    xp = _backend.resolve_backend("numpy").xp
    opt = Adam(lr=0.1)
    for eps, expected in ((1e-8, 0.9), (1.0, 0.95), (3.0, 0.975)):
        params = [np.array([1.0])]
        state = opt.init_state(params, xp=xp)
        out = opt.step(params, [np.array([1.0])], state, xp=xp, hyper={"eps": eps})
        assert out[0][0] == pytest.approx(expected, rel=1e-7)


def test_step_hyper_errors_leave_the_state_alone():
    xp = _backend.resolve_backend("numpy").xp
    params, grads = [np.ones(2)], [np.ones(2)]
    sgd, adam = SGD(lr=0.1), Adam()
    for opt, hyper, match in [
        (sgd, {"beta1": 0.9}, r"Unknown parameter\(s\) \['beta1'\] for SGD.step. Valid "
                              r"parameters: \['lr', 'momentum', 'nesterov', 'weight_decay'\]"),
        (adam, {"eps": 0.0}, "The 'eps' parameter of Adam.step must be a float > 0. Got 0.0"),
        (adam, {"lr": {"name": "constant"}}, "The 'lr' parameter of Adam.step must be a float"),
        (sgd, [("lr", 0.1)], "The 'hyper' parameter of SGD.step must be a dict or None"),
        # no silent fallback: momentum needs the velocity slot the optimizer was built with
        (sgd, {"momentum": 0.5}, "The 'momentum' parameter of SGD.step must be 0 for an "
                                 "optimizer built without momentum"),
        (RMSProp(), {"momentum": 0.5}, "'momentum' parameter of RMSProp.step must be 0"),
        (SGD(momentum=0.5), {"momentum": 0.0, "nesterov": True},
         "'nesterov' parameter of SGD.step needs momentum > 0"),
    ]:
        state = opt.init_state(params, xp=xp)
        with pytest.raises(ValueError, match=match):
            opt.step(params, grads, state, xp=xp, hyper=hyper)
        assert state["step"] == 0
        np.testing.assert_array_equal(params[0], 1.0)


@pytest.mark.parametrize("cfg", FAST_CASES[:-1], ids=[json.dumps(c) for c in FAST_CASES[:-1]])
def test_update_in_place_is_update_written_back(cfg):
    xp = _backend.resolve_backend("numpy").xp
    opt = get_optimizer(cfg)
    rng = np.random.default_rng(3)
    p, g = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    slots = {s: rng.random((3, 2)) for s in opt.slot_names()}
    before = {"p": p.copy(), "g": g.copy(), **{s: a.copy() for s, a in slots.items()}}
    new_p, new_slots = opt.update(p, g, slots, hyper=opt.hyper(2), t=3, decay=True, xp=xp)
    np.testing.assert_array_equal(p, before["p"])  # update is functional
    ids = [id(p)] + [id(a) for a in slots.values()]
    opt.update_in_place(p, g, slots, hyper=opt.hyper(2), t=3, decay=True, xp=xp)
    assert [id(p)] + [id(a) for a in slots.values()] == ids
    _assert_bitwise(p, new_p)
    for s in slots:
        _assert_bitwise(slots[s], new_slots[s])
    np.testing.assert_array_equal(g, before["g"])
    # the shim mlpx._fast calls until it moves to update_in_place: the same rule
    p2 = before["p"].copy()
    slots2 = {s: before[s].copy() for s in slots}
    opt._update_numpy(p2, g, slots2, lr=opt.current_lr(2), t=3, decay=True)
    _assert_bitwise(p2, new_p)


def test_adam_bias_corrections():
    h = {"lr": 0.1, "beta1": 0.5, "beta2": 0.75}
    assert Adam.bias_corrections(h, 1) == (0.1 / 0.5, math.sqrt(0.25))
    assert Adam.bias_corrections(h, 2) == (0.1 / 0.75, math.sqrt(1 - 0.75 ** 2))
    opt = AdamW(lr=0.1, beta1=0.5, beta2=0.75)
    assert opt._corrections(0.1, 2) == Adam.bias_corrections(h, 2)  # shim for mlpx._fast
    assert opt.decoupled and not Adam.decoupled
