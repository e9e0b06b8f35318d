/*
 * trainer.h — the trainer object shared by every algorithm (private).
 *
 * trainer.c is the transaction engine. It owns what every algorithm has in
 * common: the public align_trainer_* calls, argument checks, timing, the stop
 * flag, the on_step callback, non-finite guards, the optimiser updates, the
 * rollback of a failed step, named metrics, and checkpoints (one model file
 * and one optimizer file per trainable role, the algorithm's own files, and
 * trainer.json, committed together by replacing the folder atomically).
 *
 * A trainer binds ROLES, not one model:
 *
 *   role          model            optimizer   updated  saved  example
 *   trainable     align_model *    non-NULL    yes      yes    "policy", "value"
 *   frozen        align_model *    NULL        no       no     "reference", "reward"
 *
 * Role 0 is the main role ("policy"): tr->policy and tr->opt alias it. Its
 * files keep the names model.safetensors / optimizer.safetensors; another
 * trainable role R writes R.safetensors / R.optimizer.safetensors. A trainer
 * whose roles are all frozen is evaluation-only (step, save and resume
 * return ALIGN_EMISUSE). A trained model belongs to exactly one role (a value
 * head on the policy's trunk is the policy role itself, one optimizer);
 * frozen roles may share a model.
 *
 * An algorithm (sft.c; next reward, dpo, ppo, grpo) is one file that fills
 * an align__trainer_vtable. It never calls an optimizer itself.
 *
 * ONE STEP (align_trainer_step), whatever the algorithm:
 *   0. if vt->rollout is set: rollout(tr, ctx) — a phase of its own that may
 *      run long (generate, score, advantages, wait for feedback). It is its
 *      own transaction: vt->begin before, vt->rollback if it fails; what a
 *      successful rollout produced is kept (in the algorithm's state) even if
 *      the optimisation that follows fails, so a rejected or stopped update
 *      never redoes (or re-asks for) the rollouts. It decides itself whether
 *      there is anything to do (e.g. only when its buffer is used up).
 *   1. vt->begin(tr): remember what a rollback restores (data position,
 *      buffer cursor, RNG streams, ...);
 *   2. zero every trainable role's gradients; vt->accumulate(tr, ctx) runs
 *      the micro-batches (polling align__trainer_poll_stop before each) and
 *      adds gradients to the trainable roles' models;
 *   3. gradient norm of every trainable role; a non-finite loss or norm in
 *      ANY role skips the update of ALL roles;
 *   4. on_step(stats) — before anything is applied; < 0 discards the step;
 *   5. align_optimizer_step() for every trainable role (cannot fail once all
 *      norms are finite); counters advance; the metrics are published.
 * Any failure in 1-5 zeroes the gradients and calls vt->rollback, so every
 * trainable role's weights and optimizer, the data position and the
 * algorithm's state are as before, and the same step can be run again.
 *
 * CHECKPOINTS: align_trainer_save asks vt->save_state for a JSON object
 * (small scalars) and lets it write files of any size with
 * align__ckpt_write (each recorded with its digest). align_trainer_resume
 * parses and checks EVERYTHING first — trainer.json, digests of every file,
 * the weights into temporary models, the optimizer moments into temporary
 * optimizers, and the algorithm's state through vt->load_state into a staged
 * object — and only then applies: vt->apply_state (all-or-nothing), then the
 * roles (cannot fail). A failed resume leaves the trainer as it was.
 *
 * METRICS: accumulate/evaluate/rollout report (name, value) pairs with
 * align__metric(ctx, "loss", v). Names are static strings (or owned by the
 * algorithm for the trainer's lifetime) and follow the names other libraries
 * use: "loss", "accuracy", "tokens", "rewards/chosen", "objective/kl", ...
 * The trainer adds "learning_rate", "grad_norm" (and "R/learning_rate",
 * "R/grad_norm" for another trainable role R), "tokens_per_sec", "epoch".
 */
#ifndef ALIGN_TRAIN_TRAINER_H
#define ALIGN_TRAIN_TRAINER_H

#include "core/core.h"

#include <jansson.h>
#include <stdatomic.h>

#define ALIGN__MAX_ROLES 8
#define ALIGN__MAX_METRICS 64
#define ALIGN__ROLE_NAME_CAP 24
#define ALIGN__DIST_SUMS 32

/* A role as the algorithm's constructor declares it. */
typedef struct align__role {
    const char      *name;   /* [a-z0-9_]{1,23}, unique; copied */
    align_model     *model;  /* borrowed */
    align_optimizer *opt;    /* borrowed; NULL = frozen (never updated, not saved) */
} align__role;

