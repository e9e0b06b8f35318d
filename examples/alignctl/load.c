/* load.c — what several subcommands load (tokenizer, model, dataset) with
 * clear messages, and the BLAS set-up before heavy math. */
#include "alignctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void tokenizer_not_found(const char *spec)
{
    msg("tokenizer '%s' not found: give a tokenizer.json file, a folder with encoder.json "
        "and vocab.bpe, or 'bytes'",
        spec);
}

int require_inputs(const char *model, const char *tok, const char *data, const char *eval)
{
    if (model && !file_exists(model)) {
        msg("model '%s' not found (create one with 'alignctl init')", model);
        return EXIT_RUNTIME;
    }
    if (tok && strcmp(tok, "bytes") != 0 && !file_exists(tok)) {
        tokenizer_not_found(tok);
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
int load_tokenizer(const char *spec, align_tokenizer **out)
{
    *out = NULL;
    int rc;
    if (strcmp(spec, "bytes") == 0) {
        rc = align_tokenizer_bytes(out);
        return rc < 0 ? rt_fail(rc, align_last_errmsg(), "byte tokenizer") : 0;
    }
    if (!file_exists(spec)) {
        tokenizer_not_found(spec);
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

int load_model(const char *path, align_model **out)
{
    *out = NULL;
    if (!file_exists(path)) {
        msg("model '%s' not found (create one with 'alignctl init')", path);
        return EXIT_RUNTIME;
    }
    int rc = align_model_load(out, path, NULL);
    if (rc >= 0)
        return 0;
    int r = rt_fail(rc, align_last_errmsg(), "cannot load model '%s'", path);
    if (rc == ALIGN_EFORMAT)
        msg("'%s' is not a safetensors file libalign accepts (truncated, another format, a "
            "corrupt header or data, or an architecture libalign does not implement: the reason "
            "is above)",
            path);
    return r;
}

int load_dataset(const char *path, uint32_t flags, align_dataset **out)
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

int check_vocab(const align_model *m, const align_tokenizer *t, const char *tok_spec)
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

/* The library decides whether the running BLAS kernel is a slow fallback for
 * this CPU (align_blas_slow_kernel) and names the OPENBLAS_CORETYPE value
 * that fixes it. OpenBLAS reads that variable only when it loads, so the
 * remedy is to run again with it set (docs/cli/README.md): done once (the new
 * process has the variable set), unless ALIGNCTL_NO_REEXEC is set. */
void blas_setup(char **argv, int threads)
{
    log_capture(1);
    log_held_clear();
    const char *info = align_blas_info();
    log_capture(0);
    const char *remedy = NULL;
    int slow = align_blas_slow_kernel(&remedy) == 1 && remedy;
    if (slow && !getenv("OPENBLAS_CORETYPE") && !getenv("ALIGNCTL_NO_REEXEC")) {
        msg("%s runs slow fallback kernels on this CPU; re-running with OPENBLAS_CORETYPE=%s "
            "(set ALIGNCTL_NO_REEXEC=1 to prevent this)",
            info, remedy);
        fflush(NULL);
        if (setenv("OPENBLAS_CORETYPE", remedy, 1) == 0) {
            execv("/proc/self/exe", argv);
            msg("could not re-run (%s); continuing with the slow kernels", strerror(errno));
        }
    }
    if (log_held()[0]) {
        fputs(log_held(), stderr);
        if (slow && strstr(log_held(), "OPENBLAS_CORETYPE") && getenv("OPENBLAS_CORETYPE"))
            msg("hint: OPENBLAS_CORETYPE=%s is set but selects slow kernels on this CPU; "
                "export OPENBLAS_CORETYPE=%s instead",
                getenv("OPENBLAS_CORETYPE"), remedy);
        else if (slow && strstr(log_held(), "OPENBLAS_CORETYPE"))
            msg("hint: export OPENBLAS_CORETYPE=%s and run again; alignctl does this itself "
                "unless ALIGNCTL_NO_REEXEC is set",
                remedy);
        log_held_clear();
    }
    if (threads > 0) {
        int rc = align_threads_set(threads);
        if (rc < 0)
            msg("could not set %d threads (%s)", threads, align_err_name(rc));
    }
    msg("libalign %s, BLAS: %s, threads: %d, compute: %s", align_version_string(), info,
        align_threads_get(), align_compute_get() == ALIGN_COMPUTE_BF16 ? "bf16" : "fp32");
}

int compute_apply(int mode)
{
    if (mode < 0)
        return 0;
    int rc = align_compute_set(mode);
    if (rc < 0) {
        rt_fail(rc, align_last_errmsg(), "--compute %s is not available",
                mode == ALIGN_COMPUTE_BF16 ? "bf16" : "fp32");
        msg("stopping rather than computing in another mode (leave out --compute for fp32)");
        return EXIT_RUNTIME;
    }
    return 0;
}

void blas_quiet(void)
{
    log_capture(1);
    (void)align_blas_info();
    log_capture(0);
    log_held_clear();
}
