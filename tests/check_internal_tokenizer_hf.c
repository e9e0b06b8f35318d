/* check_internal_tokenizer_hf.c — Hugging Face tokenizer.json features
 * against expectations made by an independent implementation.
 *
 * tests/fixtures/tokenizers/ holds five hand-made tokenizer.json files, one
 * per family of the models people align (make_fixtures.py: Llama-2 style
 * SentencePiece BPE with byte fallback, its Metaspace form, Llama-3 style
 * Split + ByteLevel with ignore_merges, the same with Qwen2's NFC
 * normalizer, SmolLM2 style Digits + ByteLevel), and for each the ids and
 * decoding that the npm package @lenml/tokenizers (a port of
 * transformers.js) gives for 100 texts (make_expected.js); texts that NFC
 * would change must be refused by the NFC one. Every id and every decoded string must agree. The rest
 * are the things the reference cannot show: special tokens only on request,
 * refusals of unsupported features, end-of-text from tokenizer_config.json,
 * invalid UTF-8. Public API only (internal suite for jansson, which reads
 * the expectations). */
#include <align.h>
#include <jansson.h>

#include "testutil.h"

static char *fixture(const char *name)
{
    static char buf[4096];
    const char *f = __FILE__;
    const char *slash = strrchr(f, '/');
    snprintf(buf, sizeof buf, "%.*sfixtures/tokenizers/%s", slash ? (int)(slash - f + 1) : 0, f, name);
    return buf;
}

static align_tokenizer *load(const char *name)
{
    align_tokenizer *t = NULL;
    int rc = align_tokenizer_load(&t, fixture(name));
    ck_assert_msg(rc == ALIGN_OK, "%s: %s", name, align_last_errmsg());
    return t;
}

static size_t enc(const align_tokenizer *t, const char *s, size_t len, uint32_t flags, int32_t *ids, size_t cap)
{
    size_t n = 0;
    int rc = align_tokenize(t, s, len, flags, ids, cap, &n);
    ck_assert_msg(rc == ALIGN_OK, "tokenize '%s': %s", s, align_last_errmsg());
    return n;
}

/* Every line of expected_<name>.jsonl: ids (special tokens recognised) and
 * the decoding of those ids. */
static void check_expected(const char *name)
{
    char json[256], exp[256];
    snprintf(json, sizeof json, "%s.json", name);
    snprintf(exp, sizeof exp, "expected_%s.jsonl", name);
    align_tokenizer *t = load(json);
    FILE *f = fopen(fixture(exp), "r");
    ck_assert_msg(f != NULL, "%s missing", exp);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0, refused = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t e;
        json_t *o = json_loads(line, 0, &e);
        ck_assert_msg(o != NULL, "%s:%d: %s", exp, lines + 1, e.text);
        json_t *text = json_object_get(o, "text"), *ids = json_object_get(o, "ids"), *dec = json_object_get(o, "dec");
        const char *s = json_string_value(text);
        size_t len = json_string_length(text), want = json_array_size(ids);
        int32_t *out = malloc((2 * len + 8) * sizeof *out);
        if (strstr(name, "nfc") && !json_is_true(json_object_get(o, "nfc"))) {
            /* text NFC would change: refused, naming the code point (the
             * reference normalizes; the NFC normalizer here is a check) */
            size_t n = 0;
            ck_assert_msg(align_tokenize(t, s, len, ALIGN_TOKENIZE_SPECIAL, out, 2 * len + 8, &n) == ALIGN_EFORMAT,
                          "%s line %d '%s': accepted text that is not NFC", name, lines + 1, s);
            ck_assert_msg(strstr(align_last_errmsg(), "not in Unicode NFC"), "%s", align_last_errmsg());
            free(out);
            json_decref(o);
            lines++;
            refused++;
            continue;
        }
        size_t n = enc(t, s, len, ALIGN_TOKENIZE_SPECIAL, out, 2 * len + 8);
        ck_assert_msg(n == want, "%s line %d '%s': %zu ids, the reference %zu", name, lines + 1, s, n, want);
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(out[i] == json_integer_value(json_array_get(ids, i)),
                          "%s line %d '%s': id %zu is %d, the reference %d", name, lines + 1, s, i, (int)out[i],
                          (int)json_integer_value(json_array_get(ids, i)));
        size_t bcap = 4 * len + 64, blen = 0;
        char *back = malloc(bcap);
        ck_assert_int_eq(align_detokenize(t, out, n, back, bcap, &blen), ALIGN_OK);
        ck_assert_msg(blen == json_string_length(dec) && memcmp(back, json_string_value(dec), blen) == 0,
                      "%s line %d: decodes to '%s', the reference '%s'", name, lines + 1, back,
                      json_string_value(dec));
        free(back);
        free(out);
        json_decref(o);
        lines++;
    }
    free(line);
    fclose(f);
    ck_assert_int_ge(lines, 90);
    ck_assert_int_le(refused, 10); /* the lines that are not NFC */
    align_tokenizer_free(t);
}

