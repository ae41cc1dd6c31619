/* The threaded batch loader. Workers take one (batch, slot position) task at a time from a
 * shared cursor, decode and augment into the batch's ring slot, and the caller receives the
 * batches in order. Every draw is keyed by (seed, epoch, dataset index, view), so which
 * worker did what never shows in the output. All buffers are made in bt_loader_new; a
 * worker's decode buffers only grow (libjpeg/libpng keep their own per-image state). */
#include "barlow/loader.h"
#include "barlow/error.h"
#include "data/data_internal.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bt_batch b;
    long id;    /* batch number held, -1: none */
    int done;   /* images finished */
} slot;

typedef struct {
    struct bt_loader *ld;
    pthread_t th;
    int started;
    bt_decoder dc;
    bt_image im;
    bt_aug_work *aw;
    /* decode-time scaling: the item being decoded, and its views' draws made from the
     * JPEG header (have_prm) before the pixels */
    size_t cur_i;
    int have_prm;
    bt_aug_params prm[2];
    bt_image crop;       /* (S, S, 3) the geometric half's output */
} worker;

struct bt_loader {
    const bt_dataset *ds;
    const bt_aug_preset *preset;
    bt_loader_cfg cfg;
    int nviews;          /* views per image written (2, or 1) */
    int S[2];            /* output side per view */
    size_t N;            /* dataset items */
    long nb;             /* batches per epoch */
    int64_t *perm;       /* (N) epoch order */
    uint8_t *bad;        /* (N) items found undecodable (warned once) */
    slot *slots;         /* (ring) */
    worker *wk;          /* (threads) */

    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    int quit, started;
    uint64_t epoch, gen;
    long next_b;         /* next batch to hand tasks out for */
    int next_j;          /* next position within it */
    long free_from;      /* lowest batch not yet released by the caller */
    long ret_b;          /* next batch bt_loader_next returns */
    int held;            /* the caller holds batches [free_from, ret_b): this many */
    int active;          /* tasks in progress */
    int err;
    char errmsg[1024];
};

/* Images of batch b on this rank (0 on some ranks for the last batch without drop_last). */
static int batch_n(const bt_loader *ld, long b) {
    size_t start = (size_t)b * ld->cfg.batch * ld->cfg.world + (size_t)ld->cfg.rank * ld->cfg.batch;
    if (start >= ld->N) return 0;
    size_t n = ld->N - start;
    return n < (size_t)ld->cfg.batch ? (int)n : ld->cfg.batch;
}

/* Decodes the item for epoch position p into w->im: perm[p] if it decodes, else the next
 * decodable one at p+1, p+2, ... (wrapping). *idx gets the index used. */
static int load_for_position(bt_loader *ld, worker *w, size_t p, size_t *idx) {
    for (size_t k = 0; k < ld->N; k++) {
        size_t i = (size_t)ld->perm[(p + k) % ld->N];
        if (__atomic_load_n(&ld->bad[i], __ATOMIC_RELAXED)) continue;
        w->cur_i = i;
        w->have_prm = 0;
        int rc = bt_dataset_load_with(ld->ds, i, &w->im, &w->dc);
        if (rc == BT_OK) {
            *idx = i;
            return BT_OK;
        }
        if (rc != BT_EFORMAT && rc != BT_EIO) return rc;
        if (!__atomic_exchange_n(&ld->bad[i], 1, __ATOMIC_RELAXED))
            fprintf(stderr, "warning: skipping an image that does not decode: %s\n", bt_error());
    }
    return bt_fail(BT_EFORMAT, "no image of the dataset decodes (first: %s)",
                   bt_dataset_item_name(ld->ds, 0));
}

static void sample_views(const bt_loader *ld, size_t i, int w, int h, bt_aug_params *prm) {
    for (int v = 0; v < ld->nviews; v++) {
        bt_rng rng = bt_rng_key(ld->cfg.seed, ld->epoch, i, (uint64_t)v);
        bt_aug_sample(&prm[v], &ld->preset->view[v], w, h, &rng);
    }
}

/* The decoder's scale callback (decode-scale=1): draws the views from the full size in the
 * header, then decodes at the smallest scale every view's crop allows. */
static int choose_scale(void *ctx, int w, int h) {
    worker *wk = ctx;
    const bt_loader *ld = wk->ld;
    sample_views(ld, wk->cur_i, w, h, wk->prm);
    wk->have_prm = 1;
    int den = 8;
    for (int v = 0; v < ld->nviews; v++) {
        int d = bt_aug_decode_denominator(&wk->prm[v], &ld->preset->view[v]);
        if (d < den) den = d;
    }
    return den;
}

