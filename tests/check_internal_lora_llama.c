/* check_internal_lora_llama.c — LoRA adapters on the Llama architecture
 * (grouped-query attention, untied head, scalar head): a fresh adapter
 * changes nothing, adapter gradients against finite differences, the base
 * frozen and shared with the "adapters off" reference, merge, decoding, the
 * PEFT folder and checkpoint round trips (Llama's module names, fan_in_fan_out
 * false), forwards of a frozen clone from several threads, and a
 * DPO run with LoRA that learns a task the test makes and resumes bitwise. */
#include "testutil.h"
#include "lora_testutil.h"

#include "align.h"
#include "model/model.h"
#include "model/model_impl.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define V_ 257

static align_model *mk_llama(int32_t layers, uint32_t flags, uint64_t seed)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.arch = ALIGN_ARCH_LLAMA;
    mp.n_layer = layers;
    mp.n_head = 4;
    mp.n_kv_head = 2; /* grouped-query: k_proj / v_proj are 16 wide */
    mp.n_embd = 32;
    mp.intermediate_size = 48;
    mp.vocab_size = V_;
    mp.max_seq_len = 48;
    mp.flags = flags;
    mp.seed = seed;
    mp.n_threads = 1;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    return m;
}

static void attach(align_model *m, const char *targets, int32_t r, float alpha)
{
    align_lora_params lp;
    ALIGN_LORA_DEFAULT_PARAMS(&lp);
    lp.r = r;
    lp.alpha = alpha;
    lp.targets = targets;
    lp.seed = 5;
    lp.base_model_name_or_path = "llama-tiny";
    ck_assert_int_eq(align_model_lora_attach(m, &lp), ALIGN_OK);
}

#define NLP (NSEQ * (TLEN - 1))

static double weighted(const float *lp)
{
    double s = 0;
    for (int i = 0; i < NLP; i++)
        s += (0.3 + 0.1 * (i % 7)) * lp[i];
    return s;
}

START_TEST(test_llama_fresh_adapter_changes_nothing)
{
    align_model *m = mk_llama(2, ALIGN_MODEL_UNTIED_HEAD | ALIGN_MODEL_QKV_BIAS, 1);
    float a[NLP], b[NLP];
    fwd(m, a);
    int64_t base = align_model_num_params(m);
    attach(m, "all-linear", 4, 8.0f);
    ck_assert_int_eq(align_model_num_params(m), base);
    /* per layer, r (in + out): q 32+32, k 32+16, v 32+16, o 32+32, gate 32+48, up 32+48, down 48+32 */
    ck_assert_int_eq(align_model_lora_num_params(m), 2 * 4 * (64 + 48 + 48 + 64 + 80 + 80 + 80));
    fwd(m, b);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    align__train_view v;
    align__model_train_view(m, &v);
    ck_assert_int_eq(v.n_tensors, 2 * 2 * 7);
    ck_assert_str_eq(v.tensors[0].name, "model.layers.0.self_attn.q_proj.lora_A.weight");
    ck_assert_str_eq(v.tensors[3].name, "model.layers.0.self_attn.k_proj.lora_B.weight");
    ck_assert_int_eq(v.tensors[3].shape[0], 16); /* KV width under GQA */
    ck_assert_int_eq(v.tensors[3].shape[1], 4);
    ck_assert_str_eq(v.tensors[13].name, "model.layers.0.mlp.down_proj.lora_B.weight");
    ck_assert_int_eq(v.tensors[12].shape[1], 48);
    for (size_t i = 0; i < v.tensors[1].numel; i++)
        ck_assert(v.params[v.tensors[1].offset + i] == 0.0f);
    ck_assert_ptr_eq(m->grads, NULL); /* the base holds no gradient */
    /* a backward runs without base gradients (the base's dW is skipped) */
    float d[NLP];
    for (int i = 0; i < NLP; i++)
        d[i] = 1.0f;
    ck_assert_int_eq(align_model_zero_grad(m), ALIGN_OK);
    ck_assert_int_eq(align_model_backward(m, d, NULL), ALIGN_OK);
    ck_assert(align__model_grad_norm(m) > 0.0f); /* B gets a gradient through A's output */
    align_model_free(m);
}
END_TEST

