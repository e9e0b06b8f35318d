/* check_internal_dist.c — the data-parallel seam (lib/dist, align_dist)
 * without MPI: ranks are threads of this process joined by an in-process
 * communicator (shared pointers and a barrier with a deadline). SFT on two
 * ranks against one rank with the same global batch, rank 0's weights
 * broadcast to a rank that started elsewhere, a host verdict on one rank
 * that discards the step on every rank, and a rank that leaves: the other
 * times out with a message instead of hanging. */
#include "testutil.h"

#include "align.h"
#include "dist/dist.h"
#include "model/model_impl.h"

#include <math.h>
#include <pthread.h>
#include <time.h>

/* ---- an in-process communicator ---------------------------------------------- */

#define MAXP 4

typedef struct world {
    int P;
    double timeout;            /* seconds a rank waits for the others */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived;
    unsigned gen;
    const void *slot[MAXP];    /* what each rank posted for the current collective */
} world;

typedef struct fake {
    world *w;
    int rank;
    char err[128];
} fake;

static void world_init(world *w, int P, double timeout)
{
    memset(w, 0, sizeof *w);
    w->P = P;
    w->timeout = timeout;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

/* Every rank arrives or the deadline passes (ALIGN_EIO, the world is then broken). */
static int barrier(fake *f)
{
    world *w = f->w;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    double t = (double)dl.tv_sec + (double)dl.tv_nsec * 1e-9 + w->timeout;
    dl.tv_sec = (time_t)t;
    dl.tv_nsec = (long)((t - (double)dl.tv_sec) * 1e9);
    pthread_mutex_lock(&w->mu);
    unsigned g = w->gen;
    if (++w->arrived == w->P) {
        w->arrived = 0;
        w->gen++;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        return ALIGN_OK;
    }
    while (g == w->gen) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) != 0 && g == w->gen) {
            pthread_mutex_unlock(&w->mu);
            snprintf(f->err, sizeof f->err, "no answer from a peer within %.1f s", w->timeout);
            return ALIGN_EIO;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return ALIGN_OK;
}

static int post(fake *f, const void *p)
{
    f->w->slot[f->rank] = p;
    return barrier(f);
}

static int f_allreduce(void *ud, float *buf, size_t n)
{
    fake *f = ud;
    float *tmp = malloc(n * sizeof *tmp + 1);
    int rc = post(f, buf);
    if (rc == ALIGN_OK) {
        for (size_t i = 0; i < n; i++) { /* rank order: the same bits on every rank */
            float s = 0.0f;
            for (int r = 0; r < f->w->P; r++)
                s += ((const float *)f->w->slot[r])[i];
            tmp[i] = s;
        }
        rc = barrier(f); /* nobody writes buf before every rank has read it */
        if (rc == ALIGN_OK)
            memcpy(buf, tmp, n * sizeof *tmp);
    }
    free(tmp);
    return rc;
}

static int f_broadcast(void *ud, void *buf, size_t bytes, int32_t root)
{
    fake *f = ud;
    int rc = post(f, buf);
    if (rc == ALIGN_OK && f->rank != root)
        memcpy(buf, f->w->slot[root], bytes);
    return rc == ALIGN_OK ? barrier(f) : rc;
}

static int f_allgather(void *ud, const void *send, void *recv, size_t bytes)
{
    fake *f = ud;
    int rc = post(f, send);
    if (rc == ALIGN_OK)
        for (int r = 0; r < f->w->P; r++)
            memcpy((char *)recv + (size_t)r * bytes, f->w->slot[r], bytes);
    return rc == ALIGN_OK ? barrier(f) : rc;
}

static int f_errmsg(void *ud, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", ((fake *)ud)->err);
    return ALIGN_OK;
}

static void fake_dist(align_dist *d, fake *f)
{
    ck_assert_int_eq(align_dist_init(d, sizeof *d), ALIGN_OK);
    d->rank = f->rank;
    d->size = f->w->P;
    d->user_data = f;
    d->allreduce_sum_f32 = f_allreduce;
    d->broadcast = f_broadcast;
    d->allgather = f_allgather;
    d->errmsg = f_errmsg;
}

/* ---- fixtures ------------------------------------------------------------------ */

static align_model *tiny_model(uint64_t seed)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = 257;
    mp.max_seq_len = 32;
    mp.seed = seed;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    return m;
}

static align_dataset *data_n(int n)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    for (int k = 0; k < n; k++) {
        char p[32], c[16];
        snprintf(p, sizeof p, "caps %c%c%c:", 'a' + k % 8, 'a' + (k * 3) % 8, 'a' + (k * 5) % 7);
        snprintf(c, sizeof c, "%c%c%c", 'A' + k % 8, 'A' + (k * 3) % 8, 'A' + (k * 5) % 7);
        ck_assert_int_eq(align_dataset_add_demo(d, p, c, NULL), ALIGN_OK);
    }
    return d;
}

#define STEPS 3

/* One rank's run: SFT with micro 2 x accum 3 (a global batch of 6 rows,
 * split 3 + 3 over two ranks), STEPS steps. */
