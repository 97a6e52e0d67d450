"""``mlpx train --csv``: tabular data end to end, its errors, ``--help`` and data lookup."""

import re

import numpy as np
import pytest

import mlpx
from mlpx import cli, datasets

FAST = ["--hidden", "16", "--epochs", "30", "--batch-size", "16", "--lr", "0.01", "-q"]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")
    return str(path)


def classification_file(tmp_path, n=300, seed=0):
    """Two blobs far apart on a large scale (standardisation matters), string labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 3)) * [1000.0, 0.01, 5.0] + np.outer(y, [6000.0, 0.0, 0.0])
    X[:, 1] += 50.0
    names = np.array(["cat", "dog"])[y]
    rows = [[*x, name] for x, name in zip(X, names)]
    return write_csv(tmp_path / "blobs.csv", ["a", "b", "c", "label"], rows), X, names


def regression_file(tmp_path, n=400, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)) * [10.0, 0.1]
    y = 300.0 + 20.0 * X[:, 0] - 400.0 * X[:, 1] + rng.normal(size=n)
    return write_csv(tmp_path / "reg.csv", ["x1", "x2", "price"],
                     [[*x, t] for x, t in zip(X, y)]), X, y


def summary(out):
    return out.strip().splitlines()[-1]


# ---------------------------------------------------------------- end to end
def test_classification_end_to_end_and_the_saved_model_takes_raw_rows(capsys, tmp_path):
    path, X, names = classification_file(tmp_path)
    model_path = tmp_path / "m.npz"
    code, out, err = run(capsys, "train", "--csv", path, "--target", "label", *FAST,
                         "--save", str(model_path))
    assert code == 0, err
    line = summary(out)
    acc = float(re.search(r"test accuracy ([0-9.]+)", line).group(1))
    assert acc > 0.95
    model = mlpx.load(model_path)
    assert model.n_features == 3 and model.n_outputs == 2
    assert type(model.layers[0]).__name__ == "Standardize"
    mean = mlpx.to_numpy(model.layers[0].params[0])
    train_rows = np.sort(np.random.default_rng(0).permutation(len(X))[60:])  # seed 0
    np.testing.assert_allclose(mean, X[train_rows].mean(axis=0), rtol=1e-5)
    # Raw rows, not standardised ones: the standardisation travels with the model.
    pred = mlpx.to_numpy(model.predict(X.astype(np.float32)))
    assert np.mean(np.array(["cat", "dog"])[pred] == names) > 0.95


def test_progress_header_and_summary_without_quiet(capsys, tmp_path):
    path, _, _ = classification_file(tmp_path)
    code, out, err = run(capsys, "train", "--csv", path, "--target", "label", "--hidden", "8",
                         "--epochs", "2")
    assert code == 0
    assert "blobs.csv: 240 training, 60 test rows" in out
    assert "3 numeric feature columns (standardised); target 'label': classification " \
           "into 2 classes (cat, dog)" in out
    assert "model 3-8-2 relu" in out
    assert "MLP [numpy]" in err  # the progress bar
    assert summary(out).startswith("test accuracy ")


def test_regression_is_chosen_and_scored_in_raw_units(capsys, tmp_path):
    path, X, y = regression_file(tmp_path)
    model_path = tmp_path / "r.npz"
    code, out, err = run(capsys, "train", "--csv", path, "--target", "price", "--hidden",
                         "16", "--epochs", "60", "--batch-size", "32", "--lr", "0.01",
                         "--save", str(model_path))
    assert code == 0, err
    assert "target 'price': regression" in out
    assert "mse loss" in out
    line = summary(out)
    r2 = float(re.search(r"test R\^2 (-?[0-9.]+)", line).group(1))
    assert r2 > 0.95, line
    model = mlpx.load(model_path)
    pred = mlpx.to_numpy(model.predict(X.astype(np.float32)))[:, 0]
    assert np.sqrt(np.mean((pred - y) ** 2)) < 0.2 * np.std(y)  # raw units out


def test_task_flag_forces_the_kind(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)  # 0..3: a class by default
    path = write_csv(tmp_path / "q.csv", ["u", "v", "quadrant"],
                     [[*x, t] for x, t in zip(X, y)])
    code, out, _ = run(capsys, "train", "--csv", path, "--target", "quadrant", "--hidden",
                       "8", "--epochs", "1")
    assert code == 0 and "classification into 4 classes (0, 1, 2, 3)" in out
    code, out, _ = run(capsys, "train", "--csv", path, "--target", "quadrant", "--hidden",
                       "8", "--epochs", "1", "--task", "regression")
    assert code == 0 and "target 'quadrant': regression" in out
    assert summary(out).startswith("test R^2 ")


@pytest.mark.parametrize("name", ["iris", "diabetes"])
def test_real_datasets_from_scikit_learn(capsys, tmp_path, name):
    sk = pytest.importorskip("sklearn.datasets")
    if name == "iris":
        data = sk.load_iris()
        target = [data.target_names[i] for i in data.target]
    else:
        data = sk.load_diabetes(scaled=False)
        target = list(data.target)
    header = [re.sub(r"\W+", "_", f).strip("_") for f in data.feature_names] + ["target"]
    path = write_csv(tmp_path / f"{name}.csv", header,
                     [[*x, t] for x, t in zip(data.data, target)])
    plot = tmp_path / "curves.png"
    extra = ["--plot", str(plot)] if _has_matplotlib() else []
    code, out, err = run(capsys, "train", "--csv", path, "--target", "target", "--hidden",
                         "32", "--epochs", "60", "--batch-size", "16", "--lr", "0.01",
                         "--validation-split", "0.1", *extra)
    assert code == 0, err
    line = summary(out)
    if name == "iris":
        assert "classification into 3 classes (setosa, versicolor, virginica)" in out
        assert float(re.search(r"test accuracy ([0-9.]+)", line).group(1)) >= 0.8
    else:  # a linear model reaches R^2 of about 0.45 on this data
        assert "target 'target': regression" in out
        assert float(re.search(r"test R\^2 (-?[0-9.]+)", line).group(1)) > 0.2
    if extra:
        assert plot.stat().st_size > 0


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- errors
def test_missing_target_column_lists_the_columns(capsys, tmp_path):
    path, _, _ = classification_file(tmp_path)
    code, _, err = run(capsys, "train", "--csv", path, "--target", "species", *FAST)
    assert code == 2
    assert "--target 'species'" in err and "'a', 'b', 'c', 'label'" in err


def test_non_numeric_columns_are_named(capsys, tmp_path):
    path = write_csv(tmp_path / "t.csv", ["size", "colour", "city", "y"],
                     [[1, "red", "Paris", 0], [2, "blue", "Oslo", 1], [3, 4, 5, 0]])
    code, _, err = run(capsys, "train", "--csv", path, "--target", "y", *FAST)
    assert code == 1
    assert "not numeric: 'colour' (line 2: 'red'), 'city' (line 2: 'Paris')" in err
    assert "'size'" not in err.split("not numeric")[1]


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    ("a,b,y\n", "has a header but no data rows"),
    ("a,b,y\n1,2,0\n1,2\n", "line 3: 2 fields, but the header has 3"),
    ("a,b,y\n1,,0\n1,2,1\n", "empty cells in 'b' (line 2)"),
    ("a,b,y\n1,inf,0\n1,2,1\n", "column 'b' holds inf"),
    ("a,b,y\n1,2,0\n3,4,0\n", "holds a single class"),
    ("a,b,y\n\xff\xfe,1,2\n", "is not UTF-8 text"),
])
def test_bad_files_exit_1_with_a_clear_message(capsys, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode("latin-1"))
    code, _, err = run(capsys, "train", "--csv", str(path), "--target", "y", *FAST)
    assert code == 1, err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--target", "y"], "--target goes with --csv"),
    (["--task", "regression"], "--task goes with --csv"),
    (["--csv", "{path}"], "--csv needs --target COLUMN"),
    (["--csv", "{path}", "--target", "label", "--dataset", "mnist"], "leave out --dataset"),
    (["--csv", "{dir}", "--target", "label"], "--csv: no file"),
    (["--csv", "{path}", "--target", "label", "--task", "regression"],
     "is not numeric ('dog'); use --task classification"),
    (["--csv", "{path}", "--target", "label", "--test-split", "0.001"],
     "leaves an empty training or test set"),
])
def test_option_errors_exit_2(capsys, tmp_path, argv, message):
    path, _, _ = classification_file(tmp_path)
    argv = [a.format(path=path, dir=tmp_path) for a in argv]
    code, _, err = run(capsys, "train", *argv, *FAST)
    assert code == 2, err
    assert message in err


def test_a_file_too_large_is_refused_before_it_is_read_whole(capsys, tmp_path, monkeypatch):
    path, _, _ = classification_file(tmp_path)
    monkeypatch.setattr(cli, "_CSV_MAX_CELLS", 40)  # 10 rows of 4 columns
    code, _, err = run(capsys, "train", "--csv", path, "--target", "label", *FAST)
    assert code == 1
    assert "more than 10 rows of 4 columns" in err and "at most 40 cells" in err


# ---------------------------------------------------------------- --help
def test_help_writes_every_default_as_typed(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    text = " ".join(out.split())  # undo the line wrapping
    assert "(default: 512,512)" in text and "[512, 512]" not in text
    assert text.count("(default:") == len(re.findall(r"\(default: [^)]", text))
    assert not re.search(r"default: [^)]*\(default", text)  # never doubled
    train = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    for action in train._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings
    # Every option's entry says its default (or "none"/"off").
    entries = re.split(r"\n  (?=-)", out.split("\noptions:\n", 1)[1])
    assert len(entries) > 30
    for entry in entries:
        if "--help" not in entry:
            assert "default" in entry, entry


# ---------------------------------------------------------------- where data are found
def _fake_idx_folder(folder, dataset="fashion-mnist"):
    from mlpx.data.catalog import DATASETS

    folder.mkdir(parents=True)
    for remote in DATASETS[dataset].files().values():
        (folder / remote.filename).write_bytes(b"")
    return str(folder)


def test_dataset_is_looked_for_where_the_examples_look(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MLPX_DATA", raising=False)
    args = cli.build_parser().parse_args(["train", "--dataset", "fashion-mnist"])
    places = cli._data_places("fashion-mnist")
    assert places == [str(tmp_path / "cache" / "mlpx" / "fashion-mnist"),
                      "/usr/share/datasets/fashion-mnist"]
    monkeypatch.setenv("MLPX_DATA", str(tmp_path / "data"))
    places = cli._data_places("fashion-mnist")
    assert places[0] == str(tmp_path / "data" / "fashion-mnist")
    assert cli._data_places("mnist")[-1].endswith("mnist")
    assert "/usr/share" not in " ".join(cli._data_places("mnist"))
    # The first place holding the four files wins; --data-dir overrides them all.
    cache = _fake_idx_folder(tmp_path / "cache" / "mlpx" / "fashion-mnist")
    if not cli._holds_dataset(places[-1], "fashion-mnist"):
        assert cli._data_dir(args) == cache
    env = _fake_idx_folder(tmp_path / "data" / "fashion-mnist")
    assert cli._data_dir(args) == env
    args.data_dir = str(tmp_path)
    assert cli._data_dir(args) == str(tmp_path)


def test_offline_hint_names_the_places(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MLPX_DATA", str(tmp_path / "data"))

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    code, _, err = run(capsys, "train", "--dataset", "fashion-mnist", "-q", "--epochs", "1")
    assert code == 1
    for place in (str(tmp_path / "data" / "fashion-mnist"),
                  str(tmp_path / "cache" / "mlpx" / "fashion-mnist"),
                  "/usr/share/datasets/fashion-mnist", "--data-dir", "--dataset sample"):
        assert place in err


# ---------------------------------------------------------------- activations
def test_unknown_activation_lists_every_accepted_name(capsys):
    with pytest.raises(ValueError) as info:
        mlpx.MLP([2, 3, 1], activation="sine")
    text = str(info.value)
    for name in (*mlpx.ACTIVATIONS, "prelu", "maxout"):
        assert repr(name) in text, name
    assert "PReLU layer" in text and "Maxout layer" in text
    code, _, err = run(capsys, "train", "--activation", "sine", "-q", "--epochs", "1")
    assert code == 2 and "'prelu'" in err and "'maxout'" in err


def test_prelu_and_maxout_are_layers_not_output_activations():
    from mlpx.activations import LAYER_ACTIVATIONS, get_activation

    assert set(LAYER_ACTIVATIONS) == {"prelu", "maxout"}
    assert not set(LAYER_ACTIVATIONS) & {n.lower() for n in mlpx.ACTIVATIONS}
    for name in ("prelu", "Max-out"):
        with pytest.raises(ValueError, match="Not a plain activation .*not an output"):
            get_activation(name)
    kinds = [type(layer).__name__ for layer in mlpx.MLP([2, 3, 1],
                                                        activation="PReLU").layers]
    assert kinds == ["Dense", "PReLU", "Dense"]
    kinds = [type(layer).__name__ for layer in mlpx.MLP([2, 3, 1],
                                                        activation="maxout").layers]
    assert kinds == ["Maxout", "Dense"]


def test_a_line_too_long_is_refused_without_reading_it_whole(capsys, tmp_path, monkeypatch):
    path = tmp_path / "long.csv"
    path.write_text("a,y\n" + "1" * 5000 + ",0\n")
    monkeypatch.setattr(cli, "_CSV_MAX_LINE", 1000)
    code, _, err = run(capsys, "train", "--csv", str(path), "--target", "y", *FAST)
    assert code == 1 and "a line longer than 1,000 characters" in err
