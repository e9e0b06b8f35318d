/*
 * judge.h — what collect.c uses of the judge (private to libalign;
 * lib/feedback/judge.c).
 */
#ifndef ALIGN_FEEDBACK_JUDGE_H
#define ALIGN_FEEDBACK_JUDGE_H

#include "core/core.h"

/* align_judge_rank without clearing the judge's message; fn names the
 * public call in messages. */
int align__judge_rank(align_judge *j, const char *prompt, const char *const *responses, int32_t k,
                      int32_t *rank_out, float *win_prob_out, const char *fn);

#endif
