/* check_sft.c — the trainer API through SFT (public API only): learning a
 * small instruction task, checkpoint/resume, callbacks, NaN guard, stop
 * requests, evaluation, gradient accumulation, arguments. */
#include "testutil.h"

#include "align.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* ---- fixtures ------------------------------------------------------------- */

static align_model *make_model(int32_t layers, int32_t embd, int32_t max_len, uint64_t seed)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = layers;
    mp.n_head = 2;
    mp.n_embd = embd;
    mp.vocab_size = 257;
    mp.max_seq_len = max_len;
    mp.seed = seed;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    return m;
}

static align_optimizer *make_opt(align_model *m, float lr, int32_t schedule)
{
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = lr;
    op.schedule = schedule;
    op.total_steps = 400;
    op.warmup_steps = 2;
    op.weight_decay = 0.01f;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), ALIGN_OK);
    return o;
}

static align_tokenizer *bytes_tok(void)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    return t;
}

/* The instruction task: "caps xyzw:" -> "XYZW" for four letters from a..h
 * (4096 strings). Example k of a seeded permutation; the test trains on one
 * range and measures exact match on another. */
static void task_example(uint32_t k, char *prompt, char *completion)
{
    uint32_t x = (k * 2654435761u) & 4095u; /* odd multiplier: a bijection mod 4096 */
    char w[5];
    for (int i = 0; i < 4; i++)
        w[i] = (char)('a' + ((x >> (3 * i)) & 7));
    w[4] = 0;
    sprintf(prompt, "caps %s:", w);
    for (int i = 0; i < 4; i++)
        completion[i] = (char)(w[i] - 'a' + 'A');
    completion[4] = 0;
}

static align_dataset *task_dataset(uint32_t from, uint32_t n)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    for (uint32_t k = from; k < from + n; k++) {
        char p[32], c[8];
        task_example(k, p, c);
        ck_assert_int_eq(align_dataset_add_demo(d, p, c, NULL), ALIGN_OK);
    }
    return d;
}

static align_sft_params sft_params(int32_t micro, int32_t accum, int32_t max_steps)
{
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = micro;
    sp.grad_accum = accum;
    sp.max_steps = max_steps;
    sp.max_seq_len = 32;
    sp.seed = 42;
    return sp;
}

/* Reads a whole file (for bitwise comparisons of saved weights). */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    unsigned char *x = slurp(a, &la), *y = slurp(b, &lb);
    int same = la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static char *path2(const char *dir, const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

/* ---- learning --------------------------------------------------------------- */

/* A 2-layer, 64-wide model trained from scratch learns the task well enough
 * to get >= 90% exact match on 64 held-out prompts with greedy decoding. */
START_TEST(test_learns_instruction_task)
{
    align_model *m = make_model(2, 64, 16, 1);
    align_optimizer *o = make_opt(m, 3e-3f, ALIGN_SCHEDULE_COSINE);
    align_tokenizer *t = bytes_tok();
    align_dataset *train = task_dataset(0, 2000), *held = task_dataset(4000, 64);
    align_sft_params sp = sft_params(32, 1, 250);
    sp.max_seq_len = 16;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, train, o, &sp), ALIGN_OK);

    align_step_stats st, ev0, ev1;
    align_step_stats_init(&st, sizeof st);
    align_step_stats_init(&ev0, sizeof ev0);
    align_step_stats_init(&ev1, sizeof ev1);
    ck_assert_int_eq(align_trainer_evaluate(tr, held, &ev0), ALIGN_OK);
    int rc, steps = 0;
    float first_loss = 0.0f;
    while ((rc = align_trainer_step(tr, &st)) == ALIGN_OK) {
        if (steps++ == 0)
            first_loss = st.loss;
        ck_assert_uint_eq(st.skipped, 0);
    }
    ck_assert_int_eq(rc, ALIGN_DONE);
    ck_assert_int_eq(steps, 250);
    ck_assert_int_eq(align_optimizer_steps_done(o), 250);
    ck_assert_int_eq(align_trainer_evaluate(tr, held, &ev1), ALIGN_OK);
    ck_assert_int_eq(ev1.tokens, 64 * 5); /* 4 letters + end-of-turn */
    ck_assert_int_eq(ev1.sequences, 64);
    ck_assert_msg(ev1.loss < 0.1f * ev0.loss, "eval loss %g -> %g", (double)ev0.loss, (double)ev1.loss);
    ck_assert_msg(st.loss < 0.2f * first_loss, "train loss %g -> %g", (double)first_loss, (double)st.loss);

    const char *prompts[64];
    char pbuf[64][32], cbuf[64][8];
    for (int i = 0; i < 64; i++) {
        task_example(4000u + (uint32_t)i, pbuf[i], cbuf[i]);
        prompts[i] = pbuf[i];
    }
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = 0.0f;
    gp.max_new_tokens = 8;
    align_generation *g = NULL;
    ck_assert_int_eq(align_generate(m, t, prompts, 64, &gp, &g), ALIGN_OK);
    int exact = 0;
    for (int i = 0; i < 64; i++)
        exact += strcmp(align_generation_text(g, i, NULL), cbuf[i]) == 0 &&
                 align_generation_finish_reason(g, i) == ALIGN_FINISH_EOT;
    ck_assert_msg(exact >= 58, "exact match %d/64 (eval accuracy %.3f)", exact, (double)ev1.accuracy);
    align_generation_free(g);
    align_trainer_free(tr);
    align_dataset_free(train);
    align_dataset_free(held);
    align_tokenizer_free(t);
    align_optimizer_free(o);
    align_model_free(m);
}
END_TEST

