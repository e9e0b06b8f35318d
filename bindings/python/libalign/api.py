"""Layer 4 of the binding: Pythonic classes over the raw mirror.

Every class owns one C handle and frees it in ``close()``, on leaving a
``with`` block, or (as a fallback) when it is garbage collected
(``weakref.finalize``). A call on a closed object raises :class:`ClosedError`
before anything reaches C, so no NULL or dangling handle is ever passed.

Borrowing (docs/conventions.md, "Handles and ownership"): an :class:`Optimizer` borrows its model, a trainer
borrows its model, tokenizer, dataset and optimizer. The borrower keeps the
Python objects alive, and closing a borrowed object while its borrower is
open only *marks* it closed: its C handle is freed when the last borrower is
freed (as ``sqlite3_close_v2`` does). So no order of ``close()`` calls or of
garbage collection can leave C with a dangling pointer.

Errors from C raise :class:`AlignError` subclasses (see ``_raw``); exceptions
raised by Python callbacks propagate out of the call that ran them.
"""
from __future__ import annotations

import ctypes
import enum
import json
import math
import os
import threading
import weakref
from ctypes import POINTER, byref, c_char, c_char_p, c_float, c_int32, c_size_t, c_uint8, c_void_p
from dataclasses import dataclass, field, fields
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union, overload)

from . import _callbacks, _raw

__all__ = [
    "ClosedError", "RecordKind", "Source", "FinishReason", "Schedule", "Truncation",
    "LogLevel", "Provenance", "ModelConfig", "ForwardOutput", "Generation", "StepStats",
    "ChatTemplate",
    "Model", "Tokenizer", "Dataset", "Optimizer", "Trainer", "SFTTrainer", "RewardTrainer",
    "DPOTrainer", "KTOTrainer", "DPOLoss", "RankingMode",
    "Journal", "FeedbackKind", "RequestStatus", "FeedbackRequest",
    "version", "version_string", "blas_info", "set_threads", "get_threads",
    "set_compute", "get_compute", "compute_info",
    "set_log_handler", "set_log_level", "live_handles",
]

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


class ClosedError(ValueError):
    """An operation on a closed (freed) libalign object."""


# ============================================================================
# enums
# ============================================================================


class RecordKind(enum.IntEnum):
    """Kind of a dataset record (``ALIGN_RECORD_*``)."""
    DEMO = _raw.ALIGN_RECORD_DEMO
    CHAT = _raw.ALIGN_RECORD_CHAT
    RANKING = _raw.ALIGN_RECORD_RANKING
    LABEL = _raw.ALIGN_RECORD_LABEL
    SCORE = _raw.ALIGN_RECORD_SCORE
    PROMPT = _raw.ALIGN_RECORD_PROMPT


class Source(enum.IntEnum):
    """Who produced a record (``ALIGN_SOURCE_*``)."""
    UNKNOWN = _raw.ALIGN_SOURCE_UNKNOWN
    HUMAN = _raw.ALIGN_SOURCE_HUMAN
    AI = _raw.ALIGN_SOURCE_AI
    PROGRAM = _raw.ALIGN_SOURCE_PROGRAM


class FinishReason(enum.IntEnum):
    """Why generation of one sequence stopped (``ALIGN_FINISH_*``)."""
    LENGTH = _raw.ALIGN_FINISH_LENGTH
    EOT = _raw.ALIGN_FINISH_EOT
    STOP = _raw.ALIGN_FINISH_STOP


class Schedule(enum.IntEnum):
    """Learning-rate schedule (``ALIGN_SCHEDULE_*``)."""
    CONSTANT = _raw.ALIGN_SCHEDULE_CONSTANT
    LINEAR = _raw.ALIGN_SCHEDULE_LINEAR
    COSINE = _raw.ALIGN_SCHEDULE_COSINE


class DPOLoss(enum.IntEnum):
    """Preference loss of :meth:`Trainer.dpo` (``ALIGN_DPO_*``)."""
    SIGMOID = _raw.ALIGN_DPO_SIGMOID
    ROBUST = _raw.ALIGN_DPO_ROBUST
    IPO = _raw.ALIGN_DPO_IPO
    HINGE = _raw.ALIGN_DPO_HINGE
    SIMPO = _raw.ALIGN_DPO_SIMPO
    ORPO = _raw.ALIGN_DPO_ORPO


class RankingMode(enum.IntEnum):
    """How :meth:`Trainer.dpo` uses rankings of K > 2 responses (``ALIGN_RANKING_*``)."""
    ALL_PAIRS = _raw.ALIGN_RANKING_ALL_PAIRS
    BEST_VS_REST = _raw.ALIGN_RANKING_BEST_VS_REST
    PLACKETT_LUCE = _raw.ALIGN_RANKING_PLACKETT_LUCE


class Truncation(enum.IntEnum):
    """What SFT does with too long examples (``ALIGN_TRUNCATE_*``)."""
    RIGHT = _raw.ALIGN_TRUNCATE_RIGHT
    LEFT = _raw.ALIGN_TRUNCATE_LEFT
    DROP = _raw.ALIGN_TRUNCATE_DROP


class LogLevel(enum.IntEnum):
    """Log levels (``ALIGN_LOG_*``)."""
    ERROR = _raw.ALIGN_LOG_ERROR
    WARN = _raw.ALIGN_LOG_WARN
    INFO = _raw.ALIGN_LOG_INFO
    DEBUG = _raw.ALIGN_LOG_DEBUG


# ============================================================================
# small helpers
# ============================================================================


