/* check_introspect.c — the tensor table (align_model_num_tensors,
 * align_model_tensor) and the slow-BLAS decision (align_blas_slow_kernel). */
#include "align.h"
#include "testutil.h"

static align_model *small_model(uint32_t flags)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = 2;
    p.n_head = 2;
    p.n_embd = 16;
    p.vocab_size = 23;
    p.max_seq_len = 12;
    p.flags = flags;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &p), 0);
    return m;
}

/* The table covers every parameter once, with GPT-2 names and shapes, and
 * survives a save/load round trip (names, shapes) unchanged. */
START_TEST(test_tensor_table)
{
    for (int scalar = 0; scalar < 2; scalar++) {
        align_model *m = small_model(scalar ? ALIGN_MODEL_SCALAR_HEAD : 0);
        int32_t n = align_model_num_tensors(m);
        ck_assert_int_eq(n, 4 + 12 * 2 + (scalar ? 2 : 0));
        int64_t total = 0;
        int seen_wte = 0, seen_wpe = 0, seen_score = 0;
        for (int32_t i = 0; i < n; i++) {
            const char *name = NULL;
            int32_t nd = 0;
            int64_t sh[2] = {-1, -1};
            ck_assert_int_eq(align_model_tensor(m, i, &name, &nd, sh), 0);
            ck_assert_ptr_nonnull(name);
            ck_assert(nd == 1 || nd == 2);
            ck_assert(sh[0] > 0);
            ck_assert(nd == 2 ? sh[1] > 0 : sh[1] == 0);
            total += nd == 2 ? sh[0] * sh[1] : sh[0];
            for (int32_t j = 0; j < i; j++) {
                const char *other = NULL;
                ck_assert_int_eq(align_model_tensor(m, j, &other, NULL, NULL), 0);
                ck_assert_str_ne(name, other);
            }
            if (!strcmp(name, "wte.weight")) {
                seen_wte = 1;
                ck_assert(nd == 2 && sh[0] == 23 && sh[1] == 16);
            } else if (!strcmp(name, "wpe.weight")) {
                seen_wpe = 1;
                ck_assert(nd == 2 && sh[0] == 12 && sh[1] == 16);
            } else if (!strcmp(name, "h.1.attn.c_attn.weight")) {
                ck_assert(nd == 2 && sh[0] == 16 && sh[1] == 48);
            } else if (!strcmp(name, "h.0.mlp.c_fc.bias")) {
                ck_assert(nd == 1 && sh[0] == 64);
            } else if (!strncmp(name, "score.", 6)) {
                seen_score++;
            }
        }
        ck_assert(seen_wte && seen_wpe);
        ck_assert_int_eq(seen_score, scalar ? 2 : 0);
        ck_assert_int_eq(total, align_model_num_params(m));
        /* out of range and NULL */
        ck_assert_int_eq(align_model_tensor(m, -1, NULL, NULL, NULL), ALIGN_ERANGE);
        ck_assert(strstr(align_model_errmsg(m), "index") != NULL);
        ck_assert_int_eq(align_model_tensor(m, n, NULL, NULL, NULL), ALIGN_ERANGE);
        ck_assert_int_eq(align_model_tensor(NULL, 0, NULL, NULL, NULL), ALIGN_EINVAL);
        ck_assert_int_eq(align_model_num_tensors(NULL), ALIGN_EINVAL);
        align_model_free(m);
    }
}
END_TEST

START_TEST(test_blas_slow_kernel)
{
    const char *remedy = (const char *)1;
    int slow = align_blas_slow_kernel(&remedy);
    ck_assert(slow == 0 || slow == 1);
    ck_assert_int_eq(align_blas_slow_kernel(NULL), slow); /* the out pointer is optional */
    const char *info = align_blas_info();
    if (slow) {
        /* only OpenBLAS is judged, and the remedy is a core type it knows */
        ck_assert(strstr(info, "OpenBLAS") != NULL);
        ck_assert(remedy && (!strcmp(remedy, "SkylakeX") || !strcmp(remedy, "Haswell")));
        ck_assert(strstr(info, remedy) == NULL); /* it does not run the remedy already */
    } else {
        ck_assert_ptr_null(remedy);
    }
    /* the kernel set OpenBLAS reports decides: SkylakeX-class kernels are never slow */
    if (strstr(info, "SkylakeX kernels") || strstr(info, "Cooperlake kernels") ||
        strstr(info, "SapphireRapids kernels"))
        ck_assert_int_eq(slow, 0);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (strstr(info, "Prescott kernels") && __builtin_cpu_supports("avx2"))
        ck_assert_int_eq(slow, 1);
#endif
}
END_TEST

Suite *introspect_suite(void)
{
    Suite *s = suite_create("introspect");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_tensor_table);
    tcase_add_test(tc, test_blas_slow_kernel);
    suite_add_tcase(s, tc);
    return s;
}
