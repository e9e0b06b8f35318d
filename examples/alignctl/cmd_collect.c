/* cmd_collect.c — alignctl collect: sample K responses per prompt from a
 * policy, have them ranked by a judge model or by a ranking program, and
 * write the ranking records (docs/cli/collect.md). */
#include "alignctl.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const HELP_COLLECT =
    "usage: alignctl collect --policy M --tokenizer TOK --prompts FILE.jsonl --out FILE.jsonl\n"
    "                        (--judge J [--judge-tokenizer TOK] | --rank-cmd \"PROGRAM ARGS\")\n"
    "                        [options]\n"
    "\n"
    "Samples K responses to every prompt from the policy, ranks them, and writes one\n"
    "ranking record per prompt {\"prompt\",\"responses\",\"ranking\",\"source\",\"annotator\",\n"
    "\"timestamp\"}: the reward-model trainer's and DPO's input. Records of any kind with a\n"
    "prompt serve as prompts. If the ranker fails, what was collected is still written.\n"
    "\n"
    "  -k N                  responses per prompt (default 4)\n"
    "  --judge J             rank with a judge model (source ai, annotator = its name)\n"
    "  --judge-tokenizer T   the judge's tokenizer (default: --tokenizer)\n"
    "  --constitution FILE   the judge's principles, one per line (alignctl judge --help\n"
    "                        for --template, --answers, --answer-eot, --judge-chat, --name)\n"
    "  --rank-cmd CMD        rank with a program, started once (sh -c CMD): it reads one\n"
    "                        line {\"prompt\",\"responses\":[...]} per prompt on stdin and\n"
    "                        answers one line {\"ranking\":[...]} (0 = best, equal = tie)\n"
    "  --source S            provenance of --rank-cmd's rankings: human, ai or program\n"
    "                        (default program)\n"
    "  --annotator NAME      annotator of --rank-cmd's rankings (default: CMD)\n"
    "  --max-new-tokens N    default 64\n"
    "  --temperature X       default 1.0\n"
    "  --top-k K, --top-p P  sampling filters (default off)\n"
    "  --seed S              sampling seed (default 1234); prompt i's samples depend on S and i\n"
    "  --chat                prompt the policy through the chat template (a user turn)\n"
    "  --threads N           CPU threads (default: all)\n"
    "  --quiet               no progress lines\n";

int judge_open(const char *model_path, const char *tok, const char *constitution,
               const char *template_file, const char *answers, int answer_eot, int chat,
               uint64_t seed, const char *name, align_model **m, align_tokenizer **t,
               align_judge **j);

/* ---- the ranking program ---------------------------------------------------- */

typedef struct ranker {
    const char *cmd;
    pid_t pid;
    FILE *to, *from;
    char *line;
    size_t cap;
    long asked;
} ranker;