START_TEST(test_reference_spm_legacy)
{
    check_expected("spm_legacy");
}
END_TEST

START_TEST(test_reference_spm_metaspace)
{
    check_expected("spm_metaspace");
}
END_TEST

START_TEST(test_reference_bytelevel_split)
{
    check_expected("bytelevel_split");
}
END_TEST

START_TEST(test_reference_bytelevel_digits)
{
    check_expected("bytelevel_digits");
}
END_TEST

START_TEST(test_reference_bytelevel_nfc)
{
    check_expected("bytelevel_nfc");
}
END_TEST

/* decode(encode(x)) == x where the pipeline allows it: Llama-2 style text
 * that does not start with a space, Llama-3 style any text, any bytes. */
START_TEST(test_roundtrip)
{
    static const char *const texts[] = {
        "hello world", "tabs\tand\nnewlines\n\n  x", "emoji 😀👨‍👩‍👧 CJK 世界 and é", "a  b   c    d",
        "trailing   ", "\xff\xfe invalid \xc3 utf-8 \xed\xa0\x80", "",
    };
    static const char *const names[] = { "spm_legacy.json", "spm_metaspace.json", "bytelevel_split.json" };
    for (size_t k = 0; k < 3; k++) {
        align_tokenizer *t = load(names[k]);
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            size_t len = strlen(texts[i]), blen = 0;
            int32_t ids[256];
            size_t n = enc(t, texts[i], len, 0, ids, 256);
            char back[512];
            ck_assert_int_eq(align_detokenize(t, ids, n, back, sizeof back, &blen), ALIGN_OK);
            ck_assert_msg(blen == len && memcmp(back, texts[i], len) == 0, "%s: '%s' came back as '%s'", names[k],
                          texts[i], back);
        }
        align_tokenizer_free(t);
    }
}
END_TEST

static int32_t vocab_id(const char *name, const char *token)
{
    json_error_t e;
    json_t *root = json_load_file(fixture(name), 0, &e);
    ck_assert_ptr_ne(root, NULL);
    json_t *v = json_object_get(json_object_get(json_object_get(root, "model"), "vocab"), token);
    int32_t id = v ? (int32_t)json_integer_value(v) : -1;
    json_decref(root);
    return id;
}

START_TEST(test_special_tokens)
{
    align_tokenizer *t = load("spm_legacy.json");
    int32_t ids[64];
    /* <s> and </s> are special: text without the flag, tokens with it */
    size_t n = enc(t, "<s>", 3, 0, ids, 64);
    ck_assert_uint_gt(n, 1);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_ne(ids[i], 1);
    n = enc(t, "<s>", 3, ALIGN_TOKENIZE_SPECIAL, ids, 64);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ids[0], 1);
    /* <tool> is not special: always recognised; its rstrip eats the spaces after it */
    int32_t tool = vocab_id("spm_legacy.json", "<tool>");
    n = enc(t, "<tool>   cat", 12, 0, ids, 64);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], tool);
    ck_assert_int_eq(ids[1], vocab_id("spm_legacy.json", "\xe2\x96\x81" "cat"));
    /* end-of-text is </s> */
    ck_assert_int_eq(align_tokenizer_eot(t), 2);
    align_tokenizer_free(t);

    t = load("bytelevel_split.json");
    int32_t eot = align_tokenizer_eot(t); /* <|endoftext|>: no tokenizer_config.json names another */
    n = enc(t, "<|endoftext|>", 13, ALIGN_TOKENIZE_SPECIAL, ids, 64);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ids[0], eot);
    n = enc(t, "<|endoftext|>", 13, 0, ids, 64);
    ck_assert_uint_gt(n, 1);
    /* <pad>: not special, lstrip eats the spaces before it */
    size_t m = enc(t, "a   <pad>", 9, 0, ids, 64);
    ck_assert_uint_eq(m, 2);
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

