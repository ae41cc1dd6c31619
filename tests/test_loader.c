/* The batch loader: bit-identical batches whatever the thread count and ring size, exact
 * mid-epoch resume, per-epoch shuffles, drop_last, rank slices that tile the global batch,
 * the (seed, epoch, index, view) keying checked against a direct bt_aug_sample/apply, and
 * undecodable images skipped, warned once and counted. Data are made here: a CIFAR-10
 * binary batch of random pixels and a folder of JPEGs encoded with TurboJPEG. */
#include "barlow/loader.h"
#include "barlow/error.h"
#include "testutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

enum { NIMG = 50, B = 8 };

static bt_dataset *cifar_ds(void) {
    static char dir[600];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/cifar", tu_tmpdir());
        mkdir(dir, 0755);
        char p[700];
        snprintf(p, sizeof p, "%s/test_batch.bin", dir);
        FILE *f = fopen(p, "wb");
        tu_rng r = {42};
        uint8_t rec[3073];
        for (int i = 0; i < NIMG; i++) {
            rec[0] = (uint8_t)(i % 10);
            for (int k = 1; k < 3073; k++) rec[k] = (uint8_t)(tu_next(&r) >> 56);
            fwrite(rec, 1, sizeof rec, f);
        }
        fclose(f);
    }
    bt_dataset *ds = NULL;
    int rc = bt_dataset_open(&ds, dir, "test");
    CHECK(rc == 0, "%s", bt_error());
    return ds;
}

/* All batches of one epoch, copied. */
typedef struct {
    long nb;
    int n[64], skipped[64];
    float *x[2];     /* (nb*B, 3, 32, 32) */
    int32_t lab[64 * B];
    int64_t idx[64 * B];
} run_t;

static const size_t PER = 3 * 32 * 32;

static int run_epoch(run_t *out, const bt_dataset *ds, const bt_aug_preset *pr,
                     bt_loader_cfg cfg, int epoch, long first) {
    memset(out, 0, sizeof *out);
    bt_loader *ld = NULL;
    int rc = bt_loader_new(&ld, ds, pr, &cfg);
    CHECK(rc == 0, "loader_new: %s", bt_error());
    if (rc) return rc;
    out->nb = bt_loader_batches_per_epoch(ld);
    for (int v = 0; v < 2; v++) out->x[v] = calloc((size_t)64 * B * PER, sizeof(float));
    CHECK(bt_loader_start_epoch(ld, epoch, first) == 0, "%s", bt_error());
    const bt_batch *b;
    long k = first;
    while ((rc = bt_loader_next(ld, &b)) == 1) {
        CHECK(k < 64, "too many batches");
        if (k >= 64) break;
        out->n[k] = b->n;
        out->skipped[k] = b->skipped;
        for (int v = 0; v < 2; v++)
            if (b->x[v]) memcpy(out->x[v] + (size_t)k * B * PER, b->x[v], (size_t)b->n * PER * 4);
        memcpy(out->lab + k * B, b->labels, (size_t)b->n * 4);
        memcpy(out->idx + k * B, b->index, (size_t)b->n * 8);
        k++;
    }
    CHECK(rc == 0, "next: %d %s", rc, bt_error());
    CHECK(k == out->nb, "got %ld batches, expected %ld", k, out->nb);
    bt_loader_free(ld);
    return rc;
}

static void free_run(run_t *r) {
    free(r->x[0]);
    free(r->x[1]);
}

/* Batches [from, nb) of a and b identical (images, labels, indices, counts). */
static int same_runs(const run_t *a, const run_t *b, long from) {
    if (a->nb != b->nb) return 0;
    for (long k = from; k < a->nb; k++) {
        if (a->n[k] != b->n[k] || a->skipped[k] != b->skipped[k]) return 0;
        size_t o = (size_t)k * B, n = (size_t)a->n[k];
        if (memcmp(a->lab + o, b->lab + o, n * 4) || memcmp(a->idx + o, b->idx + o, n * 8))
            return 0;
        for (int v = 0; v < 2; v++)
            if (memcmp(a->x[v] + o * PER, b->x[v] + o * PER, n * PER * 4)) return 0;
    }
    return 1;
}

