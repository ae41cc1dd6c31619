/* `barlow pretrain DATA [options]`: Barlow Twins pretraining as the reference main.py does it
 * (same option names and defaults, LARS, warm-up + cosine schedule, stats.txt), with exact
 * resume: checkpoint-dir/checkpoint.safetensors holds the weights, BN statistics, LARS
 * momentum and the position in the data (epoch, batch), and the loader is counter-based, so a
 * run stopped anywhere and resumed ends bit-identical to an uninterrupted run.
 *
 * Exit status: 0 done (or stopped by a signal after checkpointing), 1 failure while training
 * (I/O, corrupted checkpoint, non-finite loss), 2 bad command line or configuration. */
#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include "barlow/comm.h"
#include "barlow/eval.h"
#include "barlow/interop.h"
#include "barlow/tb.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "barlow/augment.h"
#include "barlow/checkpoint.h"
#include "barlow/cpu.h"
#include "barlow/gemm.h"
#include "barlow/dataset.h"
#include "barlow/error.h"
#include "barlow/loader.h"
#include "barlow/loss.h"
#include "barlow/model.h"
#include "barlow/optim.h"
#include "barlow/scratch.h"
#include "barlow/train.h"
#include "barlow/trainer.h"
#include "cli/args.h"
#include "cli/commands.h"

#define PT "barlow pretrain"

typedef struct {
    int epochs, batch, print_freq, workers, threads, warmup, knn_every, help, tb_image_every;
    const char *init_from, *isa;
    double lrw, lrb, wd, lambd, eta;
    long seed, max_steps, train_limit, save_every;
    const char *projector, *ckdir, *arch, *preset, *loss_form, *precision;
    bt_arg_list aug;
} pt_opts;

/* Options whose change would make the resumed run a different run; the others (epochs,
 * max-steps, print-freq, workers, threads, save-every-steps, knn-every, paths) may change.
 * An option added after checkpoints already existed names, as JSON, the value those
 * checkpoints were made with (`missing`): a checkpoint without the key resumes when the run
 * uses that value. */
static const struct {
    const char *name, *missing;
} locked[] = {
    {"arch", NULL}, {"projector", NULL}, {"batch-size", NULL}, {"seed", NULL},
    {"preset", NULL}, {"aug", NULL}, {"lambd", NULL}, {"learning-rate-weights", NULL},
    {"learning-rate-biases", NULL}, {"weight-decay", NULL}, {"warmup-epochs", NULL},
    {"train-limit", NULL}, {"loss-form", NULL},
    {"lars-eta", "0.001"}, /* before --lars-eta: the reference's 0.001 */
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) {
    /* The first signal asks for a clean stop after the current step; a second one means
     * "now": the atomic checkpoint writer leaves no torn file behind. */
    if (stop_signal) _exit(128 + sig);
    stop_signal = sig;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Prefixes the current error message (copied first: bt_fail writes the buffer bt_error reads). */
static int prefixed(int rc, const char *prefix) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", bt_error());
    return bt_fail(rc, "%s%s", prefix, msg);
}

static void usage(FILE *f, const bt_arg *opts, int n) {
    fprintf(f, "usage: barlow pretrain DATA [options]\n"
               "Barlow Twins pretraining of a ResNet on the images of DATA (an ImageFolder root,\n"
               "a CIFAR-10 binary directory or WebDataset tar shards; the train split is used).\n"
               "Resumes from CHECKPOINT_DIR/checkpoint.safetensors when it exists.\n"
               "Options:\n");
    bt_args_help(f, opts, n);
}

/* mkdir -p, then create and remove a probe file: an unusable directory is reported before
 * any training, not when the first checkpoint is due. */
static int check_ckdir(const char *dir) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return bt_fail(BT_EINVAL, "--checkpoint-dir: path too long");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST)
                return bt_fail(BT_EIO, "--checkpoint-dir %s: cannot create %s: %s", dir, p,
                               strerror(errno));
            *s = c;
            if (!c) break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return bt_fail(BT_EIO, "--checkpoint-dir %s: not a directory", dir);
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.barlow-probe.%ld", dir, (long)getpid());
    FILE *f = fopen(probe, "wb");
    if (!f || fputs("probe\n", f) < 0 || fclose(f) != 0) {
        int e = errno;
        remove(probe);
        return bt_fail(BT_EIO, "--checkpoint-dir %s: not writable: %s", dir, strerror(e));
    }
    if (remove(probe) != 0)
        return bt_fail(BT_EIO, "--checkpoint-dir %s: cannot remove a file: %s", dir, strerror(errno));
    return BT_OK;
}

static cJSON *make_config(const pt_opts *o, const char *data, int threads) {
    cJSON *c = cJSON_CreateObject(), *aug = cJSON_CreateArray();
    if (!c || !aug) {
        cJSON_Delete(c);
        cJSON_Delete(aug);
        return NULL;
    }
    cJSON_AddStringToObject(c, "data", data);
    cJSON_AddNumberToObject(c, "epochs", o->epochs);
    cJSON_AddNumberToObject(c, "batch-size", o->batch);
    cJSON_AddNumberToObject(c, "learning-rate-weights", o->lrw);
    cJSON_AddNumberToObject(c, "learning-rate-biases", o->lrb);
    cJSON_AddNumberToObject(c, "weight-decay", o->wd);
    cJSON_AddNumberToObject(c, "lambd", o->lambd);
    cJSON_AddNumberToObject(c, "lars-eta", o->eta);
    cJSON_AddStringToObject(c, "projector", o->projector);
    cJSON_AddNumberToObject(c, "print-freq", o->print_freq);
    cJSON_AddStringToObject(c, "checkpoint-dir", o->ckdir);
    cJSON_AddNumberToObject(c, "workers", o->workers);
    cJSON_AddStringToObject(c, "arch", o->arch);
    cJSON_AddStringToObject(c, "preset", o->preset);
    for (int i = 0; i < o->aug.n; i++) cJSON_AddItemToArray(aug, cJSON_CreateString(o->aug.v[i]));
    cJSON_AddItemToObject(c, "aug", aug);
    cJSON_AddNumberToObject(c, "threads", threads);
    cJSON_AddNumberToObject(c, "seed", (double)o->seed);
    cJSON_AddNumberToObject(c, "warmup-epochs", o->warmup);
    cJSON_AddNumberToObject(c, "max-steps", (double)o->max_steps);
    cJSON_AddNumberToObject(c, "train-limit", (double)o->train_limit);
    cJSON_AddNumberToObject(c, "save-every-steps", (double)o->save_every);
    cJSON_AddStringToObject(c, "loss-form", o->loss_form);
    cJSON_AddNumberToObject(c, "knn-every", o->knn_every);
    cJSON_AddStringToObject(c, "precision", o->precision);
    return c;
}

