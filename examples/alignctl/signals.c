/* signals.c — Ctrl-C and SIGTERM during training, checkpoints and the
 * folders --resume accepts.
 *
 * The first SIGINT / SIGTERM asks the trainer to stop
 * (align_trainer_request_stop, async-signal-safe); the training loop then
 * saves a checkpoint and exits 130 (143). Later signals only ask again: the
 * handler stays installed (no SA_RESETHAND) until the checkpoint is written,
 * so a second signal arriving a few milliseconds after the first — a double
 * Ctrl-C, or `timeout -s INT` signalling the process group — cannot kill
 * the process half-way and make it exit 130 without a checkpoint. */
#include "alignctl.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static volatile sig_atomic_t g_signal;
static align_trainer *volatile g_trainer;

static void on_signal(int sig)
{
    int first = g_signal == 0;
    if (first)
        g_signal = sig;
    align_trainer *t = g_trainer;
    if (t)
        align_trainer_request_stop(t);
    if (first) {
        static const char note[] = "\nalignctl: stopping; saving a checkpoint (Ctrl-\\ aborts "
                                   "without one)\n";
        ssize_t w = write(2, note, sizeof note - 1);
        (void)w;
    }
}

void signals_install(void)
{
    g_signal = 0;
    g_trainer = NULL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void signals_attach(align_trainer *tr)
{
    g_trainer = tr;
    if (tr && g_signal) /* caught before the trainer existed */
        align_trainer_request_stop(tr);
}

void signals_restore(void)
{
    g_trainer = NULL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int signals_caught(void)
{
    return (int)g_signal;
}

/* Removes ".latest.PID" links that a process killed between symlink() and
 * rename() left in ckdir (only symbolic links are touched). */
static void remove_stale_latest(const char *ckdir)
{
    DIR *d = opendir(ckdir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".latest.", 8) != 0)
            continue;
        char p[4400];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", ckdir, e->d_name);
        if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode))
            unlink(p);
    }
    closedir(d);
}

int g_ckpt_links = 1;

int checkpoint_save(align_trainer *tr, const char *ckdir, int64_t step, char *dir_out,
                    size_t cap)
{
    if (mkdirs(ckdir) != 0) {
        msg("cannot create checkpoint folder '%s': %s", ckdir, strerror(errno));
        return EXIT_RUNTIME;
    }
    snprintf(dir_out, cap, "%s/step-%lld", ckdir, (long long)step);
    int rc = align_trainer_save(tr, dir_out);
    if (rc < 0)
        return rt_fail(rc, align_trainer_errmsg(tr), "cannot save checkpoint '%s'", dir_out);
    if (!g_ckpt_links)
        return 0; /* --dist: rank 0 wrote it and keeps the 'latest' link */
    char link[4200], tmp[4300], target[64];
    snprintf(link, sizeof link, "%s/latest", ckdir);
    snprintf(tmp, sizeof tmp, "%s/.latest.%ld", ckdir, (long)getpid());
    snprintf(target, sizeof target, "step-%lld", (long long)step);
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
        unlink(tmp);
        msg("warning: could not update '%s' (%s)", link, strerror(errno));
    }
    remove_stale_latest(ckdir);
    return 0;
}

int resume_resolve(const char *dir, char *out, size_t cap)
{
    char p[4200];
    if (!is_dir(dir)) {
        msg("checkpoint folder '%s' not found (give the folder a previous run saved, "
            "e.g. OUT.ckpt or OUT.ckpt/latest)",
            dir);
        return EXIT_RUNTIME;
    }
    snprintf(p, sizeof p, "%s/trainer.json", dir);
    if (file_exists(p)) { /* a checkpoint itself: CKPT/step-N or CKPT/latest */
        snprintf(out, cap, "%s", dir);
        return 0;
    }
    snprintf(p, sizeof p, "%s/latest", dir);
    if (is_dir(p)) { /* the run's checkpoint folder CKPT */
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/')
            n--;
        snprintf(out, cap, "%.*s/latest", (int)n, dir);
        return 0;
    }
    msg("'%s' is not a checkpoint: it has neither trainer.json (a checkpoint folder such as "
        "OUT.ckpt/step-N) nor 'latest' (a run's checkpoint folder such as OUT.ckpt)",
        dir);
    return EXIT_RUNTIME;
}

static int isalnum_ascii(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

void print_resume_hint(int argc, char **argv, const char *dir)
{
    fprintf(stderr, "resume with:\n ");
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--resume") == 0) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--resume=", 9) == 0)
            continue;
        const char *a = argv[i];
        int plain = *a != '\0';
        for (const char *c = a; *c; c++)
            if (!(isalnum_ascii(*c) || strchr("-_./=,:+@%", *c)))
                plain = 0;
        if (plain) {
            fprintf(stderr, " %s", a);
        } else {
            fputs(" '", stderr);
            for (const char *c = a; *c; c++)
                if (*c == '\'')
                    fputs("'\\''", stderr);
                else
                    fputc(*c, stderr);
            fputc('\'', stderr);
        }
    }
    fprintf(stderr, " --resume %s\n", dir);
}
