/* check_internal_trainer.c — the trainer engine over roles, driven by a toy
 * algorithm written against lib/train/trainer.h the way reward/DPO/PPO are:
 * two trainable roles (policy, value) and a frozen one (reference), a rollout
 * phase that appends to a buffer of any size, state saved as a file of its
 * own, named metrics. Checks: a discarded step leaves every trainable role
 * bitwise as it was and keeps the rollout; save/resume of every role and the
 * buffer continues bitwise; a damaged state file or role file is refused with
 * nothing changed; a non-finite value gradient skips every role's update;
 * role tables are validated. */
#include "train/trainer.h"
#include "data/batch.h"
#include "model/model_impl.h"
#include "st_edit.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>

enum { NB = 2, NT = 6, NV = 11, ROLLOUT = 5 };
static const int32_t toks[NB * NT] = {1, 4, 2, 9, 3, 7, 5, 0, 8, 2, 10, 6};
static const int32_t lens[NB] = {6, 4};

typedef struct toy {
    float *buf;           /* rollout buffer: grows by ROLLOUT targets per rollout */
    int64_t n, cap;
    int64_t cursor;       /* next target used by a step */
    align__rng rng;
    int rollouts;         /* rollout phases run (not state: counts calls) */
    int nan_at_cursor;    /* a NaN value target at this cursor (-1: none) */
    /* begin/rollback snapshot */
    int64_t snap_n, snap_cursor;
    align__rng snap_rng;
} toy;

static int toy_rollout(align_trainer *tr, align__step_ctx *ctx)
{
    toy *t = tr->algo;
    if (t->cursor < t->n)
        return ALIGN_OK; /* targets left: nothing to do */
    if (t->n + ROLLOUT > t->cap) {
        int64_t c = t->cap * 2 + ROLLOUT;
        float *p = align__realloc(t->buf, (size_t)c * sizeof *p);
        if (!p)
            return ALIGN_ENOMEM;
        t->buf = p;
        t->cap = c;
    }
    for (int i = 0; i < ROLLOUT; i++)
        t->buf[t->n++] = align__rng_normal(&t->rng);
    t->rollouts++;
    align__metric(ctx, "rollout/size", (double)t->n);
    return align__trainer_poll_stop(tr);
}

static int toy_accumulate(align_trainer *tr, align__step_ctx *ctx)
{
    toy *t = tr->algo;
    align_model *policy = align__trainer_role_model(tr, "policy");
    align_model *value = align__trainer_role_model(tr, "value");
    align_model *ref = align__trainer_role_model(tr, "reference");
    float lp[NB * (NT - 1)], lr[NB * (NT - 1)], dlp[NB * (NT - 1)], sc[NB * NT], dsc[NB * NT];
    float target = t->cursor == t->nan_at_cursor ? NAN : t->buf[t->cursor];
    t->cursor++;
    int rc;
    if ((rc = align__trainer_poll_stop(tr)) < 0)
        return rc;
    if ((rc = align_model_forward(policy, toks, lens, NB, NT, lp, NULL, NULL)) < 0 ||
        (rc = align_model_forward(ref, toks, lens, NB, NT, lr, NULL, NULL)) < 0 ||
        (rc = align_model_forward(value, toks, lens, NB, NT, NULL, sc, NULL)) < 0)
        return rc;
    double nll = 0, kl = 0, vloss = 0;
    int n = 0;
    for (int b = 0; b < NB; b++)
        for (int i = 0; i + 1 < lens[b]; i++) {
            nll -= lp[b * (NT - 1) + i];
            kl += lp[b * (NT - 1) + i] - lr[b * (NT - 1) + i];
            n++;
        }
    for (int i = 0; i < NB * (NT - 1); i++)
        dlp[i] = -1.0f / (float)n;
    for (int b = 0; b < NB; b++)
        for (int i = 0; i < NT; i++) {
            float e = i < lens[b] ? sc[b * NT + i] - target : 0.0f;
            vloss += 0.5 * (double)e * e;
            dsc[b * NT + i] = e;
        }
    if ((rc = align_model_backward(policy, dlp, NULL)) < 0 || (rc = align_model_backward(value, NULL, dsc)) < 0)
        return rc;
    ctx->stats.loss = (float)(nll / n);
    ctx->stats.tokens = n;
    ctx->stats.sequences = NB;
    ctx->tokens_processed = lens[0] + lens[1];
    align__metric(ctx, "loss", (double)ctx->stats.loss);
    align__metric(ctx, "objective/kl", kl / n);
    align__metric(ctx, "value/loss", vloss);
    return ALIGN_OK;
}

