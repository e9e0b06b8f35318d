/*
 * reward.c — the reward-model trainer: rankings, preferences, labels and
 * scores of one dataset, learned by a model with a scalar head.
 *
 * A batch element is one RECORD ("group"): a ranking of K responses to one
 * prompt (a preference is K = 2), or one labelled or scored response. All
 * K responses of a ranking are scored in the same forward pass, and the
 * prompt's loss is averaged over its C(K,2) (minus tied) pairs, as
 * InstructGPT did (Ouyang et al. 2022, arXiv 2203.02155, §3.5): each prompt
 * counts once and each response is scored once. The step loss is the mean
 * of the groups' weighted losses:
 *
 *   L = (1/G) Σ_g w_kind(g) · L_g
 *   ranking: L_g = −(1/P) Σ_{w≻l} log σ(r_w − r_l − m_wl) + c·(1/K) Σ r_i²
 *   label:   L_g = −log σ(y·r),  y = ±1
 *   score:   L_g = ½ (r − s)²
 *
 * (reward_loss.h). r is the scalar head at each sequence's LAST real token,
 * the end-of-turn the scorer (align_reward_model_score) reads, and the
 * sequences are built by the scorer's own builder (align__reward_build), so
 * training and scoring see the same tokens. dL/dr goes into d_scalar at that
 * position only. The records of a step are chosen before its first
 * micro-batch, so G is known and gradient accumulation gives the gradient of
 * one big batch.
 *
 * The data position (epoch, position, the epoch's RNG) is the algorithm's
 * state: begin/rollback and save/resume restore it exactly. The order of an
 * epoch is a Fisher–Yates shuffle from a Philox stream chained across
 * epochs, as the SFT batcher does; records a host source adds during an
 * epoch are visited after the shuffled ones, in arrival order.
 */
#include "train/trainer.h"
#include "dist/dist.h"
#include "train/reward_loss.h"
#include "reward/reward_model.h"
#include "data/dataset.h"
#include "model/model.h"
#include "optim/optim.h"

#include <math.h>
#include <string.h>

/* The data position: everything begin/rollback and checkpoints restore. */
typedef struct rm_pos {
    int64_t epoch;      /* epochs started */
    int64_t position;   /* next index into order */
    int64_t epoch_n;    /* examples shuffled at the start of the epoch */
    align__rng epoch_rng, next_rng;
} rm_pos;

/* What one micro-batch holds: per sequence its group and offsets. */
typedef struct rm_buf {
    int32_t *ids;  size_t ids_cap;     /* every sequence's tokens, concatenated */
    int64_t *off;  int32_t *len;  int32_t *grp;  size_t seq_cap;
    int32_t *tokens; float *scalar, *dscalar; int32_t *lengths; size_t tok_cap;
    float *r, *grad, *margin; int32_t *rank; size_t k_cap;
} rm_buf;

typedef struct rmt {
    align_reward_train_params p;
    char *user_prefix, *assistant_prefix;
    const align_tokenizer *tok;       /* borrowed */
    align_dataset *data;              /* borrowed */
    int stream;                       /* a host source feeds the dataset */
    align_reward_model *scorer;       /* for its sequence builder */
    const align__reward_template *tp;
    int32_t L;
    int64_t *ex; int64_t n_ex, cap_ex; /* usable records, in dataset order */
    int64_t records;                  /* records of data examined */
    int64_t *order;                   /* [cap_ex]: this epoch's visiting order */
    rm_pos pos, snap;
    int64_t *step_rec; int32_t step_cap;
    rm_buf b;
} rmt;

static const align_reward_train_params rm_defaults = {
    .struct_size = sizeof(align_reward_train_params),
    .flags = 0,
    .micro_batch = 8,
    .grad_accum = 1,
    .max_seq_len = 0,
    .truncation = ALIGN_TRUNCATE_LEFT,
    .max_steps = 0,
    .epochs = 1,
    .seed = 1234,
    .ranking_weight = 1.0f,
    .label_weight = 1.0f,
    .score_weight = 1.0f,
    .margin_scale = 0.0f,
    .center_coef = 0.0f,
};

ALIGN_API int align_reward_train_default_params(align_reward_train_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &rm_defaults, sizeof rm_defaults,
                                  "align_reward_train_default_params");
}

/* ---- which records teach the reward model ------------------------------------ */

/* 1 if record i gives a loss term under these weights. */
static int usable(const rmt *s, const align_dataset *d, int64_t i)
{
    align__record_view v;
    if (align__dataset_get(d, i, &v) < 0)
        return 0;
    switch (v.kind) {
    case ALIGN_RECORD_RANKING: {
        if (s->p.ranking_weight == 0.0f)
            return 0;
        if (s->p.center_coef != 0.0f)
            return 1;
        int32_t r0 = -1;
        for (int32_t j = 0; j < v.n_items; j++) { /* all tied: no pair */
            int32_t r = 0;
            align__dataset_item(d, i, j, NULL, NULL, NULL, NULL, &r);
            if (j > 0 && r != r0)
                return 1;
            r0 = r;
        }
        return 0;
    }
    case ALIGN_RECORD_LABEL: return s->p.label_weight != 0.0f;
    case ALIGN_RECORD_SCORE: return s->p.score_weight != 0.0f;
    default: return 0;
    }
}

