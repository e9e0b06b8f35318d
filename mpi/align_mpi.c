/*
 * align_mpi.c — libalign_mpi: align_dist over MPI (include/align_mpi.h).
 *
 * Why a library of its own: libalign.so must not depend on MPI (most hosts
 * train on one process); the core only sees the align_dist vtable.
 *
 * Deadlines: every operation is built from non-blocking MPI calls polled
 * with MPI_Testall until done or until the deadline passes, so a dead or
 * stuck peer turns into ALIGN_EIO instead of a hang.
 *
 * Determinism: allreduce_sum_f32 is a ring (reduce-scatter, then
 * all-gather) written here rather than MPI_Allreduce, whose summation
 * order the MPI standard leaves to the implementation: chunk k is summed
 * in the fixed order x_k + x_{k+1} + ... + x_{k-1} (ranks mod P) and then
 * copied, so every rank holds the same bits and a run is reproducible for
 * a given number of ranks. Traffic per rank: 2 (P-1)/P of the buffer.
 */
#define _POSIX_C_SOURCE 200809L
#include "align_mpi.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mpi_state {
    MPI_Comm comm;
    int      rank, size;
    double   timeout;
    float   *tmp;
    size_t   tmp_cap;
    char     err[256];
} mpi_state;

static int fail(mpi_state *st, const char *fmt, const char *what, int code)
{
    char s[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (code != MPI_SUCCESS)
        MPI_Error_string(code, s, &len);
    snprintf(st->err, sizeof st->err, fmt, what, st->timeout, s);
    return ALIGN_EIO;
}

/* Polls reqs[0..n) until all completed or the deadline passed. */
static int wait_all(mpi_state *st, MPI_Request *reqs, int n, const char *what)
{
    const double deadline = MPI_Wtime() + st->timeout;
    for (unsigned spin = 0;; spin++) {
        int done = 0;
        int rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return fail(st, "%s failed (timeout %.0f s): %s", what, rc);
        if (done)
            return ALIGN_OK;
        if ((spin & 255) == 255) {
            if (MPI_Wtime() > deadline)
                return fail(st, "%s: no answer from a peer rank within %.0f s (a rank died, hangs or left the "
                                "step)%s", what, MPI_SUCCESS);
            sched_yield(); /* oversubscribed ranks: let the peer run */
        }
    }
}

static int allreduce_sum_f32(void *ud, float *buf, size_t n)
{
    mpi_state *st = ud;
    const int P = st->size, r = st->rank;
    if (P == 1 || n == 0)
        return ALIGN_OK;
    /* segments small enough for int counts */
    const size_t SEG = (size_t)1 << 28;
    if (n > SEG) {
        for (size_t o = 0; o < n; o += SEG) {
            int rc = allreduce_sum_f32(ud, buf + o, n - o < SEG ? n - o : SEG);
            if (rc < 0)
                return rc;
        }
        return ALIGN_OK;
    }
#define OFF(k) ((size_t)(k) * n / (size_t)P)
#define CNT(k) (OFF((k) + 1) - OFF(k))
    size_t need = CNT(P - 1) + 1;
    if (need > st->tmp_cap) {
        float *t = realloc(st->tmp, need * sizeof *t);
        if (!t) {
            snprintf(st->err, sizeof st->err, "all-reduce: out of memory");
            return ALIGN_ENOMEM;
        }
        st->tmp = t;
        st->tmp_cap = need;
    }
    const int left = (r - 1 + P) % P, right = (r + 1) % P;
    for (int s = 0; s < P - 1; s++) { /* reduce-scatter */
        int ks = ((r - s) % P + P) % P, kr = ((r - s - 1) % P + P) % P;
        MPI_Request q[2];
        MPI_Irecv(st->tmp, (int)CNT(kr), MPI_FLOAT, left, 71, st->comm, &q[0]);
        MPI_Isend(buf + OFF(ks), (int)CNT(ks), MPI_FLOAT, right, 71, st->comm, &q[1]);
        int rc = wait_all(st, q, 2, "gradient all-reduce");
        if (rc < 0)
            return rc;
        float *dst = buf + OFF(kr);
        for (size_t i = 0, c = CNT(kr); i < c; i++)
            dst[i] = st->tmp[i] + dst[i];
    }
    for (int s = 0; s < P - 1; s++) { /* all-gather of the summed chunks */
        int ks = ((r + 1 - s) % P + P) % P, kr = ((r - s) % P + P) % P;
        MPI_Request q[2];
        MPI_Irecv(buf + OFF(kr), (int)CNT(kr), MPI_FLOAT, left, 72, st->comm, &q[0]);
        MPI_Isend(buf + OFF(ks), (int)CNT(ks), MPI_FLOAT, right, 72, st->comm, &q[1]);
        int rc = wait_all(st, q, 2, "gradient all-gather");
        if (rc < 0)
            return rc;
    }
#undef OFF
#undef CNT
    return ALIGN_OK;
}

static int broadcast(void *ud, void *buf, size_t bytes, int32_t root)
{
    mpi_state *st = ud;
    for (size_t o = 0; o < bytes; o += (size_t)1 << 30) {
        size_t c = bytes - o < ((size_t)1 << 30) ? bytes - o : (size_t)1 << 30;
        MPI_Request q;
        int rc = MPI_Ibcast((char *)buf + o, (int)c, MPI_BYTE, root, st->comm, &q);
        if (rc != MPI_SUCCESS)
            return fail(st, "%s failed (timeout %.0f s): %s", "broadcast", rc);
        if ((rc = wait_all(st, &q, 1, "broadcast")) < 0)
            return rc;
    }
    return ALIGN_OK;
}

static int allgather(void *ud, const void *send, void *recv, size_t bytes)
{
    mpi_state *st = ud;
    if (bytes > INT_MAX) {
        snprintf(st->err, sizeof st->err, "allgather: %zu bytes per rank is too many", bytes);
        return ALIGN_EINVAL;
    }
    MPI_Request q;
    int rc = MPI_Iallgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, st->comm, &q);
    if (rc != MPI_SUCCESS)
        return fail(st, "%s failed (timeout %.0f s): %s", "allgather", rc);
    return wait_all(st, &q, 1, "allgather");
}

