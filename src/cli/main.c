/* The barlow command-line program: dispatches to subcommands. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: barlow COMMAND [options]\n");
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "barlow: unknown command '%s'\n", argv[1]);
    return 2;
}
