/*
 * trainer.c — the transaction engine every algorithm shares (trainer.h
 * describes the roles, the step and the checkpoint protocol): one step over
 * all trainable roles with its guards and callbacks, evaluation, named
 * metrics, stop requests, checkpoints.
 *
 * Non-finite values (docs/trainer.md): the step returns ALIGN_OK with
 * stats.skipped = 1; the data of that step is consumed, the weights and the
 * optimizers are untouched, and a warning is logged. The step counts towards
 * max_steps (so a run always ends) but not towards the optimizers' steps.
 *
 * A checkpoint folder is committed as a whole: save writes a sibling folder
 * .NAME.new-PID-SEQ, fsyncs it, and swaps it with NAME in one
 * renameat2(RENAME_EXCHANGE) (where the file system lacks it: NAME is renamed
 * to .NAME.old-PID-SEQ first, and a later save or resume renames it back if
 * the process died in between). Whatever moment a crash hits, NAME is the
 * last complete checkpoint; the next save removes what dead processes left.
 */
#define _GNU_SOURCE /* renameat2 */
#include "train/trainer.h"
#include "dist/dist.h"
#include "model/model.h"
#include "optim/optim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define TRAINER_FORMAT "libalign-trainer"
#define TRAINER_FORMAT_VERSION 2
/* Counters in trainer.json stay below 2^53: exact as doubles (Python, JSON
 * tools) and far from int64 overflow when a step adds to them. */
#define COUNTER_MAX ((int64_t)1 << 53)

/* ---- construction -------------------------------------------------------- */

static int valid_role_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= ALIGN__ROLE_NAME_CAP)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

int align__trainer_new_roles(align_trainer **out, const align__trainer_vtable *vt, const align__role *roles,
                             int32_t n_roles, align_step_fn on_step, void *on_step_ud)
{
    *out = NULL;
    if (!vt || !roles || n_roles < 1 || n_roles > ALIGN__MAX_ROLES)
        return align__error(NULL, ALIGN_EINVAL, "trainer: 1..%d roles are needed (got %d)", ALIGN__MAX_ROLES,
                            (int)n_roles);
    for (int32_t i = 0; i < n_roles; i++) {
        const align__role *r = &roles[i];
        if (!valid_role_name(r->name))
            return align__error(NULL, ALIGN_EINVAL, "trainer: role %d has an invalid name (a-z, 0-9, _; 1..%d chars)",
                                (int)i, ALIGN__ROLE_NAME_CAP - 1);
        if (!r->model)
            return align__error(NULL, ALIGN_EINVAL, "trainer: role '%s' has no model", r->name);
        if (r->opt && align__optimizer_model(r->opt) != r->model)
            return align__error(NULL, ALIGN_EINVAL, "trainer: the optimizer of role '%s' was created for another model",
                                r->name);
        for (int32_t j = 0; j < i; j++) {
            if (strcmp(roles[j].name, r->name) == 0)
                return align__error(NULL, ALIGN_EINVAL, "trainer: two roles are named '%s'", r->name);
            if (roles[j].model == r->model && (roles[j].opt || r->opt))
                return align__error(NULL, ALIGN_EINVAL,
                                    "trainer: roles '%s' and '%s' share a model that one of them trains",
                                    roles[j].name, r->name);
        }
    }
    align_trainer *tr = align__calloc(1, sizeof *tr);
    if (!tr)
        return align__error(NULL, ALIGN_ENOMEM, "trainer: out of memory");
    tr->vt = vt;
    for (int32_t i = 0; i < n_roles; i++) {
        align__trainer_role *r = &tr->roles[i];
        snprintf(r->name, sizeof r->name, "%s", roles[i].name);
        r->model = roles[i].model;
        r->opt = roles[i].opt;
        if (tr->n_trainable == 0 && r->opt) {
            snprintf(r->m_lr, sizeof r->m_lr, "learning_rate");
            snprintf(r->m_gn, sizeof r->m_gn, "grad_norm");
        } else {
            /* from the caller's copy: with r->name, gcc -O1 -Wrestrict sees an overlap */
            snprintf(r->m_lr, sizeof r->m_lr, "%s/learning_rate", roles[i].name);
            snprintf(r->m_gn, sizeof r->m_gn, "%s/grad_norm", roles[i].name);
        }
        tr->n_trainable += r->opt != NULL;
    }
    tr->n_roles = n_roles;
    tr->policy = tr->roles[0].model;
    tr->opt = tr->roles[0].opt;
    tr->on_step = on_step;
    tr->on_step_ud = on_step_ud;
    atomic_init(&tr->stop, 0);
    *out = tr;
    return ALIGN_OK;
}

align_model *align__trainer_role_model(const align_trainer *tr, const char *name)
{
    for (int32_t i = 0; tr && name && i < tr->n_roles; i++)
        if (strcmp(tr->roles[i].name, name) == 0)
            return tr->roles[i].model;
    return NULL;
}

ALIGN_API void align_trainer_free(align_trainer *tr)
{
    if (!tr)
        return;
    if (atomic_load(&tr->busy)) {   /* libuv: freed by the step's completion */
        tr->free_pending = 1;
        return;
    }
    align__trainer_destroy(tr);
}

void align__trainer_destroy(align_trainer *tr)
{
    if (tr->vt && tr->vt->free)
        tr->vt->free(tr);
    align__free(tr);
}

ALIGN_API const char *align_trainer_errmsg(const align_trainer *tr)
{
    if (!tr)
        return "trainer is NULL";
    return align__errmsg(&tr->err);
}

ALIGN_API int align_trainer_request_stop(align_trainer *tr)
{
    /* Only a lock-free atomic store: safe from any thread or a signal handler. */
    if (!tr)
        return ALIGN_EINVAL;
    atomic_store(&tr->stop, 1);
    return ALIGN_OK;
}

int align__trainer_poll_stop(align_trainer *tr)
{
    if (atomic_exchange(&tr->stop, 0))
        return align__error(&tr->err, ALIGN_ECANCELED, "step stopped by align_trainer_request_stop");
    return ALIGN_OK;
}

ALIGN_API int align_step_stats_init(align_step_stats *out, size_t struct_size)
{
    align_step_stats zero;
    memset(&zero, 0, sizeof zero);
    return align__params_defaults(out, struct_size, &zero, sizeof zero, "align_step_stats_init");
}

/* Copies the prefix of *src the caller declared in out->struct_size. */
static int stats_out(align_trainer *tr, align_step_stats *out, const align_step_stats *src)
{
    if (!out)
        return ALIGN_OK;
    size_t n = align__out_size(out, sizeof *src);
    if (n == 0)
        return align__error(&tr->err, ALIGN_EINVAL,
                            "align_step_stats.struct_size is not set (use align_step_stats_init)");
    uint32_t theirs = out->struct_size;
    memcpy((char *)out + sizeof(uint32_t), (const char *)src + sizeof(uint32_t), n - sizeof(uint32_t));
    out->struct_size = theirs;
    return ALIGN_OK;
}

static int check_stats_arg(align_trainer *tr, const align_step_stats *stats)
{
    if (stats && stats->struct_size < sizeof(uint32_t) * 2)
        return align__error(&tr->err, ALIGN_EINVAL,
                            "align_step_stats.struct_size is %u (use align_step_stats_init)",
                            (unsigned)stats->struct_size);
    return ALIGN_OK;
}

/* ---- metrics -------------------------------------------------------------------- */

