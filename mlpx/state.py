"""The state of training, as one value: :class:`TrainState`.

A model's *architecture and parameters* are the model's (:class:`mlpx.Sequential`); what
training adds to them lives here: the optimizer and its state, the random generators,
the step and epoch counters and the history. :meth:`mlpx.Sequential.compile` makes one,
:class:`mlpx.trainer.Trainer` advances it, and a checkpoint (:func:`mlpx.io.save_checkpoint`)
is a saved ``TrainState`` plus the model's config and parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .training import History

__all__ = ["TrainState", "map_arrays"]


@dataclass
class TrainState:
    """Everything that training changes, besides the model's structure.

    Attributes
    ----------
    params : list of arrays
        The model's trainable parameters, layer by layer (the same array objects the
        layers hold; :meth:`mlpx.Sequential.assign_params` keeps both in step).
    optimizer : mlpx.optimizers.Optimizer
        The update rule and its hyper-parameters (learning-rate schedule included).
    opt_state : dict
        ``{"step": int, "slots": {name: [array per param]}}`` from
        :meth:`~mlpx.optimizers.Optimizer.init_state`; ``step`` counts the updates made.
    rng : numpy.random.Generator
        The host generator behind shuffling, validation splits and dropout.
    init_rng : numpy.random.Generator
        The generator weight initialisation draws from (kept so a checkpoint restores it).
    noise_rng : object
        The generator dropout draws from during a step: ``rng`` itself on CPU backends,
        a device generator derived from ``rng`` at each epoch on CuPy, None before the
        first epoch when no layer needs one.
    epoch : int
        Epochs completed (1-based numbering continues across calls to ``fit``).
    history : History or None
        What training recorded so far.
    """

    params: list
    optimizer: Any
    opt_state: dict
    rng: np.random.Generator
    init_rng: np.random.Generator
    noise_rng: Any = None
    epoch: int = 0
    history: History | None = None

    @property
    def step(self) -> int:
        """The number of optimizer updates made so far."""
        return int(self.opt_state["step"])

    def copy_arrays(self, copy) -> tuple:
        """``(params, opt_state)`` with every array passed through ``copy``.

        What the trainer keeps to roll a failed epoch or step back.
        """
        return [copy(p) for p in self.params], map_arrays(self.opt_state, copy)


def map_arrays(tree, fn):
    """Apply ``fn`` to every array in a nest of dicts, lists and tuples.

    Python scalars, strings and None are returned unchanged.
    """
    if isinstance(tree, dict):
        return {k: map_arrays(v, fn) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(map_arrays(v, fn) for v in tree)
    if isinstance(tree, (int, float, str, bool)) or tree is None:
        return tree
    return fn(tree)
