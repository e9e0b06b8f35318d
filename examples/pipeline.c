/* pipeline.c — the whole RLHF pipeline on one small task, public API only:
 *
 *   (a) SFT on demonstrations (a model from scratch, byte tokenizer),
 *   (b) collection: the SFT policy samples K = 4 responses per prompt at
 *       temperature 1 and a labeler (a C function playing the person) ranks them,
 *   (c) a reward model trained on those rankings (the SFT model with a
 *       scalar head), with its pairwise accuracy on held-out rankings,
 *   (d) GRPO (or PPO) against the reward model, with the KL to the SFT policy,
 *   (e) an evaluation that does NOT use the reward model: exact match and the
 *       labeler's own score on held-out requests, SFT policy vs RL policy,
 *       sampled at temperature 1 and greedy.
 *
 * The task (examples/make_shopping_data.py): a request such as
 * "What to buy for chili and tacos?\nList:" -> " beans, beef, peppers,
 * tortillas, salsa, lettuce". The held-out requests word a pair of dishes in
 * a way the training set never does. The demonstrator is careless (make demo
 * writes the data with --careless 0.4): four lists in ten have one slip, an
 * item repeated, left out or added. SFT learns the slips with the rest; the
 * rankings say which lists are better, which is what RL can use.
 *
 *   pipeline DIR [--algo grpo|ppo] [--reward rm|rule] [--fast] [--seed S] [--threads N]
 *            [stage sizes: pipeline --help]
 *
 * GRPO is the default: its baseline is the mean score of the other samples
 * for the same request, which removes the per-request offset a reward model
 * trained on within-request comparisons leaves in its scores; PPO must learn
 * it with its value model (docs/pipeline.md measures both).
 *
 * --reward rule is the control run: RL against the labeler's rule itself
 * instead of the reward model learnt from its rankings.
 *
 * DIR holds train.jsonl and test.jsonl (and, if present, rl_prompts.jsonl:
 * the requests for collection and RL); the program writes there
 * sft.safetensors, rankings.jsonl, reward.safetensors, policy.safetensors,
 * metrics_sft.jsonl, metrics_rm.jsonl, metrics_rl.jsonl (one JSON object per
 * step, for `alignctl plot`) and summary.tsv (the final table).
 */
#include "align.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *what, int rc, const char *msg)
{
    fprintf(stderr, "pipeline: %s: %s (%s)\n", what, msg, align_err_name(rc));
    exit(1);
}
#define CHECK(what, call, msg)             \
    do {                                   \
        int rc_ = (call);                  \
        if (rc_ < 0)                       \
            die(what, rc_, msg);           \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* The labeler: the person who knows the recipes.                           */
/* ------------------------------------------------------------------------ */

/* What the person knows: each dish's ingredients (the same table as
 * make_shopping_data.py). */
static const char *const DISHES[][4] = {
    {"pancakes", "flour", "eggs", "milk"},
    {"tomato soup", "tomatoes", "onion", "stock"},
    {"guacamole", "avocados", "lime", "cilantro"},
    {"omelette", "cheese", "ham", "butter"},
    {"pesto pasta", "basil", "pine nuts", "pasta"},
    {"fruit salad", "apples", "grapes", "kiwis"},
    {"chili", "beans", "beef", "peppers"},
    {"curry", "rice", "chicken", "coconut milk"},
    {"tacos", "tortillas", "salsa", "lettuce"},
    {"lemonade", "lemons", "sugar", "mint"},
    {"smoothie", "bananas", "yogurt", "honey"},
    {"fish pie", "cod", "potatoes", "leeks"},
};
enum { N_DISHES = sizeof DISHES / sizeof DISHES[0], MAX_ITEMS = 32 };

/* The items the request asks for: the ingredients of each dish named in the
 * prompt, in the order the dishes are named. Returns their number. */
static int wanted_items(const char *prompt, const char **items)
{
    const char *at[N_DISHES];
    int idx[N_DISHES], n = 0;
    for (int d = 0; d < N_DISHES; d++) {
        const char *p = strstr(prompt, DISHES[d][0]);
        if (p) {
            int j = n++;
            while (j > 0 && at[j - 1] > p) { /* insertion sort by position */
                at[j] = at[j - 1];
                idx[j] = idx[j - 1];
                j--;
            }
            at[j] = p;
            idx[j] = d;
        }
    }
    int k = 0;
    for (int i = 0; i < n; i++)
        for (int j = 1; j < 4; j++)
            items[k++] = DISHES[idx[i]][j];
    return k;
}

/* The labeler's rule, the one thing a person would judge a shopping list by:
 *   + 1 for each wanted item present (once),
 *   - 1 for each item that was not asked for, and for each repeated item,
 *   + 1 more if the list is exactly the expected one (all items, in order),
 * divided by the number of wanted items. 1 + 1/n is a perfect list; an
 * empty one scores 0; rambling lists go negative. */
static double rule_score(const char *prompt, const char *response)
{
    const char *want[MAX_ITEMS];
    int n_want = wanted_items(prompt, want);
    if (n_want == 0)
        return 0.0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", response);
    int seen[MAX_ITEMS] = {0}, hits = 0, bad = 0, in_order = 1, pos = 0, n_items = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t len = strlen(tok);
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\n'))
            tok[--len] = 0;
        if (!len)
            continue;
        n_items++;
        int w = -1;
        for (int i = 0; i < n_want; i++)
            if (!strcmp(tok, want[i]) && !seen[i]) {
                w = i;
                break;
            }
        if (w < 0) {
            bad++; /* not asked for, or asked for and already listed */
            in_order = 0;
        } else {
            seen[w] = 1;
            hits++;
            in_order &= w == pos;
            pos++;
        }
    }
    int exact = in_order && hits == n_want && bad == 0 && n_items == n_want;
    return (hits - bad + exact) / (double)n_want;
}

