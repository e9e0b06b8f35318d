/* cmd_generate.c — alignctl generate: sampled continuations of prompts. */
#include "alignctl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const HELP_GENERATE =
    "usage: alignctl generate --model M --tokenizer TOK (--prompt TEXT | --prompts FILE.jsonl)\n"
    "                         [options]\n"
    "\n"
    "Samples continuations with a KV cache and prints them (the text after the prompt).\n"
    "\n"
    "  --prompt TEXT         a prompt (repeatable)\n"
    "  --prompts FILE        JSONL with one {\"prompt\": ...} object per line\n"
    "  --max-new-tokens N    default 64\n"
    "  --temperature X       0 = greedy (default 1.0)\n"
    "  --top-k K             0 = off (default)\n"
    "  --top-p P             1.0 = off (default)\n"
    "  --seed S              sampling seed (default 1234)\n"
    "  --stop TEXT           stop when TEXT appears (repeatable)\n"
    "  --batch N             prompts per batch (default 8)\n"
    "  --threads N           CPU threads (default: all)\n"
    "  --compute MODE        fp32 (default) or bf16: bf16 matrix products for the prompt\n"
    "                        pass (oneDNN; refused without AVX512_BF16 / AMX)\n"
    "  --chat                prompt through the chat template SFT trains with: each prompt\n"
    "                        is a user turn, then the assistant prefix; --prompts lines may\n"
    "                        hold {\"messages\": [{\"role\", \"content\"}, ...]} instead\n"
    "  --system TEXT         with --chat: a system turn before each conversation\n"
    "  --special             text prompts may contain <|endoftext|> (the end-of-turn token)\n"
    "  --json                one JSON object per prompt: prompt, text, tokens, logprobs,\n"
    "                        finish_reason (length, eot or stop)\n";

#define MAX_ARGV_LIST 256

static const char *finish_name(int f)
{
    return f == ALIGN_FINISH_EOT ? "eot" : f == ALIGN_FINISH_STOP ? "stop" : "length";
}

/* --json: one object per prompt. */
static int print_record(const char *prompt, const char *text, size_t tl, const int32_t *toks,
                        int32_t nt, const float *lps, int32_t nl, int fin)
{
    json_t *o = json_object(), *ta = json_array(), *la = json_array();
    if (!o || !ta || !la) {
        json_decref(o);
        json_decref(ta);
        json_decref(la);
        return -1;
    }
    for (int32_t k = 0; toks && k < nt; k++)
        json_array_append_new(ta, json_integer(toks[k]));
    for (int32_t k = 0; lps && k < nl; k++)
        json_array_append_new(la, json_num(lps[k]));
    json_put(o, "prompt", json_bytes(prompt, strlen(prompt)));
    json_put(o, "text", json_bytes(text ? text : "", text ? tl : 0));
    json_put(o, "tokens", ta);
    json_put(o, "logprobs", la);
    json_put(o, "finish_reason", json_string(finish_name(fin)));
    return json_print_line(stdout, o);
}

typedef struct {
    const char *path;
    char **list;
    int32_t n, cap;
    int chat;          /* accept {"messages": [...]} lines */
    json_t **conv;     /* [cap]: the line's messages array (chat), or NULL */
} prompts_ctx;

/* A "messages" array of {"role","content"} strings, or NULL with a message. */
static json_t *messages_of(const prompts_ctx *c, long line, json_t *v)
{
    json_t *ms = json_object_get(v, "messages");
    if (!ms)
        return NULL;
    size_t i;
    json_t *m;
    if (!json_is_array(ms) || json_array_size(ms) == 0) {
        msg("%s:%ld: \"messages\" must be a non-empty array", c->path, line);
        return NULL;
    }
    json_array_foreach(ms, i, m) {
        if (!json_is_string(json_object_get(m, "role")) ||
            !json_is_string(json_object_get(m, "content"))) {
            msg("%s:%ld: message %zu needs string \"role\" and \"content\"", c->path, line, i);
            return NULL;
        }
    }
    return ms;
}

