/* check_internal_dpo.c — the preference trainers (DPO family, KTO): the
 * gradients they send into the model against finite differences of their
 * loss, DPO training on synthetic preferences (held-out accuracy, KL to the
 * reference on unrelated prompts), the reference cache against recomputing,
 * bitwise resume, and bad input. */
#include "testutil.h"

#include "align.h"
#include "model/model_impl.h"

#include <math.h>
#include <stdint.h>

static align_model *mk_model(int32_t layers, int32_t embd, int32_t vocab, uint64_t seed)
{
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = layers;
    mp.n_head = 2;
    mp.n_embd = embd;
    mp.vocab_size = vocab;
    mp.max_seq_len = 48;
    mp.seed = seed;
    mp.n_threads = 1;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    return m;
}

static align_optimizer *mk_opt(align_model *m, float lr)
{
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = lr;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), ALIGN_OK);
    return o;
}

static align_tokenizer *bytes_tok(void)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    return t;
}

/* ---- synthetic preferences -------------------------------------------------
 * Prompt "v:" or "c:" + 3 letters; both responses are 4 letters, one of
 * vowels, one of consonants; the chosen one is the kind the prompt asks for
 * (a rule the model can learn from a few dozen pairs and apply to pairs it
 * never saw; a bias for either kind alone scores half). */
static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static void pref_example(uint32_t *rs, char *prompt, char *chosen, char *rejected)
{
    static const char vow[] = "aeiou", con[] = "bcdfghklmnprst";
    int v = lcg(rs) % 2; /* "v:" asks for vowels, "c:" for consonants */
    strcpy(prompt, v ? "v:" : "c:");
    for (int i = 0; i < 3; i++)
        prompt[2 + i] = (char)('a' + lcg(rs) % 26);
    prompt[5] = ' ';
    prompt[6] = 0;
    char *a = v ? chosen : rejected, *b = v ? rejected : chosen;
    for (int i = 0; i < 4; i++) {
        a[i] = vow[lcg(rs) % 5];
        b[i] = con[lcg(rs) % 14];
    }
    chosen[4] = rejected[4] = 0;
}

static align_dataset *pref_data(uint32_t seed, int n)
{
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    uint32_t rs = seed;
    for (int i = 0; i < n; i++) {
        char p[16], c[8], r[8];
        pref_example(&rs, p, c, r);
        ck_assert_int_eq(align_dataset_add_preference(d, p, c, r, NULL), ALIGN_OK);
    }
    return d;
}

/* Sum of the response's (+ end-of-turn) token log-probs of prompt+response. */
static double seq_logp(align_model *m, const align_tokenizer *t, const char *prompt, const char *resp)
{
    int32_t ids[64];
    size_t n1 = 0, n2 = 0;
    ck_assert_int_eq(align_tokenize(t, prompt, strlen(prompt), 0, ids, 64, &n1), ALIGN_OK);
    ck_assert_int_eq(align_tokenize(t, resp, strlen(resp), 0, ids + n1, 64 - n1, &n2), ALIGN_OK);
    int32_t n = (int32_t)(n1 + n2);
    ids[n++] = align_tokenizer_eot(t);
    float lp[64];
    ck_assert_int_eq(align_model_forward(m, ids, &n, 1, n, lp, NULL, NULL), ALIGN_OK);
    double s = 0;
    for (int32_t k = (int32_t)n1 - 1; k < n - 1; k++)
        s += lp[k];
    return s;
}

static double heldout_accuracy(align_model *m, const align_tokenizer *t, uint32_t seed, int n)
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

/* KL(policy || reference) per token over the completions of unrelated
 * prompts ("n:" + digits -> the digits), full distributions. */
