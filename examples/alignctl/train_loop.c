/* train_loop.c — what every training subcommand shares: the common options
 * (length of training, optimiser, evaluation, checkpoints, metrics), and the
 * loop that steps a trainer with a progress bar, periodic evaluation,
 * checkpoints, Ctrl-C (a checkpoint, the resume command, status 130) and the
 * final save. A training subcommand parses its own options, builds its
 * trainer and calls train_run (cmd_sft.c is the example). */
#include "alignctl.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void train_opts_init(train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->log_every = 10;
    o->compute = -1;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&o->op);
    ALIGN_LORA_DEFAULT_PARAMS(&o->lora);
}

/* --lora r=16,alpha=32,targets=c_attn,c_fc[,seed=N]: a piece without '='
 * continues the targets list. */
static void parse_lora(train_opts *o, const char *spec)
{
    char buf[512];
    if (strlen(spec) >= sizeof buf)
        usage_die("--lora: the specification is too long");
    snprintf(buf, sizeof buf, "%s", spec);
    o->use_lora = 1;
    o->lora_targets[0] = '\0';
    int in_targets = 0, have_targets = 0;
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(p, '=');
        if (!eq && in_targets) {
            size_t n = strlen(o->lora_targets);
            snprintf(o->lora_targets + n, sizeof o->lora_targets - n, ",%s", p);
            continue;
        }
        if (!eq)
            usage_die("--lora: '%s' is not KEY=VALUE (keys: r, alpha, targets, seed)", p);
        *eq = '\0';
        const char *v = eq + 1;
        in_targets = 0;
        if (!strcmp(p, "r"))
            o->lora.r = parse_int("--lora r", v, 1, 4096);
        else if (!strcmp(p, "alpha"))
            o->lora.alpha = parse_float("--lora alpha", v, 1e-6, 1e6);
        else if (!strcmp(p, "seed"))
            o->lora.seed = (uint64_t)parse_int("--lora seed", v, 0, INT64_MAX);
        else if (!strcmp(p, "dropout"))
            o->lora.dropout = parse_float("--lora dropout (only 0 is supported)", v, 0, 0);
        else if (!strcmp(p, "targets")) {
            snprintf(o->lora_targets, sizeof o->lora_targets, "%s", v);
            in_targets = have_targets = 1;
        } else
            usage_die("--lora: unknown key '%s' (keys: r, alpha, targets, seed)", p);
    }
    /* without targets=: the architecture's default (the library's NULL) */
    o->lora.targets = have_targets ? o->lora_targets : NULL;
}

int train_lora_attach(train_opts *o, align_model *m, const char *model_path)
{
    if (!o->use_lora)
        return 0;
    o->lora.base_model_name_or_path = model_path;
    int rc = align_model_lora_attach(m, &o->lora);
    if (rc < 0)
        return rt_fail(rc, align_model_errmsg(m), "cannot attach the LoRA adapters (--lora)");
    if (!o->quiet)
        msg("LoRA: rank %d, alpha %g, targets %s: %lld trainable parameters (base %lld frozen)", (int)o->lora.r,
            (double)o->lora.alpha, o->lora.targets ? o->lora_targets : "(the architecture's default)",
            (long long)align_model_lora_num_params(m),
            (long long)align_model_num_params(m));
    return 0;
}

int train_save(const train_opts *o, align_model *m)
{
    int rc;
    if (!o->use_lora) {
        if ((rc = align_model_save(m, o->out)) < 0)
            return rt_fail(rc, align_model_errmsg(m), "cannot save the model to '%s'", o->out);
        return 0;
    }
    if ((rc = align_model_lora_save(m, o->out)) < 0)
        return rt_fail(rc, align_model_errmsg(m), "cannot save the LoRA adapters to '%s'", o->out);
    if (o->lora_merged) {
        /* merging writes a copy of the base; the run is over, so m itself is merged */
        if ((rc = align_model_lora_merge(m)) < 0 || (rc = align_model_save(m, o->lora_merged)) < 0)
            return rt_fail(rc, align_model_errmsg(m), "cannot save the merged model to '%s'", o->lora_merged);
    }
    return 0;
}