def _text(value: Any, what: str) -> bytes:
    """A str (UTF-8 encoded) or bytes argument as bytes."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def _path(value: Any, what: str = "path") -> bytes:
    try:
        return os.fsencode(value)
    except TypeError:
        raise TypeError(f"{what} must be a str, bytes or os.PathLike, "
                        f"not {type(value).__name__}") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    return float(value)


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _string_array(items: Sequence[Any], what: str) -> "ctypes.Array[c_char_p]":
    arr = (c_char_p * max(len(items), 1))()
    for i, s in enumerate(items):
        arr[i] = _text(s, f"{what}[{i}]")
    return arr


# ============================================================================
# handle ownership
# ============================================================================

_live_lock = threading.RLock()
_live: Dict[int, "_HandleState"] = {}


class _HandleState:
    """Owns one C handle. Holds no reference to its Python wrapper, so the
    wrapper's finalizer can hold it. ``keep`` holds what C may still use
    while the handle lives (callback objects); ``borrowed`` the states of the
    handles this one borrows, released after it is freed."""

    __slots__ = ("kind", "ptr", "free_fn", "closed", "borrowers", "borrowed", "keep")

    def __init__(self, kind: str, ptr: ctypes.c_void_p, free_fn: Callable[[Any], None],
                 borrowed: Sequence["_HandleState"] = ()) -> None:
        self.kind = kind
        self.ptr: Optional[ctypes.c_void_p] = ptr
        self.free_fn = free_fn
        self.closed = False
        self.borrowers = 0
        self.keep: Dict[str, Any] = {}
        with _live_lock:
            for b in borrowed:
                b.borrowers += 1
            self.borrowed = tuple(borrowed)
            _live[id(self)] = self

    def close(self) -> None:
        with _live_lock:
            if self.closed:
                return
            self.closed = True
            if self.borrowers == 0:
                self._free()

    def _release(self) -> None:
        with _live_lock:
            self.borrowers -= 1
            if self.closed and self.borrowers == 0:
                self._free()

    def _free(self) -> None:
        ptr, self.ptr = self.ptr, None
        if ptr is not None and ptr.value:
            self.free_fn(ptr)
        self.keep.clear()
        _live.pop(id(self), None)
        borrowed, self.borrowed = self.borrowed, ()
        for b in borrowed:
            b._release()


def live_handles() -> Dict[str, int]:
    """C handles created through this module and not yet freed, by kind
    (``{"model": 1, ...}``); an object closed while borrowed counts until
    its borrower is freed. Empty when nothing leaks."""
    with _live_lock:
        out: Dict[str, int] = {}
        for st in _live.values():
            out[st.kind] = out.get(st.kind, 0) + 1
        return out


class _Owned:
    """Base of the classes that own a handle: context manager, ``close()``,
    ``closed``, and a ``weakref.finalize`` fallback."""

    _kind = "object"
    _free_fn: Callable[[Any], None]
    _state: _HandleState

    def _adopt(self, ptr: ctypes.c_void_p, borrowed: Sequence["_Owned"] = ()) -> None:
        self._state = _HandleState(self._kind, ptr, type(self)._free_fn,
                                   [b._state for b in borrowed])
        self._finalizer = weakref.finalize(self, self._state.close)

    @property
    def _h(self) -> Any:
        """The C handle; raises ClosedError once closed."""
        st = getattr(self, "_state", None)
        if st is None or st.closed or st.ptr is None:
            raise ClosedError(f"operation on a closed {type(self).__name__}")
        return st.ptr

    @property
    def closed(self) -> bool:
        """True after close() (the C handle may live on while borrowed)."""
        st = getattr(self, "_state", None)
        return st is None or st.closed

    def close(self) -> None:
        """Frees the C handle (deferred while another open object borrows
        it). Idempotent."""
        fin = getattr(self, "_finalizer", None)
        if fin is not None:
            fin()

    def __enter__(self) -> Any:
        self._h  # raises if already closed
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<libalign.{type(self).__name__} {'closed' if self.closed else 'open'}>"


# ============================================================================
# module-level functions
# ============================================================================


def version() -> Tuple[int, int, int]:
    """The loaded library's version as (major, minor, patch)."""
    v = _raw.align_version()
    return (v >> 16, (v >> 8) & 0xFF, v & 0xFF)


def version_string() -> str:
    """The loaded library's version, e.g. ``"0.3.1"``."""
    return _decode(_raw.align_version_string())


def blas_info() -> str:
    """Which BLAS and kernels the library uses."""
    return _decode(_raw.align_blas_info())


def set_compute(mode: str) -> None:
    """Precision of the matrix products: ``"fp32"`` (default) or ``"bf16"``
    (bf16 operands, fp32 accumulation and weights, through oneDNN). One
    process-wide setting; ``"bf16"`` raises AlignMisuseError where the library
    was built without oneDNN or the CPU lacks AVX512_BF16 / AMX-BF16 (the
    setting then stays ``"fp32"``)."""
    modes = {"fp32": _raw.ALIGN_COMPUTE_FP32, "bf16": _raw.ALIGN_COMPUTE_BF16}
    if mode not in modes:
        raise ValueError(f"compute mode must be 'fp32' or 'bf16', not {mode!r}")
    _raw.align_compute_set(modes[mode])


def get_compute() -> str:
    """The precision in force: ``"fp32"`` or ``"bf16"``."""
    return "bf16" if int(_raw.align_compute_get()) == _raw.ALIGN_COMPUTE_BF16 else "fp32"


def compute_info() -> str:
    """The mode in force and what bf16 would run on, or why it cannot."""
    return _decode(_raw.align_compute_info())


def set_threads(n: int) -> None:
    """Threads for the BLAS and the library's loops; ``n <= 0``: all CPUs."""
    _raw.align_threads_set(_int(n, "n"))


def get_threads() -> int:
    """The current thread count."""
    return int(_raw.align_threads_get())


_log_callback: Optional[_callbacks.Callback] = None


def _log_adapter(fn: Callable[[LogLevel, str], Any], level: int, message: Optional[bytes],
                 user_data: Any) -> None:
    try:
        lv: Any = LogLevel(level)
    except ValueError:
        lv = level
    fn(lv, _decode(message or b""))


def set_log_handler(fn: Optional[Callable[[LogLevel, str], Any]]) -> None:
    """Routes the library's log messages to ``fn(level, message)``; None
    restores the default (WARN and ERROR to stderr). Global: set it before
    creating objects. An exception raised by ``fn`` is re-raised after the
    library call that logged returns."""
    global _log_callback
    if fn is None:
        _raw.align_log_set(_raw.align_log_fn(), None)
        _log_callback = None
        return
    cb = _callbacks.Callback(_raw.align_log_fn, fn, _log_adapter, error_result=None)
    _raw.align_log_set(cb.pointer, None)
    _log_callback = cb  # C holds the pointer from now on


def set_log_level(level: int) -> None:
    """Drops messages above ``level`` (a :class:`LogLevel`; default WARN)."""
    _raw.align_log_set_level(_int(int(level), "level"))


# ============================================================================
# plain result types
# ============================================================================


@dataclass(frozen=True)
class Provenance:
    """Who produced a record, and when."""
    source: Source = Source.UNKNOWN
    annotator: Optional[str] = None
    timestamp: int = 0   #: seconds since the epoch; 0 = unknown

    def _to_c(self) -> _raw.align_provenance:
        pv = _raw.align_provenance()
        try:
            pv.source = int(Source(self.source))
        except ValueError:
            raise ValueError(f"unknown provenance source {self.source!r}") from None
        if self.annotator is not None:
            pv.annotator = _text(self.annotator, "annotator")
        pv.timestamp = _int(self.timestamp, "timestamp")
        return pv

    @classmethod
    def coerce(cls, value: Any) -> Optional["Provenance"]:
        """A Provenance from None, a Provenance, or a mapping with the keys
        ``source`` (a Source, its name such as ``"human"``, or its value),
        ``annotator`` and ``timestamp``."""
        if value is None or isinstance(value, Provenance):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"provenance must be a Provenance or a dict, "
                            f"not {type(value).__name__}")
        unknown = set(value) - {"source", "annotator", "timestamp"}
        if unknown:
            raise ValueError(f"unknown provenance fields: {sorted(unknown)}")
        src = value.get("source", Source.UNKNOWN)
        if isinstance(src, str):
            try:
                src = Source[src.upper()]
            except KeyError:
                raise ValueError(f"unknown provenance source {src!r}") from None
        return cls(Source(src), value.get("annotator"), value.get("timestamp", 0) or 0)


@dataclass(frozen=True)
class ModelConfig:
    """A model's configuration (``align_model_params``)."""
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    max_seq_len: int
    arch: int = _raw.ALIGN_ARCH_GPT2
    scalar_head: bool = False
    seed: int = 1234
    n_threads: int = 0
    #: Llama family (``arch=ALIGN_ARCH_LLAMA``; docs/architectures.md); GPT-2 ignores them
    n_kv_head: int = 0
    intermediate_size: int = 0
    rope_theta: float = 0.0
    norm_eps: float = 0.0
    untied_head: bool = False
    qkv_bias: bool = False


