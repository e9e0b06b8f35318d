/* dnnl.c — bf16 matrix products through oneDNN's matmul primitive (see bf16.h).
 *
 * One product C[M][Nc] (= beta * C) + A[M][K] @ B[K][Nc] (+ bias) runs as:
 * K in blocks, and the larger of M and Nc (the "split" dimension) in blocks,
 * so that each bf16 copy stays under BLOCK_ELEMS elements; per block, the
 * other operand is rounded to bf16 by the pool, then each chunk of the pool
 * rounds its own slice of the split operand and runs a single-threaded
 * oneDNN matmul on its part of C (fp32 output, accumulation through the
 * primitive's sum post-op). Each element of C is produced by one chunk, so
 * the result is bitwise reproducible for a given thread count, and oneDNN's
 * own OpenMP pool never runs (its threads would spin against ours on small
 * machines): the calling thread's OpenMP thread count is 1 around each call.
 *
 * Primitives are cached by shape and strides (user-managed scratchpad, so one
 * primitive may run on several threads at once). */
#include "nn/bf16.h"
#include "nn/nn.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

uint16_t align__bf16_from_f32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* NaN stays a (quiet) NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float align__bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

#ifndef ALIGN_HAVE_DNNL
int align__dnnl_built(void) { return 0; }
void align__dnnl_test_block(int64_t elems) { (void)elems; }
const char *align__dnnl_info(void) { return "not built in (make DNNL=1 with libdnnl-dev)"; }
int align__dnnl_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                               int64_t N, int64_t C, int64_t OC, int layout, float beta)
{
    (void)out, (void)inp, (void)w, (void)bias, (void)N, (void)C, (void)OC, (void)layout, (void)beta;
    return -1;
}
int align__dnnl_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, int64_t N, int64_t C, int64_t OC, int layout)
{
    (void)dinp, (void)dw, (void)dout, (void)inp, (void)w, (void)N, (void)C, (void)OC, (void)layout;
    return -1;
}
#else
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdatomic.h>

/* libgomp, under oneDNN's OpenMP runtime (declared here: clang has no omp.h
 * without -fopenmp). */
extern int omp_get_max_threads(void);
extern void omp_set_num_threads(int n);

/* Largest bf16 copy of one operand block, in elements (2 MB: measured on the
 * 124M shapes, 2-core Zen 4, against 8 MB: dW 1.6x, the others level), and
 * the split dimension's granularity across chunks. */
enum { BLOCK_ELEMS = 1 << 20, UNIT = 64 };
static _Atomic int64_t block_elems = BLOCK_ELEMS;
void align__dnnl_test_block(int64_t elems) { atomic_store(&block_elems, elems > 0 ? elems : BLOCK_ELEMS); }

/* ---- rounding f32 -> bf16 ------------------------------------------------------- */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* Round to nearest even in integer arithmetic (same bits as the scalar
 * version, denormals kept); NaN lanes become quiet NaNs. */
__attribute__((target("avx512f,avx512bw"))) static void cvt_row(uint16_t *dst, const float *src, int64_t n)
{
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    const __m512i qnan = _mm512_set1_epi32(0x40);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i u = _mm512_loadu_si512((const void *)(src + i));
        __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
        __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, absmask), inf);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_slli_epi32(qnan, 16)));
        _mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
    }
    for (; i < n; i++)
        dst[i] = align__bf16_from_f32(src[i]);
}
#else
static void cvt_row(uint16_t *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = align__bf16_from_f32(src[i]);
}
#endif

/* A logical fp32 matrix: element (r, c) at p[r * rs + c * cs]; one of rs, cs is 1. */
typedef struct {
    const float *p;
    int64_t rs, cs;
} f32mat;

/* Rows [r0, r1) x cols [c0, c1) of m into dense bf16 in m's own orientation:
 * row-major (cs == 1): dst[(r - r0) * ld + (c - c0)]; column-major:
 * dst[(c - c0) * ld + (r - r0)]. Only the outer lines [o0, o1) of the block
 * (rows when row-major, columns otherwise) are written. */
