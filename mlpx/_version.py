"""The version of mlpx (one place, below every other module, so that any module may read it)."""

__version__ = "0.1.0"
