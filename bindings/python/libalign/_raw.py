"""Layer 2 of the binding: a 1:1 mirror of include/align.h over ctypes.

Every public C function is declared once, as ``_fn("<C prototype>", restype,
argtypes)``: the prototype string is the header's, word for word (a test
compares them), so this file reads like the header. Nothing here is
"Pythonic": arguments are ctypes values, results are C results. Differences
from calling the raw CDLL:

* **Errors raise.** A negative ``int`` result (or a NULL pointer where the C
  function returns one) raises :class:`AlignError` (a subclass chosen by the
  code, e.g. :class:`AlignFileNotFoundError` for ``ALIGN_ENOENT``) carrying
  ``code``, ``name`` (``align_err_name``), ``message`` and ``function``. The
  message comes from the handle's ``*_errmsg`` when the call takes a mutable
  handle that has one, else from ``align_last_errmsg()`` (constructors, calls
  on const handles, the tokenizer), as align.h specifies.
* **Callback exceptions re-raise.** After every call, an exception stashed
  by a callback trampoline during that call (``_callbacks``) is raised, with
  its traceback, chained to the ``AlignError`` it caused.
* **Handles are typed.** Each opaque handle is a ``c_void_p`` subclass
  (``align_model_p`` ...), so a dataset cannot be passed for a model.

Non-error results (``ALIGN_OK``, ``ALIGN_DONE``) are returned unchanged.
"""
from __future__ import annotations

import ctypes
import re
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int,
                    c_int32, c_int64, c_size_t, c_uint, c_uint8, c_uint32, c_uint64, c_void_p, sizeof)
from typing import Any, Callable, Dict, List, Optional, Type

from . import _callbacks, _loader

#: The loaded shared library (``ctypes.CDLL``).
lib = _loader.load()

# ============================================================================
# constants (every enum value and #define of align.h)
# ============================================================================

ALIGN_VERSION_MAJOR = 0
ALIGN_VERSION_MINOR = 3
ALIGN_VERSION_PATCH = 1
#: The version of align.h this file mirrors (the loaded library may be newer).
ALIGN_VERSION_HEX = (ALIGN_VERSION_MAJOR << 16) | (ALIGN_VERSION_MINOR << 8) | ALIGN_VERSION_PATCH


def ALIGN_VERSION_AT_LEAST(x: int, y: int, z: int) -> bool:
    """The header macro: is the mirrored header at least version x.y.z?"""
    return ALIGN_VERSION_HEX >= ((x << 16) | (y << 8) | z)


# status and error codes (ABI: never renumbered)
ALIGN_OK = 0
ALIGN_DONE = 1
ALIGN_EINVAL = -1
ALIGN_ENOMEM = -2
ALIGN_EIO = -3
ALIGN_EFORMAT = -4
ALIGN_EVERSION = -5
ALIGN_EBUSY = -6
ALIGN_ECANCELED = -7
ALIGN_ECALLBACK = -8
ALIGN_EMISUSE = -9
ALIGN_EINTERNAL = -10
ALIGN_ERANGE = -11
ALIGN_ENOENT = -12
ALIGN_ENONFINITE = -13

# logging
ALIGN_LOG_ERROR = 0
ALIGN_LOG_WARN = 1
ALIGN_LOG_INFO = 2
ALIGN_LOG_DEBUG = 3

# compute precision (align_compute_set)
ALIGN_COMPUTE_FP32 = 0
ALIGN_COMPUTE_BF16 = 1

# model
ALIGN_ARCH_GPT2 = 0
ALIGN_ARCH_LLAMA = 1
ALIGN_MODEL_SCALAR_HEAD = 0x1
ALIGN_MODEL_UNTIED_HEAD = 0x2
ALIGN_MODEL_QKV_BIAS = 0x4
ALIGN_FROZEN = 0x1
ALIGN_CLONE_NO_ADAPTERS = 0x2

# optimizer
ALIGN_SCHEDULE_CONSTANT = 0
ALIGN_SCHEDULE_LINEAR = 1
ALIGN_SCHEDULE_COSINE = 2

# tokenizer
ALIGN_TOKENIZE_SPECIAL = 0x1

# dataset
ALIGN_RECORD_DEMO = 0
ALIGN_RECORD_CHAT = 1
ALIGN_RECORD_RANKING = 2
ALIGN_RECORD_LABEL = 3
ALIGN_RECORD_SCORE = 4
ALIGN_RECORD_PROMPT = 5
ALIGN_SOURCE_UNKNOWN = 0
ALIGN_SOURCE_HUMAN = 1
ALIGN_SOURCE_AI = 2
ALIGN_SOURCE_PROGRAM = 3
ALIGN_LENIENT = 0x1

# generation
ALIGN_FINISH_LENGTH = 0
ALIGN_FINISH_EOT = 1
ALIGN_FINISH_STOP = 2
ALIGN_GENERATE_IGNORE_EOT = 0x1
ALIGN_GENERATE_SPECIAL = 0x2

# chat template
ALIGN_CHAT_GENERATION_PROMPT = 0x1

# trainers
ALIGN_ALGO_SFT = 0
ALIGN_SFT_FULL_SEQUENCE_LOSS = 0x1
ALIGN_SFT_PACK = 0x2
ALIGN_SFT_SEQUENTIAL = 0x4
ALIGN_ALGO_REWARD = 1
ALIGN_REWARD_TRAIN_SEQUENTIAL = 0x2
ALIGN_METRICS_STEP = 0
ALIGN_METRICS_EVAL = 1
ALIGN_TRUNCATE_RIGHT = 0
ALIGN_TRUNCATE_LEFT = 1
ALIGN_TRUNCATE_DROP = 2

# online RL
ALIGN_ALGO_PPO = 4
ALIGN_ALGO_GRPO = 5
ALIGN_ALGO_RLOO = 6
ALIGN_RL_RAW_PROMPT = 0x1
ALIGN_RL_SEQUENTIAL = 0x2
ALIGN_GRPO_NO_STD = 0x100
ALIGN_GRPO_BATCH_STD = 0x200
ALIGN_PPO_ADAPTIVE_KL = 0x100
ALIGN_PPO_NO_WHITEN = 0x200
ALIGN_RL_AGG_TOKEN_MEAN = 0
ALIGN_RL_AGG_SEQ_MEAN = 1
ALIGN_RL_AGG_CONSTANT = 2

# preference optimisation
ALIGN_ALGO_DPO = 2
ALIGN_ALGO_KTO = 3
ALIGN_DPO_SIGMOID = 0
ALIGN_DPO_ROBUST = 1
ALIGN_DPO_IPO = 2
ALIGN_DPO_HINGE = 3
ALIGN_DPO_SIMPO = 4
ALIGN_DPO_ORPO = 5
ALIGN_RANKING_ALL_PAIRS = 0
ALIGN_RANKING_BEST_VS_REST = 1
ALIGN_RANKING_PLACKETT_LUCE = 2
ALIGN_DPO_LENGTH_NORM = 0x1
ALIGN_DPO_SEQUENTIAL = 0x2
ALIGN_DPO_RELEASE_REFERENCE = 0x4
ALIGN_DPO_NO_REFERENCE_CACHE = 0x8

# reward models
ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION = 0x1
ALIGN_SAVE_BF16 = 0x2
ALIGN_REWARD_CHAT = 0x1
ALIGN_REWARD_NORMALIZE_STD = 0x1

# collection and judges
ALIGN_COLLECT_CHAT = 0x1
ALIGN_JUDGE_ANSWER_EOT = 0x1
ALIGN_JUDGE_CHAT = 0x2
# feedback journal
ALIGN_FEEDBACK_RANK = 0
ALIGN_FEEDBACK_LABEL = 1
ALIGN_FEEDBACK_SCORE = 2
ALIGN_REQUEST_PENDING = 0
ALIGN_REQUEST_ANSWERED = 1
ALIGN_REQUEST_CANCELED = 2
ALIGN_REQUEST_EXPIRED = 3
ALIGN_JOURNAL_NOSYNC = 0x1
ALIGN_JOURNAL_EXPORT_ALL = 0x1

