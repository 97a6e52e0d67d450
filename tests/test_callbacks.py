"""Training controls: the callbacks of mlpx.callbacks (CSVLogger, SaveBest,
ReduceLROnPlateau), gradient clipping, linear warm-up, class weights and the one rule of
early stopping."""

import csv

import numpy as np
import pytest

import mlpx
from mlpx import MLP, _backend, _fast
from mlpx.callbacks import CSVLogger, ReduceLROnPlateau, SaveBest
from mlpx.optimizers import WarmupSchedule, get_optimizer, get_schedule
from mlpx.training import Callback
from tests.helpers import params_np


def _data(rng, n=96, d=5, k=3):
    centers = rng.standard_normal((k, d)) * 2
    y = rng.integers(0, k, n)
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), y


class _Crash(Callback):
    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, model, epoch, logs):
        if epoch == self.at:
            raise RuntimeError("killed")


# ---------------------------------------------------------------------- CSVLogger
def test_csv_logger_writes_one_row_per_epoch(tmp_path, rng):
    X, y = _data(rng)
    path = tmp_path / "log.csv"
    hist = MLP([5, 8, 3], seed=0).fit(X, y, epochs=3, verbose=0, validation_split=0.25,
                                      metrics=["f1"], callbacks=[CSVLogger(path)])
    rows = list(csv.DictReader(open(path)))
    assert [int(r["epoch"]) for r in rows] == hist.epochs == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "f1", "val_loss", "val_accuracy",
                             "val_f1", "seconds", "lr"]
    for key in ("loss", "val_f1", "lr"):
        assert [float(r[key]) for r in rows] == hist[key]  # full precision (repr)


def test_csv_logger_keeps_whole_rows_when_training_dies(tmp_path, rng):
    X, y = _data(rng)
    path = tmp_path / "log.csv"
    with pytest.raises(RuntimeError, match="killed"):
        MLP([5, 8, 3], seed=0).fit(X, y, epochs=5, verbose=0,
                                   callbacks=[CSVLogger(path), _Crash(at=2)])
    text = path.read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 3  # header + 2 epochs


def test_csv_logger_append_writes_the_header_once(tmp_path, rng):
    X, y = _data(rng)
    path = tmp_path / "log.csv"
    model = MLP([5, 8, 3], seed=0)
    model.fit(X, y, epochs=2, verbose=0, callbacks=[CSVLogger(path)])
    model.fit(X, y, epochs=2, verbose=0, callbacks=[CSVLogger(path, append=True)])
    lines = path.read_text().splitlines()
    assert lines[0].startswith("epoch,") and sum(ln.startswith("epoch") for ln in lines) == 1
    assert [ln.split(",")[0] for ln in lines[1:]] == ["1", "2", "3", "4"]
    model.fit(X, y, epochs=1, verbose=0, callbacks=[CSVLogger(path)])  # starts afresh
    assert len(path.read_text().splitlines()) == 2


def test_csv_logger_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        CSVLogger(tmp_path / "missing" / "log.csv")
    with pytest.raises(ValueError, match="'separator' parameter"):
        CSVLogger(tmp_path / "log.csv", separator="ab")


# ---------------------------------------------------------------------- SaveBest
def test_save_best_keeps_the_best_epochs_model(tmp_path, rng, backend):
    X, y = _data(rng)
    path = tmp_path / "best.npz"
    snapshots = {}
    saver = SaveBest(path, monitor="val_accuracy")
    model = MLP([5, 16, 3], seed=0, backend=backend)
    hist = model.fit(X, y, epochs=8, verbose=0, validation_split=0.3,
                     optimizer={"name": "sgd", "lr": 0.05},
                     callbacks=[lambda m, e, logs: snapshots.__setitem__(e, params_np(m)),
                                saver])
    best = hist.epochs[int(np.argmax(hist["val_accuracy"]))]  # the first of any ties
    assert saver.best_epoch == best and saver.best == max(hist["val_accuracy"])
    loaded = mlpx.load(path)
    for a, b in zip(params_np(loaded), snapshots[best]):
        np.testing.assert_array_equal(a, b)


