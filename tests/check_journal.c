/* check_journal.c — the feedback journal through the public API: requests,
 * late answers of every kind, reopening, export with provenance (once), the
 * bad-input matrix, damaged files, and answers from several threads. */
#include <align.h>

#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <time.h>

static char *jpath(const char *tag)
{
    char *dir = test_tmpdir(tag);
    char *p = malloc(strlen(dir) + 32);
    sprintf(p, "%s/journal.jsonl", dir);
    free(dir);
    return p;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_ne(f, NULL);
    fputs(text, f);
    fclose(f);
}

static const char *const RESP3[3] = { "alpha", "beta", "gamma" };

static int status_of(align_journal *j, int64_t id)
{
    align_feedback_request r;
    align_feedback_request_init(&r, sizeof r);
    ck_assert_int_eq(align_journal_request(j, id, &r), ALIGN_OK);
    return r.status;
}

START_TEST(test_submit_answer_reopen_export)
{
    char *path = jpath("journal");
    align_journal *j;
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_OK);
    ck_assert_int_eq(align_journal_torn_bytes(j), 0);
    int64_t a, b, c, d;
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "which is best?", RESP3, 3, 0, &a), ALIGN_OK);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_LABEL, "ok?", RESP3, 2, 0, &b), ALIGN_OK);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_SCORE, "rate", RESP3, 3, 0, &c), ALIGN_OK);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "later", RESP3, 2, 0, &d), ALIGN_OK);
    ck_assert_int_eq(a, 1);
    ck_assert_int_eq(d, 4);
    ck_assert_int_eq(align_journal_count(j, ALIGN_REQUEST_PENDING), 4);

    /* answered out of order, with ties */
    const float scores[3] = { 0.25f, -1.5f, 3.0e-7f };
    ck_assert_int_eq(align_journal_answer_score(j, c, scores, NULL), ALIGN_OK);
    const int32_t rank[3] = { 1, 0, 1 };
    align_provenance pv;
    align_provenance_default(&pv, sizeof pv);
    pv.annotator = "ann-7";
    pv.timestamp = 1700000000;
    ck_assert_int_eq(align_journal_answer_rank(j, a, rank, &pv), ALIGN_OK);
    ck_assert_int_eq(align_journal_cancel(j, d), ALIGN_OK);
    ck_assert_int_eq(align_journal_count(j, ALIGN_REQUEST_ANSWERED), 2);
    ck_assert_int_eq(align_journal_count(j, ALIGN_REQUEST_CANCELED), 1);
    int64_t ids[8], n = -1;
    ck_assert_int_eq(align_journal_pending(j, ids, 8, &n), ALIGN_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ids[0], b);
    align_journal_close(j);

    /* reopen: the same state, ids continue */
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_OK);
    ck_assert_int_eq(status_of(j, a), ALIGN_REQUEST_ANSWERED);
    ck_assert_int_eq(status_of(j, b), ALIGN_REQUEST_PENDING);
    ck_assert_int_eq(status_of(j, c), ALIGN_REQUEST_ANSWERED);
    ck_assert_int_eq(status_of(j, d), ALIGN_REQUEST_CANCELED);
    align_feedback_request r;
    align_feedback_request_init(&r, sizeof r);
    ck_assert_int_eq(align_journal_request(j, a, &r), ALIGN_OK);
    ck_assert_str_eq(r.prompt, "which is best?");
    ck_assert_str_eq(r.annotator, "ann-7");
    ck_assert_int_eq(r.answered_at, 1700000000);
    ck_assert_int_eq(r.source, ALIGN_SOURCE_HUMAN);
    ck_assert_int_eq(r.k, 3);
    ck_assert_str_eq(align_journal_response(j, a, 2), "gamma");
    int64_t e;
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "p", RESP3, 2, 0, &e), ALIGN_OK);
    ck_assert_int_eq(e, 5);

    /* export: a ranking record + 3 score records, with provenance */
    align_dataset *ds;
    ck_assert_int_eq(align_dataset_create(&ds), ALIGN_OK);
    int64_t nx = -1;
    ck_assert_int_eq(align_journal_export(j, ds, 0, &nx), ALIGN_OK);
    ck_assert_int_eq(nx, 2);
    ck_assert_int_eq(align_dataset_size(ds), 4);
    ck_assert_int_eq(align_dataset_record_kind(ds, 0), ALIGN_RECORD_RANKING);
    ck_assert_int_eq(align_dataset_record_kind(ds, 1), ALIGN_RECORD_SCORE);
    char *js;
    ck_assert_int_eq(align_dataset_record_json(ds, 0, &js), ALIGN_OK);
    ck_assert_ptr_ne(strstr(js, "ann-7"), NULL);
    ck_assert_ptr_ne(strstr(js, "human"), NULL);
    align_free(js);
    ck_assert_int_eq(align_dataset_record_json(ds, 2, &js), ALIGN_OK);
    ck_assert_ptr_ne(strstr(js, "-1.5"), NULL);
    align_free(js);
    /* exported once, also after reopening */
    ck_assert_int_eq(align_journal_export(j, ds, 0, &nx), ALIGN_OK);
    ck_assert_int_eq(nx, 0);
    align_journal_close(j);
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_OK);
    ck_assert_int_eq(align_journal_export(j, ds, 0, &nx), ALIGN_OK);
    ck_assert_int_eq(nx, 0);
    ck_assert_int_eq(align_dataset_size(ds), 4);
    /* a label answer, then export takes only it; EXPORT_ALL takes all */
    const int32_t good[2] = { 1, 0 };
    ck_assert_int_eq(align_journal_answer_label(j, b, good, NULL), ALIGN_OK);
    ck_assert_int_eq(align_journal_export(j, ds, 0, &nx), ALIGN_OK);
    ck_assert_int_eq(nx, 1);
    ck_assert_int_eq(align_dataset_size(ds), 6);
    ck_assert_int_eq(align_dataset_record_kind(ds, 4), ALIGN_RECORD_LABEL);
    ck_assert_int_eq(align_journal_export(j, ds, ALIGN_JOURNAL_EXPORT_ALL, &nx), ALIGN_OK);
    ck_assert_int_eq(nx, 3);
    ck_assert_int_eq(align_dataset_size(ds), 12);
    align_dataset_free(ds);
    align_journal_close(j);
    free(path);
}
END_TEST

