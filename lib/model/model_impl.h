/*
 * model_impl.h — the inside of align_model, shared by the lib/model sources and the
 * optimizer (lib/optim reads the flat parameter / gradient arrays and the
 * tensor table). Not for other layers: they use model.h.
 *
 * Memory (llm.c style): parameters, gradients (and the optimizer's moments)
 * are each ONE flat float array, laid out tensor after tensor in the order
 * of the tensor table; activations live in an arena sized for the largest
 * (n_seq, max_len) shape seen, reused across steps.
 *
 * Weights and working memory are apart. The parameters are a refcounted
 * align__weights that a frozen clone of a frozen model shares (never written
 * once frozen). A trainable model owns one arena (m->acts: backward reads the
 * last forward's activations). A frozen model may be called from several
 * threads at once, so each forward takes an align__workspace from the model's
 * free list (a mutex-guarded stack that grows with the concurrency and is
 * reused afterwards) and gives it back; decoding keeps its per-call state in
 * the caller's align__kv_cache. Calls on a frozen model write nothing into
 * the handle (not even its errbuf: align__model_err gives NULL, and failures
 * land in the calling thread's align_last_errmsg).
 */
#ifndef ALIGN_MODEL_IMPL_H
#define ALIGN_MODEL_IMPL_H

#include "model/model.h"

#include <pthread.h>
#include <stdatomic.h>

#define ALIGN__TENSOR_NAME_CAP 64

typedef struct align__tensor {
    char    name[ALIGN__TENSOR_NAME_CAP]; /* Hugging Face GPT-2 name, e.g. "h.3.attn.c_attn.weight" */
    int     ndim;                          /* 1 or 2 */
    int64_t shape[2];
    size_t  offset;                        /* in floats, into params / grads */
    size_t  numel;
    int     decay;                         /* AdamW weight decay applies (2-D tensors) */
} align__tensor;

/* Pointers into one flat array (params or grads), per architecture. A
 * Llama-style block would add its own struct (rms weights, w1/w2/w3, ...)
 * and its own forward/backward file beside gpt2.c. */
typedef struct align__gpt2_layer {
    float *ln1w, *ln1b;       /* [C] */
    float *qkvw, *qkvb;       /* [C][3C], [3C] (Conv1D: [in][out]) */
    float *attprojw, *attprojb; /* [C][C], [C] */
    float *ln2w, *ln2b;       /* [C] */
    float *fcw, *fcb;         /* [C][4C], [4C] */
    float *fcprojw, *fcprojb; /* [4C][C], [C] */
} align__gpt2_layer;

typedef struct align__gpt2_weights {
    float *wte;               /* [V][C], also the LM head (tied) */
    float *wpe;               /* [maxT][C] */
    align__gpt2_layer *layer; /* [L] */
    float *lnfw, *lnfb;       /* [C] */
    float *scorew, *scoreb;   /* [1][C], [1]; NULL without a scalar head */
} align__gpt2_weights;

/* Activations of one layer for a (B, T) shape. */
typedef struct align__gpt2_layer_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* [BT][C], [BT], [BT] */
    float *qkv;                       /* [BT][3C] */
    float *atty;                      /* [BT][C] */
    float *att;                       /* [B][NH][T][T] */
    float *res2;                      /* [BT][C] residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch, *fchg;                /* [BT][4C] before / after GELU */
    float *res3;                      /* [BT][C] residual after the MLP */
} align__gpt2_layer_acts;

typedef struct align__acts {
    int64_t B, T;            /* shape laid out now */
    size_t  cap;             /* floats allocated */
    size_t  icap;            /* int32 allocated */
    int     threads;         /* attention scratch sized for this many chunks */
    float  *mem;
    int32_t *imem;
    int32_t *tokens;         /* [B][T] copy (padding set to 0) */
    int32_t *lengths;        /* [B] */
    int32_t *targets;        /* [BT] next token / -1 / -2 (see nn.h) */
    int32_t *argmax;         /* [BT] */
    int     head_done;       /* the LM head ran (probs valid for backward) */
    float  *encoded;         /* [BT][C] */
    align__gpt2_layer_acts *layer; /* [L] trainable, [1] frozen (slots reused) */
    float  *lnf, *lnf_mean, *lnf_rstd;
    float  *probs;           /* [BT][V] logits -> probabilities -> dlogits */
    float  *logprob;         /* [BT] */
    /* backward scratch (trainable only) */
    float  *dres, *dC, *dqkv, *dfch, *att_scratch;
    /* Llama (llama.c): per-layer activations, slot l at xl + l * xl_stride
     * (one slot when frozen), and the rotary table [T][head_size/2] x 2 */
    float  *xl, *rope_cos, *rope_sin;
    size_t  xl_stride;
} align__acts;

/* The flat parameter array, shared by reference between frozen models. */
typedef struct align__weights {
    atomic_int refs;
    size_t  n;               /* floats */
    float  *data;
} align__weights;

/* The per-call working memory of a forward on a frozen model. */
typedef struct align__workspace {
    align__acts acts;        /* frozen layout: one layer slot, no backward scratch */
    struct align__workspace *next; /* in the model's free list */
} align__workspace;

/* An architecture as data: everything model.c, checkpoint.c and generation
 * need from one (model.c's align__arch picks the table from cfg.arch). */
