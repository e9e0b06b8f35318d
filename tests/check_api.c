/* check_api.c — the error model, version API and params-struct handling,
 * through the public header and the real libalign.so. */
#include "align.h"
#include "testutil.h"

START_TEST(test_version)
{
    ck_assert_uint_eq(align_version(), ALIGN_VERSION_HEX);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", ALIGN_VERSION_MAJOR, ALIGN_VERSION_MINOR, ALIGN_VERSION_PATCH);
    ck_assert_str_eq(align_version_string(), want);
    ck_assert(ALIGN_VERSION_AT_LEAST(0, 0, 1));
    ck_assert(ALIGN_VERSION_AT_LEAST(ALIGN_VERSION_MAJOR, ALIGN_VERSION_MINOR, ALIGN_VERSION_PATCH));
    ck_assert(!ALIGN_VERSION_AT_LEAST(ALIGN_VERSION_MAJOR + 1, 0, 0));
}
END_TEST

/* The codes are ABI: their values must never change. */
START_TEST(test_error_codes_fixed)
{
    ck_assert_int_eq(ALIGN_OK, 0);
    ck_assert_int_eq(ALIGN_DONE, 1);
    ck_assert_int_eq(ALIGN_EINVAL, -1);
    ck_assert_int_eq(ALIGN_ENOMEM, -2);
    ck_assert_int_eq(ALIGN_EIO, -3);
    ck_assert_int_eq(ALIGN_EFORMAT, -4);
    ck_assert_int_eq(ALIGN_EVERSION, -5);
    ck_assert_int_eq(ALIGN_EBUSY, -6);
    ck_assert_int_eq(ALIGN_ECANCELED, -7);
    ck_assert_int_eq(ALIGN_ECALLBACK, -8);
    ck_assert_int_eq(ALIGN_EMISUSE, -9);
    ck_assert_int_eq(ALIGN_EINTERNAL, -10);
    ck_assert_int_eq(ALIGN_ERANGE, -11);
    ck_assert_int_eq(ALIGN_ENOENT, -12);
    ck_assert_int_eq(ALIGN_ENONFINITE, -13);
}
END_TEST

START_TEST(test_error_names_and_messages)
{
    static const struct { int code; const char *name; } tab[] = {
        {ALIGN_OK, "ALIGN_OK"}, {ALIGN_DONE, "ALIGN_DONE"}, {ALIGN_EINVAL, "ALIGN_EINVAL"},
        {ALIGN_ENOMEM, "ALIGN_ENOMEM"}, {ALIGN_EIO, "ALIGN_EIO"}, {ALIGN_EFORMAT, "ALIGN_EFORMAT"},
        {ALIGN_EVERSION, "ALIGN_EVERSION"}, {ALIGN_EBUSY, "ALIGN_EBUSY"},
        {ALIGN_ECANCELED, "ALIGN_ECANCELED"}, {ALIGN_ECALLBACK, "ALIGN_ECALLBACK"},
        {ALIGN_EMISUSE, "ALIGN_EMISUSE"}, {ALIGN_EINTERNAL, "ALIGN_EINTERNAL"},
        {ALIGN_ERANGE, "ALIGN_ERANGE"}, {ALIGN_ENOENT, "ALIGN_ENOENT"},
        {ALIGN_ENONFINITE, "ALIGN_ENONFINITE"},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        ck_assert_str_eq(align_err_name(tab[i].code), tab[i].name);
        const char *msg = align_strerror(tab[i].code);
        ck_assert_ptr_nonnull(msg);
        ck_assert_int_gt((int)strlen(msg), 3);
        /* distinct messages */
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(msg, align_strerror(tab[j].code));
    }
    ck_assert_str_eq(align_err_name(-999), "ALIGN_UNKNOWN");
    ck_assert_str_eq(align_err_name(12345), "ALIGN_UNKNOWN");
    ck_assert_ptr_nonnull(align_strerror(-999));
    ck_assert_ptr_nonnull(align_last_errmsg());
}
END_TEST

/* ---- params structs: smaller, equal, larger struct_size ---------------------- */

START_TEST(test_default_params_sizes)
{
    align_optimizer_params p;
    ck_assert_int_eq(ALIGN_OPTIMIZER_DEFAULT_PARAMS(&p), ALIGN_OK);
    ck_assert_uint_eq(p.struct_size, sizeof p);
    ck_assert_float_gt(p.learning_rate, 0.0f);
    ck_assert_float_eq_tol(p.beta1, 0.9f, 1e-7f);

    /* An older caller that knows only a prefix gets exactly that prefix. */
    unsigned char buf[sizeof p + 32];
    memset(buf, 0xAB, sizeof buf);
    size_t prefix = offsetof(align_optimizer_params, beta1);
    ck_assert_int_eq(align_optimizer_default_params((align_optimizer_params *)buf, prefix), ALIGN_OK);
    for (size_t i = prefix; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0xAB); /* nothing written past the caller's struct */
    uint32_t sz;
    memcpy(&sz, buf, sizeof sz);
    ck_assert_uint_eq(sz, prefix);

    /* A newer caller with a larger struct: our part filled, its tail zeroed. */
    memset(buf, 0xAB, sizeof buf);
    ck_assert_int_eq(align_optimizer_default_params((align_optimizer_params *)buf, sizeof buf), ALIGN_OK);
    for (size_t i = sizeof p; i < sizeof buf; i++)
        ck_assert_uint_eq(buf[i], 0);

    ck_assert_int_eq(align_optimizer_default_params(NULL, sizeof p), ALIGN_EINVAL);
    ck_assert_int_eq(align_optimizer_default_params(&p, 0), ALIGN_EINVAL);
    ck_assert_int_eq(align_optimizer_default_params(&p, 2), ALIGN_EINVAL);
}
END_TEST

