/* check_internal_reliability.c — bad files must fail cleanly, before any
 * allocation their contents would demand (docs/reliability.md): tokenizer
 * loaders, JSONL records, safetensors, optimizer state, and the rule that a
 * call that succeeds leaves align_last_errmsg() as it found it. */
#include "data/batch.h"
#include "data/dataset.h"
#include "model/model_impl.h"
#include "model/safetensors.h"

#include "st_edit.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>

/* Expected warnings (skipped lines) are kept out of the test output. */
static void quiet_log(int level, const char *message, void *ud)
{
    (void)level;
    (void)message;
    (void)ud;
}

static char *tmpfile_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_str(const char *path, const char *s)
{
    write_bytes(path, s, strlen(s));
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* ---- tokenizer loaders ---------------------------------------------------------------------- */

static int load_gpt2(const char *dir, const char *enc, const char *bpe, align_tokenizer **t)
{
    char *pe = tmpfile_in(dir, "encoder.json"), *pb = tmpfile_in(dir, "vocab.bpe");
    write_str(pe, enc);
    write_str(pb, bpe);
    int rc = align_tokenizer_load_gpt2(t, pe, pb);
    free(pe);
    free(pb);
    return rc;
}

START_TEST(test_tokenizer_ids_bounded_by_file)
{
    char *dir = test_tmpdir("rel-tok");
    align_tokenizer *t = NULL;
    /* a valid little vocabulary first */
    ck_assert_int_eq(load_gpt2(dir, "{\"a\": 0, \"b\": 1, \"ab\": 2}", "#version: 0.2\na b\n", &t), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_vocab_size(t), 3);
    align_tokenizer_free(t);
    /* one id of 1e8 in a tiny file: refused, not 1.4 GB of tables */
    long before = maxrss_kb();
    ck_assert_int_eq(load_gpt2(dir, "{\"a\": 0, \"b\": 1, \"ab\": 100000000}", "a b\n", &t), ALIGN_EFORMAT);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(align_last_errmsg(), "too large for a vocabulary of 3 tokens"), "%s", align_last_errmsg());
    /* holes are allowed, within twice the defined tokens plus 1024 */
    ck_assert_int_eq(load_gpt2(dir, "{\"a\": 0, \"b\": 1, \"ab\": 3}", "a b\n", &t), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_vocab_size(t), 4);
    align_tokenizer_free(t);
    t = NULL;
    ck_assert_int_eq(load_gpt2(dir, "{\"a\": 0, \"b\": 1, \"ab\": 1027}", "a b\n", &t), ALIGN_EFORMAT);
    ck_assert_int_eq(load_gpt2(dir, "{\"a\": 0, \"b\": 1, \"ab\": 2147483647}", "a b\n", &t), ALIGN_EFORMAT);
    ck_assert_int_eq(load_gpt2(dir, "{\"a\": 0, \"b\": 1, \"ab\": -1}", "a b\n", &t), ALIGN_EFORMAT);
    ck_assert_msg(maxrss_kb() - before < 64 * 1024, "peak RSS grew by %ld kB", maxrss_kb() - before);
    /* duplicate keys: jansson would keep the last silently */
    ck_assert_int_eq(load_gpt2(dir, "{\"a\": 0, \"b\": 1, \"a\": 2}", "", &t), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_last_errmsg(), "duplicate"), "%s", align_last_errmsg());
    /* a repeated merge */
    ck_assert_int_eq(load_gpt2(dir, "{\"a\": 0, \"b\": 1, \"ab\": 2}", "a b\na b\n", &t), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_last_errmsg(), "repeats"), "%s", align_last_errmsg());
    /* the empty string is not a token */
    ck_assert_int_eq(load_gpt2(dir, "{\"\": 0, \"b\": 1}", "", &t), ALIGN_EFORMAT);
    free(dir);
}
END_TEST

/* 8 MB of blank lines once sized a merge table by the line count (50 MB took
 * 1.1 GB); the table is now bounded by the vocabulary. */
START_TEST(test_tokenizer_blank_lines_bounded)
{
    char *dir = test_tmpdir("rel-bpe");
    char *pe = tmpfile_in(dir, "encoder.json"), *pb = tmpfile_in(dir, "vocab.bpe");
    write_str(pe, "{\"a\": 0, \"b\": 1, \"ab\": 2}");
    size_t n = 8u << 20;
    char *blank = malloc(n + 4);
    memcpy(blank, "a b\n", 4);
    memset(blank + 4, '\n', n);
    write_bytes(pb, blank, n + 4);
    free(blank);
    long before = maxrss_kb();
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_load_gpt2(&t, pe, pb), ALIGN_OK);
    long grew = maxrss_kb() - before;
    ck_assert_msg(grew < 48 * 1024, "loading 8 MB of blank lines raised peak RSS by %ld kB", grew);
    int32_t ids[4];
    size_t got = 0;
    ck_assert_int_eq(align_tokenize(t, "ab", 2, 0, ids, 4, &got), ALIGN_OK);
    ck_assert_uint_eq(got, 1);
    ck_assert_int_eq(ids[0], 2);
    align_tokenizer_free(t);
    free(pe);
    free(pb);
    free(dir);
}
END_TEST