static int do_item(bt_loader *ld, worker *w, long b, int j, int *skipped) {
    slot *s = &ld->slots[b % ld->cfg.ring];
    size_t p = (size_t)b * ld->cfg.batch * ld->cfg.world + (size_t)ld->cfg.rank * ld->cfg.batch + j;
    size_t i = 0;
    int rc = load_for_position(ld, w, p, &i);
    if (rc) return rc;
    *skipped = i != (size_t)ld->perm[p];
    s->b.labels[j] = bt_dataset_label(ld->ds, i);
    s->b.index[j] = (int64_t)i;
    const bt_aug_preset *pr = ld->preset;
    if (ld->cfg.mode == BT_LOAD_EVAL) {
        int S = bt_aug_eval_size(pr, w->im.w, w->im.h);
        if (S != ld->S[0])
            return bt_fail(BT_EINVAL, "%s: eval transform gives %d px, not the %d px of the "
                           "batch (%s)", bt_dataset_item_name(ld->ds, i), S, ld->S[0],
                           S < 0 ? bt_error() : "images differ in size");
        return bt_aug_eval(s->b.x[0] + (size_t)j * 3 * S * S, &w->im, pr, w->aw);
    }
    /* Without a JPEG header seen (or without decode-scale) the draws come from the image. */
    const int scaled = w->have_prm;
    bt_aug_params prm[2];
    if (scaled) memcpy(prm, w->prm, sizeof prm);
    else sample_views(ld, i, w->im.w, w->im.h, prm);
    for (int v = 0; v < ld->nviews; v++) {
        const bt_aug_view_cfg *c = &pr->view[v];
        if (w->crop.px && w->crop.w != c->size) bt_image_free(&w->crop);
        /* the geometric half, then the per-pixel half (bt_aug_apply's steps) */
        rc = scaled ? bt_aug_geometric_scaled(&w->crop, &w->im, w->dc.full_w, w->dc.full_h,
                                              &prm[v], c, w->aw)
                    : bt_aug_geometric(&w->crop, &w->im, &prm[v], c, w->aw);
        size_t per = (size_t)3 * ld->S[v] * ld->S[v];
        if (!rc) rc = bt_aug_pixel(s->b.x[v] + (size_t)j * per, &w->crop, &prm[v], pr->mean,
                                   pr->std, w->aw);
        if (rc) return bt_fail(rc, "%s: %s", bt_dataset_item_name(ld->ds, i), bt_error());
    }
    return BT_OK;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    bt_loader *ld = w->ld;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        while (!ld->quit && !(ld->started && !ld->err && ld->next_b < ld->nb &&
                              ld->next_b < ld->free_from + ld->cfg.ring))
            pthread_cond_wait(&ld->cv_work, &ld->mu);
        if (ld->quit) break;
        long b = ld->next_b;
        int j = ld->next_j;
        slot *s = &ld->slots[b % ld->cfg.ring];
        if (j == 0) { /* first task of a batch claims its slot (released by the caller) */
            s->id = b;
            s->done = 0;
            s->b.n = batch_n(ld, b);
            s->b.skipped = 0;
            if (s->b.n == 0) {
                ld->next_b++;
                pthread_cond_broadcast(&ld->cv_done);
                continue;
            }
        }
        if (++ld->next_j == s->b.n) {
            ld->next_b++;
            ld->next_j = 0;
        }
        uint64_t gen = ld->gen;
        ld->active++;
        pthread_mutex_unlock(&ld->mu);
        int skipped = 0;
        int rc = do_item(ld, w, b, j, &skipped);
        pthread_mutex_lock(&ld->mu);
        ld->active--;
        if (gen == ld->gen) {
            if (rc && !ld->err) {
                ld->err = rc;
                snprintf(ld->errmsg, sizeof ld->errmsg, "%s", bt_error());
            }
            s->done++;
            s->b.skipped += skipped;
        }
        pthread_cond_broadcast(&ld->cv_done);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

static void shuffle(bt_loader *ld) {
    for (size_t k = 0; k < ld->N; k++) ld->perm[k] = (int64_t)k;
    if (!ld->cfg.shuffle) return;
    /* Its own key: index UINT64_MAX is never an item. */
    bt_rng r = bt_rng_key(ld->cfg.seed, ld->epoch, UINT64_MAX, 0x73687566);
    for (size_t k = ld->N - 1; k > 0; k--) {
        size_t m = (size_t)bt_rng_below(&r, k + 1);
        int64_t t = ld->perm[k];
        ld->perm[k] = ld->perm[m];
        ld->perm[m] = t;
    }
}

int bt_loader_new(bt_loader **out, const bt_dataset *ds, const bt_aug_preset *preset,
                  const bt_loader_cfg *cfg) {
    *out = NULL;
    const bt_loader_cfg *c = cfg;
    if (c->batch < 1 || c->threads < 1 || c->threads > 1024 || c->ring < 1 || c->ring > 64 ||
        c->world < 1 || c->rank < 0 || c->rank >= c->world ||
        (c->mode != BT_LOAD_TWO_VIEWS && c->mode != BT_LOAD_ONE_VIEW && c->mode != BT_LOAD_EVAL))
        return bt_fail(BT_EINVAL, "loader: bad settings (batch %d, threads %d, ring %d, rank %d "
                       "of %d, mode %d)", c->batch, c->threads, c->ring, c->rank, c->world,
                       c->mode);
    size_t N = bt_dataset_size(ds), G = (size_t)c->batch * c->world;
    if (c->drop_last && N < G)
        return bt_fail(BT_EINVAL, "loader: %zu images make no full batch of %zu (drop_last)", N, G);
    bt_loader *ld = calloc(1, sizeof *ld);
    if (!ld) return bt_fail(BT_ENOMEM, "out of memory");
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->cv_work, NULL);
    pthread_cond_init(&ld->cv_done, NULL);
    ld->ds = ds;
    ld->preset = preset;
    ld->cfg = *c;
    ld->N = N;
    ld->nb = (long)(c->drop_last ? N / G : (N + G - 1) / G);
    ld->nviews = c->mode == BT_LOAD_TWO_VIEWS ? 2 : 1;
    int rc = BT_OK;
    if (c->mode == BT_LOAD_EVAL) {
        /* The eval output side comes from the data (e.g. CIFAR's identity transform). */
        bt_decoder dc;
        bt_image im = {0};
        bt_decoder_init(&dc);
        ld->S[0] = -1;
        for (size_t i = 0; i < N && ld->S[0] < 0; i++)
            if (bt_dataset_load_with(ds, i, &im, &dc) == BT_OK) {
                ld->S[0] = bt_aug_eval_size(preset, im.w, im.h);
                if (ld->S[0] < 0) rc = bt_fail(BT_EINVAL, "%s: %s", bt_dataset_item_name(ds, i), bt_error());
                break;
            }
        if (!rc && ld->S[0] < 0) rc = bt_fail(BT_EFORMAT, "loader: no image of the dataset decodes");
        bt_image_free(&im);
        bt_decoder_free(&dc);
    } else {
        for (int v = 0; v < ld->nviews; v++) ld->S[v] = preset->view[v].size;
    }
    ld->perm = malloc(N * sizeof *ld->perm);
    ld->bad = calloc(N, 1);
    ld->slots = calloc((size_t)c->ring, sizeof *ld->slots);
    ld->wk = calloc((size_t)c->threads, sizeof *ld->wk);
    if (!rc && (!ld->perm || !ld->bad || !ld->slots || !ld->wk)) rc = bt_fail(BT_ENOMEM, "out of memory");
    for (int r = 0; !rc && r < c->ring; r++) {
        slot *s = &ld->slots[r];
        s->id = -1;
        for (int v = 0; !rc && v < ld->nviews; v++) {
            size_t bytes = (size_t)c->batch * 3 * ld->S[v] * ld->S[v] * sizeof(float);
            s->b.x[v] = c->slot_alloc ? c->slot_alloc(c->slot_ctx, bytes) : bt_alloc(bytes);
            if (!s->b.x[v]) rc = BT_ENOMEM;
        }
        s->b.labels = bt_alloc((size_t)c->batch * sizeof(int32_t));
        s->b.index = bt_alloc((size_t)c->batch * sizeof(int64_t));
        if (!rc && (!s->b.labels || !s->b.index)) rc = BT_ENOMEM;
    }
    for (int t = 0; !rc && t < c->threads; t++) {
        worker *w = &ld->wk[t];
        w->ld = ld;
        bt_decoder_init(&w->dc);
        if (preset->decode_scale && c->mode != BT_LOAD_EVAL) {
            w->dc.scale_cb = choose_scale;
            w->dc.scale_ctx = w;
        }
        if (!(w->aw = bt_aug_work_new())) rc = bt_fail(BT_ENOMEM, "out of memory");
        else if (pthread_create(&w->th, NULL, worker_main, w) != 0)
            rc = bt_fail(BT_ENOMEM, "loader: cannot start worker thread %d", t);
        else w->started = 1;
    }
    if (rc) {
        bt_loader_free(ld);
        return rc;
    }
    *out = ld;
    return BT_OK;
}

