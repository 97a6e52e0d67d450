"""Synchronous data-parallel training over MPI (mpi4py), with NCCL for CuPy.

Every process (*rank*) holds a full replica of the model. ``fit(..., comm=...)``:

1. broadcasts rank 0's host random state (shuffling, validation split) and, once the
   model is compiled or resumed, rank 0's weights and optimizer state, so that every
   rank starts from the same place;
2. walks the *global* batches in the order one process would (same shuffle), and gives
   each rank a contiguous share of every global batch (:func:`shard_bounds`; an uneven
   batch, the last one included, is split as evenly as it goes, a rank may get none);
3. on each rank, computes the gradient of the rank's share, scales it by the share's
   weight (samples, or the sum of their sample weights), packs it with the scaled loss
   and the weight into **one flat buffer** and sums that buffer over the ranks with
   **one all-reduce** (:class:`GradientAllReduce`, a :class:`~mlpx.trainer.StepHook`);
4. divides by the global weight, adds the L2 term once, and every rank applies the same
   update with its own optimizer (same state, same gradient: same weights).

So 2 ranks with the same global batch compute what 1 process does, up to the rounding
of the sums. Dropout masks come from a per-rank generator derived from the shared seed
and the rank. Only rank 0 shows progress and writes checkpoints. An exception on one
rank prints which rank failed and aborts the whole job (``MPI_Abort``), so that the
others never wait forever in an all-reduce; a rank that hangs is found by the others'
collective timeout (:class:`MPICommunicator`), which names it and aborts the job.

Data may stay on disk: with ``X`` a :class:`RowSource` (over a memory map, an IDX file
mapped by :func:`mlpx.datasets.open_idx`, ...) each rank reads only the rows of its
shares. The gradient buffer may be all-reduced in buckets (``bucket_bytes``), and CuPy
buffers go to a CUDA-aware MPI directly (:func:`cuda_aware_mpi`).

Examples
--------
Run with ``mpiexec -n 2 python train.py``::

    from mpi4py import MPI
    import mlpx
    from mlpx.toy import make_moons

    X, y = make_moons(1000, seed=0)
    model = mlpx.MLP([2, 32, 2], seed=0)
    model.fit(X, y, batch_size=64, comm=MPI.COMM_WORLD)
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import importlib
import os
import pickle
import sys
import time
from typing import Any, Iterator

import numpy as np

from . import _backend
from ._validation import Boolean, Interval, validate_params
from .losses import l2_penalty
from .state import map_arrays
from .trainer import DeviceData, StepContext, StepHook
from .training import NonFiniteLossError

__all__ = [
    "MPI_EXTRA_HINT",
    "import_mpi",
    "Communicator",
    "MPICommunicator",
    "NCCLCommunicator",
    "DEFAULT_TIMEOUT",
    "CollectiveTimeoutError",
    "cuda_aware_mpi",
    "as_communicator",
    "shard_bounds",
    "bucket_edges",
    "RowSource",
    "ShardedData",
    "GradientAllReduce",
    "DataParallel",
    "RankMismatchError",
    "SharedDataError",
    "COLLECTIVE_ERRORS",
    "local_rank",
    "cuda_communicator",
]

#: What to install for distributed training (the message of every missing-package error).
MPI_EXTRA_HINT = ("install the extra: pip install 'mlpx[mpi]' (mpi4py and the MPICH "
                  "wheels from PyPI; or mpi4py built against your cluster's MPI)")


def import_mpi() -> Any:
    """Return ``mpi4py.MPI``, or raise an ImportError that names the extra to install."""
    try:
        MPI = importlib.import_module("mpi4py.MPI")
    except ImportError as exc:
        raise ImportError(f"Distributed training (comm=..., mlpx train --distributed) "
                          f"needs mpi4py and an MPI library: {MPI_EXTRA_HINT}. "
                          f"({exc})") from exc
    return MPI


class RankMismatchError(ValueError):
    """The ranks called ``fit`` with different data or arguments (raised on every rank)."""


class SharedDataError(ValueError):
    """The training data are unfit (NaN or infinity), found by the ranks together from
    the slices each one scanned (raised on every rank)."""


#: Errors that every rank raises at the same point, decided from shared values: they
#: propagate as usual instead of aborting the job.
COLLECTIVE_ERRORS = (RankMismatchError, SharedDataError, NonFiniteLossError)


# ---------------------------------------------------------------------- communicators
#: How long a collective waits for the other ranks before it gives up (seconds).
DEFAULT_TIMEOUT = 300.0

# Tags of the point-to-point messages a timed-out rank uses to learn which ranks are
# waiting too (MPI keeps them apart from the collectives' traffic; at most 32767).
_TAG_ASK, _TAG_HERE = 32101, 32102
# A collective is polled without pause this long (a blocking MPI wait spins too), then
# with pauses of up to 1 ms, which cost under 2 % of a wait that long.
_SPIN_SECONDS = 0.05


class CollectiveTimeoutError(RuntimeError):
    """A collective did not complete in time: some rank never arrived (it hangs).

    Attributes
    ----------
    missing : list of int
        The ranks that neither arrived nor answered (the suspects).
    """

    def __init__(self, message: str, missing: list[int]):
        super().__init__(message)
        self.missing = missing


class Communicator:
    """What data-parallel training needs from a communication library.

    Attributes
    ----------
    rank : int
        This process's number, 0 to ``size - 1``.
    size : int
        Number of processes.
    bucket_bytes : int or None
        Gradients are all-reduced in pieces of about this many bytes, all in flight
        together (None: one buffer).
    """

    rank: int = 0
    size: int = 1
    bucket_bytes: int | None = None

    def allreduce_sum(self, buf, *, backend):
        """Return the element-wise sum of ``buf`` (1-D, of ``backend``) over all ranks."""
        raise NotImplementedError

    def allreduce_sum_async(self, buf, *, backend):
        """Start summing ``buf`` over the ranks; return a function that returns the sum.

        The base class sums at once; communicators with non-blocking collectives return
        before the sum is done, so that several pieces travel together.
        """
        out = self.allreduce_sum(buf, backend=backend)
        return lambda: out

    def bcast(self, obj: Any) -> Any:
        """Return rank 0's ``obj`` (a picklable host object) on every rank."""
        raise NotImplementedError

    def allgather(self, obj: Any) -> list:
        """Return the list of every rank's ``obj`` (picklable host objects), by rank."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """End every process of the job (the others may be blocked in a collective)."""
        raise NotImplementedError


_COMM_PARAMS = {
    "timeout": [Interval(float, 0, None, closed="neither"), None],
    "bucket_bytes": [Interval(int, 1, None, closed="left"), None],
    "cuda_aware": [Boolean(), None],
}


def cuda_aware_mpi(MPI: Any = None) -> bool:
    """Whether the MPI library takes CUDA device buffers (CUDA-aware MPI).

    ``MLPX_CUDA_AWARE_MPI=1`` or ``0`` in the environment decides; otherwise mpi4py's
    ``Query_cuda_support`` where it has one, else the library's own
    ``MPIX_Query_cuda_support()`` (Open MPI, MPICH), looked up in the libraries mpi4py
    loaded. False when none answers.
    """
    env = os.environ.get("MLPX_CUDA_AWARE_MPI", "").strip()
    if env in ("0", "1"):
        return env == "1"
    MPI = import_mpi() if MPI is None else MPI
    query = getattr(MPI, "Query_cuda_support", None)
    if query is not None:
        return bool(query())
    try:
        fn = ctypes.CDLL(MPI.__file__).MPIX_Query_cuda_support
    except (OSError, AttributeError, TypeError):
        return False
    fn.restype, fn.argtypes = ctypes.c_int, []
    return bool(fn())


class MPICommunicator(Communicator):
    """A :class:`Communicator` over an mpi4py communicator (``MPI.COMM_WORLD``).

    Every collective is non-blocking (``Iallreduce``, ``Iallgather``, ``Ibcast``) and
    polled until it completes or ``timeout`` seconds pass. Then the rank asks the others
    (point-to-point messages) which of them are waiting too, and raises a
    :class:`CollectiveTimeoutError` that names the ranks that did not answer: the ones
    that hang. ``fit`` turns it into an abort of the whole job.

    NumPy buffers are reduced in place. CuPy buffers go to the MPI library as they are
    when it is CUDA-aware (:func:`cuda_aware_mpi`), else through the host (one copy each
    way per step); other device buffers always through the host.

    Parameters
    ----------
    comm : mpi4py communicator
    timeout : float or None, default=300
        Seconds a collective waits for the other ranks (None: forever). It bounds how
        long a rank may compute between two collectives (one step, the start of ``fit``).
    bucket_bytes : int or None, default=None
        All-reduce the gradients in pieces of about this many bytes (None: one buffer).
    cuda_aware : bool or None, default=None
        Whether to hand CuPy buffers to MPI directly (None: ask the MPI library).
    """

    def __init__(self, comm, *, timeout: float | None = DEFAULT_TIMEOUT,
                 bucket_bytes: int | None = None, cuda_aware: bool | None = None):
        params = validate_params("MPICommunicator", {"timeout": timeout,
                                                     "bucket_bytes": bucket_bytes,
                                                     "cuda_aware": cuda_aware}, _COMM_PARAMS)
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self.timeout = params["timeout"]
        self.bucket_bytes = params["bucket_bytes"]
        self.cuda_aware = params["cuda_aware"]
        #: Collectives made so far (the same count on every rank that keeps in step).
        self.calls = 0

    # -- waiting, with a deadline ------------------------------------------------------
    def _wait(self, request, what: str) -> None:
        """Wait for ``request``; past the deadline, find who is missing and raise."""
        self.calls += 1
        if self.timeout is None:
            request.Wait()
            return
        start = time.monotonic()
        deadline = start + self.timeout
        pause = 0.0
        while not request.Test():
            now = time.monotonic()
            if now - start < _SPIN_SECONDS:  # as a blocking Wait does: no added latency
                continue
            # A long wait (a slower rank): yield the core, answer the ranks that ask.
            self._answer(what)
            if now > deadline:
                self._timed_out(request, what)
                return
            pause = min(max(pause * 2, 1e-5), 1e-3)
            time.sleep(pause)

    def _answer(self, what: str) -> None:
        """Tell every rank that asked that this one is waiting (and in which call)."""
        MPI = import_mpi()
        status = MPI.Status()
        while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_TAG_ASK, status=status):
            source = status.Get_source()
            self.comm.recv(source=source, tag=_TAG_ASK)
            self.comm.isend((self.calls, what), dest=source, tag=_TAG_HERE)

    def _timed_out(self, request, what: str) -> None:
        MPI = import_mpi()
        others = [r for r in range(self.size) if r != self.rank]
        for r in others:
            self.comm.isend(self.calls, dest=r, tag=_TAG_ASK)
        here: dict[int, tuple] = {}
        status = MPI.Status()
        grace = time.monotonic() + min(5.0, max(1.0, 0.1 * float(self.timeout or 0)))
        while time.monotonic() < grace and len(here) < len(others):
            if request.Test():
                return  # arrived after all
            self._answer(what)
            while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=_TAG_HERE, status=status):
                source = status.Get_source()
                here[source] = self.comm.recv(source=source, tag=_TAG_HERE)
            time.sleep(1e-3)
        missing = [r for r in others if r not in here]
        elsewhere = sorted(r for r, (calls, _) in here.items() if calls != self.calls)
        detail = f"rank(s) {missing} did not arrive (they hang, or wait outside mlpx)"
        if elsewhere:
            detail += f"; rank(s) {elsewhere} wait in another collective (out of step)"
        raise CollectiveTimeoutError(
            f"{what} (collective {self.calls}) did not complete within {self.timeout:g} s: "
            f"{detail}. Raise the timeout (MPICommunicator(comm, timeout=...)) if a step "
            "or the start of fit legitimately takes longer", missing)

    # -- the collectives ---------------------------------------------------------------
    def _device_direct(self, buf, backend) -> bool:
        if not _backend.is_cupy_namespace(backend.xp):
            return False
        if self.cuda_aware is None:
            self.cuda_aware = cuda_aware_mpi()
        return bool(self.cuda_aware)

    def allreduce_sum_async(self, buf, *, backend):
        MPI = import_mpi()
        if self._device_direct(buf, backend):  # CUDA-aware MPI reads device memory
            _backend.synchronize(backend)
            request = self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

            def device_result():
                self._wait(request, "the gradient all-reduce")
                return buf

            return device_result
        # The packed buffer belongs to the caller's step alone: NumPy's is summed in place.
        host = _backend.to_numpy(buf)
        if not (host.flags.c_contiguous and host.flags.writeable):
            host = np.array(host, order="C")
        request = self.comm.Iallreduce(MPI.IN_PLACE, host, op=MPI.SUM)

        def result():
            self._wait(request, "the gradient all-reduce")
            if _backend.is_numpy_namespace(backend.xp):
                return host
            return _backend.to_device(host, backend=backend)

        return result

    def allreduce_sum(self, buf, *, backend):
        return self.allreduce_sum_async(buf, backend=backend)()

    def bcast(self, obj):
        MPI = import_mpi()
        data = _pickled(obj) if self.rank == 0 else np.empty(0, dtype=np.uint8)
        size = np.array([data.size], dtype=np.int64)
        self._wait(self.comm.Ibcast(size, root=0), "a broadcast from rank 0")
        if self.rank != 0:
            data = np.empty(int(size[0]), dtype=np.uint8)
        self._wait(self.comm.Ibcast([data, MPI.BYTE], root=0), "a broadcast from rank 0")
        return pickle.loads(data.tobytes())

    def allgather(self, obj):
        MPI = import_mpi()
        data = _pickled(obj)
        sizes = np.zeros(self.size, dtype=np.int64)
        self._wait(self.comm.Iallgather(np.array([data.size], dtype=np.int64), sizes),
                   "an all-gather")
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        self._wait(self.comm.Iallgatherv([data, MPI.BYTE], [out, sizes, MPI.BYTE]),
                   "an all-gather")
        ends = np.cumsum(sizes)
        return [pickle.loads(out[e - s:e].tobytes()) for s, e in zip(sizes, ends)]

    def abort(self, code=1):
        self.comm.Abort(code)


def _pickled(obj) -> np.ndarray:
    # The ranks of one job trust each other (mpi4py's own bcast pickles the same way).
    return np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)


_NCCL_DTYPES = {"float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64"}


class NCCLCommunicator(Communicator):
    """GPU-to-GPU all-reduce of CuPy buffers with NCCL, set up over an MPI communicator.

    Rank 0 makes the NCCL unique id and broadcasts it over ``comm``; small host objects
    (random state, weights at the start) still travel over ``comm``. Each rank must
    already have selected its GPU (``cupy.cuda.Device(local_rank).use()``).

    Parameters
    ----------
    comm : Communicator or mpi4py communicator
    nccl : module, optional
        ``cupy.cuda.nccl`` (looked up when None; tests pass a stand-in).
    """

    def __init__(self, comm, *, nccl=None):
        self.host = as_communicator(comm)
        self.rank, self.size = self.host.rank, self.host.size
        self.nccl = _backend.nccl_module() if nccl is None else nccl
        uid = self.nccl.get_unique_id() if self.rank == 0 else None
        uid = self.host.bcast(uid)
        self.nccl_comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)

    def allreduce_sum(self, buf, *, backend):
        nccl = self.nccl
        name = np.dtype(buf.dtype).name
        if name not in _NCCL_DTYPES:
            raise TypeError(f"NCCL all-reduce supports float32 and float64 buffers, not "
                            f"{name}.")
        out = backend.xp.empty_like(buf)
        self.nccl_comm.allReduce(buf.data.ptr, out.data.ptr, int(buf.size),
                                 getattr(nccl, _NCCL_DTYPES[name]), nccl.NCCL_SUM,
                                 _backend.current_stream_ptr(backend))
        return out

    def bcast(self, obj):
        return self.host.bcast(obj)

    def allgather(self, obj):
        return self.host.allgather(obj)

    def abort(self, code=1):
        self.host.abort(code)


def as_communicator(comm) -> Communicator:
    """``comm`` as a :class:`Communicator` (an mpi4py communicator is wrapped)."""
    if isinstance(comm, Communicator):
        return comm
    if hasattr(comm, "Allreduce") and hasattr(comm, "Get_rank"):
        return MPICommunicator(comm)
    raise TypeError("The 'comm' parameter of fit must be an mpi4py communicator (e.g. "
                    "MPI.COMM_WORLD) or an mlpx.distributed.Communicator. Got "
                    f"{type(comm).__name__} instead.")


def local_rank(comm) -> int:
    """This rank's number among the ranks of ``comm`` (mpi4py) on the same machine."""
    MPI = import_mpi()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return int(node.Get_rank())
    finally:
        node.Free()


