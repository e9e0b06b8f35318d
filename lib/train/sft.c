/*
 * sft.c — supervised fine-tuning: the objective and its trainer constructor.
 *
 * Loss of one step = mean negative log-likelihood over the loss tokens of all
 * its rows (completion and end-of-turn tokens; every token with
 * ALIGN_SFT_FULL_SEQUENCE_LOSS):   L = -(1/N) * sum_{masked t} log p(y_t).
 * The rows of a step are fetched before its first micro-batch, so N is known
 * and each micro-batch pushes d L / d log p(y_t) = -1/N into the model's
 * backward: gradient accumulation over micro-batches gives the same gradient
 * as one big batch (up to float summation order).
 */
#include "train/trainer.h"
#include "dist/dist.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "model/model.h"
#include "optim/optim.h"

#include <math.h>
#include <string.h>

typedef struct sft {
    align_sft_params p;         /* copied; string members point at our copies */
    char *system_prefix, *user_prefix, *assistant_prefix;
    const align_tokenizer *tok; /* borrowed */
    align_dataset *data;        /* borrowed */
    int stream;                 /* the dataset has a source: records arrive while training */
    align__batcher *batcher;
    int32_t L;                  /* row length */
    int32_t rows;               /* micro_batch * grad_accum */
    int64_t step_N;             /* loss tokens of the step's rows (all ranks' shares) */
    int32_t step_rows;          /* rows of the step */
    /* step rows [rows][L], lengths [rows], mask [rows][L-1] */
    int32_t *tokens, *lengths;
    uint8_t *mask;
    /* one micro-batch, compacted to its longest row T: [mb][T], [mb][T-1] */
    int32_t *mb_tokens, *mb_lengths, *mb_argmax;
    float   *mb_logp, *mb_dlogp;
    align__batcher_state snap;  /* what a rollback restores (trainer.h: begin) */
} sft;

static const align_sft_params sft_defaults = {
    .struct_size = sizeof(align_sft_params),
    .flags = 0,
    .micro_batch = 8,
    .grad_accum = 1,
    .max_seq_len = 0,
    .truncation = ALIGN_TRUNCATE_RIGHT,
    .max_steps = 0,
    .epochs = 1,
    .seed = 1234,
};

ALIGN_API int align_sft_default_params(align_sft_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &sft_defaults, sizeof sft_defaults,
                                  "align_sft_default_params");
}

/* ---- rows ---------------------------------------------------------------- */

/* The examples of this epoch are used up: a dataset fed by a source may
 * have more. Takes records the host added since, else pulls from the
 * source. 1: new examples; 0: none (the source said ALIGN_DONE, or there is
 * no source): the epoch ends. */
static int more_data(sft *s, align__errbuf *eb)
{
    if (!s->stream)
        return 0;
    for (;;) {
        int64_t added = 0;
        int rc = align__batcher_ingest(s->batcher, s->data, -1, &added, eb);
        if (rc < 0)
            return rc;
        if (added > 0)
            return 1;
        rc = align__dataset_pull(s->data, 1, eb);
        if (rc < 0)
            return rc;
        if (rc == ALIGN_DONE) {
            rc = align__batcher_ingest(s->batcher, s->data, -1, &added, eb);
            return rc < 0 ? rc : added > 0;
        }
    }
}

/* Fills up to `need` rows into the step buffers starting at row `at`.
 * max_steps mode: the data wraps into new epochs forever. Epochs mode: the
 * data runs on into the next epoch only while fewer than p.epochs have
 * started, so the last step of the run may be short and the next has none.
 * A dataset with a source is asked for more before an epoch ends. */