@dataclass
class ForwardOutput:
    """Outputs of :meth:`Model.forward`, one list per sequence, trimmed to
    its length: ``token_logprobs[i][t]`` is log p(tokens[i][t+1] | ..t)
    (length - 1 values); ``scalar[i][t]`` the scalar head at t; ``logits[i][t]``
    the vocabulary logits at t. Outputs not asked for are None."""
    token_logprobs: Optional[List[List[float]]]
    scalar: Optional[List[List[float]]] = None
    logits: Optional[List[List[List[float]]]] = None


@dataclass(frozen=True)
class Generation:
    """One generated continuation."""
    prompt: str
    text: str                   #: generated text without the prompt (undecodable bytes replaced)
    tokens: List[int]           #: generated token ids
    logprobs: List[float]       #: log-probability of each generated token
    finish_reason: FinishReason
    text_bytes: bytes = b""     #: the generated text exactly as bytes


@dataclass(frozen=True)
class StepStats:
    """Statistics of one optimiser step (``align_step_stats``)."""
    algorithm: int = 0
    step: int = 0
    epoch: int = 0
    tokens: int = 0
    sequences: int = 0
    loss: float = 0.0
    accuracy: float = 0.0
    learning_rate: float = 0.0
    grad_norm: float = 0.0
    tokens_per_sec: float = 0.0
    time_forward_ms: float = 0.0
    time_backward_ms: float = 0.0
    time_optimizer_ms: float = 0.0
    skipped: bool = False
    progress: float = 0.0
    #: the step's named metrics (``align_trainer_metrics``): "loss",
    #: "accuracy", "learning_rate", "grad_norm", "tokens", ... -> float
    metrics: Dict[str, float] = field(default_factory=dict)

    @classmethod
    def _from_c(cls, s: _raw.align_step_stats,
                metrics: Optional[Dict[str, float]] = None) -> "StepStats":
        kw: Dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "metrics":
                continue
            v = getattr(s, f.name)
            kw[f.name] = bool(v) if f.name == "skipped" else v
        return cls(metrics=dict(metrics or {}), **kw)


def _stats_from_pointer(p: Any, metrics: Optional[Dict[str, float]] = None) -> StepStats:
    """Copies a library-owned align_step_stats (valid only during a callback),
    reading no more than the prefix both sides know."""
    ours = _raw.align_step_stats()
    if p:
        theirs = p.contents.struct_size
        n = min(int(theirs), ctypes.sizeof(ours)) if theirs else ctypes.sizeof(ours)
        ctypes.memmove(byref(ours), p, n)
    return StepStats._from_c(ours, metrics)


# ============================================================================
# Tokenizer
# ============================================================================


@dataclass(frozen=True)
class ChatTemplate:
    """How conversations become tokens (``align_chat_template``): each message
    is ``<role prefix><content><end-of-turn>``. None means the library
    default, which is also SFT's (``"<|system|>\\n"``, ``"<|user|>\\n"``,
    ``"<|assistant|>\\n"``), so a model trained by :class:`SFTTrainer` with
    the same prefixes is prompted exactly as it was trained."""
    system_prefix: Optional[str] = None
    user_prefix: Optional[str] = None
    assistant_prefix: Optional[str] = None

    @classmethod
    def coerce(cls, value: Any) -> Optional["ChatTemplate"]:
        """A ChatTemplate from None, a ChatTemplate or a mapping of its fields."""
        if value is None or isinstance(value, ChatTemplate):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"template must be a ChatTemplate or a dict, not {type(value).__name__}")
        unknown = set(value) - {"system_prefix", "user_prefix", "assistant_prefix"}
        if unknown:
            raise ValueError(f"unknown chat template fields: {sorted(unknown)}")
        return cls(**value)

    def _to_c(self) -> _raw.align_chat_template:
        ct = _raw.align_chat_template.defaults()
        for name in ("system_prefix", "user_prefix", "assistant_prefix"):
            v = getattr(self, name)
            if v is not None:
                setattr(ct, name, _text(v, name))
        return ct


def _template_ptr(template: Any) -> Any:
    t = ChatTemplate.coerce(template)
    return None if t is None else byref(t._to_c())