# ============================================================================
# errors
# ============================================================================


class AlignError(Exception):
    """A libalign call failed: ``code`` (negative ``ALIGN_E*``), ``name``
    (``"ALIGN_EINVAL"``), ``message`` (the detail, e.g. "train.jsonl:12:
    missing 'chosen'") and ``function`` (the C function's name)."""

    code: int
    name: str
    message: str
    function: Optional[str]

    def __init__(self, code: int, name: Optional[str] = None, message: str = "",
                 function: Optional[str] = None) -> None:
        if name is None:
            name = err_name(code)
        super().__init__(code, name, message)
        self.code = code
        self.name = name
        self.message = message
        self.function = function

    def __str__(self) -> str:
        where = ""
        if self.function and not self.message.startswith(self.function):
            where = f"{self.function}: "
        return f"{where}{self.message or self.name} [{self.name}]"

    def __reduce__(self) -> Any:
        return (type(self), (self.code, self.name, self.message, self.function))


class AlignInvalidArgument(AlignError, ValueError):
    """ALIGN_EINVAL: an argument is invalid (NULL, out of range)."""


class AlignMemoryError(AlignError, MemoryError):
    """ALIGN_ENOMEM."""


class AlignIOError(AlignError, OSError):
    """ALIGN_EIO: a read or write failed."""

    def __init__(self, code: int, name: Optional[str] = None, message: str = "",
                 function: Optional[str] = None) -> None:
        AlignError.__init__(self, code, name, message, function)
        self.errno = 5  # EIO
        self.strerror = message

    __str__ = AlignError.__str__


class AlignFileNotFoundError(AlignError, FileNotFoundError):
    """ALIGN_ENOENT: no such file."""

    def __init__(self, code: int, name: Optional[str] = None, message: str = "",
                 function: Optional[str] = None) -> None:
        AlignError.__init__(self, code, name, message, function)
        self.errno = 2  # ENOENT
        self.strerror = message

    __str__ = AlignError.__str__


class AlignFormatError(AlignError, ValueError):
    """ALIGN_EFORMAT: a malformed file or record."""


class AlignVersionError(AlignError):
    """ALIGN_EVERSION: unknown struct layout or file version."""


class AlignBusyError(AlignError):
    """ALIGN_EBUSY: an async step is in flight on the handle."""


class AlignCanceled(AlignError):
    """ALIGN_ECANCELED: stopped by request."""


class AlignCallbackError(AlignError):
    """ALIGN_ECALLBACK: a host callback returned an error status."""


class AlignMisuseError(AlignError, RuntimeError):
    """ALIGN_EMISUSE: the call is not valid in this state."""


class AlignInternalError(AlignError):
    """ALIGN_EINTERNAL: a bug in libalign."""


class AlignRangeError(AlignError):
    """ALIGN_ERANGE: an output buffer was too small."""


class AlignNonFiniteError(AlignError, ArithmeticError):
    """ALIGN_ENONFINITE: NaN or infinity in a loss or gradient."""


_ERROR_CLASSES: Dict[int, Type[AlignError]] = {
    ALIGN_EINVAL: AlignInvalidArgument, ALIGN_ENOMEM: AlignMemoryError, ALIGN_EIO: AlignIOError,
    ALIGN_EFORMAT: AlignFormatError, ALIGN_EVERSION: AlignVersionError,
    ALIGN_EBUSY: AlignBusyError, ALIGN_ECANCELED: AlignCanceled,
    ALIGN_ECALLBACK: AlignCallbackError, ALIGN_EMISUSE: AlignMisuseError,
    ALIGN_EINTERNAL: AlignInternalError, ALIGN_ERANGE: AlignRangeError,
    ALIGN_ENOENT: AlignFileNotFoundError, ALIGN_ENONFINITE: AlignNonFiniteError,
}


def error_for(code: int, message: str = "", function: Optional[str] = None) -> AlignError:
    """The AlignError (subclass) for a negative code."""
    return _ERROR_CLASSES.get(code, AlignError)(code, err_name(code), message, function)


class MissingSymbol(AttributeError):
    """The loaded library lacks a function this binding declares (an older
    library than the header this binding mirrors)."""


# ============================================================================
# opaque handles: distinct c_void_p subclasses
# ============================================================================


class _Handle(c_void_p):
    """Base of the opaque handle types. ``_errmsg`` names the per-handle
    message function, if the type has one."""

    _errmsg: Optional[str] = None

    @classmethod
    def from_param(cls, obj: Any) -> Any:
        # c_void_p itself would accept str, bytes and any int, turning a
        # mistake into a wild pointer: take only this handle type or None.
        if obj is None or isinstance(obj, cls):
            return obj
        raise TypeError(f"expected {cls.__name__} or None, not {type(obj).__name__}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {hex(self.value) if self.value else 'NULL'}>"


class align_model_p(_Handle):
    """``align_model *``"""
    _errmsg = "align_model_errmsg"


class align_tokenizer_p(_Handle):
    """``align_tokenizer *`` (failures are reported by align_last_errmsg)"""


class align_dataset_p(_Handle):
    """``align_dataset *``"""
    _errmsg = "align_dataset_errmsg"


class align_optimizer_p(_Handle):
    """``align_optimizer *``"""
    _errmsg = "align_optimizer_errmsg"


class align_trainer_p(_Handle):
    """``align_trainer *``"""
    _errmsg = "align_trainer_errmsg"


class align_generation_p(_Handle):
    """``align_generation *``"""


class align_text_sink_p(_Handle):
    """``align_text_sink *`` (only valid during a prompt-source callback)"""


class align_reward_model_p(_Handle):
    """``align_reward_model *``"""
    _errmsg = "align_reward_model_errmsg"


class align_judge_p(_Handle):
    """``align_judge *``"""
    _errmsg = "align_judge_errmsg"


class align_journal_p(_Handle):
    """``align_journal *`` (shared between threads: failures are reported by
    the per-thread align_last_errmsg, not the handle's message)"""


HANDLE_TYPES = {cls.__name__[:-2]: cls for cls in
                (align_model_p, align_tokenizer_p, align_dataset_p, align_optimizer_p,
                 align_trainer_p, align_generation_p, align_text_sink_p, align_reward_model_p,
                 align_judge_p, align_journal_p)}

# ============================================================================
# structures (docs/conventions.md, "Params structs"): struct_size is set to sizeof(cls) on creation
# ============================================================================


class _SizedStruct(Structure):
    """A size-prefixed params/stats struct. ``struct_size`` is set to
    ``ctypes.sizeof(cls)`` by the constructor (the prefix this binding knows).
    Subclasses with a C ``*_default_params`` function offer ``defaults()``."""

    _defaults_fn: Optional[str] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.struct_size = sizeof(type(self))

    @classmethod
    def defaults(cls) -> Any:
        """A struct filled by the library's defaults function."""
        if cls._defaults_fn is None:
            raise TypeError(f"{cls.__name__} has no defaults function")
        out = cls()
        globals()[cls._defaults_fn](ctypes.byref(out), sizeof(cls))
        return out

    def as_dict(self) -> Dict[str, Any]:
        """Field values by name (struct_size included)."""
        return {name: getattr(self, name) for name, *_ in self._fields_}

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"{type(self).__name__}({body})"


class align_model_params(_SizedStruct):
    _defaults_fn = "align_model_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("arch", c_int32),
        ("n_layer", c_int32),
        ("n_head", c_int32),
        ("n_embd", c_int32),
        ("vocab_size", c_int32),
        ("max_seq_len", c_int32),
        ("seed", c_uint64),
        ("n_threads", c_int32),
        ("reserved0", c_uint32),
        ("n_kv_head", c_int32),
        ("intermediate_size", c_int32),
        ("rope_theta", c_float),
        ("norm_eps", c_float),
    ]


class align_optimizer_params(_SizedStruct):
    _defaults_fn = "align_optimizer_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("learning_rate", c_float),
        ("beta1", c_float),
        ("beta2", c_float),
        ("eps", c_float),
        ("weight_decay", c_float),
        ("max_grad_norm", c_float),
        ("schedule", c_int32),
        ("warmup_steps", c_int32),
        ("total_steps", c_int32),
        ("min_lr_ratio", c_float),
    ]