/* Indexes the records of data from s->records up to `upto` (-1 = all). */
static int ingest(rmt *s, int64_t upto, int64_t *added)
{
    int64_t n = align_dataset_size(s->data);
    if (upto >= 0 && upto < n)
        n = upto;
    int64_t before = s->n_ex;
    for (; s->records < n; s->records++) {
        if (!usable(s, s->data, s->records))
            continue;
        if (s->n_ex == s->cap_ex) {
            int64_t c = s->cap_ex ? s->cap_ex * 2 : 256;
            int64_t *e = align__realloc(s->ex, (size_t)c * sizeof *e);
            if (!e)
                return ALIGN_ENOMEM;
            s->ex = e;
            int64_t *o = align__realloc(s->order, (size_t)c * sizeof *o);
            if (!o)
                return ALIGN_ENOMEM;
            s->order = o;
            s->cap_ex = c;
        }
        s->order[s->n_ex] = s->n_ex; /* arrivals during an epoch come after its shuffle */
        s->ex[s->n_ex++] = s->records;
    }
    if (added)
        *added = s->n_ex - before;
    return ALIGN_OK;
}

/* More records from the host source when the held ones are used up
 * (as SFT): 1 new examples, 0 none. */
static int more_data(rmt *s, align__errbuf *eb)
{
    if (!s->stream)
        return 0;
    for (;;) {
        int64_t added = 0;
        if (ingest(s, -1, &added) < 0)
            return align__error(eb, ALIGN_ENOMEM, "reward trainer: out of memory");
        if (added > 0)
            return 1;
        int rc = align__dataset_pull(s->data, 1, eb);
        if (rc < 0)
            return rc;
        if (rc == ALIGN_DONE) {
            if (ingest(s, -1, &added) < 0)
                return align__error(eb, ALIGN_ENOMEM, "reward trainer: out of memory");
            return added > 0;
        }
    }
}

/* The order of the epoch starting from rng *r (advanced past its draws). */
static void make_order(rmt *s, align__rng *r)
{
    for (int64_t i = 0; i < s->n_ex; i++)
        s->order[i] = i;
    if (s->p.flags & ALIGN_REWARD_TRAIN_SEQUENTIAL)
        return;
    for (int64_t i = s->pos.epoch_n - 1; i > 0; i--) {
        int64_t j = (int64_t)align__rng_below(r, (uint32_t)(i + 1));
        int64_t t = s->order[i];
        s->order[i] = s->order[j];
        s->order[j] = t;
    }
}

static void start_epoch(rmt *s)
{
    s->pos.epoch++;
    s->pos.position = 0;
    s->pos.epoch_n = s->n_ex;
    s->pos.epoch_rng = s->pos.next_rng;
    align__rng r = s->pos.epoch_rng;
    make_order(s, &r);
    s->pos.next_rng = r;
}

/* Restores a position (rollback, resume): the order is a function of it. */
static void set_pos(rmt *s, const rm_pos *p)
{
    s->pos = *p;
    if (p->epoch > 0) {
        align__rng r = p->epoch_rng;
        make_order(s, &r);
    } else {
        for (int64_t i = 0; i < s->n_ex; i++)
            s->order[i] = i;
    }
}

/* The next record to learn from: 1 = *rec set, 0 = the run's data is over. */
static int next_record(rmt *s, int wrap, int64_t *rec, align__errbuf *eb)
{
    for (;;) {
        if (s->pos.epoch > 0 && s->pos.position < s->n_ex) {
            *rec = s->ex[s->order[s->pos.position++]];
            return 1;
        }
        int rc = more_data(s, eb);
        if (rc < 0)
            return rc;
        if (rc > 0 && s->pos.epoch > 0)
            continue;
        if (s->n_ex == 0 || (!wrap && s->pos.epoch >= s->p.epochs))
            return 0;
        start_epoch(s);
    }
}

/* ---- sequences and losses ------------------------------------------------------ */

static int grow_seq(rm_buf *b, size_t need)
{
    if (need <= b->seq_cap)
        return ALIGN_OK;
    size_t c = need * 2 + 16;
    int64_t *o = align__realloc(b->off, c * sizeof *o);
    if (o) b->off = o;
    int32_t *l = align__realloc(b->len, c * sizeof *l);
    if (l) b->len = l;
    int32_t *g = align__realloc(b->grp, c * sizeof *g);
    if (g) b->grp = g;
    if (!o || !l || !g)
        return ALIGN_ENOMEM;
    b->seq_cap = c;
    return ALIGN_OK;
}

/* Room for nt tokens and k sequences' scores; capacities grow only when
 * every buffer did. */
