/* safetensors.c — see safetensors.h. */
#include "model/safetensors.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u << 20) /* the format's own limit: 100 MB */

/* FNV-1a (Fowler, Noll, Vo) over 64-bit words: fast enough to check 500 MB
 * on every load, and catches flipped or zeroed bytes in the data. */
static uint64_t checksum(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    const uint64_t prime = 1099511628211ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * prime;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * prime;
    return h;
}

static int write_impl(align__errbuf *eb, const char *path, const align__st_tensor *t, int n_tensors,
                      const align__st_meta *meta, int n_meta, size_t es);

uint16_t align__f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN stays a (quiet) NaN */
        return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float x;
    memcpy(&x, &u, 4);
    return x;
}

int align__st_write(align__errbuf *eb, const char *path, const align__st_tensor *t, int n_tensors,
                    const align__st_meta *meta, int n_meta)
{
    return align__st_write_dtype(eb, path, t, n_tensors, meta, n_meta, 0);
}

/* bf16: the tensors converted into one buffer, written as one contiguous F32-less stream. */
static int write_bf16(align__errbuf *eb, const char *path, const align__st_tensor *t, int n_tensors,
                      const align__st_meta *meta, int n_meta)
{
    size_t total = 0;
    for (int i = 0; i < n_tensors; i++)
        total += (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
    uint16_t *buf = align__malloc(total ? total * 2 : 2);
    align__st_tensor *v = align__malloc(sizeof *v * (size_t)(n_tensors ? n_tensors : 1));
    if (!buf || !v) {
        align__free(buf);
        align__free(v);
        return align__error(eb, ALIGN_ENOMEM, "%s: out of memory", path);
    }
    size_t o = 0;
    for (int i = 0; i < n_tensors; i++) {
        size_t n = (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        for (size_t j = 0; j < n; j++)
            buf[o + j] = align__f32_to_bf16(t[i].data[j]);
        v[i] = t[i];
        v[i].data = (const float *)(const void *)(buf + o);
        o += n;
    }
    int rc = write_impl(eb, path, v, n_tensors, meta, n_meta, 2);
    align__free(buf);
    align__free(v);
    return rc;
}

int align__st_write_dtype(align__errbuf *eb, const char *path, const align__st_tensor *t, int n_tensors,
                          const align__st_meta *meta, int n_meta, int bf16)
{
    return bf16 ? write_bf16(eb, path, t, n_tensors, meta, n_meta)
                : write_impl(eb, path, t, n_tensors, meta, n_meta, 4);
}

/* es: bytes per element (4: F32; 2: BF16 already converted, data points at uint16_t). */
static int write_impl(align__errbuf *eb, const char *path, const align__st_tensor *t, int n_tensors,
                      const align__st_meta *meta, int n_meta, size_t es)
{
    json_t *hdr = json_object(), *md = json_object();
    if (!hdr || !md)
        goto oom;
    size_t off = 0;
    for (int i = 0; i < n_tensors; i++) {
        size_t numel = (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        json_t *shape = t[i].ndim == 2 ? json_pack("[II]", (json_int_t)t[i].shape[0], (json_int_t)t[i].shape[1])
                                       : json_pack("[I]", (json_int_t)t[i].shape[0]);
        json_t *e = json_pack("{s:s, s:o, s:[II]}", "dtype", es == 4 ? "F32" : "BF16", "shape", shape,
                              "data_offsets", (json_int_t)off, (json_int_t)(off + numel * es));
        if (!e || json_object_set_new(hdr, t[i].name, e))
            goto oom;
        off += numel * es;
    }
    /* checksum over the data section exactly as written */
    {
        uint64_t hh = 1469598103934665603ull;
        /* the data is the tensors back to back; hash them as one stream by
         * hashing a contiguous copy only when they are not contiguous */
        int contiguous = 1;
        for (int i = 1; i < n_tensors && contiguous; i++) {
            size_t prev = (size_t)t[i - 1].shape[0] * (size_t)(t[i - 1].ndim == 2 ? t[i - 1].shape[1] : 1);
            contiguous = (const char *)t[i].data == (const char *)t[i - 1].data + prev * es;
        }
        if (n_tensors > 0 && contiguous) {
            hh = checksum((const unsigned char *)t[0].data, off);
        } else if (n_tensors > 0) {
            unsigned char *tmp = align__malloc(off);
            if (!tmp)
                goto oom;
            size_t o = 0;
            for (int i = 0; i < n_tensors; i++) {
                size_t nb = (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1) * es;
                memcpy(tmp + o, t[i].data, nb);
                o += nb;
            }
            hh = checksum(tmp, off);
            align__free(tmp);
        }
        char hex[32];
        snprintf(hex, sizeof hex, "fnv1a64w:%016llx", (unsigned long long)hh);
        if (json_object_set_new(md, "libalign.checksum", json_string(hex)))
            goto oom;
    }
    for (int i = 0; i < n_meta; i++)
        if (json_object_set_new(md, meta[i].key, json_string(meta[i].value)))
            goto oom;
    if (json_object_set_new(hdr, "__metadata__", md))
        goto oom_hdr;
    md = NULL;
    char *js = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(hdr);
    if (!js)
        return align__error(eb, ALIGN_ENOMEM, "%s: out of memory for the header", path);
    size_t jl = strlen(js), padded = (jl + 7) & ~(size_t)7;
    char *hbuf = align__malloc(8 + padded);
    if (!hbuf) {
        free(js);
        return align__error(eb, ALIGN_ENOMEM, "%s: out of memory", path);
    }
    uint64_t hl = padded;
    for (int i = 0; i < 8; i++)
        hbuf[i] = (char)((hl >> (8 * i)) & 0xff);
    memcpy(hbuf + 8, js, jl);
    memset(hbuf + 8 + jl, ' ', padded - jl);
    free(js);
    align__chunk *ch = align__malloc(sizeof *ch * (size_t)(n_tensors + 1));
    if (!ch) {
        align__free(hbuf);
        return align__error(eb, ALIGN_ENOMEM, "%s: out of memory", path);
    }
    ch[0].data = hbuf;
    ch[0].len = 8 + padded;
    for (int i = 0; i < n_tensors; i++) {
        ch[i + 1].data = t[i].data;
        ch[i + 1].len = (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1) * es;
    }
    int rc = align__write_atomic(eb, path, ch, n_tensors + 1);
    align__free(ch);
    align__free(hbuf);
    return rc;
oom:
    json_decref(md);
oom_hdr:
    json_decref(hdr);
    return align__error(eb, ALIGN_ENOMEM, "%s: out of memory building the header", path);
}

void align__st_close(align__st_file *f)
{
    if (!f)
        return;
    if (f->hdr)
        json_decref((json_t *)f->hdr);
    align__free(f->buf);
    memset(f, 0, sizeof *f);
}

static int dtype_size(const char *d)
{
    if (!strcmp(d, "F32") || !strcmp(d, "I32") || !strcmp(d, "U32"))
        return 4;
    if (!strcmp(d, "F16") || !strcmp(d, "BF16") || !strcmp(d, "I16") || !strcmp(d, "U16"))
        return 2;
    if (!strcmp(d, "F64") || !strcmp(d, "I64") || !strcmp(d, "U64"))
        return 8;
    if (!strcmp(d, "I8") || !strcmp(d, "U8") || !strcmp(d, "BOOL"))
        return 1;
    return 0;
}

typedef struct span {
    uint64_t b, e;
    const char *name;
} span;

static int span_cmp(const void *x, const void *y)
{
    const span *a = x, *b = y;
    if (a->b != b->b)
        return a->b < b->b ? -1 : 1;
    return a->e < b->e ? -1 : a->e > b->e;
}

/* The tensors tile the data section exactly, as the format requires: sorted
 * by offset each starts where the previous one ends (no overlap, no hole)
 * and the last one ends at the end of the file (no trailing bytes). Entries
 * were already checked to be well-formed and inside the data section. */
static int check_layout(align__errbuf *eb, const align__st_file *f)
{
    size_t n = json_object_size((json_t *)f->hdr);
    span *sp = align__malloc((n ? n : 1) * sizeof *sp);
    if (!sp)
        return align__error(eb, ALIGN_ENOMEM, "%s: out of memory", f->path);
    size_t k = 0;
    const char *key;
    json_t *e;
    json_object_foreach((json_t *)f->hdr, key, e) {
        if (!strcmp(key, "__metadata__"))
            continue;
        json_t *of = json_object_get(e, "data_offsets");
        sp[k].b = (uint64_t)json_integer_value(json_array_get(of, 0));
        sp[k].e = (uint64_t)json_integer_value(json_array_get(of, 1));
        sp[k].name = key;
        k++;
    }
    qsort(sp, k, sizeof *sp, span_cmp);
    uint64_t at = 0;
    int rc = ALIGN_OK;
    for (size_t i = 0; i < k && !rc; i++) {
        if (sp[i].b < at)
            rc = align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' at bytes %llu..%llu overlaps tensor '%s'",
                              f->path, sp[i].name, (unsigned long long)sp[i].b, (unsigned long long)sp[i].e,
                              sp[i - 1].name);
        else if (sp[i].b > at)
            rc = align__error(eb, ALIGN_EFORMAT, "%s: %llu unused bytes before tensor '%s'", f->path,
                              (unsigned long long)(sp[i].b - at), sp[i].name);
        at = sp[i].e;
    }
    if (!rc && at != f->data_len)
        rc = align__error(eb, ALIGN_EFORMAT, "%s: %llu trailing bytes after the last tensor", f->path,
                          (unsigned long long)(f->data_len - at));
    align__free(sp);
    return rc;
}

int align__st_open(align__errbuf *eb, const char *path, align__st_file *f)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    int rc = align__read_file(eb, path, &f->buf, &f->len);
    if (rc)
        return rc;
    if (f->len < 8) {
        {
            int rc_ = align__error(eb, ALIGN_EFORMAT, "%s: not a safetensors file (%zu bytes, truncated?)", path, f->len);
            align__st_close(f);
            return rc_;
        }
    }
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)(unsigned char)f->buf[i] << (8 * i);
    if (hl > ST_MAX_HEADER || hl > f->len - 8) {
        unsigned long long l = (unsigned long long)f->len;
        {
            int rc_ = align__error(eb, ALIGN_EFORMAT,
                            "%s: header length %llu does not fit the file's %llu bytes (truncated or not safetensors)",
                            path, (unsigned long long)hl, l);
            align__st_close(f);
            return rc_;
        }
    }
    json_error_t jerr;
    /* duplicate names would make two tensors share one entry */
    json_t *hdr = json_loadb(f->buf + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &jerr);
    if (!hdr || !json_is_object(hdr)) {
        if (hdr)
            json_decref(hdr);
        {
            int rc_ = align__error(eb, ALIGN_EFORMAT, "%s: header is not a JSON object (%s)", path,
                            hdr ? "wrong type" : jerr.text);
            align__st_close(f);
            return rc_;
        }
    }
    f->hdr = hdr;
    f->data = f->buf + 8 + hl;
    f->data_len = f->len - 8 - (size_t)hl;
    /* The format does not require a padded header (writers other than the
     * reference one may not pad to 8 bytes): move a misaligned data section
     * down to the 8-byte boundary before it, over header bytes already parsed,
     * so tensors can be read as floats in place. */
    uintptr_t mis = (uintptr_t)f->data % 8;
    if (mis && f->data_len) {
        char *to = (char *)f->data - mis; /* >= f->buf + 8 + hl - 7 > f->buf: hl >= 2 ("{}") */
        memmove(to, f->data, f->data_len);
        f->data = to;
    }
    const char *key;
    json_t *e;
    json_object_foreach(hdr, key, e) {
        if (!strcmp(key, "__metadata__")) {
            const char *k2;
            json_t *v;
            if (!json_is_object(e))
                goto bad_meta;
            json_object_foreach(e, k2, v) if (!json_is_string(v)) goto bad_meta;
            continue;
        }
        json_t *dt = json_object_get(e, "dtype"), *sh = json_object_get(e, "shape"),
               *of = json_object_get(e, "data_offsets");
        if (!json_is_object(e) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(of) ||
            json_array_size(of) != 2 || !json_is_integer(json_array_get(of, 0)) ||
            !json_is_integer(json_array_get(of, 1))) {
            {
                int rc_ = align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' lacks dtype, shape or data_offsets", path, key);
                align__st_close(f);
                return rc_;
            }
        }
        int ds = dtype_size(json_string_value(dt));
        if (!ds) {
            {
                int rc_ = align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' has unknown dtype", path, key);
                align__st_close(f);
                return rc_;
            }
        }
        uint64_t numel = 1;
        for (size_t i = 0; i < json_array_size(sh); i++) {
            json_t *d = json_array_get(sh, i);
            if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1ll << 40)) {
                {
                    int rc_ = align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' has a bad shape", path, key);
                    align__st_close(f);
                    return rc_;
                }
            }
            /* checked before multiplying: the product never wraps */
            uint64_t dim = (uint64_t)json_integer_value(d);
            if (dim != 0 && numel > (1ull << 40) / dim) {
                {
                    int rc_ = align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' is too large", path, key);
                    align__st_close(f);
                    return rc_;
                }
            }
            numel *= dim;
        }
        json_int_t b = json_integer_value(json_array_get(of, 0)), en = json_integer_value(json_array_get(of, 1));
        if (b < 0 || en < b || (uint64_t)en > f->data_len) {
            size_t dl = f->data_len;
            {
                int rc_ = align__error(eb, ALIGN_EFORMAT,
                                "%s: tensor '%s' at bytes %lld..%lld lies outside the %zu data bytes (truncated file?)",
                                path, key, (long long)b, (long long)en, dl);
                align__st_close(f);
                return rc_;
            }
        }
        if ((uint64_t)(en - b) != numel * (uint64_t)ds) {
            {
                int rc_ = align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' has %lld bytes for %llu elements",
                                path, key, (long long)(en - b), (unsigned long long)numel);
                align__st_close(f);
                return rc_;
            }
        }
    }
    int lrc = check_layout(eb, f);
    if (lrc) {
        align__st_close(f);
        return lrc;
    }
    const char *ck = align__st_meta_get(f, "libalign.checksum");
    if (ck) {
        char hex[32];
        snprintf(hex, sizeof hex, "fnv1a64w:%016llx",
                 (unsigned long long)checksum((const unsigned char *)f->data, f->data_len));
        if (strcmp(hex, ck) != 0) {
            {
                int rc_ = align__error(eb, ALIGN_EFORMAT,
                                "%s: data checksum mismatch (the file is corrupted or truncated)", path);
                align__st_close(f);
                return rc_;
            }
        }
    }
    return ALIGN_OK;
