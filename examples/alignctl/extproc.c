/* extproc.c — an external program as the reward: `--reward-cmd "PROGRAM ARGS"`.
 *
 * The command runs ONCE, under /bin/sh -c, for the whole training run. Its
 * stdin and stdout are pipes; stderr is alignctl's. Protocol (docs/cli/grpo.md):
 * for every (prompt, response) pair to score alignctl writes one line
 *     {"prompt": "...", "response": "..."}
 * and the program answers, in the same order, one line
 *     {"score": 0.75}
 * (other keys are ignored). A batch is written and read at the same time
 * (poll on both pipes), so a batch larger than the pipe buffers cannot
 * deadlock; the program only has to answer each line before it is done
 * and flush its output (PYTHONUNBUFFERED=1 is set for Python scorers).
 *
 * Failures — the program exits or closes its output, an answer is not such
 * an object (not JSON, no numeric "score", NaN or infinity), no answer for
 * --reward-timeout seconds, output nobody asked for — give a message naming
 * the command and the offending line (extproc_errmsg) and a negative
 * ALIGN_E* code, which the library turns into a failed step with nothing
 * applied. After a failure the scorer is stopped and every later call fails
 * with the same message.
 *
 * The child runs in its own process group: a Ctrl-C on the terminal reaches
 * only alignctl, which stops at the next step boundary, saves its checkpoint
 * and then ends the scorer (extproc_close: EOF on its stdin, then SIGTERM,
 * then SIGKILL to the group) and reaps it. Calls are not thread-safe: the
 * library calls a reward callback from one thread at a time. */
#include "alignctl.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { MAX_ANSWER = 1 << 20, SNIP = 160 };

struct extproc {
    char *command;
    double timeout;     /* seconds without an answer before giving up */
    pid_t pid;          /* 0 once reaped */
    pid_t pgid;         /* its process group (its pid at start) */
    int status;         /* wait status once reaped */
    int in_fd, out_fd;  /* its stdin (we write), its stdout (we read) */
    int64_t lines;      /* answer lines read over the process's life */
    int64_t requests;   /* requests written over the process's life */
    int failed;         /* ALIGN_E* of the failure that stopped it, 0 if fine */
    char *rbuf;         /* bytes read but not yet consumed as a line */
    size_t rlen, rcap;
    char err[1024];
    int (*interrupted)(void);
};

/* ---- helpers -------------------------------------------------------------- */

/* A short, printable excerpt of s[0..n): control bytes escaped, cut at SNIP. */
static void snip(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= SNIP) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static int fail(extproc *ep, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void stop_child(extproc *ep, int gentle);

/* Records the first failure, stops the program and returns rc. */
static int fail(extproc *ep, int rc, const char *fmt, ...)
{
    if (!ep->failed) {
        char cmd[SNIP * 4 + 16];
        snip(cmd, sizeof cmd, ep->command, strlen(ep->command));
        int n = snprintf(ep->err, sizeof ep->err, "reward command '%s' ", cmd);
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && (size_t)n < sizeof ep->err)
            vsnprintf(ep->err + n, sizeof ep->err - (size_t)n, fmt, ap);
        va_end(ap);
        ep->failed = rc;
    }
    stop_child(ep, 0);
    return ep->failed;
}

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return -1;
    fl = fcntl(fd, F_GETFL);
    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
}