def test_save_best_min_mode_and_metrics(tmp_path, rng):
    X, y = _data(rng)
    path = tmp_path / "best.npz"
    saver = SaveBest(path, monitor="val_log_loss")  # auto: smaller is better
    hist = MLP([5, 8, 3], seed=0).fit(X, y, epochs=4, verbose=0, validation_split=0.25,
                                      metrics=["log_loss"], callbacks=[saver])
    assert saver.best == min(hist["val_log_loss"])
    assert SaveBest(path, monitor="val_accuracy", mode="min").mode == "min"


def test_save_best_writes_atomically(tmp_path, rng, monkeypatch):
    X, y = _data(rng)
    path = tmp_path / "best.npz"
    model = MLP([5, 8, 3], seed=0)
    model.fit(X, y, epochs=1, verbose=0, callbacks=[SaveBest(path, monitor="loss")])
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken)
    saver = SaveBest(path, monitor="loss")
    with pytest.raises(OSError, match="disk full"):
        model.fit(X, y, epochs=1, verbose=0, callbacks=[saver])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.npz"]  # no temporary left


@pytest.mark.parametrize("cb,message", [
    (lambda p: SaveBest(p, monitor="f1"), "does not report"),
    (lambda p: SaveBest(p, monitor="val_loss"), "no validation data"),
    (lambda p: ReduceLROnPlateau("val_loss"), "no validation data"),
    (lambda p: SaveBest(p, monitor="top_2_accuracy"), "does not report"),
])
def test_callback_monitors_are_checked_before_training(tmp_path, rng, cb, message):
    X, y = _data(rng)
    model = MLP([5, 8, 3], seed=0)
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, epochs=1, verbose=0, callbacks=[cb(tmp_path / "m.npz")])
    assert model.optimizer_ is None


# ---------------------------------------------------------------------- plateau
def test_reduce_lr_on_plateau_equals_lowering_the_rate_by_hand(rng):
    X, y = _data(rng)
    # mode="max" on a falling loss: every epoch after the first is a stall, so with
    # patience=1 the rate halves after epochs 2, 3 and 4 (the last one unused).
    plateau = ReduceLROnPlateau("loss", factor=0.5, patience=1, mode="max")
    a = MLP([5, 8, 3], seed=0)
    hist = a.fit(X, y, epochs=4, verbose=0, optimizer={"name": "sgd", "lr": 0.1},
                 callbacks=[plateau])
    assert plateau.reductions == [2, 3, 4]
    assert hist["lr"] == [0.1, 0.1, 0.05, 0.025]
    b = MLP([5, 8, 3], seed=0)
    for lr, epochs in ((0.1, 2), (0.05, 1), (0.025, 1)):
        b.fit(X, y, epochs=epochs, verbose=0, optimizer={"name": "sgd", "lr": lr})
    for p, q in zip(params_np(a), params_np(b)):
        np.testing.assert_array_equal(p, q)


def test_reduce_lr_on_plateau_patience_cooldown_and_floor():
    plateau = ReduceLROnPlateau("val_loss", factor=0.1, patience=2, cooldown=1,
                                min_lr=0.002)
    for epoch, value in enumerate([1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1], start=1):
        plateau.on_epoch_end(None, epoch, {"val_loss": value})
    # stalls at 3, 4 -> cut after 4; epoch 5 cools down; 6, 7 -> cut after 7
    assert plateau.reductions == [4, 7]
    assert plateau.scaled(0.1) == 0.002 and plateau.scaled(0.001) == 0.001
    with pytest.raises(ValueError, match="'factor' parameter"):
        ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_on_plateau_keeps_the_fast_step(rng):
    X, y = _data(rng)
    model = MLP([5, 8, 3], seed=0).compile({"name": "adam", "lr": 0.01})
    calls = []
    fast = model._fast_step
    assert fast is not None

    def counting(*args, **kwargs):
        calls.append(kwargs["hyper"]["lr"])
        return fast(*args, **kwargs)

    model._fast_step = counting
    plateau = ReduceLROnPlateau("loss", factor=0.5, patience=1, mode="max")
    model.fit(X, y, epochs=3, batch_size=32, verbose=0, callbacks=[plateau])
    assert calls == [0.01] * 6 + [0.005] * 3