START_TEST(test_tokenizer_json_bad)
{
    char *dir = test_tmpdir("rel-hf");
    char *p = tmpfile_in(dir, "tokenizer.json");
    align_tokenizer *t = NULL;
    /* first token the empty string: memcpy from NULL before */
    write_str(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\": 0, \"a\": 1}, \"merges\": []}}");
    ck_assert_int_eq(align_tokenizer_load(&t, p), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_last_errmsg(), "empty string"), "%s", align_last_errmsg());
    /* duplicate key in the vocabulary */
    write_str(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\": 1}, \"merges\": []}}");
    ck_assert_int_eq(align_tokenizer_load(&t, p), ALIGN_EFORMAT);
    /* an added token id far beyond the vocabulary */
    write_str(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                 " \"added_tokens\": [{\"id\": 99999999, \"content\": \"<x>\"}]}");
    ck_assert_int_eq(align_tokenizer_load(&t, p), ALIGN_EFORMAT);
    /* the same with the id right after the vocabulary is fine */
    write_str(p, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                 " \"added_tokens\": [{\"id\": 1, \"content\": \"<x>\"}]}");
    ck_assert_int_eq(align_tokenizer_load(&t, p), ALIGN_OK);
    ck_assert_int_eq(align_tokenizer_vocab_size(t), 2);
    align_tokenizer_free(t);
    free(p);
    free(dir);
}
END_TEST

/* ---- JSONL records ------------------------------------------------------------------------- */

START_TEST(test_jsonl_unknown_field)
{
    char *dir = test_tmpdir("rel-jsonl");
    char *p = tmpfile_in(dir, "d.jsonl");
    write_str(p, "{\"prompt\": \"x\", \"completion\": \"y\"}\n{\"prompt\": \"a\", \"completions\": \"b\"}\n");
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_load_jsonl(d, p, 0), ALIGN_EFORMAT);
    char want[4200];
    snprintf(want, sizeof want, "%s:2: unknown field 'completions'", p);
    ck_assert_str_eq(align_dataset_errmsg(d), want);
    align_dataset_free(d);

    align_log_set(quiet_log, NULL);
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_load_jsonl(d, p, ALIGN_LENIENT), ALIGN_OK);
    ck_assert_int_eq(align_dataset_size(d), 1);
    ck_assert_int_eq(align_dataset_skipped(d), 1);
    align_dataset_free(d);

    /* a known field the kind does not use, and an unknown one in a message */
    const char *bad[] = {
        "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\", \"completion\": \"d\"}\n",
        "{\"prompt\": \"a\", \"response\": \"b\", \"label\": true, \"completion\": \"c\"}\n",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\", \"nmae\": \"x\"}]}\n",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}], \"prompt\": \"p\"}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_str(p, bad[i]);
        ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
        ck_assert_int_eq(align_dataset_load_jsonl(d, p, 0), ALIGN_EFORMAT);
        ck_assert_msg(strstr(align_dataset_errmsg(d), "field"), "%s", align_dataset_errmsg(d));
        align_dataset_free(d);
    }
    free(p);
    free(dir);
}
END_TEST

/* Saving a dataset without chat or ranking records (items == NULL) and
 * loading it back gives the same records (NULL + 0 before, under clang UBSan). */
START_TEST(test_jsonl_demo_only_round_trip)
{
    char *dir = test_tmpdir("rel-demo");
    char *p = tmpfile_in(dir, "d.jsonl");
    align_dataset *d = NULL, *e = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "2+2=", "4", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_prompt(d, "hello", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_save_jsonl(d, p), ALIGN_OK);
    ck_assert_int_eq(align_dataset_create(&e), ALIGN_OK);
    ck_assert_int_eq(align_dataset_load_jsonl(e, p, 0), ALIGN_OK);
    ck_assert_int_eq(align_dataset_size(e), 2);
    for (int64_t i = 0; i < 2; i++) {
        char *a = NULL, *b = NULL;
        ck_assert_int_eq(align_dataset_record_json(d, i, &a), ALIGN_OK);
        ck_assert_int_eq(align_dataset_record_json(e, i, &b), ALIGN_OK);
        ck_assert_str_eq(a, b);
        align_free(a);
        align_free(b);
    }
    align_dataset_free(d);
    align_dataset_free(e);
    free(p);
    free(dir);
}
END_TEST

/* A write that fails leaves the old file whole: files are written to
 * path.tmp.PID and renamed. Here the temporary name is taken by a folder. */
START_TEST(test_atomic_write_failure_keeps_old_file)
{
    char *dir = test_tmpdir("rel-atomic");
    char *p = tmpfile_in(dir, "d.jsonl");
    const char *old = "{\"prompt\": \"old\"}\n";
    write_str(p, old);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    ck_assert_int_eq(mkdir(tmp, 0755), 0);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "new", "data", NULL), ALIGN_OK);
    ck_assert_int_eq(align_dataset_save_jsonl(d, p), ALIGN_EIO);
    FILE *f = fopen(p, "rb");
    char buf[64] = { 0 };
    ck_assert_uint_eq(fread(buf, 1, sizeof buf - 1, f), strlen(old));
    fclose(f);
    ck_assert_str_eq(buf, old);
    rmdir(tmp);
    ck_assert_int_eq(align_dataset_save_jsonl(d, p), ALIGN_OK);
    align_dataset_free(d);
    free(p);
    free(dir);
}
END_TEST

