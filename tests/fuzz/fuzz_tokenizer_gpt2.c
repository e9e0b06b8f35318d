/* fuzz_tokenizer_gpt2.c — GPT-2's encoder.json + vocab.bpe loader. The
 * input is the two files separated by a line "---" (encoder.json first). */
#include "fuzz_util.h"

static const char text[] = "Hello, world! It's 2024 <|endoftext|> ab ba aab";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    const char *d = (const char *)data, *sep = NULL;
    for (size_t i = 0; i + 5 <= size && !sep; i++)
        if (memcmp(d + i, "\n---\n", 5) == 0)
            sep = d + i;
    size_t elen = sep ? (size_t)(sep - d) : size;
    fuzz_file enc, bpe;
    fuzz_file_open(&enc, "encoder.json", d, elen);
    fuzz_file_open(&bpe, "vocab.bpe", sep ? sep + 5 : d + size, sep ? size - elen - 5 : 0);
    align_tokenizer *t = NULL;
    int rc = align_tokenizer_load_gpt2(&t, enc.path, bpe.path);
    fuzz_file_close(&enc);
    fuzz_file_close(&bpe);
    FUZZ_CHECK(rc <= 0);
    FUZZ_CHECK((rc == ALIGN_OK) == (t != NULL));
    if (t) {
        int32_t ids[256];
        size_t n = 0;
        rc = align_tokenize(t, text, sizeof text - 1, ALIGN_TOKENIZE_SPECIAL, ids, 256, &n);
        if (rc == ALIGN_OK) {
            char buf[1024];
            size_t blen = 0;
            (void)align_detokenize(t, ids, n, buf, sizeof buf, &blen);
        }
        align_tokenizer_free(t);
    }
    return 0;
}
