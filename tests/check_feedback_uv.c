/* check_feedback_uv.c — align_uv.h on a real libuv loop: trainer steps on
 * the thread pool (bitwise equal to synchronous steps, the loop stays
 * responsive, ALIGN_EBUSY while in flight, cancel before start, deferred
 * free), while feedback requests submitted from another thread are
 * delivered on the loop thread and answered late and out of order by a timer. */
#include "testutil.h"

#include "align_uv.h"

#include <pthread.h>
#include <stdint.h>

static char *jpath(const char *tag)
{
    char *dir = test_tmpdir(tag);
    char *p = malloc(strlen(dir) + 32);
    sprintf(p, "%s/journal.jsonl", dir);
    free(dir);
    return p;
}

static const char *const RESP[3] = { "one", "two", "three" };

/* ---- feedback requests on the loop ------------------------------------------ */

#define N_REQ 24

typedef struct fb {
    align_journal *j;
    pthread_t loop_thread;
    int64_t delivered[N_REQ * 2];
    int n_delivered;
    int wrong_thread;
    int64_t waiting[N_REQ * 2];   /* delivered, not answered yet */
    int n_waiting;
    int answered;
    int answer_errors;
    uv_timer_t timer;
    int done;
} fb;

static void on_request(align_journal *j, int64_t id, void *ud)
{
    fb *f = ud;
    if (!pthread_equal(pthread_self(), f->loop_thread))
        f->wrong_thread++;
    ck_assert_ptr_eq(j, f->j);
    f->delivered[f->n_delivered++] = id;
    f->waiting[f->n_waiting++] = id;
}

/* Every 3 ms, answers the newest waiting request: late and out of order. */
static void on_timer(uv_timer_t *t)
{
    fb *f = t->data;
    if (f->n_waiting == 0)
        return;
    int64_t id = f->waiting[--f->n_waiting];
    const int32_t rank[3] = { (int32_t)(id % 3), (int32_t)((id + 1) % 3), (int32_t)((id + 2) % 3) };
    if (align_journal_answer_rank(f->j, id, rank, NULL) != ALIGN_OK)
        f->answer_errors++;
    if (++f->answered == N_REQ + 1) {   /* + the one answered before watching */
        uv_timer_stop(t);
        align_journal_unwatch(f->j);
        uv_close((uv_handle_t *)t, NULL);
    }
}

