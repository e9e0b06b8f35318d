/* safetensors.h — reader / writer of the safetensors format
 * (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
 * {string: string}}, then the raw data. Used for model weights and optimizer
 * state. The header is parsed with jansson. */
#ifndef ALIGN_MODEL_SAFETENSORS_H
#define ALIGN_MODEL_SAFETENSORS_H

#include "core/core.h"

typedef struct align__st_tensor {
    const char *name;
    const float *data;  /* F32 */
    int ndim;           /* 1 or 2 */
    int64_t shape[2];
} align__st_tensor;

typedef struct align__st_meta {
    const char *key, *value;
} align__st_meta;

/* Writes F32 tensors and string metadata atomically. A checksum of the data
 * section is added to the metadata ("libalign.checksum") and verified on load. */
int align__st_write(align__errbuf *eb, const char *path, const align__st_tensor *t, int n_tensors,
                    const align__st_meta *meta, int n_meta);

/* The same with the data as BF16 (bf16 != 0: rounded to nearest even) or F32. */
int align__st_write_dtype(align__errbuf *eb, const char *path, const align__st_tensor *t,
                          int n_tensors, const align__st_meta *meta, int n_meta, int bf16);
/* float -> bfloat16, round to nearest even. */
uint16_t align__f32_to_bf16(float x);

typedef struct align__st_file {
    char *buf;           /* whole file */
    size_t len;
    void *hdr;           /* json_t * */
    const char *data;    /* data section */
    size_t data_len;
    const char *path;
} align__st_file;

/* Reads and checks a whole file: header length, JSON, every entry's dtype,
 * shape and offsets inside the data section, and the checksum when present.
 * ALIGN_ENOENT / ALIGN_EIO / ALIGN_EFORMAT with a message naming the file. */
int  align__st_open(align__errbuf *eb, const char *path, align__st_file *f);
void align__st_close(align__st_file *f);
/* 1 if the file has tensor name. */
int  align__st_has(const align__st_file *f, const char *name);
/* F32 tensor `name` of exactly this shape (shape[1] ignored when ndim == 1). */
int  align__st_get(align__errbuf *eb, const align__st_file *f, const char *name, int ndim,
                   const int64_t *shape, const float **data);
/* Tensor `name` of exactly this shape in F32, BF16 or F16, converted to
 * float into dst[numel] (dst NULL: only checked). */
int  align__st_read(align__errbuf *eb, const align__st_file *f, const char *name, int ndim,
                    const int64_t *shape, float *dst);
/* Shape of tensor name; 0 if absent. */
int  align__st_shape(const align__st_file *f, const char *name, int *ndim, int64_t shape[2]);
/* Metadata value, or NULL. */
const char *align__st_meta_get(const align__st_file *f, const char *key);
/* Calls fn for each tensor name (not __metadata__); stops at fn's nonzero. */
int  align__st_each(const align__st_file *f, int (*fn)(const char *name, void *ud), void *ud);

#endif
