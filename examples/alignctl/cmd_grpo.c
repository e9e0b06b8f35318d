/* cmd_grpo.c — alignctl grpo and alignctl rloo: group-relative policy
 * optimisation (Shao et al. 2024) and REINFORCE leave-one-out (Ahmadian et
 * al. 2024) against a reward model or a reward command. Both take the same
 * options (one params struct); rloo starts from RLOO's defaults. The shared
 * machinery is cmd_rl_common.c. */
#include "alignctl.h"
#include "rl_cli.h"

#include <string.h>

static const char *const HELP_GRPO =
    "usage: alignctl %s --policy M --tokenizer TOK --prompts P.jsonl\n"
    "                     (--reward-model RM | --reward-cmd CMD) --out OUT.safetensors [options]\n"
    "\n"
    "%s\n"
    "\n"
    "One step is one optimiser update on one minibatch of the rollout buffer; a rollout\n"
    "(--prompts-per-step prompts x --group-size responses, scored by the reward) is made\n"
    "whenever the buffer is used up (--iterations x --minibatches steps).\n"
    "\n"
    "%s options:\n"
    "  --group-size G      responses per prompt (default %d; >= 2)\n"
    "  --prompts-per-step N  prompts per rollout (default 8)\n"
    "  --iterations N      passes over each rollout (default 1)\n"
    "  --minibatches N     optimiser steps per pass (default 1)\n"
    "  --beta X            KL coefficient (alias --kl-coef; default %g): %s\n"
    "  --clip-ratio X      ratio clip epsilon (default 0.2)%s\n"
    "  --clip-ratio-high X upper clip epsilon (DAPO: 0.28; default = --clip-ratio)\n";
static const char *const HELP_GRPO_ONLY =
    "  --loss-agg A        token|sequence|constant loss averaging (default token)\n"
    "  --no-std            advantages r - mean(group), not divided by the std (Dr. GRPO)\n"
    "  --batch-std         divide by the std over the whole rollout, not the group's\n";

static int create_grpo(align_trainer **out, const align_rl_roles *roles, align_dataset *d,
                       const void *p)
{
    return align_trainer_create_grpo(out, roles, d, p);
}

static int create_rloo(align_trainer **out, const align_rl_roles *roles, align_dataset *d,
                       const void *p)
{
    return align_trainer_create_rloo(out, roles, d, p);
}

static int uses_kl(const void *p)
{
    return ((const align_grpo_params *)p)->beta != 0;
}

static int64_t plan(const void *pv, int64_t n)
{
    const align_grpo_params *p = pv;
    int64_t rollouts = (n + p->prompts_per_step - 1) / p->prompts_per_step;
    return rollouts * p->epochs * p->iterations * p->minibatches;
}

static int run(int argc, char **argv, int rloo)
{
    const char *name = rloo ? "rloo" : "grpo", *v;
    align_grpo_params p;
    if (rloo)
        ALIGN_RLOO_DEFAULT_PARAMS(&p);
    else
        ALIGN_GRPO_DEFAULT_PARAMS(&p);
    rl_cli c;
    rl_cli_init(&c);
    RL_SAMPLING_IN(&c.samp, &p);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            printf(HELP_GRPO, name,
                   rloo ? "REINFORCE leave-one-out (Ahmadian et al. 2024): each response's "
                          "baseline is the\nmean score of the other responses to its prompt; "
                          "the KL to the reference is\nsubtracted from the score."
                        : "Group-relative policy optimisation (Shao et al. 2024): each "
                          "response's advantage is its\nscore against the mean (and std) of "
                          "the responses to the same prompt; a k3 KL term\nto the reference "
                          "is added to the loss.",
                   rloo ? "RLOO" : "GRPO", p.group_size, (double)p.beta,
                   rloo ? "k1 KL folded into the score" : "k3 KL term in the loss",
                   rloo ? "; <= 0: plain REINFORCE" : "");
            if (!rloo)
                fputs(HELP_GRPO_ONLY, stdout);
            fputs("\n", stdout);
            fputs(RL_COMMON_HELP, stdout);
            return EXIT_OK;
        } else if (rl_common_opt(&c, argc, argv, &i)) {
            continue;
        } else if (opt(argc, argv, &i, "--group-size", &v)) {
            p.group_size = parse_int("--group-size", v, 2, 4096);
        } else if (opt(argc, argv, &i, "--prompts-per-step", &v)) {
            p.prompts_per_step = parse_int("--prompts-per-step", v, 1, 4096);
        } else if (opt(argc, argv, &i, "--iterations", &v)) {
            p.iterations = parse_int("--iterations", v, 1, 1000);
        } else if (opt(argc, argv, &i, "--minibatches", &v)) {
            p.minibatches = parse_int("--minibatches", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--beta", &v) || opt(argc, argv, &i, "--kl-coef", &v)) {
            p.beta = parse_float("--beta", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--clip-ratio", &v)) {
            p.clip_eps = parse_float("--clip-ratio", v, rloo ? -1 : 0, 1e6);
        } else if (opt(argc, argv, &i, "--clip-ratio-high", &v)) {
            p.clip_eps_high = parse_float("--clip-ratio-high", v, 0, 1e6);
        } else if (!rloo && opt(argc, argv, &i, "--loss-agg", &v)) {
            if (strcmp(v, "token") == 0)
                p.loss_agg = ALIGN_RL_AGG_TOKEN_MEAN;
            else if (strcmp(v, "sequence") == 0)
                p.loss_agg = ALIGN_RL_AGG_SEQ_MEAN;
            else if (strcmp(v, "constant") == 0)
                p.loss_agg = ALIGN_RL_AGG_CONSTANT;
            else
                usage_die("--loss-agg expects token, sequence or constant, got '%s'", v);
        } else if (!rloo && flag(a, "--no-std")) {
            p.flags |= ALIGN_GRPO_NO_STD;
        } else if (!rloo && flag(a, "--batch-std")) {
            p.flags |= ALIGN_GRPO_BATCH_STD;
        } else {
            unknown_arg(a);
        }
    }
    int r = rl_common_check(&c);
    if (r)
        return r;
    if ((p.flags & ALIGN_GRPO_NO_STD) && (p.flags & ALIGN_GRPO_BATCH_STD))
        usage_die("give --no-std or --batch-std, not both");
    RL_SAMPLING_OUT(&p, &c.samp);
    p.max_steps = c.t.steps;
    p.epochs = c.t.epochs ? c.t.epochs : 1;
    rl_algo al = {rloo ? "RLOO" : "GRPO", 0, &p, NULL, rloo ? create_rloo : create_grpo, uses_kl,
                  plan};
    return rl_run(&c, argc, argv, &al);
}

int cmd_grpo(int argc, char **argv)
{
    return run(argc, argv, 0);
}

int cmd_rloo(int argc, char **argv)
{
    return run(argc, argv, 1);
}