class align_lora_params(_SizedStruct):
    _defaults_fn = "align_lora_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("r", c_int32),
        ("alpha", c_float),
        ("dropout", c_float),
        ("targets", c_char_p),
        ("seed", c_uint64),
        ("base_model_name_or_path", c_char_p),
    ]


class align_provenance(_SizedStruct):
    _defaults_fn = "align_provenance_default"
    _fields_ = [
        ("struct_size", c_uint32),
        ("source", c_int32),
        ("annotator", c_char_p),
        ("timestamp", c_int64),
    ]


class align_generate_params(_SizedStruct):
    _defaults_fn = "align_generate_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("max_new_tokens", c_int32),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("seed", c_uint64),
        ("stop", POINTER(c_char_p)),
        ("n_stop", c_int32),
    ]


class align_step_stats(_SizedStruct):
    _defaults_fn = "align_step_stats_init"
    _fields_ = [
        ("struct_size", c_uint32),
        ("algorithm", c_int32),
        ("step", c_int64),
        ("epoch", c_int64),
        ("tokens", c_int64),
        ("sequences", c_int64),
        ("loss", c_float),
        ("accuracy", c_float),
        ("learning_rate", c_float),
        ("grad_norm", c_float),
        ("tokens_per_sec", c_float),
        ("time_forward_ms", c_float),
        ("time_backward_ms", c_float),
        ("time_optimizer_ms", c_float),
        ("skipped", c_uint32),
        ("progress", c_float),
    ]


# ---- callback types (user_data last) ----------------------------------------
# typedef void (*align_log_fn)(int level, const char *message, void *user_data);
align_log_fn = CFUNCTYPE(None, c_int, c_char_p, c_void_p)
# typedef int (*align_step_fn)(const align_step_stats *s, void *user_data);
align_step_fn = CFUNCTYPE(c_int, POINTER(align_step_stats), c_void_p)
# typedef int (*align_prompt_fn)(align_text_sink *sink, void *user_data);
align_prompt_fn = CFUNCTYPE(c_int, c_void_p, c_void_p)


class align_sft_params(_SizedStruct):
    _defaults_fn = "align_sft_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("micro_batch", c_int32),
        ("grad_accum", c_int32),
        ("max_seq_len", c_int32),
        ("truncation", c_int32),
        ("max_steps", c_int32),
        ("epochs", c_int32),
        ("seed", c_uint64),
        ("system_prefix", c_char_p),
        ("user_prefix", c_char_p),
        ("assistant_prefix", c_char_p),
        ("on_step", align_step_fn),
        ("on_step_user_data", c_void_p),
    ]


class align_chat_template(_SizedStruct):
    _defaults_fn = "align_chat_template_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("system_prefix", c_char_p),
        ("user_prefix", c_char_p),
        ("assistant_prefix", c_char_p),
    ]


# typedef int (*align_score_fn)(const char *const *prompts, const char *const *responses,
#                               int32_t n, float *scores, void *user_data);
align_score_fn = CFUNCTYPE(c_int, POINTER(c_char_p), POINTER(c_char_p), c_int32, POINTER(c_float),
                           c_void_p)


class align_reward_params(_SizedStruct):
    _defaults_fn = "align_reward_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("max_seq_len", c_int32),
        ("batch_size", c_int32),
        ("truncation", c_int32),
        ("user_prefix", c_char_p),
        ("assistant_prefix", c_char_p),
    ]


# typedef int (*align_rank_fn)(const char *prompt, const char *const *responses, int32_t k,
#                              int32_t *rank_out, void *user_data);
align_rank_fn = CFUNCTYPE(c_int, c_char_p, POINTER(c_char_p), c_int32, POINTER(c_int32), c_void_p)
# typedef int (*align_collect_progress_fn)(int64_t done, int64_t total, void *user_data);
align_collect_progress_fn = CFUNCTYPE(c_int, c_int64, c_int64, c_void_p)


class align_collect_params(_SizedStruct):
    _defaults_fn = "align_collect_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("k", c_int32),
        ("source", c_int32),
        ("annotator", c_char_p),
        ("timestamp", c_int64),
        ("generate", POINTER(align_generate_params)),
        ("first", c_int64),
        ("count", c_int64),
        ("progress", align_collect_progress_fn),
        ("progress_user_data", c_void_p),
        ("chat_template", POINTER(align_chat_template)),
    ]


class align_judge_params(_SizedStruct):
    _defaults_fn = "align_judge_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("template_text", c_char_p),
        ("answer_a", c_char_p),
        ("answer_b", c_char_p),
        ("principles", POINTER(c_char_p)),
        ("n_principles", c_int32),
        ("principles_file", c_char_p),
        ("seed", c_uint64),
        ("name", c_char_p),
        ("score_template", c_char_p),
        ("score_min", c_int32),
        ("score_max", c_int32),
        ("chat_template", POINTER(align_chat_template)),
    ]


class align_feedback_request(_SizedStruct):
    _defaults_fn = "align_feedback_request_init"
    _fields_ = [
        ("struct_size", c_uint32),
        ("kind", c_int32),
        ("status", c_int32),
        ("k", c_int32),
        ("id", c_int64),
        ("deadline", c_int64),
        ("submitted_at", c_int64),
        ("answered_at", c_int64),
        ("prompt", c_char_p),
        ("annotator", c_char_p),
        ("source", c_int32),
        ("exported", c_uint32),
    ]


class align_rl_roles(_SizedStruct):
    _defaults_fn = "align_rl_roles_init"
    _fields_ = [
        ("struct_size", c_uint32),
        ("policy", align_model_p),
        ("policy_opt", align_optimizer_p),
        ("value", align_model_p),
        ("value_opt", align_optimizer_p),
        ("reference", align_model_p),
        ("reward", align_reward_model_p),
        ("tokenizer", align_tokenizer_p),
    ]


_RL_SAMPLING = [
    ("max_new_tokens", c_int32),
    ("temperature", c_float),
    ("top_k", c_int32),
    ("top_p", c_float),
    ("stop", POINTER(c_char_p)),
    ("n_stop", c_int32),
    ("max_prompt_len", c_int32),
]


class align_grpo_params(_SizedStruct):
    _defaults_fn = "align_grpo_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("group_size", c_int32),
        ("prompts_per_step", c_int32),
        ("iterations", c_int32),
        ("minibatches", c_int32),
        ("micro_batch", c_int32),
        ("max_steps", c_int32),
        ("epochs", c_int32),
        ("seed", c_uint64),
    ] + _RL_SAMPLING + [
        ("beta", c_float),
        ("clip_eps", c_float),
        ("clip_eps_high", c_float),
        ("loss_agg", c_int32),
        ("score_clip", c_float),
        ("system_prefix", c_char_p),
        ("user_prefix", c_char_p),
        ("assistant_prefix", c_char_p),
        ("on_step", align_step_fn),
        ("on_step_user_data", c_void_p),
    ]


class align_ppo_params(_SizedStruct):
    _defaults_fn = "align_ppo_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("rollouts_per_step", c_int32),
        ("ppo_epochs", c_int32),
        ("minibatches", c_int32),
        ("micro_batch", c_int32),
        ("max_steps", c_int32),
        ("epochs", c_int32),
        ("seed", c_uint64),
    ] + _RL_SAMPLING + [
        ("kl_coef", c_float),
        ("kl_target", c_float),
        ("kl_horizon", c_float),
        ("clip_eps", c_float),
        ("clip_eps_high", c_float),
        ("vf_clip", c_float),
        ("vf_coef", c_float),
        ("gamma", c_float),
        ("lam", c_float),
        ("missing_eos_penalty", c_float),
        ("score_clip", c_float),
        ("system_prefix", c_char_p),
        ("user_prefix", c_char_p),
        ("assistant_prefix", c_char_p),
        ("on_step", align_step_fn),
        ("on_step_user_data", c_void_p),
        ("ptx_data", align_dataset_p),
        ("ptx_coef", c_float),
        ("ptx_batch", c_int32),
    ]


