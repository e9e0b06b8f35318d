/* rollout.c — the rollout buffer, its minibatch x epoch iterator and its
 * serialisation (see rollout.h). */
#include "train/rollout.h"

#include <math.h>
#include <string.h>

#define ROLLOUT_MAGIC   "ALRB"
#define ROLLOUT_VERSION 1u
#define ROLLOUT_MAX_DIM (1 << 24)
#define ROLLOUT_MAX_ELEMS ((int64_t)1 << 28)   /* entries per array: at most 1 GiB of floats */
/* magic, version, n, max_prompt, max_resp, flags, seed, stream, mb_size,
 * n_epochs, epoch, pos */
#define HEADER_BYTES (4 + 4 * 5 + 8 * 2 + 4 * 4)
#define TRAILER_BYTES 8
/* plen, rlen, group, ended + 3 zero bytes, score */
#define SAMPLE_FIXED 20
#define N_TOKEN_ARRAYS 6

static float **token_arrays(align__rollout *r, float *arr[N_TOKEN_ARRAYS])
{
    arr[0] = r->logp_old;
    arr[1] = r->logp_ref;
    arr[2] = r->values;
    arr[3] = r->rewards;
    arr[4] = r->adv;
    arr[5] = r->ret;
    return arr;
}

void align__rollout_free(align__rollout *r)
{
    if (!r)
        return;
    align__free(r->prompt_len);
    align__free(r->prompt);
    align__free(r->resp_len);
    align__free(r->resp);
    align__free(r->mask);
    align__free(r->logp_old);
    align__free(r->logp_ref);
    align__free(r->values);
    align__free(r->rewards);
    align__free(r->adv);
    align__free(r->ret);
    align__free(r->scores);
    align__free(r->group);
    align__free(r->ended);
    align__free(r->order);
    align__free(r);
}

int align__rollout_create(align__rollout **out, int32_t n, int32_t max_prompt, int32_t max_resp,
                          align__errbuf *eb)
{
    if (!out)
        return align__error(eb, ALIGN_EINVAL, "rollout: out is NULL");
    *out = NULL;
    if (n < 1 || max_prompt < 1 || max_resp < 1 || n > ROLLOUT_MAX_DIM || max_prompt > ROLLOUT_MAX_DIM ||
        max_resp > ROLLOUT_MAX_DIM || (int64_t)n * ((int64_t)max_prompt + max_resp) > ROLLOUT_MAX_ELEMS)
        return align__error(eb, ALIGN_EINVAL, "rollout: sizes n=%d max_prompt=%d max_resp=%d out of range",
                            (int)n, (int)max_prompt, (int)max_resp);
    align__rollout *r = align__calloc(1, sizeof *r);
    if (!r)
        return align__error(eb, ALIGN_ENOMEM, "rollout: out of memory");
    size_t N = (size_t)n, P = N * (size_t)max_prompt, R = N * (size_t)max_resp;
    r->n = n;
    r->max_prompt = max_prompt;
    r->max_resp = max_resp;
    r->prompt_len = align__calloc(N, sizeof(int32_t));
    r->prompt = align__calloc(P, sizeof(int32_t));
    r->resp_len = align__calloc(N, sizeof(int32_t));
    r->resp = align__calloc(R, sizeof(int32_t));
    r->mask = align__calloc(R, 1);
    r->logp_old = align__calloc(R, sizeof(float));
    r->logp_ref = align__calloc(R, sizeof(float));
    r->values = align__calloc(R, sizeof(float));
    r->rewards = align__calloc(R, sizeof(float));
    r->adv = align__calloc(R, sizeof(float));
    r->ret = align__calloc(R, sizeof(float));
    r->scores = align__calloc(N, sizeof(float));
    r->group = align__calloc(N, sizeof(int32_t));
    r->ended = align__calloc(N, 1);
    r->order = align__calloc(N, sizeof(int32_t));
    if (!r->prompt_len || !r->prompt || !r->resp_len || !r->resp || !r->mask || !r->logp_old || !r->logp_ref ||
        !r->values || !r->rewards || !r->adv || !r->ret || !r->scores || !r->group || !r->ended || !r->order) {
        align__rollout_free(r);
        return align__error(eb, ALIGN_ENOMEM, "rollout: out of memory for %d x %d tokens", (int)n,
                            (int)max_resp);
    }
    *out = r;
    return ALIGN_OK;
}