/* Named metrics of one step or evaluation. */
typedef struct align__metrics {
    int32_t     n;
    const char *names[ALIGN__MAX_METRICS];   /* borrowed: static storage */
    double      values[ALIGN__MAX_METRICS];
} align__metrics;

/* What rollout/accumulate/evaluate report for one step. */
typedef struct align__step_ctx {
    /* Filled by the algorithm: loss, accuracy, tokens, sequences,
     * time_forward_ms, time_backward_ms. The trainer fills the rest (step,
     * epoch, learning_rate, grad_norm, ...). */
    align_step_stats stats;
    int64_t tokens_processed;  /* every token run through the model (tokens/s) */
    int     nonfinite;         /* a loss was NaN/inf: the update is skipped */
    int     empty;             /* nothing to learn (no loss token): skipped */
    align__metrics metrics;    /* the algorithm's named metrics */
    /* Data parallel (lib/dist): partial sums of this rank's share that
     * vt->finish turns into the step's statistics. The trainer sums them
     * over the ranks (in rank order) before it calls finish. */
    double  sums[ALIGN__DIST_SUMS];
    int32_t n_sums;
} align__step_ctx;

/* Adds or replaces the metric `name` (static storage). ALIGN_ERANGE when
 * ALIGN__MAX_METRICS are in use (the metric is dropped). */
int align__metric(align__step_ctx *ctx, const char *name, double value);

/* The checkpoint being written or read (given to save_state / load_state). */
typedef struct align__ckpt align__ckpt;
/* save_state: writes `name` ([A-Za-z0-9_.-], not a role's file, not
 * trainer.json) into the checkpoint; its digest and size go to trainer.json. */
int align__ckpt_write(align__ckpt *ck, const char *name, const align__chunk *chunks, int n_chunks);
/* load_state: reads a file save_state wrote, checked against its digest
 * (ALIGN_EFORMAT if it does not match, ALIGN_ENOENT if it was not saved).
 * *data (NUL-terminated past *len) is freed with align__free. */
int align__ckpt_read(align__ckpt *ck, const char *name, char **data, size_t *len);
/* Error buffer of the checkpoint operation (for load_state's messages). */
align__errbuf *align__ckpt_err(align__ckpt *ck);

typedef struct align__trainer_vtable {
    const char *name;          /* "sft": written to trainer.json */
    int32_t     algorithm;     /* ALIGN_ALGO_* */

    /* Optional (NULL = none). Runs before accumulate in every step (see
     * "ONE STEP" above); does nothing and returns ALIGN_OK when no rollout
     * is due. Polls align__trainer_poll_stop while it works; ALIGN_DONE =
     * no more prompts: the run is over. May report metrics. */
    int (*rollout)(align_trainer *tr, align__step_ctx *ctx);
    /* Runs the step's micro-batches, adding gradients to the trainable roles
     * (zero on entry). Calls align__trainer_poll_stop() before each
     * micro-batch and returns its ALIGN_ECANCELED. ALIGN_DONE: no data left
     * and nothing accumulated. */
    int (*accumulate)(align_trainer *tr, align__step_ctx *ctx);
    /* Metrics over eval, no gradients kept, no state changed. */
    int (*evaluate)(align_trainer *tr, align_dataset *eval, align__step_ctx *ctx);
    /* Fraction of the planned work done, 0..1 (steps_done is the trainer's). */
    float (*progress)(const align_trainer *tr, int64_t steps_done);
    /* Passes over the data started. */
    int64_t (*epoch)(const align_trainer *tr);

    /* Transaction of the algorithm's own state (data position, RNG streams,
     * buffer cursors, KL coefficient, ...). begin remembers it (may fail:
     * ALIGN_ENOMEM; then nothing runs); rollback restores what begin saw and
     * never fails. Both optional (NULL = stateless). */
    int  (*begin)(align_trainer *tr);
    void (*rollback)(align_trainer *tr);

    /* Checkpoint. save_state writes the state as JSON members of `state`
     * (64-bit values with align__json_set_*) and any number of files of any
     * size with align__ckpt_write. load_state parses and validates into a
     * staged object (*staged, freed by free_staged) WITHOUT changing the
     * trainer; apply_state installs it, all-or-nothing (it is applied before
     * the roles, whose restore cannot fail). All optional together. */
    int  (*save_state)(const align_trainer *tr, json_t *state, align__ckpt *ck);
    int  (*load_state)(align_trainer *tr, const json_t *state, align__ckpt *ck, void **staged);
    int  (*apply_state)(align_trainer *tr, void *staged);
    void (*free_staged)(align_trainer *tr, void *staged);

    /* What must match for a resume to continue bitwise (params, data), as
     * members of obj. The trainer adds every role's model shape. */
    int (*setup_json)(const align_trainer *tr, json_t *obj);
    void (*free)(align_trainer *tr);
    /* Optional: after a successful accumulate, turns ctx->sums (summed over
     * the ranks when distributed) into ctx->stats and the metrics. An
     * algorithm that has it reports its loss statistics only through it. */
    void (*finish)(align_trainer *tr, align__step_ctx *ctx);
} align__trainer_vtable;

