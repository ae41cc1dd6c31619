/* `barlow embed DATA --weights FILE --out features.npy`: the frozen backbone features of every
 * image of a split, exactly as `barlow knn` computes them (eval transform, eval-mode BN,
 * dataset order), as a NumPy float32 matrix, with a sidecar table naming each row's image. */
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/eval.h"
#include "barlow/npy.h"
#include "cli/args.h"
#include "cli/cmd_interop.h"
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f, const bt_arg *opts, int n) {
    fprintf(f, "usage: barlow embed DATA --weights FILE --out features.npy [options]\n"
               "Backbone features (N, feat_dim) of every image of DATA's split, through the preset's\n"
               "eval transform with BatchNorm in eval mode (the features `barlow knn` uses), as a\n"
               "float32 .npy (numpy.load). Row i is image i in dataset order; OUT with .npy replaced\n"
               "by .tsv (or OUT.tsv) lists each row's index, image path, label and class name.\n"
               "Options:\n");
    bt_args_help(f, opts, n);
}

/* Tabs and newlines in a name would break the table's rows. */
static void put_field(FILE *f, const char *s) {
    for (; *s; s++) fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static int write_table(const char *path, const bt_dataset *ds) {
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return bt_fail(BT_EINVAL, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return bt_fail(BT_EIO, "cannot write %s: %s", path, strerror(errno));
    fprintf(f, "row\tpath\tlabel\tclass\n");
    for (size_t i = 0; i < bt_dataset_size(ds); i++) {
        int y = bt_dataset_label(ds, i);
        fprintf(f, "%zu\t", i);
        put_field(f, bt_dataset_item_name(ds, i));
        fprintf(f, "\t%d\t", y);
        put_field(f, y >= 0 && y < bt_dataset_num_classes(ds) ? bt_dataset_class_name(ds, y) : "");
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (fclose(f) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return bt_fail(BT_EIO, "cannot write %s", path);
    }
    return BT_OK;
}

int bt_cmd_embed(int argc, char **argv) {
    const char *weights = NULL, *out = NULL, *arch = NULL, *split = NULL, *preset_name = NULL;
    int batch = 0, workers = 0, threads = 0, l2 = 0, help = 0;
    bt_arg_list aug = {0};
    bt_arg opts[] = {
        {"weights", BT_ARG_STRING, &weights, NULL, 1, 0, NULL,
         "checkpoint, backbone export or torchvision-named safetensors", 0},
        {"out", BT_ARG_STRING, &out, NULL, 1, 0, NULL, "output .npy file", 0},
        {"arch", BT_ARG_STRING, &arch, NULL, 1, 0, NULL,
         "architecture, when the weights file does not record it", 0},
        {"split", BT_ARG_STRING, &split, "test", 1, 0, NULL, "dataset split (train|test|val)", 0},
        {"preset", BT_ARG_CHOICE, &preset_name, "imagenet", 1, 0, "imagenet|cifar",
         "preset whose eval transform is applied", 0},
        {"aug", BT_ARG_LIST, &aug, NULL, 1, 0, NULL,
         "override a preset setting, KEY=VALUE (e.g. eval-crop=192)", 0},
        {"batch-size", BT_ARG_INT, &batch, "256", 1, 1 << 20, NULL, "images per forward pass", 0},
        {"workers", BT_ARG_INT, &workers, "2", 1, 1024, NULL, "data loader threads", 0},
        {"threads", BT_ARG_INT, &threads, "0", 0, 4096, NULL, "compute threads (0 = all cores)", 0},
        {"l2-normalize", BT_ARG_FLAG, &l2, NULL, 1, 0, NULL,
         "divide each row by its L2 norm (as kNN does before its dot products)", 0},
        {"help", BT_ARG_FLAG, &help, NULL, 1, 0, NULL, "show this help", 0},
    };
    int nopts = (int)(sizeof opts / sizeof *opts), npos = 0;
    const char *pos[1];
    bt_aug_preset preset;
    int rc = bt_args_parse(opts, nopts, argc, argv, 1, pos, 1, &npos);
    if (!rc && help) {
        usage(stdout, opts, nopts);
        bt_args_free(opts, nopts);
        return 0;
    }
    if (!rc && npos < 1) rc = bt_fail(BT_EINVAL, "missing DATA (the dataset path); see --help");
    if (!rc && !weights) rc = bt_fail(BT_EINVAL, "--weights is required");
    if (!rc && !out) rc = bt_fail(BT_EINVAL, "--out is required");
    /* the preset follows the weights file when it records one, unless given (then said
     * when it contradicts) */
    char file_preset[32];
    if (!rc && bt_eval_file_preset(weights, file_preset, sizeof file_preset) == 1) {
        if (!bt_args_find(opts, nopts, "preset")->seen) preset_name = file_preset;
        else if (strcmp(preset_name, file_preset))
            fprintf(stderr, "barlow embed: note: --preset %s, but %s was trained with --preset %s\n",
                    preset_name, weights, file_preset);
    }
    if (!rc && (rc = bt_aug_preset_init(&preset, preset_name)) != BT_OK)
        rc = bt_fail(rc, "--preset: %s", bt_error());
    for (int i = 0; !rc && i < aug.n; i++) {
        const char *kv = aug.v[i], *eq = strchr(kv, '=');
        char key[64];
        if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof key) {
            rc = bt_fail(BT_EINVAL, "--aug '%s': expected KEY=VALUE", kv);
            break;
        }
        memcpy(key, kv, (size_t)(eq - kv));
        key[eq - kv] = 0;
        if ((rc = bt_aug_preset_set(&preset, key, eq + 1)) != BT_OK)
            rc = bt_fail(rc, "--aug '%s': %s", kv, bt_error());
    }
    if (rc) {
        fprintf(stderr, "barlow embed: %s\n", bt_error());
        bt_args_free(opts, nopts);
        return 2;
    }
    if (threads > 0) omp_set_num_threads(threads);

    char table[4096];
    size_t ol = strlen(out);
    int tl = ol > 4 && !strcmp(out + ol - 4, ".npy")
                 ? snprintf(table, sizeof table, "%.*s.tsv", (int)(ol - 4), out)
                 : snprintf(table, sizeof table, "%s.tsv", out);
    if (tl >= (int)sizeof table) {
        fprintf(stderr, "barlow embed: --out: path too long\n");
        bt_args_free(opts, nopts);
        return 2;
    }
    bt_model *m = NULL;
    bt_dataset *ds = NULL;
    float *feat = NULL;
    rc = bt_eval_load_backbone(&m, weights, arch, arch != NULL);
    if (!rc) rc = bt_dataset_open(&ds, pos[0], split);
    size_t n = ds ? bt_dataset_size(ds) : 0;
    int D = m ? m->cfg.feat_dim : 0;
    if (!rc && !(feat = bt_alloc((n ? n : 1) * (size_t)D * sizeof(float))))
        rc = bt_fail(BT_ENOMEM, "out of memory for %zu x %d features", n, D);
    if (!rc) rc = bt_extract_features(feat, NULL, m, ds, &preset, batch, workers);
    if (!rc && l2) bt_features_normalize(feat, n, D);
    if (!rc) rc = bt_npy_write_f32(out, feat, (int64_t)n, D);
    if (!rc) rc = write_table(table, ds);
    if (!rc)
        printf("wrote %s: %zu x %d float32 features of %s (%s split, %s) and %s\n", out, n, D,
               pos[0], split, m->cfg.arch, table);
    else
        fprintf(stderr, "barlow embed: %s\n", bt_error());
    bt_free(feat);
    bt_dataset_close(ds);
    bt_model_free(m);
    bt_args_free(opts, nopts);
    return rc ? 1 : 0;
}