START_TEST(test_llama_targets)
{
    align_model *m = mk_llama(1, 0, 1);
    align_lora_params lp;
    ALIGN_LORA_DEFAULT_PARAMS(&lp);
    const char *bad[] = {"c_attn", "c_fc", "lm_head", "nope", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp.targets = bad[i];
        ck_assert_int_eq(align_model_lora_attach(m, &lp), ALIGN_EINVAL);
    }
    lp.targets = "c_attn";
    align_model_lora_attach(m, &lp);
    ck_assert_ptr_ne(strstr(align_model_errmsg(m), "q_proj"), NULL);
    ck_assert_ptr_eq(m->lora, NULL);
    ck_assert_ptr_ne(m->grads, NULL);
    /* aliases and PEFT names select the same sites */
    lp.targets = "q, v,gate_proj,mlp.down_proj";
    ck_assert_int_eq(align_model_lora_attach(m, &lp), ALIGN_OK);
    align__train_view v;
    align__model_train_view(m, &v);
    ck_assert_int_eq(v.n_tensors, 8);
    ck_assert_str_eq(v.tensors[2].name, "model.layers.0.self_attn.v_proj.lora_A.weight");
    ck_assert_str_eq(v.tensors[4].name, "model.layers.0.mlp.gate_proj.lora_A.weight");
    ck_assert_str_eq(v.tensors[6].name, "model.layers.0.mlp.down_proj.lora_A.weight");
    align_model_free(m);
}
END_TEST

START_TEST(test_llama_gradcheck)
{
    align_model *m = mk_llama(2, ALIGN_MODEL_UNTIED_HEAD, 2);
    attach(m, "q,v,gate", 3, 6.0f);
    randomize_adapters(m, 9, 0.6f);
    float lp[NLP], d[NLP];
    fwd(m, lp);
    for (int i = 0; i < NLP; i++)
        d[i] = (float)(0.3 + 0.1 * (i % 7));
    ck_assert_int_eq(align_model_zero_grad(m), ALIGN_OK);
    ck_assert_int_eq(align_model_backward(m, d, NULL), ALIGN_OK);
    align__train_view v;
    align__model_train_view(m, &v);
    ck_assert_int_eq(v.n_tensors, 2 * 3 * 2);
    int checked = 0;
    double worst = 0;
    for (int ti = 0; ti < v.n_tensors; ti++) {
        const align__tensor *t = &v.tensors[ti];
        for (int k = 0; k < 3; k++) {
            size_t j = t->offset + (size_t)((k * 7919 + ti * 31) % (int)t->numel);
            /* central differences at h and h/2, Richardson-extrapolated */
            float keep = v.params[j], h = 4e-2f; /* wide: fp32 forward noise / h dominates the error */
            double dd[2];
            for (int q = 0; q < 2; q++) {
                float hq = q ? h / 2 : h;
                v.params[j] = keep + hq;
                fwd(m, lp);
                double up = weighted(lp);
                v.params[j] = keep - hq;
                fwd(m, lp);
                double dn = weighted(lp);
                dd[q] = (up - dn) / (double)((keep + hq) - (keep - hq));
            }
            v.params[j] = keep;
            double fd = (4.0 * dd[1] - dd[0]) / 3.0, an = v.grads[j];
            double err = fabs(fd - an) / (fabs(fd) + fabs(an) + 1e-2);
            worst = fmax(worst, err);
            if (getenv("LORA_GC_VERBOSE"))
                fprintf(stderr, "%s[%zu] %g %g %.2e\n", t->name, j - t->offset, an, fd, err);
            ck_assert_msg(err < 0.015, "%s[%zu]: analytic %g, finite difference %g", t->name, j - t->offset, an, fd);
            checked++;
        }
    }
    fprintf(stderr, "llama lora gradcheck (q, v, gate): %d entries, worst relative error %.2e\n", checked, worst);
    align_model_free(m);
}
END_TEST

