"""ONNX export, traced through the Array API.

mlpx never writes ONNX operators by hand. `ndonnx <https://ndonnx.readthedocs.io>`_ is an
Array API namespace whose arrays record an ONNX graph instead of computing: the model's
own generic forward pass (:meth:`mlpx.Sequential.forward_with`, every layer's
``forward`` with ``training=False``) and its output activation are run once on an
ndonnx input of shape ``("batch", n_features)``, and what they record is the graph.
Whatever the forward pass computes on NumPy, CuPy or array-api-strict, the graph computes
in ONNX Runtime, for any batch size.

The graph of an mlpx model (:func:`to_onnx`, :func:`export_onnx`,
:meth:`mlpx.Sequential.export_onnx`, ``mlpx export MODEL.npz MODEL.onnx``):

==================  ============================  ==========================================
name                shape, type                   value
==================  ============================  ==========================================
``X`` (input)       ("batch", n_features),        the features
                    the model's dtype
``predict_proba``   ("batch", n_outputs), dtype   :meth:`~mlpx.Sequential.predict_proba`
``predict``         as ``Sequential.predict``     :meth:`~mlpx.Sequential.predict`
                                                  (int64 labels for softmax and sigmoid
                                                  outputs; left out with ``predict=False``)
==================  ============================  ==========================================

The scikit-learn estimators export through :func:`classifier_to_onnx` and
:func:`regressor_to_onnx` (called by their ``to_onnx`` methods), with skl2onnx's output
names (``label`` and ``probabilities``; ``variable``), and :func:`register_skl2onnx`
makes ``skl2onnx.to_onnx`` convert pipelines that contain them.

The export needs the optional packages ndonnx, onnx and onnxruntime (and skl2onnx for
pipelines): ``pip install 'mlpx[onnx]'``. See ``docs/export.md``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import numpy as np

from . import _backend
from ._version import __version__
from .io import write_atomic

__all__ = [
    "BATCH_DIM",
    "INPUT_NAME",
    "require",
    "to_onnx",
    "export_onnx",
    "save_onnx",
    "classifier_to_onnx",
    "regressor_to_onnx",
    "register_skl2onnx",
]

#: Name of the graph's symbolic batch dimension.
BATCH_DIM = "batch"
#: Name of the graph's input.
INPUT_NAME = "X"

_PACKAGES = {"ndonnx": "ndonnx", "onnx": "onnx", "onnxruntime": "onnxruntime",
             "skl2onnx": "skl2onnx"}


def require(name: str) -> Any:
    """Import one of the optional export packages, or raise an ImportError naming the extra.

    Parameters
    ----------
    name : {"ndonnx", "onnx", "onnxruntime", "skl2onnx"}

    Returns
    -------
    module

    Raises
    ------
    ImportError
        "ONNX export needs the optional package ndonnx, which is not installed. Install
        the export extra with: pip install 'mlpx[onnx]'".
    """
    if name not in _PACKAGES:
        raise ValueError(f"The 'name' parameter of require must be one of "
                         f"{sorted(_PACKAGES)}. Got {name!r} instead.")
    try:
        return importlib.import_module(_PACKAGES[name])
    except ImportError as exc:
        raise ImportError(
            f"ONNX export needs the optional package {name}, which is not installed. "
            "Install the export extra with: pip install 'mlpx[onnx]'") from exc


# ---------------------------------------------------------------------- tracing
def _trace(model) -> tuple[Any, Any, Any, Any]:
    """Run ``model``'s forward pass on ndonnx: ``(ndx, X, logits, outputs)``."""
    ndx = require("ndonnx")
    require("onnx")
    if not getattr(model, "built", False):
        raise ValueError(f"This {type(model).__name__} is not built yet; fit it (or pass "
                         "n_features) before exporting it to ONNX.")
    dtype = _backend.dtype_name(model.dtype)
    X = ndx.argument(shape=(BATCH_DIM, int(model.n_features)), dtype=getattr(ndx, dtype))
    params = [ndx.asarray(_backend.to_numpy(p)) for p in model.params]
    try:
        z = model.forward_with(params, X, xp=ndx)
    except Exception as exc:
        layers = ", ".join(type(layer).__name__ for layer in model.layers)
        raise ValueError(
            f"This {type(model).__name__} cannot be exported to ONNX: its forward pass "
            f"(layers {layers}) could not be traced on the ndonnx namespace "
            f"({type(exc).__name__}: {exc}).") from exc
    try:
        out = model.output.forward(z, xp=ndx)
    except Exception as exc:
        raise ValueError(
            f"This {type(model).__name__} cannot be exported to ONNX: its output "
            f"activation {model.output.name!r} could not be traced on the ndonnx namespace "
            f"({type(exc).__name__}: {exc}).") from exc
    return ndx, X, z, out


