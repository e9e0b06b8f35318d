/* check_internal_core.c — the core layer: RNG, thread pool, files, errors. */
#include "core/core.h"
#include "testutil.h"

#include <math.h>

START_TEST(test_rng_reproducible_and_restorable)
{
    align__rng a, b;
    align__rng_init(&a, 42, 7);
    align__rng_init(&b, 42, 7);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(align__rng_u32(&a), align__rng_u32(&b));

    /* save = copy the struct; the restored stream continues identically */
    align__rng saved = a;
    uint32_t first[64];
    for (int i = 0; i < 64; i++)
        first[i] = align__rng_u32(&a);
    align__rng restored = saved;
    for (int i = 0; i < 64; i++)
        ck_assert_uint_eq(align__rng_u32(&restored), first[i]);

    /* different streams and seeds differ */
    align__rng c, d;
    align__rng_init(&c, 42, 8);
    align__rng_init(&d, 43, 7);
    align__rng_init(&a, 42, 7);
    int same_c = 0, same_d = 0;
    for (int i = 0; i < 256; i++) {
        uint32_t x = align__rng_u32(&a);
        same_c += x == align__rng_u32(&c);
        same_d += x == align__rng_u32(&d);
    }
    ck_assert_int_lt(same_c, 3);
    ck_assert_int_lt(same_d, 3);
}
END_TEST

/* Counter-based: draw i is a pure function of (seed, stream, i). */
START_TEST(test_rng_counter_based)
{
    align__rng r;
    align__rng_init(&r, 99, 3);
    uint32_t draws[12];
    for (int i = 0; i < 12; i++)
        draws[i] = align__rng_u32(&r);
    for (int i = 0; i < 12; i++) {
        uint32_t blk[4];
        align__philox4x32(99, 3, (uint64_t)i / 4, blk);
        ck_assert_uint_eq(draws[i], blk[i % 4]);
    }
    /* jump straight to draw 9 */
    align__rng j = {99, 3, 9};
    ck_assert_uint_eq(align__rng_u32(&j), draws[9]);
}
END_TEST

