/*
 * align_uv.h — libalign on a libuv loop (docs/feedback.md).
 *
 * The only libalign header that includes <uv.h>; align.h needs no libuv.
 * The host owns and runs the loop; libalign never creates a loop or a
 * thread: steps run on libuv's thread pool (uv_queue_work), and their
 * completions and new feedback requests are delivered on the loop thread.
 *
 * Rules:
 *  - Call these functions on the loop's thread (the one running uv_run).
 *  - A call that returns 0 runs its callback exactly once, on the loop
 *    thread; a call that fails never runs it.
 *  - Under -std=c11, Debian's <uv.h> needs -D_POSIX_C_SOURCE=200809L (or any
 *    feature macro exposing pthread_rwlock_t) before the first include.
 */
#ifndef ALIGN_UV_H
#define ALIGN_UV_H

#include "align.h"

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Completion of align_trainer_step_async, on the loop thread: status is what
 * align_trainer_step returned (ALIGN_OK, ALIGN_DONE or an error), or
 * ALIGN_ECANCELED when align_trainer_cancel came before the step started.
 * stats is filled on ALIGN_OK and valid during the call only. */
typedef void (*align_step_cb)(align_trainer *tr, int status, const align_step_stats *stats, void *user_data);

/* Queues one align_trainer_step on libuv's thread pool. Until cb has run,
 * every other align_trainer_* call on tr returns ALIGN_EBUSY (a second
 * step_async too), except align_trainer_request_stop, align_trainer_cancel,
 * align_trainer_errmsg and align_trainer_free. */
ALIGN_API int align_trainer_step_async(align_trainer *tr, uv_loop_t *loop, align_step_cb cb, void *user_data);
/* Cancels the step in flight: a step not started yet never runs (cb gets
 * ALIGN_ECANCELED); a running one stops between micro-batches as with
 * align_trainer_request_stop (cb gets ALIGN_ECANCELED, nothing applied).
 * ALIGN_EMISUSE when no step is in flight. */
ALIGN_API int align_trainer_cancel(align_trainer *tr);

/* A new feedback request, on the loop thread. The callback may answer or
 * cancel it at once, or keep the id and answer later (any thread). */
typedef void (*align_request_cb)(align_journal *j, int64_t id, void *user_data);

/* Delivers every request pending now, then each request submitted later
 * (from any thread), to on_request on loop's thread, oldest first. A request
 * answered, canceled or expired before its delivery is skipped. One watcher
 * per journal (ALIGN_EBUSY). Close the journal on the loop thread, or
 * unwatch it first. */
ALIGN_API int align_journal_watch(align_journal *j, uv_loop_t *loop, align_request_cb on_request,
                                  void *user_data);
/* Stops the deliveries (on the loop thread); no callback runs after it
 * returns. ALIGN_EMISUSE when the journal is not watched. */
ALIGN_API int align_journal_unwatch(align_journal *j);

#ifdef __cplusplus
}
#endif
#endif /* ALIGN_UV_H */