def cuda_communicator(comm, *, nccl=None) -> NCCLCommunicator:
    """Select this rank's GPU (its local rank modulo the GPUs) and return NCCL over it.

    Call it before building the model: the cupy backend computes on the current device.

    Parameters
    ----------
    comm : mpi4py communicator
    nccl : module, optional
        ``cupy.cuda.nccl`` (looked up when None).
    """
    _backend.use_cuda_device(local_rank(comm))
    return NCCLCommunicator(comm, nccl=nccl)


# ---------------------------------------------------------------------- data
def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of a batch of ``n`` samples that ``rank`` of ``size`` takes.

    Contiguous and as even as possible (sizes differ by at most one; the first
    ``n % size`` ranks take one more); a rank gets none when ``n < size``.
    """
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


_ROW_PARAMS = {
    "divide": [Interval(float, 0, None, closed="neither"), None],
    "chunk_bytes": Interval(int, 1, None, closed="left"),
}


class RowSource:
    """The rows of a data set, read from where they lie (a file) a few at a time.

    Pass one as ``X`` to ``fit(..., comm=...)``: every rank then reads only the rows of
    its own share of each global batch (plus, once at the start, its slice of the data
    for the finiteness check), so a rank's memory holds one batch share, not the data
    set. A NumPy memory map passed as ``X`` is wrapped in one. Without ``comm`` a
    RowSource is read whole (``numpy.asarray``), as an array would be.

    Parameters
    ----------
    array : array-like of shape (n_samples, ...)
        Where the rows are: a ``numpy.memmap`` (``np.load(path, mmap_mode="r")``,
        ``mlpx.datasets.load_dataset(name, mmap=True)``) or any object with ``shape``,
        ``dtype`` and indexing of its first axis by a sorted integer array (h5py,
        zarr). Each sample's values are flattened to one row.
    dtype : str or numpy.dtype, optional
        The dtype of the rows handed out: the array's by default, float32 when
        ``divide`` is given.
    divide : float, optional
        Divide the rows by this after the cast: ``divide=255`` gives the rows of
        ``mlpx.datasets.scale(array)``, bit for bit.
    chunk_bytes : int, default=16 MiB
        Size of the pieces a scan (:meth:`__array__`, the check at the start of
        ``fit``) reads at a time.

    Attributes
    ----------
    shape : tuple of int
        ``(n_samples, n_features)``.
    rows_read : int
        Rows read so far (all reads, for memory accounting and tests).

    Examples
    --------
    >>> import numpy as np
    >>> from mlpx.distributed import RowSource
    >>> pixels = np.array([[0, 51], [255, 102], [153, 204]], dtype=np.uint8)
    >>> rows = RowSource(pixels, divide=255)
    >>> rows.shape, rows.dtype
    ((3, 2), dtype('float32'))
    >>> rows.read([2, 0])
    array([[0.6, 0.8],
           [0. , 0.2]], dtype=float32)
    >>> rows.subset([1, 2]).read([0])
    array([[1. , 0.4]], dtype=float32)
    """

    ndim = 2

    def __init__(self, array, *, dtype=None, divide=None, chunk_bytes=16 << 20) -> None:
        params = validate_params("RowSource", {"divide": divide, "chunk_bytes": chunk_bytes},
                                 _ROW_PARAMS)
        shape = tuple(int(s) for s in getattr(array, "shape", ()))
        if not shape:
            raise TypeError("The 'array' parameter of RowSource must be an array with at "
                            f"least one dimension (samples first). Got {type(array).__name__} "
                            "instead.")
        source_dtype = np.dtype(array.dtype)
        if source_dtype.kind not in "biuf":
            raise ValueError(f"The rows must be numeric; got dtype {source_dtype}.")
        self.array = array
        self.divide = params["divide"]
        self.chunk_bytes = params["chunk_bytes"]
        if dtype is None:
            dtype = "float32" if self.divide is not None else source_dtype
        self.dtype = np.dtype(dtype)
        self.index: np.ndarray | None = None
        self.shape = (shape[0], int(np.prod(shape[1:], dtype=np.int64)))
        self.rows_read = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"RowSource({type(self.array).__name__} of {self.shape[0]} rows x "
                f"{self.shape[1]}, dtype={self.dtype.name}, divide={self.divide})")

    def subset(self, rows) -> "RowSource":
        """The rows ``rows`` (host indices into this source) as a new source."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = copy.copy(self)
        out.index = rows if self.index is None else self.index[rows]
        out.shape = (int(rows.size), self.shape[1])
        out.rows_read = 0
        return out

    def read(self, rows) -> np.ndarray:
        """Rows ``rows`` (host indices, any order) as a new array of :attr:`dtype`."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self.index is not None:
            rows = self.index[rows]
        self.rows_read += int(rows.size)
        d = self.shape[1]
        if rows.size == 0:
            return np.empty((0, d), dtype=self.dtype)
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        lo, hi = int(wanted[0]), int(wanted[-1]) + 1
        if hi - lo == wanted.size:  # consecutive rows: one slice
            got = self.array[lo:hi]
        else:  # a fancy index of sorted rows reads those rows only
            got = self.array[wanted]
        got = np.asarray(got).reshape(wanted.size, d)
        out = np.empty((wanted.size, d), dtype=self.dtype)
        out[order] = got  # the cast to dtype, row by row in the asked order
        if self.divide is not None:
            out /= self.divide
        return out

    def chunk_rows(self) -> int:
        """Rows a scan reads at a time (:attr:`chunk_bytes` worth, at least one)."""
        row = max(1, self.shape[1]) * max(self.dtype.itemsize,
                                          np.dtype(self.array.dtype).itemsize)
        return max(1, self.chunk_bytes // row)

    def __array__(self, dtype=None, copy=None):
        """Every row (read piece by piece into one array): for a single process."""
        n = self.shape[0]
        out = np.empty(self.shape, dtype=self.dtype)
        step = self.chunk_rows()
        for a in range(0, n, step):
            b = min(a + step, n)
            out[a:b] = self.read(np.arange(a, b))
        return out if dtype is None else out.astype(dtype, copy=False)


class ShardedData(DeviceData):
    """The training data of one rank: every global batch, cut down to this rank's share.

    The trainer still walks the whole data set in the global order (``n`` is the global
    number of samples, the host weights are global); :meth:`batch` returns only the rows
    :func:`shard_bounds` gives this rank. When ``X`` is a :class:`RowSource`, those
    rows are read from it (and moved to ``backend`` in ``dtype``) batch by batch.
    """

    def __init__(self, data: DeviceData, *, rank: int, size: int, backend=None,
                 dtype=None):
        super().__init__(data.X, data.Y, data.labels, data.W, xp=data.xp)
        self.rank, self.size = rank, size
        self.backend, self.dtype = backend, dtype

    def batch(self, perm, rows, start, stop):
        lo, hi = shard_bounds(stop - start, self.rank, self.size)
        if not isinstance(self.X, RowSource):
            return super().batch(perm, rows, start + lo, start + hi)
        a, b = start + lo, start + hi
        host = np.arange(a, b) if isinstance(rows, slice) or rows is None \
            else np.asarray(rows)[lo:hi]
        X = _backend.to_device(self.X.read(host), backend=self.backend, dtype=self.dtype)
        xp = self.xp
        if perm is None:
            def pick(A):
                return None if A is None else A[a:b, ...]
        else:
            idx = perm[a:b]

            def pick(A):
                return None if A is None else xp.take(A, idx, axis=0)
        return X, pick(self.Y), pick(self.W), pick(self.labels)


# ---------------------------------------------------------------------- the hook
def bucket_edges(count: int, itemsize: int, bucket_bytes: int | None) -> list:
    """Split ``count`` values of ``itemsize`` bytes into pieces of about ``bucket_bytes``.

    Returns ``[(start, stop), ...]`` covering ``range(count)`` in order: one piece when
    ``bucket_bytes`` is None or the buffer fits in it, else pieces of equal size (the
    last one up to a piece shorter).

    Examples
    --------
    >>> from mlpx.distributed import bucket_edges
    >>> bucket_edges(10, 4, None), bucket_edges(10, 4, 16)
    ([(0, 10)], [(0, 4), (4, 8), (8, 10)])
    """
    per = count if bucket_bytes is None else max(1, int(bucket_bytes) // int(itemsize))
    if per >= count:
        return [(0, count)]
    return [(a, min(a + per, count)) for a in range(0, count, per)]


class GradientAllReduce(StepHook):
    """Sums the gradients of every rank's share of a batch with one all-reduce.

    Before the step it turns the model's L2 off for the local gradient (it is added once,
    after the sum) and installs this rank's dropout generator. On the gradients it packs
    ``[w * g for every gradient] + [w * loss, w]`` (``w`` the share's weight: its
    samples, or the sum of their sample weights) into one flat buffer, all-reduces it,
    and returns ``sum / sum(w) + alpha * W``: the gradient one process computes on the
    whole batch. The batch loss it reports is the global one, so every rank records the
    same history and takes the same decisions (early stopping, non-finite checks).

    With ``comm.bucket_bytes`` set, the buffer is all-reduced in pieces of about that
    size (:func:`bucket_edges`), all started before the first is waited for, so that
    their transfers overlap one another; the sums are the same element by element.

    Parameters
    ----------
    comm : Communicator
    model : mlpx.Sequential
    host_weights : numpy.ndarray or None
        The global sample weights (the trainer's host copy), or None.
    noise_rng : object or None
        This rank's dropout generator (from :func:`mlpx._backend.noise_rng`), or None to
        leave the state's own.

    Attributes
    ----------
    allreduce_seconds : float
        Wall time spent in the all-reduce (device synchronisation included).
    steps : int
        Steps whose gradients were all-reduced.
    buckets : int
        Pieces the buffer of the last step was all-reduced in.
    """

    needs_gradients = True

    def __init__(self, comm: Communicator, model, *, host_weights=None, noise_rng=None):
        self.comm = comm
        self.model = model
        self.host_weights = host_weights
        self.noise_rng = noise_rng
        self.allreduce_seconds = 0.0
        self.steps = 0
        self.buckets = 0

    def local_weight(self, ctx: StepContext) -> float:
        """The weight of this rank's share of the batch ``ctx`` describes."""
        lo, hi = shard_bounds(ctx.n, self.comm.rank, self.comm.size)
        if self.host_weights is None:
            return float(hi - lo)
        rows = ctx.rows
        if isinstance(rows, slice):
            start = 0 if rows.start is None else rows.start
            local = self.host_weights[start + lo:start + hi]
        else:
            local = self.host_weights[np.asarray(rows)[lo:hi]]
        return float(np.sum(local))

    def before_step(self, ctx, trainer):
        ctx.info["dp_weight"] = self.local_weight(ctx)
        ctx.info["dp_alpha"] = float(ctx.alpha)
        ctx.alpha = 0.0
        if self.noise_rng is not None:
            self.model.state_.noise_rng = self.noise_rng

    def on_gradients(self, grads, ctx):
        model = self.model
        backend = model.backend
        xp = backend.xp
        w = ctx.info["dp_weight"]
        dtype = grads[0].dtype
        if w > 0:
            parts = [xp.reshape(g * w, (-1,)) for g in grads]
            tail = xp.stack([xp.astype(xp.asarray(ctx.loss), dtype) * w,
                             xp.asarray(w, dtype=dtype, device=backend.device)])
        else:  # an empty or weightless share: its loss and gradients may be 0/0
            parts = [xp.zeros((int(np.prod(g.shape)),), dtype=dtype, device=backend.device)
                     for g in grads]
            tail = xp.zeros((2,), dtype=dtype, device=backend.device)
        buf = xp.concat(parts + [tail])
        t0 = time.perf_counter()
        edges = bucket_edges(int(buf.shape[0]), np.dtype(_backend.dtype_name(dtype)).itemsize,
                             self.comm.bucket_bytes)
        self.buckets = len(edges)
        if len(edges) == 1:
            total = self.comm.allreduce_sum(buf, backend=backend)
        else:  # every piece in flight before the first is waited for
            waits = [self.comm.allreduce_sum_async(buf[a:b], backend=backend)
                     for a, b in edges]
            total = xp.concat([wait() for wait in waits])
        self.allreduce_seconds += time.perf_counter() - t0
        self.steps += 1
        weight = total[-1]
        out, offset = [], 0
        for g in grads:
            size = int(np.prod(g.shape))
            out.append(xp.reshape(total[offset:offset + size], g.shape) / weight)
            offset += size
        loss = total[-2] / weight
        alpha = ctx.info["dp_alpha"]
        if alpha > 0:
            params, mask = model.params, model.decay_mask
            out = [g + alpha * p if d else g for g, p, d in zip(out, params, mask)]
            loss = loss + l2_penalty([p for p, d in zip(params, mask) if d], alpha, xp=xp)
        ctx.info["dp_loss"] = loss
        return out

    def reported_loss(self, loss, ctx):
        return ctx.info.get("dp_loss", loss)

    def epoch_totals(self, totals: dict) -> dict:
        """Sum the epoch's host totals (correct predictions) over the ranks."""
        gathered = self.comm.allgather({k: float(v) for k, v in totals.items()})
        return {k: float(sum(g[k] for g in gathered)) for k in totals}


# ---------------------------------------------------------------------- fit's plan
class DataParallel:
    """How one ``fit(..., comm=...)`` call runs on several ranks (used by ``fit``).

    :func:`mlpx.trainer.fit_model` calls :meth:`sync_start` before it draws the
    validation split, :meth:`sync_state` once the model is compiled or resumed, then
    trains :meth:`shard` of its data with :meth:`hooks`; only :attr:`is_root` shows
    progress and writes checkpoints. :meth:`guard` wraps the whole call.

    Parameters
    ----------
    comm : Communicator or mpi4py communicator
    """

    def __init__(self, comm):
        self.comm = as_communicator(comm)
        self.hook: GradientAllReduce | None = None
        self._saved_noise: Any = None

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0 (the one that prints and writes files)."""
        return self.comm.rank == 0

    @contextlib.contextmanager
    def guard(self) -> Iterator["DataParallel"]:
        """Abort the whole job when this rank fails, naming the rank (no hang).

        Errors every rank raises together (:data:`COLLECTIVE_ERRORS`: a mismatch between
        the ranks' calls, a non-finite loss, decided from all-reduced values) propagate
        as usual on every rank.
        """
        try:
            yield self
        except COLLECTIVE_ERRORS:
            raise
        except BaseException as exc:
            if self.comm.size > 1:
                print(f"mlpx.distributed: rank {self.comm.rank} of {self.comm.size} "
                      f"failed with {type(exc).__name__}: {str(exc).rstrip('.')}; aborting "
                      "the job so that the other ranks do not wait for it.",
                      file=sys.stderr, flush=True)
                self.comm.abort(1)
            raise

    def check_same_call(self, **facts) -> None:
        """Raise the same ValueError on every rank when the ranks were called differently."""
        everyone = self.comm.allgather(facts)
        for key in facts:
            values = [f[key] for f in everyone]
            if any(v != values[0] for v in values):
                raise RankMismatchError(f"Every rank must call fit with the same data and "
                                        f"arguments; {key} differs: {values} (by rank).")

    def sync_start(self, model, *, n_samples: int) -> None:
        """Check the call agrees across ranks, then take rank 0's host random state."""
        self.check_same_call(n_samples=int(n_samples), n_features=int(model.n_features),
                             dtype=str(model.dtype), config=repr(model.get_config()))
        state = self.comm.bcast(model.train_rng.bit_generator.state)
        model.train_rng.bit_generator.state = state

    def sync_state(self, model) -> None:
        """Give every rank rank 0's weights and optimizer state."""
        state = model.state_
        host = None
        if self.is_root:
            host = {"params": [_backend.to_numpy(p) for p in state.params],
                    "opt_state": map_arrays(state.opt_state, _backend.to_numpy)}
        host = self.comm.bcast(host)
        backend = model.backend
        model.assign_params([_backend.to_device(p, backend=backend, dtype=model.dtype)
                             for p in host["params"]])
        state.opt_state = map_arrays(host["opt_state"],
                                     lambda a: _backend.to_device(np.array(a),
                                                                  backend=backend))

    def shard(self, data: DeviceData, model=None) -> ShardedData:
        """This rank's view of the training data (``model``: where read rows go)."""
        return ShardedData(data, rank=self.comm.rank, size=self.comm.size,
                           backend=None if model is None else model.backend,
                           dtype=None if model is None else model.dtype)

    # -- data that stay on disk ----------------------------------------------------------
    @staticmethod
    def row_source(X, model=None) -> RowSource | None:
        """``X`` as a :class:`RowSource` when it is one, or a 2-D memory map of features
        (token ids for an Embedding stay as they are), else None."""
        if isinstance(X, RowSource):
            return X
        if isinstance(X, np.memmap) and X.ndim == 2 and not (
                model is not None and model.takes_ids):
            return RowSource(X)
        return None

    @staticmethod
    def check_rows(model, source: RowSource, what: str = "X") -> RowSource:
        """The checks ``to_device_X`` makes, on a source's shape (nothing is read)."""
        if model.takes_ids:
            raise ValueError(f"{what} for a model whose first layer is an Embedding must "
                             "be token ids in memory, not a RowSource.")
        n, d = source.shape
        if n == 0 or d == 0:
            raise ValueError(f"{what} is empty (shape {source.shape}); it needs at least "
                             "one sample and one feature.")
        if model.built and d != model.n_features:
            raise ValueError(f"{what} has {d} features, but this model expects "
                             f"{model.n_features}.")
        return source

    @staticmethod
    def take_rows(model, source: RowSource, rows, what: str = "X"):
        """Rows ``rows`` of ``source`` on the model's device (the validation split: every
        rank reads the same rows, so a bad value raises the same error everywhere)."""
        X = source.read(rows).astype(model.dtype, copy=False)
        if not bool(np.all(np.isfinite(X))):
            raise SharedDataError(f"{what} contains NaN or infinity; clean or impute it "
                                  "first.")
        return _backend.to_device(X, backend=model.backend, dtype=model.dtype)

    def scan_rows(self, model, source: RowSource, what: str = "X") -> float:
        """Check every row is finite and return their sum (the data fingerprint).

        Each rank reads only its contiguous slice of the rows, a piece at a time; the
        counts and sums are gathered, so every rank takes the same decision.
        """
        lo, hi = shard_bounds(source.shape[0], self.comm.rank, self.comm.size)
        bad, total = 0, 0.0
        step = source.chunk_rows()
        for a in range(lo, hi, step):
            block = source.read(np.arange(a, min(a + step, hi))).astype(model.dtype,
                                                                         copy=False)
            bad += int(block.size - np.count_nonzero(np.isfinite(block)))
            total += float(np.sum(block, dtype=np.float64))
        everyone = self.comm.allgather((bad, total))
        if sum(b for b, _ in everyone):
            raise SharedDataError(f"{what} contains NaN or infinity; clean or impute it "
                                  "first.")
        return float(sum(t for _, t in everyone))

    def hooks(self, model, data: DeviceData) -> list:
        """The step hooks of this rank: one :class:`GradientAllReduce`."""
        # A per-rank dropout stream from the shared host state, drawn from a copy so
        # that the shared stream (the shuffle order) is the same as one process's.
        seed = int(copy.deepcopy(model.train_rng).integers(2**63))
        rank_rng = np.random.default_rng([seed, self.comm.rank])
        self._saved_noise = model.state_.noise_rng
        self.hook = GradientAllReduce(self.comm, model, host_weights=data.host_weights,
                                      noise_rng=_backend.noise_rng(model.backend,
                                                                   rank_rng))
        return [self.hook]

    def finish(self, model) -> None:
        """Put back the state's own dropout generator after training."""
        if self.hook is not None and model.state_ is not None:
            model.state_.noise_rng = self._saved_noise