int align__metric(align__step_ctx *ctx, const char *name, double value)
{
    align__metrics *m = &ctx->metrics;
    for (int32_t i = 0; i < m->n; i++)
        if (strcmp(m->names[i], name) == 0) {
            m->values[i] = value;
            return ALIGN_OK;
        }
    if (m->n >= ALIGN__MAX_METRICS)
        return ALIGN_ERANGE;
    m->names[m->n] = name;
    m->values[m->n] = value;
    m->n++;
    return ALIGN_OK;
}

static const align__metrics *metrics_of(const align_trainer *tr, int32_t which)
{
    if (which == ALIGN_METRICS_EVAL)
        return &tr->m_eval;
    return tr->m_pending ? tr->m_pending : &tr->m_step;
}

ALIGN_API int align_trainer_metrics(const align_trainer *tr, int32_t which, const char *const **names,
                                    const double **values, int32_t *n)
{
    if (n)
        *n = 0;
    if (!tr || !names || !values || !n)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_metrics: NULL argument");
    ALIGN__TRAINER_NOT_BUSY(tr, "align_trainer_metrics");
    if (which != ALIGN_METRICS_STEP && which != ALIGN_METRICS_EVAL)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_metrics: which is %d (ALIGN_METRICS_STEP or _EVAL)",
                            (int)which);
    const align__metrics *m = metrics_of(tr, which);
    *names = m->names;
    *values = m->values;
    *n = m->n;
    return ALIGN_OK;
}

ALIGN_API int align_trainer_metric(const align_trainer *tr, int32_t which, const char *name, double *value)
{
    const char *const *names;
    const double *values;
    int32_t n;
    int rc = align_trainer_metrics(tr, which, &names, &values, &n);
    if (rc)
        return rc;
    if (!name || !value)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_metric: NULL argument");
    for (int32_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) {
            *value = values[i];
            return ALIGN_OK;
        }
    return align__error(NULL, ALIGN_ENOENT, "align_trainer_metric: no metric '%s' in the last %s", name,
                        which == ALIGN_METRICS_EVAL ? "evaluation" : "step");
}

/* ---- one step ------------------------------------------------------------- */

static void zero_grads(align_trainer *tr)
{
    for (int32_t i = 0; i < tr->n_roles; i++)
        if (tr->roles[i].opt)
            align_model_zero_grad(tr->roles[i].model);
}

static void rollback(align_trainer *tr)
{
    zero_grads(tr);
    if (tr->vt->rollback)
        tr->vt->rollback(tr);
}

static int begin(align_trainer *tr)
{
    int rc = tr->vt->begin ? tr->vt->begin(tr) : ALIGN_OK;
    return rc < 0 ? align__error(&tr->err, rc, "step: cannot snapshot the algorithm's state") : ALIGN_OK;
}

static int main_role(const align_trainer *tr)
{
    for (int32_t i = 0; i < tr->n_roles; i++)
        if (tr->roles[i].opt)
            return i;
    return 0;
}

static int step_done(align_trainer *tr, align__step_ctx *ctx, align_step_stats *stats)
{
    tr->finished = 1;
    ctx->stats.step = tr->steps;
    ctx->stats.epoch = tr->vt->epoch(tr);
    ctx->stats.progress = 1.0f;
    stats_out(tr, stats, &ctx->stats);
    return ALIGN_DONE;
}

ALIGN_API int align_trainer_step(align_trainer *tr, align_step_stats *stats)
{
    if (tr)
        ALIGN__TRAINER_NOT_BUSY(tr, "align_trainer_step");
    return align__trainer_step(tr, stats);
}

