"""Tests for mlpx._validation: declarative constraints, validate_params, the message
style, the one exception type, the older check_* helpers built on them, and
EarlyStopping's parameter checks (which use them)."""

import math

import numpy as np
import pytest

from mlpx._validation import (
    Boolean,
    InstanceOf,
    Interval,
    InvalidParameterError,
    NoneValue,
    Options,
    check_bool,
    check_float,
    check_int,
    check_options,
    describe,
    validate_params,
)
from mlpx.training import EarlyStopping


def test_invalid_parameter_error_is_value_and_type_error():
    assert issubclass(InvalidParameterError, ValueError)
    assert issubclass(InvalidParameterError, TypeError)
    for exc in (ValueError, TypeError):
        with pytest.raises(exc):
            validate_params("MLP", {"alpha": -1}, {"alpha": Interval(float, 0, None)})


@pytest.mark.parametrize("constraint, text", [
    (Interval(float, 0, 1, closed="left"), "a float in [0, 1)"),
    (Interval(float, 0, 1, closed="right"), "a float in (0, 1]"),
    (Interval(float, 0, 1, closed="both"), "a float in [0, 1]"),
    (Interval(float, 0, 1, closed="neither"), "a float in (0, 1)"),
    (Interval(float, 0, None, closed="left"), "a float >= 0"),
    (Interval(float, 0.0, None, closed="neither"), "a float > 0"),
    (Interval(float, None, 1e-8, closed="right"), "a float <= 1e-08"),
    (Interval(float, None, 2, closed="neither"), "a float < 2"),
    (Interval(float), "a finite float"),
    (Interval(int, 1, None, closed="left"), "an int >= 1"),
    (Interval(int, 0, 10), "an int in [0, 10]"),
    (Interval(int), "an int"),
    (Options(("none", "tanh")), "one of ['none', 'tanh']"),
    (Options((None, "loss")), "one of [None, 'loss']"),
    (Boolean(), "a bool"),
    (InstanceOf(dict), "a dict"),
    (InstanceOf((int, float), "a number"), "a number"),
    (InstanceOf(OSError), "an OSError"),
    (NoneValue(), "None"),
])
def test_descriptions(constraint, text):
    assert str(constraint) == text


@pytest.mark.parametrize("value, ok", [
    (0.5, True), (0, True), (np.float32(0.25), True), (np.int64(0), True),
    (1.0, False), (-0.1, False), (math.nan, False), (math.inf, False),
    (True, False), (np.bool_(False), False), ("0.5", False), (None, False),
])
def test_float_interval(value, ok):
    c = Interval(float, 0, 1, closed="left")
    assert c.is_satisfied_by(value) is ok
    if ok:
        out = c.convert(value)
        assert type(out) is float and out == float(value)


@pytest.mark.parametrize("value, ok", [
    (1, True), (np.int32(5), True), (0, False), (2.0, False), (True, False), ("3", False),
])
def test_int_interval(value, ok):
    c = Interval(int, 1, None, closed="left")
    assert c.is_satisfied_by(value) is ok
    if ok:
        assert type(c.convert(value)) is int


def test_unbounded_float_interval_still_needs_a_finite_number():
    c = Interval(float)
    assert c.is_satisfied_by(-1e300) and not c.is_satisfied_by(math.inf)
    assert not c.is_satisfied_by(math.nan)


def test_interval_arguments_are_checked():
    with pytest.raises(TypeError, match="float or int"):
        Interval(str)
    with pytest.raises(ValueError, match="'closed' parameter of Interval"):
        Interval(float, 0, 1, closed="open")


def test_options_match_by_type_and_value():
    c = Options((None, "loss", 1))
    assert c.is_satisfied_by("loss") and c.is_satisfied_by(None) and c.is_satisfied_by(1)
    assert not c.is_satisfied_by(True)     # True == 1 but a bool is not the int option
    assert not c.is_satisfied_by("Loss")
    assert not c.is_satisfied_by(1.0)      # not an int
    out = c.convert(np.str_("loss"))
    assert out == "loss" and type(out) is str
    assert Options((True,)).is_satisfied_by(np.bool_(True))
    assert not Options(("a",)).is_satisfied_by(["a"])