static int prompt_line(long line, json_t *v, const char *err, void *ud)
{
    prompts_ctx *c = ud;
    if (!v) {
        msg("%s:%ld: not valid JSON (%s); each line must be {\"prompt\": \"...\"}", c->path,
            line, err);
        return EXIT_RUNTIME;
    }
    const char *pr = json_string_value(json_object_get(v, "prompt"));
    json_t *ms = NULL;
    if (c->chat && json_object_get(v, "messages")) {
        if (!(ms = messages_of(c, line, v)))
            return EXIT_RUNTIME;
        pr = "";
    }
    if (!pr) {
        msg("%s:%ld: no string field \"prompt\"%s", c->path, line,
            c->chat ? " or \"messages\" array" : "");
        return EXIT_RUNTIME;
    }
    if (c->n == c->cap) {
        int32_t cap = c->cap ? c->cap * 2 : 16;
        char **nl = realloc(c->list, (size_t)cap * sizeof *nl);
        if (!nl)
            return rt_fail(ALIGN_ENOMEM, NULL, "reading prompts");
        c->list = nl;
        json_t **nc = realloc(c->conv, (size_t)cap * sizeof *nc);
        if (!nc)
            return rt_fail(ALIGN_ENOMEM, NULL, "reading prompts");
        c->conv = nc;
        c->cap = cap;
    }
    if (!(c->list[c->n] = strdup(pr)))
        return rt_fail(ALIGN_ENOMEM, NULL, "reading prompts");
    c->conv[c->n] = ms ? json_incref(ms) : NULL;
    c->n++;
    return 0;
}

/* Prompts from a JSONL file, each {"prompt": "..."} (or, with chat,
 * {"messages": [...]}, whose array goes to (*conv_out)[i]); owned by the caller. */
static int read_prompts(const char *path, int chat, char ***out, json_t ***conv_out, int32_t *n_out)
{
    char *buf;
    size_t len;
    *out = NULL;
    *conv_out = NULL;
    *n_out = 0;
    if (read_file(path, &buf, &len) != 0) {
        msg("cannot read prompts '%s': %s", path, strerror(errno));
        return EXIT_RUNTIME;
    }
    prompts_ctx c = {path, NULL, 0, 0, chat, NULL};
    int r = jsonl_each(buf, len, prompt_line, &c);
    free(buf);
    if (!r && c.n == 0) {
        msg("'%s' has no prompts", path);
        r = EXIT_RUNTIME;
    }
    if (r) {
        for (int32_t i = 0; i < c.n; i++) {
            free(c.list[i]);
            json_decref(c.conv[i]);
        }
        free(c.list);
        free(c.conv);
        return r;
    }
    *out = c.list;
    *conv_out = c.conv;
    *n_out = c.n;
    return 0;
}

/* One batch of conversations through the chat template: [system], then the
 * line's messages or one user turn holding the prompt. */