int align__trainer_step(align_trainer *tr, align_step_stats *stats)
{
    if (!tr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_step: trainer is NULL");
    align__error_clear(&tr->err);
    int rc = check_stats_arg(tr, stats);
    if (rc)
        return rc;
    if (tr->n_trainable == 0)
        return align__error(&tr->err, ALIGN_EMISUSE,
                            "align_trainer_step: this trainer was created without an optimizer (evaluation only)");

    align__step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.stats.struct_size = sizeof ctx.stats;
    ctx.stats.algorithm = tr->vt->algorithm;
    if (tr->finished)
        return step_done(tr, &ctx, stats);

    double t0 = align__now_sec();
    /* 0. The rollout phase: its own transaction, kept once it succeeded. */
    if (tr->vt->rollout) {
        if ((rc = begin(tr)) < 0)
            return rc;
        rc = tr->vt->rollout(tr, &ctx);
        if (tr->dist_on) /* a rank that failed or stopped stops every rank */
            rc = align__dist_agree_rc(tr, rc, "rollout");
        if (rc != ALIGN_OK) {
            rollback(tr);
            if (rc == ALIGN_DONE)
                return step_done(tr, &ctx, stats);
            return rc < 0 ? rc : align__error(&tr->err, ALIGN_EINTERNAL, "rollout returned %d", rc);
        }
    }

    /* 1-2. The optimisation: begin, zero gradients, accumulate. */
    if ((rc = begin(tr)) < 0)
        return rc;
    for (int32_t i = 0; i < tr->n_roles; i++) {
        if (!tr->roles[i].opt)
            continue;
        rc = align_model_zero_grad(tr->roles[i].model);
        if (rc < 0) {
            rollback(tr);
            return align__error(&tr->err, rc, "step: %s", align_model_errmsg(tr->roles[i].model));
        }
    }
    rc = tr->vt->accumulate(tr, &ctx);
    if (tr->dist_on) {
        /* Data parallel: a stop seen by one rank stops all; the outcome and
         * the partial sums are agreed before anything is applied. */
        if (rc == ALIGN_OK)
            rc = align__trainer_poll_stop(tr);
        rc = align__dist_after_accumulate(tr, rc, &ctx);
    }
    if (rc == ALIGN_DONE) {
        rollback(tr);
        return step_done(tr, &ctx, stats);
    }
    if (rc < 0) {
        rollback(tr);
        return rc;
    }
    if (tr->vt->finish)
        tr->vt->finish(tr, &ctx);
    /* The gradients of every rank's share summed: what follows (norm, clip,
     * guard, step) sees the global gradient, identically on every rank. */
    if (tr->dist_on && !ctx.nonfinite && !ctx.empty && (rc = align__dist_reduce_grads(tr)) < 0) {
        rollback(tr);
        return rc;
    }

    /* 3. Norms and the non-finite guard over every trainable role. */
    align_step_stats *s = &ctx.stats;
    const int mr = main_role(tr);
    s->algorithm = tr->vt->algorithm;
    s->step = tr->steps + 1;
    s->epoch = tr->vt->epoch(tr);
    s->learning_rate = align_optimizer_lr(tr->roles[mr].opt);
    float gn[ALIGN__MAX_ROLES] = {0};
    int bad_norm = 0;
    for (int32_t i = 0; i < tr->n_roles; i++) {
        if (!tr->roles[i].opt)
            continue;
        gn[i] = align__model_grad_norm(tr->roles[i].model);
        bad_norm |= !isfinite(gn[i]);
    }
    s->grad_norm = gn[mr];
    int skip = ctx.nonfinite || ctx.empty || bad_norm || !isfinite(s->loss);
    s->skipped = skip ? 1u : 0u;
    s->progress = tr->vt->progress(tr, tr->steps + 1);
    double t1 = align__now_sec();
    s->tokens_per_sec = t1 > t0 ? (float)((double)ctx.tokens_processed / (t1 - t0)) : 0.0f;
    for (int32_t i = 0; i < tr->n_roles; i++) {
        if (!tr->roles[i].opt)
            continue;
        align__metric(&ctx, tr->roles[i].m_lr, (double)align_optimizer_lr(tr->roles[i].opt));
        align__metric(&ctx, tr->roles[i].m_gn, (double)gn[i]);
    }
    align__metric(&ctx, "epoch", (double)s->epoch);

    /* A stop that arrived during the last micro-batch still prevents the
     * update (distributed: it was polled before the agreement). */
    rc = tr->dist_on ? ALIGN_OK : align__trainer_poll_stop(tr);
    if (rc < 0) {
        rollback(tr);
        return rc;
    }

    /* 4. The host decides. */
    int finish_after = 0;
    if (tr->on_step) {
        tr->m_pending = &ctx.metrics;
        int cb = tr->on_step(s, tr->on_step_ud), mine = cb;
        tr->m_pending = NULL;
        if (tr->dist_on && (rc = align__dist_agree_verdict(tr, cb, &cb)) < 0) {
            rollback(tr);
            return rc;
        }
        if (cb < 0) {
            rollback(tr);
            return align__error(&tr->err, ALIGN_ECALLBACK,
                                "on_step callback %sreturned %d at step %lld; the update was discarded",
                                mine < 0 ? "" : "of another rank ", cb, (long long)s->step);
        }
        if (cb == ALIGN_DONE)
            finish_after = 1;
    } else if (tr->dist_on) {
        /* Another rank's on_step may still say no or stop. */
        int cb = 0;
        if ((rc = align__dist_agree_verdict(tr, 0, &cb)) < 0) {
            rollback(tr);
            return rc;
        }
        if (cb < 0) {
            rollback(tr);
            return align__error(&tr->err, ALIGN_ECALLBACK,
                                "on_step callback of another rank returned %d at step %lld; the update was discarded",
                                cb, (long long)s->step);
        }
        finish_after = cb == ALIGN_DONE;
    }

    /* 5. Apply to every trainable role, or to none. */
    if (skip) {
        zero_grads(tr);
        if (ctx.empty)
            align__log(ALIGN_LOG_WARN, "step %lld: no loss tokens in the batch; update skipped",
                       (long long)s->step);
        else
            align__log(ALIGN_LOG_WARN, "step %lld: non-finite %s (loss %g, grad norm %g); update skipped",
                       (long long)s->step, isfinite(s->loss) && !ctx.nonfinite ? "gradient" : "loss",
                       (double)s->loss, (double)s->grad_norm);
    } else {
        double t2 = align__now_sec();
        int applied = 0;
        for (int32_t i = 0; i < tr->n_roles; i++) {
            if (!tr->roles[i].opt)
                continue;
            float gn2 = 0.0f;
            rc = align_optimizer_step(tr->roles[i].opt, &gn2);
            if (rc < 0 && applied == 0) {
                /* Nothing applied yet: the step is skipped (the optimizer
                 * saw a non-finite value our norm did not) or fails whole. */
                if (rc == ALIGN_ENONFINITE) {
                    zero_grads(tr);
                    s->skipped = 1;
                    skip = 1;
                    break;
                }
                rollback(tr);
                return align__error(&tr->err, rc, "optimizer step of role '%s' failed: %s", tr->roles[i].name,
                                    align_optimizer_errmsg(tr->roles[i].opt));
            }
            if (rc < 0) {
                /* Cannot happen once every norm is finite: the roles before
                 * this one were updated and cannot be taken back. */
                zero_grads(tr);
                return align__error(&tr->err, ALIGN_EINTERNAL,
                                    "optimizer step of role '%s' failed after other roles were updated: %s",
                                    tr->roles[i].name, align_optimizer_errmsg(tr->roles[i].opt));
            }
            applied++;
        }
        s->time_optimizer_ms = (float)((align__now_sec() - t2) * 1e3);
    }
    double t3 = align__now_sec();
    s->tokens_per_sec = t3 > t0 ? (float)((double)ctx.tokens_processed / (t3 - t0)) : 0.0f;
    align__metric(&ctx, "tokens_per_sec", (double)s->tokens_per_sec);

    tr->steps++;
    if (skip)
        tr->skipped++;
    tr->tokens_seen += s->tokens;
    if (finish_after)
        tr->finished = 1;
    tr->m_step = ctx.metrics;
    stats_out(tr, stats, s);
    return ALIGN_OK;
}

ALIGN_API int align_trainer_evaluate(align_trainer *tr, align_dataset *eval, align_step_stats *stats)
{
    if (!tr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_evaluate: trainer is NULL");
    ALIGN__TRAINER_NOT_BUSY(tr, "align_trainer_evaluate");
    align__error_clear(&tr->err);
    if (!eval)
        return align__error(&tr->err, ALIGN_EINVAL, "align_trainer_evaluate: eval dataset is NULL");
    int rc = check_stats_arg(tr, stats);
    if (rc)
        return rc;
    align__step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.stats.struct_size = sizeof ctx.stats;
    double t0 = align__now_sec();
    rc = tr->vt->evaluate(tr, eval, &ctx);
    if (rc < 0)
        return rc;
    double t1 = align__now_sec();
    ctx.stats.algorithm = tr->vt->algorithm;
    ctx.stats.step = tr->steps;
    ctx.stats.epoch = tr->vt->epoch(tr);
    ctx.stats.learning_rate = tr->opt ? align_optimizer_lr(tr->opt) : 0.0f;
    ctx.stats.progress = tr->vt->progress(tr, tr->steps);
    ctx.stats.tokens_per_sec = t1 > t0 ? (float)((double)ctx.tokens_processed / (t1 - t0)) : 0.0f;
    align__metric(&ctx, "tokens_per_sec", (double)ctx.stats.tokens_per_sec);
    tr->m_eval = ctx.metrics;
    stats_out(tr, stats, &ctx.stats);
    return ALIGN_OK;
}

/* ---- JSON helpers ----------------------------------------------------------- */

/* Strict decimal: digits only (after an optional '-' when neg_ok), no
 * blanks, no '+', no empty string, no overflow. */
static int parse_decimal(const char *s, int neg_ok, int *neg, uint64_t *mag)
{
    if (!s)
        return ALIGN_EFORMAT;
    *neg = 0;
    if (*s == '-' && neg_ok) {
        *neg = 1;
        s++;
    }
    if (!*s)
        return ALIGN_EFORMAT;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return ALIGN_EFORMAT;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return ALIGN_EFORMAT;
        v = v * 10 + d;
    }
    *mag = v;
    return ALIGN_OK;
}

int align__json_set_u64(json_t *obj, const char *key, uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return json_object_set_new(obj, key, json_string(buf)) == 0 ? ALIGN_OK : ALIGN_ENOMEM;
}

int align__json_get_u64(const json_t *obj, const char *key, uint64_t *v)
{
    int neg;
    uint64_t x;
    if (parse_decimal(json_string_value(json_object_get(obj, key)), 0, &neg, &x))
        return ALIGN_EFORMAT;
    *v = x;
    return ALIGN_OK;
}

int align__json_set_i64(json_t *obj, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return json_object_set_new(obj, key, json_string(buf)) == 0 ? ALIGN_OK : ALIGN_ENOMEM;
}

int align__json_get_i64(const json_t *obj, const char *key, int64_t *v)
{
    int neg;
    uint64_t x;
    if (parse_decimal(json_string_value(json_object_get(obj, key)), 1, &neg, &x))
        return ALIGN_EFORMAT;
    if (neg ? x > (uint64_t)INT64_MAX + 1 : x > (uint64_t)INT64_MAX)
        return ALIGN_EFORMAT;
    *v = neg ? (x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)x) : (int64_t)x;
    return ALIGN_OK;
}