/* ---- safetensors ------------------------------------------------------------------------------ */

/* A safetensors file from a header string and n_data bytes of data. */
static void write_st(const char *path, const char *hdr, size_t n_data)
{
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    size_t total = 8 + padded + n_data;
    unsigned char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((padded >> (8 * i)) & 0xff);
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    write_bytes(path, buf, total);
    free(buf);
}

static int st_try(const char *path, const char *hdr, size_t n_data, const char *want)
{
    write_st(path, hdr, n_data);
    align__errbuf eb = { { 0 } };
    align__st_file f;
    int rc = align__st_open(&eb, path, &f);
    if (rc == ALIGN_OK)
        align__st_close(&f);
    else if (want)
        ck_assert_msg(strstr(eb.msg, want), "want '%s' in '%s'", want, eb.msg);
    return rc;
}

START_TEST(test_safetensors_bad_headers)
{
    char *dir = test_tmpdir("rel-st");
    char *p = tmpfile_in(dir, "x.safetensors");
    /* valid: two tensors tiling 24 bytes */
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24, NULL),
                     ALIGN_OK);
    /* overlapping */
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24, "overlaps"),
                     ALIGN_EFORMAT);
    /* the same bytes twice */
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "overlaps"),
                     ALIGN_EFORMAT);
    /* duplicate names */
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "duplicate"),
                     ALIGN_EFORMAT);
    /* trailing bytes after the last tensor, and a hole */
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "trailing"),
                     ALIGN_EFORMAT);
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "unused"),
                     ALIGN_EFORMAT);
    /* element count 2^40 * 2^40 wrapped to 0 and matched 0 bytes */
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
                               "\"data_offsets\":[0,0]}}", 0, "too large"),
                     ALIGN_EFORMAT);
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                               "\"data_offsets\":[0,0]}}", 0, "too large"),
                     ALIGN_EFORMAT);
    /* offsets beyond the file, header length beyond the file */
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside"),
                     ALIGN_EFORMAT);
    ck_assert_int_eq(st_try(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                               "\"data_offsets\":[9223372036854775800,9223372036854775807]}}", 8, NULL),
                     ALIGN_EFORMAT);
    unsigned char huge[16] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}' };
    write_bytes(p, huge, sizeof huge);
    align__errbuf eb = { { 0 } };
    align__st_file f;
    ck_assert_int_eq(align__st_open(&eb, p, &f), ALIGN_EFORMAT);
    ck_assert_msg(strstr(eb.msg, "header length"), "%s", eb.msg);
    free(p);
    free(dir);
}
END_TEST

/* ---- optimizer state ------------------------------------------------------------------------ */

static align_model *small_model(void)
{
    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = 1; p.n_head = 2; p.n_embd = 8; p.vocab_size = 13; p.max_seq_len = 8;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &p), 0);
    return m;
}

static int64_t n_params_of(const char *valid_state)
{
    align__errbuf eb = { { 0 } };
    align__st_file f;
    ck_assert_int_eq(align__st_open(&eb, valid_state, &f), ALIGN_OK);
    int nd;
    int64_t sh[2];
    ck_assert(align__st_shape(&f, "exp_avg", &nd, sh));
    align__st_close(&f);
    return sh[0];
}

static void write_state(const char *path, int64_t n, const char *step, float bad_m, float bad_v)
{
    float *m = calloc((size_t)n, sizeof *m), *v = calloc((size_t)n, sizeof *v);
    for (int64_t i = 0; i < n; i++) {
        m[i] = 0.01f;
        v[i] = 0.001f;
    }
    m[n / 2] = bad_m;
    v[n / 3] = bad_v;
    align__st_tensor t[2] = { { "exp_avg", m, 1, { n, 0 } }, { "exp_avg_sq", v, 1, { n, 0 } } };
    align__st_meta meta[] = { { "libalign.kind", "adamw" }, { "step", step } };
    align__errbuf eb = { { 0 } };
    ck_assert_int_eq(align__st_write(&eb, path, t, 2, meta, 2), ALIGN_OK);
    free(m);
    free(v);
}