/* The ranker align_collect calls: higher rule score = better place; equal
 * scores are ties. This is where a person (alignctl label --serve) or a judge
 * model (align_collect_judge) would stand. */
typedef struct { int rankings, tied, pairs; } label_counts;

static int labeler(const char *prompt, const char *const *responses, int32_t k, int32_t *rank_out, void *ud)
{
    label_counts *c = ud; /* what the rankings can teach: all-tied ones teach nothing */
    double s[64];
    if (k > 64)
        return -1;
    for (int i = 0; i < k; i++)
        s[i] = rule_score(prompt, responses[i]);
    for (int i = 0; i < k; i++) {
        int place = 0; /* competition ranking: how many are strictly better */
        for (int j = 0; j < k; j++)
            place += s[j] > s[i];
        rank_out[i] = place;
    }
    int pairs = 0;
    for (int i = 0; i < k; i++)
        for (int j = i + 1; j < k; j++)
            pairs += s[i] != s[j];
    c->rankings++;
    c->tied += pairs == 0;
    c->pairs += pairs;
    return 0;
}

/* The labeler's rule as a reward function (align_score_fn): the control run
 * (--reward rule) trains the policy against the rule itself instead of a
 * reward model learnt from the rule's rankings. If RL helps with this reward
 * and not with the learnt one, the reward model is the bottleneck. */