/* tokenizer_config.json beside tokenizer.json names the end-of-turn token of
 * instruct models (eos_token, a string or an AddedToken object). */
START_TEST(test_eos_from_config)
{
    char *dir = test_tmpdir("tok-eos");
    char path[4200], cfg[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    FILE *in = fopen(fixture("bytelevel_split.json"), "rb");
    ck_assert_ptr_ne(in, NULL);
    FILE *out = fopen(path, "wb");
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, k, out), k);
    fclose(in);
    fclose(out);
    align_tokenizer *t = NULL;
    int32_t ids[4];
    size_t n;
    write_file(cfg, "{\"eos_token\": \"<|im_end|>\"}");
    ck_assert_int_eq(align_tokenizer_load(&t, dir), ALIGN_OK);
    n = enc(t, "<|im_end|>", 10, ALIGN_TOKENIZE_SPECIAL, ids, 4);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(align_tokenizer_eot(t), ids[0]);
    align_tokenizer_free(t);
    write_file(cfg, "{\"eos_token\": {\"__type\": \"AddedToken\", \"content\": \"<|im_start|>\"}}");
    ck_assert_int_eq(align_tokenizer_load(&t, path), ALIGN_OK);
    n = enc(t, "<|im_start|>", 12, ALIGN_TOKENIZE_SPECIAL, ids, 4);
    ck_assert_int_eq(align_tokenizer_eot(t), ids[0]);
    align_tokenizer_free(t);
    /* an eos_token that is no added token: the usual names */
    write_file(cfg, "{\"eos_token\": \"<nope>\"}");
    ck_assert_int_eq(align_tokenizer_load(&t, path), ALIGN_OK);
    n = enc(t, "<|endoftext|>", 13, ALIGN_TOKENIZE_SPECIAL, ids, 4);
    ck_assert_int_eq(align_tokenizer_eot(t), ids[0]);
    align_tokenizer_free(t);
    remove(cfg);
    remove(path);
    rmdir(dir);
    free(dir);
}
END_TEST

/* Metaspace with split: true cuts before every replacement character
 * (MergedWithNext), so no merge crosses a space: "▁▁" never forms. */
START_TEST(test_metaspace_split)
{
    json_error_t e;
    json_t *root = json_load_file(fixture("spm_metaspace.json"), 0, &e);
    ck_assert_ptr_ne(root, NULL);
    json_object_set_new(json_object_get(root, "pre_tokenizer"), "split", json_true());
    char *dir = test_tmpdir("tok-split");
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ck_assert_int_eq(json_dump_file(root, path, 0), 0);
    int32_t two = (int32_t)json_integer_value(
        json_object_get(json_object_get(json_object_get(root, "model"), "vocab"), "\xe2\x96\x81\xe2\x96\x81"));
    json_decref(root);
    align_tokenizer *t = NULL, *u = load("spm_metaspace.json");
    ck_assert_int_eq(align_tokenizer_load(&t, path), ALIGN_OK);
    const char *text = "hello    world\n  cat";
    int32_t ids[64], idu[64];
    size_t n = enc(t, text, strlen(text), 0, ids, 64), nu = enc(u, text, strlen(text), 0, idu, 64), blen = 0;
    int with_two = 0;
    for (size_t i = 0; i < nu; i++)
        with_two += idu[i] == two;
    ck_assert_int_gt(with_two, 0); /* without split the spaces merge */
    for (size_t i = 0; i < n; i++)
        ck_assert_int_ne(ids[i], two);
    char back[128];
    ck_assert_int_eq(align_detokenize(t, ids, n, back, sizeof back, &blen), ALIGN_OK);
    ck_assert_str_eq(back, text);
    align_tokenizer_free(t);
    align_tokenizer_free(u);
    remove(path);
    rmdir(dir);
    free(dir);
}
END_TEST

