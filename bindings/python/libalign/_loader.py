"""Layer 1 of the binding: find and load libalign's shared library.

Search order (docs/python.md, "Layers"):

1. the path in the environment variable ``LIBALIGN_LIBRARY``;
2. a copy next to this package (``libalign/libalign.so.0``), for wheels or
   vendored installs;
3. ``ctypes.CDLL("libalign.so.0")``: the SONAME, found by the dynamic loader
   (``LD_LIBRARY_PATH``, ``/etc/ld.so.cache``). The bare ``libalign.so`` is a
   development link and is never used.

After loading, ``align_version() >> 16`` must equal :data:`BINDING_MAJOR`;
a library of another major version has another ABI and is refused.

Before loading, the OpenBLAS kernel remedy is applied (see
:func:`apply_blas_remedy` and docs/python.md): Debian's OpenBLAS 0.3.21 does
not recognise recent Xeons and falls back to slow SSE3 ("Prescott") kernels.
If ``OPENBLAS_CORETYPE`` is unset, the CPU has AVX-512F and no BLAS is loaded
in the process yet, ``OPENBLAS_CORETYPE=SkylakeX`` is set in the
environment, where OpenBLAS reads it when it is loaded together with
libalign. Set ``LIBALIGN_NO_BLAS_FIX=1`` to opt out.
"""
from __future__ import annotations

import ctypes
import os
from typing import List, MutableMapping, Optional

__all__ = ["BINDING_MAJOR", "SONAME", "LibraryNotFound", "LibraryVersionMismatch",
           "apply_blas_remedy", "blas_remedy_state", "candidates", "load"]

#: The major version (ABI epoch) of align.h this binding mirrors.
BINDING_MAJOR = 0
#: The shared library's SONAME.
SONAME = "libalign.so.0"

_BLAS_LIB_MARKERS = ("libopenblas", "libblas.so", "libblis", "libmkl_rt")

#: What apply_blas_remedy() decided, for diagnostics ("set", "opt-out", ...).
_blas_state: str = "not run"


class LibraryNotFound(ImportError):
    """No usable libalign shared library was found."""


class LibraryVersionMismatch(ImportError):
    """The loaded library's major version differs from the binding's."""


def _cpu_has_avx512f(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo, "r", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split(":", 1)[-1].split()
    except OSError:
        return False
    return False


def _blas_already_loaded(maps: str = "/proc/self/maps") -> bool:
    try:
        with open(maps, "r", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    return any(marker in text for marker in _BLAS_LIB_MARKERS)


def apply_blas_remedy(environ: Optional[MutableMapping[str, str]] = None,
                      cpuinfo: str = "/proc/cpuinfo",
                      maps: str = "/proc/self/maps") -> str:
    """Select OpenBLAS's SkylakeX kernels where Debian's OpenBLAS would not.

    Returns what was done: ``"set"`` (the variable was set), ``"opt-out"``
    (``LIBALIGN_NO_BLAS_FIX`` is set to a non-empty value other than ``0``),
    ``"preset"`` (``OPENBLAS_CORETYPE`` already set by the user),
    ``"no-avx512"`` (the CPU lacks AVX-512F), or ``"too-late"`` (a BLAS is
    already loaded in this process, so the variable would not be read).
    """
    global _blas_state
    env = os.environ if environ is None else environ
    if env.get("LIBALIGN_NO_BLAS_FIX", "") not in ("", "0"):
        state = "opt-out"
    elif env.get("OPENBLAS_CORETYPE"):
        state = "preset"
    elif not _cpu_has_avx512f(cpuinfo):
        state = "no-avx512"
    elif _blas_already_loaded(maps):
        state = "too-late"
    else:
        env["OPENBLAS_CORETYPE"] = "SkylakeX"  # os.environ also calls putenv()
        state = "set"
    if environ is None:
        _blas_state = state
    return state


def blas_remedy_state() -> str:
    """What :func:`apply_blas_remedy` decided when the library was loaded."""
    return _blas_state


def candidates() -> List[str]:
    """The paths or names tried, in order."""
    out: List[str] = []
    env = os.environ.get("LIBALIGN_LIBRARY")
    if env:
        out.append(env)
    local = os.path.join(os.path.dirname(os.path.abspath(__file__)), SONAME)
    if os.path.exists(local):
        out.append(local)
    out.append(SONAME)
    return out


def load() -> ctypes.CDLL:
    """Applies the BLAS remedy, loads libalign and checks its major version."""
    apply_blas_remedy()
    errors: List[str] = []
    lib: Optional[ctypes.CDLL] = None
    env = os.environ.get("LIBALIGN_LIBRARY")
    for cand in candidates():
        try:
            lib = ctypes.CDLL(cand)
            break
        except OSError as e:
            errors.append(f"  {cand}: {e}")
            if env and cand == env:
                # An explicit choice that fails is an error, not a hint.
                raise LibraryNotFound(
                    f"LIBALIGN_LIBRARY={env!r} could not be loaded: {e}") from e
    if lib is None:
        raise LibraryNotFound("libalign shared library not found; tried:\n" + "\n".join(errors)
                              + "\nSet LIBALIGN_LIBRARY to the path of libalign.so.0.")
    try:
        fn = lib.align_version
    except AttributeError as e:
        raise LibraryNotFound(f"{lib._name} does not export align_version: not libalign") from e
    fn.argtypes = []
    fn.restype = ctypes.c_uint
    v = int(fn())
    if v >> 16 != BINDING_MAJOR:
        raise LibraryVersionMismatch(
            f"{lib._name} is libalign {v >> 16}.{(v >> 8) & 0xff}.{v & 0xff}; "
            f"this binding needs major version {BINDING_MAJOR}")
    return lib
