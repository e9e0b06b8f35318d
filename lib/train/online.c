/*
 * online.c — online RL trainers: PPO, GRPO and RLOO over one rollout engine.
 *
 * One align_trainer_step is ONE optimizer update on ONE minibatch of the
 * rollout buffer. The rollout phase (trainer.h, vt->rollout) runs only when
 * the buffer is used up (iterations x minibatches steps after it was made):
 *
 *   1. prompts: the next prompts_per_step records of the prompt dataset (a
 *      shuffled order per epoch drawn from Philox(seed, epoch), or dataset
 *      order; a dataset with a source is pulled when it runs out), rendered
 *      through the chat template as a user turn plus the generation prompt
 *      (ALIGN_RL_RAW_PROMPT: the bare text), each repeated G times;
 *   2. generate: one batched, KV-cached align_generate_tokens call whose seed
 *      is derived from (seed, rollout index), so rollouts are reproducible
 *      and a resumed run samples what the uninterrupted one did;
 *   3. score: align_reward_model_score on (prompt text, response text); a
 *      failing or non-finite score fails the rollout (nothing is kept);
 *   4. old log-probs (and values) of the policy are recomputed by a forward
 *      pass in exactly the micro-batch layout the first pass of training uses
 *      (the iterator's epoch-0 order is known in advance), so the first
 *      minibatch's ratios are exactly 1; reference log-probs the same way;
 *   5. advantages: GRPO group-normalised (Shao et al. 2024, arXiv 2402.03300),
 *      RLOO leave-one-out with the k1 KL folded into the reward (Ahmadian et
 *      al. 2024, arXiv 2402.14740), PPO per-token rewards (k1 penalty, score
 *      at the last token; Ziegler et al. 2019, Ouyang et al. 2022) and GAE
 *      (Schulman et al. 2016) with whitening; the adaptive KL controller
 *      (Ziegler et al. 2019) is updated after each PPO rollout.
 * Accumulate takes the next minibatch from the buffer's deterministic
 * iterator and adds the gradients of the clipped surrogate (Schulman et al.
 * 2017, arXiv 1707.06347; GRPO adds beta * k3 to the loss), of RLOO's
 * sequence-level loss, and of PPO's clipped value loss.
 *
 * The whole state — data position, rollout counter, KL controller, the
 * pending rollout buffer with its iterator, and the rollout's metrics — is
 * saved with the checkpoint, so a run stopped anywhere resumes bitwise.
 */
#include "train/trainer.h"
#include "dist/dist.h"
#include "train/rl_math.h"
#include "train/rollout.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "data/template.h"
#include "model/model.h"
#include "optim/optim.h"

#include <math.h>
#include <string.h>

/* ---- rollout metrics (kept with the buffer, reported on every step using it) -- */
enum {
    RM_SCORES, RM_KL, RM_ENTROPY, RM_RLHF, RM_NONSCORE, RM_LEN, RM_ENDED, RM_KLCOEF, RM_ZSTD,
    RM_T_GEN, RM_T_SCORE, RM_T_REF, RM_T_VALUE, RM_N
};
static const char *const rm_names[RM_N] = {
    "objective/scores", "objective/kl", "objective/entropy", "objective/rlhf_reward",
    "objective/non_score_reward", "response_length", "ended_frac", "kl_coef", "frac_reward_zero_std",
    "time/generate_ms", "time/score_ms", "time/reference_ms", "time/value_ms",
};

typedef struct rl_cfg {
    int32_t  algo;          /* ALIGN_ALGO_PPO / GRPO / RLOO */
    uint32_t flags;
    int32_t  G, n_prompts, n_iter, n_mb, micro, max_steps, epochs;
    uint64_t seed;
    int32_t  max_new, top_k, n_stop, max_prompt_len, loss_agg;
    float    temperature, top_p;
    float    beta, eps_low, eps_high, score_clip;
    float    kl_target, kl_horizon, vf_clip, vf_coef, gamma, lam, missing_eos;
    float    ptx_coef;
    int32_t  ptx_batch;
} rl_cfg;

typedef struct rl_snap {
    int64_t  epoch, pos;
    uint64_t rollouts;
    align__kl_ctl klc;
    int      pending;
    align__rollout_iter it;
    align__batcher_state ptx;
} rl_snap;

typedef struct rl {
    rl_cfg c;
    char **stop;
    char *prefix[3];
    align_model *policy, *value, *ref;   /* value NULL: head on the policy's trunk (PPO) */
    align_reward_model *rm;
    const align_tokenizer *tok;
    align_dataset *data;
    int stream;
    int32_t max_seq;                     /* the policy's context */
    align__template tmpl;
    /* prompts: usable record indices */
    int64_t *usable, n_usable, usable_cap, scanned;
    int64_t *order, order_n;             /* current epoch's order (non-stream) */
    int64_t epoch, pos;                  /* epochs started; position in the epoch */
    uint64_t rollouts;
    align__kl_ctl klc;
    align__rollout *buf;
    int pending;                         /* buf holds minibatches not yet trained on */
    double rmv[RM_N];
    /* the step being finished (rl_finish): minibatch rows, update time */
    int32_t fin_cnt;
    double  fin_update_ms;
    rl_snap snap;
    /* micro-batch scratch, sized for the current buffer */
    int32_t sc_rows, sc_len, sc_T;
    int32_t *mb_tok, *mb_len;
    float *m_logp, *m_dlogp, *m_val, *m_dval;     /* model layout */
    float *r_a, *r_b, *r_c, *r_d, *r_e, *r_f, *r_g; /* resp layout [micro][T] */
    uint8_t *r_mask;
    int32_t *idx;                        /* [65536] minibatch indices */
    int64_t *recs;                       /* [4096] prompt records of a rollout */
    int32_t *plens;                      /* [4096] */
    /* PPO-ptx: demonstrations through the SFT batcher */
    align__batcher *ptx;
    int32_t ptx_L;
    int32_t *px_tok, *px_len, *px_mtok;
    uint8_t *px_mask;
    float *px_logp, *px_dlogp;
} rl;

/* ---- parameters -------------------------------------------------------------- */

static const align_grpo_params grpo_defaults = {
    .struct_size = sizeof(align_grpo_params),
    .group_size = 4, .prompts_per_step = 8, .iterations = 1, .minibatches = 1, .micro_batch = 8,
    .max_steps = 0, .epochs = 1, .seed = 1234,
    .max_new_tokens = 64, .temperature = 1.0f, .top_k = 0, .top_p = 1.0f,
    .beta = 0.04f, .clip_eps = 0.2f, .clip_eps_high = 0.0f, .loss_agg = ALIGN_RL_AGG_TOKEN_MEAN,
};

static const align_grpo_params rloo_defaults = {
    .struct_size = sizeof(align_grpo_params),
    .group_size = 2, .prompts_per_step = 8, .iterations = 1, .minibatches = 1, .micro_batch = 8,
    .max_steps = 0, .epochs = 1, .seed = 1234,
    .max_new_tokens = 64, .temperature = 1.0f, .top_k = 0, .top_p = 1.0f,
    .beta = 0.05f, .clip_eps = 0.2f, .clip_eps_high = 0.0f, .loss_agg = ALIGN_RL_AGG_TOKEN_MEAN,
};

static const align_ppo_params ppo_defaults = {
    .struct_size = sizeof(align_ppo_params),
    .rollouts_per_step = 16, .ppo_epochs = 4, .minibatches = 1, .micro_batch = 8,
    .max_steps = 0, .epochs = 1, .seed = 1234,
    .max_new_tokens = 64, .temperature = 1.0f, .top_k = 0, .top_p = 1.0f,
    .kl_coef = 0.05f, .kl_target = 6.0f, .kl_horizon = 10000.0f, .clip_eps = 0.2f, .clip_eps_high = 0.0f,
    .vf_clip = 0.2f, .vf_coef = 0.1f, .gamma = 1.0f, .lam = 0.95f,
    .ptx_data = NULL, .ptx_coef = 1.0f, .ptx_batch = 8,
};

ALIGN_API int align_rl_roles_init(align_rl_roles *out, size_t struct_size)
{
    static const align_rl_roles d = { .struct_size = sizeof(align_rl_roles) };
    return align__params_defaults(out, struct_size, &d, sizeof d, "align_rl_roles_init");
}

ALIGN_API int align_grpo_default_params(align_grpo_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &grpo_defaults, sizeof grpo_defaults,
                                  "align_grpo_default_params");
}

ALIGN_API int align_rloo_default_params(align_grpo_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &rloo_defaults, sizeof rloo_defaults,
                                  "align_rloo_default_params");
}

ALIGN_API int align_ppo_default_params(align_ppo_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &ppo_defaults, sizeof ppo_defaults,
                                  "align_ppo_default_params");
}

/* ---- prompts ------------------------------------------------------------------- */

static int has_prompt(const align_dataset *d, int64_t i)
{
    align__record_view v;
    if (align__dataset_get(d, i, &v) < 0)
        return 0;
    if (v.kind == ALIGN_RECORD_CHAT)
        return v.n_items > 0;
    return v.prompt != NULL;
}

/* Adds the records not yet looked at to the usable list. */
static int scan(rl *s, align__errbuf *eb)
{
    int64_t size = align_dataset_size(s->data);
    for (; s->scanned < size; s->scanned++) {
        if (!has_prompt(s->data, s->scanned))
            continue;
        if (s->n_usable == s->usable_cap) {
            int64_t cap = s->usable_cap ? s->usable_cap * 2 : 64;
            int64_t *u = align__realloc(s->usable, (size_t)cap * sizeof *u);
            if (!u)
                return align__error(eb, ALIGN_ENOMEM, "out of memory");
            s->usable = u;
            s->usable_cap = cap;
        }
        s->usable[s->n_usable++] = s->scanned;
    }
    return ALIGN_OK;
}

/* The order of epoch e (>= 1) over the n_usable prompts (non-stream). */
static int make_order(rl *s, int64_t e, align__errbuf *eb)
{
    if (s->order_n != s->n_usable) {
        int64_t *o = align__realloc(s->order, (size_t)ALIGN__MAX(s->n_usable, 1) * sizeof *o);
        if (!o)
            return align__error(eb, ALIGN_ENOMEM, "out of memory");
        s->order = o;
        s->order_n = s->n_usable;
    }
    for (int64_t i = 0; i < s->order_n; i++)
        s->order[i] = i;
    if (!(s->c.flags & ALIGN_RL_SEQUENTIAL)) {
        align__rng r;
        align__rng_init(&r, s->c.seed, 0x70726f6d70740000ull + (uint64_t)e);
        for (int64_t i = s->order_n - 1; i > 0; i--) {
            int64_t j = (int64_t)align__rng_below(&r, (uint32_t)(i + 1));
            int64_t t = s->order[i];
            s->order[i] = s->order[j];
            s->order[j] = t;
        }
    }
    return ALIGN_OK;
}