long bt_loader_batches_per_epoch(const bt_loader *ld) { return ld->nb; }
int bt_loader_image_size(const bt_loader *ld, int v) {
    return v >= 0 && v < ld->nviews ? ld->S[v] : 0;
}

int bt_loader_start_epoch(bt_loader *ld, int epoch, long first_batch) {
    if (epoch < 0 || first_batch < 0 || first_batch > ld->nb)
        return bt_fail(BT_EINVAL, "loader: epoch %d batch %ld out of range (%ld batches)", epoch,
                       first_batch, ld->nb);
    pthread_mutex_lock(&ld->mu);
    ld->started = 0;
    ld->gen++;
    while (ld->active > 0) pthread_cond_wait(&ld->cv_done, &ld->mu);
    ld->epoch = (uint64_t)epoch;
    shuffle(ld);
    for (int r = 0; r < ld->cfg.ring; r++) ld->slots[r].id = -1;
    ld->next_b = ld->ret_b = ld->free_from = first_batch;
    ld->next_j = 0;
    ld->held = 0;
    ld->err = 0;
    ld->started = 1;
    pthread_cond_broadcast(&ld->cv_work);
    pthread_mutex_unlock(&ld->mu);
    return BT_OK;
}

int bt_loader_next(bt_loader *ld, const bt_batch **b) {
    *b = NULL;
    pthread_mutex_lock(&ld->mu);
    int rc = 0;
    if (!ld->started) {
        pthread_mutex_unlock(&ld->mu);
        return bt_fail(BT_EINVAL, "loader: bt_loader_start_epoch was not called");
    }
    if (ld->held && !ld->cfg.explicit_release) { /* the caller is done with the previous batch */
        ld->held = 0;
        ld->free_from = ld->ret_b;
        pthread_cond_broadcast(&ld->cv_work);
    }
    if (ld->held >= ld->cfg.ring && ld->cfg.explicit_release && ld->ret_b < ld->nb) {
        /* waiting would never end: the next batch needs a slot the caller holds */
        pthread_mutex_unlock(&ld->mu);
        return bt_fail(BT_EINVAL, "loader: %d batches held of a ring of %d; release one first",
                       ld->held, ld->cfg.ring);
    }
    if (ld->ret_b < ld->nb) {
        slot *s = &ld->slots[ld->ret_b % ld->cfg.ring];
        while (!ld->err && !(s->id == ld->ret_b && s->done == s->b.n))
            pthread_cond_wait(&ld->cv_done, &ld->mu);
        if (ld->err) {
            rc = bt_fail(ld->err, "%s", ld->errmsg);
        } else {
            *b = &s->b;
            ld->held++;
            ld->ret_b++;
            rc = 1;
        }
    }
    pthread_mutex_unlock(&ld->mu);
    return rc;
}

