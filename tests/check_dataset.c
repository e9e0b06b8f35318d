/* check_dataset.c — datasets through the public API: every record kind,
 * JSONL load/save round trips, the bad-input matrix, lenient mode and a
 * 100k-line load. */
#include <align.h>

#include "testutil.h"

#include <math.h>
#include <time.h>

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_ne(f, NULL);
    fputs(text, f);
    fclose(f);
}

static char *rec_json(const align_dataset *d, int64_t i)
{
    char *j = NULL;
    ck_assert_int_eq(align_dataset_record_json(d, i, &j), ALIGN_OK);
    return j;
}

/* Every record of a equals the one of b (through their JSON form). */
static void assert_same(const align_dataset *a, const align_dataset *b)
{
    ck_assert_int_eq(align_dataset_size(a), align_dataset_size(b));
    for (int64_t i = 0; i < align_dataset_size(a); i++) {
        char *x = rec_json(a, i), *y = rec_json(b, i);
        ck_assert_str_eq(x, y);
        ck_assert_int_eq(align_dataset_record_kind(a, i), align_dataset_record_kind(b, i));
        align_free(x);
        align_free(y);
    }
}

START_TEST(test_every_kind_roundtrip)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    align_provenance pv;
    ck_assert_int_eq(align_provenance_default(&pv, sizeof pv), ALIGN_OK);
    ck_assert_int_eq(pv.source, ALIGN_SOURCE_UNKNOWN);
    pv.source = ALIGN_SOURCE_HUMAN;
    pv.annotator = "ann-7";
    pv.timestamp = 1700000000;
    ck_assert_int_eq(align_dataset_add_demo(d, "2+2=", "4", &pv), ALIGN_OK);
    const char *roles[3] = { "system", "user", "assistant" };
    const char *contents[3] = { "Be brief.", "Hi \"there\"\n", "Hello! \xe4\xbd\xa0\xe5\xa5\xbd" };
    ck_assert_int_eq(align_dataset_add_chat(d, roles, contents, 3, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_preference(d, "p", "good", "bad", NULL), ALIGN_OK);
    const char *resp[4] = { "r0", "r1", "r2", "r3" };
    int32_t rank[4] = { 1, 0, 1, 2 };
    pv.source = ALIGN_SOURCE_AI;
    pv.annotator = NULL;
    ck_assert_int_eq(align_dataset_add_ranking(d, "rank these", resp, rank, 4, &pv), ALIGN_OK);
    int32_t rev[2] = { 1, 0 };
    ck_assert_int_eq(align_dataset_add_ranking(d, "reversed pair", resp, rev, 2, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_label(d, "q", "yes", 1, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_label(d, "q", "no", 0, NULL), ALIGN_OK);
    pv.source = ALIGN_SOURCE_PROGRAM;
    ck_assert_int_eq(align_dataset_add_score(d, "q", "maybe", 0.1f, &pv), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_score(d, "q", "x", -3.25e7f, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_prompt(d, "just a prompt", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_size(d), 10);
    int kinds[10] = { ALIGN_RECORD_DEMO, ALIGN_RECORD_CHAT, ALIGN_RECORD_RANKING, ALIGN_RECORD_RANKING,
                      ALIGN_RECORD_RANKING, ALIGN_RECORD_LABEL, ALIGN_RECORD_LABEL, ALIGN_RECORD_SCORE,
                      ALIGN_RECORD_SCORE, ALIGN_RECORD_PROMPT };
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(align_dataset_record_kind(d, i), kinds[i]);
    ck_assert_int_eq(align_dataset_record_kind(d, 10), ALIGN_EINVAL);

    char *j = rec_json(d, 0);
    ck_assert_str_eq(j, "{\"prompt\":\"2+2=\",\"completion\":\"4\",\"source\":\"human\",\"annotator\":\"ann-7\","
                        "\"timestamp\":1700000000}");
    align_free(j);
    j = rec_json(d, 2);
    ck_assert_str_eq(j, "{\"prompt\":\"p\",\"chosen\":\"good\",\"rejected\":\"bad\"}");
    align_free(j);
    j = rec_json(d, 3);
    ck_assert_str_eq(j, "{\"prompt\":\"rank these\",\"responses\":[\"r0\",\"r1\",\"r2\",\"r3\"],\"ranking\":[1,0,1,2],"
                        "\"source\":\"ai\",\"timestamp\":1700000000}");
    align_free(j);
    j = rec_json(d, 7);
    ck_assert_str_eq(j, "{\"prompt\":\"q\",\"response\":\"maybe\",\"score\":0.1,\"source\":\"program\","
                        "\"timestamp\":1700000000}");
    align_free(j);
    j = rec_json(d, 5);
    ck_assert_str_eq(j, "{\"prompt\":\"q\",\"response\":\"yes\",\"label\":true}");
    align_free(j);

    char *dir = test_tmpdir("ds");
    char path[4200], path2[4200];
    snprintf(path, sizeof path, "%s/all.jsonl", dir);
    snprintf(path2, sizeof path2, "%s/again.jsonl", dir);
    ck_assert_int_eq(align_dataset_save_jsonl(d, path), ALIGN_OK);
    align_dataset *e = NULL;
    ck_assert_int_eq(align_dataset_create(&e), ALIGN_OK);
    int rc = align_dataset_load_jsonl(e, path, 0);
    ck_assert_msg(rc == ALIGN_OK, "%s", align_dataset_errmsg(e));
    assert_same(d, e);
    /* and a second save is byte-identical */
    ck_assert_int_eq(align_dataset_save_jsonl(e, path2), ALIGN_OK);
    char cmd[8500];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", path, path2);
    ck_assert_int_eq(system(cmd), 0);
    align_dataset_free(e);
    align_dataset_free(d);
    align_dataset_free(NULL);
    free(dir);
}
END_TEST

START_TEST(test_load_formats)
{
    char *dir = test_tmpdir("ds");
    char path[4200];
    snprintf(path, sizeof path, "%s/in.jsonl", dir);
    write_file(path,
               "{\"prompt\": \"a\", \"completion\": \"b\"}\r\n"
               "\n"
               "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n"
               "   \n"
               "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\", \"source\": \"human\", \"annotator\": null}\n"
               "{\"prompt\": \"p\", \"responses\": [\"x\", \"y\", \"z\"], \"ranking\": [0, 0, 1]}\n"
               "{\"prompt\": \"p\", \"response\": \"x\", \"label\": false, \"timestamp\": 42}\n"
               "{\"prompt\": \"p\", \"response\": \"x\", \"score\": 3}\n"
               "{\"prompt\": \"only\"}\n" /* other fields are errors: check_internal_reliability.c */
               "{\"prompt\": \"no newline at the end\"}");
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    int rc = align_dataset_load_jsonl(d, path, 0);
    ck_assert_msg(rc == ALIGN_OK, "%s", align_dataset_errmsg(d));
    ck_assert_int_eq(align_dataset_size(d), 8);
    int kinds[8] = { 0, 1, 2, 2, 3, 4, 5, 5 };
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(align_dataset_record_kind(d, i), kinds[i]);
    char *j = rec_json(d, 3);
    ck_assert_str_eq(j, "{\"prompt\":\"p\",\"responses\":[\"x\",\"y\",\"z\"],\"ranking\":[0,0,1]}");
    align_free(j);
    j = rec_json(d, 5);
    ck_assert_str_eq(j, "{\"prompt\":\"p\",\"response\":\"x\",\"score\":3.0}");
    align_free(j);
    /* loading appends */
    ck_assert_int_eq(align_dataset_load_jsonl(d, path, 0), ALIGN_OK);
    ck_assert_int_eq(align_dataset_size(d), 16);
    align_dataset_free(d);
    free(dir);
}
END_TEST

/* Each bad line after two good ones: the code, "file:3: ...", and the two
 * records kept. */
START_TEST(test_bad_input_matrix)
{
    static const struct { const char *line, *needle; int code; } cases[] = {
        { "{\"prompt\": \"x\", \"completion\": ", "malformed JSON", ALIGN_EFORMAT },
        { "not json at all", "malformed JSON", ALIGN_EFORMAT },
        { "[1, 2]", "expected a JSON object", ALIGN_EFORMAT },
        { "{\"completion\": \"x\"}", "missing 'prompt'", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"chosen\": \"c\"}", "missing 'rejected'", ALIGN_EFORMAT },
        { "{\"prompt\": 5, \"completion\": \"x\"}", "'prompt' must be a string", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"completion\": [\"x\"]}", "'completion' must be a string", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"responses\": [\"a\", \"b\"], \"ranking\": [0, 2]}", "outside 0..1", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"responses\": [\"a\", \"b\", \"c\"], \"ranking\": [0, 2, 2]}", "skips place 1", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"responses\": [\"a\", \"b\"], \"ranking\": [0]}", "has 1 entries", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"responses\": [\"a\"], \"ranking\": [0]}", "at least 2", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"responses\": [\"a\", \"b\"]}", "missing 'ranking'", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"responses\": [\"a\", 3], \"ranking\": [0, 1]}", "responses[1] must be a string", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"responses\": [\"a\", \"b\"], \"ranking\": [0, 0.5]}", "ranking[1] must be an integer", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"response\": \"r\", \"label\": 1}", "'label' must be true or false", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"response\": \"r\", \"score\": \"high\"}", "'score' must be a number", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"response\": \"r\", \"score\": 1e300}", "float range", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"response\": \"r\"}", "needs a 'label' or a 'score'", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"label\": true}", "missing 'response'", ALIGN_EFORMAT },
        { "{\"prompt\": \"caf\xe9\", \"completion\": \"x\"}", "invalid UTF-8", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"source\": \"robot\"}", "'source' must be one of", ALIGN_EFORMAT },
        { "{\"prompt\": \"x\", \"timestamp\": \"today\"}", "'timestamp' must be an integer", ALIGN_EFORMAT },
        { "{\"messages\": []}", "non-empty array", ALIGN_EFORMAT },
        { "{\"messages\": [{\"role\": \"user\"}]}", "messages[0]: missing 'content'", ALIGN_EFORMAT },
        { "{\"messages\": [{\"role\": \"\", \"content\": \"x\"}]}", "role is empty", ALIGN_EFORMAT },
        { "{\"prompt\": \"a\", \"prompt\": \"b\"}", "duplicate", ALIGN_EFORMAT },
        { "{\"prompt\": \"a\\u0000b\"}", "malformed JSON", ALIGN_EFORMAT },
    };
    char *dir = test_tmpdir("ds");
    char path[4200], text[1024];
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"c\"}\n%s\n{\"prompt\": \"after\"}\n",
                 cases[i].line);
        write_file(path, text);
        align_dataset *d = NULL;
        ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
        int rc = align_dataset_load_jsonl(d, path, 0);
        const char *msg = align_dataset_errmsg(d);
        ck_assert_msg(rc == cases[i].code, "case %zu: %s (%s)", i, align_err_name(rc), msg);
        ck_assert_msg(strstr(msg, "bad.jsonl:3: ") != NULL, "case %zu: no location in '%s'", i, msg);
        ck_assert_msg(strstr(msg, cases[i].needle) != NULL, "case %zu: '%s' lacks '%s'", i, msg, cases[i].needle);
        ck_assert_int_eq(align_dataset_size(d), 2);
        /* lenient: the bad line is skipped and counted, the rest loads */
        ck_assert_int_eq(align_dataset_load_jsonl(d, path, ALIGN_LENIENT), ALIGN_OK);
        ck_assert_int_eq(align_dataset_size(d), 5);
        ck_assert_int_eq(align_dataset_skipped(d), 1);
        align_dataset_free(d);
    }
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    write_file(path, "");
    ck_assert_int_eq(align_dataset_load_jsonl(d, path, 0), ALIGN_EFORMAT);
    ck_assert_ptr_ne(strstr(align_dataset_errmsg(d), "empty"), NULL);
    write_file(path, "\n  \n\n");
    ck_assert_int_eq(align_dataset_load_jsonl(d, path, ALIGN_LENIENT), ALIGN_EFORMAT);
    snprintf(path, sizeof path, "%s/missing.jsonl", dir);
    ck_assert_int_eq(align_dataset_load_jsonl(d, path, 0), ALIGN_ENOENT);
    ck_assert_ptr_ne(strstr(align_dataset_errmsg(d), "missing.jsonl"), NULL);
    ck_assert_int_eq(align_dataset_load_jsonl(d, NULL, 0), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_load_jsonl(d, path, 0x10), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_size(d), 0);
    align_dataset_free(d);
    free(dir);
}
END_TEST

START_TEST(test_api_rejects)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    const char *resp[3] = { "a", "b", "c" };
    int32_t bad1[3] = { 0, 3, 1 }, bad2[3] = { 1, 1, 2 }, ok[3] = { 0, 0, 0 };
    ck_assert_int_eq(align_dataset_add_ranking(d, "p", resp, bad1, 3, NULL), ALIGN_EINVAL);
    ck_assert_ptr_ne(strstr(align_dataset_errmsg(d), "outside"), NULL);
    ck_assert_int_eq(align_dataset_add_ranking(d, "p", resp, bad2, 3, NULL), ALIGN_EINVAL);
    ck_assert_ptr_ne(strstr(align_dataset_errmsg(d), "skips place 0"), NULL);
    ck_assert_int_eq(align_dataset_add_ranking(d, "p", resp, ok, 1, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_add_ranking(d, "p", resp, NULL, 3, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_add_demo(d, "caf\xc3", "x", NULL), ALIGN_EINVAL);
    ck_assert_ptr_ne(strstr(align_dataset_errmsg(d), "UTF-8"), NULL);
    ck_assert_int_eq(align_dataset_add_demo(d, NULL, "x", NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_add_label(d, "p", "r", 2, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_add_score(d, "p", "r", NAN, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_add_score(d, "p", "r", INFINITY, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_add_preference(d, "p", NULL, "r", NULL), ALIGN_EINVAL);
    const char *roles[2] = { "user", NULL }, *contents[2] = { "x", "y" };
    ck_assert_int_eq(align_dataset_add_chat(d, roles, contents, 2, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_add_chat(d, roles, contents, 0, NULL), ALIGN_EINVAL);
    align_provenance pv;
    align_provenance_default(&pv, sizeof pv);
    pv.source = 9;
    ck_assert_int_eq(align_dataset_add_prompt(d, "p", &pv), ALIGN_EINVAL);
    pv.source = ALIGN_SOURCE_HUMAN;
    pv.struct_size = 0;
    ck_assert_int_eq(align_dataset_add_prompt(d, "p", &pv), ALIGN_EINVAL);
    pv.struct_size = sizeof pv;
    pv.annotator = "\xff";
    ck_assert_int_eq(align_dataset_add_prompt(d, "p", &pv), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_size(d), 0);
    /* nothing half-added: a good record after all that saves cleanly */
    ck_assert_int_eq(align_dataset_add_ranking(d, "p", resp, ok, 3, NULL), ALIGN_OK);
    char *j = NULL;
    ck_assert_int_eq(align_dataset_record_json(d, 0, &j), ALIGN_OK);
    ck_assert_str_eq(j, "{\"prompt\":\"p\",\"responses\":[\"a\",\"b\",\"c\"],\"ranking\":[0,0,0]}");
    align_free(j);
    ck_assert_int_eq(align_dataset_record_json(d, 1, &j), ALIGN_EINVAL);
    ck_assert_ptr_eq(j, NULL);
    ck_assert_int_eq(align_text_sink_add(NULL, "x", 1), ALIGN_EMISUSE);
    align_dataset_free(d);
}
END_TEST

START_TEST(test_load_100k)
{
    char *dir = test_tmpdir("ds");
    char path[4200], path2[4200];
    snprintf(path, sizeof path, "%s/big.jsonl", dir);
    snprintf(path2, sizeof path2, "%s/big2.jsonl", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_ne(f, NULL);
    const int N = 100000;
    for (int i = 0; i < N; i++) {
        switch (i % 5) {
        case 0: fprintf(f, "{\"prompt\": \"Question %d: what is %d + %d?\", \"completion\": \"It is %d.\"}\n", i, i, i, 2 * i); break;
        case 1: fprintf(f, "{\"prompt\": \"Pick one (%d)\", \"chosen\": \"good answer %d\", \"rejected\": \"bad answer\", \"source\": \"human\", \"annotator\": \"a%d\", \"timestamp\": %d}\n", i, i, i % 13, 1700000000 + i); break;
        case 2: fprintf(f, "{\"messages\": [{\"role\": \"user\", \"content\": \"hello %d\"}, {\"role\": \"assistant\", \"content\": \"hi \\u00e9 %d\"}]}\n", i, i); break;
        case 3: fprintf(f, "{\"prompt\": \"rank %d\", \"responses\": [\"a\", \"b\", \"c\", \"d\"], \"ranking\": [2, 0, 1, 1]}\n", i); break;
        default: fprintf(f, "{\"prompt\": \"score %d\", \"response\": \"r\", \"score\": %d.5}\n", i, i % 100); break;
        }
    }
    fclose(f);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = align_dataset_load_jsonl(d, path, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ck_assert_msg(rc == ALIGN_OK, "%s", align_dataset_errmsg(d));
    ck_assert_int_eq(align_dataset_size(d), N);
    fprintf(stderr, "check_dataset: 100k-line JSONL loaded in %.3f s\n", sec);
    ck_assert_msg(sec < 30.0, "100k lines took %.2f s", sec); /* ~0.2 s at -O2; generous for sanitizers */
    char *j = rec_json(d, 99998);
    ck_assert_str_eq(j, "{\"prompt\":\"rank 99998\",\"responses\":[\"a\",\"b\",\"c\",\"d\"],\"ranking\":[2,0,1,1]}");
    align_free(j);
    ck_assert_int_eq(align_dataset_save_jsonl(d, path2), ALIGN_OK);
    align_dataset *e = NULL;
    ck_assert_int_eq(align_dataset_create(&e), ALIGN_OK);
    ck_assert_int_eq(align_dataset_load_jsonl(e, path2, 0), ALIGN_OK);
    assert_same(d, e);
    align_dataset_free(e);
    align_dataset_free(d);
    free(dir);
}
END_TEST

/* A host pull source through align_dataset_pull: prompts arrive on demand,
 * ALIGN_DONE ends the source, a failing callback is ALIGN_ECALLBACK and keeps
 * what was already added. */
typedef struct { int calls; int fail_at; } pull_state;
static int pull_source(align_text_sink *sink, void *ud)
{
    pull_state *st = ud;
    st->calls++;
    if (st->calls == st->fail_at)
        return -42;
    if (st->calls > 3)
        return ALIGN_DONE;
    char text[32];
    snprintf(text, sizeof text, "prompt %d", st->calls);
    return align_text_sink_add(sink, text, strlen(text));
}

START_TEST(test_pull_source)
{
    align_dataset *d;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_pull(d, 1), ALIGN_DONE); /* no source */
    ck_assert_int_eq(align_dataset_pull(d, 0), ALIGN_EINVAL);
    ck_assert_int_eq(align_dataset_pull(NULL, 1), ALIGN_EINVAL);
    pull_state st = {0, 0};
    ck_assert_int_eq(align_dataset_set_source(d, pull_source, &st), ALIGN_OK);
    ck_assert_int_eq(align_dataset_pull(d, 2), ALIGN_OK);
    ck_assert_int_eq(align_dataset_size(d), 2);
    ck_assert_int_eq(align_dataset_record_kind(d, 1), ALIGN_RECORD_PROMPT);
    ck_assert_int_eq(align_dataset_pull(d, 5), ALIGN_DONE); /* one more, then done */
    ck_assert_int_eq(align_dataset_size(d), 3);
    char *json;
    ck_assert_int_eq(align_dataset_record_json(d, 2, &json), ALIGN_OK);
    ck_assert(strstr(json, "prompt 3") != NULL);
    align_free(json);

    pull_state bad = {0, 2};
    ck_assert_int_eq(align_dataset_set_source(d, pull_source, &bad), ALIGN_OK);
    ck_assert_int_eq(align_dataset_pull(d, 3), ALIGN_ECALLBACK);
    ck_assert(strstr(align_dataset_errmsg(d), "-42") != NULL);
    ck_assert_int_eq(align_dataset_size(d), 4); /* the first pull's record stays */
    align_dataset_free(d);
}
END_TEST

Suite *dataset_suite(void)
{
    Suite *s = suite_create("dataset");
    TCase *tc = test_tcase(s, "dataset", 120);
    tcase_add_test(tc, test_every_kind_roundtrip);
    tcase_add_test(tc, test_load_formats);
    tcase_add_test(tc, test_bad_input_matrix);
    tcase_add_test(tc, test_api_rejects);
    tcase_add_test(tc, test_load_100k);
    tcase_add_test(tc, test_pull_source);
    return s;
}
