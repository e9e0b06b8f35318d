/*
 * align.h — libalign, alignment training of language models in C.
 *
 * This header is the contract: what is not declared here is not API.
 * Conventions (docs/conventions.md):
 *   - every fallible call returns int: 0 (ALIGN_OK), a documented positive
 *     status (ALIGN_DONE), or a negative error code (ALIGN_E*);
 *   - constructors take the out-parameter first and set *out = NULL on error;
 *   - destructors return void and accept NULL;
 *   - params structs start with uint32_t struct_size and are filled by
 *     align_<x>_default_params(&p, sizeof p) (or ALIGN_<X>_DEFAULT_PARAMS(&p));
 *   - handles passed to another object are borrowed (they must outlive it);
 *     strings and arrays passed in are copied before the call returns;
 *   - one thread at a time per handle, except where a comment says otherwise.
 */
#ifndef ALIGN_H
#define ALIGN_H

#include <stddef.h>
#include <stdint.h>

/* ---- version (the Makefile reads these three lines) -------------------- */
#define ALIGN_VERSION_MAJOR 0
#define ALIGN_VERSION_MINOR 3
#define ALIGN_VERSION_PATCH 1
#define ALIGN_VERSION_HEX \
    ((ALIGN_VERSION_MAJOR << 16) | (ALIGN_VERSION_MINOR << 8) | ALIGN_VERSION_PATCH)
#define ALIGN_VERSION_AT_LEAST(x, y, z) \
    (ALIGN_VERSION_HEX >= (((x) << 16) | ((y) << 8) | (z)))

/* ---- visibility ---------------------------------------------------------- */
#if defined(ALIGN_STATIC)
#  define ALIGN_API
#elif defined(_WIN32)
#  if defined(ALIGN_BUILDING)
#    define ALIGN_API __declspec(dllexport)
#  else
#    define ALIGN_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define ALIGN_API __attribute__((visibility("default")))
#else
#  define ALIGN_API
#endif

#if defined(__GNUC__) || defined(__clang__)
#  define ALIGN_DEPRECATED(msg) __attribute__((deprecated(msg)))
#else
#  define ALIGN_DEPRECATED(msg)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Hex version of the loaded library, (major << 16) | (minor << 8) | patch. */
ALIGN_API unsigned align_version(void);
/* "0.3.1"; static storage, never NULL. */
ALIGN_API const char *align_version_string(void);

/* ---- status and error codes ---------------------------------------------
 * Codes are ABI: never renumbered, never reused. New codes are appended. */
enum {
    ALIGN_OK = 0,
    ALIGN_DONE = 1,           /* not an error: no more work (end of data) */
    ALIGN_EINVAL = -1,        /* invalid argument (NULL, out of range) */
    ALIGN_ENOMEM = -2,        /* out of memory */
    ALIGN_EIO = -3,           /* read or write failed */
    ALIGN_EFORMAT = -4,       /* malformed input file or record */
    ALIGN_EVERSION = -5,      /* unknown struct layout or file version */
    ALIGN_EBUSY = -6,         /* handle busy (an async step in flight) */
    ALIGN_ECANCELED = -7,     /* stopped by request */
    ALIGN_ECALLBACK = -8,     /* a host callback returned an error */
    ALIGN_EMISUSE = -9,       /* call not valid in this state */
    ALIGN_EINTERNAL = -10,    /* internal error (a bug: please report) */
    ALIGN_ERANGE = -11,       /* output buffer too small; size reported */
    ALIGN_ENOENT = -12,       /* no such file */
    ALIGN_ENONFINITE = -13    /* NaN or infinity in a loss or gradient */
};

/* Short description of a code; static storage, never NULL. Thread-safe. */
ALIGN_API const char *align_strerror(int code);
/* The code's name, "ALIGN_EINVAL"; "ALIGN_UNKNOWN" for unknown codes. */
ALIGN_API const char *align_err_name(int code);
/* Detail of the last failure on the calling thread (constructors, calls on
 * const handles). Valid until the thread's next failing call. Never NULL. */
ALIGN_API const char *align_last_errmsg(void);

/* Frees memory the library handed out (documented per function). NULL ok. */
ALIGN_API void align_free(void *ptr);

/* ---- logging -------------------------------------------------------------
 * Global; set before creating handles. The default sink writes WARN and
 * ERROR lines to stderr prefixed "libalign: ". fn == NULL restores it. */
enum { ALIGN_LOG_ERROR = 0, ALIGN_LOG_WARN = 1, ALIGN_LOG_INFO = 2, ALIGN_LOG_DEBUG = 3 };
typedef void (*align_log_fn)(int level, const char *message, void *user_data);
ALIGN_API void align_log_set(align_log_fn fn, void *user_data);
/* Messages above max_level are dropped (default ALIGN_LOG_WARN). */
ALIGN_API void align_log_set_level(int max_level);

/* ---- threads and BLAS ----------------------------------------------------
 * One setting governs the BLAS and the library's own loops. n <= 0 selects
 * the number of online CPUs. Results are bitwise reproducible for a given
 * thread count. Safe from any thread, but takes effect between steps. */
ALIGN_API int align_threads_set(int n_threads);
ALIGN_API int align_threads_get(void);
/* Which BLAS and kernel are in use, e.g. "OpenBLAS 0.3.21 (SkylakeX kernels)".
 * Static storage. Logs a warning once if a slow fallback kernel is detected. */
ALIGN_API const char *align_blas_info(void);

/* ---- compute precision ---------------------------------------------------
 * ALIGN_COMPUTE_BF16: the matrix products of training and of forward passes
 * (not of single-token decoding) take bf16 operands with fp32 accumulation
 * and fp32 results, through oneDNN's matmul (AMX or AVX512_BF16); weights,
 * gradients, optimizer state and all other operations stay fp32 (the bf16
 * copies are made per product, never kept). One process-wide setting, taken
 * between calls. Refused with ALIGN_EMISUSE (and a message saying why; the
 * setting stays fp32) when libalign was built without oneDNN or the CPU has
 * neither AVX512_BF16 nor AMX-BF16. Results are reproducible for a given
 * thread count in either mode; bf16 results differ from fp32 ones by bf16
 * rounding (docs/model.md, "bf16 compute"). Default ALIGN_COMPUTE_FP32. */
enum { ALIGN_COMPUTE_FP32 = 0, ALIGN_COMPUTE_BF16 = 1 };
ALIGN_API int align_compute_set(int32_t mode);
ALIGN_API int32_t align_compute_get(void);
/* The mode in force and what bf16 would run on, or why it cannot, e.g.
 * "fp32; bf16 available through oneDNN 2.6.3 (avx512_core_bf16) (CPU: avx512_bf16)".
 * Thread-local storage, valid until the calling thread's next call. */
ALIGN_API const char *align_compute_info(void);

/* ---- opaque handles ------------------------------------------------------ */
typedef struct align_model align_model;
typedef struct align_tokenizer align_tokenizer;
typedef struct align_dataset align_dataset;
typedef struct align_optimizer align_optimizer;
typedef struct align_trainer align_trainer;
typedef struct align_generation align_generation;

/* ---- callbacks (user_data last; 0 = continue, ALIGN_DONE = no more,
 *      < 0 = abort: the call fails with ALIGN_ECALLBACK) -------------------- */

/* Step and progress events; s is valid only during the call. */
typedef struct align_step_stats align_step_stats;
typedef int (*align_step_fn)(const align_step_stats *s, void *user_data);

/* ======================================================================== */
/* model                                                                    */
/* ======================================================================== */

/* Architectures (docs/architectures.md). GPT-2: learned positions, LayerNorm,
 * GELU MLP, tied head. Llama (and Qwen2, Mistral): RMSNorm, rotary positions,
 * SwiGLU MLP, grouped-query attention, no biases unless asked. */
enum { ALIGN_ARCH_GPT2 = 0, ALIGN_ARCH_LLAMA = 1 };

/* align_model_params.flags */
#define ALIGN_MODEL_SCALAR_HEAD 0x1u  /* add a scalar head (reward / value) */
#define ALIGN_MODEL_UNTIED_HEAD 0x2u  /* Llama: an LM head (lm_head.weight) apart from the
                                         token embedding (tie_word_embeddings = false) */
#define ALIGN_MODEL_QKV_BIAS    0x4u  /* Llama: biases on q/k/v projections (Qwen2) */

typedef struct align_model_params {
    uint32_t struct_size;   /* set by align_model_default_params(); do not touch */
    uint32_t flags;         /* ALIGN_MODEL_* bits */
    int32_t  arch;          /* ALIGN_ARCH_GPT2 */
    int32_t  n_layer;       /* transformer blocks (default 4) */
    int32_t  n_head;        /* attention heads (default 4) */
    int32_t  n_embd;        /* width, divisible by n_head (default 128) */
    int32_t  vocab_size;    /* default 50257 */
    int32_t  max_seq_len;   /* position table size (default 1024) */
    uint64_t seed;          /* initialisation seed (default 1234) */
    int32_t  n_threads;     /* > 0: calls align_threads_set(); 0: leave as is */
    /* The tail padding of the 0.1/0.2 layout (offset 44), named so that the
     * members below start at 48: never read (old callers may leave garbage). */
    uint32_t reserved0;
    /* since 0.3.0; GPT-2 ignores them (0 = the architecture's default) */
    int32_t  n_kv_head;     /* Llama: key/value heads, dividing n_head (0: n_head) */
    int32_t  intermediate_size; /* Llama: SwiGLU MLP width (0: 4 x n_embd) */
    float    rope_theta;    /* Llama: rotary base (0: 10000) */
    float    norm_eps;      /* Llama: RMSNorm epsilon (0: 1e-6) */
    /* append new members here; never reorder, resize or remove */
} align_model_params;

ALIGN_API int align_model_default_params(align_model_params *out, size_t struct_size);
#define ALIGN_MODEL_DEFAULT_PARAMS(p) align_model_default_params((p), sizeof *(p))

/* A randomly initialised model (GPT-2's or transformers' Llama initialisation,
 * by p->arch). p is copied. */
