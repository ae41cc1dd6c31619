/* Prints the kernel paths (BARLOW_ISA values) this CPU can execute, one per line, the one
 * barlow picks by itself first: tests/run.sh runs the suite once per line. */
#include "barlow/cpu.h"
#include <stdio.h>

int main(void) {
    bt_isa best = bt_isa_best();
    printf("%s\n", bt_isa_name(best));
    for (int i = BT_ISA_COUNT - 1; i >= 0; i--)
        if ((bt_isa)i != best && bt_isa_supported((bt_isa)i)) printf("%s\n", bt_isa_name((bt_isa)i));
    return 0;
}
