/* main.c — alignctl's entry point: the command table (commands.def), help,
 * --version, and dispatch to cmd_NAME. */
#include "alignctl.h"

#include <string.h>

static const struct command {
    const char *name;
    cmd_fn fn;
    const char *summary;
} COMMANDS[] = {
#define CMD(name, summary) {#name, cmd_##name, summary},
#include "commands.def"
#undef CMD
};
enum { N_COMMANDS = sizeof COMMANDS / sizeof COMMANDS[0] };

static void main_help(FILE *f)
{
    fputs("usage: alignctl COMMAND [options]      (alignctl COMMAND --help for details)\n"
          "\n"
          "commands:\n",
          f);
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fputs("\n"
          "Exit status: 0 ok, 1 error, 2 bad usage, 130 interrupted (checkpoint saved).\n"
          "Environment: OPENBLAS_CORETYPE (alignctl sets it itself and re-runs when libalign\n"
          "reports that OpenBLAS runs slow fallback kernels on this CPU), ALIGNCTL_NO_REEXEC=1\n"
          "to prevent that. Documentation: docs/cli/README.md\n",
          f);
}

static const struct command *find(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(name, COMMANDS[i].name) == 0)
            return &COMMANDS[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        if (strcmp(argv[1], "help") == 0 && argc > 2) {
            const struct command *c = find(argv[2]);
            if (!c) {
                fprintf(stderr, "alignctl: unknown command '%s'\n", argv[2]);
                return EXIT_USAGE;
            }
            char *hargv[] = {argv[0], argv[2], (char *)"--help", NULL};
            snprintf(g_cmd, sizeof g_cmd, "alignctl %s", c->name);
            return c->fn(3, hargv);
        }
        main_help(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("alignctl (libalign %s)\ncompute: %s\n", align_version_string(), align_compute_info());
        return EXIT_OK;
    }
    log_install();
    const struct command *c = find(argv[1]);
    if (c) {
        snprintf(g_cmd, sizeof g_cmd, "alignctl %s", c->name);
        return c->fn(argc, argv);
    }
    fprintf(stderr, "alignctl: unknown command '%s' (commands:", argv[1]);
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(stderr, "%s %s", i ? "," : "", COMMANDS[i].name);
    fprintf(stderr, ")\nTry 'alignctl --help'.\n");
    return EXIT_USAGE;
}
