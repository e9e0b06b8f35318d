/* cmd_dpo.c — alignctl dpo and alignctl kto: preference optimisation with
 * progress, metrics (every named metric), checkpoints, Ctrl-C and resume;
 * the same shape as cmd_sft.c. */
#include "alignctl.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const HELP_DPO =
    "usage: alignctl dpo --model M --tokenizer TOK --data D.jsonl --out OUT.safetensors\n"
    "                    [--reference R] [options]\n"
    "\n"
    "Direct preference optimisation (and its variants) on {\"prompt\",\"chosen\",\"rejected\"}\n"
    "and {\"prompt\",\"responses\",\"ranking\"} records. The reference is R, or by default a\n"
    "frozen copy of the starting model M; its log-probabilities are computed once per\n"
    "record and cached (saved with checkpoints). Saves the model to OUT at the end;\n"
    "checkpoints go to CKPT/step-N (CKPT: OUT without '.safetensors' plus '.ckpt', or\n"
    "--checkpoint-dir), CKPT/latest points to the newest one.\n"
    "\n"
    "objective:\n"
    "  --loss L            sigmoid|ipo|hinge|robust|simpo|orpo (default sigmoid = DPO)\n"
    "  --beta X            strength beta (IPO: tau, ORPO: lambda) (default 0.1)\n"
    "  --label-smoothing X assumed share of flipped labels (cDPO / robust) (default 0)\n"
    "  --simpo-gamma X     SimPO target margin (default 0.5)\n"
    "  --sft-alpha X       adds X * NLL of the chosen response (RPO) (default 0)\n"
    "  --length-norm       sigmoid/robust/hinge on mean token log-probs\n"
    "  --ranking MODE      all-pairs|best-vs-rest|plackett-luce for K > 2 responses\n"
    "                      (default all-pairs)\n"
    "  --reference R       the frozen reference model (default: a copy of --model)\n"
    "  --no-ref-cache      run the reference every step instead of caching it\n"
    "length of training (one of):\n"
    "  --steps N           optimiser steps\n"
    "  --epochs N          passes over the data (default 1)\n"
    "batches:\n"
    "  --batch N           records per micro-batch, all responses of each (default 4)\n"
    "  --accum N           micro-batches per step (default 1)\n"
    "  --max-len N         tokens per prompt + response (default: the model's context)\n"
    "  --truncate MODE     left|right|drop for too long sequences (default left)\n"
    "  --lenient           skip malformed data lines instead of stopping\n"
    "optimiser:\n"
    "  --lr X              peak learning rate (default 1e-6; see docs/preference.md)\n"
    "  --schedule S        constant|linear|cosine (default constant)\n"
    "  --warmup N          linear warmup steps (default 0)\n"
    "  --min-lr-ratio X    decay floor as a fraction of --lr (default 0)\n"
    "  --weight-decay X    AdamW weight decay (default 0)\n"
    "  --clip X            global gradient-norm clip, 0 = off (default 1.0)\n"
    "evaluation and checkpoints:\n"
    "  --eval-data FILE    held-out JSONL; evaluated every --eval-every steps and at the end\n"
    "  --eval-every N      (default 0: only at the end)\n"
    "  --save-every N      checkpoint every N steps (and at the end)\n"
    "  --checkpoint-dir D  where checkpoints go (see above)\n"
    "  --resume DIR        continue from a checkpoint: CKPT/step-N, CKPT/latest, or CKPT\n"
    "other:\n"
    "  --metrics FILE      one JSON object per step with every named metric (loss,\n"
    "                      rewards/chosen, rewards/rejected, rewards/accuracies,\n"
    "                      rewards/margins, logps/chosen, logps/rejected, ...), lr,\n"
    "                      grad_norm, time (s); eval/<name> on evaluated steps\n"
    "  --threads N         CPU threads (default: all)\n"
    "  --seed S            data shuffling seed (default 1234)\n"
    "  --log-every N       plain log line every N steps when stderr is not a terminal\n"
    "  --quiet             no progress output\n"
    "Ctrl-C stops cleanly: a checkpoint is saved, the command to resume is printed,\n"
    "and alignctl exits with status 130.\n";