/* A counter of trainer.json: 0 <= v < 2^53. */
static int get_counter(const json_t *obj, const char *key, int64_t *v)
{
    return align__json_get_i64(obj, key, v) || *v < 0 || *v >= COUNTER_MAX ? ALIGN_EFORMAT : ALIGN_OK;
}

/* ---- checkpoints ------------------------------------------------------------ */

/* A fast 64-bit digest, so resume can tell that every file of a folder
 * comes from the same save. Data is consumed in 64 KiB blocks (the block
 * boundaries are part of the definition). */
typedef struct digest_state {
    uint64_t h, total;
} digest_state;

enum { DIGEST_BLOCK = 1 << 16 };

static void digest_block(digest_state *d, const unsigned char *buf, size_t n)
{
    uint64_t h = d->h;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, buf + i, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ buf[i]) * 0x100000001B3ull;
    d->h = h;
    d->total += n;
}

static uint64_t digest_final(const digest_state *d)
{
    uint64_t h = d->h ^ d->total;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return h;
}

static void digest_mem(const void *data, size_t len, uint64_t *digest)
{
    digest_state d = {0x9E3779B97F4A7C15ull, 0};
    const unsigned char *p = data;
    for (size_t off = 0; off < len; off += DIGEST_BLOCK)
        digest_block(&d, p + off, ALIGN__MIN((size_t)DIGEST_BLOCK, len - off));
    *digest = digest_final(&d);
}

static int file_digest(align__errbuf *eb, const char *path, uint64_t *digest, uint64_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return align__error(eb, errno == ENOENT ? ALIGN_ENOENT : ALIGN_EIO, "cannot open %s: %s", path,
                            strerror(errno));
    unsigned char *buf = align__malloc(DIGEST_BLOCK);
    if (!buf) {
        fclose(f);
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    }
    digest_state d = {0x9E3779B97F4A7C15ull, 0};
    size_t n;
    while ((n = fread(buf, 1, DIGEST_BLOCK, f)) > 0)
        digest_block(&d, buf, n);
    int bad = ferror(f);
    fclose(f);
    align__free(buf);
    if (bad)
        return align__error(eb, ALIGN_EIO, "cannot read %s", path);
    *digest = digest_final(&d);
    *size = d.total;
    return ALIGN_OK;
}

int align__file_digest(align__errbuf *eb, const char *path, uint64_t *digest, uint64_t *size)
{
    return file_digest(eb, path, digest, size);
}

static int make_dirs(align__errbuf *eb, const char *dir)
{
    size_t n = strlen(dir);
    char *p = align__strdup(dir);
    if (!p)
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == '\0') {
            char c = p[i];
            p[i] = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int e = errno;
                align__free(p);
                return align__error(eb, ALIGN_EIO, "cannot create folder %s: %s", dir, strerror(e));
            }
            p[i] = c;
        }
    }
    align__free(p);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return align__error(eb, ALIGN_EIO, "%s is not a folder", dir);
    return ALIGN_OK;
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = align__malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static void fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* The folder a save replaces and a resume reads, split into parent and
 * name. A symbolic link to a folder is followed (the link stays). */
typedef struct ckpt_path {
    char *full;     /* parent/name */
    char *parent;
    char *name;
} ckpt_path;

static void ckpt_path_free(ckpt_path *p)
{
    align__free(p->full);
    align__free(p->parent);
    align__free(p->name);
    memset(p, 0, sizeof *p);
}

static int ckpt_path_make(align__errbuf *eb, const char *dir, ckpt_path *out)
{
    memset(out, 0, sizeof *out);
    char *d = align__strdup(dir);
    if (!d)
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '/')
        d[--n] = '\0';
    struct stat st;
    if (lstat(d, &st) == 0 && S_ISLNK(st.st_mode)) {
        char *real = realpath(d, NULL);
        if (real) {
            align__free(d);
            d = align__strdup(real);
            free(real);
            if (!d)
                return align__error(eb, ALIGN_ENOMEM, "out of memory");
        }
    }
    char *slash = strrchr(d, '/');
    if (!slash) {
        out->parent = align__strdup(".");
        out->name = align__strdup(d);
    } else {
        out->name = align__strdup(slash + 1);
        out->parent = slash == d ? align__strdup("/") : align__strndup(d, (size_t)(slash - d));
    }
    out->full = d;
    if (!out->parent || !out->name) {
        ckpt_path_free(out);
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    }
    if (!*out->name || strcmp(out->name, ".") == 0 || strcmp(out->name, "..") == 0 || strcmp(out->full, "/") == 0) {
        int rc = align__error(eb, ALIGN_EINVAL, "'%s' cannot be a checkpoint folder (name a folder of its own)", dir);
        ckpt_path_free(out);
        return rc;
    }
    return ALIGN_OK;
}

