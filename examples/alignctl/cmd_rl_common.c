/* cmd_rl_common.c — what alignctl ppo, grpo and rloo share: the common
 * options (train_loop.c's train_opts plus models, reward and sampling), the
 * reward (a scalar-head model or an external program), and the training
 * loop with progress, --metrics lines (metrics_write_step_tr: every named
 * metric), sample tables, checkpoints, Ctrl-C and --resume. The loop is its
 * own rather than train_run because online RL needs more around each step:
 * the reward command's own error message when a step fails (and the last
 * checkpoint to resume from), score and KL in the progress line, and the
 * sample table (those two are drawn by rl_output.c). The subcommands
 * (cmd_ppo.c, cmd_grpo.c) add their algorithm's options and the trainer
 * constructor.
 *
 * The reward the trainer sees is always a callback (rl_reward below) in
 * front of the real scorer, so the CLI sees every (prompt, response, score)
 * of a rollout: the sample table shows the latest ones. */
#include "alignctl.h"
#include "rl_cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const RL_COMMON_HELP =
    "models and data:\n"
    "  --policy M          the model to train (e.g. an SFT model)\n"
    "  --tokenizer TOK     a tokenizer.json, a GPT-2 folder, or 'bytes'\n"
    "  --prompts P.jsonl   prompts: {\"prompt\": ...} lines (any record with a prompt)\n"
    "  --reference R       frozen reference for the KL term (default: the starting policy)\n"
    "  --lenient           skip malformed prompt (and --ptx-data) lines instead of stopping\n"
    "reward (one of):\n"
    "  --reward-model RM   a model with a scalar head (alignctl init --scalar-head, or a\n"
    "                      trained reward model); same tokenizer as the policy\n"
    "  --reward-chat       the reward model reads the pair as a two-turn chat\n"
    "  --reward-cmd CMD    a program, run once under /bin/sh -c: reads one\n"
    "                      {\"prompt\": ..., \"response\": ...} line per pair on stdin and\n"
    "                      answers one {\"score\": x} line each, in order\n"
    "  --reward-timeout S  longest wait for one answer of --reward-cmd (default 60)\n"
    "  --score-clip C      clip scores to [-C, C] (default off)\n"
    "sampling:\n"
    "  --max-new-tokens N  response length limit (default 64)\n"
    "  --temperature T     (default 1.0)\n"
    "  --top-k K           0 = off (default)\n"
    "  --top-p P           1 = off (default)\n"
    "  --stop S            stop string (repeatable, up to 16)\n"
    "  --max-prompt-len N  longer prompts keep their last N tokens\n"
    "  --raw-prompt        feed prompts as raw text, not through the chat template\n"
    "length and optimiser:\n"
    "  --steps N           optimiser steps (default: --epochs 1 over the prompts)\n"
    "  --epochs N          passes over the prompts\n"
    "  --micro-batch N     sequences per forward/backward (default 8)\n"
    "  --lr X              learning rate (default 1e-5)\n"
    "  --schedule S        constant|linear|cosine (default constant)\n"
    "  --warmup N          linear warmup steps (default 0)\n"
    "  --min-lr-ratio X    decay floor as a fraction of --lr (default 0)\n"
    "  --weight-decay X    AdamW weight decay (default 0)\n"
    LORA_HELP
    "  --clip X            global gradient-norm clip, 0 = off (default 1.0), as in sft;\n"
    "                      the ratio clip is --clip-ratio\n"
    "  --seed S            prompt order and sampling seed (default 1234)\n"
    "checkpoints and output:\n"
    "  --out OUT           where the trained policy is saved\n"
    "  --save-every N      checkpoint every N steps (and at the end)\n"
    "  --checkpoint-dir D  default: OUT without '.safetensors' plus '.ckpt'\n"
    "  --resume DIR        continue from a checkpoint (CKPT/step-N, CKPT/latest or CKPT);\n"
    "                      give the same --policy, --prompts and options (--steps too)\n"
    "  --metrics FILE      one JSON object per step: step, loss, lr, grad_norm, time, ...\n"
    "                      and every named metric (objective/scores, objective/kl, ...)\n"
    "  --sample-every N    every N steps print the latest rollout's responses and scores\n"
    "  --sample-rows N     rows of that table (default 4)\n"
    "  --threads N         CPU threads (default: all)\n"
    "  --compute MODE      fp32 (default) or bf16: bf16 matrix products, fp32 weights and\n"
    "                      optimizer (oneDNN; refused without AVX512_BF16 / AMX)\n"
    "  --log-every N       plain progress line every N steps when stderr is not a terminal\n"
    "                      (default 10)\n"
    "  --quiet             no progress output\n"
    "  --dist mpi|none     data parallel under mpirun (default: auto; docs/distributed.md)\n"
    "Exit status: 0 done, 1 error (a failing reward command included: the message names\n"
    "the command and the offending line; the last checkpoint is left as it was), 2 bad\n"
    "usage, 130 Ctrl-C (a checkpoint is saved and the command to resume is printed).\n";