static double kl_unrelated(align_model *pol, align_model *ref, const align_tokenizer *t)
{
    enum { N = 16, T = 16 };
    int32_t ids[N * T], len[N];
    uint32_t rs = 99;
    memset(ids, 0, sizeof ids);
    for (int i = 0; i < N; i++) {
        char s[16];
        strcpy(s, "n:");
        for (int k = 0; k < 4; k++)
            s[2 + k] = (char)('0' + lcg(&rs) % 10);
        s[6] = ' ';
        memcpy(s + 7, s + 2, 4);
        s[11] = 0;
        size_t n = 0;
        ck_assert_int_eq(align_tokenize(t, s, strlen(s), 0, ids + i * T, T, &n), ALIGN_OK);
        len[i] = (int32_t)n;
    }
    const int32_t V = 257;
    float *lp = malloc(sizeof(float) * N * T * V), *lq = malloc(sizeof(float) * N * T * V);
    ck_assert_int_eq(align_model_forward(pol, ids, len, N, T, NULL, NULL, lp), ALIGN_OK);
    ck_assert_int_eq(align_model_forward(ref, ids, len, N, T, NULL, NULL, lq), ALIGN_OK);
    double kl = 0;
    int cnt = 0;
    for (int i = 0; i < N; i++)
        for (int p = 6; p < len[i] - 1; p++) { /* positions predicting the completion */
            const float *a = lp + ((size_t)i * T + p) * V, *b = lq + ((size_t)i * T + p) * V;
            double ma = -1e30, mb = -1e30, za = 0, zb = 0;
            for (int v = 0; v < V; v++) {
                ma = fmax(ma, a[v]);
                mb = fmax(mb, b[v]);
            }
            for (int v = 0; v < V; v++) {
                za += exp(a[v] - ma);
                zb += exp(b[v] - mb);
            }
            double k = 0;
            for (int v = 0; v < V; v++) {
                double la = a[v] - ma - log(za), lb = b[v] - mb - log(zb);
                k += exp(la) * (la - lb);
            }
            kl += k;
            cnt++;
        }
    free(lp);
    free(lq);
    return kl / cnt;
}

/* ---- gradients against finite differences ----------------------------------- */

static float *g_grads;
static double g_loss;
static int on_step_copy(const align_step_stats *st, void *ud)
{
    g_loss = st->loss;
    align_model *m = ud;
    memcpy(g_grads, m->grads, m->n_params * sizeof(float));
    return -1; /* discard: the weights stay as they are */
}

static double eval_loss(align_trainer *ev, align_dataset *d)
{
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    ck_assert_int_eq(align_trainer_evaluate(ev, d, &st), ALIGN_OK);
    double v = 0;
    ck_assert_int_eq(align_trainer_metric(ev, ALIGN_METRICS_EVAL, "loss", &v), ALIGN_OK);
    return v;
}

