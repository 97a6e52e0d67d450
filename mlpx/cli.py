"""The command line: ``mlpx train`` and ``mlpx export`` (also ``python -m mlpx ...``).

``mlpx train`` with no options trains a 784-512-512-10 ReLU network with Adam (cosine
learning-rate decay, 10 epochs) on the Fashion-MNIST sample that ships inside the
package (offline, a few seconds on a laptop CPU) and prints one summary line (wrapped
here)::

    test accuracy 0.8630 | test loss 0.4056 | 21,060 samples/s | 10 epochs in 2.4 s |
    backend numpy on cpu

Run ``mlpx train --help`` for every option. Errors in the options exit with status 2
and a one-line message (no traceback); a run that cannot load its data or diverges
exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
import tempfile
from typing import Any, Callable, Sequence

__all__ = ["main", "build_parser"]

# Every image dataset the CLI knows is 28x28 grayscale images, flattened.
_N_FEATURES = 784
_N_CLASSES = 10
#: Debian's dataset-fashion-mnist package installs the full set here (as the examples).
_DEBIAN_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
#: A numeric target with integer values and at most this many distinct ones is a class.
_MAX_AUTO_CLASSES = 20
#: Bounds on what --csv reads from a file: cells (rows x columns), columns, classes.
_CSV_MAX_CELLS = 20_000_000
_CSV_MAX_ROWS = 2_000_000
_CSV_MAX_COLUMNS = 100_000
_CSV_MAX_LINE = 1 << 22  # characters in one physical line (4 Mi)
_CSV_MAX_CLASSES = 1_000
_DATASETS = ("mnist", "fashion-mnist", "sample")
_DATASET_ALIASES = {"fashion_mnist": "fashion-mnist", "fashion": "fashion-mnist"}


class _UsageError(Exception):
    """An option value that the library refused: reported like an argparse error (exit 2)."""


class _RunError(Exception):
    """The run itself failed (data missing, download failed, training diverged): exit 1."""


# ------------------------------------------------------------------ option types
def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an int >= {minimum}; got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}; got {text!r}")
        return value

    parse.__name__ = f"int >= {minimum}"
    return parse


def _float_in(low: float, high: float | None = None, *, low_open: bool = False,
              name: str = "float") -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (high is None or value < high)
        if not ok:
            cond = f"{'>' if low_open else '>='} {low:g}"
            if high is not None:
                cond += f" and < {high:g}"
            raise argparse.ArgumentTypeError(f"must be a float {cond}; got {text!r}")
        return value

    parse.__name__ = name
    return parse


def _hidden(text: str) -> list[int]:
    """``"512,512"`` -> [512, 512]; ``""`` or ``"none"`` -> [] (no hidden layer)."""
    stripped = text.strip().lower()
    if stripped in ("", "none", "0"):
        return []
    widths = []
    for part in stripped.split(","):
        part = part.strip()
        try:
            width = int(part)
        except ValueError:
            width = 0
        if width < 1:
            raise argparse.ArgumentTypeError(
                "must be comma-separated layer widths (ints >= 1) such as 512,512, or "
                f"'none' for no hidden layer; got {text!r}")
        widths.append(width)
    return widths


def _dataset(text: str) -> str:
    key = _DATASET_ALIASES.get(text.lower(), text.lower())
    if key not in _DATASETS:
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(_DATASETS)}; got {text!r}")
    return key


class _HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: ...)" to an option's help, written the way it is typed.

    Defaults are given as the strings a user would type (``"512,512"``), so they print
    as such; None prints as "none" and a flag's False as "off"; a help text that already
    says what its default is keeps its own wording.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is argparse.SUPPRESS or "default" in text or not action.option_strings:
            return text
        shown = "none" if default is None else "off" if default is False else default
        return f"{text} (default: {shown})"


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The ``mlpx`` argument parser (subcommands ``train`` and ``export``)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="mlpx",
        description="Multilayer perceptrons on any Array API backend (NumPy, CuPy, "
                    "array-api-strict).",
    )
    parser.add_argument("--version", action="version", version=f"mlpx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    train = sub.add_parser(
        "train",
        help="train an MLP on MNIST, Fashion-MNIST, the embedded sample or a CSV table",
        description="Train an MLP on 28x28 images (pixels scaled to [0, 1]) or on the "
                    "numeric columns of a CSV file (--csv, --target), and report its test "
                    "accuracy (or R^2 for regression). With no options: a 784-512-512-10 "
                    "ReLU network, Adam with a cosine learning-rate decay, 10 epochs, on "
                    "the Fashion-MNIST sample that ships with mlpx (offline).",
        formatter_class=_HelpFormatter,
    )
    data = train.add_argument_group("data")
    data.add_argument("--dataset", type=_dataset, default=None,
                      help="mnist, fashion-mnist or sample (5,000 + 1,000 Fashion-MNIST "
                           "images embedded in the package) (default: sample)")
    data.add_argument("--data-dir", metavar="DIR", default=None,
                      help="folder holding the four IDX files; missing ones are downloaded "
                           "into it (default: the first of $MLPX_DATA/<dataset>, the user "
                           "cache ~/.cache/mlpx/<dataset> and, for fashion-mnist, "
                           f"{_DEBIAN_FASHION_DIR} that holds all four files; else a "
                           "download into $MLPX_DATA/<dataset>, or the cache when MLPX_DATA "
                           "is not set)")
    data.add_argument("--n-train", type=_int_at_least(1), default=None, metavar="N",
                      help="use only the first N training images or rows (default: all)")
    data.add_argument("--validation-split", type=_float_in(0.0, 1.0), default="0",
                      metavar="FRACTION",
                      help="fraction of the training images held out (at random, seeded) "
                           "for validation; the test set is always kept apart")

    table = train.add_argument_group(
        "tabular data", "Train on the numeric columns of a CSV file with a header row "
        "instead of images. The model's first layer standardises the feature columns "
        "with the training rows' mean and standard deviation (MLP(preprocess="
        "'standardize')); the saved model carries it, so it takes raw rows.")
    table.add_argument("--csv", metavar="PATH", default=None,
                       help="CSV file: a header row of column names, then one sample per "
                            "row; every column but the target must be numeric")
    table.add_argument("--target", metavar="COLUMN", default=None,
                       help="name of the column to predict (needed with --csv)")
    table.add_argument("--task", choices=("auto", "classification", "regression"),
                       default="auto",
                       help="auto: classification when the target is text, or integers "
                            f"with at most {_MAX_AUTO_CLASSES} distinct values; regression "
                            "otherwise")
    table.add_argument("--test-split", type=_float_in(0.0, 1.0, low_open=True),
                       default="0.2", metavar="FRACTION",
                       help="fraction of the CSV rows held out (at random, seeded) as the "
                            "test set")

    model = train.add_argument_group("model")
    model.add_argument("--hidden", type=_hidden, default="512,512", metavar="WIDTHS",
                       help="hidden layer widths, comma-separated ('none': no hidden "
                            "layer)")
    model.add_argument("--activation", default="relu",
                       help="hidden activation (see mlpx.ACTIVATIONS), or 'prelu' / "
                            "'maxout' (layers with weights of their own)")
    model.add_argument("--loss", default=None,
                       help="cross_entropy, mse, binary_cross_entropy, ... (mlpx.LOSSES) "
                            "(default: cross_entropy; mse for a regression --csv target)")
    model.add_argument("--output", default=None,
                       help="output activation (default: the loss's own: softmax for "
                            "cross_entropy, identity for mse)")
    model.add_argument("--dropout", type=_float_in(0.0, 1.0), default="0",
                       help="dropout rate after every hidden activation")
    model.add_argument("--alpha", type=_float_in(0.0), default="0",
                       help="L2 penalty alpha/2 * sum ||W||^2")
    model.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="floating-point type of the weights and of the data")
    model.add_argument("--backend", default="numpy",
                       help="numpy, cupy or array_api_strict")
    model.add_argument("--seed", type=int, default="0",
                       help="seeds initialisation, shuffling, dropout and the split")

    opt = train.add_argument_group("training")
    opt.add_argument("--optimizer", default="adam",
                     help="sgd, adam, adamw or rmsprop (mlpx.OPTIMIZERS)")
    opt.add_argument("--lr", type=_float_in(0.0, low_open=True), default=None,
                     help="learning rate (default: the optimizer's: 1e-3 for Adam, 0.01 "
                          "for SGD)")
    opt.add_argument("--schedule", choices=("constant", "cosine"), default="cosine",
                     help="learning-rate schedule: cosine decay from --lr to 0 over all "
                          "the epochs, or constant")
    opt.add_argument("--momentum", type=_float_in(0.0, 1.0), default=None,
                     help="momentum for sgd or rmsprop (default: the optimizer's)")
    opt.add_argument("--epochs", type=_int_at_least(1), default="10",
                     help="passes over the training data")
    opt.add_argument("--distributed", action="store_true",
                     help="train data-parallel over the MPI ranks this runs on (mpiexec -n 4 "
                          "mlpx train --distributed): --batch-size is the global batch, "
                          "split across ranks; only rank 0 prints and writes files; needs "
                          "pip install 'mlpx[mpi]'")
    opt.add_argument("--batch-size", type=_int_at_least(1), default="128",
                     help="samples per step (the last batch of an epoch may be smaller)")
    opt.add_argument("--early-stopping", type=_int_at_least(1), default=None,
                     metavar="PATIENCE",
                     help="stop after PATIENCE epochs without a better validation loss "
                          "and restore the best weights (needs --validation-split; "
                          "default: off)")

    ck = train.add_argument_group("checkpoints")
    ck.add_argument("--checkpoint", metavar="PATH", default=None,
                    help="write a checkpoint (weights, optimizer state, epoch, random "
                         "state, history) to PATH every --checkpoint-every epochs and at "
                         "the end, atomically; should a write fail mid-run, the model "
                         "trained so far is saved to a new file in the temporary folder")
    ck.add_argument("--checkpoint-every", type=_int_at_least(1), default="1", metavar="N",
                    help="epochs between checkpoints")
    ck.add_argument("--resume", metavar="PATH", default=None,
                    help="continue an interrupted run from the checkpoint PATH; give the "
                         "same options as that run (on NumPy the result is then bit for "
                         "bit the uninterrupted one)")

    out = train.add_argument_group("output")
    out.add_argument("--save", metavar="PATH", default=None,
                     help="save the trained model to PATH (its folder is checked writable "
                          "before training; should the save fail anyway, the model is "
                          "saved to a new file in the temporary folder and the message "
                          "says where)")
    out.add_argument("--plot", metavar="PATH", default=None,
                     help="save training curves (loss and accuracy per epoch) to PATH, "
                          "e.g. curves.png (needs matplotlib: pip install 'mlpx[plot]')")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="print only the summary line (no progress bar)")
    train.set_defaults(handler=_train, parser=train)

    export = sub.add_parser(
        "export",
        help="export a saved model (.npz) to ONNX",
        description="Export a model saved by mlpx (model.save, mlpx train --save) to an "
                    "ONNX file for ONNX Runtime and other ONNX runners. The graph is traced "
                    "from the model's forward pass on the ndonnx Array API namespace; its "
                    "input X takes any batch size, its outputs are predict_proba and "
                    "predict. Needs: pip install 'mlpx[onnx]'.")
    export.add_argument("model", metavar="MODEL", help="the saved model, e.g. model.npz")
    export.add_argument("output", metavar="OUTPUT",
                        help="the ONNX file to write, e.g. model.onnx (written atomically)")
    export.add_argument("--no-predict", action="store_true",
                        help="leave the predict output out (predict_proba only)")
    export.set_defaults(handler=_export, parser=export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mlpx`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status: 0 on success, 1 when the run failed (data could not be
    loaded, training diverged), 2 for bad options (argparse's convention), 130 on
    Ctrl-C. The console script ``mlpx`` exits with it.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and option errors
        return _exit_code(exc)
    sub = args.parser
    try:
        return args.handler(args)
    except _UsageError as exc:
        try:
            sub.error(str(exc))
        except SystemExit as exit_:
            return _exit_code(exit_)
    except _RunError as exc:
        print(f"mlpx {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mlpx {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2  # pragma: no cover - sub.error always exits


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# ------------------------------------------------------------------ train
def _optimizer_spec(args: argparse.Namespace, total_steps: int = 1) -> dict[str, Any]:
    spec = {"name": args.optimizer}
    if args.schedule == "cosine":
        spec["lr"] = {"name": "cosine", "total_steps": total_steps, "lr": args.lr}
    elif args.lr is not None:
        spec["lr"] = args.lr
    if args.momentum is not None:
        spec["momentum"] = args.momentum
    return spec


def _check_writable(option: str, path: str) -> None:
    """Exit 2 (before any training) unless a file can be written at ``path``.

    The folder must exist and accept a new file: one is created next to ``path`` and
    removed again, which is the only test that answers for every kind of folder (read-only
    mounts, ACLs, network shares, ``/proc``) and for every user, root included.
    """
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise _UsageError(f"{option}: {path!r} is a folder; give a file name such as "
                          f"{os.path.join(path, 'model.npz')!r}")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise _UsageError(f"{option}: folder {parent!r} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mlpx-write-test-", dir=parent)
    except OSError as exc:
        raise _UsageError(f"{option}: cannot write to the folder {parent!r} "
                          f"({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before training (exit 2) when --save, --checkpoint or --plot cannot be honoured."""
    if args.save is not None:
        _check_writable("--save", args.save)
    if args.checkpoint is not None:
        _check_writable("--checkpoint", args.checkpoint)
    if args.resume is not None and not os.path.isfile(args.resume):
        raise _UsageError(f"--resume: no checkpoint file {args.resume!r}")
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise _UsageError("--plot needs matplotlib, which is not installed. Install it "
                              "with pip install 'mlpx[plot]' (or pip install matplotlib).") \
                from None
        _check_writable("--plot", args.plot)


