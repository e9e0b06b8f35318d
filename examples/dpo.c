/* dpo.c — DPO from a JSONL file of preferences ({"prompt","chosen","rejected"}
 * or {"prompt","responses","ranking"} per line), with the held-out
 * preference accuracy before and after.
 *
 *   dpo TRAIN.jsonl [--eval TEST.jsonl] [--model W.safetensors] [--steps 40]
 *       [--lr 3e-4] [--beta 0.1] [--batch 8] [--save OUT.safetensors]
 *
 * The reference is a frozen copy of the starting model; its log-probs are
 * computed once per record and then come from the cache. Without --eval the
 * trainer lets the reference go when the cache is full
 * (ALIGN_DPO_RELEASE_REFERENCE) and this program frees it; evaluating other
 * data needs it, so with --eval it is kept. Without --model a byte-level
 * model is created (2 layers, width 32).
 */
#include "align.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what, int rc, const char *msg)
{
    fprintf(stderr, "dpo: %s: %s (%s)\n", what, msg, align_err_name(rc));
    return 1;
}

/* Held-out loss, share of pairs whose implicit-reward margin is positive,
 * and the mean margin. */
static void report(align_trainer *tr, align_dataset *eval, const char *when)
{
    double loss = 0, acc = 0, margin = 0;
    if (align_trainer_evaluate(tr, eval, NULL) < 0) {
        fprintf(stderr, "dpo: evaluate: %s\n", align_trainer_errmsg(tr));
        return;
    }
    align_trainer_metric(tr, ALIGN_METRICS_EVAL, "loss", &loss);
    align_trainer_metric(tr, ALIGN_METRICS_EVAL, "rewards/accuracies", &acc);
    align_trainer_metric(tr, ALIGN_METRICS_EVAL, "rewards/margins", &margin);
    printf("held-out %s: loss %.4f, accuracy %.2f, margin %+.4f\n", when, loss, acc, margin);
}

int main(int argc, char **argv)
{
    const char *train_path = NULL, *eval_path = NULL, *model_path = NULL, *save = NULL;
    int steps = 40, batch = 8;
    float lr = 3e-4f, beta = 0.1f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--eval") && v) eval_path = argv[++i];
        else if (!strcmp(a, "--model") && v) model_path = argv[++i];
        else if (!strcmp(a, "--save") && v) save = argv[++i];
        else if (!strcmp(a, "--steps") && v) steps = atoi(argv[++i]);
        else if (!strcmp(a, "--batch") && v) batch = atoi(argv[++i]);
        else if (!strcmp(a, "--lr") && v) lr = (float)atof(argv[++i]);
        else if (!strcmp(a, "--beta") && v) beta = (float)atof(argv[++i]);
        else if (a[0] != '-' && !train_path) train_path = a;
        else { fprintf(stderr, "usage: dpo TRAIN.jsonl [--eval TEST.jsonl] [--model W] [--steps N] "
                               "[--lr X] [--beta X] [--batch N] [--save OUT]\n"); return 2; }
    }
    if (!train_path) { fprintf(stderr, "usage: dpo TRAIN.jsonl [options]\n"); return 2; }

    align_tokenizer *tok = NULL;
    align_model *policy = NULL, *ref = NULL;
    align_dataset *train = NULL, *eval = NULL;
    align_optimizer *opt = NULL;
    align_trainer *tr = NULL;
    int rc;
    if ((rc = align_tokenizer_bytes(&tok)) < 0) return die("tokenizer", rc, align_last_errmsg());
    if (model_path) {
        rc = align_model_load(&policy, model_path, NULL);
    } else {
        align_model_params mp;
        ALIGN_MODEL_DEFAULT_PARAMS(&mp);
        mp.n_layer = 2; mp.n_head = 2; mp.n_embd = 32; mp.vocab_size = 257; mp.max_seq_len = 128;
        rc = align_model_create(&policy, &mp);
    }
    if (rc < 0) return die("model", rc, align_last_errmsg());
    /* the reference: the policy as it starts, frozen (forward only) */
    if ((rc = align_model_clone(&ref, policy, ALIGN_FROZEN)) < 0) return die("reference", rc, align_last_errmsg());
    if ((rc = align_dataset_create(&train)) < 0 || (rc = align_dataset_load_jsonl(train, train_path, 0)) < 0)
        return die(train_path, rc, train ? align_dataset_errmsg(train) : align_last_errmsg());
    if (eval_path && ((rc = align_dataset_create(&eval)) < 0 || (rc = align_dataset_load_jsonl(eval, eval_path, 0)) < 0))
        return die(eval_path, rc, eval ? align_dataset_errmsg(eval) : align_last_errmsg());

    align_optimizer_params op;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = lr;
    if ((rc = align_optimizer_create(&opt, policy, &op)) < 0) return die("optimizer", rc, align_last_errmsg());

    align_dpo_params dp;
    ALIGN_DPO_DEFAULT_PARAMS(&dp);
    dp.loss = ALIGN_DPO_SIGMOID;
    dp.beta = beta;
    dp.micro_batch = batch;
    dp.max_steps = steps;
    dp.flags = eval ? 0u : ALIGN_DPO_RELEASE_REFERENCE;
    if ((rc = align_trainer_create_dpo(&tr, policy, ref, tok, train, opt, &dp)) < 0)
        return die("trainer", rc, align_last_errmsg());
    if (eval) /* policy == reference: loss ln 2, margins ~0 (float noise) */
        report(tr, eval, "before");

    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    while ((rc = align_trainer_step(tr, &st)) == ALIGN_OK) {
        double margin = 0, fill = 0;
        align_trainer_metric(tr, ALIGN_METRICS_STEP, "rewards/margins", &margin);
        align_trainer_metric(tr, ALIGN_METRICS_STEP, "ref_cache/fill", &fill);
        if (st.step % 10 == 0 || st.step == 1)
            printf("step %3lld  loss %.4f  accuracy %.2f  margin %+.4f\n", (long long)st.step, st.loss,
                   st.accuracy, margin);
        if (!eval && ref && fill == 1.0) { /* cached for every record: released */
            align_model_free(ref);
            ref = NULL;
        }
    }
    if (rc != ALIGN_DONE) return die("step", rc, align_trainer_errmsg(tr));
    if (eval)
        report(tr, eval, "after");
    if (save && (rc = align_model_save(policy, save)) < 0) return die(save, rc, align_model_errmsg(policy));
    align_trainer_free(tr);
    align_optimizer_free(opt);
    align_dataset_free(eval);
    align_dataset_free(train);
    align_model_free(ref);
    align_model_free(policy);
    align_tokenizer_free(tok);
    return 0;
}