static void cvt_block(uint16_t *dst, int64_t ld, f32mat m, int64_t r0, int64_t c0, int64_t nr, int64_t nc,
                      int64_t o0, int64_t o1)
{
    if (m.cs == 1) {
        for (int64_t r = o0; r < o1; r++)
            cvt_row(dst + r * ld, m.p + (r0 + r) * m.rs + c0, nc);
    } else {
        for (int64_t c = o0; c < o1; c++)
            cvt_row(dst + c * ld, m.p + (c0 + c) * m.cs + r0, nr);
    }
}

/* ---- per-thread scratch -------------------------------------------------------------- */
enum { TLS_SHARED, TLS_SPLIT, TLS_PAD, TLS_N };
typedef struct {
    void *buf[TLS_N];
    size_t cap[TLS_N];
} tls_bufs;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static void tls_free(void *v)
{
    tls_bufs *t = v;
    for (int i = 0; i < TLS_N; i++)
        align__free_aligned(t->buf[i]);
    align__free(t);
}
static void tls_init(void) { (void)pthread_key_create(&tls_key, tls_free); }
static void *tls_get(int slot, size_t bytes)
{
    pthread_once(&tls_once, tls_init);
    tls_bufs *t = pthread_getspecific(tls_key);
    if (!t) {
        t = align__calloc(1, sizeof *t);
        if (!t || pthread_setspecific(tls_key, t) != 0) {
            align__free(t);
            return NULL;
        }
    }
    if (bytes > t->cap[slot]) {
        align__free_aligned(t->buf[slot]);
        t->buf[slot] = align__alloc_aligned(bytes);
        t->cap[slot] = t->buf[slot] ? bytes : 0;
    }
    return t->buf[slot];
}

/* ---- engine and primitive cache ---------------------------------------------------- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t engine;
static int engine_state; /* 0 not tried, 1 ok, -1 failed */

typedef struct {
    int64_t M, N, K, a_rs, a_cs, b_rs, b_cs, ldc;
    int bias, sum;
} prim_key;
typedef struct prim_entry {
    prim_key key;
    dnnl_primitive_t prim;
    size_t pad_bytes;
    struct prim_entry *next;
} prim_entry;
static prim_entry *cache;

static int engine_get(void)
{
    if (engine_state == 0)
        engine_state = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success ? 1 : -1;
    return engine_state;
}

static prim_entry *prim_create(const prim_key *k)
{
    dnnl_memory_desc_t a, b, c, bias;
    dnnl_dims_t ad = {k->M, k->K}, as = {k->a_rs, k->a_cs};
    dnnl_dims_t bd = {k->K, k->N}, bs = {k->b_rs, k->b_cs};
    dnnl_dims_t cd = {k->M, k->N}, cs = {k->ldc, 1};
    dnnl_dims_t biasd = {1, k->N}, biass = {k->N, 1};
    if (dnnl_memory_desc_init_by_strides(&a, 2, ad, dnnl_bf16, as) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&b, 2, bd, dnnl_bf16, bs) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&c, 2, cd, dnnl_f32, cs) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&bias, 2, biasd, dnnl_f32, biass) != dnnl_success)
        return NULL;
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &a, &b, k->bias ? &bias : NULL, &c) != dnnl_success)
        return NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    prim_entry *e = NULL;
    int ok = dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && k->sum)
        ok = dnnl_post_ops_create(&po) == dnnl_success && dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    /* created with one OpenMP thread: the kernel's blocking is chosen for the
     * single thread that will run it */
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    if (ok)
        ok = dnnl_primitive_desc_create(&pd, &md, attr, engine, NULL) == dnnl_success;
    if (ok && (e = align__calloc(1, sizeof *e)) != NULL) {
        e->key = *k;
        const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        e->pad_bytes = pmd ? dnnl_memory_desc_get_size(pmd) : 0;
        if (dnnl_primitive_create(&e->prim, pd) != dnnl_success) {
            align__free(e);
            e = NULL;
        }
    }
    omp_set_num_threads(saved);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return e;
}

static prim_entry *prim_get(const prim_key *k)
{
    pthread_mutex_lock(&mu);
    prim_entry *e = NULL;
    if (engine_get() > 0) {
        for (e = cache; e; e = e->next)
            if (!memcmp(&e->key, k, sizeof *k))
                break;
        if (!e && (e = prim_create(k)) != NULL) {
            e->next = cache;
            cache = e;
        }
    }
    pthread_mutex_unlock(&mu);
    return e;
}