class align_reward_train_params(_SizedStruct):
    _defaults_fn = "align_reward_train_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("micro_batch", c_int32),
        ("grad_accum", c_int32),
        ("max_seq_len", c_int32),
        ("truncation", c_int32),
        ("max_steps", c_int32),
        ("epochs", c_int32),
        ("seed", c_uint64),
        ("ranking_weight", c_float),
        ("label_weight", c_float),
        ("score_weight", c_float),
        ("margin_scale", c_float),
        ("center_coef", c_float),
        ("user_prefix", c_char_p),
        ("assistant_prefix", c_char_p),
        ("on_step", align_step_fn),
        ("on_step_user_data", c_void_p),
    ]


class align_dpo_params(_SizedStruct):
    _defaults_fn = "align_dpo_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("loss", c_int32),
        ("ranking", c_int32),
        ("beta", c_float),
        ("label_smoothing", c_float),
        ("simpo_gamma", c_float),
        ("sft_alpha", c_float),
        ("micro_batch", c_int32),
        ("grad_accum", c_int32),
        ("max_seq_len", c_int32),
        ("truncation", c_int32),
        ("max_steps", c_int32),
        ("epochs", c_int32),
        ("seed", c_uint64),
        ("on_step", align_step_fn),
        ("on_step_user_data", c_void_p),
    ]


class align_kto_params(_SizedStruct):
    _defaults_fn = "align_kto_default_params"
    _fields_ = [
        ("struct_size", c_uint32),
        ("flags", c_uint32),
        ("beta", c_float),
        ("desirable_weight", c_float),
        ("undesirable_weight", c_float),
        ("micro_batch", c_int32),
        ("grad_accum", c_int32),
        ("max_seq_len", c_int32),
        ("truncation", c_int32),
        ("max_steps", c_int32),
        ("epochs", c_int32),
        ("seed", c_uint64),
        ("on_step", align_step_fn),
        ("on_step_user_data", c_void_p),
    ]


# Data parallel (docs/distributed.md): a host communicator's callbacks.
# typedef int (*align_dist_allreduce_fn)(void *user_data, float *buf, size_t n);
align_dist_allreduce_fn = CFUNCTYPE(c_int, c_void_p, POINTER(c_float), c_size_t)
# typedef int (*align_dist_broadcast_fn)(void *user_data, void *buf, size_t bytes, int32_t root);
align_dist_broadcast_fn = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t, c_int32)
# typedef int (*align_dist_allgather_fn)(void *user_data, const void *send, void *recv, size_t bytes);
align_dist_allgather_fn = CFUNCTYPE(c_int, c_void_p, c_void_p, c_void_p, c_size_t)
# typedef int (*align_dist_errmsg_fn)(void *user_data, char *buf, size_t cap);
align_dist_errmsg_fn = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)


class align_dist(_SizedStruct):
    _defaults_fn = "align_dist_init"
    _fields_ = [
        ("struct_size", c_uint32),
        ("rank", c_int32),
        ("size", c_int32),
        ("flags", c_uint32),
        ("user_data", c_void_p),
        ("allreduce_sum_f32", align_dist_allreduce_fn),
        ("broadcast", align_dist_broadcast_fn),
        ("allgather", align_dist_allgather_fn),
        ("errmsg", align_dist_errmsg_fn),
    ]


STRUCT_TYPES = {cls.__name__: cls for cls in
                (align_model_params, align_optimizer_params, align_provenance,
                 align_generate_params, align_step_stats, align_sft_params,
                 align_chat_template, align_reward_params, align_collect_params,
                 align_judge_params, align_feedback_request, align_rl_roles, align_grpo_params,
                 align_ppo_params, align_reward_train_params, align_dpo_params,
                 align_kto_params, align_dist, align_lora_params)}
CALLBACK_TYPES = {"align_log_fn": align_log_fn, "align_step_fn": align_step_fn,
                  "align_prompt_fn": align_prompt_fn, "align_score_fn": align_score_fn,
                  "align_rank_fn": align_rank_fn,
                  "align_collect_progress_fn": align_collect_progress_fn,
                  "align_dist_allreduce_fn": align_dist_allreduce_fn,
                  "align_dist_broadcast_fn": align_dist_broadcast_fn,
                  "align_dist_allgather_fn": align_dist_allgather_fn,
                  "align_dist_errmsg_fn": align_dist_errmsg_fn}

# ============================================================================
# declarations
# ============================================================================

#: C prototype of every declared function, by name.
PROTOTYPES: Dict[str, str] = {}
#: Declared functions the loaded library does not export.
MISSING: List[str] = []

_PROTO_RE = re.compile(r"^(?P<ret>.*?)\b(?P<name>align_\w+)\s*\((?P<params>.*)\)$", re.S)


def _message_source(params: str) -> Optional[int]:
    """Index of the parameter whose handle's *_errmsg explains a failure:
    the first non-const single-pointer handle with an errmsg function.
    None means align_last_errmsg() (constructors, const handles)."""
    if params.strip() == "void":
        return None
    for i, p in enumerate(params.split(",")):
        p = " ".join(p.split())
        m = re.match(r"^(const )?(align_[a-z_]+) \*(?!\*)", p)
        if m and not m.group(1):
            cls = HANDLE_TYPES.get(m.group(2))
            if cls is not None and cls._errmsg:
                return i
    return None


_PTR_RESULTS = (c_void_p, c_char_p)


def _fn(prototype: str, restype: Any, argtypes: List[Any]) -> Any:
    """Declares the C function of ``prototype`` with its ctypes signature."""
    m = _PROTO_RE.match(" ".join(prototype.split()))
    if m is None:
        raise SyntaxError(f"bad prototype: {prototype!r}")
    name = m.group("name")
    PROTOTYPES[name] = " ".join(prototype.split())
    ret = m.group("ret").strip()
    if ret == "void":
        kind = "void"
    elif ret.endswith("*"):
        # Pointer results: NULL is a failure, except static strings that
        # align.h promises are never NULL.
        kind = "ptr" if name in _NULL_IS_ERROR else "value"
    elif ret in ("int", "int32_t", "int64_t"):
        kind = "status"
    else:  # unsigned, float
        kind = "value"
    msg_index = _message_source(m.group("params"))
    try:
        f = getattr(lib, name)
    except AttributeError:
        MISSING.append(name)

        def missing(*args: Any, **kwargs: Any) -> Any:
            raise MissingSymbol(f"{name} is not exported by {lib._name}: the library is older "
                                f"than the header this binding mirrors (libalign "
                                f"{ALIGN_VERSION_MAJOR}.{ALIGN_VERSION_MINOR}.{ALIGN_VERSION_PATCH})")

        missing.__name__ = name
        missing.__doc__ = prototype
        missing.argtypes = argtypes  # type: ignore[attr-defined]
        missing.restype = restype  # type: ignore[attr-defined]
        return missing
    f.argtypes = argtypes
    f.restype = restype
    f.errcheck = _make_errcheck(name, kind, msg_index)
    return f


# Pointer-returning functions for which NULL signals a failure.
_NULL_IS_ERROR = {"align_generation_text", "align_generation_tokens", "align_generation_logprobs",
                  "align_journal_response"}


def _failure_message(args: tuple, msg_index: Optional[int]) -> str:
    """The detail of a failure: the handle's *_errmsg when msg_index names a
    (non-NULL) handle argument, else (or if that is empty) align_last_errmsg()."""
    msg = b""
    if msg_index is not None and msg_index < len(args):
        h = args[msg_index]
        if isinstance(h, _Handle) and h.value and h._errmsg:
            msg = globals()[h._errmsg](h) or b""
    if not msg:
        msg = align_last_errmsg() or b""
    return msg.decode("utf-8", "replace")


