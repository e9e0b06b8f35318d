/*
 * dpo.c — preference-optimisation trainers: DPO and its variants over
 * rankings (pairs are K = 2), and KTO over labelled responses. The
 * objectives are pref_loss.c's; this file turns records into sequences,
 * runs the models, caches the reference and keeps the state.
 *
 * Sequences. A response y to prompt x is the chat template's pair form
 * (align__template_encode_pair): the prompt's tokens, then y's tokens and the
 * end-of-turn, i.e. exactly the sequence SFT trains a demonstration on. The
 * pair form is encode_prompt(x) followed by encode_response(y), so the two
 * parts are tokenized once, separately, and joined per row (which also gives
 * KTO's mismatched pairs for free). S(y) = sum of log p over the response
 * and end-of-turn tokens.
 *
 * One DPO step = micro_batch * grad_accum records; every response of a
 * record is in the same policy forward. Loss = mean over the step's records
 * of the record's loss (a pair's loss for K = 2, pref_loss's ranking modes
 * for K > 2); d loss / d S is spread evenly over the response's tokens
 * (pref_loss.h) and sent into align_model_backward.
 *
 * Reference cache. The reference's S of every response is computed the first
 * time its record is used, with one forward per record (so the value does
 * not depend on which records share a batch), and kept: later epochs and
 * evaluations of the training data do not run the reference. The cache is
 * saved with checkpoints (ref_cache.bin) and restored by resume. With
 * ALIGN_DPO_RELEASE_REFERENCE, once every record is cached the trainer never
 * touches the reference again (metric "ref_cache/fill" == 1 after a step,
 * or after a resume whose checkpoint had a full cache): the host may free it.
 *
 * KTO step = micro_batch * grad_accum labelled examples. z0 (the KL reference
 * point, pref_loss.h) comes from the step's examples paired with the
 * previous example's response; those mismatched pairs run through the policy
 * (no backward) and the reference every step (they depend on the step's
 * composition, so they are not cached), then each micro-batch runs forward,
 * loss with that z0, backward. The matched pairs' reference values are
 * cached as for DPO.
 */
#include "train/trainer.h"
#include "dist/dist.h"
#include "train/pref_loss.h"
#include "data/dataset.h"
#include "data/template.h"
#include "model/model.h"
#include "optim/optim.h"

#include <math.h>
#include <string.h>

/* ---- the tokenized data ------------------------------------------------------ */

typedef struct prec {
    int64_t prompt;    /* offset of the prompt's tokens in pool */
    int32_t plen;
    int32_t k;         /* responses */
    int64_t resp0;     /* first response in resp[] */
    int64_t record;    /* dataset index (messages) */
} prec;

typedef struct presp {
    int64_t off;       /* response + end-of-turn tokens in pool */
    int32_t len;
    int32_t rank;      /* place (DPO) */
    int32_t good;      /* label (KTO) */
} presp;

typedef struct pdata {
    int32_t *pool;
    int64_t  n_pool, cap_pool;
    prec    *rec;
    int64_t  n_rec, cap_rec;
    presp   *resp;
    int64_t  n_resp, cap_resp;
    int32_t  k_max;
    int64_t  skipped;  /* records of another kind, or too long */
} pdata;

static void pdata_free(pdata *d)
{
    align__free(d->pool);
    align__free(d->rec);
    align__free(d->resp);
    memset(d, 0, sizeof *d);
}

