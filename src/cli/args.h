/* A small command-line option parser shared by the barlow subcommands: "--name VALUE" and
 * "--name=VALUE", typed values with range checks, defaults given as text (so the help and
 * the resolved configuration print them as the user would type them), repeatable options,
 * and an unknown-option error that suggests the closest name by edit distance.
 *
 * A command describes its options in a table of bt_arg and calls bt_args_parse once; every
 * error is one line naming the option, left in bt_error() (the command exits 2 with it). */
#ifndef BARLOW_CLI_ARGS_H
#define BARLOW_CLI_ARGS_H
#include <stdio.h>

typedef enum {
    BT_ARG_INT,    /* int *        range [min, max] */
    BT_ARG_LONG,   /* long *       range [min, max] */
    BT_ARG_DOUBLE, /* double *     range [min, max], finite */
    BT_ARG_STRING, /* const char ** (points into argv or at the default text); non-empty */
    BT_ARG_CHOICE, /* const char ** one of `choices` ("a|b|c") */
    BT_ARG_FLAG,   /* int *        set to 1 by "--name"; takes no value */
    BT_ARG_LIST,   /* bt_arg_list * every occurrence appended (repeatable) */
} bt_arg_type;

typedef struct {
    const char **v; /* (n) values in command-line order, pointing into argv */
    int n, cap;
} bt_arg_list;

typedef struct {
    const char *name;    /* without the leading "--", e.g. "batch-size" */
    bt_arg_type type;
    void *dst;           /* see bt_arg_type */
    const char *def;     /* default as text, parsed like a command-line value; NULL: none */
    double min, max;     /* numeric range, inclusive (ignored when min > max) */
    const char *choices; /* BT_ARG_CHOICE: "auto|direct|gram" */
    const char *help;    /* one line */
    int seen;            /* set by bt_args_parse: times given on the command line */
} bt_arg;

/* Applies every default, then parses argv[first..argc). Arguments not starting with "--"
 * (and everything after a bare "--") are positional: up to max_pos of them are stored in
 * pos[] and counted in *npos; more is an error. Returns 0 (BT_OK) or BT_EINVAL with a
 * one-line message naming the option: unknown option (with "did you mean --x?" when one is
 * close), missing value, malformed or out-of-range value, value given to a flag. */
int bt_args_parse(bt_arg *opts, int nopts, int argc, char **argv, int first, const char **pos,
                  int max_pos, int *npos);

/* The option named `name` in the table, or NULL. */
bt_arg *bt_args_find(bt_arg *opts, int nopts, const char *name);

/* Lists the options, one a line: "--name VALUE   help (default: X)". */
void bt_args_help(FILE *f, const bt_arg *opts, int nopts);

/* Levenshtein distance between a and b (ASCII), for suggestions. */
int bt_args_edit_distance(const char *a, const char *b);

/* Frees the storage of BT_ARG_LIST destinations (the strings belong to argv). */
void bt_args_free(bt_arg *opts, int nopts);

#endif