START_TEST(test_optimizer_state_bad)
{
    char *dir = test_tmpdir("rel-opt");
    char *p = tmpfile_in(dir, "opt.safetensors");
    align_model *m = small_model();
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, NULL), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_save(o, p), ALIGN_OK);
    int64_t n = n_params_of(p);
    write_state(p, n, "7", 0.0f, 0.0f);
    ck_assert_int_eq(align_optimizer_load(o, p), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_steps_done(o), 7);
    const char *bad_steps[] = { "9223372036854775807", "99999999999999999999", "", "-1", " 5", "+5", "5x",
                                "9007199254740993" };
    for (size_t i = 0; i < sizeof bad_steps / sizeof *bad_steps; i++) {
        write_state(p, n, bad_steps[i], 0.0f, 0.0f);
        ck_assert_msg(align_optimizer_load(o, p) == ALIGN_EFORMAT, "step '%s' accepted", bad_steps[i]);
        ck_assert_int_eq(align_optimizer_steps_done(o), 7);
    }
    float bad_m[] = { NAN, INFINITY, 0.0f, 0.0f, 0.0f };
    float bad_v[] = { 0.0f, 0.0f, NAN, -INFINITY, -1e-3f };
    for (size_t i = 0; i < 5; i++) {
        write_state(p, n, "3", bad_m[i], bad_v[i]);
        ck_assert_int_eq(align_optimizer_load(o, p), ALIGN_EFORMAT);
        ck_assert_int_eq(align_optimizer_steps_done(o), 7);
    }
    /* the optimizer still works: a step gives finite weights */
    int32_t tok[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, len[1] = { 8 };
    float lp[7], d[7];
    for (int i = 0; i < 7; i++)
        d[i] = -0.1f;
    ck_assert_int_eq(align_model_forward(m, tok, len, 1, 8, lp, NULL, NULL), 0);
    ck_assert_int_eq(align_model_backward(m, d, NULL), 0);
    float norm = 0;
    ck_assert_int_eq(align_optimizer_step(o, &norm), ALIGN_OK);
    ck_assert_int_eq(align_model_forward(m, tok, len, 1, 8, lp, NULL, NULL), 0);
    for (int i = 0; i < 7; i++)
        ck_assert(isfinite(lp[i]));
    align_optimizer_free(o);
    align_model_free(m);
    free(p);
    free(dir);
}
END_TEST

/* One real update: forward over a fixed sequence, a backward of a fixed
 * loss gradient, an AdamW step. */