static const char *const HELP_KTO =
    "usage: alignctl kto --model M --tokenizer TOK --data D.jsonl --out OUT.safetensors\n"
    "                    [--reference R] [options]\n"
    "\n"
    "KTO on {\"prompt\",\"response\",\"label\": true|false} records (thumbs up/down, unpaired).\n"
    "The reference is R, or by default a frozen copy of the starting model M. The KL\n"
    "reference point of each step comes from its examples paired with another example's\n"
    "response.\n"
    "\n"
    "objective:\n"
    "  --beta X            strength beta (default 0.1)\n"
    "  --desirable-weight X    lambda_D (default 1)\n"
    "  --undesirable-weight X  lambda_U (default 1)\n"
    "  --reference R       the frozen reference model (default: a copy of --model)\n"
    "  --no-ref-cache      run the reference every step instead of caching it\n"
    "length, batches, optimiser, evaluation, checkpoints and other options: as for\n"
    "'alignctl dpo' (--batch is examples per micro-batch, default 8); --metrics lines\n"
    "carry loss, kl, rewards/chosen, rewards/rejected, logps/chosen, logps/rejected.\n";

/* Every named metric of the step (align_trainer_metrics) and, when the step
 * was evaluated, the evaluation's as "eval/<name>". */
static void put_metrics(json_t *o, const align_trainer *tr, int32_t which, const char *prefix)
{
    const char *const *names;
    const double *values;
    int32_t n = 0;
    if (align_trainer_metrics(tr, which, &names, &values, &n) < 0)
        return;
    for (int32_t k = 0; k < n; k++) {
        char key[128];
        snprintf(key, sizeof key, "%s%s", prefix, names[k]);
        json_put(o, key, json_num(values[k]));
    }
}

static int write_metrics(FILE *f, const align_trainer *tr, const align_step_stats *st, double time, int evaluated)
{
    json_t *o = json_object();
    if (!o)
        return -1;
    json_put(o, "step", json_integer(st->step));
    json_put(o, "epoch", json_integer(st->epoch));
    json_put(o, "lr", json_num(st->learning_rate));
    put_metrics(o, tr, ALIGN_METRICS_STEP, "");
    json_put(o, "time", json_num(time));
    if (evaluated) {
        put_metrics(o, tr, ALIGN_METRICS_EVAL, "eval/");
        double v;
        if (align_trainer_metric(tr, ALIGN_METRICS_EVAL, "loss", &v) == 0)
            json_put(o, "eval_loss", json_num(v));
    }
    int rc = json_print_line(f, o);
    fflush(f);
    return rc;
}

static int write_eval(FILE *f, const align_trainer *tr, int64_t step)
{
    json_t *o = json_object();
    if (!o)
        return -1;
    json_put(o, "step", json_integer(step));
    put_metrics(o, tr, ALIGN_METRICS_EVAL, "eval/");
    double v;
    if (align_trainer_metric(tr, ALIGN_METRICS_EVAL, "loss", &v) == 0)
        json_put(o, "eval_loss", json_num(v));
    int rc = json_print_line(f, o);
    fflush(f);
    return rc;
}

static void eval_line(const align_trainer *tr, int64_t step, int kto)
{
    double loss = 0, a = 0, b = 0;
    align_trainer_metric(tr, ALIGN_METRICS_EVAL, "loss", &loss);
    if (kto) {
        align_trainer_metric(tr, ALIGN_METRICS_EVAL, "rewards/chosen", &a);
        align_trainer_metric(tr, ALIGN_METRICS_EVAL, "rewards/rejected", &b);
        fprintf(stderr, "eval at step %lld: loss %.4f rewards/chosen %.4f rewards/rejected %.4f\n",
                (long long)step, loss, a, b);
    } else {
        align_trainer_metric(tr, ALIGN_METRICS_EVAL, "rewards/accuracies", &a);
        align_trainer_metric(tr, ALIGN_METRICS_EVAL, "rewards/margins", &b);
        fprintf(stderr, "eval at step %lld: loss %.4f accuracy %.3f margin %.4f\n", (long long)step, loss, a, b);
    }
}

