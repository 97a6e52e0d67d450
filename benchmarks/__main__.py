"""``python -m benchmarks``: see :mod:`benchmarks.run` and ``benchmarks/README.md``."""

import os
import sys


def _early_threads(argv):
    """``--threads N`` must reach the BLAS and OpenMP pools before NumPy/torch load."""
    for i, a in enumerate(argv):
        value = None
        if a == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith("--threads="):
            value = a.split("=", 1)[1]
        if value is not None and value.isdigit():
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "MLPX_FAST_THREADS"):
                os.environ[var] = value
            if value == "1":  # XLA's CPU client (JAX): one thread for its Eigen products
                flags = os.environ.get("XLA_FLAGS", "")
                os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                           "intra_op_parallelism_threads=1").strip()


if __name__ == "__main__":
    _early_threads(sys.argv[1:])
    from .run import main

    sys.exit(main())
