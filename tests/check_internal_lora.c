/* check_internal_lora.c — LoRA adapters: a fresh adapter changes nothing,
 * adapter gradients against finite differences, the base frozen (no base
 * gradient, optimizer over the adapters only), the "adapters off" reference
 * sharing the base weights, merge, decoding with adapters, the PEFT folder
 * and the model checkpoint round trips, bad adapter folders, and DPO
 * training with LoRA (learns, resumes bitwise). */
#include "testutil.h"
#include "lora_testutil.h"

#include "align.h"
#include "model/model.h"
#include "model/model_impl.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>

static align_model *mk_model(int32_t layers, int32_t embd, uint64_t seed)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = layers;
    mp.n_head = 2;
    mp.n_embd = embd;
    mp.vocab_size = 257;
    mp.max_seq_len = 48;
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
    lp.base_model_name_or_path = "gpt2-tiny";
    ck_assert_int_eq(align_model_lora_attach(m, &lp), ALIGN_OK);
}

/* Gives B (zero after attach) random values so adapters matter. */

static double weighted(const float *lp)
{
    double s = 0;
    for (int i = 0; i < NSEQ * (TLEN - 1); i++)
        s += (0.3 + 0.1 * (i % 7)) * lp[i];
    return s;
}

START_TEST(test_fresh_adapter_changes_nothing)
{
    align_model *m = mk_model(2, 32, 1);
    float a[NSEQ * (TLEN - 1)], b[NSEQ * (TLEN - 1)];
    fwd(m, a);
    int64_t base = align_model_num_params(m);
    attach(m, "all-linear", 4, 8.0f);
    ck_assert_int_eq(align_model_num_params(m), base);
    /* 2 layers x (4*(32+96) + 4*(32+32) + 4*(32+128) + 4*(128+32)) */
    ck_assert_int_eq(align_model_lora_num_params(m), 2 * 4 * (128 + 64 + 160 + 160));
    fwd(m, b);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    /* A is Kaiming-uniform, bound 1/sqrt(in) (PEFT); B is zero */
    align__train_view v;
    align__model_train_view(m, &v);
    const align__tensor *A = &v.tensors[0], *B = &v.tensors[1];
    ck_assert_str_eq(A->name, "transformer.h.0.attn.c_attn.lora_A.weight");
    ck_assert_int_eq(A->shape[0], 4);
    ck_assert_int_eq(A->shape[1], 32);
    ck_assert_int_eq(B->shape[0], 96);
    ck_assert_int_eq(B->shape[1], 4);
    float mx = 0;
    for (size_t i = 0; i < A->numel; i++)
        mx = fmaxf(mx, fabsf(v.params[A->offset + i]));
    ck_assert(mx > 0.1f && mx <= 1.0f / sqrtf(32.0f));
    for (size_t i = 0; i < B->numel; i++)
        ck_assert(v.params[B->offset + i] == 0.0f);
    /* the base holds no gradient now */
    ck_assert_ptr_eq(m->grads, NULL);
    ck_assert_int_eq(align_model_lora_attach(m, NULL), ALIGN_EMISUSE);
    align_model_free(m);
}
END_TEST

START_TEST(test_bad_params)
{
    align_model *m = mk_model(1, 16, 1);
    align_lora_params lp;
    ALIGN_LORA_DEFAULT_PARAMS(&lp);
    const char *bad[] = {"q,v", "k", "gate", "nope", "", ","};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lp.targets = bad[i];
        ck_assert_int_eq(align_model_lora_attach(m, &lp), ALIGN_EINVAL);
    }
    lp.targets = "q";
    align_model_lora_attach(m, &lp);
    ck_assert_ptr_ne(strstr(align_model_errmsg(m), "c_attn"), NULL);
    lp.targets = "c_attn";
    lp.dropout = 0.1f;
    ck_assert_int_eq(align_model_lora_attach(m, &lp), ALIGN_EINVAL);
    lp.dropout = 0.0f;
    lp.r = 0;
    ck_assert_int_eq(align_model_lora_attach(m, &lp), ALIGN_EINVAL);
    lp.r = 4;
    lp.alpha = NAN;
    ck_assert_int_eq(align_model_lora_attach(m, &lp), ALIGN_EINVAL);
    ck_assert_ptr_eq(m->lora, NULL);
    ck_assert_ptr_ne(m->grads, NULL);
    ck_assert_int_eq(align_model_lora_enable(m, 0), ALIGN_EMISUSE);
    ck_assert_int_eq(align_model_lora_merge(m), ALIGN_EMISUSE);
    ck_assert_int_eq(align_model_lora_attach(NULL, &lp), ALIGN_EINVAL);
    align_model_free(m);
}
END_TEST