def _fallback_save(model: Any, wanted: str) -> tuple[str | None, list[str]]:
    """Save ``model`` somewhere writable after saving it to ``wanted`` failed.

    Tries the temporary folder, the working folder and the home folder, in that order,
    under a new name that replaces no file. Returns the path written (None when every
    place failed) and one line per failed place.
    """
    stem = os.path.splitext(os.path.basename(wanted))[0] or "model"
    failures = []
    places = []
    for folder in (tempfile.gettempdir(), os.getcwd(), os.path.expanduser("~")):
        folder = os.path.abspath(folder)
        if folder not in places:
            places.append(folder)
    for folder in places:
        try:
            fd, path = tempfile.mkstemp(prefix=f"mlpx-{stem}-", suffix=".npz", dir=folder)
        except OSError as exc:
            failures.append(f"{folder}: {exc.strerror or exc}")
            continue
        os.close(fd)
        try:
            return model.save(path), failures
        except (OSError, ValueError) as exc:
            failures.append(f"{path}: {exc}")
            with contextlib.suppress(OSError):
                os.unlink(path)
    return None, failures


def _save_interrupted(model: Any, wanted: str) -> None:
    """After Ctrl-C during training: save the model as trained so far and say where."""
    steps = 0 if model.optimizer_state_ is None else model.optimizer_state_["step"]
    n = model.epoch_
    where = f"after {n} whole epoch{'' if n == 1 else 's'} ({steps} steps)"
    try:
        path = model.save(wanted)
    except (OSError, ValueError) as exc:
        print(f"mlpx train: {_rescue(model, wanted, 'the model file', exc, finished=False)}",
              file=sys.stderr)
        return
    print(f"mlpx train: interrupted {where}; the model as trained so far was saved to "
          f"{path!r}", file=sys.stderr)


