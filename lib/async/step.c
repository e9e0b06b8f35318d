/*
 * step.c — trainer steps on a host's libuv loop (include/align_uv.h,
 * docs/feedback.md).
 *
 * A library-allocated request wraps a uv_work_t. work_cb runs the synchronous
 * step on libuv's thread pool; after_work_cb (loop thread) maps UV_ECANCELED
 * to ALIGN_ECANCELED, clears the trainer's busy flag, runs the host's
 * callback once and frees the request, then the trainer too if the host freed
 * it meanwhile (the free was deferred, as sqlite3_close_v2 does).
 */
#include "core/core.h"
#include "train/trainer.h"

#include "align_uv.h"

#include <stdatomic.h>

/* ---- trainer steps on the thread pool ----------------------------------------- */

typedef struct step_req {
    uv_work_t work;
    align_trainer *tr;
    align_step_cb cb;
    void *ud;
    align_step_stats stats;
    int status;
    int canceled;   /* align_trainer_cancel raised the stop flag */
} step_req;

_Thread_local align_trainer *align__trainer_async_self;

static void step_work(uv_work_t *w)
{
    step_req *r = w->data;
    align__trainer_async_self = r->tr;
    r->status = align__trainer_step(r->tr, &r->stats);
    align__trainer_async_self = NULL;
}

static void step_after(uv_work_t *w, int status)
{
    step_req *r = w->data;
    align_trainer *tr = r->tr;
    int st = r->status;
    if (status == UV_ECANCELED)
        st = align__error(&tr->err, ALIGN_ECANCELED, "step canceled before it started (align_trainer_cancel)");
    if (r->canceled)
        atomic_store(&tr->stop, 0);   /* a stop the step finished before seeing */
    tr->async = NULL;
    atomic_store(&tr->busy, 0);
    r->cb(tr, st, &r->stats, r->ud);
    if (tr->free_pending)
        align__trainer_destroy(tr);
    align__free(r);
}

ALIGN_API int align_trainer_step_async(align_trainer *tr, uv_loop_t *loop, align_step_cb cb, void *user_data)
{
    if (!tr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_step_async: trainer is NULL");
    if (!loop || !cb)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_step_async: loop and cb are required");
    if (tr->free_pending)
        return align__error(NULL, ALIGN_EMISUSE, "align_trainer_step_async: the trainer was freed");
    int expected = 0;
    if (!atomic_compare_exchange_strong(&tr->busy, &expected, 1))
        return align__error(NULL, ALIGN_EBUSY, "align_trainer_step_async: a step is already in flight");
    step_req *r = align__calloc(1, sizeof *r);
    if (!r) {
        atomic_store(&tr->busy, 0);
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    }
    r->tr = tr;
    r->cb = cb;
    r->ud = user_data;
    r->stats.struct_size = sizeof r->stats;
    r->work.data = r;
    align__error_clear(&tr->err);
    tr->async = r;
    int rc = uv_queue_work(loop, &r->work, step_work, step_after);
    if (rc != 0) {
        tr->async = NULL;
        atomic_store(&tr->busy, 0);
        align__free(r);
        return align__error(&tr->err, ALIGN_EINTERNAL, "align_trainer_step_async: uv_queue_work: %s",
                            uv_strerror(rc));
    }
    return ALIGN_OK;
}

ALIGN_API int align_trainer_cancel(align_trainer *tr)
{
    if (!tr)
        return align__error(NULL, ALIGN_EINVAL, "align_trainer_cancel: trainer is NULL");
    step_req *r = tr->async;
    if (!atomic_load(&tr->busy) || !r)
        return align__error(NULL, ALIGN_EMISUSE, "align_trainer_cancel: no step in flight");
    if (uv_cancel((uv_req_t *)&r->work) == 0)
        return ALIGN_OK;   /* not started: after_work gets UV_ECANCELED */
    r->canceled = 1;
    return align_trainer_request_stop(tr);
}