/* Refuses a run whose locked options differ from those the checkpoint was made with. */
static int check_compatible(const cJSON *mine, const char *stored, const char *path) {
    cJSON *old = cJSON_Parse(stored);
    if (!old || !cJSON_IsObject(old)) {
        cJSON_Delete(old);
        return bt_fail(BT_EFORMAT, "%s: metadata config is not a JSON object", path);
    }
    int rc = BT_OK;
    for (size_t i = 0; !rc && i < sizeof locked / sizeof *locked; i++) {
        const char *name = locked[i].name;
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(mine, name);
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(old, name);
        cJSON *implied = !b && locked[i].missing ? cJSON_Parse(locked[i].missing) : NULL;
        const int same = cJSON_Compare(a, b ? b : implied, 1);
        cJSON_Delete(implied);
        if (same) continue;
        char *sa = cJSON_PrintUnformatted(a), *sb = b ? cJSON_PrintUnformatted(b) : NULL;
        rc = bt_fail(BT_EINVAL, "--%s %s contradicts the checkpoint %s (made with --%s %s); use "
                     "the same value or another --checkpoint-dir", name, sa ? sa : "?", path,
                     name, sb ? sb : "(missing)");
        free(sa);
        free(sb);
    }
    cJSON_Delete(old);
    return rc;
}

/* One line when a resume runs on another kernel path, GEMM depth block (KC: it follows the
 * L1 size, so another CPU can change it on the same path) or thread count than the checkpoint's
 * run: results stay within float tolerance, but bit-exact resume is promised only for the same
 * path, KC and thread count. Checkpoints older than a record say nothing about it. Likewise
 * one line when the products' precision changes (allowed: the weights and optimiser state are
 * float32 either way; checkpoints from before --precision were made in fp32). */
static void note_other_path(const char *stored, int threads, const char *precision) {
    cJSON *old = cJSON_Parse(stored);
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(old, "precision");
    const char *was = cJSON_IsString(pr) ? pr->valuestring : "fp32";
    if (strcmp(was, precision))
        printf("%s: note: resuming with --precision %s; the checkpoint was made with %s\n", PT,
               precision, was);
    const cJSON *isa = cJSON_GetObjectItemCaseSensitive(old, "isa");
    const cJSON *kc = cJSON_GetObjectItemCaseSensitive(old, "gemm_kc");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(old, "threads");
    const char *now = bt_isa_name(bt_isa_current());
    const int kc_now = bt_sgemm_kc();
    const int other_isa = cJSON_IsString(isa) && strcmp(isa->valuestring, now) != 0;
    const int other_kc = cJSON_IsNumber(kc) && kc->valueint != kc_now;
    const int other_threads = cJSON_IsNumber(th) && th->valueint != threads;
    if (other_isa || other_kc || other_threads)
        printf("%s: note: resuming on kernel path %s (GEMM KC %d) with %d threads; the "
               "checkpoint was made on %s (GEMM KC %d) with %d: results agree to float "
               "tolerance, not bit for bit\n",
               PT, now, kc_now, threads, cJSON_IsString(isa) ? isa->valuestring : now,
               cJSON_IsNumber(kc) ? kc->valueint : kc_now,
               cJSON_IsNumber(th) ? th->valueint : threads);
    cJSON_Delete(old);
}

/* Everything a run owns, so that every exit path frees it (the SAN build checks leaks). */
typedef struct {
    pt_opts o;
    bt_dataset *ds;
    bt_dataset *ds_test;     /* --knn-every: the evaluation split */
    float *knn_train, *knn_test; /* (n, feat_dim) features */
    bt_tb *tb;               /* TensorBoard events under CHECKPOINT_DIR/tb (rank 0) */
    float *corner;           /* (64, 64) corner of C for the TensorBoard image */
    int32_t *knn_ltrain, *knn_ltest;
    bt_loader *ld;
    bt_backend *be;          /* where the step runs (the CPU) */
    bt_trainer *t;           /* the model, its optimiser state and the step */
    bt_model *m;             /* t->m */
    bt_st_file *ck;
    cJSON *config;
    char *config_text;
    FILE *stats;
    bt_aug_preset preset;
    char ckpath[4200], bbpath[4200], statspath[4200], firstpath[4300], tbdir[4300];
    long spe;         /* batches (steps) per epoch */
    int live;         /* stderr is a terminal: one refreshed progress line */
    int live_dirty;   /* the live line is on screen (end it before other output) */
} pt_run;

static void end_live(pt_run *r) {
    if (r->live_dirty) fputc('\n', stderr);
    r->live_dirty = 0;
}

/* Saves the checkpoint at (epoch, next_batch, step), normalising an epoch's end to the start
 * of the next epoch. */
static int save_ckpt(pt_run *r, int epoch, long nb, long step) {
    if (bt_comm_rank(r->m->comm) != 0) return BT_OK; /* rank 0 writes for everyone */
    bt_ckpt_state st = {0};
    if (nb >= r->spe) epoch++, nb = 0;
    st.epoch = epoch;
    st.next_batch = nb;
    st.step = step;
    st.steps_per_epoch = r->spe;
    st.seed = (uint64_t)r->o.seed;
    st.config = r->config_text;
    return bt_ckpt_save(r->ckpath, r->m, &st);
}