static int errmsg(void *ud, char *buf, size_t cap)
{
    if (cap)
        snprintf(buf, cap, "%s", ((mpi_state *)ud)->err);
    return ALIGN_OK;
}

ALIGN_MPI_API int align_dist_mpi_create(align_dist *d, MPI_Comm comm, double timeout_sec)
{
    if (!d)
        return ALIGN_EINVAL;
    memset(d, 0, sizeof *d);
    int init = 0;
    MPI_Initialized(&init);
    if (!init)
        return ALIGN_EMISUSE;
    mpi_state *st = calloc(1, sizeof *st);
    if (!st)
        return ALIGN_ENOMEM;
    if (timeout_sec <= 0) {
        const char *e = getenv("ALIGN_DIST_TIMEOUT");
        timeout_sec = e && atof(e) > 0 ? atof(e) : 300.0;
    }
    st->timeout = timeout_sec;
    if (MPI_Comm_dup(comm, &st->comm) != MPI_SUCCESS) {
        free(st);
        return ALIGN_EIO;
    }
    /* errors come back as codes (the deadline logic reports them) */
    MPI_Comm_set_errhandler(st->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(st->comm, &st->rank);
    MPI_Comm_size(st->comm, &st->size);
    d->struct_size = sizeof *d;
    d->rank = st->rank;
    d->size = st->size;
    d->user_data = st;
    d->allreduce_sum_f32 = allreduce_sum_f32;
    d->broadcast = broadcast;
    d->allgather = allgather;
    d->errmsg = errmsg;
    return ALIGN_OK;
}

ALIGN_MPI_API void align_dist_mpi_free(align_dist *d)
{
    if (!d || !d->user_data)
        return;
    mpi_state *st = d->user_data;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin)
        MPI_Comm_free(&st->comm);
    free(st->tmp);
    free(st);
    memset(d, 0, sizeof *d);
}
