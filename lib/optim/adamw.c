/* adamw.c — AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay
 * Regularization") over the model's flat parameter array, with a warmup +
 * constant / linear / cosine schedule and global-norm clipping. The moments
 * are one flat allocation each; the update is one fused, vectorisable loop
 * per tensor run (decay applies to 2-D tensors only, see model.c). */
#include "model/model_impl.h"
#include "model/safetensors.h"
#include "optim/optim.h"

#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest step count a state file may hold: far beyond any run, and
 * small enough that steps + 1 cannot overflow. */
#define ALIGN__MAX_STEPS (1LL << 53)

struct align_optimizer {
    align__errbuf err;
    align_optimizer_params p;
    align_model *m;
    float *mom, *var;   /* [n] each */
    size_t n;           /* floats of what it updates: the model's parameters, or its LoRA adapters' */
    int64_t steps;
};

static const align_optimizer_params opt_defaults = {
    .struct_size = sizeof(align_optimizer_params),
    .flags = 0,
    .learning_rate = 1e-4f,
    .beta1 = 0.9f,
    .beta2 = 0.999f,
    .eps = 1e-8f,
    .weight_decay = 0.0f,
    .max_grad_norm = 1.0f,
    .schedule = ALIGN_SCHEDULE_CONSTANT,
    .warmup_steps = 0,
    .total_steps = 1000,
    .min_lr_ratio = 0.0f,
};

ALIGN_API int align_optimizer_default_params(align_optimizer_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &opt_defaults, sizeof opt_defaults,
                                  "align_optimizer_default_params");
}

align_model *align__optimizer_model(align_optimizer *o) { return o ? o->m : NULL; }

int align__optimizer_swap_state(align_optimizer *a, align_optimizer *b)
{
    if (!a || !b || a->n != b->n)
        return align__error(a ? &a->err : NULL, ALIGN_EINVAL, "swap_state: the optimizers differ in size");
    float *m = a->mom, *v = a->var;
    int64_t s = a->steps;
    a->mom = b->mom;
    a->var = b->var;
    a->steps = b->steps;
    b->mom = m;
    b->var = v;
    b->steps = s;
    return ALIGN_OK;
}

ALIGN_API int align_optimizer_create(align_optimizer **out, align_model *m,
                                     const align_optimizer_params *p)
{
    if (!out)
        return align__error(NULL, ALIGN_EINVAL, "align_optimizer_create: out is NULL");
    *out = NULL;
    if (!m)
        return align__error(NULL, ALIGN_EINVAL, "align_optimizer_create: model is NULL");
    if (m->frozen)
        return align__error(NULL, ALIGN_EMISUSE, "align_optimizer_create: the model is frozen");
    align_optimizer_params c = opt_defaults;
    int rc = align__params_copy(&c, sizeof c, p, "align_optimizer_create");
    if (rc)
        return rc;
    if (c.flags != 0)
        return align__error(NULL, ALIGN_EINVAL, "align_optimizer_create: unknown flags 0x%x", (unsigned)c.flags);
    /* every comparison is false for NaN, so NaN fails each test */
    if (!(c.learning_rate >= 0.0f) || !isfinite(c.learning_rate) || !(c.beta1 >= 0.0f && c.beta1 < 1.0f) ||
        !(c.beta2 >= 0.0f && c.beta2 < 1.0f) || !(c.eps > 0.0f) || !isfinite(c.eps) ||
        !(c.weight_decay >= 0.0f) || !isfinite(c.weight_decay) ||
        !isfinite(c.max_grad_norm) || c.warmup_steps < 0 || c.total_steps < 1 ||
        !(c.min_lr_ratio >= 0.0f && c.min_lr_ratio <= 1.0f) ||
        c.schedule < ALIGN_SCHEDULE_CONSTANT || c.schedule > ALIGN_SCHEDULE_COSINE)
        return align__error(NULL, ALIGN_EINVAL,
                            "align_optimizer_create: a parameter is out of range (lr >= 0, betas in "
                            "[0,1), eps > 0, weight_decay >= 0, all finite, warmup >= 0, total_steps >= 1, "
                            "min_lr_ratio in [0,1], known schedule)");
    align_optimizer *o = align__calloc(1, sizeof *o);
    if (!o)
        return align__error(NULL, ALIGN_ENOMEM, "align_optimizer_create: out of memory");
    o->p = c;
    o->p.struct_size = sizeof o->p;
    o->m = m;
    /* bound to what trains now: with LoRA adapters attached, only they */
    align__train_view v;
    align__model_train_view(m, &v);
    o->n = v.n;
    o->mom = align__alloc_aligned(o->n * sizeof(float));
    o->var = align__alloc_aligned(o->n * sizeof(float));
    if (!o->mom || !o->var) {
        align_optimizer_free(o);
        return align__error(NULL, ALIGN_ENOMEM, "align_optimizer_create: out of memory for %zu moments", o->n);
    }
    *out = o;
    return ALIGN_OK;
}

