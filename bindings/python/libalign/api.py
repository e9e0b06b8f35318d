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
    """The loaded library's version, e.g. ``"0.3.0"``."""
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


# ============================================================================
# Trainers
# ============================================================================


def _make_step_adapter(trainer_ref: List[Any]) -> Callable[..., Any]:
    def adapter(fn: Callable[[StepStats], Any], s: Any, user_data: Any) -> Any:
        tr = trainer_ref[0]() if trainer_ref else None
        return fn(_stats_from_pointer(s, tr._metrics(False) if tr is not None else None))
    return adapter


class Trainer(_Owned):
    """One training run bound to the objects it borrows (kept alive by the
    trainer). Create one with :meth:`sft` (or :class:`SFTTrainer`).

    ``for stats in trainer.steps(n)`` runs up to n steps (all remaining
    ones without n), yielding :class:`StepStats`, and stops at the end of
    the planned steps or epochs; iterating the trainer itself runs to the end.
    """

    _kind = "trainer"
    _free_fn = staticmethod(_raw.align_trainer_free)

    def __init__(self) -> None:
        raise TypeError("create a trainer with Trainer.sft(...) or SFTTrainer(...)")

    @classmethod
    def sft(cls, model: Model, tokenizer: Tokenizer, dataset: Dataset, optimizer: Optional[Optimizer],
            **params: Any) -> "SFTTrainer":
        """A supervised fine-tuning trainer; see :class:`SFTTrainer`."""
        return SFTTrainer(model, tokenizer, dataset, optimizer, **params)

    @classmethod
    def reward(cls, model: Model, tokenizer: Tokenizer, dataset: Dataset, optimizer: Optional[Optimizer],
               **params: Any) -> "RewardTrainer":
        """A reward-model trainer; see :class:`RewardTrainer`."""
        return RewardTrainer(model, tokenizer, dataset, optimizer, **params)

    @classmethod
    def grpo(cls, policy: "Model", optimizer: "Optimizer", tokenizer: "Tokenizer", prompts: "Dataset",
             reward: "RewardModel", *, reference: Optional["Model"] = None,
             **params: Any) -> "RLTrainer":
        """A GRPO trainer; see :class:`RLTrainer`."""
        return RLTrainer("grpo", policy, optimizer, tokenizer, prompts, reward, reference=reference,
                         **params)

    @classmethod
    def rloo(cls, policy: "Model", optimizer: "Optimizer", tokenizer: "Tokenizer", prompts: "Dataset",
             reward: "RewardModel", *, reference: Optional["Model"] = None,
             **params: Any) -> "RLTrainer":
        """An RLOO trainer; see :class:`RLTrainer`."""
        return RLTrainer("rloo", policy, optimizer, tokenizer, prompts, reward, reference=reference,
                         **params)

    @classmethod
    def ppo(cls, policy: "Model", optimizer: "Optimizer", tokenizer: "Tokenizer", prompts: "Dataset",
            reward: "RewardModel", *, reference: Optional["Model"] = None,
            value: Optional["Model"] = None, value_optimizer: Optional["Optimizer"] = None,
            **params: Any) -> "RLTrainer":
        """A PPO trainer; see :class:`RLTrainer`."""
        return RLTrainer("ppo", policy, optimizer, tokenizer, prompts, reward, reference=reference,
                         value=value, value_optimizer=value_optimizer, **params)

    @classmethod
    def dpo(cls, model: Model, reference: Optional[Model], tokenizer: Tokenizer, dataset: Dataset,
            optimizer: Optional[Optimizer], **params: Any) -> "DPOTrainer":
        """A DPO-family trainer on preference pairs and rankings; see :class:`DPOTrainer`."""
        return DPOTrainer(model, reference, tokenizer, dataset, optimizer, **params)

    @classmethod
    def kto(cls, model: Model, reference: Model, tokenizer: Tokenizer, dataset: Dataset,
            optimizer: Optional[Optimizer], **params: Any) -> "KTOTrainer":
        """A KTO trainer on labelled responses; see :class:`KTOTrainer`."""
        return KTOTrainer(model, reference, tokenizer, dataset, optimizer, **params)

    def step(self) -> Optional[StepStats]:
        """Runs one optimiser step; returns its statistics, or None when the
        planned steps or epochs are over (no update made)."""
        s = _raw.align_step_stats()
        rc = _raw.align_trainer_step(self._h, byref(s))
        if rc == _raw.ALIGN_DONE:
            return None
        return StepStats._from_c(s, self._metrics(False))

    def _metrics(self, evaluation: bool) -> Dict[str, float]:
        names = POINTER(c_char_p)()
        values = POINTER(ctypes.c_double)()
        n = ctypes.c_int32()
        which = _raw.ALIGN_METRICS_EVAL if evaluation else _raw.ALIGN_METRICS_STEP
        _raw.align_trainer_metrics(self._h, which, byref(names), byref(values), byref(n))
        return {names[i].decode("utf-8", "replace"): float(values[i]) for i in range(n.value)}

    def metrics(self, evaluation: bool = False) -> Dict[str, float]:
        """The named metrics of the last step (or, with ``evaluation=True``,
        of the last :meth:`evaluate`): ``{"loss": ..., "accuracy": ...,
        "learning_rate": ..., "grad_norm": ..., "tokens": ..., ...}``."""
        return self._metrics(bool(evaluation))

    def steps(self, n: Optional[int] = None) -> Iterator[StepStats]:
        """Yields the statistics of up to ``n`` steps (until done if None)."""
        if n is not None:
            n = _int(n, "n")
        done = 0
        while n is None or done < n:
            s = self.step()
            if s is None:
                return
            done += 1
            yield s

    def __iter__(self) -> Iterator[StepStats]:
        return self.steps()

    def evaluate(self, dataset: Dataset) -> StepStats:
        """Loss and accuracy over all of ``dataset``, without an update."""
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a Dataset, not {type(dataset).__name__}")
        s = _raw.align_step_stats()
        _raw.align_trainer_evaluate(self._h, dataset._h, byref(s))
        return StepStats._from_c(s, self._metrics(True))

    def save(self, directory: PathLike) -> None:
        """The whole training state into ``directory`` (created if missing)."""
        _raw.align_trainer_save(self._h, _path(directory, "directory"))

    def resume(self, directory: PathLike) -> None:
        """Restores what :meth:`save` wrote, for a trainer built the same way."""
        _raw.align_trainer_resume(self._h, _path(directory, "directory"))

    def request_stop(self) -> None:
        """Asks the current or next step to stop (it raises AlignCanceled);
        safe from any thread, e.g. a signal handler or an ``on_step``."""
        _raw.align_trainer_request_stop(self._h)

    def use_mpi(self, timeout: float = 0.0, library: Optional[PathLike] = None) -> Tuple[int, int]:
        """Data parallel over Open MPI's ``MPI_COMM_WORLD`` (docs/distributed.md):
        run the script under ``mpirun -np N``, build the same trainer on every
        rank and call this before the first step (and before :meth:`resume`).
        Loads ``libalign_mpi.so`` (next to libalign, or ``library``) and
        ``libmpi``, initialises MPI if nobody did (finalised at exit), and
        calls ``align_trainer_set_dist``. Returns ``(rank, size)``; rank 0
        alone should save the model. ``timeout``: seconds a collective waits
        for the other ranks (0: ``$ALIGN_DIST_TIMEOUT`` or 300)."""
        import atexit
        import ctypes.util
        mpi = ctypes.CDLL(ctypes.util.find_library("mpi") or "libmpi.so.40", mode=ctypes.RTLD_GLOBAL)
        path = os.fspath(library) if library is not None else os.path.join(
            os.path.dirname(os.path.realpath(_raw.lib._name)), "libalign_mpi.so")
        amp = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        flag = ctypes.c_int(0)
        mpi.MPI_Initialized(byref(flag))
        if not flag.value:
            if mpi.MPI_Init(None, None) != 0:
                raise RuntimeError("MPI_Init failed")
            atexit.register(mpi.MPI_Finalize)
        # Open MPI: MPI_COMM_WORLD is the address of ompi_mpi_comm_world
        comm = ctypes.addressof(c_char.in_dll(mpi, "ompi_mpi_comm_world"))
        d = _raw.align_dist()
        amp.align_dist_mpi_create.argtypes = [POINTER(_raw.align_dist), c_void_p, ctypes.c_double]
        rc = amp.align_dist_mpi_create(byref(d), c_void_p(comm), float(timeout))
        if rc != 0:
            raise RuntimeError(f"align_dist_mpi_create failed ({rc})")
        _raw.align_trainer_set_dist(self._h, byref(d))
        self._dist = (mpi, amp, d)  # the communicator lives as long as the trainer
        return d.rank, d.size