static int grow_tok(rm_buf *b, size_t nt, size_t k)
{
    if (nt > b->tok_cap) {
        size_t c = nt * 2 + 64;
        int32_t *t = align__realloc(b->tokens, c * sizeof *t);
        if (t) b->tokens = t;
        float *sc = align__realloc(b->scalar, c * sizeof *sc);
        if (sc) b->scalar = sc;
        float *ds = align__realloc(b->dscalar, c * sizeof *ds);
        if (ds) b->dscalar = ds;
        if (!t || !sc || !ds)
            return ALIGN_ENOMEM;
        b->tok_cap = c;
    }
    if (k > b->k_cap) {
        size_t c = k * 2 + 16;
        float *r = align__realloc(b->r, c * sizeof *r);
        if (r) b->r = r;
        float *g = align__realloc(b->grad, c * sizeof *g);
        if (g) b->grad = g;
        int32_t *rk = align__realloc(b->rank, c * sizeof *rk);
        if (rk) b->rank = rk;
        int32_t *ln = align__realloc(b->lengths, c * sizeof *ln);
        if (ln) b->lengths = ln;
        if (!r || !g || !rk || !ln)
            return ALIGN_ENOMEM;
        b->k_cap = c;
    }
    return ALIGN_OK;
}

/* Appends one (prompt, response) sequence, built and truncated as the scorer does. */
static int add_seq(rmt *s, align__errbuf *eb, const char *prompt, const char *response, int32_t grp, int32_t *nseq,
                   size_t *used)
{
    rm_buf *b = &s->b;
    if (grow_seq(b, (size_t)*nseq + 1))
        return align__error(eb, ALIGN_ENOMEM, "reward trainer: out of memory");
    size_t start = *used;
    int rc = align__reward_build(eb, s->tok, s->tp, prompt, response, &b->ids, &b->ids_cap, used);
    if (rc < 0)
        return rc;
    size_t k = *used - start;
    if (k > (size_t)s->L) {
        if (s->p.truncation == ALIGN_TRUNCATE_LEFT)
            memmove(b->ids + start, b->ids + *used - s->L, (size_t)s->L * sizeof *b->ids);
        *used = start + (size_t)s->L;
        k = (size_t)s->L;
    }
    b->off[*nseq] = (int64_t)start;
    b->len[*nseq] = (int32_t)k;
    b->grp[*nseq] = grp;
    (*nseq)++;
    return ALIGN_OK;
}

/* Sums over the groups of a step or an evaluation. */
typedef struct rm_sums {
    double loss, loss_kind[3], margin, r_sum, r_sq;
    int64_t groups, kind_n[3], pairs, correct, labels, label_correct, seqs, tokens;
    int nonfinite;
} rm_sums;

enum { K_RANK = 0, K_LABEL = 1, K_SCORE = 2 };

/* One micro-batch: records rec[0..n) are built, run forward, their losses
 * added to *S; with dscale != 0 the gradient dscale · dL_g/dr goes backward. */
