/*
 * alignctl — the command-line face of libalign.
 *
 * Built only on the public API (include/align.h), so it is also the proof
 * that the API is enough. One file on purpose: the Makefile builds one
 * program per examples/NAME.c file. Sections:
 *   1. utilities: errors, option parsing, files, time
 *   2. JSON: a small reader (tree) and writer helpers
 *   3. shared loading: tokenizer, model, dataset, BLAS set-up and re-exec
 *   4. subcommands: init, info, tokenize, generate, sft, eval, plot
 *   5. main
 * Exit status: 0 ok, 1 runtime error, 2 usage error, 130 interrupted
 * (SIGINT; 143 for SIGTERM) with a checkpoint saved. Docs: docs/cli/.
 */
#include "align.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/* ======================================================================== */
/* 1. utilities                                                             */
/* ======================================================================== */

static char g_cmd[64] = "alignctl"; /* "alignctl sft": prefix of every message */

static void msg(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* A usage error: says what is wrong and where help is; exits 2. Only called
 * while parsing arguments, before anything is allocated. */
static void usage_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", g_cmd);
    exit(EXIT_USAGE);
}

/* A failed library call: "<what>: <detail> (ALIGN_EXXX)". Returns 1. */
static int rt_fail(int rc, const char *detail, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (detail && *detail)
        fprintf(stderr, ": %s", detail);
    else
        fprintf(stderr, ": %s", align_strerror(rc));
    fprintf(stderr, " (%s)\n", align_err_name(rc));
    return EXIT_RUNTIME;
}

static int isalnum_ascii(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* Matches option `name` at argv[*i], as "--name VALUE" or "--name=VALUE".
 * Returns 1 and sets *v, or 0 if argv[*i] is another option. */
static int opt(int argc, char **argv, int *i, const char *name, const char **v)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *v = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        usage_die("option %s needs a value", name);
    *i += 1;
    *v = argv[*i];
    return 1;
}

/* A flag without value; "--flag=..." is an error. */
static int flag(const char *a, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=')
        usage_die("option %s takes no value", name);
    return a[n] == '\0';
}

static void unknown_arg(const char *a)
{
    if (a[0] == '-' && a[1] != '\0')
        usage_die("unknown option '%s'", a);
    usage_die("unexpected argument '%s'", a);
}

static long long parse_ll(const char *name, const char *v, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0' || x < lo || x > hi)
        usage_die("%s expects an integer in [%lld, %lld], got '%s'", name, lo, hi, v);
    return x;
}

static int parse_int(const char *name, const char *v, long long lo, long long hi)
{
    return (int)parse_ll(name, v, lo, hi);
}

static uint64_t parse_u64(const char *name, const char *v)
{
    char *end;
    errno = 0;
    if (v[0] == '-')
        usage_die("%s expects a non-negative integer, got '%s'", name, v);
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end != '\0')
        usage_die("%s expects a non-negative integer, got '%s'", name, v);
    return (uint64_t)x;
}

static float parse_float(const char *name, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end != '\0' || !isfinite(x) || x < lo || x > hi)
        usage_die("%s expects a number in [%g, %g], got '%s'", name, lo, hi, v);
    return (float)x;
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Reads a whole stream; NUL-terminated. Returns 0 or -1 (errno set). */
static int read_stream(FILE *f, char **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    if (!b)
        return -1;
    for (;;) {
        if (cap - n < 2) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return -1;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                free(b);
                return -1;
            }
            break;
        }
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return 0;
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int rc = read_stream(f, out, len);
    int e = errno;
    fclose(f);
    errno = e;
    return rc;
}

/* mkdir -p */
static int mkdirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return -1;
            buf[i] = c;
        }
    }
    return is_dir(path) ? 0 : -1;
}

static void fmt_duration(char *buf, size_t cap, double s)
{
    if (!isfinite(s) || s < 0)
        s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void fmt_bytes(char *buf, size_t cap, double b)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

/* ======================================================================== */
/* 2. JSON                                                                  */
/* ======================================================================== */

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct jv {
    int t;
    int b;
    double num;
    char *s;          /* J_STR: bytes (UTF-8), NUL-terminated */
    size_t slen;
    struct jv *a;     /* J_ARR items / J_OBJ values */
    char **k;         /* J_OBJ keys */
    size_t n, cap;
} jv;

typedef struct {
    const char *p, *start, *end;
    char err[160];
    int depth;
} jparser;

static void jv_free(jv *v)
{
    if (!v)
        return;
    free(v->s);
    for (size_t i = 0; i < v->n; i++) {
        jv_free(&v->a[i]);
        if (v->k)
            free(v->k[i]);
    }
    free(v->a);
    free(v->k);
    memset(v, 0, sizeof *v);
}

static const jv *jv_get(const jv *o, const char *key)
{
    if (!o || o->t != J_OBJ)
        return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->k[i], key) == 0)
            return &o->a[i];
    return NULL;
}

static int jerr(jparser *P, const char *what)
{
    if (!P->err[0])
        snprintf(P->err, sizeof P->err, "%s at byte %ld", what, (long)(P->p - P->start) + 1);
    return -1;
}

static void jws(jparser *P)
{
    while (P->p < P->end && (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r'))
        P->p++;
}

typedef struct {
    char *b;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *s, const char *d, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        size_t c = s->cap ? s->cap : 32;
        while (c < s->n + n + 1)
            c *= 2;
        char *nb = realloc(s->b, c);
        if (!nb)
            return -1;
        s->b = nb;
        s->cap = c;
    }
    memcpy(s->b + s->n, d, n);
    s->n += n;
    s->b[s->n] = '\0';
    return 0;
}

static size_t utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int jhex4(jparser *P, uint32_t *out)
{
    uint32_t v = 0;
    if (P->end - P->p < 4)
        return jerr(P, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        char c = P->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return jerr(P, "bad \\u escape");
    }
    P->p += 4;
    *out = v;
    return 0;
}

static int jstring(jparser *P, char **out, size_t *len)
{
    sbuf s = {0};
    P->p++; /* opening quote */
    if (sb_put(&s, "", 0))
        return jerr(P, "out of memory");
    for (;;) {
        if (P->p >= P->end) {
            free(s.b);
            return jerr(P, "unterminated string");
        }
        unsigned char c = (unsigned char)*P->p++;
        if (c == '"')
            break;
        if (c < 0x20) {
            free(s.b);
            return jerr(P, "control character in a string");
        }
        char tmp[4];
        size_t tn = 1;
        tmp[0] = (char)c;
        if (c == '\\') {
            if (P->p >= P->end) {
                free(s.b);
                return jerr(P, "unterminated string");
            }
            char e = *P->p++;
            switch (e) {
            case '"': tmp[0] = '"'; break;
            case '\\': tmp[0] = '\\'; break;
            case '/': tmp[0] = '/'; break;
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u': {
                uint32_t cp;
                if (jhex4(P, &cp)) {
                    free(s.b);
                    return -1;
                }
                if (cp >= 0xD800 && cp < 0xDC00 && P->end - P->p >= 6 && P->p[0] == '\\' &&
                    P->p[1] == 'u') {
                    const char *save = P->p;
                    uint32_t lo;
                    P->p += 2;
                    if (jhex4(P, &lo)) {
                        free(s.b);
                        return -1;
                    }
                    if (lo >= 0xDC00 && lo < 0xE000)
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    else
                        P->p = save;
                }
                if (cp >= 0xD800 && cp < 0xE000)
                    cp = 0xFFFD; /* lone surrogate */
                tn = utf8_put(tmp, cp);
                break;
            }
            default:
                free(s.b);
                P->p--;
                return jerr(P, "bad escape in a string");
            }
        }
        if (sb_put(&s, tmp, tn)) {
            free(s.b);
            return jerr(P, "out of memory");
        }
    }
    *out = s.b;
    *len = s.n;
    return 0;
}

static int jnumber(jparser *P, double *out)
{
    const char *s = P->p, *q = P->p;
    if (q < P->end && *q == '-')
        q++;
    if (q < P->end && *q == '0')
        q++;
    else if (q < P->end && *q >= '1' && *q <= '9')
        while (q < P->end && *q >= '0' && *q <= '9')
            q++;
    else
        return jerr(P, "bad number");
    if (q < P->end && *q == '.') {
        q++;
        if (q >= P->end || *q < '0' || *q > '9')
            return jerr(P, "bad number");
        while (q < P->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < P->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < P->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= P->end || *q < '0' || *q > '9')
            return jerr(P, "bad number");
        while (q < P->end && *q >= '0' && *q <= '9')
            q++;
    }
    char buf[512];
    size_t n = (size_t)(q - s);
    if (n >= sizeof buf)
        return jerr(P, "number too long");
    memcpy(buf, s, n);
    buf[n] = '\0';
    *out = strtod(buf, NULL);
    P->p = q;
    return 0;
}

static int jvalue(jparser *P, jv *v);

static int jpush(jparser *P, jv *c, char *key)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 8;
        jv *na = realloc(c->a, nc * sizeof *na);
        if (!na)
            return jerr(P, "out of memory");
        c->a = na;
        if (c->t == J_OBJ) {
            char **nk = realloc(c->k, nc * sizeof *nk);
            if (!nk)
                return jerr(P, "out of memory");
            c->k = nk;
        }
        c->cap = nc;
    }
    memset(&c->a[c->n], 0, sizeof c->a[c->n]);
    if (c->t == J_OBJ)
        c->k[c->n] = key;
    c->n++;
    return 0;
}

static int jvalue(jparser *P, jv *v)
{
    memset(v, 0, sizeof *v);
    jws(P);
    if (P->p >= P->end)
        return jerr(P, "unexpected end of input");
    if (++P->depth > 200)
        return jerr(P, "nesting too deep");
    int rc = 0;
    char c = *P->p;
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        v->t = c == '{' ? J_OBJ : J_ARR;
        P->p++;
        jws(P);
        if (P->p < P->end && *P->p == close) {
            P->p++;
        } else {
            for (;;) {
                char *key = NULL;
                jws(P);
                if (v->t == J_OBJ) {
                    size_t kl;
                    if (P->p >= P->end || *P->p != '"') {
                        rc = jerr(P, "expected a string key");
                        break;
                    }
                    if ((rc = jstring(P, &key, &kl)))
                        break;
                    jws(P);
                    if (P->p >= P->end || *P->p != ':') {
                        free(key);
                        rc = jerr(P, "expected ':'");
                        break;
                    }
                    P->p++;
                }
                if ((rc = jpush(P, v, key))) {
                    free(key);
                    break;
                }
                if ((rc = jvalue(P, &v->a[v->n - 1])))
                    break;
                jws(P);
                if (P->p < P->end && *P->p == ',') {
                    P->p++;
                    continue;
                }
                if (P->p < P->end && *P->p == close) {
                    P->p++;
                    break;
                }
                rc = jerr(P, v->t == J_OBJ ? "expected ',' or '}'" : "expected ',' or ']'");
                break;
            }
        }
    } else if (c == '"') {
        v->t = J_STR;
        rc = jstring(P, &v->s, &v->slen);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        v->t = J_NUM;
        rc = jnumber(P, &v->num);
    } else if (P->end - P->p >= 4 && memcmp(P->p, "true", 4) == 0) {
        v->t = J_BOOL;
        v->b = 1;
        P->p += 4;
    } else if (P->end - P->p >= 5 && memcmp(P->p, "false", 5) == 0) {
        v->t = J_BOOL;
        P->p += 5;
    } else if (P->end - P->p >= 4 && memcmp(P->p, "null", 4) == 0) {
        v->t = J_NULL;
        P->p += 4;
    } else {
        rc = jerr(P, "unexpected character");
    }
    P->depth--;
    return rc;
}