typedef struct align__arch_ops {
    const char *name;        /* "gpt2", "llama": the checkpoint metadata's libalign.arch */
    /* the architecture's own settings (the common ones are checked by model.c) */
    int    (*check_config)(const align_model_params *c, align__errbuf *eb);
    int    (*max_tensors)(const align_model_params *c);
    void   (*build_tensors)(align_model *m);      /* fills m->tensors, n_tensors, n_params */
    void   (*point)(align_model *m);               /* views into params / grads after (re)allocation */
    void   (*init_weights)(align_model *m);
    /* lays out the arena for (B, T) over base (NULL: only count floats) */
    size_t (*acts_layout)(const align_model *m, align__acts *a, int64_t B, int64_t T, float *base);
    void   (*forward)(const align_model *m, align__acts *a, float *token_logprobs, float *scalar,
                      float *logits, int32_t *argmax);
    void   (*backward)(align_model *m, const float *d_token_logprobs, const float *d_scalar);
    int    (*kv_create)(align__kv_cache **out, const align_model *m, int32_t n_seq, int32_t max_len);
    void   (*kv_free)(align__kv_cache *c);
    int32_t (*kv_len)(const align__kv_cache *c, int32_t i);
    int    (*decode)(align_model *m, align__kv_cache *c, const int32_t *tokens, int32_t stride,
                     const int32_t *n_new, float *logits_last);
} align__arch_ops;

struct align_model {
    align__errbuf err;       /* trainable only (see align__model_err) */
    align_model_params cfg;
    const align__arch_ops *ops; /* cfg.arch's table */
    int     frozen;
    int     n_tensors;
    align__tensor *tensors;
    size_t  n_params;        /* floats in params (= in grads) */
    float  *params;          /* = wts->data */
    align__weights *wts;     /* refcounted; shared only between frozen models */
    float  *grads;           /* NULL when frozen */
    align__gpt2_weights w, g; /* g: NULL pointers when frozen */
    align__acts acts;        /* trainable only */
    int     fwd_ready;       /* activations hold a forward backward can use */
    /* Reward normalisation (lib/reward): score = scale * head + bias. Saved
     * in the checkpoint's metadata (checkpoint.c); set == 0 is the identity. */
    struct { int set; float bias, scale; } reward_norm;
    pthread_mutex_t ws_mu;   /* frozen: guards ws_free */
    align__workspace *ws_free;
    /* LoRA adapters (lora.c), NULL without. While attached the base is frozen:
     * grads is NULL (g all NULL) and the optimizer steps the adapters. */
    struct align__lora *lora;
};

/* model.c */
int  align__model_alloc(align_model **out, const align_model_params *cfg, int frozen,
                        align__errbuf *eb);
void align__model_init_weights(align_model *m);
int  align__model_check_config(const align_model_params *c, align__errbuf *eb);
const align__tensor *align__model_find_tensor(const align_model *m, const char *name);
/* Sizes the arena a (laid out for m: trainable or frozen) for (B, T);
 * allocates only if it grew. ALIGN_ENOMEM without a message on failure. */
int  align__model_acts_reserve(const align_model *m, align__acts *a, int64_t B, int64_t T);
void align__model_acts_free(align__acts *a);

/* The table of an architecture (NULL for an unknown one). */
const align__arch_ops *align__arch(int32_t arch);
/* What an optimizer updates: the base arrays, or the adapters' when LoRA is
 * attached (lora.c). */
typedef struct align__train_view {
    float  *params, *grads;
    const align__tensor *tensors;
    int     n_tensors;
    size_t  n;
} align__train_view;
void align__model_train_view(const align_model *m, align__train_view *v);
/* model.c: on != 0 allocates the base gradients of a trainable model (zeroed)
 * and points g at them; 0 frees them (LoRA: the base is frozen). */
int  align__model_base_grads(align_model *m, int on);
/* Makes m's weights its own (copies them if shared) before writing them. */
int  align__model_own_weights(align_model *m);

/* gpt2.c (a: m->acts when trainable, a workspace's when frozen) */
void align__gpt2_forward(const align_model *m, align__acts *a, float *token_logprobs,
                         float *scalar, float *logits, int32_t *argmax);
void align__gpt2_backward(align_model *m, const float *d_token_logprobs, const float *d_scalar);
int  align__gpt2_kv_create(align__kv_cache **out, const align_model *m, int32_t n_seq, int32_t max_len);
void align__gpt2_kv_free(align__kv_cache *c);
int32_t align__gpt2_kv_len(const align__kv_cache *c, int32_t i);
int  align__gpt2_decode(align_model *m, align__kv_cache *c, const int32_t *tokens, int32_t stride,
                        const int32_t *n_new, float *logits_last);

/* llama.c: the Llama family's table. Its KV cache starts with an int32_t
 * equal to ALIGN__LLAMA_KV_TAG, where GPT-2's starts with n_seq >= 1: the
 * dispatchers of model.c tell the two apart by that first member. */
#define ALIGN__LLAMA_KV_TAG (-0x11a3a)
extern const align__arch_ops align__llama_ops;

/* llama_ckpt.c: 1 if path is a Llama-family model (a folder or file whose
 * config.json is not GPT-2's, or a libalign file saved from a Llama model),
 * 0 if not, < 0 on an unreadable config.json (message set). */
int align__llama_probe(const char *path);
int align__llama_load(align_model **out, const char *path, const align_model_params *user);
int align__llama_save(const align_model *m, const char *path, uint32_t flags, align__errbuf *eb);

#endif