static void real_step(align_model *m, align_optimizer *o, float scale)
{
    int32_t tok[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, len[1] = { 8 };
    float lp[7], d[7];
    for (int i = 0; i < 7; i++)
        d[i] = scale * (float)(i % 3 - 1) - 0.05f * (float)i;
    ck_assert_int_eq(align_model_forward(m, tok, len, 1, 8, lp, NULL, NULL), 0);
    ck_assert_int_eq(align_model_backward(m, d, NULL), 0);
    ck_assert_int_eq(align_optimizer_step(o, NULL), ALIGN_OK);
}

static int same_bytes(const char *a, const char *b)
{
    st_image x = st_image_read(a), y = st_image_read(b);
    int same = x.len == y.len && memcmp(x.buf, y.buf, x.len) == 0;
    st_image_free(&x);
    st_image_free(&y);
    return same;
}

/* Flat index of element i of trainable tensor name. */
static size_t flat_index(const align_model *m, const char *name, size_t i)
{
    align__train_view v;
    align__model_train_view(m, &v);
    for (int k = 0; k < v.n_tensors; k++)
        if (strcmp(v.tensors[k].name, name) == 0)
            return v.tensors[k].offset + i;
    ck_abort_msg("no trainable tensor %s", name);
    return 0;
}

/* Real state after three real steps, edited in place one way at a time
 * (checksum re-sealed, so the contents are what is judged): every edit is
 * refused with ALIGN_EFORMAT and a message naming the tensor and the
 * problem, and leaves the optimizer bitwise as it was. */
START_TEST(test_optimizer_state_edited_in_place)
{
    char *dir = test_tmpdir("rel-optedit");
    char *good = tmpfile_in(dir, "good.safetensors"), *bad = tmpfile_in(dir, "bad.safetensors");
    char *after = tmpfile_in(dir, "after.safetensors");
    align_model *m = small_model();
    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = 1e-2f;
    op.weight_decay = 0.1f;
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, &op), ALIGN_OK);
    for (int s = 0; s < 3; s++)
        real_step(m, o, 0.3f + 0.1f * (float)s);
    ck_assert_int_eq(align_optimizer_save(o, good), ALIGN_OK);
    /* a reference that loads the clean file: it must continue bitwise */
    align_model *mref = NULL;
    align_optimizer *oref = NULL;
    ck_assert_int_eq(align_model_clone(&mref, m, 0), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_create(&oref, mref, &op), ALIGN_OK);
    ck_assert_msg(align_optimizer_load(oref, good) == ALIGN_OK, "%s", align_optimizer_errmsg(oref));
    ck_assert_int_eq(align_optimizer_steps_done(oref), 3);

    const char *T = "h.0.attn.c_attn.weight";
    size_t at = flat_index(m, T, 17);
    st_image im = st_image_read(good);
    float m17 = st_image_get(&im, "exp_avg", at), v17 = st_image_get(&im, "exp_avg_sq", at);
    st_image_free(&im);
    ck_assert_msg(m17 != 0.0f && v17 > 0.0f, "element 17 of %s did not train (%g, %g)", T, m17, v17);
    struct {
        const char *tensor;
        float value;
        const char *want;
    } elems[] = {
        { "exp_avg_sq", -1.0f, "exp_avg_sq of 'h.0.attn.c_attn.weight' at 17 has a negative value (-1)" },
        { "exp_avg_sq", -1e-30f, "exp_avg_sq of 'h.0.attn.c_attn.weight' at 17 has a negative value" },
        { "exp_avg_sq", NAN, "exp_avg_sq of 'h.0.attn.c_attn.weight' at 17 is NaN" },
        { "exp_avg_sq", INFINITY, "exp_avg_sq of 'h.0.attn.c_attn.weight' at 17 is infinite" },
        { "exp_avg", NAN, "exp_avg of 'h.0.attn.c_attn.weight' at 17 is NaN" },
        { "exp_avg", -INFINITY, "exp_avg of 'h.0.attn.c_attn.weight' at 17 is infinite" },
        /* finite, but not a pair one AdamW run produces: the step would move
         * the weight by ~lr * |exp_avg| / eps */
        { "exp_avg_sq", 0.0f, "exp_avg of 'h.0.attn.c_attn.weight' at 17 is" },
        { "exp_avg", 1000.0f * m17, "(the moments are not from one AdamW run)" },
    };
    for (size_t c = 0; c < sizeof elems / sizeof *elems; c++) {
        im = st_image_read(good);
        st_image_set(&im, elems[c].tensor, at, elems[c].value);
        st_image_write(&im, bad);
        st_image_free(&im);
        ck_assert_int_eq(align_optimizer_load(o, bad), ALIGN_EFORMAT);
        ck_assert_msg(strstr(align_optimizer_errmsg(o), elems[c].want), "case %zu: %s", c, align_optimizer_errmsg(o));
        ck_assert_int_eq(align_optimizer_steps_done(o), 3);
    }
    /* metadata edits: the step and what the state is for */
    struct {
        const char *key, *value, *want;
    } metas[] = {
        { "step", "0", "step is 0 but exp_avg of '" },
        { "step", "-1", "step '-1' is not a number" },
        { "step", "3.0", "step '3.0' is not a number" },
        { "step", NULL, "not an AdamW state file" },
        { "n_params", "5", "holds moments for n_params '5', this optimizer updates" },
        { "n_params", "x", "holds moments for n_params 'x'" },
        { "trains", "lora", "saved for a model's LoRA adapters, but this optimizer updates the whole model" },
        { "trains", "both", "trains is 'both'" },
        { "layout", "fnv1a64:0000000000000000", "saved for other trainable tensors" },
        { "beta1", "1.5", "beta1 '1.5'" },
        { "beta2", NULL, "beta2 '(none)'" },
        { "beta2", "nan", "beta2 'nan'" },
    };
    for (size_t c = 0; c < sizeof metas / sizeof *metas; c++) {
        im = st_image_read(good);
        st_image_meta(&im, metas[c].key, metas[c].value);
        st_image_write(&im, bad);
        st_image_free(&im);
        ck_assert_int_eq(align_optimizer_load(o, bad), ALIGN_EFORMAT);
        ck_assert_msg(strstr(align_optimizer_errmsg(o), metas[c].want), "meta %s=%s: %s", metas[c].key,
                      metas[c].value ? metas[c].value : "(removed)", align_optimizer_errmsg(o));
        ck_assert_int_eq(align_optimizer_steps_done(o), 3);
    }
    /* the checksum still guards the data when it is not re-sealed */
    im = st_image_read(good);
    st_image_set(&im, "exp_avg", at, 0.5f * m17);
    FILE *f = fopen(bad, "wb");
    ck_assert(f && fwrite(im.buf, 1, im.len, f) == im.len);
    fclose(f);
    st_image_free(&im);
    ck_assert_int_eq(align_optimizer_load(o, bad), ALIGN_EFORMAT);
    ck_assert_ptr_nonnull(strstr(align_optimizer_errmsg(o), "checksum mismatch"));

    /* nothing changed: the state saves to the same bytes, and the next step
     * equals the reference's bit for bit */
    ck_assert_int_eq(align_optimizer_save(o, after), ALIGN_OK);
    ck_assert(same_bytes(good, after));
    real_step(m, o, 0.7f);
    real_step(mref, oref, 0.7f);
    ck_assert_int_eq(memcmp(m->params, mref->params, m->n_params * sizeof(float)), 0);
    ck_assert_int_eq(align_optimizer_save(o, after), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_save(oref, bad), ALIGN_OK);
    ck_assert(same_bytes(bad, after));

    /* a file of libalign 0.3 (no betas, trains or layout) still loads */
    im = st_image_read(good);
    st_image_meta(&im, "beta1", NULL);
    st_image_meta(&im, "beta2", NULL);
    st_image_meta(&im, "trains", NULL);
    st_image_meta(&im, "layout", NULL);
    st_image_write(&im, bad);
    st_image_free(&im);
    ck_assert_msg(align_optimizer_load(o, bad) == ALIGN_OK, "%s", align_optimizer_errmsg(o));
    ck_assert_int_eq(align_optimizer_steps_done(o), 3);

    align_optimizer_free(oref);
    align_model_free(mref);
    align_optimizer_free(o);
    align_model_free(m);
    free(good);
    free(bad);
    free(after);
    free(dir);
}
END_TEST

/* The bound exp_avg^2 <= C(beta1, beta2, t) * exp_avg_sq is sharp and has
 * no false refusals: moments built by AdamW's own float recursion from the
 * gradients that reach it (Cauchy-Schwarz equality, g_k ~ (b1/b2)^(t-k)),
 * at scales from underflow to 1e10 and for betas with b1^2/b2 below, at and
 * above 1, load; the same state with one exp_avg 1.5 times larger does not. */
