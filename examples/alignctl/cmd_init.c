/* cmd_init.c — alignctl init: a randomly initialised GPT-2 or Llama-family model. */
#include "alignctl.h"

#include <string.h>

static const char *const HELP_INIT =
    "usage: alignctl init --out MODEL.safetensors|FOLDER/ [--arch gpt2|llama] [--preset NAME]\n"
    "                     [options]\n"
    "\n"
    "Creates a randomly initialised model and saves it as safetensors (a path ending in\n"
    "'/' or an existing folder gets model.safetensors + config.json, a Hugging Face folder).\n"
    "\n"
    "  --arch A          gpt2 (default) or llama (RMSNorm, rotary positions, SwiGLU,\n"
    "                    grouped-query attention; also Qwen2 with --qkv-bias)\n"
    "  --preset NAME     nano (L4 H4 C128 V512 T256), tiny (L4 H4 C256 V50304 T1024),\n"
    "                    gpt2-124m (L12 H12 C768 V50257 T1024), smollm2-135m (Llama: L30\n"
    "                    H9 KV3 C576 I1536 V49152 T2048); options below override it\n"
    "  --layers L        transformer blocks\n"
    "  --heads H         attention heads\n"
    "  --width C         embedding width, divisible by --heads\n"
    "  --vocab V         vocabulary size (257 for the byte tokenizer)\n"
    "  --context T       maximum sequence length (GPT-2: position table)\n"
    "  --seed S          initialisation seed (default 1234)\n"
    "  --scalar-head     add a scalar head (reward / value models)\n"
    "  --force           overwrite MODEL if it exists\n"
    "Llama only:\n"
    "  --kv-heads N      key/value heads, dividing --heads (default: --heads)\n"
    "  --intermediate N  SwiGLU MLP width (default 4 x --width)\n"
    "  --rope-theta X    rotary base (default 10000)\n"
    "  --norm-eps X      RMSNorm epsilon (default 1e-6)\n"
    "  --untied-head     an LM head apart from the token embedding\n"
    "  --qkv-bias        biases on the q/k/v projections (Qwen2)\n"
    "Without --preset the library defaults apply (L4 H4 C128 V50257 T1024).\n";