# ---------------------------------------------------------------------- clipping
def test_clipping_runs_the_generic_step_and_equals_it(rng):
    X, y = _data(rng)
    model = MLP([5, 16, 3], seed=0).compile({"name": "adam", "lr": 0.01})
    used = []
    fast = model._fast_step
    model._fast_step = lambda *a, **k: used.append(1) or fast(*a, **k)
    model.fit(X, y, epochs=3, verbose=0, clip_norm=1e30)  # never scales
    assert used == []  # the fast step was switched off, not silently skipped
    with _fast.disabled():
        generic = MLP([5, 16, 3], seed=0)
        generic.fit(X, y, epochs=3, verbose=0, optimizer={"name": "adam", "lr": 0.01})
    for p, q in zip(params_np(model), params_np(generic)):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("kind", ["norm", "value", "both"])
def test_clipping_math(backend, rng, kind):
    X, y = _data(rng, n=20)
    kwargs = {"norm": {"clip_norm": 0.05}, "value": {"clip_value": 0.01},
              "both": {"clip_norm": 0.05, "clip_value": 0.01}}[kind]
    ref = MLP([5, 6, 3], seed=1, backend=backend, dtype="float64", alpha=0.01)
    model = MLP([5, 6, 3], seed=1, backend=backend, dtype="float64", alpha=0.01)
    Xd = ref.to_device_X(X)
    Yd, _ = ref.to_device_y(y, 20)
    _, grads, _ = ref.loss_and_grads(Xd, Yd)
    g = [_backend.to_numpy(a) for a in grads]
    if "clip_value" in kwargs:
        g = [np.clip(a, -0.01, 0.01) for a in g]
    if "clip_norm" in kwargs:
        norm = np.sqrt(sum(float(np.sum(a * a)) for a in g))
        assert norm > 0.05  # the test clips for real
        g = [a * min(1.0, 0.05 / (norm + 1e-6)) for a in g]
    want = [p - 0.5 * a for p, a in zip(params_np(ref), g)]
    model.fit(X, y, epochs=1, batch_size=None, shuffle=False, verbose=0,
              optimizer={"name": "sgd", "lr": 0.5}, **kwargs)
    for p, q in zip(params_np(model), want):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kwargs", [{"clip_norm": 0.0}, {"clip_value": -1.0},
                                    {"clip_norm": "big"}])
def test_clipping_parameters_are_checked(rng, kwargs):
    X, y = _data(rng)
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        MLP([5, 8, 3], seed=0).fit(X, y, verbose=0, **kwargs)


# ---------------------------------------------------------------------- warm-up
def test_warmup_schedule():
    s = WarmupSchedule(5)
    assert [s(1.0, t) for t in range(7)] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0]
    cos = WarmupSchedule(2, then={"name": "cosine", "total_steps": 4, "lr": 0.5})
    assert cos.lr == 0.5  # taken from the schedule after the warm-up
    plain = get_schedule("cosine", total_steps=4)
    assert [cos(0.5, t) for t in range(2, 7)] == [plain(0.5, t) for t in range(5)]
    opt = get_optimizer("adam", lr=get_schedule(cos.get_config()))
    assert opt.get_config()["lr"] == cos.get_config()
    assert opt.current_lr(0) == 0.25
    with pytest.raises(ValueError, match="'warmup_steps' parameter"):
        WarmupSchedule(0)
    with pytest.raises(ValueError, match="Unknown|unknown"):
        WarmupSchedule(3, then="cosinus")


