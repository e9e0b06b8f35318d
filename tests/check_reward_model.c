#define _GNU_SOURCE /* memmem, wait4 */
/* check_reward_model.c — the reward-model scorer (align_reward_model_*) over a
 * scalar-head model and over a callback, normalisation, and Hugging Face
 * files (config.json folders, GPT2ForSequenceClassification, refusals,
 * hostile files refused before allocation). Public API only. */
#include "align.h"
#include "testutil.h"

#include <math.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

#define EOT 256

static align_model *rm_model(uint32_t flags, int32_t max_seq_len)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = 2;
    p.n_head = 2;
    p.n_embd = 32;
    p.vocab_size = 257;
    p.max_seq_len = max_seq_len;
    p.flags = flags;
    p.seed = 7;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &p), 0);
    return m;
}

static align_tokenizer *bytes_tok(void)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), 0);
    return t;
}

/* The scalar head at the last of n tokens, by a direct forward. */
static float direct_score(align_model *m, const int32_t *ids, int32_t n)
{
    float *scalar = calloc((size_t)n, sizeof *scalar);
    ck_assert_int_eq(align_model_forward(m, ids, &n, 1, n, NULL, scalar, NULL), 0);
    float s = scalar[n - 1];
    free(scalar);
    return s;
}

/* Appends the bytes of s to ids. */
static int32_t put(int32_t *ids, int32_t n, const char *s)
{
    for (; *s; s++)
        ids[n++] = (unsigned char)*s;
    return n;
}

static const char *const P[5] = {"What is 2+2?", "Name a colour.", "", "Say hi", "A longer prompt, to pad the batch."};
static const char *const R[5] = {"4", "Blue, I think.", "empty prompt", "", "ok"};

START_TEST(test_score_model_reads_last_token)
{
    align_model *m = rm_model(ALIGN_MODEL_SCALAR_HEAD, 64);
    align_tokenizer *t = bytes_tok();
    align_reward_params p;
    ck_assert_int_eq(ALIGN_REWARD_DEFAULT_PARAMS(&p), 0);
    ck_assert_int_eq(p.batch_size, 16);
    ck_assert_int_eq(p.truncation, ALIGN_TRUNCATE_LEFT);
    p.batch_size = 2; /* 3 forward passes, padded differently */
    align_reward_model *rm = NULL;
    ck_assert_int_eq(align_reward_model_from_model(&rm, m, t, &p), 0);
    float s[5], s16[5];
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, s), 0);
    for (int i = 0; i < 5; i++) {
        /* a demonstration as SFT builds it: prompt, response, end-of-turn */
        int32_t ids[128], n = put(ids, 0, P[i]);
        n = put(ids, n, R[i]);
        ids[n++] = EOT;
        float d = direct_score(m, ids, n);
        ck_assert_msg(fabsf(d - s[i]) < 1e-5f, "pair %d: scorer %g, direct %g", i, (double)s[i], (double)d);
        /* not the score of the token before the end-of-turn */
        ck_assert(fabsf(direct_score(m, ids, n - 1) - s[i]) > 1e-6f);
    }
    /* batch size does not change the scores beyond rounding */
    align_reward_model *rm16;
    p.batch_size = 16;
    ck_assert_int_eq(align_reward_model_from_model(&rm16, m, t, &p), 0);
    ck_assert_int_eq(align_reward_model_score(rm16, P, R, 5, s16), 0);
    for (int i = 0; i < 5; i++)
        ck_assert(fabsf(s16[i] - s[i]) < 1e-5f);
    /* the same call twice is bitwise the same */
    ck_assert_int_eq(align_reward_model_score(rm16, P, R, 5, s), 0);
    ck_assert(memcmp(s, s16, sizeof s) == 0);
    align_reward_model_free(rm16);

    /* the chat form: <|user|>\n prompt <eot> <|assistant|>\n response <eot> */
    p.flags = ALIGN_REWARD_CHAT;
    ck_assert_int_eq(align_reward_model_from_model(&rm16, m, t, &p), 0);
    ck_assert_int_eq(align_reward_model_score(rm16, P, R, 2, s), 0);
    for (int i = 0; i < 2; i++) {
        int32_t ids[128], n = put(ids, 0, "<|user|>\n");
        n = put(ids, n, P[i]);
        ids[n++] = EOT;
        n = put(ids, n, "<|assistant|>\n");
        n = put(ids, n, R[i]);
        ids[n++] = EOT;
        ck_assert(fabsf(direct_score(m, ids, n) - s[i]) < 1e-5f);
    }
    align_reward_model_free(rm16);

    /* truncation to 8 tokens: LEFT keeps the end, RIGHT the start, DROP fails */
    p.flags = 0;
    p.max_seq_len = 8;
    for (int32_t tr = ALIGN_TRUNCATE_RIGHT; tr <= ALIGN_TRUNCATE_DROP; tr++) {
        p.truncation = tr;
        ck_assert_int_eq(align_reward_model_from_model(&rm16, m, t, &p), 0);
        int32_t ids[128], n = put(ids, 0, P[1]);
        n = put(ids, n, R[1]);
        ids[n++] = EOT;
        int rc = align_reward_model_score(rm16, P + 1, R + 1, 1, s);
        if (tr == ALIGN_TRUNCATE_DROP) {
            ck_assert_int_eq(rc, ALIGN_ERANGE);
            ck_assert(strstr(align_reward_model_errmsg(rm16), "max_seq_len 8") != NULL);
        } else {
            ck_assert_int_eq(rc, 0);
            const int32_t *w = tr == ALIGN_TRUNCATE_LEFT ? ids + n - 8 : ids;
            ck_assert(fabsf(direct_score(m, w, 8) - s[0]) < 1e-5f);
        }
        align_reward_model_free(rm16);
    }
    p.max_seq_len = 65;
    ck_assert_int_eq(align_reward_model_from_model(&rm16, m, t, &p), ALIGN_EINVAL);
    ck_assert_ptr_null(rm16);
    align_reward_model_free(rm);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

