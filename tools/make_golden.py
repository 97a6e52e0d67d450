"""Record the golden training runs of tests/golden_cases.py into tests/data/golden.npz.

Run from the repository root: ``python tools/make_golden.py``. Only ever run it to record
a deliberate, explained change of numerical behaviour (see tests/golden_cases.py).
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.golden_cases import run_all  # noqa: E402

if __name__ == "__main__":
    out = run_all()
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "golden.npz")
    np.savez_compressed(path, **out)
    print(f"{len(out)} arrays written to {os.path.normpath(path)}")
