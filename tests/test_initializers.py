"""Tests for mlpx.initializers: statistics, seeding, dtypes, errors and configs."""

import json
import math
import pickle

import numpy as np
import pytest

from mlpx import _backend
from mlpx.initializers import (
    INITIALIZERS,
    Initializer,
    compute_fans,
    default_initializer,
    get_initializer,
)
from tests.helpers import assert_array

CANONICAL = ("zeros", "constant", "normal", "uniform", "he_uniform", "he_normal",
             "glorot_uniform", "glorot_normal", "lecun_normal")
RANDOM = ("normal", "uniform", "he_uniform", "he_normal", "glorot_uniform",
          "glorot_normal", "lecun_normal")


def test_registry_holds_every_initializer():
    assert set(CANONICAL) <= set(INITIALIZERS)
    for name in CANONICAL:
        assert INITIALIZERS[name].name == name
    assert INITIALIZERS["xavier_uniform"] is INITIALIZERS["glorot_uniform"]
    assert INITIALIZERS["kaiming_normal"] is INITIALIZERS["he_normal"]


@pytest.mark.parametrize("name", CANONICAL)
@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32])
def test_shape_dtype_and_host_array(name, dtype):
    W = get_initializer(name)((7, 5), rng=np.random.default_rng(0), dtype=dtype)
    assert isinstance(W, np.ndarray)
    assert W.shape == (7, 5)
    assert W.dtype == np.dtype(dtype)
    assert W.flags.c_contiguous
    assert np.isfinite(W).all()


@pytest.mark.parametrize("name", CANONICAL)
def test_default_dtype_is_float32(name):
    assert get_initializer(name)((3, 2), rng=np.random.default_rng(0)).dtype == np.float32


@pytest.mark.parametrize("shape", [(4,), (), (3, 4, 2), (0, 3)])
def test_other_shapes(shape):
    W = get_initializer("glorot_uniform")(shape, rng=np.random.default_rng(0))
    assert W.shape == shape


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_numbers_other_seed_other_numbers(name):
    init = get_initializer(name)
    a = init((20, 10), rng=np.random.default_rng(123), dtype="float64")
    b = init((20, 10), rng=np.random.default_rng(123), dtype="float64")
    c = init((20, 10), rng=np.random.default_rng(124), dtype="float64")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", RANDOM)
def test_float32_and_float64_agree_up_to_rounding(name):
    init = get_initializer(name)
    w64 = init((30, 20), rng=np.random.default_rng(5), dtype="float64")
    w32 = init((30, 20), rng=np.random.default_rng(5), dtype="float32")
    np.testing.assert_array_equal(w32, w64.astype(np.float32))


def test_global_random_state_untouched():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    get_initializer("he_normal")((50, 50), rng=np.random.default_rng(1))
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_successive_draws_advance_the_generator():
    rng = np.random.default_rng(0)
    init = get_initializer("normal")
    assert not np.array_equal(init((5, 5), rng=rng), init((5, 5), rng=rng))


FAN_IN, FAN_OUT = 800, 400


