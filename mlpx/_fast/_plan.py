"""The plan of a fast step: the model's layers as a list of :class:`Op` (lowest module of
:mod:`mlpx._fast`; the predicate and the step build on it)."""

from __future__ import annotations

from ..layers import ActivationLayer, Dense, Dropout

__all__ = ["Op", "build_plan"]


class Op:
    """One layer of the plan."""

    def __init__(self, kind, layer, width, **kw):
        self.kind = kind          # "dense" | "act" | "dropout"
        self.layer = layer
        self.width = width
        self.inplace = False      # works on the buffer of the op before it
        self.after_dense = False  # an activation right after a Dense layer
        self.first = False
        self.last = False
        self.name = None
        self.n_in = None
        self.param_index = None   # position of this layer's first param in model.params
        self.__dict__.update(kw)


def build_plan(model):
    """Translate ``model.layers`` into ops; return None if a layer is not supported."""
    plan = []
    index = 0
    # who produced the buffer the next element-wise layer would overwrite:
    # "dense" / "dropout" outputs are not needed by their own backward, activations' are.
    producer = None
    for i, layer in enumerate(model.layers):
        if type(layer) is Dense:
            op = Op("dense", layer, layer.n_out, n_in=layer.n_in, param_index=index,
                    bias=layer.bias)
            op.first = i == 0
            producer = "dense"
        elif type(layer) is ActivationLayer:
            op = Op("act", layer, layer.n_out, name=layer.activation.name,
                    activation=layer.activation)
            op.inplace = producer in ("dense", "dropout")
            op.after_dense = producer == "dense"
            producer = "act"
        elif type(layer) is Dropout:
            op = Op("dropout", layer, layer.n_out, p=layer.p)
            op.inplace = producer in ("dense", "dropout")
            producer = "dropout"
        else:
            return None
        index += len(layer.params)
        plan.append(op)
    if plan[-1].kind != "dense":
        return None
    # the logits array is fresh every step (it is returned), so nothing works in place on it
    plan[-1].last = True
    return plan