/* The optimizer steps the adapters alone; the "adapters off" clone shares
 * the base; merge equals the adapted forward; decoding applies the adapters. */
START_TEST(test_llama_reference_merge_decode)
{
    align_model *m = mk_llama(2, ALIGN_MODEL_UNTIED_HEAD, 3);
    attach(m, "all-linear", 4, 8.0f);
    align_model *ref = NULL;
    ck_assert_int_eq(align_model_clone(&ref, m, ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS), ALIGN_OK);
    ck_assert_ptr_eq(ref->wts, m->wts);
    ck_assert_ptr_eq(ref->lora, NULL);
    size_t nb = m->n_params;
    float *base0 = malloc(nb * sizeof(float));
    memcpy(base0, m->params, nb * sizeof(float));
    float lp[NLP], lr[NLP], d[NLP];
    for (int i = 0; i < NLP; i++)
        d[i] = 1.0f;
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-2f;
    op.weight_decay = 0.1f;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), ALIGN_OK);
    for (int s = 0; s < 3; s++) {
        fwd(m, lp);
        ck_assert_int_eq(align_model_backward(m, d, NULL), ALIGN_OK);
        ck_assert_int_eq(align_optimizer_step(o, NULL), ALIGN_OK);
    }
    align_optimizer_free(o);
    ck_assert_int_eq(memcmp(base0, m->params, nb * sizeof(float)), 0);
    fwd(m, lp);
    fwd(ref, lr);
    ck_assert(memcmp(lp, lr, sizeof lp) != 0);
    ck_assert_int_eq(align_model_lora_enable(m, 0), ALIGN_OK);
    fwd(m, lp);
    ck_assert_int_eq(memcmp(lp, lr, sizeof lp), 0);
    ck_assert_int_eq(align_model_lora_enable(m, 1), ALIGN_OK);
    /* decoding with the KV cache, token by token after a prefix */
    float logits[TLEN * V_], last[V_];
    int32_t one = TLEN;
    ck_assert_int_eq(align_model_forward(m, toks, &one, 1, TLEN, NULL, NULL, logits), ALIGN_OK);
    align__kv_cache *kv = NULL;
    ck_assert_int_eq(align__kv_create(&kv, m, 1, TLEN), ALIGN_OK);
    int32_t n = TLEN - 1;
    ck_assert_int_eq(align__model_decode(m, kv, toks, TLEN, &n, last), ALIGN_OK);
    n = 1;
    ck_assert_int_eq(align__model_decode(m, kv, toks + TLEN - 1, 1, &n, last), ALIGN_OK);
    for (int i = 0; i < V_; i++)
        ck_assert_msg(fabsf(last[i] - logits[(TLEN - 1) * V_ + i]) < 1e-4f, "logit %d: %g vs %g", i, last[i],
                      logits[(TLEN - 1) * V_ + i]);
    align__kv_free(kv);
    /* merge: the outputs stay (up to rounding), the shared base does not move */
    float before[NLP];
    fwd(m, before);
    ck_assert_int_eq(align_model_lora_merge(m), ALIGN_OK);
    ck_assert_ptr_eq(m->lora, NULL);
    ck_assert_ptr_ne(m->wts, ref->wts);
    ck_assert_ptr_ne(m->grads, NULL);
    ck_assert_int_eq(memcmp(base0, ref->params, nb * sizeof(float)), 0);
    fwd(m, lp);
    double worst = 0;
    for (int i = 0; i < NLP; i++) {
        worst = fmax(worst, fabs(lp[i] - before[i]));
        ck_assert_msg(fabsf(lp[i] - before[i]) < 1e-4f, "merged %g vs adapters %g", lp[i], before[i]);
    }
    fprintf(stderr, "llama lora merge: max |logprob difference| %.2e\n", worst);
    /* a plain model again: the base trains */
    ck_assert_int_eq(align_model_zero_grad(m), ALIGN_OK);
    ck_assert_int_eq(align_model_backward(m, d, NULL), ALIGN_OK);
    ck_assert(align__model_grad_norm(m) > 0.0f);
    fwd(ref, lp);
    ck_assert_int_eq(memcmp(lp, lr, sizeof lp), 0);
    free(base0);
    align_model_free(m);
    align_model_free(ref);
}
END_TEST

