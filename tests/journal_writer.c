/* journal_writer.c — the writer process of tests/sh/journal_crash.sh.
 *   journal_writer PATH SEED   submits, answers (out of order) and cancels
 *                              requests forever, printing "S id", "A id",
 *                              "C id" after each call returned (acknowledged),
 *                              "R 0" once the journal is open;
 *                              "T n" first if open dropped a torn line of n bytes.
 *   journal_writer --dump PATH prints "id status" for every request. */
#include <align.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "journal_writer: %s: %s (%s)\n", what, align_err_name(rc), align_last_errmsg());
    return 1;
}

int main(int argc, char **argv)
{
    align_journal *j;
    int rc;
    if (argc == 3 && !strcmp(argv[1], "--dump")) {
        if ((rc = align_journal_open(&j, argv[2], 0)))
            return fail("open", rc);
        align_feedback_request r;
        align_feedback_request_init(&r, sizeof r);
        for (int64_t id = 1; align_journal_request(j, id, &r) == ALIGN_OK; id++)
            printf("%lld %d\n", (long long)id, r.status);
        align_journal_close(j);
        return 0;
    }
    if (argc != 3)
        return fprintf(stderr, "usage: journal_writer PATH SEED | --dump PATH\n"), 2;
    if ((rc = align_journal_open(&j, argv[1], 0)))
        return fail("open", rc);
    setvbuf(stdout, NULL, _IONBF, 0);
    if (align_journal_torn_bytes(j) > 0)
        printf("T %lld\n", (long long)align_journal_torn_bytes(j));
    printf("R 0\n");   /* ready: the journal is open and replayed */
    srand((unsigned)strtoul(argv[2], NULL, 10));
    const char *resp[4] = { "first answer", "second answer", "third \xc3\xa9 answer", "fourth" };
    static int64_t ids[1 << 16];
    for (unsigned long it = 0;; it++) {
        int op = rand() % 10;
        int64_t n = 0;
        if (op < 5) {
            int64_t id;
            char prompt[64];
            snprintf(prompt, sizeof prompt, "prompt %lu of writer %s", it, argv[2]);
            if ((rc = align_journal_submit(j, ALIGN_FEEDBACK_RANK, prompt, resp, 2 + rand() % 3, 0, &id)))
                return fail("submit", rc);
            printf("S %lld\n", (long long)id);
            continue;
        }
        rc = align_journal_pending(j, ids, (int64_t)(sizeof ids / sizeof ids[0]), &n);
        if (rc && rc != ALIGN_ERANGE)
            return fail("pending", rc);
        if (n == 0)
            continue;
        int64_t id = ids[rand() % (n < (1 << 16) ? n : (1 << 16))];
        align_feedback_request r;
        align_feedback_request_init(&r, sizeof r);
        if ((rc = align_journal_request(j, id, &r)))
            return fail("request", rc);
        if (op == 9) {
            if ((rc = align_journal_cancel(j, id)))
                return fail("cancel", rc);
            printf("C %lld\n", (long long)id);
        } else {
            int32_t rank[4];
            for (int i = 0; i < r.k; i++)
                rank[i] = (i + (int)id) % r.k;
            if ((rc = align_journal_answer_rank(j, id, rank, NULL)))
                return fail("answer", rc);
            printf("A %lld\n", (long long)id);
        }
    }
}