/* Parses text[0..len) as one JSON value. On failure err holds the reason. */
static int json_parse(const char *text, size_t len, jv *out, char *err, size_t errcap)
{
    jparser P = {text, text, text + len, {0}, 0};
    int rc = jvalue(&P, out);
    if (rc == 0) {
        jws(&P);
        if (P.p != P.end)
            rc = jerr(&P, "trailing characters after the value");
    }
    if (rc) {
        jv_free(out);
        snprintf(err, errcap, "%s", P.err);
    }
    return rc;
}

/* Writes s[0..n) as a JSON string; invalid UTF-8 becomes U+FFFD. */
static void json_str(FILE *f, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            i++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            case '\b': fputs("\\b", f); break;
            case '\f': fputs("\\f", f); break;
            default: fprintf(f, "\\u%04x", c);
            }
            i++;
        } else if (c < 0x80) {
            fputc(c, f);
            i++;
        } else {
            size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
            int ok = len > 0 && c < 0xF5 && i + len <= n;
            uint32_t cp = len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
            for (size_t j = 1; ok && j < len; j++) {
                if ((u[i + j] & 0xC0) != 0x80)
                    ok = 0;
                cp = (cp << 6) | (u[i + j] & 0x3Fu);
            }
            if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) ||
                       (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))))
                ok = 0;
            if (ok) {
                fwrite(u + i, 1, len, f);
                i += len;
            } else {
                fputs("\\ufffd", f);
                i++;
            }
        }
    }
    fputc('"', f);
}

static void json_num(FILE *f, double x)
{
    if (isfinite(x))
        fprintf(f, "%.7g", x);
    else
        fputs("null", f);
}

/* ======================================================================== */
/* 3. shared loading, logging, BLAS                                         */
/* ======================================================================== */

static int g_bar_drawn;        /* a progress bar occupies the current line */
static int g_log_capture;      /* buffer library log lines instead of printing */
static char g_log_held[2048];

static void bar_clear(void)
{
    if (g_bar_drawn) {
        fputs("\r\033[K", stderr);
        g_bar_drawn = 0;
    }
}

static void on_log(int level, const char *message, void *user_data)
{
    (void)user_data;
    const char *lv = level == ALIGN_LOG_ERROR ? "error"
                     : level == ALIGN_LOG_WARN ? "warning"
                     : level == ALIGN_LOG_INFO ? "info" : "debug";
    if (g_log_capture) {
        size_t n = strlen(g_log_held);
        snprintf(g_log_held + n, sizeof g_log_held - n, "%s: libalign %s: %s\n", g_cmd, lv,
                 message);
        return;
    }
    bar_clear();
    fprintf(stderr, "%s: libalign %s: %s\n", g_cmd, lv, message);
}

/* Name of the kernel in "OpenBLAS 0.3.21 (Prescott kernels)", or "". */
static void blas_kernel(const char *info, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = strchr(info, '(');
    if (!p)
        return;
    p++;
    size_t n = strcspn(p, " )");
    if (n < cap) {
        memcpy(out, p, n);
        out[n] = '\0';
    }
}

static int is_generic_kernel(const char *k)
{
    static const char *const generic[] = {"Prescott", "Core2", "Penryn", "Dunnington",
                                          "Nehalem", "Atom", "Katmai", "Coppermine",
                                          "Northwood", "Banias", "generic", NULL};
    for (int i = 0; generic[i]; i++)
        if (strcasecmp(k, generic[i]) == 0)
            return 1;
    return 0;
}

static int cpu_has_avx512f(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
#else
    return 0;
#endif
}

/* Before heavy work: checks which BLAS kernels run. Debian's OpenBLAS picks
 * its generic "Prescott" kernels on CPUs it does not know (docs/bench.md); the
 * choice is made when the library loads, so the remedy is to run again with
 * OPENBLAS_CORETYPE=SkylakeX set. Done once (the child has the variable set),
 * unless ALIGNCTL_NO_REEXEC is set. Prints the banner otherwise. */
static void blas_setup(char **argv, int threads)
{
    g_log_capture = 1;
    g_log_held[0] = '\0';
    const char *info = align_blas_info();
    g_log_capture = 0;
    char kernel[64];
    blas_kernel(info, kernel, sizeof kernel);
    if (!getenv("OPENBLAS_CORETYPE") && !getenv("ALIGNCTL_NO_REEXEC") &&
        strstr(info, "OpenBLAS") && is_generic_kernel(kernel) && cpu_has_avx512f()) {
        msg("OpenBLAS chose its generic '%s' kernels on this AVX-512 CPU; re-running with "
            "OPENBLAS_CORETYPE=SkylakeX (set ALIGNCTL_NO_REEXEC=1 to prevent this)",
            kernel);
        fflush(NULL);
        if (setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) == 0) {
            execv("/proc/self/exe", argv);
            msg("could not re-run (%s); continuing with the slow kernels", strerror(errno));
        }
    }
    if (g_log_held[0]) {
        fputs(g_log_held, stderr);
        if (strstr(g_log_held, "OPENBLAS_CORETYPE"))
            msg("hint: export OPENBLAS_CORETYPE=SkylakeX (or the value named above) and run "
                "again; alignctl does this itself unless ALIGNCTL_NO_REEXEC is set");
    }
    if (threads > 0) {
        int rc = align_threads_set(threads);
        if (rc < 0)
            msg("could not set %d threads (%s)", threads, align_err_name(rc));
    }
    msg("libalign %s, BLAS: %s, threads: %d", align_version_string(), info,
        align_threads_get());
}

/* For commands that do no heavy math (init, info): consume the library's
 * one-time slow-kernel warning silently. */
static void blas_quiet(void)
{
    g_log_capture = 1;
    (void)align_blas_info();
    g_log_capture = 0;
    g_log_held[0] = '\0';
}

/* Before any work: the named input files exist (clear message, exit 1). */
static int require_inputs(const char *model, const char *tok, const char *data,
                          const char *eval)
{
    if (model && !file_exists(model)) {
        msg("model '%s' not found (create one with 'alignctl init')", model);
        return EXIT_RUNTIME;
    }
    if (tok && strcmp(tok, "bytes") != 0 && !file_exists(tok)) {
        msg("tokenizer '%s' not found: give a tokenizer.json file, a folder with encoder.json "
            "and vocab.bpe, or 'bytes'",
            tok);
        return EXIT_RUNTIME;
    }
    if (data && !file_exists(data)) {
        msg("data file '%s' not found", data);
        return EXIT_RUNTIME;
    }
    if (eval && !file_exists(eval)) {
        msg("evaluation data file '%s' not found", eval);
        return EXIT_RUNTIME;
    }
    return 0;
}

/* spec: "bytes", a tokenizer.json, or a folder with tokenizer.json or
 * encoder.json + vocab.bpe. */
static int load_tokenizer(const char *spec, align_tokenizer **out)
{
    *out = NULL;
    int rc;
    if (strcmp(spec, "bytes") == 0) {
        rc = align_tokenizer_bytes(out);
        return rc < 0 ? rt_fail(rc, align_last_errmsg(), "byte tokenizer") : 0;
    }
    if (!file_exists(spec)) {
        msg("tokenizer '%s' not found: give a tokenizer.json file, a folder with encoder.json "
            "and vocab.bpe, or 'bytes'",
            spec);
        return EXIT_RUNTIME;
    }
    if (is_dir(spec)) {
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/tokenizer.json", spec);
        if (file_exists(a)) {
            rc = align_tokenizer_load(out, a);
        } else {
            snprintf(a, sizeof a, "%s/encoder.json", spec);
            snprintf(b, sizeof b, "%s/vocab.bpe", spec);
            if (!file_exists(a) || !file_exists(b)) {
                msg("folder '%s' has neither tokenizer.json nor encoder.json + vocab.bpe", spec);
                return EXIT_RUNTIME;
            }
            rc = align_tokenizer_load_gpt2(out, a, b);
        }
    } else {
        rc = align_tokenizer_load(out, spec);
    }
    return rc < 0 ? rt_fail(rc, align_last_errmsg(), "cannot load tokenizer '%s'", spec) : 0;
}

static int load_model(const char *path, align_model **out)
{
    *out = NULL;
    if (!file_exists(path)) {
        msg("model '%s' not found (create one with 'alignctl init')", path);
        return EXIT_RUNTIME;
    }
    int rc = align_model_load(out, path, NULL);
    return rc < 0 ? rt_fail(rc, align_last_errmsg(), "cannot load model '%s'", path) : 0;
}

static int load_dataset(const char *path, uint32_t flags, align_dataset **out)
{
    *out = NULL;
    if (!file_exists(path)) {
        msg("data file '%s' not found", path);
        return EXIT_RUNTIME;
    }
    int rc = align_dataset_create(out);
    if (rc < 0)
        return rt_fail(rc, align_last_errmsg(), "cannot create a dataset");
    rc = align_dataset_load_jsonl(*out, path, flags);
    if (rc < 0) {
        int r = rt_fail(rc, align_dataset_errmsg(*out), "cannot load data '%s'", path);
        msg("each line must be one JSON object such as {\"prompt\": ..., \"completion\": ...} "
            "(see docs/datasets.md); --lenient skips bad lines");
        align_dataset_free(*out);
        *out = NULL;
        return r;
    }
    if (align_dataset_skipped(*out) > 0)
        msg("warning: skipped %lld bad lines of '%s'", (long long)align_dataset_skipped(*out),
            path);
    if (align_dataset_size(*out) == 0) {
        msg("data file '%s' has no records", path);
        align_dataset_free(*out);
        *out = NULL;
        return EXIT_RUNTIME;
    }
    return 0;
}

/* The tokenizer's ids must fit the model's vocabulary. */
static int check_vocab(const align_model *m, const align_tokenizer *t, const char *tok_spec)
{
    align_model_params c;
    ALIGN_MODEL_DEFAULT_PARAMS(&c);
    int rc = align_model_config(m, &c);
    if (rc < 0)
        return rt_fail(rc, align_model_errmsg(m), "cannot read the model's configuration");
    int32_t tv = align_tokenizer_vocab_size(t);
    if (tv > c.vocab_size) {
        msg("tokenizer '%s' has %d ids but the model's vocabulary has only %d: use the "
            "tokenizer the model was made for (or init a model with --vocab %d)",
            tok_spec, (int)tv, (int)c.vocab_size, (int)tv);
        return EXIT_RUNTIME;
    }
    return 0;
}

/* ======================================================================== */
/* 4a. init                                                                 */
/* ======================================================================== */