void align__rollout_clear(align__rollout *r)
{
    size_t N = (size_t)r->n, P = N * (size_t)r->max_prompt, R = N * (size_t)r->max_resp;
    memset(r->prompt_len, 0, N * sizeof(int32_t));
    memset(r->prompt, 0, P * sizeof(int32_t));
    memset(r->resp_len, 0, N * sizeof(int32_t));
    memset(r->resp, 0, R * sizeof(int32_t));
    memset(r->mask, 0, R);
    float *arr[N_TOKEN_ARRAYS];
    token_arrays(r, arr);
    for (int a = 0; a < N_TOKEN_ARRAYS; a++)
        memset(arr[a], 0, R * sizeof(float));
    memset(r->scores, 0, N * sizeof(float));
    memset(r->group, 0, N * sizeof(int32_t));
    memset(r->ended, 0, N);
    memset(&r->iter, 0, sizeof r->iter);
}

int align__rollout_set_sample(align__rollout *r, int32_t i, const int32_t *prompt, int32_t prompt_len,
                              const int32_t *resp, int32_t resp_len, int32_t group, int ended,
                              align__errbuf *eb)
{
    if (i < 0 || i >= r->n)
        return align__error(eb, ALIGN_EINVAL, "rollout: sample %d out of range (n=%d)", (int)i, (int)r->n);
    if (prompt_len < 1 || prompt_len > r->max_prompt || !prompt)
        return align__error(eb, ALIGN_EINVAL, "rollout: sample %d: prompt length %d not in 1..%d", (int)i,
                            (int)prompt_len, (int)r->max_prompt);
    if (resp_len < 0 || resp_len > r->max_resp || (resp_len > 0 && !resp))
        return align__error(eb, ALIGN_EINVAL, "rollout: sample %d: response length %d not in 0..%d", (int)i,
                            (int)resp_len, (int)r->max_resp);
    for (int32_t t = 0; t < prompt_len; t++)
        if (prompt[t] < 0)
            return align__error(eb, ALIGN_EINVAL, "rollout: sample %d: negative prompt token", (int)i);
    for (int32_t t = 0; t < resp_len; t++)
        if (resp[t] < 0)
            return align__error(eb, ALIGN_EINVAL, "rollout: sample %d: negative response token", (int)i);
    size_t po = (size_t)i * (size_t)r->max_prompt, ro = (size_t)i * (size_t)r->max_resp;
    size_t Rt = (size_t)r->max_resp;
    memset(r->prompt + po, 0, (size_t)r->max_prompt * sizeof(int32_t));
    memcpy(r->prompt + po, prompt, (size_t)prompt_len * sizeof(int32_t));
    memset(r->resp + ro, 0, Rt * sizeof(int32_t));
    if (resp_len > 0)
        memcpy(r->resp + ro, resp, (size_t)resp_len * sizeof(int32_t));
    memset(r->mask + ro, 0, Rt);
    memset(r->mask + ro, 1, (size_t)resp_len);
    float *arr[N_TOKEN_ARRAYS];
    token_arrays(r, arr);
    for (int a = 0; a < N_TOKEN_ARRAYS; a++)
        memset(arr[a] + ro, 0, Rt * sizeof(float));
    r->prompt_len[i] = prompt_len;
    r->resp_len[i] = resp_len;
    r->group[i] = group;
    r->ended[i] = ended ? 1 : 0;
    r->scores[i] = 0.0f;
    return ALIGN_OK;
}

/* ---- iterator ------------------------------------------------------------------------------ */