ALIGN_API int align_model_create(align_model **out, const align_model_params *p);
/* Loads safetensors weights with Hugging Face names: a libalign file, a
 * Hugging Face folder (config.json + model.safetensors, or shards listed in
 * model.safetensors.index.json; GPT-2, Llama, Qwen2, Mistral: see
 * docs/architectures.md; F32, BF16 or F16 weights) or a file with a
 * config.json beside it, or a libalign checkpoint folder. The configuration
 * comes from the file's metadata or config.json; a file with neither is
 * refused (the head count is unknown). GPT2ForSequenceClassification files
 * load with a scalar head. Every tensor is checked before allocating.
 * p may be NULL or give flags (ALIGN_MODEL_SCALAR_HEAD adds a fresh head if
 * the file has none), seed and n_threads. */
ALIGN_API int align_model_load(align_model **out, const char *path, const align_model_params *p);
/* Writes safetensors atomically (temporary file, fsync, rename); a folder
 * path gets model.safetensors + config.json (= align_model_save_ex(m, path, 0)). */
ALIGN_API int align_model_save(const align_model *m, const char *path);
/* align_model_clone flags */
#define ALIGN_FROZEN 0x1u   /* forward only: no gradient or optimizer memory */
#define ALIGN_CLONE_NO_ADAPTERS 0x2u /* without m's LoRA adapters (the base alone; frozen: shared) */
/* A new model with m's configuration and weights. ALIGN_FROZEN: forward only,
 * and usable from several threads at once (forward, generate). A frozen
 * clone of a FROZEN model shares its weights (no copy; they never change),
 * and so does a frozen clone of a model with LoRA adapters (its base is
 * frozen); any other clone copies them. Adapters are cloned too unless
 * ALIGN_CLONE_NO_ADAPTERS. Models may be freed in any order: shared
 * weights go with the last model holding them. */
ALIGN_API int align_model_clone(align_model **out, const align_model *m, uint32_t flags);
ALIGN_API void align_model_free(align_model *m);
/* Message of the last failed call on m; never NULL. On a frozen model (which
 * threads may share) it is the calling thread's align_last_errmsg(). */
ALIGN_API const char *align_model_errmsg(const align_model *m);
/* Fills *out (struct_size set by the caller) with the configuration. */
ALIGN_API int align_model_config(const align_model *m, align_model_params *out);
/* Parameters, counting the tied LM head once. */
ALIGN_API int64_t align_model_num_params(const align_model *m);

/* Forward over n_seq sequences of tokens [n_seq][max_len], each with its
 * own length (1..max_len); positions past a length are ignored, attended
 * by nothing and given 0 outputs. Outputs (each may be NULL):
 *   token_logprobs [n_seq][max_len-1]: log p(tokens[t+1] | tokens[..t]);
 *   scalar         [n_seq][max_len]:   scalar head at each position;
 *   logits         [n_seq][max_len][vocab_size].
 * On a trainable model the activations are kept for align_model_backward. */
ALIGN_API int align_model_forward(align_model *m, const int32_t *tokens,
                                  const int32_t *lengths, int32_t n_seq, int32_t max_len,
                                  float *token_logprobs, float *scalar, float *logits);
/* Backward from the last forward: d_token_logprobs [n_seq][max_len-1] and
 * d_scalar [n_seq][max_len] (either may be NULL = zero). Gradients are
 * added to the model's gradient buffers (they accumulate until
 * align_optimizer_step or align_model_zero_grad). */
ALIGN_API int align_model_backward(align_model *m, const float *d_token_logprobs,
                                   const float *d_scalar);
ALIGN_API int align_model_zero_grad(align_model *m);

/* ---- LoRA adapters (docs/lora.md) -----------------------------------------
 * Low-rank adapters (Hu et al. 2021) on chosen linear layers: each adds
 * (alpha/r) * (x A^T) B^T with A [r][in], B [out][r] (PEFT's lora_A / lora_B).
 * While adapters are attached, only they train: the base weights are frozen
 * and hold no gradient, and an optimizer created afterwards keeps moments
 * for the adapters alone. A frozen clone with ALIGN_CLONE_NO_ADAPTERS is the
 * base without adapters and shares the base weights (no copy): the
 * reference model of DPO / PPO / GRPO at no extra weight memory. */
typedef struct align_lora_params {
    uint32_t    struct_size;
    uint32_t    flags;        /* none yet: 0 */
    int32_t     r;            /* rank (default 8) */
    float       alpha;        /* scaling alpha / r (default 16) */
    float       dropout;      /* must be 0 (dropout on the adapter input is not implemented) */
    const char *targets;      /* comma list of module names; NULL (default): the architecture's
                                 default as PEFT's (GPT-2 "c_attn", Llama "q_proj,v_proj"). GPT-2: c_attn, c_proj
                                 (both), attn.c_proj, mlp.c_proj, c_fc, all-linear; aliases o, up, down.
                                 q / k / v are refused on GPT-2 (fused into c_attn). Llama: q_proj,
                                 k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, all-linear;
                                 aliases q, k, v, o, gate, up, down. Copied. */
    uint64_t    seed;         /* A's initialisation (Kaiming-uniform as PEFT); B starts at 0 */
    const char *base_model_name_or_path; /* recorded in adapter_config.json (NULL: ""). Copied. */
} align_lora_params;

ALIGN_API int align_lora_default_params(align_lora_params *out, size_t struct_size);
#define ALIGN_LORA_DEFAULT_PARAMS(p) align_lora_default_params((p), sizeof *(p))
/* Attaches fresh adapters (the model's outputs do not change until they
 * train). ALIGN_EMISUSE if m already has adapters. On a trainable model the
 * base gradients are released: create the optimizer after attaching. */
ALIGN_API int align_model_lora_attach(align_model *m, const align_lora_params *p);
/* Switches the adapters on (1, the default) or off (0: the base model). */
ALIGN_API int align_model_lora_enable(align_model *m, int32_t on);
/* Adapter parameters (0 without adapters). */
ALIGN_API int64_t align_model_lora_num_params(const align_model *m);
/* Writes the adapters in PEFT's layout: dir/adapter_model.safetensors and
 * dir/adapter_config.json (the folder is created if missing), loadable by
 * peft.PeftModel.from_pretrained on the Hugging Face base model. */
ALIGN_API int align_model_lora_save(const align_model *m, const char *dir);
/* Reads a PEFT LoRA folder (as align_model_lora_save writes, or PEFT's
 * save_pretrained with bias "none" and no modules_to_save): attaches the
 * adapters, or overwrites m's own if their rank and targets match. Every
 * tensor is checked first; on failure m is unchanged. */
ALIGN_API int align_model_lora_load(align_model *m, const char *dir);
/* Folds (alpha/r) B A into the base weights and removes the adapters: m is
 * a plain model again (a trainable one gets its base gradients back; the
 * optimizer must be created anew). Models sharing the base keep theirs. */
ALIGN_API int align_model_lora_merge(align_model *m);

/* ======================================================================== */
/* optimizer: AdamW, schedule, clipping                                     */
/* ======================================================================== */

enum { ALIGN_SCHEDULE_CONSTANT = 0, ALIGN_SCHEDULE_LINEAR = 1, ALIGN_SCHEDULE_COSINE = 2 };

typedef struct align_optimizer_params {
    uint32_t struct_size;
    uint32_t flags;
    float    learning_rate;  /* peak (default 1e-4) */
    float    beta1, beta2;   /* 0.9, 0.999 */
    float    eps;            /* 1e-8 */
    float    weight_decay;   /* 0.0; applied to matrices only */
    float    max_grad_norm;  /* global-norm clip; <= 0 disables (default 1.0) */
    int32_t  schedule;       /* ALIGN_SCHEDULE_* (default constant) */
    int32_t  warmup_steps;   /* linear warmup from 0 (default 0) */
    int32_t  total_steps;    /* for linear/cosine decay (default 1000) */
    float    min_lr_ratio;   /* decay floor as a fraction of peak (default 0.0) */
} align_optimizer_params;

ALIGN_API int align_optimizer_default_params(align_optimizer_params *out, size_t struct_size);
#define ALIGN_OPTIMIZER_DEFAULT_PARAMS(p) align_optimizer_default_params((p), sizeof *(p))

/* m is borrowed and must be trainable (not ALIGN_FROZEN). */
ALIGN_API int align_optimizer_create(align_optimizer **out, align_model *m,
                                     const align_optimizer_params *p);
ALIGN_API void align_optimizer_free(align_optimizer *o);
ALIGN_API const char *align_optimizer_errmsg(const align_optimizer *o);
/* Clips, applies one AdamW update and zeroes the gradients. If a gradient is
 * not finite the update is skipped, gradients are zeroed, and
 * ALIGN_ENONFINITE is returned (weights unchanged). grad_norm_out may be NULL. */
ALIGN_API int align_optimizer_step(align_optimizer *o, float *grad_norm_out);
/* Learning rate the next step will use. */
ALIGN_API float align_optimizer_lr(const align_optimizer *o);
/* Updates applied so far. */
ALIGN_API int64_t align_optimizer_steps_done(const align_optimizer *o);
/* Moments and step counter, as safetensors (atomic write). The load checks
 * the whole file first and refuses (ALIGN_EFORMAT, message naming the tensor
 * or field, optimizer unchanged) state saved for other trainable tensors
 * (size, LoRA adapters or not, names and shapes), a bad step, non-finite
 * moments, a negative exp_avg_sq, or moments no AdamW run produces
 * (docs/reliability.md). */
ALIGN_API int align_optimizer_save(const align_optimizer *o, const char *path);
ALIGN_API int align_optimizer_load(align_optimizer *o, const char *path);

/* ======================================================================== */
/* tokenizer                                                                */
/* ======================================================================== */

/* path: a Hugging Face tokenizer.json (BPE: byte-level as GPT-2, Llama-3,
 * Qwen2, SmolLM2, or SentencePiece-style with byte fallback as Llama-2,
 * TinyLlama; unsupported features are refused, docs/tokenizer.md), or a
 * folder holding it or GPT-2's encoder.json and vocab.bpe. A
 * tokenizer_config.json beside tokenizer.json names the end-of-text token
 * (eos_token). */
ALIGN_API int align_tokenizer_load(align_tokenizer **out, const char *path);
ALIGN_API int align_tokenizer_load_gpt2(align_tokenizer **out, const char *encoder_json,
                                        const char *vocab_bpe);