static int grow(void **p, int64_t *cap, int64_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = align__realloc(*p, (size_t)c * sz);
    if (!q)
        return ALIGN_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

/* An internal truncation mode for KTO's mismatched pairs, which must fit
 * whatever the lengths: the response's start, after the end of the prompt. */
#define FIT_ANY 3

/* Where prompt (P tokens) + response (R tokens) goes into a row of L: the
 * prompt's first *pcut tokens are dropped and the response keeps *rkeep.
 * 0 if the response would have no scored token. */
static int fit(int32_t P, int32_t R, int32_t L, int32_t trunc, int32_t *pcut, int32_t *rkeep)
{
    *pcut = 0;
    *rkeep = R;
    if (trunc == FIT_ANY) { /* as much prompt as fits before the response's start */
        *rkeep = ALIGN__MIN(R, L - (P > 0 ? 1 : 0));
        *pcut = P - ALIGN__MIN(P, L - *rkeep);
    } else if (P + R > L) {
        if (trunc == ALIGN_TRUNCATE_DROP)
            return 0;
        if (trunc == ALIGN_TRUNCATE_LEFT) {
            if (R > L - 1)
                return 0; /* the response alone does not fit after one prompt token */
            *pcut = P + R - L;
        } else {
            *rkeep = L - P;
        }
    }
    int32_t pk = P - *pcut;
    int32_t start = pk > 1 ? pk : 1, end = pk + *rkeep;
    return end > start;
}

/* Span [start, end) in token_logprobs coordinates of a row built by fit. */
static void span_of(int32_t P, int32_t R, int32_t L, int32_t trunc, int32_t *len, int32_t *s, int32_t *e)
{
    int32_t pcut, rkeep;
    (void)fit(P, R, L, trunc, &pcut, &rkeep);
    int32_t pk = P - pcut;
    int32_t a = pk > 1 ? pk : 1;
    *len = pk + rkeep;
    *s = a - 1;
    *e = pk + rkeep - 1;
}

/* Writes prompt + response into row (width T). */
static void build_row(const pdata *d, const prec *r, const presp *y, int32_t L, int32_t trunc, int32_t *row)
{
    int32_t pcut, rkeep;
    (void)fit(r->plen, y->len, L, trunc, &pcut, &rkeep);
    int32_t pk = r->plen - pcut;
    memcpy(row, d->pool + r->prompt + pcut, (size_t)pk * sizeof(int32_t));
    memcpy(row + pk, d->pool + y->off, (size_t)rkeep * sizeof(int32_t));
}

static int push_tokens(pdata *d, const align__tokbuf *b, int64_t *off)
{
    if (grow((void **)&d->pool, &d->cap_pool, d->n_pool + b->n, sizeof(int32_t)))
        return ALIGN_ENOMEM;
    memcpy(d->pool + d->n_pool, b->ids, (size_t)b->n * sizeof(int32_t));
    *off = d->n_pool;
    d->n_pool += b->n;
    return 0;
}

/* Tokenizes the usable records of ds: rankings (kto == 0) or labels (kto == 1).
 * what: the caller's name for messages. */
static int pdata_build(pdata *d, align_dataset *ds, const align_tokenizer *t, int kto, int32_t L, int32_t trunc,
                       align__errbuf *eb)
{
    memset(d, 0, sizeof *d);
    align__template tp;
    int rc = align__template_init(&tp, t, NULL, NULL, NULL, eb);
    if (rc < 0)
        return rc;
    align__tokbuf pb = {0}, rb = {0};
    const int64_t n = align_dataset_size(ds);
    for (int64_t i = 0; i < n && rc == 0; i++) {
        align__record_view v;
        if ((rc = align__dataset_get(ds, i, &v)) < 0)
            break;
        int want = kto ? ALIGN_RECORD_LABEL : ALIGN_RECORD_RANKING;
        if (v.kind != want) {
            d->skipped++;
            continue;
        }
        pb.n = 0;
        if ((rc = align__template_encode_prompt(&tp, &pb, v.prompt ? v.prompt : "", v.prompt ? v.prompt_len : 0,
                                                eb)) < 0)
            break;
        int32_t k = kto ? 1 : v.n_items;
        if (k < 1 || (!kto && k < 2)) {
            rc = align__error(eb, ALIGN_EINVAL, "record %lld: a ranking needs at least 2 responses", (long long)i);
            break;
        }
        /* checks first: empty responses, equal texts at different places */
        for (int32_t j = 0; j < k && rc == 0; j++) {
            const char *tx;
            size_t tl;
            int32_t rk = 0;
            if (kto) {
                tx = v.response;
                tl = v.response_len;
            } else if ((rc = align__dataset_item(ds, i, j, NULL, NULL, &tx, &tl, &rk)) < 0) {
                break;
            }
            if (tl == 0 || !tx) {
                rc = align__error(eb, ALIGN_EINVAL, "record %lld: response %d is empty", (long long)i, (int)j);
                break;
            }
            for (int32_t j2 = 0; !kto && j2 < j; j2++) {
                const char *tx2;
                size_t tl2;
                int32_t rk2 = 0;
                if ((rc = align__dataset_item(ds, i, j2, NULL, NULL, &tx2, &tl2, &rk2)) < 0)
                    break;
                if (rk2 != rk && tl2 == tl && memcmp(tx, tx2, tl) == 0) {
                    rc = align__error(eb, ALIGN_EINVAL,
                                      "record %lld: responses %d and %d have the same text but different places "
                                      "(chosen equals rejected)", (long long)i, (int)j2, (int)j);
                    break;
                }
            }
        }
        if (rc < 0)
            break;
        int ok = 1;
        int64_t resp0 = d->n_resp;
        int64_t pool0 = d->n_pool;
        int64_t poff;
        if ((rc = push_tokens(d, &pb, &poff)) < 0)
            break;
        for (int32_t j = 0; j < k; j++) {
            const char *tx;
            size_t tl;
            int32_t rk = 0;
            if (kto) {
                tx = v.response;
                tl = v.response_len;
            } else {
                (void)align__dataset_item(ds, i, j, NULL, NULL, &tx, &tl, &rk);
            }
            rb.n = 0;
            if ((rc = align__template_encode_response(&tp, &rb, tx, tl, NULL, NULL, eb)) < 0)
                break;
            int32_t pcut, rkeep;
            if (pb.n > INT32_MAX / 2 || rb.n > INT32_MAX / 2 ||
                !fit((int32_t)pb.n, (int32_t)rb.n, L, trunc, &pcut, &rkeep))
                ok = 0;
            int64_t off;
            if ((rc = push_tokens(d, &rb, &off)) < 0 ||
                (rc = grow((void **)&d->resp, &d->cap_resp, d->n_resp + 1, sizeof(presp))) < 0)
                break;
            presp *y = &d->resp[d->n_resp++];
            y->off = off;
            y->len = (int32_t)rb.n;
            y->rank = rk;
            y->good = kto ? (v.good != 0) : 0;
        }
        if (rc < 0)
            break;
        if (!ok) {
            d->n_resp = resp0;
            d->n_pool = pool0;
            d->skipped++;
            continue;
        }
        if ((rc = grow((void **)&d->rec, &d->cap_rec, d->n_rec + 1, sizeof(prec))) < 0)
            break;
        prec *r = &d->rec[d->n_rec++];
        r->prompt = poff;
        r->plen = (int32_t)pb.n;
        r->k = k;
        r->resp0 = resp0;
        r->record = i;
        d->k_max = ALIGN__MAX(d->k_max, k);
    }
    if (rc == ALIGN_ENOMEM)
        align__error(eb, rc, "out of memory tokenizing the dataset");
    align__tokbuf_free(&pb);
    align__tokbuf_free(&rb);
    align__template_free(&tp);
    if (rc < 0) {
        pdata_free(d);
        return rc;
    }
    if (d->n_rec == 0) {
        int64_t sk = d->skipped;
        pdata_free(d);
        return align__error(eb, ALIGN_EINVAL, "the dataset has no usable %s record (%lld skipped: another kind, "
                            "or too long for max_seq_len %d)", kto ? "label" : "ranking/preference",
                            (long long)sk, (int)L);
    }
    return ALIGN_OK;
}

/* ---- the trainer object ------------------------------------------------------ */

typedef struct pref {
    int kto;
    align_dpo_params p;          /* DPO (copied) */
    align_kto_params kp;         /* KTO (copied) */
    align__pref_params lp;       /* the loss */
    align__kto_params klp;
    uint32_t flags;
    int32_t mb, ga, L, trunc, max_steps, epochs;
    uint64_t seed;
    align_model *ref;            /* borrowed; NULL = none or released */
    int released;
    int32_t ref_vocab;
    align_model_params ref_cfg;  /* the reference's shape (setup) */
    const align_tokenizer *tok;
    pdata d;
    /* iteration */
    int64_t epoch, pos;          /* epochs started; next index in order */
    int64_t *order;
    int64_t snap_epoch, snap_pos;
    /* reference cache: per response */
    double  *ref_sum;
    uint8_t *cached;             /* per record */
    int64_t  n_cached;
    /* buffers: rows of one micro-batch [rows][L] */
    int32_t  max_rows;
    int32_t *tokens, *lengths, *s0, *s1;
    float   *logp, *dlogp;
    double  *pi, *refv, *dS;
    int64_t *step_recs;
} pref;

static void order_build(pref *s)
{
    const int64_t n = s->d.n_rec;
    for (int64_t i = 0; i < n; i++)
        s->order[i] = i;
    if (s->flags & ALIGN_DPO_SEQUENTIAL || s->epoch < 1)
        return;
    align__rng r;
    align__rng_init(&r, s->seed, 0x70726566u + (uint64_t)s->epoch);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)align__rng_below(&r, (uint32_t)(i + 1));
        int64_t t = s->order[i];
        s->order[i] = s->order[j];
        s->order[j] = t;
    }
}

/* The next record of the run, or -1 at the end of the planned epochs. */
static int64_t next_record(pref *s)
{
    if (s->epoch == 0 || s->pos >= s->d.n_rec) {
        if (s->max_steps == 0 && s->epoch >= s->epochs)
            return -1;
        s->epoch++;
        s->pos = 0;
        order_build(s);
    }
    return s->order[s->pos++];
}

/* Runs the reference over record r's responses (one forward of the record
 * alone) and writes their sums into out. */
static int ref_record(pref *s, const pdata *d, int64_t r, double *out, align__errbuf *eb, int64_t *processed)
{
    const prec *rc_ = &d->rec[r];
    int32_t T = 2;
    for (int32_t j = 0; j < rc_->k; j++) {
        int32_t len, a, b;
        span_of(rc_->plen, d->resp[rc_->resp0 + j].len, s->L, s->trunc, &len, &a, &b);
        T = ALIGN__MAX(T, len);
    }
    memset(s->tokens, 0, (size_t)rc_->k * T * sizeof(int32_t));
    for (int32_t j = 0; j < rc_->k; j++) {
        const presp *y = &d->resp[rc_->resp0 + j];
        build_row(d, rc_, y, s->L, s->trunc, s->tokens + (size_t)j * T);
        span_of(rc_->plen, y->len, s->L, s->trunc, &s->lengths[j], &s->s0[j], &s->s1[j]);
        *processed += s->lengths[j];
    }
    int rc = align_model_forward(s->ref, s->tokens, s->lengths, rc_->k, T, s->logp, NULL, NULL);
    if (rc < 0)
        return align__error(eb, rc, "reference forward failed: %s", align_model_errmsg(s->ref));
    return align__pref_reduce(eb, out, s->logp, s->s0, s->s1, rc_->k, T, ALIGN__PREF_SUM);
}

/* Reference sums of record r (cached, or computed; cache = 0 never stores). */
static int ref_sums(pref *s, const pdata *d, int64_t r, int cache, double *out, align__errbuf *eb,
                    int64_t *processed)
{
    const prec *rc_ = &d->rec[r];
    if (cache && s->cached[r]) {
        memcpy(out, s->ref_sum + rc_->resp0, (size_t)rc_->k * sizeof(double));
        return ALIGN_OK;
    }
    if (!s->ref)
        return align__error(eb, ALIGN_EMISUSE, "the reference model was released (ALIGN_DPO_RELEASE_REFERENCE) "
                            "and is needed for data outside the cache");
    int rc = ref_record(s, d, r, out, eb, processed);
    if (rc < 0)
        return rc;
    if (cache) {
        memcpy(s->ref_sum + rc_->resp0, out, (size_t)rc_->k * sizeof(double));
        s->cached[r] = 1;
        s->n_cached++;
    }
    return ALIGN_OK;
}

/* Policy forward of records recs[0..n) (all responses); fills tokens/lengths/
 * spans for the rows and s->pi. Returns rows in *rows_out and T. */