/* ---- checkpoint / resume -------------------------------------------------------- */

typedef struct run {
    align_model *m;
    align_optimizer *o;
    align_trainer *tr;
} run;

static run run_open(align_tokenizer *t, align_dataset *d, uint64_t model_seed, int32_t micro, align_step_fn cb,
                    void *ud)
{
    run r;
    r.m = make_model(1, 32, 32, model_seed);
    r.o = make_opt(r.m, 1e-2f, ALIGN_SCHEDULE_COSINE);
    align_sft_params sp = sft_params(micro, 2, 0);
    sp.max_steps = 100000;
    sp.on_step = cb;
    sp.on_step_user_data = ud;
    ck_assert_int_eq(align_trainer_create_sft(&r.tr, r.m, t, d, r.o, &sp), ALIGN_OK);
    return r;
}

static void run_close(run *r)
{
    align_trainer_free(r->tr);
    align_optimizer_free(r->o);
    align_model_free(r->m);
}

/* N steps straight == k steps, save, fresh objects, resume, N-k steps:
 * losses and final weights and optimizer state bitwise identical. */
START_TEST(test_resume_is_bitwise)
{
    enum { N = 7, K = 3 };
    align_tokenizer *t = bytes_tok();
    align_dataset *d = task_dataset(0, 11); /* 6 rows per step: epochs wrap mid-step */
    char *dir = test_tmpdir("sft-resume");
    char *ck = path2(dir, "ckpt/nested");
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);

    float straight[N];
    run a = run_open(t, d, 5, 3, NULL, NULL);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(align_trainer_step(a.tr, &st), ALIGN_OK);
        straight[i] = st.loss;
    }
    char *ma = path2(dir, "a.safetensors"), *oa = path2(dir, "a-opt.safetensors");
    ck_assert_int_eq(align_model_save(a.m, ma), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_save(a.o, oa), ALIGN_OK);
    run_close(&a);

    run b = run_open(t, d, 5, 3, NULL, NULL);
    for (int i = 0; i < K; i++) {
        ck_assert_int_eq(align_trainer_step(b.tr, &st), ALIGN_OK);
        ck_assert(memcmp(&st.loss, &straight[i], sizeof(float)) == 0);
    }
    ck_assert_int_eq(align_trainer_save(b.tr, ck), ALIGN_OK);
    run_close(&b);

    /* different initial weights: resume must replace them */
    run c = run_open(t, d, 999, 3, NULL, NULL);
    ck_assert_int_eq(align_trainer_resume(c.tr, ck), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_steps_done(c.o), K);
    for (int i = K; i < N; i++) {
        ck_assert_int_eq(align_trainer_step(c.tr, &st), ALIGN_OK);
        ck_assert_int_eq(st.step, i + 1);
        ck_assert_msg(memcmp(&st.loss, &straight[i], sizeof(float)) == 0, "step %d: %.9g vs %.9g", i + 1,
                      (double)st.loss, (double)straight[i]);
    }
    char *mc = path2(dir, "c.safetensors"), *oc = path2(dir, "c-opt.safetensors");
    ck_assert_int_eq(align_model_save(c.m, mc), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_save(c.o, oc), ALIGN_OK);
    ck_assert(same_file(ma, mc));
    ck_assert(same_file(oa, oc));
    run_close(&c);

    /* A trainer built differently is refused, and left as it was. */
    run e = run_open(t, d, 7, 2, NULL, NULL);
    char *m0 = path2(dir, "e0.safetensors"), *m1 = path2(dir, "e1.safetensors");
    ck_assert_int_eq(align_model_save(e.m, m0), ALIGN_OK);
    ck_assert_int_eq(align_trainer_resume(e.tr, ck), ALIGN_EINVAL);
    ck_assert_msg(strstr(align_trainer_errmsg(e.tr), "micro_batch") != NULL, "%s", align_trainer_errmsg(e.tr));
    ck_assert_int_eq(align_model_save(e.m, m1), ALIGN_OK);
    ck_assert(same_file(m0, m1));
    ck_assert_int_eq(align_optimizer_steps_done(e.o), 0);
    run_close(&e);

    /* Weights from another save are detected before anything is changed. */
    run f = run_open(t, d, 7, 3, NULL, NULL);
    char *ckm = path2(ck, "model.safetensors");
    ck_assert_int_eq(align_model_save(f.m, ckm), ALIGN_OK); /* replaces the checkpoint's weights */
    ck_assert_int_eq(align_trainer_resume(f.tr, ck), ALIGN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(align_trainer_errmsg(f.tr), "does not belong"));
    ck_assert_int_eq(align_model_save(f.m, m1), ALIGN_OK);
    ck_assert(same_file(ckm, m1));
    ck_assert_int_eq(align_optimizer_steps_done(f.o), 0);
    ck_assert_int_eq(align_trainer_resume(f.tr, "/nonexistent/libalign-ckpt"), ALIGN_ENOENT);
    ck_assert_int_eq(align_trainer_step(f.tr, &st), ALIGN_OK);
    ck_assert(memcmp(&st.loss, &straight[0], sizeof(float)) != 0 || 1); /* runs normally afterwards */
    ck_assert_int_eq(st.step, 1);
    run_close(&f);

    free(ma); free(oa); free(mc); free(oc); free(m0); free(m1); free(ckm); free(ck); free(dir);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* ---- callbacks ------------------------------------------------------------------------ */

