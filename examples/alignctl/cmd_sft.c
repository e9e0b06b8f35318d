/* cmd_sft.c — alignctl sft: supervised fine-tuning with progress, metrics,
 * checkpoints, Ctrl-C and resume. */
#include "alignctl.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const HELP_SFT =
    "usage: alignctl sft --model M --tokenizer TOK --data D.jsonl --out OUT.safetensors\n"
    "                    [options]\n"
    "\n"
    "Supervised fine-tuning on prompt/completion (or chat) records. Saves the model to\n"
    "OUT at the end; checkpoints (the whole training state) go to CKPT/step-N, where\n"
    "CKPT is OUT without '.safetensors' plus '.ckpt' unless --checkpoint-dir is given;\n"
    "CKPT/latest points to the newest one.\n"
    "\n"
    "length of training (one of):\n"
    "  --steps N           optimiser steps\n"
    "  --epochs N          passes over the data (default 1)\n"
    "batches:\n"
    "  --batch N           sequences per micro-batch (default 8)\n"
    "  --accum N           micro-batches per step (default 1)\n"
    "  --max-len N         tokens per row (default: the model's context)\n"
    "  --truncate MODE     right|left|drop for too long examples (default right)\n"
    "  --pack              pack several examples per row\n"
    "  --full-loss         loss on prompt tokens too\n"
    "  --lenient           skip malformed data lines instead of stopping\n"
    "optimiser:\n"
    "  --lr X              peak learning rate (default 1e-4)\n"
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
    "  --resume DIR        continue from a checkpoint: CKPT/step-N, CKPT/latest, or the\n"
    "                      run's folder CKPT itself (its latest); appends to --metrics\n"
    "other:\n"
    "  --metrics FILE      one JSON object per step: step, epoch, loss, accuracy, lr,\n"
    "                      grad_norm, tokens, tokens_per_sec, time (s), and eval_loss /\n"
    "                      eval_accuracy on evaluated steps\n"
    "  --threads N         CPU threads (default: all)\n"
    "  --compute MODE      fp32 (default) or bf16: bf16 matrix products, fp32 weights and\n"
    "                      optimizer (oneDNN; refused without AVX512_BF16 / AMX)\n"
    "  --dist mpi|none     data parallel under mpirun (default: auto; docs/distributed.md)\n"
    "  --seed S            data shuffling seed (default 1234)\n"
    "  --log-every N       plain log line every N steps when stderr is not a terminal\n"
    "                      (default 10)\n"
    "  --quiet             no progress output\n"
    "Ctrl-C stops cleanly: a checkpoint is saved, the command to resume is printed,\n"
    "and alignctl exits with status 130 (further Ctrl-C only repeat the request;\n"
    "Ctrl-\\ aborts without a checkpoint).\n";

int cmd_sft(int argc, char **argv)
{
    const char *model_path = NULL, *tok = NULL, *data_path = NULL, *v;
    train_opts to;
    train_opts_init(&to);
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(HELP_SFT, stdout);
            return EXIT_OK;
        } else if (opt(argc, argv, &i, "--model", &v)) {
            model_path = v;
        } else if (opt(argc, argv, &i, "--tokenizer", &v)) {
            tok = v;
        } else if (opt(argc, argv, &i, "--data", &v)) {
            data_path = v;
        } else if (opt(argc, argv, &i, "--batch", &v)) {
            sp.micro_batch = parse_int("--batch", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--accum", &v)) {
            sp.grad_accum = parse_int("--accum", v, 1, 65536);
        } else if (opt(argc, argv, &i, "--max-len", &v)) {
            sp.max_seq_len = parse_int("--max-len", v, 2, 1 << 20);
        } else if (opt(argc, argv, &i, "--truncate", &v)) {
            if (strcmp(v, "right") == 0)
                sp.truncation = ALIGN_TRUNCATE_RIGHT;
            else if (strcmp(v, "left") == 0)
                sp.truncation = ALIGN_TRUNCATE_LEFT;
            else if (strcmp(v, "drop") == 0)
                sp.truncation = ALIGN_TRUNCATE_DROP;
            else
                usage_die("--truncate expects right, left or drop, got '%s'", v);
        } else if (flag(a, "--pack")) {
            sp.flags |= ALIGN_SFT_PACK;
        } else if (flag(a, "--full-loss")) {
            sp.flags |= ALIGN_SFT_FULL_SEQUENCE_LOSS;
        } else if (opt(argc, argv, &i, "--seed", &v)) {
            sp.seed = parse_u64("--seed", v);
        } else if (!train_opt(argc, argv, &i, &to)) {
            unknown_arg(a);
        }
    }
    if (!model_path)
        usage_die("--model is required (the model to start from; 'alignctl init' makes one)");
    if (!tok)
        usage_die("--tokenizer is required (a tokenizer.json, a GPT-2 folder, or 'bytes')");
    if (!data_path)
        usage_die("--data is required (JSONL of {\"prompt\",\"completion\"} records)");
    int r = train_opts_finish(&to);
    if (r)
        return r;
    sp.max_steps = to.steps;
    sp.epochs = to.epochs ? to.epochs : 1;

    if (require_inputs(model_path, tok, data_path, to.eval_path))
        return EXIT_RUNTIME;
    blas_setup(argv, to.threads);
    /* Signals are caught from here to the end: one that arrives while loading
     * still ends in a checkpoint and status 130 (signals.c). */
    signals_install();
    align_model *m = NULL;
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
    if (!r)
        r = load_dataset(data_path, to.lenient ? ALIGN_LENIENT : 0, &data);
    if (!r && to.eval_path)
        r = load_dataset(to.eval_path, to.lenient ? ALIGN_LENIENT : 0, &evald);
    if (r)
        goto out;

    /* planned steps: exact with --steps; an estimate in epoch mode (packing
     * makes fewer), used for the schedule and the progress bar */
    int64_t per_epoch = (align_dataset_size(data) + (int64_t)sp.micro_batch * sp.grad_accum - 1) /
                        ((int64_t)sp.micro_batch * sp.grad_accum);
    int64_t total = to.steps ? to.steps : per_epoch * sp.epochs;
    to.op.total_steps = total > INT32_MAX ? INT32_MAX : (int32_t)total;
    int rc = align_optimizer_create(&o, m, &to.op);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the optimizer");
        goto out;
    }
    rc = align_trainer_create_sft(&tr, m, t, data, o, &sp);
    if (rc < 0) {
        r = rt_fail(rc, align_last_errmsg(), "cannot create the SFT trainer");
        goto out;
    }
    msg("training: %lld records%s, %s%lld steps, batch %d x accum %d, lr %g (%s)",
        (long long)align_dataset_size(data), evald ? " (+ eval data)" : "",
        to.steps ? "" : "about ", (long long)total, (int)sp.micro_batch, (int)sp.grad_accum,
        (double)to.op.learning_rate,
        to.op.schedule == ALIGN_SCHEDULE_LINEAR   ? "linear"
        : to.op.schedule == ALIGN_SCHEDULE_COSINE ? "cosine"
                                                  : "constant");
    r = train_run(&to, argc, argv, tr, o, evald, m, total);
out:
    signals_restore();
    align_trainer_free(tr);
    align_optimizer_free(o);
    align_dataset_free(evald);
    align_dataset_free(data);
    align_model_free(m);
    align_tokenizer_free(t);
    return r;
}