START_TEST(test_bad_input)
{
    align_model *plain = rm_model(0, 32);
    align_tokenizer *t = bytes_tok();
    align_reward_model *rm = (align_reward_model *)1;
    ck_assert_int_eq(align_reward_model_from_model(&rm, plain, t, NULL), ALIGN_EINVAL);
    ck_assert_ptr_null(rm);
    ck_assert_msg(strstr(align_last_errmsg(), "no scalar head") != NULL, "%s", align_last_errmsg());
    ck_assert_int_eq(align_reward_model_from_model(&rm, NULL, t, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_reward_model_from_callback(&rm, NULL, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_reward_model_from_callback(NULL, NULL, NULL), ALIGN_EINVAL);
    align_model *m = rm_model(ALIGN_MODEL_SCALAR_HEAD, 32);
    ck_assert_int_eq(align_reward_model_from_model(&rm, m, t, NULL), 0);
    const char *pn[2] = {"a", NULL}, *rn[2] = {"b", "c"};
    float s[2];
    ck_assert_int_eq(align_reward_model_score(rm, pn, rn, 2, s), ALIGN_EINVAL);
    ck_assert_msg(strstr(align_reward_model_errmsg(rm), "prompts[1] is NULL") != NULL, "%s",
                  align_reward_model_errmsg(rm));
    ck_assert_int_eq(align_reward_model_score(rm, rn, pn, 2, s), ALIGN_EINVAL);
    ck_assert(strstr(align_reward_model_errmsg(rm), "responses[1] is NULL") != NULL);
    ck_assert_int_eq(align_reward_model_score(rm, NULL, rn, 2, s), ALIGN_EINVAL);
    ck_assert_int_eq(align_reward_model_score(rm, rn, rn, 2, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_reward_model_score(rm, rn, rn, -1, s), ALIGN_EINVAL);
    ck_assert_int_eq(align_reward_model_score(rm, rn, rn, 0, s), 0);
    ck_assert_int_eq(align_reward_model_score(NULL, rn, rn, 1, s), ALIGN_EINVAL);
    ck_assert_int_eq(align_reward_model_set_normalization(rm, NAN, 1.0f), ALIGN_EINVAL);
    ck_assert_int_eq(align_reward_model_set_normalization(rm, 0.0f, 0.0f), ALIGN_EINVAL);
    ck_assert_int_eq(align_reward_model_normalize(rm, rn, rn, 1, ALIGN_REWARD_NORMALIZE_STD), ALIGN_EINVAL);
    ck_assert_int_eq(align_reward_model_normalize(rm, rn, rn, 2, 0x80), ALIGN_EINVAL);
    ck_assert_str_eq(align_reward_model_errmsg(NULL), "reward model is NULL");
    align_reward_params p;
    ALIGN_REWARD_DEFAULT_PARAMS(&p);
    p.batch_size = 0;
    align_reward_model *r2;
    ck_assert_int_eq(align_reward_model_from_model(&r2, m, t, &p), ALIGN_EINVAL);
    p.batch_size = 1;
    p.truncation = 9;
    ck_assert_int_eq(align_reward_model_from_model(&r2, m, t, &p), ALIGN_EINVAL);
    align_reward_model_free(rm);
    align_reward_model_free(NULL);
    align_model_free(m);
    align_model_free(plain);
    align_tokenizer_free(t);
}
END_TEST

typedef struct {
    int mode; /* 0: length of the response, 1: NaN at 1, 2: fail, 3: leave unset, 4: inf */
    int calls;
} cb_state;

static int score_cb(const char *const *prompts, const char *const *responses, int32_t n, float *scores,
                    void *ud)
{
    cb_state *st = ud;
    st->calls++;
    if (st->mode == 2)
        return -7;
    for (int32_t i = 0; i < n; i++) {
        if (st->mode == 3 && i == 1)
            continue;
        scores[i] = (float)strlen(responses[i]) - 0.5f * (float)strlen(prompts[i]);
    }
    if (st->mode == 1)
        scores[1] = NAN;
    if (st->mode == 4)
        scores[0] = -INFINITY;
    return 0;
}

START_TEST(test_callback_and_normalization)
{
    cb_state st = {0, 0};
    align_reward_model *rm;
    ck_assert_int_eq(align_reward_model_from_callback(&rm, score_cb, &st), 0);
    float s[5];
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, s), 0);
    ck_assert_int_eq(st.calls, 1); /* one call for the batch */
    for (int i = 0; i < 5; i++)
        ck_assert(s[i] == (float)strlen(R[i]) - 0.5f * (float)strlen(P[i]));
    st.mode = 1;
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, s), ALIGN_ENONFINITE);
    ck_assert_msg(strstr(align_reward_model_errmsg(rm), "NaN for pair 1") != NULL, "%s",
                  align_reward_model_errmsg(rm));
    st.mode = 3;
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, s), ALIGN_ENONFINITE);
    st.mode = 4;
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, s), ALIGN_ENONFINITE);
    ck_assert(strstr(align_reward_model_errmsg(rm), "infinite") != NULL);
    st.mode = 2;
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, s), ALIGN_ECALLBACK);
    ck_assert(strstr(align_reward_model_errmsg(rm), "returned -7") != NULL);
    st.mode = 0;
    /* normalisation: mean 0, then unit deviation */
    float b, sc;
    ck_assert_int_eq(align_reward_model_get_normalization(rm, &b, &sc), 0);
    ck_assert(b == 0.0f && sc == 1.0f);
    ck_assert_int_eq(align_reward_model_normalize(rm, P, R, 5, 0), 0);
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, s), 0);
    double mean = 0, var = 0;
    for (int i = 0; i < 5; i++)
        mean += s[i] / 5.0;
    ck_assert(fabs(mean) < 1e-5);
    ck_assert_int_eq(align_reward_model_normalize(rm, P, R, 5, ALIGN_REWARD_NORMALIZE_STD), 0);
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, s), 0);
    mean = 0;
    for (int i = 0; i < 5; i++)
        mean += s[i] / 5.0;
    for (int i = 0; i < 5; i++)
        var += (s[i] - mean) * (s[i] - mean) / 5.0;
    ck_assert(fabs(mean) < 1e-5 && fabs(var - 1.0) < 1e-5);
    ck_assert_int_eq(align_reward_model_set_normalization(rm, 2.0f, -1.0f), 0);
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 1, s), 0);
    ck_assert(s[0] == 2.0f - ((float)strlen(R[0]) - 0.5f * (float)strlen(P[0])));
    ck_assert_int_eq(align_reward_model_get_normalization(rm, &b, &sc), 0);
    ck_assert(b == 2.0f && sc == -1.0f);
    /* all equal: no deviation to scale */
    const char *same[2] = {"x", "x"};
    ck_assert_int_eq(align_reward_model_normalize(rm, same, same, 2, ALIGN_REWARD_NORMALIZE_STD), ALIGN_EINVAL);
    align_reward_model_free(rm);
}
END_TEST