ALIGN_API void align_optimizer_free(align_optimizer *o)
{
    if (!o)
        return;
    align__free_aligned(o->mom);
    align__free_aligned(o->var);
    align__free(o);
}

ALIGN_API const char *align_optimizer_errmsg(const align_optimizer *o)
{
    return o ? align__errmsg(&o->err) : "optimizer is NULL";
}

/* Warmup: linear from lr/warmup up to lr over the first warmup steps (step
 * s uses (s+1)/warmup, so the first update is not wasted at 0). Then
 * constant, or linear / cosine (Loshchilov & Hutter 2017) decay to
 * min_lr_ratio * lr at total_steps, flat after. */
static float lr_at(const align_optimizer_params *p, int64_t s)
{
    float lr = p->learning_rate;
    if (s < p->warmup_steps)
        return lr * (float)(s + 1) / (float)p->warmup_steps;
    if (p->schedule == ALIGN_SCHEDULE_CONSTANT)
        return lr;
    int64_t span = (int64_t)p->total_steps - p->warmup_steps;
    double prog = span > 0 ? (double)(s - p->warmup_steps) / (double)span : 1.0;
    if (prog > 1.0)
        prog = 1.0;
    double f = p->schedule == ALIGN_SCHEDULE_LINEAR ? 1.0 - prog : 0.5 * (1.0 + cos(3.14159265358979323846 * prog));
    return lr * (float)(p->min_lr_ratio + (1.0 - p->min_lr_ratio) * f);
}

ALIGN_API float align_optimizer_lr(const align_optimizer *o) { return o ? lr_at(&o->p, o->steps) : 0.0f; }

ALIGN_API int64_t align_optimizer_steps_done(const align_optimizer *o) { return o ? o->steps : 0; }

typedef struct {
    float *p, *g, *m, *v;
    float lr, b1, b2, eps, wd, scale, bc1, bc2;
} adam_ctx;

/* The fused update: one pass over param, grad and both moments. gcc -O2
 * (its "very cheap" vectoriser) leaves this loop scalar: 3 divisions and a
 * square root per parameter, ~15% of a 124M training step. The AVX2 and
 * AVX-512 versions below do the same operations in the same order, one
 * element per lane (no FMA: -std=c11 does not contract a*b+c, and neither
 * do they), and IEEE division and square root are correctly rounded at any
 * width: the three give the same bits. */
static inline void adam_one(float *p, float *g, float *m, float *v, const adam_ctx *c)
{
    const float ib1 = 1.0f - c->b1, ib2 = 1.0f - c->b2;
    float gi = *g * c->scale;
    float mi = c->b1 * *m + ib1 * gi;
    float vi = c->b2 * *v + ib2 * gi * gi;
    *m = mi;
    *v = vi;
    float mh = mi / c->bc1, vh = vi / c->bc2;
    *p -= c->lr * (mh / (sqrtf(vh) + c->eps) + c->wd * *p);
    *g = 0.0f;
}