@pytest.mark.parametrize("name, std", [
    ("he_normal", math.sqrt(2 / FAN_IN)),
    ("he_uniform", math.sqrt(2 / FAN_IN)),
    ("glorot_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("glorot_uniform", math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ("lecun_normal", math.sqrt(1 / FAN_IN)),
])
def test_variance_scaling_statistics(name, std):
    W = get_initializer(name)((FAN_IN, FAN_OUT), rng=np.random.default_rng(0),
                              dtype="float64")
    # 320k samples: the sample std is within ~0.3% of the truth; allow 2%.
    assert W.std() == pytest.approx(std, rel=0.02)
    assert abs(W.mean()) < 0.01 * std
    if name.endswith("uniform"):
        limit = math.sqrt(3) * std
        assert np.abs(W).max() <= limit
        assert np.abs(W).max() > 0.99 * limit
    else:
        # untruncated: a plain normal reaches past 2 std (a truncated one would not)
        assert np.abs(W).max() > 3 * std


def test_uniform_limits_match_textbook_formulas():
    rng = np.random.default_rng(0)
    he = get_initializer("he_uniform")((600, 10), rng=rng, dtype="float64")
    gl = get_initializer("glorot_uniform")((600, 10), rng=rng, dtype="float64")
    assert np.abs(he).max() <= math.sqrt(6 / 600)
    assert np.abs(gl).max() <= math.sqrt(6 / 610)


def test_normal_statistics_and_parameters():
    W = get_initializer("normal", std=0.5, mean=2.0)((500, 400), rng=np.random.default_rng(0),
                                                    dtype="float64")
    assert W.mean() == pytest.approx(2.0, abs=0.01)
    assert W.std() == pytest.approx(0.5, rel=0.01)


def test_normal_is_a_scaled_standard_normal():
    W = get_initializer("normal", std=0.1)((4, 3), rng=np.random.default_rng(9),
                                          dtype="float64")
    z = np.random.default_rng(9).standard_normal((4, 3))
    np.testing.assert_allclose(W, 0.1 * z, rtol=1e-15)


def test_uniform_statistics_and_bounds():
    a, b = -0.2, 0.6
    W = get_initializer("uniform", a=a, b=b)((500, 400), rng=np.random.default_rng(0),
                                            dtype="float64")
    assert W.min() >= a and W.max() < b
    assert W.mean() == pytest.approx((a + b) / 2, abs=0.005)
    assert W.std() == pytest.approx((b - a) / math.sqrt(12), rel=0.01)
    d = get_initializer("uniform")((1000,), rng=np.random.default_rng(0))
    assert d.min() >= -0.05 and d.max() < 0.05


def test_zeros_and_constant():
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    np.testing.assert_array_equal(get_initializer("zeros")((2, 3), rng=rng), np.zeros((2, 3)))
    np.testing.assert_array_equal(get_initializer("constant", value=0.25)((4,), rng=rng),
                                  np.full(4, 0.25))
    assert rng.bit_generator.state == state  # no random numbers consumed


@pytest.mark.parametrize("shape, fans", [
    ((784, 128), (784, 128)), ((10,), (10, 10)), ((), (1, 1)), ((3, 4, 5), (3, 20)),
])
def test_compute_fans(shape, fans):
    assert compute_fans(shape) == fans


def test_fan_in_is_the_first_axis():
    # (n_in, n_out) convention: he_normal's std depends on shape[0] only.
    a = get_initializer("he_normal")((2000, 10), rng=np.random.default_rng(0), dtype="float64")
    b = get_initializer("he_normal")((10, 2000), rng=np.random.default_rng(0), dtype="float64")
    assert a.std() == pytest.approx(math.sqrt(2 / 2000), rel=0.05)
    assert b.std() == pytest.approx(math.sqrt(2 / 10), rel=0.05)


def test_moves_to_every_backend(backend):
    W = get_initializer("glorot_uniform")((6, 4), rng=np.random.default_rng(0),
                                          dtype="float32")
    X = _backend.to_device(W, backend=backend)
    assert_array(X, W, backend=backend, dtype="float32", shape=(6, 4), rtol=0)


# ---------------------------------------------------------------------------- errors

def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown initializer 'he_nromal'") as exc:
        get_initializer("he_nromal")
    for name in CANONICAL:
        assert name in str(exc.value)


def test_bad_parameter_value_message():
    with pytest.raises(ValueError) as exc:
        get_initializer("normal", std=-1)
    assert str(exc.value) == ("The 'std' parameter of normal must be a float > 0. "
                              "Got -1 instead.")


@pytest.mark.parametrize("name, params", [
    ("normal", {"std": 0}),
    ("normal", {"std": float("nan")}),
    ("normal", {"std": True}),
    ("normal", {"mean": float("inf")}),
    ("normal", {"std": "1"}),
    ("uniform", {"a": 0.1, "b": 0.1}),
    ("uniform", {"a": 1.0, "b": -1.0}),
    ("constant", {"value": None}),
])
def test_invalid_parameter_values(name, params):
    with pytest.raises(ValueError, match="parameter of .* must be a"):
        get_initializer(name, **params)


def test_unknown_parameter_lists_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown parameter\(s\) \['stdd'\].*'std', 'mean'"):
        get_initializer("normal", stdd=0.1)
    with pytest.raises(ValueError, match="Valid parameters: \\[\\]"):
        get_initializer("he_normal", gain=2.0)


def test_bad_spec_types():
    with pytest.raises(TypeError):
        get_initializer(3)
    with pytest.raises(ValueError, match="'name' key"):
        get_initializer({"std": 1.0})
    with pytest.raises(TypeError, match="cannot be given"):
        get_initializer(get_initializer("normal"), std=2.0)


def test_call_errors():
    init = get_initializer("he_normal")
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        init((3, 3), rng=0)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        init((3, 3), rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="dtype"):
        init((3, 3), rng=np.random.default_rng(0), dtype="int32")
    with pytest.raises(ValueError, match="shape"):
        init((3, -1), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        init((3, 2.0), rng=np.random.default_rng(0))
    with pytest.raises(TypeError):
        init((3, 3), np.random.default_rng(0))  # rng is keyword-only


# ---------------------------------------------------------------------------- configs

@pytest.mark.parametrize("spec", [
    "zeros", {"name": "constant", "value": -0.5}, {"name": "normal", "std": 0.02, "mean": 1},
    {"name": "uniform", "a": -1, "b": 2}, "he_uniform", "he_normal", "glorot_uniform",
    "glorot_normal", "lecun_normal", "xavier_normal", "KAIMING_UNIFORM",
])
def test_config_round_trip(spec):
    init = get_initializer(spec)
    cfg = init.get_config()
    assert cfg["name"] in CANONICAL
    assert json.loads(json.dumps(cfg)) == cfg
    again = get_initializer(cfg)
    assert again == init and again.get_config() == cfg
    np.testing.assert_array_equal(init((5, 4), rng=np.random.default_rng(3)),
                                  again((5, 4), rng=np.random.default_rng(3)))
    clone = pickle.loads(pickle.dumps(init))
    assert clone == init


def test_instance_and_dict_override():
    init = get_initializer("normal", std=0.3)
    assert get_initializer(init) is init
    assert get_initializer({"name": "normal", "std": 0.3}, std=0.7).std == 0.7
    assert repr(init) == "Normal(std=0.3, mean=0.0)"
    assert isinstance(init, Initializer)


# ---------------------------------------------------------------------------- defaults

@pytest.mark.parametrize("act", ["relu", "leaky_relu", "prelu", "elu", "gelu", "swish",
                                 "silu", "softplus", "ReLU"])
def test_default_initializer_he_family(act):
    assert default_initializer(act) == "he_normal"


@pytest.mark.parametrize("act", ["sigmoid", "logistic", "tanh", "hard_sigmoid", "hard_tanh",
                                 "identity", "softmax", "no_such_activation", None])
def test_default_initializer_glorot_family(act):
    assert default_initializer(act) == "glorot_uniform"


def test_default_initializer_accepts_objects_and_names_registered_initializers():
    class Act:
        name = "relu"

    assert default_initializer(Act()) == "he_normal"
    assert default_initializer({"name": "tanh"}) == "glorot_uniform"
    assert default_initializer("selu") == "lecun_normal"
    for act in ("relu", "tanh", "selu", "unknown"):
        assert default_initializer(act) in INITIALIZERS