static int toy_evaluate(align_trainer *tr, align_dataset *eval, align__step_ctx *ctx)
{
    (void)tr;
    (void)eval;
    align__metric(ctx, "loss", 0.0);
    return ALIGN_OK;
}

static float toy_progress(const align_trainer *tr, int64_t steps) { (void)tr; return (float)steps / 100.0f; }
static int64_t toy_epoch(const align_trainer *tr) { (void)tr; return 1; }

static int toy_begin(align_trainer *tr)
{
    toy *t = tr->algo;
    t->snap_n = t->n;
    t->snap_cursor = t->cursor;
    t->snap_rng = t->rng;
    return ALIGN_OK;
}

static void toy_rollback(align_trainer *tr)
{
    toy *t = tr->algo;
    t->n = t->snap_n;
    t->cursor = t->snap_cursor;
    t->rng = t->snap_rng;
}

static int toy_save_state(const align_trainer *tr, json_t *state, align__ckpt *ck)
{
    const toy *t = tr->algo;
    align__chunk c = {t->buf, (size_t)t->n * sizeof(float)};
    int rc = align__ckpt_write(ck, "toy.buffer.bin", &c, 1);
    if (rc)
        return rc;
    if (align__json_set_i64(state, "n", t->n) || align__json_set_i64(state, "cursor", t->cursor) ||
        align__json_set_u64(state, "rng_counter", t->rng.counter))
        return ALIGN_ENOMEM;
    return ALIGN_OK;
}

typedef struct toy_staged {
    float *buf;
    int64_t n, cursor;
    uint64_t counter;
} toy_staged;

static int toy_load_state(align_trainer *tr, const json_t *state, align__ckpt *ck, void **staged)
{
    toy_staged g = {0};
    if (align__json_get_i64(state, "n", &g.n) || align__json_get_i64(state, "cursor", &g.cursor) ||
        align__json_get_u64(state, "rng_counter", &g.counter) || g.n < 0 || g.cursor < 0 || g.cursor > g.n)
        return align__error(&tr->err, ALIGN_EFORMAT, "toy: bad state");
    char *data = NULL;
    size_t len = 0;
    int rc = align__ckpt_read(ck, "toy.buffer.bin", &data, &len);
    if (rc)
        return rc;
    if (len != (size_t)g.n * sizeof(float)) {
        align__free(data);
        return align__error(&tr->err, ALIGN_EFORMAT, "toy: buffer size");
    }
    toy_staged *p = align__malloc(sizeof *p);
    if (!p) {
        align__free(data);
        return ALIGN_ENOMEM;
    }
    g.buf = (float *)data;
    *p = g;
    *staged = p;
    return ALIGN_OK;
}

static int toy_apply_state(align_trainer *tr, void *staged)
{
    toy *t = tr->algo;
    toy_staged *g = staged;
    align__free(t->buf);
    t->buf = g->buf;
    g->buf = NULL;
    t->n = t->cap = g->n;
    t->cursor = g->cursor;
    t->rng.counter = g->counter;
    return ALIGN_OK;
}

static void toy_free_staged(align_trainer *tr, void *staged)
{
    (void)tr;
    toy_staged *g = staged;
    align__free(g->buf);
    align__free(g);
}

static int toy_setup(const align_trainer *tr, json_t *obj)
{
    (void)tr;
    return json_object_set_new(obj, "toy", json_integer(ROLLOUT)) ? ALIGN_ENOMEM : ALIGN_OK;
}

static void toy_free(align_trainer *tr)
{
    toy *t = tr->algo;
    if (t)
        align__free(t->buf);
    align__free(t);
    tr->algo = NULL;
}

static const align__trainer_vtable toy_vt = {
    .name = "toy",
    .algorithm = 99,
    .rollout = toy_rollout,
    .accumulate = toy_accumulate,
    .evaluate = toy_evaluate,
    .progress = toy_progress,
    .epoch = toy_epoch,
    .begin = toy_begin,
    .rollback = toy_rollback,
    .save_state = toy_save_state,
    .load_state = toy_load_state,
    .apply_state = toy_apply_state,
    .free_staged = toy_free_staged,
    .setup_json = toy_setup,
    .free = toy_free,
};

/* ---- fixtures ---------------------------------------------------------------- */

typedef struct rig {
    align_model *policy, *value, *ref;
    align_optimizer *popt, *vopt;
    align_trainer *tr;
} rig;

static align_model *mk(uint32_t flags, uint64_t seed)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = 1;
    p.n_head = 2;
    p.n_embd = 8;
    p.vocab_size = NV;
    p.max_seq_len = NT;
    p.flags = flags;
    p.seed = seed;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &p), 0);
    return m;
}