static int fetch_rows(sft *s, int32_t need, int32_t *got, align__errbuf *eb)
{
    int32_t filled = 0;
    const int32_t L = s->L;
    int wrap = s->p.max_steps > 0;
    while (filled < need) {
        int32_t r = 0;
        int rc;
        /* Packed rows must not close early where the data that has arrived
         * ends: read ahead until the rows can be filled (or the source is done). */
        while (s->stream && (s->p.flags & ALIGN_SFT_PACK) &&
               align__batcher_tokens_left(s->batcher) < (int64_t)(need - filled) * L) {
            if ((rc = more_data(s, eb)) < 0)
                return rc;
            if (rc == 0)
                break;
        }
        rc = align__batcher_next(s->batcher, need - filled, 0, s->tokens + (size_t)filled * L,
                                     s->lengths + filled, s->mask + (size_t)filled * (L - 1), &r);
        if (rc < 0)
            return rc;
        filled += r;
        if (filled >= need)
            break;
        /* The epoch's examples are used up. */
        if ((rc = more_data(s, eb)) < 0)
            return rc;
        if (rc > 0)
            continue;
        if (!wrap && align__batcher_epoch(s->batcher) >= s->p.epochs)
            break;
        r = 0;
        rc = align__batcher_next(s->batcher, 1, 1, s->tokens + (size_t)filled * L, s->lengths + filled,
                                 s->mask + (size_t)filled * (L - 1), &r);
        if (rc < 0)
            return rc;
        if (r == 0)
            break;
        filled += r;
    }
    *got = filled;
    return ALIGN_OK;
}

/* Copies rows [r0, r0+n) into the micro-batch buffers with stride T (their
 * longest length, at least 2) and returns T. */
static int32_t compact(sft *s, int32_t r0, int32_t n)
{
    const int32_t L = s->L;
    int32_t T = 2;
    for (int32_t i = 0; i < n; i++)
        T = ALIGN__MAX(T, s->lengths[r0 + i]);
    T = ALIGN__MIN(T, L);
    for (int32_t i = 0; i < n; i++) {
        memcpy(s->mb_tokens + (size_t)i * T, s->tokens + (size_t)(r0 + i) * L, (size_t)T * sizeof(int32_t));
        s->mb_lengths[i] = s->lengths[r0 + i];
    }
    return T;
}

static const uint8_t *row_mask(const sft *s, int32_t r)
{
    return s->mask + (size_t)r * (s->L - 1);
}

/* Adds one micro-batch's loss terms. Returns 1 if a loss term was not finite. */
static int score_rows(const sft *s, int32_t r0, int32_t n, int32_t T, double *loss_sum, int64_t *correct)
{
    int bad = 0;
    for (int32_t i = 0; i < n; i++) {
        const uint8_t *mk = row_mask(s, r0 + i);
        const int32_t *tk = s->mb_tokens + (size_t)i * T;
        const float *lp = s->mb_logp + (size_t)i * (T - 1);
        const int32_t *am = s->mb_argmax + (size_t)i * (T - 1);
        int32_t len = s->mb_lengths[i];
        for (int32_t t = 0; t + 1 < len; t++) {
            if (!mk[t])
                continue; /* select, never multiply: a NaN outside the mask stays out */
            if (!isfinite(lp[t]))
                bad = 1;
            *loss_sum -= (double)lp[t];
            *correct += am[t] == tk[t + 1];
        }
    }
    return bad;
}

static int64_t count_loss_tokens(const sft *s, int32_t n_rows)
{
    int64_t N = 0;
    for (int32_t r = 0; r < n_rows; r++) {
        const uint8_t *mk = row_mask(s, r);
        for (int32_t t = 0; t + 1 < s->lengths[r]; t++)
            N += mk[t] != 0;
    }
    return N;
}

/* ---- the objective --------------------------------------------------------- */

/* The named metrics (trainer.h), from the stats just filled. */
static void report(align__step_ctx *ctx)
{
    align__metric(ctx, "loss", (double)ctx->stats.loss);
    align__metric(ctx, "accuracy", (double)ctx->stats.accuracy);
    align__metric(ctx, "tokens", (double)ctx->stats.tokens);
    align__metric(ctx, "sequences", (double)ctx->stats.sequences);
}