def test_boolean():
    c = Boolean()
    assert c.is_satisfied_by(True) and c.is_satisfied_by(np.bool_(False))
    assert not c.is_satisfied_by(1) and not c.is_satisfied_by("yes")
    assert c.convert(np.bool_(True)) is True


def test_validate_params_normalises_and_keeps_order():
    out = validate_params("Thing", {"b": np.float32(0.5), "a": np.int64(3), "c": np.bool_(1),
                                    "d": None, "e": "x"},
                          {"a": Interval(int, 1, None, closed="left"),
                           "b": [Interval(float, 0, 1)],
                           "c": Boolean(), "d": [Interval(float), None],
                           "e": Options(("x", "y"))})
    assert out == {"b": 0.5, "a": 3, "c": True, "d": None, "e": "x"}
    assert list(out) == ["b", "a", "c", "d", "e"]
    assert [type(v) for v in out.values()] == [float, int, bool, type(None), str]


def test_message_style_is_exact():
    with pytest.raises(InvalidParameterError) as info:
        validate_params("MLP", {"alpha": -1}, {"alpha": Interval(float, 0, None)})
    assert str(info.value) == "The 'alpha' parameter of MLP must be a float >= 0. Got -1 instead."
    with pytest.raises(InvalidParameterError) as info:
        validate_params("EarlyStopping", {"monitor": "acc"},
                        {"monitor": Options((None, "loss"))})
    assert str(info.value) == ("The 'monitor' parameter of EarlyStopping must be one of "
                               "[None, 'loss']. Got 'acc' instead.")


def test_message_names_the_constraints_of_the_value_type():
    constraints = {"lr": [Interval(float, 0, None, closed="neither"), InstanceOf(dict),
                          None]}
    # a number out of range: only the number constraint is named
    with pytest.raises(InvalidParameterError) as info:
        validate_params("SGD", {"lr": 0}, constraints)
    assert str(info.value) == "The 'lr' parameter of SGD must be a float > 0. Got 0 instead."
    # a value of no accepted type: every constraint is named
    with pytest.raises(InvalidParameterError) as info:
        validate_params("SGD", {"lr": "0.1"}, constraints)
    assert str(info.value) == ("The 'lr' parameter of SGD must be a float > 0, a dict or None. "
                               "Got '0.1' instead.")
    assert describe([Interval(int), None]) == "an int or None"
    assert describe([Boolean()]) == "a bool"


def test_unknown_parameter_and_bad_constraint():
    with pytest.raises(InvalidParameterError, match=r"Unknown parameter\(s\) \['beta'\] for "
                                                    r"MLP. Valid parameters: \['alpha'\]"):
        validate_params("MLP", {"beta": 1}, {"alpha": Interval(float)})
    with pytest.raises(TypeError, match="Not a parameter constraint"):
        validate_params("MLP", {"alpha": 1}, {"alpha": [float]})


