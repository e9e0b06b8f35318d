/* fuzz_tokenizer_json.c — the Hugging Face tokenizer.json loader; a file
 * that loads must tokenize and detokenize a fixed text. */
#include "fuzz_util.h"

static const char text[] = "Hello, world! It's 2024 <|endoftext|> caf\xc3\xa9  \n\tx";

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