static bt_loader_cfg base_cfg(void) {
    bt_loader_cfg c = {.batch = B, .threads = 1, .ring = 1, .seed = 1234,
                       .mode = BT_LOAD_TWO_VIEWS, .shuffle = 1, .drop_last = 0,
                       .rank = 0, .world = 1};
    return c;
}

static void test_threads_ring_identical(void) {
    bt_dataset *ds = cifar_ds();
    bt_aug_preset pr;
    CHECK(bt_aug_preset_init(&pr, "cifar") == 0, "%s", bt_error());
    if (!ds) return;
    bt_loader_cfg c = base_cfg();
    run_t a, b, d;
    run_epoch(&a, ds, &pr, c, 0, 0);
    c.threads = 2, c.ring = 3;
    run_epoch(&b, ds, &pr, c, 0, 0);
    c.threads = 3, c.ring = 2;
    run_epoch(&d, ds, &pr, c, 0, 0);
    CHECK(a.nb == 7 && a.n[6] == 2, "nb %ld last n %d", a.nb, a.n[6]);
    CHECK(same_runs(&a, &b, 0), "1 thread ring 1 != 2 threads ring 3");
    CHECK(same_runs(&a, &d, 0), "1 thread ring 1 != 3 threads ring 2");
    /* The epoch is a shuffled permutation and labels follow the indices. */
    int seen[NIMG] = {0}, moved = 0;
    for (int p = 0; p < NIMG; p++) {
        int64_t i = a.idx[p];
        CHECK(i >= 0 && i < NIMG, "index %lld", (long long)i);
        if (i < 0 || i >= NIMG) return;
        seen[i]++;
        moved += i != p;
        CHECK(a.lab[p] == bt_dataset_label(ds, (size_t)i), "label of %lld", (long long)i);
    }
    for (int i = 0; i < NIMG; i++) CHECK(seen[i] == 1, "item %d seen %d times", i, seen[i]);
    CHECK(moved > NIMG / 2, "not shuffled (%d moved)", moved);
    /* The keying contract: sample at position p, item i, view v uses bt_rng_key(seed, 0, i, v). */
    bt_image im = {0};
    bt_aug_work *w = bt_aug_work_new();
    float *x = malloc(PER * sizeof(float));
    double maxd = 0;
    for (int p = 0; p < NIMG; p += 7)
        for (int v = 0; v < 2; v++) {
            CHECK(bt_dataset_load(ds, (size_t)a.idx[p], &im) == 0, "%s", bt_error());
            bt_rng r = bt_rng_key(1234, 0, (uint64_t)a.idx[p], (uint64_t)v);
            bt_aug_params prm;
            bt_aug_sample(&prm, &pr.view[v], im.w, im.h, &r);
            CHECK(bt_aug_apply(x, &im, &prm, &pr.view[v], pr.mean, pr.std, w) == 0, "%s", bt_error());
            double d2 = tu_maxabsdiff_f32(x, a.x[v] + (size_t)p * PER, PER);
            if (d2 > maxd) maxd = d2;
        }
    CHECK(maxd == 0, "batch differs from the direct augmentation by %g", maxd);
    free(x);
    bt_aug_work_free(w);
    bt_image_free(&im);
    free_run(&a);
    free_run(&b);
    free_run(&d);
    bt_dataset_close(ds);
}

