/* check_internal_reward.c — the (prompt, response) sequence the scorer builds
 * (lib/reward/reward_model.h) is token for token what the SFT batcher builds
 * for the same demonstration, and the chat form is the two-turn template. */
#include "data/batch.h"
#include "reward/reward_model.h"

#include "testutil.h"

START_TEST(test_demo_sequence_equals_sft_row)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), 0);
    const char *prompt = "Translate <|endoftext|> to French:", *response = " fin";
    /* the SFT batcher's row for the demonstration */
    align_dataset *d;
    ck_assert_int_eq(align_dataset_create(&d), 0);
    ck_assert_int_eq(align_dataset_add_demo(d, prompt, response, NULL), 0);
    align__batch_params bp;
    memset(&bp, 0, sizeof bp);
    bp.max_len = 64;
    bp.seed = 1;
    align__errbuf eb = {{0}};
    align__batcher *b;
    ck_assert_int_eq(align__batcher_create(&b, d, t, &bp, &eb), 0);
    int32_t row[64], len, rows;
    uint8_t mask[63];
    ck_assert_int_eq(align__batcher_next(b, 1, 0, row, &len, mask, &rows), 0);
    ck_assert_int_eq(rows, 1);
    /* the scorer's sequence */
    align__reward_template tp = {0, align_tokenizer_eot(t), NULL, 0, NULL, 0};
    int32_t *ids = NULL;
    size_t cap = 0, n = 0;
    ck_assert_int_eq(align__reward_build(&eb, t, &tp, prompt, response, &ids, &cap, &n), 0);
    ck_assert_int_eq((int)n, len);
    ck_assert(memcmp(ids, row, n * sizeof *ids) == 0);
    ck_assert_int_eq(ids[n - 1], 256); /* ends with end-of-turn: the score is read there */
    /* the chat form: prefix, prompt, eot, prefix, response, eot */
    const int32_t up[2] = {'U', ':'}, ap[2] = {'A', ':'};
    align__reward_template ct = {1, 256, up, 2, ap, 2};
    n = 0;
    ck_assert_int_eq(align__reward_build(&eb, t, &ct, "hi", "yo", &ids, &cap, &n), 0);
    const int32_t want[10] = {'U', ':', 'h', 'i', 256, 'A', ':', 'y', 'o', 256};
    ck_assert_int_eq((int)n, 10);
    ck_assert(memcmp(ids, want, sizeof want) == 0);
    align__free(ids);
    align__batcher_free(b);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

Suite *internal_reward_suite(void)
{
    Suite *s = suite_create("reward_internal");
    TCase *tc = test_tcase(s, "reward_internal", 60);
    tcase_add_test(tc, test_demo_sequence_equals_sft_row);
    return s;
}
