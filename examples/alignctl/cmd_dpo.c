/* cmd_dpo.c — alignctl dpo and alignctl kto: preference optimisation; the
 * training loop (progress, evaluation, --metrics with every named metric,
 * checkpoints, Ctrl-C, --resume) is train_loop.c's, as for sft. */
#include "alignctl.h"

#include <stdlib.h>
#include <string.h>

static const char *const HELP_DPO =
    "usage: alignctl dpo --model M --tokenizer TOK --data D.jsonl --out OUT.safetensors\n"
    "                    [--reference R] [options]\n"
    "\n"
    "Direct preference optimisation (and its variants) on {\"prompt\",\"chosen\",\"rejected\"}\n"
    "and {\"prompt\",\"responses\",\"ranking\"} records. The reference is R, or by default a\n"
    "frozen copy of the starting model M; its log-probabilities are computed once per\n"
    "record and cached (saved with checkpoints). Saves the model to OUT at the end;\n"
    "checkpoints go to CKPT/step-N (CKPT: OUT without '.safetensors' plus '.ckpt', or\n"
    "--checkpoint-dir), CKPT/latest points to the newest one.\n"
    "\n"
    "objective:\n"
    "  --loss L            sigmoid|ipo|hinge|robust|simpo|orpo (default sigmoid = DPO)\n"
    "  --beta X            strength beta (IPO: tau, ORPO: lambda) (default 0.1)\n"
    "  --label-smoothing X assumed share of flipped labels (cDPO / robust) (default 0)\n"
    "  --simpo-gamma X     SimPO target margin (default 0.5)\n"
    "  --sft-alpha X       adds X * NLL of the chosen response (RPO) (default 0)\n"
    "  --length-norm       sigmoid/robust/hinge on mean token log-probs\n"
    "  --ranking MODE      all-pairs|best-vs-rest|plackett-luce for K > 2 responses\n"
    "                      (default all-pairs)\n"
    "  --reference R       the frozen reference model (default: a copy of --model)\n"
    "  --no-ref-cache      run the reference every step instead of caching it\n"
    "length of training (one of):\n"
    "  --steps N           optimiser steps\n"
    "  --epochs N          passes over the data (default 1)\n"
    "batches:\n"
    "  --batch N           records per micro-batch, all responses of each (default 4)\n"
    "  --accum N           micro-batches per step (default 1)\n"
    "  --max-len N         tokens per prompt + response (default: the model's context)\n"
    "  --truncate MODE     left|right|drop for too long sequences (default left)\n"
    "  --lenient           skip malformed data lines instead of stopping\n"
    "optimiser:\n"
    "  --lr X              peak learning rate (default 1e-6; see docs/preference.md)\n"
    "  --schedule S        constant|linear|cosine (default constant)\n"
    "  --warmup N          linear warmup steps (default 0)\n"
    "  --min-lr-ratio X    decay floor as a fraction of --lr (default 0)\n"
    "  --weight-decay X    AdamW weight decay (default 0)\n"
    LORA_HELP
    "  --clip X            global gradient-norm clip, 0 = off (default 1.0)\n"
    "evaluation and checkpoints:\n"
    "  --eval-data FILE    held-out JSONL; evaluated every --eval-every steps and at the end\n"
    "  --eval-every N      (default 0: only at the end)\n"
    "  --save-every N      checkpoint every N steps (and at the end)\n"
    "  --checkpoint-dir D  where checkpoints go (see above)\n"
    "  --resume DIR        continue from a checkpoint: CKPT/step-N, CKPT/latest, or CKPT\n"
    "other:\n"
    "  --metrics FILE      one JSON object per step with every named metric (loss,\n"
    "                      rewards/chosen, rewards/rejected, rewards/accuracies,\n"
    "                      rewards/margins, logps/chosen, logps/rejected, ...), lr,\n"
    "                      grad_norm, time (s); eval_<name> on evaluated steps\n"
    "  --threads N         CPU threads (default: all)\n"
    "  --compute MODE      fp32 (default) or bf16: bf16 matrix products, fp32 weights and\n"
    "                      optimizer (oneDNN; refused without AVX512_BF16 / AMX)\n"
    "  --seed S            data shuffling seed (default 1234)\n"
    "  --log-every N       plain log line every N steps when stderr is not a terminal\n"
    "  --quiet             no progress output\n"
    "Ctrl-C stops cleanly: a checkpoint is saved, the command to resume is printed,\n"
    "and alignctl exits with status 130.\n";