void rl_cli_init(rl_cli *c)
{
    memset(c, 0, sizeof *c);
    train_opts_init(&c->t);
    c->t.op.learning_rate = 1e-5f;
    c->reward_timeout = 60;
    c->sample_rows = 4;
}

int rl_common_opt(rl_cli *c, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v;
    rl_sampling *s = &c->samp;
    if (opt(argc, argv, i, "--policy", &v))
        c->policy = v;
    else if (opt(argc, argv, i, "--tokenizer", &v))
        c->tok = v;
    else if (opt(argc, argv, i, "--prompts", &v))
        c->prompts = v;
    else if (opt(argc, argv, i, "--reference", &v))
        c->reference = v;
    else if (opt(argc, argv, i, "--reward-model", &v))
        c->reward_model = v;
    else if (flag(a, "--reward-chat"))
        c->reward_chat = 1;
    else if (opt(argc, argv, i, "--reward-cmd", &v))
        c->reward_cmd = v;
    else if (opt(argc, argv, i, "--reward-timeout", &v))
        c->reward_timeout = parse_float("--reward-timeout", v, 0.001, 1e7);
    else if (opt(argc, argv, i, "--score-clip", &v))
        s->score_clip = parse_float("--score-clip", v, 0, 1e30);
    else if (opt(argc, argv, i, "--max-new-tokens", &v))
        s->max_new_tokens = parse_int("--max-new-tokens", v, 1, 1 << 20);
    else if (opt(argc, argv, i, "--temperature", &v))
        s->temperature = parse_float("--temperature", v, 1e-6, 1e6);
    else if (opt(argc, argv, i, "--top-k", &v))
        s->top_k = parse_int("--top-k", v, 0, 1 << 24);
    else if (opt(argc, argv, i, "--top-p", &v))
        s->top_p = parse_float("--top-p", v, 1e-6, 1);
    else if (opt(argc, argv, i, "--stop", &v)) {
        if (s->n_stop >= RL_MAX_STOP)
            usage_die("at most %d --stop strings", RL_MAX_STOP);
        if (!*v)
            usage_die("--stop needs a non-empty string");
        s->stop[s->n_stop++] = v;
    } else if (opt(argc, argv, i, "--max-prompt-len", &v))
        s->max_prompt_len = parse_int("--max-prompt-len", v, 1, 1 << 20);
    else if (flag(a, "--raw-prompt"))
        s->flags |= ALIGN_RL_RAW_PROMPT;
    else if (opt(argc, argv, i, "--micro-batch", &v))
        s->micro_batch = parse_int("--micro-batch", v, 1, 65536);
    else if (opt(argc, argv, i, "--seed", &v))
        s->seed = parse_u64("--seed", v);
    else if (opt(argc, argv, i, "--sample-every", &v))
        c->sample_every = parse_int("--sample-every", v, 0, INT32_MAX);
    else if (opt(argc, argv, i, "--sample-rows", &v))
        c->sample_rows = parse_int("--sample-rows", v, 1, 1000);
    else if (train_opt(argc, argv, i, &c->t))
        ;
    else
        return 0;
    return 1;
}

int rl_common_check(rl_cli *c)
{
    if (!c->policy)
        usage_die("--policy is required (the model to train, e.g. from 'alignctl sft')");
    if (!c->tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!c->prompts)
        usage_die("--prompts is required (JSONL of {\"prompt\": ...} records)");
    if (!c->reward_model == !c->reward_cmd)
        usage_die("give the reward as --reward-model RM.safetensors or --reward-cmd \"PROGRAM "
                  "ARGS\" (exactly one)");
    if (c->reward_chat && !c->reward_model)
        usage_die("--reward-chat applies to --reward-model only");
    if (c->t.eval_path || c->t.eval_every)
        usage_die("online RL has no --eval-data: its metrics come from each rollout");
    return train_opts_finish(&c->t);
}

