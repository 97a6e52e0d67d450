"""The command line: ``mlpx train`` in-process and once as ``python -m mlpx``; the examples."""

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import mlpx
from mlpx import cli, datasets

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Tiny settings: two epochs of a 32-unit net on 2,000 images of the embedded sample.
TINY = ["train", "--epochs", "2", "--hidden", "32", "--n-train", "2000"]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def summary(out):
    lines = [line for line in out.splitlines() if line.startswith("test accuracy")]
    assert len(lines) == 1, out
    return lines[0]


def summary_accuracy(out):
    return float(summary(out).split()[2])


def test_quiet_prints_only_the_summary(capsys):
    code, out, err = run(capsys, *TINY, "--quiet")
    assert code == 0
    assert out.splitlines() == [summary(out)]
    assert err == ""
    line = summary(out)
    assert "samples/s" in line and "backend numpy on cpu" in line
    assert 0.3 < summary_accuracy(out) <= 1.0  # chance is 0.1


def test_default_output_has_header_progress_and_summary(capsys):
    code, out, err = run(capsys, *TINY)
    assert code == 0
    assert out.startswith("sample: 2,000 training, 1,000 test images")
    assert "784-32-10 relu" in out and "adam lr 0.001 (cosine)" in out
    assert "2 epochs in" in summary(out)
    # tqdm's bar, on stderr, shows the loss and the throughput.
    assert "2/2" in err and "loss=" in err and "samples/s=" in err


def test_same_seed_same_result(capsys):
    first = summary(run(capsys, *TINY, "--quiet", "--seed", "3")[1])
    second = summary(run(capsys, *TINY, "--quiet", "--seed", "3")[1])
    assert first.split("|")[:2] == second.split("|")[:2]


def test_textbook_options_mse_sigmoid_sgd(capsys):
    """Non-softmax outputs train on one-hot targets and are scored by argmax."""
    code, out, _ = run(capsys, "train", "--hidden", "30", "--activation", "sigmoid",
                       "--output", "sigmoid", "--loss", "mse", "--optimizer", "sgd",
                       "--lr", "3.0", "--batch-size", "10", "--epochs", "1", "--n-train",
                       "1000", "--validation-split", "0", "--quiet")
    assert code == 0
    assert summary_accuracy(out) > 0.4