int train_opt(int argc, char **argv, int *i, train_opts *o)
{
    const char *a = argv[*i], *v;
    if (opt(argc, argv, i, "--out", &v)) {
        o->out = v;
    } else if (opt(argc, argv, i, "--steps", &v)) {
        o->steps = parse_int("--steps", v, 1, INT32_MAX);
    } else if (opt(argc, argv, i, "--epochs", &v)) {
        o->epochs = parse_int("--epochs", v, 1, 1000000);
    } else if (flag(a, "--lenient")) {
        o->lenient = 1;
    } else if (opt(argc, argv, i, "--lr", &v)) {
        o->op.learning_rate = parse_float("--lr", v, 0, 10);
    } else if (opt(argc, argv, i, "--schedule", &v)) {
        if (strcmp(v, "constant") == 0)
            o->op.schedule = ALIGN_SCHEDULE_CONSTANT;
        else if (strcmp(v, "linear") == 0)
            o->op.schedule = ALIGN_SCHEDULE_LINEAR;
        else if (strcmp(v, "cosine") == 0)
            o->op.schedule = ALIGN_SCHEDULE_COSINE;
        else
            usage_die("--schedule expects constant, linear or cosine, got '%s'", v);
    } else if (opt(argc, argv, i, "--warmup", &v)) {
        o->op.warmup_steps = parse_int("--warmup", v, 0, INT32_MAX);
    } else if (opt(argc, argv, i, "--min-lr-ratio", &v)) {
        o->op.min_lr_ratio = parse_float("--min-lr-ratio", v, 0, 1);
    } else if (opt(argc, argv, i, "--weight-decay", &v)) {
        o->op.weight_decay = parse_float("--weight-decay", v, 0, 10);
    } else if (opt(argc, argv, i, "--clip", &v)) {
        o->op.max_grad_norm = parse_float("--clip", v, 0, 1e9);
    } else if (opt(argc, argv, i, "--eval-data", &v)) {
        o->eval_path = v;
    } else if (opt(argc, argv, i, "--eval-every", &v)) {
        o->eval_every = parse_int("--eval-every", v, 0, INT32_MAX);
    } else if (opt(argc, argv, i, "--save-every", &v)) {
        o->save_every = parse_int("--save-every", v, 1, INT32_MAX);
    } else if (opt(argc, argv, i, "--checkpoint-dir", &v)) {
        o->ckdir_arg = v;
    } else if (opt(argc, argv, i, "--resume", &v)) {
        o->resume = v;
    } else if (opt(argc, argv, i, "--metrics", &v)) {
        o->metrics_path = v;
    } else if (opt(argc, argv, i, "--threads", &v)) {
        o->threads = parse_int("--threads", v, 1, 4096);
    } else if (opt(argc, argv, i, "--compute", &v)) {
        o->compute = parse_compute(v);
    } else if (opt(argc, argv, i, "--log-every", &v)) {
        o->log_every = parse_int("--log-every", v, 0, INT32_MAX);
    } else if (opt(argc, argv, i, "--dist", &v)) {
        if (strcmp(v, "mpi") && strcmp(v, "none") && strcmp(v, "auto"))
            usage_die("--dist expects mpi, none or auto, got '%s'", v);
        o->dist = v;
    } else if (opt(argc, argv, i, "--lora", &v)) {
        parse_lora(o, v);
    } else if (opt(argc, argv, i, "--lora-merged", &v)) {
        o->lora_merged = v;
    } else if (flag(a, "--quiet")) {
        o->quiet = 1;
    } else {
        return 0;
    }
    return 1;
}

int train_opts_finish(train_opts *o)
{
    if (!o->out)
        usage_die("--out is required (where the trained model is saved)");
    if (o->steps && o->epochs)
        usage_die("give --steps or --epochs, not both");
    if (o->eval_every && !o->eval_path)
        usage_die("--eval-every needs --eval-data");
    if (o->lora_merged && !o->use_lora)
        usage_die("--lora-merged needs --lora");
    if (compute_apply(o->compute))
        return EXIT_RUNTIME;
    if (o->resume) {
        if (resume_resolve(o->resume, o->resume_dir, sizeof o->resume_dir))
            return EXIT_RUNTIME;
        o->resume = o->resume_dir;
    }
    /* checkpoint folder: OUT minus ".safetensors", plus ".ckpt" */
    if (o->ckdir_arg) {
        snprintf(o->ckdir, sizeof o->ckdir, "%s", o->ckdir_arg);
    } else {
        size_t n = strlen(o->out), sfx = strlen(".safetensors");
        if (n > sfx && strcmp(o->out + n - sfx, ".safetensors") == 0)
            n -= sfx;
        snprintf(o->ckdir, sizeof o->ckdir, "%.*s.ckpt", (int)n, o->out);
    }
    return 0;
}

static void print_eval(const train_opts *o, int64_t step, const align_step_stats *es)
{
    if (o->quiet)
        return;
    bar_clear();
    fprintf(stderr, "eval at step %lld: loss %.4f accuracy %.3f\n", (long long)step, es->loss,
            es->accuracy);
}