/* Next prompt record. ALIGN_DONE when the prompts are over. */
static int next_prompt(rl *s, int64_t *rec, align__errbuf *eb)
{
    int rc;
    if (s->stream) {
        if (s->epoch == 0)
            s->epoch = 1;
        while (s->pos >= s->n_usable) {
            if ((rc = scan(s, eb)) < 0) /* records the host added since */
                return rc;
            if (s->pos < s->n_usable)
                break;
            int pr = align__dataset_pull(s->data, 1, eb);
            if (pr < 0)
                return pr;
            if ((rc = scan(s, eb)) < 0)
                return rc;
            if (pr == ALIGN_DONE && s->pos >= s->n_usable)
                return ALIGN_DONE;
        }
        *rec = s->usable[s->pos++];
        return ALIGN_OK;
    }
    if (s->epoch == 0 || s->pos >= s->order_n) {
        if (s->epoch > 0 && s->c.max_steps == 0 && s->epoch >= s->c.epochs)
            return ALIGN_DONE;
        if ((rc = make_order(s, s->epoch + 1, eb)) < 0)
            return rc;
        s->epoch++;
        s->pos = 0;
    }
    *rec = s->usable[s->order[s->pos++]];
    return ALIGN_OK;
}

/* Tokens of prompt record rec (appended to out) and its text for the scorer
 * (a chat's last message; borrowed from the dataset). */
static int encode_prompt(rl *s, int64_t rec, align__tokbuf *out, const char **text, align__errbuf *eb)
{
    align__record_view v;
    int rc = align__dataset_get(s->data, rec, &v);
    if (rc < 0)
        return align__error(eb, rc, "prompt record %lld: %s", (long long)rec, align_last_errmsg());
    if (v.kind == ALIGN_RECORD_CHAT) {
        const char *role = NULL, *content = NULL;
        size_t rl_ = 0, cl = 0;
        for (int32_t j = 0; j < v.n_items; j++) {
            if ((rc = align__dataset_item(s->data, rec, j, &role, &rl_, &content, &cl, NULL)) < 0)
                return align__error(eb, rc, "prompt record %lld: bad message", (long long)rec);
            if ((rc = align__template_encode_message(&s->tmpl, out, role, rl_, content, cl, 0, eb)) < 0)
                return rc;
        }
        *text = content;
        return align__template_encode_gen_prompt(&s->tmpl, out, 0, eb);
    }
    *text = v.prompt;
    if (s->c.flags & ALIGN_RL_RAW_PROMPT)
        return align__template_encode_prompt(&s->tmpl, out, v.prompt, v.prompt_len, eb);
    const char *roles[1] = {"user"}, *contents[1] = {v.prompt};
    return align__template_encode_chat(&s->tmpl, out, roles, contents, 1, ALIGN__TEMPLATE_GEN_PROMPT, eb);
}

/* ---- scratch ---------------------------------------------------------------------- */

static void scratch_free(rl *s)
{
    align__free(s->mb_tok);
    align__free(s->mb_len);
    align__free(s->m_logp);
    align__free(s->m_dlogp);
    align__free(s->m_val);
    align__free(s->m_dval);
    align__free(s->r_a);
    align__free(s->r_b);
    align__free(s->r_c);
    align__free(s->r_d);
    align__free(s->r_e);
    align__free(s->r_f);
    align__free(s->r_g);
    align__free(s->r_mask);
    s->mb_tok = s->mb_len = NULL;
    s->m_logp = s->m_dlogp = s->m_val = s->m_dval = NULL;
    s->r_a = s->r_b = s->r_c = s->r_d = s->r_e = s->r_f = s->r_g = NULL;
    s->r_mask = NULL;
    s->sc_rows = s->sc_len = s->sc_T = 0;
}

/* Scratch for micro-batches of the current buffer. */
static int scratch_fit(rl *s, align__errbuf *eb)
{
    const align__rollout *b = s->buf;
    int32_t rows = s->c.micro, len = b->max_prompt + b->max_resp, T = b->max_resp;
    if (rows <= s->sc_rows && len <= s->sc_len && T <= s->sc_T)
        return ALIGN_OK;
    scratch_free(s);
    size_t R = (size_t)rows, L = (size_t)len, TT = (size_t)T;
    s->mb_tok = align__calloc(R * L, sizeof(int32_t));
    s->mb_len = align__calloc(R, sizeof(int32_t));
    s->m_logp = align__calloc(R * L, sizeof(float));
    s->m_dlogp = align__calloc(R * L, sizeof(float));
    s->m_val = align__calloc(R * L, sizeof(float));
    s->m_dval = align__calloc(R * L, sizeof(float));
    s->r_a = align__calloc(R * TT, sizeof(float));
    s->r_b = align__calloc(R * TT, sizeof(float));
    s->r_c = align__calloc(R * TT, sizeof(float));
    s->r_d = align__calloc(R * TT, sizeof(float));
    s->r_e = align__calloc(R * TT, sizeof(float));
    s->r_f = align__calloc(R * TT, sizeof(float));
    s->r_g = align__calloc(R * TT, sizeof(float));
    s->r_mask = align__calloc(R * TT, 1);
    if (!s->mb_tok || !s->mb_len || !s->m_logp || !s->m_dlogp || !s->m_val || !s->m_dval || !s->r_a || !s->r_b ||
        !s->r_c || !s->r_d || !s->r_e || !s->r_f || !s->r_g || !s->r_mask) {
        scratch_free(s);
        return align__error(eb, ALIGN_ENOMEM, "out of memory for micro-batches of %d x %d tokens", (int)rows,
                            (int)len);
    }
    s->sc_rows = rows;
    s->sc_len = len;
    s->sc_T = T;
    return ALIGN_OK;
}

/* The model rows of samples idx[0..n): tokens into mb_tok with row length
 * max_len (the longest sample, at least 2), returned. */
static int32_t mb_rows(rl *s, const int32_t *idx, int32_t n, int32_t *max_len_out)
{
    const align__rollout *b = s->buf;
    int32_t L = 2;
    for (int32_t k = 0; k < n; k++)
        L = ALIGN__MAX(L, b->prompt_len[idx[k]] + b->resp_len[idx[k]]);
    int rc = align__rollout_batch(b, idx, n, L, s->mb_tok, s->mb_len);
    *max_len_out = L;
    return rc;
}

/* One model's forward over samples idx[0..n): response-layout log-probs
 * (lp_resp, may be NULL) and values (v_resp, may be NULL). */
static int fwd(rl *s, align_model *m, const int32_t *idx, int32_t n, float *lp_resp, float *v_resp,
               align__errbuf *eb)
{
    int32_t L = 0;
    int rc = mb_rows(s, idx, n, &L);
    if (rc < 0)
        return align__error(eb, rc, "rollout: a sample does not fit its row");
    rc = align_model_forward(m, s->mb_tok, s->mb_len, n, L, lp_resp ? s->m_logp : NULL, v_resp ? s->m_val : NULL,
                             NULL);
    if (rc < 0)
        return align__error(eb, rc, "forward failed: %s", align_model_errmsg(m));
    if (lp_resp && (rc = align__rollout_model_to_resp(s->buf, lp_resp, s->m_logp, idx, n, L, L - 1)) < 0)
        return align__error(eb, rc, "rollout: layout");
    if (v_resp && (rc = align__rollout_model_to_resp(s->buf, v_resp, s->m_val, idx, n, L, L)) < 0)
        return align__error(eb, rc, "rollout: layout");
    return ALIGN_OK;
}

/* Scatter micro-batch rows [n][T] back into the buffer's array dst. */
static void rows_put(const align__rollout *b, float *dst, const float *src, const int32_t *idx, int32_t n)
{
    for (int32_t k = 0; k < n; k++)
        memcpy(dst + (size_t)idx[k] * (size_t)b->max_resp, src + (size_t)k * (size_t)b->max_resp,
               (size_t)b->max_resp * sizeof(float));
}

/* ---- the rollout phase ------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Data parallel: the rollout agrees ROLLOUT_AGREEMENTS times, whatever
 * happens, so no rank waits in a collective for a rank that gave up: a
 * failure jumps to the end, which makes the agreements not yet made. */
#define ROLLOUT_AGREEMENTS 3
static int rollout_agree(align_trainer *tr, int rc, int *agreed)
{
    if (!tr->dist_on)
        return rc;
    (*agreed)++;
    return align__dist_agree_rc(tr, rc, "rollout");
}

/* A failure before anything was allocated: the agreements, then rc. */
static int rollout_fail_early(align_trainer *tr, int rc)
{
    int agreed = 0;
    while (tr->dist_on && agreed < ROLLOUT_AGREEMENTS)
        rollout_agree(tr, rc, &agreed);
    return rc;
}

