/* Data-parallel equivalence, run through mpirun: 2 ranks with global batch 2B against one
 * process with batch 2B (tests/mpi/mpi_equiv.c, built by `make mpi` into build-mpi/), for
 * both forms of the loss. */
#include "testutil.h"
#include <stdlib.h>
#include <string.h>

static int run(const char *form) {
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "mpirun --allow-run-as-root --oversubscribe -np 2 build-mpi/mpi/mpi_equiv %s 5 > %s/mpi_%s.log 2>&1",
             form, tu_tmpdir(), form);
    int rc = system(cmd);
    snprintf(cmd, sizeof cmd, "cat %s/mpi_%s.log", tu_tmpdir(), form);
    if (system(cmd) != 0) return -1;
    return rc;
}

static void gram_form(void) { CHECK(run("gram") == 0, "2-rank run (Gram form) differs from 1 process"); }
static void direct_form(void) { CHECK(run("direct") == 0, "2-rank run (direct form) differs from 1 process"); }

static void built_with_mpi(void) {
    CHECK(system("test -x build-mpi/mpi/mpi_equiv && command -v mpirun >/dev/null") == 0,
          "build-mpi/mpi/mpi_equiv or mpirun missing: run `make mpi` (needs libopenmpi-dev)");
}

int main(void) {
    TEST_RUN(built_with_mpi);
    TEST_RUN(gram_form);
    TEST_RUN(direct_form);
    return tu_finish();
}
