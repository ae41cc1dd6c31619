/* MPI-backed bt_comm (built with -DBT_MPI), or the single-process stub. */
#include "barlow/comm.h"
#include "barlow/error.h"
#include <stdio.h>
#include <stdlib.h>

#ifdef BT_MPI
#include <mpi.h>

static int check(int rc, const char *what) {
    if (rc == MPI_SUCCESS) return BT_OK;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return bt_fail(BT_EIO, "MPI %s failed: %s", what, msg);
}
static int ar64(const bt_comm *c, double *b, size_t n) {
    (void)c;
    for (size_t off = 0; off < n; off += 1 << 30) {
        int cnt = (int)(n - off < (size_t)1 << 30 ? n - off : (size_t)1 << 30);
        int rc = check(MPI_Allreduce(MPI_IN_PLACE, b + off, cnt, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "allreduce");
        if (rc) return rc;
    }
    return BT_OK;
}
static int ar32(const bt_comm *c, float *b, size_t n) {
    (void)c;
    for (size_t off = 0; off < n; off += 1 << 30) {
        int cnt = (int)(n - off < (size_t)1 << 30 ? n - off : (size_t)1 << 30);
        int rc = check(MPI_Allreduce(MPI_IN_PLACE, b + off, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD), "allreduce");
        if (rc) return rc;
    }
    return BT_OK;
}
static int iar32(const bt_comm *c, float *b, size_t n, void **req) {
    (void)c;
    *req = NULL;
    if (n > (size_t)1 << 30) return bt_fail(BT_EINVAL, "all-reduce bucket of %zu floats too large", n);
    MPI_Request *r = malloc(sizeof *r);
    if (!r) return bt_fail(BT_ENOMEM, "out of memory");
    int rc = check(MPI_Iallreduce(MPI_IN_PLACE, b, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, r),
                   "iallreduce");
    if (rc) free(r);
    else *req = r;
    return rc;
}
static int tst(const bt_comm *c, void *req, int *done) {
    (void)c;
    *done = 0;
    int rc = check(MPI_Test((MPI_Request *)req, done, MPI_STATUS_IGNORE), "test");
    return rc;
}
static int wt(const bt_comm *c, void *req) {
    (void)c;
    int rc = check(MPI_Wait((MPI_Request *)req, MPI_STATUS_IGNORE), "wait");
    free(req);
    return rc;
}
static int ag32(const bt_comm *c, const float *s, float *r, size_t n) {
    (void)c;
    if (n > (size_t)1 << 30) return bt_fail(BT_EINVAL, "allgather of %zu floats too large", n);
    return check(MPI_Allgather(s, (int)n, MPI_FLOAT, r, (int)n, MPI_FLOAT, MPI_COMM_WORLD), "allgather");
}
static int bc(const bt_comm *c, void *b, size_t bytes, int root) {
    (void)c;
    if (bytes > (size_t)1 << 30) return bt_fail(BT_EINVAL, "broadcast of %zu bytes too large", bytes);
    return check(MPI_Bcast(b, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
}
static int ab(const bt_comm *c, int code) {
    (void)c;
    fflush(stdout);
    fflush(stderr);
    int rc = MPI_Abort(MPI_COMM_WORLD, code);
    if (rc != MPI_SUCCESS) return check(rc, "abort");
    return bt_fail(BT_EIO, "MPI_Abort(%d) returned", code);
}

int bt_comm_open(bt_comm **out, int *argc, char ***argv, int launched, int launched_world) {
    (void)launched_world;
    *out = NULL;
    if (!launched) return BT_OK;
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return bt_fail(BT_EIO, "MPI_Init failed");
    /* Errors in collectives come back as codes; we then abort the whole job ourselves. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    bt_comm *c = calloc(1, sizeof *c);
    if (!c) {
        MPI_Finalize();
        return bt_fail(BT_ENOMEM, "out of memory");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->world);
    c->allreduce_f64 = ar64;
    c->allreduce_f32 = ar32;
    c->allgather_f32 = ag32;
    c->iallreduce_f32 = iar32;
    c->test = tst;
    c->wait = wt;
    c->bcast = bc;
    c->abort = ab;
    if (c->world == 1) {
        MPI_Finalize();
        free(c);
        return BT_OK;
    }
    *out = c;
    return BT_OK;
}

void bt_comm_finalize(bt_comm *c) {
    if (!c) return;
    MPI_Finalize();
    free(c);
}

int bt_comm_have_mpi(void) { return 1; }

#else

int bt_comm_open(bt_comm **out, int *argc, char ***argv, int launched, int launched_world) {
    (void)argc;
    (void)argv;
    *out = NULL;
    if (launched && launched_world > 1)
        return bt_fail(BT_EINVAL, "started by mpirun with %d ranks, but this build has no MPI "
                                  "(rebuild with `make MPI=1`)", launched_world);
    return BT_OK;
}
void bt_comm_finalize(bt_comm *c) { (void)c; }
int bt_comm_have_mpi(void) { return 0; }

#endif