/* Removes a folder that holds only files. */
static void remove_folder(const char *path)
{
    DIR *dp = opendir(path);
    if (dp) {
        struct dirent *e;
        while ((e = readdir(dp)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char *f = path_join(path, e->d_name);
            if (f)
                unlink(f);
            align__free(f);
        }
        closedir(dp);
    }
    rmdir(path);
}

/* ".NAME.new-PID-SEQ" / ".NAME.old-PID-SEQ": *kind 'n' or 'o', *pid. */
static int sibling_of(const char *entry, const char *name, char *kind, long *pid)
{
    size_t n = strlen(name);
    if (entry[0] != '.' || strncmp(entry + 1, name, n) != 0 || entry[1 + n] != '.')
        return 0;
    const char *p = entry + 2 + n;
    if (strncmp(p, "new-", 4) == 0)
        *kind = 'n';
    else if (strncmp(p, "old-", 4) == 0)
        *kind = 'o';
    else
        return 0;
    p += 4;
    char *end = NULL;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (errno || end == p || *end != '-' || v <= 0)
        return 0;
    *pid = v;
    return 1;
}

static int pid_alive(long pid)
{
    if (pid == (long)getpid())
        return 1;
    return !(kill((pid_t)pid, 0) != 0 && errno == ESRCH);
}

/* What crashed saves left next to the folder: if the folder is missing but a
 * replaced one survived (.old-: the crash hit between the two renames of the
 * fallback path), it is renamed back; then every sibling of a dead process
 * is removed. */
static void recover_and_clean(const ckpt_path *cp)
{
    struct stat st;
    int missing = stat(cp->full, &st) != 0 && errno == ENOENT;
    for (int pass = 0; pass < 2; pass++) {
        DIR *dp = opendir(cp->parent);
        if (!dp)
            return;
        struct dirent *e;
        while ((e = readdir(dp)) != NULL) {
            char kind;
            long pid;
            if (!sibling_of(e->d_name, cp->name, &kind, &pid) || pid_alive(pid))
                continue;
            char *p = path_join(cp->parent, e->d_name);
            if (!p)
                continue;
            if (pass == 0 && kind == 'o' && missing) {
                char *tj = path_join(p, "trainer.json");
                if (tj && access(tj, R_OK) == 0 && rename(p, cp->full) == 0) {
                    missing = 0;
                    fsync_path(cp->parent);
                }
                align__free(tj);
            } else if (pass == 1) {
                remove_folder(p);
            }
            align__free(p);
        }
        closedir(dp);
    }
}

/* Files a checkpoint folder may hold: trainer.json, *.safetensors, *.bin,
 * *.json, and the temporary files of an interrupted write (*.tmp.PID). */
static int checkpoint_file_name(const char *s)
{
    size_t n = strlen(s);
    if (strstr(s, ".tmp."))
        return 1;
    static const char *const ok[] = {".safetensors", ".bin", ".json"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        size_t k = strlen(ok[i]);
        if (n > k && strcmp(s + n - k, ok[i]) == 0)
            return 1;
    }
    return 0;
}

/* An existing folder is replaced only if it holds nothing but checkpoint
 * files: a save must never delete a user's other files. */
static int check_replaceable(align__errbuf *eb, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? ALIGN_OK : align__error(eb, ALIGN_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return align__error(eb, ALIGN_EIO, "%s is not a folder", path);
    DIR *dp = opendir(path);
    if (!dp)
        return align__error(eb, ALIGN_EIO, "cannot read folder %s: %s", path, strerror(errno));
    int rc = ALIGN_OK;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *f = path_join(path, e->d_name);
        struct stat fs;
        int is_file = f && lstat(f, &fs) == 0 && S_ISREG(fs.st_mode);
        align__free(f);
        if (!is_file || !checkpoint_file_name(e->d_name)) {
            rc = align__error(eb, ALIGN_EINVAL,
                              "%s holds '%s', which is not part of a checkpoint; a save replaces the whole folder, "
                              "so save into a new folder or one that holds only a checkpoint",
                              path, e->d_name);
            break;
        }
    }
    closedir(dp);
    return rc;
}

/* ---- the checkpoint being written or read ------------------------------------ */

struct align__ckpt {
    align__errbuf *eb;
    const char *dir;   /* the folder written (temporary) or read */
    json_t *files;     /* name -> {"digest", "bytes"} */
    int writing;
    const align_trainer *tr;
};

align__errbuf *align__ckpt_err(align__ckpt *ck)
{
    return ck->eb;
}

/* Role file names: role 0 keeps the historical names. */
static void role_files(const align_trainer *tr, int32_t i, char *model, char *opt, size_t cap)
{
    if (i == 0) {
        snprintf(model, cap, "model.safetensors");
        snprintf(opt, cap, "optimizer.safetensors");
    } else {
        snprintf(model, cap, "%s.safetensors", tr->roles[i].name);
        snprintf(opt, cap, "%s.optimizer.safetensors", tr->roles[i].name);
    }
}

static int algo_file_name_ok(const align_trainer *tr, const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 100 || name[0] == '.' || !checkpoint_file_name(name) || strstr(name, ".tmp.") ||
        strcmp(name, "trainer.json") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return 0;
    }
    for (int32_t i = 0; i < tr->n_roles; i++) {
        char m[64], o[64];
        role_files(tr, i, m, o, sizeof m);
        if (strcmp(name, m) == 0 || strcmp(name, o) == 0)
            return 0;
    }
    return 1;
}

int align__ckpt_write(align__ckpt *ck, const char *name, const align__chunk *chunks, int n_chunks)
{
    if (!ck || !ck->writing || !algo_file_name_ok(ck->tr, name) || n_chunks < 0 || (n_chunks && !chunks))
        return align__error(ck ? ck->eb : NULL, ALIGN_EINTERNAL, "checkpoint: cannot write a file named '%s'",
                            name ? name : "(null)");
    if (json_object_get(ck->files, name))
        return align__error(ck->eb, ALIGN_EINTERNAL, "checkpoint: '%s' written twice", name);
    char *path = path_join(ck->dir, name);
    if (!path)
        return align__error(ck->eb, ALIGN_ENOMEM, "out of memory");
    uint64_t dig, sz;
    int rc = align__write_atomic(ck->eb, path, chunks, n_chunks);
    if (!rc)
        rc = file_digest(ck->eb, path, &dig, &sz);
    align__free(path);
    if (rc)
        return rc;
    json_t *o = json_object();
    if (!o || align__json_set_u64(o, "digest", dig) || align__json_set_u64(o, "bytes", sz) ||
        json_object_set_new(ck->files, name, o) != 0)
        return align__error(ck->eb, ALIGN_ENOMEM, "out of memory");
    return ALIGN_OK;
}

int align__ckpt_read(align__ckpt *ck, const char *name, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (!ck || ck->writing || !name)
        return align__error(ck ? ck->eb : NULL, ALIGN_EINTERNAL, "checkpoint: invalid read");
    json_t *o = json_object_get(ck->files, name);
    if (!o)
        return align__error(ck->eb, ALIGN_ENOENT, "%s/trainer.json lists no file '%s'", ck->dir, name);
    uint64_t dig, sz, d2;
    if (align__json_get_u64(o, "digest", &dig) || align__json_get_u64(o, "bytes", &sz))
        return align__error(ck->eb, ALIGN_EFORMAT, "%s/trainer.json: invalid digest of '%s'", ck->dir, name);
    char *path = path_join(ck->dir, name);
    if (!path)
        return align__error(ck->eb, ALIGN_ENOMEM, "out of memory");
    int rc = align__read_file(ck->eb, path, data, len);
    if (!rc) {
        digest_mem(*data, *len, &d2);
        if (d2 != dig || (uint64_t)*len != sz) {
            rc = align__error(ck->eb, ALIGN_EFORMAT, "%s does not belong to %s/trainer.json (written by another "
                              "save, or damaged)", path, ck->dir);
            align__free(*data);
            *data = NULL;
            *len = 0;
        }
    }
    align__free(path);
    return rc;
}

/* ---- setup ---------------------------------------------------------------------- */

static json_t *model_setup_json(const align_model *m)
{
    align_model_params cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    if (align_model_config(m, &cfg) != ALIGN_OK)
        return NULL;
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:b}", "arch", (int)cfg.arch, "n_layer",
                     (int)cfg.n_layer, "n_head", (int)cfg.n_head, "n_embd", (int)cfg.n_embd,
                     "vocab_size", (int)cfg.vocab_size, "max_seq_len", (int)cfg.max_seq_len,
                     "num_params", (json_int_t)align_model_num_params(m), "scalar_head",
                     (cfg.flags & ALIGN_MODEL_SCALAR_HEAD) != 0);
}

/* The setup a checkpoint must match: every role (name, trainable, shape)
 * and the algorithm's params. */
static json_t *setup_json(const align_trainer *tr)
{
    json_t *setup = json_object(), *roles = json_object();
    if (!setup || !roles || json_object_set_new(setup, "roles", roles) != 0) {
        json_decref(setup);
        json_decref(roles);
        return NULL;
    }
    for (int32_t i = 0; i < tr->n_roles; i++) {
        json_t *m = model_setup_json(tr->roles[i].model);
        if (!m || json_object_set_new(m, "trainable", json_boolean(tr->roles[i].opt != NULL)) != 0 ||
            json_object_set_new(roles, tr->roles[i].name, m) != 0) {
            json_decref(setup);
            return NULL;
        }
    }
    if (tr->vt->setup_json(tr, setup) != ALIGN_OK) {
        json_decref(setup);
        return NULL;
    }
    return setup;
}

/* ---- save ---------------------------------------------------------------------- */

static atomic_uint save_seq;