typedef struct cb_state {
    int calls;
    int fail_at;      /* call number that returns fail_code */
    int fail_code;
    int saw_skipped;
    float last_grad_norm, last_lr;
    align_trainer *stop_target;
} cb_state;

static int on_step(const align_step_stats *s, void *ud)
{
    cb_state *c = ud;
    c->calls++;
    c->last_grad_norm = s->grad_norm;
    c->last_lr = s->learning_rate;
    if (s->skipped)
        c->saw_skipped = 1;
    if (c->stop_target)
        align_trainer_request_stop(c->stop_target);
    return c->calls == c->fail_at ? c->fail_code : 0;
}

/* A callback that fails discards the step: weights, optimizer state and data
 * position as before; ALIGN_ECALLBACK with the host's code in the message.
 * The same step then runs again as if the failure had not happened. */
START_TEST(test_callback_failure_discards_step)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = task_dataset(0, 9);
    char *dir = test_tmpdir("sft-cb");
    char *m0 = path2(dir, "m0"), *m1 = path2(dir, "m1"), *o0 = path2(dir, "o0"), *o1 = path2(dir, "o1");
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);

    float ref[3];
    run a = run_open(t, d, 3, 3, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(align_trainer_step(a.tr, &st), ALIGN_OK);
        ref[i] = st.loss;
    }
    run_close(&a);

    cb_state cs = {.fail_at = 2, .fail_code = -42};
    run b = run_open(t, d, 3, 3, on_step, &cs);
    ck_assert_int_eq(align_trainer_step(b.tr, &st), ALIGN_OK);
    ck_assert_int_eq(cs.calls, 1);
    ck_assert(cs.last_grad_norm > 0.0f && cs.last_lr > 0.0f);
    ck_assert_int_eq(align_model_save(b.m, m0), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_save(b.o, o0), ALIGN_OK);
    st.step = 12345;
    ck_assert_int_eq(align_trainer_step(b.tr, &st), ALIGN_ECALLBACK);
    ck_assert_int_eq(st.step, 12345); /* a failed call leaves stats alone */
    ck_assert_msg(strstr(align_trainer_errmsg(b.tr), "-42") != NULL, "%s", align_trainer_errmsg(b.tr));
    ck_assert_int_eq(align_model_save(b.m, m1), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_save(b.o, o1), ALIGN_OK);
    ck_assert(same_file(m0, m1));
    ck_assert(same_file(o0, o1));
    ck_assert_int_eq(align_optimizer_steps_done(b.o), 1);
    for (int i = 1; i < 3; i++) {
        ck_assert_int_eq(align_trainer_step(b.tr, &st), ALIGN_OK);
        ck_assert_int_eq(st.step, i + 1);
        ck_assert(memcmp(&st.loss, &ref[i], sizeof(float)) == 0);
    }
    run_close(&b);

    /* ALIGN_DONE from the callback: this update applies, then the run ends. */
    cs = (cb_state){.fail_at = 1, .fail_code = ALIGN_DONE};
    run c = run_open(t, d, 3, 3, on_step, &cs);
    ck_assert_int_eq(align_trainer_step(c.tr, &st), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_steps_done(c.o), 1);
    ck_assert_int_eq(align_trainer_step(c.tr, &st), ALIGN_DONE);
    ck_assert_int_eq(cs.calls, 1);
    run_close(&c);

    free(m0); free(m1); free(o0); free(o1); free(dir);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* ---- non-finite values ------------------------------------------------------------------ */