static int stats_line(pt_run *r, int epoch, long step, double lrw, double lrb,
                      const bt_loss_result *res, double elapsed, double ips, long skipped) {
    if (!r->stats) return BT_OK; /* ranks other than 0 */
    cJSON *j = cJSON_CreateObject();
    if (!j) return bt_fail(BT_ENOMEM, "out of memory");
    cJSON_AddNumberToObject(j, "epoch", epoch);
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddNumberToObject(j, "lr_weights", lrw);
    cJSON_AddNumberToObject(j, "lr_biases", lrb);
    cJSON_AddNumberToObject(j, "loss", res->loss);
    cJSON_AddNumberToObject(j, "time", floor(elapsed)); /* whole seconds, as the reference */
    cJSON_AddNumberToObject(j, "on_diag", res->on_diag);
    cJSON_AddNumberToObject(j, "off_diag", res->off_diag);
    cJSON_AddNumberToObject(j, "images_per_s", round(ips * 10) / 10);
    cJSON_AddNumberToObject(j, "skipped", (double)skipped);
    cJSON_AddStringToObject(j, "isa", bt_isa_name(bt_isa_current())); /* the kernels' path */
    cJSON_AddStringToObject(j, "precision", r->o.precision);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return bt_fail(BT_ENOMEM, "out of memory");
    int bad = fprintf(r->stats, "%s\n", s) < 0 || fflush(r->stats) != 0;
    if (r->tb) {
        int t = bt_tb_scalar(r->tb, "loss/total", step, res->loss);
        if (!t) t = bt_tb_scalar(r->tb, "loss/on_diag", step, res->on_diag);
        if (!t) t = bt_tb_scalar(r->tb, "loss/off_diag", step, res->off_diag);
        if (!t) t = bt_tb_scalar(r->tb, "lr/weights", step, lrw);
        if (!t) t = bt_tb_scalar(r->tb, "lr/biases", step, lrb);
        if (!t) t = bt_tb_scalar(r->tb, "throughput/images_per_s", step, ips);
        if (!t) t = bt_tb_flush(r->tb);
        if (t) {
            free(s);
            return t;
        }
    }
    if (!r->live) fprintf(stderr, "%s\n", s);
    free(s);
    return bad ? bt_fail(BT_EIO, "cannot write %s: %s", r->statspath, strerror(errno)) : BT_OK;
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, n, "--:--:--");
        return;
    }
    long t = (long)s;
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

/* Validates the command line and everything that can be checked before work starts. Returns
 * 0, or 2 with the message printed. */