/* Waits up to `secs` for the child to exit; 1 once reaped. */
static int reap(extproc *ep, double secs)
{
    double end = now_sec() + secs;
    for (;;) {
        int st;
        pid_t r = waitpid(ep->pid, &st, WNOHANG);
        if (r == ep->pid || (r < 0 && errno == ECHILD)) {
            ep->status = r == ep->pid ? st : 0;
            ep->pid = 0;
            return 1;
        }
        if (r < 0 && errno != EINTR)
            return 0;
        if (now_sec() >= end)
            return 0;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Reaps what is left of the program's process group (with the subreaper
 * set, the program under `sh -c` becomes our child when sh dies first).
 * 1 once none of it is left. */
static int reap_group(extproc *ep, double secs)
{
    double end = now_sec() + secs;
    for (;;) {
        int st;
        pid_t r = waitpid(-ep->pgid, &st, WNOHANG);
        if (r > 0) {
            if (r == ep->pid) {
                ep->status = st;
                ep->pid = 0;
            }
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) { /* ECHILD: nothing of the group is our child any more */
            ep->pid = 0;
            return 1;
        }
        if (now_sec() >= end)
            return 0;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Ends the program: gentle = close its stdin and give it a moment to exit
 * on its own first. Then SIGTERM, then SIGKILL, to its whole process group,
 * and every process of it that is our child is reaped. */
static void stop_child(extproc *ep, int gentle)
{
    if (ep->in_fd >= 0) {
        close(ep->in_fd);
        ep->in_fd = -1;
    }
    if (ep->pgid > 0) {
        if (!(gentle && reap_group(ep, 2.0))) {
            kill(-ep->pgid, SIGTERM);
            if (!reap_group(ep, 1.0)) {
                kill(-ep->pgid, SIGKILL);
                reap_group(ep, 1e9);
            }
        }
        ep->pgid = 0;
    }
    if (ep->out_fd >= 0) {
        close(ep->out_fd);
        ep->out_fd = -1;
    }
}

/* How the child ended, for messages: "exited with status 1". Reaps it if it
 * is about to exit (it closed its output). */
static void describe_end(extproc *ep, char *buf, size_t cap)
{
    if (ep->pid > 0)
        reap(ep, 1.0);
    if (ep->pid > 0)
        snprintf(buf, cap, "closed its output (still running)");
    else if (WIFEXITED(ep->status))
        snprintf(buf, cap, "exited with status %d%s", WEXITSTATUS(ep->status),
                 WEXITSTATUS(ep->status) == 127   ? " (command not found?)"
                 : WEXITSTATUS(ep->status) == 126 ? " (not executable?)"
                                                  : "");
    else if (WIFSIGNALED(ep->status))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(ep->status),
                 strsignal(WTERMSIG(ep->status)));
    else
        snprintf(buf, cap, "ended");
}

/* ---- start and close -------------------------------------------------------- */

int extproc_start(extproc **out, const char *command, double timeout_sec,
                  int (*interrupted)(void))
{
    *out = NULL;
    extproc *ep = calloc(1, sizeof *ep);
    char **envp = NULL;
    int in[2] = {-1, -1}, outp[2] = {-1, -1};
    if (!ep || !(ep->command = strdup(command))) {
        msg("out of memory");
        free(ep);
        return EXIT_RUNTIME;
    }
    ep->timeout = timeout_sec;
    ep->in_fd = ep->out_fd = -1;
    ep->interrupted = interrupted;
    /* Everything the child needs is prepared before fork: other threads may
     * hold locks, so the child only calls async-signal-safe functions. */
    size_t ne = 0;
    int has_pyunbuf = 0;
    while (environ && environ[ne]) {
        if (strncmp(environ[ne], "PYTHONUNBUFFERED=", 17) == 0)
            has_pyunbuf = 1;
        ne++;
    }
    envp = malloc((ne + 2) * sizeof *envp);
    if (!envp)
        goto oom;
    for (size_t i = 0; i < ne; i++)
        envp[i] = environ[i];
    envp[ne] = has_pyunbuf ? NULL : (char *)"PYTHONUNBUFFERED=1";
    envp[ne + 1] = NULL;
    char *argv[] = {(char *)"sh", (char *)"-c", ep->command, NULL};
    /* Writing to a scorer that died must be an EPIPE error, not our death. */
    signal(SIGPIPE, SIG_IGN);
#ifdef PR_SET_CHILD_SUBREAPER
    /* sh -c runs the program as its child: should sh die first, the
     * program is reparented to us (not to init) and reaped by stop_child */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
#endif
    if (pipe(in) != 0 || pipe(outp) != 0 || set_flags(in[1]) != 0 || set_flags(outp[0]) != 0 ||
        fcntl(in[0], F_SETFD, FD_CLOEXEC) != 0 || fcntl(outp[1], F_SETFD, FD_CLOEXEC) != 0) {
        msg("cannot start the reward command '%s': pipe: %s", command, strerror(errno));
        goto fail;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        msg("cannot start the reward command '%s': fork: %s", command, strerror(errno));
        goto fail;
    }
    if (pid == 0) { /* the child: async-signal-safe calls only */
        setpgid(0, 0);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGPIPE, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (dup2(in[0], 0) < 0 || dup2(outp[1], 1) < 0)
            _exit(127);
        execve("/bin/sh", argv, envp);
        _exit(127);
    }
    setpgid(pid, pid); /* also here, so kill(-pid) works whoever runs first */
    close(in[0]);
    close(outp[1]);
    free(envp);
    ep->pid = ep->pgid = pid;
    ep->in_fd = in[1];
    ep->out_fd = outp[0];
    *out = ep;
    return 0;
oom:
    msg("out of memory");
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (outp[i] >= 0)
            close(outp[i]);
    }
    free(envp);
    free(ep->command);
    free(ep);
    return EXIT_RUNTIME;
}

void extproc_close(extproc *ep)
{
    if (!ep)
        return;
    stop_child(ep, 1);
    free(ep->rbuf);
    free(ep->command);
    free(ep);
}

const char *extproc_errmsg(const extproc *ep)
{
    return ep && ep->failed ? ep->err : "";
}

int extproc_failed(const extproc *ep)
{
    return ep ? ep->failed : 0;
}

/* ---- scoring ---------------------------------------------------------------- */

/* One answer line s[0..n) (without '\n'): 0 and *score, or a failure. */
static int parse_answer(extproc *ep, const char *s, size_t n, int32_t k, int32_t total,
                        float *score)
{
    char ex[SNIP * 4 + 16];
    if (n > 0 && s[n - 1] == '\r')
        n--;
    snip(ex, sizeof ex, s, n);
    json_error_t je;
    json_t *v = json_loadb(s, n, 0, &je);
    const char *why = NULL;
    double x = 0;
    if (!v) {
        /* Python's json.dumps writes NaN / Infinity, which JSON does not have */
        if (n > 0 && (strstr(ex, "NaN") || strstr(ex, "Infinity") || strstr(je.text, "overflow")))
            why = "a non-finite score (NaN or infinity)";
        else
            why = n == 0 ? "an empty line" : "not JSON";
    } else {
        json_t *sc = json_object_get(v, "score");
        if (!json_is_object(v))
            why = "not a JSON object";
        else if (!sc)
            why = "an object without \"score\"";
        else if (!json_is_number(sc))
            why = "a \"score\" that is not a number";
        else if (!isfinite(x = json_number_value(sc)) || fabs(x) > FLT_MAX)
            why = "a score that is not a finite float";
    }
    json_decref(v);
    if (why)
        return fail(ep, ALIGN_EFORMAT,
                    "gave %s as answer %d of %d (its output line %lld): '%s' (each answer "
                    "must be one line {\"score\": <finite number>}; log to stderr, not stdout)",
                    why, (int)k + 1, (int)total, (long long)ep->lines, ex);
    *score = (float)x;
    return 0;
}

/* The request line for pair i, in *buf. */
static int make_request(const char *prompt, const char *response, char **buf, size_t *len)
{
    json_t *o = json_object();
    if (!o)
        return -1;
    json_put(o, "prompt", json_bytes(prompt, strlen(prompt)));
    json_put(o, "response", json_bytes(response, strlen(response)));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s)
        return -1;
    size_t n = strlen(s);
    char *b = realloc(s, n + 2);
    if (!b) {
        free(s);
        return -1;
    }
    b[n] = '\n';
    b[n + 1] = '\0';
    *buf = b;
    *len = n + 1;
    return 0;
}