static json_t *read_json(const char *dir, const char *name)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    json_error_t e;
    json_t *j = json_load_file(p, 0, &e);
    ck_assert_msg(j != NULL, "%s: %s", p, e.text);
    return j;
}

START_TEST(test_llama_peft_roundtrip)
{
    align_model *m = mk_llama(2, 0, 6);
    align_model *fresh = NULL;
    ck_assert_int_eq(align_model_clone(&fresh, m, 0), ALIGN_OK);
    attach(m, "q_proj,v_proj,down", 4, 16.0f);
    randomize_adapters(m, 11, 0.4f);
    char *dir = test_tmpdir("lora-llama-peft");
    char ad[4200];
    snprintf(ad, sizeof ad, "%s/adapter", dir);
    ck_assert_int_eq(align_model_lora_save(m, ad), ALIGN_OK);
    json_t *j = read_json(ad, "adapter_config.json");
    ck_assert(json_is_false(json_object_get(j, "fan_in_fan_out")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "task_type")), "CAUSAL_LM");
    json_t *tm = json_object_get(j, "target_modules");
    ck_assert_int_eq(json_array_size(tm), 3);
    ck_assert_str_eq(json_string_value(json_array_get(tm, 0)), "q_proj");
    ck_assert_str_eq(json_string_value(json_array_get(tm, 1)), "v_proj");
    ck_assert_str_eq(json_string_value(json_array_get(tm, 2)), "down_proj");
    json_decref(j);
    /* the tensors under PEFT's names for LlamaForCausalLM */
    char st[4300];
    snprintf(st, sizeof st, "%s/adapter_model.safetensors", ad);
    FILE *f = fopen(st, "rb");
    ck_assert_ptr_ne(f, NULL);
    uint64_t hl = 0;
    ck_assert_int_eq(fread(&hl, 8, 1, f), 1);
    char *hdr = calloc(1, (size_t)hl + 1);
    ck_assert_int_eq(fread(hdr, 1, (size_t)hl, f), (size_t)hl);
    fclose(f);
    json_t *h = json_loads(hdr, 0, NULL);
    ck_assert_ptr_ne(h, NULL);
    json_t *qa = json_object_get(h, "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
    json_t *vb = json_object_get(h, "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight");
    json_t *da = json_object_get(h, "base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
    ck_assert(qa && vb && da);
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(qa, "shape"), 0)), 4);  /* [r][in] */
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(qa, "shape"), 1)), 32);
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(vb, "shape"), 0)), 16); /* [out][r] */
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(da, "shape"), 1)), 48);
    ck_assert_int_eq(json_object_size(h) - (json_object_get(h, "__metadata__") ? 1 : 0), 2 * 2 * 3);
    json_decref(h);
    free(hdr);
    /* loads into the base alone (trainable and frozen), bitwise the same outputs */
    ck_assert_int_eq(align_model_lora_load(fresh, ad), ALIGN_OK);
    float a[NLP], b[NLP];
    fwd(m, a);
    fwd(fresh, b);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    ck_assert_ptr_eq(fresh->grads, NULL);
    align_model *fz = NULL;
    ck_assert_int_eq(align_model_clone(&fz, m, ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS), ALIGN_OK);
    ck_assert_int_eq(align_model_lora_load(fz, ad), ALIGN_OK);
    fwd(fz, b);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    align_model_free(fz);
    /* a GPT-2 adapter folder does not load into Llama */
    j = read_json(ad, "adapter_config.json");
    json_object_set_new(j, "target_modules", json_string("c_attn"));
    char *txt = json_dumps(j, 0);
    char cp[4300];
    snprintf(cp, sizeof cp, "%s/adapter_config.json", ad);
    f = fopen(cp, "w");
    fputs(txt, f);
    fclose(f);
    free(txt);
    json_decref(j);
    align_model *base = NULL;
    ck_assert_int_eq(align_model_clone(&base, m, ALIGN_CLONE_NO_ADAPTERS), ALIGN_OK);
    ck_assert_int_eq(align_model_lora_load(base, ad), ALIGN_EFORMAT);
    ck_assert_ptr_eq(base->lora, NULL);
    align_model_free(base);
    free(dir);
    align_model_free(fresh);
    align_model_free(m);
}
END_TEST

