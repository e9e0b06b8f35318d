/* metrics.c — the --metrics file: one JSON object per line (JSON Lines),
 * written and read with jansson. Fields: docs/cli/sft.md. */
#include "alignctl.h"

#include <stdlib.h>

/* Adds the trainer's named metrics (align_trainer_metrics) of `which`,
 * each under prefix + name, except names the object already has. */
static void put_named(json_t *o, const align_trainer *tr, int32_t which, const char *prefix)
{
    const char *const *names = NULL;
    const double *values = NULL;
    int32_t n = 0;
    if (!tr || align_trainer_metrics(tr, which, &names, &values, &n) != 0)
        return;
    for (int32_t i = 0; i < n; i++) {
        char key[160];
        snprintf(key, sizeof key, "%s%s", prefix, names[i]);
        if (!json_object_get(o, key))
            json_put(o, key, json_num(values[i]));
    }
}

int metrics_write_step(FILE *f, const align_step_stats *st, double time,
                       const align_step_stats *eval)
{
    return metrics_write_step_tr(f, NULL, st, time, eval);
}

int metrics_write_step_tr(FILE *f, const align_trainer *tr, const align_step_stats *st, double time,
                          const align_step_stats *eval)
{
    json_t *o = json_object();
    if (!o)
        return -1;
    json_put(o, "step", json_integer(st->step));
    json_put(o, "epoch", json_integer(st->epoch));
    json_put(o, "loss", json_num(st->loss));
    json_put(o, "accuracy", json_num(st->accuracy));
    json_put(o, "lr", json_num(st->learning_rate));
    json_put(o, "grad_norm", json_num(st->grad_norm));
    json_put(o, "tokens", json_integer(st->tokens));
    json_put(o, "tokens_per_sec", json_num(st->tokens_per_sec));
    json_put(o, "time", json_num(time));
    if (eval) {
        json_put(o, "eval_loss", json_num(eval->loss));
        json_put(o, "eval_accuracy", json_num(eval->accuracy));
    }
    put_named(o, tr, ALIGN_METRICS_STEP, "");
    if (eval)
        put_named(o, tr, ALIGN_METRICS_EVAL, "eval_");
    int rc = json_print_line(f, o);
    fflush(f);
    return rc;
}

int metrics_write_eval(FILE *f, int64_t step, const align_step_stats *eval)
{
    return metrics_write_eval_tr(f, NULL, step, eval);
}

int metrics_write_eval_tr(FILE *f, const align_trainer *tr, int64_t step, const align_step_stats *eval)
{
    json_t *o = json_object();
    if (!o)
        return -1;
    json_put(o, "step", json_integer(step));
    json_put(o, "eval_loss", json_num(eval->loss));
    json_put(o, "eval_accuracy", json_num(eval->accuracy));
    put_named(o, tr, ALIGN_METRICS_EVAL, "eval_");
    int rc = json_print_line(f, o);
    fflush(f);
    return rc;
}

typedef struct {
    int64_t upto;
    double t;
} last_time_ctx;

static int last_time_line(long line, json_t *v, const char *err, void *ud)
{
    (void)line;
    (void)err;
    last_time_ctx *c = ud;
    json_t *st = json_object_get(v, "step"), *tm = json_object_get(v, "time");
    if (json_is_number(st) && json_is_number(tm) && json_number_value(st) <= (double)c->upto)
        c->t = json_number_value(tm);
    return 0; /* lines that are not JSON are skipped */
}

double metrics_last_time(const char *path, int64_t upto)
{
    char *buf;
    size_t len;
    if (read_file(path, &buf, &len) != 0)
        return 0;
    last_time_ctx c = {upto, 0};
    jsonl_each(buf, len, last_time_line, &c);
    free(buf);
    return c.t;
}