/* algo: 0..5 a DPO loss, 6 KTO */
static float kto_noise = 0.4f;
static void gradcheck(int algo)
{
    align_tokenizer *t = bytes_tok();
    align_model *ref = mk_model(1, 16, 257, 7);
    align_model *m = NULL;
    ck_assert_int_eq(align_model_clone(&m, ref, 0), ALIGN_OK);
    align__rng r;
    align__rng_init(&r, 5, 0);
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += (algo == 6 ? kto_noise : 0.1f) * align__rng_normal(&r);
    align_optimizer *o = mk_opt(m, 1e-3f);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    uint32_t rs = 3;
    for (int i = 0; i < 3; i++) {
        char p[16], c[8], rj[8];
        pref_example(&rs, p, c, rj);
        if (algo == 6) {
            ck_assert_int_eq(align_dataset_add_label(d, p, i == 1 ? rj : c, i != 1, NULL), ALIGN_OK);
        } else if (i == 2) { /* a ranking of three */
            const char *resp[3] = {c, rj, "zz"};
            int32_t rank[3] = {1, 2, 0};
            ck_assert_int_eq(align_dataset_add_ranking(d, p, resp, rank, 3, NULL), ALIGN_OK);
        } else {
            ck_assert_int_eq(align_dataset_add_preference(d, p, c, rj, NULL), ALIGN_OK);
        }
    }
    g_grads = calloc(m->n_params, sizeof(float));
    align_trainer *tr = NULL, *ev = NULL;
    if (algo == 6) {
        align_kto_params kp;
        ALIGN_KTO_DEFAULT_PARAMS(&kp);
        kp.flags = ALIGN_DPO_SEQUENTIAL; /* the evaluation's batch: same order, same z0 */
        kp.beta = 0.5f;
        kp.undesirable_weight = 1.5f;
        kp.micro_batch = 2;
        kp.grad_accum = 2;
        kp.on_step = on_step_copy;
        kp.on_step_user_data = m;
        ck_assert_int_eq(align_trainer_create_kto(&tr, m, ref, t, d, o, &kp), ALIGN_OK);
        kp.on_step = NULL;
        ck_assert_int_eq(align_trainer_create_kto(&ev, m, ref, t, d, NULL, &kp), ALIGN_OK);
    } else {
        align_dpo_params dp;
        ALIGN_DPO_DEFAULT_PARAMS(&dp);
        dp.loss = algo;
        dp.beta = algo == ALIGN_DPO_IPO ? 0.3f : 0.5f;
        dp.sft_alpha = algo == ALIGN_DPO_SIGMOID ? 0.5f : 0.0f;
        dp.micro_batch = 2;
        dp.grad_accum = 2;
        dp.on_step = on_step_copy;
        dp.on_step_user_data = m;
        ck_assert_int_eq(align_trainer_create_dpo(&tr, m, ref, t, d, o, &dp), ALIGN_OK);
        dp.on_step = NULL;
        ck_assert_int_eq(align_trainer_create_dpo(&ev, m, ref, t, d, NULL, &dp), ALIGN_OK);
    }
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    ck_assert_int_eq(align_trainer_step(tr, &st), ALIGN_ECALLBACK);
    double l0 = eval_loss(ev, d);
    ck_assert_msg(fabs(l0 - g_loss) < 1e-5 * fmax(1.0, fabs(l0)), "step loss %g, evaluate %g", g_loss, l0);
    if (algo == 6) {
        double kl = 1;
        ck_assert_int_eq(align_trainer_metric(ev, ALIGN_METRICS_EVAL, "kl", &kl), ALIGN_OK);
        ck_assert_msg(kl == 0.0, "z0 %g: the test wants the clamp (z0 has no gradient)", kl);
    }
    /* the 12 largest gradient entries (and a few random ones) */
    size_t pick[16];
    for (int k = 0; k < 12; k++) {
        size_t best = 0;
        float bv = -1;
        for (size_t i = 0; i < m->n_params; i++) {
            int used = 0;
            for (int q = 0; q < k; q++)
                used |= pick[q] == i;
            if (!used && fabsf(g_grads[i]) > bv) {
                bv = fabsf(g_grads[i]);
                best = i;
            }
        }
        pick[k] = best;
    }
    for (int k = 12; k < 16; k++)
        pick[k] = align__rng_below(&r, (uint32_t)m->n_params);
    double gmax = fabs(g_grads[pick[0]]);
    ck_assert(gmax > 1e-4);
    int bad = 0;
    for (int k = 0; k < 16; k++) {
        size_t j = pick[k];
        float old = m->params[j];
        const float h = 2e-3f;
        m->params[j] = old + h;
        double lp = eval_loss(ev, d);
        m->params[j] = old - h;
        double lm = eval_loss(ev, d);
        m->params[j] = old;
        double num = (lp - lm) / (2.0 * h), ana = g_grads[j];
        if (fabs(num - ana) > 0.03 * fabs(ana) + 2e-3 * gmax) {
            fprintf(stderr, "algo %d param %zu: analytic %.6g numeric %.6g\n", algo, j, ana, num);
            bad++;
        }
    }
    ck_assert_int_eq(bad, 0);
    align_trainer_free(tr);
    align_trainer_free(ev);
    free(g_grads);
    align_dataset_free(d);
    align_optimizer_free(o);
    align_model_free(m);
    align_model_free(ref);
    align_tokenizer_free(t);
}

START_TEST(test_grad_dpo) { gradcheck(ALIGN_DPO_SIGMOID); }
END_TEST
START_TEST(test_grad_ipo) { gradcheck(ALIGN_DPO_IPO); }
END_TEST
START_TEST(test_grad_orpo) { gradcheck(ALIGN_DPO_ORPO); }
END_TEST
START_TEST(test_grad_kto) { gradcheck(6); }
END_TEST

/* ---- training --------------------------------------------------------------- */