static int policy_forward(pref *s, const pdata *d, const int64_t *recs, int32_t n, int32_t *rows_out, int32_t *T_out,
                          align_model *m, align__errbuf *eb)
{
    int32_t rows = 0, T = 2;
    for (int32_t i = 0; i < n; i++) {
        const prec *r = &d->rec[recs[i]];
        for (int32_t j = 0; j < r->k; j++) {
            int32_t len, a, b;
            span_of(r->plen, d->resp[r->resp0 + j].len, s->L, s->trunc, &len, &a, &b);
            T = ALIGN__MAX(T, len);
        }
    }
    for (int32_t i = 0; i < n; i++) {
        const prec *r = &d->rec[recs[i]];
        for (int32_t j = 0; j < r->k; j++, rows++) {
            const presp *y = &d->resp[r->resp0 + j];
            memset(s->tokens + (size_t)rows * T, 0, (size_t)T * sizeof(int32_t));
            build_row(d, r, y, s->L, s->trunc, s->tokens + (size_t)rows * T);
            span_of(r->plen, y->len, s->L, s->trunc, &s->lengths[rows], &s->s0[rows], &s->s1[rows]);
        }
    }
    int rc = align_model_forward(m, s->tokens, s->lengths, rows, T, s->logp, NULL, NULL);
    if (rc < 0)
        return align__error(eb, rc, "policy forward failed: %s", align_model_errmsg(m));
    rc = align__pref_reduce(eb, s->pi, s->logp, s->s0, s->s1, rows, T, ALIGN__PREF_SUM);
    *rows_out = rows;
    *T_out = T;
    return rc;
}

/* ---- DPO: loss of one record --------------------------------------------------- */

typedef struct dpo_acc {
    double loss, rc, rr, margin, acc, lpc, lpr, nll;
    int64_t pairs;       /* pairs in the metrics */
    int64_t records;
} dpo_acc;

/* Record loss and d/dS (not yet scaled by the step's record count) plus the
 * pair metrics. pi, ref, dS: the record's K responses. */
static int dpo_record(pref *s, const pdata *d, int64_t r, const double *pi, const double *ref, double *dS,
                      dpo_acc *acc, align__errbuf *eb)
{
    const prec *rc_ = &d->rec[r];
    const int32_t k = rc_->k;
    int32_t rank[64], len[64];
    int32_t *rk = rank, *ln = len;
    if (k > 64) {
        rk = align__malloc((size_t)k * 2 * sizeof(int32_t));
        if (!rk)
            return align__error(eb, ALIGN_ENOMEM, "out of memory");
        ln = rk + k;
    }
    for (int32_t j = 0; j < k; j++) {
        const presp *y = &d->resp[rc_->resp0 + j];
        int32_t l, a, b;
        span_of(rc_->plen, y->len, s->L, s->trunc, &l, &a, &b);
        rk[j] = y->rank;
        ln[j] = b - a;
    }
    int rc = ALIGN_OK;
    const int need_ref = align__pref_needs_ref(s->lp.loss) || s->p.ranking == ALIGN_RANKING_PLACKETT_LUCE;
    if (k == 2) {
        if (rk[0] == rk[1]) {
            dS[0] = dS[1] = 0.0; /* a tie: no preference */
        } else {
            int w = rk[0] < rk[1] ? 0 : 1, l = 1 - w;
            align__pref_out o;
            rc = align__pref_pair(eb, &s->lp, pi[w], pi[l], need_ref ? ref[w] : 0.0, need_ref ? ref[l] : 0.0, ln[w],
                                  ln[l], &o);
            if (rc == 0) {
                dS[w] = o.d_chosen;
                dS[l] = o.d_rejected;
                acc->loss += o.loss;
            }
        }
    } else {
        align__rank_out ro;
        rc = align__pref_ranking(eb, &s->lp, s->p.ranking, k, rk, pi, need_ref ? ref : NULL, ln, dS, &ro);
        if (rc == 0)
            acc->loss += ro.loss;
    }
    /* pair metrics over the pairs the mode uses (all ordered pairs for PL) */
    int32_t best = INT32_MAX;
    for (int32_t j = 0; j < k; j++)
        best = ALIGN__MIN(best, rk[j]);
    for (int32_t w = 0; w < k && rc == 0; w++)
        for (int32_t l = 0; l < k && rc == 0; l++) {
            if (!(rk[w] < rk[l]))
                continue;
            if (k > 2 && s->p.ranking == ALIGN_RANKING_BEST_VS_REST && rk[w] != best)
                continue;
            align__pref_out o;
            align__pref_params mp = s->lp;
            rc = align__pref_pair(eb, &mp, pi[w], pi[l], need_ref ? ref[w] : 0.0, need_ref ? ref[l] : 0.0, ln[w],
                                  ln[l], &o);
            if (rc)
                break;
            acc->rc += o.reward_chosen;
            acc->rr += o.reward_rejected;
            acc->margin += o.margin;
            acc->acc += o.accuracy;
            acc->lpc += o.logp_chosen;
            acc->lpr += o.logp_rejected;
            acc->nll += o.nll;
            acc->pairs++;
        }
    acc->records++;
    if (rk != rank)
        align__free(rk);
    return rc;
}

static void dpo_report(align__step_ctx *ctx, const pref *s, const dpo_acc *a)
{
    double np = a->pairs > 0 ? (double)a->pairs : 1.0;
    double loss = a->records > 0 ? a->loss / (double)a->records : 0.0;
    ctx->stats.loss = (float)loss;
    ctx->stats.accuracy = (float)(a->acc / np);
    align__metric(ctx, "loss", loss);
    align__metric(ctx, "rewards/chosen", a->rc / np);
    align__metric(ctx, "rewards/rejected", a->rr / np);
    align__metric(ctx, "rewards/accuracies", a->acc / np);
    align__metric(ctx, "rewards/margins", a->margin / np);
    align__metric(ctx, "logps/chosen", a->lpc / np);
    align__metric(ctx, "logps/rejected", a->lpr / np);
    if (s->lp.sft_alpha > 0.0 || s->lp.loss == ALIGN__PREF_ORPO)
        align__metric(ctx, "nll", a->nll / np);
    align__metric(ctx, "tokens", (double)ctx->stats.tokens);
    align__metric(ctx, "sequences", (double)ctx->stats.sequences);
}

static int uses_cache(const pref *s)
{
    return !(s->flags & ALIGN_DPO_NO_REFERENCE_CACHE);
}

static int need_reference(const pref *s)
{
    return s->kto || align__pref_needs_ref(s->lp.loss) || s->p.ranking == ALIGN_RANKING_PLACKETT_LUCE;
}

static void maybe_release(pref *s)
{
    if ((s->flags & ALIGN_DPO_RELEASE_REFERENCE) && s->n_cached == s->d.n_rec) {
        s->ref = NULL;
        s->released = 1;
    }
}

/* Runs records recs[0..n) (the step's, or an evaluation batch): forward,
 * loss, and with train != 0 backward of d(mean over n_total)/dS. */
