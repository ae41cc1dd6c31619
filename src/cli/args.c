/* The shared option parser of the barlow subcommands (see args.h). */
#include "cli/args.h"
#include "barlow/error.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int bt_args_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 255 || lb > 255) return INT_MAX; /* option names are short; so are typos of them */
    int row[256];                             /* (lb + 1) one row of the DP table */
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

bt_arg *bt_args_find(bt_arg *opts, int nopts, const char *name) {
    for (int i = 0; i < nopts; i++)
        if (!strcmp(opts[i].name, name)) return &opts[i];
    return NULL;
}

static int choice_ok(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; p && *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, v, n)) return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static int range_ok(const bt_arg *o, double v) { return o->min > o->max || (v >= o->min && v <= o->max); }

/* "out of range (1 .. 2147483647)" in the user's terms. */
static int range_error(const bt_arg *o, const char *v) {
    char lo[32] = "", hi[32] = "";
    int open_hi = o->max >= 1e300 || (o->type == BT_ARG_INT && o->max >= INT_MAX) ||
                  (o->type == BT_ARG_LONG && o->max >= (double)LONG_MAX);
    snprintf(lo, sizeof lo, "%g", o->min);
    snprintf(hi, sizeof hi, "%g", o->max);
    if (open_hi)
        return bt_fail(BT_EINVAL, "--%s: %s is out of range (must be >= %s)", o->name, v, lo);
    return bt_fail(BT_EINVAL, "--%s: %s is out of range (must be in [%s, %s])", o->name, v, lo, hi);
}

/* Stores text value v into option o. */
static int set_value(bt_arg *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->type) {
    case BT_ARG_INT:
    case BT_ARG_LONG: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno == ERANGE)
            return bt_fail(BT_EINVAL, "--%s: '%s' is not an integer", o->name, v);
        if (o->type == BT_ARG_INT && (x < INT_MIN || x > INT_MAX)) return range_error(o, v);
        if (!range_ok(o, (double)x)) return range_error(o, v);
        if (o->type == BT_ARG_INT) *(int *)o->dst = (int)x;
        else *(long *)o->dst = x;
        return BT_OK;
    }
    case BT_ARG_DOUBLE: {
        double x = strtod(v, &end);
        if (!*v || *end || errno == ERANGE || !isfinite(x))
            return bt_fail(BT_EINVAL, "--%s: '%s' is not a finite number", o->name, v);
        if (!range_ok(o, x)) return range_error(o, v);
        *(double *)o->dst = x;
        return BT_OK;
    }
    case BT_ARG_STRING:
        if (!*v) return bt_fail(BT_EINVAL, "--%s: empty value", o->name);
        *(const char **)o->dst = v;
        return BT_OK;
    case BT_ARG_CHOICE:
        if (!choice_ok(o->choices, v))
            return bt_fail(BT_EINVAL, "--%s: '%s' is not one of %s", o->name, v, o->choices);
        *(const char **)o->dst = v;
        return BT_OK;
    case BT_ARG_FLAG:
        *(int *)o->dst = 1;
        return BT_OK;
    case BT_ARG_LIST: {
        bt_arg_list *l = o->dst;
        if (l->n == l->cap) {
            int cap = l->cap ? 2 * l->cap : 4;
            const char **nv = realloc(l->v, (size_t)cap * sizeof *nv);
            if (!nv) return bt_fail(BT_ENOMEM, "out of memory");
            l->v = nv;
            l->cap = cap;
        }
        l->v[l->n++] = v;
        return BT_OK;
    }
    }
    return bt_fail(BT_EINVAL, "--%s: bad option type", o->name);
}

static int unknown_option(const bt_arg *opts, int nopts, const char *name) {
    int best = INT_MAX, bi = -1;
    for (int i = 0; i < nopts; i++) {
        int d = bt_args_edit_distance(name, opts[i].name);
        if (d < best) best = d, bi = i;
    }
    /* A suggestion only when it is plausibly a typo: a third of the name, at least 2 edits. */
    int limit = (int)strlen(name) / 3;
    if (limit < 2) limit = 2;
    if (bi >= 0 && best <= limit)
        return bt_fail(BT_EINVAL, "unknown option --%s (did you mean --%s?)", name, opts[bi].name);
    return bt_fail(BT_EINVAL, "unknown option --%s (see --help)", name);
}

int bt_args_parse(bt_arg *opts, int nopts, int argc, char **argv, int first, const char **pos,
                  int max_pos, int *npos) {
    *npos = 0;
    for (int i = 0; i < nopts; i++) {
        opts[i].seen = 0;
        if (opts[i].def && opts[i].type != BT_ARG_LIST) {
            int rc = set_value(&opts[i], opts[i].def);
            if (rc) return rc;
        }
    }
    int only_pos = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || strncmp(a, "--", 2) != 0 || !strcmp(a, "-")) {
            if (*npos >= max_pos)
                return bt_fail(BT_EINVAL, "unexpected argument '%s'%s", a,
                               a[0] == '-' ? " (options start with --)" : "");
            pos[(*npos)++] = a;
            continue;
        }
        if (!a[2]) {
            only_pos = 1;
            continue;
        }
        char name[128];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (nl >= sizeof name) nl = sizeof name - 1;
        memcpy(name, a + 2, nl);
        name[nl] = 0;
        bt_arg *o = bt_args_find(opts, nopts, name);
        if (!o) return unknown_option(opts, nopts, name);
        const char *v;
        if (o->type == BT_ARG_FLAG) {
            if (eq) return bt_fail(BT_EINVAL, "--%s takes no value", o->name);
            v = "1";
        } else if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) return bt_fail(BT_EINVAL, "--%s needs a value", o->name);
            v = argv[++i];
        }
        int rc = set_value(o, v);
        if (rc) return rc;
        o->seen++;
    }
    return BT_OK;
}

void bt_args_help(FILE *f, const bt_arg *opts, int nopts) {
    for (int i = 0; i < nopts; i++) {
        const bt_arg *o = &opts[i];
        char left[96];
        const char *meta = o->type == BT_ARG_FLAG ? "" :
                           o->type == BT_ARG_CHOICE ? o->choices :
                           o->type == BT_ARG_DOUBLE ? " X" :
                           o->type == BT_ARG_INT || o->type == BT_ARG_LONG ? " N" : " VALUE";
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->type == BT_ARG_CHOICE ? " " : "", meta);
        fprintf(f, "  %-34s %s", left, o->help ? o->help : "");
        if (o->def) fprintf(f, " (default: %s)", o->def);
        if (o->type == BT_ARG_LIST) fprintf(f, " (repeatable)");
        fputc('\n', f);
    }
}

void bt_args_free(bt_arg *opts, int nopts) {
    for (int i = 0; i < nopts; i++)
        if (opts[i].type == BT_ARG_LIST && opts[i].dst) {
            bt_arg_list *l = opts[i].dst;
            free(l->v);
            l->v = NULL;
            l->n = l->cap = 0;
        }
}