static int rl_rollout(align_trainer *tr, align__step_ctx *ctx)
{
    (void)ctx;
    rl *s = tr->algo;
    align__errbuf *eb = &tr->err;
    if (s->pending)
        return ALIGN_OK;
    if (s->c.max_steps > 0 && tr->steps >= s->c.max_steps)
        return ALIGN_DONE;
    int agreed = 0;
    int rc = align__trainer_poll_stop(tr);
    if (rc < 0)
        return rollout_fail_early(tr, rc);

    const int32_t G = s->c.G;
    int64_t *recs = s->recs;
    int32_t *plens = s->plens;
    int32_t P = 0;
    while (P < s->c.n_prompts) {
        rc = next_prompt(s, &recs[P], eb);
        if (rc < 0)
            return rollout_fail_early(tr, rc);
        if (rc == ALIGN_DONE)
            break;
        P++;
    }
    if (P == 0)
        return ALIGN_DONE; /* the same on every rank: the data order is */
    const int32_t n = P * G;

    /* Encode the prompts. */
    align__tokbuf tb;
    memset(&tb, 0, sizeof tb);
    int32_t *plen = align__calloc((size_t)n, sizeof(int32_t));
    int32_t *pstart = align__calloc((size_t)P, sizeof(int32_t));
    int32_t *ptoks = NULL;
    const char **ptext = align__calloc((size_t)n, sizeof(char *));
    const char **rtext = align__calloc((size_t)n, sizeof(char *));
    float *scores = align__calloc((size_t)n, sizeof(float));
    float *seqv = align__calloc((size_t)n, sizeof(float));
    float *seqw = align__calloc((size_t)n, sizeof(float));
    align_generation *gen = NULL;
    align__rollout *b = NULL;
    int32_t *resp_all = NULL, **resp_at = NULL; /* data parallel: every rank's responses */
    if (!plen || !pstart || !ptext || !rtext || !scores || !seqv || !seqw) {
        rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
        goto out;
    }
    const int32_t cap_prompt = s->c.max_prompt_len > 0 ? s->c.max_prompt_len : s->max_seq - s->c.max_new;
    int32_t max_plen = 1;
    for (int32_t p = 0; p < P; p++) {
        int64_t at = tb.n;
        const char *text = NULL;
        if ((rc = encode_prompt(s, recs[p], &tb, &text, eb)) < 0)
            goto out;
        int64_t len = tb.n - at;
        if (len > cap_prompt) { /* keep the end: the generation prompt */
            memmove(tb.ids + at, tb.ids + tb.n - cap_prompt, (size_t)cap_prompt * sizeof(int32_t));
            tb.n = at + cap_prompt;
            len = cap_prompt;
        }
        pstart[p] = (int32_t)at;
        plens[p] = (int32_t)len;
        max_plen = ALIGN__MAX(max_plen, (int32_t)len);
        for (int32_t g = 0; g < G; g++)
            ptext[p * G + g] = text;
    }
    /* The dataset's strings stay put: nothing is added until the next rollout. */
    ptoks = align__malloc((size_t)n * (size_t)max_plen * sizeof(int32_t) + 1);
    if (!ptoks) {
        rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
        goto out;
    }
    {
        size_t o = 0;
        for (int32_t p = 0; p < P; p++)
            for (int32_t g = 0; g < G; g++) {
                memcpy(ptoks + o, tb.ids + pstart[p], (size_t)plens[p] * sizeof(int32_t));
                o += (size_t)plens[p];
                plen[p * G + g] = plens[p];
            }
    }

    /* Generate. */
    double t0 = align__now_sec();
    align_generate_params gp;
    align_generate_default_params(&gp, sizeof gp);
    gp.max_new_tokens = s->c.max_new;
    gp.temperature = s->c.temperature;
    gp.top_k = s->c.top_k;
    gp.top_p = s->c.top_p;
    gp.seed = mix64(s->c.seed ^ mix64(s->rollouts + 1));
    gp.stop = (const char *const *)s->stop;
    gp.n_stop = s->c.n_stop;
    /* Data parallel: each rank generates its share [glo, ghi) of the
     * samples with the sampling streams of those samples, i.e. exactly what
     * one process generating all of them draws (decoding is batch
     * independent); the responses are then exchanged. */
    int64_t glo = 0, ghi = n;
    align__dist_share(tr, n, &glo, &ghi);
    if (!tr->dist_on) {
        rc = align_generate_tokens(s->policy, s->tok, ptoks, plen, n, &gp, &gen);
    } else if (ghi > glo) {
        size_t poff = 0;
        for (int64_t i = 0; i < glo; i++)
            poff += (size_t)plen[i];
        rc = align__generate_tokens_from(s->policy, s->tok, ptoks + poff, plen + glo, (int32_t)(ghi - glo), &gp,
                                         (uint64_t)glo, &gen);
    }
    if (rc < 0)
        rc = align__error(eb, rc, "rollout: generation failed: %s", align_model_errmsg(s->policy));
    double t1 = align__now_sec();
    if (rc >= 0)
        rc = align__trainer_poll_stop(tr);
    if ((rc = rollout_agree(tr, rc, &agreed)) < 0)
        goto out;
    /* Every sample's response: from gen (one rank), or gathered into rows
     * of W int32 (length, ended, tokens) per sample, rank blocks of smax. */
    const int32_t W = 2 + s->c.max_new;
    int32_t smax = 0;
    if (tr->dist_on) {
        const int32_t Pn = tr->dist.size;
        smax = (n + Pn - 1) / Pn;
        const size_t blk = (size_t)smax * (size_t)W;
        int32_t *mine = align__calloc(blk + 1, sizeof(int32_t));
        resp_all = align__calloc((size_t)Pn * blk + 1, sizeof(int32_t));
        resp_at = align__calloc((size_t)n, sizeof(int32_t *));
        if (!mine || !resp_all || !resp_at) {
            align__free(mine);
            rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
        } else {
            for (int64_t i = glo; i < ghi; i++) {
                int32_t k = 0, *row = mine + (size_t)(i - glo) * (size_t)W;
                const int32_t *rt = align_generation_tokens(gen, (int32_t)(i - glo), &k);
                int fin = align_generation_finish_reason(gen, (int32_t)(i - glo));
                row[0] = k;
                row[1] = fin == ALIGN_FINISH_EOT || fin == ALIGN_FINISH_STOP;
                memcpy(row + 2, rt, (size_t)k * sizeof(int32_t));
            }
            rc = align__dist_allgather(tr, mine, resp_all, blk * sizeof(int32_t));
            align__free(mine);
            const int64_t q = n / Pn, rem = n % Pn;
            for (int32_t r = 0; r < Pn; r++) {
                int64_t lo = r * q + (r < rem ? r : rem), hi = lo + q + (r < rem ? 1 : 0);
                for (int64_t i = lo; i < hi; i++)
                    resp_at[i] = resp_all + (size_t)r * blk + (size_t)(i - lo) * (size_t)W;
            }
        }
        if (rc < 0)
            goto out;
    }

    int32_t max_resp = 1;
    for (int32_t i = 0; i < n; i++) {
        int32_t k = 0;
        if (tr->dist_on)
            k = resp_at[i][0];
        else
            align_generation_tokens(gen, i, &k);
        max_resp = ALIGN__MAX(max_resp, k);
        if (i >= glo && i < ghi) /* this rank scores its own samples */
            rtext[i] = align_generation_text(gen, (int32_t)(i - glo), NULL);
    }
    if ((rc = align__rollout_create(&b, n, max_plen, max_resp, eb)) < 0)
        goto out;
    {
        size_t o = 0;
        int64_t ended = 0, tokens = 0;
        for (int32_t i = 0; i < n; i++) {
            int32_t k = 0, end;
            const int32_t *rt;
            if (tr->dist_on) {
                k = resp_at[i][0];
                end = resp_at[i][1];
                rt = resp_at[i] + 2;
            } else {
                rt = align_generation_tokens(gen, i, &k);
                int fin = align_generation_finish_reason(gen, i);
                end = fin == ALIGN_FINISH_EOT || fin == ALIGN_FINISH_STOP;
            }
            ended += end;
            tokens += k;
            if ((rc = align__rollout_set_sample(b, i, ptoks + o, plen[i], rt, k, i / G, end, eb)) < 0)
                goto out;
            o += (size_t)plen[i];
        }
        s->rmv[RM_LEN] = (double)tokens / (double)n;
        s->rmv[RM_ENDED] = (double)ended / (double)n;
    }

    /* Score: data parallel, each rank scores its share of the samples
     * (the host scorer runs on every rank) and the scores are combined. */
    int64_t slo, shi;
    align__dist_share(tr, n, &slo, &shi);
    rc = shi > slo ? align_reward_model_score(s->rm, ptext + slo, rtext + slo, (int32_t)(shi - slo), scores + slo)
                   : ALIGN_OK;
    double t2 = align__now_sec();
    if (rc < 0)
        rc = align__error(eb, rc, "rollout: scoring failed: %s", align_reward_model_errmsg(s->rm));
    if ((rc = rollout_agree(tr, rc, &agreed)) < 0 || (rc = align__dist_sum_f32(tr, scores, (size_t)n)) < 0)
        goto out;
    for (int32_t i = 0; i < n; i++) {
        if (!isfinite(scores[i])) {
            rc = align__error(eb, ALIGN_ENONFINITE, "rollout: score %d is not finite", (int)i);
            goto out;
        }
        float sc = scores[i];
        if (s->c.score_clip > 0)
            sc = sc < -s->c.score_clip ? -s->c.score_clip : sc > s->c.score_clip ? s->c.score_clip : sc;
        b->scores[i] = sc;
    }
    /* Old log-probs, values and reference log-probs in the first pass's
     * layout (data parallel: each rank its share of each minibatch, as the
     * training pass will split it; the rows are combined afterwards). */
    {
        align__rollout *keep = s->buf;
        s->buf = b;
        int32_t mb_size = (n + s->c.n_mb - 1) / s->c.n_mb;
        rc = align__rollout_iter_start(b, mb_size, s->c.n_iter, s->c.seed, s->rollouts);
        if (rc >= 0)
            rc = scratch_fit(s, eb);
        double tv = 0.0, tref = 0.0;
        int32_t *idx = s->idx;
        align__rollout_iter start;
        align__rollout_iter_get(b, &start);
        while (rc >= 0 && b->iter.epoch == 0) {
            int32_t cnt = 0;
            if ((rc = align__rollout_iter_next(b, idx, &cnt)) != ALIGN_OK)
                break;
            int64_t lo, hi;
            align__dist_share(tr, cnt, &lo, &hi);
            for (int32_t k0 = (int32_t)lo; k0 < (int32_t)hi && rc >= 0; k0 += s->c.micro) {
                int32_t m = ALIGN__MIN(s->c.micro, (int32_t)hi - k0);
                if ((rc = align__trainer_poll_stop(tr)) < 0)
                    break;
                double a = align__now_sec();
                if (s->value) {
                    rc = fwd(s, s->policy, idx + k0, m, s->r_a, NULL, eb);
                    if (rc >= 0 && s->c.algo == ALIGN_ALGO_PPO)
                        rc = fwd(s, s->value, idx + k0, m, NULL, s->r_b, eb);
                } else {
                    rc = fwd(s, s->policy, idx + k0, m, s->r_a, s->c.algo == ALIGN_ALGO_PPO ? s->r_b : NULL, eb);
                }
                if (rc < 0)
                    break;
                rows_put(b, b->logp_old, s->r_a, idx + k0, m);
                if (s->c.algo == ALIGN_ALGO_PPO)
                    rows_put(b, b->values, s->r_b, idx + k0, m);
                double a2 = align__now_sec();
                tv += a2 - a;
                if (s->ref) {
                    if ((rc = fwd(s, s->ref, idx + k0, m, s->r_c, NULL, eb)) < 0)
                        break;
                    rows_put(b, b->logp_ref, s->r_c, idx + k0, m);
                }
                tref += align__now_sec() - a2;
            }
        }
        if (rc == ALIGN_DONE)
            rc = ALIGN_OK;
        if (rc >= 0)
            rc = align__rollout_iter_set(b, &start);
        s->buf = keep;
        rc = rollout_agree(tr, rc, &agreed);
        if (rc >= 0 && tr->dist_on) { /* rows of the other ranks are zeros here: the sum is exact */
            const size_t R = (size_t)n * (size_t)b->max_resp;
            rc = align__dist_sum_f32(tr, b->logp_old, R);
            if (rc >= 0 && s->c.algo == ALIGN_ALGO_PPO)
                rc = align__dist_sum_f32(tr, b->values, R);
            if (rc >= 0 && s->ref)
                rc = align__dist_sum_f32(tr, b->logp_ref, R);
        }
        if (rc < 0)
            goto out;
        s->rmv[RM_T_VALUE] = tv * 1e3;
        s->rmv[RM_T_REF] = tref * 1e3;
    }

    /* Advantages. */
    {
        const int32_t T = b->max_resp;
        const size_t NT = (size_t)n * (size_t)T;
        double ent = 0.0;
        int64_t ntok = 0;
        for (size_t k = 0; k < NT; k++)
            if (b->mask[k]) {
                ent -= (double)b->logp_old[k];
                ntok++;
            }
        s->rmv[RM_ENTROPY] = ntok > 0 ? ent / (double)n : 0.0;
        float *kl = align__calloc(NT, sizeof(float));
        if (!kl) {
            rc = align__error(eb, ALIGN_ENOMEM, "out of memory");
            goto out;
        }
        double klm = 0.0;
        int kind = s->c.algo == ALIGN_ALGO_GRPO ? ALIGN__KL_K3 : ALIGN__KL_K1;
        if (s->ref)
            align__kl_tokens(kl, NULL, &klm, b->logp_old, b->logp_ref, b->mask, n, T, kind, 0.0f);
        s->rmv[RM_KL] = klm;
        s->rmv[RM_ZSTD] = 0.0;
        double smean = 0.0;
        for (int32_t i = 0; i < n; i++)
            smean += b->scores[i];
        smean /= n;
        s->rmv[RM_SCORES] = smean;
        if (s->c.algo == ALIGN_ALGO_GRPO) {
            uint32_t f = 0;
            if (s->c.flags & ALIGN_GRPO_NO_STD)
                f |= ALIGN__GRPO_NO_STD;
            if (s->c.flags & ALIGN_GRPO_BATCH_STD)
                f |= ALIGN__GRPO_BATCH_STD;
            double z = 0.0;
            rc = align__grpo_advantages(seqv, &z, b->scores, b->group, n, f, 1e-4f);
            s->rmv[RM_ZSTD] = z;
            s->rmv[RM_NONSCORE] = -(double)s->c.beta * klm;
            s->rmv[RM_KLCOEF] = s->c.beta;
        } else if (s->c.algo == ALIGN_ALGO_RLOO) {
            for (int32_t i = 0; i < n; i++) {
                double sum = 0.0;
                for (int32_t t = 0; t < b->resp_len[i]; t++)
                    sum += kl[(size_t)i * T + t];
                seqw[i] = (float)sum;
            }
            rc = align__rloo_advantages(seqv, NULL, b->scores, s->ref ? seqw : NULL, s->c.beta, b->group, n);
            s->rmv[RM_NONSCORE] = -(double)s->c.beta * klm;
            s->rmv[RM_KLCOEF] = s->c.beta;
        } else {
            align__reward_params rp = { .beta = (float)s->klc.beta, .score_clip = 0.0f,
                                        .missing_eos_penalty = s->c.missing_eos };
            align__reward_stats rs;
            memset(&rs, 0, sizeof rs);
            s->rmv[RM_KLCOEF] = s->klc.beta;
            rc = align__ppo_rewards(b->rewards, b->scores, &rs, kl, b->scores, b->ended, b->resp_len, n, T, &rp);
            if (rc >= 0)
                rc = align__gae(b->adv, b->ret, b->rewards, b->values, b->resp_len, n, T, s->c.gamma, s->c.lam);
            if (rc >= 0 && !(s->c.flags & ALIGN_PPO_NO_WHITEN))
                align__masked_whiten(b->adv, b->adv, b->mask, (int64_t)NT, 1, 1e-8f);
            if (rc >= 0 && (s->c.flags & ALIGN_PPO_ADAPTIVE_KL))
                rc = align__kl_ctl_update(&s->klc, klm, n);
            s->rmv[RM_SCORES] = rs.scores;
            s->rmv[RM_NONSCORE] = rs.non_score_reward;
        }
        if (rc >= 0 && s->c.algo != ALIGN_ALGO_PPO)
            for (int32_t i = 0; i < n; i++)
                for (int32_t t = 0; t < b->resp_len[i]; t++)
                    b->adv[(size_t)i * T + t] = seqv[i];
        align__free(kl);
        if (rc < 0) {
            rc = align__error(eb, rc < 0 ? rc : ALIGN_EINTERNAL, "rollout: advantages failed");
            goto out;
        }
        s->rmv[RM_RLHF] = s->rmv[RM_SCORES] + s->rmv[RM_NONSCORE];
    }
    s->rmv[RM_T_GEN] = (t1 - t0) * 1e3;
    s->rmv[RM_T_SCORE] = (t2 - t1) * 1e3;

    /* Install. */
    align__rollout_free(s->buf);
    s->buf = b;
    b = NULL;
    s->pending = 1;
    s->rollouts++;
    rc = ALIGN_OK;
out:
    while (tr->dist_on && agreed < ROLLOUT_AGREEMENTS) /* a rank that gave up still agrees */
        rollout_agree(tr, rc < 0 ? rc : ALIGN_EINTERNAL, &agreed);
    align__rollout_free(b);
    align_generation_free(gen);
    align__free(resp_all);
    align__free(resp_at);
    align__tokbuf_free(&tb);
    align__free(plen);
    align__free(pstart);
    align__free(ptoks);
    align__free(ptext);
    align__free(rtext);
    align__free(scores);
    align__free(seqv);
    align__free(seqw);
    return rc;
}