/* The prefixes of docs/chat-templates.md give, for a ChatML model (Qwen2,
 * SmolLM2) whose tokenizer_config.json names <|im_end|> as eos_token, the
 * ids of the model's own template rendered as one string: header tokens in
 * the prefixes are those tokens, contents stay text. */
START_TEST(test_chatml_prefixes)
{
    char *dir = test_tmpdir("tok-chatml");
    char path[4200], cfg[4200];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    FILE *in = fopen(fixture("bytelevel_split.json"), "rb"), *out = fopen(path, "wb");
    ck_assert(in && out);
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, k, out), k);
    fclose(in);
    fclose(out);
    write_file(cfg, "{\"eos_token\": \"<|im_end|>\"}");
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_load(&t, dir), ALIGN_OK);
    align_chat_template ct;
    ALIGN_CHAT_TEMPLATE_DEFAULT_PARAMS(&ct);
    ct.system_prefix = "<|im_start|>system\n";
    ct.user_prefix = "\n<|im_start|>user\n";
    ct.assistant_prefix = "\n<|im_start|>assistant\n";
    const char *roles[] = { "system", "user", "assistant", "user" };
    const char *contents[] = { "You are helpful.", "hello world", "Hello! 12 caf\xc3\xa9s", "don't stop" };
    const char *rendered = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhello world<|im_end|>\n"
                           "<|im_start|>assistant\nHello! 12 caf\xc3\xa9s<|im_end|>\n<|im_start|>user\ndon't stop"
                           "<|im_end|>\n<|im_start|>assistant\n";
    int32_t ids[256], want[256];
    uint8_t mask[256];
    size_t n = 0;
    ck_assert_int_eq(align_chat_tokenize(t, &ct, roles, contents, 4, ALIGN_CHAT_GENERATION_PROMPT, ids, mask, 256, &n),
                     ALIGN_OK);
    size_t w = enc(t, rendered, strlen(rendered), ALIGN_TOKENIZE_SPECIAL, want, 256);
    ck_assert_uint_eq(n, w);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(ids[i] == want[i], "id %zu: %d, the rendered template %d", i, (int)ids[i], (int)want[i]);
    /* the assistant's content and its <|im_end|> are the SFT targets */
    int32_t eot = align_tokenizer_eot(t);
    size_t targets = 0;
    for (size_t i = 0; i < n; i++)
        targets += mask[i];
    ck_assert_uint_gt(targets, 2);
    for (size_t i = 0; i < n; i++)
        if (mask[i] && (i + 1 == n || !mask[i + 1]))
            ck_assert_int_eq(ids[i], eot);
    align_tokenizer_free(t);
    remove(cfg);
    remove(path);
    rmdir(dir);
    free(dir);
}
END_TEST

