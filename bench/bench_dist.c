/* bench_dist.c — data parallel over MPI (docs/distributed.md): the time to
 * all-reduce the gradients of GPT-2 124M between 2 local ranks (libalign_mpi's
 * deterministic ring, and MPI_Allreduce for reference) against the time of a
 * 124M training step (4 x 64 tokens: forward, backward, AdamW) that each rank
 * runs at the same time with one thread. Run by `make bench` (it starts itself
 * under `mpirun -np 2 --oversubscribe` when launched directly); prints JSON
 * lines. ALIGN_BENCH_ITERS all-reduces (default 3, median), one warm-up and
 * one timed step (ALIGN_BENCH_DIST_STEP=0 skips the step). Built only with
 * MPI (the Makefile's MPI block); without it, it says so and exits 0. */
#ifdef ALIGN_WITH_MPI
#include "align.h"
#include "align_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void emit(const char *name, double v, const char *unit)
{
    printf("{\"name\":\"%s\",\"value\":%.6g,\"unit\":\"%s\",\"kernel\":\"%s\"}\n", name, v, unit, align_blas_info());
    fflush(stdout);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE")) {
        /* launched directly (make bench): become a 2-rank job */
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        char *args[] = {(char *)"mpirun", (char *)"-np", (char *)"2", (char *)"--oversubscribe", argv[0], NULL};
        execvp("mpirun", args);
        fprintf(stderr, "bench_dist: cannot run mpirun; skipped\n");
        return 0;
    }
    (void)argc;
    int prov = 0;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &prov);
    align_dist d;
    if (align_dist_mpi_create(&d, MPI_COMM_WORLD, 600) < 0) {
        fprintf(stderr, "bench_dist: cannot create the communicator\n");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int iters = getenv("ALIGN_BENCH_ITERS") ? atoi(getenv("ALIGN_BENCH_ITERS")) : 3;
    if (iters < 1)
        iters = 1;
    align_threads_set(1); /* two ranks on two cores */

    align_model_params p;
    align_model_default_params(&p, sizeof p);
    p.n_layer = 12;
    p.n_head = 12;
    p.n_embd = 768;
    p.vocab_size = 50257;
    p.max_seq_len = 1024;
    align_model *m = NULL;
    if (align_model_create(&m, &p)) {
        fprintf(stderr, "bench_dist: %s\n", align_last_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    const size_t N = (size_t)align_model_num_params(m);
    float *g = malloc(N * sizeof *g);
    for (size_t i = 0; i < N; i++)
        g[i] = (float)((i * 2654435761u) % 1000) * 1e-6f;

    double *t_ring = calloc((size_t)iters, sizeof(double)), *t_mpi = calloc((size_t)iters, sizeof(double));
    for (int it = 0; it < iters; it++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now();
        if (d.allreduce_sum_f32(d.user_data, g, N) < 0)
            MPI_Abort(MPI_COMM_WORLD, 1);
        t_ring[it] = now() - t0;
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = now();
        MPI_Allreduce(MPI_IN_PLACE, g, (int)N, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        t_mpi[it] = now() - t0;
    }
    qsort(t_ring, (size_t)iters, sizeof(double), cmp_d);
    qsort(t_mpi, (size_t)iters, sizeof(double), cmp_d);
    double ring_ms = t_ring[iters / 2] * 1e3, mpi_ms = t_mpi[iters / 2] * 1e3;

    double step_ms = 0.0;
    const char *ds = getenv("ALIGN_BENCH_DIST_STEP");
    if (!ds || atoi(ds) != 0) {
        align_optimizer_params op;
        align_optimizer_default_params(&op, sizeof op);
        align_optimizer *o = NULL;
        if (align_optimizer_create(&o, m, &op))
            MPI_Abort(MPI_COMM_WORLD, 1);
        enum { B = 4, T = 64 };
        int32_t tok[B * T], len[B];
        static float lp[B * (T - 1)], dl[B * (T - 1)];
        for (int i = 0; i < B * T; i++)
            tok[i] = (int32_t)((i * 2654435761u) % 50257u);
        for (int b = 0; b < B; b++)
            len[b] = T;
        for (int i = 0; i < B * (T - 1); i++)
            dl[i] = -1.0f / (B * (T - 1));
        for (int it = 0; it < 2; it++) { /* warm-up, then the timed step */
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now();
            if (align_model_forward(m, tok, len, B, T, lp, NULL, NULL) || align_model_backward(m, dl, NULL) ||
                align_optimizer_step(o, NULL) < 0)
                MPI_Abort(MPI_COMM_WORLD, 1);
            step_ms = (now() - t0) * 1e3;
        }
        align_optimizer_free(o);
    }
    if (d.rank == 0) {
        double mb = (double)N * 4.0 / 1e6;
        double per_rank = 2.0 * (d.size - 1) / d.size * (double)N * 4.0 / 1e6;
        emit("dist: 124M gradients, MB", mb, "MB");
        emit("dist: 124M ring all-reduce, MB sent per rank", per_rank, "MB");
        emit("dist: 124M ring all-reduce, 2 local ranks, ms", ring_ms, "ms");
        emit("dist: 124M MPI_Allreduce, 2 local ranks, ms", mpi_ms, "ms");
        emit("dist: 124M ring all-reduce, GB/s per rank", per_rank / 1e3 / (ring_ms * 1e-3), "GB/s");
        if (step_ms > 0) {
            emit("dist: 124M step 4x64 per rank (2 ranks, 1 thread each), ms", step_ms, "ms");
            emit("dist: all-reduce / step", ring_ms / step_ms, "ratio");
        }
    }
    free(g);
    free(t_ring);
    free(t_mpi);
    align_model_free(m);
    align_dist_mpi_free(&d);
    MPI_Finalize();
    return 0;
}
#else
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "bench_dist: built without MPI (install libopenmpi-dev and rebuild); skipped\n");
    return 0;
}
#endif
