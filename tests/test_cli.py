"""The command line: ``mlpx train`` in-process and once as ``python -m mlpx``; the examples."""

import importlib.util
import os
import subprocess
import sys
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