static int dpo_micro(align_trainer *tr, pref *s, const pdata *d, const int64_t *recs, int32_t n, int64_t n_total,
                     int train, int cache, align_model *m, dpo_acc *acc, align__step_ctx *ctx, double *t_fwd,
                     double *t_bwd)
{
    int32_t rows = 0, T = 2;
    double t0 = align__now_sec();
    int rc = policy_forward(s, d, recs, n, &rows, &T, m, &tr->err);
    if (rc == ALIGN_ENONFINITE) {
        ctx->nonfinite = 1;
        return ALIGN_OK;
    }
    if (rc < 0)
        return rc;
    int64_t processed = 0;
    for (int32_t i = 0; i < rows; i++) {
        processed += s->lengths[i];
        ctx->stats.tokens += s->s1[i] - s->s0[i];
    }
    ctx->stats.sequences += rows;
    /* spans and lengths of the policy rows are needed again for the spread:
     * the reference forwards reuse the row buffers, so keep ours aside */
    int32_t *ps0 = s->s0 + s->max_rows, *ps1 = s->s1 + s->max_rows;
    memcpy(ps0, s->s0, (size_t)rows * sizeof(int32_t));
    memcpy(ps1, s->s1, (size_t)rows * sizeof(int32_t));
    if (need_reference(s)) {
        int32_t row = 0;
        for (int32_t i = 0; i < n; i++) {
            rc = ref_sums(s, d, recs[i], cache, s->refv + row, &tr->err, &processed);
            if (rc == ALIGN_ENONFINITE) {
                ctx->nonfinite = 1;
                return ALIGN_OK;
            }
            if (rc < 0)
                return rc;
            row += d->rec[recs[i]].k;
        }
    }
    /* reference forwards overwrote s->logp; the backward needs the policy's
     * activations only, which the reference (another model) did not touch */
    *t_fwd += align__now_sec() - t0;
    ctx->tokens_processed += processed;
    int32_t row = 0;
    for (int32_t i = 0; i < n; i++) {
        rc = dpo_record(s, d, recs[i], s->pi + row, s->refv + row, s->dS + row, acc, &tr->err);
        if (rc == ALIGN_ENONFINITE) {
            ctx->nonfinite = 1;
            return ALIGN_OK;
        }
        if (rc < 0)
            return rc;
        row += d->rec[recs[i]].k;
    }
    if (!train || ctx->nonfinite)
        return ALIGN_OK;
    for (int32_t i = 0; i < rows; i++)
        s->dS[i] /= (double)n_total;
    double t1 = align__now_sec();
    memset(s->dlogp, 0, (size_t)rows * (T - 1) * sizeof(float));
    if ((rc = align__pref_spread(&tr->err, s->dlogp, s->dS, ps0, ps1, rows, T, ALIGN__PREF_SUM)) < 0)
        return rc;
    rc = align_model_backward(m, s->dlogp, NULL);
    *t_bwd += align__now_sec() - t1;
    if (rc < 0)
        return align__error(&tr->err, rc, "backward failed: %s", align_model_errmsg(m));
    return ALIGN_OK;
}

static int dpo_accumulate(align_trainer *tr, align__step_ctx *ctx)
{
    pref *s = tr->algo;
    if (s->max_steps > 0 && tr->steps >= s->max_steps)
        return ALIGN_DONE;
    const int32_t want = s->mb * s->ga;
    int32_t n = 0;
    while (n < want) {
        int64_t r = next_record(s);
        if (r < 0)
            break;
        s->step_recs[n++] = r;
    }
    if (n == 0)
        return ALIGN_DONE;
    dpo_acc acc;
    memset(&acc, 0, sizeof acc);
    double t_fwd = 0, t_bwd = 0;
    /* Data parallel: every rank reads the step's records, runs its share
     * (the gradient is still divided by the step's n). */
    int64_t lo, hi;
    align__dist_share(tr, n, &lo, &hi);
    for (int32_t i0 = (int32_t)lo; i0 < (int32_t)hi; i0 += s->mb) {
        int rc = align__trainer_poll_stop(tr);
        if (rc < 0)
            return rc;
        int32_t m = ALIGN__MIN(s->mb, (int32_t)hi - i0);
        rc = dpo_micro(tr, s, &s->d, s->step_recs + i0, m, n, 1, uses_cache(s), tr->policy, &acc, ctx, &t_fwd,
                       &t_bwd);
        if (rc < 0)
            return rc;
    }
    ctx->stats.time_forward_ms = (float)(t_fwd * 1e3);
    ctx->stats.time_backward_ms = (float)(t_bwd * 1e3);
    /* Statistics in dpo_finish, from sums the trainer adds over ranks. */
    const double part[] = {acc.loss, acc.rc, acc.rr, acc.margin, acc.acc, acc.lpc, acc.lpr, acc.nll,
                           (double)acc.pairs, (double)acc.records, (double)ctx->stats.tokens,
                           (double)ctx->stats.sequences};
    ctx->n_sums = (int32_t)(sizeof part / sizeof part[0]);
    memcpy(ctx->sums, part, sizeof part);
    if (uses_cache(s)) {
        align__metric(ctx, "ref_cache/fill", (double)s->n_cached / (double)s->d.n_rec);
        maybe_release(s);
    }
    return ALIGN_OK;
}

static void dpo_finish(align_trainer *tr, align__step_ctx *ctx)
{
    const double *v = ctx->sums;
    dpo_acc acc = {.loss = v[0], .rc = v[1], .rr = v[2], .margin = v[3], .acc = v[4], .lpc = v[5], .lpr = v[6],
                   .nll = v[7], .pairs = (int64_t)v[8], .records = (int64_t)v[9]};
    ctx->stats.tokens = (int64_t)v[10];
    ctx->stats.sequences = (int64_t)v[11];
    dpo_report(ctx, tr->algo, &acc);
}

/* ---- KTO ------------------------------------------------------------------- */

typedef struct kto_acc {
    double loss, rc, rr, lpc, lpr, kl;
    int64_t nc, nr, n;
} kto_acc;

/* Rows of examples ex[0..n): prompt of ex[i] with the response of
 * resp_of[i] (ex[i] itself when resp_of is NULL). */
static int kto_forward(pref *s, const int64_t *ex, const int64_t *resp_of, int32_t n, align_model *m, double *out,
                       int32_t *T_out, align__errbuf *eb)
{
    const pdata *d = &s->d;
    int32_t T = 2;
    for (int32_t i = 0; i < n; i++) {
        const prec *r = &d->rec[ex[i]];
        const presp *y = &d->resp[d->rec[resp_of ? resp_of[i] : ex[i]].resp0];
        int32_t len, a, b;
        span_of(r->plen, y->len, s->L, s->trunc, &len, &a, &b);
        T = ALIGN__MAX(T, len);
    }
    for (int32_t i = 0; i < n; i++) {
        const prec *r = &d->rec[ex[i]];
        const presp *y = &d->resp[d->rec[resp_of ? resp_of[i] : ex[i]].resp0];
        memset(s->tokens + (size_t)i * T, 0, (size_t)T * sizeof(int32_t));
        build_row(d, r, y, s->L, s->trunc, s->tokens + (size_t)i * T);
        span_of(r->plen, y->len, s->L, s->trunc, &s->lengths[i], &s->s0[i], &s->s1[i]);
    }
    int rc = align_model_forward(m, s->tokens, s->lengths, n, T, s->logp, NULL, NULL);
    if (rc < 0)
        return align__error(eb, rc, "forward failed: %s", align_model_errmsg(m));
    *T_out = T;
    return align__pref_reduce(eb, out, s->logp, s->s0, s->s1, n, T, ALIGN__PREF_SUM);
}

/* A mismatched pair may not fit (a long prompt with a long response) under
 * the configured truncation; it then keeps the response's start (FIT_ANY). */
static int32_t kl_trunc(const pref *s, int64_t ex, int64_t resp)
{
    int32_t pcut, rkeep;
    const pdata *d = &s->d;
    if (fit(d->rec[ex].plen, d->resp[d->rec[resp].resp0].len, s->L, s->trunc, &pcut, &rkeep))
        return s->trunc;
    return FIT_ANY;
}

/* z0 over examples ex[0..n) (policy and reference on the mismatched pairs). */
static int kto_kl(align_trainer *tr, pref *s, const int64_t *ex, int32_t n, align_model *m, double *z0,
                  int64_t *processed)
{
    int32_t *plan = align__malloc((size_t)n * (sizeof(int32_t) + sizeof(int64_t) + 2 * sizeof(double)) + 8);
    if (!plan)
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    int64_t *resp_of = (int64_t *)(void *)(plan + n + (n & 1));
    double *pik = (double *)(void *)(resp_of + n), *rfk = pik + n;
    int rc = align__kto_kl_plan(&tr->err, n, plan);
    for (int32_t i = 0; i < n && rc == 0; i++)
        resp_of[i] = ex[plan[i]];
    const int32_t save = s->trunc;
    /* row by row in micro-batches, each with its own truncation */
    for (int32_t i0 = 0; i0 < n && rc == 0; i0 += s->mb) {
        int32_t m_ = ALIGN__MIN(s->mb, n - i0);
        for (int pass = 0; pass < 2 && rc == 0; pass++) {
            align_model *mm = pass == 0 ? m : s->ref;
            if (!mm) {
                rc = align__error(&tr->err, ALIGN_EMISUSE, "KTO needs the reference model");
                break;
            }
            for (int32_t i = 0; i < m_ && rc == 0; i++) {
                int32_t T;
                s->trunc = kl_trunc(s, ex[i0 + i], resp_of[i0 + i]);
                rc = kto_forward(s, ex + i0 + i, resp_of + i0 + i, 1, mm, (pass == 0 ? pik : rfk) + i0 + i, &T,
                                 &tr->err);
                s->trunc = save;
                *processed += s->lengths[0];
            }
        }
    }
    s->trunc = save;
    if (rc == 0)
        rc = align__kto_kl_estimate(&tr->err, n, pik, rfk, z0);
    align__free(plan);
    return rc;
}

