/* options.c — option parsing shared by every subcommand. Options are
 * "--name VALUE" or "--name=VALUE"; flags take no value. Bad usage exits 2
 * with a hint to --help. */
#include "alignctl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void usage_die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", g_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", g_cmd);
    exit(EXIT_USAGE);
}

int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

int opt(int argc, char **argv, int *i, const char *name, const char **v)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *v = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        usage_die("option %s needs a value", name);
    *i += 1;
    *v = argv[*i];
    return 1;
}

int flag(const char *a, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=')
        usage_die("option %s takes no value", name);
    return a[n] == '\0';
}

void unknown_arg(const char *a)
{
    if (a[0] == '-' && a[1] != '\0')
        usage_die("unknown option '%s'", a);
    usage_die("unexpected argument '%s'", a);
}

static long long parse_ll(const char *name, const char *v, long long lo, long long hi)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0' || x < lo || x > hi)
        usage_die("%s expects an integer in [%lld, %lld], got '%s'", name, lo, hi, v);
    return x;
}

int parse_int(const char *name, const char *v, long long lo, long long hi)
{
    return (int)parse_ll(name, v, lo, hi);
}

uint64_t parse_u64(const char *name, const char *v)
{
    char *end;
    errno = 0;
    if (v[0] == '-')
        usage_die("%s expects a non-negative integer, got '%s'", name, v);
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end != '\0')
        usage_die("%s expects a non-negative integer, got '%s'", name, v);
    return (uint64_t)x;
}

float parse_float(const char *name, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end != '\0' || !isfinite(x) || x < lo || x > hi)
        usage_die("%s expects a number in [%g, %g], got '%s'", name, lo, hi, v);
    return (float)x;
}

int parse_compute(const char *v)
{
    if (strcmp(v, "fp32") == 0)
        return ALIGN_COMPUTE_FP32;
    if (strcmp(v, "bf16") == 0)
        return ALIGN_COMPUTE_BF16;
    usage_die("--compute expects fp32 or bf16, got '%s'", v);
}
