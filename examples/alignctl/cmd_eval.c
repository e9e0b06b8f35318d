/* cmd_eval.c — alignctl eval: loss, token accuracy and perplexity on a dataset. */
#include "alignctl.h"

#include <math.h>
#include <string.h>

static const char *const HELP_EVAL =
    "usage: alignctl eval --model M --tokenizer TOK --data D.jsonl [options]\n"
    "\n"
    "Mean loss and next-token accuracy over the completion tokens of every record\n"
    "(the same loss SFT trains), with the perplexity exp(loss).\n"
    "\n"
    "  --batch N       sequences per forward pass (default 8)\n"
    "  --max-len N     tokens per row (default: the model's context)\n"
    "  --full-loss     count prompt tokens too\n"
    "  --lenient       skip malformed data lines\n"
    "  --threads N     CPU threads (default: all)\n"
    "  --json          {\"loss\", \"accuracy\", \"perplexity\", \"tokens\", \"sequences\"}\n";

int cmd_eval(int argc, char **argv)
{
    const char *model_path = NULL, *tok = NULL, *data_path = NULL, *v;
    int threads = 0, as_json = 0, lenient = 0;
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_EVAL, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--data", &v)) {
            data_path = v;
        } else if (opt(argc, argv, &i, "--batch", &v)) {
            sp.micro_batch = parse_int("--batch", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--max-len", &v)) {
            sp.max_seq_len = parse_int("--max-len", v, 2, 1 << 20);
        } else if (opt(argc, argv, &i, "--threads", &v)) {
            threads = parse_int("--threads", v, 1, 4096);
        } else if (flag(a, "--full-loss")) {
            sp.flags |= ALIGN_SFT_FULL_SEQUENCE_LOSS;
        } else if (flag(a, "--lenient")) {
            lenient = 1;
        } else if (flag(a, "--json")) {
            as_json = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!data_path)
        usage_die("--data is required (JSONL of {\"prompt\",\"completion\"} records)");
    if (require_inputs(model_path, tok, data_path, NULL))
        return EXIT_RUNTIME;
    blas_setup(argv, threads);
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    align_dataset *d = NULL;
    align_trainer *tr = NULL;
    int r = load_tokenizer(tok, &t);
    if (!r)
        r = load_model(model_path, &m);
    if (!r)
        r = check_vocab(m, t, tok);
    if (!r)
        r = load_dataset(data_path, lenient ? ALIGN_LENIENT : 0, &d);
    if (r)
        goto out;
    /* An evaluation-only trainer: no optimizer, so no moments are allocated. */
    int rc = align_trainer_create_sft(&tr, m, t, d, NULL, &sp);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot set up evaluation");
        goto out;
    }
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    rc = align_trainer_evaluate(tr, d, &st);
    if (rc < 0) {
        r = rt_fail(rc, align_trainer_errmsg(tr), "evaluation failed");
        goto out;
    }
    if (as_json) {
        json_t *o = json_object();
        if (!o) {
            r = rt_fail(ALIGN_ENOMEM, NULL, "eval");
            goto out;
        }
        json_put(o, "loss", json_num(st.loss));
        json_put(o, "accuracy", json_num(st.accuracy));
        json_put(o, "perplexity", json_num(exp((double)st.loss)));
        json_put(o, "tokens", json_integer(st.tokens));
        json_put(o, "sequences", json_integer(st.sequences));
        if (json_print_line(stdout, o) != 0) {
            msg("cannot write the output");
            r = EXIT_RUNTIME;
        }
    } else {
        printf("loss        %.6f\naccuracy    %.6f\nperplexity  %.4f\ntokens      %lld\n"
               "sequences   %lld\n",
               st.loss, st.accuracy, exp((double)st.loss), (long long)st.tokens,
               (long long)st.sequences);
    }
out:
    align_trainer_free(tr);
    align_dataset_free(d);
    align_model_free(m);
    align_tokenizer_free(t);
    return r;
}