/* Unsupported features are refused, naming what is not supported. */
START_TEST(test_refusals)
{
    static const struct { const char *part, *needle; } cases[] = {
        { "\"normalizer\": {\"type\": \"NFKC\"}", "normalizer type \"NFKC\"" },
        { "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Lowercase\"}]}", "\"Lowercase\"" },
        { "\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"Regex\": \" +\"}, \"content\": \"x\"}", "Regex" },
        { "\"pre_tokenizer\": {\"type\": \"Whitespace\"}", "pre_tokenizer type \"Whitespace\"" },
        { "\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}", "\"BertPreTokenizer\"" },
        { "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Removed\"}",
          "behavior \"Removed\"" },
        { "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, \"behavior\": \"Isolated\", "
          "\"invert\": true}", "invert" },
        { "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}",
          "does not compile" },
        { "\"decoder\": {\"type\": \"WordPiece\"}", "decoder type \"WordPiece\"" },
        { "\"decoder\": {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}", "Strip" },
        { "\"decoder\": {\"type\": \"CTC\"}", "\"CTC\"" },
        { "\"added_tokens\": [{\"id\": 3, \"content\": \"<x>\", \"single_word\": true}]", "single_word" },
    };
    static const struct { const char *model, *needle; } models[] = {
        { "\"type\": \"WordPiece\"", "model type \"WordPiece\"" },
        { "\"type\": \"Unigram\"", "model type \"Unigram\"" },
        { "\"type\": \"BPE\", \"dropout\": 0.1", "dropout" },
        { "\"type\": \"BPE\", \"continuing_subword_prefix\": \"##\"", "continuing_subword_prefix" },
        { "\"type\": \"BPE\", \"end_of_word_suffix\": \"</w>\"", "end_of_word_suffix" },
        { "\"type\": \"BPE\", \"unk_token\": \"<nope>\"", "unk_token" },
    };
    char *dir = test_tmpdir("tok-refuse");
    char path[4200], doc[2048];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    const char *vocab = "\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]";
    for (size_t i = 0; i < sizeof cases / sizeof *cases + sizeof models / sizeof *models; i++) {
        const char *needle;
        if (i < sizeof cases / sizeof *cases) {
            snprintf(doc, sizeof doc, "{%s, \"model\": {\"type\": \"BPE\", %s}}", cases[i].part, vocab);
            needle = cases[i].needle;
        } else {
            size_t j = i - sizeof cases / sizeof *cases;
            snprintf(doc, sizeof doc, "{\"pre_tokenizer\": null, \"model\": {%s, %s}}", models[j].model, vocab);
            needle = models[j].needle;
        }
        write_file(path, doc);
        align_tokenizer *t = (align_tokenizer *)1;
        ck_assert_msg(align_tokenizer_load(&t, path) == ALIGN_EFORMAT, "accepted: %s", doc);
        ck_assert_ptr_eq(t, NULL);
        ck_assert_msg(strstr(align_last_errmsg(), needle), "%s: message '%s' lacks '%s'", doc, align_last_errmsg(),
                      needle);
    }
    /* a character-level vocabulary without byte fallback or unk: the
     * character it cannot encode is named, nothing is dropped */
    write_file(path, "{\"pre_tokenizer\": null, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, "
                     "\"merges\": []}}");
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_load(&t, path), ALIGN_OK);
    int32_t ids[8];
    size_t n = 0;
    ck_assert_int_eq(align_tokenize(t, "ab\xc3\xa9", 4, 0, ids, 8, &n), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_last_errmsg(), "U+00E9"), "%s", align_last_errmsg());
    align_tokenizer_free(t);
    /* with unk (fused): runs of unknown characters become one <unk> */
    write_file(path, "{\"pre_tokenizer\": null, \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", "
                     "\"fuse_unk\": true, \"vocab\": {\"<unk>\": 0, \"a\": 1}, \"merges\": []}}");
    ck_assert_int_eq(align_tokenizer_load(&t, path), ALIGN_OK);
    ck_assert_uint_eq(enc(t, "a\xc3\xa9\xc3\xa9" "a", 6, 0, ids, 8), 3);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(ids[1], 0);
    ck_assert_int_eq(ids[2], 1);
    align_tokenizer_free(t);
    remove(path);
    rmdir(dir);
    free(dir);
}
END_TEST

Suite *internal_tokenizer_hf_suite(void)
{
    Suite *s = suite_create("tokenizer_hf");
    TCase *tc = test_tcase(s, "reference", 120);
    tcase_add_test(tc, test_reference_spm_legacy);
    tcase_add_test(tc, test_reference_spm_metaspace);
    tcase_add_test(tc, test_reference_bytelevel_split);
    tcase_add_test(tc, test_reference_bytelevel_digits);
    tcase_add_test(tc, test_reference_bytelevel_nfc);
    tc = test_tcase(s, "features", 60);
    tcase_add_test(tc, test_roundtrip);
    tcase_add_test(tc, test_special_tokens);
    tcase_add_test(tc, test_eos_from_config);
    tcase_add_test(tc, test_chatml_prefixes);
    tcase_add_test(tc, test_metaspace_split);
    tcase_add_test(tc, test_refusals);
    return s;
}
