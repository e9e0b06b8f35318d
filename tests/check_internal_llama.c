/* check_internal_llama.c — the Llama architecture: gradients against finite
 * differences (GQA, RoPE, SwiGLU, q/k/v biases, tied and untied heads, the
 * scalar head), KV-cache decoding and align_generate against the full
 * forward, a frozen clone's forward, save / load round trips (fp32 and
 * bf16), and configuration refusals. Fidelity against an independent PyTorch
 * implementation is in bindings/python/tests/test_llama_torch.py. */
#include "model/model_impl.h"
#include "model/safetensors.h"
#include "testutil.h"

#include <math.h>
#include <unistd.h>

static align_model *tiny_llama(uint32_t flags, int V, int T, int kv_heads)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.arch = ALIGN_ARCH_LLAMA;
    p.n_layer = 2;
    p.n_head = 4;
    p.n_kv_head = kv_heads;
    p.n_embd = 16;
    p.intermediate_size = 24;
    p.rope_theta = 500.0f;
    p.norm_eps = 1e-5f;
    p.vocab_size = V;
    p.max_seq_len = T;
    p.flags = flags;
    p.seed = 11;
    align_model *m = NULL;
    ck_assert_msg(align_model_create(&m, &p) == 0, "%s", align_last_errmsg());
    return m;
}

enum { B = 2, T = 7, V = 13 };
static const int32_t toks[B * T] = {1, 4, 2, 9, 3, 7, 12, 5, 0, 8, 2, 10, 6, 6};
static const int32_t lens[B] = {7, 5};
static float wlp[B * (T - 1)], vsc[B * T];

static double loss_of(align_model *m, int scalar)
{
    float lp[B * (T - 1)], sc[B * T];
    ck_assert_int_eq(align_model_forward(m, toks, lens, B, T, lp, scalar ? sc : NULL, NULL), 0);
    double L = 0;
    for (int i = 0; i < B * (T - 1); i++)
        L += (double)wlp[i] * lp[i];
    for (int i = 0; scalar && i < B * T; i++)
        L += (double)vsc[i] * sc[i];
    return L;
}

static void gradcheck(uint32_t flags, int kv_heads)
{
    align_model *m = tiny_llama(flags, V, T, kv_heads);
    int scalar = (flags & ALIGN_MODEL_SCALAR_HEAD) != 0;
    align__rng r;
    align__rng_init(&r, 99 + flags, 0);
    for (size_t i = 0; i < m->n_params; i++) /* larger than the init: every path carries signal */
        m->params[i] += 0.2f * align__rng_normal(&r);
    for (int i = 0; i < B * (T - 1); i++)
        wlp[i] = align__rng_normal(&r);
    for (int i = 0; i < B * T; i++)
        vsc[i] = align__rng_normal(&r);
    ck_assert_int_eq(align_model_zero_grad(m), 0);
    loss_of(m, scalar);
    ck_assert_int_eq(align_model_backward(m, wlp, scalar ? vsc : NULL), 0);
    int checked = 0, bad = 0;
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const align__tensor *t = &m->tensors[ti];
        int samples = t->numel < 5 ? (int)t->numel : 5;
        for (int s = 0; s < samples; s++) {
            size_t j = t->offset + align__rng_below(&r, (uint32_t)t->numel);
            if (strstr(t->name, "embed_tokens")) /* a row of a token in the batch */
                j = t->offset + (size_t)toks[s % (B * T)] * 16 + align__rng_below(&r, 16);
            float old = m->params[j];
            const float h = 1e-2f;
            m->params[j] = old + h;
            double lp = loss_of(m, scalar);
            m->params[j] = old - h;
            double lm = loss_of(m, scalar);
            m->params[j] = old;
            double num = (lp - lm) / (2.0 * h), ana = m->grads[j];
            double err = fabs(num - ana), tol = 2e-3 + 2e-2 * fmax(fabs(num), fabs(ana));
            if (err > tol) {
                bad++;
                fprintf(stderr, "llama gradcheck (flags %#x) %s[%zu]: analytic %.6g numeric %.6g\n",
                        flags, t->name, j - t->offset, ana, num);
            }
            checked++;
        }
    }
    ck_assert_int_gt(checked, 60);
    ck_assert_int_eq(bad, 0);
    ck_assert(align__model_grad_norm(m) > 0.0f);
    align_model_free(m);
}

START_TEST(test_gradcheck_gqa_untied_bias_scalar)
{
    gradcheck(ALIGN_MODEL_SCALAR_HEAD | ALIGN_MODEL_UNTIED_HEAD | ALIGN_MODEL_QKV_BIAS, 2);
}
END_TEST

