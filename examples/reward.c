/* reward.c — train a small reward model on rankings, then score with it.
 * The rule: the more 'a' a response holds, the better. Build: make examples;
 * run: build/bin/reward. Error handling kept short: any failure exits 1. */
#include "align.h"

#include <stdio.h>
#include <stdlib.h>

#define CHECK(x) do { int rc_ = (x); if (rc_ < 0) { fprintf(stderr, "%s: %s\n", #x, align_last_errmsg()); exit(1); } } while (0)

int main(void)
{
    align_tokenizer *tok = NULL;
    CHECK(align_tokenizer_bytes(&tok));
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.flags = ALIGN_MODEL_SCALAR_HEAD; /* the reward head */
    mp.n_layer = 2, mp.n_head = 4, mp.n_embd = 48, mp.vocab_size = 257, mp.max_seq_len = 16;
    align_model *m = NULL;
    CHECK(align_model_create(&m, &mp));

    /* K = 4 rankings: response j holds j letters 'a' (place 3 - j) */
    align_dataset *d = NULL;
    CHECK(align_dataset_create(&d));
    srand(1);
    for (int i = 0; i < 500; i++) {
        char r[4][8];
        const char *rs[4];
        int32_t rank[4];
        for (int j = 0; j < 4; j++) {
            for (int c = 0; c < 6; c++)
                r[j][c] = c < j ? 'a' : (char)('b' + rand() % 3);
            r[j][6] = 0;
            for (int c = 5; c > 0; c--) { int q = rand() % (c + 1); char t = r[j][c]; r[j][c] = r[j][q]; r[j][q] = t; }
            rs[j] = r[j];
            rank[j] = 3 - j;
        }
        CHECK(align_dataset_add_ranking(d, "rate:", rs, rank, 4, NULL));
    }
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 3e-3f;
    align_optimizer *o = NULL;
    CHECK(align_optimizer_create(&o, m, &op));
    align_reward_train_params p;
    ALIGN_REWARD_TRAIN_DEFAULT_PARAMS(&p);
    p.micro_batch = 8; /* prompts per forward: 32 sequences */
    p.max_steps = 100;
    align_trainer *tr = NULL;
    CHECK(align_trainer_create_reward(&tr, m, tok, d, o, &p));
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    while (align_trainer_step(tr, &st) == ALIGN_OK)
        if (st.step % 25 == 0) {
            double margin = 0;
            align_trainer_metric(tr, ALIGN_METRICS_STEP, "margin", &margin);
            printf("step %3lld  loss %.4f  pairwise accuracy %.3f  margin %.3f\n", (long long)st.step,
                   (double)st.loss, (double)st.accuracy, margin);
        }

    /* score, with the bias set so these references average 0 */
    align_reward_model *rm = NULL;
    CHECK(align_reward_model_from_model(&rm, m, tok, NULL));
    const char *ps[3] = {"rate:", "rate:", "rate:"}, *rs[3] = {"bcdbcd", "abcabc", "aaaaab"};
    CHECK(align_reward_model_normalize(rm, ps, rs, 3, 0));
    float sc[3];
    CHECK(align_reward_model_score(rm, ps, rs, 3, sc));
    for (int i = 0; i < 3; i++)
        printf("%-8s %+.3f\n", rs[i], (double)sc[i]);
    align_reward_model_free(rm);
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_dataset_free(d);
    align_model_free(m);
    align_tokenizer_free(tok);
    return 0;
}