def _build(ndx, X, outputs: dict, doc: str):
    proto = ndx.build({INPUT_NAME: X}, outputs)
    # ndonnx leaves the outputs' batch dimension anonymous; it is the input's.
    for out in proto.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM
    proto.producer_name = "mlpx"
    proto.producer_version = __version__
    proto.doc_string = doc
    return proto


def to_onnx(model, *, predict: bool = True):
    """Return the ONNX graph of an mlpx model's inference (an ``onnx.ModelProto``).

    Parameters
    ----------
    model : mlpx.Sequential
        A built model (any backend; its parameters are copied to the host).
    predict : bool, default=True
        Add the ``predict`` output beside ``predict_proba``.

    Returns
    -------
    onnx.ModelProto
        Input ``X`` of shape ("batch", n_features) in the model's dtype; outputs
        ``predict_proba`` and ``predict`` (see the table in :mod:`mlpx.export`).

    Raises
    ------
    ImportError
        When ndonnx or onnx is missing (the message names ``mlpx[onnx]``).
    ValueError
        When the model is not built, or a layer or the output activation cannot be
        traced on ndonnx (the message names the layers and the reason).
    """
    ndx, X, z, proba = _trace(model)
    outputs = {"predict_proba": proba}
    if predict:
        name = model.output.name
        if name == "softmax":
            outputs["predict"] = ndx.astype(ndx.argmax(z, axis=1), ndx.int64)
        elif name == "sigmoid":
            hit = ndx.astype(z > 0, ndx.int64)
            outputs["predict"] = hit[:, 0] if int(model.n_outputs) == 1 else hit
        else:
            outputs["predict"] = proba
    return _build(ndx, X, outputs,
                  f"mlpx {type(model).__name__}: {model.output.name} output, "
                  f"{model.dtype}, traced through the Array API with ndonnx.")


def save_onnx(proto, path) -> str:
    """Write an ``onnx.ModelProto`` to ``path`` atomically; return the absolute path.

    On any failure the previous file at ``path`` is left as it was
    (:func:`mlpx.io.write_atomic`).
    """
    data = proto.SerializeToString()
    return write_atomic(path, lambda f: f.write(data))


def export_onnx(model, path, *, predict: bool = True) -> str:
    """Export an mlpx model's inference graph to an ONNX file, written atomically.

    Parameters
    ----------
    model : mlpx.Sequential
        A built model.
    path : str or os.PathLike
        The ``.onnx`` file to write; its folder must exist.
    predict : bool, default=True
        Add the ``predict`` output beside ``predict_proba``.

    Returns
    -------
    str
        The absolute path written.

    Examples
    --------
    >>> import numpy as np, onnxruntime, tempfile, os
    >>> from mlpx import MLP, export_onnx
    >>> model = MLP([4, 8, 3], seed=0)
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "model.onnx"))
    >>> session = onnxruntime.InferenceSession(path)
    >>> X = np.ones((2, 4), dtype=np.float32)
    >>> proba, labels = session.run(["predict_proba", "predict"], {"X": X})
    >>> bool(np.allclose(proba, model.predict_proba(X), atol=1e-6)), labels.shape
    (True, (2,))
    """
    return save_onnx(to_onnx(model, predict=predict), path)


# ---------------------------------------------------------------------- scikit-learn
def _class_constant(ndx, classes):
    classes = np.asarray(classes)
    if classes.dtype.kind in "US":
        return ndx.asarray(classes.astype(str)), "string"
    if classes.dtype.kind in "biu":
        return ndx.asarray(classes.astype(np.int64)), "int64"
    raise ValueError(f"Only integer and string class labels can be exported to ONNX; this "
                     f"classifier's classes_ have dtype {classes.dtype}.")