/* ---- PPO-ptx ------------------------------------------------------------------------- */

/* Adds ptx_coef x the SFT loss (mean NLL over the loss tokens) of the next
 * ptx_batch demonstration rows (Ouyang et al. 2022, "PPO-ptx": the
 * pretraining gradient is accumulated into the same buffers as PPO's).
 * *nll receives the mean NLL. */
static int ptx_pass(rl *s, align__step_ctx *ctx, double *nll, align__errbuf *eb)
{
    const int32_t L = s->ptx_L, B = s->c.ptx_batch;
    int32_t n = 0;
    int rc = align__batcher_next(s->ptx, B, 1, s->px_tok, s->px_len, s->px_mask, &n);
    if (rc < 0)
        return align__error(eb, rc, "ppo-ptx: reading the demonstrations failed");
    int32_t T = 2;
    for (int32_t i = 0; i < n; i++)
        T = ALIGN__MAX(T, s->px_len[i]);
    int64_t N = 0;
    for (int32_t i = 0; i < n; i++) {
        memcpy(s->px_mtok + (size_t)i * T, s->px_tok + (size_t)i * L, (size_t)T * sizeof(int32_t));
        for (int32_t t = 0; t + 1 < s->px_len[i]; t++)
            N += s->px_mask[(size_t)i * (L - 1) + t] != 0;
    }
    *nll = 0.0;
    if (n == 0 || N == 0)
        return ALIGN_OK;
    rc = align_model_forward(s->policy, s->px_mtok, s->px_len, n, T, s->px_logp, NULL, NULL);
    if (rc < 0)
        return align__error(eb, rc, "ppo-ptx: forward failed: %s", align_model_errmsg(s->policy));
    double sum = 0.0;
    const float g = -s->c.ptx_coef / (float)N;
    for (int32_t i = 0; i < n; i++)
        for (int32_t t = 0; t < T - 1; t++) {
            int in = t + 1 < s->px_len[i] && s->px_mask[(size_t)i * (L - 1) + t];
            float lp = s->px_logp[(size_t)i * (T - 1) + t];
            if (in)
                sum -= (double)lp;
            s->px_dlogp[(size_t)i * (T - 1) + t] = in ? g : 0.0f;
        }
    *nll = sum / (double)N;
    ctx->tokens_processed += N;
    if (!isfinite(*nll)) {
        ctx->nonfinite = 1;
        return ALIGN_OK;
    }
    if (ctx->nonfinite)
        return ALIGN_OK;
    rc = align_model_backward(s->policy, s->px_dlogp, NULL);
    return rc < 0 ? align__error(eb, rc, "ppo-ptx: backward failed: %s", align_model_errmsg(s->policy)) : ALIGN_OK;
}

/* ---- accumulate -------------------------------------------------------------------- */