/* Writes every file of the checkpoint into the folder tmp. */
static int write_folder(align_trainer *tr, const char *tmp)
{
    int rc = ALIGN_OK;
    json_t *root = json_object(), *roles = json_object(), *state = json_object(), *files = json_object();
    json_t *setup = setup_json(tr);
    char *text = NULL, *tpath = path_join(tmp, "trainer.json");
    if (!root || !roles || !state || !files || !setup || !tpath) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory building trainer.json");
        goto done;
    }
    for (int32_t i = 0; i < tr->n_roles; i++) {
        const align__trainer_role *r = &tr->roles[i];
        if (!r->opt)
            continue;
        char mname[64], oname[64];
        role_files(tr, i, mname, oname, sizeof mname);
        char *mp = path_join(tmp, mname), *op = path_join(tmp, oname);
        uint64_t mdig = 0, msz = 0, odig = 0, osz = 0;
        if (!mp || !op) {
            rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
        } else if ((rc = align_model_save(r->model, mp)) < 0) {
            rc = align__error(&tr->err, rc, "saving %s: %s", mname, align_model_errmsg(r->model));
        } else if ((rc = align_optimizer_save(r->opt, op)) < 0) {
            rc = align__error(&tr->err, rc, "saving %s: %s", oname, align_optimizer_errmsg(r->opt));
        } else {
            rc = file_digest(&tr->err, mp, &mdig, &msz);
            if (!rc)
                rc = file_digest(&tr->err, op, &odig, &osz);
        }
        align__free(mp);
        align__free(op);
        if (rc)
            goto done;
        json_t *o = json_object();
        if (!o || json_object_set_new(o, "model", json_string(mname)) ||
            json_object_set_new(o, "optimizer", json_string(oname)) || align__json_set_u64(o, "model_digest", mdig) ||
            align__json_set_u64(o, "model_bytes", msz) || align__json_set_u64(o, "optimizer_digest", odig) ||
            align__json_set_u64(o, "optimizer_bytes", osz) ||
            align__json_set_i64(o, "optimizer_steps", align_optimizer_steps_done(r->opt)) ||
            json_object_set_new(roles, r->name, o)) {
            rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory building trainer.json");
            goto done;
        }
    }
    if (tr->vt->save_state) {
        align__ckpt ck = {&tr->err, tmp, files, 1, tr};
        if ((rc = tr->vt->save_state(tr, state, &ck)) < 0) {
            if (!*align__errmsg(&tr->err))
                align__error(&tr->err, rc, "cannot encode the trainer state");
            goto done;
        }
    }
    if (json_object_set_new(root, "format", json_string(TRAINER_FORMAT)) ||
        json_object_set_new(root, "version", json_integer(TRAINER_FORMAT_VERSION)) ||
        json_object_set_new(root, "algorithm", json_string(tr->vt->name)) ||
        align__json_set_i64(root, "steps", tr->steps) || align__json_set_i64(root, "skipped", tr->skipped) ||
        align__json_set_i64(root, "tokens_seen", tr->tokens_seen) ||
        json_object_set_new(root, "finished", json_boolean(tr->finished)) || json_object_set(root, "roles", roles) ||
        json_object_set(root, "files", files) || json_object_set(root, "setup", setup) ||
        json_object_set(root, "state", state)) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory building trainer.json");
        goto done;
    }
    text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory writing trainer.json");
        goto done;
    }
    align__chunk ch[2] = {{text, strlen(text)}, {"\n", 1}};
    rc = align__write_atomic(&tr->err, tpath, ch, 2);
done:
    free(text);
    align__free(tpath);
    json_decref(root);
    json_decref(roles);
    json_decref(state);
    json_decref(files);
    json_decref(setup);
    return rc;
}

/* Puts the complete folder tmp in place of cp->full. On success *old is the
 * path of the replaced folder to delete (NULL if there was none). */
static int commit_folder(align__errbuf *eb, const ckpt_path *cp, const char *tmp, char **old)
{
    *old = NULL;
    struct stat st;
    if (stat(cp->full, &st) != 0) {
        if (rename(tmp, cp->full) != 0)
            return align__error(eb, ALIGN_EIO, "%s: cannot rename the new checkpoint into place: %s", cp->full,
                                strerror(errno));
        return ALIGN_OK;
    }
#if defined(__linux__) && defined(RENAME_EXCHANGE)
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, cp->full, RENAME_EXCHANGE) == 0) {
        *old = align__strdup(tmp);
        return ALIGN_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return align__error(eb, ALIGN_EIO, "%s: cannot swap in the new checkpoint: %s", cp->full, strerror(errno));
#endif
    /* Fallback: two renames; recover_and_clean() repairs a crash between them. */
    char name[64];
    snprintf(name, sizeof name, ".old-%ld-%u", (long)getpid(), atomic_fetch_add(&save_seq, 1u));
    size_t n = strlen(cp->parent) + strlen(cp->name) + strlen(name) + 4;
    char *aside = align__malloc(n);
    if (!aside)
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    snprintf(aside, n, "%s/.%s%s", cp->parent, cp->name, name);
    if (rename(cp->full, aside) != 0) {
        int e = errno;
        align__free(aside);
        return align__error(eb, ALIGN_EIO, "%s: cannot move the old checkpoint aside: %s", cp->full, strerror(e));
    }
    if (rename(tmp, cp->full) != 0) {
        int e = errno;
        (void)rename(aside, cp->full);
        align__free(aside);
        return align__error(eb, ALIGN_EIO, "%s: cannot rename the new checkpoint into place: %s", cp->full,
                            strerror(e));
    }
    *old = aside;
    return ALIGN_OK;
}