static void warn_once(const char *what)
{
    static atomic_int warned;
    if (!atomic_exchange(&warned, 1))
        align__log(ALIGN_LOG_WARN, "bf16 compute: %s", what);
}

/* ---- one product ------------------------------------------------------------------------- */
typedef struct {
    int64_t M, Nc, K;
    f32mat A, B;
    float *Cm;
    int64_t ldc;
    const float *bias;
    int split_m;                /* split M (else Nc) across chunks */
    int64_t k0, kb, s0, sb;     /* current K block, split-dimension block */
    uint16_t *shared, *split;   /* bf16 copies of the block */
    int64_t shared_ld, split_ld;
    int sum;                    /* accumulate into C */
    atomic_int failed;
} gemm_ctx;

/* The non-split operand's block, by outer lines. */
static void cvt_shared(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    gemm_ctx *g = vctx;
    if (g->split_m) /* shared = B[k0:k0+kb][0:Nc] */
        cvt_block(g->shared, g->shared_ld, g->B, g->k0, 0, g->kb, g->Nc, b, e);
    else /* shared = A[0:M][k0:k0+kb] */
        cvt_block(g->shared, g->shared_ld, g->A, 0, g->k0, g->M, g->kb, b, e);
}

static int64_t outer_lines(f32mat m, int64_t nr, int64_t nc) { return m.cs == 1 ? nr : nc; }

/* A chunk whose primitive could not be had or run: its part of C in fp32
 * (sgemm on the fp32 operands), so that a product is never left half done. */
static void chunk_fp32(gemm_ctx *g, const prim_key *k, float *cp, const float *bias)
{
    atomic_store(&g->failed, 1);
    int64_t m0 = g->split_m ? (cp - g->Cm) / g->ldc : 0, n0 = g->split_m ? 0 : cp - g->Cm;
    for (int64_t i = 0; i < k->M; i++) {
        float *row = cp + i * g->ldc;
        if (!k->sum)
            memset(row, 0, (size_t)k->N * sizeof(float));
        if (bias)
            for (int64_t j = 0; j < k->N; j++)
                row[j] += bias[j];
    }
    const float *a = g->A.p + m0 * g->A.rs + g->k0 * g->A.cs;
    const float *b = g->B.p + g->k0 * g->B.rs + n0 * g->B.cs;
    cblas_sgemm(CblasRowMajor, g->A.cs == 1 ? CblasNoTrans : CblasTrans, g->B.cs == 1 ? CblasNoTrans : CblasTrans,
                (int)k->M, (int)k->N, (int)k->K, 1.0f, a, (int)(g->A.cs == 1 ? g->A.rs : g->A.cs), b,
                (int)(g->B.cs == 1 ? g->B.rs : g->B.cs), 1.0f, cp, (int)g->ldc);
}