static const char *const HELP_INIT =
    "usage: alignctl init --out MODEL.safetensors [--preset NAME] [options]\n"
    "\n"
    "Creates a randomly initialised GPT-2-style model and saves it as safetensors.\n"
    "\n"
    "  --preset NAME     nano (L4 H4 C128 V512 T256), tiny (L4 H4 C256 V50304 T1024),\n"
    "                    gpt2-124m (L12 H12 C768 V50257 T1024); options below override it\n"
    "  --arch gpt2       architecture (only gpt2)\n"
    "  --layers L        transformer blocks\n"
    "  --heads H         attention heads\n"
    "  --width C         embedding width, divisible by --heads\n"
    "  --vocab V         vocabulary size (257 for the byte tokenizer)\n"
    "  --context T       maximum sequence length (position table)\n"
    "  --seed S          initialisation seed (default 1234)\n"
    "  --scalar-head     add a scalar head (reward / value models)\n"
    "  --force           overwrite MODEL if it exists\n"
    "Without --preset the library defaults apply (L4 H4 C128 V50257 T1024).\n";

static int cmd_init(int argc, char **argv)
{
    const char *out = NULL, *v;
    const char *preset = NULL;
    int layers = 0, heads = 0, width = 0, vocab = 0, context = 0, force = 0, scalar = 0;
    uint64_t seed = 0;
    int have_seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_INIT, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--out", &v)) {
            out = v;
        } else if (opt(argc, argv, &i, "--preset", &v)) {
            preset = v;
        } else if (opt(argc, argv, &i, "--arch", &v)) {
            if (strcmp(v, "gpt2") != 0)
                usage_die("unknown architecture '%s' (only 'gpt2' is supported)", v);
        } else if (opt(argc, argv, &i, "--layers", &v)) {
            layers = parse_int("--layers", v, 1, 256);
        } else if (opt(argc, argv, &i, "--heads", &v)) {
            heads = parse_int("--heads", v, 1, 256);
        } else if (opt(argc, argv, &i, "--width", &v)) {
            width = parse_int("--width", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--vocab", &v)) {
            vocab = parse_int("--vocab", v, 1, 1 << 24);
        } else if (opt(argc, argv, &i, "--context", &v)) {
            context = parse_int("--context", v, 1, 1 << 20);
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            seed = parse_u64("--seed", v);
            have_seed = 1;
        } else if (flag(a, "--scalar-head")) {
            scalar = 1;
        } else if (flag(a, "--force")) {
            force = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!out)
        usage_die("--out MODEL.safetensors is required");
    align_model_params p;
    ALIGN_MODEL_DEFAULT_PARAMS(&p);
    p.arch = ALIGN_ARCH_GPT2;
    if (preset) {
        if (strcmp(preset, "nano") == 0) {
            p.n_layer = 4, p.n_head = 4, p.n_embd = 128, p.vocab_size = 512, p.max_seq_len = 256;
        } else if (strcmp(preset, "tiny") == 0) {
            p.n_layer = 4, p.n_head = 4, p.n_embd = 256, p.vocab_size = 50304;
            p.max_seq_len = 1024;
        } else if (strcmp(preset, "gpt2-124m") == 0) {
            p.n_layer = 12, p.n_head = 12, p.n_embd = 768, p.vocab_size = 50257;
            p.max_seq_len = 1024;
        } else {
            usage_die("unknown preset '%s' (choose nano, tiny or gpt2-124m)", preset);
        }
    }
    if (layers) p.n_layer = layers;
    if (heads) p.n_head = heads;
    if (width) p.n_embd = width;
    if (vocab) p.vocab_size = vocab;
    if (context) p.max_seq_len = context;
    if (have_seed) p.seed = seed;
    if (scalar) p.flags |= ALIGN_MODEL_SCALAR_HEAD;
    if (p.n_embd % p.n_head != 0)
        usage_die("--width %d is not divisible by --heads %d", (int)p.n_embd, (int)p.n_head);
    if (!force && file_exists(out)) {
        msg("'%s' exists; use --force to overwrite it", out);
        return EXIT_RUNTIME;
    }
    blas_quiet();
    align_model *m = NULL;
    int rc = align_model_create(&m, &p);
    if (rc < 0)
        return rt_fail(rc, align_last_errmsg(), "cannot create the model");
    rc = align_model_save(m, out);
    if (rc < 0) {
        int r = rt_fail(rc, align_model_errmsg(m), "cannot save the model to '%s'", out);
        align_model_free(m);
        return r;
    }
    printf("initialised gpt2: layers %d, heads %d, width %d, vocab %d, context %d%s\n"
           "parameters: %lld\nsaved: %s\n",
           (int)p.n_layer, (int)p.n_head, (int)p.n_embd, (int)p.vocab_size, (int)p.max_seq_len,
           scalar ? ", scalar head" : "", (long long)align_model_num_params(m), out);
    align_model_free(m);
    return EXIT_OK;
}

/* ======================================================================== */
/* 4b. info                                                                 */
/* ======================================================================== */

static const char *const HELP_INFO =
    "usage: alignctl info MODEL.safetensors [--json]\n"
    "\n"
    "Shows a model file: architecture, parameter count, the tensors with their\n"
    "dtypes and shapes (read from the safetensors header), metadata, file size.\n"
    "\n"
    "  --json   one JSON object instead of text\n";

static int dtype_size(const char *dt)
{
    static const struct { const char *n; int s; } t[] = {
        {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
        {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
        {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(dt, t[i].n) == 0)
            return t[i].s;
    return 0;
}

/* Reads and checks the safetensors header of path into *hdr. */
static int read_safetensors_header(const char *path, jv *hdr, long long *file_size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        msg("cannot open '%s': %s", path, strerror(errno));
        return EXIT_RUNTIME;
    }
    struct stat st;
    unsigned char len8[8];
    int r = EXIT_RUNTIME;
    char *json = NULL;
    if (fstat(fileno(f), &st) != 0 || fread(len8, 1, 8, f) != 8) {
        msg("'%s' is not a safetensors file: shorter than its 8-byte header length", path);
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | len8[i];
    *file_size = (long long)st.st_size;
    if (n < 2 || n > (uint64_t)st.st_size - 8 || n > (100u << 20)) {
        msg("'%s' is not a safetensors file: header length %llu does not fit the file (%lld "
            "bytes)",
            path, (unsigned long long)n, (long long)st.st_size);
        goto done;
    }
    json = malloc(n + 1);
    if (!json || fread(json, 1, n, f) != n) {
        msg("cannot read the header of '%s'", path);
        goto done;
    }
    json[n] = '\0';
    char err[200];
    if (json_parse(json, n, hdr, err, sizeof err) != 0) {
        msg("'%s' is corrupt: its safetensors header is not valid JSON (%s)", path, err);
        goto done;
    }
    if (hdr->t != J_OBJ) {
        msg("'%s' is corrupt: its safetensors header is not a JSON object", path);
        goto bad;
    }
    uint64_t data = (uint64_t)st.st_size - 8 - n;
    for (size_t i = 0; i < hdr->n; i++) {
        const jv *t = &hdr->a[i];
        if (strcmp(hdr->k[i], "__metadata__") == 0)
            continue;
        const jv *dt = jv_get(t, "dtype"), *sh = jv_get(t, "shape"),
                 *off = jv_get(t, "data_offsets");
        if (!dt || dt->t != J_STR || !sh || sh->t != J_ARR || !off || off->t != J_ARR ||
            off->n != 2 || off->a[0].t != J_NUM || off->a[1].t != J_NUM) {
            msg("'%s' is corrupt: tensor '%s' lacks dtype, shape or data_offsets", path,
                hdr->k[i]);
            goto bad;
        }
        double elems = 1;
        for (size_t d = 0; d < sh->n; d++) {
            if (sh->a[d].t != J_NUM || sh->a[d].num < 0) {
                msg("'%s' is corrupt: tensor '%s' has a bad shape", path, hdr->k[i]);
                goto bad;
            }
            elems *= sh->a[d].num;
        }
        double b = off->a[0].num, e = off->a[1].num;
        int ds = dtype_size(dt->s);
        if (b < 0 || e < b || e > (double)data || (ds && (e - b) != elems * ds)) {
            msg("'%s' is corrupt: tensor '%s' has data offsets [%.0f, %.0f] outside the %llu "
                "data bytes or not matching its shape",
                path, hdr->k[i], b, e, (unsigned long long)data);
            goto bad;
        }
    }
    r = 0;
    goto done;
bad:
    jv_free(hdr);
done:
    free(json);
    fclose(f);
    return r;
}

static int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int as_json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_INFO, stdout);
            return EXIT_OK;
        } else if (flag(a, "--json")) {
            as_json = 1;
        } else if (a[0] == '-' && a[1]) {
            unknown_arg(a);
        } else if (!path) {
            path = a;
        } else {
            usage_die("one model file at a time (got '%s' and '%s')", path, a);
        }
    }
    if (!path)
        usage_die("which model? usage: alignctl info MODEL.safetensors");
    if (!file_exists(path)) {
        msg("model '%s' not found", path);
        return EXIT_RUNTIME;
    }
    jv hdr;
    long long fsize = 0;
    int r = read_safetensors_header(path, &hdr, &fsize);
    if (r)
        return r;
    blas_quiet();
    align_model *m = NULL;
    r = load_model(path, &m);
    if (r) {
        jv_free(&hdr);
        return r;
    }
    align_model_params c;
    ALIGN_MODEL_DEFAULT_PARAMS(&c);
    int rc = align_model_config(m, &c);
    if (rc < 0) {
        r = rt_fail(rc, align_model_errmsg(m), "cannot read the configuration");
        goto out;
    }
    long long nparams = (long long)align_model_num_params(m);
    int scalar = (c.flags & ALIGN_MODEL_SCALAR_HEAD) != 0;
    const jv *meta = jv_get(&hdr, "__metadata__");
    size_t ntensors = hdr.n - (meta ? 1 : 0);
    if (as_json) {
        printf("{\"file\":");
        json_str(stdout, path, strlen(path));
        printf(",\"bytes\":%lld,\"arch\":\"gpt2\",\"n_layer\":%d,\"n_head\":%d,\"n_embd\":%d,"
               "\"vocab_size\":%d,\"max_seq_len\":%d,\"scalar_head\":%s,\"parameters\":%lld,"
               "\"tensors\":[",
               fsize, (int)c.n_layer, (int)c.n_head, (int)c.n_embd, (int)c.vocab_size,
               (int)c.max_seq_len, scalar ? "true" : "false", nparams);
        int first = 1;
        for (size_t i = 0; i < hdr.n; i++) {
            if (strcmp(hdr.k[i], "__metadata__") == 0)
                continue;
            const jv *t = &hdr.a[i], *sh = jv_get(t, "shape");
            printf("%s{\"name\":", first ? "" : ",");
            first = 0;
            json_str(stdout, hdr.k[i], strlen(hdr.k[i]));
            printf(",\"dtype\":");
            json_str(stdout, jv_get(t, "dtype")->s, jv_get(t, "dtype")->slen);
            printf(",\"shape\":[");
            for (size_t d = 0; d < sh->n; d++)
                printf("%s%.0f", d ? "," : "", sh->a[d].num);
            printf("]}");
        }
        printf("],\"metadata\":{");
        for (size_t i = 0; meta && meta->t == J_OBJ && i < meta->n; i++) {
            if (meta->a[i].t != J_STR)
                continue;
            printf("%s", i ? "," : "");
            json_str(stdout, meta->k[i], strlen(meta->k[i]));
            putchar(':');
            json_str(stdout, meta->a[i].s, meta->a[i].slen);
        }
        printf("}}\n");
    } else {
        char sz[32];
        fmt_bytes(sz, sizeof sz, (double)fsize);
        printf("file:         %s\n", path);
        printf("size:         %lld bytes (%s)\n", fsize, sz);
        printf("arch:         gpt2\n");
        printf("layers:       %d\nheads:        %d\nwidth:        %d\n", (int)c.n_layer,
               (int)c.n_head, (int)c.n_embd);
        printf("vocab:        %d\ncontext:      %d\nscalar head:  %s\n", (int)c.vocab_size,
               (int)c.max_seq_len, scalar ? "yes" : "no");
        printf("parameters:   %lld\n", nparams);
        for (size_t i = 0; meta && meta->t == J_OBJ && i < meta->n; i++)
            if (meta->a[i].t == J_STR)
                printf("metadata:     %s = %s\n", meta->k[i], meta->a[i].s);
        printf("tensors:      %zu\n", ntensors);
        size_t w = 4;
        for (size_t i = 0; i < hdr.n; i++)
            if (strlen(hdr.k[i]) > w)
                w = strlen(hdr.k[i]);
        for (size_t i = 0; i < hdr.n; i++) {
            if (strcmp(hdr.k[i], "__metadata__") == 0)
                continue;
            const jv *t = &hdr.a[i], *sh = jv_get(t, "shape");
            printf("  %-*s  %-5s [", (int)w, hdr.k[i], jv_get(t, "dtype")->s);
            for (size_t d = 0; d < sh->n; d++)
                printf("%s%.0f", d ? ", " : "", sh->a[d].num);
            printf("]\n");
        }
    }
