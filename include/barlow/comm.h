/* Data-parallel communication: the few collectives that synchronised batch norm, the global
 * loss and the gradient all-reduce need. A NULL communicator (or world == 1) means a single
 * process; the MPI implementation exists only in builds made with `make MPI=1` (BT_MPI). All
 * collectives are blocking and must be called by every rank in the same order. */
#ifndef BARLOW_COMM_H
#define BARLOW_COMM_H
#include <stddef.h>

typedef struct bt_comm bt_comm;
struct bt_comm {
    int rank, world;
    /* In-place sum over ranks. */
    int (*allreduce_f64)(const bt_comm *c, double *buf, size_t n);
    int (*allreduce_f32)(const bt_comm *c, float *buf, size_t n);
    /* recv (world * n) = concatenation of every rank's send (n), in rank order. */
    int (*allgather_f32)(const bt_comm *c, const float *send, float *recv, size_t n);
    /* Non-blocking in-place sum over ranks: starts it and returns a request, which
     * test (nonzero when done; it also drives MPI's progress) and wait complete. */
    int (*iallreduce_f32)(const bt_comm *c, float *buf, size_t n, void **req);
    int (*test)(const bt_comm *c, void *req, int *done);
    int (*wait)(const bt_comm *c, void *req);
    /* Broadcast bytes from rank `root`. */
    int (*bcast)(const bt_comm *c, void *buf, size_t bytes, int root);
    /* Asks the launcher to end every rank of the job with exit status `code`: the way out
     * that leaves no rank waiting in a collective. Only the program calls it. The library
     * never exits: on a working MPI the call does not come back, and where it does it returns
     * an error (BT_EIO, bt_error() set) and the caller decides to exit. */
    int (*abort)(const bt_comm *c, int code);
    void *impl;
};

static inline int bt_comm_world(const bt_comm *c) { return c ? c->world : 1; }
static inline int bt_comm_rank(const bt_comm *c) { return c ? c->rank : 0; }

/* Initialises MPI when the build has it and `launched` says the process was started by a
 * launcher (mpirun, srun, a PMI launcher: the program decides that from its environment;
 * the library reads none) with `launched_world` ranks (0: not known). *c is NULL for a
 * single process. Errors (MPI_Init failing; a multi-rank launch of a build without MPI:
 * BT_EINVAL) are returned: the program must then stop, since a job whose ranks cannot talk
 * must not train on one of them alone. */
int bt_comm_open(bt_comm **c, int *argc, char ***argv, int launched, int launched_world);
void bt_comm_finalize(bt_comm *c);
/* 1 if this build was made with MPI. */
int bt_comm_have_mpi(void);

#endif
