"""The trainers of the Python binding (re-exported by libalign.api and libalign)."""
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

from .api import (DPOLoss, Dataset, Model, Optimizer, PathLike, RankingMode, StepStats, Tokenizer, Truncation, _Owned, _int, _number, _path, _stats_from_pointer, _string_array, _text)  # noqa: F401
from ._feedback import RewardModel

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