static int run_micro(align_trainer *tr, rmt *s, align_model *m, const int64_t *rec, int32_t n, float dscale,
                     rm_sums *S, double *t_fwd, double *t_bwd)
{
    rm_buf *b = &s->b;
    align__errbuf *eb = &tr->err;
    int32_t nseq = 0;
    size_t used = 0;
    int rc;
    for (int32_t g = 0; g < n; g++) {
        align__record_view v;
        if ((rc = align__dataset_get(s->data, rec[g], &v)) < 0)
            return align__error(eb, rc, "reward trainer: record %lld is gone", (long long)rec[g]);
        if (v.kind == ALIGN_RECORD_RANKING) {
            for (int32_t j = 0; j < v.n_items; j++) {
                const char *text = NULL;
                align__dataset_item(s->data, rec[g], j, NULL, NULL, &text, NULL, NULL);
                if ((rc = add_seq(s, eb, v.prompt, text, g, &nseq, &used)) < 0)
                    return rc;
            }
        } else if ((rc = add_seq(s, eb, v.prompt, v.response, g, &nseq, &used)) < 0) {
            return rc;
        }
    }
    /* one forward over every sequence of the micro-batch, padded to the longest */
    int32_t T = 1;
    for (int32_t i = 0; i < nseq; i++)
        T = ALIGN__MAX(T, b->len[i]);
    size_t nt = (size_t)nseq * (size_t)T;
    if (grow_tok(b, nt, (size_t)nseq))
        return align__error(eb, ALIGN_ENOMEM, "reward trainer: out of memory");
    memset(b->tokens, 0, nt * sizeof *b->tokens);
    for (int32_t i = 0; i < nseq; i++) {
        memcpy(b->tokens + (size_t)i * T, b->ids + b->off[i], (size_t)b->len[i] * sizeof *b->ids);
        b->lengths[i] = b->len[i];
        S->tokens += b->len[i];
    }
    double t0 = align__now_sec();
    rc = align_model_forward(m, b->tokens, b->lengths, nseq, T, NULL, b->scalar, NULL);
    double t1 = align__now_sec();
    *t_fwd += t1 - t0;
    if (rc < 0)
        return align__error(eb, rc, "reward trainer: forward failed: %s", align_model_errmsg(m));
    for (int32_t i = 0; i < nseq; i++)
        b->r[i] = b->scalar[(size_t)i * T + (size_t)(b->len[i] - 1)];
    memset(b->dscalar, 0, nt * sizeof *b->dscalar);

    /* the losses, group by group; the sequences of group g are contiguous */
    int bad = 0;
    for (int32_t i0 = 0; i0 < nseq;) {
        int32_t g = b->grp[i0], k = 0;
        while (i0 + k < nseq && b->grp[i0 + k] == g)
            k++;
        const float *r = b->r + i0;
        float *grad = b->grad + i0;
        align__record_view v;
        align__dataset_get(s->data, rec[g], &v);
        double l = 0.0;
        int kind;
        for (int32_t j = 0; j < k; j++) {
            if (!isfinite(r[j]))
                bad = 1;
            S->r_sum += r[j];
            S->r_sq += (double)r[j] * r[j];
        }
        S->seqs += k;
        if (bad) {
            i0 += k;
            continue;
        }
        if (v.kind == ALIGN_RECORD_RANKING) {
            kind = K_RANK;
            int32_t *rank = b->rank + i0;
            for (int32_t j = 0; j < k; j++)
                align__dataset_item(s->data, rec[g], j, NULL, NULL, NULL, NULL, &rank[j]);
            const float *mg = NULL;
            if (s->p.margin_scale != 0.0f) {
                /* margins from the rank difference (the dataset carries no margin field) */
                float *mm = align__realloc(b->margin, (size_t)k * k * sizeof *mm);
                if (!mm)
                    return align__error(eb, ALIGN_ENOMEM, "reward trainer: out of memory");
                b->margin = mm;
                for (int32_t w = 0; w < k; w++)
                    for (int32_t q = 0; q < k; q++)
                        mm[w * k + q] = s->p.margin_scale * (float)(rank[q] - rank[w]);
                mg = mm;
            }
            int32_t P = 0;
            rc = align__rm_loss_ranking(&l, grad, &P, r, rank, mg, k, s->p.center_coef);
            if (rc < 0)
                return align__error(eb, rc, "reward trainer: ranking loss of record %lld failed",
                                    (long long)rec[g]);
            for (int32_t j = 0; j < k; j++)
                grad[j] *= s->p.ranking_weight;
            l *= s->p.ranking_weight;
            for (int32_t w = 0; w < k; w++)
                for (int32_t q = 0; q < k; q++)
                    if (rank[w] < rank[q]) {
                        S->pairs++;
                        S->correct += r[w] > r[q];
                        S->margin += (double)r[w] - (double)r[q];
                    }
        } else if (v.kind == ALIGN_RECORD_LABEL) {
            kind = K_LABEL;
            align__rm_loss_label(&l, grad, r[0], v.good, s->p.label_weight);
            S->labels++;
            S->label_correct += v.good ? r[0] > 0.0f : r[0] < 0.0f;
        } else {
            kind = K_SCORE;
            align__rm_loss_score(&l, grad, r[0], v.score, s->p.score_weight);
        }
        if (!isfinite(l))
            bad = 1;
        S->loss += l;
        S->loss_kind[kind] += l;
        S->kind_n[kind]++;
        S->groups++;
        for (int32_t j = 0; j < k; j++)
            b->dscalar[(size_t)(i0 + j) * T + (size_t)(b->len[i0 + j] - 1)] = dscale * grad[j];
        i0 += k;
    }
    if (bad)
        S->nonfinite = 1;
    if (dscale != 0.0f && !S->nonfinite) {
        rc = align_model_backward(m, NULL, b->dscalar);
        *t_bwd += align__now_sec() - t1;
        if (rc < 0)
            return align__error(eb, rc, "reward trainer: backward failed: %s", align_model_errmsg(m));
    }
    return ALIGN_OK;
}

/* Stats and named metrics from the sums. */
static void report(align__step_ctx *ctx, const rm_sums *S, double t_fwd, double t_bwd)
{
    double G = S->groups > 0 ? (double)S->groups : 1.0;
    double mean = S->seqs > 0 ? S->r_sum / (double)S->seqs : 0.0;
    double var = S->seqs > 0 ? S->r_sq / (double)S->seqs - mean * mean : 0.0;
    ctx->stats.loss = (float)(S->loss / G);
    ctx->stats.accuracy = S->pairs > 0 ? (float)((double)S->correct / (double)S->pairs) : 0.0f;
    ctx->stats.tokens = S->tokens;
    ctx->stats.sequences = S->seqs;
    ctx->stats.time_forward_ms = (float)(t_fwd * 1e3);
    ctx->stats.time_backward_ms = (float)(t_bwd * 1e3);
    ctx->tokens_processed = S->tokens;
    if (S->nonfinite)
        ctx->nonfinite = 1;
    align__metric(ctx, "loss", (double)ctx->stats.loss);
    align__metric(ctx, "accuracy", (double)ctx->stats.accuracy);
    align__metric(ctx, "margin", S->pairs > 0 ? S->margin / (double)S->pairs : 0.0);
    align__metric(ctx, "pairs", (double)S->pairs);
    align__metric(ctx, "rewards/mean", mean);
    align__metric(ctx, "rewards/std", var > 0.0 ? sqrt(var) : 0.0);
    align__metric(ctx, "sequences", (double)S->seqs);
    align__metric(ctx, "tokens", (double)S->tokens);
    static const char *const kn[3] = {"loss/ranking", "loss/label", "loss/score"};
    for (int k = 0; k < 3; k++)
        if (S->kind_n[k] > 0)
            align__metric(ctx, kn[k], S->loss_kind[k] / (double)S->kind_n[k]);
    if (S->labels > 0)
        align__metric(ctx, "accuracy/label", (double)S->label_correct / (double)S->labels);
}