START_TEST(test_expire)
{
    char *path = jpath("journal-exp");
    align_journal *j;
    ck_assert_int_eq(align_journal_open(&j, path, ALIGN_JOURNAL_NOSYNC), ALIGN_OK);
    int64_t a, b, c;
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "p", RESP3, 2, 100, &a), ALIGN_OK);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "p", RESP3, 2, 200, &b), ALIGN_OK);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "p", RESP3, 2, 0, &c), ALIGN_OK);
    int64_t n = -1;
    ck_assert_int_eq(align_journal_expire(j, 150, &n), ALIGN_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(status_of(j, a), ALIGN_REQUEST_EXPIRED);
    const int32_t rank[2] = { 0, 1 };
    ck_assert_int_eq(align_journal_answer_rank(j, a, rank, NULL), ALIGN_EMISUSE);
    ck_assert_ptr_ne(strstr(align_journal_errmsg(j), "expired"), NULL);
    align_journal_close(j);
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_OK);
    ck_assert_int_eq(status_of(j, a), ALIGN_REQUEST_EXPIRED);
    ck_assert_int_eq(align_journal_expire(j, 1000, &n), ALIGN_OK);
    ck_assert_int_eq(n, 1);   /* b; c has no deadline */
    ck_assert_int_eq(status_of(j, c), ALIGN_REQUEST_PENDING);
    align_journal_close(j);
    free(path);
}
END_TEST

