/* Data pipeline throughput: two-view samples per second (and per worker thread) of the
 * threaded loader, against the reference's torchvision + PIL DataLoader with as many worker
 * processes (bench/bench_data_torch.py), on (1) the shared CIFAR-10 JPEGs with the cifar
 * preset and (2) generated 500x375 JPEGs with the imagenet preset. Not run in CI.
 *   bench_data [threads=2] [batches=20] */
#include "barlow/error.h"
#include "barlow/loader.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static double run_ours(const char *data, const char *preset_name, int threads, int batch,
                       int nbatches) {
    bt_dataset *ds = NULL;
    bt_aug_preset pr;
    bt_loader *ld = NULL;
    if (bt_dataset_open(&ds, data, "train") || bt_aug_preset_init(&pr, preset_name)) {
        fprintf(stderr, "bench_data: %s\n", bt_error());
        exit(1);
    }
    bt_loader_cfg c = {.batch = batch, .threads = threads, .ring = 3, .seed = 1,
                       .mode = BT_LOAD_TWO_VIEWS, .shuffle = 1, .drop_last = 1,
                       .rank = 0, .world = 1};
    if (bt_loader_new(&ld, ds, &pr, &c) || bt_loader_start_epoch(ld, 0, 0)) {
        fprintf(stderr, "bench_data: %s\n", bt_error());
        exit(1);
    }
    const bt_batch *b;
    if (bt_loader_next(ld, &b) != 1) exit(1); /* warm-up: buffers grown, workers running */
    double t0 = now();
    long n = 0;
    for (int k = 0; k < nbatches && bt_loader_next(ld, &b) == 1; k++) n += b->n;
    double dt = now() - t0;
    bt_loader_free(ld);
    bt_dataset_close(ds);
    return n / dt;
}

static double run_torch(const char *root, const char *preset, int threads, int batch,
                        int nbatches) {
    char cmd[2048], line[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 bench/bench_data_torch.py '%s' %s %d %d %d",
             root, preset, threads, batch, nbatches);
    FILE *p = popen(cmd, "r");
    double v = -1;
    while (p && fgets(line, sizeof line, p)) sscanf(line, "samples/s %lf", &v);
    if (p) pclose(p);
    return v;
}

static void report(const char *what, double ours, double torch, int threads) {
    printf("%-30s barlow %8.1f samples/s (%7.1f per thread)   torch %8.1f (%7.1f per worker)"
           "   ratio %.2fx\n", what, ours, ours / threads, torch, torch / threads,
           torch > 0 ? ours / torch : 0.0);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, nb = argc > 2 ? atoi(argv[2]) : 20;
    /* 60,000 small files: tmpfs when there is one (a busy disk takes minutes) */
    char tmp[64], cmd[4096], path[1024];
    snprintf(tmp, sizeof tmp, "/dev/shm/barlow-bench-XXXXXX");
    if (!mkdtemp(tmp)) {
        snprintf(tmp, sizeof tmp, "/tmp/barlow-bench-XXXXXX");
        if (!mkdtemp(tmp)) return 1;
    }
    const char *shared = getenv("BARLOW_SHARED_DATA") ? getenv("BARLOW_SHARED_DATA") : "../shared/data";
    snprintf(cmd, sizeof cmd, "tar xzf '%s/cifar10-jpeg.tar.gz' -C '%s'", shared, tmp);
    if (system(cmd)) return 1;
    snprintf(path, sizeof path, "%s/cifar10", tmp);
    double o = run_ours(path, "cifar", threads, 256, nb);
    char root[1200];
    snprintf(root, sizeof root, "%s/train", path);
    double t = run_torch(root, "cifar", threads, 256, nb);
    report("cifar, 32x32 JPEGs:", o, t, threads);

    /* 500x375 JPEGs of smooth noise, 8 classes x 40 */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np, os; from PIL import Image\n"
             "r = np.random.default_rng(0)\n"
             "for c in range(8):\n"
             "  d = '%s/inet/train/c%%d' %% c; os.makedirs(d)\n"
             "  for i in range(40):\n"
             "    a = r.integers(0, 256, (47, 63, 3)).astype(np.uint8)\n"
             "    Image.fromarray(a).resize((500, 375), Image.BICUBIC).save('%%s/%%03d.jpg' %% (d, i), quality=90)\n\"",
             tmp);
    if (system(cmd)) return 1;
    snprintf(path, sizeof path, "%s/inet", tmp);
    o = run_ours(path, "imagenet", threads, 32, nb / 2 > 0 ? nb / 2 : 1);
    snprintf(root, sizeof root, "%s/inet/train", tmp);
    t = run_torch(root, "imagenet", threads, 32, nb / 2 > 0 ? nb / 2 : 1);
    report("imagenet preset, 500x375:", o, t, threads);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) != 0;
}