static align_optimizer *mkopt(align_model *m)
{
    align_optimizer_params op;
    align_optimizer_default_params(&op, sizeof op);
    op.learning_rate = 1e-2f;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), 0);
    return o;
}

static int cb_reject_at;
static int cb_calls;
static int reject_cb(const align_step_stats *s, void *ud)
{
    (void)s;
    (void)ud;
    return ++cb_calls == cb_reject_at ? -1 : 0;
}

static rig rig_open(uint64_t seed)
{
    rig r;
    r.policy = mk(0, seed);
    r.value = mk(ALIGN_MODEL_SCALAR_HEAD, seed + 1);
    align_model *base = mk(0, 3);
    ck_assert_int_eq(align_model_clone(&r.ref, base, ALIGN_FROZEN), 0);
    align_model_free(base);
    r.popt = mkopt(r.policy);
    r.vopt = mkopt(r.value);
    align__role roles[3] = {{"policy", r.policy, r.popt}, {"value", r.value, r.vopt}, {"reference", r.ref, NULL}};
    ck_assert_int_eq(align__trainer_new_roles(&r.tr, &toy_vt, roles, 3, reject_cb, NULL), 0);
    toy *t = align__calloc(1, sizeof *t);
    align__rng_init(&t->rng, 77, 0);
    t->nan_at_cursor = -1;
    r.tr->algo = t;
    return r;
}

static void rig_close(rig *r)
{
    align_trainer_free(r->tr);
    align_optimizer_free(r->popt);
    align_optimizer_free(r->vopt);
    align_model_free(r->policy);
    align_model_free(r->value);
    align_model_free(r->ref);
}

/* weights fingerprint of a model: its scalar and log-prob outputs */
static void fp(align_model *m, float out[NB * NT + NB * (NT - 1)])
{
    align_model_params c;
    memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    ck_assert_int_eq(align_model_config(m, &c), 0);
    memset(out, 0, sizeof(float) * (NB * NT + NB * (NT - 1)));
    float *sc = (c.flags & ALIGN_MODEL_SCALAR_HEAD) ? out + NB * (NT - 1) : NULL;
    ck_assert_int_eq(align_model_forward(m, toks, lens, NB, NT, out, sc, NULL), 0);
}

static int same_model(align_model *a, const float *ref)
{
    float x[NB * NT + NB * (NT - 1)];
    fp(a, x);
    return memcmp(x, ref, sizeof x) == 0;
}

static double metric(const align_trainer *tr, const char *name)
{
    double v = NAN;
    ck_assert_msg(align_trainer_metric(tr, ALIGN_METRICS_STEP, name, &v) == 0, "metric %s", name);
    return v;
}

/* ---- tests --------------------------------------------------------------------- */

START_TEST(test_discarded_step_leaves_every_role)
{
    rig r = rig_open(5);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    cb_calls = 0;
    cb_reject_at = 2;
    ck_assert_int_eq(align_trainer_step(r.tr, &st), 0);
    ck_assert(metric(r.tr, "value/grad_norm") > 0);
    ck_assert(metric(r.tr, "value/learning_rate") > 0);
    ck_assert(metric(r.tr, "grad_norm") == (double)st.grad_norm);
    ck_assert(isfinite(metric(r.tr, "objective/kl")));
    ck_assert(metric(r.tr, "rollout/size") == ROLLOUT);
    float p0[NB * NT + NB * (NT - 1)], v0[NB * NT + NB * (NT - 1)], f0[NB * NT + NB * (NT - 1)];
    fp(r.policy, p0);
    fp(r.value, v0);
    fp(r.ref, f0);
    toy *t = r.tr->algo;
    int64_t cursor = t->cursor;
    /* rejected: nothing of either trainable role changes */
    ck_assert_int_eq(align_trainer_step(r.tr, &st), ALIGN_ECALLBACK);
    ck_assert(same_model(r.policy, p0));
    ck_assert(same_model(r.value, v0));
    ck_assert(same_model(r.ref, f0));
    ck_assert_int_eq(align_optimizer_steps_done(r.popt), 1);
    ck_assert_int_eq(align_optimizer_steps_done(r.vopt), 1);
    ck_assert_int_eq(t->cursor, cursor);
    /* the same step runs again */
    ck_assert_int_eq(align_trainer_step(r.tr, &st), 0);
    ck_assert_int_eq(align_optimizer_steps_done(r.vopt), 2);
    ck_assert(!same_model(r.value, v0));
    ck_assert(same_model(r.ref, f0)); /* frozen */

    /* a rollout that was rejected together with its step is kept: no second rollout */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(align_trainer_step(r.tr, &st), 0);
    ck_assert_int_eq(t->rollouts, 1);
    ck_assert_int_eq(t->cursor, ROLLOUT);
    cb_reject_at = cb_calls + 1;
    ck_assert_int_eq(align_trainer_step(r.tr, &st), ALIGN_ECALLBACK); /* a rollout ran, then rejected */
    ck_assert_int_eq(t->rollouts, 2);
    ck_assert_int_eq(align_trainer_step(r.tr, &st), 0);
    ck_assert_int_eq(t->rollouts, 2);
    ck_assert_int_eq(t->n, 2 * ROLLOUT);

    /* a stop during the rollout rolls it back */
    t->cursor = t->n;
    int before = t->rollouts;
    int64_t n = t->n;
    align_trainer_request_stop(r.tr);
    ck_assert_int_eq(align_trainer_step(r.tr, &st), ALIGN_ECANCELED);
    ck_assert_int_eq(t->n, n);
    ck_assert_int_eq(t->rollouts, before + 1);

    /* a non-finite gradient in the value role skips the update of both */
    ck_assert_int_eq(align_trainer_step(r.tr, &st), 0);
    fp(r.policy, p0);
    fp(r.value, v0);
    int64_t ps = align_optimizer_steps_done(r.popt);
    t->nan_at_cursor = t->cursor;
    ck_assert_int_eq(align_trainer_step(r.tr, &st), 0);
    ck_assert_uint_eq(st.skipped, 1);
    ck_assert(same_model(r.policy, p0));
    ck_assert(same_model(r.value, v0));
    ck_assert_int_eq(align_optimizer_steps_done(r.popt), ps);
    ck_assert_int_eq(align_optimizer_steps_done(r.vopt), ps);
    rig_close(&r);
}
END_TEST