static const char *const HELP_KTO =
    "usage: alignctl kto --model M --tokenizer TOK --data D.jsonl --out OUT.safetensors\n"
    "                    [--reference R] [options]\n"
    "\n"
    "KTO on {\"prompt\",\"response\",\"label\": true|false} records (thumbs up/down, unpaired).\n"
    "The reference is R, or by default a frozen copy of the starting model M. The KL\n"
    "reference point of each step comes from its examples paired with another example's\n"
    "response.\n"
    "\n"
    "objective:\n"
    "  --beta X            strength beta (default 0.1)\n"
    "  --desirable-weight X    lambda_D (default 1)\n"
    "  --undesirable-weight X  lambda_U (default 1)\n"
    "  --reference R       the frozen reference model (default: a copy of --model)\n"
    "  --no-ref-cache      run the reference every step instead of caching it\n"
    "length, batches, optimiser, evaluation, checkpoints and other options: as for\n"
    "'alignctl dpo' (--batch is examples per micro-batch, default 8); --metrics lines\n"
    "carry loss, kl, rewards/chosen, rewards/rejected, logps/chosen, logps/rejected.\n";

/* Parses a --loss / --ranking name. */
static int pick(const char *opt_name, const char *v, const char *const *names, int n)
{
    for (int k = 0; k < n; k++)
        if (strcmp(v, names[k]) == 0)
            return k;
    usage_die("%s: unknown value '%s'", opt_name, v);
}