/* Epoch e's order: Fisher-Yates from Philox (seed, stream) at counter e << 32. */
static void make_order(align__rollout *r)
{
    align__rng g;
    align__rng_init(&g, r->iter.seed, r->iter.stream);
    g.counter = (uint64_t)(uint32_t)r->iter.epoch << 32;
    for (int32_t i = 0; i < r->n; i++)
        r->order[i] = i;
    for (int32_t i = r->n - 1; i > 0; i--) {
        int32_t j = (int32_t)align__rng_below(&g, (uint32_t)i + 1);
        int32_t t = r->order[i];
        r->order[i] = r->order[j];
        r->order[j] = t;
    }
}

static int iter_valid(const align__rollout *r, const align__rollout_iter *s)
{
    if (s->mb_size == 0)   /* not started: everything else must be 0 too */
        return s->n_epochs == 0 && s->epoch == 0 && s->pos == 0 && s->seed == 0 && s->stream == 0;
    return s->mb_size >= 1 && s->mb_size <= r->n && s->n_epochs >= 1 && s->epoch >= 0 &&
           s->epoch <= s->n_epochs && s->pos >= 0 && s->pos < r->n && (s->epoch < s->n_epochs || s->pos == 0);
}

int align__rollout_iter_set(align__rollout *r, const align__rollout_iter *s)
{
    if (!r || !s || !iter_valid(r, s))
        return ALIGN_EINVAL;
    r->iter = *s;
    if (s->mb_size > 0 && s->epoch < s->n_epochs)
        make_order(r);
    return ALIGN_OK;
}

int align__rollout_iter_start(align__rollout *r, int32_t mb_size, int32_t n_epochs, uint64_t seed,
                              uint64_t stream)
{
    if (!r || mb_size < 1 || mb_size > r->n || n_epochs < 1)
        return ALIGN_EINVAL;
    align__rollout_iter s = { seed, stream, mb_size, n_epochs, 0, 0 };
    return align__rollout_iter_set(r, &s);
}

int align__rollout_iter_next(align__rollout *r, int32_t *idx, int32_t *count)
{
    if (!r || !idx || !count)
        return ALIGN_EINVAL;
    *count = 0;
    if (r->iter.mb_size == 0)
        return ALIGN_EMISUSE;
    if (r->iter.epoch >= r->iter.n_epochs)
        return ALIGN_DONE;
    int32_t c = ALIGN__MIN(r->iter.mb_size, r->n - r->iter.pos);
    memcpy(idx, r->order + r->iter.pos, (size_t)c * sizeof(int32_t));
    *count = c;
    r->iter.pos += c;
    if (r->iter.pos == r->n) {
        r->iter.pos = 0;
        r->iter.epoch++;
        if (r->iter.epoch < r->iter.n_epochs)
            make_order(r);
    }
    return ALIGN_OK;
}

void align__rollout_iter_get(const align__rollout *r, align__rollout_iter *out)
{
    *out = r->iter;
}

/* ---- minibatch views ------------------------------------------------------------------------ */

static int fits(const align__rollout *r, const int32_t *idx, int32_t count, int32_t max_len)
{
    if (!idx || count < 0 || max_len < 2)
        return 0;
    for (int32_t k = 0; k < count; k++) {
        int32_t i = idx[k];
        if (i < 0 || i >= r->n || r->prompt_len[i] < 1 || r->prompt_len[i] + r->resp_len[i] > max_len)
            return 0;
    }
    return 1;
}

int align__rollout_batch(const align__rollout *r, const int32_t *idx, int32_t count, int32_t max_len,
                         int32_t *tokens, int32_t *lengths)
{
    if (!r || !tokens || !lengths || !fits(r, idx, count, max_len))
        return ALIGN_EINVAL;
    for (int32_t k = 0; k < count; k++) {
        int32_t i = idx[k], pl = r->prompt_len[i], rl = r->resp_len[i];
        int32_t *row = tokens + (size_t)k * (size_t)max_len;
        memset(row, 0, (size_t)max_len * sizeof(int32_t));
        memcpy(row, r->prompt + (size_t)i * (size_t)r->max_prompt, (size_t)pl * sizeof(int32_t));
        memcpy(row + pl, r->resp + (size_t)i * (size_t)r->max_resp, (size_t)rl * sizeof(int32_t));
        lengths[k] = pl + rl;
    }
    return ALIGN_OK;
}

