/*
 * trainer.c — what every algorithm shares: one optimiser step with its
 * guards and callbacks, evaluation, stop requests, checkpoints.
 *
 * A step, whatever the algorithm:
 *   1. snapshot the algorithm's iteration state (data position, RNG);
 *   2. zero the gradients; vt->accumulate() runs the micro-batches
 *      (polling the stop flag between them) and adds their gradients;
 *   3. global gradient norm; a non-finite loss or norm marks the step skipped;
 *   4. on_step(stats) — before anything is applied; < 0 discards the step;
 *   5. align_optimizer_step() unless skipped; counters advance.
 * Any failure in 2–5 zeroes the gradients and restores the snapshot, so the
 * model, the optimizer and the data position are as before the call and the
 * same step can be run again.
 *
 * Non-finite values (docs/trainer.md): the step returns ALIGN_OK with
 * stats.skipped = 1; the data of that step is consumed, the weights and the
 * optimizer are untouched, and a warning is logged. The step counts towards
 * max_steps (so a run always ends) but not towards the optimizer's steps.
 */
#include "train/trainer.h"
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TRAINER_FORMAT "libalign-trainer"
#define TRAINER_FORMAT_VERSION 1

/* ---- construction -------------------------------------------------------- */

int align__trainer_new(align_trainer **out, const align__trainer_vtable *vt, align_model *policy,
                       align_optimizer *opt, align_step_fn on_step, void *on_step_ud)
{
    *out = NULL;
    align_trainer *tr = align__calloc(1, sizeof *tr);
    if (!tr)
        return align__error(NULL, ALIGN_ENOMEM, "trainer: out of memory");
    tr->vt = vt;
    tr->policy = policy;
    tr->opt = opt;
    tr->on_step = on_step;
    tr->on_step_ud = on_step_ud;
    atomic_init(&tr->stop, 0);
    if (vt->state_size) {
        tr->state_tmp = align__calloc(1, vt->state_size);
        tr->state_tmp2 = align__calloc(1, vt->state_size);
        if (!tr->state_tmp || !tr->state_tmp2) {
            align__free(tr->state_tmp);
            align__free(tr->state_tmp2);
            align__free(tr);
            return align__error(NULL, ALIGN_ENOMEM, "trainer: out of memory");
        }
    }
    *out = tr;
    return ALIGN_OK;
}

ALIGN_API void align_trainer_free(align_trainer *tr)
{
    if (!tr)
        return;
    if (atomic_load(&tr->busy)) {   /* libuv: freed by the step's completion */
        tr->free_pending = 1;
        return;
    }
    align__trainer_destroy(tr);
}

void align__trainer_destroy(align_trainer *tr)
{
    if (tr->vt && tr->vt->free)
        tr->vt->free(tr);
    align__free(tr->state_tmp);
    align__free(tr->state_tmp2);
    align__free(tr);
}

ALIGN_API const char *align_trainer_errmsg(const align_trainer *tr)
{
    if (!tr)
        return "trainer is NULL";
    return align__errmsg(&tr->err);
}

ALIGN_API int align_trainer_request_stop(align_trainer *tr)
{
    /* Only a lock-free atomic store: safe from any thread or a signal handler. */
    if (!tr)
        return ALIGN_EINVAL;
    atomic_store(&tr->stop, 1);
    return ALIGN_OK;
}

int align__trainer_poll_stop(align_trainer *tr)
{
    if (atomic_exchange(&tr->stop, 0))
        return align__error(&tr->err, ALIGN_ECANCELED, "step stopped by align_trainer_request_stop");
    return ALIGN_OK;
}

ALIGN_API int align_step_stats_init(align_step_stats *out, size_t struct_size)
{
    align_step_stats zero;
    memset(&zero, 0, sizeof zero);
    return align__params_defaults(out, struct_size, &zero, sizeof zero, "align_step_stats_init");
}