START_TEST(test_optimizer_moment_bound_sharp)
{
    char *dir = test_tmpdir("rel-optbound");
    char *p = tmpfile_in(dir, "opt.safetensors");
    align_model *m = small_model();
    align_optimizer *o = NULL;
    ck_assert_int_eq(align_optimizer_create(&o, m, NULL), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_save(o, p), ALIGN_OK);
    int64_t n = n_params_of(p);
    const float betas[][2] = { { 0.9f, 0.999f }, { 0.9f, 0.95f }, { 0.5f, 0.25f }, { 0.99f, 0.9f },
                               { 0.0f, 0.999f }, { 0.9f, 0.99999f } };
    const int steps[] = { 1, 2, 7, 40, 300 };
    float *mm = calloc((size_t)n, sizeof *mm), *vv = calloc((size_t)n, sizeof *vv);
    for (size_t b = 0; b < sizeof betas / sizeof *betas; b++)
        for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
            float b1 = betas[b][0], b2 = betas[b][1], ib1 = 1.0f - b1, ib2 = 1.0f - b2;
            int t = steps[s];
            int capped = 0;
            for (int64_t i = 0; i < n; i++) {
                double scale = pow(10.0, -30.0 + 40.0 * (double)(i % 41) / 40.0) * (i % 2 ? -1.0 : 1.0);
                float mi = 0.0f, vi = 0.0f;
                for (int k = 1; k <= t; k++) {
                    /* the equality case, capped so that no gradient overflows */
                    double e = (double)(t - k) * log((double)b1 / (double)b2);
                    capped |= b1 != 0.0f && e >= 20.0;
                    float gi = b1 == 0.0f ? (k == t ? (float)scale : 0.0f)
                                          : (float)(scale * exp(e < 20.0 ? e : 20.0));
                    mi = b1 * mi + ib1 * gi;
                    vi = b2 * vi + ib2 * gi * gi;
                }
                mm[i] = mi;
                vv[i] = vi;
            }
            char st[16], s1[32], s2[32];
            snprintf(st, sizeof st, "%d", t);
            snprintf(s1, sizeof s1, "%.9g", (double)b1);
            snprintf(s2, sizeof s2, "%.9g", (double)b2);
            align__st_tensor tt[2] = { { "exp_avg", mm, 1, { n, 0 } }, { "exp_avg_sq", vv, 1, { n, 0 } } };
            align__st_meta meta[] = { { "libalign.kind", "adamw" }, { "step", st }, { "beta1", s1 }, { "beta2", s2 } };
            align__errbuf eb = { { 0 } };
            ck_assert_int_eq(align__st_write(&eb, p, tt, 2, meta, 4), ALIGN_OK);
            ck_assert_msg(align_optimizer_load(o, p) == ALIGN_OK, "betas %g %g, %d steps: %s", (double)b1,
                          (double)b2, t, align_optimizer_errmsg(o));
            ck_assert_int_eq(align_optimizer_steps_done(o), t);
            /* 1.5x above the bound (x 2.25 in exp_avg^2) at a normal scale */
            int64_t j = 41 * 3 + 30; /* scale 1e0 */
            float keep = mm[j];
            mm[j] *= 1.5f;
            ck_assert_int_eq(align__st_write(&eb, p, tt, 2, meta, 4), ALIGN_OK);
            int rc = align_optimizer_load(o, p);
            mm[j] = keep;
            /* b1 > b2 and many steps: the equality gradients were capped,
             * so the state may be far inside the bound and 1.5x still fit */
            if (!capped) {
                ck_assert_msg(rc == ALIGN_EFORMAT, "betas %g %g, %d steps: 1.5x accepted", (double)b1, (double)b2, t);
                ck_assert_ptr_nonnull(strstr(align_optimizer_errmsg(o), "not from one AdamW run"));
                ck_assert_int_eq(align_optimizer_steps_done(o), t);
            }
        }
    free(mm);
    free(vv);
    align_optimizer_free(o);
    align_model_free(m);
    free(p);
    free(dir);
}
END_TEST

/* State saved with LoRA adapters attached holds the adapters' moments only:
 * an optimizer over the whole model refuses it, and the other way round. */