static void adam_chunk(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    adam_ctx *c = vctx;
    for (int64_t i = b; i < e; i++)
        adam_one(c->p + i, c->g + i, c->m + i, c->v + i, c);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ADAM_VEC(W, T, PS)                                                                              \
    const T b1 = PS(set1_ps)(c->b1), b2 = PS(set1_ps)(c->b2), ib1 = PS(set1_ps)(1.0f - c->b1),       \
            ib2 = PS(set1_ps)(1.0f - c->b2), sc = PS(set1_ps)(c->scale), bc1 = PS(set1_ps)(c->bc1),     \
            bc2 = PS(set1_ps)(c->bc2), lr = PS(set1_ps)(c->lr), eps = PS(set1_ps)(c->eps),             \
            wd = PS(set1_ps)(c->wd), zero = PS(setzero_ps)();                                          \
    int64_t i = b;                                                                                      \
    for (; i + (W) <= e; i += (W)) {                                                                    \
        T gi = PS(mul_ps)(PS(loadu_ps)(c->g + i), sc);                                                  \
        T mi = PS(add_ps)(PS(mul_ps)(b1, PS(loadu_ps)(c->m + i)), PS(mul_ps)(ib1, gi));                  \
        T vi = PS(add_ps)(PS(mul_ps)(b2, PS(loadu_ps)(c->v + i)), PS(mul_ps)(PS(mul_ps)(ib2, gi), gi));  \
        PS(storeu_ps)(c->m + i, mi);                                                                    \
        PS(storeu_ps)(c->v + i, vi);                                                                    \
        T mh = PS(div_ps)(mi, bc1), vh = PS(div_ps)(vi, bc2);                                           \
        T p = PS(loadu_ps)(c->p + i);                                                                   \
        T upd = PS(add_ps)(PS(div_ps)(mh, PS(add_ps)(PS(sqrt_ps)(vh), eps)), PS(mul_ps)(wd, p));         \
        PS(storeu_ps)(c->p + i, PS(sub_ps)(p, PS(mul_ps)(lr, upd)));                                    \
        PS(storeu_ps)(c->g + i, zero);                                                                  \
    }                                                                                                   \
    for (; i < e; i++)                                                                                  \
        adam_one(c->p + i, c->g + i, c->m + i, c->v + i, c);
#define PS256(op) _mm256_##op
#define PS512(op) _mm512_##op
__attribute__((target("avx2"))) static void adam_chunk_avx2(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const adam_ctx *c = vctx;
    ADAM_VEC(8, __m256, PS256)
}
__attribute__((target("avx512f"))) static void adam_chunk_avx512(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    const adam_ctx *c = vctx;
    ADAM_VEC(16, __m512, PS512)
}
static align__range_fn adam_fn(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? adam_chunk_avx512
           : __builtin_cpu_supports("avx2") ? adam_chunk_avx2 : adam_chunk;
}
#else
static align__range_fn adam_fn(void) { return adam_chunk; }
#endif

ALIGN_API int align_optimizer_step(align_optimizer *o, float *grad_norm_out)
{
    if (!o)
        return align__error(NULL, ALIGN_EINVAL, "align_optimizer_step: optimizer is NULL");
    align__error_clear(&o->err);
    align_model *m = o->m;
    align__train_view v;
    align__model_train_view(m, &v);
    if (v.n != o->n || !v.grads)
        return align__error(&o->err, ALIGN_EMISUSE,
                            "align_optimizer_step: the model's trainable parameters changed since the optimizer "
                            "was created (LoRA adapters attached or merged): create a new optimizer");
    float norm = align__model_grad_norm(m);
    if (grad_norm_out)
        *grad_norm_out = norm;
    if (!isfinite(norm)) {
        memset(v.grads, 0, v.n * sizeof(float));
        return align__error(&o->err, ALIGN_ENONFINITE,
                            "align_optimizer_step: gradient norm is %f: update skipped, gradients zeroed",
                            (double)norm);
    }
    float scale = 1.0f;
    if (o->p.max_grad_norm > 0.0f && norm > o->p.max_grad_norm)
        scale = o->p.max_grad_norm / (norm + 1e-6f);
    int64_t t = o->steps + 1;
    adam_ctx c = {.lr = lr_at(&o->p, o->steps), .b1 = o->p.beta1, .b2 = o->p.beta2, .eps = o->p.eps,
                  .scale = scale, .bc1 = 1.0f - powf(o->p.beta1, (float)t),
                  .bc2 = 1.0f - powf(o->p.beta2, (float)t)};
    /* runs of tensors with the same decay flag are contiguous: one loop each */
    int i = 0;
    const align__tensor *tt = v.tensors;
    while (i < v.n_tensors) {
        int j = i;
        while (j + 1 < v.n_tensors && tt[j + 1].decay == tt[i].decay)
            j++;
        size_t off = tt[i].offset, n = tt[j].offset + tt[j].numel - off;
        c.p = v.params + off;
        c.g = v.grads + off;
        c.m = o->mom + off;
        c.v = o->var + off;
        c.wd = tt[i].decay ? o->p.weight_decay : 0.0f;
        align__parallel_for((int64_t)n, adam_fn(), &c);
        i = j + 1;
    }
    o->steps++;
    m->fwd_ready = 0; /* the weights changed under the kept activations */
    return ALIGN_OK;
}

/* What the optimizer updates, for the state file: the trainable tensors'
 * names and shapes hashed (FNV-1a), and whether they are LoRA adapters.
 * 0 when the model's trainable set changed since the optimizer was created. */
static int state_layout(const align_optimizer *o, uint64_t *hash, const char **trains,
                        const align__tensor **tensors, int *n_tensors)
{
    align__train_view v;
    align__model_train_view(o->m, &v);
    if (v.n != o->n)
        return 0;
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < v.n_tensors; i++) {
        char buf[ALIGN__TENSOR_NAME_CAP + 64];
        int len = snprintf(buf, sizeof buf, "%s:%lld,%lld;", v.tensors[i].name, (long long)v.tensors[i].shape[0],
                           (long long)(v.tensors[i].ndim == 2 ? v.tensors[i].shape[1] : 0));
        for (int k = 0; k < len && k < (int)sizeof buf; k++)
            h = (h ^ (unsigned char)buf[k]) * 1099511628211ull;
    }
    *hash = h;
    *trains = o->m->lora ? "lora" : "model";
    if (tensors) {
        *tensors = v.tensors;
        *n_tensors = v.n_tensors;
    }
    return 1;
}