static int trainer_save(const align_trainer *ctr, const char *dir)
{
    if (!ctr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_save: trainer is NULL");
    ALIGN__TRAINER_NOT_BUSY(ctr, "align_trainer_save");
    /* The trainer is const for the caller; its error buffer is the one
     * member a const call may write (the object itself was allocated
     * non-const by align__trainer_new_roles). */
    align_trainer *tr = (align_trainer *)ctr;
    align__error_clear(&tr->err);
    if (!dir || !*dir)
        return align__error(&tr->err, ALIGN_EINVAL, "align_trainer_save: dir is NULL or empty");
    if (tr->n_trainable == 0)
        return align__error(&tr->err, ALIGN_EMISUSE,
                            "align_trainer_save: this trainer was created without an optimizer (evaluation only)");
    ckpt_path cp;
    int rc = ckpt_path_make(&tr->err, dir, &cp);
    if (rc)
        return rc;
    char *tmp = NULL, *old = NULL;
    if ((rc = make_dirs(&tr->err, cp.parent)) < 0)
        goto done;
    recover_and_clean(&cp);
    if ((rc = check_replaceable(&tr->err, cp.full)) < 0)
        goto done;
    size_t n = strlen(cp.parent) + strlen(cp.name) + 64;
    tmp = align__malloc(n);
    if (!tmp) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(tmp, n, "%s/.%s.new-%ld-%u", cp.parent, cp.name, (long)getpid(), atomic_fetch_add(&save_seq, 1u));
    if (mkdir(tmp, 0777) != 0) {
        rc = align__error(&tr->err, ALIGN_EIO, "cannot create folder %s: %s", tmp, strerror(errno));
        align__free(tmp);
        tmp = NULL;
        goto done;
    }
    rc = write_folder(tr, tmp);
    if (!rc) {
        fsync_path(tmp);
        rc = commit_folder(&tr->err, &cp, tmp, &old);
    }
    if (rc) {
        remove_folder(tmp);
        goto done;
    }
    fsync_path(cp.parent);
    if (old) {
        remove_folder(old);
        fsync_path(cp.parent);
    }
done:
    align__free(tmp);
    align__free(old);
    ckpt_path_free(&cp);
    return rc;
}

/* Names the first member of `a` that differs in `b` (for the error message). */
static void first_difference(const json_t *a, const json_t *b, const char *prefix, char *out, size_t cap)
{
    const char *key;
    json_t *va;
    json_object_foreach((json_t *)a, key, va)
    {
        json_t *vb = json_object_get(b, key);
        if (!vb || !json_equal(va, vb)) {
            if (json_is_object(va) && json_is_object(vb)) {
                char p[128];
                snprintf(p, sizeof p, "%s%s.", prefix, key);
                first_difference(va, vb, p, out, cap);
                return;
            }
            char *sa = json_dumps(va, JSON_ENCODE_ANY | JSON_COMPACT);
            char *sb = vb ? json_dumps(vb, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            snprintf(out, cap, "%s%s is %s in the checkpoint but %s here", prefix, key, sa ? sa : "?",
                     sb ? sb : "missing");
            free(sa);
            free(sb);
            return;
        }
    }
    const char *kb;
    json_t *vb2;
    json_object_foreach((json_t *)b, kb, vb2)
    {
        (void)vb2;
        if (!json_object_get(a, kb)) {
            snprintf(out, cap, "%s%s is missing in the checkpoint", prefix, kb);
            return;
        }
    }
    snprintf(out, cap, "the setup differs");
}

/* What resume stages per trainable role before applying anything. */
typedef struct staged_role {
    align_model *model;      /* the checkpoint's weights */
    align_optimizer *opt;    /* the checkpoint's moments, over the role's own model */
} staged_role;

static int same_shape(const align_model *a, const align_model *b)
{
    json_t *x = model_setup_json(a), *y = model_setup_json(b);
    /* A file without a scalar head loads without one: compare the rest. */
    static const char *const keys[] = {"n_layer", "n_head", "n_embd", "vocab_size", "max_seq_len", "num_params"};
    int same = x && y;
    for (size_t i = 0; same && i < sizeof keys / sizeof *keys; i++)
        same = json_equal(json_object_get(x, keys[i]), json_object_get(y, keys[i]));
    json_decref(x);
    json_decref(y);
    return same;
}

/* Checks one trainable role's entry of trainer.json and loads its files
 * into st (nothing of the trainer changes). */
static int stage_role(align_trainer *tr, int32_t i, const char *dir, const json_t *entry, staged_role *st)
{
    const align__trainer_role *r = &tr->roles[i];
    char mname[64], oname[64];
    role_files(tr, i, mname, oname, sizeof mname);
    const char *m = json_string_value(json_object_get(entry, "model"));
    const char *o = json_string_value(json_object_get(entry, "optimizer"));
    uint64_t mdig, msz, odig, osz, d, sz;
    int64_t opt_steps;
    if (!json_is_object(entry) || !m || !o || strcmp(m, mname) != 0 || strcmp(o, oname) != 0 ||
        align__json_get_u64(entry, "model_digest", &mdig) || align__json_get_u64(entry, "model_bytes", &msz) ||
        align__json_get_u64(entry, "optimizer_digest", &odig) ||
        align__json_get_u64(entry, "optimizer_bytes", &osz) || get_counter(entry, "optimizer_steps", &opt_steps))
        return align__error(&tr->err, ALIGN_EFORMAT,
                            "%s/trainer.json: role '%s': missing or invalid file names, digests or optimizer_steps",
                            dir, r->name);
    char *mp = path_join(dir, mname), *op = path_join(dir, oname);
    int rc = ALIGN_OK;
    if (!mp || !op) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = file_digest(&tr->err, mp, &d, &sz)) < 0)
        goto done;
    if (d != mdig || sz != msz) {
        rc = align__error(&tr->err, ALIGN_EFORMAT, "%s does not belong to %s/trainer.json (written by another save, "
                          "or damaged)", mp, dir);
        goto done;
    }
    if ((rc = file_digest(&tr->err, op, &d, &sz)) < 0)
        goto done;
    if (d != odig || sz != osz) {
        rc = align__error(&tr->err, ALIGN_EFORMAT, "%s does not belong to %s/trainer.json (written by another save, "
                          "or damaged)", op, dir);
        goto done;
    }
    if ((rc = align_model_load(&st->model, mp, NULL)) < 0) {
        rc = align__error(&tr->err, rc, "loading %s: %s", mp, align_last_errmsg());
        goto done;
    }
    if (!same_shape(st->model, r->model)) {
        rc = align__error(&tr->err, ALIGN_EINVAL, "%s: the model's shape differs from role '%s''s", mp, r->name);
        goto done;
    }
    if ((rc = align_optimizer_create(&st->opt, r->model, NULL)) < 0) {
        rc = align__error(&tr->err, rc, "resume: %s", align_last_errmsg());
        goto done;
    }
    if ((rc = align_optimizer_load(st->opt, op)) < 0) {
        rc = align__error(&tr->err, rc, "loading %s: %s", op, align_optimizer_errmsg(st->opt));
        goto done;
    }
    if (align_optimizer_steps_done(st->opt) != opt_steps) {
        rc = align__error(&tr->err, ALIGN_EFORMAT,
                          "%s/trainer.json: role '%s': optimizer_steps is %lld but %s holds %lld", dir, r->name,
                          (long long)opt_steps, oname, (long long)align_optimizer_steps_done(st->opt));
        goto done;
    }
done:
    align__free(mp);
    align__free(op);
    return rc;
}

