"""unittest suite of the libalign Python binding (make check-py)."""