def _is_conversation(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and \
        len(value) > 0 and all(isinstance(m, Mapping) for m in value)


def _conversation(messages: Any, what: str) -> Tuple[List[bytes], List[bytes]]:
    """Roles and contents of a list of ``{"role": ..., "content": ...}``."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"{what} must be a list of {{'role', 'content'}} dicts")
    roles, contents = [], []
    for j, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise TypeError(f"{what}[{j}] must be a dict with 'role' and 'content'")
        roles.append(_text(m["role"], f"{what}[{j}]['role']"))
        contents.append(_text(m["content"], f"{what}[{j}]['content']"))
    return roles, contents


class Tokenizer(_Owned):
    """Text to token ids and back: GPT-2 byte-level BPE, or bytes.

    ``Tokenizer(path)`` loads a Hugging Face ``tokenizer.json`` or a folder
    holding ``encoder.json`` and ``vocab.bpe``; see also :meth:`bytes` and
    :meth:`load_gpt2`.
    """

    _kind = "tokenizer"
    _free_fn = staticmethod(_raw.align_tokenizer_free)

    def __init__(self, path: PathLike) -> None:
        h = _raw.align_tokenizer_p()
        _raw.align_tokenizer_load(byref(h), _path(path))
        self._adopt(h)

    @classmethod
    def bytes(cls) -> "Tokenizer":
        """The byte tokenizer: ids 0..255 are bytes, 256 is end-of-text."""
        self = cls.__new__(cls)
        h = _raw.align_tokenizer_p()
        _raw.align_tokenizer_bytes(byref(h))
        self._adopt(h)
        return self

    @classmethod
    def load(cls, path: PathLike) -> "Tokenizer":
        """Same as ``Tokenizer(path)``."""
        return cls(path)

    @classmethod
    def load_gpt2(cls, encoder_json: PathLike, vocab_bpe: PathLike) -> "Tokenizer":
        """GPT-2's ``encoder.json`` and ``vocab.bpe``."""
        self = cls.__new__(cls)
        h = _raw.align_tokenizer_p()
        _raw.align_tokenizer_load_gpt2(byref(h), _path(encoder_json, "encoder_json"),
                                       _path(vocab_bpe, "vocab_bpe"))
        self._adopt(h)
        return self

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return int(_raw.align_tokenizer_vocab_size(self._h))

    @property
    def eot(self) -> int:
        """The end-of-text (end-of-turn) id."""
        return int(_raw.align_tokenizer_eot(self._h))

    def encode(self, text: Union[str, bytes], *, special: bool = False) -> List[int]:
        """Token ids of ``text``; with ``special`` special tokens such as
        ``<|endoftext|>`` in the text are recognised."""
        data = _text(text, "text")
        flags = _raw.ALIGN_TOKENIZE_SPECIAL if special else 0
        cap = len(data) + 8
        while True:
            ids = (c_int32 * cap)()
            n = c_size_t(0)
            try:
                _raw.align_tokenize(self._h, data, len(data), flags, ids, cap, byref(n))
            except _raw.AlignRangeError:
                if n.value <= cap:
                    raise
                cap = n.value
                continue
            return ids[:n.value]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes ``ids`` stand for."""
        lst = [_int(i, "token id") for i in ids]
        arr = (c_int32 * max(len(lst), 1))(*lst)
        cap = 4 * len(lst) + 16
        while True:
            buf = (c_char * cap)()
            n = c_size_t(0)
            try:
                _raw.align_detokenize(self._h, arr, len(lst), buf, cap, byref(n))
            except _raw.AlignRangeError:
                if n.value < cap:
                    raise
                cap = n.value + 1
                continue
            return buf.raw[:n.value]

    def decode(self, ids: Iterable[int]) -> str:
        """The text ``ids`` stand for (invalid UTF-8 replaced by U+FFFD)."""
        return _decode(self.decode_bytes(ids))

    def encode_chat(self, messages: Sequence[Mapping[str, Any]], *, template: Any = None,
                    generation_prompt: bool = False,
                    with_mask: bool = False) -> Union[List[int], Tuple[List[int], List[int]]]:
        """Token ids of a conversation (a list of ``{"role", "content"}``
        dicts) exactly as SFT trains on it (``align_chat_tokenize``). With
        ``generation_prompt`` the ids end with the assistant prefix: the
        prompt for the assistant's reply. With ``with_mask`` returns
        ``(ids, mask)``, ``mask[i] == 1`` where ``ids[i]`` is a completion
        token (an assistant content or its end-of-turn)."""
        roles, contents = _conversation(messages, "messages")
        ra, ca = _string_array(roles, "roles"), _string_array(contents, "contents")
        tp = _template_ptr(template)
        flags = _raw.ALIGN_CHAT_GENERATION_PROMPT if generation_prompt else 0
        cap = sum(len(r) + len(c) for r, c in zip(roles, contents)) + 16 * len(roles) + 64
        while True:
            ids = (c_int32 * cap)()
            mask = (c_uint8 * cap)()
            n = c_size_t(0)
            try:
                _raw.align_chat_tokenize(self._h, tp, ra, ca, len(roles), flags, ids, mask, cap,
                                         byref(n))
            except _raw.AlignRangeError:
                if n.value <= cap:
                    raise
                cap = n.value
                continue
            out = ids[:n.value]
            return (out, mask[:n.value]) if with_mask else out


# ============================================================================
# Model
# ============================================================================


class Model(_Owned):
    """A decoder-only transformer (``align_model``): GPT-2, or the Llama
    family with ``arch="llama"`` (docs/architectures.md).

    ``Model(n_layer=2, n_head=2, n_embd=32, vocab_size=257, max_seq_len=64)``
    creates a randomly initialised model; unspecified settings take the
    library's defaults. :meth:`load` reads safetensors weights and Hugging
    Face folders (GPT-2, Llama, Qwen2, Mistral).
    """

    _kind = "model"
    _free_fn = staticmethod(_raw.align_model_free)

    def __init__(self, *, n_layer: Optional[int] = None, n_head: Optional[int] = None,
                 n_embd: Optional[int] = None, vocab_size: Optional[int] = None,
                 max_seq_len: Optional[int] = None, scalar_head: bool = False,
                 seed: Optional[int] = None, n_threads: Optional[int] = None,
                 arch: Union[int, str] = _raw.ALIGN_ARCH_GPT2, n_kv_head: Optional[int] = None,
                 intermediate_size: Optional[int] = None, rope_theta: Optional[float] = None,
                 norm_eps: Optional[float] = None, untied_head: bool = False,
                 qkv_bias: bool = False) -> None:
        p = self._params(scalar_head, seed, n_threads)
        for name, v in (("n_layer", n_layer), ("n_head", n_head), ("n_embd", n_embd),
                        ("vocab_size", vocab_size), ("max_seq_len", max_seq_len),
                        ("n_kv_head", n_kv_head), ("intermediate_size", intermediate_size)):
            if v is not None:
                setattr(p, name, _int(v, name))
        for name, f in (("rope_theta", rope_theta), ("norm_eps", norm_eps)):
            if f is not None:
                setattr(p, name, float(f))
        if untied_head:
            p.flags |= _raw.ALIGN_MODEL_UNTIED_HEAD
        if qkv_bias:
            p.flags |= _raw.ALIGN_MODEL_QKV_BIAS
        if isinstance(arch, str):  # "gpt2" or "llama"
            names = {"gpt2": _raw.ALIGN_ARCH_GPT2, "llama": _raw.ALIGN_ARCH_LLAMA}
            if arch not in names:
                raise ValueError(f"unknown architecture {arch!r} (gpt2, llama)")
            arch = names[arch]
        p.arch = _int(arch, "arch")
        h = _raw.align_model_p()
        _raw.align_model_create(byref(h), byref(p))
        self._frozen = False
        self._last_shape: Optional[Tuple[int, int, List[int]]] = None
        self._adopt(h)

    @staticmethod
    def _params(scalar_head: bool, seed: Optional[int],
                n_threads: Optional[int]) -> _raw.align_model_params:
        p = _raw.align_model_params.defaults()
        if scalar_head:
            p.flags |= _raw.ALIGN_MODEL_SCALAR_HEAD
        if seed is not None:
            p.seed = _int(seed, "seed")
        if n_threads is not None:
            p.n_threads = _int(n_threads, "n_threads")
        return p

    @classmethod
    def _wrap(cls, h: _raw.align_model_p, frozen: bool) -> "Model":
        self = cls.__new__(cls)
        self._frozen = frozen
        self._last_shape = None
        self._adopt(h)
        return self

    @classmethod
    def load(cls, path: PathLike, *, scalar_head: bool = False, seed: Optional[int] = None,
             n_threads: Optional[int] = None) -> "Model":
        """Loads safetensors weights (Hugging Face GPT-2 names); the
        configuration comes from the file. ``scalar_head`` adds a fresh
        scalar head if the file has none."""
        p = cls._params(scalar_head, seed, n_threads)
        h = _raw.align_model_p()
        _raw.align_model_load(byref(h), _path(path), byref(p))
        return cls._wrap(h, False)

    def save(self, path: PathLike, *, hf_sequence_classification: bool = False,
             bf16: bool = False) -> None:
        """Writes the weights as safetensors, atomically. A folder path (an
        existing folder, or one ending in "/") gets model.safetensors and a
        Hugging Face config.json. ``hf_sequence_classification=True`` writes
        transformers' GPT2ForSequenceClassification layout (needs a scalar
        head). ``bf16=True`` stores the weights as bfloat16."""
        flags = _raw.ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION if hf_sequence_classification else 0
        if bf16:
            flags |= _raw.ALIGN_SAVE_BF16
        _raw.align_model_save_ex(self._h, _path(path), flags)

    def clone(self, *, frozen: bool = False, adapters: bool = True) -> "Model":
        """A copy; ``frozen=True`` makes a forward-only copy (a reference
        model) without gradient or optimizer memory. ``adapters=False``
        leaves LoRA adapters out: ``clone(frozen=True, adapters=False)`` of a
        model with adapters is the "adapters off" reference and shares the
        base weights (no copy)."""
        h = _raw.align_model_p()
        flags = (_raw.ALIGN_FROZEN if frozen else 0) | (0 if adapters else _raw.ALIGN_CLONE_NO_ADAPTERS)
        _raw.align_model_clone(byref(h), self._h, flags)
        return Model._wrap(h, bool(frozen))

    # ---- LoRA adapters (docs/lora.md) ----
    def lora_attach(self, *, r: int = 8, alpha: float = 16.0, targets: Union[str, Sequence[str], None] = None,
                    seed: int = 0, base_model_name_or_path: Optional[str] = None) -> None:
        """Attaches fresh LoRA adapters of rank ``r`` (scaling alpha / r) on
        ``targets`` (GPT-2: "c_attn", "c_proj", "attn.c_proj", "mlp.c_proj",
        "c_fc", "all-linear"; aliases "o", "up", "down"; Llama: "q_proj",
        "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
        "all-linear"; aliases "q", "k", "v", "o", "gate", "up", "down"; None:
        the architecture's default as PEFT's, GPT-2 "c_attn", Llama "q_proj,v_proj").
        Only the adapters
        train from then on: create the Optimizer after attaching."""
        p = _raw.align_lora_params.defaults()
        p.r = r
        p.alpha = alpha
        tb = None if targets is None else (targets if isinstance(targets, str) else ",".join(targets)).encode()
        p.targets = tb
        p.seed = seed
        nb = base_model_name_or_path.encode() if base_model_name_or_path is not None else None
        p.base_model_name_or_path = nb
        _raw.align_model_lora_attach(self._h, byref(p))

    def lora_enable(self, on: bool = True) -> None:
        """Switches the adapters on or off (off: the base model)."""
        _raw.align_model_lora_enable(self._h, 1 if on else 0)

    @property
    def lora_num_params(self) -> int:
        """Adapter parameters (0 without adapters)."""
        return int(_raw.align_model_lora_num_params(self._h))

    def lora_save(self, folder: PathLike) -> None:
        """Writes the adapters in PEFT's layout (adapter_model.safetensors
        and adapter_config.json)."""
        _raw.align_model_lora_save(self._h, _path(folder))

    def lora_load(self, folder: PathLike) -> None:
        """Reads a PEFT LoRA folder: attaches its adapters, or overwrites the
        model's own of the same rank and targets."""
        _raw.align_model_lora_load(self._h, _path(folder))

    def lora_merge(self) -> None:
        """Folds the adapters into the base weights and removes them."""
        _raw.align_model_lora_merge(self._h)

    @property
    def frozen(self) -> bool:
        """True for a forward-only clone."""
        return self._frozen

    @property
    def config(self) -> ModelConfig:
        """The model's configuration."""
        p = _raw.align_model_params()
        _raw.align_model_config(self._h, byref(p))
        return ModelConfig(n_layer=p.n_layer, n_head=p.n_head, n_embd=p.n_embd,
                           vocab_size=p.vocab_size, max_seq_len=p.max_seq_len, arch=p.arch,
                           scalar_head=bool(p.flags & _raw.ALIGN_MODEL_SCALAR_HEAD),
                           seed=p.seed, n_threads=p.n_threads, n_kv_head=p.n_kv_head,
                           intermediate_size=p.intermediate_size, rope_theta=p.rope_theta,
                           norm_eps=p.norm_eps,
                           untied_head=bool(p.flags & _raw.ALIGN_MODEL_UNTIED_HEAD),
                           qkv_bias=bool(p.flags & _raw.ALIGN_MODEL_QKV_BIAS))

    @property
    def num_params(self) -> int:
        """Parameters, counting the tied LM head once."""
        return int(_raw.align_model_num_params(self._h))

    def forward(self, tokens: Sequence[Sequence[int]], *, scalar: bool = False,
                logits: bool = False, token_logprobs: bool = True) -> ForwardOutput:
        """Runs the model over sequences of token ids (each of its own
        length >= 1). On a trainable model the activations are kept for
        :meth:`backward`."""
        h = self._h
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
            raise TypeError("tokens must be a sequence of sequences of ints")
        seqs = [list(s) for s in tokens]
        if not seqs:
            raise ValueError("forward needs at least one sequence")
        lengths = [len(s) for s in seqs]
        if min(lengths) < 1:
            raise ValueError("every sequence needs at least one token")
        n, T = len(seqs), max(lengths)
        flat = (c_int32 * (n * T))()
        for i, s in enumerate(seqs):
            for t, tok in enumerate(s):
                flat[i * T + t] = _int(tok, "token id")
        lens = (c_int32 * n)(*lengths)
        V = self.config.vocab_size if logits else 0
        lp = (c_float * (n * max(T - 1, 1)))() if token_logprobs else None
        sc = (c_float * (n * T))() if scalar else None
        lg = (c_float * (n * T * V))() if logits else None
        _raw.align_model_forward(h, flat, lens, n, T, lp, sc, lg)
        self._last_shape = (n, T, lengths)
        out = ForwardOutput(token_logprobs=None)
        if lp is not None:
            out.token_logprobs = [lp[i * (T - 1): i * (T - 1) + lengths[i] - 1] for i in range(n)]
        if sc is not None:
            out.scalar = [sc[i * T: i * T + lengths[i]] for i in range(n)]
        if lg is not None:
            out.logits = [[lg[(i * T + t) * V:(i * T + t + 1) * V] for t in range(lengths[i])]
                          for i in range(n)]
        return out

    def backward(self, d_token_logprobs: Optional[Sequence[Sequence[float]]] = None,
                 d_scalar: Optional[Sequence[Sequence[float]]] = None) -> None:
        """Back-propagates from the last :meth:`forward`: gradients of the
        loss with respect to each sequence's token log-probs (length - 1
        values each) and scalar outputs (length values). They are added to
        the model's gradients (see :meth:`zero_grad`, :meth:`Optimizer.step`)."""
        h = self._h
        if self._last_shape is None:
            raise RuntimeError("backward() needs a forward() on this model first")
        n, T, lengths = self._last_shape

        def pack(rows: Optional[Sequence[Sequence[float]]], width: int, extra: int,
                 what: str) -> Any:
            if rows is None:
                return None
            if len(rows) != n:
                raise ValueError(f"{what}: {len(rows)} rows for {n} sequences")
            arr = (c_float * (n * max(width, 1)))()
            for i, row in enumerate(rows):
                if len(row) != lengths[i] + extra:
                    raise ValueError(f"{what}[{i}]: {len(row)} values, expected "
                                     f"{lengths[i] + extra}")
                for t, v in enumerate(row):
                    arr[i * width + t] = _number(v, what)
            return arr

        _raw.align_model_backward(h, pack(d_token_logprobs, T - 1, -1, "d_token_logprobs"),
                                  pack(d_scalar, T, 0, "d_scalar"))

    def zero_grad(self) -> None:
        """Zeroes the accumulated gradients."""
        _raw.align_model_zero_grad(self._h)

    @overload
    def generate(self, tokenizer: "Tokenizer", prompts: str, **kw: Any) -> Generation: ...
    @overload
    def generate(self, tokenizer: "Tokenizer", prompts: Sequence[str],
                 **kw: Any) -> List[Generation]: ...
    @overload
    def generate(self, tokenizer: "Tokenizer", *, messages: Any, **kw: Any) -> Any: ...

    def generate(self, tokenizer: "Tokenizer", prompts: Union[str, Sequence[str], None] = None, *,
                 messages: Any = None, prompt_tokens: Any = None, template: Any = None,
                 max_new_tokens: Optional[int] = None, temperature: Optional[float] = None,
                 top_k: Optional[int] = None, top_p: Optional[float] = None,
                 seed: Optional[int] = None, stop: Sequence[str] = (),
                 ignore_eot: bool = False, special: bool = False) -> Any:
        """Samples continuations of one prompt (returns a :class:`Generation`)
        or of a list of prompts in one batch (returns a list). Unspecified
        settings take the library defaults (64 new tokens, temperature 1,
        no top-k/top-p, seed 1234); ``temperature=0`` is greedy; generation
        stops at end-of-text (unless ``ignore_eot``: fixed-length samples) or
        at any of the ``stop`` strings.

        The prompts are given in exactly one of three ways:

        * ``prompts``: text (``special=True`` lets ``"<|endoftext|>"`` in it be
          the end-of-text token);
        * ``messages``: a conversation, a list of ``{"role", "content"}``
          dicts (one result), or a list of conversations (a list of results),
          rendered by the chat ``template`` (a :class:`ChatTemplate` or a dict
          of its fields; default: SFT's) followed by the assistant prefix, as
          the model saw them in SFT; the reply ends at the end-of-turn token;
        * ``prompt_tokens``: token ids, a list of ints (one result) or a list
          of lists.

        ``Generation.prompt`` is the prompt text; for messages and token ids,
        the decoded prompt tokens."""
        h = self._h
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a Tokenizer, not {type(tokenizer).__name__}")
        given = [k for k, v in (("prompts", prompts), ("messages", messages),
                                ("prompt_tokens", prompt_tokens)) if v is not None]
        if len(given) != 1:
            raise TypeError("give exactly one of prompts, messages and prompt_tokens "
                            f"(got {', '.join(given) if given else 'none'})")
        if template is not None and messages is None:
            raise TypeError("template applies to messages only")
        p = _raw.align_generate_params.defaults()
        if max_new_tokens is not None:
            p.max_new_tokens = _int(max_new_tokens, "max_new_tokens")
        if temperature is not None:
            p.temperature = _number(temperature, "temperature")
        if top_k is not None:
            p.top_k = _int(top_k, "top_k")
        if top_p is not None:
            p.top_p = _number(top_p, "top_p")
        if seed is not None:
            p.seed = _int(seed, "seed")
        if ignore_eot:
            p.flags |= _raw.ALIGN_GENERATE_IGNORE_EOT
        if special:
            p.flags |= _raw.ALIGN_GENERATE_SPECIAL
        if isinstance(stop, (str, bytes)):
            stop = [stop]
        stops = list(stop)
        stop_arr = _string_array(stops, "stop") if stops else None
        if stop_arr is not None:
            p.stop = ctypes.cast(stop_arr, POINTER(c_char_p))
            p.n_stop = len(stops)
        g = _raw.align_generation_p()
        plist: List[Any]
        if prompts is not None:
            single = isinstance(prompts, (str, bytes))
            plist = [prompts] if single else list(prompts)
            if not plist:
                return []
            parr = _string_array(plist, "prompts")
            _raw.align_generate(h, tokenizer._h, parr, len(plist), byref(p), byref(g))
        elif messages is not None:
            single = _is_conversation(messages)
            convs = [messages] if single else list(messages)
            if not convs:
                return []
            roles: List[bytes] = []
            contents: List[bytes] = []
            counts = []
            for i, conv in enumerate(convs):
                r, c = _conversation(conv, f"messages[{i}]" if not single else "messages")
                roles += r
                contents += c
                counts.append(len(r))
            ra, ca = _string_array(roles, "roles"), _string_array(contents, "contents")
            na = (c_int32 * len(counts))(*counts)
            tp = _template_ptr(template)
            plist = [tokenizer.decode(tokenizer.encode_chat(conv, template=template,
                                                            generation_prompt=True))
                     for conv in convs]
            _raw.align_generate_chat(h, tokenizer._h, tp, ra, ca, na, len(convs), byref(p), byref(g))
        else:
            if isinstance(prompt_tokens, (str, bytes)) or not isinstance(prompt_tokens, Sequence):
                raise TypeError("prompt_tokens must be a list of ints or a list of lists of ints")
            single = len(prompt_tokens) > 0 and all(isinstance(x, int) for x in prompt_tokens)
            seqs = [prompt_tokens] if single else [list(x) for x in prompt_tokens]
            if not seqs:
                return []
            flat = [_int(v, "prompt token") for q in seqs for v in q]
            arr = (c_int32 * max(len(flat), 1))(*flat)
            la = (c_int32 * len(seqs))(*[len(q) for q in seqs])
            _raw.align_generate_tokens(h, tokenizer._h, arr, la, len(seqs), byref(p), byref(g))
            plist = [tokenizer.decode(q) for q in seqs]
        results = _collect_generation(g, plist)
        return results[0] if single else results