START_TEST(test_rng_distributions)
{
    align__rng r;
    align__rng_init(&r, 1, 0);
    enum { N = 200000 };
    double sum = 0, sum2 = 0;
    for (int i = 0; i < N; i++) {
        float u = align__rng_uniform(&r);
        ck_assert(u >= 0.0f && u < 1.0f);
        sum += u;
        sum2 += (double)u * u;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    ck_assert(fabs(mean - 0.5) < 0.005);
    ck_assert(fabs(var - 1.0 / 12) < 0.002);

    static float z[N];
    align__rng_fill_normal(&r, z, N, 1.0f, 2.0f);
    sum = sum2 = 0;
    for (int i = 0; i < N; i++) {
        ck_assert(isfinite(z[i]));
        sum += z[i];
        sum2 += (double)z[i] * z[i];
    }
    mean = sum / N;
    var = sum2 / N - mean * mean;
    ck_assert_msg(fabs(mean - 1.0) < 0.02, "mean %f", mean);
    ck_assert_msg(fabs(var - 4.0) < 0.08, "var %f", var);

    int counts[7] = {0};
    for (int i = 0; i < 70000; i++) {
        uint32_t k = align__rng_below(&r, 7);
        ck_assert_uint_lt(k, 7);
        counts[k]++;
    }
    for (int k = 0; k < 7; k++)
        ck_assert_int_gt(counts[k], 9500);
}
END_TEST

/* ---- thread pool ---------------------------------------------------------------- */
typedef struct { double *partial; const float *x; int chunks_seen[64]; } sum_ctx;

static void sum_range(void *vctx, int64_t b, int64_t e, int chunk)
{
    sum_ctx *c = vctx;
    double s = 0;
    for (int64_t i = b; i < e; i++)
        s += c->x[i];
    c->partial[chunk] = s;
    c->chunks_seen[chunk]++;
}

START_TEST(test_parallel_for_covers_and_reproduces)
{
    enum { N = 100003 };
    static float x[N];
    for (int i = 0; i < N; i++)
        x[i] = (float)((i * 7919) % 1000) / 997.0f;
    double want = 0;
    for (int i = 0; i < N; i++)
        want += x[i];
    for (int threads = 1; threads <= 4; threads++) {
        ck_assert_int_eq(align_threads_set(threads), ALIGN_OK);
        double results[3];
        for (int rep = 0; rep < 3; rep++) {
            double partial[64] = {0};
            sum_ctx c = {partial, x, {0}};
            align__parallel_for(N, sum_range, &c);
            double s = 0;
            for (int k = 0; k < threads; k++) {
                ck_assert_int_eq(c.chunks_seen[k], 1);
                s += partial[k];
            }
            for (int k = threads; k < 64; k++)
                ck_assert_int_eq(c.chunks_seen[k], 0);
            results[rep] = s;
        }
        ck_assert(fabs(results[0] - want) < 1e-6 * want);
        /* bitwise identical run to run for the same thread count */
        ck_assert(memcmp(&results[0], &results[1], sizeof(double)) == 0);
        ck_assert(memcmp(&results[0], &results[2], sizeof(double)) == 0);
    }
    align_threads_set(0);
}
END_TEST

/* ---- files and errors ------------------------------------------------------------ */
START_TEST(test_atomic_write_and_read)
{
    char *dir = test_tmpdir("core");
    char path[4200];
    snprintf(path, sizeof path, "%s/f.bin", dir);
    align__errbuf eb;
    align__error_clear(&eb);
    align__chunk ch[2] = {{"hello ", 6}, {"world", 5}};
    ck_assert_int_eq(align__write_atomic(&eb, path, ch, 2), ALIGN_OK);
    char *data;
    size_t len;
    ck_assert_int_eq(align__read_file(&eb, path, &data, &len), ALIGN_OK);
    ck_assert_uint_eq(len, 11);
    ck_assert_str_eq(data, "hello world");
    align__free(data);

    /* no temporary file left behind */
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 1", dir);
    ck_assert_int_eq(system(cmd), 0);

    snprintf(path, sizeof path, "%s/missing/f.bin", dir);
    ck_assert_int_eq(align__read_file(&eb, path, &data, &len), ALIGN_ENOENT);
    ck_assert(strstr(align__errmsg(&eb), "missing/f.bin") != NULL);
    ck_assert_ptr_null(data);
    ck_assert_int_eq(align__write_atomic(&eb, path, ch, 2), ALIGN_ENOENT);
    ck_assert_str_eq(align_last_errmsg(), align__errmsg(&eb));
    free(dir);
}
END_TEST

START_TEST(test_error_buffer)
{
    align__errbuf eb;
    align__error_clear(&eb);
    ck_assert_str_eq(align__errmsg(&eb), "");
    ck_assert_int_eq(align__error(&eb, ALIGN_EFORMAT, "x.jsonl:%d: missing 'chosen'", 12), ALIGN_EFORMAT);
    ck_assert_str_eq(align__errmsg(&eb), "x.jsonl:12: missing 'chosen'");
    ck_assert_str_eq(align_last_errmsg(), "x.jsonl:12: missing 'chosen'");
    /* an empty format falls back to the code's description */
    ck_assert_int_eq(align__error(&eb, ALIGN_ENOMEM, "%s", ""), ALIGN_ENOMEM);
    ck_assert_str_eq(align__errmsg(&eb), align_strerror(ALIGN_ENOMEM));
    ck_assert_str_eq(align__errmsg(NULL), "");
    /* long messages are truncated, not overflowed */
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    align__error(&eb, ALIGN_EINVAL, "%s", big);
    ck_assert_uint_eq(strlen(align__errmsg(&eb)), ALIGN__ERRMSG_CAP - 1);
}
END_TEST

Suite *internal_core_suite(void)
{
    Suite *s = suite_create("internal_core");
    TCase *tc = test_tcase(s, "core", 60);
    tcase_add_test(tc, test_rng_reproducible_and_restorable);
    tcase_add_test(tc, test_rng_counter_based);
    tcase_add_test(tc, test_rng_distributions);
    tcase_add_test(tc, test_parallel_for_covers_and_reproduces);
    tcase_add_test(tc, test_atomic_write_and_read);
    tcase_add_test(tc, test_error_buffer);
    return s;
}