static int sft_accumulate(align_trainer *tr, align__step_ctx *ctx)
{
    sft *s = tr->algo;
    if (tr->steps >= s->p.max_steps && s->p.max_steps > 0)
        return ALIGN_DONE;
    int32_t n_rows = 0;
    int rc = fetch_rows(s, s->rows, &n_rows, &tr->err);
    if (rc < 0)
        return align__error(&tr->err, rc, "sft: reading the dataset failed: %s", align__errmsg(&tr->err));
    if (n_rows == 0)
        return ALIGN_DONE;

    const int64_t N = count_loss_tokens(s, n_rows);
    const float dl = N > 0 ? -1.0f / (float)N : 0.0f;
    double loss_sum = 0.0, t_fwd = 0.0, t_bwd = 0.0;
    int64_t correct = 0, processed = 0;
    const int32_t mb = s->p.micro_batch;
    /* Data parallel: every rank reads the whole step (so N is global
     * without a message) and runs its contiguous share of the rows. */
    int64_t lo64, hi64;
    align__dist_share(tr, n_rows, &lo64, &hi64);
    const int32_t lo = (int32_t)lo64, hi = (int32_t)hi64;

    for (int32_t r0 = lo; r0 < hi && N > 0; r0 += mb) {
        if ((rc = align__trainer_poll_stop(tr)) < 0)
            return rc;
        int32_t n = ALIGN__MIN(mb, hi - r0);
        int32_t T = compact(s, r0, n);
        double t0 = align__now_sec();
        rc = align__model_forward_ex(tr->policy, s->mb_tokens, s->mb_lengths, n, T, s->mb_logp, NULL, NULL,
                                     s->mb_argmax);
        double t1 = align__now_sec();
        t_fwd += t1 - t0;
        if (rc < 0)
            return align__error(&tr->err, rc, "sft: forward failed: %s", align_model_errmsg(tr->policy));
        for (int32_t i = 0; i < n; i++)
            processed += s->mb_lengths[i];
        if (score_rows(s, r0, n, T, &loss_sum, &correct)) {
            /* No backward: the update will be skipped; keep scoring the
             * remaining micro-batches only for the statistics. */
            ctx->nonfinite = 1;
            continue;
        }
        if (ctx->nonfinite)
            continue;
        for (int32_t i = 0; i < n; i++) {
            const uint8_t *mk = row_mask(s, r0 + i);
            float *d = s->mb_dlogp + (size_t)i * (T - 1);
            int32_t len = s->mb_lengths[i];
            for (int32_t t = 0; t < T - 1; t++)
                d[t] = (t + 1 < len && mk[t]) ? dl : 0.0f;
        }
        rc = align_model_backward(tr->policy, s->mb_dlogp, NULL);
        t_bwd += align__now_sec() - t1;
        if (rc < 0)
            return align__error(&tr->err, rc, "sft: backward failed: %s", align_model_errmsg(tr->policy));
    }
    if (N == 0) {
        for (int32_t r = lo; r < hi; r++)
            processed += s->lengths[r];
        ctx->empty = 1;
    }
    /* Statistics in sft_finish, from sums the trainer adds over ranks. */
    s->step_N = N;
    s->step_rows = n_rows;
    ctx->n_sums = 2;
    ctx->sums[0] = loss_sum;
    ctx->sums[1] = (double)correct;
    ctx->stats.time_forward_ms = (float)(t_fwd * 1e3);
    ctx->stats.time_backward_ms = (float)(t_bwd * 1e3);
    ctx->tokens_processed = processed;
    return ALIGN_OK;
}

static void sft_finish(align_trainer *tr, align__step_ctx *ctx)
{
    const sft *s = tr->algo;
    const int64_t N = s->step_N;
    ctx->stats.tokens = N;
    ctx->stats.sequences = s->step_rows;
    ctx->stats.loss = N > 0 ? (float)(ctx->sums[0] / (double)N) : 0.0f;
    ctx->stats.accuracy = N > 0 ? (float)(ctx->sums[1] / (double)N) : 0.0f;
    report(ctx);
}