/* 256 byte symbols plus end-of-text (id 256): vocabulary 257. */
ALIGN_API int align_tokenizer_bytes(align_tokenizer **out);
ALIGN_API void align_tokenizer_free(align_tokenizer *t);
ALIGN_API int32_t align_tokenizer_vocab_size(const align_tokenizer *t);
/* End-of-text id (GPT-2's <|endoftext|>, 50256; else tokenizer_config.json's
 * eos_token, else <|endoftext|>, </s> or <|end_of_text|>; -1 if none), also
 * the end-of-turn token. */
ALIGN_API int32_t align_tokenizer_eot(const align_tokenizer *t);

/* align_tokenize flags */
#define ALIGN_TOKENIZE_SPECIAL 0x1u   /* recognise special tokens in text */

/* Encodes text[0..len). Writes at most cap ids; *n_out receives the number
 * of ids the full encoding has. If that exceeds cap, returns ALIGN_ERANGE
 * (ids holds the first cap). ids may be NULL when cap == 0. Thread-safe on
 * a shared tokenizer; details of failures via align_last_errmsg(). */
ALIGN_API int align_tokenize(const align_tokenizer *t, const char *text, size_t len,
                             uint32_t flags, int32_t *ids, size_t cap, size_t *n_out);
/* Decodes ids into buf (cap bytes, NUL-terminated when it fits). *len_out
 * receives the byte length without NUL; ALIGN_ERANGE if cap <= that. */
ALIGN_API int align_detokenize(const align_tokenizer *t, const int32_t *ids, size_t n,
                               char *buf, size_t cap, size_t *len_out);

/* ======================================================================== */
/* dataset: one record type per kind of feedback                            */
/* ======================================================================== */

enum {
    ALIGN_RECORD_DEMO = 0,      /* prompt, completion */
    ALIGN_RECORD_CHAT = 1,      /* messages with roles */
    ALIGN_RECORD_RANKING = 2,   /* prompt, K responses, rank (pairs are K = 2) */
    ALIGN_RECORD_LABEL = 3,     /* prompt, response, good/bad */
    ALIGN_RECORD_SCORE = 4,     /* prompt, response, scalar */
    ALIGN_RECORD_PROMPT = 5     /* bare prompt */
};

enum { ALIGN_SOURCE_UNKNOWN = 0, ALIGN_SOURCE_HUMAN = 1, ALIGN_SOURCE_AI = 2,
       ALIGN_SOURCE_PROGRAM = 3 };

typedef struct align_provenance {
    uint32_t    struct_size;
    int32_t     source;      /* ALIGN_SOURCE_* */
    const char *annotator;   /* copied; may be NULL */
    int64_t     timestamp;   /* seconds since the epoch; 0 = unknown */
} align_provenance;

ALIGN_API int align_provenance_default(align_provenance *out, size_t struct_size);

ALIGN_API int align_dataset_create(align_dataset **out);
ALIGN_API void align_dataset_free(align_dataset *d);
ALIGN_API const char *align_dataset_errmsg(const align_dataset *d);
ALIGN_API int64_t align_dataset_size(const align_dataset *d);

/* align_dataset_load_jsonl flags */
#define ALIGN_LENIENT 0x1u   /* skip bad lines (counted), instead of stopping */

/* Appends the records of a JSONL file. On a bad line returns ALIGN_EFORMAT
 * with "path:line: what is wrong"; records before it stay loaded. With
 * ALIGN_LENIENT bad lines are skipped and counted (align_dataset_skipped). */
ALIGN_API int align_dataset_load_jsonl(align_dataset *d, const char *path, uint32_t flags);
ALIGN_API int64_t align_dataset_skipped(const align_dataset *d);
/* Writes every record (with provenance) as JSONL, atomically. */
ALIGN_API int align_dataset_save_jsonl(const align_dataset *d, const char *path);

/* All strings are copied; pv may be NULL (unknown provenance). */
ALIGN_API int align_dataset_add_demo(align_dataset *d, const char *prompt,
                                     const char *completion, const align_provenance *pv);
ALIGN_API int align_dataset_add_chat(align_dataset *d, const char *const *roles,
                                     const char *const *contents, int32_t n_messages,
                                     const align_provenance *pv);
/* rank[i] is the place of responses[i]: 0 = best; equal values are ties. */
ALIGN_API int align_dataset_add_ranking(align_dataset *d, const char *prompt,
                                        const char *const *responses, const int32_t *rank,
                                        int32_t k, const align_provenance *pv);
ALIGN_API int align_dataset_add_preference(align_dataset *d, const char *prompt,
                                           const char *chosen, const char *rejected,
                                           const align_provenance *pv);
ALIGN_API int align_dataset_add_label(align_dataset *d, const char *prompt,
                                      const char *response, int32_t good,
                                      const align_provenance *pv);
ALIGN_API int align_dataset_add_score(align_dataset *d, const char *prompt,
                                      const char *response, float score,
                                      const align_provenance *pv);
ALIGN_API int align_dataset_add_prompt(align_dataset *d, const char *prompt,
                                       const align_provenance *pv);

/* Kind of record i (ALIGN_RECORD_*), or ALIGN_EINVAL if out of range. */
ALIGN_API int align_dataset_record_kind(const align_dataset *d, int64_t i);
/* Record i as one JSON object (the JSONL form); *json_out is freed with
 * align_free(). */
ALIGN_API int align_dataset_record_json(const align_dataset *d, int64_t i, char **json_out);

/* A pull source: the callback adds records with the sink — bare prompts
 * with align_text_sink_add, records of any kind with align_dataset_add_* on
 * align_text_sink_dataset(sink) (declared below). */
typedef struct align_text_sink align_text_sink;
ALIGN_API int align_text_sink_add(align_text_sink *sink, const char *text, size_t len);
/* Called when a trainer has used every record it holds; return 0 after
 * adding some, ALIGN_DONE when there are no more (for now), < 0 on error. */
typedef int (*align_prompt_fn)(align_text_sink *sink, void *user_data);
ALIGN_API int align_dataset_set_source(align_dataset *d, align_prompt_fn fn, void *user_data);
/* Calls the source until at least min_new records (of any kind) were added.
 * ALIGN_OK when they arrived; ALIGN_DONE when the source has no more (what it
 * added stays) or no source is set; ALIGN_ECALLBACK when the callback failed
 * or returned 0 without adding. Trainers call this themselves when they run
 * out (SFT at the end of its data, docs/datasets.md); hosts may call it to
 * prefetch. */
ALIGN_API int align_dataset_pull(align_dataset *d, int64_t min_new);

/* ======================================================================== */
/* generation                                                               */
/* ======================================================================== */

enum { ALIGN_FINISH_LENGTH = 0, ALIGN_FINISH_EOT = 1, ALIGN_FINISH_STOP = 2 };

/* align_generate_params.flags */
#define ALIGN_GENERATE_IGNORE_EOT 0x1u  /* end-of-text does not end a sequence
                                           (fixed-length rollouts, benchmarks) */

typedef struct align_generate_params {
    uint32_t struct_size;
    uint32_t flags;
    int32_t  max_new_tokens;   /* default 64 */
    float    temperature;      /* 0 = greedy (default 1.0) */
    int32_t  top_k;            /* 0 = off */
    float    top_p;            /* 1.0 = off */
    uint64_t seed;             /* default 1234 */
    const char *const *stop;   /* stop strings (copied); may be NULL */
    int32_t  n_stop;
} align_generate_params;

ALIGN_API int align_generate_default_params(align_generate_params *out, size_t struct_size);
#define ALIGN_GENERATE_DEFAULT_PARAMS(p) align_generate_default_params((p), sizeof *(p))

/* Samples continuations of n prompts in one batch with a KV cache. m and t
 * are borrowed; the result is owned by the caller (align_generation_free). */
ALIGN_API int align_generate(align_model *m, const align_tokenizer *t,
                             const char *const *prompts, int32_t n,
                             const align_generate_params *p, align_generation **out);
ALIGN_API void align_generation_free(align_generation *g);
ALIGN_API int32_t align_generation_count(const align_generation *g);
/* Generated text of i (without the prompt); NUL-terminated, borrowed. */
ALIGN_API const char *align_generation_text(const align_generation *g, int32_t i, size_t *len_out);
/* Generated token ids of i and their log-probabilities under the sampling
 * distribution's model (temperature 1, before top-k/top-p); borrowed. */
ALIGN_API const int32_t *align_generation_tokens(const align_generation *g, int32_t i,
                                                 int32_t *n_out);
ALIGN_API const float *align_generation_logprobs(const align_generation *g, int32_t i,
                                                 int32_t *n_out);
ALIGN_API int align_generation_finish_reason(const align_generation *g, int32_t i);

/* ======================================================================== */
/* trainers                                                                 */
/* ======================================================================== */

enum { ALIGN_ALGO_SFT = 0 };

/* One optimiser step's statistics. The library fills the prefix the caller
 * declares in struct_size. Fields an algorithm does not use are 0. */
struct align_step_stats {
    uint32_t struct_size;
    int32_t  algorithm;        /* ALIGN_ALGO_* */
    int64_t  step;             /* optimiser steps done, after this one */
    int64_t  epoch;            /* passes over the data started */
    int64_t  tokens;           /* tokens in the loss this step */
    int64_t  sequences;        /* sequences processed this step */
    float    loss;             /* mean loss over loss tokens */
    float    accuracy;         /* next-token accuracy on loss tokens */
    float    learning_rate;    /* rate used for this step */
    float    grad_norm;        /* before clipping */
    float    tokens_per_sec;   /* all tokens processed / wall time */
    float    time_forward_ms;
    float    time_backward_ms;
    float    time_optimizer_ms;
    uint32_t skipped;          /* 1 if the update was skipped (non-finite) */
    float    progress;         /* fraction of the planned steps, 0..1 */
    /* append new members here */
};

ALIGN_API int align_step_stats_init(align_step_stats *out, size_t struct_size);

/* align_sft_params.flags */
#define ALIGN_SFT_FULL_SEQUENCE_LOSS 0x1u  /* loss on prompt tokens too */
#define ALIGN_SFT_PACK               0x2u  /* pack several examples per row */

enum { ALIGN_TRUNCATE_RIGHT = 0, ALIGN_TRUNCATE_LEFT = 1, ALIGN_TRUNCATE_DROP = 2 };

