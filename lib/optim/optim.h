/* optim.h — private optimizer interface (lib/optim owns it; may add to it). */
#ifndef ALIGN_OPTIM_OPTIM_H
#define ALIGN_OPTIM_OPTIM_H
#include "core/core.h"

/* The model the optimizer updates (borrowed). */
align_model *align__optimizer_model(align_optimizer *o);
/* Exchanges the moments and step counters of a and b (same parameter count;
 * ALIGN_EINVAL otherwise, nothing changed). Used by the trainer's resume to
 * install state it loaded and checked in a scratch optimizer. */
int align__optimizer_swap_state(align_optimizer *a, align_optimizer *b);
#endif