static int setup(pt_run *r, int argc, char **argv, const char **data, int *form) {
    pt_opts *o = &r->o;
    bt_arg opts[] = {
        {"epochs", BT_ARG_INT, &o->epochs, "1000", 1, INT_MAX, NULL, "number of total epochs to run", 0},
        {"batch-size", BT_ARG_INT, &o->batch, "2048", 2, INT_MAX, NULL, "mini-batch size", 0},
        {"learning-rate-weights", BT_ARG_DOUBLE, &o->lrw, "0.2", 0, 1e300, NULL,
         "base learning rate for weights", 0},
        {"learning-rate-biases", BT_ARG_DOUBLE, &o->lrb, "0.0048", 0, 1e300, NULL,
         "base learning rate for biases and batch norm parameters", 0},
        {"weight-decay", BT_ARG_DOUBLE, &o->wd, "1e-6", 0, 1e300, NULL, "weight decay", 0},
        {"lambd", BT_ARG_DOUBLE, &o->lambd, "0.0051", 0, 1e300, NULL,
         "weight on off-diagonal terms", 0},
        {"lars-eta", BT_ARG_DOUBLE, &o->eta, "0.001", 0, 1e300, NULL,
         "LARS trust coefficient (the reference's 0.001; solo-learn uses 0.02 on CIFAR)", 0},
        {"projector", BT_ARG_STRING, &o->projector, "8192-8192-8192", 1, 0, NULL,
         "projector MLP", 0},
        {"print-freq", BT_ARG_INT, &o->print_freq, "100", 1, INT_MAX, NULL, "print frequency (steps)", 0},
        {"checkpoint-dir", BT_ARG_STRING, &o->ckdir, "./checkpoint/", 1, 0, NULL,
         "path to checkpoint directory", 0},
        {"workers", BT_ARG_INT, &o->workers, "2", 1, 1024, NULL, "data loader threads", 0},
        {"arch", BT_ARG_STRING, &o->arch, "resnet50", 1, 0, NULL,
         "resnet18|34|50|101|152[-cifar][:w=WIDTH]", 0},
        {"preset", BT_ARG_CHOICE, &o->preset, "imagenet", 1, 0, "imagenet|cifar",
         "augmentation preset", 0},
        {"aug", BT_ARG_LIST, &o->aug, NULL, 1, 0, NULL,
         "override an augmentation setting, KEY=VALUE (e.g. blur-p.1=0.5)", 0},
        {"threads", BT_ARG_INT, &o->threads, "0", 0, 4096, NULL, "compute threads (0 = all cores)", 0},
        {"isa", BT_ARG_STRING, &o->isa, NULL, 1, 0, NULL,
         "kernels' instruction set: avx512|avx2|generic|auto (default: $BARLOW_ISA, else the "
         "best this CPU has)", 0},
        {"precision", BT_ARG_CHOICE, &o->precision, "fp32", 1, 0, "fp32|bf16",
         "products of the convolutions and linear layers: fp32, or bf16 (operands rounded to "
         "bfloat16, sums, batch norm, loss, weights and optimiser in float32; needs a CPU with "
         "AVX512_BF16 on the avx512 path)", 0},
        {"seed", BT_ARG_LONG, &o->seed, "0", 0, 9007199254740992.0, NULL,
         "seed of the initialisation, data order and augmentation", 0},
        {"warmup-epochs", BT_ARG_INT, &o->warmup, "10", 0, INT_MAX, NULL, "linear warm-up epochs", 0},
        {"max-steps", BT_ARG_LONG, &o->max_steps, "0", 0, 9e18, NULL,
         "stop at this global step, counted across resumes (0 = no limit)", 0},
        {"train-limit", BT_ARG_LONG, &o->train_limit, "0", 0, 9e18, NULL,
         "use only the first N images (0 = all)", 0},
        {"save-every-steps", BT_ARG_LONG, &o->save_every, "0", 0, 9e18, NULL,
         "also checkpoint every N steps (0 = only after each epoch)", 0},
        {"loss-form", BT_ARG_CHOICE, &o->loss_form, "auto", 1, 0, "auto|direct|gram",
         "loss computation (auto: gram when the projector is wider than the batch)", 0},
        {"init-from", BT_ARG_STRING, &o->init_from, NULL, 1, 0, NULL,
         "start the backbone from torchvision-format weights (safetensors; strict; fresh runs only)", 0},
        {"tb-image-every", BT_ARG_INT, &o->tb_image_every, "500", 0, INT_MAX, NULL,
         "TensorBoard image of the cross-correlation matrix every N steps (0 = never)", 0},
        {"knn-every", BT_ARG_INT, &o->knn_every, "0", 0, INT_MAX, NULL,
         "kNN monitor every E epochs (0 = off)", 0},
        {"help", BT_ARG_FLAG, &o->help, NULL, 1, 0, NULL, "show this help", 0},
    };
    int nopts = (int)(sizeof opts / sizeof *opts), npos = 0;
    const char *pos[1];
    int rc = bt_args_parse(opts, nopts, argc, argv, 1, pos, 1, &npos);
    if (!rc && o->help) {
        usage(stdout, opts, nopts);
        return -1;
    }
    if (rc) goto bad;
    if (npos < 1) {
        rc = bt_fail(BT_EINVAL, "missing DATA (the dataset path); see --help");
        goto bad;
    }
    *data = pos[0];

    bt_model_cfg mc;
    if ((rc = bt_model_cfg_parse(&mc, o->arch, NULL)) != BT_OK) goto bad;
    if ((rc = bt_model_cfg_parse(&mc, o->arch, o->projector)) != BT_OK) goto bad;
    if (mc.nproj < 1) {
        rc = bt_fail(BT_EINVAL, "--projector: training needs at least one projector layer");
        goto bad;
    }
    if ((rc = bt_aug_preset_init(&r->preset, o->preset)) != BT_OK) {
        rc = prefixed(rc, "--preset: ");
        goto bad;
    }
    for (int i = 0; i < o->aug.n; i++) {
        const char *kv = o->aug.v[i], *eq = strchr(kv, '=');
        char key[64];
        if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof key) {
            rc = bt_fail(BT_EINVAL, "--aug '%s': expected KEY=VALUE", kv);
            goto bad;
        }
        memcpy(key, kv, (size_t)(eq - kv));
        key[eq - kv] = 0;
        if ((rc = bt_aug_preset_set(&r->preset, key, eq + 1)) != BT_OK) {
            char pre[128];
            snprintf(pre, sizeof pre, "--aug '%.100s': ", kv);
            rc = prefixed(rc, pre);
            goto bad;
        }
    }
    if (r->preset.view[0].size != r->preset.view[1].size) {
        rc = bt_fail(BT_EINVAL, "--aug: both views must have the same size (%d vs %d)",
                     r->preset.view[0].size, r->preset.view[1].size);
        goto bad;
    }
    *form = !strcmp(o->loss_form, "direct") ? BT_LOSS_DIRECT :
            !strcmp(o->loss_form, "gram") ? BT_LOSS_GRAM : BT_LOSS_AUTO;
    /* The kernels' path and precision before anything is opened or created. */
    if (o->isa && (rc = bt_isa_select(o->isa)) != BT_OK) {
        rc = prefixed(rc, "--isa: ");
        goto bad;
    }
    if (!strcmp(o->precision, "bf16") && !bt_gemm_bf16_native()) {
        /* the plain C bf16 kernel would train several times slower than fp32 */
        const bt_cpu_info *ci = bt_cpu();
        rc = bt_fail(BT_EINVAL, "--precision bf16 needs AVX512_BF16 on the avx512 path (this "
                     "CPU, %s family %d model %d, %s it; path %s); use --precision fp32",
                     ci->vendor[0] ? ci->vendor : "non-x86", ci->family, ci->model,
                     ci->avx512_bf16 ? "has" : "lacks", bt_isa_name(bt_isa_current()));
        goto bad;
    }

    if ((rc = bt_dataset_open(&r->ds, *data, "train")) != BT_OK) {
        rc = strncmp(bt_error(), "DATA", 4) ? prefixed(rc, "DATA: ") : rc;
        goto bad;
    }
    size_t n = bt_dataset_size(r->ds);
    if (o->train_limit > 0) {
        if ((size_t)o->train_limit > n) {
            rc = bt_fail(BT_EINVAL, "--train-limit %ld: the dataset has only %zu images",
                         o->train_limit, n);
            goto bad;
        }
        if ((rc = bt_dataset_limit(r->ds, (size_t)o->train_limit)) != BT_OK) goto bad;
        n = (size_t)o->train_limit;
    }
    if ((size_t)o->batch > n) {
        rc = bt_fail(BT_EINVAL, "--batch-size %d is larger than the dataset (%zu images%s)",
                     o->batch, n, o->train_limit > 0 ? " after --train-limit" : "");
        goto bad;
    }
    if (o->knn_every > 0 && (rc = bt_dataset_open(&r->ds_test, *data, "test")) != BT_OK) {
        rc = prefixed(rc, "--knn-every needs DATA's val/test split: ");
        goto bad;
    }
    if ((rc = check_ckdir(o->ckdir)) != BT_OK) goto bad;
    return 0;
bad:
    fprintf(stderr, "%s: %s\n", PT, bt_error());
    return 2;
}