START_TEST(test_roles_save_resume)
{
    enum { N = 8, K = 3 };
    char *dir = test_tmpdir("roles");
    char ck[4200];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    cb_reject_at = -1;

    float loss[N], pend[NB * NT + NB * (NT - 1)], vend[NB * NT + NB * (NT - 1)];
    rig a = rig_open(5);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(align_trainer_step(a.tr, &st), 0);
        loss[i] = st.loss;
    }
    fp(a.policy, pend);
    fp(a.value, vend);
    rig_close(&a);

    rig b = rig_open(5);
    for (int i = 0; i < K; i++)
        ck_assert_int_eq(align_trainer_step(b.tr, &st), 0);
    ck_assert_int_eq(align_trainer_save(b.tr, ck), 0);
    rig_close(&b);
    const char *files[] = {"model.safetensors", "optimizer.safetensors", "value.safetensors",
                           "value.optimizer.safetensors", "toy.buffer.bin", "trainer.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", ck, files[i]);
        ck_assert_msg(access(p, R_OK) == 0, "%s missing", files[i]);
    }
    char refp[4300];
    snprintf(refp, sizeof refp, "%s/reference.safetensors", ck);
    ck_assert_int_ne(access(refp, R_OK), 0); /* frozen roles are not saved */

    rig c = rig_open(123); /* other weights: resume replaces both roles */
    ck_assert_msg(align_trainer_resume(c.tr, ck) == 0, "%s", align_trainer_errmsg(c.tr));
    for (int i = K; i < N; i++) {
        ck_assert_int_eq(align_trainer_step(c.tr, &st), 0);
        ck_assert_msg(memcmp(&st.loss, &loss[i], sizeof(float)) == 0, "step %d", i + 1);
    }
    ck_assert(same_model(c.policy, pend));
    ck_assert(same_model(c.value, vend));
    rig_close(&c);

    /* a damaged state file or value role file: refused, nothing changed */
    const char *victims[] = {"toy.buffer.bin", "value.optimizer.safetensors", "value.safetensors"};
    for (size_t k = 0; k < 3; k++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", ck, victims[k]);
        FILE *f = fopen(p, "r+b");
        ck_assert_ptr_nonnull(f);
        fseek(f, -1, SEEK_END);
        int ch = fgetc(f);
        fseek(f, -1, SEEK_END);
        fputc(ch ^ 1, f);
        fclose(f);
        rig d = rig_open(5);
        ck_assert_int_eq(align_trainer_step(d.tr, &st), 0);
        float p1[NB * NT + NB * (NT - 1)], v1[NB * NT + NB * (NT - 1)];
        fp(d.policy, p1);
        fp(d.value, v1);
        toy *t = d.tr->algo;
        int64_t n = t->n;
        ck_assert_int_eq(align_trainer_resume(d.tr, ck), ALIGN_EFORMAT);
        ck_assert_ptr_nonnull(strstr(align_trainer_errmsg(d.tr), "does not belong"));
        ck_assert(same_model(d.policy, p1));
        ck_assert(same_model(d.value, v1));
        ck_assert_int_eq(t->n, n);
        ck_assert_int_eq(align_optimizer_steps_done(d.vopt), 1);
        rig_close(&d);
        f = fopen(p, "r+b");
        fseek(f, -1, SEEK_END);
        fputc(ch, f);
        fclose(f);
    }
    free(dir);
}
END_TEST