def classifier_to_onnx(model, classes, *, multilabel: bool = False):
    """ONNX graph of a scikit-learn-style classifier around an mlpx model.

    Parameters
    ----------
    model : mlpx.Sequential
        The classifier's network: a single sigmoid output for two classes, a softmax
        for several, one sigmoid per label for multilabel targets.
    classes : array of shape (n_classes,)
        The labels (``classes_``), integers or strings.
    multilabel : bool, default=False
        Multilabel indicator targets: ``label`` is then the 0/1 matrix.

    Returns
    -------
    onnx.ModelProto
        Input ``X`` ("batch", n_features) in the model's dtype; outputs ``label``
        (classes_[...] as scikit-learn's ``predict``: int64 or string) and
        ``probabilities`` ("batch", n_classes) as its ``predict_proba``.
    """
    ndx, X, _, out = _trace(model)
    if multilabel:
        proba = out
        label = ndx.astype(out > 0.5, ndx.int64)
    else:
        table, _ = _class_constant(ndx, classes)
        if int(model.n_outputs) == 1:
            p = out[:, 0:1]
            proba = ndx.concat([1.0 - p, p], axis=1)
            index = ndx.astype(out[:, 0] > 0.5, ndx.int64)
        else:
            proba = out
            index = ndx.astype(ndx.argmax(out, axis=1), ndx.int64)
        label = ndx.take(table, index)
    return _build(ndx, X, {"label": label, "probabilities": proba},
                  "mlpx.sklearn.MLPClassifier, traced through the Array API with ndonnx.")


def regressor_to_onnx(model):
    """ONNX graph of a scikit-learn-style regressor around an mlpx model.

    Returns
    -------
    onnx.ModelProto
        Input ``X`` ("batch", n_features); output ``variable`` ("batch", n_outputs), the
        regressor's ``predict`` before a single output column is flattened.
    """
    ndx, X, _, out = _trace(model)
    return _build(ndx, X, {"variable": out},
                  "mlpx.sklearn.MLPRegressor, traced through the Array API with ndonnx.")


# ---------------------------------------------------------------------- skl2onnx
def register_skl2onnx(classifier: type, regressor: type,
                      graph_of: Callable[[Any], Any]) -> None:
    """Teach skl2onnx to convert the mlpx estimators (``skl2onnx.to_onnx(pipeline)``).

    ``graph_of(estimator)`` returns the estimator's own graph (its ``to_onnx()``), which
    the converter copies into skl2onnx's graph under a fresh name prefix, joined to the
    operator's input (cast to the network's dtype) and outputs. The classifier's outputs
    follow skl2onnx's convention (``label``, then ``probabilities``, followed by
    skl2onnx's ZipMap unless ``options={id(est): {"zipmap": False}}``).
    """
    skl2onnx = require("skl2onnx")
    onnx = require("onnx")
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    def shape(operator):
        # The output types are those of the estimator's own graph; floats come back in
        # the operator's input type (the converter casts them).
        proto = graph_of(operator.raw_operator)
        n = operator.inputs[0].get_first_dimension()
        in_type = type(operator.inputs[0].type)
        float_type = in_type if in_type in (FloatTensorType, DoubleTensorType) \
            else FloatTensorType
        types = {onnx.TensorProto.INT64: Int64TensorType,
                 onnx.TensorProto.STRING: StringTensorType}
        for var, out in zip(operator.outputs, proto.graph.output):
            tensor = out.type.tensor_type
            dims = [n] + [int(d.dim_value) if d.HasField("dim_value") else None
                          for d in tensor.shape.dim[1:]]
            var.type = types.get(tensor.elem_type, float_type)(dims)

    def convert(scope, operator, container):
        proto = graph_of(operator.raw_operator)
        prefix = scope.get_unique_variable_name("mlpx") + "_"
        graph = onnx.compose.add_prefix_graph(proto.graph, prefix)
        elem = {i.name: i.type.tensor_type.elem_type for i in graph.input}
        elem.update({o.name: o.type.tensor_type.elem_type for o in graph.output})
        x_in = graph.input[0].name
        container.add_node("Cast", [operator.inputs[0].full_name], [x_in],
                           name=scope.get_unique_operator_name("mlpxCastIn"),
                           to=elem[x_in])
        for tensor in graph.initializer:
            container.initializers.append(tensor)
        for node in graph.node:
            container.nodes.append(node)
        for out_var, g_out in zip(operator.outputs, graph.output):
            want = out_var.type.to_onnx_type().tensor_type.elem_type
            if want == elem[g_out.name]:
                container.add_node("Identity", [g_out.name], [out_var.full_name],
                                   name=scope.get_unique_operator_name("mlpxOut"))
            else:
                container.add_node("Cast", [g_out.name], [out_var.full_name],
                                   name=scope.get_unique_operator_name("mlpxCastOut"),
                                   to=want)

    skl2onnx.update_registered_converter(
        classifier, "MlpxMLPClassifier", shape, convert,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False]})
    skl2onnx.update_registered_converter(
        regressor, "MlpxMLPRegressor", shape, convert)