START_TEST(test_bad_calls)
{
    char *path = jpath("journal-bad");
    align_journal *j;
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_OK);
    int64_t id, r2, lab;
    ck_assert_int_eq(align_journal_submit(j, 7, "p", RESP3, 2, 0, &id), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "p", RESP3, 1, 0, &id), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, NULL, RESP3, 2, 0, &id), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "p", NULL, 2, 0, &id), ALIGN_EINVAL);
    const char *bad_utf8[2] = { "ok", "\xff\xfe" };
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "p", bad_utf8, 2, 0, &id), ALIGN_EINVAL);
    ck_assert_ptr_ne(strstr(align_journal_errmsg(j), "UTF-8"), NULL);
    ck_assert_int_eq(align_journal_count(j, ALIGN_REQUEST_PENDING), 0);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_RANK, "p", RESP3, 3, 0, &r2), ALIGN_OK);
    ck_assert_int_eq(align_journal_submit(j, ALIGN_FEEDBACK_LABEL, "p", RESP3, 1, 0, &lab), ALIGN_OK);
    ck_assert_int_eq(r2, 1);   /* failed submits take no id */

    const int32_t ok[3] = { 0, 1, 2 }, out_of_range[3] = { 0, 1, 3 }, gap[3] = { 0, 2, 2 }, neg[3] = { -1, 0, 1 };
    ck_assert_int_eq(align_journal_answer_rank(j, 99, ok, NULL), ALIGN_EINVAL);
    ck_assert_ptr_ne(strstr(align_journal_errmsg(j), "no request with id 99"), NULL);
    ck_assert_int_eq(align_journal_answer_rank(j, 0, ok, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_answer_rank(j, r2, out_of_range, NULL), ALIGN_EINVAL);
    ck_assert_ptr_ne(strstr(align_journal_errmsg(j), "outside 0..2"), NULL);
    ck_assert_int_eq(align_journal_answer_rank(j, r2, gap, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_answer_rank(j, r2, neg, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_answer_rank(j, r2, NULL, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_answer_label(j, r2, ok, NULL), ALIGN_EMISUSE);   /* wrong kind */
    const int32_t two[1] = { 2 };
    ck_assert_int_eq(align_journal_answer_label(j, lab, two, NULL), ALIGN_EINVAL);
    const float nan1[1] = { NAN };
    ck_assert_int_eq(align_journal_answer_score(j, lab, nan1, NULL), ALIGN_EMISUSE);
    align_provenance pv;
    align_provenance_default(&pv, sizeof pv);
    pv.source = 42;
    ck_assert_int_eq(align_journal_answer_rank(j, r2, ok, &pv), ALIGN_EINVAL);
    pv.struct_size = 0;
    ck_assert_int_eq(align_journal_answer_rank(j, r2, ok, &pv), ALIGN_EINVAL);
    ck_assert_int_eq(status_of(j, r2), ALIGN_REQUEST_PENDING);
    ck_assert_int_eq(align_journal_answer_rank(j, r2, ok, NULL), ALIGN_OK);
    ck_assert_int_eq(align_journal_answer_rank(j, r2, ok, NULL), ALIGN_EMISUSE);   /* twice */
    ck_assert_ptr_ne(strstr(align_journal_errmsg(j), "answered"), NULL);
    ck_assert_int_eq(align_journal_cancel(j, r2), ALIGN_EMISUSE);
    ck_assert_int_eq(align_journal_cancel(j, 1234), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_count(j, 9), ALIGN_EINVAL);
    int64_t ids[1], n;
    ck_assert_int_eq(align_journal_pending(j, ids, 0, &n), ALIGN_ERANGE);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(align_journal_pending(j, NULL, 1, &n), ALIGN_EINVAL);
    ck_assert_ptr_eq(align_journal_response(j, r2, 3), NULL);
    ck_assert_ptr_eq(align_journal_response(j, 77, 0), NULL);
    align_feedback_request r;
    r.struct_size = 0;
    ck_assert_int_eq(align_journal_request(j, r2, &r), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_export(j, NULL, 0, NULL), ALIGN_EINVAL);

    /* a second open of the same file in this process is refused by nobody
     * (POSIX locks are per process), but NULLs are */
    align_journal *j2 = (align_journal *)1;
    ck_assert_int_eq(align_journal_open(&j2, NULL, 0), ALIGN_EINVAL);
    ck_assert_ptr_eq(j2, NULL);
    ck_assert_int_eq(align_journal_open(NULL, path, 0), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_open(&j2, path, 0x80), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_open(&j2, "/nonexistent-dir/x/journal", 0), ALIGN_ENOENT);
    ck_assert_int_eq(align_journal_submit(NULL, ALIGN_FEEDBACK_RANK, "p", RESP3, 2, 0, &id), ALIGN_EINVAL);
    ck_assert_int_eq(align_journal_answer_rank(NULL, 1, ok, NULL), ALIGN_EINVAL);
    align_journal_close(NULL);
    align_journal_close(j);
    free(path);
}
END_TEST

/* Damaged files: ALIGN_EFORMAT with path:line; a torn last line is dropped. */
START_TEST(test_damaged_files)
{
    char *path = jpath("journal-damaged");
    const char *head = "{\"journal\":\"libalign-feedback-journal\",\"version\":1}\n";
    const char *sub = "{\"op\":\"submit\",\"id\":1,\"kind\":\"rank\",\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],"
                      "\"deadline\":0,\"time\":5}\n";
    struct { const char *body; const char *want; int code; } cases[] = {
        { "not json\n", ":2:", ALIGN_EFORMAT },
        { "{\"op\":\"submit\",\"id\":2,\"kind\":\"rank\",\"prompt\":\"p\",\"responses\":[\"a\",\"b\"],\"time\":1}\n",
          "out of sequence", ALIGN_EFORMAT },
        { "{\"op\":\"answer\",\"id\":9,\"kind\":\"rank\",\"values\":[0,1],\"source\":\"human\",\"time\":1}\n",
          "unknown request 9", ALIGN_EFORMAT },
        { "{\"op\":\"frobnicate\",\"time\":1}\n", "unknown \"op\"", ALIGN_EFORMAT },
        { "{\"op\":\"cancel\",\"id\":1}\n", "missing \"time\"", ALIGN_EFORMAT },
    };
    char buf[1024], errbuf[600];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(buf, sizeof buf, "%s%s", head, cases[i].body);
        write_file(path, buf);
        align_journal *j = (align_journal *)1;
        ck_assert_int_eq(align_journal_open(&j, path, 0), cases[i].code);
        ck_assert_ptr_eq(j, NULL);
        snprintf(errbuf, sizeof errbuf, "%s", align_last_errmsg());
        ck_assert_msg(strstr(errbuf, cases[i].want) && strstr(errbuf, path), "case %zu: %s", i, errbuf);
    }
    /* after a valid submit: an answer with the wrong number of values, twice answered */
    const char *bad_after[] = {
        "{\"op\":\"answer\",\"id\":1,\"kind\":\"rank\",\"values\":[0],\"source\":\"human\",\"time\":1}\n",
        "{\"op\":\"answer\",\"id\":1,\"kind\":\"rank\",\"values\":[0,5],\"source\":\"human\",\"time\":1}\n",
        "{\"op\":\"answer\",\"id\":1,\"kind\":\"rank\",\"values\":[0,1],\"source\":\"human\",\"time\":1}\n"
        "{\"op\":\"answer\",\"id\":1,\"kind\":\"rank\",\"values\":[1,0],\"source\":\"human\",\"time\":1}\n",
    };
    for (size_t i = 0; i < 3; i++) {
        snprintf(buf, sizeof buf, "%s%s%s", head, sub, bad_after[i]);
        write_file(path, buf);
        align_journal *j;
        ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_EFORMAT);
        ck_assert_msg(strstr(align_last_errmsg(), i < 2 ? ":3:" : ":4:"), "%s", align_last_errmsg());
    }
    /* not a journal at all / another version */
    write_file(path, "{\"a\":1}\n");
    align_journal *j;
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_EFORMAT);
    ck_assert_ptr_ne(strstr(align_last_errmsg(), ":1:"), NULL);
    write_file(path, "{\"journal\":\"libalign-feedback-journal\",\"version\":99}\n");
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_EVERSION);

    /* a torn last line: dropped, reported, and the file is usable again */
    snprintf(buf, sizeof buf, "%s%s{\"op\":\"answer\",\"id\":1,\"ki", head, sub);
    write_file(path, buf);
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_OK);
    ck_assert_int_eq(align_journal_torn_bytes(j), (int64_t)strlen("{\"op\":\"answer\",\"id\":1,\"ki"));
    ck_assert_int_eq(status_of(j, 1), ALIGN_REQUEST_PENDING);
    const int32_t rank[2] = { 1, 0 };
    ck_assert_int_eq(align_journal_answer_rank(j, 1, rank, NULL), ALIGN_OK);
    align_journal_close(j);
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_OK);
    ck_assert_int_eq(align_journal_torn_bytes(j), 0);
    ck_assert_int_eq(status_of(j, 1), ALIGN_REQUEST_ANSWERED);
    align_journal_close(j);
    free(path);
}
END_TEST