class SFTTrainer(Trainer):
    """Supervised fine-tuning on demonstrations and chats.

    Keyword arguments are the fields of ``align_sft_params``:
    ``micro_batch``, ``grad_accum``, ``max_seq_len``, ``truncation``
    (:class:`Truncation`), ``max_steps``, ``epochs``, ``seed``,
    ``system_prefix``, ``user_prefix``, ``assistant_prefix``, plus
    ``full_sequence_loss``, ``pack`` and ``sequential`` (the ``ALIGN_SFT_*``
    flags; ``sequential`` visits the examples in dataset order) and
    ``on_step``: a callable receiving each step's :class:`StepStats` once its
    gradients are ready, before the update; raising an exception (or
    returning a negative int) discards that update, and the exception
    propagates out of :meth:`step`.
    """

    _INT_FIELDS = ("micro_batch", "grad_accum", "max_seq_len", "truncation", "max_steps",
                   "epochs", "seed")
    _STR_FIELDS = ("system_prefix", "user_prefix", "assistant_prefix")

    def __init__(self, model: Model, tokenizer: Tokenizer, dataset: Dataset,
                 optimizer: Optional[Optimizer], *,
                 on_step: Optional[Callable[[StepStats], Any]] = None,
                 full_sequence_loss: bool = False, pack: bool = False, sequential: bool = False,
                 **params: Any) -> None:
        """``optimizer`` may be None for an evaluation-only trainer: evaluate()
        works, step(), save() and resume() raise (ALIGN_EMISUSE)."""
        for name, obj, cls in (("model", model, Model), ("tokenizer", tokenizer, Tokenizer),
                               ("dataset", dataset, Dataset), ("optimizer", optimizer, Optimizer)):
            if name == "optimizer" and obj is None:
                continue
            if not isinstance(obj, cls):
                raise TypeError(f"{name} must be a {cls.__name__}, not {type(obj).__name__}")
        if optimizer is not None and optimizer.model is not model:
            raise ValueError("the optimizer was created for another model")
        p = _raw.align_sft_params.defaults()
        for k, v in params.items():
            if k in self._INT_FIELDS:
                setattr(p, k, _int(int(v) if isinstance(v, enum.IntEnum) else v, k))
            elif k in self._STR_FIELDS:
                setattr(p, k, None if v is None else _text(v, k))
            else:
                raise TypeError(f"unknown SFT parameter {k!r}")
        if full_sequence_loss:
            p.flags |= _raw.ALIGN_SFT_FULL_SEQUENCE_LOSS
        if pack:
            p.flags |= _raw.ALIGN_SFT_PACK
        if sequential:
            p.flags |= _raw.ALIGN_SFT_SEQUENTIAL
        cb = None
        me: List[Any] = []
        if on_step is not None:
            cb = _callbacks.Callback(_raw.align_step_fn, on_step, _make_step_adapter(me))
            p.on_step = cb.pointer
        h = _raw.align_trainer_p()
        _raw.align_trainer_create_sft(byref(h), model._h, tokenizer._h, dataset._h,
                                      optimizer._h if optimizer is not None else None, byref(p))
        # Borrowed objects stay alive as long as the trainer (B5.2).
        self.model, self.tokenizer, self.dataset, self.optimizer = (model, tokenizer, dataset,
                                                                    optimizer)
        self._adopt(h, borrowed=[o for o in (model, tokenizer, dataset, optimizer) if o is not None])
        if cb is not None:
            self._state.keep["on_step"] = cb
            me.append(weakref.ref(self))