/* d(weighted log-probs)/d(adapter) against central differences (double sums
 * of float forwards), on every site with several layers in between. */
START_TEST(test_gradcheck)
{
    align_model *m = mk_model(2, 32, 2);
    attach(m, "all-linear", 3, 6.0f);
    randomize_adapters(m, 9, 0.6f);
    float lp[NSEQ * (TLEN - 1)], d[NSEQ * (TLEN - 1)];
    fwd(m, lp);
    for (int i = 0; i < NSEQ * (TLEN - 1); i++)
        d[i] = (float)(0.3 + 0.1 * (i % 7));
    ck_assert_int_eq(align_model_zero_grad(m), ALIGN_OK);
    ck_assert_int_eq(align_model_backward(m, d, NULL), ALIGN_OK);
    align__train_view v;
    align__model_train_view(m, &v);
    int checked = 0;
    double worst = 0;
    for (int ti = 0; ti < v.n_tensors; ti++) {
        const align__tensor *t = &v.tensors[ti];
        for (int k = 0; k < 3; k++) {
            size_t j = t->offset + (size_t)((k * 7919 + ti * 31) % (int)t->numel);
            /* central differences at h and h/2, Richardson-extrapolated
             * (the O(h^2) term cancels: some entries sit on steep curvature) */
            float keep = v.params[j], h = 1e-2f;
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
            if (getenv("LORA_GC_VERBOSE")) fprintf(stderr, "%s %zu %g %g %g\n", t->name, j - t->offset, an, fd, err);
            if (!getenv("LORA_GC_VERBOSE")) ck_assert_msg(err < 0.03, "%s[%zu]: analytic %g, finite difference %g", t->name, j - t->offset, an, fd);
            checked++;
        }
    }
    fprintf(stderr, "lora gradcheck: %d entries, worst relative error %.2e\n", checked, worst);
    align_model_free(m);
}
END_TEST

/* The optimizer steps the adapters alone; the base and a frozen "adapters
 * off" clone sharing it stay bitwise the same. */
