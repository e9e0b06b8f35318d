/* st_edit.h — edit a safetensors file written by libalign in place, the way
 * a damaged or hand-made file would look: overwrite one F32 element of a
 * tensor (found through the header's data_offsets) or one metadata value,
 * then re-seal the data checksum ("libalign.checksum", FNV-1a over 64-bit
 * words, as lib/model/safetensors.c computes it) so that the load reaches
 * the contents instead of stopping at the checksum. */
#ifndef ALIGN_TEST_ST_EDIT_H
#define ALIGN_TEST_ST_EDIT_H
#include "testutil.h"
#include <jansson.h>
#include <stdint.h>

typedef struct st_image {
    unsigned char *buf; /* the whole file */
    size_t len;
    json_t *hdr;
    size_t data_off;    /* 8 + header length */
} st_image;

static inline st_image st_image_read(const char *path)
{
    st_image im = {0};
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    im.len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    im.buf = malloc(im.len);
    ck_assert(im.buf && fread(im.buf, 1, im.len, f) == im.len);
    fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | im.buf[i];
    ck_assert(8 + hl <= im.len);
    im.data_off = 8 + (size_t)hl;
    json_error_t je;
    im.hdr = json_loadb((const char *)im.buf + 8, (size_t)hl, 0, &je);
    ck_assert_msg(im.hdr != NULL, "%s: header: %s", path, je.text);
    return im;
}

static inline void st_image_free(st_image *im)
{
    json_decref(im->hdr);
    free(im->buf);
    memset(im, 0, sizeof *im);
}

static inline uint64_t st_fnv1a64w(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 1099511628211ull;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Writes the image back: the header (metadata possibly changed, checksum
 * recomputed over the data) and the data. */
static inline void st_image_write(st_image *im, const char *path)
{
    json_t *md = json_object_get(im->hdr, "__metadata__");
    ck_assert(json_is_object(md));
    char hex[40];
    snprintf(hex, sizeof hex, "fnv1a64w:%016llx",
             (unsigned long long)st_fnv1a64w(im->buf + im->data_off, im->len - im->data_off));
    json_object_set_new(md, "libalign.checksum", json_string(hex));
    char *h = json_dumps(im->hdr, JSON_COMPACT);
    ck_assert_ptr_nonnull(h);
    size_t hl = strlen(h);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    ck_assert(fwrite(lenb, 1, 8, f) == 8 && fwrite(h, 1, hl, f) == hl);
    size_t dl = im->len - im->data_off;
    ck_assert(fwrite(im->buf + im->data_off, 1, dl, f) == dl);
    ck_assert_int_eq(fclose(f), 0);
    free(h);
}

/* Pointer to element i of F32 tensor name inside the image's data. */
static inline unsigned char *st_image_elem(st_image *im, const char *name, size_t i)
{
    json_t *e = json_object_get(im->hdr, name);
    ck_assert_msg(json_is_object(e), "no tensor %s", name);
    ck_assert_str_eq(json_string_value(json_object_get(e, "dtype")), "F32");
    json_t *off = json_object_get(e, "data_offsets");
    size_t b = (size_t)json_integer_value(json_array_get(off, 0)), end = (size_t)json_integer_value(json_array_get(off, 1));
    ck_assert_msg(b + 4 * (i + 1) <= end, "%s[%zu] out of range", name, i);
    return im->buf + im->data_off + b + 4 * i;
}

static inline float st_image_get(st_image *im, const char *name, size_t i)
{
    float x;
    memcpy(&x, st_image_elem(im, name, i), 4);
    return x;
}

static inline void st_image_set(st_image *im, const char *name, size_t i, float x)
{
    memcpy(st_image_elem(im, name, i), &x, 4);
}

/* Sets (value != NULL) or removes a metadata entry. */
static inline void st_image_meta(st_image *im, const char *key, const char *value)
{
    json_t *md = json_object_get(im->hdr, "__metadata__");
    ck_assert(json_is_object(md));
    if (value)
        json_object_set_new(md, key, json_string(value));
    else
        json_object_del(md, key);
}
#endif