static int train_steps(train_opts *o, int argc, char **argv, align_trainer *tr, align_optimizer *opt_main,
                       align_dataset *evald, align_model *save_model, int64_t total);

int train_run(train_opts *o, int argc, char **argv, align_trainer *tr, align_optimizer *opt_main,
              align_dataset *evald, align_model *save_model, int64_t total)
{
    int r;
    if ((r = dist_start(o, tr)) != 0)
        return r;
    r = train_steps(o, argc, argv, tr, opt_main, evald, save_model, total);
    dist_end(r);
    return r;
}

static int train_steps(train_opts *o, int argc, char **argv, align_trainer *tr, align_optimizer *opt_main,
                       align_dataset *evald, align_model *save_model, int64_t total)
{
    int r = 0, rc;
    FILE *mf = NULL;
    if (o->resume) {
        rc = align_trainer_resume(tr, o->resume);
        if (rc < 0)
            return rt_fail(rc, align_trainer_errmsg(tr),
                           "cannot resume from '%s' (was it saved by a run with the same model, "
                           "data and options?)",
                           o->resume);
    }
    int64_t step = align_optimizer_steps_done(opt_main);
    if (o->resume)
        msg("resumed from '%s' at step %lld", o->resume, (long long)step);
    double time_offset = 0;
    if (o->metrics_path) {
        if (o->resume)
            time_offset = metrics_last_time(o->metrics_path, step);
        mf = fopen(o->metrics_path, o->resume ? "a" : "w");
        if (!mf) {
            msg("cannot open metrics file '%s': %s", o->metrics_path, strerror(errno));
            return EXIT_RUNTIME;
        }
    }
    progress pg = {isatty(2), o->quiet, o->log_every, total, step, now_sec(), 0};
    int64_t last_saved = o->resume ? step : -1, last_eval = -1;
    int nonfinite = 0, interrupted = 0;
    float last_loss = NAN;
    signals_attach(tr);
    for (;;) {
        /* Distributed: a signal stops the step on every rank through the
         * trainer (signals_attach), never one rank alone. */
        if (!dist_active() && signals_caught()) {
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
        if (evald && o->eval_every > 0 && step % o->eval_every == 0) {
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
                print_eval(o, step, &es);
            }
        }
        if (mf && metrics_write_step_tr(mf, tr, &st, time_offset + now_sec() - pg.t0,
                                        evaluated ? &es : NULL) != 0) {
            msg("cannot write metrics file '%s'", o->metrics_path);
            r = EXIT_RUNTIME;
            break;
        }
        if (interrupted)
            break;
        if (o->save_every > 0 && step % o->save_every == 0) {
            char dir[4200];
            if ((r = checkpoint_save(tr, o->ckdir, step, dir, sizeof dir)))
                break;
            last_saved = step;
            if (!o->quiet && !pg.tty)
                fprintf(stderr, "checkpoint: %s\n", dir);
        }
    }
    if (r)
        goto out;
    if (!o->quiet && pg.tty && !interrupted && !signals_caught()) {
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
            print_eval(o, step, &es);
            if (mf)
                metrics_write_eval_tr(mf, tr, step, &es);
        }
    }
    if (interrupted || signals_caught()) {
        char dir[4200];
        bar_clear();
        int sig = signals_caught();
        if (o->resume && step == pg.first_step) /* stopped before any new step */
            snprintf(dir, sizeof dir, "%s", o->resume);
        else if (last_saved == step)
            snprintf(dir, sizeof dir, "%s/step-%lld", o->ckdir, (long long)step);
        else if ((r = checkpoint_save(tr, o->ckdir, step, dir, sizeof dir)))
            goto out;
        msg("interrupted after step %lld; checkpoint saved in %s", (long long)step, dir);
        print_resume_hint(argc, argv, dir);
        r = sig == SIGTERM ? 128 + SIGTERM : EXIT_INTERRUPTED;
        goto out;
    }
    if (o->save_every > 0 && last_saved != step) {
        char dir[4200];
        if ((r = checkpoint_save(tr, o->ckdir, step, dir, sizeof dir)))
            goto out;
        if (!o->quiet)
            fprintf(stderr, "checkpoint: %s\n", dir);
    }
    if (dist_rank() == 0 && (r = train_save(o, save_model)))
        goto out;
    if (!o->quiet)
        msg("trained %lld steps (final loss %.4f); model saved to %s", (long long)step, last_loss,
            o->out);
out:
    signals_attach(NULL);
    if (mf && fclose(mf) != 0 && !r) {
        msg("cannot write metrics file '%s'", o->metrics_path);
        r = EXIT_RUNTIME;
    }
    return r;
}