typedef struct run {
    fake f;              /* f.w == NULL: one rank, no communicator */
    uint64_t model_seed;
    int fail_rank, fail_step; /* on_step returns -1 on this rank at this step (once) */
    int leave_after_set;      /* this rank creates, joins, and leaves (a dead peer) */
    int rc[STEPS + 1];
    float loss[STEPS + 1];
    float *w;            /* final weights (malloc) */
    size_t nw;
    float *g1;           /* the gradient step 1 applied (summed over ranks) */
    align_model *m;
    char err[256];
} run;

static int on_step(const align_step_stats *s, void *ud)
{
    run *r = ud;
    if (s->step == 1 && !r->g1) { /* on_step sees the gradient the optimizer will apply */
        r->g1 = malloc(r->m->n_params * sizeof(float));
        memcpy(r->g1, r->m->grads, r->m->n_params * sizeof(float));
    }
    if (r->fail_step > 0 && s->step == r->fail_step && r->f.rank == r->fail_rank) {
        r->fail_step = 0; /* once */
        return -1;
    }
    return 0;
}

static void *run_rank(void *arg)
{
    run *r = arg;
    align_threads_set(1);
    align_model *m = tiny_model(r->model_seed);
    r->m = m;
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    align_dataset *d = data_n(24);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 3e-3f;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), ALIGN_OK);
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = 2;
    sp.grad_accum = 3;
    sp.max_steps = 10;
    sp.seed = 7;
    sp.on_step = on_step;
    sp.on_step_user_data = r;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_OK);
    if (r->f.w) {
        align_dist dist;
        fake_dist(&dist, &r->f);
        ck_assert_int_eq(align_trainer_set_dist(tr, &dist), ALIGN_OK);
    }
    if (!r->leave_after_set) {
        for (int i = 0, k = 0; k < STEPS && i < STEPS + 1; i++) {
            align_step_stats st;
            align_step_stats_init(&st, sizeof st);
            r->rc[i] = align_trainer_step(tr, &st);
            r->loss[i] = st.loss;
            if (r->rc[i] < 0) {
                snprintf(r->err, sizeof r->err, "%s", align_trainer_errmsg(tr));
                if (r->rc[i] == ALIGN_EIO)
                    break; /* the world is gone */
                continue;   /* the same step again */
            }
            k++;
        }
    }
    r->nw = m->n_params;
    r->w = malloc(m->n_params * sizeof(float));
    memcpy(r->w, m->params, m->n_params * sizeof(float));
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_dataset_free(d);
    align_tokenizer_free(t);
    align_model_free(m);
    return NULL;
}

static void run_world(run *rs, int P, world *w)
{
    pthread_t th[MAXP];
    for (int r = 0; r < P; r++) {
        rs[r].f.w = w;
        rs[r].f.rank = r;
        ck_assert_int_eq(pthread_create(&th[r], NULL, run_rank, &rs[r]), 0);
    }
    for (int r = 0; r < P; r++)
        pthread_join(th[r], NULL);
}

static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    return s > 0 ? d / s : d;
}

static void run_free(run *r)
{
    free(r->w);
    free(r->g1);
}

/* ---- tests ---------------------------------------------------------------------- */

START_TEST(test_share_partitions)
{
    align_trainer t;
    memset(&t, 0, sizeof t);
    t.dist_on = 1;
    for (int P = 1; P <= 5; P++)
        for (int64_t n = 0; n <= 23; n++) {
            int64_t next = 0;
            t.dist.size = P;
            for (int r = 0; r < P; r++) {
                t.dist.rank = r;
                int64_t lo, hi;
                align__dist_share(&t, n, &lo, &hi);
                ck_assert_int_eq(lo, next); /* contiguous, in rank order */
                ck_assert(hi - lo == n / P || hi - lo == n / P + 1);
                next = hi;
            }
            ck_assert_int_eq(next, n); /* everything, once */
        }
}
END_TEST

START_TEST(test_sft_two_ranks_equal_one)
{
    run one;
    memset(&one, 0, sizeof one);
    one.model_seed = 1;
    run_rank(&one);
    for (int i = 0; i < STEPS; i++)
        ck_assert_int_eq(one.rc[i], ALIGN_OK);

    world w;
    world_init(&w, 2, 30.0);
    run two[2];
    memset(two, 0, sizeof two);
    two[0].model_seed = 1;
    two[1].model_seed = 99; /* other weights: set_dist must replace them with rank 0's */
    run_world(two, 2, &w);
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < STEPS; i++)
            ck_assert_msg(two[r].rc[i] == ALIGN_OK, "rank %d step %d: %d %s", r, i, two[r].rc[i], two[r].err);
    /* every rank holds the same bits */
    ck_assert_int_eq(two[0].nw, two[1].nw);
    ck_assert(memcmp(two[0].w, two[1].w, two[0].nw * sizeof(float)) == 0);
    /* the summed gradient is what one rank computes with the same global
     * batch, up to the order of the float sums */
    ck_assert(memcmp(two[0].g1, two[1].g1, two[0].nw * sizeof(float)) == 0);
    double dg = rel_diff(one.g1, two[0].g1, one.nw), d = rel_diff(one.w, two[0].w, one.nw);
    ck_assert_msg(dg <= 1e-6, "gradient of step 1: relative difference %g", dg);
    /* AdamW divides by sqrt(v): tiny gradients magnify rounding, hence 1e-4 */
    ck_assert_msg(d <= 1e-4, "weights after %d steps: relative difference %g", STEPS, d);
    for (int i = 0; i < STEPS; i++) {
        ck_assert_msg(fabsf(one.loss[i] - two[0].loss[i]) <= 1e-6f * fabsf(one.loss[i]), "loss %d: %.9g vs %.9g",
                      i, (double)one.loss[i], (double)two[0].loss[i]);
        ck_assert(two[0].loss[i] == two[1].loss[i]);
    }
    /* and the run learned something */
    ck_assert(one.loss[STEPS - 1] < one.loss[0]);
    run_free(&one);
    run_free(&two[0]);
    run_free(&two[1]);
}
END_TEST