typedef struct align_sft_params {
    uint32_t struct_size;
    uint32_t flags;           /* ALIGN_SFT_* */
    int32_t  micro_batch;     /* sequences per forward/backward (default 8) */
    int32_t  grad_accum;      /* micro-batches per optimiser step (default 1) */
    int32_t  max_seq_len;     /* tokens per row (default: model's max) */
    int32_t  truncation;      /* ALIGN_TRUNCATE_* for too long examples */
    int32_t  max_steps;       /* ALIGN_DONE after this many steps; 0 = by epochs */
    int32_t  epochs;          /* passes over the data when max_steps == 0 (default 1) */
    uint64_t seed;            /* shuffling seed (default 1234) */
    /* Chat template pieces (copied; NULL = default, docs/datasets.md):
     * "<|system|>\n", "<|user|>\n", "<|assistant|>\n"; each turn ends with
     * the end-of-turn token. Demos are prompt + completion + end-of-turn. */
    const char *system_prefix;
    const char *user_prefix;
    const char *assistant_prefix;
    /* Called once per step when its gradients are ready, before the update
     * is applied (stats: loss, accuracy, grad_norm, learning_rate, ...).
     * Returning < 0 discards this step's update: the step fails with
     * ALIGN_ECALLBACK and the model and optimizer stay as they were. May be NULL. */
    align_step_fn on_step;
    void    *on_step_user_data;
} align_sft_params;

ALIGN_API int align_sft_default_params(align_sft_params *out, size_t struct_size);
#define ALIGN_SFT_DEFAULT_PARAMS(p) align_sft_default_params((p), sizeof *(p))

/* policy, t, data and opt are borrowed and must outlive the trainer.
 * opt may be NULL for an evaluation-only trainer (align_trainer_evaluate;
 * step, save and resume then return ALIGN_EMISUSE); policy may then be a
 * frozen clone. */
ALIGN_API int align_trainer_create_sft(align_trainer **out, align_model *policy,
                                       const align_tokenizer *t, align_dataset *data,
                                       align_optimizer *opt, const align_sft_params *p);
/* Runs one optimiser step. ALIGN_OK, or ALIGN_DONE when the planned steps or
 * epochs are over (no update made). On error the model and optimizer are as
 * before the step. stats may be NULL. */
ALIGN_API int align_trainer_step(align_trainer *tr, align_step_stats *stats);
/* Loss and accuracy over all of eval (no update). */
ALIGN_API int align_trainer_evaluate(align_trainer *tr, align_dataset *eval,
                                     align_step_stats *stats);
/* The whole state (every trained model and its optimizer, data position,
 * RNG, counters, the algorithm's buffers) into the folder dir (parents
 * created), which is replaced as a whole and atomically: after a crash or a
 * full disk dir holds the previous or the new checkpoint, never a mix. dir
 * must be new or hold only a checkpoint (ALIGN_EINVAL otherwise). */
ALIGN_API int align_trainer_save(const align_trainer *tr, const char *dir);
/* Restores what align_trainer_save wrote, for a trainer built the same way.
 * Everything is checked before anything is applied: on failure the trainer,
 * its models and optimizers are unchanged. */
ALIGN_API int align_trainer_resume(align_trainer *tr, const char *dir);
/* Asks the current or next step to stop between micro-batches
 * (ALIGN_ECANCELED, nothing applied). Safe from any thread and from signal
 * handlers. */
ALIGN_API int align_trainer_request_stop(align_trainer *tr);
ALIGN_API void align_trainer_free(align_trainer *tr);
ALIGN_API const char *align_trainer_errmsg(const align_trainer *tr);

/* ======================================================================== */
/* data-parallel training (docs/distributed.md)                             */
/* ======================================================================== */
/* A communicator the host implements (or align_dist_mpi_create in
 * align_mpi.h, a separate library, so libalign itself never links MPI).
 * One process per rank; every rank builds the same trainer from the same
 * data and calls the same functions in the same order. Every callback is
 * collective, returns 0 or a negative ALIGN_E* code, and must return (an
 * error, e.g. ALIGN_EIO) rather than wait forever when a peer is gone.
 *   allreduce_sum_f32: buf[0..n) := the sum over ranks, IDENTICAL bits on
 *       every rank and the same bits for the same inputs (a fixed
 *       summation order for a given size).
 *   broadcast: bytes from root's buf into every other rank's buf.
 *   allgather: recv[r*bytes .. (r+1)*bytes) := rank r's send (bytes each).
 *   errmsg: optional (NULL): writes the detail of the last failure into
 *       buf (cap bytes, NUL-terminated); returns 0. */
typedef int (*align_dist_allreduce_fn)(void *user_data, float *buf, size_t n);
typedef int (*align_dist_broadcast_fn)(void *user_data, void *buf, size_t bytes, int32_t root);
typedef int (*align_dist_allgather_fn)(void *user_data, const void *send, void *recv, size_t bytes);
typedef int (*align_dist_errmsg_fn)(void *user_data, char *buf, size_t cap);
typedef struct align_dist {
    uint32_t struct_size;
    int32_t  rank;              /* this process, 0..size-1 */
    int32_t  size;              /* number of processes (1 = not distributed) */
    uint32_t flags;             /* reserved, 0 */
    void    *user_data;         /* passed to every callback */
    align_dist_allreduce_fn allreduce_sum_f32;
    align_dist_broadcast_fn broadcast;
    align_dist_allgather_fn allgather;
    align_dist_errmsg_fn    errmsg;    /* may be NULL */
    /* append new members here */
} align_dist;

/* *d := one rank of one (rank 0, size 1, no callbacks), struct_size set.
 * A host then fills rank, size, user_data and the callbacks. */
ALIGN_API int align_dist_init(align_dist *d, size_t struct_size);

/* Makes tr data parallel over d (copied; d->user_data must outlive the
 * trainer). Collective: every rank calls it before its first step; the
 * weights of every trainable role are broadcast from rank 0, so all ranks
 * start identical. Then each rank runs its share of every global batch
 * (the batch the params describe, whatever the number of ranks), the
 * gradients are summed over ranks before the norm, the clipping, the
 * non-finite guard and the optimizer step (the same on every rank), and
 * the step's loss metrics are global. An error or a stop on one rank
 * makes the step fail on every rank (nothing applied anywhere).
 * align_trainer_save writes on rank 0 only (the others wait for its
 * result); align_trainer_resume reads on every rank. d == NULL or
 * d->size == 1: local training again. ALIGN_EMISUSE after the first step. */
ALIGN_API int align_trainer_set_dist(align_trainer *tr, const align_dist *d);

/* ======================================================================== */
/* introspection for tools (alignctl info, the BLAS re-run)                 */
/* ======================================================================== */

/* Number of weight tensors of the model (the safetensors entries it saves). */
ALIGN_API int32_t align_model_num_tensors(const align_model *m);
/* Tensor i in [0, align_model_num_tensors): its Hugging Face GPT-2 name
 * (borrowed, valid while m lives), rank (1 or 2) and shape (shape_out[1] is 0
 * for rank 1); the data type is always F32. Any out pointer may be NULL.
 * ALIGN_ERANGE for a bad index. */
ALIGN_API int align_model_tensor(const align_model *m, int32_t i, const char **name_out,
                                 int32_t *ndim_out, int64_t shape_out[2]);
/* 1 when the BLAS in use runs slow fallback kernels for this CPU (OpenBLAS
 * picked e.g. its SSE3 "Prescott" kernels on an AVX-512 CPU), else 0. Then
 * *remedy_out (may be NULL) names the OPENBLAS_CORETYPE value with the fast
 * kernels ("SkylakeX", "Haswell"); NULL otherwise. Only tells: OpenBLAS reads
 * that variable when it loads, so it must be set before the program starts
 * (a tool may set it and re-execute itself). */
ALIGN_API int align_blas_slow_kernel(const char **remedy_out);

/* ======================================================================== */
/* chat template: one formatting for training and prompting                 */
/* ======================================================================== */

/* align_generate_params.flags (continued) */
#define ALIGN_GENERATE_SPECIAL 0x2u     /* text prompts may contain special tokens
                                           ("<|endoftext|>" becomes end-of-text) */

/* align_chat_tokenize flags */
#define ALIGN_CHAT_GENERATION_PROMPT 0x1u  /* end with the assistant prefix: the
                                              prompt for the assistant's turn */

/* How conversations become tokens (docs/datasets.md, "Chat template"): each
 * message is <role prefix><content><end-of-turn>, the end-of-turn token being
 * the tokenizer's end-of-text; roles other than system/user/assistant are
 * written "<|role|>\n". The defaults are those of align_sft_params, so a model
 * trained by SFT with default prefixes is prompted as it was trained.
 * Contents are never scanned for special tokens; prefixes are, so that they
 * can hold a model's header tokens (docs/chat-templates.md). */
typedef struct align_chat_template {
    uint32_t struct_size;
    uint32_t flags;                /* none defined yet: must be 0 */
    const char *system_prefix;     /* NULL = "<|system|>\n" */
    const char *user_prefix;       /* NULL = "<|user|>\n" */
    const char *assistant_prefix;  /* NULL = "<|assistant|>\n" */
    /* append new members here */
} align_chat_template;

ALIGN_API int align_chat_template_default_params(align_chat_template *out, size_t struct_size);
#define ALIGN_CHAT_TEMPLATE_DEFAULT_PARAMS(p) align_chat_template_default_params((p), sizeof *(p))

/* Tokenizes one conversation of n_messages (roles[i], contents[i]) exactly as
 * SFT trains on it; with ALIGN_CHAT_GENERATION_PROMPT it ends with the
 * assistant prefix. tmpl may be NULL (defaults). Writes at most cap ids and,
 * if mask is not NULL, mask[i] = 1 where ids[i] is a completion token (an
 * assistant content or its end-of-turn: what SFT puts in the loss). *n_out
 * receives the full count; ALIGN_ERANGE if it exceeds cap (ids and mask
 * hold the first cap). ids and mask may be NULL when cap == 0. Thread-safe
 * on a shared tokenizer; details via align_last_errmsg(). */
ALIGN_API int align_chat_tokenize(const align_tokenizer *t, const align_chat_template *tmpl,
                                  const char *const *roles, const char *const *contents,
                                  int32_t n_messages, uint32_t flags, int32_t *ids,
                                  uint8_t *mask, size_t cap, size_t *n_out);