/* Changes the scalar head (bias included) by one AdamW step. */
static void nudge_head(align_model *m)
{
    enum { N = 2, TT = 4 };
    int32_t tok[N * TT] = {1, 2, 3, 4, 5, 6, 7, 8}, len[N] = {4, 3};
    float sc[N * TT], d[N * TT];
    ck_assert_int_eq(align_model_forward(m, tok, len, N, TT, NULL, sc, NULL), 0);
    for (int i = 0; i < N * TT; i++)
        d[i] = 1.0f;
    ck_assert_int_eq(align_model_backward(m, NULL, d), 0);
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.learning_rate = 0.05f;
    align_optimizer *o;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), 0);
    ck_assert_int_eq(align_optimizer_step(o, NULL), 0);
    align_optimizer_free(o);
}

static float score1(align_model *m, align_tokenizer *t, float *out5)
{
    align_reward_model *rm;
    ck_assert_int_eq(align_reward_model_from_model(&rm, m, t, NULL), 0);
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, out5), 0);
    align_reward_model_free(rm);
    return out5[0];
}

START_TEST(test_save_load_score_bitwise)
{
    char *dir = test_tmpdir("rm");
    char path[4300];
    align_tokenizer *t = bytes_tok();
    align_model *m = rm_model(ALIGN_MODEL_SCALAR_HEAD, 64);
    nudge_head(m);
    align_reward_model *rm;
    ck_assert_int_eq(align_reward_model_from_model(&rm, m, t, NULL), 0);
    ck_assert_int_eq(align_reward_model_normalize(rm, P, R, 5, ALIGN_REWARD_NORMALIZE_STD), 0);
    float want[5], got[5], b0, s0, b1, s1;
    ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, want), 0);
    ck_assert_int_eq(align_reward_model_get_normalization(rm, &b0, &s0), 0);
    ck_assert(b0 != 0.0f && s0 != 1.0f);
    align_reward_model_free(rm);
    /* libalign layout, a file; HF sequence-classification layout, a folder */
    for (int layout = 0; layout < 2; layout++) {
        snprintf(path, sizeof path, layout ? "%s/hf/" : "%s/rm.safetensors", dir);
        ck_assert_int_eq(align_model_save_ex(m, path, layout ? ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION : 0), 0);
        align_model *l;
        ck_assert_int_eq(align_model_load(&l, path, NULL), 0);
        ck_assert_int_eq(align_model_num_params(l), align_model_num_params(m));
        ck_assert_int_eq(align_reward_model_from_model(&rm, l, t, NULL), 0);
        ck_assert_int_eq(align_reward_model_score(rm, P, R, 5, got), 0);
        ck_assert_msg(memcmp(got, want, sizeof got) == 0, "layout %d: %g vs %g", layout, (double)got[0],
                      (double)want[0]);
        ck_assert_int_eq(align_reward_model_get_normalization(rm, &b1, &s1), 0);
        ck_assert(b1 == b0 && s1 == s0);
        align_reward_model_free(rm);
        /* a clone keeps the normalisation */
        align_model *c;
        ck_assert_int_eq(align_model_clone(&c, l, ALIGN_FROZEN), 0);
        score1(c, t, got);
        ck_assert(memcmp(got, want, sizeof got) == 0);
        align_model_free(c);
        align_model_free(l);
    }
    /* the HF folder: config.json and the layout transformers expects */
    snprintf(path, sizeof path, "%s/hf/config.json", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    ck_assert(strstr(buf, "\"GPT2ForSequenceClassification\"") && strstr(buf, "\"n_head\": 2") &&
              strstr(buf, "\"num_labels\": 1"));
    snprintf(path, sizeof path, "%s/hf/model.safetensors", dir);
    f = fopen(path, "rb");
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    ck_assert(memmem(buf, n, "\"transformer.h.1.mlp.c_fc.weight\"", 33) && memmem(buf, n, "\"score.weight\"", 14) &&
              !memmem(buf, n, "\"score.bias\"", 12) && !memmem(buf, n, "transformer.score", 17));
    /* a libalign checkpoint folder (model.safetensors, no config.json) loads */
    snprintf(path, sizeof path, "%s/ckpt", dir);
    ck_assert_int_eq(mkdir(path, 0777), 0);
    snprintf(path, sizeof path, "%s/ckpt/model.safetensors", dir);
    ck_assert_int_eq(align_model_save(m, path), 0);
    snprintf(path, sizeof path, "%s/ckpt", dir);
    align_model *l;
    ck_assert_int_eq(align_model_load(&l, path, NULL), 0);
    score1(l, t, got);
    ck_assert(memcmp(got, want, sizeof got) == 0);
    align_model_free(l);
    /* a folder without model.safetensors */
    snprintf(path, sizeof path, "%s/hf/..", dir);
    ck_assert_int_eq(align_model_load(&l, path, NULL), ALIGN_ENOENT);
    ck_assert(strstr(align_last_errmsg(), "model.safetensors") != NULL);
    /* the HF layout needs a scalar head */
    align_model *plain = rm_model(0, 16);
    snprintf(path, sizeof path, "%s/plain.safetensors", dir);
    ck_assert_int_eq(align_model_save_ex(plain, path, ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION), ALIGN_EINVAL);
    ck_assert_int_eq(align_model_save_ex(plain, path, 0x10), ALIGN_EINVAL);
    align_model_free(plain);
    align_model_free(m);
    align_tokenizer_free(t);
    free(dir);
}
END_TEST