def _rescue(model: Any, wanted: str, what: str, exc: BaseException, *,
            finished: bool = True) -> _RunError:
    """The error for a failed write of ``wanted``, after saving ``model`` elsewhere."""
    saved, failures = _fallback_save(model, wanted)
    if saved is not None:
        trained = "The trained model" if finished else "The model as trained so far"
        return _RunError(f"could not write {what} {wanted!r}: {exc}. {trained} was saved "
                         f"to {saved!r} instead (load it with mlpx.load).")
    return _RunError(f"could not write {what} {wanted!r}: {exc}. Saving the model "
                     f"elsewhere failed too ({'; '.join(failures)}); it is lost.")


def _available_memory(backend: Any) -> tuple[int, str] | None:
    """``(bytes, where)``: the memory a model on ``backend`` can use, or None if unknown."""
    from . import _backend

    info = _backend.device_memory_info(backend)
    if info is not None:
        return int(info[1]), "the GPU has"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX
        return None
    return (int(total), "this machine has") if total > 0 else None


def _check_memory(args: argparse.Namespace, optimizer: Any) -> None:
    """Exit 2 when the parameters, their gradients and the optimizer's state cannot fit.

    The estimate is a lower bound (activations, batches and temporaries come on top), so
    only a model that certainly cannot be trained is refused.
    """
    from . import _backend

    try:
        backend = _backend.resolve_backend(args.backend)
    except (ValueError, TypeError, ImportError, RuntimeError):
        return  # the model's constructor reports it
    sizes = [args.n_features, *args.hidden, args.n_outputs]
    n_params = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    copies = 2 + len(optimizer.slot_names())  # parameters, gradients, optimizer slots
    itemsize = 4 if args.dtype == "float32" else 8
    needed = n_params * itemsize * copies
    available = _available_memory(backend)
    if available is not None and needed > available[0]:
        raise _UsageError(
            f"--hidden {','.join(map(str, args.hidden))}: {n_params:,} parameters need at "
            f"least {_gib(needed)} ({args.dtype} parameters, gradients and "
            f"{args.optimizer} state) but {available[1]} {_gib(available[0])}; use "
            "narrower layers")


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def _build_model(args: argparse.Namespace) -> tuple[Any, Any]:
    from .model import MLP
    from .optimizers import get_optimizer

    try:
        optimizer = get_optimizer(_optimizer_spec(args))
        _check_memory(args, optimizer)
        model = MLP([args.n_features, *args.hidden, args.n_outputs],
                    activation=args.activation, loss=args.loss, output=args.output,
                    dropout=args.dropout, alpha=args.alpha,
                    preprocess="standardize" if args.csv is not None else None,
                    backend=args.backend, dtype=args.dtype, seed=args.seed)
    except (ValueError, TypeError, ImportError, RuntimeError) as exc:
        raise _UsageError(str(exc)) from None
    except MemoryError as exc:
        raise _UsageError(f"--hidden {','.join(map(str, args.hidden))}: not enough memory "
                          f"for the model's parameters ({exc}); use narrower layers") \
            from None
    return model, optimizer