static void *submitter(void *arg)
{
    fb *f = arg;
    for (int i = 0; i < N_REQ - 2; i++) {
        int64_t id;
        ck_assert_int_eq(align_journal_submit(f->j, ALIGN_FEEDBACK_RANK, "prompt", RESP, 3, 0, &id), ALIGN_OK);
        struct timespec ts = { 0, (long)(1 + i % 4) * 1000000L };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

START_TEST(test_requests_on_the_loop)
{
    char *path = jpath("fbuv");
    fb f;
    memset(&f, 0, sizeof f);
    ck_assert_int_eq(align_journal_open(&f.j, path, ALIGN_JOURNAL_NOSYNC), ALIGN_OK);
    /* pending before watching: 3 submitted, 1 answered -> 2 delivered */
    int64_t id;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(align_journal_submit(f.j, ALIGN_FEEDBACK_RANK, "early", RESP, 3, 0, &id), ALIGN_OK);
    const int32_t r0[3] = { 0, 1, 2 };
    ck_assert_int_eq(align_journal_answer_rank(f.j, 2, r0, NULL), ALIGN_OK);
    f.answered = 1;

    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    f.loop_thread = pthread_self();
    ck_assert_int_eq(align_journal_watch(f.j, &loop, on_request, &f), ALIGN_OK);
    ck_assert_int_eq(align_journal_watch(f.j, &loop, on_request, &f), ALIGN_EBUSY);
    ck_assert_int_eq(f.n_delivered, 0);   /* never inside the call */
    uv_timer_init(&loop, &f.timer);
    f.timer.data = &f;
    uv_timer_start(&f.timer, on_timer, 3, 3);
    pthread_t th;
    pthread_create(&th, NULL, submitter, &f);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    pthread_join(th, NULL);

    ck_assert_int_eq(f.wrong_thread, 0);
    ck_assert_int_eq(f.answer_errors, 0);
    ck_assert_int_eq(f.n_delivered, N_REQ);   /* 2 early + 22 from the thread */
    ck_assert_int_eq(f.delivered[0], 1);
    ck_assert_int_eq(f.delivered[1], 3);
    for (int i = 1; i < f.n_delivered; i++)
        ck_assert_int_lt(f.delivered[i - 1], f.delivered[i]);   /* oldest first, each once */
    ck_assert_int_eq(align_journal_count(f.j, ALIGN_REQUEST_PENDING), 0);
    ck_assert_int_eq(align_journal_count(f.j, ALIGN_REQUEST_ANSWERED), N_REQ + 1);
    ck_assert_int_eq(align_journal_unwatch(f.j), ALIGN_EMISUSE);
    align_journal_close(f.j);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    free(path);
}
END_TEST

/* Closing a watched journal on the loop thread detaches the watcher; a
 * callback that closes the journal stops the deliveries. */
static void close_in_cb(align_journal *j, int64_t id, void *ud)
{
    (void)id;
    ++*(int *)ud;
    align_journal_close(j);
}

START_TEST(test_close_while_watched)
{
    char *path = jpath("fbuv-close");
    align_journal *j;
    ck_assert_int_eq(align_journal_open(&j, path, ALIGN_JOURNAL_NOSYNC), ALIGN_OK);
    int64_t id;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_LABEL, "p", RESP, 1, 0, &id), ALIGN_OK);
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    int calls = 0;
    ck_assert_int_eq(align_journal_watch(NULL, &loop, close_in_cb, &calls), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_watch(j, NULL, close_in_cb, &calls), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_watch(j, &loop, NULL, &calls), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_watch(j, &loop, close_in_cb, &calls), ALIGN_OK);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    free(path);
}
END_TEST

/* ---- trainer steps on the thread pool ------------------------------------------ */

typedef struct sft_setup {
    align_model *m;
    align_optimizer *o;
    align_tokenizer *t;
    align_dataset *d;
    align_trainer *tr;
} sft_setup;

static void sft_open(sft_setup *s, int32_t micro, int32_t accum)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 64;
    mp.vocab_size = 257;
    mp.max_seq_len = 64;
    mp.seed = 11;
    ck_assert_int_eq(align_model_create(&s->m, &mp), ALIGN_OK);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-3f;
    ck_assert_int_eq(align_optimizer_create(&s->o, s->m, &op), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_bytes(&s->t), ALIGN_OK);
    ck_assert_int_eq(align_dataset_create(&s->d), ALIGN_OK);
    for (int i = 0; i < 256; i++) {
        char p[64], c[64];
        snprintf(p, sizeof p, "copy %d and %d:", i, i * 7 % 101);
        snprintf(c, sizeof c, " %d %d, done with this one", i * 7 % 101, i);
        ck_assert_int_eq(align_dataset_add_demo(s->d, p, c, NULL), ALIGN_OK);
    }
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = micro;
    sp.grad_accum = accum;
    sp.max_seq_len = 64;
    sp.max_steps = 1000;
    sp.seed = 42;
    ck_assert_int_eq(align_trainer_create_sft(&s->tr, s->m, s->t, s->d, s->o, &sp), ALIGN_OK);
}

static void sft_close(sft_setup *s)
{
    align_trainer_free(s->tr);
    align_optimizer_free(s->o);
    align_dataset_free(s->d);
    align_tokenizer_free(s->t);
    align_model_free(s->m);
}

static double now_ms(void)
{
    return uv_hrtime() / 1e6;
}