/* ---- the trainer's vtable ------------------------------------------------------- */

static int rm_accumulate(align_trainer *tr, align__step_ctx *ctx)
{
    rmt *s = tr->algo;
    if (s->p.max_steps > 0 && tr->steps >= s->p.max_steps)
        return ALIGN_DONE;
    const int32_t want = s->p.micro_batch * s->p.grad_accum;
    int32_t G = 0;
    int rc;
    while (G < want) {
        int64_t rec;
        rc = next_record(s, s->p.max_steps > 0, &rec, &tr->err);
        if (rc < 0)
            return align__error(&tr->err, rc, "reward trainer: reading the dataset failed: %s",
                                align__errmsg(&tr->err));
        if (rc == 0)
            break;
        s->step_rec[G++] = rec;
    }
    if (G == 0)
        return ALIGN_DONE;
    rm_sums S;
    memset(&S, 0, sizeof S);
    double t_fwd = 0.0, t_bwd = 0.0;
    const float dscale = 1.0f / (float)G;
    /* Data parallel: every rank reads the step's records, runs its share. */
    int64_t lo, hi;
    align__dist_share(tr, G, &lo, &hi);
    for (int32_t g0 = (int32_t)lo; g0 < (int32_t)hi; g0 += s->p.micro_batch) {
        if ((rc = align__trainer_poll_stop(tr)) < 0)
            return rc;
        int32_t n = ALIGN__MIN(s->p.micro_batch, (int32_t)hi - g0);
        if ((rc = run_micro(tr, s, tr->policy, s->step_rec + g0, n, dscale, &S, &t_fwd, &t_bwd)) < 0)
            return rc;
    }
    /* Statistics in rm_finish, from sums the trainer adds over ranks. */
    const double part[] = {S.loss, S.loss_kind[0], S.loss_kind[1], S.loss_kind[2], S.margin, S.r_sum, S.r_sq,
                           (double)S.groups, (double)S.kind_n[0], (double)S.kind_n[1], (double)S.kind_n[2],
                           (double)S.pairs, (double)S.correct, (double)S.labels, (double)S.label_correct,
                           (double)S.seqs, (double)S.tokens};
    ctx->n_sums = (int32_t)(sizeof part / sizeof part[0]);
    memcpy(ctx->sums, part, sizeof part);
    ctx->stats.time_forward_ms = (float)(t_fwd * 1e3);
    ctx->stats.time_backward_ms = (float)(t_bwd * 1e3);
    ctx->tokens_processed = S.tokens;
    if (S.nonfinite)
        ctx->nonfinite = 1;
    return ALIGN_OK;
}

static void rm_finish(align_trainer *tr, align__step_ctx *ctx)
{
    (void)tr;
    const double *v = ctx->sums;
    rm_sums S;
    memset(&S, 0, sizeof S);
    S.loss = v[0];
    for (int k = 0; k < 3; k++) {
        S.loss_kind[k] = v[1 + k];
        S.kind_n[k] = (int64_t)v[8 + k];
    }
    S.margin = v[4];
    S.r_sum = v[5];
    S.r_sq = v[6];
    S.groups = (int64_t)v[7];
    S.pairs = (int64_t)v[11];
    S.correct = (int64_t)v[12];
    S.labels = (int64_t)v[13];
    S.label_correct = (int64_t)v[14];
    S.seqs = (int64_t)v[15];
    S.tokens = (int64_t)v[16];
    S.nonfinite = ctx->nonfinite;
    report(ctx, &S, ctx->stats.time_forward_ms * 1e-3, ctx->stats.time_backward_ms * 1e-3);
}

static int rm_evaluate(align_trainer *tr, align_dataset *eval, align__step_ctx *ctx)
{
    rmt *s = tr->algo;
    align_dataset *keep = s->data;
    rm_sums S;
    memset(&S, 0, sizeof S);
    double t_fwd = 0.0, t_bwd = 0.0;
    int32_t n = 0;
    int rc = ALIGN_OK;
    int64_t size = align_dataset_size(eval);
    s->data = eval; /* run_micro reads records from s->data */
    for (int64_t i = 0; i <= size && rc >= 0; i++) {
        if (i < size && usable(s, eval, i))
            s->step_rec[n++] = i;
        if (n > 0 && (n == s->p.micro_batch || i == size)) {
            if ((rc = align__trainer_poll_stop(tr)) < 0)
                break;
            rc = run_micro(tr, s, tr->policy, s->step_rec, n, 0.0f, &S, &t_fwd, &t_bwd);
            n = 0;
        }
    }
    s->data = keep;
    if (rc < 0)
        return rc;
    if (S.groups == 0 && !S.nonfinite)
        return align__error(&tr->err, ALIGN_EINVAL, "evaluate: the dataset has no ranking, preference, label or "
                            "score record the reward trainer can use (%lld records)", (long long)size);
    report(ctx, &S, t_fwd, t_bwd);
    return ALIGN_OK;
}