bad_meta:
    {
        int rc_ = align__error(eb, ALIGN_EFORMAT, "%s: __metadata__ must map strings to strings", path);
        align__st_close(f);
        return rc_;
    }
}

int align__st_has(const align__st_file *f, const char *name)
{
    return json_object_get((json_t *)f->hdr, name) != NULL && strcmp(name, "__metadata__") != 0;
}

int align__st_shape(const align__st_file *f, const char *name, int *ndim, int64_t shape[2])
{
    json_t *e = json_object_get((json_t *)f->hdr, name);
    if (!e || !strcmp(name, "__metadata__"))
        return 0;
    json_t *sh = json_object_get(e, "shape");
    *ndim = (int)json_array_size(sh);
    shape[0] = shape[1] = 0;
    for (int i = 0; i < *ndim && i < 2; i++)
        shape[i] = (int64_t)json_integer_value(json_array_get(sh, (size_t)i));
    return 1;
}

int align__st_get(align__errbuf *eb, const align__st_file *f, const char *name, int ndim,
                  const int64_t *shape, const float **data)
{
    json_t *e = json_object_get((json_t *)f->hdr, name);
    if (!e || !strcmp(name, "__metadata__"))
        return align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' is missing", f->path, name);
    const char *dt = json_string_value(json_object_get(e, "dtype"));
    if (strcmp(dt, "F32") != 0)
        return align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' is %s, expected F32", f->path, name, dt);
    int nd;
    int64_t sh[2];
    align__st_shape(f, name, &nd, sh);
    if (nd != ndim || sh[0] != shape[0] || (ndim == 2 && sh[1] != shape[1])) {
        char want[64], got[64];
        if (ndim == 2)
            snprintf(want, sizeof want, "[%lld, %lld]", (long long)shape[0], (long long)shape[1]);
        else
            snprintf(want, sizeof want, "[%lld]", (long long)shape[0]);
        if (nd == 2)
            snprintf(got, sizeof got, "[%lld, %lld]", (long long)sh[0], (long long)sh[1]);
        else if (nd == 1)
            snprintf(got, sizeof got, "[%lld]", (long long)sh[0]);
        else
            snprintf(got, sizeof got, "%d dimensions", nd);
        return align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", f->path, name, got, want);
    }
    json_int_t b = json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 0));
    if ((uintptr_t)(f->data + b) % _Alignof(float) != 0) /* a header not padded to 8 bytes */
        return align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' is not 4-byte aligned in the file", f->path,
                            name);
    *data = (const float *)(const void *)(f->data + b);
    return ALIGN_OK;
}