#define N_STEPS 4

typedef struct async_run {
    sft_setup *s;
    uv_loop_t *loop;
    int steps_done;
    float loss[N_STEPS];
    int statuses_bad;
    int busy_ok;          /* every other call returned ALIGN_EBUSY while in flight */
    int wrong_thread;
    pthread_t loop_thread;
    double step_ms_max;
    double step_started;
    /* the responsiveness probe */
    uv_timer_t tick;
    double last_tick, max_gap;
    int ticks;
    /* feedback answered meanwhile */
    fb *f;
} async_run;

static int check_busy(align_trainer *tr, uv_loop_t *loop)
{
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    int ok = align_trainer_step(tr, &st) == ALIGN_EBUSY;
    ok &= align_trainer_step_async(tr, loop, NULL, NULL) == ALIGN_EINVAL;   /* args first */
    ok &= align_trainer_evaluate(tr, NULL, &st) == ALIGN_EBUSY;
    ok &= align_trainer_save(tr, "/nonexistent") == ALIGN_EBUSY;
    ok &= align_trainer_resume(tr, "/nonexistent") == ALIGN_EBUSY;
    ok &= strstr(align_last_errmsg(), "in flight") != NULL;
    const char *const *names;
    const double *values;
    int32_t n;
    ok &= align_trainer_metrics(tr, ALIGN_METRICS_STEP, &names, &values, &n) == ALIGN_EBUSY;
    return ok;
}

static void step_done(align_trainer *tr, int status, const align_step_stats *st, void *ud);

static void start_step(async_run *r)
{
    r->step_started = now_ms();
    ck_assert_int_eq(align_trainer_step_async(r->s->tr, r->loop, step_done, r), ALIGN_OK);
    /* a second step while one is in flight */
    if (align_trainer_step_async(r->s->tr, r->loop, step_done, r) != ALIGN_EBUSY || !check_busy(r->s->tr, r->loop))
        r->busy_ok = 0;
}

static void step_done(align_trainer *tr, int status, const align_step_stats *st, void *ud)
{
    async_run *r = ud;
    if (!pthread_equal(pthread_self(), r->loop_thread))
        r->wrong_thread++;
    double ms = now_ms() - r->step_started;
    if (ms > r->step_ms_max)
        r->step_ms_max = ms;
    ck_assert_ptr_eq(tr, r->s->tr);
    if (status != ALIGN_OK)
        r->statuses_bad++;
    r->loss[r->steps_done++] = st->loss;
    if (r->steps_done < N_STEPS)
        start_step(r);
    else {
        uv_timer_stop(&r->tick);
        uv_close((uv_handle_t *)&r->tick, NULL);
    }
}

static void on_tick(uv_timer_t *t)
{
    async_run *r = t->data;
    double now = now_ms();
    if (r->ticks++ > 0 && now - r->last_tick > r->max_gap)
        r->max_gap = now - r->last_tick;
    r->last_tick = now;
}