static int trainer_resume(align_trainer *tr, const char *dir)
{
    if (!tr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_resume: trainer is NULL");
    ALIGN__TRAINER_NOT_BUSY(tr, "align_trainer_resume");
    align__error_clear(&tr->err);
    if (!dir || !*dir)
        return align__error(&tr->err, ALIGN_EINVAL, "align_trainer_resume: dir is NULL or empty");
    if (tr->n_trainable == 0)
        return align__error(&tr->err, ALIGN_EMISUSE,
                            "align_trainer_resume: this trainer was created without an optimizer (evaluation only)");
    ckpt_path cp;
    int rc = ckpt_path_make(&tr->err, dir, &cp);
    if (rc)
        return rc;
    recover_and_clean(&cp);

    char *tpath = path_join(cp.full, "trainer.json");
    char *text = NULL;
    size_t len = 0;
    json_t *root = NULL, *setup = NULL;
    staged_role staged[ALIGN__MAX_ROLES];
    memset(staged, 0, sizeof staged);
    void *algo_staged = NULL;
    if (!tpath) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
        goto done;
    }

    /* 1. trainer.json: parse and check everything before touching anything. */
    rc = align__read_file(&tr->err, tpath, &text, &len);
    if (rc < 0)
        goto done;
    json_error_t jerr;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        rc = align__error(&tr->err, ALIGN_EFORMAT, "%s:%d: %s", tpath, root ? 1 : jerr.line,
                          root ? "not a JSON object" : jerr.text);
        goto done;
    }
    const char *fmt = json_string_value(json_object_get(root, "format"));
    json_t *ver = json_object_get(root, "version");
    if (!fmt || strcmp(fmt, TRAINER_FORMAT) != 0) {
        rc = align__error(&tr->err, ALIGN_EFORMAT, "%s: not a libalign trainer checkpoint", tpath);
        goto done;
    }
    if (!json_is_integer(ver) || json_integer_value(ver) != TRAINER_FORMAT_VERSION) {
        rc = align__error(&tr->err, ALIGN_EVERSION,
                          "%s: checkpoint format version %lld is not supported (%d is; version 1 came from "
                          "libalign 0.1)",
                          tpath, (long long)json_integer_value(ver), TRAINER_FORMAT_VERSION);
        goto done;
    }
    const char *algo = json_string_value(json_object_get(root, "algorithm"));
    if (!algo || strcmp(algo, tr->vt->name) != 0) {
        rc = align__error(&tr->err, ALIGN_EINVAL, "%s: checkpoint of a %s trainer, this one is %s", tpath,
                          algo ? algo : "(unknown)", tr->vt->name);
        goto done;
    }
    setup = setup_json(tr);
    if (!setup) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
        goto done;
    }
    json_t *saved_setup = json_object_get(root, "setup");
    if (!json_is_object(saved_setup) || !json_equal(saved_setup, setup)) {
        char what[256] = "setup missing";
        if (json_is_object(saved_setup))
            first_difference(saved_setup, setup, "", what, sizeof what);
        rc = align__error(&tr->err, ALIGN_EINVAL, "%s: the trainer was built differently: %s", tpath, what);
        goto done;
    }
    int64_t steps, skipped, tokens_seen;
    json_t *fin = json_object_get(root, "finished");
    if (get_counter(root, "steps", &steps) || get_counter(root, "skipped", &skipped) ||
        get_counter(root, "tokens_seen", &tokens_seen) || !json_is_boolean(fin) || skipped > steps) {
        rc = align__error(&tr->err, ALIGN_EFORMAT,
                          "%s: missing or invalid step counters (steps, skipped <= steps, tokens_seen: decimal "
                          "strings below 2^53; finished: a boolean)", tpath);
        goto done;
    }
    json_t *roles = json_object_get(root, "roles"), *files = json_object_get(root, "files");
    json_t *state = json_object_get(root, "state");
    if (!json_is_object(roles) || (int32_t)json_object_size(roles) != tr->n_trainable || !json_is_object(files) ||
        !json_is_object(state)) {
        rc = align__error(&tr->err, ALIGN_EFORMAT, "%s: missing or invalid roles, files or state", tpath);
        goto done;
    }
    {
        const char *key;
        json_t *v;
        json_object_foreach(files, key, v)
        {
            uint64_t u;
            if (!algo_file_name_ok(tr, key) || !json_is_object(v) || align__json_get_u64(v, "digest", &u) ||
                align__json_get_u64(v, "bytes", &u)) {
                rc = align__error(&tr->err, ALIGN_EFORMAT, "%s: invalid entry '%s' in files", tpath, key);
                goto done;
            }
        }
    }

    /* 2. Every trainable role's files: digests, weights, moments. */
    for (int32_t i = 0; i < tr->n_roles; i++) {
        if (!tr->roles[i].opt)
            continue;
        if ((rc = stage_role(tr, i, cp.full, json_object_get(roles, tr->roles[i].name), &staged[i])) < 0)
            goto done;
    }

    /* 3. The algorithm's state, parsed and checked, nothing applied. */
    if (tr->vt->load_state) {
        align__ckpt ck = {&tr->err, cp.full, files, 0, tr};
        rc = tr->vt->load_state(tr, state, &ck, &algo_staged);
        if (rc < 0) {
            if (!*align__errmsg(&tr->err))
                align__error(&tr->err, rc, "%s: missing or invalid algorithm state", tpath);
            goto done;
        }
    }

    /* 4. Apply: the algorithm's state (all-or-nothing), then the roles,
     *    which cannot fail once the shapes match. */
    if (tr->vt->apply_state) {
        rc = tr->vt->apply_state(tr, algo_staged);
        if (rc < 0) {
            rc = align__error(&tr->err, rc, "%s: %s", tpath,
                              *align__errmsg(&tr->err) ? align__errmsg(&tr->err) : "the state does not fit");
            goto done;
        }
    }
    for (int32_t i = 0; i < tr->n_roles; i++) {
        if (!tr->roles[i].opt)
            continue;
        if ((rc = align__model_copy_weights(tr->roles[i].model, staged[i].model)) < 0 ||
            (rc = align__optimizer_swap_state(tr->roles[i].opt, staged[i].opt)) < 0) {
            rc = align__error(&tr->err, ALIGN_EINTERNAL, "restoring role '%s' failed after checks passed",
                              tr->roles[i].name);
            goto done;
        }
        align_model_zero_grad(tr->roles[i].model);
    }
    tr->steps = steps;
    tr->skipped = skipped;
    tr->tokens_seen = tokens_seen;
    tr->finished = json_is_true(fin);
    memset(&tr->m_step, 0, sizeof tr->m_step);
    atomic_store(&tr->stop, 0);
    rc = ALIGN_OK;
done:
    if (algo_staged && tr->vt->free_staged)
        tr->vt->free_staged(tr, algo_staged);
    for (int32_t i = 0; i < ALIGN__MAX_ROLES; i++) {
        align_optimizer_free(staged[i].opt);
        align_model_free(staged[i].model);
    }
    json_decref(root);
    json_decref(setup);
    align__free(text);
    align__free(tpath);
    ckpt_path_free(&cp);
    return rc;
}

/* ---- data parallel (lib/dist): one writer, every rank reads ----------------- */

/* Rank 0 writes (the ranks hold identical state); the others wait for its
 * result so that a failed save fails everywhere. */
ALIGN_API int align_trainer_save(const align_trainer *ctr, const char *dir)
{
    if (!ctr || !ctr->dist_on)
        return trainer_save(ctr, dir);
    ALIGN__TRAINER_NOT_BUSY(ctr, "align_trainer_save");
    align_trainer *tr = (align_trainer *)ctr; /* errbuf only, as in trainer_save */
    int32_t rc = tr->dist.rank == 0 ? trainer_save(ctr, dir) : ALIGN_OK;
    int brc = align__dist_bcast(tr, &rc, sizeof rc);
    if (brc < 0)
        return brc;
    if (rc < 0 && tr->dist.rank != 0)
        return align__error(&tr->err, rc, "align_trainer_save: rank 0 failed to write %s (%s)", dir ? dir : "(null)",
                            align_strerror(rc));
    return rc;
}

/* Every rank reads the checkpoint (a shared file system or a copy per
 * machine); a rank that cannot fails the call on every rank. */
ALIGN_API int align_trainer_resume(align_trainer *tr, const char *dir)
{
    if (!tr || !tr->dist_on)
        return trainer_resume(tr, dir);
    ALIGN__TRAINER_NOT_BUSY(tr, "align_trainer_resume");
    int rc = trainer_resume(tr, dir);
    rc = align__dist_agree_rc(tr, rc, "align_trainer_resume");
    if (rc == ALIGN_OK) {
        /* The same checkpoint everywhere: rank 0's step count must match. */
        int64_t steps = tr->steps;
        if ((rc = align__dist_bcast(tr, &steps, sizeof steps)) < 0)
            return rc;
        rc = align__dist_agree_rc(tr, steps == tr->steps ? ALIGN_OK
                                      : align__error(&tr->err, ALIGN_EINVAL,
                                                     "align_trainer_resume: %s holds step %lld here, %lld on rank 0",
                                                     dir, (long long)tr->steps, (long long)steps),
                                  "align_trainer_resume");
    }
    return rc;
}
