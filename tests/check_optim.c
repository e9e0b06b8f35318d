/* check_optim.c — AdamW: schedules, non-finite gradients, state save/load. */
#include "align.h"
#include "testutil.h"

#include <math.h>

static align_model *mk(void)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = 1; p.n_head = 2; p.n_embd = 8; p.vocab_size = 13; p.max_seq_len = 8;
    align_model *m;
    ck_assert_int_eq(align_model_create(&m, &p), 0);
    return m;
}

static void grad_step(align_model *m, float scale)
{
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8}, len[1] = {8};
    float lp[7], d[7];
    ck_assert_int_eq(align_model_forward(m, tok, len, 1, 8, lp, NULL, NULL), 0);
    for (int i = 0; i < 7; i++)
        d[i] = scale;
    ck_assert_int_eq(align_model_backward(m, d, NULL), 0);
}

START_TEST(test_schedule)
{
    align_model *m = mk();
    align_optimizer_params p;
    align_optimizer_default_params(&p, sizeof p);
    p.learning_rate = 1.0f; p.warmup_steps = 4; p.total_steps = 14; p.schedule = ALIGN_SCHEDULE_COSINE;
    p.min_lr_ratio = 0.1f;
    align_optimizer *o;
    ck_assert_int_eq(align_optimizer_create(&o, m, &p), 0);
    float want[] = {0.25f, 0.5f, 0.75f, 1.0f, 1.0f};
    for (int s = 0; s < 14; s++) {
        float lr = align_optimizer_lr(o);
        if (s < 5)
            ck_assert(fabsf(lr - want[s]) < 1e-6f);
        if (s == 9) /* halfway through the decay: 0.1 + 0.9 * 0.5 */
            ck_assert(fabsf(lr - 0.55f) < 1e-5f);
        grad_step(m, -0.1f);
        ck_assert_int_eq(align_optimizer_step(o, NULL), 0);
    }
    ck_assert(fabsf(align_optimizer_lr(o) - 0.1f) < 1e-6f);
    ck_assert_int_eq(align_optimizer_steps_done(o), 14);
    align_optimizer_free(o);
    p.schedule = 9;
    ck_assert_int_eq(align_optimizer_create(&o, m, &p), ALIGN_EINVAL);
    ck_assert_int_eq(align_optimizer_create(&o, NULL, NULL), ALIGN_EINVAL);
    align_model_free(m);
}
END_TEST

START_TEST(test_nonfinite_and_state)
{
    align_model *m = mk(), *ref;
    align_optimizer *o;
    ck_assert_int_eq(align_optimizer_create(&o, m, NULL), 0);
    ck_assert_int_eq(align_model_clone(&ref, m, ALIGN_FROZEN), 0);
    grad_step(m, NAN);
    float gn = 0;
    ck_assert_int_eq(align_optimizer_step(o, &gn), ALIGN_ENONFINITE);
    ck_assert(!isfinite(gn));
    ck_assert_int_eq(align_optimizer_steps_done(o), 0);
    /* weights unchanged, grads zeroed: a zero-gradient step leaves norm 0 */
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8}, len[1] = {8};
    float a[7], b[7];
    ck_assert_int_eq(align_model_forward(m, tok, len, 1, 8, a, NULL, NULL), 0);
    ck_assert_int_eq(align_model_forward(ref, tok, len, 1, 8, b, NULL, NULL), 0);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert_int_eq(align_optimizer_step(o, &gn), 0);
    ck_assert(gn == 0.0f);
    /* save / load: two optimizers continue identically */
    grad_step(m, -0.3f);
    ck_assert_int_eq(align_optimizer_step(o, NULL), 0);
    char *dir = test_tmpdir("optim"), path[4200];
    snprintf(path, sizeof path, "%s/opt.safetensors", dir);
    ck_assert_int_eq(align_optimizer_save(o, path), 0);
    align_model *m2;
    align_optimizer *o2;
    ck_assert_int_eq(align_model_clone(&m2, m, 0), 0);
    ck_assert_int_eq(align_optimizer_create(&o2, m2, NULL), 0);
    ck_assert_int_eq(align_optimizer_load(o2, path), 0);
    ck_assert_int_eq(align_optimizer_steps_done(o2), 2);
    grad_step(m, -0.3f);
    grad_step(m2, -0.3f);
    ck_assert_int_eq(align_optimizer_step(o, NULL), 0);
    ck_assert_int_eq(align_optimizer_step(o2, NULL), 0);
    ck_assert_int_eq(align_model_forward(m, tok, len, 1, 8, a, NULL, NULL), 0);
    ck_assert_int_eq(align_model_forward(m2, tok, len, 1, 8, b, NULL, NULL), 0);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    /* a model file is not optimizer state */
    ck_assert_int_eq(align_model_save(m, path), 0);
    ck_assert_int_eq(align_optimizer_load(o2, path), ALIGN_EFORMAT);
    ck_assert_int_eq(align_optimizer_steps_done(o2), 3);
    free(dir);
    align_optimizer_free(o2);
    align_model_free(m2);
    align_optimizer_free(o);
    align_model_free(ref);
    align_model_free(m);
}
END_TEST

Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = test_tcase(s, "adamw", 60);
    tcase_add_test(tc, test_schedule);
    tcase_add_test(tc, test_nonfinite_and_state);
    return s;
}