/* Four threads submit and answer at once; every answer lands exactly once. */
typedef struct thr { align_journal *j; int t; int fails; } thr;

static void *worker(void *arg)
{
    thr *a = arg;
    for (int i = 0; i < 50; i++) {
        int64_t id;
        char prompt[32];
        snprintf(prompt, sizeof prompt, "t%d-%d", a->t, i);
        if (align_journal_submit(a->j, ALIGN_FEEDBACK_RANK, prompt, RESP3, 3, 0, &id) != ALIGN_OK) {
            a->fails++;
            continue;
        }
        const int32_t rank[3] = { i % 3, (i + 1) % 3, (i + 2) % 3 };
        if (i % 2 == 0 && align_journal_answer_rank(a->j, id, rank, NULL) != ALIGN_OK)
            a->fails++;
    }
    return NULL;
}

START_TEST(test_threads)
{
    char *path = jpath("journal-thr");
    align_journal *j;
    ck_assert_int_eq(align_journal_open(&j, path, ALIGN_JOURNAL_NOSYNC), ALIGN_OK);
    pthread_t th[4];
    thr args[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (thr){ j, t, 0 };
        pthread_create(&th[t], NULL, worker, &args[t]);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        ck_assert_int_eq(args[t].fails, 0);
    }
    ck_assert_int_eq(align_journal_count(j, ALIGN_REQUEST_PENDING), 100);
    ck_assert_int_eq(align_journal_count(j, ALIGN_REQUEST_ANSWERED), 100);
    align_journal_close(j);
    ck_assert_int_eq(align_journal_open(&j, path, 0), ALIGN_OK);
    ck_assert_int_eq(align_journal_count(j, ALIGN_REQUEST_PENDING), 100);
    ck_assert_int_eq(align_journal_count(j, ALIGN_REQUEST_ANSWERED), 100);
    align_journal_close(j);
    free(path);
}
END_TEST

Suite *journal_suite(void)
{
    Suite *s = suite_create("journal");
    TCase *tc = test_tcase(s, "journal", 120);
    tcase_add_test(tc, test_submit_answer_reopen_export);
    tcase_add_test(tc, test_expire);
    tcase_add_test(tc, test_bad_calls);
    tcase_add_test(tc, test_damaged_files);
    tcase_add_test(tc, test_threads);
    return s;
}
