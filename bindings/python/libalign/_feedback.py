"""Reward models, judges, collection and the feedback journal of the Python binding
(re-exported by libalign.api and libalign)."""
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

from .api import (ChatTemplate, Dataset, Model, PathLike, Provenance, Source, Tokenizer, _Owned, _decode, _int, _number, _path, _string_array, _text)  # noqa: F401

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
