/* fuzz_safetensors.c — the safetensors reader (lib/model/safetensors.c):
 * any file either fails with ALIGN_EFORMAT or every tensor it lists can be
 * read in full. */
#include "fuzz_util.h"
#include "model/safetensors.h"

static int visit(const char *name, void *ud)
{
    const align__st_file *f = ud;
    int nd;
    int64_t sh[2];
    FUZZ_CHECK(align__st_shape(f, name, &nd, sh));
    if (nd == 1 || nd == 2) {
        align__errbuf eb = { { 0 } };
        const float *x = NULL;
        if (align__st_get(&eb, f, name, nd, sh, &x) == ALIGN_OK) {
            volatile float acc = 0;
            int64_t n = sh[0] * (nd == 2 ? sh[1] : 1);
            for (int64_t i = 0; i < n; i++)
                acc += x[i];
            (void)acc;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_init();
    fuzz_file in;
    fuzz_file_open(&in, "st", data, size);
    align__errbuf eb = { { 0 } };
    align__st_file f;
    int rc = align__st_open(&eb, in.path, &f);
    fuzz_file_close(&in);
    FUZZ_CHECK(rc == ALIGN_OK || rc == ALIGN_EFORMAT || rc == ALIGN_ENOMEM);
    if (rc == ALIGN_OK) {
        FUZZ_CHECK(eb.msg[0] == '\0');
        align__st_each(&f, visit, &f);
        (void)align__st_meta_get(&f, "libalign.kind");
        align__st_close(&f);
    } else {
        FUZZ_CHECK(eb.msg[0] != '\0');
    }
    return 0;
}