out:
    align_model_free(m);
    jv_free(&hdr);
    return r;
}

/* ======================================================================== */
/* 4c. tokenize                                                             */
/* ======================================================================== */

static const char *const HELP_TOKENIZE =
    "usage: alignctl tokenize --tokenizer TOK [--special] [--text TEXT] < text\n"
    "       alignctl tokenize --tokenizer TOK --decode < ids.json\n"
    "\n"
    "Encodes the text on stdin (every byte, including a final newline) and prints\n"
    "the token ids as one JSON array; --decode reads such an array and writes the\n"
    "text (exact bytes, no newline added).\n"
    "\n"
    "  --tokenizer TOK   tokenizer.json, a folder with encoder.json + vocab.bpe, or\n"
    "                    'bytes' (256 byte symbols + end-of-text 256)\n"
    "  --special         recognise special tokens such as <|endoftext|> in the text\n"
    "  --text TEXT       encode TEXT instead of stdin\n"
    "  --decode          ids -> text\n";

static int cmd_tokenize(int argc, char **argv)
{
    const char *tok = NULL, *text = NULL, *v;
    int special = 0, decode = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_TOKENIZE, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--text", &v)) {
            text = v;
        } else if (flag(a, "--special")) {
            special = 1;
        } else if (flag(a, "--decode")) {
            decode = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (decode && text)
        usage_die("--text and --decode do not go together (--decode reads ids on stdin)");
    char *in = NULL;
    size_t inlen = 0;
    if (text) {
        inlen = strlen(text);
    } else if (read_stream(stdin, &in, &inlen) != 0) {
        msg("cannot read stdin: %s", strerror(errno));
        return EXIT_RUNTIME;
    }
    align_tokenizer *t = NULL;
    int r = load_tokenizer(tok, &t);
    int32_t *ids = NULL;
    char *outbuf = NULL;
    jv arr = {0};
    if (r)
        goto out;
    if (!decode) {
        const char *src = text ? text : in;
        uint32_t fl = special ? ALIGN_TOKENIZE_SPECIAL : 0;
        size_t n = 0;
        int rc = align_tokenize(t, src, inlen, fl, NULL, 0, &n);
        if (rc < 0 && rc != ALIGN_ERANGE) {
            r = rt_fail(rc, align_last_errmsg(), "cannot tokenize the input");
            goto out;
        }
        ids = malloc((n ? n : 1) * sizeof *ids);
        if (!ids) {
            r = rt_fail(ALIGN_ENOMEM, NULL, "tokenize");
            goto out;
        }
        rc = align_tokenize(t, src, inlen, fl, ids, n, &n);
        if (rc < 0) {
            r = rt_fail(rc, align_last_errmsg(), "cannot tokenize the input");
            goto out;
        }
        putchar('[');
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? "," : "", (int)ids[i]);
        printf("]\n");
    } else {
        char err[200] = "";
        if (json_parse(in, inlen, &arr, err, sizeof err) != 0 || arr.t != J_ARR) {
            msg("stdin is not a JSON array of token ids like [104,105]%s%s", err[0] ? ": " : "",
                err);
            r = EXIT_RUNTIME;
            goto out;
        }
        int32_t vocab = align_tokenizer_vocab_size(t);
        ids = malloc((arr.n ? arr.n : 1) * sizeof *ids);
        if (!ids) {
            r = rt_fail(ALIGN_ENOMEM, NULL, "decode");
            goto out;
        }
        for (size_t i = 0; i < arr.n; i++) {
            double x = arr.a[i].num;
            if (arr.a[i].t != J_NUM || x != floor(x) || x < 0 || x >= vocab) {
                msg("element %zu of the input is not a token id in [0, %d)", i, (int)vocab);
                r = EXIT_RUNTIME;
                goto out;
            }
            ids[i] = (int32_t)x;
        }
        size_t cap = arr.n * 4 + 64, len = 0;
        for (;;) {
            outbuf = malloc(cap);
            if (!outbuf) {
                r = rt_fail(ALIGN_ENOMEM, NULL, "decode");
                goto out;
            }
            int rc = align_detokenize(t, ids, arr.n, outbuf, cap, &len);
            if (rc == ALIGN_ERANGE && len + 1 > cap) {
                free(outbuf);
                outbuf = NULL;
                cap = len + 1;
                continue;
            }
            if (rc < 0) {
                r = rt_fail(rc, align_last_errmsg(), "cannot decode the ids");
                goto out;
            }
            break;
        }
        fwrite(outbuf, 1, len, stdout);
    }
    if (fflush(stdout) != 0) {
        msg("cannot write the output: %s", strerror(errno));
        r = EXIT_RUNTIME;
    }
out:
    jv_free(&arr);
    free(outbuf);
    free(ids);
    free(in);
    align_tokenizer_free(t);
    return r;
}

/* ======================================================================== */
/* 4d. generate                                                             */
/* ======================================================================== */

static const char *const HELP_GENERATE =
    "usage: alignctl generate --model M --tokenizer TOK (--prompt TEXT | --prompts FILE.jsonl)\n"
    "                         [options]\n"
    "\n"
    "Samples continuations with a KV cache and prints them (the text after the prompt).\n"
    "\n"
    "  --prompt TEXT         a prompt (repeatable)\n"
    "  --prompts FILE        JSONL with one {\"prompt\": ...} object per line\n"
    "  --max-new-tokens N    default 64\n"
    "  --temperature X       0 = greedy (default 1.0)\n"
    "  --top-k K             0 = off (default)\n"
    "  --top-p P             1.0 = off (default)\n"
    "  --seed S              sampling seed (default 1234)\n"
    "  --stop TEXT           stop when TEXT appears (repeatable)\n"
    "  --batch N             prompts per batch (default 8)\n"
    "  --threads N           CPU threads (default: all)\n"
    "  --json                one JSON object per prompt: prompt, text, tokens, logprobs,\n"
    "                        finish_reason (length, eot or stop)\n";

#define MAX_ARGV_LIST 256

static const char *finish_name(int f)
{
    return f == ALIGN_FINISH_EOT ? "eot" : f == ALIGN_FINISH_STOP ? "stop" : "length";
}

/* Prompts from a JSONL file, each {"prompt": "..."}; strings owned by *out. */
static int read_prompts(const char *path, char ***out, int32_t *n_out)
{
    char *buf;
    size_t len;
    *out = NULL;
    *n_out = 0;
    if (read_file(path, &buf, &len) != 0) {
        msg("cannot read prompts '%s': %s", path, strerror(errno));
        return EXIT_RUNTIME;
    }
    char **list = NULL;
    int32_t n = 0, cap = 0;
    int r = 0;
    long line = 0;
    for (char *p = buf; p < buf + len;) {
        char *e = memchr(p, '\n', (size_t)(buf + len - p));
        size_t l = e ? (size_t)(e - p) : (size_t)(buf + len - p);
        line++;
        size_t s = 0;
        while (s < l && (p[s] == ' ' || p[s] == '\t' || p[s] == '\r'))
            s++;
        if (s < l) {
            jv o;
            char err[200];
            const jv *pr;
            if (json_parse(p, l, &o, err, sizeof err) != 0) {
                msg("%s:%ld: not valid JSON (%s); each line must be {\"prompt\": \"...\"}", path,
                    line, err);
                r = EXIT_RUNTIME;
                break;
            }
            pr = jv_get(&o, "prompt");
            if (!pr || pr->t != J_STR) {
                msg("%s:%ld: no string field \"prompt\"", path, line);
                jv_free(&o);
                r = EXIT_RUNTIME;
                break;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                char **nl = realloc(list, (size_t)cap * sizeof *nl);
                if (!nl) {
                    jv_free(&o);
                    r = rt_fail(ALIGN_ENOMEM, NULL, "reading prompts");
                    break;
                }
                list = nl;
            }
            list[n++] = pr->s;
            ((jv *)pr)->s = NULL; /* take ownership */
            jv_free(&o);
        }
        if (!e)
            break;
        p = e + 1;
    }
    free(buf);
    if (!r && n == 0) {
        msg("'%s' has no prompts", path);
        r = EXIT_RUNTIME;
    }
    if (r) {
        for (int32_t i = 0; i < n; i++)
            free(list[i]);
        free(list);
        return r;
    }
    *out = list;
    *n_out = n;
    return 0;
}