ALIGN_API int align_optimizer_save(const align_optimizer *o, const char *path)
{
    if (!o || !path)
        return align__error(NULL, ALIGN_EINVAL, "align_optimizer_save: optimizer or path is NULL");
    align__errbuf *eb = (align__errbuf *)&o->err;
    int64_t n = (int64_t)o->n;
    align__st_tensor t[2] = {{"exp_avg", o->mom, 1, {n, 0}}, {"exp_avg_sq", o->var, 1, {n, 0}}};
    char steps[32], np[32], b1[32], b2[32], lay[32];
    snprintf(steps, sizeof steps, "%lld", (long long)o->steps);
    snprintf(np, sizeof np, "%lld", (long long)n);
    /* the betas the moments were accumulated with (%.9g: a float round-trips),
     * so that a load can check the moments against each other */
    snprintf(b1, sizeof b1, "%.9g", (double)o->p.beta1);
    snprintf(b2, sizeof b2, "%.9g", (double)o->p.beta2);
    align__st_meta meta[7] = {{"libalign.kind", "adamw"}, {"step", steps}, {"n_params", np},
                              {"beta1", b1}, {"beta2", b2}};
    int n_meta = 5;
    uint64_t h;
    const char *trains;
    if (state_layout(o, &h, &trains, NULL, NULL)) {
        snprintf(lay, sizeof lay, "fnv1a64:%016llx", (unsigned long long)h);
        meta[n_meta++] = (align__st_meta){"trains", trains};
        meta[n_meta++] = (align__st_meta){"layout", lay};
    }
    return align__st_write(eb, path, t, 2, meta, n_meta);
}