/* Puts a NaN into the first parameter stored in a safetensors file, and
 * renames libalign's data checksum (same length, so offsets stay) so the
 * loader treats the file like a foreign one without a checksum instead of
 * refusing it as corrupted. */
static void poison_safetensors(const char *path)
{
    size_t len;
    unsigned char *b = slurp(path, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | b[i];
    ck_assert(8 + hl + 4 <= len);
    const char *key = "\"libalign.checksum\"";
    size_t kl = strlen(key);
    for (size_t i = 8; i + kl <= 8 + hl; i++)
        if (memcmp(b + i, key, kl) == 0)
            b[i + kl - 2] = 'X';
    float nan = NAN;
    memcpy(b + 8 + hl, &nan, 4);
    FILE *f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    fclose(f);
    free(b);
}

/* A NaN weight makes the loss NaN: the step reports skipped = 1 (and the
 * callback sees it), returns ALIGN_OK, and applies nothing. */
START_TEST(test_nan_loss_skips_update)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = task_dataset(0, 8);
    char *dir = test_tmpdir("sft-nan");
    char *p = path2(dir, "poisoned.safetensors"), *p1 = path2(dir, "after.safetensors");
    align_model *src = make_model(1, 32, 32, 4);
    ck_assert_int_eq(align_model_save(src, p), ALIGN_OK);
    align_model_free(src);
    poison_safetensors(p);
    align_model *m = NULL;
    ck_assert_int_eq(align_model_load(&m, p, NULL), ALIGN_OK);
    ck_assert_int_eq(align_model_save(m, p), ALIGN_OK); /* reference bytes, as this library writes them */
    align_optimizer *o = make_opt(m, 1e-2f, ALIGN_SCHEDULE_CONSTANT);
    cb_state cs = {0};
    align_sft_params sp = sft_params(4, 1, 3);
    sp.on_step = on_step;
    sp.on_step_user_data = &cs;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_OK);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    ck_assert_int_eq(align_trainer_step(tr, &st), ALIGN_OK);
    ck_assert_uint_eq(st.skipped, 1);
    ck_assert(!isfinite(st.loss));
    ck_assert_int_eq(st.step, 1);
    ck_assert_int_eq(cs.saw_skipped, 1);
    ck_assert_int_eq(align_optimizer_steps_done(o), 0);
    ck_assert_int_eq(align_model_save(m, p1), ALIGN_OK);
    ck_assert(same_file(p, p1));
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_model_free(m);
    free(p); free(p1); free(dir);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* ---- stop requests ------------------------------------------------------------------------ */