static int64_t rm_epoch(const align_trainer *tr)
{
    const rmt *s = tr->algo;
    return s->pos.epoch;
}

static float rm_progress(const align_trainer *tr, int64_t steps_done)
{
    const rmt *s = tr->algo;
    double f;
    if (s->p.max_steps > 0) {
        f = (double)steps_done / (double)s->p.max_steps;
    } else {
        double within = s->n_ex > 0 ? (double)s->pos.position / (double)s->n_ex : 1.0;
        f = s->pos.epoch > 0 ? ((double)(s->pos.epoch - 1) + within) / (double)s->p.epochs : 0.0;
    }
    return (float)(f < 0.0 ? 0.0 : f > 1.0 ? 1.0 : f);
}

static int rm_begin(align_trainer *tr)
{
    rmt *s = tr->algo;
    s->snap = s->pos;
    return ALIGN_OK;
}

static void rm_rollback(align_trainer *tr)
{
    rmt *s = tr->algo;
    set_pos(s, &s->snap);
}

static int set_rng(json_t *o, const char *pre, const align__rng *r)
{
    char k[32];
    int rc = 0;
    snprintf(k, sizeof k, "%s_seed", pre);
    rc |= align__json_set_u64(o, k, r->seed);
    snprintf(k, sizeof k, "%s_stream", pre);
    rc |= align__json_set_u64(o, k, r->stream);
    snprintf(k, sizeof k, "%s_counter", pre);
    rc |= align__json_set_u64(o, k, r->counter);
    return rc;
}

static int get_rng(const json_t *o, const char *pre, align__rng *r)
{
    char k[32];
    int rc = 0;
    snprintf(k, sizeof k, "%s_seed", pre);
    rc |= align__json_get_u64(o, k, &r->seed);
    snprintf(k, sizeof k, "%s_stream", pre);
    rc |= align__json_get_u64(o, k, &r->stream);
    snprintf(k, sizeof k, "%s_counter", pre);
    rc |= align__json_get_u64(o, k, &r->counter);
    return rc;
}

static int rm_save_state(const align_trainer *tr, json_t *obj, align__ckpt *ck)
{
    (void)ck;
    const rmt *s = tr->algo;
    int rc = 0;
    rc |= align__json_set_i64(obj, "epoch", s->pos.epoch);
    rc |= align__json_set_i64(obj, "position", s->pos.position);
    rc |= align__json_set_i64(obj, "epoch_examples", s->pos.epoch_n);
    rc |= set_rng(obj, "epoch_rng", &s->pos.epoch_rng);
    rc |= set_rng(obj, "next_rng", &s->pos.next_rng);
    rc |= align__json_set_i64(obj, "examples", s->n_ex);
    rc |= align__json_set_i64(obj, "records", s->records);
    return rc ? ALIGN_ENOMEM : ALIGN_OK;
}

typedef struct rm_staged {
    rm_pos pos;
    int64_t examples, records;
} rm_staged;