static void test_resume_and_epochs(void) {
    bt_dataset *ds = cifar_ds();
    bt_aug_preset pr;
    bt_aug_preset_init(&pr, "cifar");
    if (!ds) return;
    bt_loader_cfg c = base_cfg();
    c.threads = 2, c.ring = 3;
    run_t e1, r1, e0;
    run_epoch(&e1, ds, &pr, c, 1, 0);
    run_epoch(&r1, ds, &pr, c, 1, 3);
    CHECK(same_runs(&e1, &r1, 3), "resume at batch 3 differs from the uninterrupted epoch");
    run_epoch(&e0, ds, &pr, c, 0, 0);
    CHECK(memcmp(e0.idx, e1.idx, NIMG * 8) != 0, "epochs 0 and 1 have the same order");
    CHECK(tu_maxabsdiff_f32(e0.x[0], e1.x[0], PER) > 0.1, "epochs 0 and 1 same first image");
    /* The same item in two epochs gets different augmentations. */
    int p0 = 0, p1 = 0;
    while (p1 < NIMG && e1.idx[p1] != e0.idx[p0]) p1++;
    CHECK(p1 < NIMG && tu_maxabsdiff_f32(e0.x[0] + (size_t)p0 * PER, e1.x[0] + (size_t)p1 * PER,
                                         PER) > 0.1, "item augmented the same in both epochs");

    /* Restarting while batches are in flight, and going back to an earlier epoch. */
    bt_loader *ld = NULL;
    CHECK(bt_loader_new(&ld, ds, &pr, &c) == 0, "%s", bt_error());
    if (!ld) return;
    const bt_batch *b;
    bt_loader_start_epoch(ld, 0, 0);
    CHECK(bt_loader_next(ld, &b) == 1, "first batch");
    CHECK(bt_loader_start_epoch(ld, 1, 5) == 0, "%s", bt_error());
    CHECK(bt_loader_next(ld, &b) == 1 && b->n == B &&
              !memcmp(b->index, e1.idx + 5 * B, B * 8) &&
              !memcmp(b->x[1], e1.x[1] + 5 * B * PER, B * PER * 4), "restart mid-flight");
    CHECK(bt_loader_next(ld, &b) == 1 && b->n == 2, "last batch");
    CHECK(bt_loader_next(ld, &b) == 0 && b == NULL, "epoch end");
    CHECK(bt_loader_next(ld, &b) == 0, "epoch end again");
    CHECK(bt_loader_start_epoch(ld, 1, 8) == BT_EINVAL, "batch past the end accepted");
    bt_loader_free(ld);
    free_run(&e1);
    free_run(&r1);
    free_run(&e0);
    bt_dataset_close(ds);
}

static void test_drop_last_and_ranks(void) {
    bt_dataset *ds = cifar_ds();
    bt_aug_preset pr;
    bt_aug_preset_init(&pr, "cifar");
    if (!ds) return;
    bt_loader_cfg c = base_cfg();
    c.threads = 2, c.ring = 2;
    run_t g, dl, r0, r1;
    run_epoch(&g, ds, &pr, c, 2, 0);
    c.drop_last = 1;
    run_epoch(&dl, ds, &pr, c, 2, 0);
    CHECK(dl.nb == 6, "drop_last: %ld batches", dl.nb);
    for (long k = 0; k < dl.nb; k++) CHECK(dl.n[k] == B, "drop_last batch %ld has %d", k, dl.n[k]);
    CHECK(same_runs(&g, &dl, 1) == 0 && !memcmp(g.idx, dl.idx, 48 * 8), "drop_last order");
    /* world 2 x batch 4: rank slices concatenate to the world-1 global batch of 8 */
    c.drop_last = 0;
    c.batch = B / 2, c.world = 2;
    c.rank = 0;
    run_epoch(&r0, ds, &pr, c, 2, 0);
    c.rank = 1;
    run_epoch(&r1, ds, &pr, c, 2, 0);
    CHECK(r0.nb == 7 && r1.nb == 7, "ranks see %ld and %ld batches", r0.nb, r1.nb);
    CHECK(r0.n[6] == 2 && r1.n[6] == 0, "last batch split %d + %d", r0.n[6], r1.n[6]);
    int bad = 0;
    for (long k = 0; k < 7; k++) {
        for (int j = 0; j < r0.n[k] + r1.n[k]; j++) {
            const run_t *r = j < B / 2 ? &r0 : &r1;
            /* run_t stores batch k at k*B even for batch B/2 */
            size_t src = (size_t)k * B + (size_t)(j % (B / 2)), dst = (size_t)k * B + (size_t)j;
            if (r->idx[src] != g.idx[dst] || r->lab[src] != g.lab[dst] ||
                memcmp(r->x[0] + src * PER, g.x[0] + dst * PER, PER * 4) ||
                memcmp(r->x[1] + src * PER, g.x[1] + dst * PER, PER * 4))
                bad++;
        }
        CHECK(r0.n[k] + r1.n[k] == g.n[k], "batch %ld: %d + %d != %d", k, r0.n[k], r1.n[k], g.n[k]);
    }
    CHECK(bad == 0, "%d rank slots differ from the global batch", bad);
    free_run(&g);
    free_run(&dl);
    free_run(&r0);
    free_run(&r1);
    /* bad settings */
    bt_loader *ld = NULL;
    c.rank = 2;
    CHECK(bt_loader_new(&ld, ds, &pr, &c) == BT_EINVAL && !ld, "rank 2 of 2 accepted");
    c = base_cfg();
    c.batch = 64, c.drop_last = 1;
    CHECK(bt_loader_new(&ld, ds, &pr, &c) == BT_EINVAL && !ld, "no full batch accepted");
    bt_dataset_close(ds);
}