class RewardTrainer(Trainer):
    """Reward-model training on ranking, preference, label and score records
    (docs/reward.md). The model needs a scalar head (``Model(scalar_head=True)``).

    Keyword arguments are the fields of ``align_reward_train_params``:
    ``micro_batch`` (prompts per forward), ``grad_accum``, ``max_seq_len``,
    ``truncation``, ``max_steps``, ``epochs``, ``seed``, ``ranking_weight``,
    ``label_weight``, ``score_weight``, ``margin_scale``, ``center_coef``,
    ``user_prefix``, ``assistant_prefix``, plus ``chat`` (ALIGN_REWARD_CHAT),
    ``sequential`` and ``on_step`` (as for :class:`SFTTrainer`). Step and
    evaluation metrics: ``loss``, ``accuracy`` (pairwise), ``margin``,
    ``pairs``, ``rewards/mean``, ``rewards/std``, ...
    """

    _INT_FIELDS = ("micro_batch", "grad_accum", "max_seq_len", "truncation", "max_steps",
                   "epochs", "seed")
    _FLOAT_FIELDS = ("ranking_weight", "label_weight", "score_weight", "margin_scale", "center_coef")
    _STR_FIELDS = ("user_prefix", "assistant_prefix")

    def __init__(self, model: Model, tokenizer: Tokenizer, dataset: Dataset,
                 optimizer: Optional[Optimizer], *,
                 on_step: Optional[Callable[[StepStats], Any]] = None,
                 chat: bool = False, sequential: bool = False, **params: Any) -> None:
        for name, obj, kind in (("model", model, Model), ("tokenizer", tokenizer, Tokenizer),
                                ("dataset", dataset, Dataset), ("optimizer", optimizer, Optimizer)):
            if name == "optimizer" and obj is None:
                continue
            if not isinstance(obj, kind):
                raise TypeError(f"{name} must be a {kind.__name__}, not {type(obj).__name__}")
        if optimizer is not None and optimizer.model is not model:
            raise ValueError("the optimizer was created for another model")
        p = _raw.align_reward_train_params.defaults()
        for k, v in params.items():
            if k in self._INT_FIELDS:
                setattr(p, k, _int(int(v) if isinstance(v, enum.IntEnum) else v, k))
            elif k in self._FLOAT_FIELDS:
                setattr(p, k, float(v))
            elif k in self._STR_FIELDS:
                setattr(p, k, None if v is None else _text(v, k))
            else:
                raise TypeError(f"unknown reward-trainer parameter {k!r}")
        if chat:
            p.flags |= _raw.ALIGN_REWARD_CHAT
        if sequential:
            p.flags |= _raw.ALIGN_REWARD_TRAIN_SEQUENTIAL
        cb = None
        me: List[Any] = []
        if on_step is not None:
            cb = _callbacks.Callback(_raw.align_step_fn, on_step, _make_step_adapter(me))
            p.on_step = cb.pointer
        h = _raw.align_trainer_p()
        _raw.align_trainer_create_reward(byref(h), model._h, tokenizer._h, dataset._h,
                                         optimizer._h if optimizer is not None else None, byref(p))
        self.model, self.tokenizer, self.dataset, self.optimizer = (model, tokenizer, dataset,
                                                                    optimizer)
        self._adopt(h, borrowed=[o for o in (model, tokenizer, dataset, optimizer) if o is not None])
        if cb is not None:
            self._state.keep["on_step"] = cb
            me.append(weakref.ref(self))