/* Re-seals an edited file of checkpoint ck: its digest and size in
 * trainer.json, so that resume reaches the file's contents. */
static void reseal(const char *ck, const char *role, const char *file)
{
    char p[4300], tj[4300];
    snprintf(p, sizeof p, "%s/%s", ck, file);
    snprintf(tj, sizeof tj, "%s/trainer.json", ck);
    align__errbuf eb = {{0}};
    uint64_t d, sz;
    ck_assert_int_eq(align__file_digest(&eb, p, &d, &sz), ALIGN_OK);
    json_error_t je;
    json_t *root = json_load_file(tj, 0, &je);
    ck_assert_ptr_nonnull(root);
    json_t *e = json_object_get(json_object_get(root, "roles"), role);
    ck_assert(json_is_object(e));
    ck_assert_int_eq(align__json_set_u64(e, "optimizer_digest", d), 0);
    ck_assert_int_eq(align__json_set_u64(e, "optimizer_bytes", sz), 0);
    ck_assert_int_eq(json_dump_file(root, tj, JSON_INDENT(2)), 0);
    json_decref(root);
}

static void copy_file(const char *from, const char *to)
{
    st_image im = st_image_read(from);
    FILE *f = fopen(to, "wb");
    ck_assert(f && fwrite(im.buf, 1, im.len, f) == im.len);
    ck_assert_int_eq(fclose(f), 0);
    st_image_free(&im);
}

static int files_equal(const char *a, const char *b)
{
    st_image x = st_image_read(a), y = st_image_read(b);
    int same = x.len == y.len && memcmp(x.buf, y.buf, x.len) == 0;
    st_image_free(&x);
    st_image_free(&y);
    return same;
}

/* A checkpoint whose optimizer file was edited (moments or step; its
 * checksum and trainer.json digest re-sealed, so only the contents are
 * wrong) is refused with ALIGN_EFORMAT and a message naming the tensor or
 * the step, and the trainer, its models and optimizers stay bitwise as they
 * were: their state saves to the same bytes and the next step equals a
 * trainer's that never tried. The clean checkpoint then resumes. */