int bt_loader_release(bt_loader *ld, const bt_batch *b) {
    pthread_mutex_lock(&ld->mu);
    int rc = BT_OK;
    if (!ld->cfg.explicit_release || !ld->held || !b ||
        b != &ld->slots[ld->free_from % ld->cfg.ring].b) {
        rc = bt_fail(BT_EINVAL, "loader: release of a batch not held (or not the oldest held)");
    } else {
        ld->held--;
        ld->free_from++;
        pthread_cond_broadcast(&ld->cv_work);
    }
    pthread_mutex_unlock(&ld->mu);
    return rc;
}

void bt_loader_free(bt_loader *ld) {
    if (!ld) return;
    if (ld->wk) {
        pthread_mutex_lock(&ld->mu);
        ld->quit = 1;
        pthread_cond_broadcast(&ld->cv_work);
        pthread_mutex_unlock(&ld->mu);
        for (int t = 0; t < ld->cfg.threads; t++) {
            worker *w = &ld->wk[t];
            if (w->started) pthread_join(w->th, NULL);
            bt_decoder_free(&w->dc);
            bt_image_free(&w->im);
            bt_image_free(&w->crop);
            if (w->aw) bt_aug_work_free(w->aw);
        }
    }
    if (ld->slots)
        for (int r = 0; r < ld->cfg.ring; r++) {
            for (int v = 0; v < 2; v++) {
                void *x = ld->slots[r].b.x[v];
                if (x && ld->cfg.slot_free) ld->cfg.slot_free(ld->cfg.slot_ctx, x);
                else bt_free(x);
            }
            bt_free(ld->slots[r].b.labels);
            bt_free(ld->slots[r].b.index);
        }
    pthread_mutex_destroy(&ld->mu);
    pthread_cond_destroy(&ld->cv_work);
    pthread_cond_destroy(&ld->cv_done);
    free(ld->slots);
    free(ld->wk);
    free(ld->perm);
    free(ld->bad);
    free(ld);
}