static int kto_micro(align_trainer *tr, pref *s, const int64_t *ex, int32_t n, int64_t n_total, double z0, int train,
                     int cache, align_model *m, kto_acc *acc, align__step_ctx *ctx)
{
    int32_t T;
    int64_t processed = 0;
    int rc = kto_forward(s, ex, NULL, n, m, s->pi, &T, &tr->err);
    if (rc == ALIGN_ENONFINITE) {
        ctx->nonfinite = 1;
        return ALIGN_OK;
    }
    if (rc < 0)
        return rc;
    int32_t *ps0 = s->s0 + s->max_rows, *ps1 = s->s1 + s->max_rows;
    for (int32_t i = 0; i < n; i++) {
        processed += s->lengths[i];
        ctx->stats.tokens += s->s1[i] - s->s0[i];
    }
    memcpy(ps0, s->s0, (size_t)n * sizeof(int32_t));
    memcpy(ps1, s->s1, (size_t)n * sizeof(int32_t));
    ctx->stats.sequences += n;
    uint8_t good[512];
    uint8_t *g = n <= 512 ? good : align__malloc((size_t)n);
    if (!g)
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    for (int32_t i = 0; i < n && rc == 0; i++) {
        rc = ref_sums(s, &s->d, ex[i], cache, s->refv + i, &tr->err, &processed);
        g[i] = (uint8_t)s->d.resp[s->d.rec[ex[i]].resp0].good;
    }
    ctx->tokens_processed += processed;
    align__kto_out o;
    if (rc == 0)
        rc = align__kto_loss(&tr->err, &s->klp, n, s->pi, s->refv, g, z0, s->dS, &o);
    if (g != good)
        align__free(g);
    if (rc == ALIGN_ENONFINITE) {
        ctx->nonfinite = 1;
        return ALIGN_OK;
    }
    if (rc < 0)
        return rc;
    acc->loss += o.loss * n;
    acc->rc += o.reward_chosen * o.n_chosen;
    acc->rr += o.reward_rejected * o.n_rejected;
    acc->lpc += o.logp_chosen * o.n_chosen;
    acc->lpr += o.logp_rejected * o.n_rejected;
    acc->nc += o.n_chosen;
    acc->nr += o.n_rejected;
    acc->n += n;
    if (!train || ctx->nonfinite)
        return ALIGN_OK;
    /* kto_loss's d is of the micro-batch mean: rescale to the step mean */
    for (int32_t i = 0; i < n; i++)
        s->dS[i] *= (double)n / (double)n_total;
    memset(s->dlogp, 0, (size_t)n * (T - 1) * sizeof(float));
    if ((rc = align__pref_spread(&tr->err, s->dlogp, s->dS, ps0, ps1, n, T, ALIGN__PREF_SUM)) < 0)
        return rc;
    /* the reference forwards ran on another model; the policy's last
     * forward is this micro-batch's */
    rc = align_model_backward(m, s->dlogp, NULL);
    if (rc < 0)
        return align__error(&tr->err, rc, "backward failed: %s", align_model_errmsg(m));
    return ALIGN_OK;
}

static void kto_report(align__step_ctx *ctx, const kto_acc *a)
{
    double loss = a->n ? a->loss / (double)a->n : 0.0;
    ctx->stats.loss = (float)loss;
    align__metric(ctx, "loss", loss);
    align__metric(ctx, "kl", a->kl);
    align__metric(ctx, "rewards/chosen", a->nc ? a->rc / (double)a->nc : 0.0);
    align__metric(ctx, "rewards/rejected", a->nr ? a->rr / (double)a->nr : 0.0);
    align__metric(ctx, "logps/chosen", a->nc ? a->lpc / (double)a->nc : 0.0);
    align__metric(ctx, "logps/rejected", a->nr ? a->lpr / (double)a->nr : 0.0);
    align__metric(ctx, "tokens", (double)ctx->stats.tokens);
    align__metric(ctx, "sequences", (double)ctx->stats.sequences);
}

/* A whole KTO batch ex[0..n): z0, then the micro-batches. */
static int kto_batch(align_trainer *tr, pref *s, const int64_t *ex, int32_t n, int train, int cache, kto_acc *acc,
                     align__step_ctx *ctx, int poll)
{
    double z0 = 0.0, t0 = align__now_sec();
    int64_t processed = 0;
    int rc = kto_kl(tr, s, ex, n, tr->policy, &z0, &processed);
    ctx->tokens_processed += processed;
    if (rc == ALIGN_ENONFINITE) {
        ctx->nonfinite = 1;
        return ALIGN_OK;
    }
    if (rc < 0)
        return rc;
    acc->kl += z0;
    for (int32_t i0 = 0; i0 < n; i0 += s->mb) {
        if (poll && (rc = align__trainer_poll_stop(tr)) < 0)
            return rc;
        int32_t m = ALIGN__MIN(s->mb, n - i0);
        if ((rc = kto_micro(tr, s, ex + i0, m, n, z0, train, cache, tr->policy, acc, ctx)) < 0)
            return rc;
    }
    ctx->stats.time_forward_ms += (float)((align__now_sec() - t0) * 1e3);
    return ALIGN_OK;
}

static int kto_accumulate(align_trainer *tr, align__step_ctx *ctx)
{
    pref *s = tr->algo;
    if (s->max_steps > 0 && tr->steps >= s->max_steps)
        return ALIGN_DONE;
    const int32_t want = s->mb * s->ga;
    int32_t n = 0;
    while (n < want) {
        int64_t r = next_record(s);
        if (r < 0)
            break;
        s->step_recs[n++] = r;
    }
    if (n == 0)
        return ALIGN_DONE;
    /* The reference point is a statistic of the whole step's batch, taken
     * inside it: not split over ranks (yet). */
    if (tr->dist_on)
        return align__error(&tr->err, ALIGN_EMISUSE, "KTO is not data parallel (run it on one rank)");
    kto_acc acc;
    memset(&acc, 0, sizeof acc);
    int rc = kto_batch(tr, s, s->step_recs, n, 1, uses_cache(s), &acc, ctx, 1);
    if (rc < 0)
        return rc;
    kto_report(ctx, &acc);
    if (uses_cache(s))
        align__metric(ctx, "ref_cache/fill", (double)s->n_cached / (double)s->d.n_rec);
    return ALIGN_OK;
}

/* ---- evaluation ------------------------------------------------------------- */