static int ranker_start(ranker *rk, const char *cmd)
{
    int in[2], out[2];
    memset(rk, 0, sizeof *rk);
    rk->cmd = cmd;
    rk->pid = -1;
    if (pipe(in) != 0 || pipe(out) != 0) {
        msg("cannot start the ranking program: %s", strerror(errno));
        return EXIT_RUNTIME;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        msg("cannot start the ranking program: %s", strerror(errno));
        return EXIT_RUNTIME;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    rk->pid = pid;
    rk->to = fdopen(in[1], "w");
    rk->from = fdopen(out[0], "r");
    if (!rk->to || !rk->from) {
        msg("cannot talk to the ranking program: %s", strerror(errno));
        return EXIT_RUNTIME;
    }
    return 0;
}

/* How the program ended, for messages: "exited with status 3". */
static void ranker_status(ranker *rk, char *buf, size_t cap)
{
    int st = 0;
    snprintf(buf, cap, "is still running");
    if (rk->pid <= 0)
        return;
    for (int tries = 0; tries < 50; tries++) {
        pid_t w = waitpid(rk->pid, &st, WNOHANG);
        if (w == rk->pid) {
            rk->pid = -1;
            if (WIFEXITED(st))
                snprintf(buf, cap, "exited with status %d", WEXITSTATUS(st));
            else if (WIFSIGNALED(st))
                snprintf(buf, cap, "was killed by signal %d", WTERMSIG(st));
            return;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void ranker_stop(ranker *rk)
{
    if (rk->to)
        fclose(rk->to);
    if (rk->from)
        fclose(rk->from);
    rk->to = rk->from = NULL;
    if (rk->pid > 0) {
        int st;
        waitpid(rk->pid, &st, 0);
        rk->pid = -1;
    }
    free(rk->line);
    rk->line = NULL;
}

/* The align_rank_fn: one request line out, one answer line in. */
static int program_rank(const char *prompt, const char *const *responses, int32_t k, int32_t *rank_out,
                        void *ud)
{
    ranker *rk = ud;
    rk->asked++;
    json_t *o = json_object(), *ra = json_array();
    json_put(o, "prompt", json_bytes(prompt, strlen(prompt)));
    for (int32_t i = 0; i < k; i++)
        json_array_append_new(ra, json_bytes(responses[i], strlen(responses[i])));
    json_put(o, "responses", ra);
    char st[64];
    if (json_print_line(rk->to, o) != 0 || fflush(rk->to) != 0) {
        ranker_status(rk, st, sizeof st);
        msg("the ranking program '%s' does not read its input (request %ld; it %s)", rk->cmd, rk->asked, st);
        return -1;
    }
    ssize_t n = getline(&rk->line, &rk->cap, rk->from);
    if (n <= 0) {
        ranker_status(rk, st, sizeof st);
        msg("the ranking program '%s' gave no answer to request %ld (it %s)", rk->cmd, rk->asked, st);
        return -1;
    }
    json_error_t err;
    json_t *v = json_loads(rk->line, JSON_DECODE_ANY, &err);
    json_t *r = v ? json_object_get(v, "ranking") : NULL;
    int bad = !json_is_array(r) || json_array_size(r) != (size_t)k;
    for (int32_t i = 0; !bad && i < k; i++) {
        json_t *x = json_array_get(r, (size_t)i);
        bad = !json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= k;
        if (!bad)
            rank_out[i] = (int32_t)json_integer_value(x);
    }
    json_decref(v);
    if (bad) {
        if (n > 0 && rk->line[n - 1] == '\n')
            rk->line[n - 1] = 0;
        msg("the ranking program '%s' answered request %ld with '%.200s'; want {\"ranking\": [%d integers "
            "in 0..%d]}",
            rk->cmd, rk->asked, rk->line, (int)k, (int)k - 1);
        return -2;
    }
    return 0;
}

/* ---- progress ------------------------------------------------------------------- */

typedef struct prog {
    int quiet;
    double t0, last;
} prog;

static int on_progress(int64_t done, int64_t total, void *ud)
{
    prog *p = ud;
    double now = now_sec();
    if (p->quiet || (done < total && now - p->last < 1.0))
        return 0;
    p->last = now;
    char el[32];
    fmt_duration(el, sizeof el, now - p->t0);
    msg("%lld/%lld prompts ranked (%s)", (long long)done, (long long)total, el);
    return 0;
}

int cmd_collect(int argc, char **argv)
{
    const char *policy_path = NULL, *tok = NULL, *prompts_path = NULL, *out_path = NULL, *v;
    const char *judge_path = NULL, *judge_tok = NULL, *constitution = NULL, *rank_cmd = NULL;
    const char *template_file = NULL, *answers = NULL, *judge_name = NULL, *annotator = NULL;
    int threads = 0, quiet = 0, answer_eot = 0, judge_chat = 0, k = 4;
    int32_t source = ALIGN_SOURCE_PROGRAM;
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    align_collect_params cp;
    ALIGN_COLLECT_DEFAULT_PARAMS(&cp);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_COLLECT, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--policy", &v)) {
            policy_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--prompts", &v)) {
            prompts_path = v;
        } else if (opt(argc, argv, &i, "--out", &v)) {
            out_path = v;
        } else if (opt(argc, argv, &i, "-k", &v) || opt(argc, argv, &i, "--k", &v)) {
            k = parse_int("-k", v, 2, 4096);
        } else if (opt(argc, argv, &i, "--judge", &v)) {
            judge_path = v;
        } else if (opt(argc, argv, &i, "--judge-tokenizer", &v)) {
            judge_tok = v;
        } else if (opt(argc, argv, &i, "--constitution", &v)) {
            constitution = v;
        } else if (opt(argc, argv, &i, "--template", &v)) {
            template_file = v;
        } else if (opt(argc, argv, &i, "--answers", &v)) {
            answers = v;
        } else if (opt(argc, argv, &i, "--name", &v)) {
            judge_name = v;
        } else if (opt(argc, argv, &i, "--rank-cmd", &v)) {
            if (!*v)
                usage_die("--rank-cmd needs a command");
            rank_cmd = v;
        } else if (opt(argc, argv, &i, "--source", &v)) {
            if (!strcmp(v, "human"))
                source = ALIGN_SOURCE_HUMAN;
            else if (!strcmp(v, "ai"))
                source = ALIGN_SOURCE_AI;
            else if (!strcmp(v, "program"))
                source = ALIGN_SOURCE_PROGRAM;
            else
                usage_die("--source is human, ai or program, got '%s'", v);
        } else if (opt(argc, argv, &i, "--annotator", &v)) {
            annotator = v;
        } else if (opt(argc, argv, &i, "--max-new-tokens", &v)) {
            gp.max_new_tokens = parse_int("--max-new-tokens", v, 1, 1 << 20);
        } else if (opt(argc, argv, &i, "--temperature", &v)) {
            gp.temperature = parse_float("--temperature", v, 0, 100);
        } else if (opt(argc, argv, &i, "--top-k", &v)) {
            gp.top_k = parse_int("--top-k", v, 0, 1 << 24);
        } else if (opt(argc, argv, &i, "--top-p", &v)) {
            gp.top_p = parse_float("--top-p", v, 0, 1);
            if (gp.top_p <= 0)
                usage_die("--top-p must be in (0, 1], got '%s'", v);
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            gp.seed = parse_u64("--seed", v);
        } else if (opt(argc, argv, &i, "--threads", &v)) {
            threads = parse_int("--threads", v, 1, 4096);
        } else if (flag(a, "--answer-eot")) {
            answer_eot = 1;
        } else if (flag(a, "--judge-chat")) {
            judge_chat = 1;
        } else if (flag(a, "--chat")) {
            cp.flags |= ALIGN_COLLECT_CHAT;
        } else if (flag(a, "--quiet")) {
            quiet = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!policy_path)
        usage_die("--policy is required (the model that samples the responses)");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!prompts_path)
        usage_die("--prompts FILE.jsonl is required");
    if (!out_path)
        usage_die("--out FILE.jsonl is required");
    if (!judge_path == !rank_cmd)
        usage_die("give one ranker: --judge MODEL or --rank-cmd \"PROGRAM ARGS\"");
    if (!judge_path && (judge_tok || constitution || template_file || answers || judge_name ||
                        answer_eot || judge_chat))
        usage_die("--judge-tokenizer, --constitution, --template, --answers, --name, --answer-eot and "
                  "--judge-chat go with --judge");
    if (!rank_cmd && (annotator || source != ALIGN_SOURCE_PROGRAM))
        usage_die("--source and --annotator go with --rank-cmd (a judge's records are source ai, "
                  "annotated with its name)");
    if (require_inputs(policy_path, tok, prompts_path, NULL) ||
        (judge_path && require_inputs(judge_path, judge_tok ? judge_tok : tok, NULL, NULL)))
        return EXIT_RUNTIME;

    blas_setup(argv, threads);
    align_model *policy = NULL, *jm = NULL;
    align_tokenizer *t = NULL, *jt = NULL;
    align_judge *j = NULL;
    align_dataset *prompts = NULL, *out = NULL;
    ranker rk;
    memset(&rk, 0, sizeof rk);
    rk.pid = -1;
    int r = load_tokenizer(tok, &t);
    if (!r)
        r = load_model(policy_path, &policy);
    if (!r)
        r = check_vocab(policy, t, tok);
    if (!r)
        r = load_dataset(prompts_path, 0, &prompts);
    if (!r && align_dataset_create(&out) != ALIGN_OK)
        r = rt_fail(ALIGN_ENOMEM, NULL, "collect");
    if (!r && judge_path)
        r = judge_open(judge_path, judge_tok ? judge_tok : tok, constitution, template_file, answers,
                       answer_eot, judge_chat, gp.seed, judge_name, &jm, &jt, &j);
    void (*old_pipe)(int) = SIG_DFL;
    if (!r && rank_cmd) {
        old_pipe = signal(SIGPIPE, SIG_IGN); /* a dead ranker is a message, not a signal */
        r = ranker_start(&rk, rank_cmd);
    }
    int collected_err = 0;
    if (!r) {
        prog pg = {quiet, now_sec(), 0};
        cp.k = k;
        cp.generate = &gp;
        cp.progress = on_progress;
        cp.progress_user_data = &pg;
        cp.source = source;
        cp.annotator = annotator ? annotator : rank_cmd;
        int rc = j ? align_collect_judge(policy, t, prompts, out, j, &cp)
                   : align_collect(policy, t, prompts, out, program_rank, &rk, &cp);
        if (rc < 0) {
            collected_err = 1;
            r = rt_fail(rc, align_last_errmsg(), "collection stopped");
        }
    }
    /* what was collected is written, even after a failure */
    if (out && (!r || collected_err)) {
        int64_t n = align_dataset_size(out);
        if (n > 0 || !collected_err) {
            int rc = align_dataset_save_jsonl(out, out_path);
            if (rc) {
                r = rt_fail(rc, align_dataset_errmsg(out), "cannot write '%s'", out_path);
            } else if (!quiet || collected_err) {
                msg("%lld ranking records of %d responses written to %s", (long long)n, k, out_path);
            }
        }
    }
    if (rank_cmd) {
        ranker_stop(&rk);
        signal(SIGPIPE, old_pipe);
    }
    align_judge_free(j);
    align_model_free(jm);
    align_tokenizer_free(jt);
    align_dataset_free(out);
    align_dataset_free(prompts);
    align_model_free(policy);
    align_tokenizer_free(t);
    return r;
}
