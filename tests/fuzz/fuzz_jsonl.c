/* fuzz_jsonl.c — the JSONL record parser, with a round-trip property: a
 * file that loads, saved and loaded again, gives identical records. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    fuzz_file in;
    fuzz_file_open(&in, "jsonl", data, size);
    align_dataset *d = NULL, *e = NULL;
    if (align_dataset_create(&d) != ALIGN_OK)
        abort();
    uint32_t flags = size && (data[0] & 1) ? ALIGN_LENIENT : 0;
    int rc = align_dataset_load_jsonl(d, in.path, flags);
    fuzz_file_close(&in);
    FUZZ_CHECK(rc <= 0);
    FUZZ_CHECK(align_dataset_errmsg(d) != NULL);
    if (rc == ALIGN_OK && align_dataset_size(d) > 0) {
        char out[64];
        snprintf(out, sizeof out, "/dev/shm/align-fuzz-jsonl-%d.jsonl", (int)getpid());
        FUZZ_CHECK(align_dataset_save_jsonl(d, out) == ALIGN_OK);
        FUZZ_CHECK(align_dataset_create(&e) == ALIGN_OK);
        FUZZ_CHECK(align_dataset_load_jsonl(e, out, 0) == ALIGN_OK);
        FUZZ_CHECK(align_dataset_size(e) == align_dataset_size(d));
        for (int64_t i = 0; i < align_dataset_size(d); i++) {
            char *a = NULL, *b = NULL;
            FUZZ_CHECK(align_dataset_record_kind(d, i) == align_dataset_record_kind(e, i));
            FUZZ_CHECK(align_dataset_record_json(d, i, &a) == ALIGN_OK);
            FUZZ_CHECK(align_dataset_record_json(e, i, &b) == ALIGN_OK);
            FUZZ_CHECK(strcmp(a, b) == 0);
            align_free(a);
            align_free(b);
        }
        unlink(out);
    }
    align_dataset_free(d);
    align_dataset_free(e);
    return 0;
}