static int rule_reward(const char *const *prompts, const char *const *responses, int32_t n, float *scores, void *ud)
{
    (void)ud;
    for (int32_t i = 0; i < n; i++)
        scores[i] = (float)rule_score(prompts[i], responses[i]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* data                                                                     */
/* ------------------------------------------------------------------------ */

/* The string member `key` of a one-level JSON object (as
 * align_dataset_record_json writes it); ASCII escapes only. */
static char *json_field(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        return NULL;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    if (*p++ != '"')
        return NULL;
    char *out = malloc(strlen(p) + 1), *o = out;
    for (; *p && *p != '"'; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'u': *o++ = (char)strtol((char[]){p[1], p[2], p[3], p[4], 0}, NULL, 16); p += 4; break;
        default: *o++ = *p; break;
        }
    }
    *o = 0;
    return out;
}

typedef struct { int n; char **prompt, **completion; } demos;

/* The demonstrations of d; with distinct, each prompt once. */
static demos read_demos(const align_dataset *d, int distinct)
{
    demos x = {0, NULL, NULL};
    int64_t n = align_dataset_size(d);
    x.prompt = calloc((size_t)n + 1, sizeof(char *));
    x.completion = calloc((size_t)n + 1, sizeof(char *));
    for (int64_t i = 0; i < n; i++) {
        char *json = NULL;
        if (align_dataset_record_kind(d, i) != ALIGN_RECORD_DEMO || align_dataset_record_json(d, i, &json))
            continue;
        char *p = json_field(json, "prompt"), *c = json_field(json, "completion");
        align_free(json);
        int dup = !p || !c;
        for (int j = 0; distinct && !dup && j < x.n; j++)
            dup = !strcmp(x.prompt[j], p);
        if (dup) {
            free(p);
            free(c);
            continue;
        }
        x.prompt[x.n] = p;
        x.completion[x.n++] = c;
    }
    return x;
}

static void free_demos(demos *x)
{
    for (int i = 0; i < x->n; i++) {
        free(x->prompt[i]);
        free(x->completion[i]);
    }
    free(x->prompt);
    free(x->completion);
}

/* ------------------------------------------------------------------------ */
/* evaluation without the reward model                                      */
/* ------------------------------------------------------------------------ */

/* means over the samples; per_exact/per_rule: each request's own mean (for
 * the paired standard error of a change, the request being the unit: the
 * samples of one request are not independent) */
typedef struct { double exact, rule; double *per_exact, *per_rule; } quality;

/* The standard error of the mean over n requests of after - before. */
static double paired_se(const double *before, const double *after, int n)
{
    double m = 0, v = 0;
    for (int i = 0; i < n; i++)
        m += (after[i] - before[i]) / n;
    for (int i = 0; i < n; i++)
        v += (after[i] - before[i] - m) * (after[i] - before[i] - m);
    return n > 1 ? sqrt(v / (n - 1) / n) : NAN;
}

/* The policy's answers to the held-out requests, `rounds` samples each
 * (temperature 0 = greedy: one round): the share that is exactly right and
 * the labeler's mean score. */
static quality evaluate(align_model *m, const align_tokenizer *t, const demos *x, float temperature, int rounds,
                        uint64_t seed, int show, const char *title)
{
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = temperature;
    gp.max_new_tokens = 64;
    quality q = {0, 0, NULL, NULL};
    double *pe = calloc((size_t)x->n, sizeof(double)), *pr = calloc((size_t)x->n, sizeof(double));
    if (show)
        printf("  %s:\n", title);
    for (int r = 0; r < rounds; r++) {
        gp.seed = seed + 7919u * (uint64_t)r;
        for (int i0 = 0; i0 < x->n; i0 += 50) {
            int k = x->n - i0 < 50 ? x->n - i0 : 50;
            align_generation *g = NULL;
            int rc = align_generate(m, t, (const char *const *)x->prompt + i0, k, &gp, &g);
            if (rc)
                die("generate", rc, align_model_errmsg(m));
            for (int i = 0; i < k; i++) {
                const char *text = align_generation_text(g, i, NULL);
                int ok = strcmp(text, x->completion[i0 + i]) == 0;
                pe[i0 + i] += ok;
                pr[i0 + i] += rule_score(x->prompt[i0 + i], text);
                if (r == 0 && i0 + i < show) {
                    const char *nl = strchr(x->prompt[i0 + i], '\n');
                    printf("    %.*s ->%s   [%s]\n", (int)(nl ? nl - x->prompt[i0 + i] : 60), x->prompt[i0 + i],
                           text, ok ? "exact" : "wrong");
                }
            }
            align_generation_free(g);
        }
    }
    for (int i = 0; i < x->n; i++) {
        q.exact += pe[i] / rounds / x->n;
        q.rule += pr[i] / rounds / x->n;
    }
    for (int i = 0; i < x->n; i++) {
        pe[i] /= rounds;
        pr[i] /= rounds;
    }
    q.per_exact = pe;
    q.per_rule = pr;
    return q;
}

/* ------------------------------------------------------------------------ */
/* training loop with a progress line and a metrics file                    */
/* ------------------------------------------------------------------------ */

/* Runs tr to the end; prints a progress line every `every` steps and writes
 * each step's named metrics as one JSON line to `metrics_path`. Returns the
 * steps done. */
static int64_t run(align_trainer *tr, const char *stage, int64_t total, int every, const char *metrics_path,
                   const char *const *show)
{
    FILE *f = fopen(metrics_path, "w");
    if (!f) {
        fprintf(stderr, "pipeline: cannot write %s\n", metrics_path);
        exit(1);
    }
    align_step_stats st;
    align_step_stats_init(&st, sizeof st);
    double t0 = now();
    int rc;
    while ((rc = align_trainer_step(tr, &st)) == ALIGN_OK) {
        const char *const *names;
        const double *values;
        int32_t n = 0;
        align_trainer_metrics(tr, ALIGN_METRICS_STEP, &names, &values, &n);
        fprintf(f, "{\"step\": %lld", (long long)st.step);
        for (int i = 0; i < n; i++)
            if (isfinite(values[i]))
                fprintf(f, ", \"%s\": %.6g", names[i], values[i]);
        fprintf(f, "}\n");
        if (st.step % every == 0 || st.step == 1 || st.step == total) {
            printf("  [%s] step %4lld/%lld", stage, (long long)st.step, (long long)total);
            for (int s = 0; show[s]; s++) {
                double v;
                if (align_trainer_metric(tr, ALIGN_METRICS_STEP, show[s], &v) == 0)
                    printf("  %s %.4g", show[s], v);
            }
            printf("  %.0fs\n", now() - t0);
            fflush(stdout);
        }
    }
    fclose(f);
    if (rc != ALIGN_DONE)
        die(stage, rc, align_trainer_errmsg(tr));
    return st.step;
}

/* The mean of metric `key` over the last `last` lines of a metrics file
 * written by run(). */
static double tail_mean(const char *path, const char *key, int last)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NAN;
    double v[4096];
    int n = 0;
    char line[8192], pat[96];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, pat);
        if (p && n < 4096)
            v[n++] = atof(p + strlen(pat));
    }
    fclose(f);
    double s = 0;
    int k = 0;
    for (int i = n - last < 0 ? 0 : n - last; i < n; i++, k++)
        s += v[i];
    return k ? s / k : NAN;
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const char *dir = NULL, *algo = "grpo", *reward = "rm", *sft_from = NULL;
    int fast = 0, threads = 0;
    long seed = 1;
    /* knobs for the experiments docs/pipeline.md reports; -1 = the default of the mode */
    int sft_steps = -1, rl_steps = -1, collect_rounds = -1, eval_rounds = -1, rm_epochs = -1;
    double rl_lr = -1, kl = -1, rm_lr = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-') dir = a;
        else if (!strcmp(a, "--fast")) fast = 1;
        else if (!strcmp(a, "--help")) { dir = NULL; break; }
        else if (!v) { fprintf(stderr, "pipeline: %s needs a value\n", a); return 2; }
        else if (!strcmp(a, "--algo")) algo = argv[++i];
        else if (!strcmp(a, "--reward")) reward = argv[++i];
        else if (!strcmp(a, "--sft-from")) sft_from = argv[++i];
        else if (!strcmp(a, "--seed")) seed = atol(argv[++i]);
        else if (!strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--sft-steps")) sft_steps = atoi(argv[++i]);
        else if (!strcmp(a, "--rl-steps")) rl_steps = atoi(argv[++i]);
        else if (!strcmp(a, "--collect-rounds")) collect_rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--eval-rounds")) eval_rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--rl-lr")) rl_lr = atof(argv[++i]);
        else if (!strcmp(a, "--kl")) kl = atof(argv[++i]);
        else if (!strcmp(a, "--rm-epochs")) rm_epochs = atoi(argv[++i]);
        else if (!strcmp(a, "--rm-lr")) rm_lr = atof(argv[++i]);
        else { fprintf(stderr, "pipeline: unknown option %s\n", a); return 2; }
    }
    if (!dir || (strcmp(algo, "ppo") && strcmp(algo, "grpo")) || (strcmp(reward, "rm") && strcmp(reward, "rule"))) {
        fprintf(stderr, "usage: pipeline DIR [--algo grpo|ppo] [--reward rm|rule] [--fast] [--seed S] [--threads N]\n"
                        "         [--sft-steps N] [--collect-rounds N] [--rl-steps N] [--rl-lr F] [--kl F] [--eval-rounds N]\n"
                        "         [--rm-epochs N] [--rm-lr F] [--sft-from MODEL.safetensors]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines show up when piped */
    align_threads_set(threads);
    /* sizes: the full run and the ~1-minute one (CI) */
    if (sft_steps < 0) sft_steps = fast ? 250 : 500;
    if (rl_steps < 0) rl_steps = fast ? 24 : 200;
    if (collect_rounds < 0) collect_rounds = fast ? 1 : 4;
    if (eval_rounds < 0) eval_rounds = fast ? 4 : 8;
    if (rm_epochs < 0) rm_epochs = fast ? 2 : 4; /* 4 epochs: better held-out accuracy than 2 (docs/pipeline.md) */
    if (rm_lr <= 0) rm_lr = 3e-4;
    int n_rm_eval = 48;
    char path[1024], path2[1024];
    double t_start = now();

    align_tokenizer *tok = NULL;
    CHECK("tokenizer", align_tokenizer_bytes(&tok), align_last_errmsg());
    align_dataset *train = NULL, *test = NULL;
    align_dataset_create(&train);
    align_dataset_create(&test);
    snprintf(path, sizeof path, "%s/train.jsonl", dir);
    CHECK("training data", align_dataset_load_jsonl(train, path, 0), align_dataset_errmsg(train));
    snprintf(path, sizeof path, "%s/test.jsonl", dir);
    CHECK("held-out data", align_dataset_load_jsonl(test, path, 0), align_dataset_errmsg(test));
    demos held = read_demos(test, 1), train_prompts = read_demos(train, 1);
    /* how many demonstrations the labeler would fault (the careless demonstrator's slips) */
    demos all = read_demos(train, 0);
    int faulted = 0;
    for (int i = 0; i < all.n; i++) {
        const char *want[MAX_ITEMS];
        faulted += rule_score(all.prompt[i], all.completion[i]) < 1.0 + 1.0 / wanted_items(all.prompt[i], want);
    }
    printf("data: %d demonstrations (%d distinct requests; %d with a slip the labeler faults), %d distinct held-out "
           "requests\n",
           all.n, train_prompts.n, faulted, held.n);
    free_demos(&all);

    /* ---- (a) SFT -------------------------------------------------------- */
    printf("\n(a) supervised fine-tuning on the demonstrations\n");
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2;
    mp.n_head = 4;
    mp.n_embd = 128;
    mp.max_seq_len = 128;
    mp.vocab_size = align_tokenizer_vocab_size(tok);
    mp.seed = (uint64_t)seed;
    align_model *sft = NULL;
    align_optimizer_params op;
    align_optimizer *opt = NULL;
    align_trainer *tr = NULL;
    if (sft_from) {
        /* experiments on the later stages: the same SFT model each time */
        CHECK("sft model", align_model_load(&sft, sft_from, NULL), align_last_errmsg());
        printf("  loaded %s (no SFT run)\n", sft_from);
    } else {
        CHECK("model", align_model_create(&sft, &mp), align_last_errmsg());
        ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
        op.learning_rate = 3e-3f;
        op.schedule = ALIGN_SCHEDULE_COSINE;
        op.warmup_steps = sft_steps / 20;
        op.total_steps = sft_steps;
        op.min_lr_ratio = 0.1f;
        op.weight_decay = 0.01f;
        CHECK("optimizer", align_optimizer_create(&opt, sft, &op), align_last_errmsg());
        align_sft_params sp;
        ALIGN_SFT_DEFAULT_PARAMS(&sp);
        sp.micro_batch = 16;
        sp.max_steps = sft_steps;
        sp.seed = (uint64_t)seed;
        sp.max_seq_len = mp.max_seq_len;
        CHECK("sft trainer", align_trainer_create_sft(&tr, sft, tok, train, opt, &sp), align_last_errmsg());
        printf("  model: %lld parameters, from scratch; %d steps of 16 demonstrations\n",
               (long long)align_model_num_params(sft), sft_steps);
        snprintf(path, sizeof path, "%s/metrics_sft.jsonl", dir);
        run(tr, "sft", sft_steps, 50, path, (const char *const[]){"loss", "accuracy", NULL});
        align_trainer_free(tr);
        align_optimizer_free(opt);
    }
    snprintf(path, sizeof path, "%s/sft.safetensors", dir);
    CHECK("save", align_model_save(sft, path), align_model_errmsg(sft));
    quality sft_greedy = evaluate(sft, tok, &held, 0.0f, 1, 0, 3, "greedy answers to held-out requests");
    quality sft_sampled = evaluate(sft, tok, &held, 1.0f, eval_rounds, 1000 + (uint64_t)seed, 0, NULL);
    printf("  held-out: exact %.1f%% greedy, %.1f%% sampled (T=1); labeler score %.3f greedy, %.3f sampled\n",
           100 * sft_greedy.exact, 100 * sft_sampled.exact, sft_greedy.rule, sft_sampled.rule);

    /* ---- (b) collection ------------------------------------------------- */
    printf("\n(b) collection: K = 4 samples per request at T = 1, ranked by the labeler\n");
    align_dataset *prompts = NULL, *rm_train = NULL, *rm_eval = NULL;
    align_dataset_create(&prompts);
    align_dataset_create(&rm_train);
    align_dataset_create(&rm_eval);
    /* The requests for collection and RL: DIR/rl_prompts.jsonl if there is one
     * (requests the SFT data never answers, make_shopping_data.py --rl-share),
     * else the distinct training requests. */
    snprintf(path, sizeof path, "%s/rl_prompts.jsonl", dir);
    FILE *rlf = fopen(path, "r");
    if (rlf) {
        fclose(rlf);
        CHECK("RL prompts", align_dataset_load_jsonl(prompts, path, 0), align_dataset_errmsg(prompts));
        if (n_rm_eval > align_dataset_size(prompts) / 4)
            n_rm_eval = (int)(align_dataset_size(prompts) / 4);
        printf("  requests: %lld from %s (not in the SFT data)\n", (long long)align_dataset_size(prompts), path);
    } else {
        for (int i = 0; i < train_prompts.n; i++)
            CHECK("prompts", align_dataset_add_prompt(prompts, train_prompts.prompt[i], NULL),
                  align_dataset_errmsg(prompts));
    }
    int n_prompts = (int)align_dataset_size(prompts);
    int n_rm_train = n_prompts - n_rm_eval; /* every other request */
    if (fast && n_rm_train > 96)
        n_rm_train = 96;
    align_generate_params gp;
    ALIGN_GENERATE_DEFAULT_PARAMS(&gp);
    gp.temperature = 1.0f;
    gp.max_new_tokens = 64;
    gp.seed = 2000 + (uint64_t)seed;
    align_collect_params cp;
    ALIGN_COLLECT_DEFAULT_PARAMS(&cp);
    cp.k = 4;
    cp.source = ALIGN_SOURCE_HUMAN; /* the labeler stands in for a person */
    cp.annotator = "labeler-rule";
    cp.generate = &gp;
    double t0 = now();
    /* requests [0, n_rm_train) train the reward model, the other n_rm_eval
     * test it; each round samples the training requests afresh */
    label_counts lc_train = {0, 0, 0}, lc_eval = {0, 0, 0};
    for (int r = 0; r < collect_rounds; r++) {
        gp.seed = 2000 + (uint64_t)seed + 104729u * (uint64_t)r;
        cp.first = 0;
        cp.count = n_rm_train;
        CHECK("collect", align_collect(sft, tok, prompts, rm_train, labeler, &lc_train, &cp), align_last_errmsg());
        gp.seed = 1999 + (uint64_t)seed + 104729u * (uint64_t)r;
        cp.first = n_rm_train;
        cp.count = n_rm_eval;
        CHECK("collect", align_collect(sft, tok, prompts, rm_eval, labeler, &lc_eval, &cp), align_last_errmsg());
    }
    snprintf(path, sizeof path, "%s/rankings.jsonl", dir);
    CHECK("save rankings", align_dataset_save_jsonl(rm_train, path), align_dataset_errmsg(rm_train));
    snprintf(path2, sizeof path2, "%s/rankings_heldout.jsonl", dir);
    CHECK("save rankings", align_dataset_save_jsonl(rm_eval, path2), align_dataset_errmsg(rm_eval));
    printf("  %lld + %lld held-out rankings of 4 samples in %.0fs -> %s\n", (long long)align_dataset_size(rm_train),
           (long long)align_dataset_size(rm_eval), now() - t0, path);
    printf("  all four samples tied (nothing to learn): %d of %d training rankings; pairs with a preference: %d "
           "training, %d held-out\n",
           lc_train.tied, lc_train.rankings, lc_train.pairs, lc_eval.pairs);

    /* ---- (c) reward model ------------------------------------------------ */
    printf("\n(c) reward model: the SFT model with a scalar head, trained on the rankings\n");
    align_model_params hp;
    ALIGN_MODEL_DEFAULT_PARAMS(&hp);
    hp.flags = ALIGN_MODEL_SCALAR_HEAD;
    hp.seed = (uint64_t)seed;
    align_model *rm_model = NULL;
    snprintf(path, sizeof path, "%s/sft.safetensors", dir);
    CHECK("reward model", align_model_load(&rm_model, path, &hp), align_last_errmsg());
    /* the trainer skips all-tied rankings: a step takes 8 of the others */
    int rm_steps = (lc_train.rankings - lc_train.tied + 7) / 8 * rm_epochs;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = (float)rm_lr;
    op.schedule = ALIGN_SCHEDULE_COSINE;
    op.total_steps = rm_steps > 0 ? rm_steps : 1;
    op.warmup_steps = rm_steps / 10;
    CHECK("optimizer", align_optimizer_create(&opt, rm_model, &op), align_last_errmsg());
    align_reward_train_params rp;
    ALIGN_REWARD_TRAIN_DEFAULT_PARAMS(&rp);
    rp.micro_batch = 8;
    rp.epochs = rm_epochs > 0 ? rm_epochs : 1;
    rp.seed = (uint64_t)seed;
    CHECK("reward trainer", align_trainer_create_reward(&tr, rm_model, tok, rm_train, opt, &rp), align_last_errmsg());
    align_step_stats ev;
    align_step_stats_init(&ev, sizeof ev);
    double rm_acc_before = NAN, rm_acc_after = NAN;
    CHECK("evaluate", align_trainer_evaluate(tr, rm_eval, &ev), align_trainer_errmsg(tr));
    align_trainer_metric(tr, ALIGN_METRICS_EVAL, "accuracy", &rm_acc_before);
    snprintf(path, sizeof path, "%s/metrics_rm.jsonl", dir);
    if (rm_steps > 0)
        run(tr, "rm", rm_steps, 10, path, (const char *const[]){"loss", "accuracy", "margin", NULL});
    CHECK("evaluate", align_trainer_evaluate(tr, rm_eval, &ev), align_trainer_errmsg(tr));
    align_trainer_metric(tr, ALIGN_METRICS_EVAL, "accuracy", &rm_acc_after);
    printf("  held-out pairwise accuracy %.1f%% (untrained head: %.1f%%)\n", 100 * rm_acc_after,
           100 * rm_acc_before);
    align_trainer_free(tr);
    align_optimizer_free(opt);
    align_reward_model *rm = NULL;
    CHECK("scorer", align_reward_model_from_model(&rm, rm_model, tok, NULL), align_last_errmsg());
    /* InstructGPT's normalisation: the demonstrations score 0 on average, 1 in std */
    CHECK("normalize",
          align_reward_model_normalize(rm, (const char *const *)train_prompts.prompt,
                                       (const char *const *)train_prompts.completion, train_prompts.n,
                                       ALIGN_REWARD_NORMALIZE_STD),
          align_reward_model_errmsg(rm));
    snprintf(path, sizeof path, "%s/reward.safetensors", dir);
    CHECK("save", align_model_save(rm_model, path), align_model_errmsg(rm_model));

    /* ---- (d) RL ---------------------------------------------------------- */
    printf("\n(d) %s against %s (KL penalty to the SFT policy)\n", !strcmp(algo, "ppo") ? "PPO" : "GRPO",
           !strcmp(reward, "rule") ? "the labeler's rule itself (control run)" : "the reward model");
    align_model *ref = NULL, *value = NULL;
    CHECK("reference", align_model_clone(&ref, sft, ALIGN_FROZEN), align_last_errmsg()); /* the SFT policy, frozen */
    align_optimizer *vopt = NULL;
    ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
    op.learning_rate = rl_lr > 0 ? (float)rl_lr : 2e-5f;
    op.weight_decay = 0.0f;
    CHECK("optimizer", align_optimizer_create(&opt, sft, &op), align_last_errmsg()); /* sft becomes the RL policy */
    align_rl_roles roles;
    ALIGN_RL_ROLES_INIT(&roles);
    roles.policy = sft;
    roles.policy_opt = opt;
    roles.reference = ref;
    align_reward_model *rule = NULL;
    if (!strcmp(reward, "rule"))
        CHECK("rule reward", align_reward_model_from_callback(&rule, rule_reward, NULL), align_last_errmsg());
    roles.reward = rule ? rule : rm;
    roles.tokenizer = tok;
    if (!strcmp(algo, "ppo")) {
        /* the value model starts from the reward model (InstructGPT) */
        CHECK("value", align_model_clone(&value, rm_model, 0), align_last_errmsg());
        ALIGN_OPTIMIZER_DEFAULT_PARAMS(&op);
        op.learning_rate = 1e-4f;
        op.weight_decay = 0.0f;
        CHECK("optimizer", align_optimizer_create(&vopt, value, &op), align_last_errmsg());
        roles.value = value;
        roles.value_opt = vopt;
        align_ppo_params pp;
        ALIGN_PPO_DEFAULT_PARAMS(&pp);
        pp.flags = ALIGN_RL_RAW_PROMPT; /* prompts as the SFT data has them, no chat template */
        pp.rollouts_per_step = 32;
        pp.ppo_epochs = 2;
        pp.minibatches = 2;
        pp.micro_batch = 16;
        pp.max_steps = rl_steps;
        pp.seed = (uint64_t)seed;
        pp.max_new_tokens = 64;
        pp.max_prompt_len = 64;
        pp.temperature = 1.0f;
        pp.kl_coef = kl >= 0 ? (float)kl : 0.05f;
        CHECK("ppo", align_trainer_create_ppo(&tr, &roles, prompts, &pp), align_last_errmsg());
    } else {
        align_grpo_params gr;
        ALIGN_GRPO_DEFAULT_PARAMS(&gr);
        gr.flags = ALIGN_RL_RAW_PROMPT;
        gr.group_size = 4;
        gr.prompts_per_step = 8;
        gr.iterations = 1;
        gr.minibatches = 1;
        gr.micro_batch = 16;
        gr.max_steps = rl_steps;
        gr.seed = (uint64_t)seed;
        gr.max_new_tokens = 64;
        gr.max_prompt_len = 64;
        gr.temperature = 1.0f;
        gr.beta = kl >= 0 ? (float)kl : 0.04f;
        CHECK("grpo", align_trainer_create_grpo(&tr, &roles, prompts, &gr), align_last_errmsg());
    }
    snprintf(path, sizeof path, "%s/metrics_rl.jsonl", dir);
    run(tr, algo, rl_steps, rl_steps > 60 ? 20 : 5, path,
        (const char *const[]){"objective/scores", "objective/kl", "loss", NULL});
    double score_first = tail_mean(path, "objective/scores", 1000) , kl_end = tail_mean(path, "objective/kl", 5);
    double score_end = tail_mean(path, "objective/scores", 5);
    {
        /* the first five steps' mean score: the SFT policy's, under the reward model */
        FILE *f = fopen(path, "r");
        char line[8192];
        double s = 0;
        int k = 0;
        while (f && k < 5 && fgets(line, sizeof line, f)) {
            const char *p = strstr(line, "\"objective/scores\": ");
            if (p) {
                s += atof(p + 20);
                k++;
            }
        }
        if (f)
            fclose(f);
        score_first = k ? s / k : NAN;
    }
    align_trainer_free(tr);
    snprintf(path2, sizeof path2, "%s/policy.safetensors", dir);
    CHECK("save", align_model_save(sft, path2), align_model_errmsg(sft));
    printf("  reward-model score %.3f (first 5 steps) -> %.3f (last 5); KL to the SFT policy %.3f nats/response\n",
           score_first, score_end, kl_end);

    /* ---- (e) evaluation without the reward model ----------------------- */
    printf("\n(e) held-out requests, judged by the labeler's rule (not the reward model)\n");
    quality rl_greedy = evaluate(sft, tok, &held, 0.0f, 1, 0, 3, "greedy answers after RL");
    quality rl_sampled = evaluate(sft, tok, &held, 1.0f, eval_rounds, 1000 + (uint64_t)seed, 0, NULL);

    /* ---- the table ------------------------------------------------------ */
    snprintf(path, sizeof path, "%s/summary.tsv", dir);
    FILE *sf = fopen(path, "w");
    const char *score_name = rule ? "rule score in training (control)" : "reward-model score (train prompts)";
    /* se: standard error of after - before over the held-out requests
     * (sampled rows only) */
#define SE2(a, b) paired_se((a), (b), held.n)
    struct { const char *stage, *metric; double before, after, se; } rows[] = {
        {"sft", "held-out exact match, greedy", NAN, sft_greedy.exact, NAN},
        {"rm", "held-out pairwise accuracy", rm_acc_before, rm_acc_after, NAN},
        {algo, score_name, score_first, score_end, NAN},
        {algo, "KL to SFT policy (nats/response)", 0.0, kl_end, NAN},
        {"eval", "exact match, sampled T=1", sft_sampled.exact, rl_sampled.exact,
         SE2(sft_sampled.per_exact, rl_sampled.per_exact)},
        {"eval", "labeler score, sampled T=1", sft_sampled.rule, rl_sampled.rule,
         SE2(sft_sampled.per_rule, rl_sampled.per_rule)},
        {"eval", "exact match, greedy", sft_greedy.exact, rl_greedy.exact, NAN},
        {"eval", "labeler score, greedy", sft_greedy.rule, rl_greedy.rule, NAN},
    };
#undef SE2
    printf("\n%-5s %-38s %9s %9s %9s\n", "stage", "metric", "before", "after", "+-se");
    printf("%-5s %-38s %9s %9s %9s\n", "-----", "--------------------------------------", "--------", "--------",
           "--------");
    if (sf)
        fprintf(sf, "stage\tmetric\tbefore\tafter\tse\n");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        printf("%-5s %-38s %9.3f %9.3f", rows[i].stage, rows[i].metric, rows[i].before, rows[i].after);
        if (isnan(rows[i].se))
            printf("\n");
        else
            printf(" %9.3f\n", rows[i].se);
        if (sf)
            fprintf(sf, "%s\t%s\t%.4f\t%.4f\t%.4f\n", rows[i].stage, rows[i].metric, rows[i].before, rows[i].after,
                    rows[i].se);
    }
    if (sf)
        fclose(sf);
    if (rm_acc_after < 0.6)
        printf("warning: the reward model ranks only %.0f%% of held-out pairs right (< 60%%): it has learnt little of "
               "the labeler's rule, and RL against it cannot be expected to help (docs/pipeline.md)\n",
               100 * rm_acc_after);
    printf("(\"before\" of the eval rows = the SFT policy, \"after\" = the %s policy; %d distinct held-out requests, "
           "sampled rows average %d samples per request, +-se = standard error of the change; labeler score: 1 + 1/n "
           "is a perfect list)\n",
           algo, held.n, eval_rounds);
    printf("total %.0fs\n", now() - t_start);

    align_optimizer_free(opt);
    align_optimizer_free(vopt);
    quality *qs[] = {&sft_greedy, &sft_sampled, &rl_greedy, &rl_sampled};
    for (int i = 0; i < 4; i++) {
        free(qs[i]->per_exact);
        free(qs[i]->per_rule);
    }
    align_model_free(value);
    align_model_free(ref);
    align_reward_model_free(rm);
    align_reward_model_free(rule);
    align_model_free(rm_model);
    align_model_free(sft);
    align_dataset_free(prompts);
    align_dataset_free(rm_train);
    align_dataset_free(rm_eval);
    align_dataset_free(train);
    align_dataset_free(test);
    align_tokenizer_free(tok);
    free_demos(&held);
    free_demos(&train_prompts);
    return 0;
}