class RLTrainer(Trainer):
    """Online RL: GRPO, RLOO or PPO (docs/rl.md). Create with
    :meth:`Trainer.grpo`, :meth:`Trainer.rloo` or :meth:`Trainer.ppo`.

    ``reward`` is a :class:`RewardModel` (``RewardModel.from_callable(fn)``
    for a Python function). ``reference`` is a frozen model (e.g.
    ``policy.clone(frozen=True)``); it may be None when the KL coefficient
    (``beta`` / ``kl_coef``) is 0. PPO's value function is a scalar head on
    the policy (``value=None``; the policy needs one) or a separate model with
    its own optimizer.

    Keyword arguments are the fields of ``align_grpo_params`` (GRPO, RLOO) or
    ``align_ppo_params`` (PPO), e.g. ``group_size``, ``prompts_per_step``,
    ``max_new_tokens``, ``temperature``, ``beta``, ``clip_eps``, ``max_steps``;
    ``stop`` is a list of strings; the flags are ``raw_prompt``,
    ``sequential``, ``no_std``, ``batch_std`` (GRPO), ``adaptive_kl``,
    ``no_whiten`` (PPO); ``on_step`` as for :class:`SFTTrainer`. The step
    statistics' ``metrics`` carry ``objective/scores``, ``objective/kl``, ...
    """

    _FLAGS = {"raw_prompt": _raw.ALIGN_RL_RAW_PROMPT, "sequential": _raw.ALIGN_RL_SEQUENTIAL,
              "no_std": _raw.ALIGN_GRPO_NO_STD, "batch_std": _raw.ALIGN_GRPO_BATCH_STD,
              "adaptive_kl": _raw.ALIGN_PPO_ADAPTIVE_KL, "no_whiten": _raw.ALIGN_PPO_NO_WHITEN}
    _ALGO_FLAGS = {"grpo": ("no_std", "batch_std"), "rloo": (), "ppo": ("adaptive_kl", "no_whiten")}
    _STR_FIELDS = ("system_prefix", "user_prefix", "assistant_prefix")

    def __init__(self, algorithm: str, policy: Model, optimizer: Optimizer, tokenizer: Tokenizer,
                 prompts: Dataset, reward: "RewardModel", *, reference: Optional[Model] = None,
                 value: Optional[Model] = None, value_optimizer: Optional[Optimizer] = None,
                 on_step: Optional[Callable[[StepStats], Any]] = None,
                 stop: Optional[Sequence[str]] = None, **params: Any) -> None:
        if algorithm not in ("grpo", "rloo", "ppo"):
            raise ValueError(f"unknown algorithm {algorithm!r}")
        for name, obj, cl in (("policy", policy, Model), ("optimizer", optimizer, Optimizer),
                              ("tokenizer", tokenizer, Tokenizer), ("prompts", prompts, Dataset),
                              ("reward", reward, RewardModel), ("reference", reference, Model),
                              ("value", value, Model), ("value_optimizer", value_optimizer, Optimizer)):
            if obj is None and name in ("reference", "value", "value_optimizer"):
                continue
            if not isinstance(obj, cl):
                raise TypeError(f"{name} must be a {cl.__name__}, not {type(obj).__name__}")
        if algorithm == "ppo":
            p = _raw.align_ppo_params.defaults()
        elif algorithm == "grpo":
            p = _raw.align_grpo_params.defaults()
        else:
            p = _raw.align_grpo_params()
            _raw.align_rloo_default_params(byref(p), ctypes.sizeof(p))
        names = {f[0]: f[1] for f in type(p)._fields_}
        keep: Dict[str, Any] = {}
        ptx = params.pop("ptx_data", None)
        if ptx is not None:
            if algorithm != "ppo":
                raise TypeError("ptx_data is a PPO parameter")
            if not isinstance(ptx, Dataset):
                raise TypeError(f"ptx_data must be a Dataset, not {type(ptx).__name__}")
            p.ptx_data = ptx._h
        for k, v in params.items():
            if k in self._FLAGS:
                if k not in ("raw_prompt", "sequential") and k not in self._ALGO_FLAGS[algorithm]:
                    raise TypeError(f"{k!r} is not a {algorithm.upper()} flag")
                if v:
                    p.flags |= self._FLAGS[k]
            elif k in self._STR_FIELDS:
                setattr(p, k, None if v is None else _text(v, k))
            elif k in names and k not in ("struct_size", "flags", "stop", "n_stop", "on_step",
                                          "on_step_user_data"):
                t = names[k]
                if t is ctypes.c_float:
                    setattr(p, k, _number(v, k))
                else:
                    setattr(p, k, _int(int(v) if isinstance(v, enum.IntEnum) else v, k))
            else:
                raise TypeError(f"unknown {algorithm.upper()} parameter {k!r}")
        if stop:
            arr = _string_array(list(stop), "stop")
            keep["stop"] = arr
            p.stop = arr
            p.n_stop = len(stop)
        cb = None
        me: List[Any] = []
        if on_step is not None:
            cb = _callbacks.Callback(_raw.align_step_fn, on_step, _make_step_adapter(me))
            p.on_step = cb.pointer
        r = _raw.align_rl_roles.defaults()
        r.policy = policy._h
        r.policy_opt = optimizer._h
        r.value = value._h if value is not None else None
        r.value_opt = value_optimizer._h if value_optimizer is not None else None
        r.reference = reference._h if reference is not None else None
        r.reward = reward._h
        r.tokenizer = tokenizer._h
        h = _raw.align_trainer_p()
        fn = {"grpo": _raw.align_trainer_create_grpo, "rloo": _raw.align_trainer_create_rloo,
              "ppo": _raw.align_trainer_create_ppo}[algorithm]
        fn(byref(h), byref(r), prompts._h, byref(p))
        self.algorithm = algorithm
        self.model, self.optimizer, self.tokenizer, self.dataset = policy, optimizer, tokenizer, prompts
        self.reward, self.reference, self.value = reward, reference, value
        borrowed = [o for o in (policy, optimizer, tokenizer, prompts, reward, reference, value,
                                value_optimizer, ptx) if o is not None]
        self._adopt(h, borrowed=borrowed)
        self._state.keep.update(keep)
        if cb is not None:
            self._state.keep["on_step"] = cb
            me.append(weakref.ref(self))


class _PrefTrainer(Trainer):
    """Shared construction of :class:`DPOTrainer` and :class:`KTOTrainer`."""

    _params: Any = None
    _create: Any = None
    _INT_FIELDS: Tuple[str, ...] = ()
    _FLOAT_FIELDS: Tuple[str, ...] = ()
    _FLAGS: Dict[str, int] = {}

    def __init__(self, model: Model, reference: Optional[Model], tokenizer: Tokenizer,
                 dataset: Dataset, optimizer: Optional[Optimizer], *,
                 on_step: Optional[Callable[[StepStats], Any]] = None, **params: Any) -> None:
        for name, obj, klass in (("model", model, Model), ("reference", reference, Model),
                                 ("tokenizer", tokenizer, Tokenizer), ("dataset", dataset, Dataset),
                                 ("optimizer", optimizer, Optimizer)):
            if name in ("optimizer", "reference") and obj is None:
                continue
            if not isinstance(obj, klass):
                raise TypeError(f"{name} must be a {klass.__name__}, not {type(obj).__name__}")
        if optimizer is not None and optimizer.model is not model:
            raise ValueError("the optimizer was created for another model")
        p = self._params.defaults()
        for k, v in params.items():
            if k in self._INT_FIELDS:
                setattr(p, k, _int(int(v) if isinstance(v, enum.IntEnum) else v, k))
            elif k in self._FLOAT_FIELDS:
                setattr(p, k, _number(v, k))
            elif k in self._FLAGS:
                if v:
                    p.flags |= self._FLAGS[k]
            else:
                raise TypeError(f"unknown {type(self).__name__} parameter {k!r}")
        cb = None
        me: List[Any] = []
        if on_step is not None:
            cb = _callbacks.Callback(_raw.align_step_fn, on_step, _make_step_adapter(me))
            p.on_step = cb.pointer
        h = _raw.align_trainer_p()
        type(self)._create(byref(h), model._h, reference._h if reference is not None else None,
                           tokenizer._h, dataset._h, optimizer._h if optimizer is not None else None,
                           byref(p))
        self.model, self.reference, self.tokenizer, self.dataset, self.optimizer = (
            model, reference, tokenizer, dataset, optimizer)
        self._adopt(h, borrowed=[o for o in (model, reference, tokenizer, dataset, optimizer)
                                 if o is not None])
        if cb is not None:
            self._state.keep["on_step"] = cb
            me.append(weakref.ref(self))