START_TEST(test_verdict_of_one_rank_discards_everywhere)
{
    world w;
    world_init(&w, 2, 30.0);
    run two[2];
    memset(two, 0, sizeof two);
    two[0].model_seed = two[1].model_seed = 1;
    two[0].fail_rank = two[1].fail_rank = 1;
    two[0].fail_step = two[1].fail_step = 2; /* rank 1's on_step says no at step 2 */
    run_world(two, 2, &w);
    for (int r = 0; r < 2; r++) {
        ck_assert_int_eq(two[r].rc[0], ALIGN_OK);
        ck_assert_msg(two[r].rc[1] == ALIGN_ECALLBACK, "rank %d: %d", r, two[r].rc[1]);
        ck_assert_int_eq(two[r].rc[2], ALIGN_OK); /* the same step again, accepted */
        ck_assert_int_eq(two[r].rc[3], ALIGN_OK);
    }
    ck_assert_ptr_nonnull(strstr(two[0].err, "another rank"));
    ck_assert(memcmp(two[0].w, two[1].w, two[0].nw * sizeof(float)) == 0);

    /* the discarded step changed nothing: the run equals one without it */
    world w2;
    world_init(&w2, 2, 30.0);
    run ok[2];
    memset(ok, 0, sizeof ok);
    ok[0].model_seed = ok[1].model_seed = 1;
    run_world(ok, 2, &w2);
    ck_assert(memcmp(ok[0].w, two[0].w, ok[0].nw * sizeof(float)) == 0);
    for (int r = 0; r < 2; r++) {
        run_free(&two[r]);
        run_free(&ok[r]);
    }
}
END_TEST

START_TEST(test_rank_that_leaves_times_out)
{
    world w;
    world_init(&w, 2, 0.5);
    run two[2];
    memset(two, 0, sizeof two);
    two[0].model_seed = two[1].model_seed = 1;
    two[1].leave_after_set = 1;
    run_world(two, 2, &w);
    ck_assert_int_eq(two[0].rc[0], ALIGN_EIO);
    ck_assert_msg(strstr(two[0].err, "rank 0 of 2") && strstr(two[0].err, "no answer from a peer"), "%s",
                  two[0].err);
    run_free(&two[0]);
    run_free(&two[1]);
}
END_TEST

START_TEST(test_set_dist_checks)
{
    align_model *m = tiny_model(1);
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    align_dataset *d = data_n(8);
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, NULL), ALIGN_OK);
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, NULL), ALIGN_OK);
    align_dist dist;
    ck_assert_int_eq(align_dist_init(&dist, sizeof dist), ALIGN_OK);
    ck_assert_int_eq(dist.size, 1);
    ck_assert_int_eq(align_trainer_set_dist(tr, &dist), ALIGN_OK); /* one rank: local */
    dist.size = 2;
    ck_assert_int_eq(align_trainer_set_dist(tr, &dist), ALIGN_EINVAL); /* no callbacks */
    dist.rank = 2;
    dist.allreduce_sum_f32 = f_allreduce;
    dist.broadcast = f_broadcast;
    dist.allgather = f_allgather;
    ck_assert_int_eq(align_trainer_set_dist(tr, &dist), ALIGN_EINVAL); /* rank out of range */
    ck_assert_int_eq(align_trainer_set_dist(NULL, &dist), ALIGN_EINVAL);
    ck_assert_int_eq(align_trainer_step(tr, NULL), ALIGN_OK);
    ck_assert_int_eq(align_trainer_set_dist(tr, NULL), ALIGN_EMISUSE); /* after the first step */
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_dataset_free(d);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

Suite *internal_dist_suite(void)
{
    Suite *s = suite_create("internal_dist");
    TCase *tc = test_tcase(s, "dist", 300);
    tcase_add_test(tc, test_share_partitions);
    tcase_add_test(tc, test_sft_two_ranks_equal_one);
    tcase_add_test(tc, test_verdict_of_one_rank_discards_everywhere);
    tcase_add_test(tc, test_rank_that_leaves_times_out);
    tcase_add_test(tc, test_set_dist_checks);
    return s;
}