static int rl_accumulate(align_trainer *tr, align__step_ctx *ctx)
{
    rl *s = tr->algo;
    align__errbuf *eb = &tr->err;
    if (s->c.max_steps > 0 && tr->steps >= s->c.max_steps)
        return ALIGN_DONE;
    if (!s->pending || !s->buf)
        return ALIGN_DONE;
    align__rollout *b = s->buf;
    int rc = scratch_fit(s, eb);
    if (rc < 0)
        return rc;
    int32_t *idx = s->idx, cnt = 0;
    rc = align__rollout_iter_next(b, idx, &cnt);
    if (rc != ALIGN_OK)
        return rc < 0 ? align__error(eb, rc, "rollout buffer iterator") : ALIGN_DONE;

    const int32_t T = b->max_resp;
    double tokens_total = 0.0;
    for (int32_t k = 0; k < cnt; k++)
        tokens_total += b->resp_len[idx[k]];
    const int ppo = s->c.algo == ALIGN_ALGO_PPO, rloo = s->c.algo == ALIGN_ALGO_RLOO;
    align__ppo_params pp = { .eps_low = s->c.eps_low, .eps_high = s->c.eps_high, .dual_clip = 0.0f,
                             .kl_beta = (s->c.algo == ALIGN_ALGO_GRPO && s->ref) ? s->c.beta : 0.0f };
    align__agg_params ag = { .mode = ppo || rloo ? ALIGN__AGG_TOKEN_MEAN : s->c.loss_agg,
                             .const_len = s->c.max_new, .tokens_total = tokens_total, .rows_total = cnt };
    double ploss = 0.0, vloss = 0.0, clipw = 0.0, akl = 0.0, vclip = 0.0, toks = 0.0, t_fwd = 0.0, t_bwd = 0.0;
    double ratio = 0.0, klsum = 0.0;
    float *v_ret = NULL;
    const double vstart = align__now_sec();
    double vtime = 0.0;
    int64_t processed = 0;
    /* Data parallel: every rank holds the whole rollout buffer (the rollout
     * is made identically everywhere) and runs its contiguous share of the
     * minibatch's rows; the loss normalisers above are the minibatch's. */
    int64_t lo64, hi64;
    align__dist_share(tr, cnt, &lo64, &hi64);
    const int32_t hi = (int32_t)hi64;
    if (s->ptx && tr->dist_on)
        return align__error(eb, ALIGN_EMISUSE, "PPO-ptx is not data parallel (run it on one rank)");
    for (int32_t k0 = (int32_t)lo64; k0 < hi; k0 += s->c.micro) {
        if ((rc = align__trainer_poll_stop(tr)) < 0)
            return rc;
        const int32_t m = ALIGN__MIN(s->c.micro, hi - k0);
        const int32_t *ix = idx + k0;
        int32_t L = 0;
        if ((rc = mb_rows(s, ix, m, &L)) < 0)
            return align__error(eb, rc, "rollout: a sample does not fit its row");
        for (int32_t k = 0; k < m; k++)
            processed += s->mb_len[k];
        const int trunk_v = ppo && !s->value;
        double a = align__now_sec();
        rc = align_model_forward(s->policy, s->mb_tok, s->mb_len, m, L, s->m_logp, trunk_v ? s->m_val : NULL, NULL);
        if (rc < 0)
            return align__error(eb, rc, "forward failed: %s", align_model_errmsg(s->policy));
        double a1 = align__now_sec();
        t_fwd += a1 - a;
        float *lp = s->r_a, *old = s->r_b, *adv = s->r_c, *ref = s->r_d, *loss = s->r_e, *dl = s->r_f;
        uint8_t *mask = s->r_mask;
        align__rollout_model_to_resp(b, lp, s->m_logp, ix, m, L, L - 1);
        align__rollout_rows_f(b, old, b->logp_old, ix, m);
        align__rollout_rows_f(b, adv, b->adv, ix, m);
        align__rollout_rows_f(b, ref, b->logp_ref, ix, m);
        align__rollout_rows_u8(b, mask, b->mask, ix, m);
        double ltoks = 0.0;
        for (size_t k = 0; k < (size_t)m * T; k++)
            ltoks += mask[k];
        double ml = 0.0;
        if (rloo) {
            float *A = s->r_g; /* per-row advantages (rows are >= 1 wide) */
            for (int32_t k = 0; k < m; k++)
                A[k] = b->adv[(size_t)ix[k] * T];
            double cf = 0.0;
            rc = align__rloo_loss(dl, &ml, &cf, lp, old, A, mask, m, T, s->c.eps_low, cnt);
            if (rc < 0)
                return align__error(eb, rc, "rloo loss");
            ploss += ml; /* this micro-batch's share of the minibatch mean */
            clipw += cf * m;
            /* approx KL between consecutive policies, per token */
            for (size_t k = 0; k < (size_t)m * T; k++)
                if (mask[k]) {
                    double d = (double)lp[k] - (double)old[k];
                    akl += 0.5 * d * d;
                    ratio += exp(d);
                }
        } else {
            align__ppo_stats st;
            memset(&st, 0, sizeof st);
            rc = align__ppo_policy_loss(loss, dl, &st, lp, old, pp.kl_beta > 0 ? ref : NULL, adv, mask,
                                        (int64_t)m * T, &pp);
            if (rc < 0)
                return align__error(eb, rc, "policy loss");
            rc = align__rl_aggregate(dl, &ml, loss, dl, mask, m, T, 1.0f, &ag);
            if (rc < 0)
                return align__error(eb, rc, "loss aggregation");
            ploss += ml;
            clipw += st.clipfrac * (double)st.tokens;
            akl += st.approxkl_sq * (double)st.tokens;
            ratio += st.ratio * (double)st.tokens;
            klsum += st.kl * (double)st.tokens;
        }
        toks += ltoks;
        if (!isfinite(ml))
            ctx->nonfinite = 1;
        memset(s->m_dlogp, 0, (size_t)m * (size_t)L * sizeof(float));
        align__rollout_resp_to_model(b, s->m_dlogp, dl, ix, m, L, L - 1);

        float *dv = NULL;
        if (ppo) {
            double va = align__now_sec();
            float *vnew = s->r_g, *vold = s->r_b, *ret = s->r_c, *vl = s->r_e, *dvl = s->r_f;
            if (s->value) {
                /* the policy's backward needs its own forward: run it first */
                if (!ctx->nonfinite && (rc = align_model_backward(s->policy, s->m_dlogp, NULL)) < 0)
                    return align__error(eb, rc, "backward failed: %s", align_model_errmsg(s->policy));
                rc = align_model_forward(s->value, s->mb_tok, s->mb_len, m, L, NULL, s->m_val, NULL);
                if (rc < 0)
                    return align__error(eb, rc, "value forward failed: %s", align_model_errmsg(s->value));
            }
            align__rollout_model_to_resp(b, vnew, s->m_val, ix, m, L, L);
            align__rollout_rows_f(b, vold, b->values, ix, m);
            align__rollout_rows_f(b, ret, b->ret, ix, m);
            double cf = 0.0, mvl = 0.0, agl = 0.0;
            rc = align__ppo_value_loss(vl, dvl, &cf, &mvl, vnew, vold, ret, mask, (int64_t)m * T, s->c.vf_clip);
            if (rc >= 0)
                rc = align__rl_aggregate(dvl, &agl, vl, dvl, mask, m, T, s->c.vf_coef, &ag);
            if (rc < 0)
                return align__error(eb, rc, "value loss");
            vloss += mvl * ltoks;
            vclip += cf * ltoks;
            if (!isfinite(agl))
                ctx->nonfinite = 1;
            memset(s->m_dval, 0, (size_t)m * (size_t)L * sizeof(float));
            align__rollout_resp_to_model(b, s->m_dval, dvl, ix, m, L, L);
            dv = s->m_dval;
            if (!v_ret)
                v_ret = ret;
            if (s->value && !ctx->nonfinite && (rc = align_model_backward(s->value, NULL, dv)) < 0)
                return align__error(eb, rc, "value backward failed: %s", align_model_errmsg(s->value));
            vtime += align__now_sec() - va;
        }
        double a2 = align__now_sec();
        if (!ctx->nonfinite && !(ppo && s->value)) {
            rc = align_model_backward(s->policy, s->m_dlogp, dv);
            if (rc < 0)
                return align__error(eb, rc, "backward failed: %s", align_model_errmsg(s->policy));
        }
        t_bwd += align__now_sec() - a2;
    }
    (void)vstart;
    (void)v_ret;
    double ptx_nll = 0.0;
    if (ppo && s->ptx) {
        if ((rc = align__trainer_poll_stop(tr)) < 0)
            return rc;
        double a = align__now_sec();
        if ((rc = ptx_pass(s, ctx, &ptx_nll, eb)) < 0)
            return rc;
        vtime += align__now_sec() - a;
    }
    if (b->iter.epoch >= b->iter.n_epochs)
        s->pending = 0;

    ctx->stats.time_forward_ms = (float)(t_fwd * 1e3);
    ctx->stats.time_backward_ms = (float)(t_bwd * 1e3);
    ctx->tokens_processed += processed;
    if (toks == 0)
        ctx->empty = 1;
    /* Statistics in rl_finish, from sums the trainer adds over ranks. */
    const double part[] = {ploss, vloss, clipw, akl, vclip, toks, ratio, klsum, ptx_nll};
    ctx->n_sums = (int32_t)(sizeof part / sizeof part[0]);
    memcpy(ctx->sums, part, sizeof part);
    s->fin_cnt = cnt;
    s->fin_update_ms = (t_fwd + t_bwd + vtime) * 1e3;
    return ALIGN_OK;
}

static void rl_finish(align_trainer *tr, align__step_ctx *ctx)
{
    const rl *s = tr->algo;
    const align__rollout *b = s->buf;
    const int ppo = s->c.algo == ALIGN_ALGO_PPO, rloo = s->c.algo == ALIGN_ALGO_RLOO;
    const double ploss = ctx->sums[0], vloss = ctx->sums[1], clipw = ctx->sums[2], akl = ctx->sums[3],
                 vclip = ctx->sums[4], toks = ctx->sums[5], ratio = ctx->sums[6], klsum = ctx->sums[7],
                 ptx_nll = ctx->sums[8];
    const int32_t cnt = s->fin_cnt;
    double tk = toks > 0 ? toks : 1.0;
    ctx->stats.tokens = (int64_t)toks;
    ctx->stats.sequences = cnt;
    ctx->stats.loss = (float)(ploss + (ppo ? s->c.vf_coef * vloss / tk + s->c.ptx_coef * ptx_nll : 0.0));
    align__metric(ctx, "loss", (double)ctx->stats.loss);
    align__metric(ctx, "tokens", toks);
    align__metric(ctx, "sequences", cnt);
    align__metric(ctx, "loss/policy_avg", ploss);
    align__metric(ctx, "policy/approxkl_avg", akl / tk);
    align__metric(ctx, "policy/clipfrac_avg", rloo ? clipw / cnt : clipw / tk);
    align__metric(ctx, "val/ratio", ratio / tk);
    if (s->c.algo == ALIGN_ALGO_GRPO && s->ref)
        align__metric(ctx, "kl", klsum / tk);
    if (ppo) {
        align__metric(ctx, "loss/value_avg", vloss / tk);
        align__metric(ctx, "val/clipfrac_avg", vclip / tk);
        if (s->ptx)
            align__metric(ctx, "loss/ptx", ptx_nll);
        align__metric(ctx, "val/vf_explained_var",
                      align__explained_variance(b->values, b->ret, b->mask, (int64_t)b->n * b->max_resp));
    }
    for (int k = 0; k < RM_N; k++) {
        if (k == RM_ZSTD && s->c.algo != ALIGN_ALGO_GRPO)
            continue;
        align__metric(ctx, rm_names[k], s->rmv[k]);
    }
    align__metric(ctx, "time/update_ms", s->fin_update_ms);
}