START_TEST(test_async_steps)
{
    /* synchronous reference */
    sft_setup a, b;
    sft_open(&a, 8, 12);
    float loss_sync[N_STEPS];
    double sync_ms = 0;
    for (int i = 0; i < N_STEPS; i++) {
        align_step_stats st;
        align_step_stats_init(&st, sizeof st);
        double t0 = now_ms();
        ck_assert_int_eq(align_trainer_step(a.tr, &st), ALIGN_OK);
        double ms = now_ms() - t0;
        if (ms > sync_ms)
            sync_ms = ms;
        loss_sync[i] = st.loss;
    }

    /* the same steps on the thread pool, with a 10 ms timer and feedback on the loop */
    sft_open(&b, 8, 12);
    char *path = jpath("fbuv-steps");
    fb f;
    memset(&f, 0, sizeof f);
    ck_assert_int_eq(align_journal_open(&f.j, path, ALIGN_JOURNAL_NOSYNC), ALIGN_OK);
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    f.loop_thread = pthread_self();
    ck_assert_int_eq(align_journal_watch(f.j, &loop, on_request, &f), ALIGN_OK);
    uv_timer_init(&loop, &f.timer);
    f.timer.data = &f;
    /* answers at most one request per 3 ms: late and out of order */
    uv_timer_start(&f.timer, on_timer, 3, 3);
    int64_t id;
    ck_assert_int_eq(align_journal_submit(f.j, ALIGN_FEEDBACK_RANK, "before", RESP, 3, 0, &id), ALIGN_OK);
    /* on_timer stops at N_REQ + 1: this request and the thread's N_REQ - 2 are 2 fewer */
    f.answered = 2;
    async_run r;
    memset(&r, 0, sizeof r);
    r.s = &b;
    r.loop = &loop;
    r.busy_ok = 1;
    r.loop_thread = pthread_self();
    r.f = &f;
    uv_timer_init(&loop, &r.tick);
    r.tick.data = &r;
    uv_timer_start(&r.tick, on_tick, 10, 10);
    start_step(&r);
    pthread_t th;
    pthread_create(&th, NULL, submitter, &f);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    pthread_join(th, NULL);

    ck_assert_int_eq(r.steps_done, N_STEPS);
    ck_assert_int_eq(r.statuses_bad, 0);
    ck_assert_int_eq(r.wrong_thread, 0);
    ck_assert_msg(r.busy_ok, "a call during an async step did not return ALIGN_EBUSY");
    for (int i = 0; i < N_STEPS; i++)   /* bitwise */
        ck_assert_msg(memcmp(&loss_sync[i], &r.loss[i], sizeof(float)) == 0, "step %d: loss %.9g sync, %.9g async",
                      i, (double)loss_sync[i], (double)r.loss[i]);
    char *dir = test_tmpdir("fbuv-w");
    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/a.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/b.safetensors", dir);
    ck_assert_int_eq(align_model_save(a.m, pa), ALIGN_OK);
    ck_assert_int_eq(align_model_save(b.m, pb), ALIGN_OK);
    FILE *fa = fopen(pa, "rb"), *fbf = fopen(pb, "rb");
    int same = 1, ca, cb;
    do {
        ca = fgetc(fa);
        cb = fgetc(fbf);
        same &= ca == cb;
    } while (ca != EOF && cb != EOF);
    fclose(fa);
    fclose(fbf);
    ck_assert_msg(same, "weights after async steps differ from synchronous ones");
    /* feedback went on meanwhile */
    ck_assert_int_eq(f.answer_errors, 0);
    ck_assert_int_eq(f.wrong_thread, 0);
    ck_assert_int_eq(align_journal_count(f.j, ALIGN_REQUEST_PENDING), 0);
    /* the loop stayed responsive: the 10 ms timer kept firing during steps */
    fprintf(stderr, "feedback_uv: %d async steps (longest %.0f ms, sync %.0f ms); 10 ms timer: %d ticks, "
            "largest gap %.1f ms; %d requests answered meanwhile\n", N_STEPS, r.step_ms_max, sync_ms, r.ticks,
            r.max_gap, f.answered);
    ck_assert_int_ge(r.ticks, 2);
    /* steps of ~0.4 s or more (12 micro-batches): a blocked loop would show a
     * gap as long as a step; the bound leaves room for a loaded machine and sanitizers
     * (the step's threads compete with the loop thread for the cores) */
    ck_assert_msg(r.max_gap < 1000.0 && r.max_gap < 0.5 * r.step_ms_max, "loop blocked: largest timer gap %.1f ms (longest step %.0f ms)", r.max_gap,
                  r.step_ms_max);
    align_journal_close(f.j);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    sft_close(&a);
    sft_close(&b);
    free(path);
    free(dir);
}
END_TEST