typedef struct stopper {
    align_trainer *tr;
    volatile int go;
} stopper;

static void *stop_thread(void *arg)
{
    stopper *s = arg;
    while (!s->go) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    align_trainer_request_stop(s->tr);
    return NULL;
}

START_TEST(test_request_stop)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = task_dataset(0, 16);
    char *dir = test_tmpdir("sft-stop");
    char *m0 = path2(dir, "m0"), *m1 = path2(dir, "m1");
    run r = run_open(t, d, 8, 3, NULL, NULL);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);

    /* requested before the step: nothing applied, then the flag is consumed */
    ck_assert_int_eq(align_model_save(r.m, m0), ALIGN_OK);
    ck_assert_int_eq(align_trainer_request_stop(r.tr), ALIGN_OK);
    ck_assert_int_eq(align_trainer_step(r.tr, &st), ALIGN_ECANCELED);
    ck_assert_int_eq(align_model_save(r.m, m1), ALIGN_OK);
    ck_assert(same_file(m0, m1));
    ck_assert_int_eq(align_optimizer_steps_done(r.o), 0);
    ck_assert_int_eq(align_trainer_step(r.tr, &st), ALIGN_OK);
    ck_assert_int_eq(st.step, 1);

    /* from another thread while steps run */
    stopper s = {r.tr, 0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, stop_thread, &s), 0);
    s.go = 1;
    int ok = 0, rc;
    while ((rc = align_trainer_step(r.tr, &st)) == ALIGN_OK && ok < 100000)
        ok++;
    pthread_join(th, NULL);
    ck_assert_int_eq(rc, ALIGN_ECANCELED);
    ck_assert_int_eq(align_optimizer_steps_done(r.o), 1 + ok);
    ck_assert_int_eq(align_trainer_step(r.tr, &st), ALIGN_OK);
    ck_assert_int_eq(st.step, 2 + ok);
    ck_assert_int_eq(align_trainer_request_stop(NULL), ALIGN_EINVAL);
    run_close(&r);

    /* asked from inside the step's callback: that step completes, the next stops */
    cb_state cs = {0};
    run q = run_open(t, d, 8, 3, on_step, &cs);
    cs.stop_target = q.tr;
    ck_assert_int_eq(align_trainer_step(q.tr, &st), ALIGN_OK);
    cs.stop_target = NULL;
    ck_assert_int_eq(align_trainer_step(q.tr, &st), ALIGN_ECANCELED);
    ck_assert_int_eq(align_optimizer_steps_done(q.o), 1);
    run_close(&q);
    free(m0); free(m1); free(dir);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* ---- evaluation, accumulation, epochs ------------------------------------------------------ */

/* One step over the whole data set reports the loss evaluate() reports
 * before it; micro_batch 4 x grad_accum 2 gives the loss and update of
 * micro_batch 8 x grad_accum 1 (to float rounding). */
