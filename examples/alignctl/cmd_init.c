/* cmd_init.c — alignctl init: a randomly initialised GPT-2-style model. */
#include "alignctl.h"

#include <string.h>

static const char *const HELP_INIT =
    "usage: alignctl init --out MODEL.safetensors [--preset NAME] [options]\n"
    "\n"
    "Creates a randomly initialised GPT-2-style model and saves it as safetensors.\n"
    "\n"
    "  --preset NAME     nano (L4 H4 C128 V512 T256), tiny (L4 H4 C256 V50304 T1024),\n"
    "                    gpt2-124m (L12 H12 C768 V50257 T1024); options below override it\n"
    "  --arch gpt2       architecture (only gpt2)\n"
    "  --layers L        transformer blocks\n"
    "  --heads H         attention heads\n"
    "  --width C         embedding width, divisible by --heads\n"
    "  --vocab V         vocabulary size (257 for the byte tokenizer)\n"
    "  --context T       maximum sequence length (position table)\n"
    "  --seed S          initialisation seed (default 1234)\n"
    "  --scalar-head     add a scalar head (reward / value models)\n"
    "  --force           overwrite MODEL if it exists\n"
    "Without --preset the library defaults apply (L4 H4 C128 V50257 T1024).\n";

int cmd_init(int argc, char **argv)
{
    const char *out = NULL, *v;
    const char *preset = NULL;
    int layers = 0, heads = 0, width = 0, vocab = 0, context = 0, force = 0, scalar = 0;
    uint64_t seed = 0;
    int have_seed = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_INIT, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--out", &v)) {
            out = v;
        } else if (opt(argc, argv, &i, "--preset", &v)) {
            preset = v;
        } else if (opt(argc, argv, &i, "--arch", &v)) {
            if (strcmp(v, "gpt2") != 0)
                usage_die("unknown architecture '%s' (only 'gpt2' is supported)", v);
        } else if (opt(argc, argv, &i, "--layers", &v)) {
            layers = parse_int("--layers", v, 1, 256);
        } else if (opt(argc, argv, &i, "--heads", &v)) {
            heads = parse_int("--heads", v, 1, 256);
        } else if (opt(argc, argv, &i, "--width", &v)) {
            width = parse_int("--width", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--vocab", &v)) {
            vocab = parse_int("--vocab", v, 1, 1 << 24);
        } else if (opt(argc, argv, &i, "--context", &v)) {
            context = parse_int("--context", v, 1, 1 << 20);
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            seed = parse_u64("--seed", v);
            have_seed = 1;
        } else if (flag(a, "--scalar-head")) {
            scalar = 1;
        } else if (flag(a, "--force")) {
            force = 1;
        } else {
            unknown_arg(a);
        }
    }
    if (!out)
        usage_die("--out MODEL.safetensors is required");
    align_model_params p;
    ALIGN_MODEL_DEFAULT_PARAMS(&p);
    p.arch = ALIGN_ARCH_GPT2;
    if (preset) {
        if (strcmp(preset, "nano") == 0) {
            p.n_layer = 4, p.n_head = 4, p.n_embd = 128, p.vocab_size = 512, p.max_seq_len = 256;
        } else if (strcmp(preset, "tiny") == 0) {
            p.n_layer = 4, p.n_head = 4, p.n_embd = 256, p.vocab_size = 50304;
            p.max_seq_len = 1024;
        } else if (strcmp(preset, "gpt2-124m") == 0) {
            p.n_layer = 12, p.n_head = 12, p.n_embd = 768, p.vocab_size = 50257;
            p.max_seq_len = 1024;
        } else {
            usage_die("unknown preset '%s' (choose nano, tiny or gpt2-124m)", preset);
        }
    }
    if (layers) p.n_layer = layers;
    if (heads) p.n_head = heads;
    if (width) p.n_embd = width;
    if (vocab) p.vocab_size = vocab;
    if (context) p.max_seq_len = context;
    if (have_seed) p.seed = seed;
    if (scalar) p.flags |= ALIGN_MODEL_SCALAR_HEAD;
    if (p.n_embd % p.n_head != 0)
        usage_die("--width %d is not divisible by --heads %d", (int)p.n_embd, (int)p.n_head);
    if (!force && file_exists(out)) {
        msg("'%s' exists; use --force to overwrite it", out);
        return EXIT_RUNTIME;
    }
    blas_quiet();
    align_model *m = NULL;
    int rc = align_model_create(&m, &p);
    if (rc < 0)
        return rt_fail(rc, align_last_errmsg(), "cannot create the model");
    rc = align_model_save(m, out);
    if (rc < 0) {
        int r = rt_fail(rc, align_model_errmsg(m), "cannot save the model to '%s'", out);
        align_model_free(m);
        return r;
    }
    printf("initialised gpt2: layers %d, heads %d, width %d, vocab %d, context %d%s\n"
           "parameters: %lld\nsaved: %s\n",
           (int)p.n_layer, (int)p.n_head, (int)p.n_embd, (int)p.vocab_size, (int)p.max_seq_len,
           scalar ? ", scalar head" : "", (long long)align_model_num_params(m), out);
    align_model_free(m);
    return EXIT_OK;
}

