/* fuzz_tokenizer_json.c — the Hugging Face tokenizer.json loader; a file
 * that loads must tokenize (with and without special tokens) and detokenize
 * a fixed text that touches every pipeline step: added tokens, spaces for
 * Prepend/Replace/Metaspace, digits, UTF-8 of 2-4 bytes for byte fallback,
 * and invalid UTF-8. The corpus holds the fixtures of
 * tests/fixtures/tokenizers/ (one per supported model family). */
#include "fuzz_util.h"

static const char text[] = "Hello, world! It's 2024 <|endoftext|> caf\xc3\xa9  \n\tx<s> </s>hello<tool>  "
                           "\xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80 <|im_start|>\xff\xc3 <pad>\xe2\x96\x81x";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    fuzz_file in;
    fuzz_file_open(&in, "tokenizer.json", data, size);
    align_tokenizer *t = NULL;
    int rc = align_tokenizer_load(&t, in.path);
    fuzz_file_close(&in);
    FUZZ_CHECK(rc <= 0);
    FUZZ_CHECK((rc == ALIGN_OK) == (t != NULL));
    if (t) {
        int32_t ids[256];
        size_t n = 0;
        for (uint32_t flags = 0; flags <= ALIGN_TOKENIZE_SPECIAL; flags++) {
            rc = align_tokenize(t, text, sizeof text - 1, flags, ids, 256, &n);
            if (rc == ALIGN_OK) {
                char buf[2048];
                size_t blen = 0;
                (void)align_detokenize(t, ids, n, buf, sizeof buf, &blen);
            }
        }
        align_tokenizer_free(t);
    }
    return 0;
}
