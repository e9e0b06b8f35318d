/*
 * watch.c — feedback requests delivered on a host's libuv loop
 * (include/align_uv.h, docs/feedback.md).
 *
 * A uv_async_t per watched journal. submit() (any thread) only
 * wakes it (uv_async_send, which coalesces); the async callback, on the loop
 * thread, walks the ids from a cursor — ids are given in submission order —
 * and hands each still-pending request to the host, with the journal's mutex
 * released so the callback may answer at once.
 */
#include "core/core.h"
#include "feedback/journal.h"

#include "align_uv.h"

#include <string.h>

/* ---- feedback requests on the loop --------------------------------------------- */

typedef struct watch {
    uv_async_t async;
    align_journal *j;        /* NULL once detached (loop thread only) */
    align_request_cb cb;
    void *ud;
    int64_t cursor;          /* next id to consider */
} watch;

static void watch_closed(uv_handle_t *h)
{
    align__free(h->data);
}

static void watch_submitted(void *ctx, int64_t id)
{
    (void)id;   /* the cursor finds it */
    watch *w = ctx;
    uv_async_send(&w->async);
}

/* Journal mutex held, loop thread (align_journal_close). */
static void watch_closing(void *ctx)
{
    watch *w = ctx;
    w->j = NULL;
    uv_close((uv_handle_t *)&w->async, watch_closed);
}

static void watch_wake(uv_async_t *h)
{
    watch *w = h->data;
    for (;;) {
        align_journal *j = w->j;   /* the callback may unwatch or close */
        if (!j)
            return;
        align__journal_lock(j);
        int64_t id = 0;
        while (w->cursor <= align__journal_size(j)) {
            int64_t c = w->cursor++;
            if (align__journal_is_pending(j, c)) {
                id = c;
                break;
            }
        }
        align__journal_unlock(j);
        if (!id)
            return;
        w->cb(j, id, w->ud);
    }
}

ALIGN_API int align_journal_watch(align_journal *j, uv_loop_t *loop, align_request_cb on_request, void *user_data)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "align_journal_watch: journal is NULL");
    if (!loop || !on_request)
        return align__error(NULL, ALIGN_EINVAL, "align_journal_watch: loop and on_request are required");
    watch *w = align__calloc(1, sizeof *w);
    if (!w)
        return align__error(NULL, ALIGN_ENOMEM, "out of memory");
    w->j = j;
    w->cb = on_request;
    w->ud = user_data;
    w->cursor = 1;
    w->async.data = w;
    int rc = uv_async_init(loop, &w->async, watch_wake);
    if (rc != 0) {
        align__free(w);
        return align__error(NULL, ALIGN_EINTERNAL, "align_journal_watch: uv_async_init: %s", uv_strerror(rc));
    }
    align__journal_watcher hooks = { watch_submitted, watch_closing, w };
    align__journal_lock(j);
    rc = align__journal_set_watcher(j, &hooks);
    if (rc == ALIGN_OK)
        uv_async_send(&w->async);   /* the requests pending now */
    align__journal_unlock(j);
    if (rc) {
        uv_close((uv_handle_t *)&w->async, watch_closed);
        return align__error(NULL, rc, "align_journal_watch: the journal is already watched");
    }
    return ALIGN_OK;
}

ALIGN_API int align_journal_unwatch(align_journal *j)
{
    if (!j)
        return align__error(NULL, ALIGN_EINVAL, "align_journal_unwatch: journal is NULL");
    align__journal_lock(j);
    watch *w = align__journal_watcher_ctx(j);
    if (w)
        align__journal_set_watcher(j, NULL);
    align__journal_unlock(j);
    if (!w)
        return align__error(NULL, ALIGN_EMISUSE, "align_journal_unwatch: the journal is not watched");
    w->j = NULL;
    uv_close((uv_handle_t *)&w->async, watch_closed);
    return ALIGN_OK;
}