/* align_trainer_save's folder loads as a model (its model.safetensors). */
START_TEST(test_trainer_checkpoint_folder_loads)
{
    char *dir = test_tmpdir("ckpt");
    align_tokenizer *t = bytes_tok();
    align_model *m = rm_model(ALIGN_MODEL_SCALAR_HEAD, 32);
    align_dataset *d;
    ck_assert_int_eq(align_dataset_create(&d), 0);
    ck_assert_int_eq(align_dataset_add_demo(d, "2+2=", "4", NULL), 0);
    align_optimizer *o;
    ck_assert_int_eq(align_optimizer_create(&o, m, NULL), 0);
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = 1;
    sp.max_steps = 1;
    align_trainer *tr;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), 0);
    ck_assert_int_eq(align_trainer_step(tr, NULL), 0);
    ck_assert_int_eq(align_trainer_save(tr, dir), 0);
    align_model *l;
    ck_assert_msg(align_model_load(&l, dir, NULL) == 0, "%s", align_last_errmsg());
    float a[5], b[5];
    score1(m, t, a);
    score1(l, t, b);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    align_model_free(l);
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_dataset_free(d);
    align_model_free(m);
    align_tokenizer_free(t);
    free(dir);
}
END_TEST

/* ---- hand-made safetensors ------------------------------------------------------------- */