static void free_run(pt_run *r) {
    if (r->stats) fclose(r->stats);
    bt_loader_free(r->ld);
    bt_st_close(r->ck);
    bt_trainer_free(r->t);
    bt_backend_free(r->be);
    bt_dataset_close(r->ds);
    bt_dataset_close(r->ds_test);
    bt_tb_close(r->tb);
    free(r->corner);
    free(r->knn_train);
    free(r->knn_test);
    free(r->knn_ltrain);
    free(r->knn_ltest);
    cJSON_Delete(r->config);
    free(r->config_text);
    free(r->o.aug.v);
    bt_scratch_release();
}

/* The top-left corner (at most 64 x 64) of this step's cross-correlation matrix C, from the
 * two views' projector outputs (each dimension batch-normalised without affine, as the
 * loss does), as a TensorBoard heatmap on [-1, 1]. With several ranks it covers rank 0's
 * share of the batch. */
static int tb_corr_image(pt_run *r, long step) {
    const bt_model *m = r->m;
    int N = m->N, D = bt_model_out_dim(m), k = D < 64 ? D : 64;
    if (!r->corner && !(r->corner = malloc((size_t)64 * 64 * sizeof(float))))
        return bt_fail(BT_ENOMEM, "out of memory");
    float *zh = malloc(sizeof(float) * 2 * (size_t)N * D); /* both views' outputs, host copy */
    if (!zh) return bt_fail(BT_ENOMEM, "out of memory");
    int rc = bt_model_copy_features(m, 0, zh, N, 1);
    if (!rc) rc = bt_model_copy_features(m, 1, zh + (size_t)N * D, N, 1);
    if (rc) {
        free(zh);
        return rc;
    }
    const float *z1 = zh, *z2 = zh + (size_t)N * D;
    double mu[2][64], sd[2][64];
    for (int v = 0; v < 2; v++) {
        const float *z = v ? z2 : z1;
        for (int j = 0; j < k; j++) {
            double s = 0, q = 0;
            for (int n = 0; n < N; n++) s += z[(size_t)n * D + j];
            mu[v][j] = s / N;
            for (int n = 0; n < N; n++) {
                double d = z[(size_t)n * D + j] - mu[v][j];
                q += d * d;
            }
            sd[v][j] = sqrt(q / N + 1e-5);
        }
    }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            double c = 0;
            for (int n = 0; n < N; n++)
                c += (z1[(size_t)n * D + i] - mu[0][i]) / sd[0][i] * ((z2[(size_t)n * D + j] - mu[1][j]) / sd[1][j]);
            r->corner[i * k + j] = (float)(c / N);
        }
    free(zh);
    rc = bt_tb_heatmap(r->tb, "cross_correlation/C_corner", step, r->corner, k, k, -1.0f, 1.0f,
                           k <= 32 ? 8 : 4);
    return rc ? rc : bt_tb_flush(r->tb);
}

/* The online kNN monitor (k = 200, T = 0.1 as InstDisc / solo-learn): backbone features of
 * the train and test splits with BN in eval mode, through the model's view-0 arena at the
 * training batch shape (nothing is reallocated; running statistics, parameters and the data
 * order are untouched, so the training trajectory is the same with or without it). */
static int knn_monitor(pt_run *r, int epoch, long step) {
    int dim = r->m->cfg.feat_dim, B = r->m->N;
    size_t ntr = bt_dataset_size(r->ds), nte = bt_dataset_size(r->ds_test);
    if (!r->knn_train) {
        r->knn_train = malloc(ntr * dim * sizeof(float));
        r->knn_test = malloc(nte * dim * sizeof(float));
        r->knn_ltrain = malloc(ntr * sizeof(int32_t));
        r->knn_ltest = malloc(nte * sizeof(int32_t));
        if (!r->knn_train || !r->knn_test || !r->knn_ltrain || !r->knn_ltest)
            return bt_fail(BT_ENOMEM, "kNN monitor: out of memory for %zu features", ntr + nte);
    }
    double t0 = now_s(), top1, top5;
    int rc = bt_extract_features(r->knn_train, r->knn_ltrain, r->m, r->ds, &r->preset, B, r->o.workers);
    if (!rc) rc = bt_extract_features(r->knn_test, r->knn_ltest, r->m, r->ds_test, &r->preset, B, r->o.workers);
    if (rc) return rc;
    bt_features_normalize(r->knn_train, ntr, dim);
    bt_features_normalize(r->knn_test, nte, dim);
    int nc = bt_dataset_num_classes(r->ds);
    if ((rc = bt_knn_eval(&top1, &top5, r->knn_train, r->knn_ltrain, ntr, r->knn_test, r->knn_ltest,
                          nte, dim, nc, 200, 0.1f)))
        return rc;
    end_live(r);
    printf("%s: kNN after epoch %d (step %ld): top-1 %.2f%%, top-5 %.2f%% (%zu train, %zu test "
           "images, %.1fs)\n", PT, epoch, step, top1, top5, ntr, nte, now_s() - t0);
    fflush(stdout);
    if (r->tb && (rc = bt_tb_scalar(r->tb, "knn/top1", step, top1)) == BT_OK &&
        (rc = bt_tb_scalar(r->tb, "knn/top5", step, top5)) == BT_OK)
        rc = bt_tb_flush(r->tb);
    if (rc) return rc;
    if (!r->stats) return BT_OK;
    fprintf(r->stats, "{\"epoch\":%d,\"step\":%ld,\"knn_top1\":%.4f,\"knn_top5\":%.4f}\n", epoch,
            step, top1, top5);
    return fflush(r->stats) ? bt_fail(BT_EIO, "cannot write %s: %s", r->statspath, strerror(errno)) : BT_OK;
}

/* Where the run stands in the data: the epoch, and the next batch within it. The global step
 * is the trainer's (t->step). */
typedef struct {
    int epoch;
    long nb;
} pt_pos;

/* Ends every rank of a multi-rank job with status `code` (the program's decision: the
 * communicator's abort returns only when MPI could not do it, and then we exit with `code`
 * on our own). */
