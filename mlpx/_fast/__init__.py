"""Backend-specific fast paths, each proven equal to the generic path by tests.

There is one training step for plain MLPs, :class:`mlpx._fast._step.FastStep`: a
skeleton (forward, loss, backward down to every gradient, then all the writes) over a
small interface of device operations, :class:`mlpx._fast._step.StepOps`, with three
implementations: :class:`mlpx._fast.numpy_step.NumpyOps` (in-place NumPy with BLAS
products that fuse the bias and the SGD update),
:class:`mlpx._fast.cupy_step.CupyOps` (cuBLAS products and fused CUDA kernels from
``kernels.cu``) and :class:`mlpx._fast.torch_step.TorchOps` (preallocated tensors,
``torch.addmm`` with the bias folded in, in-place activations and PyTorch's fused
optimizer kernels, on whatever device the parameters live);
:class:`~mlpx._fast.numpy_step.NumpyTrainStep`,
:class:`~mlpx._fast.cupy_step.CupyTrainStep` and
:class:`~mlpx._fast.torch_step.TorchTrainStep` are the step with each. The model asks
for one once, in :meth:`mlpx.Sequential.compile`::

    self._fast_step = _fast.select_step(self)      # a callable, or None

and calls it for each step when there is one::

    step(model, X, Y, sample_weight=None, *, alpha=None, hyper=None, noise_rng=None,
         write_scope=None)

(see :meth:`mlpx._fast._step.FastStep.__call__`); a call that returns None (inputs the
fast step does not take, fast paths switched off) falls through to the generic Array
API step, which is also the only path on array-api-strict, Dask or any other
namespace. A step is all or nothing: every product, kernel and allocation comes before
the first write to a parameter, an optimizer slot or ``state["step"]``.

One predicate decides, :func:`unsupported_reason`: the model's namespace must be NumPy,
CuPy, PyTorch or JAX (:func:`mlpx._backend.is_numpy_namespace`,
:func:`mlpx._backend.is_cupy_namespace`, :func:`mlpx._backend.is_torch_namespace`,
:func:`mlpx._backend.is_jax_namespace`) and its structure one the step implements
(:func:`structure_reason`). It returns None when a fast step applies and otherwise says
why not, which is what tests and curious users look at.

Supported: a stack whose first and last layers are :class:`~mlpx.layers.Dense` (with or
without bias), with :class:`~mlpx.layers.ActivationLayer` (``relu``, ``leaky_relu``,
``tanh``, ``sigmoid``, ``identity``) and :class:`~mlpx.layers.Dropout` layers between
them; the loss/output pairs softmax + cross-entropy, sigmoid + binary cross-entropy and
identity + MSE; float32 or float64; L2 (``alpha``) and sample weights; the optimizers
SGD (any momentum, Nesterov, weight decay), Adam, AdamW and RMSProp with any schedule.
On PyTorch the same as on NumPy. On CuPy, additionally: every activation right after a
Dense layer.
Everything else (PReLU, Maxout, BatchNorm, LayerNorm, Standardize, Rescale, other
activations or losses) trains on the generic path.

On JAX the step is :class:`mlpx._fast.jax_step.JaxTrainStep`: the generic step itself
(``loss_and_grads`` and the optimizer's update rule) compiled by ``jax.jit``, with
dropout masks drawn on the device from a key carried from step to step; it takes every
built-in layer, activation and loss and the four optimizers above.

``MLPX_FAST=0`` in the environment, or :func:`set_enabled` / :func:`disabled`, switches
every fast path off (the benchmarks and tests compare both ways).
"""

from __future__ import annotations

from .. import _backend
from ._plan import build_plan
from ._policy import (
    NUMPY_ACTIVATIONS,
    NUMPY_LOSSES,
    disabled,
    enabled,
    model_key,
    set_enabled,
    structure_reason,
)
from ._step import HYPER_KEYS, optimizer_hyper

__all__ = ["select_step", "unsupported_reason", "structure_reason", "enabled", "set_enabled",
           "disabled", "optimizer_hyper", "HYPER_KEYS", "model_key", "build_plan",
           "NUMPY_ACTIVATIONS", "NUMPY_LOSSES"]

def unsupported_reason(model):
    """Why ``model`` cannot use a fast step, or None when it can.

    This is the one predicate: the namespace test (NumPy, CuPy, PyTorch or JAX, through
    :func:`mlpx._backend.is_numpy_namespace`, :func:`mlpx._backend.is_cupy_namespace`,
    :func:`mlpx._backend.is_torch_namespace`, :func:`mlpx._backend.is_jax_namespace`)
    plus the structural test of :func:`structure_reason` for that namespace.

    Parameters
    ----------
    model : mlpx.Sequential
        A built, compiled model.

    Returns
    -------
    str or None

    Examples
    --------
    >>> from mlpx import MLP
    >>> from mlpx._fast import unsupported_reason
    >>> unsupported_reason(MLP([4, 8, 3], seed=0).compile("adam")) is None
    True
    >>> unsupported_reason(MLP([4, 8, 3], activation="gelu", seed=0).compile("adam"))
    "activation 'gelu'"
    """
    xp = model.backend.xp
    if _backend.is_numpy_namespace(xp):
        return structure_reason(model, "numpy")
    if _backend.is_cupy_namespace(xp):
        return structure_reason(model, "cupy")
    if _backend.is_torch_namespace(xp):
        return structure_reason(model, "torch")
    if _backend.is_jax_namespace(xp):
        return structure_reason(model, "jax")
    return (f"the backend is {model.backend.name!r}; fast steps exist for NumPy, CuPy and "
            "PyTorch (and a compiled step for JAX)")


def select_step(model):
    """Return a fast training step for ``model``, or None for the generic path.

    The step is called as::

        step(model, X, Y, sample_weight=None, *, alpha=None, hyper=None, noise_rng=None,
             write_scope=None)

    and returns ``(loss, logits)`` or None (take the generic path for this call).
    ``alpha`` is this step's L2 strength (None: ``model.alpha``), ``hyper`` this step's
    optimizer hyper-parameters (None: :func:`optimizer_hyper` of the optimizer at
    ``state["step"]``; the keys are :data:`HYPER_KEYS`), ``noise_rng`` the dropout
    generator (None: the model's own), ``write_scope`` a context manager entered around
    the write phase only (a training loop's SIGINT deferral). It keeps its buffers to
    itself; the model stores it and never pickles it.
    """
    if unsupported_reason(model) is not None:
        return None
    if _backend.is_jax_namespace(model.backend.xp):
        from .jax_step import select

        return select(model)
    plan = build_plan(model)
    if _backend.is_numpy_namespace(model.backend.xp):
        from .numpy_step import NumpyTrainStep

        return NumpyTrainStep(model, plan, model_key(model))
    if _backend.is_torch_namespace(model.backend.xp):
        from .torch_step import TorchTrainStep

        return TorchTrainStep(model, plan, model_key(model))
    from .cupy_step import CupyTrainStep

    with _backend.device_scope(model.backend):  # kernels are loaded for this device
        return CupyTrainStep(model, plan, model_key(model))
