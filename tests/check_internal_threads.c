/* check_internal_threads.c — one frozen model shared by several threads:
 * forwards of different shapes, KV-cache decoding and generation running at
 * once give the same bits as the same calls made one after another; frozen
 * clones of a frozen model share its weights and may be freed in any order. */
#include "testutil.h"

#include "align.h"
#include "model/model_impl.h"

#include <pthread.h>

#define N_THREADS 4
#define N_JOBS 100 /* forwards per thread */
#define MAXB 4
#define MAXT 40
#define V 257

static align_model *tiny_model(uint32_t flags)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.flags = flags;
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = V;
    mp.max_seq_len = 64;
    mp.seed = 11;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    return m;
}

/* ---- forwards and decodes of different shapes -------------------------------- */
typedef struct job {
    int32_t B, T;
    int32_t tokens[MAXB * MAXT], lengths[MAXB];
    /* outputs */
    float   lp[MAXB * (MAXT - 1)], scalar[MAXB * MAXT];
    uint64_t logits_hash; /* FNV-1a of the [B][T][V] logits' bytes */
    int32_t argmax[MAXB * (MAXT - 1)];
    float   last[MAXB * V]; /* decode: logits at each sequence's last position */
    int     rc;
} job;

static void job_make(job *j, uint64_t seed)
{
    align__rng r;
    align__rng_init(&r, seed, 0);
    memset(j, 0, sizeof *j);
    j->B = 1 + (int32_t)align__rng_below(&r, MAXB);
    j->T = 1 + (int32_t)align__rng_below(&r, MAXT);
    for (int32_t b = 0; b < j->B; b++) {
        j->lengths[b] = 1 + (int32_t)align__rng_below(&r, (uint32_t)j->T);
        for (int32_t t = 0; t < j->T; t++)
            j->tokens[b * j->T + t] = t < j->lengths[b] ? (int32_t)align__rng_below(&r, V) : 0;
    }
}

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The forward (all outputs) and a prefill of a fresh KV cache. */
static int job_run(align_model *m, job *j, float *logits /* [MAXB * MAXT * V] scratch */)
{
    int rc = align__model_forward_ex(m, j->tokens, j->lengths, j->B, j->T, j->lp, j->scalar,
                                     logits, j->argmax);
    if (rc)
        return rc;
    j->logits_hash = fnv1a(logits, (size_t)j->B * (size_t)j->T * V * sizeof(float));
    align__kv_cache *kv = NULL;
    if ((rc = align__kv_create(&kv, m, j->B, j->T)))
        return rc;
    rc = align__model_decode(m, kv, j->tokens, j->T, j->lengths, j->last);
    align__kv_free(kv);
    return rc;
}

/* Outputs of two runs of the same job have the same bits (the unused tails
 * are zero in both). */
static int job_same(const job *a, const job *b)
{
    return a->rc == b->rc && memcmp(a->lp, b->lp, sizeof a->lp) == 0 &&
           memcmp(a->scalar, b->scalar, sizeof a->scalar) == 0 &&
           a->logits_hash == b->logits_hash &&
           memcmp(a->argmax, b->argmax, sizeof a->argmax) == 0 &&
           memcmp(a->last, b->last, sizeof a->last) == 0;
}

typedef struct fwd_arg {
    align_model *m;
    job *jobs; /* N_JOBS of them */
} fwd_arg;

static void *fwd_thread(void *p)
{
    fwd_arg *a = p;
    float *logits = malloc(sizeof(float) * MAXB * MAXT * V);
    for (int i = 0; i < N_JOBS; i++)
        a->jobs[i].rc = logits ? job_run(a->m, &a->jobs[i], logits) : ALIGN_ENOMEM;
    free(logits);
    return NULL;
}