/* A Llama reward model: the adapters and a copy of score.weight train, the
 * base head stays. */
START_TEST(test_llama_scalar_head_copy)
{
    align_model *m = mk_llama(1, ALIGN_MODEL_SCALAR_HEAD, 4);
    attach(m, "q,v", 2, 4.0f);
    ck_assert_int_eq(align_model_lora_num_params(m), 2 * (32 + 32) + 2 * (32 + 16) + 32);
    const float *bh = m->params + align__model_find_tensor(m, "score.weight")->offset;
    float base_head[32];
    memcpy(base_head, bh, sizeof base_head);
    float sc[NSEQ * TLEN], d[NSEQ * TLEN], sc2[NSEQ * TLEN];
    for (int i = 0; i < NSEQ * TLEN; i++)
        d[i] = 0.1f * (float)(i % 5) - 0.2f;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, NULL), ALIGN_OK);
    for (int s = 0; s < 2; s++) {
        ck_assert_int_eq(align_model_forward(m, toks, lens, NSEQ, TLEN, NULL, sc, NULL), ALIGN_OK);
        ck_assert_int_eq(align_model_backward(m, NULL, d), ALIGN_OK);
        ck_assert_int_eq(align_optimizer_step(o, NULL), ALIGN_OK);
    }
    align_optimizer_free(o);
    ck_assert_int_eq(memcmp(base_head, bh, sizeof base_head), 0);
    ck_assert(memcmp(base_head, m->w.scorew, sizeof base_head) != 0); /* the copy trained */
    ck_assert_int_eq(align_model_forward(m, toks, lens, NSEQ, TLEN, NULL, sc, NULL), ALIGN_OK);
    char *dir = test_tmpdir("lora-llama-head");
    char ad[4200];
    snprintf(ad, sizeof ad, "%s/ad", dir);
    ck_assert_int_eq(align_model_lora_save(m, ad), ALIGN_OK);
    json_t *j = read_json(ad, "adapter_config.json");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(j, "modules_to_save"), 0)), "score");
    ck_assert_str_eq(json_string_value(json_object_get(j, "task_type")), "SEQ_CLS");
    json_decref(j);
    align_model *b = NULL;
    ck_assert_int_eq(align_model_clone(&b, m, ALIGN_CLONE_NO_ADAPTERS), ALIGN_OK);
    ck_assert_int_eq(align_model_lora_load(b, ad), ALIGN_OK);
    ck_assert_int_eq(align_model_forward(b, toks, lens, NSEQ, TLEN, NULL, sc2, NULL), ALIGN_OK);
    ck_assert_int_eq(memcmp(sc, sc2, sizeof sc), 0);
    ck_assert_int_eq(align_model_lora_merge(b), ALIGN_OK);
    ck_assert_int_eq(align_model_forward(b, toks, lens, NSEQ, TLEN, NULL, sc2, NULL), ALIGN_OK);
    for (int i = 0; i < NSEQ * TLEN; i++)
        ck_assert(fabsf(sc[i] - sc2[i]) < 1e-4f);
    align_model_free(b);
    free(dir);
    align_model_free(m);
}
END_TEST

