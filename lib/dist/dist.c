/*
 * dist.c — data parallel over a host communicator (dist.h, align.h's
 * align_dist, docs/distributed.md).
 *
 * Design: the library only sees the align_dist vtable; the MPI backend is a
 * separate small library (mpi/align_mpi.c, libalign_mpi) so libalign.so
 * never links MPI and a host may bring any transport (NCCL, sockets, the
 * threads of tests/check_internal_dist.c).
 *
 * Determinism: gradients go through allreduce_sum_f32, whose contract is a
 * fixed summation order for a given number of ranks with identical bits on
 * every rank; every other reduction here is an allgather followed by a sum
 * in rank order computed on every rank, so all ranks hold the same bits and
 * a run is reproducible for a given number of ranks.
 */
#include "dist/dist.h"
#include "model/model.h"
#include "model/model_impl.h"

#include <stddef.h>
#include <string.h>

/* Gradient all-reduce in buckets of this many floats (16 MiB): bounds the
 * backend's scratch memory and lets a backend pipeline buckets. */
#define GRAD_BUCKET ((size_t)1 << 22)

static int comm_error(align_trainer *tr, int rc, const char *what)
{
    char d[256] = "";
    if (tr->dist.errmsg)
        tr->dist.errmsg(tr->dist.user_data, d, sizeof d);
    d[sizeof d - 1] = '\0';
    return align__error(&tr->err, rc < 0 ? rc : ALIGN_EIO, "distributed %s failed on rank %d of %d: %s", what,
                        (int)tr->dist.rank, (int)tr->dist.size, *d ? d : align_strerror(rc));
}

ALIGN_API int align_dist_init(align_dist *d, size_t struct_size)
{
    if (!d || struct_size < sizeof(uint32_t))
        return align__error(NULL, ALIGN_EINVAL, "align_dist_init: d is NULL or struct_size too small");
    size_t n = struct_size < sizeof *d ? struct_size : sizeof *d;
    memset(d, 0, n);
    d->struct_size = (uint32_t)n;
    if (n >= offsetof(align_dist, size) + sizeof d->size)
        d->size = 1;
    return ALIGN_OK;
}

void align__dist_share(const align_trainer *tr, int64_t n, int64_t *lo, int64_t *hi)
{
    const int64_t P = align__dist_size(tr), r = align__dist_rank(tr);
    const int64_t q = n / P, m = n % P;
    *lo = r * q + (r < m ? r : m);
    *hi = *lo + q + (r < m ? 1 : 0);
}

int align__dist_bcast(align_trainer *tr, void *buf, size_t bytes)
{
    if (!tr->dist_on || bytes == 0)
        return ALIGN_OK;
    int rc = tr->dist.broadcast(tr->dist.user_data, buf, bytes, 0);
    return rc < 0 ? comm_error(tr, rc, "broadcast") : ALIGN_OK;
}

static int allgather(align_trainer *tr, const void *send, void *recv, size_t bytes)
{
    int rc = tr->dist.allgather(tr->dist.user_data, send, recv, bytes);
    return rc < 0 ? comm_error(tr, rc, "allgather") : ALIGN_OK;
}

int align__dist_allgather(align_trainer *tr, const void *send, void *recv, size_t bytes)
{
    if (!tr->dist_on) {
        memmove(recv, send, bytes);
        return ALIGN_OK;
    }
    return allgather(tr, send, recv, bytes);
}

int align__dist_allgather_f64(align_trainer *tr, const double *v, double *all, int32_t n)
{
    if (!tr->dist_on) {
        memmove(all, v, (size_t)n * sizeof *v);
        return ALIGN_OK;
    }
    return allgather(tr, v, all, (size_t)n * sizeof *v);
}

int align__dist_sum_f64(align_trainer *tr, double *v, int32_t n)
{
    if (!tr->dist_on || n <= 0)
        return ALIGN_OK;
    const int32_t P = tr->dist.size;
    double *all = align__malloc((size_t)P * (size_t)n * sizeof *all);
    if (!all)
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    int rc = allgather(tr, v, all, (size_t)n * sizeof *v);
    if (rc == ALIGN_OK)
        for (int32_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int32_t r = 0; r < P; r++)
                s += all[(size_t)r * (size_t)n + (size_t)i];
            v[i] = s;
        }
    align__free(all);
    return rc;
}

/* What each rank reports after its share of a step. */
typedef struct outcome {
    int32_t rc;
    int32_t flags;      /* 1 nonfinite, 2 empty */
    int64_t processed;
    int32_t n_sums, pad;
    double  sums[ALIGN__DIST_SUMS];
} outcome;