START_TEST(test_concurrent_forward)
{
    ck_assert_int_eq(align_threads_set(2), ALIGN_OK); /* the pool is in play */
    align_model *m = tiny_model(ALIGN_MODEL_SCALAR_HEAD), *f = NULL;
    ck_assert_int_eq(align_model_clone(&f, m, ALIGN_FROZEN), ALIGN_OK);
    align_model_free(m); /* the frozen clone stands alone */

    job *serial = calloc(N_THREADS * N_JOBS, sizeof *serial);
    job *par = calloc(N_THREADS * N_JOBS, sizeof *par);
    ck_assert(serial && par);
    int shapes[MAXB + 1][MAXT + 1];
    memset(shapes, 0, sizeof shapes);
    for (int i = 0; i < N_THREADS * N_JOBS; i++) {
        job_make(&serial[i], 1000 + (uint64_t)i);
        job_make(&par[i], 1000 + (uint64_t)i);
        shapes[serial[i].B][serial[i].T] = 1;
    }
    int n_shapes = 0;
    for (int b = 0; b <= MAXB; b++)
        for (int t = 0; t <= MAXT; t++)
            n_shapes += shapes[b][t];
    ck_assert_int_gt(n_shapes, 50);
    float *logits = malloc(sizeof(float) * MAXB * MAXT * V);
    ck_assert_ptr_nonnull(logits);
    for (int i = 0; i < N_THREADS * N_JOBS; i++)
        ck_assert_int_eq(serial[i].rc = job_run(f, &serial[i], logits), ALIGN_OK);
    free(logits);

    pthread_t th[N_THREADS];
    fwd_arg args[N_THREADS];
    for (int k = 0; k < N_THREADS; k++) {
        args[k].m = f;
        args[k].jobs = par + k * N_JOBS;
        ck_assert_int_eq(pthread_create(&th[k], NULL, fwd_thread, &args[k]), 0);
    }
    for (int k = 0; k < N_THREADS; k++)
        pthread_join(th[k], NULL);
    int wrong = 0;
    for (int i = 0; i < N_THREADS * N_JOBS; i++)
        wrong += !job_same(&serial[i], &par[i]);
    ck_assert_msg(wrong == 0, "%d of %d concurrent forwards differ from the serial ones", wrong,
                  N_THREADS * N_JOBS);

    /* at most one workspace per thread that ran at once */
    int n_ws = 0;
    for (align__workspace *w = f->ws_free; w; w = w->next)
        n_ws++;
    ck_assert_int_ge(n_ws, 1);
    ck_assert_int_le(n_ws, N_THREADS);
    free(serial);
    free(par);
    align_model_free(f);
}
END_TEST

/* A single caller reuses one workspace: no allocation once the largest shape was seen. */
START_TEST(test_workspace_reused)
{
    align_model *m = tiny_model(0), *f = NULL;
    ck_assert_int_eq(align_model_clone(&f, m, ALIGN_FROZEN), ALIGN_OK);
    int32_t toks[2 * 16] = {0}, lens[2] = {16, 5};
    ck_assert_int_eq(align_model_forward(f, toks, lens, 2, 16, NULL, NULL, NULL), ALIGN_OK);
    align__workspace *w = f->ws_free;
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_null(w->next);
    float *mem = w->acts.mem;
    for (int i = 0; i < 5; i++) {
        lens[0] = 1 + i;
        ck_assert_int_eq(align_model_forward(f, toks, lens, 1 + i % 2, 8 + i, NULL, NULL, NULL), ALIGN_OK);
        ck_assert_ptr_eq(f->ws_free, w);
        ck_assert_ptr_null(w->next);
        ck_assert_ptr_eq(w->acts.mem, mem);
    }
    /* the trainable model keeps its own arena and uses no workspace */
    ck_assert_int_eq(align_model_forward(m, toks, lens, 2, 16, NULL, NULL, NULL), ALIGN_OK);
    ck_assert_ptr_null(m->ws_free);
    ck_assert_ptr_nonnull(m->acts.mem);
    /* a failure on the frozen model writes nothing into it; the calling thread has the detail */
    lens[1] = 0;
    ck_assert_int_eq(align_model_forward(f, toks, lens, 2, 16, NULL, NULL, NULL), ALIGN_EINVAL);
    ck_assert_str_eq(f->err.msg, "");
    ck_assert_ptr_nonnull(strstr(align_model_errmsg(f), "lengths[1]"));
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "lengths[1]"));
    align_model_free(f);
    align_model_free(m);
}
END_TEST

