/* log.c — the host's log hook (global, set before creating handles). */
#include "core/core.h"

#include <stdatomic.h>
#include <stdio.h>

static align_log_fn log_fn;
static void *log_ud;
static atomic_int log_level = ALIGN_LOG_WARN;

ALIGN_API void align_log_set(align_log_fn fn, void *user_data)
{
    log_fn = fn;
    log_ud = user_data;
}

ALIGN_API void align_log_set_level(int max_level)
{
    atomic_store(&log_level, max_level);
}

void align__log(int level, const char *fmt, ...)
{
    if (level > atomic_load(&log_level))
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (log_fn) {
        log_fn(level, buf, log_ud);
        return;
    }
    static const char *names[] = {"error", "warning", "info", "debug"};
    fprintf(stderr, "libalign: %s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], buf);
}