START_TEST(test_optimizer_and_shared_reference)
{
    align_model *m = mk_model(2, 32, 3);
    align_optimizer *early = NULL;
    ck_assert_int_eq(align_optimizer_create(&early, m, NULL), ALIGN_OK);
    attach(m, "c_attn,c_proj", 4, 8.0f);
    align_model *ref = NULL, *copy = NULL;
    ck_assert_int_eq(align_model_clone(&ref, m, ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS), ALIGN_OK);
    ck_assert_ptr_eq(ref->wts, m->wts); /* no second copy of the weights */
    ck_assert_ptr_eq(ref->lora, NULL);
    ck_assert_int_eq(align_model_clone(&copy, m, ALIGN_FROZEN), ALIGN_OK); /* with adapters */
    ck_assert_ptr_eq(copy->wts, m->wts);
    ck_assert_ptr_ne(copy->lora, NULL);
    size_t nb = m->n_params;
    float *base0 = malloc(nb * sizeof(float));
    memcpy(base0, m->params, nb * sizeof(float));
    /* an optimizer made before attaching no longer fits */
    float lp[NSEQ * (TLEN - 1)], lr[NSEQ * (TLEN - 1)], d[NSEQ * (TLEN - 1)];
    for (int i = 0; i < NSEQ * (TLEN - 1); i++)
        d[i] = 1.0f;
    fwd(m, lp);
    ck_assert_int_eq(align_model_backward(m, d, NULL), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_step(early, NULL), ALIGN_EMISUSE);
    align_optimizer_free(early);
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
    ck_assert_int_eq(memcmp(base0, m->params, nb * sizeof(float)), 0);
    /* the optimizer's state holds the adapters' moments only */
    char *dir = test_tmpdir("lora-opt");
    char p[4200];
    snprintf(p, sizeof p, "%s/o.safetensors", dir);
    ck_assert_int_eq(align_optimizer_save(o, p), ALIGN_OK);
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fclose(f);
    ck_assert_int_lt(sz, (long)(2 * align_model_lora_num_params(m) * 4 + 4096));
    /* adapters trained: the policy moved, the reference is the base */
    fwd(m, lp);
    fwd(ref, lr);
    ck_assert(memcmp(lp, lr, sizeof lp) != 0);
    ck_assert_int_eq(align_model_lora_enable(m, 0), ALIGN_OK);
    fwd(m, lp);
    ck_assert_int_eq(memcmp(lp, lr, sizeof lp), 0);
    /* a backward after an adapters-off forward leaves the adapters' gradients alone */
    ck_assert_int_eq(align_model_backward(m, d, NULL), ALIGN_OK);
    ck_assert(align__model_grad_norm(m) == 0.0f);
    ck_assert_int_eq(align_model_lora_enable(m, 1), ALIGN_OK);
    /* merge: the policy's outputs stay (up to rounding), the shared base does not move */
    float before[NSEQ * (TLEN - 1)];
    fwd(m, before);
    ck_assert_int_eq(align_model_lora_merge(m), ALIGN_OK);
    ck_assert_ptr_eq(m->lora, NULL);
    ck_assert_ptr_ne(m->wts, ref->wts);
    ck_assert_ptr_ne(m->grads, NULL); /* a plain trainable model again */
    ck_assert_int_eq(memcmp(base0, ref->params, nb * sizeof(float)), 0);
    fwd(m, lp);
    for (int i = 0; i < NSEQ * (TLEN - 1); i++)
        ck_assert_msg(fabsf(lp[i] - before[i]) < 1e-4f, "merged %g vs adapters %g", lp[i], before[i]);
    fwd(ref, lp);
    ck_assert_int_eq(memcmp(lp, lr, sizeof lp), 0);
    /* the optimizer bound to the adapters refuses the merged model */
    ck_assert_int_eq(align_optimizer_step(o, NULL), ALIGN_EMISUSE);
    align_optimizer_free(o);
    free(base0);
    free(dir);
    align_model_free(copy);
    align_model_free(m);
    align_model_free(ref);
}
END_TEST

/* Decoding with the KV cache applies the adapters as the forward does. */
START_TEST(test_decode_with_adapters)
{
    align_model *m = mk_model(2, 32, 4);
    attach(m, "all-linear", 4, 8.0f);
    randomize_adapters(m, 3, 0.5f);
    float logits[TLEN * 257];
    int32_t one = TLEN;
    ck_assert_int_eq(align_model_forward(m, toks, &one, 1, TLEN, NULL, NULL, logits), ALIGN_OK);
    align__kv_cache *kv = NULL;
    ck_assert_int_eq(align__kv_create(&kv, m, 1, TLEN), ALIGN_OK);
    float last[257];
    int32_t n = TLEN - 1;
    ck_assert_int_eq(align__model_decode(m, kv, toks, TLEN, &n, last), ALIGN_OK);
    n = 1;
    ck_assert_int_eq(align__model_decode(m, kv, toks + TLEN - 1, 1, &n, last), ALIGN_OK);
    for (int i = 0; i < 257; i++)
        ck_assert_msg(fabsf(last[i] - logits[(TLEN - 1) * 257 + i]) < 1e-4f, "logit %d: %g vs %g", i, last[i],
                      logits[(TLEN - 1) * 257 + i]);
    align__kv_free(kv);
    align_model_free(m);
}
END_TEST