/* ---- progress, transaction ---------------------------------------------------------- */

static float rl_progress(const align_trainer *tr, int64_t steps_done)
{
    const rl *s = tr->algo;
    double f;
    if (s->c.max_steps > 0)
        f = (double)steps_done / (double)s->c.max_steps;
    else if (s->stream || s->order_n == 0 || s->epoch == 0)
        f = 0.0;
    else
        f = ((double)(s->epoch - 1) + (double)s->pos / (double)s->order_n) / (double)s->c.epochs;
    return (float)(f < 0.0 ? 0.0 : f > 1.0 ? 1.0 : f);
}

static int64_t rl_epoch(const align_trainer *tr)
{
    const rl *s = tr->algo;
    return s->epoch;
}

static void snap_get(const rl *s, rl_snap *g)
{
    memset(g, 0, sizeof *g);
    g->epoch = s->epoch;
    g->pos = s->pos;
    g->rollouts = s->rollouts;
    g->klc = s->klc;
    g->pending = s->pending;
    if (s->buf)
        align__rollout_iter_get(s->buf, &g->it);
    if (s->ptx)
        align__batcher_get_state(s->ptx, &g->ptx);
}

static int rl_begin(align_trainer *tr)
{
    rl *s = tr->algo;
    snap_get(s, &s->snap);
    return ALIGN_OK;
}

static void rl_rollback(align_trainer *tr)
{
    rl *s = tr->algo;
    const rl_snap *g = &s->snap;
    if (s->epoch != g->epoch && !s->stream)
        (void)make_order(s, g->epoch, &tr->err);
    s->epoch = g->epoch;
    s->pos = g->pos;
    s->rollouts = g->rollouts;
    s->klc = g->klc;
    s->pending = g->pending;
    if (s->buf && g->it.mb_size > 0)
        (void)align__rollout_iter_set(s->buf, &g->it);
    if (s->ptx)
        (void)align__batcher_set_state(s->ptx, &g->ptx);
}

/* ---- checkpoint ------------------------------------------------------------------------ */

typedef struct rl_staged {
    int64_t epoch, pos, scanned;
    uint64_t rollouts;
    int pending;
    align__kl_ctl klc;
    align__rollout *buf;
    double rmv[RM_N];
    align__batcher_state ptx;
} rl_staged;

static int rl_save_state(const align_trainer *tr, json_t *obj, align__ckpt *ck)
{
    const rl *s = tr->algo;
    int rc = 0;
    rc |= align__json_set_i64(obj, "epoch", s->epoch);
    rc |= align__json_set_i64(obj, "position", s->pos);
    rc |= align__json_set_i64(obj, "records", s->scanned);
    rc |= align__json_set_u64(obj, "rollouts", s->rollouts);
    rc |= align__json_set_i64(obj, "pending", s->pending && s->buf ? 1 : 0);
    if (s->ptx) {
        align__batcher_state st;
        align__batcher_get_state(s->ptx, &st);
        rc |= align__json_set_i64(obj, "ptx_epoch", st.epoch);
        rc |= align__json_set_i64(obj, "ptx_position", st.position);
        rc |= align__json_set_i64(obj, "ptx_carry", st.carry);
        rc |= align__json_set_u64(obj, "ptx_rng_seed", st.rng.seed);
        rc |= align__json_set_u64(obj, "ptx_rng_stream", st.rng.stream);
        rc |= align__json_set_u64(obj, "ptx_rng_counter", st.rng.counter);
        rc |= align__json_set_i64(obj, "ptx_epoch_examples", st.epoch_examples);
    }
    if (rc)
        return ALIGN_ENOMEM;
    uint8_t kb[ALIGN__KL_CTL_BYTES];
    align__kl_ctl_save(&s->klc, kb);
    align__chunk c1 = { kb, sizeof kb };
    if ((rc = align__ckpt_write(ck, "rl_klctl.bin", &c1, 1)) < 0)
        return rc;
    align__chunk c2 = { s->rmv, sizeof s->rmv };
    if ((rc = align__ckpt_write(ck, "rl_metrics.bin", &c2, 1)) < 0)
        return rc;
    if (s->pending && s->buf) {
        size_t n = align__rollout_blob_size(s->buf);
        void *blob = align__malloc(n);
        if (!blob)
            return ALIGN_ENOMEM;
        rc = align__rollout_save(s->buf, blob, n);
        if (rc >= 0) {
            align__chunk c3 = { blob, n };
            rc = align__ckpt_write(ck, "rl_rollout.bin", &c3, 1);
        }
        align__free(blob);
        if (rc < 0)
            return rc;
    }
    return ALIGN_OK;
}

static int rl_load_state(align_trainer *tr, const json_t *obj, align__ckpt *ck, void **staged)
{
    rl *s = tr->algo;
    rl_staged g;
    memset(&g, 0, sizeof g);
    int64_t pend = 0;
    if (align__json_get_i64(obj, "epoch", &g.epoch) || align__json_get_i64(obj, "position", &g.pos) ||
        align__json_get_i64(obj, "records", &g.scanned) || align__json_get_u64(obj, "rollouts", &g.rollouts) ||
        align__json_get_i64(obj, "pending", &pend) || g.epoch < 0 || g.pos < 0 || g.scanned < 0 ||
        (pend != 0 && pend != 1))
        return align__error(&tr->err, ALIGN_EFORMAT, "trainer.json: missing or invalid RL state");
    g.pending = (int)pend;
    if (s->ptx) {
        align__batcher_state *st = &g.ptx;
        if (align__json_get_i64(obj, "ptx_epoch", &st->epoch) || align__json_get_i64(obj, "ptx_position", &st->position) ||
            align__json_get_i64(obj, "ptx_carry", &st->carry) || align__json_get_u64(obj, "ptx_rng_seed", &st->rng.seed) ||
            align__json_get_u64(obj, "ptx_rng_stream", &st->rng.stream) ||
            align__json_get_u64(obj, "ptx_rng_counter", &st->rng.counter) ||
            align__json_get_i64(obj, "ptx_epoch_examples", &st->epoch_examples) || st->epoch < 0 ||
            st->position < 0 || st->carry < 0 || st->epoch_examples < 0 ||
            st->epoch_examples > align__batcher_examples(s->ptx) || st->position > align__batcher_examples(s->ptx))
            return align__error(&tr->err, ALIGN_EFORMAT, "trainer.json: missing or invalid PPO-ptx data state");
    }
    if (!s->stream && g.scanned != align_dataset_size(s->data))
        return align__error(&tr->err, ALIGN_EFORMAT, "trainer.json: the run had %lld prompt records, the dataset has %lld",
                            (long long)g.scanned, (long long)align_dataset_size(s->data));
    if (s->stream && align_dataset_size(s->data) < g.scanned) {
        int rc = align__dataset_pull(s->data, g.scanned - align_dataset_size(s->data), &tr->err);
        if (rc < 0)
            return rc;
        if (align_dataset_size(s->data) < g.scanned)
            return align__error(&tr->err, ALIGN_EINVAL, "the checkpoint had read %lld records; the dataset has %lld",
                                (long long)g.scanned, (long long)align_dataset_size(s->data));
    }
    char *data = NULL;
    size_t len = 0;
    int rc = align__ckpt_read(ck, "rl_klctl.bin", &data, &len);
    if (rc < 0)
        return rc;
    rc = align__kl_ctl_load(&g.klc, (const uint8_t *)data, len);
    align__free(data);
    if (rc < 0)
        return align__error(&tr->err, rc, "rl_klctl.bin: invalid KL controller state");
    if ((rc = align__ckpt_read(ck, "rl_metrics.bin", &data, &len)) < 0)
        return rc;
    if (len != sizeof g.rmv) {
        align__free(data);
        return align__error(&tr->err, ALIGN_EFORMAT, "rl_metrics.bin: %zu bytes (expected %zu)", len, sizeof g.rmv);
    }
    memcpy(g.rmv, data, sizeof g.rmv);
    align__free(data);
    if (g.pending) {
        if ((rc = align__ckpt_read(ck, "rl_rollout.bin", &data, &len)) < 0)
            return rc;
        rc = align__rollout_load(&g.buf, data, len, &tr->err);
        align__free(data);
        if (rc < 0)
            return rc;
    }
    rl_staged *p = align__malloc(sizeof *p);
    if (!p) {
        align__rollout_free(g.buf);
        return align__error(&tr->err, ALIGN_ENOMEM, "out of memory");
    }
    *p = g;
    *staged = p;
    return ALIGN_OK;
}

static int rl_apply_state(align_trainer *tr, void *staged)
{
    rl *s = tr->algo;
    rl_staged *g = staged;
    int rc;
    if (s->stream && (rc = scan(s, &tr->err)) < 0)
        return rc;
    if (s->ptx && (rc = align__batcher_set_state(s->ptx, &g->ptx)) < 0)
        return align__error(&tr->err, rc, "the PPO-ptx data position does not fit this dataset");
    if (!s->stream && g->epoch > 0 && (rc = make_order(s, g->epoch, &tr->err)) < 0)
        return rc;
    s->epoch = g->epoch;
    s->pos = g->pos;
    s->rollouts = g->rollouts;
    s->klc = g->klc;
    memcpy(s->rmv, g->rmv, sizeof s->rmv);
    align__rollout_free(s->buf);
    s->buf = g->buf;
    g->buf = NULL;
    s->pending = g->pending;
    return ALIGN_OK;
}

static void rl_free_staged(align_trainer *tr, void *staged)
{
    (void)tr;
    rl_staged *g = staged;
    if (g)
        align__rollout_free(g->buf);
    align__free(g);
}

