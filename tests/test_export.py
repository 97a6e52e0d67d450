"""ONNX export (mlpx/export.py): the graph traced on ndonnx, run in ONNX Runtime.

Every exported graph is checked with ``onnx.checker.check_model`` and run in ONNX
Runtime on random batches of several sizes (1 included); its outputs must equal mlpx's
``predict_proba`` / ``predict`` on NumPy to 1e-6 (float32) / 1e-12 (float64).
"""

import importlib.util
import os
import sys

import numpy as np
import pytest

import mlpx
from mlpx import export, io
from mlpx.layers import ActivationLayer, Dense, Dropout, Layer, Maxout, PReLU

HAVE_ONNX = all(importlib.util.find_spec(m) is not None
                for m in ("ndonnx", "onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs the onnx extra: "
                                "pip install 'mlpx[onnx]'")
HAVE_SKL2ONNX = HAVE_ONNX and importlib.util.find_spec("skl2onnx") is not None \
    and importlib.util.find_spec("sklearn") is not None

TOL = {"float32": 1e-6, "float64": 1e-12}
BATCHES = (1, 17, 64)
DTYPES = ("float32", "float64")


def run_graph(proto, X):
    """Check the graph, then run it in ONNX Runtime: {output name: array}."""
    import onnx
    import onnxruntime

    onnx.checker.check_model(proto, full_check=True)
    session = onnxruntime.InferenceSession(proto.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X})))


def assert_exports(model, *, scale=1.0, batches=BATCHES, seed=0):
    """ONNX Runtime's predict_proba and predict equal mlpx's on NumPy, batch by batch."""
    proto = export.to_onnx(model)
    rng = np.random.default_rng(seed)
    tol = TOL[model.dtype]
    for n in batches:
        X = (scale * rng.normal(size=(n, model.n_features))).astype(model.dtype)
        out = run_graph(proto, X)
        proba = out["predict_proba"]
        assert proba.dtype == np.dtype(model.dtype)
        assert proba.shape == (n, model.n_outputs)
        np.testing.assert_allclose(proba, model.predict_proba(X), rtol=tol, atol=tol)
        expected = model.predict(X)
        assert out["predict"].shape == expected.shape
        if model.output.name in ("softmax", "sigmoid"):
            assert out["predict"].dtype == np.int64
            np.testing.assert_array_equal(out["predict"], expected)
        else:
            np.testing.assert_allclose(out["predict"], expected, rtol=tol, atol=tol)
    return proto


ACTIVATIONS = [
    "identity", {"name": "affine", "slope": 0.5, "intercept": 0.1}, "sigmoid", "tanh",
    "relu", {"name": "leaky_relu", "alpha": 0.1}, "elu", "softplus", "swish",
    {"name": "swish", "beta": 1.7}, "gelu", {"name": "gelu", "approximate": "tanh"},
    {"name": "gelu", "approximate": "sigmoid"}, "hard_sigmoid", "hard_tanh", "exp",
    "softmax", "log_softmax",
]


def test_every_activation_is_listed():
    listed = {mlpx.get_activation(a).name for a in ACTIVATIONS}
    registered = {mlpx.ACTIVATIONS[name].name for name in mlpx.ACTIVATIONS}
    assert registered == listed


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
def test_every_hidden_activation(activation, dtype):
    model = mlpx.MLP([5, 12, 4], activation=activation, dtype=dtype, seed=1)
    # exp after exp amplifies float32 rounding: inputs of unit scale keep it conditioned.
    assert_exports(model, scale=1.0 if activation == "exp" else 2.0)


PAIRS = [
    ("cross_entropy", None), ("binary_cross_entropy", None), ("mse", None),
    ("poisson", None), ("mse", "sigmoid"), ("mse", "tanh"), ("cross_entropy", "sigmoid"),
    ("binary_cross_entropy", "softmax"), ("mse", "softmax"), ("mse", "log_softmax"),
]


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,output", PAIRS, ids=str)
def test_every_loss_output_pairing(loss, output, dtype):
    model = mlpx.MLP([6, 10, 3], activation="tanh", loss=loss, output=output, dtype=dtype,
                     seed=2)
    assert_exports(model, scale=1.5)