/* Copies the prefix of *src the caller declared in out->struct_size. */
static int stats_out(align_trainer *tr, align_step_stats *out, const align_step_stats *src)
{
    if (!out)
        return ALIGN_OK;
    size_t n = align__out_size(out, sizeof *src);
    if (n == 0)
        return align__error(&tr->err, ALIGN_EINVAL,
                            "align_step_stats.struct_size is not set (use align_step_stats_init)");
    uint32_t theirs = out->struct_size;
    memcpy((char *)out + sizeof(uint32_t), (const char *)src + sizeof(uint32_t), n - sizeof(uint32_t));
    out->struct_size = theirs;
    return ALIGN_OK;
}

static int check_stats_arg(align_trainer *tr, const align_step_stats *stats)
{
    if (stats && stats->struct_size < sizeof(uint32_t) * 2)
        return align__error(&tr->err, ALIGN_EINVAL,
                            "align_step_stats.struct_size is %u (use align_step_stats_init)",
                            (unsigned)stats->struct_size);
    return ALIGN_OK;
}

/* ---- one step ------------------------------------------------------------- */

static void rollback(align_trainer *tr)
{
    align_model_zero_grad(tr->policy);
    if (tr->vt->state_size)
        (void)tr->vt->set_state(tr, tr->state_tmp);
}

ALIGN_API int align_trainer_step(align_trainer *tr, align_step_stats *stats)
{
    if (tr)
        ALIGN__TRAINER_NOT_BUSY(tr, "align_trainer_step");
    return align__trainer_step(tr, stats);
}

