/* fuzz_optim.c — the optimizer-state reader (align_optimizer_load): a bad
 * file is ALIGN_EFORMAT with the optimizer unchanged; a good one leaves
 * finite moments with exp_avg_sq >= 0 (read back through
 * align_optimizer_save), and the next step runs. Finite moments can still be
 * mutually inconsistent (|exp_avg| >> sqrt(exp_avg_sq)) and give huge
 * weights: the file does not record the betas the invariant depends on, so
 * that is not checked (docs/reliability.md). The model is
 * the one the seeds in tests/fuzz/corpus/optim/ were saved from
 * (align_optimizer_save before and after one step). */
#include "fuzz_util.h"
#include "model/safetensors.h"

#include <math.h>

static align_model *model;
static align_optimizer *opt;

static void setup(void)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = 1; p.n_head = 2; p.n_embd = 8; p.vocab_size = 13; p.max_seq_len = 8; p.seed = 1;
    if (align_model_create(&model, &p) || align_optimizer_create(&opt, model, NULL))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    if (!model)
        setup();
    fuzz_file in;
    fuzz_file_open(&in, "optim", data, size);
    int64_t before = align_optimizer_steps_done(opt);
    int rc = align_optimizer_load(opt, in.path);
    fuzz_file_close(&in);
    FUZZ_CHECK(rc == ALIGN_OK || rc == ALIGN_EFORMAT || rc == ALIGN_ENOMEM);
    if (rc != ALIGN_OK) {
        FUZZ_CHECK(align_optimizer_steps_done(opt) == before);
        return 0;
    }
    /* what was loaded, read back */
    char out[64];
    snprintf(out, sizeof out, "/dev/shm/align-fuzz-optim-%d.safetensors", (int)getpid());
    FUZZ_CHECK(align_optimizer_save(opt, out) == ALIGN_OK);
    align__errbuf eb = { { 0 } };
    align__st_file f;
    FUZZ_CHECK(align__st_open(&eb, out, &f) == ALIGN_OK);
    int nd;
    int64_t sh[2];
    const float *m, *v;
    FUZZ_CHECK(align__st_shape(&f, "exp_avg", &nd, sh));
    FUZZ_CHECK(align__st_get(&eb, &f, "exp_avg", 1, sh, &m) == ALIGN_OK);
    FUZZ_CHECK(align__st_get(&eb, &f, "exp_avg_sq", 1, sh, &v) == ALIGN_OK);
    for (int64_t i = 0; i < sh[0]; i++)
        FUZZ_CHECK(isfinite(m[i]) && isfinite(v[i]) && v[i] >= 0.0f);
    align__st_close(&f);
    unlink(out);
    /* one update from the loaded state runs */
    int32_t tok[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, len[1] = { 8 };
    float lp[7], dl[7] = { -0.1f, -0.1f, -0.1f, -0.1f, -0.1f, -0.1f, -0.1f };
    FUZZ_CHECK(align_model_forward(model, tok, len, 1, 8, lp, NULL, NULL) == ALIGN_OK);
    FUZZ_CHECK(align_model_backward(model, dl, NULL) == ALIGN_OK);
    int rc2 = align_optimizer_step(opt, NULL);
    FUZZ_CHECK(rc2 == ALIGN_OK || rc2 == ALIGN_ENONFINITE);
    /* fresh weights and moments for the next input */
    align_optimizer_free(opt);
    align_model_free(model);
    setup();
    return 0;
}
