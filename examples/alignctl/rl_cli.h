/* rl_cli.h — shared by alignctl ppo, grpo and rloo (cmd_rl_common.c). */
#ifndef RL_CLI_H
#define RL_CLI_H

#include "alignctl.h"

enum { RL_MAX_STOP = 16 };

/* The options every RL command has that live in the algorithm's params;
 * the command copies its defaults in and the values back out. */
typedef struct rl_sampling {
    uint32_t flags; /* ALIGN_RL_* */
    int32_t micro_batch, max_new_tokens, top_k, max_prompt_len;
    float temperature, top_p, score_clip;
    uint64_t seed;
    const char *stop[RL_MAX_STOP];
    int32_t n_stop;
} rl_sampling;

/* Copies between rl_sampling and an align_grpo_params / align_ppo_params,
 * which name these members alike. */
#define RL_SAMPLING_IN(s, p)                                                          \
    do {                                                                              \
        (s)->flags = (p)->flags;                                                      \
        (s)->micro_batch = (p)->micro_batch;                                          \
        (s)->max_new_tokens = (p)->max_new_tokens;                                    \
        (s)->top_k = (p)->top_k;                                                      \
        (s)->max_prompt_len = (p)->max_prompt_len;                                    \
        (s)->temperature = (p)->temperature;                                          \
        (s)->top_p = (p)->top_p;                                                      \
        (s)->score_clip = (p)->score_clip;                                            \
        (s)->seed = (p)->seed;                                                        \
    } while (0)
#define RL_SAMPLING_OUT(p, s)                                                         \
    do {                                                                              \
        (p)->flags |= (s)->flags;                                                     \
        (p)->micro_batch = (s)->micro_batch;                                          \
        (p)->max_new_tokens = (s)->max_new_tokens;                                    \
        (p)->top_k = (s)->top_k;                                                      \
        (p)->max_prompt_len = (s)->max_prompt_len;                                    \
        (p)->temperature = (s)->temperature;                                          \
        (p)->top_p = (s)->top_p;                                                      \
        (p)->score_clip = (s)->score_clip;                                            \
        (p)->seed = (s)->seed;                                                        \
        (p)->stop = (s)->n_stop ? (s)->stop : NULL;                                   \
        (p)->n_stop = (s)->n_stop;                                                    \
    } while (0)

typedef struct rl_cli {
    train_opts t; /* --out, --steps, --epochs, optimiser, checkpoints, --metrics, ... */
    const char *policy, *tok, *prompts, *reference, *reward_model, *reward_cmd;
    const char *value; /* PPO: a separate value model */
    const char *ptx;   /* PPO: demonstrations for the PPO-ptx term */
    double reward_timeout;
    int reward_chat;
    int sample_every, sample_rows;
    float value_lr; /* PPO --value-lr; 0 = --lr */
    rl_sampling samp;
} rl_cli;

/* One algorithm: how to build its trainer from the roles. */
typedef struct rl_algo {
    const char *name;      /* "PPO", "GRPO", "RLOO" */
    uint32_t policy_flags; /* align_model_load flags for the policy */
    const void *params;
    align_dataset **ptx_data; /* where the --ptx-data dataset goes (in params), or NULL */
    int (*create)(align_trainer **out, const align_rl_roles *roles, align_dataset *prompts,
                  const void *params);
    int (*uses_kl)(const void *params); /* 0: no reference model needed */
    int64_t (*plan)(const void *params, int64_t n_prompts); /* planned steps */
} rl_algo;

/* The reward as the trainer sees it: a callback in front of the scorer that
 * keeps the latest scored batch for the sample table (cmd_rl_common.c). */
typedef struct rl_reward {
    extproc *ep;                /* --reward-cmd */
    align_reward_model *inner;  /* --reward-model */
    char err[1024];             /* the inner model's failure */
    /* pairs scored since rl_reward_mark: the latest rollout */
    char **p, **r;
    float *s;
    int32_t n, cap;
    int64_t rollouts;           /* scoring calls seen */
} rl_reward;

extern const char *const RL_COMMON_HELP;
void rl_cli_init(rl_cli *c);
/* The option at argv[*i] if it is a common one (train_opt's included): 1
 * (and *i advanced past its value), else 0. */
int rl_common_opt(rl_cli *c, int argc, char **argv, int *i);
/* Usage errors exit 2; 0, or EXIT_RUNTIME when --resume names no checkpoint. */
int rl_common_check(rl_cli *c);
int rl_run(rl_cli *c, int argc, char **argv, const rl_algo *al);

/* rl_output.c */
void rl_bar_clear(void); /* erase our progress line */
double rl_metric(const align_trainer *tr, const char *name); /* NaN if absent */
/* The progress line of a step: redrawn on a terminal, every --log-every
 * steps otherwise. total: planned steps; first: the step the run started at. */
void rl_progress(const rl_cli *c, const align_trainer *tr, const align_step_stats *st,
                 int64_t total, int64_t first, double t0, double *last_draw, int tty);
/* The latest scored responses, c->sample_rows of them, on stderr. */
void rl_sample_table(const rl_cli *c, const rl_reward *w, int64_t step);

#endif
