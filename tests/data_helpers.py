"""Helpers shared by the tests of mlpx.data (tests/test_data_*.py, tests/test_datasets.py):
an IDX encoder, the Debian Fashion-MNIST skip mark, a local HTTP mirror, and a runner
for code that must stay within memory and time limits."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
needs_debian = pytest.mark.skipif(
    not all((DEBIAN_FASHION / f).is_file() for f in FASHION_FILES),
    reason=f"Fashion-MNIST IDX files not found in {DEBIAN_FASHION} "
           "(Debian package dataset-fashion-mnist)",
)

IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C,
             "float32": 0x0D, "float64": 0x0E}


def idx_bytes(arr, code=None):
    """Encode ``arr`` as IDX (big-endian), the reference the reader is checked against."""
    arr = np.asarray(arr)
    code = IDX_CODES[arr.dtype.name] if code is None else code
    return idx_header(code, arr.shape) + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def idx_header(code, dims):
    """The IDX header (magic number and sizes) for data type ``code`` and ``dims``."""
    return bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


def damage(kind, gz):
    """Damaged versions of a real (gzipped) IDX file."""
    raw = gzip.decompress(gz)

    def recompress(data):
        return gzip.compress(data, compresslevel=1)  # level 9 on 8 MB takes seconds

    if kind == "truncated gzip":
        return gz[: len(gz) // 2]
    if kind == "truncated payload":
        return recompress(raw[:-3])
    if kind == "wrong magic":
        return recompress(b"\x08\x03" + raw[2:])
    if kind == "wrong dtype code":
        return recompress(raw[:2] + b"\x07" + raw[3:])
    if kind == "wrong dims count":
        return recompress(raw[:3] + bytes([raw[3] + 1]) + raw[4:])
    if kind == "trailing garbage":
        return recompress(raw + b"\xff" * 5)
    if kind == "garbage after gzip":
        return gz + b"not gzip"
    raise AssertionError(kind)


def write(path, data):
    path = Path(path)
    path.write_bytes(data)
    return path


# ------------------------------------------------------- memory- and time-limited runs

needs_rlimits = pytest.mark.skipif(
    sys.platform == "win32", reason="resource limits (RLIMIT_AS) need a POSIX system")

MEMORY_LIMIT = 512 << 20


def run_limited(code, *, memory=MEMORY_LIMIT, cpu_seconds=30, timeout=60):
    """Run ``code`` in a fresh Python with an address-space and a CPU-time limit.

    The child runs from the repository root (so it imports this checkout of mlpx),
    with one BLAS thread (thread stacks count against the address space). It should
    print its verdict; the test checks the completed process. A child that hangs past
    ``timeout`` seconds fails the test (``subprocess.TimeoutExpired``).
    """
    prelude = (
        "import resource\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({memory}, {memory}))\n"
        f"resource.setrlimit(resource.RLIMIT_CPU, ({cpu_seconds}, {cpu_seconds}))\n"
    )
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def read_idx_limited(path, **limits):
    """``read_idx(path)`` under :func:`run_limited`; returns (verdict, process).

    The verdict is ``"IDXFormatError: <message>"``, ``"ok <shape>"`` or None when the
    child died (then the process's stderr says why, e.g. a MemoryError).
    """
    proc = run_limited(f"""
        from mlpx.datasets import IDXFormatError, read_idx
        try:
            out = read_idx({str(path)!r})
        except IDXFormatError as exc:
            print("IDXFormatError:", exc)
        else:
            print("ok", out.shape)
        """, **limits)
    lines = proc.stdout.strip().splitlines()
    verdict = lines[-1] if proc.returncode == 0 and lines else None
    return verdict, proc


# --------------------------------------------------------- a local HTTP test mirror

PAYLOAD = b"mlpx test payload\n" * 5000  # 90 kB: several read chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class MirrorServer:
    """A threaded HTTP server on 127.0.0.1 whose first path component picks a failure.

    ``/good/<name>`` serves ``files[name]``; ``/missing/`` answers 404, ``/corrupt/``
    flips bits of the first 100 bytes, ``/truncated/`` sends half the body after
    announcing all of it, ``/stall/`` sends 10 bytes then waits. ``requests`` records
    every path asked for.
    """

    def __init__(self):
        self.files = {"payload.bin": PAYLOAD}
        self.requests = []
        self.release = threading.Event()
        lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with lock:
                    server.requests.append(self.path)
                _, mode, name = self.path.split("/", 2)
                body = server.files.get(name)
                if mode == "missing" or body is None:
                    self.send_error(404, "Not Found")
                    return
                if mode == "corrupt":
                    body = bytes(b ^ 0x55 for b in body[:100]) + body[100:]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "truncated":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if mode == "stall":
                    self.wfile.write(body[:10])
                    self.wfile.flush()
                    server.release.wait(10)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        host, port = self.httpd.server_address[:2]
        self.base = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, mode):
        return f"{self.base}/{mode}/"

    def reset(self):
        self.requests.clear()
        self.files = {"payload.bin": PAYLOAD}
        return self

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