/* Like align_generate, from prompts given as token ids: prompt i is
 * lengths[i] ids of tokens, the prompts one after another (prompt i starts
 * at lengths[0] + ... + lengths[i-1]). Ids must be below the tokenizer's
 * vocabulary size. A prompt of length 0 starts from end-of-text. */
ALIGN_API int align_generate_tokens(align_model *m, const align_tokenizer *t,
                                    const int32_t *tokens, const int32_t *lengths, int32_t n,
                                    const align_generate_params *p, align_generation **out);

/* Generates the assistant's reply to n conversations: conversation i has
 * n_messages[i] (>= 1) messages, and roles/contents list the messages of all
 * conversations one after another. Each is rendered with the template and
 * the generation prompt (align_chat_tokenize with
 * ALIGN_CHAT_GENERATION_PROMPT); the reply ends at the end-of-turn token
 * (ALIGN_FINISH_EOT). tmpl may be NULL (defaults). */
ALIGN_API int align_generate_chat(align_model *m, const align_tokenizer *t,
                                  const align_chat_template *tmpl, const char *const *roles,
                                  const char *const *contents, const int32_t *n_messages,
                                  int32_t n, const align_generate_params *p,
                                  align_generation **out);

/* ======================================================================== */
/* reward models: one scorer handle, Hugging Face layouts (docs/reward.md)  */
/* ======================================================================== */

/* align_model_save_ex flags */
#define ALIGN_SAVE_HF_SEQUENCE_CLASSIFICATION 0x1u /* transformers' GPT2ForSequenceClassification
                                                      layout: body under "transformer.", score.weight
                                                      [1][n_embd] without bias (needs a scalar head) */
#define ALIGN_SAVE_BF16 0x2u /* weights as bfloat16 (rounded to nearest even), half the size;
                                 default float32. Loading reads F32, BF16 and F16. */

/* align_model_save with options. path may name a folder (an existing one, or
 * a path ending in '/', created): model.safetensors and a Hugging Face
 * config.json are written in it. The head's bias, which the HF layout lacks,
 * and the reward normalisation are kept in the file's metadata. */
ALIGN_API int align_model_save_ex(const align_model *m, const char *path, uint32_t flags);

typedef struct align_reward_model align_reward_model;

/* Scores n (prompt, response) pairs: scores[i] for (prompts[i], responses[i]).
 * Returns 0, or < 0 to abort: the call fails with ALIGN_ECALLBACK. */
typedef int (*align_score_fn)(const char *const *prompts, const char *const *responses,
                              int32_t n, float *scores, void *user_data);

/* align_reward_params.flags */
#define ALIGN_REWARD_CHAT 0x1u   /* build <user_prefix>prompt<eot><assistant_prefix>response<eot>
                                    (a two-turn chat) instead of a demonstration's
                                    prompt response <eot> */

typedef struct align_reward_params {
    uint32_t struct_size;
    uint32_t flags;            /* ALIGN_REWARD_* */
    int32_t  max_seq_len;      /* tokens per sequence; 0 = the model's max_seq_len */
    int32_t  batch_size;       /* sequences per forward pass (default 16) */
    int32_t  truncation;       /* ALIGN_TRUNCATE_*: default LEFT (keeps the response's end,
                                  where the score is read); DROP fails with ALIGN_ERANGE */
    const char *user_prefix;       /* ALIGN_REWARD_CHAT only; NULL = "<|user|>\n" (copied) */
    const char *assistant_prefix;  /* ALIGN_REWARD_CHAT only; NULL = "<|assistant|>\n" (copied) */
} align_reward_params;

ALIGN_API int align_reward_default_params(align_reward_params *out, size_t struct_size);
#define ALIGN_REWARD_DEFAULT_PARAMS(p) align_reward_default_params((p), sizeof *(p))

/* A scorer over a model with a scalar head (ALIGN_EINVAL without one) and its
 * tokenizer, both borrowed (they must outlive the handle). p may be NULL. */
ALIGN_API int align_reward_model_from_model(align_reward_model **out, align_model *m,
                                            const align_tokenizer *t, const align_reward_params *p);
/* A scorer over a host callback (fn is called with batches of pairs). */
ALIGN_API int align_reward_model_from_callback(align_reward_model **out, align_score_fn fn,
                                               void *user_data);
ALIGN_API void align_reward_model_free(align_reward_model *rm);
ALIGN_API const char *align_reward_model_errmsg(const align_reward_model *rm);

/* scores[i] = scale * r(prompts[i], responses[i]) + bias, for n >= 0 pairs.
 * A model reads its scalar head at each sequence's last token (the final
 * end-of-turn). A callback's non-finite score fails with ALIGN_ENONFINITE,
 * its error with ALIGN_ECALLBACK; scores is then unspecified. */
ALIGN_API int align_reward_model_score(align_reward_model *rm, const char *const *prompts,
                                       const char *const *responses, int32_t n, float *scores);

/* align_reward_model_normalize flags */
#define ALIGN_REWARD_NORMALIZE_STD 0x1u  /* also scale to unit standard deviation */

/* Sets the bias (and with ALIGN_REWARD_NORMALIZE_STD the scale) so that these
 * n reference pairs (e.g. the demonstrations) score 0 on average (and 1 in
 * standard deviation), as InstructGPT did. A model-backed scorer stores the
 * normalisation in the model: align_model_save keeps it. */
ALIGN_API int align_reward_model_normalize(align_reward_model *rm, const char *const *prompts,
                                           const char *const *responses, int32_t n, uint32_t flags);
ALIGN_API int align_reward_model_set_normalization(align_reward_model *rm, float bias, float scale);
ALIGN_API int align_reward_model_get_normalization(const align_reward_model *rm, float *bias,
                                                   float *scale);

/* ======================================================================== */
/* trainer metrics and host data sources (0.2)                              */
/* ======================================================================== */

/* align_trainer_metrics `which` */
enum { ALIGN_METRICS_STEP = 0, ALIGN_METRICS_EVAL = 1 };

/* The named metrics of the last step that returned ALIGN_OK (which =
 * ALIGN_METRICS_STEP; inside on_step: the step being decided) or of the last
 * align_trainer_evaluate (ALIGN_METRICS_EVAL), as n (name, value) pairs:
 * "loss", "accuracy", "tokens", "sequences", "learning_rate", "grad_norm",
 * "tokens_per_sec", "epoch", and per algorithm e.g. "rewards/chosen",
 * "objective/kl" (docs/trainer.md lists them). *names and *values are
 * borrowed until the next step, evaluate, resume or free of tr; n is 0
 * before the first. */
ALIGN_API int align_trainer_metrics(const align_trainer *tr, int32_t which,
                                    const char *const **names, const double **values,
                                    int32_t *n);
/* One metric by name; ALIGN_ENOENT if the last step/evaluation has none. */
ALIGN_API int align_trainer_metric(const align_trainer *tr, int32_t which,
                                   const char *name, double *value);

/* align_sft_params.flags: visit the examples in dataset order every epoch
 * (no shuffling), e.g. for data streamed from a source. */
#define ALIGN_SFT_SEQUENTIAL 0x4u

/* Inside a source callback (align_dataset_set_source): the dataset being
 * fed, so the callback can add records of any kind, with provenance, through
 * align_dataset_add_demo/_chat/_ranking/_preference/_label/_score/_prompt.
 * NULL outside the callback. */
ALIGN_API align_dataset *align_text_sink_dataset(align_text_sink *sink);
/* collection of rankings, and judge models (RL from AI feedback)           */
/* (docs/judge.md, docs/cli/collect.md)                                     */
/* ======================================================================== */

/* A ranker: rank_out[i] = place of responses[i], 0 = best, equal places are
 * ties. Places must lie in 0..k-1; gaps are allowed and closed up (the
 * competition ranking [0, 2, 2, 3] is stored as [0, 1, 1, 2]). Return 0, or
 * < 0 to abort: the call fails with ALIGN_ECALLBACK. The arguments live only
 * for the call. */
typedef int (*align_rank_fn)(const char *prompt, const char *const *responses, int32_t k,
                             int32_t *rank_out, void *user_data);

/* Progress of align_collect: prompts done so far out of total. Return 0 to
 * continue, < 0 to stop (ALIGN_ECALLBACK; what was collected stays). */
typedef int (*align_collect_progress_fn)(int64_t done, int64_t total, void *user_data);

/* align_collect_params.flags */
#define ALIGN_COLLECT_CHAT 0x1u   /* prompt a chat policy: each prompt is a user
                                     turn rendered with chat_template and the
                                     generation prompt (align_generate_chat);
                                     without it the prompt text is continued as
                                     is (a policy trained by SFT on demos) */

typedef struct align_collect_params {
    uint32_t struct_size;
    uint32_t flags;                 /* ALIGN_COLLECT_* */
    int32_t  k;                     /* responses sampled per prompt, >= 2 (default 4) */
    int32_t  source;                /* ALIGN_SOURCE_* of the records (default UNKNOWN;
                                       align_collect_judge: always AI) */
    const char *annotator;          /* copied into each record; may be NULL
                                       (align_collect_judge: the judge's name) */
    int64_t  timestamp;             /* provenance time; 0 = when each ranking arrives */
    const align_generate_params *generate;  /* sampling (NULL = defaults); the K
                                       responses of prompt i are drawn with seed
                                       generate->seed mixed with i, so a prompt's
                                       samples depend on the seed and i only */
    int64_t  first;                 /* first record of prompts to use (default 0) */
    int64_t  count;                 /* records to use from first; 0 = to the end */
    align_collect_progress_fn progress;   /* after each prompt; may be NULL */
    void    *progress_user_data;
    const align_chat_template *chat_template;  /* ALIGN_COLLECT_CHAT; NULL = defaults */
    /* append new members here */
} align_collect_params;

ALIGN_API int align_collect_default_params(align_collect_params *out, size_t struct_size);
#define ALIGN_COLLECT_DEFAULT_PARAMS(p) align_collect_default_params((p), sizeof *(p))