def _collect_generation(g: Any, plist: List[Any]) -> List[Generation]:
    """The results of a generation handle, which it frees."""
    state = _HandleState("generation", g, _raw.align_generation_free)
    try:
        results = []
        count = _raw.align_generation_count(g)
        for i in range(count):
            ln = c_size_t(0)
            ptr = _raw.align_generation_text(g, i, byref(ln))
            data = ctypes.string_at(ptr, ln.value)
            nt = c_int32(0)
            tp = _raw.align_generation_tokens(g, i, byref(nt))
            toks = tp[:nt.value] if nt.value else []
            nl = c_int32(0)
            lpp = _raw.align_generation_logprobs(g, i, byref(nl))
            lps = lpp[:nl.value] if nl.value else []
            reason = _raw.align_generation_finish_reason(g, i)
            pr = plist[i]
            results.append(Generation(
                prompt=pr if isinstance(pr, str) else _decode(pr), text=_decode(data),
                tokens=list(toks), logprobs=list(lps), finish_reason=FinishReason(reason),
                text_bytes=data))
    finally:
        state.close()
    return results


# ============================================================================
# Optimizer
# ============================================================================


class Optimizer(_Owned):
    """AdamW with a learning-rate schedule and clipping, bound to (and
    borrowing) a trainable model.

    Keyword arguments are the fields of ``align_optimizer_params``
    (``learning_rate``, ``beta1``, ``beta2``, ``eps``, ``weight_decay``,
    ``max_grad_norm``, ``schedule``, ``warmup_steps``, ``total_steps``,
    ``min_lr_ratio``); unspecified ones take the library defaults.
    """

    _kind = "optimizer"
    _free_fn = staticmethod(_raw.align_optimizer_free)
    _FIELDS = {"learning_rate": float, "beta1": float, "beta2": float, "eps": float,
               "weight_decay": float, "max_grad_norm": float, "schedule": int,
               "warmup_steps": int, "total_steps": int, "min_lr_ratio": float}

    def __init__(self, model: Model, **params: Any) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be a Model, not {type(model).__name__}")
        p = _raw.align_optimizer_params.defaults()
        for k, v in params.items():
            kind = self._FIELDS.get(k)
            if kind is None:
                raise TypeError(f"unknown optimizer parameter {k!r}; "
                                f"expected one of {sorted(self._FIELDS)}")
            setattr(p, k, _int(int(v) if isinstance(v, enum.IntEnum) else v, k)
                    if kind is int else _number(v, k))
        h = _raw.align_optimizer_p()
        _raw.align_optimizer_create(byref(h), model._h, byref(p))
        self.model = model
        self._adopt(h, borrowed=[model])

    def step(self) -> float:
        """Clips, applies one AdamW update, zeroes the gradients; returns
        the gradient norm before clipping. Raises AlignNonFiniteError (no
        update made) if a gradient is not finite."""
        gn = c_float(0.0)
        _raw.align_optimizer_step(self._h, byref(gn))
        return gn.value

    @property
    def lr(self) -> float:
        """The learning rate the next step will use."""
        return float(_raw.align_optimizer_lr(self._h))

    @property
    def steps_done(self) -> int:
        """Updates applied so far."""
        return int(_raw.align_optimizer_steps_done(self._h))

    def save(self, path: PathLike) -> None:
        """Moments and step counter as safetensors (atomic write)."""
        _raw.align_optimizer_save(self._h, _path(path))

    def load(self, path: PathLike) -> None:
        """Restores what :meth:`save` wrote."""
        _raw.align_optimizer_load(self._h, _path(path))


