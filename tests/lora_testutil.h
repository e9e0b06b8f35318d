/* lora_testutil.h — what the two LoRA suites (check_internal_lora.c for GPT-2,
 * check_internal_lora_llama.c for Llama) share: a fixed two-sequence batch and its
 * forward, adapter randomisation, a small preference task with its sequence
 * log-probability, and a DPO run's open/step/close helpers. Functions are static
 * inline so a suite that does not use one builds without warnings. */
#ifndef ALIGN_TESTS_LORA_TESTUTIL_H
#define ALIGN_TESTS_LORA_TESTUTIL_H

#include "testutil.h"

#include "align.h"
#include "model/model.h"
#include "model/model_impl.h"

#include <stdint.h>
#include <string.h>

#define NSEQ 2
#define TLEN 12
static const int32_t toks[NSEQ * TLEN] = {3, 50, 7, 99, 120, 4, 8, 200, 31, 17, 9, 1,
                                          60, 2, 77, 5, 9, 11, 13, 250, 0, 0, 0, 0};
static const int32_t lens[NSEQ] = {TLEN, 8};

typedef struct {
    align_model *m, *ref;
    align_optimizer *o;
    align_trainer *tr;
} run;

static inline void randomize_adapters(align_model *m, uint32_t seed, float amp)
{
    align__train_view v;
    align__model_train_view(m, &v);
    ck_assert_ptr_ne(m->lora, NULL);
    uint32_t s = seed;
    for (size_t i = 0; i < v.n; i++) {
        s = s * 1664525u + 1013904223u;
        v.params[i] += amp * ((float)(s >> 8) / 16777216.0f - 0.5f);
    }
}

static inline void fwd(align_model *m, float *lp)
{
    ck_assert_int_eq(align_model_forward(m, toks, lens, NSEQ, TLEN, lp, NULL, NULL), ALIGN_OK);
}

static inline uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static inline void pref_example(uint32_t *rs, char *prompt, char *chosen, char *rejected)
{
    static const char vow[] = "aeiou", con[] = "bcdfghklmnprst";
    int v = lcg(rs) % 2;
    strcpy(prompt, v ? "v:" : "c:");
    for (int i = 0; i < 3; i++)
        prompt[2 + i] = (char)('a' + lcg(rs) % 26);
    prompt[5] = ' ';
    prompt[6] = 0;
    char *a = v ? chosen : rejected, *b = v ? rejected : chosen;
    for (int i = 0; i < 4; i++) {
        a[i] = vow[lcg(rs) % 5];
        b[i] = con[lcg(rs) % 14];
    }
    chosen[4] = rejected[4] = 0;
}

static inline double seq_logp(align_model *m, const align_tokenizer *t, const char *prompt, const char *resp)
{
    int32_t ids[64];
    size_t n1 = 0, n2 = 0;
    ck_assert_int_eq(align_tokenize(t, prompt, strlen(prompt), 0, ids, 64, &n1), ALIGN_OK);
    ck_assert_int_eq(align_tokenize(t, resp, strlen(resp), 0, ids + n1, 64 - n1, &n2), ALIGN_OK);
    int32_t n = (int32_t)(n1 + n2);
    ids[n++] = align_tokenizer_eot(t);
    float lp[64];
    ck_assert_int_eq(align_model_forward(m, ids, &n, 1, n, lp, NULL, NULL), ALIGN_OK);
    double s = 0;
    for (int32_t k = (int32_t)n1 - 1; k < n - 1; k++)
        s += lp[k];
    return s;
}

static inline void run_close(run *r)
{
    align_trainer_free(r->tr);
    align_optimizer_free(r->o);
    align_model_free(r->ref);
    align_model_free(r->m);
}

static inline int run_steps(run *r, int n)
{
    int k = 0;
    while (k < n && align_trainer_step(r->tr, NULL) == ALIGN_OK)
        k++;
    return k;
}

#endif