START_TEST(test_evaluate_and_accumulation)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = task_dataset(0, 8);
    align_step_stats ev, s1, s2, e1, e2;
    align_step_stats_init(&ev, sizeof ev);
    align_step_stats_init(&s1, sizeof s1);
    align_step_stats_init(&s2, sizeof s2);
    align_step_stats_init(&e1, sizeof e1);
    align_step_stats_init(&e2, sizeof e2);

    align_model *m1 = make_model(1, 32, 32, 6), *m2 = make_model(1, 32, 32, 6);
    align_optimizer *o1 = make_opt(m1, 1e-2f, ALIGN_SCHEDULE_CONSTANT), *o2 = make_opt(m2, 1e-2f, ALIGN_SCHEDULE_CONSTANT);
    align_sft_params p1 = sft_params(8, 1, 5), p2 = sft_params(4, 2, 5);
    align_trainer *t1 = NULL, *t2 = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&t1, m1, t, d, o1, &p1), ALIGN_OK);
    ck_assert_int_eq(align_trainer_create_sft(&t2, m2, t, d, o2, &p2), ALIGN_OK);
    ck_assert_int_eq(align_trainer_evaluate(t1, d, &ev), ALIGN_OK);
    ck_assert_int_eq(ev.tokens, 8 * 5);
    ck_assert_int_eq(align_trainer_step(t1, &s1), ALIGN_OK);
    ck_assert_int_eq(align_trainer_step(t2, &s2), ALIGN_OK);
    ck_assert_int_eq(s1.tokens, 40);
    ck_assert_int_eq(s2.tokens, 40);
    ck_assert_int_eq(s1.sequences, 8);
    ck_assert(fabsf(ev.loss - s1.loss) < 1e-5f);
    ck_assert(fabsf(ev.accuracy - s1.accuracy) < 1e-6f);
    ck_assert(fabsf(s1.loss - s2.loss) < 1e-5f);
    ck_assert(fabsf(s1.grad_norm - s2.grad_norm) < 1e-4f * s1.grad_norm);
    ck_assert(s1.tokens_per_sec > 0.0f && s1.time_forward_ms > 0.0f && s1.time_backward_ms > 0.0f);
    ck_assert_int_eq(align_trainer_evaluate(t1, d, &e1), ALIGN_OK);
    ck_assert_int_eq(align_trainer_evaluate(t2, d, &e2), ALIGN_OK);
    ck_assert(e1.loss < ev.loss);
    ck_assert(fabsf(e1.loss - e2.loss) < 1e-4f);
    /* a caller that knows only the first members gets only those */
    struct { uint32_t struct_size; int32_t algorithm; int64_t step; int64_t guard; } small;
    small.struct_size = 16;
    small.guard = 777;
    ck_assert_int_eq(align_trainer_evaluate(t1, d, (align_step_stats *)&small), ALIGN_OK);
    ck_assert_int_eq(small.step, 1);
    ck_assert_int_eq(small.guard, 777);

    /* an evaluation-only trainer: no optimizer, a frozen clone of the policy,
     * the same evaluation; stepping and checkpointing are refused */
    align_model *frozen = NULL;
    ck_assert_int_eq(align_model_clone(&frozen, m1, ALIGN_FROZEN), ALIGN_OK);
    align_trainer *te = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&te, frozen, t, d, NULL, &p1), ALIGN_OK);
    align_step_stats ef;
    align_step_stats_init(&ef, sizeof ef);
    ck_assert_int_eq(align_trainer_evaluate(te, d, &ef), ALIGN_OK);
    ck_assert(ef.loss == e1.loss);
    ck_assert(ef.accuracy == e1.accuracy);
    ck_assert_int_eq(align_trainer_step(te, NULL), ALIGN_EMISUSE);
    ck_assert_ptr_nonnull(strstr(align_trainer_errmsg(te), "without an optimizer"));
    ck_assert_int_eq(align_trainer_save(te, "/nonexistent-dir"), ALIGN_EMISUSE);
    align_trainer_free(te);
    align_model_free(frozen);
    align_trainer_free(t1);
    align_trainer_free(t2);
    align_optimizer_free(o1);
    align_optimizer_free(o2);
    align_model_free(m1);
    align_model_free(m2);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* Epoch mode: 10 examples x 2 epochs in rows of 4 = 5 steps, then ALIGN_DONE. */
START_TEST(test_epochs_then_done)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = task_dataset(0, 10);
    align_model *m = make_model(1, 32, 32, 2);
    align_optimizer *o = make_opt(m, 1e-3f, ALIGN_SCHEDULE_CONSTANT);
    align_sft_params sp = sft_params(4, 1, 0);
    sp.epochs = 2;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_OK);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    int steps = 0, rc;
    int64_t seqs = 0;
    float prev = -1.0f;
    while ((rc = align_trainer_step(tr, &st)) == ALIGN_OK) {
        steps++;
        seqs += st.sequences;
        ck_assert(st.progress >= prev);
        prev = st.progress;
    }
    ck_assert_int_eq(rc, ALIGN_DONE);
    ck_assert_int_eq(steps, 5);
    ck_assert_int_eq(seqs, 20);
    ck_assert_int_eq(st.epoch, 2);
    ck_assert(st.progress == 1.0f);
    ck_assert_int_eq(align_trainer_step(tr, NULL), ALIGN_DONE);
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_model_free(m);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