int align__trainer_step(align_trainer *tr, align_step_stats *stats)
{
    if (!tr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_step: trainer is NULL");
    align__error_clear(&tr->err);
    int rc = check_stats_arg(tr, stats);
    if (rc)
        return rc;
    if (!tr->opt)
        return align__error(&tr->err, ALIGN_EMISUSE,
                            "align_trainer_step: this trainer was created without an optimizer (evaluation only)");

    align__step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.stats.struct_size = sizeof ctx.stats;
    ctx.stats.algorithm = tr->vt->algorithm;

    if (tr->finished) {
        ctx.stats.step = tr->steps;
        ctx.stats.epoch = tr->vt->epoch(tr);
        ctx.stats.progress = 1.0f;
        stats_out(tr, stats, &ctx.stats);
        return ALIGN_DONE;
    }

    if (tr->vt->state_size)
        tr->vt->get_state(tr, tr->state_tmp);
    double t0 = align__now_sec();
    rc = align_model_zero_grad(tr->policy);
    if (rc < 0)
        return align__error(&tr->err, rc, "step: %s", align_model_errmsg(tr->policy));

    rc = tr->vt->accumulate(tr, &ctx);
    if (rc == ALIGN_DONE) {
        rollback(tr);
        tr->finished = 1;
        ctx.stats.step = tr->steps;
        ctx.stats.epoch = tr->vt->epoch(tr);
        ctx.stats.progress = 1.0f;
        stats_out(tr, stats, &ctx.stats);
        return ALIGN_DONE;
    }
    if (rc < 0) {
        rollback(tr);
        return rc;
    }

    align_step_stats *s = &ctx.stats;
    s->algorithm = tr->vt->algorithm;
    s->step = tr->steps + 1;
    s->epoch = tr->vt->epoch(tr);
    s->learning_rate = align_optimizer_lr(tr->opt);
    float gn = align__model_grad_norm(tr->policy);
    s->grad_norm = gn;
    int skip = ctx.nonfinite || ctx.empty || !isfinite(gn) || !isfinite(s->loss);
    s->skipped = skip ? 1u : 0u;
    s->progress = tr->vt->progress(tr, tr->steps + 1);
    double t1 = align__now_sec();
    s->tokens_per_sec = t1 > t0 ? (float)((double)ctx.tokens_processed / (t1 - t0)) : 0.0f;

    /* A stop that arrived during the last micro-batch still prevents the update. */
    rc = align__trainer_poll_stop(tr);
    if (rc < 0) {
        rollback(tr);
        return rc;
    }

    int finish_after = 0;
    if (tr->on_step) {
        int cb = tr->on_step(s, tr->on_step_ud);
        if (cb < 0) {
            rollback(tr);
            return align__error(&tr->err, ALIGN_ECALLBACK,
                                "on_step callback returned %d at step %lld; the update was discarded", cb,
                                (long long)s->step);
        }
        if (cb == ALIGN_DONE)
            finish_after = 1;
    }

    if (skip) {
        align_model_zero_grad(tr->policy);
        if (ctx.empty)
            align__log(ALIGN_LOG_WARN, "step %lld: no loss tokens in the batch; update skipped",
                       (long long)s->step);
        else
            align__log(ALIGN_LOG_WARN, "step %lld: non-finite %s (loss %g, grad norm %g); update skipped",
                       (long long)s->step, isfinite(s->loss) && !ctx.nonfinite ? "gradient" : "loss",
                       (double)s->loss, (double)gn);
    } else {
        double t2 = align__now_sec();
        float gn2 = 0.0f;
        rc = align_optimizer_step(tr->opt, &gn2);
        s->time_optimizer_ms = (float)((align__now_sec() - t2) * 1e3);
        if (rc == ALIGN_ENONFINITE) {
            /* The optimizer saw what our norm did not (it checks per tensor). */
            s->skipped = 1;
            skip = 1;
        } else if (rc < 0) {
            rollback(tr);
            return align__error(&tr->err, rc, "optimizer step failed: %s", align_optimizer_errmsg(tr->opt));
        }
    }
    double t3 = align__now_sec();
    s->tokens_per_sec = t3 > t0 ? (float)((double)ctx.tokens_processed / (t3 - t0)) : 0.0f;

    tr->steps++;
    if (skip)
        tr->skipped++;
    tr->tokens_seen += s->tokens;
    if (finish_after)
        tr->finished = 1;
    stats_out(tr, stats, s);
    return ALIGN_OK;
}

ALIGN_API int align_trainer_evaluate(align_trainer *tr, align_dataset *eval, align_step_stats *stats)
{
    if (!tr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_evaluate: trainer is NULL");
    ALIGN__TRAINER_NOT_BUSY(tr, "align_trainer_evaluate");
    align__error_clear(&tr->err);
    if (!eval)
        return align__error(&tr->err, ALIGN_EINVAL, "align_trainer_evaluate: eval dataset is NULL");
    int rc = check_stats_arg(tr, stats);
    if (rc)
        return rc;
    align__step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.stats.struct_size = sizeof ctx.stats;
    double t0 = align__now_sec();
    rc = tr->vt->evaluate(tr, eval, &ctx);
    if (rc < 0)
        return rc;
    double t1 = align__now_sec();
    ctx.stats.algorithm = tr->vt->algorithm;
    ctx.stats.step = tr->steps;
    ctx.stats.epoch = tr->vt->epoch(tr);
    ctx.stats.learning_rate = tr->opt ? align_optimizer_lr(tr->opt) : 0.0f;
    ctx.stats.progress = tr->vt->progress(tr, tr->steps);
    ctx.stats.tokens_per_sec = t1 > t0 ? (float)((double)ctx.tokens_processed / (t1 - t0)) : 0.0f;
    stats_out(tr, stats, &ctx.stats);
    return ALIGN_OK;
}

/* ---- JSON helpers ----------------------------------------------------------- */

int align__json_set_u64(json_t *obj, const char *key, uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return json_object_set_new(obj, key, json_string(buf)) == 0 ? ALIGN_OK : ALIGN_ENOMEM;
}

int align__json_get_u64(const json_t *obj, const char *key, uint64_t *v)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (!s || !*s || *s == '-')
        return ALIGN_EFORMAT;
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end)
        return ALIGN_EFORMAT;
    *v = (uint64_t)x;
    return ALIGN_OK;
}

int align__json_set_i64(json_t *obj, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return json_object_set_new(obj, key, json_string(buf)) == 0 ? ALIGN_OK : ALIGN_ENOMEM;
}

int align__json_get_i64(const json_t *obj, const char *key, int64_t *v)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (!s || !*s)
        return ALIGN_EFORMAT;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || *end)
        return ALIGN_EFORMAT;
    *v = (int64_t)x;
    return ALIGN_OK;
}