START_TEST(test_dpo_learns)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = mk_model(2, 32, 257, 11);
    align_model *ref = NULL;
    ck_assert_int_eq(align_model_clone(&ref, m, ALIGN_FROZEN), ALIGN_OK);
    const char *lr_env = getenv("ALIGN_TEST_DPO_LR");
    float lr = lr_env ? (float)atof(lr_env) : 3e-4f;
    align_optimizer *o = mk_opt(m, lr);
    align_dataset *d = pref_data(1, 64);
    double acc0 = heldout_accuracy(m, t, 777, 100);
    align_dpo_params dp;
    ALIGN_DPO_DEFAULT_PARAMS(&dp);
    dp.micro_batch = 8;
    dp.max_steps = getenv("ALIGN_TEST_DPO_STEPS") ? atoi(getenv("ALIGN_TEST_DPO_STEPS")) : 40;
    dp.flags = ALIGN_DPO_RELEASE_REFERENCE;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_dpo(&tr, m, ref, t, d, o, &dp), ALIGN_OK);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    int rc, steps = 0;
    double fill = 0, first_loss = -1, last_loss = 0;
    while ((rc = align_trainer_step(tr, &st)) == ALIGN_OK) {
        if (first_loss < 0)
            first_loss = st.loss;
        last_loss = st.loss;
        ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_STEP, "ref_cache/fill", &fill), ALIGN_OK);
        steps++;
    }
    ck_assert_int_eq(rc, ALIGN_DONE);
    ck_assert(fill == 1.0);
    double acc1 = heldout_accuracy(m, t, 777, 100);
    double kl = kl_unrelated(m, ref, t);
    double margin = 0;
    ck_assert_int_eq(align_trainer_metric(tr, ALIGN_METRICS_STEP, "rewards/margins", &margin), ALIGN_OK);
    fprintf(stderr, "dpo: lr %g, %d steps: held-out accuracy %.2f -> %.2f, loss %.4f -> %.4f, margin %.3f, "
            "KL/token on unrelated prompts %.3g\n", lr, steps, acc0, acc1, first_loss, last_loss, margin, kl);
    ck_assert(acc0 > 0.2 && acc0 < 0.8);
    ck_assert(acc1 >= 0.9);
    ck_assert(kl < 0.02);
    align_trainer_free(tr);
    align_dataset_free(d);
    align_optimizer_free(o);
    align_model_free(ref);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

/* ---- cache, resume ---------------------------------------------------------- */

typedef struct run {
    align_model *m, *ref;
    align_optimizer *o;
    align_trainer *tr;
} run;

static void run_open(run *r, align_dataset *d, const align_tokenizer *t, uint32_t flags, int kto)
{
    r->m = mk_model(1, 16, 257, 21);
    ck_assert_int_eq(align_model_clone(&r->ref, r->m, ALIGN_FROZEN), ALIGN_OK);
    r->m->params[3] += 0.5f; /* policy != reference from the start */
    r->o = mk_opt(r->m, 3e-3f);
    if (kto) {
        align_kto_params kp;
        ALIGN_KTO_DEFAULT_PARAMS(&kp);
        kp.flags = flags;
        kp.micro_batch = 3;
        kp.epochs = 3;
        ck_assert_int_eq(align_trainer_create_kto(&r->tr, r->m, r->ref, t, d, r->o, &kp), ALIGN_OK);
    } else {
        align_dpo_params dp;
        ALIGN_DPO_DEFAULT_PARAMS(&dp);
        dp.flags = flags;
        dp.micro_batch = 2;
        dp.grad_accum = 2;
        dp.epochs = 3;
        ck_assert_int_eq(align_trainer_create_dpo(&r->tr, r->m, r->ref, t, d, r->o, &dp), ALIGN_OK);
    }
}

static void run_close(run *r)
{
    align_trainer_free(r->tr);
    align_optimizer_free(r->o);
    align_model_free(r->ref);
    align_model_free(r->m);
}

static int run_steps(run *r, int n)
{
    int k = 0;
    while (k < n && align_trainer_step(r->tr, NULL) == ALIGN_OK)
        k++;
    return k;
}

static align_dataset *mixed_data(int kto)
{
    if (!kto) {
        align_dataset *d = pref_data(5, 10); /* 10 records: 2.5 steps per epoch */
        const char *resp[3] = {"oak", "elm", "fir"};
        int32_t rank[3] = {2, 0, 1};
        ck_assert_int_eq(align_dataset_add_ranking(d, "t: ", resp, rank, 3, NULL), ALIGN_OK);
        return d;
    }
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    uint32_t rs = 8;
    for (int i = 0; i < 10; i++) {
        char p[16], c[8], rj[8];
        pref_example(&rs, p, c, rj);
        ck_assert_int_eq(align_dataset_add_label(d, p, i % 3 ? c : rj, i % 3 != 0, NULL), ALIGN_OK);
    }
    return d;
}

