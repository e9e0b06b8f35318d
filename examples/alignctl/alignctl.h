/*
 * alignctl.h — private header of alignctl, the command-line face of libalign.
 *
 * alignctl is built only on the public API (include/align.h), so it is also
 * the proof that the API is enough. One file per subcommand (cmd_*.c) plus
 * shared modules:
 *   util.c      messages, files, time, UTF-8 clean-up, JSON helpers (jansson)
 *   options.c   option parsing (--name VALUE / --name=VALUE, flags, numbers)
 *   progress.c  library log lines, the progress bar / plain progress lines
 *   load.c      tokenizer, model and dataset loading; BLAS set-up and re-run
 *   metrics.c   the --metrics JSONL writer and reader
 *   signals.c   Ctrl-C / SIGTERM handling, checkpoints, --resume folders
 *   svg.c       the SVG plot
 *   extproc.c   an external program as the reward (--reward-cmd)
 *   main.c      the command table and dispatch
 * A new subcommand is a new cmd_NAME.c defining `int cmd_NAME(int, char **)`
 * plus one line in commands.def.
 *
 * Exit status: 0 ok, 1 runtime error, 2 usage error, 130 interrupted
 * (SIGINT; 143 for SIGTERM) with a checkpoint saved. Docs: docs/cli/.
 */
#ifndef ALIGNCTL_H
#define ALIGNCTL_H

#include "align.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/* Every subcommand: argv[1] is its name, options start at argv[2]. */
typedef int (*cmd_fn)(int argc, char **argv);
#define CMD(name, summary) int cmd_##name(int argc, char **argv);
#include "commands.def"
#undef CMD

/* ---- util.c ------------------------------------------------------------- */
extern char g_cmd[64]; /* "alignctl sft": prefix of every message */

void msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A failed library call: "<what>: <detail> (ALIGN_EXXX)". Returns EXIT_RUNTIME. */
int rt_fail(int rc, const char *detail, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
double now_sec(void);
int file_exists(const char *path);
int is_dir(const char *path);
/* Reads a whole stream / file, NUL-terminated. 0 or -1 (errno set). */
int read_stream(FILE *f, char **out, size_t *len);
int read_file(const char *path, char **out, size_t *len);
int mkdirs(const char *path); /* mkdir -p */
void fmt_duration(char *buf, size_t cap, double s);
void fmt_bytes(char *buf, size_t cap, double b);

/* JSON through jansson. A string of arbitrary bytes (invalid UTF-8 becomes
 * U+FFFD); never NULL unless out of memory. */
json_t *json_bytes(const char *s, size_t n);
/* A number; NaN and infinities become null. */
json_t *json_num(double x);
/* obj[key] = value (stolen); no-op if value is NULL. */
void json_put(json_t *obj, const char *key, json_t *value);
/* Writes v compactly plus a newline, 7 significant digits for reals;
 * decrefs v. 0 or -1. */
int json_print_line(FILE *f, json_t *v);

/* JSON Lines: calls fn(line_no, value, ud) for every non-blank line of
 * buf[0..len); a line that is not valid JSON gives fn a NULL value and the
 * parser's message in err. Stops at fn's nonzero return, which it returns. */
typedef int (*jsonl_fn)(long line, json_t *value, const char *err, void *ud);
int jsonl_each(const char *buf, size_t len, jsonl_fn fn, void *ud);

/* ---- options.c ---------------------------------------------------------- */
/* A usage error: says what is wrong and where help is; exits 2. Only called
 * while parsing arguments, before anything is allocated. */
_Noreturn void usage_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int is_help(const char *a);
/* Option `name` at argv[*i] as "--name VALUE" or "--name=VALUE": 1 and *v. */
int opt(int argc, char **argv, int *i, const char *name, const char **v);
/* A flag without value; "--flag=..." is a usage error. */
int flag(const char *a, const char *name);
_Noreturn void unknown_arg(const char *a);
int parse_int(const char *name, const char *v, long long lo, long long hi);
uint64_t parse_u64(const char *name, const char *v);
float parse_float(const char *name, const char *v, double lo, double hi);
/* --compute fp32|bf16: ALIGN_COMPUTE_FP32 or ALIGN_COMPUTE_BF16; anything else
 * is a usage error. */
int parse_compute(const char *v);

/* ---- progress.c --------------------------------------------------------- */
void log_install(void);   /* routes library log lines through on_log */
void log_capture(int on); /* 1: hold library log lines back; 0: stop holding */
const char *log_held(void); /* what was held ("" if nothing) */
void log_held_clear(void);
void bar_clear(void);     /* erase a progress bar drawn on the current line */

typedef struct progress {
    int tty, quiet, log_every;
    int64_t total;       /* planned steps (estimate in epoch mode), 0 unknown */
    int64_t first_step;  /* step counter when this run started */
    double t0, last_draw;
} progress;
void progress_update(progress *pg, const align_step_stats *s, int force);

/* ---- load.c ------------------------------------------------------------- */
/* The named input files exist (clear message, EXIT_RUNTIME otherwise). */
int require_inputs(const char *model, const char *tok, const char *data, const char *eval);
int load_tokenizer(const char *spec, align_tokenizer **out);
int load_model(const char *path, align_model **out);
int load_dataset(const char *path, uint32_t flags, align_dataset **out);
int check_vocab(const align_model *m, const align_tokenizer *t, const char *tok_spec);
/* Before heavy math: re-runs the program with OPENBLAS_CORETYPE set when the
 * library says the BLAS kernel is a slow fallback; sets threads; prints the
 * banner. */
void blas_setup(char **argv, int threads);
/* --compute: align_compute_set(mode), nothing when mode < 0 (not given). 0, or
 * EXIT_RUNTIME with the library's reason (no bf16 without oneDNN or without
 * AVX512_BF16 / AMX on the CPU): there is no silent fallback to fp32. */
int compute_apply(int mode);
/* For commands without heavy math: swallows the one-time slow-kernel warning. */
void blas_quiet(void);

/* ---- metrics.c ---------------------------------------------------------- */
/* One training step as a JSON line (eval may be NULL). */
int metrics_write_step(FILE *f, const align_step_stats *st, double time,
                       const align_step_stats *eval);
/* A final evaluation line {"step", "eval_loss", "eval_accuracy"}. */
int metrics_write_eval(FILE *f, int64_t step, const align_step_stats *eval);
/* The same, plus every named metric of the trainer (align_trainer_metrics):
 * the step's under their own names, the evaluation's as "eval_<name>". */
/* ---- train_loop.c: what every training subcommand shares ------------------ */
typedef struct train_opts {
    const char *out, *eval_path, *resume, *metrics_path, *ckdir_arg;
    const char *dist;        /* --dist mpi|none|auto (dist.c) */
    int steps, epochs, threads, eval_every, save_every, quiet, log_every, lenient;
    int compute;             /* --compute: ALIGN_COMPUTE_*, -1 not given */
    align_optimizer_params op;
    char ckdir[4096];        /* checkpoint folder (train_opts_finish) */
    char resume_dir[4200];   /* --resume resolved to a checkpoint folder */
    int use_lora;            /* --lora SPEC given */
    align_lora_params lora;
    char lora_targets[256];
    const char *lora_merged; /* --lora-merged PATH */
} train_opts;
void train_opts_init(train_opts *o);
/* Consumes the common option at argv[*i] (--out, --steps, --epochs, --lr,
 * --schedule, --warmup, --min-lr-ratio, --weight-decay, --clip, --eval-data,
 * --eval-every, --save-every, --checkpoint-dir, --resume, --metrics,
 * --threads, --compute, --log-every, --quiet, --lenient): 1 if it was one. */
int train_opt(int argc, char **argv, int *i, train_opts *o);
/* With --lora: attaches the adapters to m (call before creating the optimizer
 * and the reference: the reference is then m without adapters, sharing its
 * weights). 0 or an exit code. */
int train_lora_attach(train_opts *o, align_model *m, const char *model_path);
/* Saves the trained m to --out: the model, or with --lora the PEFT adapter
 * folder (and the merged model to --lora-merged). 0 or an exit code. */
int train_save(const train_opts *o, align_model *m);
/* The common help lines of --lora / --lora-merged. */
#define LORA_HELP                                                                                        \
    "  --lora SPEC         train LoRA adapters only: r=N,alpha=X,targets=LIST[,seed=N]\n"                \
    "                      (GPT-2: c_attn, c_proj, attn.c_proj, mlp.c_proj, c_fc; Llama:\n"              \
    "                      q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;\n"            \
    "                      all-linear; aliases q, k, v, o, gate, up, down; default: c_attn\n"          \
    "                      on GPT-2, q_proj,v_proj on Llama). --out is then a PEFT adapter\n"           \
    "                      folder; the reference is the model with adapters off (no copy)\n"             \
    "  --lora-merged PATH  with --lora: also save the model with the adapters merged\n"
/* Checks the common options, sets --compute (EXIT_RUNTIME if refused) and
 * resolves --resume and the checkpoint folder. */
int train_opts_finish(train_opts *o);
/* Resumes if asked, then steps tr until ALIGN_DONE with progress, evaluation
 * of evald, --metrics lines, checkpoints and Ctrl-C (checkpoint + resume hint +
 * 130), and saves save_model to --out. opt_main counts the steps done. */
int train_run(train_opts *o, int argc, char **argv, align_trainer *tr, align_optimizer *opt_main,
              align_dataset *evald, align_model *save_model, int64_t total);

/* dist.c: --dist (docs/distributed.md). dist_start joins the MPI job when
 * asked or launched by mpirun (0 or an exit status); rank 0 alone reports
 * and writes files. dist_end(status) finalises, or aborts every rank when
 * this one failed. */
int  dist_start(train_opts *o, align_trainer *tr);
/* signals.c: checkpoint_save keeps the 'latest' link (0 on ranks > 0). */
extern int g_ckpt_links;
int  dist_rank(void);
int  dist_active(void);
void dist_end(int status);

int metrics_write_step_tr(FILE *f, const align_trainer *tr, const align_step_stats *st, double time,
                          const align_step_stats *eval);
int metrics_write_eval_tr(FILE *f, const align_trainer *tr, int64_t step, const align_step_stats *eval);
/* "time" of the last record with step <= upto, so a resumed clock continues. */
double metrics_last_time(const char *path, int64_t upto);

/* ---- signals.c ---------------------------------------------------------- */
/* From here on SIGINT / SIGTERM are caught (signals_caught) and ask the
 * attached trainer to stop. Every signal after the first only asks again, so
 * the checkpoint written on the way out is never cut short. */
void signals_install(void);
void signals_attach(align_trainer *tr); /* the trainer to stop; NULL detaches */
void signals_restore(void);
int signals_caught(void); /* the first signal caught, 0 if none */
/* Saves tr into ckdir/step-N and points ckdir/latest at it; dir_out gets
 * ckdir/step-N. */
int checkpoint_save(align_trainer *tr, const char *ckdir, int64_t step, char *dir_out,
                    size_t cap);
/* --resume DIR: a checkpoint folder, or a run's folder holding `latest`.
 * Writes the checkpoint folder to out; EXIT_RUNTIME with a message if none. */
int resume_resolve(const char *dir, char *out, size_t cap);
void print_resume_hint(int argc, char **argv, const char *dir);

/* ---- svg.c -------------------------------------------------------------- */
typedef struct series {
    char *name;
    double *x, *y;
    size_t n, cap;
} series;
int series_push(series *s, double x, double y);
void svg_write(FILE *f, const char *title, const char *xname, const series *S, size_t ns,
               int cols);

/* ---- extproc.c ---------------------------------------------------------- */
/* `--reward-cmd "PROGRAM ARGS"`: the program, started once under /bin/sh -c,
 * reads {"prompt": ..., "response": ...} lines on stdin and answers each with
 * a line {"score": x} on stdout, in order (protocol: docs/cli/grpo.md). */
typedef struct extproc extproc;
/* Starts the command. timeout_sec: longest wait for one answer.
 * interrupted (may be NULL): polled while waiting; nonzero stops the wait
 * (ALIGN_ECANCELED). 0, or EXIT_RUNTIME with a message. */
int extproc_start(extproc **out, const char *command, double timeout_sec,
                  int (*interrupted)(void));
/* Scores n pairs. 0, or a negative ALIGN_E* with the reason in
 * extproc_errmsg (which names the command and the offending line); the
 * program is then stopped and every later call fails the same way. */
int extproc_score(extproc *ep, const char *const *prompts, const char *const *responses,
                  int32_t n, float *scores);
/* The align_score_fn adapter (user_data is the extproc). */
int extproc_score_fn(const char *const *prompts, const char *const *responses, int32_t n,
                     float *scores, void *user_data);
/* The reward model over it (rm borrows ep). 0, or EXIT_RUNTIME with a message. */
int extproc_reward_model(extproc *ep, align_reward_model **out);
int extproc_failed(const extproc *ep);        /* the failure's ALIGN_E*, 0 if none */
const char *extproc_errmsg(const extproc *ep); /* "" if no failure */
/* Ends the program (EOF on its stdin, then SIGTERM / SIGKILL to its process
 * group) and reaps it. NULL is fine. */
void extproc_close(extproc *ep);

#endif