def test_check_helpers_keep_their_messages_and_return_types():
    assert check_float(np.float32(0.5), "p", "Dropout", low=0.0, high=1.0,
                       high_open=True) == 0.5
    with pytest.raises(ValueError) as info:
        check_float(1.0, "p", "Dropout", low=0.0, high=1.0, high_open=True)
    assert str(info.value) == ("The 'p' parameter of Dropout must be a float in [0, 1). "
                               "Got 1.0 instead.")
    with pytest.raises(ValueError, match="must be a float > 0. Got 0 instead"):
        check_float(0, "lr", "SGD", low=0.0, low_open=True)
    with pytest.raises(ValueError, match="must be a float < 1. Got 1 instead"):
        check_float(1, "x", "f", high=1.0, high_open=True)
    with pytest.raises(ValueError, match="must be a finite float. Got nan instead"):
        check_float(math.nan, "x", "f")
    assert check_int(np.int64(0), "step", "SGD", low=0) == 0
    with pytest.raises(ValueError) as info:
        check_int(1.5, "step", "SGD", low=0)
    assert str(info.value) == "The 'step' parameter of SGD must be an int >= 0. Got 1.5 instead."
    assert check_bool(np.bool_(True), "shuffle", "fit") is True
    with pytest.raises(ValueError, match="'shuffle' parameter of fit must be a bool. Got 1"):
        check_bool(1, "shuffle", "fit")
    assert check_options("tanh", "approximate", "gelu", ("none", "tanh")) == "tanh"
    with pytest.raises(ValueError, match=r"must be one of \['none', 'tanh'\]. Got 3 instead"):
        check_options(3, "approximate", "gelu", ("none", "tanh"))


# ------------------------------------------------------------------ EarlyStopping
def test_early_stopping_normalises_parameters():
    es = EarlyStopping(patience=np.int64(3), min_delta=0, restore_best=np.bool_(False),
                       monitor="val_loss")
    assert (es.patience, es.min_delta, es.restore_best, es.monitor) == (3, 0.0, False,
                                                                        "val_loss")
    assert type(es.patience) is int and type(es.min_delta) is float
    assert EarlyStopping() == EarlyStopping(5, 0.0, True, None)


@pytest.mark.parametrize("params, message", [
    ({"patience": 0}, "The 'patience' parameter of EarlyStopping must be an int >= 1. "
                      "Got 0 instead."),
    ({"patience": True}, "The 'patience' parameter of EarlyStopping must be an int >= 1. "
                         "Got True instead."),
    ({"min_delta": -0.1}, "The 'min_delta' parameter of EarlyStopping must be a float >= 0. "
                          "Got -0.1 instead."),
    ({"min_delta": math.nan}, "The 'min_delta' parameter of EarlyStopping must be a float "
                              ">= 0. Got nan instead."),
    ({"restore_best": "yes"}, "The 'restore_best' parameter of EarlyStopping must be a "
                              "bool. Got 'yes' instead."),
    ({"monitor": "acc"}, "The 'monitor' parameter of EarlyStopping must be one of [None, "
                         "'val_loss', 'val_accuracy', 'loss', 'accuracy']. Got 'acc' "
                         "instead."),
])
def test_early_stopping_rejects_bad_parameters(params, message):
    with pytest.raises(InvalidParameterError) as info:
        EarlyStopping(**params)
    assert str(info.value) == message


def test_list_of_checks_every_item_and_the_length():
    from mlpx._validation import Interval, ListOf, validate_params

    c = {"sizes": ListOf(Interval(int, 1, None, closed="left"), min_length=2)}
    assert validate_params("MLP", {"sizes": (784, np.int64(10))}, c) == {"sizes": [784, 10]}
    for bad in ([784], [784, 0], [784, True], "784,10", [784, 2.5]):
        with pytest.raises(InvalidParameterError,
                           match="must be a list of at least 2 ints >= 1"):
            validate_params("MLP", {"sizes": bad}, c)


def test_model_constructors_and_fit_use_the_constraints():
    from mlpx import MLP, Dense, Sequential

    with pytest.raises(InvalidParameterError, match="'layers' parameter of Sequential"):
        Sequential([])
    with pytest.raises(InvalidParameterError, match="'n_features' parameter of Sequential"):
        Sequential([Dense(2)], n_features=0)
    with pytest.raises(InvalidParameterError, match="'maxout_k' parameter of MLP"):
        MLP([2, 3, 2], activation="maxout", maxout_k=0)
    X, y = np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1])
    for kw, name in ((dict(shuffle="yes"), "shuffle"), (dict(verbose=-1), "verbose"),
                     (dict(on_nonfinite="ignore"), "on_nonfinite")):
        with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of MLP.fit"):
            MLP([2, 3, 2]).fit(X, y, **kw)
