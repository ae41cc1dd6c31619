/* Prints the name of the kernel set ("core") OpenBLAS picked for this process: tests/run.sh
 * uses it to run the suite once per core type the CPU can execute without repeating the one
 * OpenBLAS detects (OPENBLAS_CORETYPE, when set, is what it reports). */
#include <stdio.h>

char *openblas_get_corename(void);

int main(void) {
    printf("%s\n", openblas_get_corename());
    return 0;
}