def _make_errcheck(name: str, kind: str, msg_index: Optional[int]) -> Callable[..., Any]:
    def errcheck(result: Any, func: Any, args: tuple) -> Any:
        pending = _callbacks.take_pending()
        err: Optional[AlignError] = None
        if kind == "status" and result < 0:
            err = error_for(result, _failure_message(args, msg_index), name)
        elif kind == "ptr" and not result:
            err = error_for(ALIGN_EINVAL, _failure_message(args, None), name)
        if pending is not None:
            if err is not None:
                raise pending from err
            raise pending
        if err is not None:
            raise err
        return result
    return errcheck


# ---- version, errors, memory, logging, threads ------------------------------
align_version = _fn("unsigned align_version(void)", c_uint, [])
align_version_string = _fn("const char *align_version_string(void)", c_char_p, [])
align_strerror = _fn("const char *align_strerror(int code)", c_char_p, [c_int])
align_err_name = _fn("const char *align_err_name(int code)", c_char_p, [c_int])
align_last_errmsg = _fn("const char *align_last_errmsg(void)", c_char_p, [])
align_free = _fn("void align_free(void *ptr)", None, [c_void_p])
align_log_set = _fn("void align_log_set(align_log_fn fn, void *user_data)",
                    None, [align_log_fn, c_void_p])
align_log_set_level = _fn("void align_log_set_level(int max_level)", None, [c_int])
align_threads_set = _fn("int align_threads_set(int n_threads)", c_int, [c_int])
align_threads_get = _fn("int align_threads_get(void)", c_int, [])
align_blas_info = _fn("const char *align_blas_info(void)", c_char_p, [])
align_blas_slow_kernel = _fn("int align_blas_slow_kernel(const char **remedy_out)",
                             c_int, [POINTER(c_char_p)])
align_compute_set = _fn("int align_compute_set(int32_t mode)", c_int, [c_int32])
align_compute_get = _fn("int32_t align_compute_get(void)", c_int32, [])
align_compute_info = _fn("const char *align_compute_info(void)", c_char_p, [])

# ---- model ----------------------------------------------------------------------
align_model_default_params = _fn(
    "int align_model_default_params(align_model_params *out, size_t struct_size)",
    c_int, [POINTER(align_model_params), c_size_t])
align_model_create = _fn(
    "int align_model_create(align_model **out, const align_model_params *p)",
    c_int, [POINTER(align_model_p), POINTER(align_model_params)])
align_model_load = _fn(
    "int align_model_load(align_model **out, const char *path, const align_model_params *p)",
    c_int, [POINTER(align_model_p), c_char_p, POINTER(align_model_params)])
align_model_save = _fn(
    "int align_model_save(const align_model *m, const char *path)",
    c_int, [align_model_p, c_char_p])
align_model_clone = _fn(
    "int align_model_clone(align_model **out, const align_model *m, uint32_t flags)",
    c_int, [POINTER(align_model_p), align_model_p, c_uint32])
align_model_free = _fn("void align_model_free(align_model *m)", None, [align_model_p])
align_model_errmsg = _fn("const char *align_model_errmsg(const align_model *m)",
                         c_char_p, [align_model_p])
align_model_config = _fn(
    "int align_model_config(const align_model *m, align_model_params *out)",
    c_int, [align_model_p, POINTER(align_model_params)])
align_model_num_params = _fn("int64_t align_model_num_params(const align_model *m)",
                             c_int64, [align_model_p])
align_model_num_tensors = _fn("int32_t align_model_num_tensors(const align_model *m)",
                              c_int32, [align_model_p])
align_model_tensor = _fn(
    "int align_model_tensor(const align_model *m, int32_t i, const char **name_out, "
    "int32_t *ndim_out, int64_t shape_out[2])",
    c_int, [align_model_p, c_int32, POINTER(c_char_p), POINTER(c_int32), POINTER(c_int64)])
align_model_forward = _fn(
    "int align_model_forward(align_model *m, const int32_t *tokens, const int32_t *lengths, "
    "int32_t n_seq, int32_t max_len, float *token_logprobs, float *scalar, float *logits)",
    c_int, [align_model_p, POINTER(c_int32), POINTER(c_int32), c_int32, c_int32,
            POINTER(c_float), POINTER(c_float), POINTER(c_float)])
align_model_backward = _fn(
    "int align_model_backward(align_model *m, const float *d_token_logprobs, "
    "const float *d_scalar)",
    c_int, [align_model_p, POINTER(c_float), POINTER(c_float)])
align_model_zero_grad = _fn("int align_model_zero_grad(align_model *m)", c_int, [align_model_p])

# ---- LoRA adapters -------------------------------------------------------------------
align_lora_default_params = _fn(
    "int align_lora_default_params(align_lora_params *out, size_t struct_size)",
    c_int, [POINTER(align_lora_params), c_size_t])
align_model_lora_attach = _fn(
    "int align_model_lora_attach(align_model *m, const align_lora_params *p)",
    c_int, [align_model_p, POINTER(align_lora_params)])
align_model_lora_enable = _fn("int align_model_lora_enable(align_model *m, int32_t on)",
                              c_int, [align_model_p, c_int32])
align_model_lora_num_params = _fn("int64_t align_model_lora_num_params(const align_model *m)",
                                  c_int64, [align_model_p])
align_model_lora_save = _fn("int align_model_lora_save(const align_model *m, const char *dir)",
                            c_int, [align_model_p, c_char_p])
align_model_lora_load = _fn("int align_model_lora_load(align_model *m, const char *dir)",
                            c_int, [align_model_p, c_char_p])
align_model_lora_merge = _fn("int align_model_lora_merge(align_model *m)", c_int, [align_model_p])

# ---- optimizer --------------------------------------------------------------------
align_optimizer_default_params = _fn(
    "int align_optimizer_default_params(align_optimizer_params *out, size_t struct_size)",
    c_int, [POINTER(align_optimizer_params), c_size_t])
align_optimizer_create = _fn(
    "int align_optimizer_create(align_optimizer **out, align_model *m, "
    "const align_optimizer_params *p)",
    c_int, [POINTER(align_optimizer_p), align_model_p, POINTER(align_optimizer_params)])
align_optimizer_free = _fn("void align_optimizer_free(align_optimizer *o)",
                           None, [align_optimizer_p])
align_optimizer_errmsg = _fn("const char *align_optimizer_errmsg(const align_optimizer *o)",
                             c_char_p, [align_optimizer_p])
align_optimizer_step = _fn("int align_optimizer_step(align_optimizer *o, float *grad_norm_out)",
                           c_int, [align_optimizer_p, POINTER(c_float)])
align_optimizer_lr = _fn("float align_optimizer_lr(const align_optimizer *o)",
                         c_float, [align_optimizer_p])
align_optimizer_steps_done = _fn(
    "int64_t align_optimizer_steps_done(const align_optimizer *o)", c_int64, [align_optimizer_p])
align_optimizer_save = _fn("int align_optimizer_save(const align_optimizer *o, const char *path)",
                           c_int, [align_optimizer_p, c_char_p])
align_optimizer_load = _fn("int align_optimizer_load(align_optimizer *o, const char *path)",
                           c_int, [align_optimizer_p, c_char_p])

# ---- tokenizer --------------------------------------------------------------------
align_tokenizer_load = _fn("int align_tokenizer_load(align_tokenizer **out, const char *path)",
                           c_int, [POINTER(align_tokenizer_p), c_char_p])
align_tokenizer_load_gpt2 = _fn(
    "int align_tokenizer_load_gpt2(align_tokenizer **out, const char *encoder_json, "
    "const char *vocab_bpe)",
    c_int, [POINTER(align_tokenizer_p), c_char_p, c_char_p])
align_tokenizer_bytes = _fn("int align_tokenizer_bytes(align_tokenizer **out)",
                            c_int, [POINTER(align_tokenizer_p)])
align_tokenizer_free = _fn("void align_tokenizer_free(align_tokenizer *t)",
                           None, [align_tokenizer_p])
align_tokenizer_vocab_size = _fn("int32_t align_tokenizer_vocab_size(const align_tokenizer *t)",
                                 c_int32, [align_tokenizer_p])
align_tokenizer_eot = _fn("int32_t align_tokenizer_eot(const align_tokenizer *t)",
                          c_int32, [align_tokenizer_p])