def _data_places(dataset: str) -> list[str]:
    """Folders ``mlpx train --dataset`` looks in without --data-dir, in order.

    ``$MLPX_DATA/<dataset>`` (when set), the user cache folder, and for Fashion-MNIST
    the folder of Debian's dataset-fashion-mnist package: the places the examples use.
    """
    from .data.cache import user_cache_dir

    places = []
    env = os.environ.get("MLPX_DATA")
    if env:
        places.append(os.path.join(os.path.expanduser(env), dataset))
    places.append(os.path.join(str(user_cache_dir()), "mlpx", dataset))
    if dataset == "fashion-mnist":
        places.append(_DEBIAN_FASHION_DIR)
    return places


def _holds_dataset(folder: str, dataset: str) -> bool:
    """Whether ``folder`` holds the dataset's four IDX files (each .gz or not)."""
    from .data.catalog import DATASETS

    names = [f.filename for f in DATASETS[dataset].files().values()]
    return all(os.path.isfile(os.path.join(folder, name))
               or os.path.isfile(os.path.join(folder, name.removesuffix(".gz")))
               for name in names)


def _data_dir(args: argparse.Namespace) -> str | None:
    """--data-dir, else the first place that holds the whole dataset, else None (the
    loader downloads into $MLPX_DATA/<dataset> or the cache)."""
    if args.data_dir is not None or args.dataset == "sample":
        return args.data_dir
    for folder in _data_places(args.dataset):
        if _holds_dataset(folder, args.dataset):
            return folder
    return None


