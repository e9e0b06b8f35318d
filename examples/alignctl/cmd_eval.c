/* cmd_eval.c — alignctl eval: loss, token accuracy and perplexity on a dataset;
 * on a reward model (scalar head) with feedback records: the reward loss,
 * pairwise accuracy and pairs. */
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
    "  --json          {\"loss\", \"accuracy\", \"perplexity\", \"tokens\", \"sequences\"}\n"
    "\n"
    "A model with a scalar head (a reward model) on ranking, preference, label or score\n"
    "records reports the reward-model loss, pairwise accuracy (ties excluded), pairs,\n"
    "margin and rewards/mean, rewards/std (--json: {\"loss\", \"accuracy\", \"pairs\", ...}).\n";

/* A reward model and feedback data: the reward trainer's evaluation. */
static int eval_reward(align_model *m, align_tokenizer *t, align_dataset *d, int32_t batch, int32_t max_len,
                       int as_json)
{
    align_reward_train_params rp;
    ALIGN_REWARD_TRAIN_DEFAULT_PARAMS(&rp);
    rp.micro_batch = batch;
    rp.max_seq_len = max_len;
    align_trainer *tr = NULL;
    int rc = align_trainer_create_reward(&tr, m, t, d, NULL, &rp);
    if (rc < 0)
        return rt_fail(rc, align_last_errmsg(), "cannot set up evaluation");
    int r = 0;
    const char *const *names;
    const double *values;
    int32_t n = 0;
    if ((rc = align_trainer_evaluate(tr, d, NULL)) < 0 ||
        (rc = align_trainer_metrics(tr, ALIGN_METRICS_EVAL, &names, &values, &n)) < 0) {
        r = rt_fail(rc, align_trainer_errmsg(tr), "evaluation failed");
    } else if (as_json) {
        json_t *o = json_object();
        for (int32_t i = 0; o && i < n; i++)
            json_put(o, names[i], json_num(values[i]));
        if (!o || json_print_line(stdout, o) != 0)
            r = rt_fail(ALIGN_ENOMEM, NULL, "cannot write the output");
    } else {
        for (int32_t i = 0; i < n; i++)
            printf("%-14s %.6g\n", names[i], values[i]);
    }
    align_trainer_free(tr);
    return r;
}

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
    align_model_params cfg;
    ALIGN_MODEL_DEFAULT_PARAMS(&cfg);
    int feedback = 0;
    for (int64_t i = 0; i < align_dataset_size(d) && !feedback; i++) {
        int k = align_dataset_record_kind(d, i);
        feedback = k == ALIGN_RECORD_RANKING || k == ALIGN_RECORD_LABEL || k == ALIGN_RECORD_SCORE;
    }
    if (feedback && align_model_config(m, &cfg) >= 0 && (cfg.flags & ALIGN_MODEL_SCALAR_HEAD)) {
        r = eval_reward(m, t, d, sp.micro_batch, sp.max_seq_len, as_json);
        goto out;
    }
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

