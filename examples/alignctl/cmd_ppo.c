/* cmd_ppo.c — alignctl ppo: PPO with a per-token KL penalty to a frozen
 * reference (Schulman et al. 2017; Ziegler et al. 2019; Ouyang et al. 2022)
 * against a reward model or a reward command. The value function is a
 * scalar head on the policy's trunk (added if the policy file has none) or,
 * with --value, a separate model. Shared machinery: cmd_rl_common.c. */
#include "alignctl.h"
#include "rl_cli.h"

#include <string.h>

static const char *const HELP_PPO =
    "usage: alignctl ppo --policy M --tokenizer TOK --prompts P.jsonl\n"
    "                    (--reward-model RM | --reward-cmd CMD) --out OUT.safetensors [options]\n"
    "\n"
    "Proximal policy optimisation: responses are sampled from the policy, scored by the\n"
    "reward, penalised per token by the KL to the reference, and the policy is updated\n"
    "with the clipped surrogate on GAE advantages while a value head learns the returns.\n"
    "One step is one optimiser update on one minibatch; a rollout of --rollouts responses\n"
    "(one per prompt) is made whenever --ppo-epochs x --minibatches steps have used it.\n"
    "The value head is trained with the policy and saved with it in OUT.\n"
    "\n"
    "PPO options:\n"
    "  --rollouts N        responses per rollout (default 16)\n"
    "  --ppo-epochs N      passes over each rollout (default 4)\n"
    "  --minibatches N     optimiser steps per pass (default 1)\n"
    "  --kl-coef X         KL penalty coefficient in the reward (alias --beta; default 0.05)\n"
    "  --target-kl X       adapt the coefficient towards X nats per response (Ziegler et\n"
    "                      al. 2019); --kl-coef is then the starting value\n"
    "  --kl-horizon N      horizon of that controller in responses (default 10000)\n"
    "  --clip-ratio X      ratio clip epsilon (default 0.2)\n"
    "  --clip-ratio-high X upper clip epsilon (default = --clip-ratio)\n"
    "  --vf-coef X         value loss coefficient (default 0.1)\n"
    "  --vf-clip X         value clip epsilon, 0 = off (default 0.2)\n"
    "  --gamma X           GAE discount (default 1)\n"
    "  --lam X             GAE lambda (default 0.95)\n"
    "  --missing-eos-penalty X  subtracted from the score of a response that never ends\n"
    "  --no-whiten         do not whiten the advantages\n"
    "  --value V           a separate value model (with a scalar head) instead of a head\n"
    "                      on the policy; it is trained but not saved\n"
    "  --value-lr X        its learning rate (default --lr)\n"
    "  --ptx-data D.jsonl  PPO-ptx (InstructGPT): each step also trains on demonstrations\n"
    "                      (prompt/completion or chat records) with the SFT loss\n"
    "  --ptx-coef X        weight of that loss (default 1)\n"
    "  --ptx-batch N       demonstration rows per step (default 8)\n";

static int create(align_trainer **out, const align_rl_roles *roles, align_dataset *d,
                  const void *p)
{
    return align_trainer_create_ppo(out, roles, d, p);
}

static int uses_kl(const void *pv)
{
    const align_ppo_params *p = pv;
    return p->kl_coef != 0 || (p->flags & ALIGN_PPO_ADAPTIVE_KL);
}

static int64_t plan(const void *pv, int64_t n)
{
    const align_ppo_params *p = pv;
    int64_t rollouts = (n + p->rollouts_per_step - 1) / p->rollouts_per_step;
    return rollouts * p->epochs * p->ppo_epochs * p->minibatches;
}

int cmd_ppo(int argc, char **argv)
{
    const char *v;
    align_ppo_params p;
    ALIGN_PPO_DEFAULT_PARAMS(&p);
    rl_cli c;
    rl_cli_init(&c);
    RL_SAMPLING_IN(&c.samp, &p);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_PPO, stdout);
            fputs("\n", stdout);
            fputs(RL_COMMON_HELP, stdout);
            return EXIT_OK;
        } else if (rl_common_opt(&c, argc, argv, &i)) {
            continue;
        } else if (opt(argc, argv, &i, "--rollouts", &v)) {
            p.rollouts_per_step = parse_int("--rollouts", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--ppo-epochs", &v)) {
            p.ppo_epochs = parse_int("--ppo-epochs", v, 1, 1000);
        } else if (opt(argc, argv, &i, "--minibatches", &v)) {
            p.minibatches = parse_int("--minibatches", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--kl-coef", &v) || opt(argc, argv, &i, "--beta", &v)) {
            p.kl_coef = parse_float("--kl-coef", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--target-kl", &v)) {
            p.kl_target = parse_float("--target-kl", v, 1e-9, 1e9);
            p.flags |= ALIGN_PPO_ADAPTIVE_KL;
        } else if (opt(argc, argv, &i, "--kl-horizon", &v)) {
            p.kl_horizon = parse_float("--kl-horizon", v, 1, 1e12);
        } else if (opt(argc, argv, &i, "--clip-ratio", &v)) {
            p.clip_eps = parse_float("--clip-ratio", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--clip-ratio-high", &v)) {
            p.clip_eps_high = parse_float("--clip-ratio-high", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--vf-coef", &v)) {
            p.vf_coef = parse_float("--vf-coef", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--vf-clip", &v)) {
            p.vf_clip = parse_float("--vf-clip", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--gamma", &v)) {
            p.gamma = parse_float("--gamma", v, 0, 1);
        } else if (opt(argc, argv, &i, "--lam", &v)) {
            p.lam = parse_float("--lam", v, 0, 1);
        } else if (opt(argc, argv, &i, "--missing-eos-penalty", &v)) {
            p.missing_eos_penalty = parse_float("--missing-eos-penalty", v, -1e30, 1e30);
        } else if (flag(a, "--no-whiten")) {
            p.flags |= ALIGN_PPO_NO_WHITEN;
        } else if (opt(argc, argv, &i, "--value", &v)) {
            c.value = v;
        } else if (opt(argc, argv, &i, "--value-lr", &v)) {
            c.value_lr = parse_float("--value-lr", v, 1e-12, 10);
        } else if (opt(argc, argv, &i, "--ptx-data", &v)) {
            c.ptx = v;
        } else if (opt(argc, argv, &i, "--ptx-coef", &v)) {
            p.ptx_coef = parse_float("--ptx-coef", v, 0, 1e6);
        } else if (opt(argc, argv, &i, "--ptx-batch", &v)) {
            p.ptx_batch = parse_int("--ptx-batch", v, 1, 65536);
        } else {
            unknown_arg(a);
        }
    }
    int r = rl_common_check(&c);
    if (r)
        return r;
    if (c.value_lr > 0 && !c.value)
        usage_die("--value-lr needs --value (the value head on the policy uses --lr)");
    RL_SAMPLING_OUT(&p, &c.samp);
    p.max_steps = c.t.steps;
    p.epochs = c.t.epochs ? c.t.epochs : 1;
    rl_algo al = {"PPO", c.value ? 0 : ALIGN_MODEL_SCALAR_HEAD, &p, &p.ptx_data, create, uses_kl,
                  plan};
    return rl_run(&c, argc, argv, &al);
}