/* Every default-params function follows the same rules. */
#define CHECK_DEFAULTS(type, fn)                                                \
    do {                                                                        \
        type p_;                                                                \
        memset(&p_, 0x5A, sizeof p_);                                           \
        ck_assert_int_eq(fn(&p_, sizeof p_), ALIGN_OK);                         \
        ck_assert_uint_eq(p_.struct_size, sizeof p_);                           \
        ck_assert_int_eq(fn(NULL, sizeof p_), ALIGN_EINVAL);                    \
        ck_assert_int_eq(fn(&p_, 0), ALIGN_EINVAL);                             \
    } while (0)

START_TEST(test_all_default_params)
{
    CHECK_DEFAULTS(align_model_params, align_model_default_params);
    CHECK_DEFAULTS(align_optimizer_params, align_optimizer_default_params);
    CHECK_DEFAULTS(align_generate_params, align_generate_default_params);
    CHECK_DEFAULTS(align_sft_params, align_sft_default_params);
    CHECK_DEFAULTS(align_provenance, align_provenance_default);
    CHECK_DEFAULTS(align_step_stats, align_step_stats_init);
}
END_TEST

/* A params struct from a newer program: accepted if the unknown tail is all
 * zero, ALIGN_EVERSION if it sets anything we do not know; struct_size 0 is
 * ALIGN_EINVAL. Exercised through align_model_create. */
START_TEST(test_params_struct_size_rules)
{
    struct {
        align_model_params p;
        uint64_t newer_member;
    } big;
    memset(&big, 0, sizeof big);
    ck_assert_int_eq(align_model_default_params(&big.p, sizeof big), ALIGN_OK);
    ck_assert_uint_eq(big.p.struct_size, sizeof big);
    big.p.n_layer = 1;
    big.p.n_head = 2;
    big.p.n_embd = 16;
    big.p.vocab_size = 40;
    big.p.max_seq_len = 8;

    align_model *m = (align_model *)0x1;
    big.newer_member = 7; /* a setting this library does not know */
    ck_assert_int_eq(align_model_create(&m, &big.p), ALIGN_EVERSION);
    ck_assert_ptr_null(m);
    ck_assert(strstr(align_last_errmsg(), "struct_size") != NULL);

    big.newer_member = 0; /* all-zero tail: fine */
    ck_assert_int_eq(align_model_create(&m, &big.p), ALIGN_OK);
    ck_assert_ptr_nonnull(m);
    align_model_free(m);

    /* an older, smaller struct: the prefix it knows, defaults for the rest */
    align_model_params small;
    ck_assert_int_eq(align_model_default_params(&small, offsetof(align_model_params, seed)), ALIGN_OK);
    small.n_layer = 1;
    small.n_head = 2;
    small.n_embd = 16;
    small.vocab_size = 40;
    small.max_seq_len = 8;
    m = NULL;
    ck_assert_int_eq(align_model_create(&m, &small), ALIGN_OK);
    align_model_params cfg;
    ALIGN_MODEL_DEFAULT_PARAMS(&cfg);
    ck_assert_int_eq(align_model_config(m, &cfg), ALIGN_OK);
    ck_assert_int_eq(cfg.n_embd, 16);
    ck_assert_int_eq(cfg.vocab_size, 40);
    align_model_free(m);

    small.struct_size = 0;
    m = (align_model *)0x1;
    ck_assert_int_eq(align_model_create(&m, &small), ALIGN_EINVAL);
    ck_assert_ptr_null(m);
}
END_TEST

START_TEST(test_free_null_is_noop)
{
    align_model_free(NULL);
    align_tokenizer_free(NULL);
    align_dataset_free(NULL);
    align_optimizer_free(NULL);
    align_trainer_free(NULL);
    align_generation_free(NULL);
    align_free(NULL);
}
END_TEST

static int log_calls;
static char log_last[256];
static void test_log(int level, const char *msg, void *ud)
{
    (void)level;
    *(int *)ud += 1;
    snprintf(log_last, sizeof log_last, "%s", msg);
}

START_TEST(test_log_hook_and_threads)
{
    align_log_set(test_log, &log_calls);
    align_log_set_level(ALIGN_LOG_DEBUG);
    /* align_blas_info reports through the log at INFO level or above */
    const char *info = align_blas_info();
    ck_assert_ptr_nonnull(info);
    ck_assert_int_gt((int)strlen(info), 0);
    align_log_set(NULL, NULL);
    align_log_set_level(ALIGN_LOG_WARN);

    ck_assert_int_eq(align_threads_set(1), ALIGN_OK);
    ck_assert_int_eq(align_threads_get(), 1);
    ck_assert_int_eq(align_threads_set(0), ALIGN_OK);
    ck_assert_int_ge(align_threads_get(), 1);
    ck_assert_int_eq(align_threads_set(100000), ALIGN_EINVAL);
}
END_TEST

Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = test_tcase(s, "core", 60);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_error_codes_fixed);
    tcase_add_test(tc, test_error_names_and_messages);
    tcase_add_test(tc, test_default_params_sizes);
    tcase_add_test(tc, test_all_default_params);
    tcase_add_test(tc, test_params_struct_size_rules);
    tcase_add_test(tc, test_free_null_is_noop);
    tcase_add_test(tc, test_log_hook_and_threads);
    return s;
}