class DPOTrainer(_PrefTrainer):
    """DPO and its variants on preference pairs ({"prompt","chosen","rejected"})
    and rankings (docs/preference.md).

    ``reference`` is the frozen model the policy is compared with (normally
    ``model.clone(frozen=True)`` before training); it may be None for
    ``loss=DPOLoss.SIMPO`` or ``DPOLoss.ORPO``. Keyword arguments are the
    fields of ``align_dpo_params``: ``loss`` (:class:`DPOLoss`), ``ranking``
    (:class:`RankingMode`), ``beta``, ``label_smoothing``, ``simpo_gamma``,
    ``sft_alpha``, ``micro_batch`` (records), ``grad_accum``, ``max_seq_len``,
    ``truncation``, ``max_steps``, ``epochs``, ``seed``; the flags
    ``length_norm``, ``sequential``, ``release_reference``,
    ``no_reference_cache``; and ``on_step`` as for :class:`SFTTrainer`.
    Step metrics: ``loss``, ``rewards/chosen``, ``rewards/rejected``,
    ``rewards/accuracies``, ``rewards/margins``, ``logps/chosen``,
    ``logps/rejected`` (+ ``nll``), ``ref_cache/fill``.
    """

    _params = _raw.align_dpo_params
    _create = staticmethod(_raw.align_trainer_create_dpo)
    _INT_FIELDS = ("loss", "ranking", "micro_batch", "grad_accum", "max_seq_len", "truncation",
                   "max_steps", "epochs", "seed")
    _FLOAT_FIELDS = ("beta", "label_smoothing", "simpo_gamma", "sft_alpha")
    _FLAGS = {"length_norm": _raw.ALIGN_DPO_LENGTH_NORM, "sequential": _raw.ALIGN_DPO_SEQUENTIAL,
              "release_reference": _raw.ALIGN_DPO_RELEASE_REFERENCE,
              "no_reference_cache": _raw.ALIGN_DPO_NO_REFERENCE_CACHE}


class KTOTrainer(_PrefTrainer):
    """KTO on responses labelled good or bad ({"prompt","response","label"}).

    Keyword arguments: ``beta``, ``desirable_weight``, ``undesirable_weight``,
    ``micro_batch``, ``grad_accum``, ``max_seq_len``, ``truncation``,
    ``max_steps``, ``epochs``, ``seed``, the flags ``sequential`` and
    ``no_reference_cache``, and ``on_step``. Step metrics: ``loss``, ``kl``,
    ``rewards/chosen``, ``rewards/rejected``, ``logps/chosen``,
    ``logps/rejected``.
    """

    _params = _raw.align_kto_params
    _create = staticmethod(_raw.align_trainer_create_kto)
    _INT_FIELDS = ("micro_batch", "grad_accum", "max_seq_len", "truncation", "max_steps", "epochs",
                   "seed")
    _FLOAT_FIELDS = ("beta", "desirable_weight", "undesirable_weight")
    _FLAGS = {"sequential": _raw.ALIGN_DPO_SEQUENTIAL,
              "no_reference_cache": _raw.ALIGN_DPO_NO_REFERENCE_CACHE}


# ============================================================================
# Reward models
# ============================================================================


def _score_adapter(fn: Callable[[List[str], List[str]], Sequence[float]], prompts: Any,
                   responses: Any, n: int, scores: Any, user_data: Any) -> int:
    ps = [_decode(prompts[i]) for i in range(n)]
    rs = [_decode(responses[i]) for i in range(n)]
    out = list(fn(ps, rs))
    if len(out) != n:
        raise ValueError(f"score function returned {len(out)} scores for {n} pairs")
    for i, v in enumerate(out):
        scores[i] = _number(v, f"score[{i}]")
    return 0


class RewardModel(_Owned):
    """The scorer every RL algorithm calls (``align_reward_model``): a model
    with a scalar head and its tokenizer (:meth:`from_model`), or a Python
    function (:meth:`from_callable`). :meth:`score` rates (prompt, response)
    pairs; :meth:`normalize` sets the bias (and scale) so that reference
    pairs score 0 on average (docs/reward.md)."""

    _kind = "reward_model"
    _free_fn = staticmethod(_raw.align_reward_model_free)

    def __init__(self) -> None:
        raise TypeError("use RewardModel.from_model(model, tokenizer) or "
                        "RewardModel.from_callable(fn)")

    @classmethod
    def from_model(cls, model: Model, tokenizer: Tokenizer, *, chat: bool = False,
                   max_seq_len: int = 0, batch_size: Optional[int] = None,
                   truncation: Optional[int] = None, user_prefix: Optional[str] = None,
                   assistant_prefix: Optional[str] = None) -> "RewardModel":
        """A scorer over ``model`` (which needs a scalar head) and ``tokenizer``,
        both borrowed. ``chat=True`` builds a two-turn chat instead of a
        demonstration (prompt, response, end-of-turn)."""
        if not isinstance(model, Model):
            raise TypeError(f"model must be a Model, not {type(model).__name__}")
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a Tokenizer, not {type(tokenizer).__name__}")
        p = _raw.align_reward_params.defaults()
        if chat:
            p.flags |= _raw.ALIGN_REWARD_CHAT
        p.max_seq_len = _int(max_seq_len, "max_seq_len")
        if batch_size is not None:
            p.batch_size = _int(batch_size, "batch_size")
        if truncation is not None:
            p.truncation = _int(int(truncation), "truncation")
        if user_prefix is not None:
            p.user_prefix = _text(user_prefix, "user_prefix")
        if assistant_prefix is not None:
            p.assistant_prefix = _text(assistant_prefix, "assistant_prefix")
        h = _raw.align_reward_model_p()
        _raw.align_reward_model_from_model(byref(h), model._h, tokenizer._h, byref(p))
        self = cls.__new__(cls)
        self._adopt(h, borrowed=[model, tokenizer])
        return self

    @classmethod
    def from_callable(cls, fn: Callable[[List[str], List[str]], Sequence[float]]) -> "RewardModel":
        """A scorer over ``fn(prompts, responses) -> scores`` (lists of str in,
        one number per pair out). An exception raised by ``fn`` propagates
        from :meth:`score` with its traceback; a NaN or infinite score raises
        AlignNonFiniteError."""
        cb = _callbacks.Callback(_raw.align_score_fn, fn, _score_adapter)
        h = _raw.align_reward_model_p()
        _raw.align_reward_model_from_callback(byref(h), cb.pointer, None)
        self = cls.__new__(cls)
        self._adopt(h)
        self._state.keep["score_fn"] = cb
        return self

    @staticmethod
    def _pairs(prompts: Sequence[Any], responses: Sequence[Any]) -> Tuple[Any, Any, int]:
        if isinstance(prompts, (str, bytes)) or isinstance(responses, (str, bytes)):
            raise TypeError("prompts and responses must be sequences of strings")
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return (_string_array(prompts, "prompts"), _string_array(responses, "responses"),
                len(prompts))

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> List[float]:
        """Scores of the pairs (prompts[i], responses[i]), normalisation applied."""
        pa, ra, n = self._pairs(prompts, responses)
        out = (c_float * max(n, 1))()
        _raw.align_reward_model_score(self._h, pa, ra, n, out)
        return [float(out[i]) for i in range(n)]

    def normalize(self, prompts: Sequence[str], responses: Sequence[str], *,
                  unit_std: bool = False) -> Tuple[float, float]:
        """Sets the bias (and with ``unit_std`` the scale) so that these
        reference pairs score 0 on average (and 1 in standard deviation).
        Returns (bias, scale). A model-backed scorer keeps it in the model,
        so :meth:`Model.save` saves it."""
        pa, ra, n = self._pairs(prompts, responses)
        _raw.align_reward_model_normalize(self._h, pa, ra, n,
                                          _raw.ALIGN_REWARD_NORMALIZE_STD if unit_std else 0)
        return self.normalization

    @property
    def normalization(self) -> Tuple[float, float]:
        """(bias, scale): score = scale * raw + bias."""
        b, s = c_float(), c_float()
        _raw.align_reward_model_get_normalization(self._h, byref(b), byref(s))
        return (float(b.value), float(s.value))

    def set_normalization(self, bias: float, scale: float = 1.0) -> None:
        """Sets score = scale * raw + bias."""
        _raw.align_reward_model_set_normalization(self._h, _number(bias, "bias"),
                                                  _number(scale, "scale"))