static void write_st(const char *path, const char *header, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    size_t hl = strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, hl, f);
    if (n)
        fwrite(data, 1, n, f);
    fclose(f);
}

/* A 1-layer GPT-2 (V 5, T 3, C 4) as JSON header + data, names with prefix,
 * metadata optional. Returns the data size. */
static size_t tiny_gpt2(char *hdr, size_t cap, float *data, const char *prefix, const char *meta)
{
    struct { const char *n; int d0, d1; } tab[] = {
        {"wte.weight", 5, 4}, {"wpe.weight", 3, 4}, {"h.0.ln_1.weight", 4, 0}, {"h.0.ln_1.bias", 4, 0},
        {"h.0.attn.c_attn.weight", 4, 12}, {"h.0.attn.c_attn.bias", 12, 0}, {"h.0.attn.c_proj.weight", 4, 4},
        {"h.0.attn.c_proj.bias", 4, 0}, {"h.0.ln_2.weight", 4, 0}, {"h.0.ln_2.bias", 4, 0},
        {"h.0.mlp.c_fc.weight", 4, 16}, {"h.0.mlp.c_fc.bias", 16, 0}, {"h.0.mlp.c_proj.weight", 16, 4},
        {"h.0.mlp.c_proj.bias", 4, 0}, {"ln_f.weight", 4, 0}, {"ln_f.bias", 4, 0},
    };
    size_t off = 0, o = (size_t)snprintf(hdr, cap, "{%s", meta ? meta : "");
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        size_t numel = (size_t)tab[i].d0 * (size_t)(tab[i].d1 ? tab[i].d1 : 1);
        char shape[32];
        if (tab[i].d1)
            snprintf(shape, sizeof shape, "[%d,%d]", tab[i].d0, tab[i].d1);
        else
            snprintf(shape, sizeof shape, "[%d]", tab[i].d0);
        o += (size_t)snprintf(hdr + o, cap - o, "%s\"%s%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                              (i || meta) ? "," : "", prefix, tab[i].n, shape, off * 4, (off + numel) * 4);
        for (size_t k = 0; k < numel; k++)
            data[off + k] = 0.01f * (float)((off + k) % 17) - 0.05f + (strstr(tab[i].n, "ln_") && !strstr(tab[i].n, "bias") ? 1.0f : 0.0f);
        off += numel;
    }
    snprintf(hdr + o, cap - o, "}");
    return off * 4;
}