static void test_modes(void) {
    bt_dataset *ds = cifar_ds();
    bt_aug_preset pr;
    bt_aug_preset_init(&pr, "cifar");
    if (!ds) return;
    bt_loader_cfg c = base_cfg();
    run_t two, one, ev;
    run_epoch(&two, ds, &pr, c, 0, 0);
    c.mode = BT_LOAD_ONE_VIEW, c.threads = 2;
    run_epoch(&one, ds, &pr, c, 0, 0);
    CHECK(!memcmp(one.x[0], two.x[0], NIMG * PER * 4) && tu_maxabs_f32(one.x[1], NIMG * PER) == 0,
          "one view != view 0 of two views, or a second view written");
    c.mode = BT_LOAD_EVAL, c.shuffle = 0;
    run_epoch(&ev, ds, &pr, c, 0, 0);
    /* identity eval transform: (v/255 - mean) / std, in file order */
    bt_image im = {0};
    double maxd = 0;
    for (int i = 0; i < NIMG; i++) {
        CHECK(ev.idx[i] == i, "eval order: %lld at %d", (long long)ev.idx[i], i);
        bt_dataset_load(ds, (size_t)i, &im);
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 1024; p++) {
                double want = ((double)im.px[3 * p + ch] / 255.0 - pr.mean[ch]) / pr.std[ch];
                double d = fabs(want - ev.x[0][(size_t)i * PER + (size_t)ch * 1024 + p]);
                if (d > maxd) maxd = d;
            }
    }
    CHECK(maxd < 1e-5, "eval tensor off by %g", maxd); /* float32 rounding of the normalise */
    bt_image_free(&im);
    free_run(&two);
    free_run(&one);
    free_run(&ev);
    bt_dataset_close(ds);
}

/* A folder of 12 JPEGs (class a: 0..5, class b: 6..11) where 03.jpg and 04.jpg of class a
 * are corrupt. */