static json_t *read_json(const char *dir, const char *name)
{
    char p[4200];
    snprintf(p, sizeof p, "%.2000s/%.200s", dir, name);
    json_error_t e;
    json_t *j = json_load_file(p, 0, &e);
    ck_assert_msg(j != NULL, "%s: %s", p, e.text);
    return j;
}

static void write_json(const char *dir, const char *name, json_t *j)
{
    char p[4200];
    snprintf(p, sizeof p, "%.2000s/%.200s", dir, name);
    ck_assert_int_eq(json_dump_file(j, p, 0), 0);
}

START_TEST(test_peft_roundtrip)
{
    align_model *m = mk_model(2, 32, 6);
    align_model *fresh = NULL;
    ck_assert_int_eq(align_model_clone(&fresh, m, 0), ALIGN_OK);
    attach(m, "c_attn,mlp.c_proj", 4, 16.0f);
    randomize_adapters(m, 11, 0.4f);
    char *dir = test_tmpdir("lora-peft");
    char ad[4200];
    snprintf(ad, sizeof ad, "%s/adapter", dir);
    ck_assert_int_eq(align_model_lora_save(m, ad), ALIGN_OK);
    json_t *j = read_json(ad, "adapter_config.json");
    ck_assert_str_eq(json_string_value(json_object_get(j, "peft_type")), "LORA");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "r")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "lora_alpha")), 16);
    ck_assert(json_is_true(json_object_get(j, "fan_in_fan_out")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "bias")), "none");
    ck_assert_str_eq(json_string_value(json_object_get(j, "task_type")), "CAUSAL_LM");
    ck_assert_str_eq(json_string_value(json_object_get(j, "base_model_name_or_path")), "gpt2-tiny");
    json_t *tm = json_object_get(j, "target_modules");
    ck_assert_int_eq(json_array_size(tm), 2);
    ck_assert_str_eq(json_string_value(json_array_get(tm, 0)), "c_attn");
    ck_assert_str_eq(json_string_value(json_array_get(tm, 1)), "mlp.c_proj");
    /* loads into the base alone and gives the same outputs, bitwise */
    ck_assert_int_eq(align_model_lora_load(fresh, ad), ALIGN_OK);
    float a[NSEQ * (TLEN - 1)], b[NSEQ * (TLEN - 1)];
    fwd(m, a);
    fwd(fresh, b);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    ck_assert_ptr_eq(fresh->grads, NULL);
    /* into a frozen model too (inference with adapters) */
    align_model *fz = NULL;
    ck_assert_int_eq(align_model_clone(&fz, m, ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS), ALIGN_OK);
    ck_assert_int_eq(align_model_lora_load(fz, ad), ALIGN_OK);
    fwd(fz, b);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    align_model_free(fz);
    /* bad folders: nothing attached, a clear code */
    align_model *base = NULL;
    ck_assert_int_eq(align_model_clone(&base, m, ALIGN_CLONE_NO_ADAPTERS), ALIGN_OK);
    json_object_set_new(j, "r", json_integer(8)); /* tensors of rank 4 */
    write_json(ad, "adapter_config.json", j);
    ck_assert_int_eq(align_model_lora_load(base, ad), ALIGN_EFORMAT);
    json_object_set_new(j, "r", json_integer(4));
    json_object_set_new(j, "target_modules", json_string("q_proj,v_proj"));
    write_json(ad, "adapter_config.json", j);
    ck_assert_int_eq(align_model_lora_load(base, ad), ALIGN_EFORMAT);
    json_object_set_new(j, "target_modules", json_string("c_attn"));
    write_json(ad, "adapter_config.json", j); /* the file also holds mlp.c_proj */
    ck_assert_int_eq(align_model_lora_load(base, ad), ALIGN_EFORMAT);
    json_object_set_new(j, "target_modules", json_string("c_attn,c_proj")); /* no attn.c_proj tensors */
    write_json(ad, "adapter_config.json", j);
    ck_assert_int_eq(align_model_lora_load(base, ad), ALIGN_EFORMAT);
    json_object_set_new(j, "target_modules", json_string("c_attn,mlp.c_proj"));
    json_object_set_new(j, "use_rslora", json_true());
    write_json(ad, "adapter_config.json", j);
    ck_assert_int_eq(align_model_lora_load(base, ad), ALIGN_EFORMAT);
    ck_assert_ptr_eq(base->lora, NULL);
    ck_assert_int_eq(align_model_lora_load(base, dir), ALIGN_ENOENT);
    /* an adapter of another rank does not overwrite the model's own */
    json_object_set_new(j, "use_rslora", json_false());
    write_json(ad, "adapter_config.json", j);
    attach(base, "c_attn,mlp.c_proj", 2, 4.0f);
    ck_assert_int_eq(align_model_lora_load(base, ad), ALIGN_EINVAL);
    json_decref(j);
    align_model_free(base);
    free(dir);
    align_model_free(fresh);
    align_model_free(m);
}
END_TEST