START_TEST(test_gradcheck_tied_mqa)
{
    gradcheck(0, 1);
}
END_TEST

START_TEST(test_decode_and_generate_match_forward)
{
    enum { TT = 12, VV = 257, NS = 3 };
    align_model *m = tiny_llama(ALIGN_MODEL_UNTIED_HEAD, VV, 16, 2);
    /* larger weights: the logits differ enough between positions to matter */
    align__rng r;
    align__rng_init(&r, 5, 0);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += 0.1f * align__rng_normal(&r);
    int32_t tk[NS * TT];
    for (int i = 0; i < NS * TT; i++)
        tk[i] = (i * 37 + 3) % VV;
    int32_t ln[NS] = {12, 7, 9};
    float *full = calloc((size_t)NS * TT * VV, sizeof(float));
    ck_assert_int_eq(align_model_forward(m, tk, ln, NS, TT, NULL, NULL, full), 0);
    align__kv_cache *c = NULL;
    ck_assert_int_eq(align__kv_create(&c, m, NS, TT), 0);
    int32_t first[NS] = {5, 2, 4};
    float *last = calloc((size_t)NS * VV, sizeof(float));
    ck_assert_int_eq(align__model_decode(m, c, tk, TT, first, last), 0);
    int32_t pos[NS];
    for (int i = 0; i < NS; i++)
        pos[i] = first[i];
    for (;;) {
        for (int i = 0; i < NS; i++)
            if (pos[i] > 0 && align__kv_len(c, i) == pos[i])
                for (int v = 0; v < VV; v++)
                    ck_assert_msg(fabsf(last[i * VV + v] - full[((size_t)i * TT + pos[i] - 1) * VV + v]) < 1e-4f,
                                  "seq %d pos %d", i, pos[i]);
        int32_t step[NS], more = 0, buf[NS * TT];
        for (int i = 0; i < NS; i++) {
            step[i] = pos[i] < ln[i] ? 1 : 0;
            buf[i * TT] = step[i] ? tk[i * TT + pos[i]] : 0;
            more |= step[i];
        }
        if (!more)
            break;
        ck_assert_int_eq(align__model_decode(m, c, buf, TT, step, last), 0);
        for (int i = 0; i < NS; i++)
            pos[i] += step[i];
    }
    int32_t over[NS] = {TT, 0, 0};
    ck_assert_int_eq(align__model_decode(m, c, tk, TT, over, last), ALIGN_ERANGE);
    align__kv_free(c);

    /* align_generate (greedy) on a Llama model: each token is the argmax of
     * the full forward over the sequence so far */
    align_tokenizer *tok = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&tok), ALIGN_OK);
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = 0.0f;
    gp.max_new_tokens = 6;
    int32_t prompt[3] = {72, 105, 33}, plen = 3;
    align_generation *g = NULL;
    ck_assert_msg(align_generate_tokens(m, tok, prompt, &plen, 1, &gp, &g) == ALIGN_OK, "%s",
                  align_model_errmsg(m));
    int32_t n = 0, seq[16] = {72, 105, 33}, len = 3;
    const int32_t *out = align_generation_tokens(g, 0, &n);
    ck_assert_int_gt(n, 0);
    for (int32_t j = 0; j < n; j++) {
        ck_assert_int_eq(align_model_forward(m, seq, &len, 1, len, NULL, NULL, full), 0);
        const float *row = full + (size_t)(len - 1) * VV;
        int32_t best = 0;
        for (int32_t v = 1; v < VV; v++)
            if (row[v] > row[best])
                best = v;
        ck_assert_int_eq(out[j], best);
        seq[len++] = best;
    }
    align_generation_free(g);
    align_tokenizer_free(tok);
    free(full);
    free(last);
    align_model_free(m);
}
END_TEST