static int generate_chat(align_model *m, const align_tokenizer *t, const char *system,
                         const char *const *prompts, json_t *const *conv, int32_t nb,
                         const align_generate_params *gp, align_generation **g)
{
    int32_t total = 0;
    for (int32_t i = 0; i < nb; i++)
        total += (system ? 1 : 0) + (conv && conv[i] ? (int32_t)json_array_size(conv[i]) : 1);
    const char **roles = malloc((size_t)total * sizeof *roles);
    const char **contents = malloc((size_t)total * sizeof *contents);
    int32_t *n_msg = malloc((size_t)nb * sizeof *n_msg);
    int rc = ALIGN_ENOMEM;
    if (roles && contents && n_msg) {
        int32_t k = 0;
        for (int32_t i = 0; i < nb; i++) {
            int32_t k0 = k;
            if (system) {
                roles[k] = "system";
                contents[k++] = system;
            }
            if (conv && conv[i]) {
                size_t j;
                json_t *msgv;
                json_array_foreach(conv[i], j, msgv) {
                    roles[k] = json_string_value(json_object_get(msgv, "role"));
                    contents[k++] = json_string_value(json_object_get(msgv, "content"));
                }
            } else {
                roles[k] = "user";
                contents[k++] = prompts[i];
            }
            n_msg[i] = k - k0;
        }
        rc = align_generate_chat(m, t, NULL, roles, contents, n_msg, nb, gp, g);
    }
    free(roles);
    free(contents);
    free(n_msg);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    const char *model_path = NULL, *tok = NULL, *prompts_file = NULL, *v;
    const char *prompt_args[MAX_ARGV_LIST], *stops[MAX_ARGV_LIST];
    const char *system = NULL;
    int n_prompt_args = 0, n_stops = 0, as_json = 0, batch = 8, threads = 0, chat = 0;
    int compute = -1;
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_GENERATE, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--prompts", &v)) {
            prompts_file = v;
        } else if (opt(argc, argv, &i, "--prompt", &v)) {
            if (n_prompt_args == MAX_ARGV_LIST)
                usage_die("too many --prompt (at most %d; use --prompts FILE)", MAX_ARGV_LIST);
            prompt_args[n_prompt_args++] = v;
        } else if (opt(argc, argv, &i, "--stop", &v)) {
            if (n_stops == MAX_ARGV_LIST)
                usage_die("too many --stop (at most %d)", MAX_ARGV_LIST);
            if (!*v)
                usage_die("--stop needs a non-empty string");
            stops[n_stops++] = v;
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
        } else if (opt(argc, argv, &i, "--batch", &v)) {
            batch = parse_int("--batch", v, 1, 4096);
        } else if (opt(argc, argv, &i, "--threads", &v)) {
            threads = parse_int("--threads", v, 1, 4096);
        } else if (opt(argc, argv, &i, "--compute", &v)) {
            compute = parse_compute(v);
        } else if (opt(argc, argv, &i, "--system", &v)) {
            system = v;
        } else if (flag(a, "--chat")) {
            chat = 1;
        } else if (flag(a, "--special")) {
            gp.flags |= ALIGN_GENERATE_SPECIAL;
        } else if (flag(a, "--json")) {
            as_json = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!prompts_file && n_prompt_args == 0)
        usage_die("give --prompt TEXT or --prompts FILE.jsonl");
    if (prompts_file && n_prompt_args)
        usage_die("give --prompt or --prompts, not both");
    if (system && !chat)
        usage_die("--system goes with --chat");
    gp.stop = n_stops ? stops : NULL;
    gp.n_stop = n_stops;

    if (require_inputs(model_path, tok, NULL, NULL) || compute_apply(compute))
        return EXIT_RUNTIME;
    char **owned = NULL;
    json_t **conv = NULL;
    int32_t n = 0;
    const char *const *prompts;
    if (prompts_file) {
        int r = read_prompts(prompts_file, chat, &owned, &conv, &n);
        if (r)
            return r;
        prompts = (const char *const *)owned;
    } else {
        prompts = prompt_args;
        n = n_prompt_args;
    }
    blas_setup(argv, threads);
    align_model *m = NULL;
    align_tokenizer *t = NULL;
    int r = load_tokenizer(tok, &t);
    if (!r)
        r = load_model(model_path, &m);
    if (!r)
        r = check_vocab(m, t, tok);
    for (int32_t b0 = 0; !r && b0 < n; b0 += batch) {
        int32_t nb = n - b0 < batch ? n - b0 : batch;
        align_generation *g = NULL;
        int rc = chat ? generate_chat(m, t, system, prompts + b0, conv ? conv + b0 : NULL, nb, &gp, &g)
                      : align_generate(m, t, prompts + b0, nb, &gp, &g);
        if (rc < 0) {
            r = rt_fail(rc, align_model_errmsg(m), "generation failed");
            break;
        }
        for (int32_t i = 0; i < nb && !r; i++) {
            size_t tl = 0;
            const char *text = align_generation_text(g, i, &tl);
            int32_t nt = 0, nl = 0;
            const int32_t *toks = align_generation_tokens(g, i, &nt);
            const float *lps = align_generation_logprobs(g, i, &nl);
            int fin = align_generation_finish_reason(g, i);
            if (as_json) {
                if (print_record(prompts[b0 + i], text, tl, toks, nt, lps, nl, fin) != 0) {
                    msg("cannot write the output");
                    r = EXIT_RUNTIME;
                }
            } else {
                if (n > 1)
                    printf("=== %d (%s) ===\n", (int)(b0 + i), finish_name(fin));
                fwrite(text ? text : "", 1, text ? tl : 0, stdout);
                putchar('\n');
            }
        }
        align_generation_free(g);
        fflush(stdout);
    }
    align_model_free(m);
    align_tokenizer_free(t);
    for (int32_t i = 0; owned && i < n; i++) {
        free(owned[i]);
        json_decref(conv[i]);
    }
    free(owned);
    free(conv);
    return r;
}

