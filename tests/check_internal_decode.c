/* check_internal_decode.c — the decoding fast paths: the few-row ("skinny")
 * matmul kernels against the reference kernel, their independence from the
 * thread count, and batched sampling (parallel across sequences) giving each
 * sequence what it gets alone. */
#include "nn/nn.h"
#include "testutil.h"

#include "align.h"

#include <math.h>

static float *randv(align__rng *r, size_t n)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = align__rng_normal(r);
    return v;
}

/* Every row count the decoding kernels take (2..16) and shapes whose C and OC
 * are not multiples of the vector width / column tile, both weight layouts,
 * with and without bias and residual (beta), with every kernel set this CPU
 * has (AVX-512, AVX2 + FMA): each against the reference, and the AVX2
 * kernels bit for bit equal to the AVX-512 ones (they sum in the same order). */
START_TEST(test_few_rows_match_reference)
{
    align__rng r;
    align__rng_init(&r, 7, 0);
    const int top = align__nn_decode_isa();
    if (top < 2)
        fprintf(stderr, "test_few_rows_match_reference: no AVX-512 here, AVX2 vs AVX-512 bits not compared\n");
    static const int shapes[][2] = {{13, 9}, {40, 70}, {64, 131}, {100, 257}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int layout = 0; layout < 2; layout++)
            for (int N = 1; N <= 16; N++) {
                const int C = shapes[si][0], OC = shapes[si][1];
                const size_t bytes = (size_t)N * OC * sizeof(float);
                float *x = randv(&r, (size_t)N * C), *w = randv(&r, (size_t)C * OC), *b = randv(&r, OC);
                float *o0 = randv(&r, (size_t)N * OC);
                float *o1 = malloc(bytes), *o2 = malloc(bytes), *o3 = malloc(bytes), *otop = malloc(bytes);
                for (int beta = 0; beta < 2; beta++)
                    for (int bias = 0; bias < 2; bias++) {
                        memcpy(o2, o0, bytes);
                        align__nn_matmul_forward_ref(o2, x, w, bias ? b : NULL, N, C, OC, layout, (float)beta);
                        for (int isa = top; isa >= (top > 0 ? 1 : 0); isa--) {
                            align__nn_decode_isa_cap(isa);
                            ck_assert_int_eq(align__nn_decode_isa(), isa);
                            memcpy(o1, o0, bytes);
                            memcpy(o3, o0, bytes);
                            align_threads_set(2);
                            align__nn_matmul_decode(o1, x, w, bias ? b : NULL, N, C, OC, layout, (float)beta);
                            align_threads_set(1);
                            align__nn_matmul_decode(o3, x, w, bias ? b : NULL, N, C, OC, layout, (float)beta);
                            for (int i = 0; i < N * OC; i++)
                                ck_assert_msg(fabsf(o1[i] - o2[i]) <= 1e-5f * (1.0f + fabsf(o2[i])) * sqrtf((float)C),
                                              "isa %d N %d C %d OC %d layout %d beta %d bias %d [%d]: %g vs %g", isa,
                                              N, C, OC, layout, beta, bias, i, o1[i], o2[i]);
                            /* the few-row kernels split by columns only */
                            ck_assert_msg(memcmp(o1, o3, bytes) == 0, "isa %d N %d: 1 and 2 threads differ", isa, N);
                            if (isa == top)
                                memcpy(otop, o1, bytes);
                            else if (isa > 0)
                                ck_assert_msg(memcmp(o1, otop, bytes) == 0,
                                              "N %d C %d OC %d layout %d: AVX2 and AVX-512 kernels differ", N, C,
                                              OC, layout);
                        }
                        align__nn_decode_isa_cap(-1);
                    }
                free(x); free(w); free(b); free(o0); free(o1); free(o2); free(o3); free(otop);
            }
    align_threads_set(2);
}
END_TEST

static int same_run(const align_generation *a, int32_t i, const align_generation *b, int32_t j)
{
    int32_t na = 0, nb = 0;
    const int32_t *ta = align_generation_tokens(a, i, &na), *tb = align_generation_tokens(b, j, &nb);
    const float *la = align_generation_logprobs(a, i, &na), *lb = align_generation_logprobs(b, j, &nb);
    return na == nb && memcmp(ta, tb, sizeof(int32_t) * (size_t)na) == 0 &&
           memcmp(la, lb, sizeof(float) * (size_t)na) == 0;
}

/* A batch of 8 with prompts of different lengths, top-k + top-p sampling
 * parallel across sequences: reproducible bit for bit, and (prompts short
 * enough that even the prefill runs the few-row kernels, whose rows do not
 * interact) each sequence gets exactly what it gets alone. */
START_TEST(test_batch_sampling_is_per_sequence)
{
    align_threads_set(2);
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 48;
    mp.vocab_size = 300; /* padded past the byte tokenizer's 257 */
    mp.max_seq_len = 64;
    mp.seed = 11;
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    const char *prompts[8] = {"a", "bc", "", "d", "ef", "g", "h", "ij"}; /* 13 rows in all */
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.max_new_tokens = 20;
    gp.seed = 3;
    gp.temperature = 0.9f;
    gp.top_k = 20;
    gp.top_p = 0.9f;
    gp.flags = ALIGN_GENERATE_IGNORE_EOT;
    for (int mode = 0; mode < 3; mode++) { /* top-k + top-p, temperature only, top-p only */
        if (mode == 1)
            gp.top_k = 0, gp.top_p = 1.0f;
        if (mode == 2)
            gp.top_p = 0.8f;
        align_generation *g1 = NULL, *g2 = NULL;
        ck_assert_int_eq(align_generate(m, t, prompts, 8, &gp, &g1), ALIGN_OK);
        ck_assert_int_eq(align_generate(m, t, prompts, 8, &gp, &g2), ALIGN_OK);
        for (int32_t i = 0; i < 8; i++) {
            int32_t n = 0;
            align_generation_tokens(g1, i, &n);
            ck_assert_int_eq(n, 20);
            ck_assert_msg(same_run(g1, i, g2, i), "mode %d seq %d not reproducible", mode, i);
        }
#if defined(__x86_64__) && defined(__GNUC__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) {
            /* sequence 0 alone draws from the same stream (index 0) */
            align_generation *g3 = NULL;
            ck_assert_int_eq(align_generate(m, t, prompts, 1, &gp, &g3), ALIGN_OK);
            ck_assert_msg(same_run(g1, 0, g3, 0), "mode %d: sequence 0 differs alone", mode);
            align_generation_free(g3);
        }
#endif
        align_generation_free(g1);
        align_generation_free(g2);
    }
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

Suite *internal_decode_suite(void)
{
    Suite *s = suite_create("internal_decode");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_few_rows_match_reference);
    tcase_add_test(tc, test_batch_sampling_is_per_sequence);
    suite_add_tcase(s, tc);
    return s;
}
