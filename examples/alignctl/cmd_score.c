/* cmd_score.c — alignctl score: a reward model's score of every record of a
 * JSONL file ({"prompt","response"} or {"prompt","completion"} -> "score";
 * {"prompt","responses"} or {"prompt","chosen","rejected"} -> "scores"). */
#include "alignctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const HELP_SCORE =
    "usage: alignctl score --model RM --tokenizer TOK --data D.jsonl [options]\n"
    "\n"
    "Scores every record with the reward model RM (its scalar head, read at the end of\n"
    "each response, with the normalisation saved in RM): {\"prompt\",\"response\"} and\n"
    "{\"prompt\",\"completion\"} get \"score\"; rankings {\"prompt\",\"responses\"} and\n"
    "preferences {\"prompt\",\"chosen\",\"rejected\"} get \"scores\" (one per response, in\n"
    "the order responses, or chosen then rejected). Other lines are copied unchanged.\n"
    "\n"
    "  --chat          build sequences as a two-turn chat (as the model was trained with rm --chat)\n"
    "  --max-len N     tokens per sequence (default: the model's context; longer ones keep their end)\n"
    "  --threads N     CPU threads (default: all)\n"
    "  --json          one JSON object per line: the record plus \"score\"/\"scores\"\n"
    "                  (default: a tab-separated line per record: score(s), prompt)\n";

typedef struct score_ctx {
    align_reward_model *rm;
    int as_json, failed;
} score_ctx;

static int score_line(long line, json_t *v, const char *err, void *ud)
{
    score_ctx *c = ud;
    if (!v) {
        msg("line %ld is not JSON: %s", line, err);
        c->failed = EXIT_RUNTIME;
        return 1;
    }
    const char *p = json_string_value(json_object_get(v, "prompt"));
    const char *resp[256];
    int n = 0, many = 0;
    const char *one = json_string_value(json_object_get(v, "response"));
    if (!one)
        one = json_string_value(json_object_get(v, "completion"));
    json_t *arr = json_object_get(v, "responses");
    const char *ch = json_string_value(json_object_get(v, "chosen"));
    const char *rj = json_string_value(json_object_get(v, "rejected"));
    if (p && json_is_array(arr)) {
        many = 1;
        for (size_t i = 0; i < json_array_size(arr) && n < 256; i++)
            if ((resp[n] = json_string_value(json_array_get(arr, i))))
                n++;
    } else if (p && ch && rj) {
        many = 1;
        resp[n++] = ch;
        resp[n++] = rj;
    } else if (p && one) {
        resp[n++] = one;
    }
    float sc[256];
    const char *ps[256];
    for (int i = 0; i < n; i++)
        ps[i] = p;
    if (n > 0) {
        int rc = align_reward_model_score(c->rm, ps, resp, n, sc);
        if (rc < 0) {
            c->failed = rt_fail(rc, align_reward_model_errmsg(c->rm), "line %ld: scoring failed", line);
            return 1;
        }
    }
    if (c->as_json) {
        if (n > 0 && many) {
            json_t *a = json_array();
            for (int i = 0; i < n; i++)
                json_array_append_new(a, json_num(sc[i]));
            json_put(v, "scores", a);
        } else if (n > 0) {
            json_put(v, "score", json_num(sc[0]));
        }
        json_incref(v); /* json_print_line takes a reference; jsonl_each keeps its own */
        if (json_print_line(stdout, v) != 0) {
            c->failed = EXIT_RUNTIME;
            return 1;
        }
    } else if (n > 0) {
        for (int i = 0; i < n; i++)
            printf("%s%.6g", i ? " " : "", (double)sc[i]);
        printf("\t%s\n", p);
    }
    return 0;
}

int cmd_score(int argc, char **argv)
{
    const char *model_path = NULL, *tok = NULL, *data_path = NULL, *v;
    int threads = 0;
    score_ctx c = {0};
    align_reward_params rp;
    ALIGN_REWARD_DEFAULT_PARAMS(&rp);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_SCORE, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--data", &v)) {
            data_path = v;
        } else if (opt(argc, argv, &i, "--max-len", &v)) {
            rp.max_seq_len = parse_int("--max-len", v, 1, 1 << 20);
        } else if (opt(argc, argv, &i, "--threads", &v)) {
            threads = parse_int("--threads", v, 1, 4096);
        } else if (flag(a, "--chat")) {
            rp.flags |= ALIGN_REWARD_CHAT;
        } else if (flag(a, "--json")) {
            c.as_json = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required (a reward model: a file with a scalar head)");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!data_path)
        usage_die("--data is required (JSONL of prompt/response records)");
    if (require_inputs(model_path, tok, data_path, NULL))
        return EXIT_RUNTIME;
    blas_setup(argv, threads);
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    char *buf = NULL;
    size_t len = 0;
    int r = load_tokenizer(tok, &t);
    if (!r)
        r = load_model(model_path, &m);
    if (!r)
        r = check_vocab(m, t, tok);
    if (r)
        goto out;
    int rc = align_reward_model_from_model(&c.rm, m, t, &rp);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "'%s' cannot score", model_path);
        goto out;
    }
    if (read_file(data_path, &buf, &len) != 0) {
        msg("cannot read '%s': %s", data_path, strerror(errno));
        r = EXIT_RUNTIME;
        goto out;
    }
    jsonl_each(buf, len, score_line, &c);
    r = c.failed;
out:
    free(buf);
    align_reward_model_free(c.rm);
    align_model_free(m);
    align_tokenizer_free(t);
    return r;
}