align_tokenize = _fn(
    "int align_tokenize(const align_tokenizer *t, const char *text, size_t len, uint32_t flags, "
    "int32_t *ids, size_t cap, size_t *n_out)",
    c_int, [align_tokenizer_p, c_char_p, c_size_t, c_uint32, POINTER(c_int32), c_size_t,
            POINTER(c_size_t)])
align_detokenize = _fn(
    "int align_detokenize(const align_tokenizer *t, const int32_t *ids, size_t n, char *buf, "
    "size_t cap, size_t *len_out)",
    c_int, [align_tokenizer_p, POINTER(c_int32), c_size_t, POINTER(c_char), c_size_t,
            POINTER(c_size_t)])

# ---- dataset ------------------------------------------------------------------------
align_provenance_default = _fn(
    "int align_provenance_default(align_provenance *out, size_t struct_size)",
    c_int, [POINTER(align_provenance), c_size_t])
align_dataset_create = _fn("int align_dataset_create(align_dataset **out)",
                           c_int, [POINTER(align_dataset_p)])
align_dataset_free = _fn("void align_dataset_free(align_dataset *d)", None, [align_dataset_p])
align_dataset_errmsg = _fn("const char *align_dataset_errmsg(const align_dataset *d)",
                           c_char_p, [align_dataset_p])
align_dataset_size = _fn("int64_t align_dataset_size(const align_dataset *d)",
                         c_int64, [align_dataset_p])
align_dataset_load_jsonl = _fn(
    "int align_dataset_load_jsonl(align_dataset *d, const char *path, uint32_t flags)",
    c_int, [align_dataset_p, c_char_p, c_uint32])
align_dataset_skipped = _fn("int64_t align_dataset_skipped(const align_dataset *d)",
                            c_int64, [align_dataset_p])
align_dataset_save_jsonl = _fn(
    "int align_dataset_save_jsonl(const align_dataset *d, const char *path)",
    c_int, [align_dataset_p, c_char_p])
align_dataset_add_demo = _fn(
    "int align_dataset_add_demo(align_dataset *d, const char *prompt, const char *completion, "
    "const align_provenance *pv)",
    c_int, [align_dataset_p, c_char_p, c_char_p, POINTER(align_provenance)])
align_dataset_add_chat = _fn(
    "int align_dataset_add_chat(align_dataset *d, const char *const *roles, "
    "const char *const *contents, int32_t n_messages, const align_provenance *pv)",
    c_int, [align_dataset_p, POINTER(c_char_p), POINTER(c_char_p), c_int32,
            POINTER(align_provenance)])
align_dataset_add_ranking = _fn(
    "int align_dataset_add_ranking(align_dataset *d, const char *prompt, "
    "const char *const *responses, const int32_t *rank, int32_t k, const align_provenance *pv)",
    c_int, [align_dataset_p, c_char_p, POINTER(c_char_p), POINTER(c_int32), c_int32,
            POINTER(align_provenance)])
align_dataset_add_preference = _fn(
    "int align_dataset_add_preference(align_dataset *d, const char *prompt, const char *chosen, "
    "const char *rejected, const align_provenance *pv)",
    c_int, [align_dataset_p, c_char_p, c_char_p, c_char_p, POINTER(align_provenance)])
align_dataset_add_label = _fn(
    "int align_dataset_add_label(align_dataset *d, const char *prompt, const char *response, "
    "int32_t good, const align_provenance *pv)",
    c_int, [align_dataset_p, c_char_p, c_char_p, c_int32, POINTER(align_provenance)])
align_dataset_add_score = _fn(
    "int align_dataset_add_score(align_dataset *d, const char *prompt, const char *response, "
    "float score, const align_provenance *pv)",
    c_int, [align_dataset_p, c_char_p, c_char_p, c_float, POINTER(align_provenance)])
align_dataset_add_prompt = _fn(
    "int align_dataset_add_prompt(align_dataset *d, const char *prompt, "
    "const align_provenance *pv)",
    c_int, [align_dataset_p, c_char_p, POINTER(align_provenance)])
align_dataset_record_kind = _fn(
    "int align_dataset_record_kind(const align_dataset *d, int64_t i)",
    c_int, [align_dataset_p, c_int64])
align_dataset_record_json = _fn(
    "int align_dataset_record_json(const align_dataset *d, int64_t i, char **json_out)",
    c_int, [align_dataset_p, c_int64, POINTER(c_void_p)])
align_text_sink_add = _fn(
    "int align_text_sink_add(align_text_sink *sink, const char *text, size_t len)",
    c_int, [align_text_sink_p, c_char_p, c_size_t])
align_dataset_set_source = _fn(
    "int align_dataset_set_source(align_dataset *d, align_prompt_fn fn, void *user_data)",
    c_int, [align_dataset_p, align_prompt_fn, c_void_p])
align_dataset_pull = _fn(
    "int align_dataset_pull(align_dataset *d, int64_t min_new)",
    c_int, [align_dataset_p, c_int64])
# Returned as void*: the dataset being fed (NULL outside a source callback).
align_text_sink_dataset = _fn(
    "align_dataset *align_text_sink_dataset(align_text_sink *sink)",
    c_void_p, [align_text_sink_p])

# ---- generation -----------------------------------------------------------------------
align_generate_default_params = _fn(
    "int align_generate_default_params(align_generate_params *out, size_t struct_size)",
    c_int, [POINTER(align_generate_params), c_size_t])
align_generate = _fn(
    "int align_generate(align_model *m, const align_tokenizer *t, const char *const *prompts, "
    "int32_t n, const align_generate_params *p, align_generation **out)",
    c_int, [align_model_p, align_tokenizer_p, POINTER(c_char_p), c_int32,
            POINTER(align_generate_params), POINTER(align_generation_p)])
align_generation_free = _fn("void align_generation_free(align_generation *g)",
                            None, [align_generation_p])
align_generation_count = _fn("int32_t align_generation_count(const align_generation *g)",
                             c_int32, [align_generation_p])
# Returned as void* so that texts holding NUL bytes keep their length.
align_generation_text = _fn(
    "const char *align_generation_text(const align_generation *g, int32_t i, size_t *len_out)",
    c_void_p, [align_generation_p, c_int32, POINTER(c_size_t)])
align_generation_tokens = _fn(
    "const int32_t *align_generation_tokens(const align_generation *g, int32_t i, "
    "int32_t *n_out)",
    POINTER(c_int32), [align_generation_p, c_int32, POINTER(c_int32)])
align_generation_logprobs = _fn(
    "const float *align_generation_logprobs(const align_generation *g, int32_t i, "
    "int32_t *n_out)",
    POINTER(c_float), [align_generation_p, c_int32, POINTER(c_int32)])
align_generation_finish_reason = _fn(
    "int align_generation_finish_reason(const align_generation *g, int32_t i)",
    c_int, [align_generation_p, c_int32])

# ---- trainers ---------------------------------------------------------------------------
align_step_stats_init = _fn("int align_step_stats_init(align_step_stats *out, size_t struct_size)",
                            c_int, [POINTER(align_step_stats), c_size_t])
align_sft_default_params = _fn(
    "int align_sft_default_params(align_sft_params *out, size_t struct_size)",
    c_int, [POINTER(align_sft_params), c_size_t])
align_trainer_create_sft = _fn(
    "int align_trainer_create_sft(align_trainer **out, align_model *policy, "
    "const align_tokenizer *t, align_dataset *data, align_optimizer *opt, "
    "const align_sft_params *p)",
    c_int, [POINTER(align_trainer_p), align_model_p, align_tokenizer_p, align_dataset_p,
            align_optimizer_p, POINTER(align_sft_params)])
align_dpo_default_params = _fn(
    "int align_dpo_default_params(align_dpo_params *out, size_t struct_size)",
    c_int, [POINTER(align_dpo_params), c_size_t])