/* ---- generation ----------------------------------------------------------------- */
static const char *const PROMPTS[] = {"Hello", "a longer prompt, with a comma", "xy", ""};
#define N_GEN 6 /* generate calls per thread */

typedef struct gen_out {
    int32_t n[4];
    int32_t tokens[4][24];
    float   logprobs[4][24];
    int     rc;
} gen_out;

static void gen_params(align_generate_params *gp, int k, int i)
{
    ALIGN_GENERATE_DEFAULT_PARAMS(gp);
    gp->max_new_tokens = 8 + (k + i) % 16;
    gp->flags = ALIGN_GENERATE_IGNORE_EOT;
    if ((k + i) % 2 == 0) {
        gp->temperature = 0.0f; /* greedy */
    } else {
        gp->temperature = 0.9f;
        gp->top_k = 40;
        gp->seed = (uint64_t)(100 * k + i);
    }
}

static int gen_run(align_model *m, const align_tokenizer *t, int k, int i, gen_out *o)
{
    align_generate_params gp;
    gen_params(&gp, k, i);
    int n = 1 + (k + i) % 4;
    align_generation *g = NULL;
    memset(o, 0, sizeof *o);
    int rc = align_generate(m, t, PROMPTS + (k + i) % (5 - n), n, &gp, &g);
    if (rc)
        return rc;
    for (int s = 0; s < n; s++) {
        int32_t cnt = 0;
        const int32_t *tk = align_generation_tokens(g, s, &cnt);
        const float *lp = align_generation_logprobs(g, s, &cnt);
        o->n[s] = cnt;
        memcpy(o->tokens[s], tk, (size_t)cnt * sizeof *tk);
        memcpy(o->logprobs[s], lp, (size_t)cnt * sizeof *lp);
    }
    align_generation_free(g);
    return ALIGN_OK;
}

typedef struct gen_arg {
    align_model *m;
    const align_tokenizer *t;
    int k;
    gen_out *out; /* N_GEN */
} gen_arg;

static void *gen_thread(void *p)
{
    gen_arg *a = p;
    for (int i = 0; i < N_GEN; i++)
        a->out[i].rc = gen_run(a->m, a->t, a->k, i, &a->out[i]);
    return NULL;
}

START_TEST(test_concurrent_generate)
{
    ck_assert_int_eq(align_threads_set(2), ALIGN_OK);
    align_model *m = tiny_model(0), *f = NULL;
    ck_assert_int_eq(align_model_clone(&f, m, ALIGN_FROZEN), ALIGN_OK);
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    static gen_out serial[N_THREADS][N_GEN], par[N_THREADS][N_GEN];
    for (int k = 0; k < N_THREADS; k++)
        for (int i = 0; i < N_GEN; i++)
            ck_assert_int_eq(gen_run(f, t, k, i, &serial[k][i]), ALIGN_OK);
    /* the trainable original generates the same (the frozen clone copied it) */
    gen_out o;
    ck_assert_int_eq(gen_run(m, t, 1, 0, &o), ALIGN_OK);
    ck_assert(memcmp(&o, &serial[1][0], sizeof o) == 0);

    pthread_t th[N_THREADS];
    gen_arg args[N_THREADS];
    for (int k = 0; k < N_THREADS; k++) {
        args[k] = (gen_arg){f, t, k, par[k]};
        ck_assert_int_eq(pthread_create(&th[k], NULL, gen_thread, &args[k]), 0);
    }
    for (int k = 0; k < N_THREADS; k++)
        pthread_join(th[k], NULL);
    for (int k = 0; k < N_THREADS; k++)
        for (int i = 0; i < N_GEN; i++) {
            ck_assert_int_eq(par[k][i].rc, ALIGN_OK);
            ck_assert_msg(memcmp(&par[k][i], &serial[k][i], sizeof o) == 0,
                          "generation %d of thread %d differs from the serial one", i, k);
        }
    align_tokenizer_free(t);
    align_model_free(f);
    align_model_free(m);
}
END_TEST

