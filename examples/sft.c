/* sft.c — supervised fine-tuning from a JSONL file of demonstrations
 * ({"prompt": ..., "completion": ...} per line), with samples before and
 * after, held-out loss and exact-match accuracy.
 *
 *   sft TRAIN.jsonl [--eval TEST.jsonl] [--model W.safetensors --tokenizer T]
 *       [--layers 4 --heads 4 --embd 128 --ctx 128] [--steps 500] [--batch 16]
 *       [--accum 1] [--lr 1e-3] [--samples 3] [--save DIR] [--seed 1] [--threads 0]
 *
 * Without --model a new model is trained from scratch with the 257-symbol
 * byte tokenizer. Ctrl-C stops training cleanly between micro-batches.
 */
#include "align.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static align_trainer *g_trainer; /* for the SIGINT handler */

static void on_sigint(int sig)
{
    (void)sig;
    if (g_trainer)
        align_trainer_request_stop(g_trainer); /* async-signal-safe */
}

static int die(const char *what, int rc, const char *msg)
{
    fprintf(stderr, "sft: %s: %s (%s)\n", what, msg, align_err_name(rc));
    exit(1);
}

/* The string member `key` of a one-level JSON object (as
 * align_dataset_record_json writes it); ASCII escapes only. */
static char *json_field(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p++ != '"')
        return NULL;
    char *out = malloc(strlen(p) + 1), *o = out;
    for (; *p && *p != '"'; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'u': *o++ = (char)strtol((char[]){p[1], p[2], p[3], p[4], 0}, NULL, 16); p += 4; break;
        default: *o++ = *p; break;
        }
    }
    *o = 0;
    return out;
}

typedef struct { int n; char **prompt, **completion; } demos;

static demos read_demos(const align_dataset *d)
{
    demos x = {0, NULL, NULL};
    int64_t n = align_dataset_size(d);
    x.prompt = calloc((size_t)n + 1, sizeof(char *));
    x.completion = calloc((size_t)n + 1, sizeof(char *));
    for (int64_t i = 0; i < n; i++) {
        char *json = NULL;
        if (align_dataset_record_kind(d, i) != ALIGN_RECORD_DEMO || align_dataset_record_json(d, i, &json))
            continue;
        x.prompt[x.n] = json_field(json, "prompt");
        x.completion[x.n] = json_field(json, "completion");
        if (x.prompt[x.n] && x.completion[x.n]) {
            x.n++;
        } else {
            free(x.prompt[x.n]);
            free(x.completion[x.n]);
            x.prompt[x.n] = x.completion[x.n] = NULL;
        }
        align_free(json);
    }
    return x;
}

/* Greedy answers to prompts [0, n); returns how many equal their completion
 * exactly, and prints the first `show`. */
static int answer(align_model *m, const align_tokenizer *t, const demos *x, int n, int show, const char *title)
{
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = 0.0f;
    gp.max_new_tokens = 96;
    int exact = 0;
    if (show)
        printf("\n--- %s ---\n", title);
    for (int i0 = 0; i0 < n; i0 += 32) {
        int k = n - i0 < 32 ? n - i0 : 32;
        align_generation *g = NULL;
        int rc = align_generate(m, t, (const char *const *)x->prompt + i0, k, &gp, &g);
        if (rc)
            die("generate", rc, align_model_errmsg(m));
        for (int i = 0; i < k; i++) {
            const char *text = align_generation_text(g, i, NULL);
            int ok = strcmp(text, x->completion[i0 + i]) == 0;
            exact += ok;
            if (i0 + i < show)
                printf("%s%s   [%s]\n", x->prompt[i0 + i], text, ok ? "exact" : "wrong");
        }
        align_generation_free(g);
    }
    return exact;
}