static void cache_same(int kto)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = mixed_data(kto);
    run a, b;
    run_open(&a, d, t, 0, kto);
    run_open(&b, d, t, ALIGN_DPO_NO_REFERENCE_CACHE, kto);
    int na = run_steps(&a, 1000), nb = run_steps(&b, 1000);
    ck_assert_int_eq(na, nb);
    ck_assert(na >= 6);
    ck_assert_int_eq(memcmp(a.m->params, b.m->params, a.m->n_params * sizeof(float)), 0);
    run_close(&a);
    run_close(&b);
    align_dataset_free(d);
    align_tokenizer_free(t);
}

START_TEST(test_cache_bitwise_dpo) { cache_same(0); }
END_TEST
START_TEST(test_cache_bitwise_kto) { cache_same(1); }
END_TEST

static void resume_at(int kto, int at)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = mixed_data(kto);
    run a, b, c;
    run_open(&a, d, t, 0, kto);
    int total = run_steps(&a, 1000);
    run_open(&b, d, t, 0, kto);
    ck_assert_int_eq(run_steps(&b, at), at);
    char *dir = test_tmpdir("dpo-resume");
    char ck[4200];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    ck_assert_int_eq(align_trainer_save(b.tr, ck), ALIGN_OK);
    run_close(&b);
    run_open(&c, d, t, 0, kto);
    ck_assert_int_eq(align_trainer_resume(c.tr, ck), ALIGN_OK);
    ck_assert_int_eq(run_steps(&c, 1000), total - at);
    ck_assert_int_eq(memcmp(a.m->params, c.m->params, a.m->n_params * sizeof(float)), 0);
    run_close(&c);
    /* a checkpoint whose cache was made for other data is refused */
    align_dataset *d2 = mixed_data(kto);
    ck_assert_int_eq(kto ? align_dataset_add_label(d2, "x", "y", 1, NULL)
                         : align_dataset_add_preference(d2, "x", "y", "z", NULL), ALIGN_OK);
    run_open(&c, d2, t, 0, kto);
    ck_assert_int_lt(align_trainer_resume(c.tr, ck), 0);
    run_close(&c);
    align_dataset_free(d2);
    run_close(&a);
    free(dir);
    align_dataset_free(d);
    align_tokenizer_free(t);
}

/* DPO: 11 records, 4 per step: steps 1-2 in epoch 1, step 3 ends it (the
 * cache is full after it), 4.. later epochs. */
START_TEST(test_resume_mid_epoch) { resume_at(0, 1); }
END_TEST
START_TEST(test_resume_cache_full) { resume_at(0, 3); }
END_TEST
START_TEST(test_resume_later_epoch) { resume_at(0, 5); }
END_TEST
START_TEST(test_resume_kto) { resume_at(1, 2); }
END_TEST

/* ---- release of the reference ---------------------------------------------- */

