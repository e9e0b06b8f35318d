/*
 * core.h — the bottom layer: errors, allocation, logging, RNG, threads, time.
 * Private to the library (align__ names are hidden by -fvisibility=hidden).
 * Calls nothing above it.
 */
#ifndef ALIGN_CORE_H
#define ALIGN_CORE_H

#include "align.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#  define ALIGN__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define ALIGN__PRINTF(a, b)
#endif

/* ---- errors --------------------------------------------------------------
 * Every handle embeds one align__errbuf. align__error() formats the detail
 * into it (if non-NULL) and into the calling thread's last-error buffer, and
 * returns code, so failures read:  return align__error(&m->err, ALIGN_EINVAL, "...");
 */
#define ALIGN__ERRMSG_CAP 512
typedef struct align__errbuf {
    char msg[ALIGN__ERRMSG_CAP];
} align__errbuf;

int align__error(align__errbuf *eb, int code, const char *fmt, ...) ALIGN__PRINTF(3, 4);
int align__verror(align__errbuf *eb, int code, const char *fmt, va_list ap);
/* For a caller that handles an inner call's failure (e.g. retries with a
 * larger buffer): take mark = align__error_mark() before the inner call, and
 * call align__error_recovered(mark) once the failure is handled. If the inner
 * call wrote one message, the thread's last message goes back to what it was
 * before, so a call that succeeds leaves align_last_errmsg() as it found it.
 * The handle's own message is the caller's to clear. */
uint64_t align__error_mark(void);
void align__error_recovered(uint64_t mark);
/* Clears eb (at the start of a call that may fail). */
void align__error_clear(align__errbuf *eb);
/* eb's message, "" when none; never NULL (eb may be NULL). */
const char *align__errmsg(const align__errbuf *eb);

/* ---- params structs (docs/conventions.md, "Params structs") ----------------------------------------
 * Copies a caller's size-prefixed struct into dst (already filled with
 * defaults, full size dst_size). struct_size == 0 -> ALIGN_EINVAL; smaller
 * -> prefix copied; larger -> the unknown tail must be zero (ALIGN_EVERSION). */
int align__params_copy(void *dst, size_t dst_size, const void *src, const char *what);
/* For out-structs (stats, config): checks out->struct_size, returns the
 * number of bytes the caller can take (min of theirs and ours), or 0 on an
 * invalid size. */
size_t align__out_size(const void *out, size_t our_size);
/* Implements align_X_default_params(out, struct_size): writes the first
 * struct_size bytes of *defaults (our_size bytes) to out, zero beyond ours,
 * and sets out->struct_size = struct_size. */
int align__params_defaults(void *out, size_t struct_size, const void *defaults, size_t our_size,
                           const char *what);

/* ---- allocation ----------------------------------------------------------
 * All library memory goes through these (so tests can count live blocks).
 * align__alloc_aligned returns 64-byte aligned memory, freed by align__free_aligned. */
void *align__malloc(size_t n);
void *align__calloc(size_t count, size_t size);
void *align__realloc(void *p, size_t n);
char *align__strdup(const char *s);
char *align__strndup(const char *s, size_t n);
void  align__free(void *p);
void *align__alloc_aligned(size_t n);          /* zeroed */
void  align__free_aligned(void *p);

/* ---- logging ------------------------------------------------------------- */
void align__log(int level, const char *fmt, ...) ALIGN__PRINTF(2, 3);

/* ---- RNG: Philox4x32-10 (Salmon et al. 2011), counter based ---------------
 * The whole state is (seed, stream, counter): save it by copying the struct,
 * restore by copying it back. Draw i of a stream is a pure function of
 * (seed, stream, i), so any draw is reproducible without replaying others. */
typedef struct align__rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter;   /* 32-bit draws consumed */
} align__rng;

void     align__rng_init(align__rng *r, uint64_t seed, uint64_t stream);
uint32_t align__rng_u32(align__rng *r);
/* uniform in [0, 1) with 24 random bits */
float    align__rng_uniform(align__rng *r);
/* uniform integer in [0, n) (n > 0), unbiased */
uint32_t align__rng_below(align__rng *r, uint32_t n);
/* standard normal (Box–Muller on two uniforms) */
float    align__rng_normal(align__rng *r);
/* out[i] = mean + std * N(0,1), fast path for large initialisations */
void     align__rng_fill_normal(align__rng *r, float *out, size_t n, float mean, float std);
/* The 4 words of Philox block `ctr` under key derived from (seed, stream). */
void     align__philox4x32(uint64_t seed, uint64_t stream, uint64_t ctr, uint32_t out[4]);

/* ---- threads --------------------------------------------------------------
 * A persistent pool (passive waiting, so it never fights the BLAS's threads).
 * align__parallel_for splits [0, n) into align__threads() contiguous chunks
 * whose bounds depend only on n and the thread count: a loop whose chunk
 * results are combined in chunk order is bitwise reproducible. fn runs on the
 * caller for chunk 0. Not re-entrant (do not call from inside fn). */
int  align__threads(void);
typedef void (*align__range_fn)(void *ctx, int64_t begin, int64_t end, int chunk);
void align__parallel_for(int64_t n, align__range_fn fn, void *ctx);
/* Called by align_threads_set so the BLAS follows the same setting
 * (implemented in the nn layer; a weak no-op default lives in core). */
void align__blas_set_threads(int n);

/* ---- time ------------------------------------------------------------------ */
double align__now_sec(void);   /* monotonic */

/* ---- files ----------------------------------------------------------------- */
/* Writes buf to path atomically: path.tmp.<pid>, fsync, rename, fsync dir.
 * Several buffers (iov-like) may be given. */
typedef struct align__chunk { const void *data; size_t len; } align__chunk;
int align__write_atomic(align__errbuf *eb, const char *path, const align__chunk *chunks, int n_chunks);
/* Reads a whole file (NUL-terminated beyond len). ALIGN_ENOENT / ALIGN_EIO. */
int align__read_file(align__errbuf *eb, const char *path, char **data_out, size_t *len_out);

#define ALIGN__MIN(a, b) ((a) < (b) ? (a) : (b))
#define ALIGN__MAX(a, b) ((a) > (b) ? (a) : (b))

#endif /* ALIGN_CORE_H */