/* Reads what is available into rbuf. 1 data read, 0 nothing (EAGAIN), -1 EOF,
 * -2 error. */
static int fill(extproc *ep)
{
    if (ep->rcap - ep->rlen < 4096) {
        size_t cap = ep->rcap ? ep->rcap * 2 : 8192;
        char *b = realloc(ep->rbuf, cap);
        if (!b)
            return -2;
        ep->rbuf = b;
        ep->rcap = cap;
    }
    ssize_t r = read(ep->out_fd, ep->rbuf + ep->rlen, ep->rcap - ep->rlen);
    if (r > 0) {
        ep->rlen += (size_t)r;
        return 1;
    }
    if (r == 0)
        return -1;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -2;
}

int extproc_score(extproc *ep, const char *const *prompts, const char *const *responses,
                  int32_t n, float *scores)
{
    if (ep->failed)
        return ep->failed;
    char what[160], ex[SNIP * 4 + 16];
    /* Output left from before this batch is an answer nobody asked for. */
    if (ep->rlen == 0) {
        struct pollfd p = {ep->out_fd, POLLIN, 0};
        if (poll(&p, 1, 0) > 0) {
            int f = fill(ep);
            if (f == -1 || f == -2) {
                describe_end(ep, what, sizeof what);
                return fail(ep, ALIGN_EIO, "%s between batches (after %lld answers)", what,
                            (long long)ep->lines);
            }
        }
    }
    if (ep->rlen > 0) {
        const char *e = memchr(ep->rbuf, '\n', ep->rlen);
        snip(ex, sizeof ex, ep->rbuf, e ? (size_t)(e - ep->rbuf) : ep->rlen);
        return fail(ep, ALIGN_EFORMAT,
                    "wrote output nobody asked for (after its answer line %lld): '%s' (one "
                    "answer line per request; log to stderr, not stdout)",
                    (long long)ep->lines, ex);
    }
    int32_t sent = 0, answered = 0;
    char *req = NULL;
    size_t req_len = 0, req_off = 0;
    int rc = 0;
    double deadline = now_sec() + ep->timeout;
    while (answered < n) {
        if (ep->interrupted && ep->interrupted()) {
            rc = fail(ep, ALIGN_ECANCELED, "stopped: alignctl was interrupted");
            break;
        }
        if (!req && sent < n) {
            if (make_request(prompts[sent], responses[sent], &req, &req_len) != 0) {
                rc = fail(ep, ALIGN_ENOMEM, "could not be sent request %d: out of memory",
                          (int)sent + 1);
                break;
            }
            req_off = 0;
        }
        double left = deadline - now_sec();
        if (left <= 0) {
            rc = fail(ep, ALIGN_EIO,
                      "gave no answer for %g s (--reward-timeout): %d of %d answers of this "
                      "batch received, %d requests sent; does it flush its output after "
                      "each line?",
                      ep->timeout, (int)answered, (int)n, (int)sent);
            break;
        }
        struct pollfd p[2] = {{ep->out_fd, POLLIN, 0}, {ep->in_fd, POLLOUT, 0}};
        int np = req ? 2 : 1;
        int wait_ms = left > 0.2 ? 200 : (int)(left * 1000) + 1;
        int pr = poll(p, (nfds_t)np, wait_ms);
        if (pr < 0 && errno != EINTR) {
            rc = fail(ep, ALIGN_EIO, "could not be polled: %s", strerror(errno));
            break;
        }
        if (pr <= 0)
            continue;
        if (p[0].revents) {
            int f = fill(ep);
            if (f == -2) {
                rc = fail(ep, ALIGN_EIO, "could not be read: %s", strerror(errno));
                break;
            }
            if (f == -1) {
                describe_end(ep, what, sizeof what);
                snip(ex, sizeof ex, prompts[answered], strlen(prompts[answered]));
                rc = fail(ep, ALIGN_EIO,
                          "%s before answering request %d of %d of this batch (prompt '%s')",
                          what, (int)answered + 1, (int)n, ex);
                break;
            }
            /* every complete line is an answer */
            size_t off = 0;
            for (;;) {
                char *e = memchr(ep->rbuf + off, '\n', ep->rlen - off);
                if (!e)
                    break;
                size_t len = (size_t)(e - (ep->rbuf + off));
                ep->lines++;
                if (answered >= sent) {
                    snip(ex, sizeof ex, ep->rbuf + off, len);
                    rc = fail(ep, ALIGN_EFORMAT,
                              "wrote an answer with no request pending (its output line "
                              "%lld; %d requests of this batch sent, %d answered): '%s' (one "
                              "answer line per request; log to stderr, not stdout)",
                              (long long)ep->lines, (int)sent, (int)answered, ex);
                    break;
                }
                if ((rc = parse_answer(ep, ep->rbuf + off, len, answered, n, &scores[answered])))
                    break;
                answered++;
                deadline = now_sec() + ep->timeout;
                off += len + 1;
            }
            if (rc)
                break;
            memmove(ep->rbuf, ep->rbuf + off, ep->rlen - off);
            ep->rlen -= off;
            if (ep->rlen > MAX_ANSWER) {
                snip(ex, sizeof ex, ep->rbuf, ep->rlen);
                rc = fail(ep, ALIGN_EFORMAT, "wrote an answer line longer than %d bytes: '%s'",
                          MAX_ANSWER, ex);
                break;
            }
            if (answered == n && ep->rlen > 0) {
                snip(ex, sizeof ex, ep->rbuf, ep->rlen);
                rc = fail(ep, ALIGN_EFORMAT,
                          "wrote more than the %d answers of this batch: '%s' (log to "
                          "stderr, not stdout)",
                          (int)n, ex);
                break;
            }
        }
        if (req && np == 2 && p[1].revents) {
            ssize_t w = write(ep->in_fd, req + req_off, req_len - req_off);
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                /* EPIPE: it closed its input or ended; say how */
                int e = errno;
                describe_end(ep, what, sizeof what);
                rc = fail(ep, ALIGN_EIO, "could not be sent request %d of %d: %s (it %s)",
                          (int)sent + 1, (int)n, strerror(e), what);
                break;
            }
            if (w > 0 && (req_off += (size_t)w) == req_len) {
                free(req);
                req = NULL;
                sent++;
                ep->requests++;
            }
        }
    }
    free(req);
    return rc;
}

int extproc_score_fn(const char *const *prompts, const char *const *responses, int32_t n,
                     float *scores, void *user_data)
{
    return extproc_score(user_data, prompts, responses, n, scores);
}

int extproc_reward_model(extproc *ep, align_reward_model **out)
{
    int rc = align_reward_model_from_callback(out, extproc_score_fn, ep);
    if (rc < 0)
        return rt_fail(rc, align_last_errmsg(), "cannot wrap the reward command");
    return 0;
}