/* Pool workers that wait until released: a step queued behind them has not started. */
static pthread_mutex_t block_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t block_cv = PTHREAD_COND_INITIALIZER;
static int block_released;

static void block_work(uv_work_t *w)
{
    (void)w;
    pthread_mutex_lock(&block_mu);
    while (!block_released)
        pthread_cond_wait(&block_cv, &block_mu);
    pthread_mutex_unlock(&block_mu);
}

static void block_after(uv_work_t *w, int status)
{
    (void)status;
    ++*(int *)w->data;
}

typedef struct cb_count { int calls; int status; int64_t step; } cb_count;

static void count_cb(align_trainer *tr, int status, const align_step_stats *st, void *ud)
{
    (void)tr;
    cb_count *c = ud;
    c->calls++;
    c->status = status;
    c->step = st->step;
}

static void release_blockers(uv_timer_t *t)
{
    (void)t;
    pthread_mutex_lock(&block_mu);
    block_released = 1;
    pthread_cond_broadcast(&block_cv);
    pthread_mutex_unlock(&block_mu);
    uv_close((uv_handle_t *)t, NULL);
}

START_TEST(test_cancel_before_start_and_deferred_free)
{
    setenv("UV_THREADPOOL_SIZE", "2", 1);   /* read when the pool starts; 8 blockers fill 4 too */
    sft_setup s;
    sft_open(&s, 4, 1);
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    ck_assert_int_eq(align_trainer_cancel(s.tr), ALIGN_EMISUSE);   /* nothing in flight */
    ck_assert_int_eq(align_trainer_cancel(NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_trainer_step_async(NULL, &loop, count_cb, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_trainer_step_async(s.tr, NULL, count_cb, NULL), ALIGN_EINVAL);
    uv_work_t blockers[8];
    int blockers_done = 0;
    for (int i = 0; i < 8; i++) {
        blockers[i].data = &blockers_done;
        ck_assert_int_eq(uv_queue_work(&loop, &blockers[i], block_work, block_after), 0);
    }
    cb_count c = { 0, 0, -1 };
    ck_assert_int_eq(align_trainer_step_async(s.tr, &loop, count_cb, &c), ALIGN_OK);
    ck_assert_int_eq(align_trainer_cancel(s.tr), ALIGN_OK);
    uv_timer_t rel;
    uv_timer_init(&loop, &rel);
    uv_timer_start(&rel, release_blockers, 20, 0);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_eq(c.status, ALIGN_ECANCELED);
    ck_assert_ptr_ne(strstr(align_trainer_errmsg(s.tr), "canceled"), NULL);
    ck_assert_int_eq(blockers_done, 8);

    /* the trainer is usable again: the canceled step changed nothing */
    cb_count c2 = { 0, 0, -1 };
    ck_assert_int_eq(align_trainer_step_async(s.tr, &loop, count_cb, &c2), ALIGN_OK);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(c2.calls, 1);
    ck_assert_int_eq(c2.status, ALIGN_OK);
    ck_assert_int_eq(c2.step, 1);

    /* freeing a busy trainer is deferred until its step completes */
    cb_count c3 = { 0, 0, -1 };
    ck_assert_int_eq(align_trainer_step_async(s.tr, &loop, count_cb, &c3), ALIGN_OK);
    align_trainer_free(s.tr);
    s.tr = NULL;
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(c3.calls, 1);
    ck_assert_int_eq(c3.status, ALIGN_OK);
    ck_assert_int_eq(c3.step, 2);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    sft_close(&s);
}
END_TEST

Suite *feedback_uv_suite(void)
{
    Suite *s = suite_create("feedback_uv");
    TCase *tc = test_tcase(s, "feedback_uv", 300);
    tcase_add_test(tc, test_requests_on_the_loop);
    tcase_add_test(tc, test_close_while_watched);
    tcase_add_test(tc, test_async_steps);
    tcase_add_test(tc, test_cancel_before_start_and_deferred_free);
    return s;
}