static int sft_evaluate(align_trainer *tr, align_dataset *eval, align__step_ctx *ctx)
{
    sft *s = tr->algo;
    align__batch_params bp;
    memset(&bp, 0, sizeof bp);
    bp.flags = (s->p.flags & ALIGN_SFT_FULL_SEQUENCE_LOSS) ? ALIGN__BATCH_FULL_LOSS : 0u;
    bp.max_len = s->L;
    bp.truncation = s->p.truncation;
    bp.seed = s->p.seed;
    bp.system_prefix = s->system_prefix;
    bp.user_prefix = s->user_prefix;
    bp.assistant_prefix = s->assistant_prefix;
    align__batcher *b = NULL;
    int rc = align__batcher_create(&b, eval, s->tok, &bp, &tr->err);
    if (rc < 0)
        return rc;

    double loss_sum = 0.0, t_fwd = 0.0;
    int64_t correct = 0, N = 0, seqs = 0, processed = 0;
    const int32_t mb = s->p.micro_batch;
    for (;;) {
        if ((rc = align__trainer_poll_stop(tr)) < 0)
            break;
        int32_t n = 0;
        rc = align__batcher_next(b, mb, 0, s->tokens, s->lengths, s->mask, &n);
        if (rc < 0) {
            align__error(&tr->err, rc, "evaluate: reading the dataset failed");
            break;
        }
        if (n == 0)
            break;
        N += count_loss_tokens(s, n);
        int32_t T = compact(s, 0, n);
        double t0 = align__now_sec();
        rc = align__model_forward_ex(tr->policy, s->mb_tokens, s->mb_lengths, n, T, s->mb_logp, NULL, NULL,
                                     s->mb_argmax);
        t_fwd += align__now_sec() - t0;
        if (rc < 0) {
            align__error(&tr->err, rc, "evaluate: forward failed: %s", align_model_errmsg(tr->policy));
            break;
        }
        score_rows(s, 0, n, T, &loss_sum, &correct);
        seqs += n;
        for (int32_t i = 0; i < n; i++)
            processed += s->mb_lengths[i];
    }
    align__batcher_free(b);
    if (rc < 0)
        return rc;
    ctx->stats.tokens = N;
    ctx->stats.sequences = seqs;
    ctx->stats.loss = N > 0 ? (float)(loss_sum / (double)N) : 0.0f;
    ctx->stats.accuracy = N > 0 ? (float)((double)correct / (double)N) : 0.0f;
    ctx->stats.time_forward_ms = (float)(t_fwd * 1e3);
    ctx->tokens_processed = processed;
    report(ctx);
    return ALIGN_OK;
}

static int64_t sft_epoch(const align_trainer *tr)
{
    const sft *s = tr->algo;
    return align__batcher_epoch(s->batcher);
}

static float sft_progress(const align_trainer *tr, int64_t steps_done)
{
    const sft *s = tr->algo;
    double f;
    if (s->p.max_steps > 0) {
        f = (double)steps_done / (double)s->p.max_steps;
    } else {
        align__batcher_state st;
        align__batcher_get_state(s->batcher, &st);
        int64_t ex = align__batcher_examples(s->batcher);
        double within = ex > 0 ? (double)st.position / (double)ex : 1.0;
        f = st.epoch > 0 ? ((double)(st.epoch - 1) + within) / (double)s->p.epochs : 0.0;
    }
    return (float)(f < 0.0 ? 0.0 : f > 1.0 ? 1.0 : f);
}

static int sft_begin(align_trainer *tr)
{
    sft *s = tr->algo;
    align__batcher_get_state(s->batcher, &s->snap);
    return ALIGN_OK;
}

static void sft_rollback(align_trainer *tr)
{
    sft *s = tr->algo;
    (void)align__batcher_set_state(s->batcher, &s->snap);
}

static int sft_save_state(const align_trainer *tr, json_t *obj, align__ckpt *ck)
{
    (void)ck;
    const sft *s = tr->algo;
    align__batcher_state st;
    align__batcher_get_state(s->batcher, &st);
    int rc = 0;
    rc |= align__json_set_i64(obj, "epoch", st.epoch);
    rc |= align__json_set_i64(obj, "position", st.position);
    rc |= align__json_set_i64(obj, "carry", st.carry);
    rc |= align__json_set_u64(obj, "rng_seed", st.rng.seed);
    rc |= align__json_set_u64(obj, "rng_stream", st.rng.stream);
    rc |= align__json_set_u64(obj, "rng_counter", st.rng.counter);
    rc |= align__json_set_i64(obj, "epoch_examples", st.epoch_examples);
    rc |= align__json_set_i64(obj, "examples", align__batcher_examples(s->batcher));
    rc |= align__json_set_i64(obj, "records", align__batcher_records(s->batcher));
    return rc ? ALIGN_ENOMEM : ALIGN_OK;
}

/* What resume stages: the batcher state and how much data it had seen. */
typedef struct sft_staged {
    align__batcher_state st;
    int64_t examples, records;
} sft_staged;