static void end_job(int code) {
    if (bt_comm_world(bt_cli_comm) > 1 && bt_cli_comm->abort(bt_cli_comm, code) != BT_OK)
        fprintf(stderr, "%s: %s\n", PT, bt_error());
}

/* A library error while training: said on one line; the other ranks are ended with us. */
static int failed(pt_run *r) {
    end_live(r);
    fprintf(stderr, "%s: %s\n", PT, bt_error());
    end_job(1);
    return 1;
}

/* Threads, ranks, the configuration (equal on every rank) and the output paths. */
static int begin(pt_run *r, const char *data, int *threads) {
    pt_opts *o = &r->o;
    *threads = o->threads > 0 ? o->threads : omp_get_num_procs();
    bt_set_threads(*threads);
    const bt_comm *comm = bt_cli_comm;
    int world = bt_comm_world(comm), rank = bt_comm_rank(comm);
    if (o->batch % world != 0) {
        fprintf(stderr, "%s: --batch-size %d is not a multiple of the %d ranks (it is the global "
                "batch; each rank takes batch-size/ranks)\n", PT, o->batch, world);
        return 2;
    }
    r->config = make_config(o, data, *threads);
    if (!r->config || !(r->config_text = cJSON_PrintUnformatted(r->config))) {
        fprintf(stderr, "%s: out of memory\n", PT);
        return 1;
    }
    if (world > 1) {
        /* Every rank must train the same thing: compare the configurations' checksums. */
        uint64_t mine = bt_checksum64(r->config_text, strlen(r->config_text), 0), root = mine;
        if (comm->bcast(comm, &root, sizeof root, 0) != BT_OK || root != mine) {
            fprintf(stderr, "%s: rank %d: configuration differs from rank 0's (%s); every rank "
                    "must get the same options\n", PT, rank, r->config_text);
            end_job(2);
            return 2;
        }
    }
    /* The kernels' path goes into the stored configuration (after the ranks' comparison:
     * ranks on different CPUs may take different paths and still train one model). */
    cJSON_AddStringToObject(r->config, "isa", bt_isa_name(bt_isa_current()));
    cJSON_AddNumberToObject(r->config, "gemm_kc", bt_sgemm_kc());
    free(r->config_text);
    if (!(r->config_text = cJSON_PrintUnformatted(r->config))) {
        fprintf(stderr, "%s: out of memory\n", PT);
        return 1;
    }
    char *pretty = cJSON_Print(r->config);
    printf("%s: configuration %s\n", PT, pretty ? pretty : r->config_text);
    free(pretty);
    const bt_cpu_info *cpu = bt_cpu();
    printf("%s: kernels: path %s (%s family %d model %d; best path here: %s), GEMM KC %d%s, "
           "products %s\n",
           PT, bt_isa_name(bt_isa_current()), cpu->vendor[0] ? cpu->vendor : "non-x86",
           cpu->family, cpu->model, bt_isa_name(bt_isa_best()),
           bt_sgemm_kc(),
           bt_cli_backend_cfg.gemm_kc ? " (BARLOW_GEMM_KC)" : "",
           strcmp(o->precision, "bf16") ? "fp32" : "bf16 (AVX512_BF16)");

    const char *sep = o->ckdir[strlen(o->ckdir) - 1] == '/' ? "" : "/";
    snprintf(r->ckpath, sizeof r->ckpath, "%s%scheckpoint.safetensors", o->ckdir, sep);
    snprintf(r->bbpath, sizeof r->bbpath, "%s%sbackbone.safetensors", o->ckdir, sep);
    snprintf(r->statspath, sizeof r->statspath, "%s%sstats.txt", o->ckdir, sep);
    snprintf(r->firstpath, sizeof r->firstpath, "%s%scheckpoint-first.safetensors", o->ckdir, sep);
    snprintf(r->tbdir, sizeof r->tbdir, "%s%stb", o->ckdir, sep);
    return 0;
}

/* The backend, the loader and the trainer (which makes the model for the batch shape). */
static int build(pt_run *r, int threads, int form) {
    pt_opts *o = &r->o;
    const bt_comm *comm = bt_cli_comm;
    int world = bt_comm_world(comm), rank = bt_comm_rank(comm);
    bt_backend_cfg bc = bt_cli_backend_cfg; /* main's reading of the environment */
    bc.threads = threads;
    bc.precision = strcmp(o->precision, "bf16") ? BT_PREC_FP32 : BT_PREC_BF16;
    if (bt_backend_new(&r->be, "cpu", &bc) != BT_OK) return failed(r);
    bt_loader_cfg lc = {.batch = o->batch / world, .threads = o->workers, .ring = 3,
                        .seed = (uint64_t)o->seed, .mode = BT_LOAD_TWO_VIEWS, .shuffle = 1,
                        /* a short last batch would change the BN statistics and the schedule
                         * length; the reference's DistributedSampler pads instead */
                        .drop_last = 1, .rank = rank, .world = world,
                        /* the ring in the backend's host memory (pinned on a GPU); a batch
                         * is handed back when its step is done with it */
                        .slot_alloc = bt_backend_host_alloc_hook,
                        .slot_free = bt_backend_host_free_hook, .slot_ctx = r->be,
                        .explicit_release = 1};
    if (bt_loader_new(&r->ld, r->ds, &r->preset, &lc) != BT_OK) return failed(r);
    r->spe = bt_loader_batches_per_epoch(r->ld);
    const char *bf = getenv("BARLOW_BUCKET_FLOATS"); /* tuning and tests: tiny models */
    bt_trainer_cfg tc = {.arch = o->arch, .projector = o->projector, .batch = o->batch / world,
                         .global_batch = o->batch, .image_size = bt_loader_image_size(r->ld, 0),
                         .seed = (uint64_t)o->seed, .lambd = (float)o->lambd, .loss_form = form,
                         .lr_weights = o->lrw, .lr_biases = o->lrb, .weight_decay = o->wd,
                         .eta = o->eta, .epochs = o->epochs, .warmup_epochs = o->warmup,
                         .steps_per_epoch = r->spe,
                         .bucket_floats = bf && atol(bf) > 0 ? (size_t)atol(bf) : 0};
    if (bt_trainer_new(&r->t, r->be, comm, &tc) != BT_OK) return failed(r);
    r->m = r->t->m;
    if (o->init_from && access(r->ckpath, F_OK) != 0) {
        if (bt_model_init_from(r->m, o->init_from) != BT_OK) {
            fprintf(stderr, "%s: --init-from: %s\n", PT, bt_error());
            return 2;
        }
        printf("%s: backbone initialised from %s\n", PT, o->init_from);
    }
    int D = bt_model_out_dim(r->m);
    int used = form == BT_LOSS_AUTO ? bt_twins_loss_choose(o->batch, D) : form;
    printf("%s: loss form %s (%s; projector output D=%d, batch N=%d)\n", PT,
           used == BT_LOSS_GRAM ? "gram" : "direct", form == BT_LOSS_AUTO ? "auto" : "forced", D,
           o->batch);
    if (world > 1)
        printf("%s: data-parallel over %d ranks, %d images per rank per step; batch norm and "
               "the loss use the global batch of %d\n", PT, world, o->batch / world, o->batch);
    return 0;
}