static int cmd_generate(int argc, char **argv)
{
    const char *model_path = NULL, *tok = NULL, *prompts_file = NULL, *v;
    const char *prompt_args[MAX_ARGV_LIST], *stops[MAX_ARGV_LIST];
    int n_prompt_args = 0, n_stops = 0, as_json = 0, batch = 8, threads = 0;
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_GENERATE, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--prompts", &v)) {
            prompts_file = v;
        } else if (opt(argc, argv, &i, "--prompt", &v)) {
            if (n_prompt_args == MAX_ARGV_LIST)
                usage_die("too many --prompt (at most %d; use --prompts FILE)", MAX_ARGV_LIST);
            prompt_args[n_prompt_args++] = v;
        } else if (opt(argc, argv, &i, "--stop", &v)) {
            if (n_stops == MAX_ARGV_LIST)
                usage_die("too many --stop (at most %d)", MAX_ARGV_LIST);
            if (!*v)
                usage_die("--stop needs a non-empty string");
            stops[n_stops++] = v;
        } else if (opt(argc, argv, &i, "--max-new-tokens", &v)) {
            gp.max_new_tokens = parse_int("--max-new-tokens", v, 1, 1 << 20);
        } else if (opt(argc, argv, &i, "--temperature", &v)) {
            gp.temperature = parse_float("--temperature", v, 0, 100);
        } else if (opt(argc, argv, &i, "--top-k", &v)) {
            gp.top_k = parse_int("--top-k", v, 0, 1 << 24);
        } else if (opt(argc, argv, &i, "--top-p", &v)) {
            gp.top_p = parse_float("--top-p", v, 0, 1);
            if (gp.top_p <= 0)
                usage_die("--top-p must be in (0, 1], got '%s'", v);
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            gp.seed = parse_u64("--seed", v);
        } else if (opt(argc, argv, &i, "--batch", &v)) {
            batch = parse_int("--batch", v, 1, 4096);
        } else if (opt(argc, argv, &i, "--threads", &v)) {
            threads = parse_int("--threads", v, 1, 4096);
        } else if (flag(a, "--json")) {
            as_json = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!prompts_file && n_prompt_args == 0)
        usage_die("give --prompt TEXT or --prompts FILE.jsonl");
    if (prompts_file && n_prompt_args)
        usage_die("give --prompt or --prompts, not both");
    gp.stop = n_stops ? stops : NULL;
    gp.n_stop = n_stops;

    if (require_inputs(model_path, tok, NULL, NULL))
        return EXIT_RUNTIME;
    char **owned = NULL;
    int32_t n = 0;
    const char *const *prompts;
    if (prompts_file) {
        int r = read_prompts(prompts_file, &owned, &n);
        if (r)
            return r;
        prompts = (const char *const *)owned;
    } else {
        prompts = prompt_args;
        n = n_prompt_args;
    }
    blas_setup(argv, threads);
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    int r = load_tokenizer(tok, &t);
    if (!r)
        r = load_model(model_path, &m);
    if (!r)
        r = check_vocab(m, t, tok);
    for (int32_t b0 = 0; !r && b0 < n; b0 += batch) {
        int32_t nb = n - b0 < batch ? n - b0 : batch;
        align_generation *g = NULL;
        int rc = align_generate(m, t, prompts + b0, nb, &gp, &g);
        if (rc < 0) {
            r = rt_fail(rc, align_model_errmsg(m), "generation failed");
            break;
        }
        for (int32_t i = 0; i < nb; i++) {
            size_t tl = 0;
            const char *text = align_generation_text(g, i, &tl);
            int32_t nt = 0, nl = 0;
            const int32_t *toks = align_generation_tokens(g, i, &nt);
            const float *lps = align_generation_logprobs(g, i, &nl);
            int fin = align_generation_finish_reason(g, i);
            if (as_json) {
                printf("{\"prompt\":");
                json_str(stdout, prompts[b0 + i], strlen(prompts[b0 + i]));
                printf(",\"text\":");
                json_str(stdout, text ? text : "", text ? tl : 0);
                printf(",\"tokens\":[");
                for (int32_t k = 0; toks && k < nt; k++)
                    printf("%s%d", k ? "," : "", (int)toks[k]);
                printf("],\"logprobs\":[");
                for (int32_t k = 0; lps && k < nl; k++) {
                    if (k)
                        putchar(',');
                    json_num(stdout, lps[k]);
                }
                printf("],\"finish_reason\":\"%s\"}\n", finish_name(fin));
            } else {
                if (n > 1)
                    printf("=== %d (%s) ===\n", (int)(b0 + i), finish_name(fin));
                fwrite(text ? text : "", 1, text ? tl : 0, stdout);
                putchar('\n');
            }
        }
        align_generation_free(g);
        fflush(stdout);
    }
    align_model_free(m);
    align_tokenizer_free(t);
    for (int32_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    return r;
}

/* ======================================================================== */
/* 4e. sft                                                                  */
/* ======================================================================== */

static const char *const HELP_SFT =
    "usage: alignctl sft --model M --tokenizer TOK --data D.jsonl --out OUT.safetensors\n"
    "                    [options]\n"
    "\n"
    "Supervised fine-tuning on prompt/completion (or chat) records. Saves the model to\n"
    "OUT at the end; checkpoints (the whole training state) go to CKPT/step-N, where\n"
    "CKPT is OUT without '.safetensors' plus '.ckpt' unless --checkpoint-dir is given;\n"
    "CKPT/latest points to the newest one.\n"
    "\n"
    "length of training (one of):\n"
    "  --steps N           optimiser steps\n"
    "  --epochs N          passes over the data (default 1)\n"
    "batches:\n"
    "  --batch N           sequences per micro-batch (default 8)\n"
    "  --accum N           micro-batches per step (default 1)\n"
    "  --max-len N         tokens per row (default: the model's context)\n"
    "  --truncate MODE     right|left|drop for too long examples (default right)\n"
    "  --pack              pack several examples per row\n"
    "  --full-loss         loss on prompt tokens too\n"
    "  --lenient           skip malformed data lines instead of stopping\n"
    "optimiser:\n"
    "  --lr X              peak learning rate (default 1e-4)\n"
    "  --schedule S        constant|linear|cosine (default constant)\n"
    "  --warmup N          linear warmup steps (default 0)\n"
    "  --min-lr-ratio X    decay floor as a fraction of --lr (default 0)\n"
    "  --weight-decay X    AdamW weight decay (default 0)\n"
    "  --clip X            global gradient-norm clip, 0 = off (default 1.0)\n"
    "evaluation and checkpoints:\n"
    "  --eval-data FILE    held-out JSONL; evaluated every --eval-every steps and at the end\n"
    "  --eval-every N      (default 0: only at the end)\n"
    "  --save-every N      checkpoint every N steps (and at the end)\n"
    "  --checkpoint-dir D  where checkpoints go (see above)\n"
    "  --resume DIR        continue from a checkpoint folder (appends to --metrics)\n"
    "other:\n"
    "  --metrics FILE      one JSON object per step: step, epoch, loss, accuracy, lr,\n"
    "                      grad_norm, tokens, tokens_per_sec, time (s), and eval_loss /\n"
    "                      eval_accuracy on evaluated steps\n"
    "  --threads N         CPU threads (default: all)\n"
    "  --seed S            data shuffling seed (default 1234)\n"
    "  --log-every N       plain log line every N steps when stderr is not a terminal\n"
    "                      (default 10)\n"
    "  --quiet             no progress output\n"
    "Ctrl-C stops cleanly: a checkpoint is saved, the command to resume is printed,\n"
    "and alignctl exits with status 130.\n";

static volatile sig_atomic_t g_signal;
static align_trainer *volatile g_trainer;

static void on_signal(int sig)
{
    g_signal = sig;
    align_trainer *t = g_trainer;
    if (t)
        align_trainer_request_stop(t);
    static const char note[] = "\nalignctl: stopping; saving a checkpoint (press Ctrl-C again "
                               "to abort without one)\n";
    ssize_t w = write(2, note, sizeof note - 1);
    (void)w;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = (int)SA_RESETHAND; /* a second Ctrl-C ends the process */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void restore_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

typedef struct {
    int tty, quiet, log_every;
    int64_t total;       /* planned steps (estimate in epoch mode), 0 unknown */
    int64_t first_step;  /* step counter when this run started */
    double t0, last_draw;
} progress;

static void progress_update(progress *pg, const align_step_stats *s, int force)
{
    if (pg->quiet)
        return;
    double t = now_sec();
    int64_t done = s->step - pg->first_step;
    double per = done > 0 ? (t - pg->t0) / (double)done : 0;
    int64_t total = pg->total;
    if (s->progress > 0 && s->progress <= 1)
        total = (int64_t)llround((double)s->step / s->progress);
    double eta = total > s->step ? per * (double)(total - s->step) : 0;
    char etas[32];
    fmt_duration(etas, sizeof etas, eta);
    if (pg->tty) {
        if (!force && t - pg->last_draw < 0.1)
            return;
        pg->last_draw = t;
        char bar[32];
        int w = 20, fill = total > 0 ? (int)((double)w * (double)s->step / (double)total) : 0;
        if (fill > w)
            fill = w;
        for (int i = 0; i < w; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[w] = '\0';
        fprintf(stderr, "\r\033[Kstep %lld/%lld [%s] loss %.4f acc %.3f %.0f tok/s ETA %s",
                (long long)s->step, (long long)total, bar, s->loss, s->accuracy,
                s->tokens_per_sec, etas);
        g_bar_drawn = 1;
    } else {
        if (!force && done != 1 && (pg->log_every <= 0 || s->step % pg->log_every != 0))
            return;
        fprintf(stderr,
                "step %lld/%lld loss %.4f acc %.3f lr %.3g grad_norm %.3g tok/s %.0f eta %s\n",
                (long long)s->step, (long long)total, s->loss, s->accuracy, s->learning_rate,
                s->grad_norm, s->tokens_per_sec, etas);
    }
    fflush(stderr);
}

/* Saves the trainer state into ckdir/step-N and points ckdir/latest at it. */
static int save_checkpoint(align_trainer *tr, const char *ckdir, int64_t step, char *dir_out,
                           size_t cap)
{
    if (mkdirs(ckdir) != 0) {
        bar_clear();
        msg("cannot create checkpoint folder '%s': %s", ckdir, strerror(errno));
        return EXIT_RUNTIME;
    }
    snprintf(dir_out, cap, "%s/step-%lld", ckdir, (long long)step);
    int rc = align_trainer_save(tr, dir_out);
    if (rc < 0) {
        bar_clear();
        return rt_fail(rc, align_trainer_errmsg(tr), "cannot save checkpoint '%s'", dir_out);
    }
    char link[4200], tmp[4300], target[64];
    snprintf(link, sizeof link, "%s/latest", ckdir);
    snprintf(tmp, sizeof tmp, "%s/.latest.%ld", ckdir, (long)getpid());
    snprintf(target, sizeof target, "step-%lld", (long long)step);
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
        unlink(tmp);
        bar_clear();
        msg("warning: could not update '%s' (%s)", link, strerror(errno));
    }
    return 0;
}

static void print_resume_hint(int argc, char **argv, const char *dir)
{
    fprintf(stderr, "resume with:\n ");
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--resume") == 0) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--resume=", 9) == 0)
            continue;
        const char *a = argv[i];
        int plain = *a != '\0';
        for (const char *c = a; *c; c++)
            if (!(isalnum_ascii(*c) || strchr("-_./=,:+@%", *c)))
                plain = 0;
        if (plain) {
            fprintf(stderr, " %s", a);
        } else {
            fputs(" '", stderr);
            for (const char *c = a; *c; c++)
                if (*c == '\'')
                    fputs("'\\''", stderr);
                else
                    fputc(*c, stderr);
            fputc('\'', stderr);
        }
    }
    fprintf(stderr, " --resume %s\n", dir);
}

/* The "time" of the last record with step <= upto in an existing metrics
 * file, so that a resumed run's clock continues; 0 if there is none. */
static double metrics_last_time(const char *path, int64_t upto)
{
    char *buf;
    size_t len;
    double t = 0;
    if (read_file(path, &buf, &len) != 0)
        return 0;
    for (char *p = buf; p < buf + len;) {
        char *e = memchr(p, '\n', (size_t)(buf + len - p));
        size_t l = e ? (size_t)(e - p) : (size_t)(buf + len - p);
        jv o;
        char err[200];
        if (json_parse(p, l, &o, err, sizeof err) == 0) {
            const jv *st = jv_get(&o, "step"), *tm = jv_get(&o, "time");
            if (st && st->t == J_NUM && tm && tm->t == J_NUM && st->num <= (double)upto)
                t = tm->num;
            jv_free(&o);
        }
        if (!e)
            break;
        p = e + 1;
    }
    free(buf);
    return t;
}