/* align_model_save / load keep the adapters (a LoRA trainer's checkpoint). */
START_TEST(test_checkpoint_keeps_adapters)
{
    align_model *m = mk_model(1, 16, 7);
    attach(m, "c_fc", 2, 4.0f);
    randomize_adapters(m, 2, 0.5f);
    ck_assert_int_eq(align_model_lora_enable(m, 0), ALIGN_OK);
    char *dir = test_tmpdir("lora-ck");
    char p[4200];
    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    ck_assert_int_eq(align_model_save(m, p), ALIGN_OK);
    align_model *l = NULL;
    ck_assert_int_eq(align_model_load(&l, p, NULL), ALIGN_OK);
    ck_assert_ptr_ne(l->lora, NULL);
    ck_assert_int_eq(align_model_lora_num_params(l), align_model_lora_num_params(m));
    float a[NSEQ * (TLEN - 1)], b[NSEQ * (TLEN - 1)];
    fwd(m, a);
    fwd(l, b);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0); /* both off */
    ck_assert_int_eq(align_model_lora_enable(m, 1), ALIGN_OK);
    ck_assert_int_eq(align_model_lora_enable(l, 1), ALIGN_OK);
    fwd(m, a);
    fwd(l, b);
    ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
    ck_assert_int_eq(align__model_copy_weights(l, m), ALIGN_OK);
    align_model *plain = mk_model(1, 16, 7);
    ck_assert_int_eq(align__model_copy_weights(plain, m), ALIGN_EINVAL);
    align_model_free(plain);
    align_model_free(l);
    free(dir);
    align_model_free(m);
}
END_TEST

/* A scalar head trains as a copy (PEFT's modules_to_save ["score"]); the
 * base's head does not move; save / load / merge carry the copy. */
START_TEST(test_scalar_head_copy)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 1;
    mp.n_head = 2;
    mp.n_embd = 16;
    mp.vocab_size = 257;
    mp.max_seq_len = 48;
    mp.flags = ALIGN_MODEL_SCALAR_HEAD;
    mp.n_threads = 1;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    attach(m, "c_attn", 2, 4.0f);
    ck_assert_int_eq(align_model_lora_num_params(m), 2 * (16 + 48) + 16);
    float base_head[16];
    memcpy(base_head, m->params + align__model_find_tensor(m, "score.weight")->offset, sizeof base_head);
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
    const float *bh = m->params + align__model_find_tensor(m, "score.weight")->offset;
    ck_assert_int_eq(memcmp(base_head, bh, sizeof base_head), 0);
    ck_assert(memcmp(base_head, m->w.scorew, sizeof base_head) != 0); /* the copy trained */
    ck_assert_int_eq(align_model_forward(m, toks, lens, NSEQ, TLEN, NULL, sc, NULL), ALIGN_OK);
    char *dir = test_tmpdir("lora-head");
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
    /* merge: the head copy becomes the base's (in a copy: b's base is its own) */
    ck_assert_int_eq(align_model_lora_merge(b), ALIGN_OK);
    ck_assert_int_eq(align_model_forward(b, toks, lens, NSEQ, TLEN, NULL, sc2, NULL), ALIGN_OK);
    for (int i = 0; i < NSEQ * TLEN; i++)
        ck_assert(fabsf(sc[i] - sc2[i]) < 1e-4f);
    align_model_free(b);
    free(dir);
    align_model_free(m);
}
END_TEST