typedef struct align__trainer_role {
    char             name[ALIGN__ROLE_NAME_CAP];
    align_model     *model;     /* borrowed */
    align_optimizer *opt;       /* borrowed; NULL = frozen */
    char             m_lr[ALIGN__ROLE_NAME_CAP + 16], m_gn[ALIGN__ROLE_NAME_CAP + 16]; /* metric names */
} align__trainer_role;

struct align_trainer {
    const align__trainer_vtable *vt;
    void            *algo;        /* the algorithm's own object */
    align__trainer_role roles[ALIGN__MAX_ROLES];
    int32_t          n_roles;
    int32_t          n_trainable;
    align_model     *policy;      /* roles[0].model (borrowed) */
    align_optimizer *opt;         /* roles[0].opt (borrowed; NULL if frozen) */
    align_step_fn    on_step;
    void            *on_step_ud;
    atomic_int       stop;        /* request_stop; consumed by the step that sees it */
    int64_t          steps;       /* steps done, skipped ones included */
    int64_t          skipped;     /* steps whose update was skipped */
    int64_t          tokens_seen; /* loss tokens over all steps */
    int              finished;    /* on_step returned ALIGN_DONE, or the data ended */
    align__metrics   m_step;      /* last successful step */
    align__metrics   m_eval;      /* last evaluate */
    const align__metrics *m_pending; /* the step being decided (inside on_step) */
    /* libuv (lib/async/step.c) */
    atomic_int       busy;         /* align_trainer_step_async in flight: other calls get ALIGN_EBUSY */
    int              free_pending; /* align_trainer_free came while busy: freed when the step ends */
    void            *async;        /* the request in flight */
    /* data parallel (lib/dist/dist.c): dist_on when dist.size > 1 */
    align_dist       dist;
    int              dist_on;
    align__errbuf    err;
};

/* Allocates the common part over n_roles roles (1..ALIGN__MAX_ROLES; role 0
 * is the main one); the algorithm sets tr->algo afterwards. Checks: names
 * valid and unique, every optimizer belongs to its role's model, a trainable
 * model in no other role. On failure *out = NULL and the error is reported
 * (align_last_errmsg). */
int  align__trainer_new_roles(align_trainer **out, const align__trainer_vtable *vt, const align__role *roles,
                              int32_t n_roles, align_step_fn on_step, void *on_step_ud);
/* The model of the role `name`, NULL if there is none. */
align_model *align__trainer_role_model(const align_trainer *tr, const char *name);
/* ALIGN_ECANCELED (and consumes the request) if a stop was requested. */
int  align__trainer_poll_stop(align_trainer *tr);

/* The digest and size trainer.json records for a checkpoint file (tests use
 * it to re-seal a file they edited, so that resume reaches its contents). */
int  align__file_digest(align__errbuf *eb, const char *path, uint64_t *digest, uint64_t *size);

/* JSON helpers for save_state / load_state: 64-bit values are stored as
 * decimal strings so no precision is lost. The getters accept only a
 * string of decimal digits (a leading '-' for i64) that fits the type:
 * "", "+1", " 1", "1e3" and out-of-range values are ALIGN_EFORMAT. */
int  align__json_set_u64(json_t *obj, const char *key, uint64_t v);
int  align__json_get_u64(const json_t *obj, const char *key, uint64_t *v);
int  align__json_set_i64(json_t *obj, const char *key, int64_t v);
int  align__json_get_i64(const json_t *obj, const char *key, int64_t *v);

/* libuv (lib/async/step.c): the step without the busy check, run on the
 * thread pool; the free that align_trainer_free defers while busy. */
int  align__trainer_step(align_trainer *tr, align_step_stats *stats);
void align__trainer_destroy(align_trainer *tr);
/* The trainer whose async step runs on this thread (set by lib/async/step.c
 * around it): its own callbacks (on_step reading metrics) are not "busy". */
extern _Thread_local align_trainer *align__trainer_async_self;
/* ALIGN_EBUSY while a step_async is in flight. The detail goes to the
 * per-thread message only: the handle's buffer belongs to the running step. */
#define ALIGN__TRAINER_NOT_BUSY(tr, fn)                                                              \
    do {                                                                                             \
        if (atomic_load(&(tr)->busy) && align__trainer_async_self != (tr))                           \
            return align__error(NULL, ALIGN_EBUSY, fn ": a step is in flight (align_trainer_step_async)"); \
    } while (0)

#endif