align_trainer_create_dpo = _fn(
    "int align_trainer_create_dpo(align_trainer **out, align_model *policy, "
    "align_model *reference, const align_tokenizer *t, align_dataset *prefs, "
    "align_optimizer *opt, const align_dpo_params *p)",
    c_int, [POINTER(align_trainer_p), align_model_p, align_model_p, align_tokenizer_p,
            align_dataset_p, align_optimizer_p, POINTER(align_dpo_params)])
align_kto_default_params = _fn(
    "int align_kto_default_params(align_kto_params *out, size_t struct_size)",
    c_int, [POINTER(align_kto_params), c_size_t])
align_trainer_create_kto = _fn(
    "int align_trainer_create_kto(align_trainer **out, align_model *policy, "
    "align_model *reference, const align_tokenizer *t, align_dataset *data, "
    "align_optimizer *opt, const align_kto_params *p)",
    c_int, [POINTER(align_trainer_p), align_model_p, align_model_p, align_tokenizer_p,
            align_dataset_p, align_optimizer_p, POINTER(align_kto_params)])
align_trainer_step = _fn("int align_trainer_step(align_trainer *tr, align_step_stats *stats)",
                         c_int, [align_trainer_p, POINTER(align_step_stats)])
align_trainer_evaluate = _fn(
    "int align_trainer_evaluate(align_trainer *tr, align_dataset *eval, align_step_stats *stats)",
    c_int, [align_trainer_p, align_dataset_p, POINTER(align_step_stats)])
align_trainer_save = _fn("int align_trainer_save(const align_trainer *tr, const char *dir)",
                         c_int, [align_trainer_p, c_char_p])
align_trainer_resume = _fn("int align_trainer_resume(align_trainer *tr, const char *dir)",
                           c_int, [align_trainer_p, c_char_p])
align_trainer_request_stop = _fn("int align_trainer_request_stop(align_trainer *tr)",
                                 c_int, [align_trainer_p])
align_trainer_free = _fn("void align_trainer_free(align_trainer *tr)", None, [align_trainer_p])
align_trainer_errmsg = _fn("const char *align_trainer_errmsg(const align_trainer *tr)",
                           c_char_p, [align_trainer_p])
align_dist_init = _fn("int align_dist_init(align_dist *d, size_t struct_size)", c_int,
                      [POINTER(align_dist), c_size_t])
align_trainer_set_dist = _fn("int align_trainer_set_dist(align_trainer *tr, const align_dist *d)",
                             c_int, [align_trainer_p, POINTER(align_dist)])
align_trainer_metrics = _fn(
    "int align_trainer_metrics(const align_trainer *tr, int32_t which, const char *const **names, "
    "const double **values, int32_t *n)",
    c_int, [align_trainer_p, c_int32, POINTER(POINTER(c_char_p)), POINTER(POINTER(c_double)),
            POINTER(c_int32)])
align_trainer_metric = _fn(
    "int align_trainer_metric(const align_trainer *tr, int32_t which, const char *name, "
    "double *value)",
    c_int, [align_trainer_p, c_int32, c_char_p, POINTER(c_double)])


# ---- chat template ------------------------------------------------------------------------
align_chat_template_default_params = _fn(
    "int align_chat_template_default_params(align_chat_template *out, size_t struct_size)",
    c_int, [POINTER(align_chat_template), c_size_t])
align_chat_tokenize = _fn(
    "int align_chat_tokenize(const align_tokenizer *t, const align_chat_template *tmpl, "
    "const char *const *roles, const char *const *contents, int32_t n_messages, uint32_t flags, "
    "int32_t *ids, uint8_t *mask, size_t cap, size_t *n_out)",
    c_int, [align_tokenizer_p, POINTER(align_chat_template), POINTER(c_char_p), POINTER(c_char_p),
            c_int32, c_uint32, POINTER(c_int32), POINTER(c_uint8), c_size_t, POINTER(c_size_t)])
align_generate_tokens = _fn(
    "int align_generate_tokens(align_model *m, const align_tokenizer *t, const int32_t *tokens, "
    "const int32_t *lengths, int32_t n, const align_generate_params *p, align_generation **out)",
    c_int, [align_model_p, align_tokenizer_p, POINTER(c_int32), POINTER(c_int32), c_int32,
            POINTER(align_generate_params), POINTER(align_generation_p)])
align_generate_chat = _fn(
    "int align_generate_chat(align_model *m, const align_tokenizer *t, "
    "const align_chat_template *tmpl, const char *const *roles, const char *const *contents, "
    "const int32_t *n_messages, int32_t n, const align_generate_params *p, "
    "align_generation **out)",
    c_int, [align_model_p, align_tokenizer_p, POINTER(align_chat_template), POINTER(c_char_p),
            POINTER(c_char_p), POINTER(c_int32), c_int32, POINTER(align_generate_params),
            POINTER(align_generation_p)])

# ---- reward models ---------------------------------------------------------------------
align_model_save_ex = _fn(
    "int align_model_save_ex(const align_model *m, const char *path, uint32_t flags)",
    c_int, [align_model_p, c_char_p, c_uint32])
align_reward_default_params = _fn(
    "int align_reward_default_params(align_reward_params *out, size_t struct_size)",
    c_int, [POINTER(align_reward_params), c_size_t])
align_reward_model_from_model = _fn(
    "int align_reward_model_from_model(align_reward_model **out, align_model *m, "
    "const align_tokenizer *t, const align_reward_params *p)",
    c_int, [POINTER(align_reward_model_p), align_model_p, align_tokenizer_p,
            POINTER(align_reward_params)])
align_reward_model_from_callback = _fn(
    "int align_reward_model_from_callback(align_reward_model **out, align_score_fn fn, "
    "void *user_data)",
    c_int, [POINTER(align_reward_model_p), align_score_fn, c_void_p])
align_reward_model_free = _fn("void align_reward_model_free(align_reward_model *rm)",
                              None, [align_reward_model_p])
align_reward_model_errmsg = _fn(
    "const char *align_reward_model_errmsg(const align_reward_model *rm)",
    c_char_p, [align_reward_model_p])
align_reward_model_score = _fn(
    "int align_reward_model_score(align_reward_model *rm, const char *const *prompts, "
    "const char *const *responses, int32_t n, float *scores)",
    c_int, [align_reward_model_p, POINTER(c_char_p), POINTER(c_char_p), c_int32, POINTER(c_float)])
align_reward_model_normalize = _fn(
    "int align_reward_model_normalize(align_reward_model *rm, const char *const *prompts, "
    "const char *const *responses, int32_t n, uint32_t flags)",
    c_int, [align_reward_model_p, POINTER(c_char_p), POINTER(c_char_p), c_int32, c_uint32])
align_reward_model_set_normalization = _fn(
    "int align_reward_model_set_normalization(align_reward_model *rm, float bias, float scale)",
    c_int, [align_reward_model_p, c_float, c_float])
align_reward_model_get_normalization = _fn(
    "int align_reward_model_get_normalization(const align_reward_model *rm, float *bias, "
    "float *scale)",
    c_int, [align_reward_model_p, POINTER(c_float), POINTER(c_float)])

# ---- reward-model trainer ---------------------------------------------------
align_reward_train_default_params = _fn(
    "int align_reward_train_default_params(align_reward_train_params *out, size_t struct_size)",
    c_int, [POINTER(align_reward_train_params), c_size_t])
align_trainer_create_reward = _fn(
    "int align_trainer_create_reward(align_trainer **out, align_model *m, "
    "const align_tokenizer *t, align_dataset *data, align_optimizer *opt, "
    "const align_reward_train_params *p)",
    c_int, [POINTER(align_trainer_p), align_model_p, align_tokenizer_p, align_dataset_p,
            align_optimizer_p, POINTER(align_reward_train_params)])

# ---- collection of rankings, judge models ------------------------------------
align_collect_default_params = _fn(
    "int align_collect_default_params(align_collect_params *out, size_t struct_size)",
    c_int, [POINTER(align_collect_params), c_size_t])
align_collect = _fn(
    "int align_collect(align_model *policy, const align_tokenizer *t, align_dataset *prompts, "
    "align_dataset *out, align_rank_fn rank, void *user_data, const align_collect_params *p)",
    c_int, [align_model_p, align_tokenizer_p, align_dataset_p, align_dataset_p, align_rank_fn,
            c_void_p, POINTER(align_collect_params)])