/* ---- the reward: a callback in front of the scorer ---------------------------- */

static char *dupstr(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

static void reward_forget(rl_reward *w)
{
    for (int32_t i = 0; i < w->n; i++) {
        free(w->p[i]);
        free(w->r[i]);
    }
    w->n = 0;
}

static int reward_fn(const char *const *prompts, const char *const *responses, int32_t n,
                     float *scores, void *ud)
{
    rl_reward *w = ud;
    int rc = w->ep ? extproc_score(w->ep, prompts, responses, n, scores)
                   : align_reward_model_score(w->inner, prompts, responses, n, scores);
    if (rc < 0) {
        if (!w->ep && !w->err[0])
            snprintf(w->err, sizeof w->err, "the reward model failed: %s (%s)",
                     align_reward_model_errmsg(w->inner), align_err_name(rc));
        return rc;
    }
    /* keep this batch for the sample table (best effort: memory errors only
     * make the table shorter) */
    reward_forget(w);
    w->rollouts++;
    if (n > w->cap) {
        char **np = realloc(w->p, (size_t)n * sizeof *np);
        if (np)
            w->p = np;
        char **nr = realloc(w->r, (size_t)n * sizeof *nr);
        if (nr)
            w->r = nr;
        float *ns = realloc(w->s, (size_t)n * sizeof *ns);
        if (ns)
            w->s = ns;
        if (!np || !nr || !ns)
            return 0;
        w->cap = n;
    }
    for (int32_t i = 0; i < n; i++) {
        w->p[w->n] = dupstr(prompts[i]);
        w->r[w->n] = dupstr(responses[i]);
        if (!w->p[w->n] || !w->r[w->n]) {
            free(w->p[w->n]);
            free(w->r[w->n]);
            break;
        }
        w->s[w->n++] = scores[i];
    }
    return 0;
}

/* ---- loading ---------------------------------------------------------------------- */

static int load_with(const char *path, uint32_t flags, align_model **out)
{
    *out = NULL;
    if (!file_exists(path)) {
        msg("model '%s' not found", path);
        return EXIT_RUNTIME;
    }
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.flags = flags;
    int rc = align_model_load(out, path, &mp);
    return rc < 0 ? rt_fail(rc, align_last_errmsg(), "cannot load model '%s'", path) : 0;
}

/* A frozen copy of the model in the file (forward only). */
static int load_frozen(const char *path, align_model **out)
{
    align_model *m;
    int r = load_model(path, &m);
    if (r)
        return r;
    int rc = align_model_clone(out, m, ALIGN_FROZEN);
    align_model_free(m);
    return rc < 0 ? rt_fail(rc, align_last_errmsg(), "cannot freeze model '%s'", path) : 0;
}

/* ---- the run ------------------------------------------------------------------------ */

static int interrupted(void)
{
    return signals_caught() != 0;
}

int rl_run(rl_cli *c, int argc, char **argv, const rl_algo *al)
{
    const char *resume = c->t.resume, *ckdir = c->t.ckdir; /* resolved by rl_common_check */
    if (require_inputs(c->policy, c->tok, c->prompts, NULL) ||
        (c->reference && require_inputs(c->reference, c->tok, NULL, NULL)) ||
        (c->reward_model && require_inputs(c->reward_model, c->tok, NULL, NULL)) ||
        (c->value && require_inputs(c->value, c->tok, NULL, NULL)) ||
        (c->ptx && require_inputs(c->ptx, c->tok, NULL, NULL)))
        return EXIT_RUNTIME;
    blas_setup(argv, c->t.threads); /* may re-execute: before the scorer starts */
    signals_install();

    align_model *policy = NULL, *ref = NULL, *rmm = NULL, *value = NULL;
    align_tokenizer *t = NULL;
    align_dataset *data = NULL, *ptx = NULL;
    align_optimizer *o = NULL, *vo = NULL;
    align_reward_model *inner = NULL, *rm = NULL;
    align_trainer *tr = NULL;
    rl_reward w;
    memset(&w, 0, sizeof w);
    FILE *mf = NULL;
    int r = load_tokenizer(c->tok, &t), rc;
    if (!r)
        r = load_with(c->policy, al->policy_flags, &policy);
    if (!r)
        r = check_vocab(policy, t, c->tok);
    if (!r)
        r = train_lora_attach(&c->t, policy, c->policy);
    if (!r && al->uses_kl(al->params)) {
        if (c->reference) {
            r = load_frozen(c->reference, &ref);
            if (!r)
                r = check_vocab(ref, t, c->tok);
        } else if ((rc = align_model_clone(&ref, policy, ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS)) < 0) {
            r = rt_fail(rc, align_model_errmsg(policy), "cannot copy the policy as reference");
        }
    }
    if (!r && c->value) {
        r = load_with(c->value, ALIGN_MODEL_SCALAR_HEAD, &value);
        if (!r)
            r = check_vocab(value, t, c->tok);
    }
    if (!r)
        r = load_dataset(c->prompts, c->t.lenient ? ALIGN_LENIENT : 0, &data);
    if (!r && c->ptx && al->ptx_data) {
        r = load_dataset(c->ptx, c->t.lenient ? ALIGN_LENIENT : 0, &ptx);
        *al->ptx_data = ptx;
    }
    if (!r && c->reward_model) {
        r = load_frozen(c->reward_model, &rmm);
        if (!r)
            r = check_vocab(rmm, t, c->tok);
        if (!r) {
            align_reward_params rp;
            ALIGN_REWARD_DEFAULT_PARAMS(&rp);
            rp.flags = c->reward_chat ? ALIGN_REWARD_CHAT : 0;
            rc = align_reward_model_from_model(&inner, rmm, t, &rp);
            if (rc < 0)
                r = rt_fail(rc, align_last_errmsg(),
                            "'%s' cannot be a reward model (it needs a scalar head: "
                            "alignctl init --scalar-head, or a trained reward model)",
                            c->reward_model);
        }
    }
    if (!r && c->reward_cmd)
        r = extproc_start(&w.ep, c->reward_cmd, c->reward_timeout, interrupted);
    w.inner = inner;
    if (!r && (rc = align_reward_model_from_callback(&rm, reward_fn, &w)) < 0)
        r = rt_fail(rc, align_last_errmsg(), "cannot set up the reward");
    if (r)
        goto out;

    int64_t total = c->t.steps ? c->t.steps : al->plan(al->params, align_dataset_size(data));
    c->t.op.total_steps = total > INT32_MAX ? INT32_MAX : (int32_t)(total > 0 ? total : 1);
    if ((rc = align_optimizer_create(&o, policy, &c->t.op)) < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the optimizer");
        goto out;
    }
    if (value) {
        align_optimizer_params vp = c->t.op;
        if (c->value_lr > 0)
            vp.learning_rate = c->value_lr;
        if ((rc = align_optimizer_create(&vo, value, &vp)) < 0) {
            r = rt_fail(rc, align_last_errmsg(), "cannot create the value optimizer");
            goto out;
        }
    }
    align_rl_roles roles;
    ALIGN_RL_ROLES_INIT(&roles);
    roles.policy = policy;
    roles.policy_opt = o;
    roles.value = value;
    roles.value_opt = vo;
    roles.reference = ref;
    roles.reward = rm;
    roles.tokenizer = t;
    if ((rc = al->create(&tr, &roles, data, al->params)) < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the %s trainer", al->name);
        goto out;
    }
    if ((r = dist_start(&c->t, tr)) != 0) /* --dist: before resume (set_dist precedes the first step) */
        goto out;
    if (resume && (rc = align_trainer_resume(tr, resume)) < 0) {
        r = rt_fail(rc, align_trainer_errmsg(tr),
                    "cannot resume from '%s' (was it saved by a run with the same policy, "
                    "prompts and options?)",
                    resume);
        goto out;
    }
    int64_t step = align_optimizer_steps_done(o);
    if (resume)
        msg("resumed from '%s' at step %lld", resume, (long long)step);
    double time_offset = 0;
    if (c->t.metrics_path) {
        if (resume)
            time_offset = metrics_last_time(c->t.metrics_path, step);
        if (!(mf = fopen(c->t.metrics_path, resume ? "a" : "w"))) {
            msg("cannot open metrics file '%s': %s", c->t.metrics_path, strerror(errno));
            r = EXIT_RUNTIME;
            goto out;
        }
    }
    if (!c->t.quiet)
        msg("training: %lld prompts, %s%lld steps, reward %s '%s', lr %g",
            (long long)align_dataset_size(data), c->t.steps ? "" : "about ", (long long)total,
            c->reward_cmd ? "command" : "model", c->reward_cmd ? c->reward_cmd : c->reward_model,
            (double)c->t.op.learning_rate);

    int tty = isatty(2);
    double t0 = now_sec(), last_draw = 0;
    int64_t first = step, last_saved = resume ? step : -1, last_sample = -1;
    int nonfinite = 0, interrupted_run = 0;
    signals_attach(tr);
    for (;;) {
        if (!dist_active() && signals_caught()) { /* distributed: the step stops every rank */
            interrupted_run = 1;
            break;
        }
        align_step_stats st;
        align_step_stats_init(&st, sizeof st);
        rc = align_trainer_step(tr, &st);
        if (rc == ALIGN_DONE)
            break;
        if (rc == ALIGN_ECANCELED || (rc < 0 && signals_caught())) {
            interrupted_run = 1; /* nothing of this step was applied */
            break;
        }
        if (rc == ALIGN_ENONFINITE && !extproc_failed(w.ep) && !w.err[0]) {
            rl_bar_clear();
            msg("warning: step %lld had a non-finite loss or gradient; update skipped",
                (long long)step + 1);
            if (++nonfinite >= 10) {
                r = rt_fail(rc, align_trainer_errmsg(tr),
                            "10 non-finite steps in a row: lower --lr");
                break;
            }
            continue;
        }
        if (rc < 0) {
            rl_bar_clear();
            if (extproc_failed(w.ep))
                msg("%s", extproc_errmsg(w.ep));
            else if (w.err[0])
                msg("%s", w.err);
            r = rt_fail(rc, align_trainer_errmsg(tr), "training step %lld failed",
                        (long long)step + 1);
            char dir[4200];
            dir[0] = '\0';
            if (last_saved >= 0 && (!resume || last_saved != first))
                snprintf(dir, sizeof dir, "%s/step-%lld", ckdir, (long long)last_saved);
            else if (resume)
                snprintf(dir, sizeof dir, "%s", resume);
            if (dir[0]) {
                msg("the last checkpoint, %s (step %lld), is unchanged", dir,
                    (long long)last_saved);
                print_resume_hint(argc, argv, dir);
            }
            break;
        }
        nonfinite = 0;
        step = st.step;
        rl_progress(c, tr, &st, total, first, t0, &last_draw, tty);
        if (mf && metrics_write_step_tr(mf, tr, &st, time_offset + now_sec() - t0, NULL) != 0) {
            msg("cannot write metrics file '%s'", c->t.metrics_path);
            r = EXIT_RUNTIME;
            break;
        }
        if (!c->t.quiet && c->sample_every > 0 && step % c->sample_every == 0 &&
            w.rollouts != last_sample) {
            rl_sample_table(c, &w, step);
            last_sample = w.rollouts;
        }
        if (c->t.save_every > 0 && step % c->t.save_every == 0) {
            char dir[4200];
            rl_bar_clear();
            if ((r = checkpoint_save(tr, ckdir, step, dir, sizeof dir)))
                break;
            last_saved = step;
            if (!c->t.quiet && !tty)
                fprintf(stderr, "checkpoint: %s\n", dir);
        }
    }
    if (r)
        goto out;
    rl_bar_clear();
    if (interrupted_run || signals_caught()) {
        char dir[4200];
        int sig = signals_caught();
        if (resume && step == first)
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
    if (c->t.save_every > 0 && last_saved != step) {
        char dir[4200];
        if ((r = checkpoint_save(tr, ckdir, step, dir, sizeof dir)))
            goto out;
        if (!c->t.quiet)
            fprintf(stderr, "checkpoint: %s\n", dir);
    }
    if (dist_rank() == 0 && (r = train_save(&c->t, policy)))
        goto out;
    if (!c->t.quiet)
        msg("trained %lld steps (last mean score %.4g); policy saved to %s", (long long)step,
            rl_metric(tr, "objective/scores"), c->t.out);
out:
    rl_bar_clear();
    if (mf && fclose(mf) != 0 && !r) {
        msg("cannot write metrics file '%s'", c->t.metrics_path);
        r = EXIT_RUNTIME;
    }
    signals_restore();
    align_trainer_free(tr);
    dist_end(r);
    align_reward_model_free(rm);
    extproc_close(w.ep); /* after the trainer: nothing scores any more */
    reward_forget(&w);
    free(w.p);
    free(w.r);
    free(w.s);
    align_reward_model_free(inner);
    align_optimizer_free(vo);
    align_optimizer_free(o);
    align_dataset_free(ptx);
    align_dataset_free(data);
    align_model_free(value);
    align_model_free(rmm);
    align_model_free(ref);
    align_model_free(policy);
    align_tokenizer_free(t);
    return r;
}