static int rl_setup_json(const align_trainer *tr, json_t *obj)
{
    const rl *s = tr->algo;
    const rl_cfg *c = &s->c;
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:b}",
                          "flags", (int)c->flags, "group_size", (int)c->G, "prompts", (int)c->n_prompts,
                          "iterations", (int)c->n_iter, "minibatches", (int)c->n_mb, "micro_batch", (int)c->micro,
                          "max_steps", (int)c->max_steps, "epochs", (int)c->epochs, "max_new_tokens", (int)c->max_new,
                          "top_k", (int)c->top_k, "n_stop", (int)c->n_stop, "max_prompt_len", (int)c->max_prompt_len,
                          "loss_agg", (int)c->loss_agg, "reference", s->ref != NULL, "stream", s->stream != 0);
    if (!o)
        return ALIGN_ENOMEM;
    const float fl[] = { c->temperature, c->top_p, c->beta, c->eps_low, c->eps_high, c->score_clip, c->kl_target,
                         c->kl_horizon, c->vf_clip, c->vf_coef, c->gamma, c->lam, c->missing_eos };
    json_t *a = json_array();
    for (size_t i = 0; a && i < sizeof fl / sizeof fl[0]; i++)
        json_array_append_new(a, json_real((double)fl[i]));
    if (a && s->ptx && (json_array_append_new(a, json_real((double)c->ptx_coef)) ||
                        json_object_set_new(o, "ptx_batch", json_integer(c->ptx_batch)) ||
                        json_object_set_new(o, "ptx_examples", json_integer((json_int_t)align__batcher_examples(s->ptx)))))
        return ALIGN_ENOMEM;
    if (!a || json_object_set_new(o, "floats", a) != 0 || align__json_set_u64(o, "seed", c->seed) ||
        json_object_set_new(obj, "rl", o) != 0)
        return ALIGN_ENOMEM;
    return ALIGN_OK;
}

static void rl_free_obj(rl *s)
{
    if (!s)
        return;
    if (s->stop)
        for (int32_t k = 0; k < s->c.n_stop; k++)
            align__free(s->stop[k]);
    align__free(s->stop);
    for (int k = 0; k < 3; k++)
        align__free(s->prefix[k]);
    align__template_free(&s->tmpl);
    align__free(s->usable);
    align__free(s->order);
    align__free(s->idx);
    align__free(s->recs);
    align__free(s->plens);
    align__rollout_free(s->buf);
    scratch_free(s);
    align__batcher_free(s->ptx);
    align__free(s->px_tok);
    align__free(s->px_len);
    align__free(s->px_mtok);
    align__free(s->px_mask);
    align__free(s->px_logp);
    align__free(s->px_dlogp);
    align__free(s);
}

static void rl_free(align_trainer *tr)
{
    rl_free_obj(tr->algo);
    tr->algo = NULL;
}

#define RL_VTABLE(NAME, ALGO)                                                                            \
    static const align__trainer_vtable NAME##_vtable = {                                                 \
        .name = #NAME, .algorithm = ALGO, .rollout = rl_rollout, .accumulate = rl_accumulate,            \
        .finish = rl_finish,                                                                             \
        .progress = rl_progress, .epoch = rl_epoch, .begin = rl_begin, .rollback = rl_rollback,          \
        .save_state = rl_save_state, .load_state = rl_load_state, .apply_state = rl_apply_state,         \
        .free_staged = rl_free_staged, .setup_json = rl_setup_json, .free = rl_free,                     \
    };
RL_VTABLE(grpo, ALIGN_ALGO_GRPO)
RL_VTABLE(rloo, ALIGN_ALGO_RLOO)
RL_VTABLE(ppo, ALIGN_ALGO_PPO)

/* ---- constructors ------------------------------------------------------------------------ */

typedef struct rl_common {
    const char *const *stop;
    const char *prefix[3];
    align_step_fn on_step;
    void *ud;
    align_dataset *ptx;
} rl_common;

static int has_head(align_model *m)
{
    align_model_params cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.struct_size = sizeof cfg;
    return align_model_config(m, &cfg) == 0 && (cfg.flags & ALIGN_MODEL_SCALAR_HEAD);
}

static int create(align_trainer **out, const char *fn, const align_rl_roles *roles_in, align_dataset *prompts,
                  const rl_cfg *cfg_in, const rl_common *cm)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "%s: out is NULL", fn);
    *out = NULL;
    if (!roles_in || !prompts)
        return align__error(NULL, ALIGN_EINVAL, "%s: %s is NULL", fn, !roles_in ? "roles" : "prompts");
    align_rl_roles ro;
    align_rl_roles_init(&ro, sizeof ro);
    int rc = align__params_copy(&ro, sizeof ro, roles_in, "align_rl_roles");
    if (rc)
        return rc;
    rl_cfg c = *cfg_in;
    if (!ro.policy || !ro.policy_opt || !ro.reward || !ro.tokenizer)
        return align__error(NULL, ALIGN_EINVAL, "%s: roles.%s is NULL", fn,
                            !ro.policy ? "policy" : !ro.policy_opt ? "policy_opt" : !ro.reward ? "reward" : "tokenizer");
    if (align__optimizer_model(ro.policy_opt) != ro.policy)
        return align__error(NULL, ALIGN_EINVAL, "%s: roles.policy_opt was created for another model", fn);
    const int ppo = c.algo == ALIGN_ALGO_PPO;
    if (!ppo && (ro.value || ro.value_opt))
        return align__error(NULL, ALIGN_EINVAL, "%s: roles.value must be NULL (no value function)", fn);
    if (ppo) {
        if (ro.value) {
            if (!ro.value_opt || align__optimizer_model(ro.value_opt) != ro.value)
                return align__error(NULL, ALIGN_EINVAL, "%s: roles.value_opt must be the value model's optimizer", fn);
            if (!has_head(ro.value))
                return align__error(NULL, ALIGN_EINVAL, "%s: roles.value has no scalar head", fn);
        } else {
            if (ro.value_opt)
                return align__error(NULL, ALIGN_EINVAL, "%s: roles.value_opt without roles.value", fn);
            if (!has_head(ro.policy))
                return align__error(NULL, ALIGN_EINVAL,
                                    "%s: roles.value is NULL, so the policy needs a scalar head "
                                    "(ALIGN_MODEL_SCALAR_HEAD) for the value", fn);
        }
    }
    if (!ro.reference && c.beta != 0.0f)
        return align__error(NULL, ALIGN_EINVAL, "%s: the KL coefficient is %g but roles.reference is NULL", fn,
                            (double)c.beta);
    const uint32_t known = ALIGN_RL_RAW_PROMPT | ALIGN_RL_SEQUENTIAL |
                           (ppo ? (ALIGN_PPO_ADAPTIVE_KL | ALIGN_PPO_NO_WHITEN)
                                : c.algo == ALIGN_ALGO_GRPO ? (ALIGN_GRPO_NO_STD | ALIGN_GRPO_BATCH_STD) : 0u);
    if (c.flags & ~known)
        return align__error(NULL, ALIGN_EINVAL, "%s: flags has unknown bits 0x%x", fn, (unsigned)(c.flags & ~known));
    if ((c.flags & ALIGN_GRPO_NO_STD) && (c.flags & ALIGN_GRPO_BATCH_STD))
        return align__error(NULL, ALIGN_EINVAL, "%s: ALIGN_GRPO_NO_STD and ALIGN_GRPO_BATCH_STD exclude each other", fn);
#define CHECK(cond, ...) \
    if (!(cond))         \
        return align__error(NULL, ALIGN_EINVAL, __VA_ARGS__);
    CHECK(c.G >= (ppo ? 1 : 2) && c.G <= 4096, "%s: group_size is %d (2..4096)", fn, (int)c.G)
    CHECK(c.n_prompts >= 1 && c.n_prompts <= 4096 && (int64_t)c.n_prompts * c.G <= 65536,
          "%s: prompts per step is %d (1..4096, and prompts x group_size <= 65536)", fn, (int)c.n_prompts)
    CHECK(c.n_iter >= 1 && c.n_iter <= 1000, "%s: iterations/ppo_epochs is %d (1..1000)", fn, (int)c.n_iter)
    CHECK(c.n_mb >= 1 && c.n_mb <= c.n_prompts * c.G, "%s: minibatches is %d (1..rollout size)", fn, (int)c.n_mb)
    CHECK(c.micro >= 1 && c.micro <= 65536, "%s: micro_batch is %d (>= 1)", fn, (int)c.micro)
    CHECK(c.max_steps >= 0, "%s: max_steps is %d (>= 0)", fn, (int)c.max_steps)
    CHECK(c.max_steps > 0 || c.epochs >= 1, "%s: epochs is %d and max_steps is 0 (set one)", fn, (int)c.epochs)
    CHECK(c.max_new >= 1, "%s: max_new_tokens is %d (>= 1)", fn, (int)c.max_new)
    CHECK(c.temperature > 0.0f && isfinite(c.temperature), "%s: temperature is %g (> 0)", fn, (double)c.temperature)
    CHECK(c.top_k >= 0, "%s: top_k is %d", fn, (int)c.top_k)
    CHECK(c.top_p > 0.0f && c.top_p <= 1.0f, "%s: top_p is %g (in (0, 1])", fn, (double)c.top_p)
    CHECK(c.n_stop >= 0 && (c.n_stop == 0 || cm->stop), "%s: n_stop is %d with stop NULL", fn, (int)c.n_stop)
    CHECK(c.beta >= 0.0f && isfinite(c.beta), "%s: KL coefficient is %g (>= 0)", fn, (double)c.beta)
    CHECK(c.algo == ALIGN_ALGO_RLOO ? (c.eps_low < 1.0f && isfinite(c.eps_low)) : (c.eps_low > 0.0f && c.eps_low < 1.0f),
          "%s: clip_eps is %g", fn, (double)c.eps_low)
    CHECK(c.eps_high >= 0.0f && isfinite(c.eps_high), "%s: clip_eps_high is %g", fn, (double)c.eps_high)
    CHECK(c.loss_agg >= ALIGN_RL_AGG_TOKEN_MEAN && c.loss_agg <= ALIGN_RL_AGG_CONSTANT, "%s: loss_agg is %d", fn,
          (int)c.loss_agg)
    CHECK(isfinite(c.score_clip) && isfinite(c.vf_clip) && c.vf_coef >= 0.0f && isfinite(c.vf_coef) &&
          c.gamma >= 0.0f && c.gamma <= 1.0f && c.lam >= 0.0f && c.lam <= 1.0f && isfinite(c.missing_eos),
          "%s: a score clip, value clip/coefficient, gamma or lambda is out of range", fn)
    if (ppo && (c.flags & ALIGN_PPO_ADAPTIVE_KL))
        CHECK(c.kl_target > 0.0f && c.kl_horizon > 0.0f, "%s: kl_target and kl_horizon must be > 0", fn)
    for (int32_t k = 0; k < c.n_stop; k++)
        CHECK(cm->stop[k] && cm->stop[k][0], "%s: stop[%d] is NULL or empty", fn, (int)k)
    if (cm->ptx)
        CHECK(c.ptx_coef >= 0.0f && isfinite(c.ptx_coef) && c.ptx_batch >= 1 && c.ptx_batch <= 65536,
              "%s: ptx_coef is %g and ptx_batch %d (>= 0, 1..65536)", fn, (double)c.ptx_coef, (int)c.ptx_batch)
