/* error.c — error codes, their names and messages (one X-macro table, as
 * libuv does), per-handle and per-thread messages, version calls. */
#include "core/core.h"

#include <stdio.h>
#include <string.h>

/* X(name, code, message). Codes are ABI: never renumber or reuse. */
#define ALIGN__ERRNO_MAP(X)                                                    \
    X(ALIGN_OK, 0, "success")                                                  \
    X(ALIGN_DONE, 1, "done: no more work")                                     \
    X(ALIGN_EINVAL, -1, "invalid argument")                                    \
    X(ALIGN_ENOMEM, -2, "out of memory")                                       \
    X(ALIGN_EIO, -3, "input/output error")                                     \
    X(ALIGN_EFORMAT, -4, "malformed input")                                    \
    X(ALIGN_EVERSION, -5, "unsupported version or struct layout")              \
    X(ALIGN_EBUSY, -6, "handle is busy")                                       \
    X(ALIGN_ECANCELED, -7, "operation canceled")                               \
    X(ALIGN_ECALLBACK, -8, "a callback reported an error")                     \
    X(ALIGN_EMISUSE, -9, "call not valid in this state")                       \
    X(ALIGN_EINTERNAL, -10, "internal error")                                  \
    X(ALIGN_ERANGE, -11, "output buffer too small")                            \
    X(ALIGN_ENOENT, -12, "no such file or directory")                          \
    X(ALIGN_ENONFINITE, -13, "non-finite value (NaN or infinity)")

ALIGN_API const char *align_strerror(int code)
{
    switch (code) {
#define X(name, value, msg) case value: return msg;
        ALIGN__ERRNO_MAP(X)
#undef X
    default: return "unknown error code";
    }
}

ALIGN_API const char *align_err_name(int code)
{
    switch (code) {
#define X(name, value, msg) case value: return #name;
        ALIGN__ERRNO_MAP(X)
#undef X
    default: return "ALIGN_UNKNOWN";
    }
}

/* The thread's last message, and the one before it: a caller that handles a
 * failure of an inner call (align_tokenize's ALIGN_ERANGE answered by a
 * larger buffer) puts the previous one back with align__error_recovered(mark),
 * so that a call that succeeds never leaves a message of its own
 * (docs/conventions.md, "Errors"). */
static _Thread_local char tls_last[ALIGN__ERRMSG_CAP];
static _Thread_local char tls_prev[ALIGN__ERRMSG_CAP];
static _Thread_local uint64_t tls_seq; /* messages written on this thread */

ALIGN_API const char *align_last_errmsg(void)
{
    return tls_last;
}

int align__verror(align__errbuf *eb, int code, const char *fmt, va_list ap)
{
    char tmp[ALIGN__ERRMSG_CAP];
    tmp[0] = '\0';
    if (fmt && *fmt)
        vsnprintf(tmp, sizeof tmp, fmt, ap);
    if (!tmp[0]) /* no detail: the code's own description */
        snprintf(tmp, sizeof tmp, "%s", align_strerror(code));
    memcpy(tls_prev, tls_last, sizeof tls_prev);
    memcpy(tls_last, tmp, sizeof tmp);
    tls_seq++;
    if (eb)
        memcpy(eb->msg, tmp, sizeof tmp);
    return code;
}

int align__error(align__errbuf *eb, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = align__verror(eb, code, fmt, ap);
    va_end(ap);
    return r;
}

uint64_t align__error_mark(void)
{
    return tls_seq;
}

void align__error_recovered(uint64_t mark)
{
    if (tls_seq == mark + 1) { /* exactly one message since the mark: undo it */
        memcpy(tls_last, tls_prev, sizeof tls_last);
        tls_seq = mark;
    }
}

void align__error_clear(align__errbuf *eb)
{
    if (eb)
        eb->msg[0] = '\0';
}

const char *align__errmsg(const align__errbuf *eb)
{
    return eb ? eb->msg : "";
}

/* ---- params structs -------------------------------------------------------- */

int align__params_copy(void *dst, size_t dst_size, const void *src, const char *what)
{
    if (!src)
        return ALIGN_OK; /* NULL params = defaults */
    uint32_t theirs;
    memcpy(&theirs, src, sizeof theirs);
    if (theirs < sizeof(uint32_t))
        return align__error(NULL, ALIGN_EINVAL, "%s: struct_size is %u (use the default-params function)",
                            what, (unsigned)theirs);
    if (theirs > dst_size) {
        const unsigned char *tail = (const unsigned char *)src + dst_size;
        for (size_t i = 0; i < theirs - dst_size; i++)
            if (tail[i])
                return align__error(NULL, ALIGN_EVERSION,
                                    "%s: struct_size %u is larger than this library's %zu and the unknown "
                                    "members are set (the program needs a newer libalign)",
                                    what, (unsigned)theirs, dst_size);
        theirs = (uint32_t)dst_size;
    }
    memcpy((char *)dst + sizeof(uint32_t), (const char *)src + sizeof(uint32_t), theirs - sizeof(uint32_t));
    return ALIGN_OK;
}

size_t align__out_size(const void *out, size_t our_size)
{
    uint32_t theirs;
    memcpy(&theirs, out, sizeof theirs);
    if (theirs < sizeof(uint32_t))
        return 0;
    return theirs < our_size ? theirs : our_size;
}

/* ---- version ---------------------------------------------------------------- */
#define ALIGN__STR2(x) #x
#define ALIGN__STR(x) ALIGN__STR2(x)

ALIGN_API unsigned align_version(void)
{
    return ALIGN_VERSION_HEX;
}

ALIGN_API const char *align_version_string(void)
{
    return ALIGN__STR(ALIGN_VERSION_MAJOR) "." ALIGN__STR(ALIGN_VERSION_MINOR) "." ALIGN__STR(
        ALIGN_VERSION_PATCH);
}

int align__params_defaults(void *out, size_t struct_size, const void *defaults, size_t our_size,
                           const char *what)
{
    if (!out || struct_size < sizeof(uint32_t) || struct_size > UINT32_MAX)
        return align__error(NULL, ALIGN_EINVAL, "%s: out is NULL or struct_size %zu is invalid", what,
                            struct_size);
    size_t n = struct_size < our_size ? struct_size : our_size;
    memcpy(out, defaults, n);
    if (struct_size > our_size)
        memset((char *)out + our_size, 0, struct_size - our_size);
    uint32_t sz = (uint32_t)struct_size;
    memcpy(out, &sz, sizeof sz);
    return ALIGN_OK;
}