/* Step 2 of the RLHF pipeline in one call: for each record of prompts that
 * has a prompt (every kind but chat), samples p->k responses from policy,
 * asks rank for their ranking and appends a ranking record (prompt, the K
 * responses, the places, provenance) to out. prompts and out may not be the
 * same dataset. Every record is checked for a prompt before anything is
 * sampled. A ranker's failure or invalid places stop the call (ALIGN_ECALLBACK
 * or ALIGN_EINVAL, detail in align_last_errmsg()); the records of the prompts finished
 * before stay in out, nothing of the failing prompt is added. policy, t,
 * prompts and out are borrowed for the call. Deterministic for a seed and
 * thread count when the ranker is. */
ALIGN_API int align_collect(align_model *policy, const align_tokenizer *t, align_dataset *prompts,
                            align_dataset *out, align_rank_fn rank, void *user_data,
                            const align_collect_params *p);

typedef struct align_judge align_judge;

/* align_judge_params.flags */
#define ALIGN_JUDGE_ANSWER_EOT 0x1u  /* each answer is followed by the end-of-turn
                                        token (a judge trained by SFT on demos ends
                                        its answer so); needed when one answer is a
                                        prefix of the other */
#define ALIGN_JUDGE_CHAT 0x2u        /* the rendered template is a user turn of a chat
                                        (chat_template, then the generation prompt),
                                        for a judge trained on chats */

typedef struct align_judge_params {
    uint32_t struct_size;
    uint32_t flags;                  /* ALIGN_JUDGE_* */
    /* Pairwise template: {principle} {prompt} {a} {b} are replaced, "{{" and
     * "}}" are literal braces; {a} and {b} are required. NULL = the default
     * (docs/judge.md). Copied. */
    const char *template_text;
    const char *answer_a;            /* NULL = "A" (copied) */
    const char *answer_b;            /* NULL = "B" (copied) */
    /* Principles ("constitution"): one is drawn per comparison. A list
     * (copied), and/or a file of one principle per line (blank lines and
     * lines starting with '#' skipped). None = one default principle. */
    const char *const *principles;
    int32_t  n_principles;
    const char *principles_file;
    uint64_t seed;                   /* principle draws (default 1234) */
    const char *name;                /* annotator of records it makes; NULL = "judge" */
    /* Score template: {principle} {prompt} {response} {min} {max} (the
     * scale); {response} is required. NULL = the default. */
    const char *score_template;
    int32_t  score_min;              /* scale of align_judge_score (default 1) */
    int32_t  score_max;              /* (default 10) */
    const align_chat_template *chat_template;  /* ALIGN_JUDGE_CHAT; NULL = defaults (copied) */
    /* append new members here */
} align_judge_params;

ALIGN_API int align_judge_default_params(align_judge_params *out, size_t struct_size);
#define ALIGN_JUDGE_DEFAULT_PARAMS(p) align_judge_default_params((p), sizeof *(p))

/* A judge over a language model and its tokenizer (both borrowed: they must
 * outlive the judge; the model is only run forward, and may be frozen). p may
 * be NULL (defaults). Templates, answers and principles are checked here. */
ALIGN_API int align_judge_create(align_judge **out, align_model *m, const align_tokenizer *t,
                                 const align_judge_params *p);
ALIGN_API void align_judge_free(align_judge *j);
ALIGN_API const char *align_judge_errmsg(const align_judge *j);
/* The judge's name (the annotator of its records); borrowed. */
ALIGN_API const char *align_judge_name(const align_judge *j);

/* *p_a_out = probability that resp_a is better than resp_b: the judge's
 * next-token probability of answer A against answer B at the end of the
 * rendered template, normalised over the two, averaged over both orders to
 * cancel position bias: ½·(pA(a, b) + pB(b, a)). So prefer(a, b) +
 * prefer(b, a) = 1 and prefer(a, a) = ½. The principle is drawn from a
 * stream keyed by the seed and the comparison (prompt and the unordered
 * pair), the same in either order. ALIGN_ERANGE when a rendered prompt and
 * answer exceed the model's max_seq_len. */
ALIGN_API int align_judge_prefer(align_judge *j, const char *prompt, const char *resp_a,
                                 const char *resp_b, float *p_a_out);
/* Ranks k >= 2 responses (align_rank_fn's rank_out) by the sum of their
 * pairwise win probabilities (Borda count); sums equal within 1e-9 tie.
 * win_prob_out (may be NULL) receives those sums divided by k - 1. */
ALIGN_API int align_judge_rank(align_judge *j, const char *prompt, const char *const *responses,
                               int32_t k, int32_t *rank_out, float *win_prob_out);
/* scores[i] = the judge's expected score of responses[i] to prompts[i] on the
 * scale score_min..score_max: each number's probability is that of its text
 * followed by the end-of-turn token (so "1" does not take the mass of "10"),
 * normalised over the scale. align_score_fn's shape with the judge first. */
ALIGN_API int align_judge_score(align_judge *j, const char *const *prompts,
                                const char *const *responses, int32_t n, float *scores);

/* A reward-model handle that scores with align_judge_score (for the RL
 * trainers, RL from AI feedback). j is borrowed and must outlive it; a
 * failure of the judge fails the score call with ALIGN_ECALLBACK (the
 * judge's own message in align_judge_errmsg). */
ALIGN_API int align_reward_model_from_judge(align_reward_model **out, align_judge *j);

/* align_collect with the judge as ranker: records have source AI and the
 * judge's name as annotator (p->source and p->annotator are ignored). */
ALIGN_API int align_collect_judge(align_model *policy, const align_tokenizer *t,
                                  align_dataset *prompts, align_dataset *out, align_judge *j,
                                  const align_collect_params *p);

/* ======================================================================== */
/* feedback journal: requests answered later, kept on disk (docs/feedback.md) */
/* ======================================================================== */

/* A journal holds feedback requests (a prompt, K responses, and what is
 * asked) until a person or a program answers them, minutes or days later.
 * Every request and every answer is one JSON line appended to the journal
 * file and flushed to disk (fsync) before the call returns, so a crash loses
 * nothing a call acknowledged. Every call is thread-safe on one journal (an
 * internal mutex): answers may come from any thread. Request ids (1, 2, ...)
 * are stable across reopening. Details of a failure: align_journal_errmsg(),
 * or align_last_errmsg() (per thread) when several threads share a journal. */
typedef struct align_journal align_journal;

/* What a request asks for (align_journal_submit kind). */
enum {
    ALIGN_FEEDBACK_RANK = 0,    /* a ranking of the K responses (K >= 2, ties allowed) */
    ALIGN_FEEDBACK_LABEL = 1,   /* good (1) / bad (0) for each response (K >= 1) */
    ALIGN_FEEDBACK_SCORE = 2    /* a finite score for each response (K >= 1) */
};

/* Status of a request. */
enum {
    ALIGN_REQUEST_PENDING = 0,
    ALIGN_REQUEST_ANSWERED = 1,
    ALIGN_REQUEST_CANCELED = 2,
    ALIGN_REQUEST_EXPIRED = 3
};

/* align_journal_open flags */
#define ALIGN_JOURNAL_NOSYNC 0x1u   /* no fsync: survives a killed process, not a
                                     * power cut (tests, throw-away journals) */

/* Creates the file at path, or reopens it and replays it, restoring every
 * request with its status. A last line cut short by a crash (it was never
 * acknowledged) is dropped from the file and reported by
 * align_journal_torn_bytes() and a warning in the log; any other damage is
 * ALIGN_EFORMAT with "path:line: what is wrong". A journal open in another
 * process is ALIGN_EBUSY. */
ALIGN_API int align_journal_open(align_journal **out, const char *path, uint32_t flags);
/* Closes the file and frees the journal (NULL is a no-op). Strings borrowed
 * from it become invalid. */
ALIGN_API void align_journal_close(align_journal *j);
ALIGN_API const char *align_journal_errmsg(const align_journal *j);
/* Bytes of a torn last line dropped by align_journal_open (0 normally). */
ALIGN_API int64_t align_journal_torn_bytes(align_journal *j);

/* Adds a request: kind ALIGN_FEEDBACK_*, k responses (copied), deadline in
 * seconds since the epoch (0 = none; see align_journal_expire). *id_out gets
 * its id (> 0). */
ALIGN_API int align_journal_submit(align_journal *j, int32_t kind, const char *prompt,
                                   const char *const *responses, int32_t k, int64_t deadline,
                                   int64_t *id_out);
/* Answers a pending request of the matching kind. rank[i] is the place of
 * response i: 0 = best, equal values are ties, places dense (as
 * align_dataset_add_ranking); good[i] is 0 or 1; scores[i] finite; each array
 * has the request's K entries. pv: who answered and when (copied; NULL or
 * source ALIGN_SOURCE_UNKNOWN = a human; timestamp 0 = now). An unknown id is
 * ALIGN_EINVAL; a request already answered, canceled or expired, or of another
 * kind, is ALIGN_EMISUSE. */
ALIGN_API int align_journal_answer_rank(align_journal *j, int64_t id, const int32_t *rank,
                                        const align_provenance *pv);
ALIGN_API int align_journal_answer_label(align_journal *j, int64_t id, const int32_t *good,
                                         const align_provenance *pv);
ALIGN_API int align_journal_answer_score(align_journal *j, int64_t id, const float *scores,
                                         const align_provenance *pv);
/* Withdraws a pending request (ALIGN_EINVAL unknown, ALIGN_EMISUSE not pending). */
ALIGN_API int align_journal_cancel(align_journal *j, int64_t id);
/* Expires every pending request whose deadline is <= now (seconds since the
 * epoch); *n_expired (may be NULL) gets how many. */
ALIGN_API int align_journal_expire(align_journal *j, int64_t now, int64_t *n_expired);

/* Number of requests with status ALIGN_REQUEST_* (< 0: error). */
ALIGN_API int64_t align_journal_count(align_journal *j, int32_t status);
/* The ids of the pending requests, oldest first: *n_out gets their number,
 * ids[0 .. min(cap, n)) are filled; ALIGN_ERANGE when cap < n. */
ALIGN_API int align_journal_pending(align_journal *j, int64_t *ids, int64_t cap, int64_t *n_out);

/* One request, as align_journal_request() reports it. The strings are
 * borrowed from the journal and stay valid until align_journal_close. */
