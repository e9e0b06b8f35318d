/* rl_output.c — what alignctl ppo, grpo and rloo show while they train: the
 * progress line (score, KL, loss, response length) and the table of sampled
 * responses with their scores, cut to the terminal's width. */
#include "alignctl.h"
#include "rl_cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int g_rl_bar; /* our progress bar is on the current line */

void rl_bar_clear(void)
{
    if (g_rl_bar) {
        fputs("\r\033[K", stderr);
        g_rl_bar = 0;
    }
}

double rl_metric(const align_trainer *tr, const char *name)
{
    double v;
    return align_trainer_metric(tr, ALIGN_METRICS_STEP, name, &v) == 0 ? v : NAN;
}

void rl_progress(const rl_cli *c, const align_trainer *tr, const align_step_stats *st,
                 int64_t total, int64_t first, double t0, double *last_draw, int tty)
{
    if (c->t.quiet)
        return;
    double t = now_sec(), per = st->step > first ? (t - t0) / (double)(st->step - first) : 0;
    if (st->progress > 0 && st->progress <= 1)
        total = (int64_t)llround((double)st->step / st->progress);
    char eta[32];
    fmt_duration(eta, sizeof eta, total > st->step ? per * (double)(total - st->step) : 0);
    double score = rl_metric(tr, "objective/scores"), kl = rl_metric(tr, "objective/kl");
    double len = rl_metric(tr, "response_length");
    if (tty) {
        if (t - *last_draw < 0.1 && st->step != total)
            return;
        *last_draw = t;
        fprintf(stderr, "\r\033[Kstep %lld/%lld score %.4g kl %.3g loss %.4g len %.1f ETA %s",
                (long long)st->step, (long long)total, score, kl, st->loss, len, eta);
        g_rl_bar = 1;
    } else {
        if (st->step - first != 1 && (c->t.log_every <= 0 || st->step % c->t.log_every != 0))
            return;
        fprintf(stderr,
                "step %lld/%lld score %.4g kl %.3g loss %.4g lr %.3g grad_norm %.3g "
                "len %.1f eta %s\n",
                (long long)st->step, (long long)total, score, kl, st->loss, st->learning_rate,
                st->grad_norm, len, eta);
    }
    fflush(stderr);
}

static int term_width(void)
{
    struct winsize ws;
    if (isatty(2) && ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    const char *e = getenv("COLUMNS");
    int w = e ? atoi(e) : 0;
    return w >= 20 ? w : 100;
}

/* Writes up to `cols` display columns of s (UTF-8; newlines and tabs shown
 * as "\n" and "\t"; a cut marked by "~"), padded to cols when pad. */
static void put_cell(const char *s, int cols, int pad)
{
    int used = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        const char *rep = *u == '\n' ? "\\n" : *u == '\t' ? "\\t" : *u == '\r' ? "\\r" : NULL;
        size_t len = 1;
        int w = 1;
        if (rep) {
            w = 2;
        } else if (*u < 0x20 || *u == 0x7f) {
            rep = "?";
        } else if (*u >= 0x80) {
            len = *u >= 0xF0 ? 4 : *u >= 0xE0 ? 3 : *u >= 0xC0 ? 2 : 1;
            for (size_t k = 1; k < len; k++)
                if ((u[k] & 0xC0) != 0x80) {
                    len = 1;
                    break;
                }
            if (len == 1)
                rep = "?";
        }
        if (used + w > cols - 1 && (u[len] || used + w > cols)) {
            fputc('~', stderr);
            used++;
            break;
        }
        if (rep)
            fputs(rep, stderr);
        else
            fwrite(u, 1, len, stderr);
        used += w;
        u += len;
    }
    while (pad && used++ < cols)
        fputc(' ', stderr);
}

void rl_sample_table(const rl_cli *c, const rl_reward *w, int64_t step)
{
    if (w->n == 0)
        return;
    int width = term_width();
    int sw = 9, pw = (width - sw - 4) / 3;
    if (pw < 8)
        pw = 8;
    int rw = width - sw - pw - 4;
    if (rw < 8)
        rw = 8;
    rl_bar_clear();
    bar_clear();
    double sum = 0;
    for (int32_t i = 0; i < w->n; i++)
        sum += w->s[i];
    fprintf(stderr, "samples at step %lld (latest rollout: %d responses, mean score %.4g):\n",
            (long long)step, (int)w->n, sum / w->n);
    fprintf(stderr, "%*s  ", sw, "score");
    put_cell("prompt", pw, 1);
    fputs("  ", stderr);
    put_cell("response", rw, 0);
    fputc('\n', stderr);
    /* spread the rows over the rollout (GRPO groups are consecutive) */
    int32_t rows = c->sample_rows < w->n ? c->sample_rows : w->n;
    for (int32_t k = 0; k < rows; k++) {
        int32_t i = (int32_t)((int64_t)k * w->n / rows);
        fprintf(stderr, "%*.4g  ", sw, (double)w->s[i]);
        put_cell(w->p[i], pw, 1);
        fputs("  ", stderr);
        put_cell(w->r[i], rw, 0);
        fputc('\n', stderr);
    }
}
