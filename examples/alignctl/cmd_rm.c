/* cmd_rm.c — alignctl rm: reward-model training (rankings, preferences,
 * labels, scores) with progress, metrics, checkpoints, Ctrl-C and resume,
 * as `sft` does; --normalize-on sets the bias so reference responses score 0. */
#include "alignctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const HELP_RM =
    "usage: alignctl rm --model M --tokenizer TOK --data D.jsonl --out RM.safetensors\n"
    "                   [options]\n"
    "\n"
    "Trains a reward model on ranking ({\"prompt\",\"responses\",\"ranking\"}), preference\n"
    "({\"prompt\",\"chosen\",\"rejected\"}), label ({\"prompt\",\"response\",\"label\"}) and score\n"
    "({\"prompt\",\"response\",\"score\"}) records; other records are skipped. A model without\n"
    "a scalar head gets a fresh one. All responses of a prompt share one forward pass and\n"
    "the prompt's loss is averaged over its pairs. Checkpoints go to CKPT/step-N (CKPT is\n"
    "OUT without '.safetensors' plus '.ckpt', or --checkpoint-dir).\n"
    "\n"
    "length of training (one of):\n"
    "  --steps N           optimiser steps\n"
    "  --epochs N          passes over the data (default 1)\n"
    "batches:\n"
    "  --batch N           PROMPTS (records) per micro-batch (default 8)\n"
    "  --accum N           micro-batches per step (default 1)\n"
    "  --max-len N         tokens per sequence (default: the model's context)\n"
    "  --truncate MODE     left|right (default left: keeps the end, where the score is read)\n"
    "  --chat              build <user>prompt<eot><assistant>response<eot> (score with --chat too)\n"
    "  --lenient           skip malformed data lines instead of stopping\n"
    "loss:\n"
    "  --margin X          pair margin X * (rank difference) (default 0)\n"
    "  --center X          centering coefficient: X * mean(r^2) per prompt (default 0)\n"
    "  --ranking-weight X, --label-weight X, --score-weight X   (default 1 each)\n"
    "optimiser:\n"
    "  --lr X              peak learning rate (default 1e-4)\n"
    "  --schedule S        constant|linear|cosine (default constant)\n"
    "  --warmup N          linear warmup steps (default 0)\n"
    "  --min-lr-ratio X    decay floor as a fraction of --lr (default 0)\n"
    "  --weight-decay X    AdamW weight decay (default 0)\n"
    LORA_HELP
    "  --clip X            global gradient-norm clip, 0 = off (default 1.0)\n"
    "evaluation, normalisation and checkpoints:\n"
    "  --eval-data FILE    held-out JSONL; evaluated every --eval-every steps and at the end\n"
    "  --eval-every N      (default 0: only at the end)\n"
    "  --normalize-on FILE set the bias so the responses of FILE (e.g. demonstrations)\n"
    "                      score 0 on average; saved with the model\n"
    "  --save-every N      checkpoint every N steps (and at the end)\n"
    "  --checkpoint-dir D  where checkpoints go\n"
    "  --resume DIR        continue from a checkpoint (CKPT/step-N, CKPT/latest or CKPT)\n"
    "other:\n"
    "  --metrics FILE      one JSON object per step: step, epoch, lr, grad_norm, time and\n"
    "                      every named metric (loss, accuracy, margin, pairs, rewards/mean,\n"
    "                      rewards/std, ...); eval_<name> on evaluated steps\n"
    "  --threads N         CPU threads (default: all)\n"
    "  --compute MODE      fp32 (default) or bf16: bf16 matrix products, fp32 weights and\n"
    "                      optimizer (oneDNN; refused without AVX512_BF16 / AMX)\n"
    "  --seed S            data shuffling seed (default 1234)\n"
    "  --log-every N       plain log line every N steps when stderr is not a terminal\n"
    "  --quiet             no progress output\n"
    "Ctrl-C stops cleanly: a checkpoint is saved, the command to resume is printed,\n"
    "and alignctl exits with status 130.\n";

/* --normalize-on: every response of the file's records (a demo's completion,
 * a label or score record's response, each ranking or preference response). */
typedef struct norm_set {
    char **p, **r;
    int32_t n, cap;
} norm_set;

