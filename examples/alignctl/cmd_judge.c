/* cmd_judge.c — alignctl judge: a judge model's preferences on pairs or
 * rankings (RL from AI feedback, docs/judge.md). Also holds judge_open(),
 * which alignctl collect --judge shares. */
#include "alignctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const HELP_JUDGE =
    "usage: alignctl judge --model J --tokenizer TOK --data FILE.jsonl [options]\n"
    "\n"
    "Asks a judge model which response is better and prints one JSON line per record:\n"
    "for {\"prompt\",\"chosen\",\"rejected\"} the probability that chosen is better\n"
    "(p_chosen), for {\"prompt\",\"responses\":[...]} the judge's ranking and each\n"
    "response's mean win probability. The preference is the judge's probability of\n"
    "answering A against B, averaged over both orders of the responses. When the\n"
    "records carry a ranking (or chosen/rejected), the agreement is printed at the end.\n"
    "\n"
    "  --constitution FILE   principles, one per line; one drawn per comparison\n"
    "  --template FILE       the judge prompt, with {principle} {prompt} {a} {b}\n"
    "  --answers A,B         the two answers (default A,B)\n"
    "  --answer-eot          each answer is followed by the end-of-turn token\n"
    "  --chat                the judge prompt is a user turn of the chat template\n"
    "  --seed S              principle draws (default 1234)\n"
    "  --name NAME           the judge's name in records (default: the model's file name)\n"
    "  --threads N           CPU threads (default: all)\n";

/* Opens a judge: its model, tokenizer and the align_judge. Messages printed;
 * returns 0 or an exit code. Options are those of HELP_JUDGE. */
int judge_open(const char *model_path, const char *tok, const char *constitution,
               const char *template_file, const char *answers, int answer_eot, int chat,
               uint64_t seed, const char *name, align_model **m, align_tokenizer **t,
               align_judge **j);

int judge_open(const char *model_path, const char *tok, const char *constitution,
               const char *template_file, const char *answers, int answer_eot, int chat,
               uint64_t seed, const char *name, align_model **m, align_tokenizer **t,
               align_judge **j)
{
    *m = NULL;
    *t = NULL;
    *j = NULL;
    char *tmpl = NULL, *ans = NULL;
    size_t tl = 0;
    if (template_file && read_file(template_file, &tmpl, &tl) != 0) {
        msg("cannot read the judge template '%s': %s", template_file, strerror(errno));
        return EXIT_RUNTIME;
    }
    int r = load_tokenizer(tok, t);
    if (!r)
        r = load_model(model_path, m);
    if (!r)
        r = check_vocab(*m, *t, tok);
    align_judge_params jp;
    ALIGN_JUDGE_DEFAULT_PARAMS(&jp);
    jp.template_text = tmpl;
    jp.principles_file = constitution;
    jp.seed = seed;
    jp.flags = (answer_eot ? ALIGN_JUDGE_ANSWER_EOT : 0u) | (chat ? ALIGN_JUDGE_CHAT : 0u);
    char base[256];
    if (name) {
        jp.name = name;
    } else {
        const char *s = strrchr(model_path, '/');
        s = s && s[1] ? s + 1 : model_path;
        snprintf(base, sizeof base, "%s", s);
        jp.name = base;
    }
    if (answers) {
        ans = strdup(answers);
        char *comma = ans ? strchr(ans, ',') : NULL;
        if (!comma) {
            msg("--answers wants two answers separated by a comma, got '%s'", answers);
            r = EXIT_USAGE;
        } else {
            *comma = 0;
            jp.answer_a = ans;
            jp.answer_b = comma + 1;
        }
    }
    if (!r) {
        int rc = align_judge_create(j, *m, *t, &jp);
        if (rc)
            r = rt_fail(rc, align_last_errmsg(), "cannot create the judge");
    }
    free(tmpl);
    free(ans);
    if (r) {
        align_model_free(*m);
        align_tokenizer_free(*t);
        *m = NULL;
        *t = NULL;
    }
    return r;
}

typedef struct judge_ctx {
    const char *path;
    align_judge *j;
    long n_records;
    long agree, pairs;   /* against the records' own preferences */
    int err;
} judge_ctx;

