/* llama_torch_dump.c — the libalign side of tests/sh/llama_torch.sh: loads a
 * Hugging Face folder, runs the batch of DIR/ref.safetensors (tokens,
 * lengths, d loss / d logprob) forward and backward, and writes logits,
 * log-probs and every tensor's gradient (named grad.<tensor>) to a
 * safetensors file for tests/llama_torch.py to compare, then saves the
 * model as BF16 into SAVE_DIR. Uses internals
 * (linked against libalign.a) to read the gradients. */
#include "model/model_impl.h"
#include "model/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *get(align__st_file *f, const char *name, int nd, int64_t d0, int64_t d1)
{
    int64_t sh[2] = {d0, d1};
    float *p = calloc((size_t)(d0 * (nd == 2 ? d1 : 1)), sizeof(float));
    if (!p || align__st_read(NULL, f, name, nd, sh, p)) {
        fprintf(stderr, "llama_torch_dump: %s\n", align_last_errmsg());
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: llama_torch_dump MODEL_DIR REF.safetensors OUT.safetensors SAVE_DIR/\n");
        return 2;
    }
    align_model *m = NULL;
    if (align_model_load(&m, argv[1], NULL)) {
        fprintf(stderr, "llama_torch_dump: load: %s\n", align_last_errmsg());
        return 1;
    }
    align__st_file f;
    if (align__st_open(NULL, argv[2], &f)) {
        fprintf(stderr, "llama_torch_dump: %s\n", align_last_errmsg());
        return 1;
    }
    int nd;
    int64_t sh[2];
    align__st_shape(&f, "tokens", &nd, sh);
    int64_t B = sh[0], T = sh[1], V = m->cfg.vocab_size;
    float *tf = get(&f, "tokens", 2, B, T), *lf = get(&f, "lengths", 1, B, 0);
    float *dlp = get(&f, "dlp", 2, B, T - 1);
    int32_t *tok = calloc((size_t)(B * T), sizeof(int32_t)), *len = calloc((size_t)B, sizeof(int32_t));
    for (int64_t i = 0; i < B * T; i++)
        tok[i] = (int32_t)tf[i];
    for (int64_t i = 0; i < B; i++)
        len[i] = (int32_t)lf[i];
    float *logits = calloc((size_t)(B * T * V), sizeof(float)), *lp = calloc((size_t)(B * (T - 1)), sizeof(float));
    if (align_model_forward(m, tok, len, (int32_t)B, (int32_t)T, lp, NULL, logits) ||
        align_model_backward(m, dlp, NULL)) {
        fprintf(stderr, "llama_torch_dump: %s\n", align_model_errmsg(m));
        return 1;
    }
    align__st_tensor *t = calloc((size_t)m->n_tensors + 2, sizeof *t);
    char (*names)[ALIGN__TENSOR_NAME_CAP + 8] = calloc((size_t)m->n_tensors, sizeof *names);
    t[0] = (align__st_tensor){"logits", logits, 2, {B * T, V}};
    t[1] = (align__st_tensor){"logprobs", lp, 2, {B, T - 1}};
    for (int i = 0; i < m->n_tensors; i++) {
        const align__tensor *mt = &m->tensors[i];
        snprintf(names[i], sizeof names[i], "grad.%s", mt->name);
        t[i + 2] = (align__st_tensor){names[i], m->grads + mt->offset, mt->ndim, {mt->shape[0], mt->shape[1]}};
    }
    if (align__st_write(NULL, argv[3], t, m->n_tensors + 2, NULL, 0)) {
        fprintf(stderr, "llama_torch_dump: %s\n", align_last_errmsg());
        return 1;
    }
    /* and the model saved back as BF16 in the Hugging Face layout */
    if (align_model_save_ex(m, argv[4], ALIGN_SAVE_BF16)) {
        fprintf(stderr, "llama_torch_dump: save: %s\n", align_model_errmsg(m));
        return 1;
    }
    align__st_close(&f);
    align_model_free(m);
    free(t), free(names), free(tok), free(len), free(tf), free(lf), free(dlp), free(logits), free(lp);
    return 0;
}