typedef struct align_feedback_request {
    uint32_t    struct_size;
    int32_t     kind;          /* ALIGN_FEEDBACK_* */
    int32_t     status;        /* ALIGN_REQUEST_* */
    int32_t     k;             /* number of responses */
    int64_t     id;
    int64_t     deadline;      /* 0 = none */
    int64_t     submitted_at;  /* seconds since the epoch */
    int64_t     answered_at;   /* answer (or cancel, expiry) time; 0 while pending */
    const char *prompt;
    const char *annotator;     /* NULL unless answered with one */
    int32_t     source;        /* ALIGN_SOURCE_* of the answer; 0 while pending */
    uint32_t    exported;      /* 1 once align_journal_export took it */
    /* append new members here */
} align_feedback_request;

/* Fills the prefix of *out the caller declared (out->struct_size set, e.g.
 * by align_feedback_request_init). ALIGN_EINVAL for an unknown id. */
ALIGN_API int align_feedback_request_init(align_feedback_request *out, size_t struct_size);
ALIGN_API int align_journal_request(align_journal *j, int64_t id, align_feedback_request *out);
/* Response i of request id (borrowed, valid until align_journal_close), or
 * NULL (then align_journal_errmsg says why). */
ALIGN_API const char *align_journal_response(align_journal *j, int64_t id, int32_t i);

/* align_journal_export flags */
#define ALIGN_JOURNAL_EXPORT_ALL 0x1u  /* also the requests exported before */

/* Adds each answered request not yet exported to d, with its provenance
 * (source, annotator, answer time): a ranking request becomes one ranking
 * record, a label or score request one record per response. The export is
 * written to the journal, so a request is exported once, across reopening,
 * unless ALIGN_JOURNAL_EXPORT_ALL. *n_out (may be NULL) gets the number of
 * requests exported. */
ALIGN_API int align_journal_export(align_journal *j, align_dataset *d, uint32_t flags,
                                   int64_t *n_out);

/* ======================================================================== */
/* online RL: PPO, GRPO, RLOO (docs/rl.md)                                  */
/* ======================================================================== */

enum { ALIGN_ALGO_PPO = 4 };
enum { ALIGN_ALGO_GRPO = 5 };
enum { ALIGN_ALGO_RLOO = 6 };

/* The models an online-RL trainer works with; all borrowed (they must
 * outlive the trainer). Fill with align_rl_roles_init, then set members. */
typedef struct align_rl_roles {
    uint32_t struct_size;
    align_model        *policy;      /* trained; sampled from */
    align_optimizer    *policy_opt;  /* optimizer of policy */
    /* PPO only. NULL = a value head on the policy's trunk: the policy must
     * have ALIGN_MODEL_SCALAR_HEAD and policy_opt updates both (one model,
     * one optimizer). Otherwise a separate model with a scalar head, trained
     * by value_opt. GRPO/RLOO: must be NULL. */
    align_model        *value;
    align_optimizer    *value_opt;
    /* Frozen reference for the KL term (e.g. a frozen clone of the SFT
     * model). May be NULL only when the KL coefficient is 0. */
    align_model        *reference;
    align_reward_model *reward;      /* scores (prompt, response) pairs */
    const align_tokenizer *tokenizer;
    /* append new members here */
} align_rl_roles;

ALIGN_API int align_rl_roles_init(align_rl_roles *out, size_t struct_size);
#define ALIGN_RL_ROLES_INIT(r) align_rl_roles_init((r), sizeof *(r))

/* Flags shared by align_grpo_params.flags and align_ppo_params.flags */
#define ALIGN_RL_RAW_PROMPT  0x1u  /* prompts are fed as raw text, not through the chat template */
#define ALIGN_RL_SEQUENTIAL  0x2u  /* visit prompts in dataset order (no shuffling) */
/* align_grpo_params.flags */
#define ALIGN_GRPO_NO_STD    0x100u /* advantages r - mean(group), not scaled (Dr. GRPO) */
#define ALIGN_GRPO_BATCH_STD 0x200u /* scale by the std over the whole batch, not the group's */
/* align_ppo_params.flags */
#define ALIGN_PPO_ADAPTIVE_KL 0x100u /* adaptive KL coefficient (kl_target, kl_horizon) */
#define ALIGN_PPO_NO_WHITEN   0x200u /* do not whiten the advantages */

/* Loss aggregation over tokens (align_grpo_params.loss_agg) */
enum { ALIGN_RL_AGG_TOKEN_MEAN = 0, ALIGN_RL_AGG_SEQ_MEAN = 1, ALIGN_RL_AGG_CONSTANT = 2 };

/* GRPO (Shao et al. 2024) and RLOO (Ahmadian et al. 2024). One
 * align_trainer_step = one optimizer update on one minibatch of the rollout
 * buffer; a rollout (prompts_per_step prompts x group_size samples) is made
 * when the buffer is used up (iterations x minibatches steps). */
typedef struct align_grpo_params {
    uint32_t struct_size;
    uint32_t flags;             /* ALIGN_RL_*, ALIGN_GRPO_* */
    int32_t  group_size;        /* G samples per prompt (GRPO 4, RLOO 2; >= 2) */
    int32_t  prompts_per_step;  /* prompts per rollout (default 8) */
    int32_t  iterations;        /* mu: passes over each rollout buffer (default 1) */
    int32_t  minibatches;       /* optimizer steps per pass (default 1) */
    int32_t  micro_batch;       /* sequences per forward/backward (default 8) */
    int32_t  max_steps;         /* ALIGN_DONE after this many steps; 0 = by epochs */
    int32_t  epochs;            /* passes over the prompts when max_steps == 0 (default 1) */
    uint64_t seed;              /* prompt order and sampling (default 1234) */
    /* sampling (as align_generate_params) */
    int32_t  max_new_tokens;    /* default 64 */
    float    temperature;       /* default 1.0 (> 0) */
    int32_t  top_k;             /* 0 = off */
    float    top_p;             /* 1.0 = off */
    const char *const *stop;    /* stop strings (copied); may be NULL */
    int32_t  n_stop;
    int32_t  max_prompt_len;    /* longer prompts keep their last tokens; 0 = model max - max_new_tokens */
    /* objective */
    float    beta;              /* KL coefficient: GRPO k3 in the loss (0.04); RLOO k1 in the reward (0.05) */
    float    clip_eps;          /* 0.2; RLOO: <= 0 = plain REINFORCE */
    float    clip_eps_high;     /* upper clip (DAPO 0.28); 0 = clip_eps */
    int32_t  loss_agg;          /* ALIGN_RL_AGG_* (GRPO; default token mean) */
    float    score_clip;        /* scores clipped to [-c, c]; <= 0 = off */
    /* chat template pieces (copied; NULL = default) */
    const char *system_prefix;
    const char *user_prefix;
    const char *assistant_prefix;
    align_step_fn on_step;      /* as align_sft_params.on_step */
    void    *on_step_user_data;
    /* append new members here */
} align_grpo_params;

ALIGN_API int align_grpo_default_params(align_grpo_params *out, size_t struct_size);
#define ALIGN_GRPO_DEFAULT_PARAMS(p) align_grpo_default_params((p), sizeof *(p))
/* The same struct with RLOO's defaults (group_size 2, beta 0.05). */
ALIGN_API int align_rloo_default_params(align_grpo_params *out, size_t struct_size);
#define ALIGN_RLOO_DEFAULT_PARAMS(p) align_rloo_default_params((p), sizeof *(p))

/* prompts: records with a prompt (any kind but chat uses its prompt; chat
 * records are rendered up to their last message); a dataset with a source is
 * pulled when its prompts run out. roles, prompts and p as documented above;
 * roles->value must be NULL. */
ALIGN_API int align_trainer_create_grpo(align_trainer **out, const align_rl_roles *roles,
                                        align_dataset *prompts, const align_grpo_params *p);
ALIGN_API int align_trainer_create_rloo(align_trainer **out, const align_rl_roles *roles,
                                        align_dataset *prompts, const align_grpo_params *p);

/* PPO (Schulman et al. 2017; Ouyang et al. 2022). One align_trainer_step =
 * one optimizer update on one minibatch; a rollout of rollouts_per_step
 * responses is made when epochs_per_rollout x minibatches steps used it. */
typedef struct align_ppo_params {
    uint32_t struct_size;
    uint32_t flags;             /* ALIGN_RL_*, ALIGN_PPO_* */
    int32_t  rollouts_per_step; /* responses per rollout (default 16) */
    int32_t  ppo_epochs;        /* passes over each rollout buffer (default 4) */
    int32_t  minibatches;       /* optimizer steps per pass (default 1) */
    int32_t  micro_batch;       /* sequences per forward/backward (default 8) */
    int32_t  max_steps;         /* ALIGN_DONE after this many steps; 0 = by epochs */
    int32_t  epochs;            /* passes over the prompts when max_steps == 0 (default 1) */
    uint64_t seed;              /* default 1234 */
    /* sampling */
    int32_t  max_new_tokens;    /* default 64 */
    float    temperature;       /* default 1.0 (> 0) */
    int32_t  top_k;
    float    top_p;
    const char *const *stop;
    int32_t  n_stop;
    int32_t  max_prompt_len;
    /* objective */
    float    kl_coef;           /* beta of the k1 penalty in the reward (0.05) */
    float    kl_target;         /* ALIGN_PPO_ADAPTIVE_KL: target KL per response (6) */
    float    kl_horizon;        /* ALIGN_PPO_ADAPTIVE_KL: horizon in responses (10000) */
    float    clip_eps;          /* 0.2 */
    float    clip_eps_high;     /* 0 = clip_eps */
    float    vf_clip;           /* value clipping epsilon (0.2); <= 0 = off */
    float    vf_coef;           /* value loss coefficient (0.1) */
    float    gamma;             /* GAE discount (1.0) */
    float    lam;               /* GAE lambda (0.95) */
    float    missing_eos_penalty; /* subtracted from the score of a response without end-of-text (0) */
    float    score_clip;        /* <= 0 = off */
    const char *system_prefix;
    const char *user_prefix;
    const char *assistant_prefix;
    align_step_fn on_step;
    void    *on_step_user_data;
    /* PPO-ptx (Ouyang et al. 2022): each step also adds ptx_coef x the SFT
     * loss of ptx_batch rows of demonstrations (borrowed; demos and chats,
     * formatted with the chat template as align_trainer_create_sft does). */
    align_dataset *ptx_data;    /* NULL = off */
    float    ptx_coef;          /* gamma (InstructGPT 27.8); default 1 */
    int32_t  ptx_batch;         /* rows per step (default 8) */
    /* append new members here */
} align_ppo_params;