START_TEST(test_frozen_clone_and_save_load)
{
    align_model *m = tiny_llama(ALIGN_MODEL_SCALAR_HEAD | ALIGN_MODEL_QKV_BIAS, V, T, 2);
    float lp[B * (T - 1)], sc[B * T], lp2[B * (T - 1)], sc2[B * T];
    ck_assert_int_eq(align_model_forward(m, toks, lens, B, T, lp, sc, NULL), 0);
    align_model *f = NULL;
    ck_assert_int_eq(align_model_clone(&f, m, ALIGN_FROZEN), 0);
    ck_assert_int_eq(align_model_forward(f, toks, lens, B, T, lp2, sc2, NULL), 0);
    ck_assert(!memcmp(lp, lp2, sizeof lp) && !memcmp(sc, sc2, sizeof sc));
    align_model_free(f);

    char dir[] = "/tmp/align_llama_XXXXXX";
    ck_assert(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/m/", dir);
    ck_assert_msg(align_model_save(m, path) == 0, "%s", align_model_errmsg(m));
    align_model *l = NULL;
    ck_assert_msg(align_model_load(&l, path, NULL) == 0, "%s", align_last_errmsg());
    align_model_params a, b;
    align_model_default_params(&a, sizeof a);
    align_model_default_params(&b, sizeof b);
    align_model_config(m, &a);
    align_model_config(l, &b);
    ck_assert(a.arch == b.arch && a.n_kv_head == b.n_kv_head && a.flags == b.flags &&
              a.intermediate_size == b.intermediate_size && a.rope_theta == b.rope_theta &&
              a.norm_eps == b.norm_eps);
    ck_assert_int_eq(align_model_forward(l, toks, lens, B, T, lp2, sc2, NULL), 0);
    ck_assert(!memcmp(lp, lp2, sizeof lp) && !memcmp(sc, sc2, sizeof sc));
    align_model_free(l);

    /* bf16 on disk: weights rounded to bf16, read back as those values */
    snprintf(path, sizeof path, "%s/b/", dir);
    ck_assert_msg(align_model_save_ex(m, path, ALIGN_SAVE_BF16) == 0, "%s", align_model_errmsg(m));
    ck_assert_int_eq(align_model_load(&l, path, NULL), 0);
    for (size_t i = 0; i < m->n_params; i++) {
        float w = m->params[i], got = l->params[i];
        ck_assert_msg(fabsf(w - got) <= fabsf(w) * (1.0f / 256.0f), "param %zu: %g vs %g", i, w, got);
    }
    align_model_free(l);
    align_model_free(m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_config_refusals)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.arch = ALIGN_ARCH_LLAMA;
    p.n_layer = 1;
    p.n_head = 4;
    p.n_embd = 16;
    p.vocab_size = 10;
    p.max_seq_len = 8;
    align_model *m = NULL;
    p.n_kv_head = 3;
    ck_assert_int_eq(align_model_create(&m, &p), ALIGN_EINVAL);
    ck_assert(strstr(align_last_errmsg(), "n_kv_head"));
    p.n_kv_head = 0;
    p.n_embd = 12; /* head size 3: odd */
    ck_assert_int_eq(align_model_create(&m, &p), ALIGN_EINVAL);
    ck_assert(strstr(align_last_errmsg(), "even"));
    p.n_embd = 16;
    p.rope_theta = -1.0f;
    ck_assert_int_eq(align_model_create(&m, &p), ALIGN_EINVAL);
    p.rope_theta = 0.0f;
    ck_assert_int_eq(align_model_create(&m, &p), ALIGN_OK);
    align_model_params got;
    align_model_default_params(&got, sizeof got);
    align_model_config(m, &got);
    ck_assert_int_eq(got.n_kv_head, 4); /* defaults resolved */
    ck_assert_int_eq(got.intermediate_size, 64);
    ck_assert(got.rope_theta == 10000.0f && got.norm_eps == 1e-6f);
    align_model_free(m);
    p.arch = ALIGN_ARCH_GPT2;
    p.flags = ALIGN_MODEL_UNTIED_HEAD;
    ck_assert_int_eq(align_model_create(&m, &p), ALIGN_EINVAL);
    p.arch = 7;
    p.flags = 0;
    ck_assert_int_eq(align_model_create(&m, &p), ALIGN_EINVAL);
}
END_TEST

/* Training works end to end: a tiny Llama learns a sequence the test makes
 * (a repeating 5-token cycle) with AdamW, from chance to near certainty. */
START_TEST(test_learns_a_cycle)
{
    enum { TT = 16, VV = 13 };
    align_model *m = tiny_llama(0, VV, TT, 2);
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.learning_rate = 1e-2f;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), 0);
    int32_t tk[2 * TT], ln[2] = {TT, TT};
    for (int i = 0; i < TT; i++) {
        tk[i] = 2 + i % 5;
        tk[TT + i] = 2 + (i + 3) % 5;
    }
    float lp[2 * (TT - 1)], d[2 * (TT - 1)];
    double first = 0, last = 0;
    for (int step = 0; step < 60; step++) {
        ck_assert_int_eq(align_model_forward(m, tk, ln, 2, TT, lp, NULL, NULL), 0);
        double mean = 0;
        for (int i = 0; i < 2 * (TT - 1); i++) {
            mean += lp[i] / (2.0 * (TT - 1));
            d[i] = -1.0f / (2.0f * (TT - 1)); /* d(-mean logprob) */
        }
        if (step == 0)
            first = mean;
        last = mean;
        ck_assert_int_eq(align_model_backward(m, d, NULL), 0);
        ck_assert_int_eq(align_optimizer_step(o, NULL), 0);
    }
    ck_assert_msg(first < -2.0 && last > -0.1, "mean logprob %g -> %g", first, last);
    align_optimizer_free(o);
    align_model_free(m);
}
END_TEST