static int cmd_sft(int argc, char **argv)
{
    const char *model_path = NULL, *tok = NULL, *data_path = NULL, *out = NULL, *v;
    const char *eval_path = NULL, *resume = NULL, *metrics_path = NULL, *ckdir_arg = NULL;
    int steps = 0, epochs = 0, threads = 0, eval_every = 0, save_every = 0, quiet = 0;
    int log_every = 10, lenient = 0;
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_SFT, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--data", &v)) {
            data_path = v;
        } else if (opt(argc, argv, &i, "--out", &v)) {
            out = v;
        } else if (opt(argc, argv, &i, "--steps", &v)) {
            steps = parse_int("--steps", v, 1, INT32_MAX);
        } else if (opt(argc, argv, &i, "--epochs", &v)) {
            epochs = parse_int("--epochs", v, 1, 1000000);
        } else if (opt(argc, argv, &i, "--batch", &v)) {
            sp.micro_batch = parse_int("--batch", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--accum", &v)) {
            sp.grad_accum = parse_int("--accum", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--max-len", &v)) {
            sp.max_seq_len = parse_int("--max-len", v, 2, 1 << 20);
        } else if (opt(argc, argv, &i, "--truncate", &v)) {
            if (strcmp(v, "right") == 0)
                sp.truncation = ALIGN_TRUNCATE_RIGHT;
            else if (strcmp(v, "left") == 0)
                sp.truncation = ALIGN_TRUNCATE_LEFT;
            else if (strcmp(v, "drop") == 0)
                sp.truncation = ALIGN_TRUNCATE_DROP;
            else
                usage_die("--truncate expects right, left or drop, got '%s'", v);
        } else if (flag(a, "--pack")) {
            sp.flags |= ALIGN_SFT_PACK;
        } else if (flag(a, "--full-loss")) {
            sp.flags |= ALIGN_SFT_FULL_SEQUENCE_LOSS;
        } else if (flag(a, "--lenient")) {
            lenient = 1;
        } else if (opt(argc, argv, &i, "--lr", &v)) {
            op.learning_rate = parse_float("--lr", v, 0, 10);
        } else if (opt(argc, argv, &i, "--schedule", &v)) {
            if (strcmp(v, "constant") == 0)
                op.schedule = ALIGN_SCHEDULE_CONSTANT;
            else if (strcmp(v, "linear") == 0)
                op.schedule = ALIGN_SCHEDULE_LINEAR;
            else if (strcmp(v, "cosine") == 0)
                op.schedule = ALIGN_SCHEDULE_COSINE;
            else
                usage_die("--schedule expects constant, linear or cosine, got '%s'", v);
        } else if (opt(argc, argv, &i, "--warmup", &v)) {
            op.warmup_steps = parse_int("--warmup", v, 0, INT32_MAX);
        } else if (opt(argc, argv, &i, "--min-lr-ratio", &v)) {
            op.min_lr_ratio = parse_float("--min-lr-ratio", v, 0, 1);
        } else if (opt(argc, argv, &i, "--weight-decay", &v)) {
            op.weight_decay = parse_float("--weight-decay", v, 0, 10);
        } else if (opt(argc, argv, &i, "--clip", &v)) {
            op.max_grad_norm = parse_float("--clip", v, 0, 1e9);
        } else if (opt(argc, argv, &i, "--eval-data", &v)) {
            eval_path = v;
        } else if (opt(argc, argv, &i, "--eval-every", &v)) {
            eval_every = parse_int("--eval-every", v, 0, INT32_MAX);
        } else if (opt(argc, argv, &i, "--save-every", &v)) {
            save_every = parse_int("--save-every", v, 1, INT32_MAX);
        } else if (opt(argc, argv, &i, "--checkpoint-dir", &v)) {
            ckdir_arg = v;
        } else if (opt(argc, argv, &i, "--resume", &v)) {
            resume = v;
        } else if (opt(argc, argv, &i, "--metrics", &v)) {
            metrics_path = v;
        } else if (opt(argc, argv, &i, "--threads", &v)) {
            threads = parse_int("--threads", v, 1, 4096);
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            sp.seed = parse_u64("--seed", v);
        } else if (opt(argc, argv, &i, "--log-every", &v)) {
            log_every = parse_int("--log-every", v, 0, INT32_MAX);
        } else if (flag(a, "--quiet")) {
            quiet = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required (the model to start from; 'alignctl init' makes one)");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!data_path)
        usage_die("--data is required (JSONL of {\"prompt\",\"completion\"} records)");
    if (!out)
        usage_die("--out is required (where the trained model is saved)");
    if (steps && epochs)
        usage_die("give --steps or --epochs, not both");
    if (eval_every && !eval_path)
        usage_die("--eval-every needs --eval-data");
    if (resume && !is_dir(resume)) {
        msg("checkpoint folder '%s' not found (give the folder a previous run saved, "
            "e.g. OUT.ckpt/latest)",
            resume);
        return EXIT_RUNTIME;
    }
    sp.max_steps = steps;
    sp.epochs = epochs ? epochs : 1;

    /* checkpoint folder: OUT minus ".safetensors", plus ".ckpt" */
    char ckdir[4096];
    if (ckdir_arg) {
        snprintf(ckdir, sizeof ckdir, "%s", ckdir_arg);
    } else {
        size_t n = strlen(out), sfx = strlen(".safetensors");
        if (n > sfx && strcmp(out + n - sfx, ".safetensors") == 0)
            n -= sfx;
        snprintf(ckdir, sizeof ckdir, "%.*s.ckpt", (int)n, out);
    }

    if (require_inputs(model_path, tok, data_path, eval_path))
        return EXIT_RUNTIME;
    blas_setup(argv, threads);
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    align_dataset *data = NULL, *evald = NULL;
    align_optimizer *o = NULL;
    align_trainer *tr = NULL;
    FILE *mf = NULL;
    int r = load_tokenizer(tok, &t);
    if (!r)
        r = load_model(model_path, &m);
    if (!r)
        r = check_vocab(m, t, tok);
    if (!r)
        r = load_dataset(data_path, lenient ? ALIGN_LENIENT : 0, &data);
    if (!r && eval_path)
        r = load_dataset(eval_path, lenient ? ALIGN_LENIENT : 0, &evald);
    if (r)
        goto out;

    /* planned steps: exact with --steps; an estimate in epoch mode (packing
     * makes fewer), used for the schedule and the progress bar */
    int64_t per_epoch = (align_dataset_size(data) + (int64_t)sp.micro_batch * sp.grad_accum - 1) /
                        ((int64_t)sp.micro_batch * sp.grad_accum);
    int64_t total = steps ? steps : per_epoch * sp.epochs;
    op.total_steps = total > INT32_MAX ? INT32_MAX : (int32_t)total;
    int rc = align_optimizer_create(&o, m, &op);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the optimizer");
        goto out;
    }
    rc = align_trainer_create_sft(&tr, m, t, data, o, &sp);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the SFT trainer");
        goto out;
    }
    if (resume) {
        rc = align_trainer_resume(tr, resume);
        if (rc < 0) {
            r = rt_fail(rc, align_trainer_errmsg(tr),
                        "cannot resume from '%s' (was it saved by a run with the same model, "
                        "data and options?)",
                        resume);
            goto out;
        }
    }
    int64_t step = align_optimizer_steps_done(o);
    if (resume)
        msg("resumed from '%s' at step %lld", resume, (long long)step);
    double time_offset = 0;
    if (metrics_path) {
        if (resume)
            time_offset = metrics_last_time(metrics_path, step);
        mf = fopen(metrics_path, resume ? "a" : "w");
        if (!mf) {
            msg("cannot open metrics file '%s': %s", metrics_path, strerror(errno));
            r = EXIT_RUNTIME;
            goto out;
        }
    }
    msg("training: %lld records%s, %s%lld steps, batch %d x accum %d, lr %g (%s)",
        (long long)align_dataset_size(data), evald ? " (+ eval data)" : "",
        steps ? "" : "about ", (long long)total, (int)sp.micro_batch, (int)sp.grad_accum,
        (double)op.learning_rate,
        op.schedule == ALIGN_SCHEDULE_LINEAR   ? "linear"
        : op.schedule == ALIGN_SCHEDULE_COSINE ? "cosine"
                                               : "constant");

    progress pg = {isatty(2), quiet, log_every, total, step, now_sec(), 0};
    int64_t last_saved = resume ? step : -1, last_eval = -1;
    int nonfinite = 0, interrupted = 0;
    float last_loss = NAN;
    g_signal = 0;
    g_trainer = tr;
    install_signals();
    for (;;) {
        if (g_signal) {
            interrupted = 1;
            break;
        }
        align_step_stats st;
        align_step_stats_init(&st, sizeof st);
        rc = align_trainer_step(tr, &st);
        if (rc == ALIGN_DONE)
            break;
        if (rc == ALIGN_ECANCELED) {
            interrupted = 1;
            break;
        }
        if (rc == ALIGN_ENONFINITE) {
            bar_clear();
            msg("warning: step %lld had a non-finite loss or gradient; update skipped",
                (long long)step + 1);
            if (++nonfinite >= 10) {
                r = rt_fail(rc, align_trainer_errmsg(tr),
                            "10 non-finite steps in a row: lower --lr or check the data");
                break;
            }
            continue;
        }
        if (rc < 0) {
            bar_clear();
            r = rt_fail(rc, align_trainer_errmsg(tr), "training step %lld failed",
                        (long long)step + 1);
            break;
        }
        nonfinite = 0;
        step = st.step;
        last_loss = st.loss;
        progress_update(&pg, &st, 0);
        align_step_stats es;
        int evaluated = 0;
        if (evald && eval_every > 0 && step % eval_every == 0) {
            align_step_stats_init(&es, sizeof es);
            rc = align_trainer_evaluate(tr, evald, &es);
            if (rc < 0) {
                bar_clear();
                r = rt_fail(rc, align_trainer_errmsg(tr), "evaluation at step %lld failed",
                            (long long)step);
                break;
            }
            evaluated = 1;
            last_eval = step;
            if (!quiet) {
                bar_clear();
                fprintf(stderr, "eval at step %lld: loss %.4f accuracy %.3f\n", (long long)step,
                        es.loss, es.accuracy);
            }
        }
        if (mf) {
            fprintf(mf, "{\"step\":%lld,\"epoch\":%lld,\"loss\":", (long long)st.step,
                    (long long)st.epoch);
            json_num(mf, st.loss);
            fputs(",\"accuracy\":", mf);
            json_num(mf, st.accuracy);
            fputs(",\"lr\":", mf);
            json_num(mf, st.learning_rate);
            fputs(",\"grad_norm\":", mf);
            json_num(mf, st.grad_norm);
            fprintf(mf, ",\"tokens\":%lld,\"tokens_per_sec\":", (long long)st.tokens);
            json_num(mf, st.tokens_per_sec);
            fputs(",\"time\":", mf);
            json_num(mf, time_offset + now_sec() - pg.t0);
            if (evaluated) {
                fputs(",\"eval_loss\":", mf);
                json_num(mf, es.loss);
                fputs(",\"eval_accuracy\":", mf);
                json_num(mf, es.accuracy);
            }
            fputs("}\n", mf);
            fflush(mf);
        }
        if (save_every > 0 && step % save_every == 0) {
            char dir[4200];
            if ((r = save_checkpoint(tr, ckdir, step, dir, sizeof dir)))
                break;
            last_saved = step;
            if (!quiet && !pg.tty)
                fprintf(stderr, "checkpoint: %s\n", dir);
        }
    }
    g_trainer = NULL;
    restore_signals();
    if (r)
        goto out;
    if (!interrupted && g_signal)
        interrupted = 1;
    if (interrupted) {
        char dir[4200];
        bar_clear();
        int sig = (int)g_signal;
        if (resume && step == pg.first_step) /* stopped before any new step */
            snprintf(dir, sizeof dir, "%s", resume);
        else if (last_saved == step)
            snprintf(dir, sizeof dir, "%s/step-%lld", ckdir, (long long)step);
        else if ((r = save_checkpoint(tr, ckdir, step, dir, sizeof dir))) {
            goto out;
        }
        msg("interrupted after step %lld; checkpoint saved in %s", (long long)step, dir);
        print_resume_hint(argc, argv, dir);
        r = sig == SIGTERM ? 128 + SIGTERM : EXIT_INTERRUPTED;
        goto out;
    }
    if (!quiet && pg.tty) {
        bar_clear();
        fprintf(stderr, "step %lld done, loss %.4f\n", (long long)step, last_loss);
    }
    if (evald && last_eval != step) {
        align_step_stats es;
        align_step_stats_init(&es, sizeof es);
        rc = align_trainer_evaluate(tr, evald, &es);
        if (rc < 0) {
            r = rt_fail(rc, align_trainer_errmsg(tr), "final evaluation failed");
            goto out;
        }
        if (!quiet)
            fprintf(stderr, "eval at step %lld: loss %.4f accuracy %.3f\n", (long long)step,
                    es.loss, es.accuracy);
        if (mf) {
            fprintf(mf, "{\"step\":%lld,\"eval_loss\":", (long long)step);
            json_num(mf, es.loss);
            fputs(",\"eval_accuracy\":", mf);
            json_num(mf, es.accuracy);
            fputs("}\n", mf);
        }
    }
    if (save_every > 0 && last_saved != step) {
        char dir[4200];
        if ((r = save_checkpoint(tr, ckdir, step, dir, sizeof dir)))
            goto out;
        if (!quiet)
            fprintf(stderr, "checkpoint: %s\n", dir);
    }
    rc = align_model_save(m, out);
    if (rc < 0) {
        r = rt_fail(rc, align_model_errmsg(m), "cannot save the model to '%s'", out);
        goto out;
    }
    if (!quiet)
        msg("trained %lld steps (final loss %.4f); model saved to %s", (long long)step,
            last_loss, out);
out:
    if (mf && fclose(mf) != 0 && !r) {
        msg("cannot write metrics file '%s'", metrics_path);
        r = EXIT_RUNTIME;
    }
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_dataset_free(evald);
    align_dataset_free(data);
    align_model_free(m);
    align_tokenizer_free(t);
    return r;
}

