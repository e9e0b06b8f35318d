/*
 * collect.c — step 2 of the RLHF pipeline in one call (docs/judge.md,
 * "Collecting rankings"): sample K responses per prompt from the policy,
 * have them ranked (a host callback or a judge model), and append the
 * ranking records with their provenance. InstructGPT (Ouyang et al. 2022,
 * arXiv 2203.02155, §3.5) collected rankings of K = 4..9 samples per prompt;
 * the reward-model trainer turns each into its C(K, 2) pairs.
 */
#include "core/core.h"
#include "data/dataset.h"
#include "data/utf8.h"
#include "feedback/judge.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_K 4096

static const align_collect_params collect_defaults = {
    .struct_size = sizeof(align_collect_params),
    .k = 4,
    .source = ALIGN_SOURCE_UNKNOWN,
};

ALIGN_API int align_collect_default_params(align_collect_params *out, size_t struct_size)
{
    return align__params_defaults(out, struct_size, &collect_defaults, sizeof collect_defaults,
                                  "align_collect_default_params");
}

/* splitmix64 finaliser (Steele et al. 2014): one generation seed per prompt
 * record, a pure function of (seed, record index). */
static uint64_t mix_seed(uint64_t seed, int64_t i)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull * ((uint64_t)i + 1u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A generated text as a valid record string: bytes that are not valid UTF-8,
 * and NUL bytes, become U+FFFD (what the byte tokenizer of an untrained model
 * easily samples). */
static char *sanitize(const char *s, size_t n)
{
    char *out = align__malloc(3 * n + 1);
    if (!out)
        return NULL;
    size_t o = 0, i = 0;
    while (i < n) {
        size_t l = s[i] ? align__utf8_seq((const unsigned char *)s + i, n - i) : 0;
        if (l) {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    return out;
}

/* Checks a ranker's places (each in 0..k-1) and closes gaps: the places
 * become dense (0, then 1, ...; ties keep sharing one), as the dataset
 * stores them. */
static int normalise_ranks(int32_t *rank, int32_t k, char *why, size_t whycap)
{
    for (int32_t i = 0; i < k; i++)
        if (rank[i] < 0 || rank[i] >= k) {
            snprintf(why, whycap, "rank_out[%d] = %d is outside 0..%d", (int)i, (int)rank[i], (int)(k - 1));
            return ALIGN_EINVAL;
        }
    int32_t dense[MAX_K];
    int32_t next = 0;
    for (int32_t r = 0; r < k; r++) {
        int used = 0;
        for (int32_t i = 0; i < k; i++)
            used |= rank[i] == r;
        dense[r] = next;
        next += used;
    }
    for (int32_t i = 0; i < k; i++)
        rank[i] = dense[rank[i]];
    return ALIGN_OK;
}

static int collect_run(align_model *policy, const align_tokenizer *t, align_dataset *prompts, align_dataset *out,
                       align_rank_fn rank, void *ud, align_judge *judge, const align_collect_params *p,
                       const char *fn)
{
    if (!policy || !t || !prompts || !out)
        return align__error(NULL, ALIGN_EINVAL, "%s: %s is NULL", fn,
                            !policy ? "policy" : !t ? "tokenizer" : !prompts ? "prompts" : "out");
    if (!rank && !judge)
        return align__error(NULL, ALIGN_EINVAL, "%s: %s is NULL", fn, "the rank callback");
    if (prompts == out)
        return align__error(NULL, ALIGN_EINVAL, "%s: prompts and out are the same dataset", fn);
    align_collect_params prm = collect_defaults;
    if (p) {
        int rc = align__params_copy(&prm, sizeof prm, p, "align_collect_params");
        if (rc)
            return align__error(NULL, rc, "%s: %s", fn, align_last_errmsg());
    }
    if (prm.flags & ~ALIGN_COLLECT_CHAT)
        return align__error(NULL, ALIGN_EINVAL, "%s: unknown flags 0x%x", fn,
                            (unsigned)(prm.flags & ~ALIGN_COLLECT_CHAT));
    if (prm.k < 2 || prm.k > MAX_K)
        return align__error(NULL, ALIGN_EINVAL, "%s: k = %d (2..%d responses per prompt)", fn, (int)prm.k, MAX_K);
    if (judge) {
        prm.source = ALIGN_SOURCE_AI;
        prm.annotator = align_judge_name(judge);
    }
    if (prm.source < ALIGN_SOURCE_UNKNOWN || prm.source > ALIGN_SOURCE_PROGRAM)
        return align__error(NULL, ALIGN_EINVAL, "%s: unknown provenance source %d", fn, (int)prm.source);
    if (prm.timestamp < 0)
        return align__error(NULL, ALIGN_EINVAL, "%s: timestamp %lld is negative", fn, (long long)prm.timestamp);
    int64_t size = align_dataset_size(prompts);
    if (prm.first < 0 || prm.first > size || prm.count < 0 || (prm.count > size - prm.first))
        return align__error(NULL, ALIGN_EINVAL, "%s: records %lld..+%lld outside the %lld prompts", fn,
                            (long long)prm.first, (long long)prm.count, (long long)size);
    int64_t end = prm.count ? prm.first + prm.count : size;
    align_generate_params gp;
    align_generate_default_params(&gp, sizeof gp);
    if (prm.generate) {
        int rc = align__params_copy(&gp, sizeof gp, prm.generate, "align_generate_params");
        if (rc)
            return align__error(NULL, rc, "%s: %s", fn, align_last_errmsg());
    }
    const uint64_t base_seed = gp.seed;
    /* every record must have a prompt before anything is sampled */
    for (int64_t i = prm.first; i < end; i++) {
        align__record_view v;
        int rc = align__dataset_get(prompts, i, &v);
        if (rc)
            return align__error(NULL, rc, "%s: record %lld cannot be read", fn, (long long)i);
        if (!v.prompt)
            return align__error(NULL, ALIGN_EINVAL, "%s: record %lld is a chat and has no prompt", fn, (long long)i);
    }

    const int32_t k = prm.k;
    const int chat = (prm.flags & ALIGN_COLLECT_CHAT) != 0;
    const char **roles = align__malloc((size_t)k * sizeof *roles);
    int32_t *n_msg = align__malloc((size_t)k * sizeof *n_msg);
    const char **ptrs = align__malloc((size_t)k * sizeof *ptrs);
    char **texts = align__calloc((size_t)k, sizeof *texts);
    int32_t *ranks = align__malloc((size_t)k * sizeof *ranks);
    for (int32_t r = 0; roles && n_msg && r < k; r++) {
        roles[r] = "user";
        n_msg[r] = 1;
    }
    int rc = (!ptrs || !texts || !ranks || !roles || !n_msg) ? align__error(NULL, ALIGN_ENOMEM, "%s: out of memory", fn) : ALIGN_OK;
    for (int64_t i = prm.first; i < end && !rc; i++) {
        align__record_view v;
        align__dataset_get(prompts, i, &v);
        char *prompt = align__strndup(v.prompt, v.prompt_len);
        if (!prompt) {
            rc = align__error(NULL, ALIGN_ENOMEM, "%s: out of memory", fn);
            break;
        }
        for (int32_t r = 0; r < k; r++)
            ptrs[r] = prompt;
        gp.seed = mix_seed(base_seed, i);
        align_generation *g = NULL;
        rc = chat ? align_generate_chat(policy, t, prm.chat_template, roles, ptrs, n_msg, k, &gp, &g)
                  : align_generate(policy, t, ptrs, k, &gp, &g);
        if (rc)
            rc = align__error(NULL, rc, "%s: prompt record %lld: %s", fn, (long long)i, align_model_errmsg(policy));
        for (int32_t r = 0; r < k && !rc; r++) {
            size_t len = 0;
            const char *s = align_generation_text(g, r, &len);
            if (!(texts[r] = sanitize(s ? s : "", s ? len : 0)))
                rc = align__error(NULL, ALIGN_ENOMEM, "%s: out of memory", fn);
            ptrs[r] = texts[r];
        }
        align_generation_free(g);
        if (!rc) {
            for (int32_t r = 0; r < k; r++)
                ranks[r] = -1;
            if (judge) {
                rc = align__judge_rank(judge, prompt, ptrs, k, ranks, NULL, fn);
                if (rc)
                    rc = align__error(NULL, rc, "%s: prompt record %lld: %s", fn, (long long)i,
                                      align_judge_errmsg(judge));
            } else {
                int cb = rank(prompt, ptrs, k, ranks, ud);
                if (cb < 0)
                    rc = align__error(NULL, ALIGN_ECALLBACK,
                                      "%s: prompt record %lld: the rank callback returned %d", fn, (long long)i,
                                      cb);
            }
        }
        char why[128];
        if (!rc && (rc = normalise_ranks(ranks, k, why, sizeof why)))
            rc = align__error(NULL, rc, "%s: prompt record %lld: the ranker's places are invalid: %s", fn,
                              (long long)i, why);
        if (!rc) {
            align_provenance pv;
            align_provenance_default(&pv, sizeof pv);
            pv.source = prm.source;
            pv.annotator = prm.annotator;
            pv.timestamp = prm.timestamp ? prm.timestamp : (int64_t)time(NULL);
            rc = align_dataset_add_ranking(out, prompt, ptrs, ranks, k, &pv);
            if (rc)
                rc = align__error(NULL, rc, "%s: prompt record %lld: %s", fn, (long long)i,
                                  align_dataset_errmsg(out));
        }
        for (int32_t r = 0; r < k; r++) {
            align__free(texts[r]);
            texts[r] = NULL;
        }
        align__free(prompt);
        if (!rc && prm.progress) {
            int cb = prm.progress(i - prm.first + 1, end - prm.first, prm.progress_user_data);
            if (cb < 0)
                rc = align__error(NULL, ALIGN_ECALLBACK, "%s: the progress callback returned %d", fn, cb);
        }
    }
    align__free(ptrs);
    align__free(roles);
    align__free(n_msg);
    align__free(texts);
    align__free(ranks);
    return rc;
}

ALIGN_API int align_collect(align_model *policy, const align_tokenizer *t, align_dataset *prompts,
                            align_dataset *out, align_rank_fn rank, void *user_data, const align_collect_params *p)
{
    return collect_run(policy, t, prompts, out, rank, user_data, NULL, p, "align_collect");
}

ALIGN_API int align_collect_judge(align_model *policy, const align_tokenizer *t, align_dataset *prompts,
                                  align_dataset *out, align_judge *j, const align_collect_params *p)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "align_collect_judge: judge is NULL");
    return collect_run(policy, t, prompts, out, NULL, NULL, j, p, "align_collect_judge");
}