align_judge_default_params = _fn(
    "int align_judge_default_params(align_judge_params *out, size_t struct_size)",
    c_int, [POINTER(align_judge_params), c_size_t])
align_judge_create = _fn(
    "int align_judge_create(align_judge **out, align_model *m, const align_tokenizer *t, "
    "const align_judge_params *p)",
    c_int, [POINTER(align_judge_p), align_model_p, align_tokenizer_p, POINTER(align_judge_params)])
align_judge_free = _fn("void align_judge_free(align_judge *j)", None, [align_judge_p])
align_judge_errmsg = _fn("const char *align_judge_errmsg(const align_judge *j)", c_char_p,
                         [align_judge_p])
align_judge_name = _fn("const char *align_judge_name(const align_judge *j)", c_char_p,
                       [align_judge_p])
align_judge_prefer = _fn(
    "int align_judge_prefer(align_judge *j, const char *prompt, const char *resp_a, "
    "const char *resp_b, float *p_a_out)",
    c_int, [align_judge_p, c_char_p, c_char_p, c_char_p, POINTER(c_float)])
align_judge_rank = _fn(
    "int align_judge_rank(align_judge *j, const char *prompt, const char *const *responses, "
    "int32_t k, int32_t *rank_out, float *win_prob_out)",
    c_int, [align_judge_p, c_char_p, POINTER(c_char_p), c_int32, POINTER(c_int32), POINTER(c_float)])
align_judge_score = _fn(
    "int align_judge_score(align_judge *j, const char *const *prompts, "
    "const char *const *responses, int32_t n, float *scores)",
    c_int, [align_judge_p, POINTER(c_char_p), POINTER(c_char_p), c_int32, POINTER(c_float)])
align_reward_model_from_judge = _fn(
    "int align_reward_model_from_judge(align_reward_model **out, align_judge *j)",
    c_int, [POINTER(align_reward_model_p), align_judge_p])
align_collect_judge = _fn(
    "int align_collect_judge(align_model *policy, const align_tokenizer *t, "
    "align_dataset *prompts, align_dataset *out, align_judge *j, const align_collect_params *p)",
    c_int, [align_model_p, align_tokenizer_p, align_dataset_p, align_dataset_p, align_judge_p,
            POINTER(align_collect_params)])
# align_collect's details are in align_last_errmsg(), not on a handle argument
align_collect.errcheck = _make_errcheck("align_collect", "status", None)
align_collect_judge.errcheck = _make_errcheck("align_collect_judge", "status", None)


# ---- feedback journal -------------------------------------------------------------------
align_journal_open = _fn("int align_journal_open(align_journal **out, const char *path, uint32_t flags)",
                         c_int, [POINTER(align_journal_p), c_char_p, c_uint32])
align_journal_close = _fn("void align_journal_close(align_journal *j)", None, [align_journal_p])
align_journal_errmsg = _fn("const char *align_journal_errmsg(const align_journal *j)",
                           c_char_p, [align_journal_p])
align_journal_torn_bytes = _fn("int64_t align_journal_torn_bytes(align_journal *j)",
                               c_int64, [align_journal_p])
align_journal_submit = _fn(
    "int align_journal_submit(align_journal *j, int32_t kind, const char *prompt, "
    "const char *const *responses, int32_t k, int64_t deadline, int64_t *id_out)",
    c_int, [align_journal_p, c_int32, c_char_p, POINTER(c_char_p), c_int32, c_int64,
            POINTER(c_int64)])
align_journal_answer_rank = _fn(
    "int align_journal_answer_rank(align_journal *j, int64_t id, const int32_t *rank, "
    "const align_provenance *pv)",
    c_int, [align_journal_p, c_int64, POINTER(c_int32), POINTER(align_provenance)])
align_journal_answer_label = _fn(
    "int align_journal_answer_label(align_journal *j, int64_t id, const int32_t *good, "
    "const align_provenance *pv)",
    c_int, [align_journal_p, c_int64, POINTER(c_int32), POINTER(align_provenance)])
align_journal_answer_score = _fn(
    "int align_journal_answer_score(align_journal *j, int64_t id, const float *scores, "
    "const align_provenance *pv)",
    c_int, [align_journal_p, c_int64, POINTER(c_float), POINTER(align_provenance)])
align_journal_cancel = _fn("int align_journal_cancel(align_journal *j, int64_t id)",
                           c_int, [align_journal_p, c_int64])
align_journal_expire = _fn(
    "int align_journal_expire(align_journal *j, int64_t now, int64_t *n_expired)",
    c_int, [align_journal_p, c_int64, POINTER(c_int64)])
align_journal_count = _fn("int64_t align_journal_count(align_journal *j, int32_t status)",
                          c_int64, [align_journal_p, c_int32])
align_journal_pending = _fn(
    "int align_journal_pending(align_journal *j, int64_t *ids, int64_t cap, int64_t *n_out)",
    c_int, [align_journal_p, POINTER(c_int64), c_int64, POINTER(c_int64)])
align_feedback_request_init = _fn(
    "int align_feedback_request_init(align_feedback_request *out, size_t struct_size)",
    c_int, [POINTER(align_feedback_request), c_size_t])
align_journal_request = _fn(
    "int align_journal_request(align_journal *j, int64_t id, align_feedback_request *out)",
    c_int, [align_journal_p, c_int64, POINTER(align_feedback_request)])
align_journal_response = _fn(
    "const char *align_journal_response(align_journal *j, int64_t id, int32_t i)",
    c_char_p, [align_journal_p, c_int64, c_int32])
align_journal_export = _fn(
    "int align_journal_export(align_journal *j, align_dataset *d, uint32_t flags, int64_t *n_out)",
    c_int, [align_journal_p, align_dataset_p, c_uint32, POINTER(c_int64)])

# ---- online RL ------------------------------------------------------------------------
align_rl_roles_init = _fn("int align_rl_roles_init(align_rl_roles *out, size_t struct_size)",
                          c_int, [POINTER(align_rl_roles), c_size_t])
align_grpo_default_params = _fn(
    "int align_grpo_default_params(align_grpo_params *out, size_t struct_size)",
    c_int, [POINTER(align_grpo_params), c_size_t])
align_rloo_default_params = _fn(
    "int align_rloo_default_params(align_grpo_params *out, size_t struct_size)",
    c_int, [POINTER(align_grpo_params), c_size_t])
align_ppo_default_params = _fn(
    "int align_ppo_default_params(align_ppo_params *out, size_t struct_size)",
    c_int, [POINTER(align_ppo_params), c_size_t])
align_trainer_create_grpo = _fn(
    "int align_trainer_create_grpo(align_trainer **out, const align_rl_roles *roles, "
    "align_dataset *prompts, const align_grpo_params *p)",
    c_int, [POINTER(align_trainer_p), POINTER(align_rl_roles), align_dataset_p,
            POINTER(align_grpo_params)])
align_trainer_create_rloo = _fn(
    "int align_trainer_create_rloo(align_trainer **out, const align_rl_roles *roles, "
    "align_dataset *prompts, const align_grpo_params *p)",
    c_int, [POINTER(align_trainer_p), POINTER(align_rl_roles), align_dataset_p,
            POINTER(align_grpo_params)])
align_trainer_create_ppo = _fn(
    "int align_trainer_create_ppo(align_trainer **out, const align_rl_roles *roles, "
    "align_dataset *prompts, const align_ppo_params *p)",
    c_int, [POINTER(align_trainer_p), POINTER(align_rl_roles), align_dataset_p,
            POINTER(align_ppo_params)])



def err_name(code: int) -> str:
    """``align_err_name(code)`` as a str."""
    return (align_err_name(code) or b"ALIGN_UNKNOWN").decode("ascii", "replace")


def strerror(code: int) -> str:
    """``align_strerror(code)`` as a str."""
    return (align_strerror(code) or b"").decode("utf-8", "replace")
