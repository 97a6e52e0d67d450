"""``python -m mlpx``: the same command line as the ``mlpx`` console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