static int sft_load_state(align_trainer *tr, const json_t *obj, align__ckpt *ck, void **staged)
{
    (void)ck;
    sft *s = tr->algo;
    sft_staged g;
    memset(&g, 0, sizeof g);
    align__batcher_state *st = &g.st;
    if (align__json_get_i64(obj, "epoch", &st->epoch) || align__json_get_i64(obj, "position", &st->position) ||
        align__json_get_i64(obj, "carry", &st->carry) || align__json_get_u64(obj, "rng_seed", &st->rng.seed) ||
        align__json_get_u64(obj, "rng_stream", &st->rng.stream) ||
        align__json_get_u64(obj, "rng_counter", &st->rng.counter) ||
        align__json_get_i64(obj, "epoch_examples", &st->epoch_examples) ||
        align__json_get_i64(obj, "examples", &g.examples) || align__json_get_i64(obj, "records", &g.records) ||
        st->epoch < 0 || st->position < 0 || st->carry < 0 || st->epoch_examples < 0 ||
        st->epoch_examples > g.examples || st->position > g.examples || g.examples < 0 || g.records < g.examples)
        return align__error(&tr->err, ALIGN_EFORMAT, "trainer.json: missing or invalid data/RNG state");
    if (!s->stream) {
        if (g.records != align__batcher_records(s->batcher) || g.examples != align__batcher_examples(s->batcher))
            return align__error(&tr->err, ALIGN_EFORMAT, "trainer.json: the data state counts %lld records, the "
                                "dataset %lld", (long long)g.records, (long long)align__batcher_records(s->batcher));
    } else {
        if (align__batcher_records(s->batcher) > g.records)
            return align__error(&tr->err, ALIGN_EINVAL,
                                "the dataset holds %lld records, more than the %lld the checkpoint had read: "
                                "resume a streamed run with the records up to the checkpoint",
                                (long long)align__batcher_records(s->batcher), (long long)g.records);
        /* Records the run had read come back from the source (they stay in
         * the dataset: that is data, not trainer state). */
        int64_t have = align_dataset_size(s->data);
        if (have < g.records) {
            int rc = align__dataset_pull(s->data, g.records - have, &tr->err);
            if (rc < 0)
                return rc;
            if (align_dataset_size(s->data) < g.records)
                return align__error(&tr->err, ALIGN_EINVAL,
                                    "the checkpoint had read %lld records; the dataset and its source have %lld",
                                    (long long)g.records, (long long)align_dataset_size(s->data));
        }
    }
    sft_staged *p = align__malloc(sizeof *p);
    if (!p)
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    *p = g;
    *staged = p;
    return ALIGN_OK;
}

static int sft_apply_state(align_trainer *tr, void *staged)
{
    sft *s = tr->algo;
    sft_staged *g = staged;
    if (s->stream) {
        /* Reading the records up to the checkpoint's count is neutral: they
         * would be read in the same order when the data runs out. */
        int rc = align__batcher_ingest(s->batcher, s->data, g->records, NULL, &tr->err);
        if (rc < 0)
            return rc;
        if (align__batcher_examples(s->batcher) != g->examples)
            return align__error(&tr->err, ALIGN_EINVAL,
                                "the first %lld records give %lld examples here but %lld in the checkpoint (other data?)",
                                (long long)g->records, (long long)align__batcher_examples(s->batcher),
                                (long long)g->examples);
    }
    int rc = align__batcher_set_state(s->batcher, &g->st);
    return rc < 0 ? align__error(&tr->err, rc, "the data position does not fit this dataset (%s)", align_last_errmsg())
                  : ALIGN_OK;
}

static void sft_free_staged(align_trainer *tr, void *staged)
{
    (void)tr;
    align__free(staged);
}

static int sft_setup_json(const align_trainer *tr, json_t *obj)
{
    const sft *s = tr->algo;
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:s?, s:s?, s:s?}", "flags", (int)s->p.flags,
                          "micro_batch", (int)s->p.micro_batch, "grad_accum", (int)s->p.grad_accum,
                          "max_seq_len", (int)s->L, "truncation", (int)s->p.truncation, "examples",
                          (json_int_t)align__batcher_examples(s->batcher), "examples_skipped",
                          (json_int_t)align__batcher_skipped(s->batcher), "system_prefix", s->system_prefix,
                          "user_prefix", s->user_prefix, "assistant_prefix", s->assistant_prefix);
    if (!o)
        return ALIGN_ENOMEM;
    if (s->stream) {
        /* the data arrives while training: the state counts it */
        json_object_del(o, "examples");
        json_object_del(o, "examples_skipped");
        if (json_object_set_new(o, "stream", json_true()) != 0) {
            json_decref(o);
            return ALIGN_ENOMEM;
        }
    }
    if (align__json_set_u64(o, "seed", s->p.seed) || json_object_set_new(obj, "sft", o) != 0)
        return ALIGN_ENOMEM;
    return ALIGN_OK;
}