static int run_pref(int argc, char **argv, int kto)
{
    const char *model_path = NULL, *tok = NULL, *data_path = NULL, *ref_path = NULL, *v;
    train_opts to;
    train_opts_init(&to);
    to.op.learning_rate = 1e-6f; /* the DPO paper's and TRL's; small models want more */
    align_dpo_params sp;
    ALIGN_DPO_DEFAULT_PARAMS(&sp);
    align_kto_params kp;
    ALIGN_KTO_DEFAULT_PARAMS(&kp);
    int batch = 0;
    static const char *const losses[] = {"sigmoid", "robust", "ipo", "hinge", "simpo", "orpo"};
    static const char *const rankings[] = {"all-pairs", "best-vs-rest", "plackett-luce"};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(kto ? HELP_KTO : HELP_DPO, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--data", &v)) {
            data_path = v;
        } else if (opt(argc, argv, &i, "--reference", &v)) {
            ref_path = v;
        } else if (flag(a, "--no-ref-cache")) {
            sp.flags |= ALIGN_DPO_NO_REFERENCE_CACHE;
        } else if (opt(argc, argv, &i, "--beta", &v)) {
            sp.beta = kp.beta = parse_float("--beta", v, 1e-9, 1e9);
        } else if (!kto && opt(argc, argv, &i, "--loss", &v)) {
            sp.loss = pick("--loss (sigmoid, ipo, hinge, robust, simpo, orpo)", v, losses, 6);
        } else if (!kto && opt(argc, argv, &i, "--label-smoothing", &v)) {
            sp.label_smoothing = parse_float("--label-smoothing", v, 0, 0.5);
        } else if (!kto && opt(argc, argv, &i, "--simpo-gamma", &v)) {
            sp.simpo_gamma = parse_float("--simpo-gamma", v, -1e9, 1e9);
        } else if (!kto && opt(argc, argv, &i, "--sft-alpha", &v)) {
            sp.sft_alpha = parse_float("--sft-alpha", v, 0, 1e9);
        } else if (!kto && flag(a, "--length-norm")) {
            sp.flags |= ALIGN_DPO_LENGTH_NORM;
        } else if (!kto && opt(argc, argv, &i, "--ranking", &v)) {
            sp.ranking = pick("--ranking (all-pairs, best-vs-rest, plackett-luce)", v, rankings, 3);
        } else if (kto && opt(argc, argv, &i, "--desirable-weight", &v)) {
            kp.desirable_weight = parse_float("--desirable-weight", v, 0, 1e9);
        } else if (kto && opt(argc, argv, &i, "--undesirable-weight", &v)) {
            kp.undesirable_weight = parse_float("--undesirable-weight", v, 0, 1e9);
        } else if (opt(argc, argv, &i, "--batch", &v)) {
            batch = parse_int("--batch", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--accum", &v)) {
            sp.grad_accum = parse_int("--accum", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--max-len", &v)) {
            sp.max_seq_len = parse_int("--max-len", v, 2, 1 << 20);
        } else if (opt(argc, argv, &i, "--truncate", &v)) {
            static const char *const modes[] = {"right", "left", "drop"};
            sp.truncation = pick("--truncate (left, right, drop)", v, modes, 3);
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            sp.seed = parse_u64("--seed", v);
        } else if (!train_opt(argc, argv, &i, &to)) {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required (the model to start from, normally an SFT model)");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!data_path)
        usage_die(kto ? "--data is required (JSONL of {\"prompt\",\"response\",\"label\"} records)"
                      : "--data is required (JSONL of {\"prompt\",\"chosen\",\"rejected\"} records)");
    int r = train_opts_finish(&to);
    if (r)
        return r;
    sp.max_steps = to.steps;
    sp.epochs = to.epochs ? to.epochs : 1;
    sp.micro_batch = batch ? batch : kto ? kp.micro_batch : sp.micro_batch;
    kp.flags = sp.flags & ALIGN_DPO_NO_REFERENCE_CACHE;
    kp.micro_batch = sp.micro_batch;
    kp.grad_accum = sp.grad_accum;
    kp.max_seq_len = sp.max_seq_len;
    kp.truncation = sp.truncation;
    kp.max_steps = sp.max_steps;
    kp.epochs = sp.epochs;
    kp.seed = sp.seed;
    /* SimPO and ORPO use no reference: none is loaded */
    const int need_ref = kto || (sp.loss != ALIGN_DPO_SIMPO && sp.loss != ALIGN_DPO_ORPO);

    if (require_inputs(model_path, tok, data_path, to.eval_path) ||
        (ref_path && require_inputs(ref_path, tok, data_path, NULL)))
        return EXIT_RUNTIME;
    blas_setup(argv, to.threads);
    signals_install();
    align_model *m = NULL, *ref = NULL;
    align_tokenizer *t = NULL;
    align_dataset *data = NULL, *evald = NULL;
    align_optimizer *o = NULL;
    align_trainer *tr = NULL;
    r = load_tokenizer(tok, &t);
    if (!r)
        r = load_model(model_path, &m);
    if (!r)
        r = check_vocab(m, t, tok);
    if (!r)
        r = train_lora_attach(&to, m, model_path);
    if (!r && ref_path) {
        r = load_model(ref_path, &ref); /* its vocabulary is checked by the trainer */
    } else if (!r && need_ref) {
        /* the start, frozen; with --lora the base without adapters, shared (no copy) */
        int crc = align_model_clone(&ref, m, ALIGN_FROZEN | ALIGN_CLONE_NO_ADAPTERS);
        if (crc < 0)
            r = rt_fail(crc, align_last_errmsg(), "cannot copy the model as the reference");
    }
    if (!r)
        r = load_dataset(data_path, to.lenient ? ALIGN_LENIENT : 0, &data);
    if (!r && to.eval_path)
        r = load_dataset(to.eval_path, to.lenient ? ALIGN_LENIENT : 0, &evald);
    if (r)
        goto out;

    /* planned steps: exact with --steps; in epoch mode an estimate from the
     * record count (other kinds of records are skipped) */
    int64_t per_step = (int64_t)sp.micro_batch * sp.grad_accum;
    int64_t total = to.steps ? to.steps : (align_dataset_size(data) + per_step - 1) / per_step * sp.epochs;
    to.op.total_steps = total > INT32_MAX ? INT32_MAX : (int32_t)total;
    int rc = align_optimizer_create(&o, m, &to.op);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the optimizer");
        goto out;
    }
    rc = kto ? align_trainer_create_kto(&tr, m, ref, t, data, o, &kp)
             : align_trainer_create_dpo(&tr, m, ref, t, data, o, &sp);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the %s trainer", kto ? "KTO" : "DPO");
        goto out;
    }
    msg("training: %lld records%s, %s%lld steps, %s, batch %d x accum %d, lr %g, beta %g, reference %s",
        (long long)align_dataset_size(data), evald ? " (+ eval data)" : "", to.steps ? "" : "about ",
        (long long)total, kto ? "kto" : losses[sp.loss], (int)sp.micro_batch, (int)sp.grad_accum,
        (double)to.op.learning_rate, (double)(kto ? kp.beta : sp.beta),
        ref_path   ? ref_path
        : !need_ref ? "none"
        : to.use_lora ? "the model with adapters off (shared weights, no copy)"
                      : "a frozen copy of the model");
    r = train_run(&to, argc, argv, tr, o, evald, m, total);
out:
    signals_restore();
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_dataset_free(evald);
    align_dataset_free(data);
    align_model_free(ref);
    align_model_free(m);
    align_tokenizer_free(t);
    return r;
}

int cmd_dpo(int argc, char **argv)
{
    return run_pref(argc, argv, 0);
}

int cmd_kto(int argc, char **argv)
{
    return run_pref(argc, argv, 1);
}
