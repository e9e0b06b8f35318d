/* cmd_tokenize.c — alignctl tokenize: text -> token ids as a JSON array, and
 * --decode back. */
#include "alignctl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const HELP_TOKENIZE =
    "usage: alignctl tokenize --tokenizer TOK [--special] [--text TEXT] < text\n"
    "       alignctl tokenize --tokenizer TOK --decode < ids.json\n"
    "\n"
    "Encodes the text on stdin (every byte, including a final newline) and prints\n"
    "the token ids as one JSON array; --decode reads such an array and writes the\n"
    "text (exact bytes, no newline added).\n"
    "\n"
    "  --tokenizer TOK   tokenizer.json, a folder with encoder.json + vocab.bpe, or\n"
    "                    'bytes' (256 byte symbols + end-of-text 256)\n"
    "  --special         recognise special tokens such as <|endoftext|> in the text\n"
    "  --text TEXT       encode TEXT instead of stdin\n"
    "  --decode          ids -> text\n";

int cmd_tokenize(int argc, char **argv)
{
    const char *tok = NULL, *text = NULL, *v;
    int special = 0, decode = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_TOKENIZE, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--text", &v)) {
            text = v;
        } else if (flag(a, "--special")) {
            special = 1;
        } else if (flag(a, "--decode")) {
            decode = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (decode && text)
        usage_die("--text and --decode do not go together (--decode reads ids on stdin)");
    char *in = NULL;
    size_t inlen = 0;
    if (text) {
        inlen = strlen(text);
    } else if (read_stream(stdin, &in, &inlen) != 0) {
        msg("cannot read stdin: %s", strerror(errno));
        return EXIT_RUNTIME;
    }
    align_tokenizer *t = NULL;
    int r = load_tokenizer(tok, &t);
    int32_t *ids = NULL;
    char *outbuf = NULL;
    json_t *arr = NULL;
    if (r)
        goto out;
    if (!decode) {
        const char *src = text ? text : in;
        uint32_t fl = special ? ALIGN_TOKENIZE_SPECIAL : 0;
        size_t n = 0;
        int rc = align_tokenize(t, src, inlen, fl, NULL, 0, &n);
        if (rc < 0 && rc != ALIGN_ERANGE) {
            r = rt_fail(rc, align_last_errmsg(), "cannot tokenize the input");
            goto out;
        }
        ids = malloc((n ? n : 1) * sizeof *ids);
        if (!ids) {
            r = rt_fail(ALIGN_ENOMEM, NULL, "tokenize");
            goto out;
        }
        rc = align_tokenize(t, src, inlen, fl, ids, n, &n);
        if (rc < 0) {
            r = rt_fail(rc, align_last_errmsg(), "cannot tokenize the input");
            goto out;
        }
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++)
            if (json_array_append_new(a, json_integer(ids[i])) != 0) {
                json_decref(a);
                a = NULL;
            }
        if (!a) {
            r = rt_fail(ALIGN_ENOMEM, NULL, "tokenize");
            goto out;
        }
        json_print_line(stdout, a);
    } else {
        json_error_t err;
        arr = json_loadb(in, inlen, JSON_DECODE_ANY, &err);
        if (!json_is_array(arr)) {
            msg("stdin is not a JSON array of token ids like [104,105]%s%s", arr ? "" : ": ",
                arr ? "" : err.text);
            r = EXIT_RUNTIME;
            goto out;
        }
        size_t n = json_array_size(arr);
        int32_t vocab = align_tokenizer_vocab_size(t);
        ids = malloc((n ? n : 1) * sizeof *ids);
        if (!ids) {
            r = rt_fail(ALIGN_ENOMEM, NULL, "decode");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(arr, i);
            double x = json_number_value(e);
            if (!json_is_number(e) || x != floor(x) || x < 0 || x >= vocab) {
                msg("element %zu of the input is not a token id in [0, %d)", i, (int)vocab);
                r = EXIT_RUNTIME;
                goto out;
            }
            ids[i] = (int32_t)x;
        }
        size_t cap = n * 4 + 64, len = 0;
        for (;;) {
            outbuf = malloc(cap);
            if (!outbuf) {
                r = rt_fail(ALIGN_ENOMEM, NULL, "decode");
                goto out;
            }
            int rc = align_detokenize(t, ids, n, outbuf, cap, &len);
            if (rc == ALIGN_ERANGE && len + 1 > cap) {
                free(outbuf);
                outbuf = NULL;
                cap = len + 1;
                continue;
            }
            if (rc < 0) {
                r = rt_fail(rc, align_last_errmsg(), "cannot decode the ids");
                goto out;
            }
            break;
        }
        fwrite(outbuf, 1, len, stdout);
    }
    if (fflush(stdout) != 0) {
        msg("cannot write the output: %s", strerror(errno));
        r = EXIT_RUNTIME;
    }
out:
    json_decref(arr);
    free(outbuf);
    free(ids);
    free(in);
    align_tokenizer_free(t);
    return r;
}

