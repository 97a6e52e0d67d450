"""The compiled JAX training step: the generic step itself, traced once by ``jax.jit``.

:class:`JaxTrainStep` is what :func:`mlpx._fast.select_step` returns for a model on
``jax.numpy`` that :func:`mlpx._fast._policy.jax_structure_reason` accepts. It writes no
maths of its own: the function it compiles calls the model's generic
:meth:`~mlpx.Sequential.loss_and_grads` (every layer's ``forward``/``backward``, the
loss's ``value_and_grad``, the L2 term) on a stand-in of the model whose parameters are
the traced arrays, and then the optimizer's one update rule
(:meth:`mlpx.optimizers.Optimizer.update`) for every parameter. It is functional over
the training state::

    (params, slots, t, key) -> (new params, new slots, t + 1, new key, loss, logits)

What is compiled in and what is an argument:

- Arguments (traced, no recompilation when they change): the parameters, the optimizer
  slots, the update number ``t`` (an int32 scalar, converted to the model's dtype
  inside, as the rules have always seen it; up to :data:`MAX_STEP`), the learning rate
  (schedules change it every step) and the other scalar hyper-parameters the rules only
  compute with (``momentum``, ``beta1``, ``beta2``, ``eps``, ``rho``, one vector in the
  model's dtype), the dropout key, the batch and its sample weights.
- Compile-time constants: the structure of the model, the batch's shape and dtype,
  whether there are sample weights, the L2 strength ``alpha`` (the generic code branches
  on ``alpha > 0`` and checks it) and the hyper-parameters the update rules branch on
  (:data:`STATIC_HYPER`). So one compilation per batch shape: the full batch and the
  last, smaller one of an epoch. A step that sees more than :data:`MAX_ALPHAS`
  different ``alpha`` values (the scikit-learn wrapper divides alpha by each batch's
  weight) takes the generic path for the new ones rather than compile again.

Dropout draws its masks on the device, inside the compiled step, from a
``jax.random`` key carried from step to step (:class:`KeyNoise`), never from the host:
a mask drawn on the host while tracing would be frozen into the compiled code. The key
is derived from the model's host generator (one draw) at the first step of every epoch,
so a run is reproducible from its seed and a run resumed from a checkpoint at an epoch
boundary draws the same masks. The generic path on JAX keeps drawing its masks on the
host, so with Dropout the two paths train on different masks (and the same seed gives
the same run on each); without Dropout they agree to float rounding
(``tests/test_jax_step.py``).

Nothing is read back to the host inside a step: loss and logits come back as device
arrays, and the Trainer sums the epoch's loss on the device. Nothing is sent to the
device either while the learning rate stays the same: the hyper-parameter vector is
copied once and reused while its values do not change, and ``t`` is the ``t + 1`` the
previous step returned, already on the device (the step keeps it beside the host
number it stands for and copies afresh when ``state["step"]`` was set by hand, e.g.
by a restored checkpoint). Passing the scalars as a NumPy vector on every call, as the
step first did, cost about 0.4-0.5 ms per call on a 2-core CPU at batch 64 (5-10 % of
a 784-512-512-10 step, the gap to a hand-written ``jax.jit`` step); on a tiny network
the same change saved only 10-30 us, so it is not the copy of five numbers alone (the
mechanism inside JAX's dispatch was not pinned down). Donating the parameters and slots to XLA
(``donate_argnums``) was measured and not kept: XLA then copies the weights that the
backward pass still reads (three copies in this network), SGD got slower and Adam
gained nothing measurable, and a user's reference to an old ``model.params`` array
would have been deleted under them (see ``docs/performance.md``).
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import numpy as np

from .. import _backend
from . import _policy
from ._step import HYPER_KEYS, check_hyper, optimizer_hyper

__all__ = ["JaxTrainStep", "KeyNoise", "model_with_params", "STATIC_HYPER", "MAX_ALPHAS",
           "MAX_STEP"]

#: Hyper-parameters the update rules branch on in Python: compile-time constants.
STATIC_HYPER = ("nesterov", "weight_decay")
#: Distinct L2 strengths compiled for one step before new ones take the generic path.
MAX_ALPHAS = 8
#: The last update number the step takes (it keeps ``t`` as an int32 on the device);
#: later ones take the generic path.
MAX_STEP = 2**31 - 2

_NO_SCOPE = contextlib.nullcontext()


def _jax():
    import jax  # the step exists only for models on jax.numpy (_backend.is_jax_namespace)

    return jax


class KeyNoise:
    """Dropout's generator for the JAX step: uniform draws from a ``jax.random`` key.

    It has the one method :func:`mlpx._backend.random_uniform` calls on a non-NumPy
    generator, ``random(shape, dtype=)``; each call splits the key it holds and keeps
    the new one, so inside a traced function the key is an input and the final
    :attr:`key` an output, and every step draws fresh masks on the device.

    Parameters
    ----------
    key : jax.random key array
    """

    def __init__(self, key: Any):
        self.key = key

    def random(self, shape, dtype):
        """Uniform [0, 1) numbers of ``shape`` and ``dtype``; advances :attr:`key`."""
        jax = _jax()
        self.key, sub = jax.random.split(self.key)
        return jax.random.uniform(sub, tuple(shape), dtype=dtype)


def model_with_params(model, params, noise):
    """A stand-in of ``model`` whose layers hold ``params`` and whose dropout draws from
    ``noise``; ``model`` itself is not touched.

    The layers are shallow copies (as :meth:`mlpx.Sequential.forward_with` makes), the
    training state a shallow copy with ``params`` and ``noise_rng`` replaced. Calling
    the stand-in's :meth:`~mlpx.Sequential.loss_and_grads` runs the generic code on
    ``params``: that is what the JAX step traces, and what the tests compare it with.
    """
    twin = object.__new__(type(model))
    vars(twin).update(vars(model))
    layers, i = [], 0
    for layer in model.layers:
        n = len(layer.params)
        twin_layer = copy.copy(layer)
        twin_layer.params = list(params[i:i + n])
        layers.append(twin_layer)
        i += n
    twin.layers = layers
    if model.state_ is not None:
        state = copy.copy(model.state_)
        state.params = list(params)
        state.noise_rng = noise
        twin.state_ = state
    return twin


class JaxTrainStep:
    """The compiled training step on ``jax.numpy``; see the module docstring.

    Called like every fast step (:meth:`mlpx._fast._step.FastStep.__call__`)::

        step(model, X, Y, sample_weight=None, *, alpha=None, hyper=None, noise_rng=None,
             write_scope=None)

    and returns ``(loss, logits)`` as device arrays, or None when this call must take
    the generic path (fast paths switched off, the model changed by hand into one the
    step does not take, inputs that are not JAX arrays of the model's dtype, a new
    ``alpha`` beyond :data:`MAX_ALPHAS`, an update number beyond :data:`MAX_STEP`).

    Parameters
    ----------
    model : Sequential
        A compiled model on ``jax.numpy`` that :func:`mlpx._fast._policy.jax_structure_reason`
        accepts.
    key : tuple
        :func:`mlpx._fast._policy.model_key` of ``model``.

    Attributes
    ----------
    traces : int
        How many times the step function was traced (compiled): one per batch shape,
        ``alpha`` and set of :data:`STATIC_HYPER` values.
    key : jax.random key array or None
        The dropout key the next step starts from (None without Dropout, or before the
        first step of an epoch).
    """

    kind = "jax"

    def __init__(self, model, key):
        self.key_ = key
        self.traces = 0
        self.key = None
        self._key_epoch = None
        self._alphas: set = set()
        self._setup(model)

    def _setup(self, model):
        jax = _jax()
        opt = model.optimizer_
        self._names = tuple(model.optimizer_state_["slots"])
        self._dyn = tuple(k for k in HYPER_KEYS[opt.name] if k not in STATIC_HYPER)
        self._static_keys = tuple(k for k in HYPER_KEYS[opt.name] if k in STATIC_HYPER)
        self._dropout = any(type(layer).__name__ == "Dropout" and layer.p > 0.0
                            for layer in model.layers)
        self._model = model
        self._dtype = np.dtype(model.dtype)
        self._jitted = jax.jit(self._traced, static_argnums=(8, 9))
        # Device copies of the scalars, made again only when their values change.
        self._scalars: tuple = (None, None)  # (values, device array)
        self._t: tuple = (None, None)  # (update number, its int32 device array)

    # -- the function jax.jit compiles --------------------------------------------------
    def _traced(self, params, slots, scalars, t, key, X, Y, w, alpha, static):
        """Loss, gradients (generic code) and the optimizer's update, as one function;
        also returns the next update number ``t + 1`` (kept on the device)."""
        self.traces += 1  # runs only while tracing
        model = self._model
        xp = model.backend.xp
        hyper = dict(static)
        for i, name in enumerate(self._dyn):
            hyper[name] = scalars[i]
        noise = None if key is None else KeyNoise(key)
        twin = model_with_params(model, params, noise)
        loss, grads, z = twin.loss_and_grads(X, Y, w, alpha=alpha)
        opt = model.optimizer_
        t_float = xp.astype(t, self._dtype)  # the value np.asarray(t, dtype) gives
        new_params = []
        new_slots: dict = {s: [] for s in self._names}
        for i, (p, g, decay) in enumerate(zip(params, grads, model.decay_mask)):
            own = {s: slots[s][i] for s in self._names}
            p, own = opt.update(p, g, own, hyper=hyper, t=t_float, decay=decay, xp=xp)
            new_params.append(p)
            for s in self._names:
                new_slots[s].append(own[s])
        return (new_params, new_slots, t + 1, None if noise is None else noise.key,
                loss, z)

    # -- one call -----------------------------------------------------------------------
    def _inputs_ok(self, X, Y, w):
        array = _jax().Array
        if not (isinstance(X, array) and isinstance(Y, array)) or X.ndim != 2 \
                or Y.ndim != 2 or X.dtype != self._dtype or Y.dtype != self._dtype \
                or X.shape[0] != Y.shape[0] or X.shape[0] == 0:
            return False
        return w is None or (isinstance(w, array) and w.shape == (X.shape[0],)
                             and w.dtype == self._dtype)

    def _epoch_key(self, model, noise_rng):
        """The dropout key: carried, or derived from the host generator at an epoch's
        first step (one draw)."""
        epoch = model.state_.epoch
        if self.key is None or self._key_epoch != epoch:
            rng = model.state_.rng if noise_rng is None else noise_rng
            seed = int(rng.integers(2**63)) if isinstance(rng, np.random.Generator) \
                else int(np.random.default_rng(rng).integers(2**63))
            self.key = _jax().random.key(seed)
            self._key_epoch = epoch
        return self.key

    def _device_scalars(self, hyper, t):
        """The rules' scalar hyper-parameters and the update number ``t`` as device
        arrays: the ones of the last call when the values are the same (a constant
        learning rate; ``t`` is the ``t + 1`` the last step returned), else copied
        to the device once."""
        values = tuple(float(hyper[k]) for k in self._dyn)
        if values != self._scalars[0]:
            self._scalars = (values, _jax().device_put(np.array(values, dtype=self._dtype)))
        if t != self._t[0]:
            self._t = (t, _jax().device_put(np.int32(t)))
        return self._scalars[1], self._t[1]

    def __call__(self, model, X, Y, sample_weight=None, *, alpha=None, hyper=None,
                 noise_rng=None, write_scope=None):
        """One compiled training step, or None for the generic path (class docstring)."""
        if not _policy.enabled():
            return None
        key = _policy.model_key(model)
        if key != self.key_ or model is not self._model:
            if _policy.jax_structure_reason(model) is not None:
                return None
            self.key_ = key
            self._setup(model)
        if not self._inputs_ok(X, Y, sample_weight):
            return None
        state = model.optimizer_state_
        names = self._names
        if tuple(state["slots"]) != names:
            return None
        t = state["step"] + 1
        if t > MAX_STEP:
            return None
        alpha = float(model.alpha if alpha is None else alpha)
        if alpha not in self._alphas:
            if len(self._alphas) >= MAX_ALPHAS:
                return None
            self._alphas.add(alpha)
        if hyper is None:
            hyper = optimizer_hyper(model.optimizer_, state["step"])
        else:
            check_hyper(hyper, model.optimizer_.name, names)
        static = tuple((k, hyper[k]) for k in self._static_keys)
        scalars, t_dev = self._device_scalars(hyper, t)
        dkey = self._epoch_key(model, noise_rng) if self._dropout else None
        slots = {s: state["slots"][s] for s in names}
        out = self._jitted(model.params, slots, scalars, t_dev, dkey, X, Y, sample_weight,
                           alpha, static)
        return self._install(model, state, t, out, write_scope)

    def _install(self, model, state, t, out, write_scope):
        """Make the step's outputs the model's parameters, slots, update number and
        dropout key; return ``(loss, logits)``."""
        params, slots, t_next, new_key, loss, z = out
        with _NO_SCOPE if write_scope is None else write_scope:
            model.assign_params(params)
            for s in self._names:
                state["slots"][s][:] = slots[s]
            state["step"] = t
            self._t = (t + 1, t_next)
            if new_key is not None:
                self.key = new_key
        return loss, z


def select(model):
    """The step for a model on ``jax.numpy`` (the policy has said yes), made once."""
    if not _backend.is_jax_namespace(model.backend.xp):  # pragma: no cover - guarded
        return None
    return JaxTrainStep(model, _policy.model_key(model))