/* ---- checkpoints ------------------------------------------------------------ */

/* A fast 64-bit digest of a file, so resume can tell that model.safetensors,
 * optimizer.safetensors and trainer.json come from the same save (a crash
 * between the three atomic writes would otherwise mix two checkpoints). */
static int file_digest(align__errbuf *eb, const char *path, uint64_t *digest, uint64_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return align__error(eb, errno == ENOENT ? ALIGN_ENOENT : ALIGN_EIO, "cannot open %s: %s", path,
                            strerror(errno));
    enum { CAP = 1 << 16 };
    unsigned char *buf = align__malloc(CAP);
    if (!buf) {
        fclose(f);
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    }
    uint64_t h = 0x9E3779B97F4A7C15ull, total = 0;
    size_t n;
    while ((n = fread(buf, 1, CAP, f)) > 0) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, buf + i, 8);
            h = (h ^ w) * 0xFF51AFD7ED558CCDull;
            h ^= h >> 29;
        }
        for (; i < n; i++)
            h = (h ^ buf[i]) * 0x100000001B3ull;
        total += n;
    }
    int bad = ferror(f);
    fclose(f);
    align__free(buf);
    if (bad)
        return align__error(eb, ALIGN_EIO, "cannot read %s", path);
    h ^= total;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    *digest = h;
    *size = total;
    return ALIGN_OK;
}

static int make_dirs(align__errbuf *eb, const char *dir)
{
    size_t n = strlen(dir);
    char *p = align__strdup(dir);
    if (!p)
        return align__error(eb, ALIGN_ENOMEM, "out of memory");
    for (size_t i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == '\0') {
            char c = p[i];
            p[i] = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int e = errno;
                align__free(p);
                return align__error(eb, ALIGN_EIO, "cannot create folder %s: %s", dir, strerror(e));
            }
            p[i] = c;
        }
    }
    align__free(p);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return align__error(eb, ALIGN_EIO, "%s is not a folder", dir);
    return ALIGN_OK;
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = align__malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static json_t *model_setup_json(const align_model *m)
{
    align_model_params cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    if (align_model_config(m, &cfg) != ALIGN_OK)
        return NULL;
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:I, s:b}", "arch", (int)cfg.arch, "n_layer",
                     (int)cfg.n_layer, "n_head", (int)cfg.n_head, "n_embd", (int)cfg.n_embd,
                     "vocab_size", (int)cfg.vocab_size, "max_seq_len", (int)cfg.max_seq_len,
                     "num_params", (json_int_t)align_model_num_params(m), "scalar_head",
                     (cfg.flags & ALIGN_MODEL_SCALAR_HEAD) != 0);
}

/* The setup a checkpoint must match: the algorithm's params and the model shape. */
static json_t *setup_json(align_trainer *tr)
{
    json_t *setup = json_object();
    json_t *model = model_setup_json(tr->policy);
    if (!setup || !model || json_object_set_new(setup, "model", model) != 0) {
        json_decref(setup);
        return NULL;
    }
    if (tr->vt->setup_json(tr, setup) != ALIGN_OK) {
        json_decref(setup);
        return NULL;
    }
    return setup;
}