# ============================================================================
# Dataset
# ============================================================================

Record = Mapping[str, Any]
PromptSource = Union[Callable[[], Union[None, str, Iterable[str]]], Iterable[str]]


def _make_source_adapter(dataset_ref: Any) -> Callable[..., int]:
    """The C callback of a data source: the Python source returns a prompt
    (str), a record (dict, as for :meth:`Dataset.add`), a list of those, or
    None / [] when there are no more."""
    def adapter(fn: Callable[[], Any], sink: Any, user_data: Any) -> int:
        out = fn()
        if out is None:
            return _raw.ALIGN_DONE
        items = [out] if isinstance(out, (str, bytes, Mapping)) else list(out)
        if not items:
            return _raw.ALIGN_DONE
        s = _raw.align_text_sink_p(sink)
        for item in items:
            if isinstance(item, Mapping):
                ds = dataset_ref()
                if ds is None or not _raw.align_text_sink_dataset(s):
                    raise RuntimeError("the dataset of this source is gone")
                ds.add(item)
            else:
                data = _text(item, "prompt")
                _raw.align_text_sink_add(s, data, len(data))
        return _raw.ALIGN_OK
    return adapter


class Dataset(_Owned):
    """Records of every kind of feedback, each with its provenance.

    ``Dataset(records)`` adds a list of dicts in the JSONL field names:

    ============================================  ===========
    fields                                        kind
    ============================================  ===========
    ``prompt``, ``completion``                    demonstration
    ``messages`` (``[{"role", "content"}...]``)   chat
    ``prompt``, ``chosen``, ``rejected``          preference (a ranking of two)
    ``prompt``, ``responses``, ``ranking``        K-way ranking (``ranking[i]`` is
                                                  the place of ``responses[i]``, 0 = best)
    ``prompt``, ``response``, ``label``           good (true) / bad (false) label
    ``prompt``, ``response``, ``score``           scalar score
    ``prompt``                                    bare prompt
    ============================================  ===========

    plus optional provenance: ``source`` (``"human"``, ``"ai"``,
    ``"program"``), ``annotator``, ``timestamp``.
    """

    _kind = "dataset"
    _free_fn = staticmethod(_raw.align_dataset_free)
    _PROVENANCE_KEYS = ("source", "annotator", "timestamp")

    def __init__(self, records: Optional[Iterable[Record]] = None) -> None:
        h = _raw.align_dataset_p()
        _raw.align_dataset_create(byref(h))
        self._adopt(h)
        if records is not None:
            self.extend(records)

    @classmethod
    def from_jsonl(cls, path: PathLike, *, lenient: bool = False) -> "Dataset":
        """A dataset holding the records of a JSONL file."""
        self = cls()
        try:
            self.load_jsonl(path, lenient=lenient)
        except BaseException:
            self.close()
            raise
        return self

    def load_jsonl(self, path: PathLike, *, lenient: bool = False) -> int:
        """Appends the records of a JSONL file; returns how many were added.
        A bad line raises AlignFormatError ("path:line: what is wrong"),
        keeping the records before it; ``lenient`` skips bad lines instead
        (see :attr:`skipped`). A missing file raises FileNotFoundError."""
        before = len(self)
        _raw.align_dataset_load_jsonl(self._h, _path(path), _raw.ALIGN_LENIENT if lenient else 0)
        return len(self) - before

    def save_jsonl(self, path: PathLike) -> None:
        """Writes every record (with provenance) as JSONL, atomically."""
        _raw.align_dataset_save_jsonl(self._h, _path(path))

    @property
    def skipped(self) -> int:
        """Bad lines skipped by lenient loads."""
        return int(_raw.align_dataset_skipped(self._h))

    def __len__(self) -> int:
        return int(_raw.align_dataset_size(self._h))

    def _index(self, i: int) -> int:
        i = _int(i, "index")
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"dataset index out of range ({n} records)")
        return i

    def kind(self, i: int) -> RecordKind:
        """The kind of record ``i``."""
        return RecordKind(_raw.align_dataset_record_kind(self._h, self._index(i)))

    def __getitem__(self, i: int) -> Dict[str, Any]:
        """Record ``i`` as a dict in the JSONL form."""
        h = self._h
        out = c_void_p()
        _raw.align_dataset_record_json(h, self._index(i), byref(out))
        try:
            text = ctypes.string_at(out.value)
        finally:
            _raw.align_free(out)
        return json.loads(text.decode("utf-8"))

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        for i in range(len(self)):
            yield self[i]

    # ---- adding records ---------------------------------------------------------

    @staticmethod
    def _pv(provenance: Any) -> Any:
        pv = Provenance.coerce(provenance)
        return byref(pv._to_c()) if pv is not None else None

    def add(self, record: Record, provenance: Any = None) -> None:
        """Adds one record given as a dict in the JSONL field names (see the
        class docstring). Raises ValueError for an unknown shape and
        TypeError for a field of the wrong type."""
        if not isinstance(record, Mapping):
            raise TypeError(f"a record must be a dict, not {type(record).__name__}")
        keys = set(record)
        pv_fields = {k: record[k] for k in self._PROVENANCE_KEYS if k in record}
        if provenance is None and pv_fields:
            provenance = pv_fields
        keys -= set(self._PROVENANCE_KEYS)
        shapes: List[Tuple[frozenset, Callable[[], None]]] = [
            (frozenset({"prompt", "completion"}),
             lambda: self.add_demo(record["prompt"], record["completion"], provenance)),
            (frozenset({"messages"}),
             lambda: self.add_chat(record["messages"], provenance)),
            (frozenset({"prompt", "chosen", "rejected"}),
             lambda: self.add_preference(record["prompt"], record["chosen"], record["rejected"],
                                         provenance)),
            (frozenset({"prompt", "responses", "ranking"}),
             lambda: self.add_ranking(record["prompt"], record["responses"], record["ranking"],
                                      provenance)),
            (frozenset({"prompt", "response", "label"}),
             lambda: self.add_label(record["prompt"], record["response"], record["label"],
                                    provenance)),
            (frozenset({"prompt", "response", "score"}),
             lambda: self.add_score(record["prompt"], record["response"], record["score"],
                                    provenance)),
            (frozenset({"prompt"}), lambda: self.add_prompt(record["prompt"], provenance)),
        ]
        for shape, add in shapes:
            if keys == shape:
                add()
                return
        raise ValueError(f"record with fields {sorted(record)} is not a known kind; expected "
                         "prompt+completion, messages, prompt+chosen+rejected, "
                         "prompt+responses+ranking, prompt+response+label, "
                         "prompt+response+score or prompt (+ source/annotator/timestamp)")

    def extend(self, records: Iterable[Record]) -> None:
        """Adds every record of ``records`` (see :meth:`add`)."""
        if isinstance(records, (Mapping, str, bytes)):
            raise TypeError("extend() takes an iterable of records (dicts)")
        for i, r in enumerate(records):
            try:
                self.add(r)
            except (TypeError, ValueError) as e:
                if type(e) not in (TypeError, ValueError):
                    raise        # AlignError and other subclasses keep their type
                raise type(e)(f"record {i}: {e}") from None

    def add_demo(self, prompt: str, completion: str, provenance: Any = None) -> None:
        """A demonstration: prompt and the desired completion."""
        _raw.align_dataset_add_demo(self._h, _text(prompt, "prompt"),
                                    _text(completion, "completion"), self._pv(provenance))

    def add_chat(self, messages: Sequence[Mapping[str, str]], provenance: Any = None) -> None:
        """A chat: a list of ``{"role": ..., "content": ...}`` messages."""
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise TypeError("messages must be a list of {'role', 'content'} dicts")
        roles, contents = [], []
        for j, m in enumerate(messages):
            if not isinstance(m, Mapping) or set(m) != {"role", "content"}:
                raise ValueError(f"messages[{j}] must be a dict with exactly 'role' and "
                                 "'content'")
            roles.append(m["role"])
            contents.append(m["content"])
        _raw.align_dataset_add_chat(self._h, _string_array(roles, "role"),
                                    _string_array(contents, "content"), len(messages),
                                    self._pv(provenance))

    def add_ranking(self, prompt: str, responses: Sequence[str], ranking: Sequence[int],
                    provenance: Any = None) -> None:
        """K responses to one prompt; ``ranking[i]`` is the place of
        ``responses[i]`` (0 = best; equal places are ties)."""
        if isinstance(responses, (str, bytes)) or not isinstance(responses, Sequence):
            raise TypeError("responses must be a list of str")
        if isinstance(ranking, (str, bytes)) or not isinstance(ranking, Sequence):
            raise TypeError("ranking must be a list of int")
        if len(ranking) != len(responses):
            raise ValueError(f"{len(responses)} responses but {len(ranking)} ranks")
        ranks = (c_int32 * max(len(ranking), 1))(*[_int(r, "rank") for r in ranking])
        _raw.align_dataset_add_ranking(self._h, _text(prompt, "prompt"),
                                       _string_array(responses, "responses"), ranks,
                                       len(responses), self._pv(provenance))

    def add_preference(self, prompt: str, chosen: str, rejected: str,
                       provenance: Any = None) -> None:
        """A preference pair (a ranking of two)."""
        _raw.align_dataset_add_preference(self._h, _text(prompt, "prompt"),
                                          _text(chosen, "chosen"), _text(rejected, "rejected"),
                                          self._pv(provenance))

    def add_label(self, prompt: str, response: str, good: bool, provenance: Any = None) -> None:
        """A binary label: the response is good (True) or bad (False)."""
        if not isinstance(good, (bool, int)):
            raise TypeError(f"label must be a bool, not {type(good).__name__}")
        _raw.align_dataset_add_label(self._h, _text(prompt, "prompt"),
                                     _text(response, "response"), 1 if good else 0,
                                     self._pv(provenance))

    def add_score(self, prompt: str, response: str, score: float,
                  provenance: Any = None) -> None:
        """A scalar score for a response."""
        value = _number(score, "score")
        if not math.isfinite(value):
            raise ValueError(f"score must be finite, not {value}")
        _raw.align_dataset_add_score(self._h, _text(prompt, "prompt"),
                                     _text(response, "response"), value, self._pv(provenance))

    def add_prompt(self, prompt: str, provenance: Any = None) -> None:
        """A bare prompt (for rollouts)."""
        _raw.align_dataset_add_prompt(self._h, _text(prompt, "prompt"), self._pv(provenance))

    def set_source(self, source: Optional[PromptSource]) -> None:
        """Registers a pull source, called when a trainer has used every
        record it holds (SFT at the end of its data, RL trainers when out of
        prompts). ``source`` is either a callable returning a prompt (str), a
        record of any kind (a dict as for :meth:`add`: demonstrations, chats,
        rankings, labels, scores, with provenance), a list of those, or None /
        an empty list when there are no more; or an iterable of them (one
        item per call). Exceptions it raises propagate out of the library
        call that pulled. ``None`` removes the source. A trainer created while
        a source is set reads records as they arrive (docs/datasets.md)."""
        h = self._h
        if source is None:
            _raw.align_dataset_set_source(h, _raw.align_prompt_fn(), None)
            self._state.keep.pop("source", None)
            return
        if callable(source):
            fn = source
        elif isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
            it = iter(source)

            def fn() -> Optional[Any]:
                return next(it, None)
        else:
            raise TypeError("source must be a callable or an iterable of prompts, "
                            f"not {type(source).__name__}")
        cb = _callbacks.Callback(_raw.align_prompt_fn, fn, _make_source_adapter(weakref.ref(self)))
        _raw.align_dataset_set_source(h, cb.pointer, None)
        # Kept with the C handle: C may call it until the dataset is freed.
        self._state.keep["source"] = cb

    def pull(self, min_new: int = 1) -> bool:
        """Calls the source until at least ``min_new`` records were
        added. Returns True when they arrived, False when the source has no
        more (what it added stays) or no source is set. An exception raised
        by the source propagates from here."""
        rc = _raw.align_dataset_pull(self._h, int(min_new))
        return rc == _raw.ALIGN_OK



# The trainers and the feedback objects live in their own modules (this file
# would pass 2000 lines); they are re-exported here, so `libalign.api.X` keeps working.
from ._trainers import (DPOTrainer, KTOTrainer, RLTrainer, RewardTrainer, SFTTrainer, Trainer, _PrefTrainer, _make_step_adapter)  # noqa: E402,F401
from ._feedback import (FeedbackKind, FeedbackRequest, Journal, Judge, RequestStatus, RewardModel, _progress_adapter, _rank_adapter, _score_adapter, collect)  # noqa: E402,F401
