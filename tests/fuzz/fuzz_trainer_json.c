/* fuzz_trainer_json.c — the checkpoint manifest reader (align_trainer_resume).
 * Setup saves a real checkpoint of a tiny SFT trainer (one step done) into a
 * temporary folder. trainer.json is itself the manifest (it carries the
 * digests of the model and optimizer files, not its own), so each input
 * replaces it verbatim and align_trainer_resume runs on a freshly built,
 * identical trainer. Property: the result is ALIGN_OK or an error code
 * (never a crash, leak or UB); on error the trainer is unchanged — its
 * optimizer has done no step and its next step's loss equals, bitwise, the
 * loss of a reference trainer that never tried to resume; on success a
 * step runs. The seeds in tests/fuzz/corpus/trainer_json/ are trainer.json
 * files saved by this setup (and variants). */
#include "fuzz_util.h"

#include <sys/stat.h>

typedef struct tiny {
    align_model *model;
    align_optimizer *opt;
    align_trainer *tr;
} tiny;

static align_tokenizer *tok;
static align_dataset *data;
static char dir[64], tjson[96];
static float ref_loss;
static tiny cur;

static void tiny_free(tiny *t)
{
    align_trainer_free(t->tr);
    align_optimizer_free(t->opt);
    align_model_free(t->model);
}

static void tiny_new(tiny *t)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = 1; p.n_head = 2; p.n_embd = 16; p.vocab_size = 260; p.max_seq_len = 16; p.seed = 7;
    align_sft_params sp;
    align_sft_default_params(&sp, sizeof sp);
    sp.micro_batch = 2; sp.max_seq_len = 16; sp.max_steps = 1000; sp.seed = 3;
    if (align_model_create(&t->model, &p) || align_optimizer_create(&t->opt, t->model, NULL) ||
        align_trainer_create_sft(&t->tr, t->model, tok, data, t->opt, &sp))
        abort();
}

static float step_loss(tiny *t)
{
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    FUZZ_CHECK(align_trainer_step(t->tr, &st) == ALIGN_OK);
    return st.loss;
}

static void setup(void)
{
    if (align_tokenizer_bytes(&tok) || align_dataset_create(&data))
        abort();
    const char *pr[] = { "hi", "2+2", "sky", "cat" }, *co[] = { "hello", "4", "blue", "meow" };
    for (int i = 0; i < 4; i++)
        if (align_dataset_add_demo(data, pr[i], co[i], NULL))
            abort();
    snprintf(dir, sizeof dir, "/dev/shm/align-fuzz-trainer-%d", (int)getpid());
    snprintf(tjson, sizeof tjson, "%s/trainer.json", dir);
    tiny a;
    tiny_new(&a);
    step_loss(&a);
    if (align_trainer_save(a.tr, dir))
        abort();
    tiny_free(&a);
    /* reference: the next step of a trainer that never resumed */
    tiny r;
    tiny_new(&r);
    ref_loss = step_loss(&r);
    tiny_free(&r);
    tiny_new(&cur);
    if (getenv("FUZZ_TRAINER_JSON_SEED")) { /* prints the saved trainer.json (seed corpus) */
        size_t n;
        char *s = fuzz_read(tjson, &n);
        fwrite(s, 1, n, stdout);
        free(s);
        fflush(stdout);
        _exit(0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    fuzz_init();
    if (!tok)
        setup();
    FILE *fp = fopen(tjson, "wb");
    if (!fp || fwrite(in, 1, size, fp) != size || fclose(fp))
        abort();
    int rc = align_trainer_resume(cur.tr, dir);
    FUZZ_CHECK(rc == ALIGN_OK || rc == ALIGN_EFORMAT || rc == ALIGN_EVERSION || rc == ALIGN_ENOENT ||
               rc == ALIGN_EINVAL || rc == ALIGN_ENOMEM || rc == ALIGN_EIO);
    if (rc != ALIGN_OK) {
        FUZZ_CHECK(align_optimizer_steps_done(cur.opt) == 0);
        float l = step_loss(&cur);
        FUZZ_CHECK(memcmp(&l, &ref_loss, sizeof l) == 0);
    } else {
        align_step_stats st;
        align_step_stats_init(&st, sizeof st);
        int rc2 = align_trainer_step(cur.tr, &st);
        FUZZ_CHECK(rc2 == ALIGN_OK || rc2 == ALIGN_DONE || rc2 == ALIGN_ENONFINITE);
    }
    /* a fresh trainer for the next input (a failed resume may have left files
     * alone, but the step above moved this one) */
    tiny_free(&cur);
    tiny_new(&cur);
    return 0;
}