# ============================================================================
# judge models and the collection of rankings (docs/judge.md)
# ============================================================================


class Judge(_Owned):
    """A language model as judge (RL from AI feedback, ``align_judge``).

    :meth:`prefer` is the probability that response ``a`` is better than ``b``:
    the judge's probability of answering A against B after the rendered
    template, averaged over both orders of the responses (so
    ``prefer(p, a, b) + prefer(p, b, a) == 1``). :meth:`rank` ranks K
    responses by their summed win probabilities; :meth:`score` is the expected
    value of the judge's answer on a numeric scale. ``model`` and
    ``tokenizer`` are borrowed (kept alive by the judge).

    ``template`` uses ``{principle} {prompt} {a} {b}``; ``principles`` (a list)
    and/or ``principles_file`` (one per line) form the constitution, one
    principle drawn per comparison from a stream keyed by ``seed`` and the
    comparison."""

    _kind = "judge"
    _free_fn = staticmethod(_raw.align_judge_free)

    def __init__(self, model: Model, tokenizer: Tokenizer, *, template: Optional[str] = None,
                 answers: Tuple[str, str] = ("A", "B"), principles: Sequence[str] = (),
                 principles_file: Optional[PathLike] = None, seed: Optional[int] = None,
                 name: Optional[str] = None, score_template: Optional[str] = None,
                 score_range: Tuple[int, int] = (1, 10), answer_eot: bool = False,
                 chat: bool = False, chat_template: Any = None) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"model must be a Model, not {type(model).__name__}")
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a Tokenizer, not {type(tokenizer).__name__}")
        p = _raw.align_judge_params.defaults()
        if template is not None:
            p.template_text = _text(template, "template")
        if score_template is not None:
            p.score_template = _text(score_template, "score_template")
        if len(answers) != 2:
            raise ValueError("answers must be two strings")
        p.answer_a = _text(answers[0], "answers[0]")
        p.answer_b = _text(answers[1], "answers[1]")
        if isinstance(principles, (str, bytes)):
            principles = [principles]
        plist = list(principles)
        parr = _string_array(plist, "principles") if plist else None
        if parr is not None:
            p.principles = ctypes.cast(parr, POINTER(c_char_p))
            p.n_principles = len(plist)
        if principles_file is not None:
            p.principles_file = _path(principles_file, "principles_file")
        if seed is not None:
            p.seed = _int(seed, "seed")
        if name is not None:
            p.name = _text(name, "name")
        p.score_min = _int(score_range[0], "score_range[0]")
        p.score_max = _int(score_range[1], "score_range[1]")
        if answer_eot:
            p.flags |= _raw.ALIGN_JUDGE_ANSWER_EOT
        tmpl = None
        if chat:
            p.flags |= _raw.ALIGN_JUDGE_CHAT
            t = ChatTemplate.coerce(chat_template)
            if t is not None:
                tmpl = t._to_c()
                p.chat_template = ctypes.pointer(tmpl)
        elif chat_template is not None:
            raise TypeError("chat_template goes with chat=True")
        h = _raw.align_judge_p()
        _raw.align_judge_create(byref(h), model._h, tokenizer._h, byref(p))
        self._adopt(h, borrowed=[model, tokenizer])

    @property
    def name(self) -> str:
        """The annotator name of the records the judge makes."""
        return _decode(_raw.align_judge_name(self._h) or b"")

    def prefer(self, prompt: str, a: str, b: str) -> float:
        """Probability that ``a`` is the better response to ``prompt``."""
        out = c_float()
        _raw.align_judge_prefer(self._h, _text(prompt, "prompt"), _text(a, "a"), _text(b, "b"),
                                byref(out))
        return float(out.value)

    def rank(self, prompt: str, responses: Sequence[str]) -> Tuple[List[int], List[float]]:
        """(places, mean win probabilities) of ``responses``: place 0 is the
        best, equal places tie."""
        if isinstance(responses, (str, bytes)):
            raise TypeError("responses must be a sequence of strings")
        rs = list(responses)
        k = len(rs)
        ranks = (c_int32 * max(k, 1))()
        wins = (c_float * max(k, 1))()
        _raw.align_judge_rank(self._h, _text(prompt, "prompt"), _string_array(rs, "responses"), k,
                              ranks, wins)
        return [int(ranks[i]) for i in range(k)], [float(wins[i]) for i in range(k)]

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> List[float]:
        """Expected scores of the pairs (prompts[i], responses[i]) on the
        judge's scale (default 1..10)."""
        pa, ra, n = RewardModel._pairs(prompts, responses)
        out = (c_float * max(n, 1))()
        _raw.align_judge_score(self._h, pa, ra, n, out)
        return [float(out[i]) for i in range(n)]

    def reward_model(self) -> "RewardModel":
        """A :class:`RewardModel` that scores with :meth:`score` (it keeps the
        judge alive)."""
        h = _raw.align_reward_model_p()
        _raw.align_reward_model_from_judge(byref(h), self._h)
        rm = RewardModel.__new__(RewardModel)
        rm._adopt(h, borrowed=[self])
        return rm