static bt_dataset *corrupt_ds(char *badname, size_t cap) {
    char dir[600], p[800];
    snprintf(dir, sizeof dir, "%s/corrupt", tu_tmpdir());
    tjhandle tj = tjInitCompress();
    tu_rng r = {7};
    uint8_t px[24 * 20 * 3];
    for (int i = 0; i < 12; i++) {
        snprintf(p, sizeof p, "%s/train/%c", dir, i < 6 ? 'a' : 'b');
        char cmd[900];
        snprintf(cmd, sizeof cmd, "mkdir -p '%s'", p);
        if (system(cmd)) return NULL;
        snprintf(p, sizeof p, "%s/train/%c/%02d.jpg", dir, i < 6 ? 'a' : 'b', i);
        FILE *f = fopen(p, "wb");
        if (i == 3 || i == 4) {
            fputs("\xff\xd8\xff not really a jpeg", f);
            if (i == 3) snprintf(badname, cap, "%s", p);
        } else {
            for (size_t k = 0; k < sizeof px; k++) px[k] = (uint8_t)(tu_next(&r) >> 56);
            unsigned char *jpg = NULL;
            unsigned long len = 0;
            tjCompress2(tj, px, 24, 0, 20, TJPF_RGB, &jpg, &len, TJSAMP_420, 90, 0);
            fwrite(jpg, 1, len, f);
            tjFree(jpg);
        }
        fclose(f);
    }
    tjDestroy(tj);
    bt_dataset *ds = NULL;
    CHECK(bt_dataset_open(&ds, dir, "train") == 0, "%s", bt_error());
    return ds;
}

static void test_corrupt_skipped(void) {
    char bad[800];
    bt_dataset *ds = corrupt_ds(bad, sizeof bad);
    bt_aug_preset pr;
    bt_aug_preset_init(&pr, "cifar");
    if (!ds) return;
    CHECK(bt_dataset_size(ds) == 12, "size %zu", bt_dataset_size(ds));
    /* capture stderr */
    char log[700];
    snprintf(log, sizeof log, "%s/stderr.txt", tu_tmpdir());
    fflush(stderr);
    int saved = dup(2);
    FILE *lf = freopen(log, "w", stderr);
    bt_loader_cfg c = base_cfg();
    c.batch = 4, c.shuffle = 0, c.threads = 2, c.ring = 2;
    run_t a, a2, s1, s2;
    int rc = run_epoch(&a, ds, &pr, c, 0, 0);
    run_epoch(&a2, ds, &pr, c, 1, 0);
    c.shuffle = 1, c.threads = 1, c.ring = 1;
    run_epoch(&s1, ds, &pr, c, 3, 0);
    c.threads = 3, c.ring = 3;
    run_epoch(&s2, ds, &pr, c, 3, 0);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    (void)lf;
    CHECK(rc == 0, "loader failed");
    /* positions 3 and 4 are both filled with item 5, the next decodable one */
    CHECK(a.nb == 3 && a.skipped[0] == 1 && a.skipped[1] == 1 && a.skipped[2] == 0,
          "skipped %d %d %d", a.skipped[0], a.skipped[1], a.skipped[2]);
    /* run_t keeps batch k at k*B: position p of a batch-4 run is at slot(p) */
#define SLOT(p) ((size_t)((p) / 4) * B + (size_t)((p) % 4))
    CHECK(a.idx[SLOT(3)] == 5 && a.idx[SLOT(4)] == 5 && a.idx[SLOT(5)] == 5 &&
              a.idx[SLOT(2)] == 2 && a.idx[SLOT(6)] == 6 && a.lab[SLOT(3)] == 0,
          "substitutes %lld %lld", (long long)a.idx[SLOT(3)], (long long)a.idx[SLOT(4)]);
    CHECK(!memcmp(a.x[0] + SLOT(3) * PER, a.x[0] + SLOT(5) * PER, PER * 4) &&
              !memcmp(a.x[1] + SLOT(4) * PER, a.x[1] + SLOT(5) * PER, PER * 4),
          "substitute not augmented as itself");
    CHECK(s1.skipped[0] + s1.skipped[1] + s1.skipped[2] == 2, "shuffled: skipped total");
    CHECK(same_runs(&s1, &s2, 0), "with corrupt items, 1 thread != 3 threads");
    for (int p = 0; p < 12; p++)
        CHECK(s1.idx[SLOT(p)] != 3 && s1.idx[SLOT(p)] != 4, "bad item returned");
    /* one warning line per bad file over two epochs and four loaders */
    FILE *f = fopen(log, "r");
    char line[2048];
    int n3 = 0, n4 = 0, lines = 0;
    while (f && fgets(line, sizeof line, f)) {
        lines++;
        n3 += strstr(line, bad) != NULL;
        n4 += strstr(line, "a/04.jpg") != NULL;
    }
    if (f) fclose(f);
    CHECK(n3 == 4 && n4 == 4 && lines == 8, "warnings: %d for 03, %d for 04, %d lines", n3, n4, lines);
    free_run(&a);
    free_run(&a2);
    free_run(&s1);
    free_run(&s2);
    bt_dataset_close(ds);
}

