/* check_bf16.c — the bf16 compute mode through the public API: an SFT run in
 * bf16 tracks the same run in fp32 (same seeds, same data) step by step, and
 * the mode is refused cleanly where it cannot run. */
#include "testutil.h"

#include "align.h"

#include <math.h>

/* Learn "rev abcd:" -> "dcba" over letters a..h (4096 strings). */
static align_dataset *task(void)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    for (uint32_t k = 0; k < 2000; k++) {
        uint32_t x = (k * 2654435761u) & 4095u;
        char w[5], p[16], c[8];
        for (int i = 0; i < 4; i++)
            w[i] = (char)('a' + ((x >> (3 * i)) & 7));
        w[4] = 0;
        snprintf(p, sizeof p, "rev %s:", w);
        for (int i = 0; i < 4; i++)
            c[i] = w[3 - i];
        c[4] = 0;
        ck_assert_int_eq(align_dataset_add_demo(d, p, c, NULL), ALIGN_OK);
    }
    return d;
}

/* Losses of `steps` SFT steps of a fresh 2-layer, 64-wide model. */
static void sft_losses(int32_t mode, int steps, float *loss)
{
    ck_assert_int_eq(align_compute_set(mode), ALIGN_OK);
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2, mp.n_head = 2, mp.n_embd = 64, mp.vocab_size = 257, mp.max_seq_len = 16, mp.seed = 3;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 3e-3f;
    op.schedule = ALIGN_SCHEDULE_COSINE;
    op.total_steps = steps;
    op.warmup_steps = 2;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), ALIGN_OK);
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    align_dataset *d = task();
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = 16;
    sp.max_steps = steps;
    sp.max_seq_len = 16;
    sp.seed = 42;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_OK);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    for (int i = 0; i < steps; i++) {
        ck_assert_int_eq(align_trainer_step(tr, &st), ALIGN_OK);
        ck_assert_uint_eq(st.skipped, 0);
        loss[i] = st.loss;
    }
    align_trainer_free(tr);
    align_dataset_free(d);
    align_tokenizer_free(t);
    align_optimizer_free(o);
    align_model_free(m);
    ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_FP32), ALIGN_OK);
}

/* The stated fidelity (docs/model.md, "bf16 compute"): over 300 steps, every
 * 25-step window's mean loss in bf16 within 15% + 0.03 of fp32's, and both
 * learn (last window below a fifth of the first step's loss). The two runs
 * see the same batches and drift apart only through bf16 rounding. The
 * tolerance is set by the steep part of the curve, where a small shift in
 * time is a large difference in loss (measured: bf16 0.94 against fp32 1.03
 * in steps 50..74, where an fp32 run with another data order gives 1.27);
 * elsewhere the two agree to a few percent. BF16_TRACE=1 prints the windows. */
START_TEST(test_sft_tracks_fp32)
{
    if (align_compute_set(ALIGN_COMPUTE_BF16) != ALIGN_OK) {
        ck_assert_int_eq(align_compute_get(), ALIGN_COMPUTE_FP32);
        return; /* refused on this machine: test_refusal checks how */
    }
    enum { STEPS = 300, WIN = 25 };
    static float l32[STEPS], l16[STEPS];
    sft_losses(ALIGN_COMPUTE_FP32, STEPS, l32);
    sft_losses(ALIGN_COMPUTE_BF16, STEPS, l16);
    ck_assert_msg(fabsf(l16[0] - l32[0]) <= 0.01f * l32[0], "first loss bf16 %g fp32 %g", l16[0], l32[0]);
    int differ = 0;
    for (int w = 0; w < STEPS / WIN; w++) {
        double a = 0, b = 0;
        for (int i = w * WIN; i < (w + 1) * WIN; i++)
            a += l32[i], b += l16[i];
        a /= WIN, b /= WIN;
        if (getenv("BF16_TRACE"))
            fprintf(stderr, "window %d: fp32 %.4f bf16 %.4f\n", w, a, b);
        ck_assert_msg(fabs(b - a) <= 0.15 * a + 0.03, "steps %d..%d: mean loss bf16 %.4f fp32 %.4f", w * WIN,
                      (w + 1) * WIN - 1, b, a);
        if (w == STEPS / WIN - 1) {
            ck_assert_msg(a < 0.2 * l32[0] && b < 0.2 * l16[0], "did not learn: fp32 %g -> %g, bf16 %g -> %g",
                          l32[0], a, l16[0], b);
        }
    }
    for (int i = 0; i < STEPS; i++)
        differ |= l16[i] != l32[i];
    ck_assert_msg(differ, "bf16 losses equal fp32's bit for bit: was bf16 used?");
}
END_TEST

START_TEST(test_refusal)
{
    ck_assert_int_eq(align_compute_set(-1), ALIGN_EINVAL);
    ck_assert_int_eq(align_compute_get(), ALIGN_COMPUTE_FP32);
    int rc = align_compute_set(ALIGN_COMPUTE_BF16);
    const char *info = align_compute_info();
    if (rc == ALIGN_OK) {
        ck_assert_int_eq(align_compute_get(), ALIGN_COMPUTE_BF16);
        ck_assert_msg(strstr(info, "bf16 available") != NULL, "%s", info);
    } else {
        ck_assert_int_eq(rc, ALIGN_EMISUSE);
        ck_assert_msg(strstr(align_last_errmsg(), "unavailable") != NULL, "%s", align_last_errmsg());
        ck_assert_int_eq(align_compute_get(), ALIGN_COMPUTE_FP32);
        ck_assert_msg(strstr(info, "bf16 unavailable") != NULL, "%s", info);
    }
    ck_assert_int_eq(align_compute_set(ALIGN_COMPUTE_FP32), ALIGN_OK);
    ck_assert_int_eq(align_compute_get(), ALIGN_COMPUTE_FP32);
    ck_assert(strncmp(align_compute_info(), "fp32", 4) == 0);
}
END_TEST

Suite *bf16_suite(void)
{
    Suite *s = suite_create("bf16");
    TCase *tc = test_tcase(s, "bf16", 300);
    tcase_add_test(tc, test_refusal);
    tcase_add_test(tc, test_sft_tracks_fp32);
    return s;
}