def _rank_adapter(fn: Callable[[str, List[str]], Sequence[int]], prompt: Any, responses: Any,
                  k: int, rank_out: Any, user_data: Any) -> int:
    rs = [_decode(responses[i]) for i in range(k)]
    places = list(fn(_decode(prompt), rs))
    if len(places) != k:
        raise ValueError(f"ranker returned {len(places)} places for {k} responses")
    for i, v in enumerate(places):
        rank_out[i] = _int(v, f"rank[{i}]")
    return 0


def _progress_adapter(fn: Callable[[int, int], Any], done: int, total: int, user_data: Any) -> int:
    r = fn(int(done), int(total))
    return -1 if r is False else 0


def collect(policy: Model, tokenizer: Tokenizer, prompts: "Dataset", out: "Dataset",
            ranker: Union[Judge, Callable[[str, List[str]], Sequence[int]]], *, k: int = 4,
            source: Optional[int] = None, annotator: Optional[str] = None, timestamp: int = 0,
            chat: bool = False, chat_template: Any = None, first: int = 0, count: int = 0,
            progress: Optional[Callable[[int, int], Any]] = None,
            max_new_tokens: Optional[int] = None, temperature: Optional[float] = None,
            top_k: Optional[int] = None, top_p: Optional[float] = None,
            seed: Optional[int] = None) -> int:
    """Samples ``k`` responses to every prompt of ``prompts`` from ``policy``,
    ranks them and appends ranking records to ``out`` (``align_collect``).
    Returns the number of records added.

    ``ranker`` is a :class:`Judge` (records: source AI, annotator = the judge's
    name) or ``fn(prompt, responses) -> places`` (0 = best, equal = tie; an
    exception propagates, the records of the prompts before stay in ``out``).
    ``progress(done, total)`` is called after each prompt (return False to
    stop)."""
    for obj, cls, what in ((policy, Model, "policy"), (tokenizer, Tokenizer, "tokenizer"),
                           (prompts, Dataset, "prompts"), (out, Dataset, "out")):
        if not isinstance(obj, cls):
            raise TypeError(f"{what} must be a {cls.__name__}, not {type(obj).__name__}")
    gp = _raw.align_generate_params.defaults()
    if max_new_tokens is not None:
        gp.max_new_tokens = _int(max_new_tokens, "max_new_tokens")
    if temperature is not None:
        gp.temperature = _number(temperature, "temperature")
    if top_k is not None:
        gp.top_k = _int(top_k, "top_k")
    if top_p is not None:
        gp.top_p = _number(top_p, "top_p")
    if seed is not None:
        gp.seed = _int(seed, "seed")
    p = _raw.align_collect_params.defaults()
    p.k = _int(k, "k")
    p.generate = ctypes.pointer(gp)
    p.timestamp = _int(timestamp, "timestamp")
    p.first = _int(first, "first")
    p.count = _int(count, "count")
    if source is not None:
        p.source = _int(int(source), "source")
    if annotator is not None:
        p.annotator = _text(annotator, "annotator")
    tmpl = None
    if chat:
        p.flags |= _raw.ALIGN_COLLECT_CHAT
        t = ChatTemplate.coerce(chat_template)
        if t is not None:
            tmpl = t._to_c()
            p.chat_template = ctypes.pointer(tmpl)
    elif chat_template is not None:
        raise TypeError("chat_template goes with chat=True")
    pcb = None
    if progress is not None:
        pcb = _callbacks.Callback(_raw.align_collect_progress_fn, progress, _progress_adapter)
        p.progress = pcb.pointer
    before = len(out)
    if isinstance(ranker, Judge):
        _raw.align_collect_judge(policy._h, tokenizer._h, prompts._h, out._h, ranker._h, byref(p))
    else:
        cb = _callbacks.Callback(_raw.align_rank_fn, ranker, _rank_adapter)
        _raw.align_collect(policy._h, tokenizer._h, prompts._h, out._h, cb.pointer, None, byref(p))
    del tmpl, pcb
    return len(out) - before


# ============================================================================
# feedback journal
# ============================================================================


class FeedbackKind(enum.IntEnum):
    """What a feedback request asks for (``ALIGN_FEEDBACK_*``)."""
    RANK = _raw.ALIGN_FEEDBACK_RANK
    LABEL = _raw.ALIGN_FEEDBACK_LABEL
    SCORE = _raw.ALIGN_FEEDBACK_SCORE


class RequestStatus(enum.IntEnum):
    """Status of a feedback request (``ALIGN_REQUEST_*``)."""
    PENDING = _raw.ALIGN_REQUEST_PENDING
    ANSWERED = _raw.ALIGN_REQUEST_ANSWERED
    CANCELED = _raw.ALIGN_REQUEST_CANCELED
    EXPIRED = _raw.ALIGN_REQUEST_EXPIRED


@dataclass(frozen=True)
class FeedbackRequest:
    """One request of a :class:`Journal` (a copy; see ``Journal.request``)."""
    id: int
    kind: FeedbackKind
    status: RequestStatus
    prompt: str
    responses: Tuple[str, ...]
    deadline: int
    submitted_at: int
    answered_at: int
    annotator: Optional[str]
    source: Source
    exported: bool


