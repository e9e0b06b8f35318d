/* fuzz_tokenize.c — align_tokenize on arbitrary bytes, with the tiny BPE
 * tokenizer of tests/fixtures and the byte tokenizer. Property: whatever
 * tokenizes detokenizes to the same bytes. FUZZ_FIXTURES is the fixtures
 * folder (set by the Makefile). */
#include "fuzz_util.h"

static align_tokenizer *bpe, *bytes;

static void roundtrip(const align_tokenizer *t, const char *s, size_t len, uint32_t flags)
{
    size_t cap = len + 8, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    int rc = align_tokenize(t, s, len, flags, ids, cap, &n);
    FUZZ_CHECK(rc == ALIGN_OK || rc == ALIGN_EINVAL || rc == ALIGN_EFORMAT);
    if (rc == ALIGN_OK) {
        char *back = malloc(len + 1);
        size_t blen = 0;
        FUZZ_CHECK(align_detokenize(t, ids, n, back, len + 1, &blen) == ALIGN_OK);
        FUZZ_CHECK(blen == len && memcmp(back, s, len) == 0);
        free(back);
        /* too small a buffer: ALIGN_ERANGE with the count needed */
        if (n > 0) {
            size_t need = 0;
            FUZZ_CHECK(align_tokenize(t, s, len, flags, ids, n - 1, &need) == ALIGN_ERANGE);
            FUZZ_CHECK(need == n);
        }
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    if (!bpe) {
        if (align_tokenizer_load(&bpe, FUZZ_FIXTURES "/tiny_tokenizer.json") || align_tokenizer_bytes(&bytes)) {
            fprintf(stderr, "fuzz_tokenize: cannot load %s: %s\n", FUZZ_FIXTURES "/tiny_tokenizer.json",
                    align_last_errmsg());
            abort();
        }
    }
    uint32_t flags = size && (data[0] & 1) ? ALIGN_TOKENIZE_SPECIAL : 0;
    roundtrip(bpe, (const char *)data, size, flags);
    roundtrip(bytes, (const char *)data, size, flags);
    return 0;
}