static void run_chunk(void *vctx, int64_t b, int64_t e, int chunk)
{
    (void)chunk;
    gemm_ctx *g = vctx;
    int64_t p0 = b * UNIT, p1 = e * UNIT < g->sb ? e * UNIT : g->sb; /* in the split block */
    if (p1 <= p0)
        return;
    int64_t np = p1 - p0;
    /* this chunk's slice of the split operand, and the sub-matrices for oneDNN */
    prim_key k = {0};
    const uint16_t *ap, *bp;
    float *cp;
    if (g->split_m) {
        f32mat A = g->A; /* rows s0+p0 .. of A[.][k0:k0+kb] */
        if (A.cs == 1) {
            cvt_block(g->split, g->split_ld, A, g->s0, g->k0, g->sb, g->kb, p0, p1);
            ap = g->split + p0 * g->split_ld;
            k.a_rs = g->split_ld, k.a_cs = 1;
        } else {
            cvt_block(g->split + p0, g->split_ld, A, g->s0 + p0, g->k0, np, g->kb, 0, g->kb);
            ap = g->split + p0;
            k.a_rs = 1, k.a_cs = g->split_ld;
        }
        bp = g->shared;
        if (g->B.cs == 1)
            k.b_rs = g->shared_ld, k.b_cs = 1;
        else
            k.b_rs = 1, k.b_cs = g->shared_ld;
        cp = g->Cm + (g->s0 + p0) * g->ldc;
        k.M = np, k.N = g->Nc;
    } else {
        f32mat B = g->B; /* cols s0+p0 .. of B[k0:k0+kb][.] */
        if (B.cs == 1) {
            cvt_block(g->split + p0, g->split_ld, B, g->k0, g->s0 + p0, g->kb, np, 0, g->kb);
            bp = g->split + p0;
            k.b_rs = g->split_ld, k.b_cs = 1;
        } else {
            cvt_block(g->split, g->split_ld, B, g->k0, g->s0, g->kb, g->sb, p0, p1);
            bp = g->split + p0 * g->split_ld;
            k.b_rs = 1, k.b_cs = g->split_ld;
        }
        ap = g->shared;
        if (g->A.cs == 1)
            k.a_rs = g->shared_ld, k.a_cs = 1;
        else
            k.a_rs = 1, k.a_cs = g->shared_ld;
        cp = g->Cm + g->s0 + p0;
        k.M = g->M, k.N = np;
    }
    k.K = g->kb;
    k.ldc = g->ldc;
    const float *bias = NULL;
    if (g->bias && g->k0 == 0) {
        bias = g->split_m ? g->bias : g->bias + g->s0 + p0;
        k.bias = 1;
    }
    k.sum = g->sum || g->k0 > 0;
    prim_entry *pe = prim_get(&k);
    void *pad = pe && pe->pad_bytes ? tls_get(TLS_PAD, pe->pad_bytes) : NULL;
    if (!pe || (pe->pad_bytes && !pad)) {
        chunk_fp32(g, &k, cp, bias);
        return;
    }
    const dnnl_memory_desc_t *mds[5];
    dnnl_primitive_desc_t pd;
    dnnl_primitive_get_primitive_desc(pe->prim, (const_dnnl_primitive_desc_t *)&pd);
    mds[0] = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    mds[1] = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    mds[2] = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    mds[3] = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
    mds[4] = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    void *ptrs[5] = {(void *)ap, (void *)bp, cp, (void *)bias, pad};
    int argk[5] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS, DNNL_ARG_SCRATCHPAD};
    dnnl_exec_arg_t args[5];
    dnnl_memory_t mem[5] = {0};
    int nargs = 0, ok = 1;
    dnnl_stream_t stream = NULL;
    for (int i = 0; i < 5 && ok; i++) {
        if (!ptrs[i])
            continue;
        ok = dnnl_memory_create(&mem[i], mds[i], engine, ptrs[i]) == dnnl_success;
        args[nargs].arg = argk[i];
        args[nargs].memory = mem[i];
        nargs++;
    }
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    ok = ok && dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) == dnnl_success &&
         dnnl_primitive_execute(pe->prim, stream, nargs, args) == dnnl_success &&
         dnnl_stream_wait(stream) == dnnl_success;
    omp_set_num_threads(saved);
    if (stream)
        dnnl_stream_destroy(stream);
    for (int i = 0; i < 5; i++)
        if (mem[i])
            dnnl_memory_destroy(mem[i]);
    if (!ok)
        chunk_fp32(g, &k, cp, bias);
}

/* C = (sum ? C : 0) + A @ B (+ bias), see the file comment. 0, or -1 with C
 * untouched when the bf16 copies could not be allocated (the caller computes
 * in fp32). */