START_TEST(test_release_reference)
{
    align_tokenizer *t = bytes_tok();
    align_dataset *d = mixed_data(0);
    run a;
    run_open(&a, d, t, ALIGN_DPO_RELEASE_REFERENCE, 0);
    double fill = 0;
    int steps = 0;
    while (fill < 1.0) {
        ck_assert_int_eq(align_trainer_step(a.tr, NULL), ALIGN_OK);
        ck_assert_int_eq(align_trainer_metric(a.tr, ALIGN_METRICS_STEP, "ref_cache/fill", &fill), ALIGN_OK);
        steps++;
    }
    ck_assert_int_eq(steps, 3);
    align_model_free(a.ref); /* the contract: the trainer never reads it again */
    a.ref = NULL;
    ck_assert_int_eq(run_steps(&a, 1000), 6); /* 33 records, 4 a step: 9 steps */
    /* evaluation of other data would need it */
    ck_assert_int_eq(align_trainer_evaluate(a.tr, d, NULL), ALIGN_EMISUSE);
    ck_assert(strstr(align_trainer_errmsg(a.tr), "released") != NULL);
    run_close(&a);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* ---- bad input -------------------------------------------------------------- */

START_TEST(test_bad_input)
{
    align_tokenizer *t = bytes_tok();
    align_model *m = mk_model(1, 16, 257, 1), *ref = NULL, *other = mk_model(1, 16, 300, 1);
    ck_assert_int_eq(align_model_clone(&ref, m, ALIGN_FROZEN), ALIGN_OK);
    align_trainer *tr = (align_trainer *)1;
    align_dpo_params dp;
    ALIGN_DPO_DEFAULT_PARAMS(&dp);

    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_preference(d, "q", "good", "", NULL), ALIGN_OK);
    ck_assert_int_eq(align_trainer_create_dpo(&tr, m, ref, t, d, NULL, &dp), ALIGN_EINVAL);
    ck_assert(tr == NULL);
    ck_assert_msg(strstr(align_last_errmsg(), "record 0: response 1 is empty") != NULL, "%s", align_last_errmsg());
    align_dataset_free(d);

    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_preference(d, "q", "a", "b", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_preference(d, "q", "same", "same", NULL), ALIGN_OK);
    ck_assert_int_eq(align_trainer_create_dpo(&tr, m, ref, t, d, NULL, &dp), ALIGN_EINVAL);
    ck_assert_msg(strstr(align_last_errmsg(), "record 1") && strstr(align_last_errmsg(), "chosen equals rejected"),
                  "%s", align_last_errmsg());
    align_dataset_free(d);

    d = pref_data(1, 4);
    ck_assert_int_eq(align_trainer_create_dpo(&tr, m, other, t, d, NULL, &dp), ALIGN_EINVAL);
    ck_assert_msg(strstr(align_last_errmsg(), "vocabulary (300) is not the policy's (257)"), "%s",
                  align_last_errmsg());
    /* a reference-based loss without a reference; reference-free ones are fine */
    ck_assert_int_eq(align_trainer_create_dpo(&tr, m, NULL, t, d, NULL, &dp), ALIGN_EINVAL);
    ck_assert(strstr(align_last_errmsg(), "needs a reference"));
    dp.loss = ALIGN_DPO_SIMPO;
    ck_assert_int_eq(align_trainer_create_dpo(&tr, m, NULL, t, d, NULL, &dp), ALIGN_OK);
    align_trainer_free(tr);
    dp.loss = 17;
    ck_assert_int_eq(align_trainer_create_dpo(&tr, m, ref, t, d, NULL, &dp), ALIGN_EINVAL);
    dp.loss = ALIGN_DPO_SIGMOID;
    dp.beta = 0;
    ck_assert_int_eq(align_trainer_create_dpo(&tr, m, ref, t, d, NULL, &dp), ALIGN_EINVAL);
    dp.beta = 0.1f;
    ck_assert_int_eq(align_trainer_create_dpo(&tr, m, m, t, d, NULL, &dp), ALIGN_EINVAL);
    /* KTO wants labels: preferences are not usable */
    align_kto_params kp;
    ALIGN_KTO_DEFAULT_PARAMS(&kp);
    ck_assert_int_eq(align_trainer_create_kto(&tr, m, ref, t, d, NULL, &kp), ALIGN_EINVAL);
    ck_assert(strstr(align_last_errmsg(), "no usable label record"));
    ck_assert_int_eq(align_trainer_create_kto(&tr, m, NULL, t, d, NULL, &kp), ALIGN_EINVAL);
    align_dataset_free(d);
    align_model_free(other);
    align_model_free(ref);
    align_model_free(m);
    align_tokenizer_free(t);
}
END_TEST

Suite *internal_dpo_suite(void)
{
    Suite *s = suite_create("internal_dpo");
    TCase *tc = test_tcase(s, "gradients", 120);
    tcase_add_test(tc, test_grad_dpo);
    tcase_add_test(tc, test_grad_ipo);
    tcase_add_test(tc, test_grad_orpo);
    tcase_add_test(tc, test_grad_kto);
    tc = test_tcase(s, "training", 300);
    tcase_add_test(tc, test_dpo_learns);
    tc = test_tcase(s, "cache", 120);
    tcase_add_test(tc, test_cache_bitwise_dpo);
    tcase_add_test(tc, test_cache_bitwise_kto);
    tcase_add_test(tc, test_release_reference);
    tc = test_tcase(s, "resume", 120);
    tcase_add_test(tc, test_resume_mid_epoch);
    tcase_add_test(tc, test_resume_cache_full);
    tcase_add_test(tc, test_resume_later_epoch);
    tcase_add_test(tc, test_resume_kto);
    tc = test_tcase(s, "bad input", 60);
    tcase_add_test(tc, test_bad_input);
    return s;
}