static void sft_free_obj(sft *s)
{
    if (!s)
        return;
    align__batcher_free(s->batcher);
    align__free(s->system_prefix);
    align__free(s->user_prefix);
    align__free(s->assistant_prefix);
    align__free(s->tokens);
    align__free(s->lengths);
    align__free(s->mask);
    align__free(s->mb_tokens);
    align__free(s->mb_lengths);
    align__free(s->mb_argmax);
    align__free(s->mb_logp);
    align__free(s->mb_dlogp);
    align__free(s);
}

static void sft_free(align_trainer *tr)
{
    sft_free_obj(tr->algo);
    tr->algo = NULL;
}

static const align__trainer_vtable sft_vtable = {
    .name = "sft",
    .algorithm = ALIGN_ALGO_SFT,
    .accumulate = sft_accumulate,
    .finish = sft_finish,
    .evaluate = sft_evaluate,
    .progress = sft_progress,
    .epoch = sft_epoch,
    .begin = sft_begin,
    .rollback = sft_rollback,
    .save_state = sft_save_state,
    .load_state = sft_load_state,
    .apply_state = sft_apply_state,
    .free_staged = sft_free_staged,
    .setup_json = sft_setup_json,
    .free = sft_free,
};

/* ---- constructor ------------------------------------------------------------ */

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return ALIGN_OK;
    *dst = align__strdup(src);
    return *dst ? ALIGN_OK : ALIGN_ENOMEM;
}