const char *align__st_meta_get(const align__st_file *f, const char *key)
{
    json_t *md = json_object_get((json_t *)f->hdr, "__metadata__");
    return md ? json_string_value(json_object_get(md, key)) : NULL;
}

int align__st_each(const align__st_file *f, int (*fn)(const char *name, void *ud), void *ud)
{
    const char *key;
    json_t *e;
    json_object_foreach((json_t *)f->hdr, key, e) {
        if (!strcmp(key, "__metadata__"))
            continue;
        int rc = fn(key, ud);
        if (rc)
            return rc;
    }
    return 0;
}

int align__st_read(align__errbuf *eb, const align__st_file *f, const char *name, int ndim,
                   const int64_t *shape, float *dst)
{
    json_t *e = json_object_get((json_t *)f->hdr, name);
    if (!e || !strcmp(name, "__metadata__"))
        return align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' is missing", f->path, name);
    const char *dt = json_string_value(json_object_get(e, "dtype"));
    int kind = !strcmp(dt, "F32") ? 0 : !strcmp(dt, "BF16") ? 1 : !strcmp(dt, "F16") ? 2 : -1;
    if (kind < 0)
        return align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' is %s (libalign reads F32, BF16, F16)",
                            f->path, name, dt);
    int nd;
    int64_t sh[2];
    align__st_shape(f, name, &nd, sh);
    if (nd != ndim || sh[0] != shape[0] || (ndim == 2 && sh[1] != shape[1])) {
        char want[64], got[64];
        if (ndim == 2)
            snprintf(want, sizeof want, "[%lld, %lld]", (long long)shape[0], (long long)shape[1]);
        else
            snprintf(want, sizeof want, "[%lld]", (long long)shape[0]);
        if (nd == 2)
            snprintf(got, sizeof got, "[%lld, %lld]", (long long)sh[0], (long long)sh[1]);
        else if (nd == 1)
            snprintf(got, sizeof got, "[%lld]", (long long)sh[0]);
        else
            snprintf(got, sizeof got, "%d dimensions", nd);
        return align__error(eb, ALIGN_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", f->path, name, got, want);
    }
    if (!dst)
        return ALIGN_OK;
    json_int_t b = json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 0));
    size_t n = (size_t)shape[0] * (size_t)(ndim == 2 ? shape[1] : 1);
    const unsigned char *src = (const unsigned char *)f->data + b;
    if (kind == 0) {
        memcpy(dst, src, n * 4);
        return ALIGN_OK;
    }
    for (size_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)); /* little-endian */
        dst[i] = kind == 1 ? bf16_to_f32(h) : f16_to_f32(h);
    }
    return ALIGN_OK;
}
