/*
 * trainer.h — the trainer object shared by every algorithm (private).
 *
 * trainer.c owns everything an algorithm has in common: the public
 * align_trainer_* calls, argument checks, timing, the stop flag, the on_step
 * callback, non-finite guards, the optimiser update, rollback of a failed step,
 * and checkpoints (model.safetensors + optimizer.safetensors + trainer.json).
 *
 * An algorithm (sft.c; later reward, dpo, ppo, grpo) is one file that fills an
 * align__trainer_vtable: how to accumulate one step's gradients into the model,
 * how to evaluate, and which state (data position, RNG streams) must be saved,
 * restored and rolled back. It never calls the optimizer itself.
 */
#ifndef ALIGN_TRAIN_TRAINER_H
#define ALIGN_TRAIN_TRAINER_H

#include "core/core.h"

#include <jansson.h>
#include <stdatomic.h>

/* What an algorithm's accumulate() reports for one step. */
typedef struct align__step_ctx {
    /* Filled by the algorithm: loss, accuracy, tokens, sequences,
     * time_forward_ms, time_backward_ms and its own (future) fields. The
     * trainer fills the rest (step, epoch, learning_rate, grad_norm, ...). */
    align_step_stats stats;
    int64_t tokens_processed;  /* every token run through the model (tokens/s) */
    int     nonfinite;         /* a loss was NaN/inf: the update is skipped */
    int     empty;             /* nothing to learn (no loss token): skipped */
} align__step_ctx;

typedef struct align__trainer_vtable {
    const char *name;          /* "sft": written to trainer.json */
    int32_t     algorithm;     /* ALIGN_ALGO_* */
    /* Runs the step's micro-batches, adding gradients to the model (they
     * are zero on entry). Calls align__trainer_poll_stop() before each
     * micro-batch and returns its ALIGN_ECANCELED. ALIGN_DONE: no data left
     * and nothing accumulated. On any return other than ALIGN_OK the trainer
     * zeroes the gradients and restores the state saved by get_state. */
    int (*accumulate)(align_trainer *tr, align__step_ctx *ctx);
    /* Loss/accuracy over eval, no gradients kept, no state changed. */
    int (*evaluate)(align_trainer *tr, align_dataset *eval, align__step_ctx *ctx);
    /* Fraction of the planned work done, 0..1 (steps_done is the trainer's). */
    float (*progress)(const align_trainer *tr, int64_t steps_done);
    /* Passes over the data started. */
    int64_t (*epoch)(const align_trainer *tr);
    /* Iteration state (data position, RNG streams): state_size bytes, plain
     * old data. get_state never fails; set_state is all-or-nothing. */
    size_t state_size;
    void (*get_state)(const align_trainer *tr, void *state);
    int  (*set_state)(align_trainer *tr, const void *state);
    /* trainer.json: the state as JSON, and back (parse only, no side effect). */
    int (*state_to_json)(const align_trainer *tr, const void *state, json_t *obj);
    int (*state_from_json)(align_trainer *tr, const json_t *obj, void *state);
    /* What must match for a resume to continue bitwise (params, data size). */
    int (*setup_json)(const align_trainer *tr, json_t *obj);
    void (*free)(align_trainer *tr);
} align__trainer_vtable;

struct align_trainer {
    const align__trainer_vtable *vt;
    void            *algo;        /* the algorithm's own object */
    align_model     *policy;      /* borrowed */
    align_optimizer *opt;         /* borrowed */
    align_step_fn    on_step;
    void            *on_step_ud;
    atomic_int       stop;        /* request_stop; consumed by the step that sees it */
    int64_t          steps;       /* steps done, skipped ones included */
    int64_t          skipped;     /* steps whose update was skipped */
    int64_t          tokens_seen; /* loss tokens over all steps */
    int              finished;    /* on_step returned ALIGN_DONE */
    void            *state_tmp;   /* vt->state_size bytes: rollback snapshot */
    void            *state_tmp2;  /* vt->state_size bytes: resume staging */
    /* libuv (lib/async/step.c) */
    atomic_int       busy;         /* align_trainer_step_async in flight: other calls get ALIGN_EBUSY */
    int              free_pending; /* align_trainer_free came while busy: freed when the step ends */
    void            *async;        /* the request in flight */
    align__errbuf    err;
};

/* Allocates the common part (policy and opt borrowed); the algorithm sets
 * tr->algo afterwards. On failure *out = NULL and the error is reported. */
int  align__trainer_new(align_trainer **out, const align__trainer_vtable *vt, align_model *policy,
                        align_optimizer *opt, align_step_fn on_step, void *on_step_ud);
/* ALIGN_ECANCELED (and consumes the request) if a stop was requested. */
int  align__trainer_poll_stop(align_trainer *tr);

/* JSON helpers for state_to_json / state_from_json: 64-bit values are stored
 * as decimal strings so no precision is lost. */
int  align__json_set_u64(json_t *obj, const char *key, uint64_t v);
int  align__json_get_u64(const json_t *obj, const char *key, uint64_t *v);
int  align__json_set_i64(json_t *obj, const char *key, int64_t v);
int  align__json_get_i64(const json_t *obj, const char *key, int64_t *v);

/* libuv (lib/async/step.c): the step without the busy check, run on the
 * thread pool; the free that align_trainer_free defers while busy. */
int  align__trainer_step(align_trainer *tr, align_step_stats *stats);
void align__trainer_destroy(align_trainer *tr);
/* ALIGN_EBUSY while a step_async is in flight. The detail goes to the
 * per-thread message only: the handle's buffer belongs to the running step. */
#define ALIGN__TRAINER_NOT_BUSY(tr, fn)                                                              \
    do {                                                                                             \
        if (atomic_load(&(tr)->busy))                                                                \
            return align__error(NULL, ALIGN_EBUSY, fn ": a step is in flight (align_trainer_step_async)"); \
    } while (0)

#endif