START_TEST(test_optimizer_state_lora_mismatch)
{
    char *dir = test_tmpdir("rel-optlora");
    char *pl = tmpfile_in(dir, "lora.safetensors"), *pf = tmpfile_in(dir, "full.safetensors");
    char *bad = tmpfile_in(dir, "bad.safetensors");
    align_model *ml = small_model(), *mf = small_model();
    align_lora_params lp;
    ALIGN_LORA_DEFAULT_PARAMS(&lp);
    lp.r = 2;
    ck_assert_int_eq(align_model_lora_attach(ml, &lp), ALIGN_OK);
    align_optimizer *ol = NULL, *of = NULL;
    ck_assert_int_eq(align_optimizer_create(&ol, ml, NULL), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_create(&of, mf, NULL), ALIGN_OK);
    for (int s = 0; s < 2; s++) {
        real_step(ml, ol, 0.5f);
        real_step(mf, of, 0.5f);
    }
    ck_assert_int_eq(align_optimizer_save(ol, pl), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_save(of, pf), ALIGN_OK);
    /* each loads into its own kind, and the adapters' state names adapter tensors */
    ck_assert_int_eq(align_optimizer_load(ol, pl), ALIGN_OK);
    ck_assert_int_eq(align_optimizer_load(of, pf), ALIGN_OK);
    st_image im = st_image_read(pl);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(im.hdr, "__metadata__"), "trains")), "lora");
    size_t at = flat_index(ml, "transformer.h.0.attn.c_attn.lora_A.weight", 3);
    st_image_set(&im, "exp_avg_sq", at, -2.0f);
    st_image_write(&im, bad);
    st_image_free(&im);
    ck_assert_int_eq(align_optimizer_load(ol, bad), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_optimizer_errmsg(ol), "exp_avg_sq of 'transformer.h.0.attn.c_attn.lora_A.weight' at 3 has a "
                                                      "negative value (-2)"), "%s", align_optimizer_errmsg(ol));

    ck_assert_int_eq(align_optimizer_load(of, pl), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_optimizer_errmsg(of), "saved for a model's LoRA adapters, but this optimizer updates "
                                                      "the whole model"), "%s", align_optimizer_errmsg(of));
    ck_assert_int_eq(align_optimizer_load(ol, pf), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_optimizer_errmsg(ol), "saved for a whole model, but this optimizer updates LoRA "
                                                      "adapters only"), "%s", align_optimizer_errmsg(ol));
    /* older files (no 'trains'): the size still tells them apart */
    im = st_image_read(pl);
    st_image_meta(&im, "trains", NULL);
    st_image_meta(&im, "layout", NULL);
    st_image_write(&im, bad);
    st_image_free(&im);
    ck_assert_int_eq(align_optimizer_load(of, bad), ALIGN_EFORMAT);
    ck_assert_msg(strstr(align_optimizer_errmsg(of), "holds moments for n_params"), "%s", align_optimizer_errmsg(of));
    im = st_image_read(pl);
    st_image_meta(&im, "trains", NULL);
    st_image_meta(&im, "layout", NULL);
    st_image_meta(&im, "n_params", NULL);
    st_image_write(&im, bad);
    st_image_free(&im);
    ck_assert_int_eq(align_optimizer_load(of, bad), ALIGN_EFORMAT);
    ck_assert_int_eq(align_optimizer_steps_done(of), 2);
    ck_assert_int_eq(align_optimizer_steps_done(ol), 2);
    /* both still step */
    real_step(ml, ol, 0.5f);
    real_step(mf, of, 0.5f);
    align_optimizer_free(ol);
    align_optimizer_free(of);
    align_model_free(ml);
    align_model_free(mf);
    free(pl);
    free(pf);
    free(bad);
    free(dir);
}
END_TEST

START_TEST(test_optimizer_params_checked)
{
    align_model *m = small_model();
    align_optimizer *o = NULL;
    align_optimizer_params p;
    float bad[] = { INFINITY, NAN, -1.0f };
    for (int i = 0; i < 3; i++) {
        align_optimizer_default_params(&p, sizeof p);
        p.weight_decay = bad[i];
        ck_assert_int_eq(align_optimizer_create(&o, m, &p), ALIGN_EINVAL);
        ck_assert_ptr_null(o);
        align_optimizer_default_params(&p, sizeof p);
        p.eps = bad[i];
        ck_assert_int_eq(align_optimizer_create(&o, m, &p), ALIGN_EINVAL);
        align_optimizer_default_params(&p, sizeof p);
        p.learning_rate = bad[i];
        ck_assert_int_eq(align_optimizer_create(&o, m, &p), ALIGN_EINVAL);
        align_optimizer_default_params(&p, sizeof p);
        p.max_grad_norm = bad[i] == -1.0f ? NAN : bad[i];
        ck_assert_int_eq(align_optimizer_create(&o, m, &p), ALIGN_EINVAL);
        align_optimizer_default_params(&p, sizeof p);
        p.beta2 = bad[i];
        ck_assert_int_eq(align_optimizer_create(&o, m, &p), ALIGN_EINVAL);
    }
    align_optimizer_default_params(&p, sizeof p);
    p.flags = 0x80000000u;
    ck_assert_int_eq(align_optimizer_create(&o, m, &p), ALIGN_EINVAL);
    ck_assert_msg(strstr(align_last_errmsg(), "flags"), "%s", align_last_errmsg());
    align_optimizer_default_params(&p, sizeof p);
    ck_assert_int_eq(align_optimizer_create(&o, m, &p), ALIGN_OK);
    align_optimizer_free(o);
    align_model_free(m);
}
END_TEST

/* ---- align_last_errmsg after a call that succeeded ------------------------------------------ */

/* The batcher's first align_tokenize answers ALIGN_ERANGE (empty buffer) and
 * is retried: the call succeeds, and must not leave "ids do not fit" as the
 * thread's last message. */
