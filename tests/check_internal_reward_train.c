/* check_internal_reward_train.c — the reward trainer's gradient: what one
 * accumulate pushes through d_scalar (ranking with margins and centering,
 * label, score, split over two micro-batches) against central finite
 * differences of the loss the trainer reports, through the whole model. */
#include "train/trainer.h"
#include "model/model_impl.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>

static double eval_loss(align_trainer *tr, align_dataset *d)
{
    ck_assert_int_eq(align_trainer_evaluate(tr, d, NULL), ALIGN_OK);
    double v = 0.0;
    ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_EVAL, "loss", &v), ALIGN_OK);
    return v;
}

START_TEST(gradient_matches_finite_differences)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.flags = ALIGN_MODEL_SCALAR_HEAD;
    mp.n_layer = 1;
    mp.n_head = 2;
    mp.n_embd = 16;
    mp.vocab_size = 257;
    mp.max_seq_len = 16;
    mp.seed = 9;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    /* a larger head so the scores spread and every term matters */
    for (int i = 0; i < 16; i++)
        m->w.scorew[i] *= 20.0f;
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    const char *r3[3] = {"ab", "ba", "abc"};
    int32_t k3[3] = {1, 0, 2};
    ck_assert_int_eq(align_dataset_add_ranking(d, "q", r3, k3, 3, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_label(d, "l", "bb", 0, NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_score(d, "s", "a", 0.7f, NULL), ALIGN_OK);

    align_reward_train_params p;
    ALIGN_REWARD_TRAIN_DEFAULT_PARAMS(&p);
    p.flags = ALIGN_REWARD_TRAIN_SEQUENTIAL;
    p.micro_batch = 2;
    p.grad_accum = 2;
    p.max_steps = 0; /* one epoch: the step holds the 3 records */
    p.epochs = 1;
    p.margin_scale = 0.3f;
    p.center_coef = 0.2f;
    p.label_weight = 0.5f;
    p.score_weight = 2.0f;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_reward(&tr, m, t, d, NULL, &p), ALIGN_OK);

    align__step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ck_assert_int_eq(align_model_zero_grad(m), ALIGN_OK);
    ck_assert_int_eq(tr->vt->accumulate(tr, &ctx), ALIGN_OK);
    tr->vt->finish(tr, &ctx); /* the statistics, as the trainer's step does (lib/dist) */
    ck_assert_int_eq(ctx.stats.sequences, 5);
    double L0 = eval_loss(tr, d);
    ck_assert_msg(fabs(L0 - ctx.stats.loss) < 1e-5, "step loss %g, evaluate %g", (double)ctx.stats.loss, L0);

    /* parameters along the whole path: head, final LayerNorm, a block's
     * weights, token and position embeddings */
    struct { float *w, *g; const char *what; } probe[] = {
        {m->w.scorew + 3, m->g.scorew + 3, "score.weight[3]"},
        {m->w.scoreb, m->g.scoreb, "score.bias"},
        {m->w.lnfw + 5, m->g.lnfw + 5, "ln_f.weight[5]"},
        {m->w.layer[0].fcw + 17, m->g.layer[0].fcw + 17, "mlp.c_fc.weight[17]"},
        {m->w.layer[0].qkvw + 40, m->g.layer[0].qkvw + 40, "attn.c_attn.weight[40]"},
        {m->w.wte + 'a' * 16 + 2, m->g.wte + 'a' * 16 + 2, "wte['a'][2]"},
        {m->w.wte + 256 * 16 + 7, m->g.wte + 256 * 16 + 7, "wte[eot][7]"},
        {m->w.wpe + 1 * 16 + 4, m->g.wpe + 1 * 16 + 4, "wpe[1][4]"},
    };
    const float eps = 1e-2f;
    for (size_t i = 0; i < sizeof probe / sizeof probe[0]; i++) {
        float keep = *probe[i].w;
        *probe[i].w = keep + eps;
        double lp = eval_loss(tr, d);
        *probe[i].w = keep - eps;
        double lm = eval_loss(tr, d);
        *probe[i].w = keep;
        double fd = (lp - lm) / (2.0 * eps), g = *probe[i].g;
        ck_assert_msg(fabs(fd - g) <= 3e-2 * fmax(fabs(fd), fabs(g)) + 2e-4, "%s: gradient %.6g, finite "
                      "difference %.6g", probe[i].what, g, fd);
        ck_assert_msg(fabs(g) > 1e-6 || i >= 6, "%s: zero gradient", probe[i].what);
    }
    align_trainer_free(tr);
    align_dataset_free(d);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

Suite *internal_reward_train_suite(void)
{
    Suite *s = suite_create("internal_reward_train");
    TCase *tc = test_tcase(s, "grad", 120);
    tcase_add_test(tc, gradient_matches_finite_differences);
    return s;
}
