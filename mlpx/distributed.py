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
others never wait forever in an all-reduce.

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
import importlib
import sys
import time
from typing import Any, Iterator

import numpy as np

from . import _backend
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
    "as_communicator",
    "shard_bounds",
    "ShardedData",
    "GradientAllReduce",
    "DataParallel",
    "RankMismatchError",
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


#: Errors that every rank raises at the same point, decided from shared values: they
#: propagate as usual instead of aborting the job.
COLLECTIVE_ERRORS = (RankMismatchError, NonFiniteLossError)


# ---------------------------------------------------------------------- communicators
class Communicator:
    """What data-parallel training needs from a communication library.

    Attributes
    ----------
    rank : int
        This process's number, 0 to ``size - 1``.
    size : int
        Number of processes.
    """

    rank: int = 0
    size: int = 1

    def allreduce_sum(self, buf, *, backend):
        """Return the element-wise sum of ``buf`` (1-D, of ``backend``) over all ranks."""
        raise NotImplementedError

    def bcast(self, obj: Any) -> Any:
        """Return rank 0's ``obj`` (a picklable host object) on every rank."""
        raise NotImplementedError

    def allgather(self, obj: Any) -> list:
        """Return the list of every rank's ``obj`` (picklable host objects), by rank."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """End every process of the job (the others may be blocked in a collective)."""
        raise NotImplementedError


class MPICommunicator(Communicator):
    """A :class:`Communicator` over an mpi4py communicator (``MPI.COMM_WORLD``).

    The all-reduce runs on host memory: device buffers are copied to the host and
    back (one copy each way per step), which works with any MPI. NumPy buffers are
    reduced in place.
    """

    def __init__(self, comm):
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())

    def allreduce_sum(self, buf, *, backend):
        MPI = import_mpi()
        host = np.ascontiguousarray(_backend.to_numpy(buf))
        if not host.flags.writeable:
            host = host.copy()
        self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        return _backend.to_device(host, backend=backend)

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def allgather(self, obj):
        return list(self.comm.allgather(obj))

    def abort(self, code=1):
        self.comm.Abort(code)


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


class ShardedData(DeviceData):
    """The training data of one rank: every global batch, cut down to this rank's share.

    The trainer still walks the whole data set in the global order (``n`` is the global
    number of samples, the host weights are global); :meth:`batch` returns only the rows
    :func:`shard_bounds` gives this rank.
    """

    def __init__(self, data: DeviceData, *, rank: int, size: int):
        super().__init__(data.X, data.Y, data.labels, data.W, xp=data.xp)
        self.rank, self.size = rank, size

    def batch(self, perm, rows, start, stop):
        lo, hi = shard_bounds(stop - start, self.rank, self.size)
        return super().batch(perm, rows, start + lo, start + hi)


# ---------------------------------------------------------------------- the hook
class GradientAllReduce(StepHook):
    """Sums the gradients of every rank's share of a batch with one all-reduce.

    Before the step it turns the model's L2 off for the local gradient (it is added once,
    after the sum) and installs this rank's dropout generator. On the gradients it packs
    ``[w * g for every gradient] + [w * loss, w]`` (``w`` the share's weight: its
    samples, or the sum of their sample weights) into one flat buffer, all-reduces it,
    and returns ``sum / sum(w) + alpha * W``: the gradient one process computes on the
    whole batch. The batch loss it reports is the global one, so every rank records the
    same history and takes the same decisions (early stopping, non-finite checks).

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
        All-reduces made.
    """

    needs_gradients = True

    def __init__(self, comm: Communicator, model, *, host_weights=None, noise_rng=None):
        self.comm = comm
        self.model = model
        self.host_weights = host_weights
        self.noise_rng = noise_rng
        self.allreduce_seconds = 0.0
        self.steps = 0

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
        total = self.comm.allreduce_sum(buf, backend=backend)
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

    def shard(self, data: DeviceData) -> ShardedData:
        """This rank's view of the training data."""
        return ShardedData(data, rank=self.comm.rank, size=self.comm.size)

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