static int pref_evaluate(align_trainer *tr, align_dataset *eval, align__step_ctx *ctx)
{
    pref *s = tr->algo;
    pdata ed;
    int rc = pdata_build(&ed, eval, s->tok, s->kto, s->L, s->trunc, &tr->err);
    if (rc < 0)
        return rc;
    if (ed.k_max > s->d.k_max) {
        pdata_free(&ed);
        return align__error(&tr->err, ALIGN_EINVAL, "evaluate: a ranking of %d responses; the trainer's buffers "
                            "hold rankings of up to %d (the training data's largest)", (int)ed.k_max,
                            (int)s->d.k_max);
    }
    int64_t *idx = align__malloc((size_t)ed.n_rec * sizeof(int64_t));
    if (!idx) {
        pdata_free(&ed);
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < ed.n_rec; i++)
        idx[i] = i;
    /* the trainer's data is swapped for the evaluation data while it runs
     * (the reference is never cached for it) */
    pdata keep = s->d;
    s->d = ed;
    if (!s->kto) {
        dpo_acc acc;
        memset(&acc, 0, sizeof acc);
        double tf = 0, tb = 0;
        for (int64_t i0 = 0; i0 < ed.n_rec && rc == 0; i0 += s->mb) {
            if ((rc = align__trainer_poll_stop(tr)) < 0)
                break;
            int32_t m = (int32_t)ALIGN__MIN((int64_t)s->mb, ed.n_rec - i0);
            rc = dpo_micro(tr, s, &s->d, idx + i0, m, ed.n_rec, 0, 0, tr->policy, &acc, ctx, &tf, &tb);
        }
        if (rc == 0) {
            ctx->stats.time_forward_ms = (float)(tf * 1e3);
            dpo_report(ctx, s, &acc);
        }
    } else {
        kto_acc acc;
        memset(&acc, 0, sizeof acc);
        int32_t step = s->mb * s->ga;
        int64_t batches = 0;
        for (int64_t i0 = 0; i0 < ed.n_rec && rc == 0; i0 += step, batches++) {
            if ((rc = align__trainer_poll_stop(tr)) < 0)
                break;
            int32_t m = (int32_t)ALIGN__MIN((int64_t)step, ed.n_rec - i0);
            rc = kto_batch(tr, s, idx + i0, m, 0, 0, &acc, ctx, 0);
        }
        if (rc == 0) {
            acc.kl = batches ? acc.kl / (double)batches : 0.0;
            kto_report(ctx, &acc);
        }
    }
    s->d = keep;
    pdata_free(&ed);
    align__free(idx);
    return rc;
}

/* ---- progress, transactions, checkpoints --------------------------------------- */

static int64_t pref_epoch(const align_trainer *tr)
{
    const pref *s = tr->algo;
    return s->epoch;
}

static float pref_progress(const align_trainer *tr, int64_t steps_done)
{
    const pref *s = tr->algo;
    double f;
    if (s->max_steps > 0)
        f = (double)steps_done / (double)s->max_steps;
    else
        f = s->epoch > 0 ? ((double)(s->epoch - 1) + (double)s->pos / (double)s->d.n_rec) / (double)s->epochs : 0.0;
    return (float)(f < 0.0 ? 0.0 : f > 1.0 ? 1.0 : f);
}

static int pref_begin(align_trainer *tr)
{
    pref *s = tr->algo;
    s->snap_epoch = s->epoch;
    s->snap_pos = s->pos;
    return ALIGN_OK;
}

static void pref_rollback(align_trainer *tr)
{
    pref *s = tr->algo;
    /* reference values computed by the failed step stay cached: they are
     * what the reference gives, whichever step asks */
    int rebuild = s->epoch != s->snap_epoch;
    s->epoch = s->snap_epoch;
    s->pos = s->snap_pos;
    if (rebuild)
        order_build(s);
}

#define CACHE_MAGIC "ALIGNREFCACHE1\n"

static int pref_save_state(const align_trainer *tr, json_t *obj, align__ckpt *ck)
{
    const pref *s = tr->algo;
    int rc = 0;
    rc |= align__json_set_i64(obj, "epoch", s->epoch);
    rc |= align__json_set_i64(obj, "position", s->pos);
    rc |= align__json_set_i64(obj, "ref_cached", s->n_cached);
    if (rc)
        return ALIGN_ENOMEM;
    if (!uses_cache(s))
        return ALIGN_OK;
    int64_t counts[2] = {s->d.n_rec, s->d.n_resp};
    align__chunk ch[4] = {{CACHE_MAGIC, 16}, {counts, sizeof counts}, {s->cached, (size_t)s->d.n_rec},
                          {s->ref_sum, (size_t)s->d.n_resp * sizeof(double)}};
    return align__ckpt_write(ck, "ref_cache.bin", ch, 4);
}

typedef struct pref_staged {
    int64_t epoch, pos, n_cached;
    char *cache;    /* file contents (NULL without the cache) */
} pref_staged;

static int pref_load_state(align_trainer *tr, const json_t *obj, align__ckpt *ck, void **staged)
{
    pref *s = tr->algo;
    pref_staged g;
    memset(&g, 0, sizeof g);
    if (align__json_get_i64(obj, "epoch", &g.epoch) || align__json_get_i64(obj, "position", &g.pos) ||
        align__json_get_i64(obj, "ref_cached", &g.n_cached) || g.epoch < 0 || g.pos < 0 || g.pos > s->d.n_rec ||
        g.n_cached < 0 || g.n_cached > s->d.n_rec)
        return align__error(&tr->err, ALIGN_EFORMAT, "trainer.json: missing or invalid data position");
    if (uses_cache(s)) {
        size_t len = 0;
        int rc = align__ckpt_read(ck, "ref_cache.bin", &g.cache, &len);
        if (rc < 0)
            return align__error(&tr->err, rc, "ref_cache.bin: %s", align__errmsg(align__ckpt_err(ck)));
        size_t want = 16 + 2 * sizeof(int64_t) + (size_t)s->d.n_rec + (size_t)s->d.n_resp * sizeof(double);
        int64_t counts[2];
        if (len == want)
            memcpy(counts, g.cache + 16, sizeof counts);
        if (len != want || memcmp(g.cache, CACHE_MAGIC, 16) != 0 || counts[0] != s->d.n_rec ||
            counts[1] != s->d.n_resp) {
            align__free(g.cache);
            return align__error(&tr->err, ALIGN_EFORMAT, "ref_cache.bin does not fit this data (%zu bytes, "
                                "expected %zu)", len, want);
        }
        int64_t filled = 0;
        const uint8_t *c = (const uint8_t *)g.cache + 16 + sizeof counts;
        for (int64_t i = 0; i < s->d.n_rec; i++)
            filled += c[i] != 0;
        if (filled != g.n_cached) {
            align__free(g.cache);
            return align__error(&tr->err, ALIGN_EFORMAT, "ref_cache.bin: %lld records cached, trainer.json says %lld",
                                (long long)filled, (long long)g.n_cached);
        }
    }
    pref_staged *p = align__malloc(sizeof *p);
    if (!p) {
        align__free(g.cache);
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    }
    *p = g;
    *staged = p;
    return ALIGN_OK;
}

static int pref_apply_state(align_trainer *tr, void *staged)
{
    pref *s = tr->algo;
    pref_staged *g = staged;
    s->epoch = g->epoch;
    s->pos = g->pos;
    order_build(s);
    if (g->cache) {
        const char *c = g->cache + 16 + 2 * sizeof(int64_t);
        memcpy(s->cached, c, (size_t)s->d.n_rec);
        memcpy(s->ref_sum, c + s->d.n_rec, (size_t)s->d.n_resp * sizeof(double));
        s->n_cached = g->n_cached;
        if (!s->kto)
            maybe_release(s);
    }
    return ALIGN_OK;
}

static void pref_free_staged(align_trainer *tr, void *staged)
{
    (void)tr;
    pref_staged *g = staged;
    if (g)
        align__free(g->cache);
    align__free(g);
}

static int pref_setup_json(const align_trainer *tr, json_t *obj)
{
    const pref *s = tr->algo;
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:I, s:I, s:I}", "flags",
                          (int)(s->flags & ~ALIGN_DPO_RELEASE_REFERENCE), "micro_batch", (int)s->mb, "grad_accum",
                          (int)s->ga, "max_seq_len", (int)s->L, "truncation", (int)s->trunc, "records",
                          (json_int_t)s->d.n_rec, "responses", (json_int_t)s->d.n_resp, "tokens",
                          (json_int_t)s->d.n_pool);
    if (!o)
        return ALIGN_ENOMEM;
    int bad = 0;
    if (s->kto) {
        bad |= json_object_set_new(o, "beta", json_real(s->kp.beta));
        bad |= json_object_set_new(o, "desirable_weight", json_real(s->kp.desirable_weight));
        bad |= json_object_set_new(o, "undesirable_weight", json_real(s->kp.undesirable_weight));
    } else {
        bad |= json_object_set_new(o, "loss", json_integer(s->p.loss));
        bad |= json_object_set_new(o, "ranking", json_integer(s->p.ranking));
        bad |= json_object_set_new(o, "beta", json_real(s->p.beta));
        bad |= json_object_set_new(o, "label_smoothing", json_real(s->p.label_smoothing));
        bad |= json_object_set_new(o, "simpo_gamma", json_real(s->p.simpo_gamma));
        bad |= json_object_set_new(o, "sft_alpha", json_real(s->p.sft_alpha));
    }
    if (s->ref_vocab > 0) {
        bad |= json_object_set_new(o, "reference", json_pack("{s:i, s:i, s:i, s:i}", "vocab_size",
                                                             (int)s->ref_cfg.vocab_size, "n_layer",
                                                             (int)s->ref_cfg.n_layer, "n_embd", (int)s->ref_cfg.n_embd,
                                                             "max_seq_len", (int)s->ref_cfg.max_seq_len));
    }
    bad |= align__json_set_u64(o, "seed", s->seed);
    if (bad || json_object_set_new(obj, s->kto ? "kto" : "dpo", o) != 0)
        return ALIGN_ENOMEM;
    return ALIGN_OK;
}