int cmd_init(int argc, char **argv)
{
    const char *out = NULL, *v;
    const char *preset = NULL, *arch = NULL;
    int layers = 0, heads = 0, width = 0, vocab = 0, context = 0, force = 0, scalar = 0;
    int kv_heads = 0, intermediate = 0, untied = 0, qkv_bias = 0;
    float rope_theta = 0.0f, norm_eps = 0.0f;
    const char *llama_opt = NULL; /* the first Llama-only option given */
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
            if (strcmp(v, "gpt2") != 0 && strcmp(v, "llama") != 0)
                usage_die("unknown architecture '%s' (choose gpt2 or llama)", v);
            arch = v;
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
        } else if (opt(argc, argv, &i, "--kv-heads", &v)) {
            kv_heads = parse_int("--kv-heads", v, 1, 256);
            llama_opt = llama_opt ? llama_opt : "--kv-heads";
        } else if (opt(argc, argv, &i, "--intermediate", &v)) {
            intermediate = parse_int("--intermediate", v, 1, 1 << 20);
            llama_opt = llama_opt ? llama_opt : "--intermediate";
        } else if (opt(argc, argv, &i, "--rope-theta", &v)) {
            /* the library refuses <= 1 with its reason */
            rope_theta = parse_float("--rope-theta", v, 0, 1e30);
            if (rope_theta == 0.0f)
                usage_die("--rope-theta must be > 1, got '%s'", v);
            llama_opt = llama_opt ? llama_opt : "--rope-theta";
        } else if (opt(argc, argv, &i, "--norm-eps", &v)) {
            norm_eps = parse_float("--norm-eps", v, 0, 1);
            if (norm_eps == 0.0f)
                usage_die("--norm-eps must be in (0, 1), got '%s'", v);
            llama_opt = llama_opt ? llama_opt : "--norm-eps";
        } else if (flag(a, "--untied-head")) {
            untied = 1;
            llama_opt = llama_opt ? llama_opt : "--untied-head";
        } else if (flag(a, "--qkv-bias")) {
            qkv_bias = 1;
            llama_opt = llama_opt ? llama_opt : "--qkv-bias";
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
    int llama_preset = preset && strcmp(preset, "smollm2-135m") == 0;
    if (!arch)
        arch = llama_preset ? "llama" : "gpt2";
    int llama = strcmp(arch, "llama") == 0;
    if (!llama && llama_preset)
        usage_die("preset smollm2-135m is a Llama-family model (use --arch llama)");
    if (!llama && llama_opt)
        usage_die("%s is a Llama-family option; GPT-2 has no such setting (use --arch llama)",
                  llama_opt);
    align_model_params p;
    ALIGN_MODEL_DEFAULT_PARAMS(&p);
    p.arch = llama ? ALIGN_ARCH_LLAMA : ALIGN_ARCH_GPT2;
    if (preset) {
        if (strcmp(preset, "nano") == 0) {
            p.n_layer = 4, p.n_head = 4, p.n_embd = 128, p.vocab_size = 512, p.max_seq_len = 256;
        } else if (strcmp(preset, "tiny") == 0) {
            p.n_layer = 4, p.n_head = 4, p.n_embd = 256, p.vocab_size = 50304;
            p.max_seq_len = 1024;
        } else if (strcmp(preset, "gpt2-124m") == 0) {
            p.n_layer = 12, p.n_head = 12, p.n_embd = 768, p.vocab_size = 50257;
            p.max_seq_len = 1024;
        } else if (llama_preset) {
            /* SmolLM2-135M's shape (tied embeddings) */
            p.n_layer = 30, p.n_head = 9, p.n_kv_head = 3, p.n_embd = 576;
            p.intermediate_size = 1536, p.vocab_size = 49152, p.max_seq_len = 2048;
            p.rope_theta = 100000.0f, p.norm_eps = 1e-5f;
        } else {
            usage_die("unknown preset '%s' (choose nano, tiny, gpt2-124m or smollm2-135m)", preset);
        }
    }
    if (layers) p.n_layer = layers;
    if (heads) p.n_head = heads;
    if (width) p.n_embd = width;
    if (vocab) p.vocab_size = vocab;
    if (context) p.max_seq_len = context;
    if (have_seed) p.seed = seed;
    if (scalar) p.flags |= ALIGN_MODEL_SCALAR_HEAD;
    if (kv_heads) p.n_kv_head = kv_heads;
    if (intermediate) p.intermediate_size = intermediate;
    if (rope_theta != 0.0f) p.rope_theta = rope_theta;
    if (norm_eps != 0.0f) p.norm_eps = norm_eps;
    if (untied) p.flags |= ALIGN_MODEL_UNTIED_HEAD;
    if (qkv_bias) p.flags |= ALIGN_MODEL_QKV_BIAS;
    if (p.n_embd % p.n_head != 0)
        usage_die("--width %d is not divisible by --heads %d", (int)p.n_embd, (int)p.n_head);
    if (!force && file_exists(out)) {
        msg("'%s' exists; use --force to overwrite it", out);
        return EXIT_RUNTIME;
    }
    blas_quiet();
    align_model *m = NULL;
    /* the library checks the Llama settings (kv heads dividing the heads,
     * an even head size, ...) and says what is wrong */
    int rc = align_model_create(&m, &p);
    if (rc < 0)
        return rt_fail(rc, align_last_errmsg(), "cannot create the model");
    rc = align_model_save(m, out);
    if (rc < 0) {
        int r = rt_fail(rc, align_model_errmsg(m), "cannot save the model to '%s'", out);
        align_model_free(m);
        return r;
    }
    align_model_params c;
    c.struct_size = sizeof c;
    if (align_model_config(m, &c) < 0)
        c = p;
    if (llama)
        printf("initialised llama: layers %d, heads %d, kv heads %d, width %d, mlp width %d, "
               "vocab %d, context %d, rope theta %g, norm eps %g%s%s%s\n",
               (int)c.n_layer, (int)c.n_head, (int)c.n_kv_head, (int)c.n_embd,
               (int)c.intermediate_size, (int)c.vocab_size, (int)c.max_seq_len,
               (double)c.rope_theta, (double)c.norm_eps,
               (c.flags & ALIGN_MODEL_UNTIED_HEAD) ? ", untied head" : "",
               (c.flags & ALIGN_MODEL_QKV_BIAS) ? ", qkv bias" : "",
               scalar ? ", scalar head" : "");
    else
        printf("initialised gpt2: layers %d, heads %d, width %d, vocab %d, context %d%s\n",
               (int)c.n_layer, (int)c.n_head, (int)c.n_embd, (int)c.vocab_size, (int)c.max_seq_len,
               scalar ? ", scalar head" : "");
    printf("parameters: %lld\nsaved: %s\n", (long long)align_model_num_params(m), out);
    align_model_free(m);
    return EXIT_OK;
}