/* align_model_save / load keep the adapters (a LoRA trainer's checkpoint). */
START_TEST(test_llama_checkpoint_keeps_adapters)
{
    align_model *m = mk_llama(2, ALIGN_MODEL_UNTIED_HEAD | ALIGN_MODEL_SCALAR_HEAD, 7);
    attach(m, "k,o,up", 2, 4.0f);
    randomize_adapters(m, 13, 0.5f);
    ck_assert_int_eq(align_model_lora_enable(m, 1), ALIGN_OK);
    char *dir = test_tmpdir("lora-llama-ckpt");
    char p[4200];
    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    ck_assert_int_eq(align_model_save(m, p), ALIGN_OK);
    align_model *b = NULL;
    ck_assert_int_eq(align_model_load(&b, p, NULL), ALIGN_OK);
    ck_assert_ptr_ne(b->lora, NULL);
    ck_assert_int_eq(align_model_lora_num_params(b), align_model_lora_num_params(m));
    float a1[NLP], b1[NLP], s1[NSEQ * TLEN], s2[NSEQ * TLEN];
    fwd(m, a1);
    fwd(b, b1);
    ck_assert_int_eq(memcmp(a1, b1, sizeof a1), 0);
    ck_assert_int_eq(align_model_forward(m, toks, lens, NSEQ, TLEN, NULL, s1, NULL), ALIGN_OK);
    ck_assert_int_eq(align_model_forward(b, toks, lens, NSEQ, TLEN, NULL, s2, NULL), ALIGN_OK);
    ck_assert_int_eq(memcmp(s1, s2, sizeof s1), 0);
    ck_assert_int_eq(memcmp(m->params, b->params, m->n_params * sizeof(float)), 0);
    align_model_free(b);
    free(dir);
    align_model_free(m);
}
END_TEST

/* A frozen Llama with adapters serves forwards from several threads at once
 * (adapter scratch per call), each equal to the single-threaded result and
 * to the trainable model's. */
typedef struct {
    align_model *m;
    float lp[NLP];
    int rc;
} fwd_job;

static void *fwd_thread(void *p)
{
    fwd_job *j = p;
    for (int k = 0; k < 5 && !j->rc; k++)
        j->rc = align_model_forward(j->m, toks, lens, NSEQ, TLEN, j->lp, NULL, NULL);
    return NULL;
}

START_TEST(test_llama_frozen_threads)
{
    align_model *m = mk_llama(2, 0, 8);
    attach(m, "all-linear", 4, 8.0f);
    randomize_adapters(m, 4, 0.5f);
    align_model *fz = NULL;
    ck_assert_int_eq(align_model_clone(&fz, m, ALIGN_FROZEN), ALIGN_OK);
    ck_assert_ptr_eq(fz->wts, m->wts);
    float want[NLP], mine[NLP];
    fwd(fz, want);
    fwd(m, mine);
    ck_assert_int_eq(memcmp(mine, want, sizeof want), 0);
    fwd_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].m = fz;
        jobs[i].rc = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, fwd_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(jobs[i].rc, ALIGN_OK);
        ck_assert_int_eq(memcmp(jobs[i].lp, want, sizeof want), 0);
    }
    align_model_free(m); /* the clone keeps the shared base alive */
    fwd(fz, mine);
    ck_assert_int_eq(memcmp(mine, want, sizeof want), 0);
    align_model_free(fz);
}
END_TEST

/* DPO with LoRA on Llama: prompts "v:xyz " prefer a vowel answer, "c:xyz "
 * a consonant one; the held-out preference accuracy rises and the base and
 * the shared reference stay bitwise. */
static double accuracy(align_model *m, const align_tokenizer *t, uint32_t seed, int n, double *margin)
{
    uint32_t rs = seed;
    int ok = 0;
    double mg = 0;
    for (int i = 0; i < n; i++) {
        char p[16], c[8], r[8];
        pref_example(&rs, p, c, r);
        double dlt = seq_logp(m, t, p, c) - seq_logp(m, t, p, r);
        ok += dlt > 0;
        mg += dlt / n;
    }
    *margin = mg;
    return (double)ok / n;
}