static int run_pref(int argc, char **argv, int kto)
{
    const char *model_path = NULL, *tok = NULL, *data_path = NULL, *out = NULL, *v;
    const char *eval_path = NULL, *resume = NULL, *metrics_path = NULL, *ckdir_arg = NULL;
    int steps = 0, epochs = 0, threads = 0, eval_every = 0, save_every = 0, quiet = 0;
    int log_every = 10, lenient = 0;
    const char *ref_path = NULL;
    align_dpo_params sp;
    ALIGN_DPO_DEFAULT_PARAMS(&sp);
    align_kto_params kp;
    ALIGN_KTO_DEFAULT_PARAMS(&kp);
    int batch = 0;
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-6f;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(kto ? HELP_KTO : HELP_DPO, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--data", &v)) {
            data_path = v;
        } else if (opt(argc, argv, &i, "--out", &v)) {
            out = v;
        } else if (opt(argc, argv, &i, "--steps", &v)) {
            steps = parse_int("--steps", v, 1, INT32_MAX);
        } else if (opt(argc, argv, &i, "--epochs", &v)) {
            epochs = parse_int("--epochs", v, 1, 1000000);
        } else if (opt(argc, argv, &i, "--batch", &v)) {
            batch = parse_int("--batch", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--accum", &v)) {
            sp.grad_accum = parse_int("--accum", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--max-len", &v)) {
            sp.max_seq_len = parse_int("--max-len", v, 2, 1 << 20);
        } else if (opt(argc, argv, &i, "--truncate", &v)) {
            if (strcmp(v, "right") == 0)
                sp.truncation = ALIGN_TRUNCATE_RIGHT;
            else if (strcmp(v, "left") == 0)
                sp.truncation = ALIGN_TRUNCATE_LEFT;
            else if (strcmp(v, "drop") == 0)
                sp.truncation = ALIGN_TRUNCATE_DROP;
            else
                usage_die("--truncate expects right, left or drop, got '%s'", v);
        } else if (opt(argc, argv, &i, "--reference", &v)) {
            ref_path = v;
        } else if (flag(a, "--no-ref-cache")) {
            sp.flags |= ALIGN_DPO_NO_REFERENCE_CACHE;
        } else if (opt(argc, argv, &i, "--beta", &v)) {
            sp.beta = kp.beta = parse_float("--beta", v, 1e-9, 1e9);
        } else if (!kto && opt(argc, argv, &i, "--loss", &v)) {
            static const char *const names[] = {"sigmoid", "robust", "ipo", "hinge", "simpo", "orpo"};
            int found = -1;
            for (int k = 0; k < 6; k++)
                if (strcmp(v, names[k]) == 0)
                    found = k;
            if (found < 0)
                usage_die("--loss expects sigmoid, ipo, hinge, robust, simpo or orpo, got '%s'", v);
            sp.loss = found;
        } else if (!kto && opt(argc, argv, &i, "--label-smoothing", &v)) {
            sp.label_smoothing = parse_float("--label-smoothing", v, 0, 0.5);
        } else if (!kto && opt(argc, argv, &i, "--simpo-gamma", &v)) {
            sp.simpo_gamma = parse_float("--simpo-gamma", v, -1e9, 1e9);
        } else if (!kto && opt(argc, argv, &i, "--sft-alpha", &v)) {
            sp.sft_alpha = parse_float("--sft-alpha", v, 0, 1e9);
        } else if (!kto && flag(a, "--length-norm")) {
            sp.flags |= ALIGN_DPO_LENGTH_NORM;
        } else if (!kto && opt(argc, argv, &i, "--ranking", &v)) {
            if (strcmp(v, "all-pairs") == 0)
                sp.ranking = ALIGN_RANKING_ALL_PAIRS;
            else if (strcmp(v, "best-vs-rest") == 0)
                sp.ranking = ALIGN_RANKING_BEST_VS_REST;
            else if (strcmp(v, "plackett-luce") == 0)
                sp.ranking = ALIGN_RANKING_PLACKETT_LUCE;
            else
                usage_die("--ranking expects all-pairs, best-vs-rest or plackett-luce, got '%s'", v);
        } else if (kto && opt(argc, argv, &i, "--desirable-weight", &v)) {
            kp.desirable_weight = parse_float("--desirable-weight", v, 0, 1e9);
        } else if (kto && opt(argc, argv, &i, "--undesirable-weight", &v)) {
            kp.undesirable_weight = parse_float("--undesirable-weight", v, 0, 1e9);
        } else if (flag(a, "--lenient")) {
            lenient = 1;
        } else if (opt(argc, argv, &i, "--lr", &v)) {
            op.learning_rate = parse_float("--lr", v, 0, 10);
        } else if (opt(argc, argv, &i, "--schedule", &v)) {
            if (strcmp(v, "constant") == 0)
                op.schedule = ALIGN_SCHEDULE_CONSTANT;
            else if (strcmp(v, "linear") == 0)
                op.schedule = ALIGN_SCHEDULE_LINEAR;
            else if (strcmp(v, "cosine") == 0)
                op.schedule = ALIGN_SCHEDULE_COSINE;
            else
                usage_die("--schedule expects constant, linear or cosine, got '%s'", v);
        } else if (opt(argc, argv, &i, "--warmup", &v)) {
            op.warmup_steps = parse_int("--warmup", v, 0, INT32_MAX);
        } else if (opt(argc, argv, &i, "--min-lr-ratio", &v)) {
            op.min_lr_ratio = parse_float("--min-lr-ratio", v, 0, 1);
        } else if (opt(argc, argv, &i, "--weight-decay", &v)) {
            op.weight_decay = parse_float("--weight-decay", v, 0, 10);
        } else if (opt(argc, argv, &i, "--clip", &v)) {
            op.max_grad_norm = parse_float("--clip", v, 0, 1e9);
        } else if (opt(argc, argv, &i, "--eval-data", &v)) {
            eval_path = v;
        } else if (opt(argc, argv, &i, "--eval-every", &v)) {
            eval_every = parse_int("--eval-every", v, 0, INT32_MAX);
        } else if (opt(argc, argv, &i, "--save-every", &v)) {
            save_every = parse_int("--save-every", v, 1, INT32_MAX);
        } else if (opt(argc, argv, &i, "--checkpoint-dir", &v)) {
            ckdir_arg = v;
        } else if (opt(argc, argv, &i, "--resume", &v)) {
            resume = v;
        } else if (opt(argc, argv, &i, "--metrics", &v)) {
            metrics_path = v;
        } else if (opt(argc, argv, &i, "--threads", &v)) {
            threads = parse_int("--threads", v, 1, 4096);
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            sp.seed = parse_u64("--seed", v);
        } else if (opt(argc, argv, &i, "--log-every", &v)) {
            log_every = parse_int("--log-every", v, 0, INT32_MAX);
        } else if (flag(a, "--quiet")) {
            quiet = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required (the model to start from; 'alignctl init' makes one)");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!data_path)
        usage_die(kto ? "--data is required (JSONL of {\"prompt\",\"response\",\"label\"} records)"
                      : "--data is required (JSONL of {\"prompt\",\"chosen\",\"rejected\"} records)");
    if (!out)
        usage_die("--out is required (where the trained model is saved)");
    if (steps && epochs)
        usage_die("give --steps or --epochs, not both");
    if (eval_every && !eval_path)
        usage_die("--eval-every needs --eval-data");
    char resume_dir[4200];
    if (resume && resume_resolve(resume, resume_dir, sizeof resume_dir))
        return EXIT_RUNTIME;
    if (resume)
        resume = resume_dir;
    sp.max_steps = steps;
    sp.epochs = epochs ? epochs : 1;
    if (batch)
        sp.micro_batch = batch;
    else if (kto)
        sp.micro_batch = kp.micro_batch;
    kp.flags = sp.flags & ALIGN_DPO_NO_REFERENCE_CACHE;
    kp.micro_batch = sp.micro_batch;
    kp.grad_accum = sp.grad_accum;
    kp.max_seq_len = sp.max_seq_len;
    kp.truncation = sp.truncation;
    kp.max_steps = sp.max_steps;
    kp.epochs = sp.epochs;
    kp.seed = sp.seed;

    /* checkpoint folder: OUT minus ".safetensors", plus ".ckpt" */
    char ckdir[4096];
    if (ckdir_arg) {
        snprintf(ckdir, sizeof ckdir, "%s", ckdir_arg);
    } else {
        size_t n = strlen(out), sfx = strlen(".safetensors");
        if (n > sfx && strcmp(out + n - sfx, ".safetensors") == 0)
            n -= sfx;
        snprintf(ckdir, sizeof ckdir, "%.*s.ckpt", (int)n, out);
    }

    if (require_inputs(model_path, tok, data_path, eval_path))
        return EXIT_RUNTIME;
    blas_setup(argv, threads);
    /* Signals are caught from here to the end: one that arrives while loading
     * still ends in a checkpoint and status 130 (signals.c). */
    signals_install();
    align_model *m = NULL, *ref = NULL;
    align_tokenizer *t = NULL;
    align_dataset *data = NULL, *evald = NULL;
    align_optimizer *o = NULL;
    align_trainer *tr = NULL;
    FILE *mf = NULL;
    int r = load_tokenizer(tok, &t);
    if (!r)
        r = load_model(model_path, &m);
    if (!r)
        r = check_vocab(m, t, tok);
    if (!r && ref_path) {
        if (!(r = load_model(ref_path, &ref)))
            r = check_vocab(ref, t, tok);
    } else if (!r) {
        int crc = align_model_clone(&ref, m, ALIGN_FROZEN);
        if (crc < 0)
            r = rt_fail(crc, align_last_errmsg(), "cannot copy the model as the reference");
    }
    if (!r)
        r = load_dataset(data_path, lenient ? ALIGN_LENIENT : 0, &data);
    if (!r && eval_path)
        r = load_dataset(eval_path, lenient ? ALIGN_LENIENT : 0, &evald);
    if (r)
        goto out;

    /* planned steps: exact with --steps; an estimate in epoch mode (packing
     * makes fewer), used for the schedule and the progress bar */
    int64_t per_epoch = (align_dataset_size(data) + (int64_t)sp.micro_batch * sp.grad_accum - 1) /
                        ((int64_t)sp.micro_batch * sp.grad_accum);
    int64_t total = steps ? steps : per_epoch * sp.epochs;
    op.total_steps = total > INT32_MAX ? INT32_MAX : (int32_t)total;
    int rc = align_optimizer_create(&o, m, &op);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the optimizer");
        goto out;
    }
    rc = kto ? align_trainer_create_kto(&tr, m, ref, t, data, o, &kp)
             : align_trainer_create_dpo(&tr, m, ref, t, data, o, &sp);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the %s trainer", kto ? "KTO" : "DPO");
        goto out;
    }
    if (resume) {
        rc = align_trainer_resume(tr, resume);
        if (rc < 0) {
            r = rt_fail(rc, align_trainer_errmsg(tr),
                        "cannot resume from '%s' (was it saved by a run with the same model, "
                        "data and options?)",
                        resume);
            goto out;
        }
    }
    int64_t step = align_optimizer_steps_done(o);
    if (resume)
        msg("resumed from '%s' at step %lld", resume, (long long)step);
    double time_offset = 0;
    if (metrics_path) {
        if (resume)
            time_offset = metrics_last_time(metrics_path, step);
        mf = fopen(metrics_path, resume ? "a" : "w");
        if (!mf) {
            msg("cannot open metrics file '%s': %s", metrics_path, strerror(errno));
            r = EXIT_RUNTIME;
            goto out;
        }
    }
    msg("training: %lld records%s, %s%lld steps, batch %d x accum %d, lr %g (%s)",
        (long long)align_dataset_size(data), evald ? " (+ eval data)" : "",
        steps ? "" : "about ", (long long)total, (int)sp.micro_batch, (int)sp.grad_accum,
        (double)op.learning_rate,
        op.schedule == ALIGN_SCHEDULE_LINEAR   ? "linear"
        : op.schedule == ALIGN_SCHEDULE_COSINE ? "cosine"
                                               : "constant");

    progress pg = {isatty(2), quiet, log_every, total, step, now_sec(), 0};
    int64_t last_saved = resume ? step : -1, last_eval = -1;
    int nonfinite = 0, interrupted = 0;
    float last_loss = NAN;
    signals_attach(tr);
    for (;;) {
        if (signals_caught()) {
            interrupted = 1;
            break;
        }
        align_step_stats st;
        align_step_stats_init(&st, sizeof st);
        rc = align_trainer_step(tr, &st);
        if (rc == ALIGN_DONE)
            break;
        if (rc == ALIGN_ECANCELED) {
            interrupted = 1;
            break;
        }
        if (rc == ALIGN_ENONFINITE) {
            msg("warning: step %lld had a non-finite loss or gradient; update skipped",
                (long long)step + 1);
            if (++nonfinite >= 10) {
                r = rt_fail(rc, align_trainer_errmsg(tr),
                            "10 non-finite steps in a row: lower --lr or check the data");
                break;
            }
            continue;
        }
        if (rc < 0) {
            r = rt_fail(rc, align_trainer_errmsg(tr), "training step %lld failed",
                        (long long)step + 1);
            break;
        }
        nonfinite = 0;
        step = st.step;
        last_loss = st.loss;
        progress_update(&pg, &st, 0);
        align_step_stats es;
        int evaluated = 0;
        if (evald && eval_every > 0 && step % eval_every == 0) {
            align_step_stats_init(&es, sizeof es);
            rc = align_trainer_evaluate(tr, evald, &es);
            if (rc == ALIGN_ECANCELED) {
                interrupted = 1; /* the step itself is done: log it, then stop */
            } else if (rc < 0) {
                r = rt_fail(rc, align_trainer_errmsg(tr), "evaluation at step %lld failed",
                            (long long)step);
                break;
            } else {
                evaluated = 1;
                last_eval = step;
                if (!quiet) {
                    bar_clear();
                    eval_line(tr, step, kto);
                }
            }
        }
        if (mf && write_metrics(mf, tr, &st, time_offset + now_sec() - pg.t0, evaluated) != 0) {
            msg("cannot write metrics file '%s'", metrics_path);
            r = EXIT_RUNTIME;
            break;
        }
        if (interrupted)
            break;
        if (save_every > 0 && step % save_every == 0) {
            char dir[4200];
            if ((r = checkpoint_save(tr, ckdir, step, dir, sizeof dir)))
                break;
            last_saved = step;
            if (!quiet && !pg.tty)
                fprintf(stderr, "checkpoint: %s\n", dir);
        }
    }
    if (r)
        goto out;
    if (!quiet && pg.tty && !interrupted && !signals_caught()) {
        bar_clear();
        fprintf(stderr, "step %lld done, loss %.4f\n", (long long)step, last_loss);
    }
    if (!interrupted && !signals_caught() && evald && last_eval != step) {
        align_step_stats es;
        align_step_stats_init(&es, sizeof es);
        rc = align_trainer_evaluate(tr, evald, &es);
        if (rc < 0 && rc != ALIGN_ECANCELED) {
            r = rt_fail(rc, align_trainer_errmsg(tr), "final evaluation failed");
            goto out;
        }
        if (rc >= 0) {
            if (!quiet)
                eval_line(tr, step, kto);
            if (mf)
                write_eval(mf, tr, step);
        }
    }
    if (interrupted || signals_caught()) {
        char dir[4200];
        bar_clear();
        int sig = signals_caught();
        if (resume && step == pg.first_step) /* stopped before any new step */
            snprintf(dir, sizeof dir, "%s", resume);
        else if (last_saved == step)
            snprintf(dir, sizeof dir, "%s/step-%lld", ckdir, (long long)step);
        else if ((r = checkpoint_save(tr, ckdir, step, dir, sizeof dir)))
            goto out;
        msg("interrupted after step %lld; checkpoint saved in %s", (long long)step, dir);
        print_resume_hint(argc, argv, dir);
        r = sig == SIGTERM ? 128 + SIGTERM : EXIT_INTERRUPTED;
        goto out;
    }
    if (save_every > 0 && last_saved != step) {
        char dir[4200];
        if ((r = checkpoint_save(tr, ckdir, step, dir, sizeof dir)))
            goto out;
        if (!quiet)
            fprintf(stderr, "checkpoint: %s\n", dir);
    }
    rc = align_model_save(m, out);
    if (rc < 0) {
        r = rt_fail(rc, align_model_errmsg(m), "cannot save the model to '%s'", out);
        goto out;
    }
    if (!quiet)
        msg("trained %lld steps (final loss %.4f); model saved to %s", (long long)step,
            last_loss, out);
out:
    if (mf && fclose(mf) != 0 && !r) {
        msg("cannot write metrics file '%s'", metrics_path);
        r = EXIT_RUNTIME;
    }
    signals_restore();
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_dataset_free(evald);
    align_dataset_free(data);
    align_model_free(ref);
    align_model_free(m);
    align_tokenizer_free(t);
    return r;
}

int cmd_dpo(int argc, char **argv)
{
    return run_pref(argc, argv, 0);
}

int cmd_kto(int argc, char **argv)
{
    return run_pref(argc, argv, 1);
}