def test_no_hidden_layer_constant_lr_validation_early_stopping(capsys):
    code, out, err = run(capsys, *TINY, "--hidden", "none", "--schedule", "constant",
                         "--epochs", "3", "--validation-split", "0.2", "--early-stopping",
                         "1", "--optimizer", "sgd", "--lr", "0.5", "--momentum", "0.9",
                         "--dtype", "float64")
    assert code == 0
    assert out.startswith("sample: 1,600 training, 400 validation, 1,000 test images")
    assert "784-10 relu" in out and "sgd lr 0.5, batch" in out
    assert "val_loss=" in err
    assert summary_accuracy(out) > 0.4


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "--epochs: must be an int >= 1"),
    (["train", "--batch-size", "x"], "--batch-size: must be an int >= 1"),
    (["train", "--hidden", "512,abc"], "--hidden: must be comma-separated"),
    (["train", "--lr", "-1"], "--lr: must be a float > 0"),
    (["train", "--validation-split", "1"], "--validation-split: must be a float"),
    (["train", "--dataset", "cifar"], "--dataset: must be one of"),
    (["train", "--dtype", "float16"], "--dtype: invalid choice"),
    (["train", "--activation", "nope"], "Unknown activation 'nope'"),
    (["train", "--optimizer", "nope"], "Unknown optimizer 'nope'"),
    (["train", "--loss", "nope"], "Unknown loss 'nope'"),
    (["train", "--backend", "nope"], "The 'backend' parameter must be one of"),
    (["train", "--optimizer", "adam", "--momentum", "0.5"], "momentum"),
    (["train", "--data-dir", "/tmp"], "--data-dir cannot be used with --dataset sample"),
    (["train", "--n-train", "999999"], "--n-train 999999 is more than"),
    (["train", "--early-stopping", "2"], "add --validation-split"),
    (["train", "--schedule", "step"], "--schedule: invalid choice"),
    (["train", "--plot", "/no/such/folder/curves.png"], "does not exist"),
    (["train", "--nonsense"], "unrecognized arguments: --nonsense"),
    ([], "required: COMMAND"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_bad_options_exit_2_with_a_message(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert "test accuracy" not in out


def test_data_that_cannot_be_loaded_exit_1(capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise datasets.DownloadError("train-images-idx3-ubyte.gz",
                                     [("https://mirror.invalid/x", "connection failed")])

    monkeypatch.setattr(datasets, "load_dataset", fail)
    code, out, err = run(capsys, "train", "--dataset", "mnist", "--quiet")
    assert code == 1
    assert "could not load mnist" in err and "connection failed" in err
    assert "--data-dir" in err and "Traceback" not in err


def test_diverging_run_exits_1(capsys):
    code, out, err = run(capsys, *TINY, "--optimizer", "sgd", "--lr", "1e30", "--quiet",
                         "--loss", "mse")
    assert code == 1
    assert "training loss became" in err and "Traceback" not in err


def test_help_and_version_exit_0(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and mlpx.__version__ in out
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "--early-stopping PATIENCE" in out and "--save PATH" in out


def test_plot_writes_a_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    code, out, _ = run(capsys, *TINY, "--plot", str(path))
    assert code == 0
    assert f"saved training curves to {path}" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run(capsys, *TINY, "--plot", str(tmp_path / "c.png"))
    assert code == 2
    assert "pip install 'mlpx[plot]'" in err


def test_save_writes_the_model(capsys, tmp_path):
    path = tmp_path / "model.mlpx"
    code, out, _ = run(capsys, *TINY, "--save", str(path))
    assert code == 0
    assert f"saved the model to {path}" in out
    assert path.is_file() and path.stat().st_size > 0
    load = getattr(getattr(mlpx, "io", None), "load", None) or getattr(mlpx, "load", None)
    if load is not None:
        model = load(str(path))
        X = datasets.scale(datasets.load_sample()[1][0][:5])
        assert mlpx.to_numpy(model.predict(X)).shape == (5,)


def test_python_dash_m_mlpx_train():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "mlpx", *TINY, "--quiet"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("test accuracy ")
    proc = subprocess.run([sys.executable, "-m", "mlpx", "train", "--epochs", "-3"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 2
    assert "--epochs: must be an int >= 1" in proc.stderr


# ---------------------------------------------------------------------- examples
def load_example(name):
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


def test_example_xor(capsys):
    xor = load_example("xor")
    result = xor.main(["--seeds", "3", "--epochs", "300", "--width", "8", "--quiet"])
    out = capsys.readouterr().out
    np.testing.assert_allclose(result["exact"], [0, 1, 1, 0], atol=1e-12)
    assert result["solved"] >= 2 and result["tried"] == 3
    assert "solved from" in out


def test_example_textbook_quadratic_runs_on_the_sample(capsys):
    example = load_example("textbook_sigmoid_quadratic")
    result = example.main(["--dataset", "sample", "--epochs", "1", "--n-train", "1000",
                           "--quiet"])
    assert 0.3 < result["final"] <= 1.0
    assert "final test accuracy" in capsys.readouterr().out


def test_example_mnist_gpu_says_why_without_cuda(capsys):
    if mlpx._backend.cuda_available():
        pytest.skip("a CUDA device is present")
    example = load_example("mnist_gpu")
    assert example.main(["--dataset", "sample"]) == 1
    assert "needs CuPy and a CUDA GPU" in capsys.readouterr().err


# ------------------------------------------------ a trained model is never lost (issue 11)
# The tests run as root in CI, where chmod does not stop writes. A folder that refuses new
# files is simulated by making os.open (which tempfile.mkstemp, the writability check and
# mlpx.io's atomic writes all go through) raise PermissionError for files created in it;
# /proc is a real folder that refuses new files to every user, root included.
TINY_QUIET = [*TINY, "--quiet"]


@pytest.fixture
def unwritable(monkeypatch, tmp_path):
    """A folder that exists but in which no file can be created."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    real_open = os.open

    def guarded_open(path, flags, *args, **kwargs):
        if (flags & os.O_CREAT and os.path.dirname(os.path.abspath(os.fsdecode(path)))
                == str(folder)):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    return folder


def no_training(monkeypatch):
    """Make any call of MLP.fit fail the test: the option must be refused before it."""
    def fit(*args, **kwargs):
        raise AssertionError("training started although an option was bad")

    monkeypatch.setattr(mlpx.MLP, "fit", fit)


def assert_refused(code, out, err, *messages):
    assert code == 2, err
    assert "Traceback" not in err and "test accuracy" not in out
    error_lines = [line for line in err.splitlines() if line.startswith("mlpx train: error:")]
    assert len(error_lines) == 1, err
    for message in messages:
        assert message in error_lines[0], err


@pytest.mark.parametrize("option", ["--save", "--checkpoint", "--plot"])
def test_unwritable_folder_refused_before_training(capsys, monkeypatch, unwritable, option):
    if option == "--plot":
        pytest.importorskip("matplotlib")
    no_training(monkeypatch)
    code, out, err = run(capsys, *TINY_QUIET, option, str(unwritable / "out.npz"))
    assert_refused(code, out, err, f"{option}: cannot write to the folder",
                   str(unwritable), "Permission denied")
    assert list(unwritable.iterdir()) == []  # the check leaves nothing behind


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux's /proc")
@pytest.mark.parametrize("option", ["--save", "--checkpoint"])
def test_proc_is_refused_before_training(capsys, monkeypatch, option):
    no_training(monkeypatch)
    code, out, err = run(capsys, *TINY_QUIET, option, "/proc/model.npz")
    assert_refused(code, out, err, f"{option}: cannot write to the folder '/proc'")


@pytest.mark.parametrize("option", ["--save", "--checkpoint"])
def test_existing_folder_as_file_name_refused_before_training(capsys, monkeypatch, tmp_path,
                                                               option):
    no_training(monkeypatch)
    code, out, err = run(capsys, *TINY_QUIET, option, str(tmp_path))
    assert_refused(code, out, err, f"{option}: {str(tmp_path)!r} is a folder",
                   "give a file name such as")


def test_path_under_a_regular_file_refused_before_training(capsys, monkeypatch, tmp_path):
    no_training(monkeypatch)
    (tmp_path / "file").write_text("not a folder")
    code, out, err = run(capsys, *TINY_QUIET, "--save", str(tmp_path / "file" / "m.npz"))
    assert_refused(code, out, err, "--save: folder", "does not exist")


def test_writability_check_lets_a_good_folder_through(capsys, tmp_path):
    code, out, err = run(capsys, *TINY_QUIET, "--save", str(tmp_path / "m.npz"),
                         "--checkpoint", str(tmp_path / "c.npz"))
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "m.npz"]


@pytest.fixture
def fallback_dir(monkeypatch, tmp_path):
    """Point the fallback save at an empty folder of its own (the temporary folder)."""
    folder = tmp_path / "fallback"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def fail_writes_to(monkeypatch, target, *, after=0):
    """Make the atomic rename onto ``target`` fail (disk full) after ``after`` successes.

    mlpx.io writes a temporary file and renames it over the destination with os.replace,
    so this fails the write at its last step, after the writability check has passed.
    """
    real_replace = os.replace
    calls = []

    def replace(src, dst, *args, **kwargs):
        if os.path.abspath(os.fsdecode(dst)) == str(target):
            calls.append(dst)
            if len(calls) > after:
                raise OSError(28, "No space left on device", os.fsdecode(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def load_model(path):
    model = mlpx.load(str(path))
    X = datasets.scale(datasets.load_sample()[1][0][:5])
    assert mlpx.to_numpy(model.predict(X)).shape == (5,)
    return model


def test_failed_final_save_falls_back_and_says_where(capsys, monkeypatch, tmp_path,
                                                    fallback_dir):
    target = tmp_path / "model.npz"
    calls = fail_writes_to(monkeypatch, target)
    code, out, err = run(capsys, *TINY_QUIET, "--save", str(target))
    assert calls, "the final save was never attempted"
    assert code == 1
    assert out.startswith("test accuracy ")  # the run itself completed and is reported
    assert "Traceback" not in err and "No space left on device" in err
    saved = list(fallback_dir.iterdir())
    assert len(saved) == 1 and saved[0].name.startswith("mlpx-model-")
    assert f"could not write the model file {str(target)!r}" in err
    assert f"The trained model was saved to {str(saved[0])!r} instead" in err
    assert not target.exists()
    # The fallback holds the trained model: same predictions as a normal save.
    monkeypatch.undo()
    code, out, _ = run(capsys, *TINY_QUIET, "--save", str(target))
    assert code == 0
    X = datasets.scale(datasets.load_sample()[1][0][:50])
    np.testing.assert_array_equal(
        mlpx.to_numpy(load_model(saved[0]).decision_function(X)),
        mlpx.to_numpy(load_model(target).decision_function(X)))


def test_failed_checkpoint_mid_run_keeps_the_weights(capsys, monkeypatch, tmp_path,
                                                     fallback_dir):
    target = tmp_path / "ckpt.npz"
    calls = fail_writes_to(monkeypatch, target, after=1)  # epoch 1 written, epoch 2 fails
    code, out, err = run(capsys, *TINY_QUIET, "--checkpoint", str(target))
    assert len(calls) == 2
    assert code == 1 and "Traceback" not in err
    assert f"could not write the checkpoint {str(target)!r}" in err
    saved = list(fallback_dir.iterdir())
    assert len(saved) == 1
    assert f"The model as trained so far was saved to {str(saved[0])!r} instead" in err
    load_model(saved[0])


def test_fallback_that_fails_too_says_so(capsys, monkeypatch, tmp_path):
    target = tmp_path / "model.npz"
    fail_writes_to(monkeypatch, target)
    monkeypatch.setattr(cli, "_fallback_save", lambda model, wanted: (None, ["/x: full"]))
    code, out, err = run(capsys, *TINY_QUIET, "--save", str(target))
    assert code == 1 and "Traceback" not in err
    assert "Saving the model elsewhere failed too (/x: full); it is lost." in err


@pytest.mark.parametrize("hidden", ["100000000", "100000000,100000000"])
def test_model_too_big_for_memory_exit_2(capsys, monkeypatch, hidden):
    memory = cli._available_memory(mlpx.resolve_backend("numpy"))
    if memory is not None and memory[0] >= 2**40 and hidden == "100000000":
        pytest.skip("this machine has 1 TiB of memory or more")  # 784-1e8-10 needs 1.2 TiB
    no_training(monkeypatch)
    code, out, err = run(capsys, "train", "--hidden", hidden, "--quiet")
    assert_refused(code, out, err, f"--hidden {hidden}:", "parameters need at least",
                   "GiB", "use narrower layers")
    assert "MemoryError" not in err


def test_memory_estimate_counts_optimizer_state_and_dtype(capsys, monkeypatch):
    """784-1000-10: 795,010 parameters; refused only when they cannot fit."""
    monkeypatch.setattr(cli, "_available_memory", lambda backend: (795_010 * 8 * 3, "it has"))
    # float64 with SGD without momentum: parameters and gradients, 2 copies -> fits.
    code, _, err = run(capsys, *TINY_QUIET, "--hidden", "1000", "--dtype", "float64",
                       "--optimizer", "sgd", "--epochs", "1")
    assert code == 0, err
    # Adam keeps two more copies: 4 > 3 -> refused before building the model.
    no_training(monkeypatch)
    code, out, err = run(capsys, *TINY_QUIET, "--hidden", "1000", "--dtype", "float64")
    assert_refused(code, out, err, "795,010 parameters need at least 0.0 GiB",
                   "float64 parameters, gradients and adam state")


def test_ctrl_c_during_training_saves_the_model_as_trained_so_far(capsys, monkeypatch, tmp_path):
    # Ctrl-C arrives in the second epoch (a callback raising KeyboardInterrupt stands in
    # for the signal, which the trainer turns into one between steps).
    from mlpx.model import Sequential

    real_fit = Sequential.fit

    def fit(self, *args, **kw):
        def stop(model, epoch, logs):
            if epoch == 1:
                raise KeyboardInterrupt
        kw["callbacks"] = [stop]
        return real_fit(self, *args, **kw)

    monkeypatch.setattr(Sequential, "fit", fit)
    path = tmp_path / "model.npz"
    code, out, err = run(capsys, *TINY, "--quiet", "--save", str(path))
    assert code == 130
    assert "interrupted after 1 whole epoch (" in err and str(path) in err
    model = mlpx.load(str(path))
    assert model.n_features == 784


# ------------------------------------------------------------------ mlpx export
HAVE_ONNX = all(importlib.util.find_spec(m) is not None
                for m in ("ndonnx", "onnx", "onnxruntime"))


@pytest.mark.skipif(not HAVE_ONNX, reason="needs the onnx extra: pip install 'mlpx[onnx]'")
@pytest.mark.parametrize("extra", [[], ["--no-predict"]])
def test_export_writes_an_onnx_file_that_predicts_like_the_model(capsys, tmp_path, extra):
    import onnxruntime

    model = mlpx.MLP([5, 7, 3], activation="tanh", dtype="float64", seed=0)
    model.save(tmp_path / "m.npz")
    code, out, err = run(capsys, "export", str(tmp_path / "m.npz"),
                         str(tmp_path / "m.onnx"), *extra)
    assert code == 0, err
    assert "exported" in out and "m.onnx" in out
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    names = [o.name for o in session.get_outputs()]
    assert names == (["predict_proba"] if extra else ["predict_proba", "predict"])
    X = np.random.default_rng(0).normal(size=(4, 5))
    results = session.run(None, {"X": X})
    np.testing.assert_allclose(results[0], model.predict_proba(X), rtol=1e-12, atol=1e-12)
    if not extra:
        np.testing.assert_array_equal(results[1], model.predict(X))


def test_export_of_a_missing_model_exits_1(capsys, tmp_path):
    code, out, err = run(capsys, "export", str(tmp_path / "nope.npz"),
                         str(tmp_path / "m.onnx"))
    assert code == 1
    assert "mlpx export: error: cannot read the model" in err
    assert not os.path.exists(tmp_path / "m.onnx")


def test_export_into_a_missing_folder_exits_2(capsys, tmp_path):
    pytest.importorskip("ndonnx")
    mlpx.MLP([3, 2], seed=0).save(tmp_path / "m.npz")
    code, out, err = run(capsys, "export", str(tmp_path / "m.npz"),
                         str(tmp_path / "missing" / "m.onnx"))
    assert code == 2
    assert "does not exist" in err


def test_export_without_the_extra_names_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ndonnx", None)
    mlpx.MLP([3, 2], seed=0).save(tmp_path / "m.npz")
    code, out, err = run(capsys, "export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx"))
    assert code == 1
    assert "pip install 'mlpx[onnx]'" in err
    assert not os.path.exists(tmp_path / "m.onnx")