ALIGN_API int align_trainer_save(const align_trainer *ctr, const char *dir)
{
    if (!ctr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_save: trainer is NULL");
    ALIGN__TRAINER_NOT_BUSY(ctr, "align_trainer_save");
    /* The trainer is const for the caller; its error buffer is the one
     * member a const call may write (the object itself was allocated
     * non-const by align__trainer_new). */
    align_trainer *tr = (align_trainer *)ctr;
    align__error_clear(&tr->err);
    if (!dir || !*dir)
        return align__error(&tr->err, ALIGN_EINVAL, "align_trainer_save: dir is NULL or empty");
    if (!tr->opt)
        return align__error(&tr->err, ALIGN_EMISUSE,
                            "align_trainer_save: this trainer was created without an optimizer (evaluation only)");
    int rc = make_dirs(&tr->err, dir);
    if (rc)
        return rc;

    char *mpath = path_join(dir, "model.safetensors");
    char *opath = path_join(dir, "optimizer.safetensors");
    char *tpath = path_join(dir, "trainer.json");
    json_t *root = NULL, *state = NULL, *setup = NULL;
    char *text = NULL;
    if (!mpath || !opath || !tpath) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
        goto done;
    }
    rc = align_model_save(tr->policy, mpath);
    if (rc < 0) {
        rc = align__error(&tr->err, rc, "saving %s: %s", mpath, align_model_errmsg(tr->policy));
        goto done;
    }
    rc = align_optimizer_save(tr->opt, opath);
    if (rc < 0) {
        rc = align__error(&tr->err, rc, "saving %s: %s", opath, align_optimizer_errmsg(tr->opt));
        goto done;
    }
    uint64_t mdig, msz, odig, osz;
    if ((rc = file_digest(&tr->err, mpath, &mdig, &msz)) < 0 ||
        (rc = file_digest(&tr->err, opath, &odig, &osz)) < 0)
        goto done;

    root = json_object();
    state = json_object();
    setup = setup_json(tr);
    if (!root || !state || !setup) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory building trainer.json");
        goto done;
    }
    if (tr->vt->state_size) {
        tr->vt->get_state(tr, tr->state_tmp2);
        if ((rc = tr->vt->state_to_json(tr, tr->state_tmp2, state)) < 0) {
            rc = align__error(&tr->err, rc, "cannot encode the trainer state");
            goto done;
        }
    }
    json_object_set_new(root, "format", json_string(TRAINER_FORMAT));
    json_object_set_new(root, "version", json_integer(TRAINER_FORMAT_VERSION));
    json_object_set_new(root, "algorithm", json_string(tr->vt->name));
    align__json_set_i64(root, "steps", tr->steps);
    align__json_set_i64(root, "skipped", tr->skipped);
    align__json_set_i64(root, "tokens_seen", tr->tokens_seen);
    json_object_set_new(root, "finished", json_boolean(tr->finished));
    align__json_set_i64(root, "optimizer_steps", align_optimizer_steps_done(tr->opt));
    align__json_set_u64(root, "model_digest", mdig);
    align__json_set_u64(root, "model_bytes", msz);
    align__json_set_u64(root, "optimizer_digest", odig);
    align__json_set_u64(root, "optimizer_bytes", osz);
    json_object_set(root, "setup", setup);
    json_object_set(root, "state", state);
    text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory writing trainer.json");
        goto done;
    }
    align__chunk ch[2] = {{text, strlen(text)}, {"\n", 1}};
    rc = align__write_atomic(&tr->err, tpath, ch, 2);
done:
    free(text);
    json_decref(root);
    json_decref(state);
    json_decref(setup);
    align__free(mpath);
    align__free(opath);
    align__free(tpath);
    return rc;
}