static int norm_push(norm_set *s, const char *p, const char *r)
{
    if (s->n == s->cap) {
        int32_t c = s->cap ? s->cap * 2 : 64;
        char **np = realloc(s->p, (size_t)c * sizeof *np);
        if (np)
            s->p = np;
        char **nr = realloc(s->r, (size_t)c * sizeof *nr);
        if (nr)
            s->r = nr;
        if (!np || !nr)
            return -1;
        s->cap = c;
    }
    s->p[s->n] = strdup(p);
    s->r[s->n] = strdup(r);
    if (!s->p[s->n] || !s->r[s->n])
        return -1;
    s->n++;
    return 0;
}

static int norm_line(long line, json_t *v, const char *err, void *ud)
{
    norm_set *s = ud;
    if (!v) {
        msg("--normalize-on: line %ld is not JSON: %s", line, err);
        return 1;
    }
    const char *p = json_string_value(json_object_get(v, "prompt"));
    if (!p)
        return 0; /* chats and other records are not used */
    static const char *const one[] = {"completion", "response", "chosen", "rejected"};
    for (int k = 0; k < 4; k++) {
        const char *r = json_string_value(json_object_get(v, one[k]));
        if (r && norm_push(s, p, r))
            return 2;
    }
    json_t *arr = json_object_get(v, "responses");
    for (size_t i = 0; json_is_array(arr) && i < json_array_size(arr); i++) {
        const char *r = json_string_value(json_array_get(arr, i));
        if (r && norm_push(s, p, r))
            return 2;
    }
    return 0;
}

static int normalize_on(align_model *m, const align_tokenizer *t, uint32_t chat, const char *path)
{
    char *buf;
    size_t len;
    if (read_file(path, &buf, &len) != 0) {
        msg("cannot read --normalize-on file '%s': %s", path, strerror(errno));
        return EXIT_RUNTIME;
    }
    norm_set s = {0};
    int r = jsonl_each(buf, len, norm_line, &s);
    free(buf);
    if (r == 2) {
        r = rt_fail(ALIGN_ENOMEM, NULL, "--normalize-on");
    } else if (r == 0 && s.n == 0) {
        msg("--normalize-on '%s' has no prompt/response record", path);
        r = EXIT_RUNTIME;
    } else if (r == 0) {
        align_reward_params rp;
        ALIGN_REWARD_DEFAULT_PARAMS(&rp);
        rp.flags = chat;
        align_reward_model *rm = NULL;
        int rc = align_reward_model_from_model(&rm, m, t, &rp);
        if (rc >= 0)
            rc = align_reward_model_normalize(rm, (const char *const *)s.p, (const char *const *)s.r, s.n, 0);
        if (rc < 0)
            r = rt_fail(rc, rm ? align_reward_model_errmsg(rm) : align_last_errmsg(), "--normalize-on failed");
        float bias = 0.0f, scale = 1.0f;
        if (rc >= 0 && align_reward_model_get_normalization(rm, &bias, &scale) >= 0)
            msg("normalised on %d responses of '%s': bias %.6g", (int)s.n, path, (double)bias);
        align_reward_model_free(rm);
    } else {
        r = EXIT_RUNTIME;
    }
    for (int32_t i = 0; i < s.n; i++) {
        free(s.p[i]);
        free(s.r[i]);
    }
    free(s.p);
    free(s.r);
    return r;
}

static int load_scalar_model(const char *path, align_model **out)
{
    if (!file_exists(path)) {
        msg("model '%s' not found (create one with 'alignctl init')", path);
        return EXIT_RUNTIME;
    }
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.flags = ALIGN_MODEL_SCALAR_HEAD; /* a fresh head if the file has none */
    int rc = align_model_load(out, path, &mp);
    return rc < 0 ? rt_fail(rc, align_last_errmsg(), "cannot load model '%s'", path) : 0;
}