START_TEST(test_resume_refuses_bad_optimizer_state)
{
    char *dir = test_tmpdir("roles-optstate");
    char ck[4200], keep[4300], o1[4300], o2[4300], o3[4300], o4[4300];
    snprintf(ck, sizeof ck, "%s/ck", dir);
    snprintf(o1, sizeof o1, "%s/p1.safetensors", dir);
    snprintf(o2, sizeof o2, "%s/v1.safetensors", dir);
    snprintf(o3, sizeof o3, "%s/p2.safetensors", dir);
    snprintf(o4, sizeof o4, "%s/v2.safetensors", dir);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    cb_reject_at = -1;
    rig b = rig_open(5);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(align_trainer_step(b.tr, &st), 0);
    ck_assert_int_eq(align_trainer_save(b.tr, ck), 0);
    rig_close(&b);

    struct {
        const char *role, *file, *tensor;
        float value;
        const char *key, *meta, *want;
    } cases[] = {
        {"value", "value.optimizer.safetensors", "exp_avg_sq", -1.0f, NULL, NULL,
         "exp_avg_sq of 'h.0.attn.c_attn.weight' at 17 has a negative value (-1)"},
        {"policy", "optimizer.safetensors", "exp_avg_sq", NAN, NULL, NULL,
         "exp_avg_sq of 'h.0.attn.c_attn.weight' at 17 is NaN"},
        {"policy", "optimizer.safetensors", "exp_avg", INFINITY, NULL, NULL,
         "exp_avg of 'h.0.attn.c_attn.weight' at 17 is infinite"},
        {"value", "value.optimizer.safetensors", NULL, 0.0f, "step", "4",
         "role 'value': optimizer_steps is 3 but value.optimizer.safetensors holds 4"},
        {"policy", "optimizer.safetensors", NULL, 0.0f, "step", "0", "step is 0 but exp_avg"},
        {"policy", "optimizer.safetensors", NULL, 0.0f, "step", "-3", "step '-3' is not a number"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", ck, cases[c].file);
        snprintf(keep, sizeof keep, "%s/keep.bin", dir);
        copy_file(p, keep);
        st_image im = st_image_read(p);
        if (cases[c].tensor) {
            json_t *e = json_object_get(im.hdr, "exp_avg");
            ck_assert(json_is_object(e));
            /* element 17 of h.0.attn.c_attn.weight: the offset of that tensor */
            align_model *m = mk(0, 1);
            align__train_view v;
            align__model_train_view(m, &v);
            size_t at = 0;
            for (int k = 0; k < v.n_tensors; k++)
                if (strcmp(v.tensors[k].name, "h.0.attn.c_attn.weight") == 0)
                    at = v.tensors[k].offset + 17;
            align_model_free(m);
            ck_assert(at > 0);
            st_image_set(&im, cases[c].tensor, at, cases[c].value);
        } else {
            st_image_meta(&im, cases[c].key, cases[c].meta);
        }
        st_image_write(&im, p);
        st_image_free(&im);
        reseal(ck, cases[c].role, cases[c].file);

        rig d = rig_open(5), e = rig_open(5);
        ck_assert_int_eq(align_trainer_step(d.tr, &st), 0);
        ck_assert_int_eq(align_trainer_step(e.tr, &st), 0);
        float p1[NB * NT + NB * (NT - 1)], v1[NB * NT + NB * (NT - 1)];
        fp(d.policy, p1);
        fp(d.value, v1);
        ck_assert_int_eq(align_optimizer_save(d.popt, o1), 0);
        ck_assert_int_eq(align_optimizer_save(d.vopt, o2), 0);
        ck_assert_int_eq(align_trainer_resume(d.tr, ck), ALIGN_EFORMAT);
        ck_assert_msg(strstr(align_trainer_errmsg(d.tr), cases[c].want), "case %zu: %s", c,
                      align_trainer_errmsg(d.tr));
        ck_assert(same_model(d.policy, p1));
        ck_assert(same_model(d.value, v1));
        ck_assert_int_eq(align_optimizer_save(d.popt, o3), 0);
        ck_assert_int_eq(align_optimizer_save(d.vopt, o4), 0);
        ck_assert(files_equal(o1, o3));
        ck_assert(files_equal(o2, o4));
        /* the next step is the one a trainer that never tried runs */
        align_step_stats sd, se;
        align_step_stats_init(&sd, sizeof sd);
        align_step_stats_init(&se, sizeof se);
        ck_assert_int_eq(align_trainer_step(d.tr, &sd), 0);
        ck_assert_int_eq(align_trainer_step(e.tr, &se), 0);
        ck_assert_int_eq(sd.step, 2);
        ck_assert(memcmp(&sd.loss, &se.loss, sizeof sd.loss) == 0);
        fp(e.policy, p1);
        fp(e.value, v1);
        ck_assert(same_model(d.policy, p1));
        ck_assert(same_model(d.value, v1));
        rig_close(&d);
        rig_close(&e);
        copy_file(keep, p);
        reseal(ck, cases[c].role, cases[c].file);
    }
    /* restored: resumes, and continues as the run that saved it */
    rig a = rig_open(5), c2 = rig_open(123);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(align_trainer_step(a.tr, &st), 0);
    ck_assert_msg(align_trainer_resume(c2.tr, ck) == 0, "%s", align_trainer_errmsg(c2.tr));
    align_step_stats sa, sc;
    align_step_stats_init(&sa, sizeof sa);
    align_step_stats_init(&sc, sizeof sc);
    ck_assert_int_eq(align_trainer_step(a.tr, &sa), 0);
    ck_assert_int_eq(align_trainer_step(c2.tr, &sc), 0);
    ck_assert(memcmp(&sa.loss, &sc.loss, sizeof sa.loss) == 0);
    float pa[NB * NT + NB * (NT - 1)];
    fp(a.policy, pa);
    ck_assert(same_model(c2.policy, pa));
    fp(a.value, pa);
    ck_assert(same_model(c2.value, pa));
    rig_close(&a);
    rig_close(&c2);
    free(dir);
}
END_TEST

START_TEST(test_role_table_checks)
{
    align_model *a = mk(0, 1), *b = mk(0, 2);
    align_optimizer *oa = mkopt(a), *ob = mkopt(b);
    align_trainer *tr = (align_trainer *)1;
    align__role dup[2] = {{"policy", a, oa}, {"policy", b, ob}};
    ck_assert_int_eq(align__trainer_new_roles(&tr, &toy_vt, dup, 2, NULL, NULL), ALIGN_EINVAL);
    ck_assert_ptr_null(tr);
    align__role wrong[1] = {{"policy", a, ob}};
    ck_assert_int_eq(align__trainer_new_roles(&tr, &toy_vt, wrong, 1, NULL, NULL), ALIGN_EINVAL);
    align__role shared[2] = {{"policy", a, oa}, {"reference", a, NULL}};
    ck_assert_int_eq(align__trainer_new_roles(&tr, &toy_vt, shared, 2, NULL, NULL), ALIGN_EINVAL);
    align__role badname[1] = {{"Policy!", a, oa}};
    ck_assert_int_eq(align__trainer_new_roles(&tr, &toy_vt, badname, 1, NULL, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align__trainer_new_roles(&tr, &toy_vt, badname, 0, NULL, NULL), ALIGN_EINVAL);
    align__role frozen[2] = {{"reference", a, NULL}, {"reward", b, NULL}};
    ck_assert_int_eq(align__trainer_new_roles(&tr, &toy_vt, frozen, 2, NULL, NULL), 0);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    ck_assert_int_eq(align_trainer_step(tr, &st), ALIGN_EMISUSE); /* evaluation only */
    ck_assert_int_eq(align_trainer_save(tr, "/tmp/x"), ALIGN_EMISUSE);
    ck_assert_ptr_eq(align__trainer_role_model(tr, "reward"), b);
    ck_assert_ptr_null(align__trainer_role_model(tr, "value"));
    align_trainer_free(tr);
    align_optimizer_free(oa);
    align_optimizer_free(ob);
    align_model_free(a);
    align_model_free(b);
}
END_TEST

START_TEST(test_json_counters)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "ok", "123", "max", "9223372036854775807", "over",
                          "9223372036854775808", "huge", "99999999999999999999", "empty", "", "plus", "+1", "neg",
                          "-5", "int", 5);
    int64_t v;
    uint64_t u;
    ck_assert_int_eq(align__json_get_i64(o, "ok", &v), 0);
    ck_assert_int_eq(v, 123);
    ck_assert_int_eq(align__json_get_i64(o, "max", &v), 0);
    ck_assert_int_eq(align__json_get_i64(o, "over", &v), ALIGN_EFORMAT);
    ck_assert_int_eq(align__json_get_u64(o, "over", &u), 0);
    ck_assert_int_eq(align__json_get_u64(o, "huge", &u), ALIGN_EFORMAT);
    ck_assert_int_eq(align__json_get_i64(o, "empty", &v), ALIGN_EFORMAT);
    ck_assert_int_eq(align__json_get_i64(o, "plus", &v), ALIGN_EFORMAT);
    ck_assert_int_eq(align__json_get_i64(o, "neg", &v), 0);
    ck_assert_int_eq(v, -5);
    ck_assert_int_eq(align__json_get_u64(o, "neg", &u), ALIGN_EFORMAT);
    ck_assert_int_eq(align__json_get_i64(o, "int", &v), ALIGN_EFORMAT);
    ck_assert_int_eq(align__json_get_i64(o, "missing", &v), ALIGN_EFORMAT);
    json_decref(o);
}
END_TEST