/* ======================================================================== */
/* 4f. eval                                                                 */
/* ======================================================================== */

static const char *const HELP_EVAL =
    "usage: alignctl eval --model M --tokenizer TOK --data D.jsonl [options]\n"
    "\n"
    "Mean loss and next-token accuracy over the completion tokens of every record\n"
    "(the same loss SFT trains), with the perplexity exp(loss).\n"
    "\n"
    "  --batch N       sequences per forward pass (default 8)\n"
    "  --max-len N     tokens per row (default: the model's context)\n"
    "  --full-loss     count prompt tokens too\n"
    "  --lenient       skip malformed data lines\n"
    "  --threads N     CPU threads (default: all)\n"
    "  --json          {\"loss\", \"accuracy\", \"perplexity\", \"tokens\", \"sequences\"}\n";

static int cmd_eval(int argc, char **argv)
{
    const char *model_path = NULL, *tok = NULL, *data_path = NULL, *v;
    int threads = 0, as_json = 0, lenient = 0;
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_EVAL, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--data", &v)) {
            data_path = v;
        } else if (opt(argc, argv, &i, "--batch", &v)) {
            sp.micro_batch = parse_int("--batch", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--max-len", &v)) {
            sp.max_seq_len = parse_int("--max-len", v, 2, 1 << 20);
        } else if (opt(argc, argv, &i, "--threads", &v)) {
            threads = parse_int("--threads", v, 1, 4096);
        } else if (flag(a, "--full-loss")) {
            sp.flags |= ALIGN_SFT_FULL_SEQUENCE_LOSS;
        } else if (flag(a, "--lenient")) {
            lenient = 1;
        } else if (flag(a, "--json")) {
            as_json = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!data_path)
        usage_die("--data is required (JSONL of {\"prompt\",\"completion\"} records)");
    if (require_inputs(model_path, tok, data_path, NULL))
        return EXIT_RUNTIME;
    blas_setup(argv, threads);
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    align_dataset *d = NULL;
    align_trainer *tr = NULL;
    int r = load_tokenizer(tok, &t);
    if (!r)
        r = load_model(model_path, &m);
    if (!r)
        r = check_vocab(m, t, tok);
    if (!r)
        r = load_dataset(data_path, lenient ? ALIGN_LENIENT : 0, &d);
    if (r)
        goto out;
    /* An evaluation-only trainer: no optimizer, so no moments are allocated. */
    int rc = align_trainer_create_sft(&tr, m, t, d, NULL, &sp);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot set up evaluation");
        goto out;
    }
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    rc = align_trainer_evaluate(tr, d, &st);
    if (rc < 0) {
        r = rt_fail(rc, align_trainer_errmsg(tr), "evaluation failed");
        goto out;
    }
    if (as_json) {
        fputs("{\"loss\":", stdout);
        json_num(stdout, st.loss);
        fputs(",\"accuracy\":", stdout);
        json_num(stdout, st.accuracy);
        fputs(",\"perplexity\":", stdout);
        json_num(stdout, exp((double)st.loss));
        printf(",\"tokens\":%lld,\"sequences\":%lld}\n", (long long)st.tokens,
               (long long)st.sequences);
    } else {
        printf("loss        %.6f\naccuracy    %.6f\nperplexity  %.4f\ntokens      %lld\n"
               "sequences   %lld\n",
               st.loss, st.accuracy, exp((double)st.loss), (long long)st.tokens,
               (long long)st.sequences);
    }
out:
    align_trainer_free(tr);
    align_dataset_free(d);
    align_model_free(m);
    align_tokenizer_free(t);
    return r;
}

/* ======================================================================== */
/* 4g. plot                                                                 */
/* ======================================================================== */

static const char *const HELP_PLOT =
    "usage: alignctl plot METRICS.jsonl --out CURVES.svg [options]\n"
    "\n"
    "Draws every numeric series of a metrics file (one JSON object per line, e.g.\n"
    "from 'alignctl sft --metrics') against the step, one panel per series, as a\n"
    "self-contained SVG: axes, ticks, labels, a legend, and exactly one <path>\n"
    "element per series.\n"
    "\n"
    "  --out FILE      the SVG to write ('-' for stdout)\n"
    "  --x KEY         the x axis (default 'step'; the line number if absent)\n"
    "  --series A,B    only these series, in this order (default: all numeric keys)\n"
    "  --title TEXT    heading (default: the metrics file name)\n"
    "  --columns N     panels per row (default 2)\n";

typedef struct {
    char *name;
    double *x, *y;
    size_t n, cap;
} series;

static int series_push(series *s, double x, double y)
{
    if (s->n == s->cap) {
        size_t c = s->cap ? s->cap * 2 : 64;
        double *nx = realloc(s->x, c * sizeof *nx);
        if (!nx)
            return -1;
        s->x = nx;
        double *ny = realloc(s->y, c * sizeof *ny);
        if (!ny)
            return -1;
        s->y = ny;
        s->cap = c;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return 0;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '<')
            fputs("&lt;", f);
        else if (c == '>')
            fputs("&gt;", f);
        else if (c == '&')
            fputs("&amp;", f);
        else if (c == '"')
            fputs("&quot;", f);
        else if (c < 0x20 && c != '\t')
            fputc(' ', f);
        else
            fputc(c, f);
    }
}

static double nice_num(double x, int round_)
{
    double e = floor(log10(x)), f = x / pow(10, e), nf;
    if (round_)
        nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else
        nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10, e);
}

/* Axis range [lo, hi] widened to nice ticks lo + k*step. */
static void nice_axis(double *lo, double *hi, double *step)
{
    if (!(*hi > *lo)) {
        double d = fabs(*lo) > 0 ? fabs(*lo) * 0.1 : 1;
        *lo -= d;
        *hi += d;
    }
    double range = nice_num(*hi - *lo, 0);
    *step = nice_num(range / 4, 1);
    *lo = floor(*lo / *step) * *step;
    *hi = ceil(*hi / *step) * *step;
}

/* Tick label with as many decimals as the tick step needs; %g only for
 * very large or very small magnitudes. */
static void fmt_tick(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-9)
        v = 0;
    double mag = fmax(fabs(v), step);
    if (mag >= 1e7 || step < 1e-5) {
        snprintf(buf, cap, "%.3g", v);
        return;
    }
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, cap, "%.*f", dec, v);
}