/* ---- weights stored once ---------------------------------------------------------- */
START_TEST(test_frozen_shares_weights)
{
    align_model *m = tiny_model(ALIGN_MODEL_SCALAR_HEAD), *f = NULL, *g = NULL, *h = NULL, *tr = NULL;
    ck_assert_int_eq(align_model_clone(&f, m, ALIGN_FROZEN), ALIGN_OK);
    ck_assert_ptr_ne(f->params, m->params); /* the trainable one will change: a copy */
    ck_assert_int_eq(align_model_clone(&g, f, ALIGN_FROZEN), ALIGN_OK);
    ck_assert_int_eq(align_model_clone(&h, g, ALIGN_FROZEN), ALIGN_OK);
    ck_assert_ptr_eq(g->params, f->params); /* frozen of frozen: shared */
    ck_assert_ptr_eq(h->wts, f->wts);
    ck_assert_int_eq(atomic_load(&f->wts->refs), 3);
    ck_assert_int_eq(align_model_clone(&tr, f, 0), ALIGN_OK); /* trainable of frozen: a copy */
    ck_assert_ptr_ne(tr->params, f->params);
    ck_assert_int_eq(atomic_load(&f->wts->refs), 3);

    int32_t toks[2 * 12], lens[2] = {12, 7};
    for (int i = 0; i < 24; i++)
        toks[i] = (i * 37) % V;
    float ref[2 * 11], out[2 * 11], sref[24], sout[24];
    ck_assert_int_eq(align_model_forward(m, toks, lens, 2, 12, ref, sref, NULL), ALIGN_OK);
    /* free the parent first, then a middle one: the rest still reads the weights */
    align_model_free(f);
    align_model_free(m);
    ck_assert_int_eq(atomic_load(&g->wts->refs), 2);
    ck_assert_int_eq(align_model_forward(h, toks, lens, 2, 12, out, sout, NULL), ALIGN_OK);
    ck_assert(memcmp(ref, out, sizeof ref) == 0 && memcmp(sref, sout, sizeof sref) == 0);
    align_model_free(g);
    ck_assert_int_eq(atomic_load(&h->wts->refs), 1);
    memset(out, 0, sizeof out);
    ck_assert_int_eq(align_model_forward(h, toks, lens, 2, 12, out, NULL, NULL), ALIGN_OK);
    ck_assert(memcmp(ref, out, sizeof ref) == 0);
    ck_assert_int_eq(align_model_forward(tr, toks, lens, 2, 12, out, NULL, NULL), ALIGN_OK);
    ck_assert(memcmp(ref, out, sizeof ref) == 0);

    /* copying weights into a model that shares them detaches it (copy on write) */
    align_model *h2 = NULL;
    ck_assert_int_eq(align_model_clone(&h2, h, ALIGN_FROZEN), ALIGN_OK);
    ck_assert_ptr_eq(h2->params, h->params);
    align_model *other = tiny_model(ALIGN_MODEL_SCALAR_HEAD);
    for (int i = 0; i < 10; i++)
        other->params[i] += 1.0f;
    ck_assert_int_eq(align__model_copy_weights(h2, other), ALIGN_OK);
    ck_assert_ptr_ne(h2->params, h->params);
    ck_assert_int_eq(atomic_load(&h->wts->refs), 1);
    ck_assert_int_eq(align_model_forward(h, toks, lens, 2, 12, out, NULL, NULL), ALIGN_OK);
    ck_assert(memcmp(ref, out, sizeof ref) == 0); /* h kept its weights */
    ck_assert(memcmp(h2->params, other->params, other->n_params * sizeof(float)) == 0);
    align_model_free(other);
    align_model_free(h2);
    align_model_free(h);
    align_model_free(tr);
}
END_TEST

Suite *internal_threads_suite(void)
{
    Suite *s = suite_create("internal_threads");
    TCase *tc = test_tcase(s, "frozen", 600);
    tcase_add_test(tc, test_frozen_shares_weights);
    tcase_add_test(tc, test_workspace_reused);
    tcase_add_test(tc, test_concurrent_forward);
    tcase_add_test(tc, test_concurrent_generate);
    return s;
}
