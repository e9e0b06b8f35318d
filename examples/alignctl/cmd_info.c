/* cmd_info.c — alignctl info: what a model file holds. The file is loaded
 * through the library (align_model_load checks the header, every tensor's
 * offsets and the data checksum); its configuration, parameter count and
 * tensor table then come from the loaded model. */
#include "alignctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const HELP_INFO =
    "usage: alignctl info MODEL.safetensors [--json]\n"
    "\n"
    "Shows a model file: architecture, parameter count, the tensors with their\n"
    "dtypes and shapes, file size. The file is loaded and checked by libalign;\n"
    "dtypes are those in memory (BF16 / F16 files are converted to F32 on load).\n"
    "\n"
    "  --json   one JSON object instead of text\n";

typedef struct {
    const char *name;
    int32_t ndim;
    int64_t shape[2];
} tensor_row;

static int by_name(const void *a, const void *b)
{
    return strcmp(((const tensor_row *)a)->name, ((const tensor_row *)b)->name);
}

/* The model's tensors sorted by name (the order of the file's header). */
static int tensor_table(const align_model *m, tensor_row **out, int32_t *n_out)
{
    int32_t n = align_model_num_tensors(m);
    if (n < 0)
        return rt_fail(n, align_model_errmsg(m), "cannot list the tensors");
    tensor_row *rows = calloc(n ? (size_t)n : 1, sizeof *rows);
    if (!rows)
        return rt_fail(ALIGN_ENOMEM, NULL, "info");
    for (int32_t i = 0; i < n; i++) {
        int rc = align_model_tensor(m, i, &rows[i].name, &rows[i].ndim, rows[i].shape);
        if (rc < 0) {
            free(rows);
            return rt_fail(rc, align_model_errmsg(m), "cannot read tensor %d", (int)i);
        }
    }
    qsort(rows, (size_t)n, sizeof *rows, by_name);
    *out = rows;
    *n_out = n;
    return 0;
}

static int print_json(const char *path, long long fsize, const align_model_params *c,
                      long long nparams, const tensor_row *rows, int32_t n)
{
    json_t *o = json_object(), *ts = json_array();
    if (!o || !ts) {
        json_decref(o);
        json_decref(ts);
        return rt_fail(ALIGN_ENOMEM, NULL, "info");
    }
    json_put(o, "file", json_bytes(path, strlen(path)));
    json_put(o, "bytes", json_integer(fsize));
    json_put(o, "arch", json_string(c->arch == ALIGN_ARCH_LLAMA ? "llama" : "gpt2"));
    if (c->arch == ALIGN_ARCH_LLAMA) {
        json_put(o, "n_kv_head", json_integer(c->n_kv_head));
        json_put(o, "intermediate_size", json_integer(c->intermediate_size));
        json_put(o, "rope_theta", json_real(c->rope_theta));
        json_put(o, "norm_eps", json_real(c->norm_eps));
        json_put(o, "untied_head", json_boolean((c->flags & ALIGN_MODEL_UNTIED_HEAD) != 0));
        json_put(o, "qkv_bias", json_boolean((c->flags & ALIGN_MODEL_QKV_BIAS) != 0));
    }
    json_put(o, "n_layer", json_integer(c->n_layer));
    json_put(o, "n_head", json_integer(c->n_head));
    json_put(o, "n_embd", json_integer(c->n_embd));
    json_put(o, "vocab_size", json_integer(c->vocab_size));
    json_put(o, "max_seq_len", json_integer(c->max_seq_len));
    json_put(o, "scalar_head", json_boolean((c->flags & ALIGN_MODEL_SCALAR_HEAD) != 0));
    json_put(o, "parameters", json_integer(nparams));
    for (int32_t i = 0; i < n; i++) {
        json_t *sh = json_array();
        for (int32_t d = 0; sh && d < rows[i].ndim; d++)
            json_array_append_new(sh, json_integer(rows[i].shape[d]));
        json_array_append_new(ts, json_pack("{s:s, s:s, s:o*}", "name", rows[i].name, "dtype",
                                            "F32", "shape", sh));
    }
    json_put(o, "tensors", ts);
    if (json_print_line(stdout, o) != 0) {
        msg("cannot write the output");
        return EXIT_RUNTIME;
    }
    return 0;
}

static void print_text(const char *path, long long fsize, const align_model_params *c,
                       long long nparams, const tensor_row *rows, int32_t n)
{
    char sz[32];
    fmt_bytes(sz, sizeof sz, (double)fsize);
    printf("file:         %s\n", path);
    printf("size:         %lld bytes (%s)\n", fsize, sz);
    printf("arch:         %s\n", c->arch == ALIGN_ARCH_LLAMA ? "llama" : "gpt2");
    if (c->arch == ALIGN_ARCH_LLAMA)
        printf("kv heads:     %d\nmlp width:    %d\nrope theta:   %g\nnorm eps:     %g\n"
               "untied head:  %s\nqkv bias:     %s\n",
               (int)c->n_kv_head, (int)c->intermediate_size, (double)c->rope_theta, (double)c->norm_eps,
               (c->flags & ALIGN_MODEL_UNTIED_HEAD) ? "yes" : "no", (c->flags & ALIGN_MODEL_QKV_BIAS) ? "yes" : "no");
    printf("layers:       %d\nheads:        %d\nwidth:        %d\n", (int)c->n_layer,
           (int)c->n_head, (int)c->n_embd);
    printf("vocab:        %d\ncontext:      %d\nscalar head:  %s\n", (int)c->vocab_size,
           (int)c->max_seq_len, (c->flags & ALIGN_MODEL_SCALAR_HEAD) ? "yes" : "no");
    printf("parameters:   %lld\n", nparams);
    printf("tensors:      %d\n", (int)n);
    size_t w = 4;
    for (int32_t i = 0; i < n; i++)
        if (strlen(rows[i].name) > w)
            w = strlen(rows[i].name);
    for (int32_t i = 0; i < n; i++) {
        printf("  %-*s  %-5s [", (int)w, rows[i].name, "F32");
        for (int32_t d = 0; d < rows[i].ndim; d++)
            printf("%s%lld", d ? ", " : "", (long long)rows[i].shape[d]);
        printf("]\n");
    }
}

int cmd_info(int argc, char **argv)
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
    struct stat st;
    if (stat(path, &st) != 0) {
        msg("model '%s' not found", path);
        return EXIT_RUNTIME;
    }
    blas_quiet();
    align_model *m = NULL;
    int r = load_model(path, &m);
    if (r)
        return r;
    align_model_params c;
    ALIGN_MODEL_DEFAULT_PARAMS(&c);
    tensor_row *rows = NULL;
    int32_t n = 0;
    int rc = align_model_config(m, &c);
    if (rc < 0)
        r = rt_fail(rc, align_model_errmsg(m), "cannot read the configuration");
    if (!r)
        r = tensor_table(m, &rows, &n);
    if (!r) {
        long long nparams = (long long)align_model_num_params(m);
        if (as_json)
            r = print_json(path, (long long)st.st_size, &c, nparams, rows, n);
        else
            print_text(path, (long long)st.st_size, &c, nparams, rows, n);
    }
    free(rows);
    align_model_free(m);
    return r;
}