/* A whole decimal number in 0..max: digits only ("" or " 5" or "+5" are not
 * numbers), no saturation (strtoll's ERANGE). -1 otherwise. */
static long long parse_count(const char *s, long long max)
{
    char *end = NULL;
    errno = 0;
    long long x = (s && *s >= '0' && *s <= '9') ? strtoll(s, &end, 10) : -1;
    if (x < 0 || errno == ERANGE || *end != '\0' || x > max)
        return -1;
    return x;
}

/* A beta from the file: a decimal number whose float is in [0, 1). */
static int parse_beta(const char *s, float *out)
{
    if (!s || !(*s >= '0' && *s <= '9'))
        return -1;
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    if (errno == ERANGE || *end != '\0' || !(d >= 0.0 && (float)d < 1.0f))
        return -1;
    *out = (float)d;
    return 0;
}

/* The bound the moments of one AdamW run obey. After t updates with the
 * (clipped) gradients g_1..g_t, m = sum_k a_k g_k with a_k = (1-b1) b1^(t-k)
 * and v = sum_k w_k g_k^2 with w_k = (1-b2) b2^(t-k), so by Cauchy-Schwarz
 *   m^2 <= (sum_k a_k^2 / w_k) v = (1-b1)^2/(1-b2) * sum_{j<t} (b1^2/b2)^j * v,
 * element by element (for the defaults 0.9 / 0.999 the factor is <= 52.9).
 * An element far above it (say v = 0 under m != 0) moves its weight by about
 * lr * |m| / eps on the next step (eps = 1e-8 by default). The coefficients are
 * the float values the update uses; INFINITY when no bound exists (b2 = 0
 * after two steps, or a sum that overflows). */
static double moment_bound(float b1, float b2, int64_t t)
{
    if (t == 0)
        return 0.0;
    double ib1 = (double)(1.0f - b1), ib2 = (double)(1.0f - b2), a = (double)b1, w = (double)b2;
    double base = ib1 * ib1 / ib2, s;
    if (t == 1 || a == 0.0)
        return base;
    if (w == 0.0)
        return INFINITY;
    double r = a * a / w;
    if (r == 1.0)
        s = (double)t;
    else
        s = (pow(r, (double)t) - 1.0) / (r - 1.0);
    return isfinite(s) ? base * s : INFINITY;
}

typedef struct {
    const float *m, *v;
    double c, slack;   /* m^2 <= c * (v + slack); c = INFINITY: no bound */
    int step0;         /* no update yet: both moments must be 0 */
} moments_check;

/* 1 if element i is a state one AdamW run can reach. */
static inline int moment_ok(const moments_check *k, size_t i)
{
    float m = k->m[i], v = k->v[i];
    if (!isfinite(m) || !isfinite(v) || !(v >= 0.0f))
        return 0;
    if (k->step0)
        return m == 0.0f && v == 0.0f;
    double md = (double)m;
    return k->c == INFINITY || md * md <= k->c * ((double)v + k->slack);
}

/* First element in [0, n) that fails, or n. Blocks are checked without a
 * branch per element (vectorisable), a failing block element by element. */
static size_t first_bad_moment(const moments_check *k, size_t n)
{
    enum { BLK = 4096 };
    for (size_t b = 0; b < n; b += BLK) {
        size_t e = b + BLK < n ? b + BLK : n;
        int ok = 1;
        for (size_t i = b; i < e; i++)
            ok &= moment_ok(k, i);
        if (!ok)
            for (size_t i = b; i < e; i++)
                if (!moment_ok(k, i))
                    return i;
    }
    return n;
}