int main(int argc, char **argv)
{
    const char *train_path = NULL, *eval_path = NULL, *model_path = NULL, *tok_path = NULL, *save_dir = NULL;
    int layers = 4, heads = 4, embd = 128, ctx = 128, steps = 500, batch = 16, accum = 1, samples = 3;
    int threads = 0;
    long seed = 1;
    float lr = 1e-3f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') { train_path = a; continue; }
        if (!v) { fprintf(stderr, "sft: %s needs a value\n", a); return 2; }
        i++;
        if (!strcmp(a, "--eval")) eval_path = v;
        else if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--tokenizer")) tok_path = v;
        else if (!strcmp(a, "--save")) save_dir = v;
        else if (!strcmp(a, "--layers")) layers = atoi(v);
        else if (!strcmp(a, "--heads")) heads = atoi(v);
        else if (!strcmp(a, "--embd")) embd = atoi(v);
        else if (!strcmp(a, "--ctx")) ctx = atoi(v);
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--accum")) accum = atoi(v);
        else if (!strcmp(a, "--samples")) samples = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--seed")) seed = atol(v);
        else if (!strcmp(a, "--lr")) lr = (float)atof(v);
        else { fprintf(stderr, "sft: unknown option %s\n", a); return 2; }
    }
    if (!train_path) {
        fprintf(stderr, "usage: sft TRAIN.jsonl [--eval TEST.jsonl] [--steps N] ... (see examples/sft.c)\n");
        return 2;
    }
    align_threads_set(threads);

    /* tokenizer and model: loaded, or new with the byte tokenizer */
    align_tokenizer *tok = NULL;
    align_model *model = NULL;
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.seed = (uint64_t)seed;
    int rc = tok_path ? align_tokenizer_load(&tok, tok_path) : align_tokenizer_bytes(&tok);
    if (rc)
        die("tokenizer", rc, align_last_errmsg());
    if (model_path) {
        rc = align_model_load(&model, model_path, &mp);
    } else {
        mp.n_layer = layers;
        mp.n_head = heads;
        mp.n_embd = embd;
        mp.max_seq_len = ctx;
        mp.vocab_size = align_tokenizer_vocab_size(tok);
        rc = align_model_create(&model, &mp);
    }
    if (rc)
        die("model", rc, align_last_errmsg());
    printf("model: %lld parameters; BLAS: %s; %d threads\n", (long long)align_model_num_params(model),
           align_blas_info(), align_threads_get());

    align_dataset *train = NULL, *eval = NULL;
    align_dataset_create(&train);
    if ((rc = align_dataset_load_jsonl(train, train_path, 0)))
        die("training data", rc, align_dataset_errmsg(train));
    if (eval_path) {
        align_dataset_create(&eval);
        if ((rc = align_dataset_load_jsonl(eval, eval_path, 0)))
            die("eval data", rc, align_dataset_errmsg(eval));
    }
    demos shown = read_demos(eval ? eval : train);
    printf("data: %lld training records%s\n", (long long)align_dataset_size(train),
           eval ? ", plus a held-out set" : "");

    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = lr;
    op.schedule = ALIGN_SCHEDULE_COSINE;
    op.warmup_steps = steps / 20;
    op.total_steps = steps;
    op.min_lr_ratio = 0.1f;
    op.weight_decay = 0.01f;
    align_optimizer *opt = NULL;
    if ((rc = align_optimizer_create(&opt, model, &op)))
        die("optimizer", rc, align_last_errmsg());

    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = batch;
    sp.grad_accum = accum;
    sp.max_steps = steps;
    sp.seed = (uint64_t)seed;
    sp.max_seq_len = ctx; /* row length: at most the model's context */
    align_trainer *tr = NULL;
    if ((rc = align_trainer_create_sft(&tr, model, tok, train, opt, &sp)))
        die("trainer", rc, align_last_errmsg());

    answer(model, tok, &shown, samples, samples, "samples before training");

    g_trainer = tr;
    signal(SIGINT, on_sigint);
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    while ((rc = align_trainer_step(tr, &st)) == ALIGN_OK) {
        if (st.step % 50 == 0 || st.step == 1 || st.skipped)
            printf("step %5lld  loss %.4f  acc %.3f  lr %.2e  |g| %.3f  %.0f tok/s%s\n", (long long)st.step,
                   (double)st.loss, (double)st.accuracy, (double)st.learning_rate, (double)st.grad_norm,
                   (double)st.tokens_per_sec, st.skipped ? "  (skipped: non-finite)" : "");
    }
    if (rc == ALIGN_ECANCELED)
        printf("stopped at step %lld\n", (long long)st.step);
    else if (rc != ALIGN_DONE)
        die("step", rc, align_trainer_errmsg(tr));

    if (eval) {
        align_step_stats ev;
        align_step_stats_init(&ev, sizeof ev);
        if ((rc = align_trainer_evaluate(tr, eval, &ev)))
            die("evaluate", rc, align_trainer_errmsg(tr));
        int exact = answer(model, tok, &shown, shown.n, 0, NULL);
        printf("\nheld-out: loss %.4f, next-token accuracy %.3f, exact match %d/%d (%.1f%%)\n", (double)ev.loss,
               (double)ev.accuracy, exact, shown.n, 100.0 * exact / (shown.n ? shown.n : 1));
    }
    answer(model, tok, &shown, samples, samples, "samples after training");
    if (save_dir) {
        if ((rc = align_trainer_save(tr, save_dir)))
            die("save", rc, align_trainer_errmsg(tr));
        printf("checkpoint: %s\n", save_dir);
    }

    g_trainer = NULL;
    align_trainer_free(tr);
    align_optimizer_free(opt);
    align_dataset_free(train);
    align_dataset_free(eval);
    align_model_free(model);
    align_tokenizer_free(tok);
    for (int i = 0; i < shown.n; i++) {
        free(shown.prompt[i]);
        free(shown.completion[i]);
    }
    free(shown.prompt);
    free(shown.completion);
    return 0;
}