ALIGN_API int align_ppo_default_params(align_ppo_params *out, size_t struct_size);
#define ALIGN_PPO_DEFAULT_PARAMS(p) align_ppo_default_params((p), sizeof *(p))

ALIGN_API int align_trainer_create_ppo(align_trainer **out, const align_rl_roles *roles,
                                       align_dataset *prompts, const align_ppo_params *p);

/* ======================================================================== */
/* reward-model trainer (docs/reward.md)                                    */
/* ======================================================================== */

enum { ALIGN_ALGO_REWARD = 1 };

/* align_reward_train_params.flags: ALIGN_REWARD_CHAT (0x1, build the
 * sequences as the scorer does with that flag) and: */
#define ALIGN_REWARD_TRAIN_SEQUENTIAL 0x2u  /* visit the records in dataset order (no shuffle) */

typedef struct align_reward_train_params {
    uint32_t struct_size;
    uint32_t flags;            /* ALIGN_REWARD_CHAT | ALIGN_REWARD_TRAIN_* */
    int32_t  micro_batch;      /* PROMPTS per forward: all K responses of a prompt in one pass (default 8) */
    int32_t  grad_accum;       /* micro-batches per optimiser step (default 1) */
    int32_t  max_seq_len;      /* tokens per sequence; 0 = the model's */
    int32_t  truncation;       /* ALIGN_TRUNCATE_LEFT (default, keeps the end where the score is read)
                                  or _RIGHT; _DROP is refused */
    int32_t  max_steps;        /* ALIGN_DONE after this many steps; 0 = by epochs */
    int32_t  epochs;           /* passes over the data when max_steps == 0 (default 1) */
    uint64_t seed;             /* shuffling seed (default 1234) */
    float    ranking_weight;   /* weight of ranking/preference records (default 1; 0 = ignore them) */
    float    label_weight;     /* weight of good/bad label records, logistic loss (default 1) */
    float    score_weight;     /* weight of scalar score records, squared error (default 1) */
    float    margin_scale;     /* pair margin m = margin_scale * (rank_l - rank_w) (default 0 = none) */
    float    center_coef;      /* centering term c * mean(r^2) per prompt (default 0 = off) */
    const char *user_prefix;       /* ALIGN_REWARD_CHAT only; NULL = "<|user|>\n" (copied) */
    const char *assistant_prefix;  /* ALIGN_REWARD_CHAT only; NULL = "<|assistant|>\n" (copied) */
    align_step_fn on_step;     /* as align_sft_params.on_step; may be NULL */
    void    *on_step_user_data;
    /* append new members here */
} align_reward_train_params;

ALIGN_API int align_reward_train_default_params(align_reward_train_params *out, size_t struct_size);
#define ALIGN_REWARD_TRAIN_DEFAULT_PARAMS(p) align_reward_train_default_params((p), sizeof *(p))

/* A reward-model trainer: m must have a scalar head (ALIGN_MODEL_SCALAR_HEAD).
 * It learns from every ranking (a preference is K = 2), label and score
 * record of data (other kinds are skipped; ALIGN_EINVAL if none is usable).
 * m, t, data and opt are borrowed; opt NULL = evaluation only. Metrics:
 * "loss", "accuracy" (pairwise), "margin", "pairs", "rewards/mean",
 * "rewards/std", and "loss/ranking", "loss/label", "loss/score",
 * "accuracy/label" when such records are present. */
ALIGN_API int align_trainer_create_reward(align_trainer **out, align_model *m,
                                          const align_tokenizer *t, align_dataset *data,
                                          align_optimizer *opt,
                                          const align_reward_train_params *p);

/* ======================================================================== */
/* preference optimisation: DPO and its variants, KTO (docs/preference.md)  */
/* ======================================================================== */

enum { ALIGN_ALGO_DPO = 2 };
enum { ALIGN_ALGO_KTO = 3 };

/* align_dpo_params.loss */
enum {
    ALIGN_DPO_SIGMOID = 0,  /* DPO (Rafailov et al. 2023); with label_smoothing: cDPO */
    ALIGN_DPO_ROBUST = 1,   /* robust DPO (Chowdhury et al. 2024), label_smoothing < 0.5 */
    ALIGN_DPO_IPO = 2,      /* IPO (Azar et al. 2023), beta is tau */
    ALIGN_DPO_HINGE = 3,    /* SLiC hinge on the DPO margin */
    ALIGN_DPO_SIMPO = 4,    /* SimPO (Meng et al. 2024): no reference */
    ALIGN_DPO_ORPO = 5      /* ORPO (Hong et al. 2024): no reference, beta is lambda */
};

/* align_dpo_params.ranking: how a ranking of K > 2 responses is used */
enum {
    ALIGN_RANKING_ALL_PAIRS = 0,     /* every strictly ordered pair, mean of the pair losses */
    ALIGN_RANKING_BEST_VS_REST = 1,  /* the best response(s) against each worse one */
    ALIGN_RANKING_PLACKETT_LUCE = 2  /* listwise likelihood (needs a reference loss) */
};

/* align_dpo_params.flags / align_kto_params.flags */
#define ALIGN_DPO_LENGTH_NORM        0x1u /* sigmoid/robust/hinge on mean token log-probs */
#define ALIGN_DPO_SEQUENTIAL         0x2u /* records in dataset order every epoch (no shuffling) */
#define ALIGN_DPO_RELEASE_REFERENCE  0x4u /* stop using the reference once its log-probs of
                                             every record are cached (docs/preference.md) */
#define ALIGN_DPO_NO_REFERENCE_CACHE 0x8u /* run the reference every time (no cache) */

typedef struct align_dpo_params {
    uint32_t struct_size;
    uint32_t flags;            /* ALIGN_DPO_* */
    int32_t  loss;             /* ALIGN_DPO_* loss (default SIGMOID) */
    int32_t  ranking;          /* ALIGN_RANKING_* for K > 2 (default ALL_PAIRS) */
    float    beta;             /* > 0 (default 0.1) */
    float    label_smoothing;  /* sigmoid/simpo [0, 0.5], robust [0, 0.5) (default 0) */
    float    simpo_gamma;      /* SimPO target margin (default 0.5) */
    float    sft_alpha;        /* >= 0: adds alpha * NLL of the chosen response (RPO) (default 0) */
    int32_t  micro_batch;      /* records (all their responses) per forward (default 4) */
    int32_t  grad_accum;       /* micro-batches per optimiser step (default 1) */
    int32_t  max_seq_len;      /* tokens per prompt + response (default: model's max) */
    int32_t  truncation;       /* ALIGN_TRUNCATE_* (default LEFT: the prompt's start goes) */
    int32_t  max_steps;        /* ALIGN_DONE after this many steps; 0 = by epochs */
    int32_t  epochs;           /* passes over the data when max_steps == 0 (default 1) */
    uint64_t seed;             /* shuffling seed (default 1234) */
    align_step_fn on_step;     /* as align_sft_params.on_step; may be NULL */
    void    *on_step_user_data;
    /* append new members here */
} align_dpo_params;

ALIGN_API int align_dpo_default_params(align_dpo_params *out, size_t struct_size);
#define ALIGN_DPO_DEFAULT_PARAMS(p) align_dpo_default_params((p), sizeof *(p))

/* A DPO-family trainer over the ranking records of prefs (a preference pair
 * is a ranking of K = 2; other kinds are skipped). Each response is the
 * sequence prompt + response + end-of-turn, built by the chat template as SFT
 * builds a demonstration; its log-probability is summed over the response and
 * end-of-turn tokens. reference (frozen or not; never updated) may be NULL
 * for ALIGN_DPO_SIMPO / _ORPO and must share the policy's vocabulary. Its
 * log-probabilities are computed once per record and cached (saved with
 * checkpoints). policy, reference, t, prefs and opt are borrowed; opt may be
 * NULL for an evaluation-only trainer. The records are read at creation.
 * Errors: a response that is empty, two responses of different places with
 * the same text, no usable record, a reference of another vocabulary. */
ALIGN_API int align_trainer_create_dpo(align_trainer **out, align_model *policy,
                                       align_model *reference, const align_tokenizer *t,
                                       align_dataset *prefs, align_optimizer *opt,
                                       const align_dpo_params *p);

typedef struct align_kto_params {
    uint32_t struct_size;
    uint32_t flags;             /* ALIGN_DPO_SEQUENTIAL, ALIGN_DPO_NO_REFERENCE_CACHE */
    float    beta;              /* > 0 (default 0.1) */
    float    desirable_weight;  /* lambda_D >= 0 (default 1) */
    float    undesirable_weight;/* lambda_U >= 0 (default 1) */
    int32_t  micro_batch;       /* examples per forward (default 8) */
    int32_t  grad_accum;        /* micro-batches per step (default 1) */
    int32_t  max_seq_len;       /* default: model's max */
    int32_t  truncation;        /* ALIGN_TRUNCATE_* (default LEFT) */
    int32_t  max_steps;         /* 0 = by epochs */
    int32_t  epochs;            /* default 1 */
    uint64_t seed;              /* default 1234 */
    align_step_fn on_step;
    void    *on_step_user_data;
    /* append new members here */
} align_kto_params;

ALIGN_API int align_kto_default_params(align_kto_params *out, size_t struct_size);
#define ALIGN_KTO_DEFAULT_PARAMS(p) align_kto_default_params((p), sizeof *(p))

/* A KTO trainer (Ethayarajh et al. 2024) over the label records of data
 * (good = desirable). The reference point is estimated each step from the
 * step's examples with mismatched prompt/response pairs; the reference is
 * required (its log-probs of the labelled responses are cached, those of
 * the mismatched pairs are computed every step). Borrowing as for DPO. */
ALIGN_API int align_trainer_create_kto(align_trainer **out, align_model *policy,
                                       align_model *reference, const align_tokenizer *t,
                                       align_dataset *data, align_optimizer *opt,
                                       const align_kto_params *p);

#ifdef __cplusplus
}
#endif
#endif /* ALIGN_H */