def test_warmup_in_fit_and_history(rng):
    X, y = _data(rng, n=64)
    hist = MLP([5, 8, 3], seed=0).fit(
        X, y, epochs=3, batch_size=32, verbose=0,
        optimizer={"name": "sgd", "lr": {"name": "warmup", "warmup_steps": 4, "lr": 0.1}})
    assert hist["lr"] == pytest.approx([0.025, 0.075, 0.1])


# ---------------------------------------------------------------------- class weights
def test_class_weight_equals_sample_weight(backend, rng):
    X, y = _data(rng)
    sw = np.where(y == 1, 3.0, 1.0)
    a = MLP([5, 8, 3], seed=0, backend=backend)
    a.fit(X, y, epochs=2, verbose=0, class_weight={1: 3.0}, sample_weight=np.ones(96))
    b = MLP([5, 8, 3], seed=0, backend=backend)
    b.fit(X, y, epochs=2, verbose=0, sample_weight=sw)
    for p, q in zip(params_np(a), params_np(b)):
        np.testing.assert_array_equal(p, q)


def test_balanced_class_weight_matches_sklearn(rng):
    compute_sample_weight = pytest.importorskip(
        "sklearn.utils.class_weight").compute_sample_weight
    X, y = _data(rng)
    y[:60] = 0
    a = MLP([5, 8, 3], seed=0)
    a.fit(X, np.eye(3)[y], epochs=2, verbose=0, class_weight="balanced")  # one-hot rows
    b = MLP([5, 8, 3], seed=0)
    b.fit(X, y, epochs=2, verbose=0, sample_weight=compute_sample_weight("balanced", y))
    for p, q in zip(params_np(a), params_np(b)):
        np.testing.assert_array_equal(p, q)


def test_class_weight_for_sigmoid_outputs(rng):
    X, _ = _data(rng)
    y = (X[:, 0] > 1).astype(np.float32)
    a = MLP([5, 8, 1], loss="binary_cross_entropy", seed=0)
    a.fit(X, y, epochs=2, verbose=0, class_weight={1: 4.0})
    b = MLP([5, 8, 1], loss="binary_cross_entropy", seed=0)
    b.fit(X, y, epochs=2, verbose=0, sample_weight=np.where(y == 1, 4.0, 1.0))
    for p, q in zip(params_np(a), params_np(b)):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("kwargs,message", [
    ({"class_weight": "auto"}, "'class_weight' parameter"),
    ({"class_weight": {7: 2.0}}, "not classes"),
    ({"class_weight": {0: 0.0, 1: 0.0, 2: 0.0}}, "all zero"),
])
def test_class_weight_errors(rng, kwargs, message):
    X, y = _data(rng)
    model = MLP([5, 8, 3], seed=0)
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, verbose=0, **kwargs)
    assert model.optimizer_ is None
    with pytest.raises(ValueError, match="needs a classifier"):
        MLP([5, 8, 1], loss="mse", seed=0).fit(X, y.astype(np.float32), verbose=0,
                                              class_weight="balanced")


def test_sklearn_wrapper_shares_the_class_weight_code():
    sk = pytest.importorskip("mlpx.sklearn")
    from mlpx import metrics
    assert sk.class_sample_weight is metrics.class_sample_weight


# ---------------------------------------------------------------------- early stopping
def test_early_stopping_needs_validation_data_unless_told_to_watch_the_loss(rng):
    X, y = _data(rng)
    model = MLP([5, 8, 3], seed=0)
    with pytest.raises(ValueError, match="monitor': 'loss'"):
        model.fit(X, y, epochs=3, verbose=0, early_stopping=2)
    assert model.optimizer_ is None
    hist = model.fit(X, y, epochs=40, verbose=0, optimizer={"name": "sgd", "lr": 1e-5},
                     early_stopping={"monitor": "loss", "patience": 1, "min_delta": 1.0})
    assert hist.stopped_early and len(hist.epochs) == 2


def test_model_predicts_before_fit(rng):
    X, y = _data(rng)
    model = MLP([5, 8, 3], seed=0)
    assert _backend.to_numpy(model.predict(X)).shape == (96,)  # from random weights
    assert 0.0 <= model.score(X, y) <= 1.0
