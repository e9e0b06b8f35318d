"""blas_kernel.py — which OpenBLAS kernel this Python process runs, for the
PyTorch baselines (bench/torch_*.py) to report beside their figures."""


def blas_kernel():
    """The OpenBLAS config and kernel of the library mapped into this process."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({l.split()[-1] for l in f if "openblas" in l and l.split()[-1].startswith("/")})
        for lib in libs:
            h = ctypes.CDLL(lib)
            if hasattr(h, "openblas_get_corename"):
                h.openblas_get_corename.restype = ctypes.c_char_p
                h.openblas_get_config.restype = ctypes.c_char_p
                return "%s (%s kernels)" % (h.openblas_get_config().decode().split(" DYNAMIC")[0],
                                            h.openblas_get_corename().decode())
    except OSError:
        pass
    import torch
    return "torch BLAS: " + ("mkl" if torch.backends.mkl.is_available() else "unknown")