static int judge_line(long line, json_t *v, const char *err, void *ud)
{
    judge_ctx *c = ud;
    if (!v) {
        msg("%s:%ld: not valid JSON (%s)", c->path, line, err);
        return EXIT_RUNTIME;
    }
    const char *prompt = json_string_value(json_object_get(v, "prompt"));
    const char *chosen = json_string_value(json_object_get(v, "chosen"));
    const char *rejected = json_string_value(json_object_get(v, "rejected"));
    json_t *resp = json_object_get(v, "responses"), *ranking = json_object_get(v, "ranking");
    if (!prompt || (!(chosen && rejected) && !json_is_array(resp))) {
        msg("%s:%ld: want {\"prompt\",\"chosen\",\"rejected\"} or {\"prompt\",\"responses\":[...]}",
            c->path, line);
        return EXIT_RUNTIME;
    }
    json_t *o = json_object();
    json_put(o, "line", json_integer(line));
    if (chosen && rejected) {
        float p = 0;
        int rc = align_judge_prefer(c->j, prompt, chosen, rejected, &p);
        if (rc) {
            json_decref(o);
            return rt_fail(rc, align_judge_errmsg(c->j), "%s:%ld: judging failed", c->path, line);
        }
        json_put(o, "p_chosen", json_num(p));
        c->agree += p > 0.5f;
        c->pairs++;
    } else {
        size_t k = json_array_size(resp);
        if (k < 2 || k > 4096) {
            json_decref(o);
            msg("%s:%ld: \"responses\" needs 2..4096 strings", c->path, line);
            return EXIT_RUNTIME;
        }
        const char **rs = calloc(k, sizeof *rs);
        int32_t *rank = calloc(k, sizeof *rank);
        float *win = calloc(k, sizeof *win);
        int r = (!rs || !rank || !win) ? rt_fail(ALIGN_ENOMEM, NULL, "judging") : 0;
        for (size_t i = 0; !r && i < k; i++)
            if (!(rs[i] = json_string_value(json_array_get(resp, i)))) {
                msg("%s:%ld: responses[%zu] is not a string", c->path, line, i);
                r = EXIT_RUNTIME;
            }
        if (!r) {
            int rc = align_judge_rank(c->j, prompt, rs, (int32_t)k, rank, win);
            if (rc)
                r = rt_fail(rc, align_judge_errmsg(c->j), "%s:%ld: judging failed", c->path, line);
        }
        if (!r) {
            json_t *ra = json_array(), *wa = json_array();
            for (size_t i = 0; i < k; i++) {
                json_array_append_new(ra, json_integer(rank[i]));
                json_array_append_new(wa, json_num(win[i]));
            }
            json_put(o, "ranking", ra);
            json_put(o, "win_prob", wa);
            /* agreement with the record's ranking over its strict pairs */
            if (json_is_array(ranking) && json_array_size(ranking) == k) {
                for (size_t a = 0; a < k; a++)
                    for (size_t b = 0; b < k; b++) {
                        json_int_t ra_ = json_integer_value(json_array_get(ranking, a));
                        json_int_t rb_ = json_integer_value(json_array_get(ranking, b));
                        if (ra_ < rb_) {
                            c->pairs++;
                            c->agree += rank[a] < rank[b];
                        }
                    }
            }
        }
        free(rs);
        free(rank);
        free(win);
        if (r) {
            json_decref(o);
            return r;
        }
    }
    c->n_records++;
    if (json_print_line(stdout, o) != 0) {
        msg("cannot write the output");
        return EXIT_RUNTIME;
    }
    return 0;
}

int cmd_judge(int argc, char **argv)
{
    const char *model_path = NULL, *tok = NULL, *data = NULL, *constitution = NULL;
    const char *template_file = NULL, *answers = NULL, *name = NULL, *v;
    int threads = 0, answer_eot = 0, chat = 0;
    uint64_t seed = 1234;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_JUDGE, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--data", &v)) {
            data = v;
        } else if (opt(argc, argv, &i, "--constitution", &v)) {
            constitution = v;
        } else if (opt(argc, argv, &i, "--template", &v)) {
            template_file = v;
        } else if (opt(argc, argv, &i, "--answers", &v)) {
            answers = v;
        } else if (opt(argc, argv, &i, "--name", &v)) {
            name = v;
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            seed = parse_u64("--seed", v);
        } else if (opt(argc, argv, &i, "--threads", &v)) {
            threads = parse_int("--threads", v, 1, 4096);
        } else if (flag(a, "--answer-eot")) {
            answer_eot = 1;
        } else if (flag(a, "--chat")) {
            chat = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required (the judge model)");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!data)
        usage_die("--data FILE.jsonl is required");
    if (require_inputs(model_path, tok, data, NULL))
        return EXIT_RUNTIME;
    char *buf = NULL;
    size_t len = 0;
    if (read_file(data, &buf, &len) != 0) {
        msg("cannot read '%s': %s", data, strerror(errno));
        return EXIT_RUNTIME;
    }
    blas_setup(argv, threads);
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    align_judge *j = NULL;
    int r = judge_open(model_path, tok, constitution, template_file, answers, answer_eot, chat, seed,
                       name, &m, &t, &j);
    if (!r) {
        judge_ctx c = {data, j, 0, 0, 0, 0};
        r = jsonl_each(buf, len, judge_line, &c);
        if (!r && c.n_records == 0) {
            msg("'%s' has no records", data);
            r = EXIT_RUNTIME;
        }
        if (!r && c.pairs > 0)
            msg("agreement with the data: %.1f%% of %ld pairs", 100.0 * (double)c.agree / (double)c.pairs,
                c.pairs);
    }
    fflush(stdout);
    free(buf);
    align_judge_free(j);
    align_model_free(m);
    align_tokenizer_free(t);
    return r;
}