static int bf16_gemm(int64_t M, int64_t Nc, int64_t K, f32mat A, f32mat B, float *Cm, int64_t ldc,
                     const float *bias, int sum)
{
    gemm_ctx g = {.M = M, .Nc = Nc, .K = K, .A = A, .B = B, .Cm = Cm, .ldc = ldc, .bias = bias, .sum = sum};
    g.split_m = M > Nc;
    int64_t S = g.split_m ? M : Nc, other = g.split_m ? Nc : M;
    const int64_t block = atomic_load(&block_elems);
    int64_t kb = block / other;
    kb = kb < 1 ? 1 : kb > K ? K : kb;
    int64_t sb = block / kb;
    sb = sb < UNIT ? UNIT : sb / UNIT * UNIT;
    if (sb > S)
        sb = S;
    uint16_t *shared = tls_get(TLS_SHARED, (size_t)(other * kb) * sizeof(uint16_t));
    uint16_t *split = tls_get(TLS_SPLIT, (size_t)(sb * kb) * sizeof(uint16_t));
    if (!shared || !split) {
        warn_once("out of memory for the bf16 copies of a product");
        return -1;
    }
    for (int64_t k0 = 0; k0 < K; k0 += kb) {
        g.k0 = k0;
        g.kb = K - k0 < kb ? K - k0 : kb;
        g.shared = shared;
        f32mat so = g.split_m ? B : A;
        /* dense ld of the shared copy: its inner extent */
        if (g.split_m)
            g.shared_ld = so.cs == 1 ? Nc : g.kb;
        else
            g.shared_ld = so.cs == 1 ? g.kb : M;
        align__parallel_for(g.split_m ? outer_lines(so, g.kb, Nc) : outer_lines(so, M, g.kb), cvt_shared, &g);
        for (int64_t s0 = 0; s0 < S; s0 += sb) {
            g.s0 = s0;
            g.sb = S - s0 < sb ? S - s0 : sb;
            g.split = split;
            f32mat sp = g.split_m ? A : B;
            if (g.split_m)
                g.split_ld = sp.cs == 1 ? g.kb : g.sb;
            else
                g.split_ld = sp.cs == 1 ? g.sb : g.kb;
            align__parallel_for((g.sb + UNIT - 1) / UNIT, run_chunk, &g);
        }
    }
    if (atomic_load(&g.failed))
        warn_once("oneDNN could not create or run a bf16 matmul (that part ran in fp32)");
    return 0;
}

/* ---- the nn entry points ------------------------------------------------------------------ */
int align__dnnl_matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                               int64_t N, int64_t C, int64_t OC, int layout, float beta)
{
    if (beta != 0.0f && beta != 1.0f)
        return -1;
    f32mat A = {inp, C, 1};
    f32mat B = layout == ALIGN__W_IN_OUT ? (f32mat){w, OC, 1} : (f32mat){w, 1, C};
    return bf16_gemm(N, OC, C, A, B, out, OC, bias, beta != 0.0f);
}

int align__dnnl_matmul_backward(float *dinp, float *dw, const float *dout, const float *inp,
                                const float *w, int64_t N, int64_t C, int64_t OC, int layout)
{
    if (dinp) { /* dinp[N][C] = dout[N][OC] @ W^T */
        f32mat A = {dout, OC, 1};
        f32mat B = layout == ALIGN__W_IN_OUT ? (f32mat){w, 1, OC} : (f32mat){w, C, 1};
        if (bf16_gemm(N, C, OC, A, B, dinp, C, NULL, 0))
            return -1;
    }
    if (dw) {
        if (layout == ALIGN__W_IN_OUT) { /* dW[C][OC] += inp^T @ dout */
            f32mat A = {inp, 1, C}, B = {dout, OC, 1};
            if (bf16_gemm(C, OC, N, A, B, dw, OC, NULL, 1))
                return -1;
        } else { /* dW[OC][C] += dout^T @ inp */
            f32mat A = {dout, 1, OC}, B = {inp, C, 1};
            if (bf16_gemm(OC, C, N, A, B, dw, C, NULL, 1))
                return -1;
        }
    }
    return 0;
}

int align__dnnl_built(void) { return 1; }

static char info_buf[96];
static void info_fill(void)
{
    const dnnl_version_t *v = dnnl_version();
    const char *isa;
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core_amx: isa = "avx512_core_amx"; break;
    case dnnl_cpu_isa_avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl_cpu_isa_avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl_cpu_isa_avx512_core: isa = "avx512_core"; break;
    case dnnl_cpu_isa_avx2: isa = "avx2"; break;
    default: isa = "other"; break;
    }
    snprintf(info_buf, sizeof info_buf, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch, isa);
}

const char *align__dnnl_info(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, info_fill);
    return info_buf;
}
#endif
