"""Tests for mlpx._registry: one policy (normalisation, aliases, errors, configs) across
the six registries (activations, losses, initializers, layers, optimizers, schedules)."""

import json
import pickle
from collections.abc import Mapping

import pytest

from mlpx._registry import Registry, normalize_name
from mlpx._validation import InvalidParameterError
from mlpx.activations import ACTIVATIONS, Activation, get_activation
from mlpx.initializers import INITIALIZERS, Initializer, get_initializer
from mlpx.layers import LAYERS, Layer, get_layer
from mlpx.losses import LOSSES, Loss, get_loss
from mlpx.optimizers import OPTIMIZERS, SCHEDULES, Optimizer, Schedule, get_optimizer, get_schedule

# kind, getter, registry, base, canonical name, other spellings, valid params
CASES = [
    ("activation", get_activation, ACTIVATIONS, Activation, "leaky_relu",
     ["Leaky-ReLU", "LeakyReLU", "leaky relu", "LEAKY_RELU", "leaky-relu"], {"alpha": 0.2}),
    ("loss", get_loss, LOSSES, Loss, "binary_cross_entropy",
     ["Binary-Cross-Entropy", "BinaryCrossEntropy", "binary cross entropy"], {}),
    ("initializer", get_initializer, INITIALIZERS, Initializer, "he_normal",
     ["He-Normal", "HeNormal", "he normal", "HE_NORMAL"], {}),
    ("layer", get_layer, LAYERS, Layer, "Dense", ["dense", "DENSE", "de-nse"], {"units": 3}),
    ("optimizer", get_optimizer, OPTIMIZERS, Optimizer, "adamw",
     ["Adam-W", "AdamW", "adam_w", "ADAM W"], {"lr": 0.01}),
    ("schedule", get_schedule, SCHEDULES, Schedule, "inverse_scaling",
     ["Inverse-Scaling", "InverseScaling", "inverse scaling"], {"power_t": 0.25}),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("kind,get,registry,base,name,spellings,params", CASES, ids=IDS)
def test_registries_are_registry_mappings(kind, get, registry, base, name, spellings, params):
    assert isinstance(registry, Registry) and isinstance(registry, Mapping)
    assert registry.kind == kind and registry.base is base
    assert name in registry and name in list(registry)
    assert len(registry) == len(list(registry))
    assert registry.get("no such thing") is None  # Mapping.get keeps its meaning
    assert dict(registry.items())[name] is registry[name]


@pytest.mark.parametrize("kind,get,registry,base,name,spellings,params", CASES, ids=IDS)
def test_name_normalisation(kind, get, registry, base, name, spellings, params):
    ref = get(name, **params)
    for spelling in spellings:
        assert spelling in registry
        assert registry[spelling] is registry[name]
        obj = get(spelling, **params)
        assert type(obj) is type(ref) and obj.get_config() == ref.get_config()
        # the canonical name is what configs store, whatever the spelling
        assert obj.get_config()["name"] == ref.get_config()["name"]
        assert get({**ref.get_config(), "name": spelling}).get_config() == ref.get_config()


@pytest.mark.parametrize("registry,alias,canonical", [
    (ACTIVATIONS, "linear", "identity"), (ACTIVATIONS, "logistic", "sigmoid"),
    (ACTIVATIONS, "silu", "swish"), (ACTIVATIONS, "exponential", "exp"),
    (LOSSES, "log_loss", "cross_entropy"), (LOSSES, "squared_error", "mse"),
    (LOSSES, "Categorical-Cross-Entropy", "cross_entropy"),
    (INITIALIZERS, "xavier_uniform", "glorot_uniform"),
    (INITIALIZERS, "Kaiming-Normal", "he_normal"),
    (SCHEDULES, "invscaling", "inverse_scaling"), (SCHEDULES, "InvScaling", "inverse_scaling"),
])
def test_aliases(registry, alias, canonical):
    assert registry[alias] is registry[canonical]
    assert registry.canonical_name(registry[alias]) == canonical


@pytest.mark.parametrize("kind,get,registry,base,name,spellings,params", CASES, ids=IDS)
def test_unknown_name_lists_valid_names(kind, get, registry, base, name, spellings, params):
    with pytest.raises(InvalidParameterError) as info:
        get("no-such-thing")
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    msg = str(info.value)
    assert msg.startswith(f"Unknown {kind} 'no-such-thing'. Valid {kind}s: [")
    for spelling in registry:  # canonical names and aliases
        assert repr(spelling) in msg
    with pytest.raises(InvalidParameterError, match=f"Unknown {kind} 'nope'"):
        get({"name": "nope"})


@pytest.mark.parametrize("kind,get,registry,base,name,spellings,params", CASES, ids=IDS)
def test_unknown_parameter_lists_valid_parameters(kind, get, registry, base, name,
                                                  spellings, params):
    with pytest.raises(InvalidParameterError) as info:
        get(name, colour="red", **params)
    valid = Registry.parameters(registry[name])[0]
    assert str(info.value) == (f"Unknown parameter(s) ['colour'] for {kind} {name!r}. "
                               f"Valid parameters: {valid}.")
    with pytest.raises(InvalidParameterError, match=r"Unknown parameter\(s\) \['colour'\]"):
        get({"name": name, "colour": "red", **params})


@pytest.mark.parametrize("kind,get,registry,base,name,spellings,params", CASES, ids=IDS)
def test_instance_with_params_is_refused(kind, get, registry, base, name, spellings, params):
    obj = get(name, **params)
    assert get(obj) is obj
    with pytest.raises(InvalidParameterError) as info:
        get(obj, colour="red")
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    assert str(info.value).startswith("Parameters ['colour'] cannot be given with ")
    assert f"{base.__name__} instance" in str(info.value)


@pytest.mark.parametrize("kind,get,registry,base,name,spellings,params", CASES, ids=IDS)
def test_bad_specs(kind, get, registry, base, name, spellings, params):
    with pytest.raises(InvalidParameterError, match=f"The '{kind}' parameter must be a name, "
                                                    f"an? {base.__name__} or a config dict. "
                                                    "Got 3.5 of type float instead."):
        get(3.5)
    with pytest.raises(InvalidParameterError, match=f"{kind} config dict needs a 'name' key"):
        get(dict(params))
    with pytest.raises(InvalidParameterError, match=f"{kind} name must be a str. Got 3 "):
        get({"name": 3})


@pytest.mark.parametrize("kind,get,registry,base,name,spellings,params", CASES, ids=IDS)
def test_config_round_trip(kind, get, registry, base, name, spellings, params):
    obj = get(name, **params)
    cfg = obj.get_config()
    assert json.loads(json.dumps(cfg)) == cfg
    again = get(cfg)
    assert type(again) is type(obj) and again.get_config() == cfg
    assert get(pickle.loads(pickle.dumps(cfg))).get_config() == cfg
    # keyword parameters override a config dict's entries
    if params:
        key, value = next(iter(params.items()))
        other = value * 2
        assert get(cfg, **{key: other}).get_config()[key] == other


@pytest.mark.parametrize("get,config", [
    # configs as saved model files and checkpoints hold them (before issue 10)
    (get_layer, {"name": "Dense", "units": 4, "init": {"name": "he_normal"}, "bias": True}),
    (get_layer, {"name": "ActivationLayer", "activation": {"name": "leaky_relu", "alpha": 0.1}}),
    (get_layer, {"name": "Dropout", "p": 0.25}),
    (get_layer, {"name": "PReLU", "alpha_init": 0.25}),
    (get_layer, {"name": "Maxout", "units": 2, "k": 3, "init": {"name": "glorot_uniform"}}),
    (get_activation, {"name": "gelu", "approximate": "tanh"}),
    (get_loss, {"name": "cross_entropy"}),
    (get_initializer, {"name": "uniform", "a": -0.1, "b": 0.1}),
    (get_optimizer, {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True,
                     "weight_decay": 0.0}),
    (get_optimizer, {"name": "adam", "lr": {"name": "cosine", "total_steps": 10,
                                            "min_lr": 0.0, "lr": None},
                     "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}),
    (get_schedule, {"name": "step", "step_size": 3, "gamma": 0.5, "lr": 0.1}),
])
def test_saved_configs_still_load_unchanged(get, config):
    assert get(config).get_config() == config


def test_layer_missing_parameter_and_open_kwargs():
    with pytest.raises(InvalidParameterError, match=r"Missing parameter\(s\) \['units'\] for "
                                                    r"layer 'Dense'"):
        get_layer("dense")
    # ActivationLayer takes **params for its activation: the activation judges them
    assert get_layer("ActivationLayer", activation="elu", alpha=0.5).activation.alpha == 0.5
    with pytest.raises(InvalidParameterError, match=r"Unknown parameter\(s\) \['beta'\] for "
                                                    r"activation 'elu'"):
        get_layer("ActivationLayer", activation="elu", beta=0.5)


def test_invalid_values_are_invalid_parameter_errors():
    for call in (lambda: get_activation("leaky_relu", alpha=-1),
                 lambda: get_initializer("normal", std=0),
                 lambda: get_layer("Dropout", p=1.0),
                 lambda: get_optimizer("Adam-W", eps=0.0),
                 lambda: get_schedule("step", step_size=0)):
        with pytest.raises(InvalidParameterError, match="parameter of .* must be"):
            call()


def test_normalize_name():
    assert normalize_name("Leaky-ReLU") == normalize_name("leaky_relu") == "leakyrelu"
    assert normalize_name("LeakyReLU") == normalize_name("leaky relu") == "leakyrelu"
    assert normalize_name("Adam-W") == normalize_name("adamw") == "adamw"
    assert normalize_name("Dense") == "dense"


class _Thing:
    def __init__(self, size, colour="red"):
        self.size, self.colour = size, colour


def test_registry_register_lookup_and_clashes():
    reg = Registry("thing", _Thing)
    assert reg.register(_Thing, "big_thing", aliases=("bigthing-alias",)) is _Thing
    assert sorted(reg) == ["big_thing", "bigthing-alias"]
    assert reg["Big Thing"] is _Thing and "BIG-THING" in reg and 3 not in reg
    assert reg.canonical_name(_Thing) == "big_thing"
    assert "Registry('thing'" in repr(reg)
    reg.register(_Thing, "big_thing")  # registering the same class again is harmless
    assert len(reg) == 2

    class Other:
        pass

    with pytest.raises(ValueError, match="'BigThing' clashes with 'big_thing'"):
        reg.register(Other, "BigThing")
    with pytest.raises(KeyError):
        reg["other"]
    with pytest.raises(KeyError):
        reg[3]
    thing = reg.build({"name": "big-thing", "size": 2}, colour="blue")
    assert (thing.size, thing.colour) == (2, "blue")
    assert Registry.parameters(_Thing) == (["size", "colour"], ["size"], False)
