"""Tests for mlpx.data.catalog: the pinned mirrors and checksums of the datasets."""

from __future__ import annotations

import hashlib

from mlpx import datasets
from tests.data_helpers import DEBIAN_FASHION, needs_debian


def test_pinned_checksums_are_well_formed():
    for spec in datasets.DATASETS.values():
        assert len(spec.mirrors) >= 2
        assert all(m.startswith(("http://", "https://")) and m.endswith("/")
                   for m in spec.mirrors)
        for remote in spec.files().values():
            assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0
            assert remote.size and len(remote.md5) == 32


@needs_debian
def test_fashion_checksums_match_debian_payloads():
    """The Debian files carry the original deflate streams behind a rewritten gzip
    header: restoring the original header (file name, mtime) must reproduce files with
    the pinned SHA-256 and the published MD5 (see the provenance note in
    mlpx/data/catalog.py)."""
    mtimes = {"train": 1504176606, "t10k": 1504176627}
    for remote in datasets.DATASETS["fashion-mnist"].files().values():
        gz = (DEBIAN_FASHION / remote.filename).read_bytes()
        name = remote.filename.removesuffix(".gz").encode() + b"\0"
        mtime = mtimes[remote.filename.split("-")[0]].to_bytes(4, "little")
        original = b"\x1f\x8b\x08\x08" + mtime + b"\x00\x03" + name + gz[10:]
        assert len(original) == remote.size
        assert hashlib.md5(original).hexdigest() == remote.md5
        assert hashlib.sha256(original).hexdigest() == remote.sha256