START_TEST(test_errmsg_not_stale_after_success)
{
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_load(&t, NULL), ALIGN_EINVAL);
    char before[600];
    snprintf(before, sizeof before, "%s", align_last_errmsg());
    ck_assert_str_ne(before, "");
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    align_dataset *d = NULL;
    ck_assert_int_eq(align_dataset_create(&d), ALIGN_OK);
    ck_assert_int_eq(align_dataset_add_demo(d, "a long enough prompt", "and a completion", NULL), ALIGN_OK);
    align__batch_params bp;
    memset(&bp, 0, sizeof bp);
    bp.max_len = 64;
    bp.truncation = ALIGN_TRUNCATE_RIGHT;
    bp.seed = 1;
    align__errbuf eb = { { 0 } };
    align__batcher *b = NULL;
    ck_assert_int_eq(align__batcher_create(&b, d, t, &bp, &eb), ALIGN_OK);
    ck_assert_str_eq(align_last_errmsg(), before);
    /* a size query is not a failure either */
    size_t need = 0;
    ck_assert_int_eq(align_tokenize(t, "abc", 3, 0, NULL, 0, &need), ALIGN_ERANGE);
    ck_assert_uint_eq(need, 3);
    char one[1];
    ck_assert_int_eq(align_detokenize(t, (const int32_t[]){ 97 }, 1, NULL, 0, &need), ALIGN_ERANGE);
    ck_assert_int_eq(align_detokenize(t, (const int32_t[]){ 97 }, 1, one, 1, &need), ALIGN_ERANGE);
    ck_assert_msg(strstr(align_last_errmsg(), "do not fit"), "%s", align_last_errmsg());
    ck_assert_int_eq(align_tokenize(t, "abc", 3, 0, NULL, 0, &need), ALIGN_ERANGE);
    ck_assert_msg(strstr(align_last_errmsg(), "do not fit"), "%s", align_last_errmsg());
    align__batcher_free(b);
    align_dataset_free(d);
    align_tokenizer_free(t);
}
END_TEST

/* The same through public calls: generation sizes each prompt with a size
 * query (align_tokenize with cap 0), which used to leave "ids do not fit". */
START_TEST(test_errmsg_after_generate)
{
    align_model_params mp;
    align_model_default_params(&mp, sizeof mp);
    mp.n_layer = 1; mp.n_head = 2; mp.n_embd = 8; mp.vocab_size = 257; mp.max_seq_len = 32;
    align_model *m = NULL;
    ck_assert_int_eq(align_model_create(&m, &mp), ALIGN_OK);
    align_tokenizer *t = NULL, *bad = NULL;
    ck_assert_int_eq(align_tokenizer_load(&bad, NULL), ALIGN_EINVAL);
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    char before[600];
    snprintf(before, sizeof before, "%s", align_last_errmsg());
    align_generate_params gp;
    align_generate_default_params(&gp, sizeof gp);
    gp.max_new_tokens = 4;
    const char *prompts[2] = { "hello", "a longer prompt" };
    align_generation *g = NULL;
    ck_assert_int_eq(align_generate(m, t, prompts, 2, &gp, &g), ALIGN_OK);
    ck_assert_str_eq(align_last_errmsg(), before);
    align_generation_free(g);
    align_tokenizer_free(t);
    align_model_free(m);
}
END_TEST

START_TEST(test_error_recovered)
{
    align__error(NULL, ALIGN_EINVAL, "first");
    uint64_t mark = align__error_mark();
    int32_t ids[1];
    size_t n = 0;
    align_tokenizer *t = NULL;
    ck_assert_int_eq(align_tokenizer_bytes(&t), ALIGN_OK);
    ck_assert_int_eq(align_tokenize(t, "abc", 3, 0, ids, 1, &n), ALIGN_ERANGE);
    ck_assert_msg(strstr(align_last_errmsg(), "do not fit"), "%s", align_last_errmsg());
    align__error_recovered(mark);
    ck_assert_str_eq(align_last_errmsg(), "first");
    align__error_recovered(mark); /* nothing written since: no change */
    ck_assert_str_eq(align_last_errmsg(), "first");
    /* two messages since the mark cannot be undone: the last one stays */
    mark = align__error_mark();
    align__error(NULL, ALIGN_EINVAL, "second");
    align__error(NULL, ALIGN_EINVAL, "third");
    align__error_recovered(mark);
    ck_assert_str_eq(align_last_errmsg(), "third");
    align_tokenizer_free(t);
}
END_TEST

Suite *internal_reliability_suite(void)
{
    Suite *s = suite_create("reliability");
    TCase *tc = test_tcase(s, "reliability", 120);
    tcase_add_test(tc, test_tokenizer_ids_bounded_by_file);
    tcase_add_test(tc, test_tokenizer_blank_lines_bounded);
    tcase_add_test(tc, test_tokenizer_json_bad);
    tcase_add_test(tc, test_jsonl_unknown_field);
    tcase_add_test(tc, test_jsonl_demo_only_round_trip);
    tcase_add_test(tc, test_atomic_write_failure_keeps_old_file);
    tcase_add_test(tc, test_safetensors_bad_headers);
    tcase_add_test(tc, test_optimizer_state_bad);
    tcase_add_test(tc, test_optimizer_state_edited_in_place);
    tcase_add_test(tc, test_optimizer_moment_bound_sharp);
    tcase_add_test(tc, test_optimizer_state_lora_mismatch);
    tcase_add_test(tc, test_optimizer_params_checked);
    tcase_add_test(tc, test_errmsg_not_stale_after_success);
    tcase_add_test(tc, test_error_recovered);
    tcase_add_test(tc, test_errmsg_after_generate);
    return s;
}