int cmd_rm(int argc, char **argv)
{
    const char *model_path = NULL, *tok = NULL, *data_path = NULL, *norm_path = NULL, *v;
    train_opts to;
    train_opts_init(&to);
    align_reward_train_params sp;
    ALIGN_REWARD_TRAIN_DEFAULT_PARAMS(&sp);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_RM, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--data", &v)) {
            data_path = v;
        } else if (opt(argc, argv, &i, "--batch", &v)) {
            sp.micro_batch = parse_int("--batch", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--accum", &v)) {
            sp.grad_accum = parse_int("--accum", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--max-len", &v)) {
            sp.max_seq_len = parse_int("--max-len", v, 2, 1 << 20);
        } else if (opt(argc, argv, &i, "--truncate", &v)) {
            if (strcmp(v, "right") == 0)
                sp.truncation = ALIGN_TRUNCATE_RIGHT;
            else if (strcmp(v, "left") == 0)
                sp.truncation = ALIGN_TRUNCATE_LEFT;
            else
                usage_die("--truncate expects left or right, got '%s'", v);
        } else if (flag(a, "--chat")) {
            sp.flags |= ALIGN_REWARD_CHAT;
        } else if (opt(argc, argv, &i, "--margin", &v)) {
            sp.margin_scale = parse_float("--margin", v, -1e6, 1e6);
        } else if (opt(argc, argv, &i, "--center", &v)) {
            sp.center_coef = parse_float("--center", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--ranking-weight", &v)) {
            sp.ranking_weight = parse_float("--ranking-weight", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--label-weight", &v)) {
            sp.label_weight = parse_float("--label-weight", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--score-weight", &v)) {
            sp.score_weight = parse_float("--score-weight", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--normalize-on", &v)) {
            norm_path = v;
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            sp.seed = parse_u64("--seed", v);
        } else if (!train_opt(argc, argv, &i, &to)) {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required (the model to start from, e.g. the SFT model)");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!data_path)
        usage_die("--data is required (JSONL of ranking, preference, label or score records)");
    int r = train_opts_finish(&to);
    if (r)
        return r;
    sp.max_steps = to.steps;
    sp.epochs = to.epochs ? to.epochs : 1;
    if (require_inputs(model_path, tok, data_path, to.eval_path))
        return EXIT_RUNTIME;
    if (norm_path && !file_exists(norm_path)) {
        msg("--normalize-on file '%s' not found", norm_path);
        return EXIT_RUNTIME;
    }
    blas_setup(argv, to.threads);
    signals_install();
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    align_dataset *data = NULL, *evald = NULL;
    align_optimizer *o = NULL;
    align_trainer *tr = NULL;
    r = load_tokenizer(tok, &t);
    if (!r)
        r = load_scalar_model(model_path, &m);
    if (!r)
        r = check_vocab(m, t, tok);
    if (!r)
        r = train_lora_attach(&to, m, model_path);
    if (!r)
        r = load_dataset(data_path, to.lenient ? ALIGN_LENIENT : 0, &data);
    if (!r && to.eval_path)
        r = load_dataset(to.eval_path, to.lenient ? ALIGN_LENIENT : 0, &evald);
    if (r)
        goto out;
    /* planned steps: exact with --steps, an estimate (all records usable) by epochs */
    int64_t per_epoch = (align_dataset_size(data) + (int64_t)sp.micro_batch * sp.grad_accum - 1) /
                        ((int64_t)sp.micro_batch * sp.grad_accum);
    int64_t total = to.steps ? to.steps : per_epoch * sp.epochs;
    to.op.total_steps = total > INT32_MAX ? INT32_MAX : (int32_t)total;
    int rc = align_optimizer_create(&o, m, &to.op);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the optimizer");
        goto out;
    }
    rc = align_trainer_create_reward(&tr, m, t, data, o, &sp);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the reward-model trainer");
        goto out;
    }
    msg("training a reward model: %lld records%s, %s%lld steps, %d prompts x accum %d, lr %g",
        (long long)align_dataset_size(data), evald ? " (+ eval data)" : "", to.steps ? "" : "about ",
        (long long)total, (int)sp.micro_batch, (int)sp.grad_accum, (double)to.op.learning_rate);
    r = train_run(&to, argc, argv, tr, o, evald, m, total);
    /* the run is complete (not interrupted): normalise, then save again */
    if (r == 0 && norm_path && (r = normalize_on(m, t, sp.flags & ALIGN_REWARD_CHAT, norm_path)) == 0)
        r = train_save(&to, m);
out:
    signals_restore();
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_dataset_free(evald);
    align_dataset_free(data);
    align_model_free(m);
    align_tokenizer_free(t);
    return r;
}