static int rm_load_state(align_trainer *tr, const json_t *obj, align__ckpt *ck, void **staged)
{
    (void)ck;
    rmt *s = tr->algo;
    rm_staged g;
    memset(&g, 0, sizeof g);
    if (align__json_get_i64(obj, "epoch", &g.pos.epoch) || align__json_get_i64(obj, "position", &g.pos.position) ||
        align__json_get_i64(obj, "epoch_examples", &g.pos.epoch_n) || get_rng(obj, "epoch_rng", &g.pos.epoch_rng) ||
        get_rng(obj, "next_rng", &g.pos.next_rng) || align__json_get_i64(obj, "examples", &g.examples) ||
        align__json_get_i64(obj, "records", &g.records) || g.pos.epoch < 0 || g.examples < 0 ||
        g.pos.position < 0 || g.pos.position > g.examples || g.pos.epoch_n < 0 || g.pos.epoch_n > g.examples ||
        g.records < g.examples || g.pos.epoch_rng.seed != s->p.seed || g.pos.next_rng.seed != s->p.seed)
        return align__error(&tr->err, ALIGN_EFORMAT, "trainer.json: missing or invalid reward data state");
    if (!s->stream) {
        if (g.records != s->records || g.examples != s->n_ex)
            return align__error(&tr->err, ALIGN_EFORMAT,
                                "trainer.json: the data state counts %lld records (%lld usable), the dataset "
                                "%lld (%lld)", (long long)g.records, (long long)g.examples,
                                (long long)s->records, (long long)s->n_ex);
    } else {
        if (s->records > g.records)
            return align__error(&tr->err, ALIGN_EINVAL,
                                "the dataset holds %lld records, more than the %lld the checkpoint had read: "
                                "resume a streamed run with the records up to the checkpoint",
                                (long long)s->records, (long long)g.records);
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
    rm_staged *p = align__malloc(sizeof *p);
    if (!p)
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    *p = g;
    *staged = p;
    return ALIGN_OK;
}

static int rm_apply_state(align_trainer *tr, void *staged)
{
    rmt *s = tr->algo;
    rm_staged *g = staged;
    if (s->stream) {
        if (ingest(s, g->records, NULL) < 0)
            return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
        if (s->n_ex != g->examples)
            return align__error(&tr->err, ALIGN_EINVAL,
                                "the first %lld records give %lld usable records here but %lld in the checkpoint "
                                "(other data?)", (long long)g->records, (long long)s->n_ex, (long long)g->examples);
    }
    set_pos(s, &g->pos);
    return ALIGN_OK;
}

static void rm_free_staged(align_trainer *tr, void *staged)
{
    (void)tr;
    align__free(staged);
}

static int rm_setup_json(const align_trainer *tr, json_t *obj)
{
    const rmt *s = tr->algo;
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:s?, s:s?}", "flags",
                          (int)s->p.flags, "micro_batch", (int)s->p.micro_batch, "grad_accum", (int)s->p.grad_accum,
                          "max_seq_len", (int)s->L, "truncation", (int)s->p.truncation, "ranking_weight",
                          (double)s->p.ranking_weight, "label_weight", (double)s->p.label_weight, "score_weight",
                          (double)s->p.score_weight, "margin_scale", (double)s->p.margin_scale, "center_coef",
                          (double)s->p.center_coef, "user_prefix", s->user_prefix, "assistant_prefix",
                          s->assistant_prefix);
    if (!o)
        return ALIGN_ENOMEM;
    int rc = s->stream ? json_object_set_new(o, "stream", json_true())
                       : json_object_set_new(o, "examples", json_integer((json_int_t)s->n_ex));
    if (rc != 0 || align__json_set_u64(o, "seed", s->p.seed) || json_object_set_new(obj, "reward", o) != 0)
        return ALIGN_ENOMEM;
    return ALIGN_OK;
}

static void rm_free_obj(rmt *s)
{
    if (!s)
        return;
    align_reward_model_free(s->scorer);
    align__free(s->user_prefix);
    align__free(s->assistant_prefix);
    align__free(s->ex);
    align__free(s->order);
    align__free(s->step_rec);
    rm_buf *b = &s->b;
    align__free(b->ids);
    align__free(b->off);
    align__free(b->len);
    align__free(b->grp);
    align__free(b->tokens);
    align__free(b->scalar);
    align__free(b->dscalar);
    align__free(b->lengths);
    align__free(b->r);
    align__free(b->grad);
    align__free(b->margin);
    align__free(b->rank);
    align__free(s);
}

static void rm_free(align_trainer *tr)
{
    rm_free_obj(tr->algo);
    tr->algo = NULL;
}

static const align__trainer_vtable rm_vtable = {
    .name = "reward",
    .algorithm = ALIGN_ALGO_REWARD,
    .accumulate = rm_accumulate,
    .finish = rm_finish,
    .evaluate = rm_evaluate,
    .progress = rm_progress,
    .epoch = rm_epoch,
    .begin = rm_begin,
    .rollback = rm_rollback,
    .save_state = rm_save_state,
    .load_state = rm_load_state,
    .apply_state = rm_apply_state,
    .free_staged = rm_free_staged,
    .setup_json = rm_setup_json,
    .free = rm_free,
};

/* ---- constructor ------------------------------------------------------------------ */

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return ALIGN_OK;
    *dst = align__strdup(src);
    return *dst ? ALIGN_OK : ALIGN_ENOMEM;
}

static int finite_nonneg(float x)
{
    return isfinite(x) && x >= 0.0f;
}

