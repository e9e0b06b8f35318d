/* cmd_plot.c — alignctl plot: a metrics file as a self-contained SVG. */
#include "alignctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    const char *in, *xkey;
    series *S;
    size_t ns, scap, records;
    int have_x;
} plot_ctx;

/* One metrics record: every numeric field but the x key extends its series. */
static int plot_line(long line, json_t *o, const char *err, void *ud)
{
    plot_ctx *c = ud;
    if (!json_is_object(o)) {
        msg("%s:%ld: not a JSON object%s%s", c->in, line, err ? ": " : "", err ? err : "");
        return EXIT_RUNTIME;
    }
    c->records++;
    json_t *xv = json_object_get(o, c->xkey);
    double x = (double)c->records;
    if (json_is_number(xv)) {
        x = json_number_value(xv);
        c->have_x = 1;
    }
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val)
    {
        if (!json_is_number(val) || strcmp(key, c->xkey) == 0)
            continue;
        size_t j = 0;
        while (j < c->ns && strcmp(c->S[j].name, key) != 0)
            j++;
        if (j == c->ns) {
            if (c->ns == c->scap) {
                size_t cap = c->scap ? c->scap * 2 : 16;
                series *nS = realloc(c->S, cap * sizeof *nS);
                if (!nS)
                    return rt_fail(ALIGN_ENOMEM, NULL, "plot");
                c->S = nS;
                c->scap = cap;
            }
            memset(&c->S[c->ns], 0, sizeof c->S[c->ns]);
            if (!(c->S[c->ns].name = strdup(key)))
                return rt_fail(ALIGN_ENOMEM, NULL, "plot");
            c->ns++;
        }
        if (series_push(&c->S[j], x, json_number_value(val)))
            return rt_fail(ALIGN_ENOMEM, NULL, "plot");
    }
    return 0;
}

int cmd_plot(int argc, char **argv)
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
    plot_ctx c = {in, xkey, NULL, 0, 0, 0, 0};
    int r = jsonl_each(buf, len, plot_line, &c);
    series *S = c.S;
    size_t ns = c.ns, records = c.records;
    int have_x = c.have_x;
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