/* A Hugging Face folder without libalign metadata: config.json decides. */
static int load_with_config(const char *dir, const char *cfg_json)
{
    char p[300];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    ck_assert(f != NULL);
    fputs(cfg_json, f);
    fclose(f);
    align_model *m = NULL;
    int rc = align_model_load(&m, dir, NULL);
    align_model_free(m);
    return rc;
}

START_TEST(test_hf_config_honoured_and_refused)
{
    align_model *m = tiny_llama(0, V, T, 2); /* tied, no biases */
    char dir[] = "/tmp/align_llama_cfg_XXXXXX";
    ck_assert(mkdtemp(dir) != NULL);
    align__st_tensor *t = calloc((size_t)m->n_tensors, sizeof *t);
    for (int i = 0; i < m->n_tensors; i++)
        t[i] = (align__st_tensor){m->tensors[i].name, m->params + m->tensors[i].offset, m->tensors[i].ndim,
                                  {m->tensors[i].shape[0], m->tensors[i].shape[1]}};
    char p[300];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ck_assert_int_eq(align__st_write(NULL, p, t, m->n_tensors, NULL, 0), 0);
    free(t);
#define BASE "\"hidden_size\": 16, \"intermediate_size\": 24, \"num_hidden_layers\": 2, " \
             "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 13, " \
             "\"max_position_embeddings\": 7, \"rope_theta\": 500.0, \"rms_norm_eps\": 1e-5"
    /* honoured: Llama and Mistral (no sliding window) configurations load */
    ck_assert_msg(load_with_config(dir, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", "
                                        "\"tie_word_embeddings\": true, " BASE "}") == 0, "%s", align_last_errmsg());
    ck_assert_int_eq(load_with_config(dir, "{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": \"mistral\", "
                                           "\"sliding_window\": null, \"tie_word_embeddings\": true, " BASE "}"), 0);
    /* refused, each with its reason */
    static const struct { const char *cfg, *why; } bad[] = {
        {"{\"architectures\": [\"PhiForCausalLM\"], " BASE "}", "PhiForCausalLM is not supported"},
        {"{\"model_type\": \"phi3\", " BASE "}", "phi3"},
        {"{\"model_type\": \"llama\", \"tie_word_embeddings\": true, \"rope_scaling\": {\"type\": \"llama3\"}, " BASE "}", "rope_scaling"},
        {"{\"model_type\": \"mistral\", \"tie_word_embeddings\": true, \"sliding_window\": 4, " BASE "}", "sliding_window"},
        {"{\"model_type\": \"llama\", \"tie_word_embeddings\": true, \"hidden_act\": \"gelu\", " BASE "}", "hidden_act"},
        {"{\"model_type\": \"llama\", \"tie_word_embeddings\": true, \"attention_bias\": true, " BASE "}", "attention_bias"},
        {"{\"model_type\": \"llama\", " BASE "}", "lm_head.weight"}, /* untied by default: no head in the file */
        {"{\"model_type\": \"qwen2\", \"tie_word_embeddings\": true, " BASE "}", "q_proj.bias"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(load_with_config(dir, bad[i].cfg), ALIGN_EFORMAT);
        ck_assert_msg(strstr(align_last_errmsg(), bad[i].why), "case %zu: %s", i, align_last_errmsg());
    }
#undef BASE
    align_model_free(m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *internal_llama_suite(void)
{
    Suite *s = suite_create("internal_llama");
    TCase *tc = test_tcase(s, "llama", 120);
    tcase_add_test(tc, test_gradcheck_gqa_untied_bias_scalar);
    tcase_add_test(tc, test_gradcheck_tied_mqa);
    tcase_add_test(tc, test_decode_and_generate_match_forward);
    tcase_add_test(tc, test_frozen_clone_and_save_load);
    tcase_add_test(tc, test_config_refusals);
    tcase_add_test(tc, test_hf_config_honoured_and_refused);
    tcase_add_test(tc, test_learns_a_cycle);
    return s;
}