class Journal(_Owned):
    """Feedback requests answered later, kept in a crash-safe journal file
    (docs/feedback.md). Every call is written and fsync'ed before it returns;
    reopening the file restores every request. Safe to share between
    threads.

    >>> with Journal("feedback.jsonl") as j:
    ...     rid = j.submit("Which is better?", ["a", "b", "c"])
    ...     j.answer_rank(rid, [1, 0, 2], annotator="ann-1")
    ...     j.export(dataset)
    """

    _kind = "journal"
    _free_fn = staticmethod(_raw.align_journal_close)

    def __init__(self, path: PathLike, *, sync: bool = True) -> None:
        h = _raw.align_journal_p()
        _raw.align_journal_open(byref(h), _path(path), 0 if sync else _raw.ALIGN_JOURNAL_NOSYNC)
        self._adopt(h)

    @property
    def torn_bytes(self) -> int:
        """Bytes of a torn last line dropped when the journal was opened."""
        return int(_raw.align_journal_torn_bytes(self._h))

    def submit(self, prompt: str, responses: Sequence[str], kind: Any = FeedbackKind.RANK, *,
               deadline: int = 0) -> int:
        """Adds a request; returns its id. ``kind`` is a FeedbackKind or its
        name (``"rank"``, ``"label"``, ``"score"``); ``deadline`` in seconds
        since the epoch (0 = none)."""
        if isinstance(kind, str):
            try:
                kind = FeedbackKind[kind.upper()]
            except KeyError:
                raise ValueError(f"unknown feedback kind {kind!r}") from None
        if isinstance(responses, (str, bytes)):
            raise TypeError("responses must be a sequence of strings")
        resp = list(responses)
        arr = _string_array(resp, "responses")
        out = ctypes.c_int64()
        _raw.align_journal_submit(self._h, int(kind), _text(prompt, "prompt"), arr, len(resp),
                                  _int(deadline, "deadline"), byref(out))
        return out.value

    def _k(self, rid: int) -> int:
        return self._info(rid).k

    def _info(self, rid: int) -> _raw.align_feedback_request:
        r = _raw.align_feedback_request()
        _raw.align_journal_request(self._h, _int(rid, "id"), byref(r))
        return r

    @staticmethod
    def _pv(annotator: Optional[str], source: Any, timestamp: int) -> Any:
        pv = Provenance.coerce({"source": source, "annotator": annotator, "timestamp": timestamp})
        return byref(pv._to_c())

    def answer_rank(self, rid: int, ranking: Sequence[int], *, annotator: Optional[str] = None,
                    source: Any = Source.HUMAN, timestamp: int = 0) -> None:
        """``ranking[i]`` is the place of response i (0 = best, ties equal)."""
        k = self._k(rid)
        if len(ranking) != k:
            raise ValueError(f"request {rid} has {k} responses; got {len(ranking)} places")
        arr = (c_int32 * k)(*[_int(v, "ranking") for v in ranking])
        _raw.align_journal_answer_rank(self._h, rid, arr, self._pv(annotator, source, timestamp))

    def answer_label(self, rid: int, good: Any, *, annotator: Optional[str] = None,
                     source: Any = Source.HUMAN, timestamp: int = 0) -> None:
        """``good``: a bool per response (a single bool for one response)."""
        vals = [good] if isinstance(good, (bool, int)) else list(good)
        k = self._k(rid)
        if len(vals) != k:
            raise ValueError(f"request {rid} has {k} responses; got {len(vals)} labels")
        arr = (c_int32 * k)(*[int(v) for v in vals])
        _raw.align_journal_answer_label(self._h, rid, arr, self._pv(annotator, source, timestamp))

    def answer_score(self, rid: int, scores: Any, *, annotator: Optional[str] = None,
                     source: Any = Source.HUMAN, timestamp: int = 0) -> None:
        """``scores``: a number per response (a single number for one response)."""
        vals = [scores] if isinstance(scores, (int, float)) else list(scores)
        k = self._k(rid)
        if len(vals) != k:
            raise ValueError(f"request {rid} has {k} responses; got {len(vals)} scores")
        arr = (c_float * k)(*[float(v) for v in vals])
        _raw.align_journal_answer_score(self._h, rid, arr, self._pv(annotator, source, timestamp))

    def cancel(self, rid: int) -> None:
        _raw.align_journal_cancel(self._h, _int(rid, "id"))

    def expire(self, now: Optional[int] = None) -> int:
        """Expires the pending requests whose deadline is <= now (default:
        the current time); returns how many."""
        import time
        n = ctypes.c_int64()
        _raw.align_journal_expire(self._h, int(time.time()) if now is None else _int(now, "now"),
                                  byref(n))
        return n.value

    def pending(self) -> List[int]:
        """Ids of the pending requests, oldest first."""
        n = ctypes.c_int64()
        while True:
            cap = max(int(_raw.align_journal_count(self._h, _raw.ALIGN_REQUEST_PENDING)), 1)
            ids = (ctypes.c_int64 * cap)()
            try:
                _raw.align_journal_pending(self._h, ids, cap, byref(n))
            except _raw.AlignRangeError:
                continue   # another thread submitted meanwhile
            return list(ids[:n.value])

    def count(self, status: Any = RequestStatus.PENDING) -> int:
        return int(_raw.align_journal_count(self._h, int(RequestStatus(status))))

    def request(self, rid: int) -> FeedbackRequest:
        """A copy of request ``rid``."""
        r = self._info(rid)
        resp = tuple(_decode(_raw.align_journal_response(self._h, rid, i)) for i in range(r.k))
        return FeedbackRequest(r.id, FeedbackKind(r.kind), RequestStatus(r.status), _decode(r.prompt),
                               resp, r.deadline, r.submitted_at, r.answered_at,
                               None if r.annotator is None else _decode(r.annotator),
                               Source(r.source), bool(r.exported))

    def export(self, dataset: "Dataset", *, all: bool = False) -> int:
        """Adds the answered requests not exported before (every answered
        one with ``all``) to ``dataset``; returns how many requests."""
        n = ctypes.c_int64()
        _raw.align_journal_export(self._h, dataset._h, _raw.ALIGN_JOURNAL_EXPORT_ALL if all else 0,
                                  byref(n))
        return n.value
