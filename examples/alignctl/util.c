/* util.c — messages, files, time, and JSON helpers on top of jansson. */
#include "alignctl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

char g_cmd[64] = "alignctl";

void msg(const char *fmt, ...)
{
    va_list ap;
    bar_clear();
    fprintf(stderr, "%s: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int rt_fail(int rc, const char *detail, const char *fmt, ...)
{
    va_list ap;
    bar_clear();
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

double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int read_stream(FILE *f, char **out, size_t *len)
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

int read_file(const char *path, char **out, size_t *len)
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

int mkdirs(const char *path)
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

void fmt_duration(char *buf, size_t cap, double s)
{
    if (!isfinite(s) || s < 0)
        s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void fmt_bytes(char *buf, size_t cap, double b)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

/* Length of the valid UTF-8 sequence at u[0..n), 0 if it is not one. */
static size_t utf8_len(const unsigned char *u, size_t n)
{
    unsigned char c = u[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (len == 0 || c >= 0xF5 || len > n)
        return 0;
    uint32_t cp = len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t j = 1; j < len; j++) {
        if ((u[j] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (u[j] & 0x3Fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp < 0xE000))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

json_t *json_bytes(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t bad = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(u + i, n - i);
        bad += l == 0;
        i += l ? l : 1;
    }
    if (bad == 0)
        return json_stringn(s, n);
    /* each bad byte becomes U+FFFD (3 bytes) */
    char *b = malloc(n + 2 * bad + 1);
    if (!b)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(u + i, n - i);
        if (l) {
            memcpy(b + o, s + i, l);
            o += l;
            i += l;
        } else {
            memcpy(b + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *v = json_stringn(b, o);
    free(b);
    return v;
}

json_t *json_num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

void json_put(json_t *obj, const char *key, json_t *value)
{
    if (value)
        json_object_set_new(obj, key, value);
}

int json_print_line(FILE *f, json_t *v)
{
    if (!v)
        return -1;
    int rc = json_dumpf(v, f, JSON_COMPACT | JSON_REAL_PRECISION(7) | JSON_ENCODE_ANY);
    json_decref(v);
    if (rc == 0 && fputc('\n', f) == EOF)
        rc = -1;
    return rc;
}

int jsonl_each(const char *buf, size_t len, jsonl_fn fn, void *ud)
{
    long line = 0;
    for (const char *p = buf; p < buf + len;) {
        const char *e = memchr(p, '\n', (size_t)(buf + len - p));
        size_t l = e ? (size_t)(e - p) : (size_t)(buf + len - p);
        line++;
        size_t s = 0;
        while (s < l && (p[s] == ' ' || p[s] == '\t' || p[s] == '\r'))
            s++;
        if (s < l) {
            json_error_t err;
            json_t *v = json_loadb(p, l, 0, &err);
            int r = fn(line, v, v ? NULL : err.text, ud);
            json_decref(v);
            if (r)
                return r;
        }
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}
