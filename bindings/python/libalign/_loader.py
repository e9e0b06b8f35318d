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
not recognise recent Xeons and falls back to slow kernels ("Prescott" SSE3,
or "Haswell" AVX2 on an AVX-512 CPU). The remedy follows the same rule as the
C library's warning (lib/nn/blas.c): it asks what OpenBLAS picks by itself on
this machine (a short probe in a child process) and sets
``OPENBLAS_CORETYPE`` only when that choice is a slow fallback for the CPU, so
a good choice such as "Cooperlake" on AMD Zen 4 is left alone and Python runs
the same kernels as a C program. Set ``LIBALIGN_NO_BLAS_FIX=1`` to opt out.
"""
from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from typing import Callable, List, MutableMapping, Optional

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


def _cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset:
    try:
        with open(cpuinfo, "r", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[-1].split())
    except OSError:
        pass
    return frozenset()


def _cpu_has_avx512f(cpuinfo: str = "/proc/cpuinfo") -> bool:
    return "avx512f" in _cpu_flags(cpuinfo)


# The C rule (lib/nn/blas.c): kernel sets that use at most AVX2 are slow on an
# AVX-512 CPU; those below AVX2 are slow on an AVX2 CPU.
_PRE_AVX512 = frozenset({"prescott", "core2", "penryn", "dunnington", "nehalem", "sandybridge",
                         "haswell", "zen", "atom", "katmai", "coppermine", "northwood", "banias",
                         "generic"})
_PRE_AVX2 = _PRE_AVX512 - {"haswell", "zen"}


def blas_fix_for(core: Optional[str], flags: frozenset) -> Optional[str]:
    """The ``OPENBLAS_CORETYPE`` the C library would advise for OpenBLAS's
    own choice ``core`` on a CPU with these ``/proc/cpuinfo`` flags, or None
    when that choice is fine (or unknown)."""
    if not core:
        return None
    c = core.lower()
    if "avx512f" in flags and c in _PRE_AVX512:
        return "SkylakeX"
    if "avx2" in flags and c in _PRE_AVX2:
        return "Haswell"
    return None


_PROBE = """
import ctypes, sys
for cand in sys.argv[1:]:
    try:
        lib = ctypes.CDLL(cand)
    except OSError:
        continue
    f = lib.align_blas_info
    f.restype = ctypes.c_char_p
    print(f().decode("utf-8", "replace"))
    break
"""


def probe_blas_core() -> Optional[str]:
    """The kernel set OpenBLAS picks by itself on this machine, as
    libalign's ``align_blas_info()`` reports it in a child process started
    without ``OPENBLAS_CORETYPE`` (None if unknown: no OpenBLAS, no library,
    or the child failed). Costs one short-lived Python process."""
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env["OPENBLAS_NUM_THREADS"] = "1"
    try:
        r = subprocess.run([sys.executable, "-S", "-c", _PROBE] + candidates(), env=env,
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\((\S+) kernels\)", r.stdout)
    return m.group(1) if m else None


def _blas_already_loaded(maps: str = "/proc/self/maps") -> bool:
    try:
        with open(maps, "r", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return False
    return any(marker in text for marker in _BLAS_LIB_MARKERS)


def apply_blas_remedy(environ: Optional[MutableMapping[str, str]] = None,
                      cpuinfo: str = "/proc/cpuinfo",
                      maps: str = "/proc/self/maps",
                      probe: Optional[Callable[[], Optional[str]]] = None) -> str:
    """Sets ``OPENBLAS_CORETYPE`` where OpenBLAS by itself would run slow
    fallback kernels, by the C library's rule (:func:`blas_fix_for`).

    Returns what was done: ``"set"`` (the variable was set, to ``SkylakeX``
    or ``Haswell``), ``"opt-out"`` (``LIBALIGN_NO_BLAS_FIX`` is set to a
    non-empty value other than ``0``), ``"preset"`` (``OPENBLAS_CORETYPE``
    already set by the user), ``"no-avx512"`` (the CPU has neither AVX-512F
    nor AVX2: nothing faster to choose), ``"too-late"`` (a BLAS is already
    loaded in this process, so the variable would not be read), or
    ``"not-needed"`` (OpenBLAS's own choice, found by ``probe`` —
    :func:`probe_blas_core` by default — is fine or unknown).
    """
    global _blas_state
    env = os.environ if environ is None else environ
    flags = _cpu_flags(cpuinfo)
    if env.get("LIBALIGN_NO_BLAS_FIX", "") not in ("", "0"):
        state = "opt-out"
    elif env.get("OPENBLAS_CORETYPE"):
        state = "preset"
    elif "avx512f" not in flags and "avx2" not in flags:
        state = "no-avx512"
    elif _blas_already_loaded(maps):
        state = "too-late"
    else:
        fix = blas_fix_for((probe or probe_blas_core)(), flags)
        if fix:
            env["OPENBLAS_CORETYPE"] = fix  # os.environ also calls putenv()
            state = "set"
        else:
            state = "not-needed"
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
