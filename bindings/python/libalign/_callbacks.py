"""Layer 3 of the binding: Python callables as C callbacks.

A C library cannot propagate a Python exception, and an exception escaping a
ctypes callback is printed and then *ignored* (the callback returns 0, which
libalign reads as "continue"). So every callback goes through a trampoline
that

* catches every exception (``BaseException``: ``KeyboardInterrupt`` too),
* stashes it for the calling thread,
* returns ``ALIGN_ECALLBACK`` to C, which stops the call cleanly,

and the low layer's ``errcheck`` (see ``_raw``) re-raises the stashed
exception, with its original traceback, once the C call has returned.

The ``CFUNCTYPE`` object must stay alive as long as C may call it: a
:class:`Callback` is stored on the Python object that registered it (the
trainer for ``on_step``, the dataset for a prompt source, the module for the
log handler) and dropped only after the C side can no longer call it.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

__all__ = ["Callback", "take_pending", "pending_count", "in_callback"]

# Codes from align.h, repeated here to avoid an import cycle with _raw (the
# constants test checks them against the header).
_ALIGN_ECALLBACK = -8

_lock = threading.Lock()
# thread ident -> exceptions raised by callbacks running on that thread
_pending: dict = {}
_tls = threading.local()


def in_callback() -> bool:
    """True while a trampoline runs on this thread (nested C calls made from
    inside a callback leave the outer call's stash alone)."""
    return getattr(_tls, "depth", 0) > 0


def _stash(exc: BaseException) -> None:
    with _lock:
        _pending.setdefault(threading.get_ident(), []).append(exc)


def take_pending() -> Optional[BaseException]:
    """Removes and returns the first exception stashed on this thread by a
    callback (later ones are chained to it as ``__context__``), or None."""
    if in_callback():
        return None
    with _lock:
        excs = _pending.pop(threading.get_ident(), None)
    if not excs:
        return None
    first = excs[0]
    # Chain further failures to the first so that none is lost silently.
    seen = {id(first)}
    tail = first
    for extra in excs[1:]:
        while tail.__context__ is not None and id(tail.__context__) not in seen:
            tail = tail.__context__
            seen.add(id(tail))
        if id(extra) not in seen:
            tail.__context__ = extra
            seen.add(id(extra))
            tail = extra
    return first


def pending_count() -> int:
    """Exceptions stashed on any thread and not yet re-raised (for tests)."""
    with _lock:
        return sum(len(v) for v in _pending.values())


class Callback:
    """A Python callable wrapped as a C function pointer of ``cfunctype``.

    ``adapter(fn, *c_args)`` converts the C arguments, calls ``fn`` and
    returns the C result (an ``int`` status, or None for ``void``). Any
    exception it raises is stashed and ``error_result`` is returned to C.
    The instance owns the ``CFUNCTYPE`` object: keep the instance alive while
    C holds the pointer (``.pointer``).
    """

    __slots__ = ("fn", "cfunctype", "pointer", "error_result", "_adapter", "calls", "__weakref__")

    def __init__(self, cfunctype: Any, fn: Callable[..., Any],
                 adapter: Callable[..., Any], error_result: Optional[int] = _ALIGN_ECALLBACK) -> None:
        if not callable(fn):
            raise TypeError(f"callback must be callable, not {type(fn).__name__}")
        self.fn = fn
        self.cfunctype = cfunctype
        self.error_result = error_result
        self._adapter = adapter
        self.calls = 0
        self.pointer = cfunctype(self._trampoline)

    def _trampoline(self, *args: Any) -> Any:
        _tls.depth = getattr(_tls, "depth", 0) + 1
        try:
            self.calls += 1
            result = self._adapter(self.fn, *args)
            if self.error_result is None:
                return None
            if result is None:
                return 0
            if isinstance(result, bool) or not isinstance(result, int):
                raise TypeError(f"callback {self.fn!r} returned {type(result).__name__}; "
                                "expected None or an int status")
            if not -2**31 <= result < 2**31:
                raise OverflowError(f"callback status {result} does not fit a C int")
            return result
        except BaseException as exc:  # noqa: B902 - every exception must stop here
            _stash(exc)
            return self.error_result
        finally:
            _tls.depth -= 1

    def __repr__(self) -> str:
        return f"<Callback {self.fn!r} calls={self.calls}>"
