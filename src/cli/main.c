/* The barlow command-line program: dispatches `barlow COMMAND ...` to the command's entry
 * point (each takes argc/argv with argv[0] = the command name). */
#include <stdio.h>
#include <string.h>

#define BARLOW_VERSION "0.1.0"

int bt_cmd_augment_preview(int argc, char **argv);

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} bt_command;

static const bt_command commands[] = {
    {"augment-preview", bt_cmd_augment_preview,
     "write a PNG grid of images beside their two augmented views"},
};
#define NCOMMANDS (int)(sizeof commands / sizeof *commands)

static void usage(FILE *f) {
    fprintf(f, "barlow %s: Barlow Twins self-supervised learning in C\n\n"
               "usage: barlow COMMAND [options]    (barlow help COMMAND for its options)\n\n"
               "commands:\n", BARLOW_VERSION);
    for (int i = 0; i < NCOMMANDS; i++) fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n  --help, --version\n");
}

static const bt_command *find(const char *name) {
    for (int i = 0; i < NCOMMANDS; i++)
        if (!strcmp(commands[i].name, name)) return &commands[i];
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("barlow %s\n", BARLOW_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        const bt_command *c = find(argv[2]);
        if (!c) {
            fprintf(stderr, "barlow: unknown command '%s' (see barlow --help)\n", argv[2]);
            return 2;
        }
        char *args[] = {(char *)c->name, "--help", NULL};
        return c->run(2, args);
    }
    const bt_command *c = find(cmd);
    if (!c) {
        fprintf(stderr, "barlow: unknown command '%s' (see barlow --help)\n", cmd);
        return 2;
    }
    return c->run(argc - 1, argv + 1);
}
