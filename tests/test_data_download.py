"""Tests for mlpx.data.download: fetch against a local HTTP server (mirrors that fail in
every way, timeouts, sizes, the verified cache) and its argument checks."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from mlpx.datasets import DownloadError, fetch
from tests.data_helpers import PAYLOAD, PAYLOAD_SHA, MirrorServer, write


@pytest.fixture(scope="module")
def server():
    s = MirrorServer()
    yield s
    s.close()


@pytest.fixture
def srv(server):
    return server.reset()


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _only(dest, *names):
    assert sorted(p.name for p in Path(dest).iterdir()) == sorted(names)


@pytest.mark.network
def test_fetch_good_mirror(srv, tmp_path):
    dest = tmp_path / "cache" / "sub"  # created on demand
    path = fetch("payload.bin", [srv.url("good")], PAYLOAD_SHA, dest, progress=True)
    assert path == dest / "payload.bin" and path.read_bytes() == PAYLOAD
    assert srv.requests == ["/good/payload.bin"]
    _only(dest, "payload.bin")


@pytest.mark.network
def test_fetch_moves_past_bad_mirrors(srv, tmp_path):
    mirrors = [srv.url("corrupt"), srv.url("missing"), srv.url("truncated"),
               _closed_port_url(), srv.url("good")]
    path = fetch("payload.bin", mirrors, PAYLOAD_SHA, tmp_path, progress=False,
                 size=len(PAYLOAD))
    assert path.read_bytes() == PAYLOAD
    assert srv.requests == ["/corrupt/payload.bin", "/missing/payload.bin",
                            "/truncated/payload.bin", "/good/payload.bin"]
    _only(tmp_path, "payload.bin")


@pytest.mark.network
def test_fetch_all_mirrors_fail(srv, tmp_path):
    refused = _closed_port_url()
    mirrors = [srv.url("corrupt"), srv.url("missing"), srv.url("truncated"), refused]
    with pytest.raises(DownloadError) as info:
        fetch("payload.bin", mirrors, PAYLOAD_SHA, tmp_path, progress=False)
    err = info.value
    msg = str(err)
    assert isinstance(err, OSError)
    for m in mirrors:
        assert m + "payload.bin" in msg
    assert [url for url, _ in err.failures] == [m + "payload.bin" for m in mirrors]
    reasons = [why for _, why in err.failures]
    assert "checksum mismatch" in reasons[0]
    assert "404" in reasons[1]
    assert "truncated" in reasons[2]
    assert "connection failed" in reasons[3]
    _only(tmp_path)  # no temporary or partial file left behind


@pytest.mark.network
def test_fetch_timeout_and_wrong_size(srv, tmp_path):
    with pytest.raises(DownloadError) as info:
        fetch("payload.bin", [srv.url("stall")], PAYLOAD_SHA, tmp_path, progress=False,
              timeout=0.3)
    assert "timed out" in info.value.failures[0][1]
    _only(tmp_path)
    with pytest.raises(DownloadError) as info:
        fetch("payload.bin", [srv.url("good")], PAYLOAD_SHA, tmp_path, progress=False,
              size=len(PAYLOAD) + 1)
    why = info.value.failures[0][1]
    assert "wrong size" in why and str(len(PAYLOAD)) in why
    _only(tmp_path)
    path = fetch("payload.bin", [srv.url("stall"), srv.url("good")], PAYLOAD_SHA, tmp_path,
                 progress=False, timeout=0.3, size=len(PAYLOAD))
    assert path.read_bytes() == PAYLOAD
    _only(tmp_path, "payload.bin")


@pytest.mark.network
def test_fetch_uses_verified_cache_without_request(srv, tmp_path):
    write(tmp_path / "payload.bin", PAYLOAD)
    path = fetch("payload.bin", [srv.url("good")], PAYLOAD_SHA, tmp_path, progress=False)
    assert path == tmp_path / "payload.bin"
    assert srv.requests == []


@pytest.mark.network
def test_fetch_replaces_cached_file_with_wrong_checksum(srv, tmp_path):
    write(tmp_path / "payload.bin", PAYLOAD[:-1])
    with pytest.raises(DownloadError, match="does not match the checksum"):
        fetch("payload.bin", [srv.url("missing")], PAYLOAD_SHA, tmp_path, progress=False)
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD[:-1]  # left as it was
    fetch("payload.bin", [srv.url("good")], PAYLOAD_SHA, tmp_path, progress=False)
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD
    assert srv.requests == ["/missing/payload.bin", "/good/payload.bin"]
    _only(tmp_path, "payload.bin")


def test_fetch_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="'mirrors' parameter of fetch"):
        fetch("x", [], PAYLOAD_SHA, tmp_path)
    with pytest.raises(ValueError, match="'mirrors' parameter of fetch"):
        fetch("x", "http://127.0.0.1/", PAYLOAD_SHA, tmp_path)
    for bad in ("../x", "a/b", "", ".."):
        with pytest.raises(ValueError, match="'filename' parameter of fetch"):
            fetch(bad, ["http://127.0.0.1/"], PAYLOAD_SHA, tmp_path)
    with pytest.raises(ValueError, match="'sha256' parameter of fetch"):
        fetch("x", ["http://127.0.0.1/"], "abc", tmp_path)


@pytest.mark.network
def test_fetch_dest_dir_that_is_a_file(srv, tmp_path):
    """A regular file as dest_dir (or above it): a ValueError naming it, before any
    request, rather than a FileExistsError from mkdir."""
    notes = write(tmp_path / "notes.txt", b"hello")
    for dest, words in [(notes, "which is a regular file"),
                        (notes / "sub", f"which lies under '{notes}', a regular file")]:
        with pytest.raises(ValueError, match="The 'dest_dir' parameter of fetch must be a "
                           "folder") as info:
            fetch("payload.bin", [srv.url("good")], PAYLOAD_SHA, dest, progress=False)
        assert words in str(info.value)
    assert srv.requests == []
    assert notes.read_bytes() == b"hello"


@pytest.mark.network
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fetch_never_replaces_a_special_file(srv, tmp_path):
    os.mkfifo(tmp_path / "payload.bin")
    (tmp_path / "folder.bin").mkdir()
    for name, kind in [("payload.bin", "a FIFO (named pipe)"), ("folder.bin", "a folder")]:
        srv.files[name] = PAYLOAD
        with pytest.raises(ValueError, match="'filename' parameter of fetch must name a "
                           f"regular file or nothing.*is {re.escape(kind)}"):
            fetch(name, [srv.url("good")], PAYLOAD_SHA, tmp_path, progress=False)
    assert srv.requests == []
    assert not (tmp_path / "payload.bin").is_file()