static void run_open(run *r, align_dataset *d, align_tokenizer *t, int max_steps)
{
    r->m = mk_llama(2, 0, 11);
    attach(r->m, "all-linear", 8, 16.0f);
    ck_assert_int_eq(align_model_clone(&r->ref, r->m, ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS), ALIGN_OK);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 3e-3f;
    ck_assert_int_eq(align_optimizer_create(&r->o, r->m, &op), ALIGN_OK);
    align_dpo_params dp;
    ALIGN_DPO_DEFAULT_PARAMS(&dp);
    dp.micro_batch = 8;
    dp.max_steps = max_steps;
    ck_assert_int_eq(align_trainer_create_dpo(&r->tr, r->m, r->ref, t, d, r->o, &dp), ALIGN_OK);
}

START_TEST(test_llama_dpo_lora_learns_and_resumes)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    uint32_t rs = 1;
    for (int i = 0; i < 64; i++) {
        char p[16], c[8], r[8];
        pref_example(&rs, p, c, r);
        ck_assert_int_eq(align_dataset_add_preference(d, p, c, r, NULL), ALIGN_OK);
    }
    const int total = 30, at = 11;
    run a, b, c;
    run_open(&a, d, t, total);
    size_t nb = a.m->n_params;
    float *base0 = malloc(nb * sizeof(float));
    memcpy(base0, a.m->params, nb * sizeof(float));
    double mg0, mg1;
    double acc0 = accuracy(a.m, t, 777, 100, &mg0);
    ck_assert_int_eq(run_steps(&a, 1000), total);
    double acc1 = accuracy(a.m, t, 777, 100, &mg1);
    fprintf(stderr, "llama dpo + lora (r 8, all-linear): held-out accuracy %.2f -> %.2f, margin %.3f -> %.3f "
            "after %d steps\n", acc0, acc1, mg0, mg1, total);
    ck_assert(acc0 > 0.2 && acc0 < 0.8);
    ck_assert(acc1 >= 0.85);
    ck_assert(mg1 > mg0 + 1.0);
    ck_assert_int_eq(memcmp(base0, a.m->params, nb * sizeof(float)), 0);
    ck_assert_ptr_eq(a.ref->wts, a.m->wts);
    /* save after `at` steps, resume in a new run: the same adapters, bitwise */
    run_open(&b, d, t, total);
    ck_assert_int_eq(run_steps(&b, at), at);
    char *dir = test_tmpdir("lora-llama-resume");
    char ck[4200];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    ck_assert_int_eq(align_trainer_save(b.tr, ck), ALIGN_OK);
    run_close(&b);
    run_open(&c, d, t, total);
    ck_assert_int_eq(align_trainer_resume(c.tr, ck), ALIGN_OK);
    ck_assert_ptr_eq(c.ref->wts, c.m->wts);
    ck_assert_int_eq(run_steps(&c, 1000), total - at);
    align__train_view va, vc;
    align__model_train_view(a.m, &va);
    align__model_train_view(c.m, &vc);
    ck_assert_int_eq(va.n, vc.n);
    ck_assert_int_eq(memcmp(va.params, vc.params, va.n * sizeof(float)), 0);
    run_close(&c);
    run_close(&a);
    free(base0);
    free(dir);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

Suite *internal_lora_llama_suite(void)
{
    Suite *s = suite_create("internal_lora_llama");
    TCase *tc = test_tcase(s, "lora_llama", 120);
    tcase_add_test(tc, test_llama_fresh_adapter_changes_nothing);
    tcase_add_test(tc, test_llama_targets);
    tcase_add_test(tc, test_llama_gradcheck);
    tcase_add_test(tc, test_llama_reference_merge_decode);
    tcase_add_test(tc, test_llama_peft_roundtrip);
    tcase_add_test(tc, test_llama_scalar_head_copy);
    tcase_add_test(tc, test_llama_checkpoint_keeps_adapters);
    tcase_add_test(tc, test_llama_frozen_threads);
    tcase_add_test(tc, test_llama_dpo_lora_learns_and_resumes);
    return s;
}
