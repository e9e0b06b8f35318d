/* check_feedback_uv.c — align_uv.h on a real libuv loop: feedback requests
 * submitted from another thread are delivered on the loop thread and
 * answered late and out of order by a timer. */
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

Suite *feedback_uv_suite(void)
{
    Suite *s = suite_create("feedback_uv");
    TCase *tc = test_tcase(s, "feedback_uv", 300);
    tcase_add_test(tc, test_requests_on_the_loop);
    tcase_add_test(tc, test_close_while_watched);
    return s;
}