ALIGN_API int align_trainer_create_sft(align_trainer **out, align_model *policy, const align_tokenizer *t,
                                       align_dataset *data, align_optimizer *opt, const align_sft_params *p)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_create_sft: out is NULL");
    *out = NULL;
    if (!policy || !t || !data)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_create_sft: %s is NULL",
                            !policy ? "policy" : !t ? "tokenizer" : "dataset");
    align_sft_params prm = sft_defaults;
    int rc = align__params_copy(&prm, sizeof prm, p, "align_sft_params");
    if (rc)
        return rc;
    prm.struct_size = sizeof prm;

    if (opt && align__optimizer_model(opt) != policy)
        return align__error(NULL, ALIGN_EINVAL,
                            "align_trainer_create_sft: the optimizer was created for another model");
    align_model_params cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    if ((rc = align_model_config(policy, &cfg)) < 0)
        return align__error(NULL, rc, "align_trainer_create_sft: %s", align_model_errmsg(policy));
    const uint32_t known = ALIGN_SFT_FULL_SEQUENCE_LOSS | ALIGN_SFT_PACK | ALIGN_SFT_SEQUENTIAL;
    if (prm.flags & ~known)
        return align__error(NULL, ALIGN_EINVAL, "align_sft_params.flags has unknown bits 0x%x",
                            (unsigned)(prm.flags & ~known));
    if (prm.micro_batch < 1 || prm.micro_batch > 65536)
        return align__error(NULL, ALIGN_EINVAL, "align_sft_params.micro_batch is %d (1..65536)",
                            (int)prm.micro_batch);
    if (prm.grad_accum < 1 || prm.grad_accum > 65536 || (int64_t)prm.grad_accum * prm.micro_batch > 1 << 20)
        return align__error(NULL, ALIGN_EINVAL, "align_sft_params.grad_accum is %d (1..65536, and "
                            "micro_batch * grad_accum <= 2^20)", (int)prm.grad_accum);
    if (prm.max_seq_len == 0)
        prm.max_seq_len = cfg.max_seq_len;
    if (prm.max_seq_len < 2 || prm.max_seq_len > cfg.max_seq_len)
        return align__error(NULL, ALIGN_EINVAL, "align_sft_params.max_seq_len is %d (2..%d, the model's maximum)",
                            (int)prm.max_seq_len, (int)cfg.max_seq_len);
    if (prm.truncation < ALIGN_TRUNCATE_RIGHT || prm.truncation > ALIGN_TRUNCATE_DROP)
        return align__error(NULL, ALIGN_EINVAL, "align_sft_params.truncation is %d (ALIGN_TRUNCATE_*)",
                            (int)prm.truncation);
    if (prm.max_steps < 0)
        return align__error(NULL, ALIGN_EINVAL, "align_sft_params.max_steps is %d (>= 0)", (int)prm.max_steps);
    if (prm.max_steps == 0 && prm.epochs < 1)
        return align__error(NULL, ALIGN_EINVAL,
                            "align_sft_params: epochs is %d and max_steps is 0 (set one of them)",
                            (int)prm.epochs);
    int32_t tv = align_tokenizer_vocab_size(t);
    if (tv <= 0 || tv > cfg.vocab_size)
        return align__error(NULL, ALIGN_EINVAL,
                            "align_trainer_create_sft: the tokenizer's vocabulary (%d) does not fit the "
                            "model's (%d)", (int)tv, (int)cfg.vocab_size);

    sft *s = align__calloc(1, sizeof *s);
    if (!s)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    s->p = prm;
    s->tok = t;
    s->data = data;
    s->stream = align__dataset_has_source(data);
    s->L = prm.max_seq_len;
    s->rows = prm.micro_batch * prm.grad_accum;
    if (dup_opt(&s->system_prefix, prm.system_prefix) || dup_opt(&s->user_prefix, prm.user_prefix) ||
        dup_opt(&s->assistant_prefix, prm.assistant_prefix)) {
        sft_free_obj(s);
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    }
    s->p.system_prefix = s->system_prefix;
    s->p.user_prefix = s->user_prefix;
    s->p.assistant_prefix = s->assistant_prefix;
    s->p.on_step = NULL;
    s->p.on_step_user_data = NULL;

    const size_t L = (size_t)s->L, R = (size_t)s->rows, MB = (size_t)prm.micro_batch;
    s->tokens = align__calloc(R * L, sizeof(int32_t));
    s->lengths = align__calloc(R, sizeof(int32_t));
    s->mask = align__calloc(R * (L - 1), 1);
    s->mb_tokens = align__calloc(MB * L, sizeof(int32_t));
    s->mb_lengths = align__calloc(MB, sizeof(int32_t));
    s->mb_argmax = align__calloc(MB * (L - 1), sizeof(int32_t));
    s->mb_logp = align__calloc(MB * (L - 1), sizeof(float));
    s->mb_dlogp = align__calloc(MB * (L - 1), sizeof(float));
    if (!s->tokens || !s->lengths || !s->mask || !s->mb_tokens || !s->mb_lengths || !s->mb_argmax ||
        !s->mb_logp || !s->mb_dlogp) {
        sft_free_obj(s);
        return align__error(NULL, ALIGN_ENOMEM, "out of memory for %zu rows of %zu tokens", R, L);
    }

    align__batch_params bp;
    memset(&bp, 0, sizeof bp);
    bp.flags = (prm.flags & ALIGN_SFT_SEQUENTIAL) ? 0u : ALIGN__BATCH_SHUFFLE;
    if (prm.flags & ALIGN_SFT_FULL_SEQUENCE_LOSS)
        bp.flags |= ALIGN__BATCH_FULL_LOSS;
    if (prm.flags & ALIGN_SFT_PACK)
        bp.flags |= ALIGN__BATCH_PACK;
    if (s->stream)
        bp.flags |= ALIGN__BATCH_STREAM;
    bp.max_len = s->L;
    bp.truncation = prm.truncation;
    bp.seed = prm.seed;
    bp.system_prefix = s->system_prefix;
    bp.user_prefix = s->user_prefix;
    bp.assistant_prefix = s->assistant_prefix;
    align__errbuf eb;
    align__error_clear(&eb);
    rc = align__batcher_create(&s->batcher, data, t, &bp, &eb);
    if (rc < 0) {
        sft_free_obj(s);
        return align__error(NULL, rc, "align_trainer_create_sft: %s", align__errmsg(&eb));
    }

    align_trainer *tr = NULL;
    align__role role = {"policy", policy, opt};
    rc = align__trainer_new_roles(&tr, &sft_vtable, &role, 1, prm.on_step, prm.on_step_user_data);
    if (rc < 0) {
        sft_free_obj(s);
        return rc;
    }
    tr->algo = s;
    *out = tr;
    return ALIGN_OK;
}