static const char *const PALETTE[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void svg_write(FILE *f, const char *title, const char *xname, series *S, size_t ns,
                      int cols)
{
    const double PW = 440, PH = 250, ML = 70, MR = 20, MT = 34, MB = 46;
    if ((size_t)cols > ns)
        cols = (int)ns;
    if (cols < 1)
        cols = 1;
    size_t rows = (ns + (size_t)cols - 1) / (size_t)cols;
    double W = PW * cols;
    int per_row = (int)(W / 160);
    if (per_row < 1)
        per_row = 1;
    size_t lrows = (ns + (size_t)per_row - 1) / (size_t)per_row;
    double HH = 44 + 20.0 * (double)lrows;
    double H = HH + PH * (double)rows;
    double xlo = INFINITY, xhi = -INFINITY;
    for (size_t s = 0; s < ns; s++)
        for (size_t i = 0; i < S[s].n; i++) {
            if (S[s].x[i] < xlo) xlo = S[s].x[i];
            if (S[s].x[i] > xhi) xhi = S[s].x[i];
        }
    double xstep;
    nice_axis(&xlo, &xhi, &xstep);

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    fputs("<title>", f);
    xml_text(f, title);
    fputs("</title>\n", f);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", W, H);
    fputs("<text x=\"16\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", f);
    xml_text(f, title);
    fputs("</text>\n<g class=\"legend\">\n", f);
    for (size_t s = 0; s < ns; s++) {
        double lx = 16 + 160.0 * (double)(s % (size_t)per_row);
        double ly = 36 + 20.0 * (double)(s / (size_t)per_row);
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"14\" height=\"14\" fill=\"%s\"/>",
                lx, ly, PALETTE[s % 10]);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\">", lx + 20, ly + 12);
        xml_text(f, S[s].name);
        fputs("</text>\n", f);
    }
    fputs("</g>\n", f);
    for (size_t s = 0; s < ns; s++) {
        const series *se = &S[s];
        double ox = PW * (double)(s % (size_t)cols), oy = HH + PH * (double)(s / (size_t)cols);
        double px = ox + ML, py = oy + MT, pw = PW - ML - MR, ph = PH - MT - MB;
        double ylo = INFINITY, yhi = -INFINITY, ystep;
        for (size_t i = 0; i < se->n; i++) {
            if (se->y[i] < ylo) ylo = se->y[i];
            if (se->y[i] > yhi) yhi = se->y[i];
        }
        nice_axis(&ylo, &yhi, &ystep);
        const char *col = PALETTE[s % 10];
        fputs("<g class=\"panel\">\n", f);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">", px, py - 10);
        xml_text(f, se->name);
        fputs("</text>\n", f);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                   "stroke=\"#888888\"/>\n",
                px, py, pw, ph);
        char lab[64];
        for (int k = 0;; k++) {
            double yv = ylo + k * ystep;
            if (yv > yhi + ystep * 1e-6 || k > 50)
                break;
            double yy = py + ph - (yv - ylo) / (yhi - ylo) * ph;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>",
                    px, yy, px + pw, yy, px - 5, yy, px, yy);
            fmt_tick(lab, sizeof lab, yv, ystep);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", px - 8,
                    yy + 4, lab);
        }
        for (int k = 0;; k++) {
            double xv = xlo + k * xstep;
            if (xv > xhi + xstep * 1e-6 || k > 50)
                break;
            double xx = px + (xv - xlo) / (xhi - xlo) * pw;
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>",
                    xx, py + ph, xx, py + ph + 5);
            fmt_tick(lab, sizeof lab, xv, xstep);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", xx,
                    py + ph + 18, lab);
        }
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", px + pw / 2,
                py + ph + 36);
        xml_text(f, xname);
        fputs("</text>\n", f);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" "
                   "transform=\"rotate(-90 %.1f %.1f)\">",
                ox + 14, py + ph / 2, ox + 14, py + ph / 2);
        xml_text(f, se->name);
        fputs("</text>\n", f);
        fprintf(f, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
                   "stroke-linejoin=\"round\" stroke-linecap=\"round\" d=\"",
                col);
        for (size_t i = 0; i < se->n; i++) {
            double xx = px + (se->x[i] - xlo) / (xhi - xlo) * pw;
            double yy = py + ph - (se->y[i] - ylo) / (yhi - ylo) * ph;
            fprintf(f, "%s%.2f %.2f", i == 0 ? "M" : " L", xx, yy);
            if (se->n == 1)
                fprintf(f, " L%.2f %.2f", xx, yy);
        }
        fputs("\"/>\n", f);
        if (se->n <= 40)
            for (size_t i = 0; i < se->n; i++) {
                double xx = px + (se->x[i] - xlo) / (xhi - xlo) * pw;
                double yy = py + ph - (se->y[i] - ylo) / (yhi - ylo) * ph;
                fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>", xx, yy,
                        col);
            }
        fputs("</g>\n", f);
    }
    fputs("</svg>\n", f);
}

static int cmd_plot(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *xkey = "step", *only = NULL, *title = NULL, *v;
    int cols = 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_PLOT, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--out", &v)) {
            out = v;
        } else if (opt(argc, argv, &i, "--x", &v)) {
            xkey = v;
        } else if (opt(argc, argv, &i, "--series", &v)) {
            only = v;
        } else if (opt(argc, argv, &i, "--title", &v)) {
            title = v;
        } else if (opt(argc, argv, &i, "--columns", &v)) {
            cols = parse_int("--columns", v, 1, 16);
        } else if (a[0] == '-' && a[1]) {
            unknown_arg(a);
        } else if (!in) {
            in = a;
        } else {
            usage_die("one metrics file at a time (got '%s' and '%s')", in, a);
        }
    }
    if (!in)
        usage_die("which metrics file? usage: alignctl plot METRICS.jsonl --out CURVES.svg");
    if (!out)
        usage_die("--out CURVES.svg is required");
    char *buf = NULL;
    size_t len;
    if (read_file(in, &buf, &len) != 0) {
        msg("cannot read metrics '%s': %s", in, strerror(errno));
        return EXIT_RUNTIME;
    }
    series *S = NULL;
    size_t ns = 0, scap = 0, records = 0;
    int r = 0, have_x = 0;
    long line = 0;
    for (char *p = buf; p < buf + len && !r;) {
        char *e = memchr(p, '\n', (size_t)(buf + len - p));
        size_t l = e ? (size_t)(e - p) : (size_t)(buf + len - p);
        line++;
        size_t s0 = 0;
        while (s0 < l && (p[s0] == ' ' || p[s0] == '\t' || p[s0] == '\r'))
            s0++;
        if (s0 < l) {
            jv o;
            char err[200] = "";
            if (json_parse(p, l, &o, err, sizeof err) != 0 || o.t != J_OBJ) {
                msg("%s:%ld: not a JSON object%s%s", in, line, err[0] ? ": " : "", err);
                jv_free(&o);
                r = EXIT_RUNTIME;
                break;
            }
            records++;
            const jv *xv = jv_get(&o, xkey);
            double x = (double)records;
            if (xv && xv->t == J_NUM) {
                x = xv->num;
                have_x = 1;
            }
            for (size_t k = 0; k < o.n && !r; k++) {
                if (o.a[k].t != J_NUM || strcmp(o.k[k], xkey) == 0)
                    continue;
                size_t j = 0;
                while (j < ns && strcmp(S[j].name, o.k[k]) != 0)
                    j++;
                if (j == ns) {
                    if (ns == scap) {
                        scap = scap ? scap * 2 : 16;
                        series *nS = realloc(S, scap * sizeof *nS);
                        if (!nS) {
                            r = rt_fail(ALIGN_ENOMEM, NULL, "plot");
                            break;
                        }
                        S = nS;
                    }
                    memset(&S[ns], 0, sizeof S[ns]);
                    S[ns].name = strdup(o.k[k]);
                    if (!S[ns].name) {
                        r = rt_fail(ALIGN_ENOMEM, NULL, "plot");
                        break;
                    }
                    ns++;
                }
                if (series_push(&S[j], x, o.a[k].num))
                    r = rt_fail(ALIGN_ENOMEM, NULL, "plot");
            }
            jv_free(&o);
        }
        if (!e)
            break;
        p = e + 1;
    }
    free(buf);
    series *sel = NULL;
    size_t nsel = 0;
    if (!r && records == 0) {
        msg("'%s' has no records", in);
        r = EXIT_RUNTIME;
    }
    if (!r) {
        sel = calloc(ns ? ns : 1, sizeof *sel);
        if (!sel)
            r = rt_fail(ALIGN_ENOMEM, NULL, "plot");
    }
    if (!r && only) {
        const char *p = only;
        while (*p && !r) {
            size_t l = strcspn(p, ",");
            size_t j = 0;
            while (j < ns && !(strlen(S[j].name) == l && strncmp(S[j].name, p, l) == 0))
                j++;
            if (j == ns) {
                msg("'%s' has no numeric series '%.*s'", in, (int)l, p);
                r = EXIT_RUNTIME;
            } else if (nsel < ns) {
                sel[nsel++] = S[j];
            }
            p += l;
            if (*p == ',')
                p++;
        }
    } else if (!r) {
        for (size_t j = 0; j < ns; j++)
            sel[nsel++] = S[j];
    }
    if (!r && nsel == 0) {
        msg("'%s' has no numeric values to plot", in);
        r = EXIT_RUNTIME;
    }
    if (!r) {
        FILE *f = strcmp(out, "-") == 0 ? stdout : fopen(out, "w");
        if (!f) {
            msg("cannot write '%s': %s", out, strerror(errno));
            r = EXIT_RUNTIME;
        } else {
            const char *base = strrchr(in, '/');
            svg_write(f, title ? title : base ? base + 1 : in, have_x ? xkey : "record", sel,
                      nsel, cols);
            if ((f == stdout ? fflush(f) : fclose(f)) != 0) {
                msg("cannot write '%s': %s", out, strerror(errno));
                r = EXIT_RUNTIME;
            } else if (f != stdout) {
                fprintf(stderr, "%s: %zu series, %zu records -> %s\n", g_cmd, nsel, records,
                        out);
            }
        }
    }
    for (size_t j = 0; j < ns; j++) {
        free(S[j].name);
        free(S[j].x);
        free(S[j].y);
    }
    free(S);
    free(sel);
    return r;
}

/* ======================================================================== */
/* 5. main                                                                  */
/* ======================================================================== */

static const char *const HELP_MAIN =
    "usage: alignctl COMMAND [options]      (alignctl COMMAND --help for details)\n"
    "\n"
    "commands:\n"
    "  init       create a randomly initialised model (safetensors)\n"
    "  info       show a model file: architecture, parameters, tensors, size\n"
    "  tokenize   text -> token ids as JSON (--decode for the reverse)\n"
    "  generate   sample continuations of prompts\n"
    "  sft        supervised fine-tuning, with checkpoints, metrics and resume\n"
    "  eval       loss and token accuracy on a dataset\n"
    "  plot       draw a metrics file as an SVG\n"
    "\n"
    "Exit status: 0 ok, 1 error, 2 bad usage, 130 interrupted (checkpoint saved).\n"
    "Environment: OPENBLAS_CORETYPE (alignctl sets SkylakeX itself and re-runs when\n"
    "OpenBLAS picks generic kernels on an AVX-512 CPU), ALIGNCTL_NO_REEXEC=1 to prevent\n"
    "that. Documentation: docs/cli/README.md\n";

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"init", cmd_init},         {"info", cmd_info}, {"tokenize", cmd_tokenize},
                {"generate", cmd_generate}, {"sft", cmd_sft},   {"eval", cmd_eval},
                {"plot", cmd_plot}};
    if (argc < 2) {
        fputs(HELP_MAIN, stderr);
        return EXIT_USAGE;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        if (strcmp(argv[1], "help") == 0 && argc > 2) {
            for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
                if (strcmp(argv[2], cmds[i].name) == 0) {
                    char *hargv[] = {argv[0], argv[2], (char *)"--help", NULL};
                    snprintf(g_cmd, sizeof g_cmd, "alignctl %s", cmds[i].name);
                    return cmds[i].fn(3, hargv);
                }
            fprintf(stderr, "alignctl: unknown command '%s'\n", argv[2]);
            return EXIT_USAGE;
        }
        fputs(HELP_MAIN, stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("alignctl (libalign %s)\n", align_version_string());
        return EXIT_OK;
    }
    align_log_set(on_log, NULL);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) {
            snprintf(g_cmd, sizeof g_cmd, "alignctl %s", cmds[i].name);
            return cmds[i].fn(argc, argv);
        }
    fprintf(stderr,
            "alignctl: unknown command '%s' (commands: init, info, tokenize, generate, sft, "
            "eval, plot)\nTry 'alignctl --help'.\n",
            argv[1]);
    return EXIT_USAGE;
}