static void pref_free_obj(pref *s)
{
    if (!s)
        return;
    pdata_free(&s->d);
    align__free(s->order);
    align__free(s->ref_sum);
    align__free(s->cached);
    align__free(s->tokens);
    align__free(s->lengths);
    align__free(s->s0);
    align__free(s->s1);
    align__free(s->logp);
    align__free(s->dlogp);
    align__free(s->pi);
    align__free(s->refv);
    align__free(s->dS);
    align__free(s->step_recs);
    align__free(s);
}

static void pref_free(align_trainer *tr)
{
    pref_free_obj(tr->algo);
    tr->algo = NULL;
}

static const align__trainer_vtable dpo_vtable = {
    .name = "dpo",
    .algorithm = ALIGN_ALGO_DPO,
    .accumulate = dpo_accumulate,
    .finish = dpo_finish,
    .evaluate = pref_evaluate,
    .progress = pref_progress,
    .epoch = pref_epoch,
    .begin = pref_begin,
    .rollback = pref_rollback,
    .save_state = pref_save_state,
    .load_state = pref_load_state,
    .apply_state = pref_apply_state,
    .free_staged = pref_free_staged,
    .setup_json = pref_setup_json,
    .free = pref_free,
};

static const align__trainer_vtable kto_vtable = {
    .name = "kto",
    .algorithm = ALIGN_ALGO_KTO,
    .accumulate = kto_accumulate,
    .evaluate = pref_evaluate,
    .progress = pref_progress,
    .epoch = pref_epoch,
    .begin = pref_begin,
    .rollback = pref_rollback,
    .save_state = pref_save_state,
    .load_state = pref_load_state,
    .apply_state = pref_apply_state,
    .free_staged = pref_free_staged,
    .setup_json = pref_setup_json,
    .free = pref_free,
};

/* ---- constructors ------------------------------------------------------------- */

static const align_dpo_params dpo_defaults = {
    .struct_size = sizeof(align_dpo_params),
    .flags = 0,
    .loss = ALIGN_DPO_SIGMOID,
    .ranking = ALIGN_RANKING_ALL_PAIRS,
    .beta = 0.1f,
    .label_smoothing = 0.0f,
    .simpo_gamma = 0.5f,
    .sft_alpha = 0.0f,
    .micro_batch = 4,
    .grad_accum = 1,
    .max_seq_len = 0,
    .truncation = ALIGN_TRUNCATE_LEFT,
    .max_steps = 0,
    .epochs = 1,
    .seed = 1234,
};

static const align_kto_params kto_defaults = {
    .struct_size = sizeof(align_kto_params),
    .flags = 0,
    .beta = 0.1f,
    .desirable_weight = 1.0f,
    .undesirable_weight = 1.0f,
    .micro_batch = 8,
    .grad_accum = 1,
    .max_seq_len = 0,
    .truncation = ALIGN_TRUNCATE_LEFT,
    .max_steps = 0,
    .epochs = 1,
    .seed = 1234,
};

ALIGN_API int align_dpo_default_params(align_dpo_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &dpo_defaults, sizeof dpo_defaults, "align_dpo_default_params");
}

ALIGN_API int align_kto_default_params(align_kto_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &kto_defaults, sizeof kto_defaults, "align_kto_default_params");
}

/* The checks and setup both trainers share. */
static int pref_create(align_trainer **out, pref *s, const char *fn, align_model *policy, align_model *reference,
                       const align_tokenizer *t, align_dataset *data, align_optimizer *opt, align_step_fn on_step,
                       void *ud)
{
    int rc;
    if (opt && align__optimizer_model(opt) != policy) {
        pref_free_obj(s);
        return align__error(NULL, ALIGN_EINVAL, "%s: the optimizer was created for another model", fn);
    }
    if (reference == policy) {
        pref_free_obj(s);
        return align__error(NULL, ALIGN_EINVAL, "%s: the reference is the policy itself (give a frozen copy: "
                            "align_model_clone(&ref, policy, ALIGN_FROZEN))", fn);
    }
    align_model_params cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    if ((rc = align_model_config(policy, &cfg)) < 0) {
        pref_free_obj(s);
        return align__error(NULL, rc, "%s: %s", fn, align_model_errmsg(policy));
    }
    if (need_reference(s) && !reference) {
        pref_free_obj(s);
        return align__error(NULL, ALIGN_EINVAL, "%s: this loss needs a reference model (only SimPO and ORPO "
                            "are reference-free)", fn);
    }
    if (reference) {
        s->ref_cfg.struct_size = sizeof s->ref_cfg;
        if ((rc = align_model_config(reference, &s->ref_cfg)) < 0) {
            pref_free_obj(s);
            return align__error(NULL, rc, "%s: %s", fn, align_model_errmsg(reference));
        }
        if (s->ref_cfg.vocab_size != cfg.vocab_size) {
            int rv = s->ref_cfg.vocab_size;
            pref_free_obj(s);
            return align__error(NULL, ALIGN_EINVAL, "%s: the reference's vocabulary (%d) is not the policy's "
                                "(%d): log-probabilities of the same tokens cannot be compared", fn, rv,
                                (int)cfg.vocab_size);
        }
        if (need_reference(s)) {
            s->ref = reference;
            s->ref_vocab = s->ref_cfg.vocab_size;
        }
    }
    if (s->mb < 1 || s->mb > 65536 || s->ga < 1 || s->ga > 65536 || (int64_t)s->mb * s->ga > 1 << 20) {
        pref_free_obj(s);
        return align__error(NULL, ALIGN_EINVAL, "%s: micro_batch %d, grad_accum %d (1..65536, product <= 2^20)", fn,
                            (int)s->mb, (int)s->ga);
    }
    if (s->L == 0)
        s->L = cfg.max_seq_len;
    int32_t lim = cfg.max_seq_len;
    if (reference)
        lim = ALIGN__MIN(lim, s->ref_cfg.max_seq_len);
    if (s->L < 2 || s->L > lim) {
        pref_free_obj(s);
        return align__error(NULL, ALIGN_EINVAL, "%s: max_seq_len is %d (2..%d, the models' maximum)", fn, (int)s->L,
                            (int)lim);
    }
    if (s->trunc < ALIGN_TRUNCATE_RIGHT || s->trunc > ALIGN_TRUNCATE_DROP) {
        pref_free_obj(s);
        return align__error(NULL, ALIGN_EINVAL, "%s: truncation is %d (ALIGN_TRUNCATE_*)", fn, (int)s->trunc);
    }
    if (s->max_steps < 0 || (s->max_steps == 0 && s->epochs < 1)) {
        pref_free_obj(s);
        return align__error(NULL, ALIGN_EINVAL, "%s: max_steps %d, epochs %d (set one of them)", fn,
                            (int)s->max_steps, (int)s->epochs);
    }
    int32_t tv = align_tokenizer_vocab_size(t);
    if (tv <= 0 || tv > cfg.vocab_size) {
        pref_free_obj(s);
        return align__error(NULL, ALIGN_EINVAL, "%s: the tokenizer's vocabulary (%d) does not fit the model's (%d)",
                            fn, (int)tv, (int)cfg.vocab_size);
    }
    align__errbuf eb;
    align__error_clear(&eb);
    if ((rc = pdata_build(&s->d, data, t, s->kto, s->L, s->trunc, &eb)) < 0) {
        pref_free_obj(s);
        return align__error(NULL, rc, "%s: %s", fn, align__errmsg(&eb));
    }
    s->tok = t;
    const int64_t nr = s->d.n_rec;
    const int32_t kmax = s->kto ? 1 : s->d.k_max;
    s->max_rows = s->mb * kmax;
    const size_t R = (size_t)s->max_rows, L = (size_t)s->L;
    const size_t step = (size_t)s->mb * (size_t)s->ga;
    s->order = align__calloc((size_t)nr, sizeof(int64_t));
    s->ref_sum = align__calloc((size_t)s->d.n_resp, sizeof(double));
    s->cached = align__calloc((size_t)nr, 1);
    s->tokens = align__calloc(R * L, sizeof(int32_t));
    s->lengths = align__calloc(R, sizeof(int32_t));
    s->s0 = align__calloc(2 * R, sizeof(int32_t));
    s->s1 = align__calloc(2 * R, sizeof(int32_t));
    s->logp = align__calloc(R * (L - 1), sizeof(float));
    s->dlogp = align__calloc(R * (L - 1), sizeof(float));
    s->pi = align__calloc(R, sizeof(double));
    s->refv = align__calloc(R, sizeof(double));
    s->dS = align__calloc(R, sizeof(double));
    s->step_recs = align__calloc(step, sizeof(int64_t));
    if (!s->order || !s->ref_sum || !s->cached || !s->tokens || !s->lengths || !s->s0 || !s->s1 || !s->logp ||
        !s->dlogp || !s->pi || !s->refv || !s->dS || !s->step_recs) {
        pref_free_obj(s);
        return align__error(NULL, ALIGN_ENOMEM, "%s: out of memory", fn);
    }
    align_trainer *tr = NULL;
    align__role role = {"policy", policy, opt};
    rc = align__trainer_new_roles(&tr, s->kto ? &kto_vtable : &dpo_vtable, &role, 1, on_step, ud);
    if (rc < 0) {
        pref_free_obj(s);
        return rc;
    }
    tr->algo = s;
    *out = tr;
    return ALIGN_OK;
}

