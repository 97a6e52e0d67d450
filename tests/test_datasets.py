"""Tests for mlpx.datasets, the public import path of the datasets API: it re-exports
the implementation in the mlpx.data package unchanged. The behaviour itself is tested
per module: tests/test_data_idx.py, test_data_download.py, test_data_cache.py,
test_data_catalog.py, test_data_loaders.py, test_data_preprocessing.py and
test_data_text.py."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import mlpx
import mlpx.data
from mlpx import datasets
from mlpx.data import cache, catalog, download, idx, loaders, preprocessing, text

PUBLIC = {
    "IDXFormatError": idx, "read_idx": idx,
    "open_idx": idx, "decompress_idx": idx,
    "DownloadError": download, "fetch": download,
    "default_data_dir": cache,
    "RemoteFile": catalog, "IDXDataset": catalog, "DATASETS": catalog,
    "FASHION_MNIST_CLASSES": catalog,
    "DATASET_NAMES": loaders, "load_mnist": loaders, "load_fashion_mnist": loaders,
    "load_sample": loaders, "load_dataset": loaders,
    "scale": preprocessing, "standardize": preprocessing, "one_hot": preprocessing,
    "Vocabulary": text, "tokenize": text, "make_windows": text, "text_windows": text,
    "load_word_list": text, "WORD_LISTS": text,
}


def test_public_names_are_the_implementation_objects():
    assert sorted(datasets.__all__) == sorted(PUBLIC)
    for name, module in PUBLIC.items():
        assert getattr(datasets, name) is getattr(module, name), name
    # The shipped catalogue entries stay importable from here, outside __all__.
    assert datasets.MNIST is datasets.DATASETS["mnist"] is catalog.MNIST
    assert datasets.FASHION_MNIST is datasets.DATASETS["fashion-mnist"]
    assert mlpx.datasets is datasets


def test_public_classes_keep_their_public_module():
    for cls in (datasets.IDXFormatError, datasets.DownloadError, datasets.RemoteFile,
                datasets.IDXDataset, datasets.Vocabulary):
        assert cls.__module__ == "mlpx.datasets"
        assert repr(cls) == f"<class 'mlpx.datasets.{cls.__name__}'>"
    remote = datasets.DATASETS["mnist"].test_labels
    assert pickle.loads(pickle.dumps(remote)) == remote


def test_data_package_imports_nothing_else_from_mlpx():
    """mlpx.data sits at the top of the import order, but needs nothing from mlpx but
    ``mlpx._files`` (opening untrusted files, shared with mlpx.io): its modules import
    only each other (relatively, by public names) and the standard library / NumPy /
    tqdm."""
    folder = Path(mlpx.data.__file__).parent
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("mlpx"), (path.name, alias.name)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    assert not (node.module or "").startswith("mlpx"), (path.name, node.module)
                elif node.level == 2:  # the one base module it shares with mlpx.io
                    assert node.module == "_files", (path.name, node.module)
                else:
                    assert node.level == 1 and node.module, (path.name, node.module)
                    assert all(not a.name.startswith("_") for a in node.names), path.name