@needs_onnx
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_single_and_several_sigmoid_outputs_predict_like_mlpx(n_outputs):
    model = mlpx.MLP([4, 8, n_outputs], loss="binary_cross_entropy", dtype="float64",
                     seed=3)
    proto = assert_exports(model)
    rank = len(proto.graph.output[1].type.tensor_type.shape.dim)
    assert rank == (1 if n_outputs == 1 else 2)


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", [
    {"activation": "prelu"}, {"activation": "maxout"}, {"activation": "maxout", "maxout_k": 3},
    {"activation": "relu", "dropout": 0.5}, {"activation": "prelu", "dropout": 0.2},
    {"activation": "maxout", "dropout": 0.3},
], ids=str)
def test_prelu_maxout_dropout(kwargs, dtype):
    model = mlpx.MLP([7, 11, 5], dtype=dtype, seed=4, **kwargs)
    # Make PReLU's slopes differ per unit, so a broadcasting slip would show.
    for layer in model.layers:
        if isinstance(layer, PReLU):
            layer.params = [np.linspace(-0.5, 0.9, layer.n_in).astype(dtype)]
    assert_exports(model, scale=2.0)


@needs_onnx
def test_trained_model_with_dropout_exports_inference():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = mlpx.MLP([6, 16, 2], dropout=0.5, seed=0)
    model.fit(X, y, epochs=3, batch_size=32, verbose=0)
    assert_exports(model)


@needs_onnx
@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_of_every_layer(dtype):
    layers = [Dense(9), PReLU(alpha_init=0.1), Dropout(0.4), Maxout(5, 3),
              ActivationLayer("elu"), Dense(4, bias=False), ActivationLayer("tanh"),
              Dense(3)]
    model = mlpx.Sequential(layers, n_features=6, dtype=dtype, seed=6)
    assert_exports(model, scale=2.0)


@needs_onnx
def test_model_on_array_api_strict_exports():
    pytest.importorskip("array_api_strict")
    model = mlpx.MLP([4, 8, 3], backend="array_api_strict", dtype="float64", seed=7)
    reference = mlpx.MLP([4, 8, 3], dtype="float64", seed=7)
    reference.set_params([mlpx.to_numpy(p) for p in model.params])
    out = run_graph(export.to_onnx(model), np.ones((3, 4)))
    np.testing.assert_allclose(out["predict_proba"], reference.predict_proba(np.ones((3, 4))),
                               rtol=1e-12, atol=1e-12)


@needs_onnx
def test_graph_has_a_symbolic_batch_dimension_and_passes_the_checker():
    import onnx

    model = mlpx.MLP([5, 8, 3], seed=0)
    proto = export.to_onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    (x,) = proto.graph.input
    assert x.name == "X"
    dims = x.type.tensor_type.shape.dim
    assert dims[0].dim_param == export.BATCH_DIM and not dims[0].HasField("dim_value")
    assert dims[1].dim_value == 5
    assert x.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    for out in proto.graph.output:
        assert out.type.tensor_type.shape.dim[0].dim_param == export.BATCH_DIM
    assert [o.name for o in proto.graph.output] == ["predict_proba", "predict"]
    assert proto.producer_name == "mlpx"
    assert [o.name for o in export.to_onnx(model, predict=False).graph.output] \
        == ["predict_proba"]
    f64 = export.to_onnx(mlpx.MLP([5, 3], dtype="float64", seed=0))
    assert f64.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