START_TEST(test_hf_config_and_refusals)
{
    char *dir = test_tmpdir("hf");
    char path[4300], cfg[4300], hdr[8192];
    static float data[4096];
    /* no metadata, no config.json: refused (the head count is unknown) */
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    size_t n = tiny_gpt2(hdr, sizeof hdr, data, "", NULL);
    write_st(path, hdr, data, n);
    align_model *m = (align_model *)1;
    ck_assert_int_eq(align_model_load(&m, path, NULL), ALIGN_EFORMAT);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(align_last_errmsg(), "attention heads") && strstr(align_last_errmsg(), "config.json"), "%s",
                  align_last_errmsg());
    /* with a GPT-2 config.json beside it: loads, 2 heads taken from it */
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    FILE *f = fopen(cfg, "w");
    fputs("{\"architectures\": [\"GPT2LMHeadModel\"], \"model_type\": \"gpt2\", \"n_layer\": 1, \"n_head\": 2,"
          " \"n_embd\": 4, \"n_positions\": 3, \"n_ctx\": 3, \"vocab_size\": 5, \"activation_function\": \"gelu_new\","
          " \"layer_norm_epsilon\": 1e-05}\n", f);
    fclose(f);
    ck_assert_int_eq(align_model_load(&m, path, NULL), 0);
    align_model_params c;
    align_model_default_params(&c, sizeof c);
    ck_assert_int_eq(align_model_config(m, &c), 0);
    ck_assert(c.n_head == 2 && c.n_layer == 1 && c.n_embd == 4 && c.vocab_size == 5 && c.max_seq_len == 3);
    ck_assert(!(c.flags & ALIGN_MODEL_SCALAR_HEAD));
    align_model_free(m);
    ck_assert_int_eq(align_model_load(&m, dir, NULL), 0); /* the folder */
    align_model_free(m);
    /* a head asked for on load is freshly initialised (N(0, 0.02), not zeros) */
    align_model_params hp;
    align_model_default_params(&hp, sizeof hp);
    hp.flags = ALIGN_MODEL_SCALAR_HEAD;
    ck_assert_int_eq(align_model_load(&m, dir, &hp), 0);
    {
        int32_t tk[3] = {1, 2, 3}, ln = 3;
        float sc3[3];
        ck_assert_int_eq(align_model_forward(m, tk, &ln, 1, 3, NULL, sc3, NULL), 0);
        ck_assert(sc3[2] != 0.0f && isfinite(sc3[2]));
    }
    align_model_free(m);
    /* an unsupported setting is refused by name */
    f = fopen(cfg, "w");
    fputs("{\"model_type\": \"gpt2\", \"n_layer\": 1, \"n_head\": 2, \"n_embd\": 4, \"vocab_size\": 5,"
          " \"activation_function\": \"relu\"}", f);
    fclose(f);
    ck_assert_int_eq(align_model_load(&m, dir, NULL), ALIGN_EFORMAT);
    ck_assert(strstr(align_last_errmsg(), "relu") != NULL);
    /* config.json disagreeing with the shapes */
    f = fopen(cfg, "w");
    fputs("{\"model_type\": \"gpt2\", \"n_layer\": 1, \"n_head\": 2, \"n_embd\": 8, \"vocab_size\": 5}", f);
    fclose(f);
    ck_assert_int_eq(align_model_load(&m, dir, NULL), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_last_errmsg(), "wte.weight") != NULL, "%s", align_last_errmsg());
    /* the sequence-classification layout by hand: transformer. prefix, score.weight without bias */
    n = tiny_gpt2(hdr, sizeof hdr, data, "transformer.", NULL);
    size_t hl = strlen(hdr);
    snprintf(hdr + hl - 1, sizeof hdr - hl + 1,
             ",\"score.weight\":{\"dtype\":\"F32\",\"shape\":[1,4],\"data_offsets\":[%zu,%zu]}}", n, n + 16);
    float *d2 = data + n / 4;
    d2[0] = 0.5f, d2[1] = -1.0f, d2[2] = 0.25f, d2[3] = 2.0f;
    write_st(path, hdr, data, n + 16);
    f = fopen(cfg, "w");
    fputs("{\"architectures\": [\"GPT2ForSequenceClassification\"], \"n_layer\": 1, \"n_head\": 2, \"n_embd\": 4,"
          " \"n_positions\": 3, \"vocab_size\": 5, \"id2label\": {\"0\": \"LABEL_0\"}}", f);
    fclose(f);
    ck_assert_msg(align_model_load(&m, dir, NULL) == 0, "%s", align_last_errmsg());
    ck_assert_int_eq(align_model_config(m, &c), 0);
    ck_assert(c.flags & ALIGN_MODEL_SCALAR_HEAD);
    ck_assert_int_eq(align_model_num_params(m), (int64_t)(n / 4) + 5); /* + score.bias = 0 */
    int32_t tok[3] = {1, 4, 2}, len = 3;
    float sc[3], lp[2];
    ck_assert_int_eq(align_model_forward(m, tok, &len, 1, 3, lp, sc, NULL), 0);
    ck_assert(isfinite(sc[2]) && isfinite(lp[1]));
    align_model_free(m);
    /* two labels: not a reward model */
    f = fopen(cfg, "w");
    fputs("{\"architectures\": [\"GPT2ForSequenceClassification\"], \"n_layer\": 1, \"n_head\": 2, \"n_embd\": 4,"
          " \"n_positions\": 3, \"vocab_size\": 5, \"num_labels\": 2}", f);
    fclose(f);
    ck_assert_int_eq(align_model_load(&m, dir, NULL), ALIGN_EFORMAT);
    ck_assert(strstr(align_last_errmsg(), "2 labels") != NULL);
    free(dir);
}
END_TEST