/* Rank 0 continues from the checkpoint when there is one; every rank then takes rank 0's
 * state; rank 0 keeps the untrained network of a fresh run for `barlow report`. */
static int resume(pt_run *r, pt_pos *pos) {
    const pt_opts *o = &r->o;
    int rank = bt_comm_rank(bt_cli_comm);
    if (rank == 0 && access(r->ckpath, F_OK) == 0) {
        bt_ckpt_state st;
        if (bt_ckpt_open(&r->ck, &st, r->ckpath) != BT_OK) {
            fprintf(stderr, "%s: cannot resume: %s; refusing to overwrite it (move it away to "
                    "start afresh)\n", PT, bt_error());
            return 1;
        }
        if (check_compatible(r->config, st.config, r->ckpath) != BT_OK) {
            fprintf(stderr, "%s: %s\n", PT, bt_error());
            return 2;
        }
        if (st.seed != (uint64_t)o->seed) {
            fprintf(stderr, "%s: --seed %ld contradicts the checkpoint %s (made with --seed %llu)\n",
                    PT, o->seed, r->ckpath, (unsigned long long)st.seed);
            return 2;
        }
        if (st.steps_per_epoch != r->spe) {
            fprintf(stderr, "%s: %s was made with %ld steps per epoch (this run: %ld); the "
                    "dataset changed; use the same data or another --checkpoint-dir\n", PT,
                    r->ckpath, st.steps_per_epoch, r->spe);
            return 2;
        }
        note_other_path(st.config, bt_threads(), r->o.precision);
        if (bt_ckpt_restore(r->m, r->ck, &st) != BT_OK) return failed(r);
        pos->epoch = st.epoch;
        pos->nb = st.next_batch;
        r->t->step = st.step;
        bt_st_close(r->ck);
        r->ck = NULL;
        printf("%s: resuming from %s at epoch %d, batch %ld, step %ld\n", PT, r->ckpath,
               pos->epoch, pos->nb, r->t->step);
    }
    long where[2] = {pos->epoch, pos->nb};
    if (bt_trainer_broadcast(r->t, where, 2) != BT_OK) return failed(r);
    pos->epoch = (int)where[0];
    pos->nb = where[1];
    if (pos->nb >= r->spe) pos->epoch++, pos->nb = 0;
    if (rank == 0 && r->t->step == 0) {
        /* The untrained network, for `barlow report`'s before/after picture of C. */
        bt_ckpt_state st0 = {.epoch = 0, .next_batch = 0, .step = 0, .steps_per_epoch = r->spe,
                             .seed = (uint64_t)o->seed, .config = r->config_text};
        if (bt_ckpt_save(r->firstpath, r->m, &st0) != BT_OK) return failed(r);
    }
    return 0;
}

/* Rank 0's stats.txt (with the command line, as the reference prints it at every start) and
 * TensorBoard events; the stop signals. */
