"""Tests for mlpx.data.cache: the cache-folder policy and the checks on folder paths."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from mlpx import datasets
from mlpx._files import file_kind
from mlpx.data.cache import check_folder
from tests.data_helpers import write


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MLPX_DATA", str(tmp_path))
    assert datasets.default_data_dir("mnist") == tmp_path / "mnist"
    monkeypatch.delenv("MLPX_DATA")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.default_data_dir("fashion-mnist") == tmp_path / "xdg/mlpx/fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.default_data_dir("mnist") == tmp_path / "home/.cache/mlpx/mnist"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert datasets.default_data_dir("mnist") == tmp_path / "home/Library/Caches/mlpx/mnist"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert datasets.default_data_dir("mnist") == tmp_path / "local/mlpx/mnist"


def test_check_folder_accepts_folders_and_creatable_paths(tmp_path, monkeypatch):
    assert check_folder(tmp_path, "x") == tmp_path
    assert check_folder(tmp_path / "a" / "b", "x") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # nothing is created
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_folder("~/sub", "x") == tmp_path / "sub"


def test_check_folder_rejects_files_and_paths_under_them(tmp_path):
    notes = write(tmp_path / "notes.txt", b"")
    with pytest.raises(ValueError) as info:
        check_folder(notes, "The 'data_dir' parameter of load_mnist")
    assert str(info.value) == (
        f"The 'data_dir' parameter of load_mnist must be a folder. Got '{notes}' instead, "
        "which is a regular file.")
    with pytest.raises(ValueError) as info:
        check_folder(notes / "a" / "b", "The 'dest_dir' parameter of fetch")
    assert str(info.value) == (
        f"The 'dest_dir' parameter of fetch must be a folder. Got '{notes / 'a' / 'b'}' "
        f"instead, which lies under '{notes}', a regular file.")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_check_folder_rejects_fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match=r"which is a FIFO \(named pipe\)"):
        check_folder(tmp_path / "pipe", "x")


def test_file_kind():
    assert file_kind(stat.S_IFREG | 0o644) == "a regular file"
    assert file_kind(stat.S_IFDIR | 0o755) == "a folder"
    assert file_kind(stat.S_IFCHR) == "a character device"
    assert file_kind(stat.S_IFBLK) == "a block device"
    assert file_kind(stat.S_IFSOCK) == "a socket"
    assert file_kind(stat.S_IFIFO) == "a FIFO (named pipe)"
    assert file_kind(0) == "a special file"
