/*
 * align_mpi.h — the MPI communicator for libalign's data-parallel training
 * (docs/distributed.md). A separate library, libalign_mpi.so (built with
 * `make MPI=1`, or by default where mpicc is found), so libalign.so itself
 * never links MPI. Link: -lalign_mpi -lalign and MPI (mpicc).
 *
 *     MPI_Init(&argc, &argv);
 *     align_dist d;
 *     align_dist_mpi_create(&d, MPI_COMM_WORLD, 0);   // 0 = default timeout
 *     ... build the same trainer on every rank ...
 *     align_trainer_set_dist(tr, &d);
 *     while (align_trainer_step(tr, &st) == ALIGN_OK) ...
 *     align_trainer_free(tr);
 *     align_dist_mpi_free(&d);
 *     MPI_Finalize();
 *
 * Every collective is non-blocking underneath and polled against a
 * deadline: when a peer does not answer within timeout_sec (a rank died,
 * hangs, or left the step early), the call returns ALIGN_EIO with a message
 * naming the operation, and the trainer step fails on this rank. The
 * communicator is then unusable (MPI cannot cancel a collective): the host
 * should report and call MPI_Abort (alignctl does), which ends every rank.
 *
 * Threads: the trainer calls the communicator from the thread that runs the
 * step. MPI_Init (MPI_THREAD_SINGLE/FUNNELED) is enough when that is the
 * main thread; with align_trainer_step_async (align_uv.h) the step runs on
 * libuv's thread pool: initialise MPI with at least MPI_THREAD_SERIALIZED.
 */
#ifndef ALIGN_MPI_H
#define ALIGN_MPI_H

#include <align.h>
#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exported by libalign_mpi.so (not libalign.so: a macro of its own). */
#if defined(__GNUC__) || defined(__clang__)
#  define ALIGN_MPI_API __attribute__((visibility("default")))
#else
#  define ALIGN_MPI_API
#endif

/* Fills *d for comm (duplicated: libalign's messages never mix with the
 * host's). timeout_sec <= 0: $ALIGN_DIST_TIMEOUT seconds if set, else 300.
 * Collective over comm. 0 or a negative ALIGN_E* code. */
ALIGN_MPI_API int align_dist_mpi_create(align_dist *d, MPI_Comm comm, double timeout_sec);
/* Releases what create allocated (before MPI_Finalize); *d is zeroed. */
ALIGN_MPI_API void align_dist_mpi_free(align_dist *d);

#ifdef __cplusplus
}
#endif
#endif