static int open_outputs(pt_run *r, int argc, char **argv) {
    if (bt_comm_rank(bt_cli_comm) == 0) {
        if (!(r->stats = fopen(r->statspath, "a"))) {
            fprintf(stderr, "%s: cannot open %s: %s\n", PT, r->statspath, strerror(errno));
            return 1;
        }
        if (bt_tb_open(&r->tb, r->tbdir) != BT_OK) return failed(r);
        fputs("barlow", r->stats);
        for (int i = 0; i < argc; i++) fprintf(r->stats, " %s", argv[i]);
        fputc('\n', r->stats);
        fflush(r->stats);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return 0;
}

/* What the loop reports between steps. */
typedef struct {
    double t0, t_log, t_live;
    long step0, log_step, skipped, total, nan_step;
    bt_loss_result res;
} pt_progress;

/* stats.txt every print-freq steps, and the live line on a terminal. */
static int report_step(pt_run *r, pt_progress *pg, int epoch, long done) {
    const pt_opts *o = &r->o;
    long step = r->t->step;
    double t = now_s(), lrw = r->t->lars.lr_weights, lrb = r->t->lars.lr_biases;
    if (done % o->print_freq == 0) {
        double ips = (double)(step - pg->log_step) * o->batch / fmax(t - pg->t_log, 1e-9);
        int rc = stats_line(r, epoch, done, lrw, lrb, &pg->res, t - pg->t0, ips, pg->skipped);
        if (rc != BT_OK) return rc;
        pg->t_log = t;
        pg->log_step = step;
        pg->skipped = 0;
    }
    if (r->live && (t - pg->t_live > 0.2 || step == pg->total)) {
        double rate = (double)(step - pg->step0) / fmax(t - pg->t0, 1e-9);
        char eta[32];
        fmt_eta(eta, sizeof eta, (double)(pg->total - step) / rate);
        fprintf(stderr, "\repoch %d step %ld/%ld loss %.4g lr %.4g %.1f img/s ETA %s   ", epoch,
                step, pg->total, pg->res.loss, lrw, rate * o->batch, eta);
        fflush(stderr);
        r->live_dirty = 1;
        pg->t_live = t;
    }
    return BT_OK;
}

/* Signals reach the ranks at different times: every rank stops at the same step. */
static int stop_requested(void) {
    const bt_comm *comm = bt_cli_comm;
    if (bt_comm_world(comm) > 1) {
        double sig = stop_signal;
        if (comm->allreduce_f64(comm, &sig, 1) != BT_OK) return -1;
        if (sig > 0 && !stop_signal) stop_signal = SIGTERM;
    }
    return stop_signal != 0;
}

/* The epochs: steps, logs, the kNN monitor and the checkpoints, to --epochs or --max-steps
 * or a signal. */
static int train(pt_run *r, pt_pos *pos) {
    const pt_opts *o = &r->o;
    bt_trainer *t = r->t;
    int world = bt_comm_world(bt_cli_comm), rank = bt_comm_rank(bt_cli_comm);
    pt_progress pg = {.nan_step = -1};
    const char *ns = getenv("BARLOW_TEST_NAN_AT_STEP"); /* test hook: a poisoned input */
    if (ns && *ns) pg.nan_step = strtol(ns, NULL, 10);
    pg.total = (long)o->epochs * r->spe;
    if (o->max_steps > 0 && o->max_steps < pg.total) pg.total = o->max_steps;
    r->live = rank == 0 && isatty(STDERR_FILENO);
    pg.t0 = pg.t_log = now_s();
    pg.step0 = pg.log_step = t->step;
    int saved_at_end = 0, stopped = 0;

    while (pos->epoch < o->epochs && !stopped) {
        if (o->max_steps > 0 && t->step >= o->max_steps) break;
        if (bt_loader_start_epoch(r->ld, pos->epoch, pos->nb) != BT_OK) return failed(r);
        for (;;) {
            int stop = stop_requested();
            if (stop < 0) return failed(r);
            if (stop) {
                end_live(r);
                if (save_ckpt(r, pos->epoch, pos->nb, t->step) != BT_OK) return failed(r);
                printf("%s: stopped by %s after step %ld; checkpoint written to %s\n", PT,
                       stop_signal == SIGINT ? "SIGINT" : "SIGTERM", t->step, r->ckpath);
                fflush(stdout);
                return 0;
            }
            if (o->max_steps > 0 && t->step >= o->max_steps) {
                stopped = 1;
                break;
            }
            const bt_batch *b;
            int got = bt_loader_next(r->ld, &b);
            if (got < 0) return failed(r);
            if (!got) break;
            if (b->n != o->batch / world) {
                bt_fail(BT_EINVAL, "internal: short batch (%d of %d)", b->n, o->batch / world);
                return failed(r);
            }
            if (t->step == pg.nan_step) b->x[0][0] = NAN;
            long done = t->step;
            pg.skipped += b->skipped; /* read before the batch goes back to the loader */
            int rc = bt_trainer_step(t, b->x[0], b->x[1], &pg.res);
            if (rc == BT_ENUM) {
                end_live(r);
                fprintf(stderr, "%s: non-finite loss at step %ld (epoch %d, batch %ld); stopping. "
                        "The last good checkpoint%s%s is left unchanged\n", PT, done, pos->epoch,
                        pos->nb, access(r->ckpath, F_OK) == 0 ? " " : " (none yet)",
                        access(r->ckpath, F_OK) == 0 ? r->ckpath : "");
                return 1;
            }
            if (rc != BT_OK || bt_loader_release(r->ld, b) != BT_OK) return failed(r);
            if (r->tb && o->tb_image_every > 0 && done % o->tb_image_every == 0 &&
                tb_corr_image(r, done) != BT_OK)
                return failed(r);
            pos->nb++;
            if (report_step(r, &pg, pos->epoch, done) != BT_OK) return failed(r);
            saved_at_end = 0;
            if (o->save_every > 0 && t->step % o->save_every == 0) {
                if (save_ckpt(r, pos->epoch, pos->nb, t->step) != BT_OK) return failed(r);
                saved_at_end = 1;
            }
        }
        if (pos->nb >= r->spe) {
            pos->epoch++;
            pos->nb = 0;
            if (o->knn_every > 0 && pos->epoch % o->knn_every == 0 && rank == 0 &&
                knn_monitor(r, pos->epoch, t->step) != BT_OK)
                return failed(r);
            if (!saved_at_end && save_ckpt(r, pos->epoch, pos->nb, t->step) != BT_OK)
                return failed(r);
            saved_at_end = 1;
        }
    }
    end_live(r);
    if (!saved_at_end && t->step > pg.step0 && save_ckpt(r, pos->epoch, pos->nb, t->step) != BT_OK)
        return failed(r);
    if (rank == 0 && bt_ckpt_save_backbone(r->bbpath, r->m, r->config_text) != BT_OK)
        return failed(r);
    printf("%s: done at epoch %d, step %ld; checkpoint %s, backbone %s\n", PT, pos->epoch,
           t->step, r->ckpath, r->bbpath);
    return 0;
}

static int run(pt_run *r, int argc, char **argv) {
    const char *data = NULL;
    int form = BT_LOSS_AUTO, threads = 0;
    int rc = setup(r, argc, argv, &data, &form);
    if (rc) return rc < 0 ? 0 : rc;
    pt_pos pos = {0, 0};
    if ((rc = begin(r, data, &threads)) || (rc = build(r, threads, form)) ||
        (rc = resume(r, &pos)) || (rc = open_outputs(r, argc, argv)))
        return rc;
    return train(r, &pos);
}

int bt_cmd_pretrain(int argc, char **argv) {
    pt_run r;
    memset(&r, 0, sizeof r);
    int status = run(&r, argc, argv);
    free_run(&r);
    /* A rank that fails ends the whole job, so no other rank waits forever in a collective. */
    if (status != 0) end_job(status);
    return status;
}
