/*
 * journal.h — the feedback journal's hooks for the libuv layer (private).
 *
 * lib/async/uv.c delivers new requests on a loop thread. The journal knows
 * nothing of libuv: it calls a watcher's functions, with its mutex held,
 * when a request is submitted and when the journal is closed.
 */
#ifndef ALIGN_FEEDBACK_JOURNAL_H
#define ALIGN_FEEDBACK_JOURNAL_H

#include "core/core.h"

typedef struct align__journal_watcher {
    /* A request was submitted (any thread; journal mutex held: no callback
     * into the journal, no blocking). */
    void (*submitted)(void *ctx, int64_t id);
    /* The journal is being closed (mutex held); the watcher must detach. */
    void (*closing)(void *ctx);
    void *ctx;
} align__journal_watcher;

void align__journal_lock(align_journal *j);
void align__journal_unlock(align_journal *j);
/* With the mutex held: installs w (NULL removes it). ALIGN_EBUSY if another
 * watcher is installed. */
int  align__journal_set_watcher(align_journal *j, const align__journal_watcher *w);
/* With the mutex held: the installed watcher's ctx, or NULL. */
void *align__journal_watcher_ctx(const align_journal *j);
/* With the mutex held: is id a pending request? */
int  align__journal_is_pending(const align_journal *j, int64_t id);
/* With the mutex held: number of requests (ids are 1..n). */
int64_t align__journal_size(const align_journal *j);
align__errbuf *align__journal_err(align_journal *j);

#endif /* ALIGN_FEEDBACK_JOURNAL_H */
