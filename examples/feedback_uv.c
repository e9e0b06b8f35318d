/* feedback_uv.c — training and late human feedback on one libuv loop.
 *
 *   feedback_uv [JOURNAL.jsonl] [--steps N]
 *
 * SFT steps run on libuv's thread pool; after each one a ranking request
 * (a prompt and three responses) goes into a crash-safe journal. The loop
 * thread receives each request, and a timer — standing in for a person
 * using a labelling page — answers them later, newest first. At the end the
 * answers become ranking records of a dataset. Run it twice: requests left
 * pending by the first run (or by Ctrl-\) are delivered again. */
#include "align_uv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct app {
    uv_loop_t *loop;
    align_trainer *tr;
    align_journal *j;
    int steps_left;
    int64_t waiting[64];   /* delivered, not answered yet */
    int n_waiting;
    uv_timer_t annotator;
} app;

static void check(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "feedback_uv: %s: %s (%s)\n", what, align_last_errmsg(), align_err_name(rc));
        exit(1);
    }
}

/* Loop thread: a new (or restored) request. */
static void on_request(align_journal *j, int64_t id, void *ud)
{
    app *a = ud;
    align_feedback_request r;
    align_feedback_request_init(&r, sizeof r);
    check(align_journal_request(j, id, &r), "request");
    printf("request %lld: %s (%d responses)\n", (long long)id, r.prompt, (int)r.k);
    if (a->n_waiting < 64)
        a->waiting[a->n_waiting++] = id;
}

/* Loop thread, every 25 ms: the "person" answers the newest request,
 * preferring shorter responses (ties share a place). */
static void on_annotator(uv_timer_t *t)
{
    app *a = t->data;
    if (a->n_waiting == 0) {
        if (a->steps_left == 0 && align_journal_count(a->j, ALIGN_REQUEST_PENDING) == 0) {
            /* training over, all answered: let uv_run return */
            uv_close((uv_handle_t *)t, NULL);
            check(align_journal_unwatch(a->j), "unwatch");
        }
        return;
    }
    int64_t id = a->waiting[--a->n_waiting];
    int32_t rank[3];
    for (int i = 0; i < 3; i++) {
        size_t li = strlen(align_journal_response(a->j, id, i));
        rank[i] = 0;
        for (int k = 0; k < 3; k++)
            rank[i] += strlen(align_journal_response(a->j, id, k)) < li;
    }
    align_provenance pv;
    align_provenance_default(&pv, sizeof pv);
    pv.annotator = "example-annotator";
    check(align_journal_answer_rank(a->j, id, rank, &pv), "answer");
    printf("answered %lld: [%d %d %d]\n", (long long)id, (int)rank[0], (int)rank[1], (int)rank[2]);
}

/* Loop thread: one step finished; ask for feedback, start the next step. */
static void on_step(align_trainer *tr, int status, const align_step_stats *s, void *ud)
{
    app *a = ud;
    check(status, "step");
    printf("step %lld: loss %.3f\n", (long long)s->step, (double)s->loss);
    char prompt[64];
    snprintf(prompt, sizeof prompt, "After step %lld, which answer is best?", (long long)s->step);
    const char *responses[3] = { "a long and winding answer", "short", "a medium answer" };
    int64_t id;
    check(align_journal_submit(a->j, ALIGN_FEEDBACK_RANK, prompt, responses, 3, 0, &id), "submit");
    if (--a->steps_left > 0)
        check(align_trainer_step_async(tr, a->loop, on_step, a), "step_async");
}

int main(int argc, char **argv)
{
    const char *path = "feedback.jsonl";
    app a = { .loop = uv_default_loop(), .steps_left = 5 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            a.steps_left = atoi(argv[++i]);
        else
            path = argv[i];
    }
    /* a tiny model, trained from scratch on a few demonstrations */
    align_model_params mp;
    ALIGN_MODEL_DEFAULT_PARAMS(&mp);
    mp.n_layer = 2, mp.n_head = 2, mp.n_embd = 32, mp.vocab_size = 257, mp.max_seq_len = 32;
    align_model *m;
    align_optimizer *o;
    align_tokenizer *t;
    align_dataset *d, *ranked;
    check(align_model_create(&m, &mp), "model");
    check(align_optimizer_create(&o, m, NULL), "optimizer");
    check(align_tokenizer_bytes(&t), "tokenizer");
    check(align_dataset_create(&d), "dataset");
    check(align_dataset_add_demo(d, "2+2=", "4", NULL), "demo");
    check(align_dataset_add_demo(d, "3+3=", "6", NULL), "demo");
    align_sft_params sp;
    ALIGN_SFT_DEFAULT_PARAMS(&sp);
    sp.micro_batch = 2;
    sp.max_steps = a.steps_left;
    check(align_trainer_create_sft(&a.tr, m, t, d, o, &sp), "trainer");

    check(align_journal_open(&a.j, path, 0), "journal");
    check(align_journal_watch(a.j, a.loop, on_request, &a), "watch");
    uv_timer_init(a.loop, &a.annotator);
    a.annotator.data = &a;
    uv_timer_start(&a.annotator, on_annotator, 25, 25);
    if (a.steps_left > 0)
        check(align_trainer_step_async(a.tr, a.loop, on_step, &a), "step_async");
    uv_run(a.loop, UV_RUN_DEFAULT);   /* until training is over and all is answered */

    check(align_dataset_create(&ranked), "dataset");
    int64_t n;
    check(align_journal_export(a.j, ranked, 0, &n), "export");
    printf("%lld answered requests exported as %lld ranking records; %lld pending\n", (long long)n,
           (long long)align_dataset_size(ranked), (long long)align_journal_count(a.j, ALIGN_REQUEST_PENDING));
    align_journal_close(a.j);
    align_dataset_free(ranked);
    align_trainer_free(a.tr);
    align_dataset_free(d);
    align_tokenizer_free(t);
    align_optimizer_free(o);
    align_model_free(m);
    uv_loop_close(a.loop);
    return 0;
}
