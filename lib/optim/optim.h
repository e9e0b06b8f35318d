/* optim.h — private optimizer interface (lib/optim owns it; may add to it). */
#ifndef ALIGN_OPTIM_OPTIM_H
#define ALIGN_OPTIM_OPTIM_H
#include "core/core.h"

/* The model the optimizer updates (borrowed). */
align_model *align__optimizer_model(align_optimizer *o);
#endif