@needs_onnx
def test_the_graph_uses_standard_onnx_operators_only():
    def nodes(graph):  # with the subgraphs (ndonnx guards MatMul against empty batches)
        for node in graph.node:
            yield node
            for attr in node.attribute:
                if attr.HasField("g"):
                    yield from nodes(attr.g)

    model = mlpx.MLP([5, 8, 8, 3], seed=0)
    proto = export.to_onnx(model)
    assert {n.domain for n in nodes(proto.graph)} <= {""}
    ops = [n.op_type for n in nodes(proto.graph)]
    assert ops.count("MatMul") >= 3 and "Softmax" not in ops  # mlpx's softmax, traced


@needs_onnx
def test_export_onnx_writes_the_file_three_ways(tmp_path):
    import onnx

    model = mlpx.MLP([4, 6, 2], seed=0)
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    for i, write in enumerate([lambda p: model.export_onnx(p),
                               lambda p: mlpx.export_onnx(model, p),
                               lambda p: export.export_onnx(model, str(p), predict=False)]):
        path = tmp_path / f"m{i}.onnx"
        returned = write(path)
        assert returned == os.path.abspath(path)
        out = run_graph(onnx.load(returned), X)
        np.testing.assert_allclose(out["predict_proba"], model.predict_proba(X),
                                   rtol=1e-6, atol=1e-6)


@needs_onnx
def test_a_loaded_model_exports_like_the_saved_one(tmp_path):
    model = mlpx.MLP([4, 6, 3], activation="maxout", dtype="float64", seed=0)
    model.save(tmp_path / "m.npz")
    assert_exports(mlpx.load(tmp_path / "m.npz"))


@needs_onnx
def test_a_failing_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    first = mlpx.MLP([4, 6, 2], seed=0)
    first.export_onnx(path)
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(io.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="simulated"):
        mlpx.MLP([4, 9, 2], seed=1).export_onnx(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]  # no temporary file left


def test_write_atomic_keeps_the_previous_file_when_write_raises(tmp_path):
    path = tmp_path / "f.bin"
    assert io.write_atomic(path, lambda f: f.write(b"old")) == str(path)

    def half_then_fail(f):
        f.write(b"new but incomplete")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        io.write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]
    with pytest.raises(ValueError, match="does not exist"):
        io.write_atomic(tmp_path / "missing" / "f.bin", lambda f: None)


@pytest.mark.parametrize("missing", ["ndonnx", "onnx"])
def test_missing_package_names_the_extra(missing, monkeypatch, tmp_path):
    if missing == "onnx" and importlib.util.find_spec("ndonnx") is None:
        pytest.skip("ndonnx is missing too; the message names it first")
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    model = mlpx.MLP([3, 2], seed=0)
    with pytest.raises(ImportError, match=rf"package {missing}\b.*pip install 'mlpx\[onnx\]'"):
        model.export_onnx(tmp_path / "m.onnx")
    assert not os.listdir(tmp_path)
    with pytest.raises(ImportError, match=r"mlpx\[onnx\]"):
        export.require(missing)


def test_require_refuses_unknown_names():
    with pytest.raises(ValueError, match="must be one of"):
        export.require("tensorflow")


@needs_onnx
def test_unbuilt_model_is_refused():
    model = mlpx.Sequential([Dense(3)])
    with pytest.raises(ValueError, match="not built yet"):
        export.to_onnx(model)


class _HostOnly(Layer):
    """A layer that leaves the Array API (calls NumPy): it cannot be traced."""

    def forward(self, x, *, xp, training=False, rng=None):
        return xp.asarray(np.sin(np.asarray(x))), None


@needs_onnx
def test_untraceable_layer_is_named():
    model = mlpx.Sequential([Dense(3), _HostOnly(), Dense(2)], n_features=4, seed=0)
    with pytest.raises(ValueError, match=r"cannot be exported to ONNX.*_HostOnly"):
        export.to_onnx(model)


# ---------------------------------------------------------------------- scikit-learn
needs_skl2onnx = pytest.mark.skipif(not HAVE_SKL2ONNX,
                                    reason="needs scikit-learn and the onnx extra")