/* Names the first member of `a` that differs in `b` (for the error message). */
static void first_difference(const json_t *a, const json_t *b, const char *prefix, char *out, size_t cap)
{
    const char *key;
    json_t *va;
    json_object_foreach((json_t *)a, key, va)
    {
        json_t *vb = json_object_get(b, key);
        if (!vb || !json_equal(va, vb)) {
            if (json_is_object(va) && json_is_object(vb)) {
                char p[128];
                snprintf(p, sizeof p, "%s%s.", prefix, key);
                first_difference(va, vb, p, out, cap);
                return;
            }
            char *sa = json_dumps(va, JSON_ENCODE_ANY | JSON_COMPACT);
            char *sb = vb ? json_dumps(vb, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            snprintf(out, cap, "%s%s is %s in the checkpoint but %s here", prefix, key, sa ? sa : "?",
                     sb ? sb : "missing");
            free(sa);
            free(sb);
            return;
        }
    }
    const char *kb;
    json_t *vb2;
    json_object_foreach((json_t *)b, kb, vb2)
    {
        (void)vb2;
        if (!json_object_get(a, kb)) {
            snprintf(out, cap, "%s%s is missing in the checkpoint", prefix, kb);
            return;
        }
    }
    snprintf(out, cap, "the setup differs");
}

ALIGN_API int align_trainer_resume(align_trainer *tr, const char *dir)
{
    if (!tr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_resume: trainer is NULL");
    ALIGN__TRAINER_NOT_BUSY(tr, "align_trainer_resume");
    align__error_clear(&tr->err);
    if (!dir || !*dir)
        return align__error(&tr->err, ALIGN_EINVAL, "align_trainer_resume: dir is NULL or empty");
    if (!tr->opt)
        return align__error(&tr->err, ALIGN_EMISUSE,
                            "align_trainer_resume: this trainer was created without an optimizer (evaluation only)");

    char *mpath = path_join(dir, "model.safetensors");
    char *opath = path_join(dir, "optimizer.safetensors");
    char *tpath = path_join(dir, "trainer.json");
    char *text = NULL;
    size_t len = 0;
    json_t *root = NULL, *setup = NULL;
    align_model *tmp_model = NULL;
    int rc = ALIGN_OK, state_applied = 0;
    if (!mpath || !opath || !tpath) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
        goto done;
    }

    /* 1. trainer.json: parse and check everything before touching anything. */
    rc = align__read_file(&tr->err, tpath, &text, &len);
    if (rc < 0)
        goto done;
    json_error_t jerr;
    root = json_loadb(text, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        rc = align__error(&tr->err, ALIGN_EFORMAT, "%s:%d: %s", tpath, root ? 1 : jerr.line,
                          root ? "not a JSON object" : jerr.text);
        goto done;
    }
    const char *fmt = json_string_value(json_object_get(root, "format"));
    json_t *ver = json_object_get(root, "version");
    if (!fmt || strcmp(fmt, TRAINER_FORMAT) != 0) {
        rc = align__error(&tr->err, ALIGN_EFORMAT, "%s: not a libalign trainer checkpoint", tpath);
        goto done;
    }
    if (!json_is_integer(ver) || json_integer_value(ver) != TRAINER_FORMAT_VERSION) {
        rc = align__error(&tr->err, ALIGN_EVERSION, "%s: checkpoint format version %lld is not supported (%d is)",
                          tpath, (long long)json_integer_value(ver), TRAINER_FORMAT_VERSION);
        goto done;
    }
    const char *algo = json_string_value(json_object_get(root, "algorithm"));
    if (!algo || strcmp(algo, tr->vt->name) != 0) {
        rc = align__error(&tr->err, ALIGN_EINVAL, "%s: checkpoint of a %s trainer, this one is %s", tpath,
                          algo ? algo : "(unknown)", tr->vt->name);
        goto done;
    }
    setup = setup_json(tr);
    if (!setup) {
        rc = align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
        goto done;
    }
    json_t *saved_setup = json_object_get(root, "setup");
    if (!json_is_object(saved_setup) || !json_equal(saved_setup, setup)) {
        char what[256] = "setup missing";
        if (json_is_object(saved_setup))
            first_difference(saved_setup, setup, "", what, sizeof what);
        rc = align__error(&tr->err, ALIGN_EINVAL, "%s: the trainer was built differently: %s", tpath, what);
        goto done;
    }
    int64_t steps, skipped, tokens_seen, opt_steps;
    uint64_t mdig, msz, odig, osz;
    json_t *fin = json_object_get(root, "finished");
    if (align__json_get_i64(root, "steps", &steps) || align__json_get_i64(root, "skipped", &skipped) ||
        align__json_get_i64(root, "tokens_seen", &tokens_seen) ||
        align__json_get_i64(root, "optimizer_steps", &opt_steps) ||
        align__json_get_u64(root, "model_digest", &mdig) || align__json_get_u64(root, "model_bytes", &msz) ||
        align__json_get_u64(root, "optimizer_digest", &odig) ||
        align__json_get_u64(root, "optimizer_bytes", &osz) || !json_is_boolean(fin) || steps < 0 ||
        skipped < 0 || skipped > steps || opt_steps < 0) {
        rc = align__error(&tr->err, ALIGN_EFORMAT, "%s: missing or invalid step counters or digests", tpath);
        goto done;
    }
    if (tr->vt->state_size) {
        json_t *state = json_object_get(root, "state");
        if (!json_is_object(state) || tr->vt->state_from_json(tr, state, tr->state_tmp2) != ALIGN_OK) {
            rc = align__error(&tr->err, ALIGN_EFORMAT, "%s: missing or invalid data/RNG state", tpath);
            goto done;
        }
    }

    /* 2. The weight files belong to this trainer.json. */
    uint64_t d, sz;
    if ((rc = file_digest(&tr->err, mpath, &d, &sz)) < 0)
        goto done;
    if (d != mdig || sz != msz) {
        rc = align__error(&tr->err, ALIGN_EFORMAT,
                          "%s does not belong to %s (written by another save, or damaged)", mpath, tpath);
        goto done;
    }
    if ((rc = file_digest(&tr->err, opath, &d, &sz)) < 0)
        goto done;
    if (d != odig || sz != osz) {
        rc = align__error(&tr->err, ALIGN_EFORMAT,
                          "%s does not belong to %s (written by another save, or damaged)", opath, tpath);
        goto done;
    }

    /* 3. Weights into a temporary model, checked against the policy's shape. */
    rc = align_model_load(&tmp_model, mpath, NULL);
    if (rc < 0) {
        rc = align__error(&tr->err, rc, "loading %s: %s", mpath, align_last_errmsg());
        goto done;
    }
    {
        json_t *a = model_setup_json(tmp_model), *b = json_object_get(setup, "model");
        /* A file without a scalar head loads without one: compare the rest. */
        int same = a && b && json_equal(json_object_get(a, "n_layer"), json_object_get(b, "n_layer")) &&
                   json_equal(json_object_get(a, "n_head"), json_object_get(b, "n_head")) &&
                   json_equal(json_object_get(a, "n_embd"), json_object_get(b, "n_embd")) &&
                   json_equal(json_object_get(a, "vocab_size"), json_object_get(b, "vocab_size")) &&
                   json_equal(json_object_get(a, "max_seq_len"), json_object_get(b, "max_seq_len"));
        json_decref(a);
        if (align_model_num_params(tmp_model) != align_model_num_params(tr->policy))
            same = 0;
        if (!same) {
            rc = align__error(&tr->err, ALIGN_EINVAL, "%s: the model's shape differs from the policy's", mpath);
            goto done;
        }
    }

    /* 4. Apply: data state (all-or-nothing), optimizer (all-or-nothing),
     *    then the weights, which cannot fail once the shapes match. */
    if (tr->vt->state_size) {
        tr->vt->get_state(tr, tr->state_tmp);
        rc = tr->vt->set_state(tr, tr->state_tmp2);
        if (rc < 0) {
            rc = align__error(&tr->err, rc, "%s: the data position does not fit this dataset", tpath);
            goto done;
        }
        state_applied = 1;
    }
    rc = align_optimizer_load(tr->opt, opath);
    if (rc < 0) {
        rc = align__error(&tr->err, rc, "loading %s: %s", opath, align_optimizer_errmsg(tr->opt));
        goto done;
    }
    rc = align__model_copy_weights(tr->policy, tmp_model);
    if (rc < 0) {
        rc = align__error(&tr->err, rc, "restoring weights: %s", align_model_errmsg(tr->policy));
        goto done;
    }
    align_model_zero_grad(tr->policy);
    tr->steps = steps;
    tr->skipped = skipped;
    tr->tokens_seen = tokens_seen;
    tr->finished = json_is_true(fin);
    atomic_store(&tr->stop, 0);
    state_applied = 0;
    rc = ALIGN_OK;
done:
    if (rc < 0 && state_applied)
        (void)tr->vt->set_state(tr, tr->state_tmp);
    align_model_free(tmp_model);
    json_decref(root);
    json_decref(setup);
    align__free(text);
    align__free(mpath);
    align__free(opath);
    align__free(tpath);
    return rc;
}
