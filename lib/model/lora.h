/*
 * lora.h — LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of
 * Large Language Models") on a model's linear layers: y = x W + b +
 * (alpha/r) (x A^T) B^T with A [r][in], B [out][r] (PEFT's layout), the
 * base W frozen. The architecture's forward / backward call one hook after
 * each adaptable linear ("site"); lora.c does the rest. Sites are numbered
 * per architecture (GPT-2's and Llama's below; each has an entry in lora.c's
 * table and calls the same hooks).
 */
#ifndef ALIGN_MODEL_LORA_H
#define ALIGN_MODEL_LORA_H

#include "model/model_impl.h"

/* GPT-2's adaptable linears ("sites"), in PEFT's module names. Another
 * architecture numbers its own (at most ALIGN__LORA_MAX_SITES per layer) and
 * adds a table entry in lora.c. */
enum {
    ALIGN__LORA_QKV = 0,     /* attn.c_attn (fused q, k, v) */
    ALIGN__LORA_ATTPROJ = 1, /* attn.c_proj */
    ALIGN__LORA_FC = 2,      /* mlp.c_fc */
    ALIGN__LORA_FCPROJ = 3,  /* mlp.c_proj */
    ALIGN__LORA_MAX_SITES = 8
};

/* Llama's (llama.c; PEFT's module names under model.layers.N). */
enum {
    ALIGN__LORA_LLAMA_Q = 0,    /* self_attn.q_proj */
    ALIGN__LORA_LLAMA_K = 1,    /* self_attn.k_proj */
    ALIGN__LORA_LLAMA_V = 2,    /* self_attn.v_proj */
    ALIGN__LORA_LLAMA_O = 3,    /* self_attn.o_proj */
    ALIGN__LORA_LLAMA_GATE = 4, /* mlp.gate_proj */
    ALIGN__LORA_LLAMA_UP = 5,   /* mlp.up_proj */
    ALIGN__LORA_LLAMA_DOWN = 6  /* mlp.down_proj */
};

typedef struct align__lora align__lora;

/* Forward hook after linear `site` of layer l: out[N][out] += scale * (inp A^T) B^T.
 * a is the arena of the forward (m->acts keeps inp A^T for backward; a
 * workspace's or NULL (decoding) allocates N x r floats of scratch per call
 * and keeps nothing: several threads may run a frozen model at once). No-op
 * without adapters on that site or with adapters switched off. The callers'
 * forwards cannot fail midway, so if that scratch cannot be allocated the
 * hook leaves out as the base computed it and logs an error. */
void align__lora_fwd(const align_model *m, const align__acts *a, int l, int site, float *out,
                     const float *inp, int64_t N);
/* Backward hook after the base linear's backward (which overwrote dinp with
 * dout W^T): dinp += the adapter's part, dA and dB accumulate. */
void align__lora_bwd(align_model *m, int l, int site, float *dinp, const float *dout, const float *inp,
                     int64_t N);

/* Points m->w.scorew / g.scorew at the adapters' trainable head copy (after
 * anything re-pointed m->w at the base arrays). No-op without one. */
void align__lora_repoint(align_model *m);
/* Sizes the kept activations for N rows before a trainable forward. */
int  align__lora_reserve(align_model *m, int64_t N);
void align__lora_free(align__lora *lo);
/* A copy of src's adapters for dst (same configuration); trainable dst gets gradients. */
int  align__lora_clone(align_model *dst, const align_model *src);
/* Copies src's adapter values into dst's (same layout, else ALIGN_EINVAL). */
int  align__lora_copy(align_model *dst, const align_model *src, align__errbuf *eb);

/* The flat adapter arrays the optimizer updates. */
float *align__lora_params(const align__lora *lo, size_t *n, float **grads, const align__tensor **tensors,
                          int *n_tensors);

/* Checkpoints (checkpoint.c): the adapter tensors under their PEFT names and
 * the configuration as one metadata string, so align_model_save / load
 * carry a LoRA trainer's state. */
int  align__lora_ckpt_tensors(const align_model *m, int *n);       /* count, or 0 */
const char *align__lora_ckpt_name(const align_model *m, int i, const float **data, int64_t shape[2]);
int  align__lora_ckpt_meta(const align_model *m, char *buf, size_t cap); /* JSON config */
int  align__lora_is_adapter_name(const char *name);
/* Attaches adapters described by meta (JSON from align__lora_ckpt_meta) and
 * fills them from f's tensors (every one checked first). */
struct align__st_file;
int  align__lora_from_ckpt(align_model *m, const char *meta, const struct align__st_file *f);

#endif