ALIGN_API int align_trainer_create_dpo(align_trainer **out, align_model *policy, align_model *reference,
                                       const align_tokenizer *t, align_dataset *prefs, align_optimizer *opt,
                                       const align_dpo_params *p)
{
    static const char fn[] = "align_trainer_create_dpo";
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (!policy || !t || !prefs)
        return align__error(NULL, ALIGN_EINVAL, "%s: %s is NULL", fn, !policy ? "policy" : !t ? "tokenizer" : "prefs");
    align_dpo_params prm = dpo_defaults;
    int rc = align__params_copy(&prm, sizeof prm, p, "align_dpo_params");
    if (rc)
        return rc;
    prm.struct_size = sizeof prm;
    const uint32_t known =
        ALIGN_DPO_LENGTH_NORM | ALIGN_DPO_SEQUENTIAL | ALIGN_DPO_RELEASE_REFERENCE | ALIGN_DPO_NO_REFERENCE_CACHE;
    if (prm.flags & ~known)
        return align__error(NULL, ALIGN_EINVAL, "align_dpo_params.flags has unknown bits 0x%x",
                            (unsigned)(prm.flags & ~known));
    if (prm.loss < 0 || prm.loss >= ALIGN__PREF_N_LOSSES)
        return align__error(NULL, ALIGN_EINVAL, "align_dpo_params.loss is %d (ALIGN_DPO_SIGMOID..ALIGN_DPO_ORPO)",
                            (int)prm.loss);
    if (prm.ranking < ALIGN_RANKING_ALL_PAIRS || prm.ranking > ALIGN_RANKING_PLACKETT_LUCE)
        return align__error(NULL, ALIGN_EINVAL, "align_dpo_params.ranking is %d (ALIGN_RANKING_*)", (int)prm.ranking);
    if (prm.ranking == ALIGN_RANKING_PLACKETT_LUCE && !align__pref_needs_ref(prm.loss))
        return align__error(NULL, ALIGN_EINVAL, "align_dpo_params: Plackett-Luce rankings need a reference-based "
                            "loss, not SimPO/ORPO");
    if ((prm.flags & ALIGN_DPO_RELEASE_REFERENCE) && (prm.flags & ALIGN_DPO_NO_REFERENCE_CACHE))
        return align__error(NULL, ALIGN_EINVAL, "align_dpo_params.flags: RELEASE_REFERENCE needs the cache "
                            "(NO_REFERENCE_CACHE is set)");
    pref *s = align__calloc(1, sizeof *s);
    if (!s)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    s->p = prm;
    s->p.on_step = NULL;
    s->p.on_step_user_data = NULL;
    align__pref_default_params(&s->lp);
    s->lp.loss = prm.loss;
    s->lp.flags = (prm.flags & ALIGN_DPO_LENGTH_NORM) ? ALIGN__PREF_LENGTH_NORM : 0u;
    s->lp.beta = prm.beta;
    s->lp.label_smoothing = prm.label_smoothing;
    s->lp.simpo_gamma = prm.simpo_gamma;
    s->lp.sft_alpha = prm.sft_alpha;
    align__errbuf eb;
    align__error_clear(&eb);
    if ((rc = align__pref_check_params(&eb, &s->lp)) < 0) {
        align__free(s);
        return align__error(NULL, rc, "align_dpo_params: %s", align__errmsg(&eb));
    }
    s->flags = prm.flags;
    s->mb = prm.micro_batch;
    s->ga = prm.grad_accum;
    s->L = prm.max_seq_len;
    s->trunc = prm.truncation;
    s->max_steps = prm.max_steps;
    s->epochs = prm.epochs;
    s->seed = prm.seed;
    return pref_create(out, s, fn, policy, reference, t, prefs, opt, prm.on_step, prm.on_step_user_data);
}

ALIGN_API int align_trainer_create_kto(align_trainer **out, align_model *policy, align_model *reference,
                                       const align_tokenizer *t, align_dataset *data, align_optimizer *opt,
                                       const align_kto_params *p)
{
    static const char fn[] = "align_trainer_create_kto";
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (!policy || !t || !data)
        return align__error(NULL, ALIGN_EINVAL, "%s: %s is NULL", fn, !policy ? "policy" : !t ? "tokenizer" : "data");
    align_kto_params prm = kto_defaults;
    int rc = align__params_copy(&prm, sizeof prm, p, "align_kto_params");
    if (rc)
        return rc;
    prm.struct_size = sizeof prm;
    const uint32_t known = ALIGN_DPO_SEQUENTIAL | ALIGN_DPO_NO_REFERENCE_CACHE;
    if (prm.flags & ~known)
        return align__error(NULL, ALIGN_EINVAL, "align_kto_params.flags has unknown bits 0x%x (KTO takes "
                            "ALIGN_DPO_SEQUENTIAL and ALIGN_DPO_NO_REFERENCE_CACHE)", (unsigned)(prm.flags & ~known));
    if (!(prm.beta > 0.0f) || !isfinite(prm.beta) || !(prm.desirable_weight >= 0.0f) ||
        !(prm.undesirable_weight >= 0.0f) || !isfinite(prm.desirable_weight) || !isfinite(prm.undesirable_weight))
        return align__error(NULL, ALIGN_EINVAL, "align_kto_params: beta must be > 0 and the weights >= 0 (finite)");
    pref *s = align__calloc(1, sizeof *s);
    if (!s)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    s->kto = 1;
    s->kp = prm;
    s->kp.on_step = NULL;
    s->kp.on_step_user_data = NULL;
    align__kto_default_params(&s->klp);
    s->klp.beta = prm.beta;
    s->klp.desirable_weight = prm.desirable_weight;
    s->klp.undesirable_weight = prm.undesirable_weight;
    align__pref_default_params(&s->lp);
    s->flags = prm.flags;
    s->mb = prm.micro_batch;
    s->ga = prm.grad_accum;
    s->L = prm.max_seq_len;
    s->trunc = prm.truncation;
    s->max_steps = prm.max_steps;
    s->epochs = prm.epochs;
    s->seed = prm.seed;
    return pref_create(out, s, fn, policy, reference, t, data, opt, prm.on_step, prm.on_step_user_data);
}
