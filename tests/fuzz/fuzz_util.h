/* fuzz_util.h — shared by the libFuzzer harnesses (docs/reliability.md).
 * The loaders take paths, so each input is written to an in-memory file
 * (memfd) and handed over as /proc/self/fd/N. */
#ifndef ALIGN_FUZZ_UTIL_H
#define ALIGN_FUZZ_UTIL_H
#define _GNU_SOURCE
#include "align.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct fuzz_file {
    int fd;
    char path[64];
} fuzz_file;

/* A memfd holding data; the path stays valid until fuzz_file_close. */
static inline void fuzz_file_open(fuzz_file *f, const char *tag, const void *data, size_t len)
{
    f->fd = memfd_create(tag, 0);
    if (f->fd < 0)
        abort();
    const char *p = data;
    while (len) {
        ssize_t w = write(f->fd, p, len);
        if (w <= 0)
            abort();
        p += w;
        len -= (size_t)w;
    }
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

static inline void fuzz_file_close(fuzz_file *f)
{
    close(f->fd);
}

/* Reads a whole file (round-trip checks); caller frees. */
static inline char *fuzz_read(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        abort();
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, fp) != (size_t)n)
        abort();
    fclose(fp);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

static void fuzz_quiet(int level, const char *message, void *ud)
{
    (void)level;
    (void)message;
    (void)ud;
}

/* Logging off: bad inputs are expected to warn. */
static inline void fuzz_init(void)
{
    static int done;
    if (!done) {
        align_log_set(fuzz_quiet, NULL);
        done = 1;
    }
}

#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)
#endif