ALIGN_API int align_trainer_create_reward(align_trainer **out, align_model *m, const align_tokenizer *t,
                                          align_dataset *data, align_optimizer *opt,
                                          const align_reward_train_params *p)
{
    static const char *fn = "align_trainer_create_reward";
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (!m || !t || !data)
        return align__error(NULL, ALIGN_EINVAL, "%s: %s is NULL", fn, !m ? "model" : !t ? "tokenizer" : "dataset");
    align_reward_train_params prm = rm_defaults;
    int rc = align__params_copy(&prm, sizeof prm, p, "align_reward_train_params");
    if (rc)
        return rc;
    prm.struct_size = sizeof prm;
    if (opt && align__optimizer_model(opt) != m)
        return align__error(NULL, ALIGN_EINVAL, "%s: the optimizer was created for another model", fn);
    align_model_params cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    if ((rc = align_model_config(m, &cfg)) < 0)
        return align__error(NULL, rc, "%s: %s", fn, align_model_errmsg(m));
    if (!(cfg.flags & ALIGN_MODEL_SCALAR_HEAD))
        return align__error(NULL, ALIGN_EINVAL, "%s: the model has no scalar head (create or load it with "
                            "ALIGN_MODEL_SCALAR_HEAD; alignctl rm adds one)", fn);
    const uint32_t known = ALIGN_REWARD_CHAT | ALIGN_REWARD_TRAIN_SEQUENTIAL;
    if (prm.flags & ~known)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_train_params.flags has unknown bits 0x%x",
                            (unsigned)(prm.flags & ~known));
    if (prm.micro_batch < 1 || prm.micro_batch > 65536)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_train_params.micro_batch is %d (1..65536 prompts)",
                            (int)prm.micro_batch);
    if (prm.grad_accum < 1 || prm.grad_accum > 65536 || (int64_t)prm.grad_accum * prm.micro_batch > 1 << 20)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_train_params.grad_accum is %d (1..65536, and "
                            "micro_batch * grad_accum <= 2^20)", (int)prm.grad_accum);
    if (prm.max_seq_len == 0)
        prm.max_seq_len = cfg.max_seq_len;
    if (prm.max_seq_len < 2 || prm.max_seq_len > cfg.max_seq_len)
        return align__error(NULL, ALIGN_EINVAL,
                            "align_reward_train_params.max_seq_len is %d (2..%d, the model's maximum)",
                            (int)prm.max_seq_len, (int)cfg.max_seq_len);
    if (prm.truncation != ALIGN_TRUNCATE_LEFT && prm.truncation != ALIGN_TRUNCATE_RIGHT)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_train_params.truncation is %d (ALIGN_TRUNCATE_LEFT "
                            "or _RIGHT; a ranking cannot drop one of its responses)", (int)prm.truncation);
    if (prm.max_steps < 0)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_train_params.max_steps is %d (>= 0)",
                            (int)prm.max_steps);
    if (prm.max_steps == 0 && prm.epochs < 1)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_train_params: epochs is %d and max_steps is 0 "
                            "(set one of them)", (int)prm.epochs);
    if (!finite_nonneg(prm.ranking_weight) || !finite_nonneg(prm.label_weight) ||
        !finite_nonneg(prm.score_weight) || !finite_nonneg(prm.center_coef) || !isfinite(prm.margin_scale))
        return align__error(NULL, ALIGN_EINVAL, "align_reward_train_params: the weights and center_coef must be "
                            "finite and >= 0, margin_scale finite");
    if (prm.ranking_weight == 0.0f && prm.label_weight == 0.0f && prm.score_weight == 0.0f)
        return align__error(NULL, ALIGN_EINVAL, "align_reward_train_params: every kind of record has weight 0");

    rmt *s = align__calloc(1, sizeof *s);
    if (!s)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    s->p = prm;
    s->tok = t;
    s->data = data;
    s->stream = align__dataset_has_source(data);
    s->L = prm.max_seq_len;
    if (dup_opt(&s->user_prefix, prm.user_prefix) || dup_opt(&s->assistant_prefix, prm.assistant_prefix)) {
        rm_free_obj(s);
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    }
    s->p.user_prefix = s->user_prefix;
    s->p.assistant_prefix = s->assistant_prefix;
    s->p.on_step = NULL;
    s->p.on_step_user_data = NULL;

    /* The scorer's sequence builder, configured as align_reward_model_score
     * would be with the same flags and prefixes. */
    align_reward_params rp;
    align_reward_default_params(&rp, sizeof rp);
    rp.flags = prm.flags & ALIGN_REWARD_CHAT;
    rp.max_seq_len = prm.max_seq_len;
    rp.truncation = prm.truncation;
    rp.user_prefix = s->user_prefix;
    rp.assistant_prefix = s->assistant_prefix;
    if ((rc = align_reward_model_from_model(&s->scorer, m, t, &rp)) < 0) {
        rm_free_obj(s);
        return align__error(NULL, rc, "%s: %s", fn, align_last_errmsg());
    }
    s->tp = align__reward_model_template(s->scorer);

    s->step_cap = prm.micro_batch * prm.grad_accum;
    s->step_rec = align__calloc((size_t)s->step_cap, sizeof *s->step_rec);
    if (!s->step_rec || ingest(s, -1, NULL) < 0) {
        rm_free_obj(s);
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    }
    if (s->n_ex == 0 && !s->stream) {
        int64_t n = align_dataset_size(data);
        rm_free_obj(s);
        return align__error(NULL, ALIGN_EINVAL, "%s: the dataset (%lld records) has no ranking, preference, label "
                            "or score record to learn from (with these weights; a ranking whose responses are "
                            "all tied gives no pair)", fn, (long long)n);
    }
    align__rng_init(&s->pos.next_rng, prm.seed, 0);
    s->pos.epoch_rng = s->pos.next_rng;

    align_trainer *tr = NULL;
    align__role role = {"policy", m, opt};
    rc = align__trainer_new_roles(&tr, &rm_vtable, &role, 1, prm.on_step, prm.on_step_user_data);
    if (rc < 0) {
        rm_free_obj(s);
        return rc;
    }
    tr->algo = s;
    *out = tr;
    return ALIGN_OK;
}