def _xy(kind, n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    if kind == "binary":
        y = np.where(X[:, 0] > 0, 7, -3)
    elif kind == "multiclass":
        y = rng.integers(0, 3, n) + (X[:, 1] > 0) * 3
    elif kind == "strings":
        y = np.array(["cat", "dog", "emu"])[(X[:, 0] > 0) * 1 + (X[:, 1] > 0.5) * 1]
    else:  # multilabel
        y = (X[:, :3] > 0).astype(int)
    return X, y


@needs_skl2onnx
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["binary", "multiclass", "strings", "multilabel"])
def test_classifier_to_onnx_maps_labels(kind, dtype):
    from mlpx.sklearn import MLPClassifier

    X, y = _xy(kind)
    X = X.astype(dtype)
    clf = MLPClassifier((8,), max_iter=30, random_state=0, dtype=dtype).fit(X, y)
    proto = clf.to_onnx()
    for n in BATCHES:
        Xb = X[:n]
        out = run_graph(proto, Xb)
        np.testing.assert_allclose(out["probabilities"], clf.predict_proba(Xb),
                                   rtol=TOL[dtype], atol=TOL[dtype])
        np.testing.assert_array_equal(out["label"], clf.predict(Xb))


@needs_skl2onnx
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_to_onnx(loss, tmp_path):
    import onnx

    from mlpx.sklearn import MLPRegressor

    X, _ = _xy("binary")
    y = np.stack([np.abs(X[:, 0]), X[:, 1] ** 2], axis=1)
    reg = MLPRegressor(loss=loss, hidden_layer_sizes=(8,), max_iter=30, random_state=0,
                       dtype="float64").fit(X, y)
    path = reg.to_onnx(tmp_path / "reg.onnx")
    out = run_graph(onnx.load(path), X[:9])
    np.testing.assert_allclose(out["variable"], reg.predict(X[:9]), rtol=1e-12, atol=1e-12)


@needs_skl2onnx
def test_unfitted_estimator_is_refused():
    from sklearn.exceptions import NotFittedError

    from mlpx.sklearn import MLPClassifier

    with pytest.raises(NotFittedError):
        MLPClassifier().to_onnx()


@needs_skl2onnx
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["binary", "strings", "regressor"])
def test_pipeline_converts_with_skl2onnx(kind):
    import skl2onnx
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlpx.sklearn import MLPClassifier, MLPRegressor, register_skl2onnx

    register_skl2onnx()
    X, y = _xy("binary" if kind == "regressor" else kind)
    X = (5 * X + 2).astype(np.float32)
    if kind == "regressor":
        est = MLPRegressor(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
        y = X[:, 0] - X[:, 1]
    else:
        est = MLPClassifier((8,), max_iter=30, random_state=0)
    pipe = make_pipeline(StandardScaler(), est).fit(X, y)
    options = None if kind == "regressor" else {id(est): {"zipmap": False}}
    proto = skl2onnx.to_onnx(pipe, X[:1], options=options)
    out = list(run_graph(proto, X[:13]).values())
    if kind == "regressor":
        np.testing.assert_allclose(out[0].ravel(), pipe.predict(X[:13]), rtol=1e-5,
                                   atol=1e-5)
    else:
        np.testing.assert_array_equal(out[0], pipe.predict(X[:13]))
        np.testing.assert_allclose(out[1], pipe.predict_proba(X[:13]), rtol=1e-5, atol=1e-5)


@needs_skl2onnx
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float_class_labels_are_refused_with_a_reason():
    from mlpx.sklearn import MLPClassifier

    X, y = _xy("binary")
    clf = MLPClassifier((4,), max_iter=5, random_state=0).fit(X, (y > 0) * 1.0 + 1.0)
    with pytest.raises(ValueError, match="Only integer and string class labels.*float64"):
        clf.to_onnx()


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")
def test_register_skl2onnx_without_it_names_the_extra(monkeypatch):
    from mlpx.sklearn import register_skl2onnx

    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(ImportError, match=r"package skl2onnx\b.*mlpx\[onnx\]"):
        register_skl2onnx()
