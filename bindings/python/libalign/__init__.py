"""libalign for Python: alignment training of language models (SFT, reward
models, RLHF) through the libalign C library, over ctypes.

Layers (see docs/python.md):

* ``libalign._loader``    finds and loads ``libalign.so.0``, checks the major
                          version, applies the OpenBLAS kernel remedy;
* ``libalign._raw``       a 1:1 mirror of ``align.h`` (one declaration per C
                          function, ctypes structs, constants, AlignError);
* ``libalign._callbacks`` Python callables as C callbacks, with exceptions
                          carried across the C call;
* ``libalign.api``        the classes below, re-exported here.

Example::

    import libalign as la
    with la.Tokenizer.bytes() as tok, \\
         la.Model(n_layer=2, n_head=2, n_embd=32, vocab_size=257, max_seq_len=64) as m, \\
         la.Dataset([{"prompt": "2+2=", "completion": "4"}]) as data, \\
         la.Optimizer(m, learning_rate=1e-3) as opt, \\
         la.Trainer.sft(m, tok, data, opt, max_steps=10, micro_batch=1) as tr:
        for stats in tr.steps():
            print(stats.step, stats.loss)
        print(m.generate(tok, "2+2=", temperature=0, max_new_tokens=4).text)
"""
from ._raw import (AlignBusyError, AlignCallbackError, AlignCanceled, AlignError,
                   AlignFileNotFoundError, AlignFormatError, AlignInternalError,
                   AlignInvalidArgument, AlignIOError, AlignMemoryError, AlignMisuseError,
                   AlignNonFiniteError, AlignRangeError, AlignVersionError, MissingSymbol)
from ._loader import LibraryNotFound, LibraryVersionMismatch, blas_remedy_state
from .api import (ChatTemplate, ClosedError, Dataset, DPOLoss, DPOTrainer, KTOTrainer, RankingMode,
                  FinishReason, ForwardOutput, Generation,
                  Judge, LogLevel, Model, ModelConfig, Optimizer, Provenance, RecordKind, RewardModel,
                  RLTrainer, RewardTrainer, Schedule, SFTTrainer, Source, StepStats, Tokenizer, Trainer, Truncation,
                  blas_info, collect, compute_info, get_compute, get_threads, set_compute,
                  Journal, FeedbackKind, RequestStatus, FeedbackRequest,
                  live_handles, set_log_handler, set_log_level, set_threads, version,
                  version_string)

__all__ = [
    "AlignError", "AlignInvalidArgument", "AlignMemoryError", "AlignIOError",
    "AlignFileNotFoundError", "AlignFormatError", "AlignVersionError", "AlignBusyError",
    "AlignCanceled", "AlignCallbackError", "AlignMisuseError", "AlignInternalError",
    "AlignRangeError", "AlignNonFiniteError", "MissingSymbol", "LibraryNotFound",
    "LibraryVersionMismatch", "ClosedError",
    "DPOTrainer", "KTOTrainer", "DPOLoss", "RankingMode",
    "Model", "Tokenizer", "Dataset", "Optimizer", "Trainer", "SFTTrainer", "RLTrainer", "RewardTrainer", "RewardModel",
    "Judge", "collect",
    "ModelConfig", "ForwardOutput", "Generation", "StepStats", "Provenance", "ChatTemplate",
    "Journal", "FeedbackKind", "RequestStatus", "FeedbackRequest",
    "RecordKind", "Source", "FinishReason", "Schedule", "Truncation", "LogLevel",
    "version", "version_string", "blas_info", "set_threads", "get_threads",
    "set_compute", "get_compute", "compute_info",
    "set_log_handler", "set_log_level", "live_handles", "blas_remedy_state",
]

__version__ = "0.3.1"