void align__rollout_rows_f(const align__rollout *r, float *dst, const float *src, const int32_t *idx,
                           int32_t count)
{
    size_t T = (size_t)r->max_resp;
    for (int32_t k = 0; k < count; k++)
        memcpy(dst + (size_t)k * T, src + (size_t)idx[k] * T, T * sizeof(float));
}

void align__rollout_rows_u8(const align__rollout *r, uint8_t *dst, const uint8_t *src, const int32_t *idx,
                            int32_t count)
{
    size_t T = (size_t)r->max_resp;
    for (int32_t k = 0; k < count; k++)
        memcpy(dst + (size_t)k * T, src + (size_t)idx[k] * T, T);
}

int align__rollout_model_to_resp(const align__rollout *r, float *dst_resp, const float *src_model,
                                 const int32_t *idx, int32_t count, int32_t max_len, int32_t stride)
{
    if (!r || stride < max_len - 1 || !dst_resp || !src_model || !fits(r, idx, count, max_len))
        return ALIGN_EINVAL;
    size_t T = (size_t)r->max_resp, L1 = (size_t)stride;
    for (int32_t k = 0; k < count; k++) {
        int32_t i = idx[k], off = r->prompt_len[i] - 1;
        float *d = dst_resp + (size_t)k * T;
        const float *s = src_model + (size_t)k * L1;
        for (int32_t t = 0; t < r->max_resp; t++)
            d[t] = t < r->resp_len[i] ? s[off + t] : 0.0f;
    }
    return ALIGN_OK;
}

int align__rollout_resp_to_model(const align__rollout *r, float *dst_model, const float *src_resp,
                                 const int32_t *idx, int32_t count, int32_t max_len, int32_t stride)
{
    if (!r || stride < max_len - 1 || !dst_model || !src_resp || !fits(r, idx, count, max_len))
        return ALIGN_EINVAL;
    size_t T = (size_t)r->max_resp, L1 = (size_t)stride;
    for (int32_t k = 0; k < count; k++) {
        int32_t i = idx[k], off = r->prompt_len[i] - 1;
        float *d = dst_model + (size_t)k * L1;
        const float *s = src_resp + (size_t)k * T;
        memset(d, 0, L1 * sizeof(float));
        for (int32_t t = 0; t < r->resp_len[i]; t++)
            d[off + t] = s[t];
    }
    return ALIGN_OK;
}

/* ---- serialisation (little-endian) ------------------------------------------------------------ */

typedef struct wr {
    uint8_t *p;
} wr;
static void w_u32(wr *w, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        *w->p++ = (uint8_t)(v >> (8 * i));
}
static void w_u64(wr *w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *w->p++ = (uint8_t)(v >> (8 * i));
}
static void w_f32(wr *w, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    w_u32(w, v);
}