/* The first failure over the ranks (own first): *own = 1 if it is ours. */
static int first_failure(const align_trainer *tr, const int32_t *rcs, size_t stride, int32_t *who)
{
    const int32_t me = tr->dist.rank;
    const int32_t mine = *(const int32_t *)((const char *)rcs + (size_t)me * stride);
    if (mine < 0 && mine != ALIGN_DONE) {
        *who = me;
        return mine;
    }
    for (int32_t r = 0; r < tr->dist.size; r++) {
        int32_t c = *(const int32_t *)((const char *)rcs + (size_t)r * stride);
        if (c < 0 && c != ALIGN_DONE) {
            *who = r;
            return c;
        }
    }
    return ALIGN_OK;
}

int align__dist_after_accumulate(align_trainer *tr, int rc, align__step_ctx *ctx)
{
    if (!tr->dist_on)
        return rc;
    const int32_t P = tr->dist.size;
    outcome mine;
    memset(&mine, 0, sizeof mine);
    mine.rc = rc;
    mine.flags = (ctx->nonfinite ? 1 : 0) | (ctx->empty ? 2 : 0);
    mine.processed = ctx->tokens_processed;
    mine.n_sums = ctx->n_sums;
    memcpy(mine.sums, ctx->sums, sizeof mine.sums);
    outcome *all = align__calloc((size_t)P, sizeof *all);
    if (!all)
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    int crc = allgather(tr, &mine, all, sizeof mine);
    if (crc < 0) {
        align__free(all);
        return crc;
    }
    int32_t who = 0;
    int bad = first_failure(tr, &all[0].rc, sizeof *all, &who);
    if (bad < 0) {
        align__free(all);
        if (who == tr->dist.rank)
            return bad; /* our own message stands */
        return align__error(&tr->err, bad, "step %lld failed on rank %d (%s); no rank applied it",
                            (long long)tr->steps + 1, (int)who, align_strerror(bad));
    }
    int n_done = 0, nonfinite = 0, empty = 1;
    int64_t processed = 0;
    for (int32_t r = 0; r < P; r++) {
        n_done += all[r].rc == ALIGN_DONE;
        nonfinite |= (all[r].flags & 1) != 0;
        empty &= (all[r].flags & 2) != 0;
        processed += all[r].processed;
        if (all[r].n_sums != ctx->n_sums) {
            align__free(all);
            return align__error(&tr->err, ALIGN_EINTERNAL,
                                "step %lld: rank %d reported %d partial sums, this rank %d (ranks out of step)",
                                (long long)tr->steps + 1, (int)r, (int)all[r].n_sums, (int)ctx->n_sums);
        }
    }
    if (n_done == P) {
        align__free(all);
        return ALIGN_DONE;
    }
    if (n_done > 0) {
        align__free(all);
        return align__error(&tr->err, ALIGN_EINTERNAL,
                            "step %lld: %d of %d ranks ran out of data (ranks must read the same data)",
                            (long long)tr->steps + 1, n_done, (int)P);
    }
    for (int32_t i = 0; i < ctx->n_sums; i++) {
        double s = 0.0;
        for (int32_t r = 0; r < P; r++)
            s += all[r].sums[i];
        ctx->sums[i] = s;
    }
    ctx->nonfinite = nonfinite;
    ctx->empty = empty;
    ctx->tokens_processed = processed;
    align__free(all);
    return ALIGN_OK;
}

int align__dist_sum_f32(align_trainer *tr, float *v, size_t n)
{
    if (!tr->dist_on)
        return ALIGN_OK;
    for (size_t o = 0; o < n; o += GRAD_BUCKET) {
        int rc = tr->dist.allreduce_sum_f32(tr->dist.user_data, v + o, n - o < GRAD_BUCKET ? n - o : GRAD_BUCKET);
        if (rc < 0)
            return comm_error(tr, rc, "all-reduce");
    }
    return ALIGN_OK;
}

int align__dist_reduce_grads(align_trainer *tr)
{
    if (!tr->dist_on)
        return ALIGN_OK;
    for (int32_t i = 0; i < tr->n_roles; i++) {
        if (!tr->roles[i].opt)
            continue;
        align_model *m = tr->roles[i].model;
        for (size_t o = 0; o < m->n_params; o += GRAD_BUCKET) {
            size_t n = m->n_params - o < GRAD_BUCKET ? m->n_params - o : GRAD_BUCKET;
            int rc = tr->dist.allreduce_sum_f32(tr->dist.user_data, m->grads + o, n);
            if (rc < 0)
                return comm_error(tr, rc, "gradient all-reduce");
        }
    }
    return ALIGN_OK;
}

int align__dist_agree_verdict(align_trainer *tr, int verdict, int *agreed)
{
    *agreed = verdict;
    if (!tr->dist_on)
        return ALIGN_OK;
    int32_t mine = verdict, all[1024];
    int32_t *v = tr->dist.size <= 1024 ? all : align__calloc((size_t)tr->dist.size, sizeof *v);
    if (!v)
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    int rc = allgather(tr, &mine, v, sizeof mine);
    if (rc == ALIGN_OK) {
        int lo = v[0];
        for (int32_t r = 1; r < tr->dist.size; r++)
            lo = v[r] < lo ? v[r] : lo;
        /* a negative anywhere wins; else DONE (> 0) anywhere finishes */
        int hi = v[0];
        for (int32_t r = 1; r < tr->dist.size; r++)
            hi = v[r] > hi ? v[r] : hi;
        *agreed = lo < 0 ? lo : hi;
    }
    if (v != all)
        align__free(v);
    return rc;
}

