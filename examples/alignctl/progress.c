/* progress.c — library log lines and training progress on stderr: a
 * redrawn bar when stderr is a terminal, plain lines every --log-every steps
 * otherwise. */
#include "alignctl.h"

#include <math.h>
#include <string.h>

static int g_bar_drawn;        /* a progress bar occupies the current line */
static int g_log_capture;      /* hold library log lines instead of printing */
static char g_log_held[2048];

void bar_clear(void)
{
    if (g_bar_drawn) {
        fputs("\r\033[K", stderr);
        g_bar_drawn = 0;
    }
}

static void on_log(int level, const char *message, void *user_data)
{
    (void)user_data;
    const char *lv = level == ALIGN_LOG_ERROR  ? "error"
                     : level == ALIGN_LOG_WARN ? "warning"
                     : level == ALIGN_LOG_INFO ? "info"
                                               : "debug";
    if (g_log_capture) {
        size_t n = strlen(g_log_held);
        snprintf(g_log_held + n, sizeof g_log_held - n, "%s: libalign %s: %s\n", g_cmd, lv,
                 message);
        return;
    }
    bar_clear();
    fprintf(stderr, "%s: libalign %s: %s\n", g_cmd, lv, message);
}

void log_install(void)
{
    align_log_set(on_log, NULL);
}

void log_capture(int on)
{
    g_log_capture = on;
}

const char *log_held(void)
{
    return g_log_held;
}

void log_held_clear(void)
{
    g_log_held[0] = '\0';
}

void progress_update(progress *pg, const align_step_stats *s, int force)
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