/* A frozen model with adapters serves forwards from several threads at once
 * (scratch per call), each equal to the single-threaded result. */
typedef struct {
    align_model *m;
    float lp[NSEQ * (TLEN - 1)];
    int rc;
} fwd_job;

static void *fwd_thread(void *p)
{
    fwd_job *j = p;
    for (int k = 0; k < 5 && !j->rc; k++)
        j->rc = align_model_forward(j->m, toks, lens, NSEQ, TLEN, j->lp, NULL, NULL);
    return NULL;
}

START_TEST(test_frozen_threads)
{
    align_model *m = mk_model(2, 32, 8);
    attach(m, "all-linear", 4, 8.0f);
    randomize_adapters(m, 4, 0.5f);
    align_model *fz = NULL;
    ck_assert_int_eq(align_model_clone(&fz, m, ALIGN_FROZEN), ALIGN_OK);
    ck_assert_ptr_eq(fz->wts, m->wts);
    float want[NSEQ * (TLEN - 1)];
    fwd(fz, want);
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
    fwd(fz, want);
    ck_assert_int_eq(memcmp(jobs[0].lp, want, sizeof want), 0);
    align_model_free(fz);
}
END_TEST

/* ---- DPO with LoRA: vowels vs consonants (as check_internal_dpo) ---------- */
static double accuracy(align_model *m, const align_tokenizer *t, uint32_t seed, int n)
{
    uint32_t rs = seed;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char p[16], c[8], r[8];
        pref_example(&rs, p, c, r);
        ok += seq_logp(m, t, p, c) > seq_logp(m, t, p, r);
    }
    return (double)ok / n;
}


static void run_open(run *r, align_dataset *d, align_tokenizer *t, int max_steps)
{
    r->m = mk_model(2, 32, 11);
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

START_TEST(test_dpo_lora_learns_and_resumes)
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
    double acc0 = accuracy(a.m, t, 777, 100);
    ck_assert_int_eq(run_steps(&a, 1000), total);
    double acc1 = accuracy(a.m, t, 777, 100);
    fprintf(stderr, "dpo + lora (r 8, all-linear): held-out accuracy %.2f -> %.2f after %d steps\n", acc0, acc1,
            total);
    ck_assert(acc0 > 0.2 && acc0 < 0.8);
    ck_assert(acc1 >= 0.85);
    ck_assert_int_eq(memcmp(base0, a.m->params, nb * sizeof(float)), 0);
    ck_assert_ptr_eq(a.ref->wts, a.m->wts);
    /* save after `at` steps, resume in a new run: the same adapters, bitwise */
    run_open(&b, d, t, total);
    ck_assert_int_eq(run_steps(&b, at), at);
    char *dir = test_tmpdir("lora-resume");
    char ck[4200];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    ck_assert_int_eq(align_trainer_save(b.tr, ck), ALIGN_OK);
    run_close(&b);
    run_open(&c, d, t, total);
    ck_assert_int_eq(align_trainer_resume(c.tr, ck), ALIGN_OK);
    ck_assert_ptr_eq(c.ref->wts, c.m->wts); /* the resume kept the base shared */
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

Suite *internal_lora_suite(void)
{
    Suite *s = suite_create("internal_lora");
    TCase *tc = test_tcase(s, "lora", 120);
    tcase_add_test(tc, test_fresh_adapter_changes_nothing);
    tcase_add_test(tc, test_bad_params);
    tcase_add_test(tc, test_gradcheck);
    tcase_add_test(tc, test_optimizer_and_shared_reference);
    tcase_add_test(tc, test_decode_with_adapters);
    tcase_add_test(tc, test_peft_roundtrip);
    tcase_add_test(tc, test_checkpoint_keeps_adapters);
    tcase_add_test(tc, test_scalar_head_copy);
    tcase_add_test(tc, test_frozen_threads);
    tcase_add_test(tc, test_dpo_lora_learns_and_resumes);
    return s;
}
