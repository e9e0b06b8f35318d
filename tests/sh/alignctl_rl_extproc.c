/* alignctl_rl_extproc.c — a driver for alignctl's external-process scorer
 * (examples/alignctl/extproc.c), built and run by tests/sh/alignctl_rl.sh.
 *
 *   extproc_driver CMD TIMEOUT BATCHES N LEN [PAUSE]
 *
 * Starts CMD once and scores BATCHES batches of N pairs through the
 * align_reward_model the CLI uses (align_reward_model_from_callback):
 * prompt "p<b>-<i>", response of LEN bytes ('x' repeated, then "|<i>").
 * Prints every score on stdout ("<batch> <i> <score>"). On a failure prints
 * "error: <extproc message>" and "library: <code name>" on stderr and exits 1.
 * PAUSE: seconds to wait between batches (as a trainer generates between
 * its scoring calls). SIGINT makes the scorer stop waiting (exit 130). After extproc_close it
 * checks that no child is left (not even a zombie): exit 3 otherwise. */
#include "alignctl.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

static volatile sig_atomic_t g_int;
static void on_int(int s)
{
    (void)s;
    g_int = 1;
}
static int interrupted(void)
{
    return g_int;
}

int main(int argc, char **argv)
{
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s CMD TIMEOUT BATCHES N LEN [PAUSE]\n", argv[0]);
        return 2;
    }
    double timeout = atof(argv[2]);
    int batches = atoi(argv[3]), n = atoi(argv[4]);
    size_t len = (size_t)atol(argv[5]);
    double pause = argc == 7 ? atof(argv[6]) : 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_int;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    snprintf(g_cmd, sizeof g_cmd, "extproc_driver");

    extproc *ep;
    if (extproc_start(&ep, argv[1], timeout, interrupted))
        return 1;
    align_reward_model *rm;
    if (extproc_reward_model(ep, &rm)) {
        extproc_close(ep);
        return 1;
    }
    char **prompts = calloc((size_t)n, sizeof *prompts);
    char **responses = calloc((size_t)n, sizeof *responses);
    float *scores = calloc((size_t)n, sizeof *scores);
    int status = 0;
    for (int i = 0; i < n; i++) {
        prompts[i] = malloc(32);
        responses[i] = malloc(len + 32);
        memset(responses[i], 'x', len);
        snprintf(responses[i] + len, 32, "|%d", i);
    }
    for (int b = 0; b < batches && !status; b++) {
        if (b > 0 && pause > 0) {
            struct timespec ts = {(time_t)pause, (long)((pause - (double)(time_t)pause) * 1e9)};
            nanosleep(&ts, NULL);
        }
        for (int i = 0; i < n; i++)
            snprintf(prompts[i], 32, "p%d-%d", b, i);
        int rc = align_reward_model_score(rm, (const char *const *)prompts,
                                          (const char *const *)responses, n, scores);
        if (rc < 0) {
            fprintf(stderr, "error: %s\nlibrary: %s\n", extproc_errmsg(ep), align_err_name(rc));
            status = extproc_failed(ep) == ALIGN_ECANCELED ? 130 : 1;
            break;
        }
        for (int i = 0; i < n; i++)
            printf("%d %d %g\n", b, i, (double)scores[i]);
    }
    align_reward_model_free(rm);
    extproc_close(ep);
    int st;
    pid_t left = waitpid(-1, &st, WNOHANG);
    if (!(left < 0 && errno == ECHILD)) {
        fprintf(stderr, "a child is left after extproc_close (waitpid gave %d)\n", (int)left);
        status = 3;
    }
    for (int i = 0; i < n; i++) {
        free(prompts[i]);
        free(responses[i]);
    }
    free(prompts);
    free(responses);
    free(scores);
    return status;
}