int align__dist_agree_rc(align_trainer *tr, int rc, const char *what)
{
    if (!tr->dist_on)
        return rc;
    int32_t mine = rc, stack[1024];
    int32_t *v = tr->dist.size <= 1024 ? stack : align__calloc((size_t)tr->dist.size, sizeof *v);
    if (!v)
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    int crc = allgather(tr, &mine, v, sizeof mine);
    int32_t who = 0;
    int bad = crc < 0 ? crc : first_failure(tr, v, sizeof *v, &who);
    if (v != stack)
        align__free(v);
    if (crc < 0)
        return crc;
    if (bad == ALIGN_OK)
        return rc; /* ALIGN_OK or ALIGN_DONE: the same on every rank */
    if (who == tr->dist.rank)
        return bad;
    return align__error(&tr->err, bad, "%s failed on rank %d (%s)", what, (int)who, align_strerror(bad));
}

ALIGN_API int align_trainer_set_dist(align_trainer *tr, const align_dist *d)
{
    if (!tr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_set_dist: trainer is NULL");
    ALIGN__TRAINER_NOT_BUSY(tr, "align_trainer_set_dist");
    align__error_clear(&tr->err);
    if (tr->steps > 0)
        return align__error(&tr->err, ALIGN_EMISUSE, "align_trainer_set_dist: call it before the first step");
    if (!d || d->size == 1) {
        if (d && (d->struct_size < sizeof *d || d->rank != 0))
            return align__error(&tr->err, ALIGN_EINVAL, "align_trainer_set_dist: rank %d of 1 (or old struct)",
                                (int)d->rank);
        memset(&tr->dist, 0, sizeof tr->dist);
        tr->dist_on = 0;
        return ALIGN_OK;
    }
    if (!tr->vt->finish)
        return align__error(&tr->err, ALIGN_EMISUSE, "align_trainer_set_dist: the %s trainer is not data parallel "
                            "(run it on one rank)", tr->vt->name);
    if (d->struct_size < sizeof *d)
        return align__error(&tr->err, ALIGN_EVERSION, "align_trainer_set_dist: struct_size %u, expected %zu",
                            (unsigned)d->struct_size, sizeof *d);
    if (d->size < 1 || d->size > (1 << 20) || d->rank < 0 || d->rank >= d->size)
        return align__error(&tr->err, ALIGN_EINVAL, "align_trainer_set_dist: rank %d of %d is out of range",
                            (int)d->rank, (int)d->size);
    if (!d->allreduce_sum_f32 || !d->broadcast || !d->allgather)
        return align__error(&tr->err, ALIGN_EINVAL,
                            "align_trainer_set_dist: allreduce_sum_f32, broadcast and allgather are required");
    tr->dist = *d;
    tr->dist.struct_size = sizeof tr->dist;
    tr->dist_on = 1;
    /* Every rank must hold the same roles with the same shapes before rank
     * 0's weights replace theirs. */
    double shape[2 * ALIGN__MAX_ROLES + 1] = {(double)tr->n_roles};
    for (int32_t i = 0; i < tr->n_roles; i++) {
        shape[1 + 2 * i] = (double)tr->roles[i].model->n_params;
        shape[2 + 2 * i] = tr->roles[i].opt ? 1.0 : 0.0;
    }
    const int32_t ns = 2 * ALIGN__MAX_ROLES + 1;
    double *all = align__malloc((size_t)d->size * ns * sizeof *all);
    int rc = all ? align__dist_allgather_f64(tr, shape, all, ns)
                 : align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    for (int32_t r = 0; rc == ALIGN_OK && r < d->size; r++)
        if (memcmp(all + (size_t)r * ns, shape, sizeof shape) != 0)
            rc = align__error(&tr->err, ALIGN_EINVAL,
                              "align_trainer_set_dist: rank %d built a trainer with other roles or shapes", (int)r);
    align__free(all);
    for (int32_t i = 0; rc == ALIGN_OK && i < tr->n_roles; i++) {
        if (!tr->roles[i].opt)
            continue;
        align_model *m = tr->roles[i].model;
        for (size_t o = 0; rc == ALIGN_OK && o < m->n_params; o += GRAD_BUCKET) {
            size_t n = m->n_params - o < GRAD_BUCKET ? m->n_params - o : GRAD_BUCKET;
            rc = align__dist_bcast(tr, m->params + o, n * sizeof(float));
        }
        m->fwd_ready = 0; /* activations of the old weights are stale */
    }
    if (rc < 0) {
        tr->dist_on = 0;
        memset(&tr->dist, 0, sizeof tr->dist);
    }
    return rc;
}