ALIGN_API int align_optimizer_load(align_optimizer *o, const char *path)
{
    if (!o || !path)
        return align__error(NULL, ALIGN_EINVAL, "align_optimizer_load: optimizer or path is NULL");
    align__error_clear(&o->err);
    align__st_file f;
    int rc = align__st_open(&o->err, path, &f);
    if (rc)
        return rc;
    int64_t n = (int64_t)o->n;
    const char *kind = align__st_meta_get(&f, "libalign.kind"), *st = align__st_meta_get(&f, "step");
    const float *mm, *vv;
    if (!kind || strcmp(kind, "adamw") != 0 || !st) {
        rc = align__error(&o->err, ALIGN_EFORMAT, "%s: not an AdamW state file (kind/step metadata)", path);
        goto done;
    }
    /* step below ALIGN__MAX_STEPS so that step + 1 and the bias corrections
     * stay well defined */
    long long steps = parse_count(st, ALIGN__MAX_STEPS);
    if (steps < 0) {
        rc = align__error(&o->err, ALIGN_EFORMAT, "%s: step '%.40s' is not a number in 0..%lld", path, st,
                          (long long)ALIGN__MAX_STEPS);
        goto done;
    }
    /* What the state is for. Files from libalign 0.3 and before hold only
     * n_params (and older ones not even that): then the size alone is checked. */
    uint64_t hash = 0;
    const char *here = NULL;
    const align__tensor *tens = NULL;
    int n_tens = 0;
    int known = state_layout(o, &hash, &here, &tens, &n_tens);
    const char *trains = align__st_meta_get(&f, "trains"), *lay = align__st_meta_get(&f, "layout");
    const char *np = align__st_meta_get(&f, "n_params");
    if (trains && strcmp(trains, "lora") != 0 && strcmp(trains, "model") != 0) {
        rc = align__error(&o->err, ALIGN_EFORMAT, "%s: optimizer state: trains is '%.40s' (lora or model)", path,
                          trains);
        goto done;
    }
    if (trains && known && strcmp(trains, here) != 0) {
        rc = align__error(&o->err, ALIGN_EFORMAT,
                          strcmp(trains, "lora") == 0
                              ? "%s: optimizer state: saved for a model's LoRA adapters, but this optimizer updates "
                                "the whole model (attach the same adapters before creating the optimizer)"
                              : "%s: optimizer state: saved for a whole model, but this optimizer updates LoRA "
                                "adapters only",
                          path);
        goto done;
    }
    if (np) {
        long long nps = parse_count(np, INT64_MAX);
        if (nps != (long long)n) {
            rc = align__error(&o->err, ALIGN_EFORMAT,
                              "%s: optimizer state: holds moments for n_params '%.40s', this optimizer updates %lld",
                              path, np, (long long)n);
            goto done;
        }
    }
    if (lay && known) {
        char mine[32];
        snprintf(mine, sizeof mine, "fnv1a64:%016llx", (unsigned long long)hash);
        if (strcmp(lay, mine) != 0) {
            rc = align__error(&o->err, ALIGN_EFORMAT,
                              "%s: optimizer state: saved for other trainable tensors (the same count, other "
                              "names or shapes)", path);
            goto done;
        }
    }
    const char *sb1 = align__st_meta_get(&f, "beta1"), *sb2 = align__st_meta_get(&f, "beta2");
    float b1 = 0.0f, b2 = 0.0f;
    if ((sb1 || sb2) && (parse_beta(sb1, &b1) || parse_beta(sb2, &b2))) {
        rc = align__error(&o->err, ALIGN_EFORMAT, "%s: optimizer state: beta1 '%.40s' / beta2 '%.40s' (both, in [0,1))",
                          path, sb1 ? sb1 : "(none)", sb2 ? sb2 : "(none)");
        goto done;
    }
    if ((rc = align__st_get(&o->err, &f, "exp_avg", 1, &n, &mm)) ||
        (rc = align__st_get(&o->err, &f, "exp_avg_sq", 1, &n, &vv)))
        goto done;
    /* The moments are checked before anything is copied, so a bad file leaves
     * the optimizer as it was: finite, exp_avg_sq >= 0 (NaN or a negative
     * second moment turns the next step's weights into NaN), both zero at
     * step 0, and, when the file records the betas, exp_avg^2 within the
     * bound of moment_bound (tolerance: a factor 2 plus rounding accumulated
     * over ~1/(1-beta) steps; slack: exp_avg_sq may underflow where exp_avg
     * does not). Files without betas (libalign <= 0.3) skip that bound: the
     * loading optimizer's betas may differ from the run's.
     * Cost: one pass over the two arrays. On a 124M-parameter GPT-2 state
     * (990 MB file, page cache warm, 2 shared cores, best of 4) the check
     * took 0.29 s of a 7.4 s load, whose reading and checksum took 6.75 s
     * and whose copy 0.28 s: about 4%. */
    moments_check k = {mm, vv, INFINITY, 0.0, steps == 0};
    if (sb1) {
        const double u = 1.0 / 16777216.0;
        double ib1 = (double)(1.0f - b1), ib2 = (double)(1.0f - b2);
        double c = moment_bound(b1, b2, steps);
        k.c = isfinite(c) ? c * (2.0 + 8.0 * u / ib1 + 8.0 * u / ib2) : INFINITY;
        k.slack = (double)FLT_MIN / ib2;
    }
    size_t bad = first_bad_moment(&k, (size_t)n);
    if (bad < (size_t)n) {
        float m = mm[bad], v = vv[bad];
        char where[ALIGN__TENSOR_NAME_CAP + 64];
        snprintf(where, sizeof where, "element %zu of the flat state", bad);
        for (int i = 0; tens && i < n_tens; i++)
            if (bad >= tens[i].offset && bad < tens[i].offset + tens[i].numel) {
                snprintf(where, sizeof where, "'%s' at %zu", tens[i].name, bad - tens[i].offset);
                break;
            }
        if (!isfinite(m))
            rc = align__error(&o->err, ALIGN_EFORMAT, "%s: optimizer state: exp_avg of %s is %s", path, where,
                              isnan(m) ? "NaN" : "infinite");
        else if (!isfinite(v))
            rc = align__error(&o->err, ALIGN_EFORMAT, "%s: optimizer state: exp_avg_sq of %s is %s", path, where,
                              isnan(v) ? "NaN" : "infinite");
        else if (!(v >= 0.0f))
            rc = align__error(&o->err, ALIGN_EFORMAT, "%s: optimizer state: exp_avg_sq of %s has a negative value (%g)",
                              path, where, (double)v);
        else if (k.step0)
            rc = align__error(&o->err, ALIGN_EFORMAT,
                              "%s: optimizer state: step is 0 but %s of %s is %g (before the first step both "
                              "moments are 0)", path, m != 0.0f ? "exp_avg" : "exp_avg_sq", where,
                              (double)(m != 0.0f ? m : v));
        else
            rc = align__error(&o->err, ALIGN_EFORMAT,
                              "%s: optimizer state: exp_avg of %s is %g but exp_avg_sq is %g: after %lld steps with "
                              "beta1 %g, beta2 %g, |exp_avg| <= %.3g (the moments are not from one AdamW run)",
                              path, where, (double)m, (double)v, steps, (double)b1, (double)b2,
                              sqrt(k.c * ((double)v + k.slack)));
        goto done;
    }
    memcpy(o->mom, mm, (size_t)n * sizeof(float));
    memcpy(o->var, vv, (size_t)n * sizeof(float));
    o->steps = steps;
done:
    align__st_close(&f);
    return rc;
}