/* SFT on the roles engine equals a plain loop written against the model and
 * optimizer calls (any BLAS, any machine): same rows from the batcher, the
 * same -1/N per loss token pushed through align_model_backward, one
 * align_optimizer_step per step. Losses and final weights bitwise. */
START_TEST(test_sft_matches_plain_loop)
{
    enum { L = 32, MB = 3, ACC = 2, R = MB * ACC, STEPS = 6 };
    align_tokenizer *tok = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&tok), 0);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), 0);
    for (int k = 0; k < 13; k++) {
        char p[32], c[8];
        snprintf(p, sizeof p, "caps %c%c%c:", 'a' + k % 8, 'a' + (k * 3) % 8, 'a' + (k * 5) % 7);
        snprintf(c, sizeof c, "%c%c%c", 'A' + k % 8, 'A' + (k * 3) % 8, 'A' + (k * 5) % 7);
        ck_assert_int_eq(align_dataset_add_demo(d, p, c, NULL), 0);
    }
    align_model_params mp;
    align_model_default_params(&mp, sizeof mp);
    mp.n_layer = 2;
    mp.n_head = 2;
    mp.n_embd = 32;
    mp.vocab_size = 257;
    mp.max_seq_len = L;
    mp.seed = 8;
    align_model *ma = NULL, *mb = NULL;
    ck_assert_int_eq(align_model_create(&ma, &mp), 0);
    ck_assert_int_eq(align_model_create(&mb, &mp), 0);
    align_optimizer *oa = mkopt(ma), *ob = mkopt(mb);

    align_sft_params sp;
    align_sft_default_params(&sp, sizeof sp);
    sp.micro_batch = MB;
    sp.grad_accum = ACC;
    sp.max_steps = STEPS;
    sp.max_seq_len = L;
    sp.seed = 42;
    align_trainer *tr = NULL;
    ck_assert_int_eq(align_trainer_create_sft(&tr, ma, tok, d, oa, &sp), 0);
    float loss_a[STEPS];
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    for (int i = 0; i < STEPS; i++) {
        ck_assert_int_eq(align_trainer_step(tr, &st), 0);
        loss_a[i] = st.loss;
    }
    ck_assert_int_eq(align_trainer_step(tr, &st), ALIGN_DONE);

    /* the plain loop */
    align__batch_params bp;
    memset(&bp, 0, sizeof bp);
    bp.flags = ALIGN__BATCH_SHUFFLE;
    bp.max_len = L;
    bp.seed = 42;
    align__batcher *b = NULL;
    ck_assert_int_eq(align__batcher_create(&b, d, tok, &bp, NULL), 0);
    static int32_t rows[R * L], rlens[R], mtok[MB * L], mlen[MB];
    static uint8_t mask[R * (L - 1)];
    static float lp[MB * (L - 1)], dlp[MB * (L - 1)];
    for (int i = 0; i < STEPS; i++) {
        int32_t got = 0;
        ck_assert_int_eq(align__batcher_next(b, R, 1, rows, rlens, mask, &got), 0);
        ck_assert_int_eq(got, R);
        int64_t N = 0;
        for (int r = 0; r < R; r++)
            for (int t = 0; t + 1 < rlens[r]; t++)
                N += mask[r * (L - 1) + t] != 0;
        double sum = 0;
        for (int r0 = 0; r0 < R; r0 += MB) {
            int32_t T = 2;
            for (int j = 0; j < MB; j++)
                T = rlens[r0 + j] > T ? rlens[r0 + j] : T;
            for (int j = 0; j < MB; j++) {
                memcpy(mtok + j * T, rows + (r0 + j) * L, (size_t)T * sizeof(int32_t));
                mlen[j] = rlens[r0 + j];
            }
            ck_assert_int_eq(align_model_forward(mb, mtok, mlen, MB, T, lp, NULL, NULL), 0);
            for (int j = 0; j < MB; j++)
                for (int t = 0; t < T - 1; t++) {
                    int in = t + 1 < mlen[j] && mask[(r0 + j) * (L - 1) + t];
                    if (in)
                        sum -= (double)lp[j * (T - 1) + t];
                    dlp[j * (T - 1) + t] = in ? -1.0f / (float)N : 0.0f;
                }
            ck_assert_int_eq(align_model_backward(mb, dlp, NULL), 0);
        }
        float loss = (float)(sum / (double)N);
        ck_assert_msg(memcmp(&loss, &loss_a[i], sizeof loss) == 0, "step %d: %.9g vs %.9g", i + 1, (double)loss,
                      (double)loss_a[i]);
        ck_assert_int_eq(align_optimizer_step(ob, NULL), 0);
    }
    /* weights: the whole parameter files are equal */
    char *dir = test_tmpdir("plainloop");
    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/a.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/b.safetensors", dir);
    ck_assert_int_eq(align_model_save(ma, pa), 0);
    ck_assert_int_eq(align_model_save(mb, pb), 0);
    FILE *xa = fopen(pa, "rb"), *xb = fopen(pb, "rb");
    int ca, cb, same = 1;
    do {
        ca = fgetc(xa);
        cb = fgetc(xb);
        same &= ca == cb;
    } while (ca != EOF && cb != EOF);
    fclose(xa);
    fclose(xb);
    ck_assert_msg(same, "the trainer's weights differ from the plain loop's");
    free(dir);
    align__batcher_free(b);
    align_trainer_free(tr);
    align_optimizer_free(oa);
    align_optimizer_free(ob);
    align_model_free(ma);
    align_model_free(mb);
    align_dataset_free(d);
    align_tokenizer_free(tok);
}
END_TEST

Suite *internal_trainer_suite(void)
{
    Suite *s = suite_create("internal_trainer");
    TCase *tc = test_tcase(s, "roles", 120);
    tcase_add_test(tc, test_discarded_step_leaves_every_role);
    tcase_add_test(tc, test_roles_save_resume);
    tcase_add_test(tc, test_resume_refuses_bad_optimizer_state);
    tcase_add_test(tc, test_role_table_checks);
    tcase_add_test(tc, test_json_counters);
    tcase_add_test(tc, test_sft_matches_plain_loop);
    return s;
}