START_TEST(test_bad_arguments)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = task_dataset(0, 4), *empty = NULL;
    ck_assert_int_eq(align_dataset_create(&empty), ALIGN_OK);
    align_model *m = make_model(1, 32, 32, 1), *other = make_model(1, 32, 32, 2);
    align_optimizer *o = make_opt(m, 1e-3f, ALIGN_SCHEDULE_CONSTANT), *oo = make_opt(other, 1e-3f, 0);
    align_trainer *tr = (align_trainer *)t;
    align_sft_params sp = sft_params(2, 1, 2);

    ck_assert_int_eq(align_trainer_create_sft(&tr, NULL, t, d, o, &sp), ALIGN_EINVAL);
    ck_assert_ptr_null(tr);
    ck_assert_int_eq(align_trainer_create_sft(NULL, m, t, d, o, &sp), ALIGN_EINVAL);
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, oo, &sp), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "another model"));
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, empty, o, &sp), ALIGN_EINVAL);
    sp.micro_batch = 0;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "micro_batch"));
    sp = sft_params(2, 1, 2);
    sp.max_seq_len = 33;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_EINVAL);
    sp = sft_params(2, 1, 0);
    sp.epochs = 0;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_EINVAL);
    sp = sft_params(2, 1, 2);
    sp.flags = 0x80;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_EINVAL);
    sp = sft_params(2, 1, 2);
    sp.struct_size = 0;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_EINVAL);
    /* a params struct from a newer library with unknown members set */
    struct { align_sft_params p; uint64_t extra; } big;
    memset(&big, 0, sizeof big);
    ck_assert_int_eq(align_sft_default_params(&big.p, sizeof big), ALIGN_OK);
    big.extra = 1;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &big.p), ALIGN_EVERSION);
    big.extra = 0;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &big.p), ALIGN_OK);
    align_trainer_free(tr);
    /* a model whose vocabulary is smaller than the tokenizer's */
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 1; mp.n_head = 2; mp.n_embd = 16; mp.vocab_size = 100; mp.max_seq_len = 16;
    align_model *small = NULL;
    ck_assert_int_eq(align_model_create(&small, &mp), ALIGN_OK);
    align_optimizer *os = make_opt(small, 1e-3f, 0);
    ck_assert_int_eq(align_trainer_create_sft(&tr, small, t, d, os, NULL), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "vocabulary"));

    sp = sft_params(2, 1, 2);
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_OK);
    align_step_stats st;
    memset(&st, 0, sizeof st);
    ck_assert_int_eq(align_trainer_step(tr, &st), ALIGN_EINVAL); /* struct_size not set */
    ck_assert_int_eq(align_optimizer_steps_done(o), 0);
    ck_assert_int_eq(align_trainer_step(NULL, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_trainer_evaluate(tr, NULL, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_trainer_evaluate(tr, empty, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_trainer_save(tr, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_trainer_save(tr, "/proc/libalign-cannot-write"), ALIGN_EIO);
    ck_assert_int_eq(align_trainer_resume(tr, ""), ALIGN_EINVAL);
    ck_assert_int_eq(align_step_stats_init(NULL, sizeof st), ALIGN_EINVAL);
    ck_assert_int_eq(align_step_stats_init(&st, 0), ALIGN_EINVAL);
    ck_assert_str_eq(align_trainer_errmsg(NULL), "trainer is NULL");
    ck_assert_int_eq(align_trainer_step(tr, NULL), ALIGN_OK);
    ck_assert_int_eq(align_trainer_step(tr, NULL), ALIGN_OK);
    ck_assert_int_eq(align_trainer_step(tr, NULL), ALIGN_DONE);
    align_trainer_free(tr);
    align_trainer_free(NULL);

    align_optimizer_free(os);
    align_model_free(small);
    align_optimizer_free(o);
    align_optimizer_free(oo);
    align_model_free(m);
    align_model_free(other);
    align_dataset_free(d);
    align_dataset_free(empty);
    align_tokenizer_free(t);
}
END_TEST

Suite *sft_suite(void)
{
    Suite *s = suite_create("sft");
    TCase *tc = test_tcase(s, "trainer", 300);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_evaluate_and_accumulation);
    tcase_add_test(tc, test_epochs_then_done);
    tcase_add_test(tc, test_callback_failure_discards_step);
    tcase_add_test(tc, test_nan_loss_skips_update);
    tcase_add_test(tc, test_request_stop);
    tcase_add_test(tc, test_resume_is_bitwise);
    TCase *learn = test_tcase(s, "learning", 600);
    tcase_add_test(learn, test_learns_instruction_task);
    return s;
}
