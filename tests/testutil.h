/* testutil.h — helpers shared by the Check suites. */
#ifndef ALIGN_TESTUTIL_H
#define ALIGN_TESTUTIL_H
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh scratch folder under $ALIGN_BUILD/tmp (or /tmp); caller frees. */
static inline char *test_tmpdir(const char *tag)
{
    const char *base = getenv("ALIGN_BUILD");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/tmp", base ? base : "/tmp");
    {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmpl);
        if (system(cmd) != 0) { /* fall back to /tmp */
            snprintf(tmpl, sizeof tmpl, "/tmp");
        }
    }
    size_t l = strlen(tmpl);
    snprintf(tmpl + l, sizeof tmpl - l, "/%s-XXXXXX", tag);
    char *d = mkdtemp(tmpl);
    ck_assert_msg(d != NULL, "mkdtemp failed");
    return strdup(d);
}

/* Adds a test case with a generous timeout (training tests are slow under ASan). */
static inline TCase *test_tcase(Suite *s, const char *name, int timeout_sec)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, timeout_sec);
    suite_add_tcase(s, tc);
    return tc;
}
#endif