#undef CHECK
    if (c.eps_high == 0.0f)
        c.eps_high = c.eps_low;

    align_model_params mc;
    memset(&mc, 0, sizeof mc);
    mc.struct_size = sizeof mc;
    if ((rc = align_model_config(ro.policy, &mc)) < 0)
        return align__error(NULL, rc, "%s: %s", fn, align_model_errmsg(ro.policy));
    int32_t tv = align_tokenizer_vocab_size(ro.tokenizer);
    if (tv <= 0 || tv > mc.vocab_size)
        return align__error(NULL, ALIGN_EINVAL, "%s: the tokenizer's vocabulary (%d) does not fit the model's (%d)", fn,
                            (int)tv, (int)mc.vocab_size);
    if (c.max_prompt_len < 0 || c.max_new + ALIGN__MAX(c.max_prompt_len, 1) > mc.max_seq_len)
        return align__error(NULL, ALIGN_EINVAL, "%s: max_prompt_len %d + max_new_tokens %d exceed the model's context %d",
                            fn, (int)c.max_prompt_len, (int)c.max_new, (int)mc.max_seq_len);

    rl *s = align__calloc(1, sizeof *s);
    if (!s)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    s->c = c;
    s->policy = ro.policy;
    s->value = ppo ? ro.value : NULL;
    s->ref = ro.reference;
    s->rm = ro.reward;
    s->tok = ro.tokenizer;
    s->data = prompts;
    s->stream = align__dataset_has_source(prompts);
    s->max_seq = mc.max_seq_len;
    s->idx = align__calloc(65536, sizeof(int32_t));
    s->recs = align__calloc(4096, sizeof(int64_t));
    s->plens = align__calloc(4096, sizeof(int32_t));
    if (!s->idx || !s->recs || !s->plens)
        rc = ALIGN_ENOMEM;
    align__errbuf eb;
    align__error_clear(&eb);
    if (c.n_stop > 0) {
        s->stop = align__calloc((size_t)c.n_stop, sizeof(char *));
        for (int32_t k = 0; s->stop && k < c.n_stop; k++)
            if (!(s->stop[k] = align__strdup(cm->stop[k])))
                rc = ALIGN_ENOMEM;
        if (!s->stop)
            rc = ALIGN_ENOMEM;
    }
    for (int k = 0; k < 3; k++)
        if (cm->prefix[k] && !(s->prefix[k] = align__strdup(cm->prefix[k])))
            rc = ALIGN_ENOMEM;
    if (rc < 0) {
        s->c.n_stop = s->stop ? c.n_stop : 0;
        rl_free_obj(s);
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    }
    rc = align__template_init(&s->tmpl, s->tok, s->prefix[0], s->prefix[1], s->prefix[2], &eb);
    if (rc >= 0)
        rc = scan(s, &eb);
    if (rc >= 0 && s->n_usable == 0 && !s->stream)
        rc = align__error(&eb, ALIGN_EINVAL, "the prompt dataset has no record with a prompt");
    if (rc >= 0 && cm->ptx) {
        align__batch_params bp;
        memset(&bp, 0, sizeof bp);
        bp.flags = ALIGN__BATCH_SHUFFLE;
        bp.max_len = mc.max_seq_len;
        bp.truncation = ALIGN_TRUNCATE_RIGHT;
        bp.seed = c.seed;
        bp.system_prefix = s->prefix[0];
        bp.user_prefix = s->prefix[1];
        bp.assistant_prefix = s->prefix[2];
        rc = align__batcher_create(&s->ptx, cm->ptx, s->tok, &bp, &eb);
        if (rc >= 0) {
            const size_t B = (size_t)c.ptx_batch, L = (size_t)mc.max_seq_len;
            s->ptx_L = mc.max_seq_len;
            s->px_tok = align__calloc(B * L, sizeof(int32_t));
            s->px_mtok = align__calloc(B * L, sizeof(int32_t));
            s->px_len = align__calloc(B, sizeof(int32_t));
            s->px_mask = align__calloc(B * L, 1);
            s->px_logp = align__calloc(B * L, sizeof(float));
            s->px_dlogp = align__calloc(B * L, sizeof(float));
            if (!s->px_tok || !s->px_mtok || !s->px_len || !s->px_mask || !s->px_logp || !s->px_dlogp)
                rc = align__error(&eb, ALIGN_ENOMEM, "out of memory for PPO-ptx rows");
        }
    }
    if (rc >= 0)
        rc = align__kl_ctl_init(&s->klc, ppo ? (double)c.beta : 0.0, ppo && (c.flags & ALIGN_PPO_ADAPTIVE_KL),
                                c.kl_target > 0 ? c.kl_target : 6.0, c.kl_horizon > 0 ? c.kl_horizon : 10000.0);
    if (rc < 0) {
        rl_free_obj(s);
        return align__error(NULL, rc, "%s: %s", fn, align__errmsg(&eb));
    }

    align__role roles[3];
    int32_t nr = 0;
    roles[nr++] = (align__role){ "policy", ro.policy, ro.policy_opt };
    if (s->value)
        roles[nr++] = (align__role){ "value", ro.value, ro.value_opt };
    if (s->ref)
        roles[nr++] = (align__role){ "reference", ro.reference, NULL };
    const align__trainer_vtable *vt = c.algo == ALIGN_ALGO_PPO ? &ppo_vtable
                                      : c.algo == ALIGN_ALGO_GRPO ? &grpo_vtable : &rloo_vtable;
    align_trainer *tr = NULL;
    rc = align__trainer_new_roles(&tr, vt, roles, nr, cm->on_step, cm->ud);
    if (rc < 0) {
        rl_free_obj(s);
        return rc;
    }
    tr->algo = s;
    *out = tr;
    return ALIGN_OK;
}

static int create_group(align_trainer **out, const char *fn, int algo, const align_rl_roles *roles,
                        align_dataset *prompts, const align_grpo_params *p)
{
    align_grpo_params q = algo == ALIGN_ALGO_GRPO ? grpo_defaults : rloo_defaults;
    int rc = align__params_copy(&q, sizeof q, p, "align_grpo_params");
    if (rc) {
        if (out)
            *out = NULL;
        return rc;
    }
    rl_cfg c;
    memset(&c, 0, sizeof c);
    c.algo = algo;
    c.flags = q.flags;
    c.G = q.group_size;
    c.n_prompts = q.prompts_per_step;
    c.n_iter = q.iterations;
    c.n_mb = q.minibatches;
    c.micro = q.micro_batch;
    c.max_steps = q.max_steps;
    c.epochs = q.epochs;
    c.seed = q.seed;
    c.max_new = q.max_new_tokens;
    c.temperature = q.temperature;
    c.top_k = q.top_k;
    c.top_p = q.top_p;
    c.n_stop = q.n_stop;
    c.max_prompt_len = q.max_prompt_len;
    c.beta = q.beta;
    c.eps_low = q.clip_eps;
    c.eps_high = q.clip_eps_high;
    c.loss_agg = q.loss_agg;
    c.score_clip = q.score_clip;
    c.gamma = 1.0f;
    c.lam = 1.0f;
    rl_common cm = { q.stop, { q.system_prefix, q.user_prefix, q.assistant_prefix }, q.on_step, q.on_step_user_data,
                     NULL };
    return create(out, fn, roles, prompts, &c, &cm);
}

ALIGN_API int align_trainer_create_grpo(align_trainer **out, const align_rl_roles *roles, align_dataset *prompts,
                                        const align_grpo_params *p)
{
    return create_group(out, "align_trainer_create_grpo", ALIGN_ALGO_GRPO, roles, prompts, p);
}

ALIGN_API int align_trainer_create_rloo(align_trainer **out, const align_rl_roles *roles, align_dataset *prompts,
                                        const align_grpo_params *p)
{
    return create_group(out, "align_trainer_create_rloo", ALIGN_ALGO_RLOO, roles, prompts, p);
}

ALIGN_API int align_trainer_create_ppo(align_trainer **out, const align_rl_roles *roles, align_dataset *prompts,
                                       const align_ppo_params *p)
{
    align_ppo_params q = ppo_defaults;
    int rc = align__params_copy(&q, sizeof q, p, "align_ppo_params");
    if (rc) {
        if (out)
            *out = NULL;
        return rc;
    }
    rl_cfg c;
    memset(&c, 0, sizeof c);
    c.algo = ALIGN_ALGO_PPO;
    c.flags = q.flags;
    c.G = 1;
    c.n_prompts = q.rollouts_per_step;
    c.n_iter = q.ppo_epochs;
    c.n_mb = q.minibatches;
    c.micro = q.micro_batch;
    c.max_steps = q.max_steps;
    c.epochs = q.epochs;
    c.seed = q.seed;
    c.max_new = q.max_new_tokens;
    c.temperature = q.temperature;
    c.top_k = q.top_k;
    c.top_p = q.top_p;
    c.n_stop = q.n_stop;
    c.max_prompt_len = q.max_prompt_len;
    c.beta = q.kl_coef;
    c.eps_low = q.clip_eps;
    c.eps_high = q.clip_eps_high;
    c.score_clip = q.score_clip;
    c.kl_target = q.kl_target;
    c.kl_horizon = q.kl_horizon;
    c.vf_clip = q.vf_clip;
    c.vf_coef = q.vf_coef;
    c.gamma = q.gamma;
    c.lam = q.lam;
    c.missing_eos = q.missing_eos_penalty;
    c.ptx_coef = q.ptx_coef;
    c.ptx_batch = q.ptx_batch;
    rl_common cm = { q.stop, { q.system_prefix, q.user_prefix, q.assistant_prefix }, q.on_step, q.on_step_user_data,
                     q.ptx_data };
    return create(out, "align_trainer_create_ppo", roles, prompts, &c, &cm);
}