/* Ring slots from the caller's hooks, and batches held across bt_loader_next until released
 * (what a GPU trainer needs while an asynchronous copy reads a batch): the same batches as
 * the implicit mode, the first one intact while later ones are taken, releases in order. */
static int hook_allocs, hook_frees;
static void *hook_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    hook_allocs++;
    return malloc(bytes);
}
static void hook_free(void *ctx, void *p) {
    (void)ctx;
    hook_frees++;
    free(p);
}

static void test_explicit_release(void) {
    bt_dataset *ds = cifar_ds();
    bt_aug_preset pr;
    CHECK(bt_aug_preset_init(&pr, "cifar") == 0, "%s", bt_error());
    if (!ds) return;
    bt_loader_cfg c = base_cfg();
    c.threads = 2, c.ring = 3;
    run_t ref;
    run_epoch(&ref, ds, &pr, c, 1, 0);
    c.slot_alloc = hook_alloc, c.slot_free = hook_free, c.explicit_release = 1;
    bt_loader *ld = NULL;
    CHECK(bt_loader_new(&ld, ds, &pr, &c) == 0, "%s", bt_error());
    if (!ld) return;
    CHECK(hook_allocs == 2 * c.ring, "%d slot allocations through the hook", hook_allocs);
    CHECK(bt_loader_start_epoch(ld, 1, 0) == 0, "%s", bt_error());
    const bt_batch *held[3];
    long k = 0;
    int got = 0;
    for (int i = 0; i < 3; i++) CHECK(bt_loader_next(ld, &held[i]) == 1, "next %d: %s", i, bt_error());
    const bt_batch *extra;
    CHECK(bt_loader_next(ld, &extra) < 0, "a fourth batch with the ring of 3 held");
    CHECK(bt_loader_release(ld, held[1]) < 0, "release out of order accepted");
    /* every held batch is still what the implicit mode handed out */
    for (int i = 0; i < 3; i++)
        CHECK(!memcmp(held[i]->x[0], ref.x[0] + (size_t)i * B * PER, (size_t)held[i]->n * PER * 4) &&
                  !memcmp(held[i]->labels, ref.lab + i * B, (size_t)held[i]->n * 4),
              "held batch %d changed", i);
    /* then in step: release the oldest, take the next */
    const bt_batch *cur = NULL;
    for (k = 3;; k++) {
        CHECK(bt_loader_release(ld, held[(k - 3) % 3]) == 0, "release %ld: %s", k - 3, bt_error());
        got = bt_loader_next(ld, &cur);
        if (got != 1) break;
        held[(k - 3) % 3] = cur;
        CHECK(!memcmp(cur->x[1], ref.x[1] + (size_t)k * B * PER, (size_t)cur->n * PER * 4),
              "batch %ld differs from the implicit mode", k);
    }
    CHECK(got == 0 && k == ref.nb, "epoch ended at %ld of %ld (%d)", k, ref.nb, got);
    bt_loader_free(ld);
    CHECK(hook_frees == hook_allocs, "%d frees for %d allocations", hook_frees, hook_allocs);
    free_run(&ref);
    bt_dataset_close(ds);
}

int main(void) {
    TEST_RUN(test_threads_ring_identical);
    TEST_RUN(test_resume_and_epochs);
    TEST_RUN(test_drop_last_and_ranks);
    TEST_RUN(test_modes);
    TEST_RUN(test_corrupt_skipped);
    TEST_RUN(test_explicit_release);
    return tu_finish();
}
