/* dist.c — `--dist mpi`: data-parallel training under mpirun
 * (docs/distributed.md). Built with MPI when the Makefile finds mpicc
 * (ALIGN_WITH_MPI; libalign_mpi). --dist auto (the default) turns it on
 * when mpirun started more than one process; --dist none keeps every
 * process on its own.
 *
 * Under MPI every rank runs the same command on the same files; rank 0
 * alone prints progress, writes --metrics, the checkpoints and --out. A
 * failure on any rank ends every rank with MPI_Abort (no rank waits for one
 * that gave up); the library's collectives time out after
 * $ALIGN_DIST_TIMEOUT seconds (300 by default) when a rank dies. */
#include "alignctl.h"

#include <stdlib.h>
#include <string.h>

#ifdef ALIGN_WITH_MPI
#include <align_mpi.h>

static align_dist g_dist;
static int g_on;

static int launched_by_mpirun(void)
{
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n)
        n = getenv("PMI_SIZE");
    return n && atoi(n) > 1;
}

int dist_start(train_opts *o, align_trainer *tr)
{
    const char *mode = o->dist ? o->dist : "auto";
    if (strcmp(mode, "none") == 0 || (strcmp(mode, "auto") == 0 && !launched_by_mpirun()))
        return 0;
    int init = 0, prov = 0;
    MPI_Initialized(&init);
    if (!init && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &prov) != MPI_SUCCESS) {
        msg("--dist mpi: MPI_Init failed");
        return EXIT_RUNTIME;
    }
    int rc = align_dist_mpi_create(&g_dist, MPI_COMM_WORLD, 0);
    if (rc < 0)
        return rt_fail(rc, "", "--dist mpi: cannot create the communicator");
    rc = align_trainer_set_dist(tr, &g_dist);
    if (rc < 0) {
        rt_fail(rc, align_trainer_errmsg(tr), "--dist mpi: rank %d cannot join", (int)g_dist.rank);
        MPI_Abort(MPI_COMM_WORLD, EXIT_RUNTIME);
    }
    g_on = 1;
    g_ckpt_links = g_dist.rank == 0;
    if (g_dist.rank != 0) {
        o->quiet = 1;
        o->metrics_path = NULL;
    } else {
        msg("data parallel over %d MPI ranks", (int)g_dist.size);
    }
    return 0;
}

int dist_rank(void)
{
    return g_on ? g_dist.rank : 0;
}

int dist_active(void)
{
    return g_on;
}

void dist_end(int status)
{
    if (!g_on)
        return;
    g_on = 0;
    if (status != 0 && status != EXIT_INTERRUPTED && status != 128 + 15) {
        /* This rank failed; the others may be waiting in a collective. */
        fprintf(stderr, "alignctl: rank %d failed (status %d); stopping every rank\n", (int)g_dist.rank, status);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    align_dist_mpi_free(&g_dist);
    MPI_Finalize();
}

#else /* built without MPI */

int dist_start(train_opts *o, align_trainer *tr)
{
    (void)tr;
    if (o->dist && strcmp(o->dist, "mpi") == 0) {
        msg("--dist mpi: this alignctl was built without MPI (install libopenmpi-dev and rebuild)");
        return EXIT_RUNTIME;
    }
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (n && atoi(n) > 1 && !(o->dist && strcmp(o->dist, "none") == 0)) {
        msg("started by mpirun with %s processes, but this alignctl was built without MPI: each would train "
            "alone (pass --dist none to do that on purpose)", n);
        return EXIT_RUNTIME;
    }
    return 0;
}

int dist_rank(void)
{
    return 0;
}

int dist_active(void)
{
    return 0;
}

void dist_end(int status)
{
    (void)status;
}
#endif
