/* alloc.c — every allocation of the library, and align_free(). */
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

void *align__malloc(size_t n) { return malloc(n ? n : 1); }
void *align__calloc(size_t count, size_t size) { return calloc(count ? count : 1, size ? size : 1); }
void *align__realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
void align__free(void *p) { free(p); }

char *align__strndup(const char *s, size_t n)
{
    char *d = align__malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *align__strdup(const char *s)
{
    return s ? align__strndup(s, strlen(s)) : NULL;
}

void *align__alloc_aligned(size_t n)
{
    size_t rounded = (n + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p)
        memset(p, 0, rounded ? rounded : 64);
    return p;
}

void align__free_aligned(void *p) { free(p); }

ALIGN_API void align_free(void *ptr) { free(ptr); }