typedef struct rd {
    const uint8_t *p, *end;
} rd;
static int r_ok(const rd *r, size_t n)
{
    return (size_t)(r->end - r->p) >= n;
}
static uint32_t r_u32(rd *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)*r->p++ << (8 * i);
    return v;
}
static uint64_t r_u64(rd *r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)*r->p++ << (8 * i);
    return v;
}
static float r_f32(rd *r)
{
    uint32_t v = r_u32(r);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* FNV-1a, 64 bit */
static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static size_t sample_bytes(int32_t plen, int32_t rlen)
{
    return SAMPLE_FIXED + 4 * (size_t)plen + 4 * (size_t)rlen + (size_t)rlen +
           4 * (size_t)N_TOKEN_ARRAYS * (size_t)rlen;
}

size_t align__rollout_blob_size(const align__rollout *r)
{
    size_t s = HEADER_BYTES + TRAILER_BYTES;
    for (int32_t i = 0; i < r->n; i++)
        s += sample_bytes(r->prompt_len[i], r->resp_len[i]);
    return s;
}

int align__rollout_save(const align__rollout *r, void *buf, size_t cap)
{
    if (!r || !buf)
        return ALIGN_EINVAL;
    size_t need = align__rollout_blob_size(r);
    if (cap < need)
        return ALIGN_ERANGE;
    wr w = { buf };
    memcpy(w.p, ROLLOUT_MAGIC, 4);
    w.p += 4;
    w_u32(&w, ROLLOUT_VERSION);
    w_u32(&w, (uint32_t)r->n);
    w_u32(&w, (uint32_t)r->max_prompt);
    w_u32(&w, (uint32_t)r->max_resp);
    w_u32(&w, 0);   /* flags, none defined */
    w_u64(&w, r->iter.seed);
    w_u64(&w, r->iter.stream);
    w_u32(&w, (uint32_t)r->iter.mb_size);
    w_u32(&w, (uint32_t)r->iter.n_epochs);
    w_u32(&w, (uint32_t)r->iter.epoch);
    w_u32(&w, (uint32_t)r->iter.pos);
    float *arr[N_TOKEN_ARRAYS];
    token_arrays((align__rollout *)r, arr);
    for (int32_t i = 0; i < r->n; i++) {
        int32_t pl = r->prompt_len[i], rl = r->resp_len[i];
        size_t po = (size_t)i * (size_t)r->max_prompt, ro = (size_t)i * (size_t)r->max_resp;
        w_u32(&w, (uint32_t)pl);
        w_u32(&w, (uint32_t)rl);
        w_u32(&w, (uint32_t)r->group[i]);
        w_u32(&w, (uint32_t)r->ended[i]);   /* one byte and three zero bytes */
        w_f32(&w, r->scores[i]);
        for (int32_t t = 0; t < pl; t++)
            w_u32(&w, (uint32_t)r->prompt[po + t]);
        for (int32_t t = 0; t < rl; t++)
            w_u32(&w, (uint32_t)r->resp[ro + t]);
        memcpy(w.p, r->mask + ro, (size_t)rl);
        w.p += rl;
        for (int a = 0; a < N_TOKEN_ARRAYS; a++)
            for (int32_t t = 0; t < rl; t++)
                w_f32(&w, arr[a][ro + t]);
    }
    uint8_t *start = buf;
    w_u64(&w, fnv1a64(start, (size_t)(w.p - start)));
    if ((size_t)(w.p - start) != need)
        return ALIGN_EINTERNAL;
    return ALIGN_OK;
}

#define BAD(...) do { rc = align__error(eb, ALIGN_EFORMAT, "rollout blob: " __VA_ARGS__); goto fail; } while (0)

int align__rollout_load(align__rollout **out, const void *blob, size_t len, align__errbuf *eb)
{
    if (!out)
        return align__error(eb, ALIGN_EINVAL, "rollout: out is NULL");
    *out = NULL;
    if (!blob)
        return align__error(eb, ALIGN_EINVAL, "rollout: blob is NULL");
    const uint8_t *b = blob;
    if (len < HEADER_BYTES + TRAILER_BYTES || memcmp(b, ROLLOUT_MAGIC, 4) != 0)
        return align__error(eb, ALIGN_EFORMAT, "rollout blob: not a rollout buffer (%zu bytes)", len);
    rd tr = { b + len - TRAILER_BYTES, b + len };
    if (r_u64(&tr) != fnv1a64(b, len - TRAILER_BYTES))
        return align__error(eb, ALIGN_EFORMAT, "rollout blob: checksum mismatch (corrupted or truncated)");
    rd r = { b + 4, b + len - TRAILER_BYTES };
    uint32_t version = r_u32(&r);
    if (version != ROLLOUT_VERSION)
        return align__error(eb, ALIGN_EVERSION, "rollout blob: version %u, this library reads %u", version,
                            ROLLOUT_VERSION);
    uint32_t n = r_u32(&r), mp = r_u32(&r), mr = r_u32(&r), flags = r_u32(&r);
    if (n < 1 || mp < 1 || mr < 1 || n > ROLLOUT_MAX_DIM || mp > ROLLOUT_MAX_DIM || mr > ROLLOUT_MAX_DIM ||
        flags != 0 || (size_t)n * SAMPLE_FIXED > len)
        return align__error(eb, ALIGN_EFORMAT, "rollout blob: bad header (n=%u max_prompt=%u max_resp=%u)", n,
                            mp, mr);
    align__rollout_iter it;
    it.seed = r_u64(&r);
    it.stream = r_u64(&r);
    it.mb_size = (int32_t)r_u32(&r);
    it.n_epochs = (int32_t)r_u32(&r);
    it.epoch = (int32_t)r_u32(&r);
    it.pos = (int32_t)r_u32(&r);
    align__rollout *ro = NULL;
    int rc = align__rollout_create(&ro, (int32_t)n, (int32_t)mp, (int32_t)mr, eb);
    if (rc != ALIGN_OK)
        return rc;
    if (!iter_valid(ro, &it))
        BAD("iterator state out of range (mb %d, epoch %d/%d, pos %d)", (int)it.mb_size, (int)it.epoch,
            (int)it.n_epochs, (int)it.pos);
    float *arr[N_TOKEN_ARRAYS];
    token_arrays(ro, arr);
    for (uint32_t i = 0; i < n; i++) {
        if (!r_ok(&r, SAMPLE_FIXED))
            BAD("truncated at sample %u", i);
        uint32_t pl = r_u32(&r), rl = r_u32(&r);
        int32_t group = (int32_t)r_u32(&r);
        uint32_t ended = r_u32(&r);
        float score = r_f32(&r);
        if (pl < 1 || pl > mp || rl > mr)
            BAD("sample %u: lengths %u+%u do not fit %u+%u", i, pl, rl, mp, mr);
        if (ended > 1)
            BAD("sample %u: bad ended flag", i);
        if (!isfinite(score))
            BAD("sample %u: score is not finite", i);
        if (!r_ok(&r, sample_bytes((int32_t)pl, (int32_t)rl) - SAMPLE_FIXED))
            BAD("truncated in sample %u", i);
        size_t po = (size_t)i * mp, rro = (size_t)i * mr;
        for (uint32_t t = 0; t < pl; t++) {
            int32_t v = (int32_t)r_u32(&r);
            if (v < 0)
                BAD("sample %u: negative prompt token", i);
            ro->prompt[po + t] = v;
        }
        for (uint32_t t = 0; t < rl; t++) {
            int32_t v = (int32_t)r_u32(&r);
            if (v < 0)
                BAD("sample %u: negative response token", i);
            ro->resp[rro + t] = v;
        }
        for (uint32_t t = 0; t < rl; t++) {
            uint8_t m = *r.p++;
            if (m > 1)
                BAD("sample %u: mask value %u", i, m);
            ro->mask[rro + t] = m;
        }
        for (int a = 0; a < N_TOKEN_ARRAYS; a++)
            for (uint32_t t = 0; t < rl; t++) {
                float f = r_f32(&r);
                if (!isfinite(f))
                    BAD("sample %u token %u: non-finite value in array %d", i, t, a);
                arr[a][rro + t] = f;
            }
        ro->prompt_len[i] = (int32_t)pl;
        ro->resp_len[i] = (int32_t)rl;
        ro->group[i] = group;
        ro->ended[i] = (uint8_t)ended;
        ro->scores[i] = score;
    }
    if (r.p != r.end)
        BAD("%zu trailing bytes", (size_t)(r.end - r.p));
    if (align__rollout_iter_set(ro, &it) != ALIGN_OK)
        BAD("iterator state does not fit");
    *out = ro;
    return ALIGN_OK;
fail:
    align__rollout_free(ro);
    return rc;
}