/* A tiny file whose metadata claims a 24-layer, 1792-wide model (a
 * billion parameters) is refused before anything that size is allocated. */
START_TEST(test_hostile_file_refused_before_allocation)
{
    char *dir = test_tmpdir("hostile");
    char path[4300];
    snprintf(path, sizeof path, "%s/evil.safetensors", dir);
    const char *hdr =
        "{\"__metadata__\":{\"n_layer\":\"24\",\"n_head\":\"14\",\"n_embd\":\"1792\",\"vocab_size\":\"50257\","
        "\"n_positions\":\"1024\"},\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
        "\"wpe.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]},"
        "\"h.0.ln_1.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[32,40]}}";
    float data[10] = {0};
    write_st(path, hdr, data, sizeof data);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        align_model *m;
        int rc = align_model_load(&m, path, NULL);
        _exit(rc == ALIGN_EFORMAT && strstr(align_last_errmsg(), "wte.weight") ? 0 : 1);
    }
    int status;
    struct rusage ru;
    ck_assert_int_eq(wait4(pid, &status, 0, &ru), pid);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* 1e9 floats would be 4 GB (8 GB with gradients) and tens of seconds */
    ck_assert_msg(ru.ru_maxrss < 400 * 1024, "max RSS %ld kB", ru.ru_maxrss);
    ck_assert_msg(sec < 5.0, "took %.2f s", sec);
    /* the same claim with every tensor present but data ranges past the file */
    align_model *m;
    snprintf(path, sizeof path, "%s/evil2.safetensors", dir);
    const char *hdr2 =
        "{\"__metadata__\":{\"n_layer\":\"1\",\"n_head\":\"14\",\"n_embd\":\"1792\",\"vocab_size\":\"50257\","
        "\"n_positions\":\"1024\"},\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[50257,1792],\"data_offsets\":[0,360321536]}}";
    write_st(path, hdr2, data, sizeof data);
    ck_assert_int_eq(align_model_load(&m, path, NULL), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_last_errmsg(), "outside") != NULL, "%s", align_last_errmsg());
    free(dir);
}
END_TEST

Suite *reward_model_suite(void)
{
    Suite *s = suite_create("reward_model");
    TCase *tc = test_tcase(s, "reward_model", 120);
    tcase_add_test(tc, test_score_model_reads_last_token);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_callback_and_normalization);
    tcase_add_test(tc, test_save_load_score_bitwise);
    tcase_add_test(tc, test_trainer_checkpoint_folder_loads);
    tcase_add_test(tc, test_hf_config_and_refusals);
    tcase_add_test(tc, test_hostile_file_refused_before_allocation);
    return s;
}