def _load_data(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    from . import datasets

    if args.dataset == "sample" and args.data_dir is not None:
        raise _UsageError("--data-dir cannot be used with --dataset sample (the sample is "
                          "embedded in the package)")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise _UsageError(f"--data-dir: {args.data_dir!r} is not a folder")
    # With --distributed the training images of MNIST / Fashion-MNIST stay in their
    # (decompressed) file: each rank reads the rows of its shares (mlpx.distributed).
    mapped = bool(args.distributed) and args.dataset != "sample"
    try:
        (X_train, y_train), (X_test, y_test) = datasets.load_dataset(
            args.dataset, data_dir=_data_dir(args), progress=not args.quiet, mmap=mapped)
    except (OSError, ValueError) as exc:
        hint = ""
        if args.dataset != "sample" and args.data_dir is None:
            looked = ", ".join(_data_places(args.dataset))
            hint = (f"\nOffline? mlpx looked for the four IDX files in {looked} (in that "
                    "order; $MLPX_DATA/<dataset> comes first when MLPX_DATA is set). Put "
                    "them in one of those, pass --data-dir with a folder holding them, or "
                    "use --dataset sample.")
        raise _RunError(f"could not load {args.dataset}: {exc}{hint}") from None
    if args.n_train is not None:
        if args.n_train > X_train.shape[0]:
            raise _UsageError(f"--n-train {args.n_train} is more than the "
                              f"{X_train.shape[0]:,} training images of {args.dataset}")
        X_train, y_train = X_train[:args.n_train], y_train[:args.n_train]
    X_fit: Any
    if mapped:
        from .distributed import RowSource

        X_fit = RowSource(X_train, divide=255, dtype=args.dtype)  # rows of scale()
    else:
        X_fit = datasets.scale(X_train, dtype=args.dtype)
    X_test = datasets.scale(X_test, dtype=args.dtype)
    return X_fit, y_train, X_test, y_test


# ------------------------------------------------------------------ tabular data
@dataclasses.dataclass
class _Table:
    """A CSV file read and split, with its standardisation (see :func:`_load_table`)."""

    path: str
    names: list[str]             # the feature columns
    task: str                    # "classification" or "regression"
    classes: list[str] | None    # class names, output i is classes[i]
    X_raw: Any                   # float64 features, every row
    y_raw: Any                   # int64 labels or float64 targets, every row
    train: Any                   # row indices
    test: Any
    y_mean: float | None         # regression with an identity output only
    y_std: float | None
    n_outputs: int


def _read_csv(path: str, target: str) -> tuple[list[str], Any, list[str], int]:
    """Read a CSV file with a header row; return the feature names, the features
    (float64, shape (n, d)), the target's cells (strings) and the target's header line.

    Bounded: at most ``_CSV_MAX_COLUMNS`` columns, ``_CSV_MAX_ROWS`` rows,
    ``_CSV_MAX_CELLS`` cells and ``_CSV_MAX_LINE`` characters a line are read (the file
    is refused past that, before more is held), a field is at most the csv module's
    limit (128 KiB). Every non-numeric feature column is named in one error.
    """
    import csv

    import numpy as np

    if os.path.isdir(path) or not os.path.exists(path):
        raise _UsageError(f"--csv: no file {path!r}")
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise _RunError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    def lines():  # every physical line bounded before csv sees it
        while True:
            line = handle.readline(_CSV_MAX_LINE + 1)
            if not line:
                return
            if len(line) > _CSV_MAX_LINE:
                raise _RunError(f"{path} has a line longer than {_CSV_MAX_LINE:,} "
                                "characters; mlpx train does not read such files")
            yield line

    with handle:
        reader = csv.reader(lines())
        try:
            header = next(reader, None)
            while header is not None and not any(c.strip() for c in header):
                header = next(reader, None)  # leading blank lines
            if header is None:
                raise _RunError(f"{path} is empty: it needs a header row of column names "
                                "and at least one data row")
            names = [c.strip() for c in header]
            if len(names) > _CSV_MAX_COLUMNS:
                raise _RunError(f"{path} has {len(names):,} columns; mlpx train reads at "
                                f"most {_CSV_MAX_COLUMNS:,}")
            if target not in names:
                shown = ", ".join(repr(n) for n in names[:50])
                more = f" and {len(names) - 50} more" if len(names) > 50 else ""
                raise _UsageError(f"--target {target!r}: {path} has no such column; its "
                                  f"columns are {shown}{more}")
            if names.count(target) > 1:
                raise _UsageError(f"--target {target!r}: {path} has {names.count(target)} "
                                  "columns of that name")
            t = names.index(target)
            features = [i for i in range(len(names)) if i != t]
            if not features:
                raise _UsageError(f"--target {target!r} is the only column of {path}; "
                                  "there are no feature columns to learn from")
            max_rows = max(1, min(_CSV_MAX_ROWS, _CSV_MAX_CELLS // len(names)))
            blocks, block, filled = [], np.empty((1024, len(features))), 0
            targets: list[str] = []
            bad: dict[int, tuple[int, str]] = {}
            missing: dict[int, int] = {}
            for row in reader:
                if not any(c.strip() for c in row):
                    continue  # blank line
                line = reader.line_num
                if len(row) != len(names):
                    raise _RunError(f"{path}, line {line}: {len(row)} fields, but the "
                                    f"header has {len(names)}")
                if len(targets) >= max_rows:
                    raise _RunError(f"{path} has more than {max_rows:,} rows of "
                                    f"{len(names)} columns; mlpx train reads at most "
                                    f"{_CSV_MAX_CELLS:,} cells (use a sample of the "
                                    "rows, or the Python API with a memory-mapped array)")
                if filled == block.shape[0]:
                    blocks.append(block)
                    block, filled = np.empty((2 * block.shape[0], len(features))), 0
                targets.append(row[t].strip())
                out = block[filled]
                try:
                    out[:] = [float(row[i]) for i in features]
                except ValueError:
                    for j, i in enumerate(features):
                        cell = row[i].strip()
                        try:
                            out[j] = float(cell)
                        except ValueError:
                            out[j] = np.nan
                            if not cell:
                                missing.setdefault(i, line)
                            else:
                                bad.setdefault(i, (line, cell))
                filled += 1
        except csv.Error as exc:
            raise _RunError(f"{path}, line {reader.line_num}: not a valid CSV file "
                            f"({exc})") from None
        except UnicodeDecodeError as exc:
            raise _RunError(f"{path} is not UTF-8 text ({exc.reason} at byte "
                            f"{exc.start})") from None
    if bad:
        cols = ", ".join(f"{names[i]!r} (line {line}: {cell[:40]!r})"
                         for i, (line, cell) in sorted(bad.items()))
        raise _RunError(f"{path}: these feature columns are not numeric: {cols}. mlpx "
                        "train --csv takes numeric feature columns only; encode them as "
                        "numbers or remove them")
    if missing:
        cols = ", ".join(f"{names[i]!r} (line {line})" for i, line in sorted(missing.items()))
        raise _RunError(f"{path}: empty cells in {cols}; fill them in or drop those rows")
    if not targets:
        raise _RunError(f"{path} has a header but no data rows")
    X = np.concatenate(blocks + [block[:filled]], axis=0)
    finite = np.isfinite(X)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise _RunError(f"{path}: column {names[features[c]]!r} holds {X[r, c]} (data row "
                        f"{r + 1}); only finite numbers can be learnt from")
    return [names[i] for i in features], X, targets, t


def _target_kind(args: argparse.Namespace, path: str, cells: list[str]) -> tuple[str, Any]:
    """``("classification", class names)`` or ``("regression", float targets)``."""
    import numpy as np

    try:
        values = np.array([float(c) for c in cells])
    except ValueError:
        values = None
    if values is not None and not np.isfinite(values).all():
        raise _RunError(f"{path}: the target column {args.target!r} holds missing or "
                        "non-finite values")
    task = args.task
    if task == "auto":
        task = "regression"
        if values is None or (np.all(values == np.round(values))
                              and np.unique(values).size <= _MAX_AUTO_CLASSES):
            task = "classification"
    if task == "regression":
        if values is None:
            first = next(c for c in cells if not _is_float(c))
            raise _UsageError(f"--task regression: the target column {args.target!r} is "
                              f"not numeric ({first[:40]!r}); use --task classification")
        return task, values
    if values is not None:  # numeric classes, in numeric order
        classes = [f"{v:g}" for v in np.unique(values)]
    else:
        classes = sorted(set(cells))
    if len(classes) < 2:
        raise _RunError(f"{path}: the target column {args.target!r} holds a single class "
                        f"({classes[0]!r}); classification needs at least two")
    if len(classes) > _CSV_MAX_CLASSES:
        raise _UsageError(f"--task classification: the target column {args.target!r} has "
                          f"{len(classes):,} distinct values (at most {_CSV_MAX_CLASSES:,} "
                          "classes); use --task regression")
    return task, classes


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _load_table(args: argparse.Namespace) -> _Table:
    """Read --csv, split off the test rows (seeded), standardise with the training rows."""
    import numpy as np

    path = args.csv
    names, X, cells, _ = _read_csv(path, args.target)
    task, info = _target_kind(args, path, cells)
    n = X.shape[0]
    if task == "classification":
        if isinstance(info[0], str) and all(_is_float(c) for c in cells):
            values = np.array([float(c) for c in cells])
            y = np.searchsorted(np.unique(values), values).astype(np.int64)
        else:
            y = np.searchsorted(np.array(info), np.array(cells)).astype(np.int64)
    else:
        y = np.asarray(info, dtype=np.float64)
    n_test = int(round(n * args.test_split))
    if n_test < 1 or n - n_test < 1:
        raise _UsageError(f"--test-split {args.test_split:g} leaves an empty training or "
                          f"test set for the {n} rows of {path}")
    perm = np.random.default_rng(args.seed).permutation(n)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    if args.n_train is not None:
        if args.n_train > train.size:
            raise _UsageError(f"--n-train {args.n_train} is more than the {train.size:,} "
                              f"training rows of {path}")
        train = train[:args.n_train]
    y_mean = y_std = None
    # Standardise a regression target for an identity output (mse): its outputs then
    # fold back into the target's units exactly; other outputs see the raw target.
    if task == "regression" and (args.output or "identity").lower() in ("identity", "linear") \
            and (args.loss or "mse").lower() == "mse":
        y_mean, y_std = float(y[train].mean()), float(y[train].std()) or 1.0
    return _Table(path=path, names=names, task=task,
                  classes=info if task == "classification" else None,
                  X_raw=X, y_raw=y, train=train, test=test,
                  y_mean=y_mean, y_std=y_std,
                  n_outputs=len(info) if task == "classification" else 1)


def _table_arrays(table: _Table, dtype: str) -> tuple[Any, Any, Any, Any]:
    """Training rows and targets (a regression target standardised), test rows and
    targets: the model's input Standardize layer standardises the rows itself."""
    import numpy as np

    X_train = np.ascontiguousarray(table.X_raw[table.train], dtype=dtype)
    y_train = table.y_raw[table.train]
    if table.y_mean is not None and table.y_std is not None:
        y_train = ((y_train - table.y_mean) / table.y_std).astype(dtype)[:, None]
    elif table.task == "regression":
        y_train = y_train.astype(dtype)[:, None]
    X_test = np.ascontiguousarray(table.X_raw[table.test], dtype=dtype)
    return X_train, y_train, X_test, table.y_raw[table.test]


def _fold_target(model: Any, table: _Table) -> None:
    """Fold a standardised regression target back into the last layer, so that the
    model predicts in the target's units: ``(h @ W + b) * t + u = h @ (W t) + (b t + u)``
    (computed in float64). The inputs need nothing: the model's first layer is a
    Standardize layer, fitted to the training rows and saved with the model."""
    if table.y_std is None or table.y_mean is None:
        return
    import numpy as np

    from ._backend import to_numpy

    params = [np.asarray(to_numpy(p), dtype=np.float64) for p in model.params]
    params[-2] = params[-2] * table.y_std
    params[-1] = params[-1] * table.y_std + table.y_mean
    model.set_params([p.astype(model.dtype) for p in params])


def _targets(model: Any, y: Any, regression: bool = False) -> Any:
    """Integer labels for a softmax output, one-hot rows for any other output; a
    regression target as it is."""
    from . import datasets

    if model.output.name == "softmax" or regression:
        return y
    return datasets.one_hot(y, model.n_outputs, dtype=model.dtype)


def _argmax_accuracy(model: Any, X: Any, y: Any) -> float:
    """Share of rows whose largest output is the true class (any output activation)."""
    import numpy as np

    from ._backend import to_numpy

    xp = model.backend.xp
    pred = to_numpy(xp.argmax(model.decision_function(X), axis=1))
    return float(np.mean(pred == y))


def _regression_score(model: Any, X: Any, y: Any) -> str:
    """``test R^2 ... | test RMSE ...`` of a one-output regression model."""
    import numpy as np

    from ._backend import to_numpy

    pred = np.asarray(to_numpy(model.predict(X)), dtype=np.float64).reshape(len(y), -1)
    err = pred - np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    ss_res = float(np.sum(err ** 2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return f"test R^2 {r2:.4f} | test RMSE {math.sqrt(ss_res / err.size):.4g}"


def _describe_model(model: Any, args: argparse.Namespace) -> str:
    sizes = "-".join(str(s) for s in model.layer_sizes)
    opt = model.optimizer_
    lr = f"lr {opt.base_lr:g}" + (f" ({args.schedule})" if args.schedule != "constant" else "")
    extras = "".join([f", dropout {args.dropout:g}" if args.dropout else "",
                      f", alpha {args.alpha:g}" if args.alpha else ""])
    return (f"model {sizes} {args.activation}, {model.output.name} output, "
            f"{model.loss.name} loss{extras}; {opt.name} {lr}, batch {args.batch_size}, "
            f"{args.epochs} epochs; {args.dtype}")


def _communicator(args: argparse.Namespace) -> Any:
    """With --distributed, the ranks' communicator (a clear error without mpi4py).

    ``MPI.COMM_WORLD``; with ``--backend cupy`` each rank first takes the GPU of its
    local rank and the gradients go through NCCL.
    """
    if not args.distributed:
        return None
    from . import distributed

    try:
        world = distributed.import_mpi().COMM_WORLD
        if args.backend == "cupy":
            return distributed.cuda_communicator(world)
        return distributed.as_communicator(world)
    except (ImportError, RuntimeError) as exc:
        raise _RunError(f"--distributed: {exc}") from None


def _train(args: argparse.Namespace) -> int:
    from . import _backend
    from .io import ModelFileError
    from .training import DeviceMemoryError, NonFiniteLossError

    if args.csv is None:
        for option, given in (("--target", args.target is not None),
                              ("--task", args.task != "auto"),
                              ("--test-split", args.test_split != 0.2)):
            if given:
                raise _UsageError(f"{option} goes with --csv (training on a CSV table)")
        args.dataset = args.dataset or "sample"
    else:
        if args.dataset is not None or args.data_dir is not None:
            raise _UsageError("--csv trains on a CSV table: leave out --dataset and "
                              "--data-dir")
        if args.target is None:
            raise _UsageError("--csv needs --target COLUMN, the name of the column to "
                              "predict")
    if args.early_stopping is not None and args.validation_split == 0:
        raise _UsageError("--early-stopping watches the validation loss, so it needs "
                          "validation data (the rule of fit(early_stopping=...)): add "
                          "--validation-split (e.g. 0.1)")
    comm = _communicator(args)
    root = comm is None or comm.rank == 0
    say = (lambda *a, **k: None) if args.quiet or not root else print
    _check_outputs(args)
    table = None
    if args.csv is not None:
        table = _load_table(args)
        args.n_features, args.n_outputs = len(table.names), table.n_outputs
        if args.loss is None and table.task == "regression":
            args.loss = "mse"
    else:
        args.n_features, args.n_outputs = _N_FEATURES, _N_CLASSES
    args.loss = args.loss or "cross_entropy"
    model, optimizer = _build_model(args)
    if table is None:
        X_train, y_train, X_test, y_test = _load_data(args)
        what, source = "images", args.dataset
    else:
        X_train, y_train, X_test, y_test = _table_arrays(table, args.dtype)
        what, source = "rows", os.path.basename(table.path)
    n_val = int(round(X_train.shape[0] * args.validation_split))
    if args.validation_split > 0 and (n_val < 1 or n_val >= X_train.shape[0]):
        raise _UsageError(f"--validation-split {args.validation_split:g} leaves an empty "
                          f"training or validation set for {X_train.shape[0]} {what}")
    n_fit = X_train.shape[0] - n_val
    device = _backend.device_name(model.backend)
    split = f"{n_val:,} validation, " if n_val else ""
    say(f"{source}: {n_fit:,} training, {split}{X_test.shape[0]:,} test {what}")
    if table is not None:
        classes = table.classes or []
        kind = (f"classification into {len(classes)} classes "
                f"({', '.join(classes[:10])}{', ...' if len(classes) > 10 else ''})"
                if table.task == "classification" else "regression")
        say(f"{len(table.names)} numeric feature columns (standardised); target "
            f"{args.target!r}: {kind}")
    if args.schedule != "constant":
        from .optimizers import get_optimizer

        steps_per_epoch = -(-n_fit // min(args.batch_size, n_fit))
        optimizer = get_optimizer(_optimizer_spec(args, args.epochs * steps_per_epoch))
    model.compile(optimizer)
    say(_describe_model(model, args) + f", backend {model.backend.name} on {device}")
    if args.resume is not None:
        say(f"resuming from the checkpoint {args.resume}")
    regression = table is not None and table.task == "regression"
    try:
        history = model.fit(X_train, _targets(model, y_train, regression), epochs=args.epochs,
                            batch_size=args.batch_size, validation_split=args.validation_split,
                            early_stopping=args.early_stopping,
                            verbose=0 if args.quiet else 1, checkpoint=args.checkpoint,
                            checkpoint_every=args.checkpoint_every, resume=args.resume,
                            comm=comm)
    except KeyboardInterrupt:
        # Steps are all or nothing: the model holds the weights of its last whole step.
        if args.save is not None:
            _save_interrupted(model, args.save)
        raise
    except (NonFiniteLossError, DeviceMemoryError, ModelFileError) as exc:
        raise _RunError(str(exc)) from None
    except MemoryError as exc:
        raise _RunError(f"out of memory while training ({exc}); try a smaller --batch-size "
                        "or narrower --hidden layers") from None
    except OSError as exc:
        if args.checkpoint is None:
            raise
        # Checked writable before training, so the folder went away or filled up: keep the
        # weights trained so far.
        raise _rescue(model, args.checkpoint, "the checkpoint", exc, finished=False) \
            from None
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    if table is not None:  # the saved model takes raw rows and gives raw targets
        _fold_target(model, table)
    # Save first: nothing after this point may lose the trained model.
    save_error = None
    if args.save is not None and root:  # only rank 0 writes files
        try:
            model.save(args.save)
        except (OSError, ValueError) as exc:
            save_error = _rescue(model, args.save, "the model file", exc)
        else:
            say(f"saved the model to {args.save}")
    if not root:  # rank 0 reports
        return 0
    epochs_run = len(history.epochs)
    seconds = sum(history["seconds"])
    if history.stopped_early:
        say(f"stopped early after {epochs_run} epochs; restored the weights of epoch "
            f"{history.best_epoch}")
    test = model.evaluate(X_test, _targets(model, y_test, regression))
    if not regression:
        score = f"test accuracy {_argmax_accuracy(model, X_test, y_test):.4f}"
    else:
        score = _regression_score(model, X_test, y_test)
    throughput = n_fit * epochs_run / seconds if seconds > 0 else float("inf")
    if args.plot is not None:
        from .plotting import plot_history

        try:
            plot_history(history, args.plot,
                         title=f"{source}: {'-'.join(map(str, model.layer_sizes))} "
                               f"{args.activation}, {args.optimizer}")
        except OSError as exc:
            raise _RunError(f"could not write the plot {args.plot!r}: {exc}") from None
        say(f"saved training curves to {args.plot}")
    size = 1 if comm is None else comm.size
    ranks = "" if comm is None else f" | {size} rank{'s' if size > 1 else ''}"
    loss = f"{test.loss:.4g}" if regression else f"{test.loss:.4f}"
    print(f"{score} | test loss {loss} | "
          f"{throughput:,.0f} samples/s | {epochs_run} epoch{'s' if epochs_run != 1 else ''} "
          f"in {seconds:.1f} s | "
          f"backend {model.backend.name} on {device}{ranks}")
    if save_error is not None:
        raise save_error
    return 0


# ------------------------------------------------------------------ export
def _export(args: argparse.Namespace) -> int:
    from .export import export_onnx
    from .io import ModelFileError, load

    _check_writable("OUTPUT", args.output)
    try:
        model = load(args.model)
    except (ModelFileError, OSError) as exc:
        raise _RunError(f"cannot read the model {args.model!r}: {exc}") from None
    try:
        path = export_onnx(model, args.output, predict=not args.no_predict)
    except (ImportError, ValueError) as exc:  # the extra is missing; a layer cannot trace
        raise _RunError(str(exc)) from None
    except OSError as exc:
        raise _RunError(f"cannot write {args.output!r}: {exc}") from None
    print(f"exported {args.model} to {path} (input X of shape (batch, {model.n_features}), "
          f"{model.dtype}; outputs predict_proba{'' if args.no_predict else ', predict'})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
