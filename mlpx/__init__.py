"""mlpx: multilayer perceptrons on any Array API backend (NumPy, CuPy, array-api-strict).

The public API, re-exported from the modules that hold it.
"""

from . import callbacks, datasets, export, io, metrics
from ._backend import BACKENDS, resolve_backend, to_numpy
from ._validation import InvalidParameterError
from ._version import __version__
from .activations import ACTIVATIONS, get_activation
from .export import export_onnx
from .initializers import INITIALIZERS, get_initializer
from .io import ModelFileError, load
from .layers import (
    LAYERS,
    ActivationLayer,
    BatchNorm,
    Dense,
    Dropout,
    Embedding,
    Layer,
    LayerNorm,
    Maxout,
    PReLU,
    Rescale,
    Standardize,
    get_layer,
)
from .losses import LOSSES, get_loss
from .metrics import METRICS, get_metric
from .model import MLP, LanguageModel, Sequential, model_from_config
from .optimizers import OPTIMIZERS, SCHEDULES, get_optimizer, get_schedule
from .state import TrainState
from .trainer import StepHook, Trainer
from .training import (
    Callback,
    DeviceMemoryError,
    EarlyStopping,
    Evaluation,
    History,
    LanguageEvaluation,
    NonFiniteLossError,
    NonFiniteLossWarning,
)

__all__ = [
    "BACKENDS", "resolve_backend", "to_numpy", "InvalidParameterError",
    "ACTIVATIONS", "get_activation",
    "INITIALIZERS", "get_initializer",
    "LAYERS", "Layer", "Dense", "ActivationLayer", "Dropout", "PReLU", "Maxout", "Embedding",
    "BatchNorm", "LayerNorm", "Standardize", "Rescale", "get_layer",
    "LOSSES", "get_loss",
    "METRICS", "get_metric", "metrics", "callbacks",
    "OPTIMIZERS", "SCHEDULES", "get_optimizer", "get_schedule",
    "MLP", "Sequential", "History", "EarlyStopping", "Callback", "Evaluation",
    "LanguageModel", "LanguageEvaluation",
    "NonFiniteLossError", "NonFiniteLossWarning", "DeviceMemoryError", "model_from_config",
    "Trainer", "TrainState", "StepHook",
    "load", "ModelFileError", "io", "export", "export_onnx",
    "datasets",
    "__version__",
]
