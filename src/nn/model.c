/* ResNet backbone + projector as a node list over per-view activation arenas, with
 * torchvision's parameter names and initialisation. Every buffer is the backend's and every
 * op runs through its table (include/barlow/backend.h): nothing here dereferences model
 * memory except the host image, and that only between the named copies. */
#include "barlow/model.h"
#include "barlow/backend.h"
#include "barlow/error.h"
#include "barlow/rng.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_internal.h"

/* ---- configuration --------------------------------------------------------------------- */

int bt_model_cfg_parse(bt_model_cfg *c, const char *arch, const char *projector) {
    memset(c, 0, sizeof *c);
    if (!arch || strlen(arch) >= sizeof c->arch) return bt_fail(BT_EINVAL, "--arch: missing or too long");
    strcpy(c->arch, arch);
    char base[64];
    const char *colon = strchr(arch, ':');
    size_t bl = colon ? (size_t)(colon - arch) : strlen(arch);
    memcpy(base, arch, bl);
    base[bl] = 0;
    c->width = 1.0;
    if (colon) {
        char *end;
        if (strncmp(colon + 1, "w=", 2) != 0)
            return bt_fail(BT_EINVAL, "--arch '%s': expected ':w=WIDTH' after the name", arch);
        c->width = strtod(colon + 3, &end);
        if (end == colon + 3 || *end || !(c->width > 0) || c->width > 16)
            return bt_fail(BT_EINVAL, "--arch '%s': width must be a number in (0, 16]", arch);
    }
    size_t n = strlen(base);
    if (n > 6 && !strcmp(base + n - 6, "-cifar")) {
        c->cifar = 1;
        base[n - 6] = 0;
    }
    static const struct { const char *name; int b[4]; int bottleneck; } archs[] = {
        {"resnet18", {2, 2, 2, 2}, 0},  {"resnet34", {3, 4, 6, 3}, 0},
        {"resnet50", {3, 4, 6, 3}, 1},  {"resnet101", {3, 4, 23, 3}, 1},
        {"resnet152", {3, 8, 36, 3}, 1},
    };
    int found = -1;
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        if (!strcmp(base, archs[i].name)) found = (int)i;
    if (found < 0)
        return bt_fail(BT_EINVAL, "--arch '%s': unknown architecture (choose resnet18, resnet34, "
                                  "resnet50, resnet101, resnet152, optionally with -cifar and :w=F)", arch);
    memcpy(c->blocks, archs[found].b, sizeof c->blocks);
    c->bottleneck = archs[found].bottleneck;
    for (int i = 0; i < 4; i++) {
        int wd = (int)lround(64.0 * c->width * (1 << i));
        c->widths[i] = wd < 1 ? 1 : wd;
    }
    c->feat_dim = c->widths[3] * (c->bottleneck ? 4 : 1);
    if (projector && *projector) {
        const char *s = projector;
        while (*s) {
            char *end;
            long v = strtol(s, &end, 10);
            if (end == s || v < 1 || v > 1 << 20 || (*end && *end != '-'))
                return bt_fail(BT_EINVAL, "--projector '%s': expected sizes like 8192-8192-8192", projector);
            if (c->nproj == BT_MAX_PROJ)
                return bt_fail(BT_EINVAL, "--projector '%s': more than %d layers", projector, BT_MAX_PROJ);
            c->proj[c->nproj++] = (int)v;
            s = *end ? end + 1 : end;
            if (*end && !*s)
                return bt_fail(BT_EINVAL, "--projector '%s': trailing '-'", projector);
        }
    }
    return BT_OK;
}

/* ---- graph building -------------------------------------------------------------------- */

/* Grows an int array to n entries without losing it on failure. */
static int grow_ints(int **a, int n) {
    int *p = realloc(*a, (size_t)n * sizeof(int));
    if (!p) return bt_fail(BT_ENOMEM, "out of memory building model");
    *a = p;
    return BT_OK;
}

static int add_act(bt_model *m, int c, int h, int w) {
    int i = m->nacts;
    if (grow_ints(&m->act_c, i + 1) || grow_ints(&m->act_h, i + 1) || grow_ints(&m->act_w, i + 1))
        return BT_ENOMEM;
    m->nacts++;
    m->act_c[i] = c;
    m->act_h[i] = h;
    m->act_w[i] = w;
    return i;
}

static bt_node *add_node(bt_model *m, int type, int in) {
    if (m->nnodes == m->cap_nodes) {
        int cap = m->cap_nodes ? 2 * m->cap_nodes : 64;
        bt_node *n = realloc(m->nodes, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        m->nodes = n;
        m->cap_nodes = cap;
    }
    bt_node *n = &m->nodes[m->nnodes++];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->in = in;
    n->in2 = n->w = n->b = n->rm = n->rv = -1;
    return n;
}

static int param(bt_model *m, const char *prefix, const char *leaf, int ndim, int64_t a, int64_t b,
                 int64_t c, int64_t d) {
    char name[BT_NAME_MAX];
    int64_t shape[4] = {a, b, c, d};
    snprintf(name, sizeof name, "%s%s", prefix, leaf);
    return bt_table_add(&m->params, name, ndim, shape);
}

static int buffer(bt_model *m, const char *prefix, const char *leaf, int64_t c) {
    char name[BT_NAME_MAX];
    snprintf(name, sizeof name, "%s%s", prefix, leaf);
    return bt_table_add(&m->bufs, name, 1, &c);
}

#define TRY(x) do { int rc_ = (x); if (rc_ < 0) return rc_; } while (0)

/* conv (no bias) from act `in`; returns the output activation. */
static int conv(bt_model *m, const char *name, int in, int k, int outc, int stride, int pad) {
    bt_node *n = add_node(m, N_CONV, in);
    if (!n) return bt_fail(BT_ENOMEM, "out of memory building model");
    int c = m->act_c[in], h = m->act_h[in], w = m->act_w[in];
    int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
    if (oh < 1 || ow < 1) return bt_fail(BT_EINVAL, "input too small for layer %s", name);
    n->k = k;
    n->stride = stride;
    n->pad = pad;
    n->w = param(m, name, ".weight", 4, outc, c, k, k);
    TRY(n->w);
    int out = add_act(m, outc, oh, ow);
    TRY(out);
    m->nodes[m->nnodes - 1].out = out;
    return out;
}

/* A batch norm; relu: with the ReLU after it, fused (one node, no activation between). */
static int bn_node(bt_model *m, const char *name, int in, int relu) {
    bt_node *n = add_node(m, relu ? N_BN_RELU : N_BN, in);
    if (!n) return bt_fail(BT_ENOMEM, "out of memory building model");
    int c = m->act_c[in];
    TRY(n->w = param(m, name, ".weight", 1, c, 0, 0, 0));
    TRY(n->b = param(m, name, ".bias", 1, c, 0, 0, 0));
    TRY(n->rm = buffer(m, name, ".running_mean", c));
    TRY(n->rv = buffer(m, name, ".running_var", c));
    int out = add_act(m, c, m->act_h[in], m->act_w[in]);
    TRY(out);
    m->nodes[m->nnodes - 1].out = out;
    return out;
}
static int bn(bt_model *m, const char *name, int in) { return bn_node(m, name, in, 0); }
static int bn_relu(bt_model *m, const char *name, int in) { return bn_node(m, name, in, 1); }

static int simple(bt_model *m, int type, int in, int in2) {
    bt_node *n = add_node(m, type, in);
    if (!n) return bt_fail(BT_ENOMEM, "out of memory building model");
    n->in2 = in2;
    int c = m->act_c[in], h = m->act_h[in], w = m->act_w[in];
    if (type == N_MAXPOOL) {
        n->k = 3; n->stride = 2; n->pad = 1;
        h = (h + 2 - 3) / 2 + 1;
        w = (w + 2 - 3) / 2 + 1;
    } else if (type == N_AVGPOOL) {
        h = w = 1;
    }
    int out = add_act(m, c, h, w);
    TRY(out);
    m->nodes[m->nnodes - 1].out = out;
    return out;
}

static int linear(bt_model *m, const char *name, int in, int outc) {
    bt_node *n = add_node(m, N_LINEAR, in);
    if (!n) return bt_fail(BT_ENOMEM, "out of memory building model");
    TRY(n->w = param(m, name, ".weight", 2, outc, m->act_c[in], 0, 0));
    int out = add_act(m, outc, 1, 1);
    TRY(out);
    m->nodes[m->nnodes - 1].out = out;
    return out;
}

/* One torchvision BasicBlock / Bottleneck. Each BN that a ReLU follows is one N_BN_RELU node,
 * and the closing add + ReLU one N_ADD_RELU: the ReLU's input is an activation nothing else
 * reads (torchvision's modules apply the ReLU straight to it), so the fused op computes what
 * the two would, bit for bit, with one pass over memory fewer each way. */
static int block(bt_model *m, const char *pre, int x, int planes, int stride) {
    char nm[BT_NAME_MAX];
    int inc = m->act_c[x], y;
    int expansion = m->cfg.bottleneck ? 4 : 1;
    if (m->cfg.bottleneck) {
        snprintf(nm, sizeof nm, "%sconv1", pre); TRY(y = conv(m, nm, x, 1, planes, 1, 0));
        snprintf(nm, sizeof nm, "%sbn1", pre);   TRY(y = bn_relu(m, nm, y));
        snprintf(nm, sizeof nm, "%sconv2", pre); TRY(y = conv(m, nm, y, 3, planes, stride, 1));
        snprintf(nm, sizeof nm, "%sbn2", pre);   TRY(y = bn_relu(m, nm, y));
        snprintf(nm, sizeof nm, "%sconv3", pre); TRY(y = conv(m, nm, y, 1, planes * 4, 1, 0));
        snprintf(nm, sizeof nm, "%sbn3", pre);   TRY(y = bn(m, nm, y));
    } else {
        snprintf(nm, sizeof nm, "%sconv1", pre); TRY(y = conv(m, nm, x, 3, planes, stride, 1));
        snprintf(nm, sizeof nm, "%sbn1", pre);   TRY(y = bn_relu(m, nm, y));
        snprintf(nm, sizeof nm, "%sconv2", pre); TRY(y = conv(m, nm, y, 3, planes, 1, 1));
        snprintf(nm, sizeof nm, "%sbn2", pre);   TRY(y = bn(m, nm, y));
    }
    int id = x;
    if (stride != 1 || inc != planes * expansion) {
        snprintf(nm, sizeof nm, "%sdownsample.0", pre);
        TRY(id = conv(m, nm, x, 1, planes * expansion, stride, 0));
        snprintf(nm, sizeof nm, "%sdownsample.1", pre);
        TRY(id = bn(m, nm, id));
    }
    return simple(m, N_ADD_RELU, y, id);
}

/* Builds the graph for input H x W (the graph's spatial sizes depend on it). */
static int build(bt_model *m, int H, int W) {
    m->nnodes = 0;
    m->nacts = 0;
    bt_table_free(&m->params);
    bt_table_free(&m->bufs);
    const bt_model_cfg *c = &m->cfg;
    int x, y;
    TRY(x = add_act(m, 3, H, W));
    if (c->cifar) {
        TRY(y = conv(m, "conv1", x, 3, c->widths[0], 1, 1));
        TRY(y = bn_relu(m, "bn1", y));
    } else {
        TRY(y = conv(m, "conv1", x, 7, c->widths[0], 2, 3));
        TRY(y = bn_relu(m, "bn1", y));
        TRY(y = simple(m, N_MAXPOOL, y, -1));
    }
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < c->blocks[s]; b++) {
            char pre[48];
            snprintf(pre, sizeof pre, "layer%d.%d.", s + 1, b);
            TRY(y = block(m, pre, y, c->widths[s], (s > 0 && b == 0) ? 2 : 1));
        }
    TRY(y = simple(m, N_AVGPOOL, y, -1));
    m->feat_act = y;
    m->loss_rm = m->loss_rv = -1;
    for (int i = 0; i < c->nproj; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "projector.%d", 3 * i);
        TRY(y = linear(m, nm, y, c->proj[i]));
        if (i + 1 < c->nproj) {
            snprintf(nm, sizeof nm, "projector.%d", 3 * i + 1); /* BatchNorm1d + ReLU */
            TRY(y = bn_relu(m, nm, y));
        }
    }
    if (c->nproj) {
        TRY(m->loss_rm = buffer(m, "bn", ".running_mean", c->proj[c->nproj - 1]));
        TRY(m->loss_rv = buffer(m, "bn", ".running_var", c->proj[c->nproj - 1]));
    }
    m->out_act = y;
    return BT_OK;
}

/* A zeroed backend buffer of n floats (NULL on failure, error set). */
static float *be_zalloc(bt_backend *be, size_t n) {
    float *p = be->ops->alloc(be, n * sizeof(float));
    if (p && be->ops->zero(be, p, n * sizeof(float)) != BT_OK) {
        be->ops->free(be, p);
        p = NULL;
    }
    return p;
}

/* The host image of one group: the buffer itself on host memory, else host memory of its own. */
static float *host_image(bt_backend *be, float *dev, size_t n) {
    return be->host_memory ? dev : bt_calloc(n * sizeof(float));
}

int bt_model_new_on(bt_model **out, bt_backend *be, const char *arch, const char *projector) {
    *out = NULL;
    bt_model *m = calloc(1, sizeof *m);
    if (!m) return bt_fail(BT_ENOMEM, "out of memory");
    if (!be) {
        free(m);
        return bt_fail(BT_EINVAL, "bt_model_new_on: no backend");
    }
    m->be = be;
    int rc = bt_model_cfg_parse(&m->cfg, arch, projector);
    if (rc == BT_OK) rc = build(m, 224, 224); /* parameter shapes do not depend on H, W */
    if (rc == BT_OK) {
        size_t np = m->params.total, nb = m->bufs.total ? m->bufs.total : 1;
        m->p = be_zalloc(be, np);
        m->g = be_zalloc(be, np);
        m->mom = be_zalloc(be, np);
        m->b = be_zalloc(be, nb);
        if (!m->p || !m->g || !m->mom || !m->b) rc = BT_ENOMEM;
        if (rc == BT_OK) {
            m->host.p = host_image(be, m->p, np);
            m->host.g = host_image(be, m->g, np);
            m->host.mom = host_image(be, m->mom, np);
            m->host.b = host_image(be, m->b, nb);
            if (!m->host.p || !m->host.g || !m->host.mom || !m->host.b) rc = BT_ENOMEM;
        }
    }
    if (rc != BT_OK) {
        bt_model_free(m);
        return rc;
    }
    m->bn_momentum = 0.1f;
    m->bn_eps = 1e-5f;
    *out = m;
    return BT_OK;
}

int bt_model_new(bt_model **out, const char *arch, const char *projector) {
    bt_backend *be;
    int rc = bt_backend_cpu_new(&be, NULL);
    if (rc != BT_OK) return rc;
    if ((rc = bt_model_new_on(out, be, arch, projector)) != BT_OK) {
        bt_backend_free(be);
        return rc;
    }
    (*out)->own_be = 1;
    return BT_OK;
}

static void free_arenas(bt_model *m) {
    bt_backend *be = m->be;
    for (int v = 0; v < 2; v++) {
        be->ops->free(be, m->act[v]);
        be->ops->free(be, m->stat[v]);
        be->ops->free(be, m->dz[v]);
        m->act[v] = m->stat[v] = m->dz[v] = NULL;
    }
    be->ops->free(be, m->dact);
    m->dact = NULL;
    if (m->plans)
        for (int i = 0; i < m->nnodes; i++) be->ops->plan_free(be, m->plans[i]);
    free(m->plans);
    m->plans = NULL;
    free(m->act_off);
    free(m->grad_off);
    free(m->grad_birth);
    free(m->grad_root);
    free(m->born_at);
    free(m->born_act);
    m->born_at = m->born_act = NULL;
    m->act_off = m->grad_off = NULL;
    m->grad_birth = m->grad_root = NULL;
    m->N = m->H = m->W = 0;
}

void bt_model_free(bt_model *m) {
    if (!m) return;
    free_arenas(m);
    bt_table_free(&m->params);
    bt_table_free(&m->bufs);
    free(m->nodes);
    free(m->act_c);
    free(m->act_h);
    free(m->act_w);
    bt_backend *be = m->be;
    float *dev[4] = {m->p, m->g, m->mom, m->b}, *img[4] = {m->host.p, m->host.g, m->host.mom, m->host.b};
    for (int i = 0; i < 4; i++) {
        if (img[i] != dev[i]) bt_free(img[i]);
        be->ops->free(be, dev[i]);
    }
    if (m->own_be) bt_backend_free(be);
    free(m);
}

int bt_model_out_dim(const bt_model *m) {
    return m->cfg.nproj ? m->cfg.proj[m->cfg.nproj - 1] : m->cfg.feat_dim;
}

/* ---- initialisation -------------------------------------------------------------------- */

static double gauss(bt_rng *r) {
    double u1 = bt_rng_uniform(r), u2 = bt_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Drawn on the host image, then copied to the backend. */
void bt_model_init(bt_model *m, uint64_t seed) {
    for (int i = 0; i < m->params.n; i++) {
        const bt_tensor_info *t = &m->params.t[i];
        float *p = m->host.p + t->offset;
        bt_rng r = bt_rng_key(seed, 0x1417, (uint64_t)i, 0);
        const char *leaf = strrchr(t->name, '.');
        if (t->ndim == 4) {          /* kaiming_normal_(mode='fan_out', nonlinearity='relu') */
            double std = sqrt(2.0 / (double)(t->shape[0] * t->shape[2] * t->shape[3]));
            for (size_t j = 0; j < t->numel; j++) p[j] = (float)(std * gauss(&r));
        } else if (t->ndim == 2) {   /* nn.Linear default: U(-1/sqrt(in), 1/sqrt(in)) */
            double bound = 1.0 / sqrt((double)t->shape[1]);
            for (size_t j = 0; j < t->numel; j++) p[j] = (float)(bound * (2 * bt_rng_uniform(&r) - 1));
        } else {                     /* BN: weight 1, bias 0 */
            float v = !strcmp(leaf, ".weight") ? 1.0f : 0.0f;
            for (size_t j = 0; j < t->numel; j++) p[j] = v;
        }
    }
    /* zero_init_residual: the last BN of every residual branch starts at weight 0. */
    for (int i = 0; i < m->params.n; i++) {
        const bt_tensor_info *t = &m->params.t[i];
        const char *last = m->cfg.bottleneck ? ".bn3.weight" : ".bn2.weight";
        size_t n = strlen(t->name), l = strlen(last);
        if (!strncmp(t->name, "layer", 5) && n > l && !strcmp(t->name + n - l, last))
            memset(m->host.p + t->offset, 0, t->numel * sizeof(float));
    }
    for (int i = 0; i < m->bufs.n; i++) {
        const bt_tensor_info *t = &m->bufs.t[i];
        float v = strstr(t->name, "running_var") ? 1.0f : 0.0f;
        for (size_t j = 0; j < t->numel; j++) m->host.b[t->offset + j] = v;
    }
    memset(m->host.mom, 0, m->params.total * sizeof(float));
    memset(m->host.g, 0, m->params.total * sizeof(float));
    /* Cannot fail on host memory; a device backend reports a failed copy at the next op. */
    (void)bt_model_to_device(m, BT_IO_PARAMS | BT_IO_BUFS | BT_IO_GRADS | BT_IO_MOMENTUM);
    m->bn_batches = 0;
}

/* ---- host <-> backend copies ---------------------------------------------------------- */

static int group_copy(const bt_model *m, int what, int to_device) {
    bt_backend *be = m->be;
    float *dev[4] = {m->p, m->b, m->g, m->mom}, *img[4] = {m->host.p, m->host.b, m->host.g, m->host.mom};
    const int bits[4] = {BT_IO_PARAMS, BT_IO_BUFS, BT_IO_GRADS, BT_IO_MOMENTUM};
    const size_t n[4] = {m->params.total, m->bufs.total, m->params.total, m->params.total};
    for (int i = 0; i < 4; i++) {
        if (!(what & bits[i]) || img[i] == dev[i] || !n[i]) continue;
        int rc = to_device ? be->ops->to_device(be, dev[i], img[i], n[i] * sizeof(float))
                           : be->ops->to_host(be, img[i], dev[i], n[i] * sizeof(float));
        if (rc != BT_OK) return rc;
    }
    return BT_OK;
}

int bt_model_to_host(const bt_model *m, int what) { return group_copy(m, what, 0); }
int bt_model_to_device(bt_model *m, int what) { return group_copy(m, what, 1); }

/* ---- arenas ---------------------------------------------------------------------------- */

/* Places buffers (roots a with size[a] > 0, lifetime [lo[a], hi[a]] in node indices) in one
 * arena, largest first, each at the first offset (from 0, bumped past each conflict) clear of
 * every placed buffer whose lifetime intersects its own; then gives every id its root's
 * offset. Greedy, not optimal, but a ResNet's gradients then need about three of the largest
 * activation. Returns the arena size. */
static size_t place(int n, const int *root, const size_t *size, const int *lo, const int *hi,
                    size_t *off, int *ord) {
    int k = 0;
    for (int a = 0; a < n; a++)
        if (root[a] == a && size[a]) ord[k++] = a;
    for (int i = 1; i < k; i++) /* insertion sort: size descending, then id (deterministic) */
        for (int j = i; j > 0 && size[ord[j]] > size[ord[j - 1]]; j--) {
            int t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t;
        }
    size_t total = 0;
    for (int i = 0; i < k; i++) {
        int a = ord[i];
        size_t o = 0;
        for (int moved = 1; moved;) {
            moved = 0;
            for (int j = 0; j < i; j++) {
                int b = ord[j];
                if (lo[b] <= hi[a] && lo[a] <= hi[b] && off[b] < o + size[a] && o < off[b] + size[b]) {
                    o = off[b] + size[b];
                    moved = 1;
                }
            }
        }
        off[a] = o;
        if (o + size[a] > total) total = o + size[a];
    }
    for (int a = 0; a < n; a++) off[a] = size[root[a]] ? off[root[a]] : 0;
    return total;
}

/* Nodes whose backward reads their own output (the ReLU's mask), which nothing may overwrite. */
static int reads_own_output(int type) {
    return type == N_RELU || type == N_BN_RELU || type == N_ADD_RELU;
}
/* Nodes that may write over their (first) input and let its gradient share their output's. */
static int elementwise(int type) { return type == N_RELU || type == N_ADD || type == N_ADD_RELU; }

/* Plans storage. Activations: a ReLU or add (or add + ReLU) whose input is read by nothing
 * else, and whose input's producer does not need its own output in the backward (the ReLU and
 * the fused ops ending in one do), writes in place (PyTorch's inplace ReLU and `out +=
 * identity`). Gradients: such a node's input gradient shares its output gradient's buffer
 * when that input has no other consumer (the ReLU masks in place; the add passes dy through
 * untouched; the add + ReLU masks it in place for both addends); every gradient buffer then
 * lives from the backward of its group's last consumer (where it is zeroed) down to its first
 * producer, and buffers with disjoint lifetimes share memory. */
static int plan_storage(bt_model *m, int N) {
    const int A = m->nacts, NN = m->nnodes;
    int *iw = calloc((size_t)A * 8, sizeof(int));
    size_t *sz = calloc((size_t)A, sizeof(size_t));
    m->act_off = malloc((size_t)A * sizeof(size_t));
    m->grad_off = malloc((size_t)A * sizeof(size_t));
    m->grad_birth = malloc((size_t)A * sizeof(int));
    m->grad_root = malloc((size_t)A * sizeof(int));
    if (!iw || !sz || !m->act_off || !m->grad_off || !m->grad_birth || !m->grad_root) {
        free(iw);
        free(sz);
        return bt_fail(BT_ENOMEM, "out of memory");
    }
    int *prod = iw, *ncons = iw + A, *lastc = iw + 2 * A, *root = iw + 3 * A, *groot = iw + 4 * A;
    int *lo = iw + 5 * A, *hi = iw + 6 * A, *ord = iw + 7 * A;
    for (int a = 0; a < A; a++) {
        prod[a] = lastc[a] = -1;
        ncons[a] = 0;
        root[a] = groot[a] = a;
        sz[a] = ((size_t)N * m->act_c[a] * m->act_h[a] * m->act_w[a] + 15) & ~(size_t)15;
    }
    for (int i = 0; i < NN; i++) {
        const bt_node *n = &m->nodes[i];
        prod[n->out] = i;
        ncons[n->in]++;
        lastc[n->in] = i;
        if (n->in2 >= 0) ncons[n->in2]++, lastc[n->in2] = i;
    }
    for (int i = 0; i < NN; i++) {
        const bt_node *n = &m->nodes[i];
        int a = n->in;
        if (elementwise(n->type) && a != 0 && ncons[a] == 1 && prod[a] >= 0 &&
            !reads_own_output(m->nodes[prod[a]].type) && a != m->feat_act && a != m->out_act)
            root[n->out] = root[a];
    }
    /* Every activation stays live through the backward: lifetimes all intersect. */
    for (int a = 0; a < A; a++) lo[a] = 0, hi[a] = NN;
    m->act_total = place(A, root, sz, lo, hi, m->act_off, ord);

    for (int i = NN - 1; i >= 0; i--) { /* reverse: an output's group is final before its input joins */
        const bt_node *n = &m->nodes[i];
        if (!elementwise(n->type)) continue;
        if (n->in != 0 && ncons[n->in] == 1) groot[n->in] = groot[n->out];
        if (n->in2 >= 0 && n->in2 != 0 && ncons[n->in2] == 1) groot[n->in2] = groot[n->out];
    }
    for (int a = 0; a < A; a++) lo[a] = NN, hi[a] = -1;
    for (int a = 1; a < A; a++) { /* the input (a = 0) never gets a gradient */
        int r = groot[a], h = a == m->out_act ? NN : lastc[a];
        if (prod[a] < lo[r]) lo[r] = prod[a];
        if (h > hi[r]) hi[r] = h;
        if (prod[a] > hi[r]) hi[r] = prod[a];
    }
    sz[0] = 0;
    m->grad_total = place(A, groot, sz, lo, hi, m->grad_off, ord);
    for (int a = 0; a < A; a++) m->grad_birth[a] = a != 0 && groot[a] == a ? hi[a] : -1;
    memcpy(m->grad_root, groot, (size_t)A * sizeof(int));
    /* the same grouped by node (counting sort, ids ascending within a node), so a backward
     * visits each node's births instead of scanning every activation at every node */
    m->born_at = calloc((size_t)NN + 2, sizeof(int));
    m->born_act = malloc((size_t)A * sizeof(int));
    if (!m->born_at || !m->born_act) {
        free(iw);
        free(sz);
        return bt_fail(BT_ENOMEM, "out of memory");
    }
    for (int a = 0; a < A; a++)
        if (m->grad_birth[a] >= 0) m->born_at[m->grad_birth[a] + 1]++;
    for (int i = 0; i <= NN; i++) m->born_at[i + 1] += m->born_at[i];
    int *next = malloc(((size_t)NN + 1) * sizeof(int));
    if (!next) {
        free(iw);
        free(sz);
        return bt_fail(BT_ENOMEM, "out of memory");
    }
    for (int i = 0; i <= NN; i++) next[i] = m->born_at[i];
    for (int a = 0; a < A; a++)
        if (m->grad_birth[a] >= 0) m->born_act[next[m->grad_birth[a]]++] = a;
    free(next);
    free(iw);
    free(sz);
    return BT_OK;
}

/* The backend's plan of every node for batch N (the graph's spatial sizes are set). */
static int make_plans(bt_model *m, int N) {
    m->plans = calloc((size_t)m->nnodes, sizeof *m->plans);
    if (!m->plans) return bt_fail(BT_ENOMEM, "out of memory");
    static const int op_of[] = {[N_CONV] = BT_OP_CONV2D, [N_BN] = BT_OP_BATCHNORM,
                                [N_RELU] = BT_OP_RELU, [N_MAXPOOL] = BT_OP_MAXPOOL2D,
                                [N_AVGPOOL] = BT_OP_AVGPOOL, [N_ADD] = BT_OP_ADD,
                                [N_LINEAR] = BT_OP_LINEAR, [N_BN_RELU] = BT_OP_BATCHNORM_RELU,
                                [N_ADD_RELU] = BT_OP_ADD_RELU};
    for (int i = 0; i < m->nnodes; i++) {
        const bt_node *n = &m->nodes[i];
        bt_op_desc d = {.op = op_of[n->type], .N = N, .C = m->act_c[n->in], .H = m->act_h[n->in],
                        .W = m->act_w[n->in], .K = m->act_c[n->out], .k = n->k,
                        .stride = n->stride, .pad = n->pad,
                        .sync = n->type == N_BN || n->type == N_BN_RELU};
        int rc = m->be->ops->plan_new(m->be, &d, &m->plans[i]);
        if (rc != BT_OK) return rc;
    }
    return BT_OK;
}

int bt_model_prepare(bt_model *m, int N, int H, int W) {
    if (N == m->N && H == m->H && W == m->W) return BT_OK;
    if (N < 1 || H < 1 || W < 1) return bt_fail(BT_EINVAL, "bad batch shape %dx3x%dx%d", N, H, W);
    free_arenas(m);
    /* Rebuild the graph for this input size; parameter tables come out identical. */
    bt_tensor_table keep_p = m->params, keep_b = m->bufs;
    memset(&m->params, 0, sizeof m->params);
    memset(&m->bufs, 0, sizeof m->bufs);
    int rc = build(m, H, W);
    BT_ASSERT(rc != BT_OK || (m->params.total == keep_p.total && m->bufs.total == keep_b.total));
    bt_table_free(&m->params);
    bt_table_free(&m->bufs);
    m->params = keep_p;
    m->bufs = keep_b;
    if (rc != BT_OK) return rc;
    if ((rc = plan_storage(m, N)) != BT_OK) { free_arenas(m); return rc; }
    size_t soff = 0;
    for (int i = 0; i < m->nnodes; i++) {
        bt_node *n = &m->nodes[i];
        n->stat_off = soff;
        if (n->type == N_BN || n->type == N_BN_RELU)
            soff += ((size_t)2 * m->act_c[n->in] + 15) & ~(size_t)15;
        if (n->type == N_MAXPOOL)
            soff += ((size_t)N * m->act_c[n->out] * m->act_h[n->out] * m->act_w[n->out] + 15) & ~(size_t)15;
    }
    m->stat_total = soff ? soff : 16;
    size_t od = (size_t)N * bt_model_out_dim(m);
    bt_backend *be = m->be;
    for (int v = 0; v < 2; v++) {
        m->act[v] = be->ops->alloc(be, m->act_total * sizeof(float));
        m->stat[v] = be_zalloc(be, m->stat_total);
        m->dz[v] = be->ops->alloc(be, od * sizeof(float));
        if (!m->act[v] || !m->stat[v] || !m->dz[v]) { free_arenas(m); return BT_ENOMEM; }
    }
    m->dact = be->ops->alloc(be, (m->grad_total ? m->grad_total : 16) * sizeof(float));
    if (!m->dact) { free_arenas(m); return BT_ENOMEM; }
    if ((rc = make_plans(m, N)) != BT_OK) { free_arenas(m); return rc; }
    m->N = N;
    m->H = H;
    m->W = W;
    return BT_OK;
}

/* ---- forward / backward ---------------------------------------------------------------- */

static size_t act_size(const bt_model *m, int a) {
    return (size_t)m->N * m->act_c[a] * m->act_h[a] * m->act_w[a];
}

static void conv_desc(const bt_model *m, const bt_node *n, bt_conv2d_desc *d) {
    int in = n->in;
    bt_conv2d_desc_init(d, m->N, m->act_c[in], m->act_h[in], m->act_w[in], m->act_c[n->out], n->k,
                        n->k, n->stride, n->pad);
}

int bt_model_forward(bt_model *m, int view, const float *x, int training, int upto_features) {
    if (view < 0 || view > 1 || !m->act[view]) return bt_fail(BT_EINVAL, "model not prepared for view %d", view);
    bt_backend *be = m->be;
    const bt_backend_ops *o = be->ops;
    float *A = m->act[view], *S = m->stat[view];
    int rc = o->to_device(be, A + m->act_off[0], x, act_size(m, 0) * sizeof(float)); /* the input */
    if (rc != BT_OK) return rc;
    int N = m->N;
    for (int i = 0; i < m->nnodes; i++) {
        const bt_node *n = &m->nodes[i];
        const bt_plan *pl = m->plans[i];
        BT_ASSERT(n->in >= 0 && n->in < m->nacts && n->out > 0 && n->out < m->nacts);
        float *in = A + m->act_off[n->in], *out = A + m->act_off[n->out];
        switch (n->type) {
        case N_CONV: {
            bt_conv2d_desc d;
            conv_desc(m, n, &d);
            rc = o->conv2d_forward(be, pl, out, in, m->p + m->params.t[n->w].offset, NULL, &d);
            break;
        }
        case N_BN:
        case N_BN_RELU: {
            int c = m->act_c[n->in];
            rc = (n->type == N_BN ? o->batchnorm_forward_sync : o->batchnorm_relu_forward_sync)(
                be, pl, out, S + n->stat_off, S + n->stat_off + c, in,
                m->p + m->params.t[n->w].offset, m->p + m->params.t[n->b].offset,
                m->b + m->bufs.t[n->rm].offset, m->b + m->bufs.t[n->rv].offset, N, c,
                m->act_h[n->in] * m->act_w[n->in], training, m->bn_momentum, m->bn_eps, m->comm);
            break;
        }
        case N_RELU: rc = o->relu_forward(be, out, in, act_size(m, n->in)); break;
        case N_ADD: rc = o->add_forward(be, out, in, A + m->act_off[n->in2], act_size(m, n->in)); break;
        case N_ADD_RELU:
            rc = o->add_relu_forward(be, out, in, A + m->act_off[n->in2], act_size(m, n->in));
            break;
        case N_MAXPOOL:
            rc = o->maxpool2d_forward(be, pl, out, (int32_t *)(S + n->stat_off), in, N,
                                      m->act_c[n->in], m->act_h[n->in], m->act_w[n->in], n->k,
                                      n->stride, n->pad);
            break;
        case N_AVGPOOL:
            rc = o->avgpool_forward(be, out, in, N, m->act_c[n->in], m->act_h[n->in] * m->act_w[n->in]);
            break;
        case N_LINEAR:
            rc = o->linear_forward(be, pl, out, in, m->p + m->params.t[n->w].offset, NULL, N,
                                   m->act_c[n->in], m->act_c[n->out]);
            break;
        }
        if (rc != BT_OK) return rc;
        if (upto_features && n->out == m->feat_act) break;
    }
    m->training[view] = training;
    if (training) m->bn_batches++;
    return BT_OK;
}

const float *bt_model_features(const bt_model *m, int view) {
    return m->act[view] + m->act_off[m->feat_act];
}
const float *bt_model_output(const bt_model *m, int view) {
    return m->act[view] + m->act_off[m->out_act];
}

int bt_model_copy_features(const bt_model *m, int view, float *dst, int n, int output) {
    if (view < 0 || view > 1 || !m->act[view] || n < 0 || n > m->N)
        return bt_fail(BT_EINVAL, "bt_model_copy_features: bad view %d or rows %d", view, n);
    int a = output ? m->out_act : m->feat_act;
    return m->be->ops->to_host(m->be, dst, m->act[view] + m->act_off[a],
                               (size_t)n * m->act_c[a] * sizeof(float));
}

int bt_model_zero_grads(bt_model *m) {
    return m->be->ops->zero(m->be, m->g, m->params.total * sizeof(float));
}

/* The backward from dout already in place at the top gradient (or, with dout_host, copied
 * there first). */
static int backward(bt_model *m, int view, const float *dout, int dout_host, int from_features) {
    if (view < 0 || view > 1 || !m->act[view]) return bt_fail(BT_EINVAL, "model not prepared for view %d", view);
    bt_backend *be = m->be;
    const bt_backend_ops *o = be->ops;
    const float *A = m->act[view], *S = m->stat[view];
    float *D = m->dact;
    const size_t *G = m->grad_off;
    int N = m->N, top = from_features ? m->feat_act : m->out_act;
    int last = m->nnodes - 1;
    while (last >= 0 && m->nodes[last].out != top) last--;
    BT_ASSERT(last >= 0); /* the features and the output are produced by some node */
    int rc = BT_OK;
    /* Gradients no node at or below `last` writes (consumers past `top`) read as zero; then
     * dout, whose buffer none of them can share (their lifetimes include top's producer). */
    for (int k = m->born_at[last + 1]; k < m->born_at[m->nnodes + 1] && rc == BT_OK; k++)
        if (m->born_act[k] != top)
            rc = o->zero(be, D + G[m->born_act[k]], act_size(m, m->born_act[k]) * sizeof(float));
    if (rc == BT_OK)
        rc = dout_host ? o->to_device(be, D + G[top], dout, act_size(m, top) * sizeof(float))
                       : o->copy(be, D + G[top], dout, act_size(m, top) * sizeof(float));
    if (rc != BT_OK) return rc;
    for (int i = last; i >= 0; i--) {
        const bt_node *n = &m->nodes[i];
        const bt_plan *pl = m->plans[i];
        /* First writer: a conv or batch norm whose input gradient's buffer (that of the
         * group `root` of plan_storage's groot) is born at this node overwrites it instead of
         * adding into zeros (issue 16: no memset, and no read of the cold buffer). Born at i
         * means i = hi[root], the latest node whose backward touches any gradient of the
         * group (a consumer adding into it, a producer reading it): no node run before this
         * one in this backward wrote the group (nodes past `last` are not run; top's group,
         * born past `last`, is not this one). Memory the group shares with other groups
         * belongs to groups whose lifetimes miss i: their contents are stale, which is all
         * the zeroing discarded. At node i the op's dx is the only write into the group (dy
         * is n->out's group, live at i too, so in other memory; the input and weights are not
         * gradients), and it covers act_size(n->in) floats, the size of every member of the
         * group (elementwise ops keep the shape): what the zeroing covered. The op stores the
         * bits += gives on zeros, so nothing changes but the work. Every other buffer born
         * here (a dead-end output's, say) is zeroed as before. */
        const int root = n->in == 0 ? -1 : m->grad_root[n->in];
        const int dx_set = root >= 0 && m->grad_birth[root] == i &&
                           (n->type == N_CONV || n->type == N_BN || n->type == N_BN_RELU);
        for (int k = m->born_at[i]; k < m->born_at[i + 1] && rc == BT_OK; k++) /* first written here */
            if (!dx_set || m->born_act[k] != root)
                rc = o->zero(be, D + G[m->born_act[k]],
                             act_size(m, m->born_act[k]) * sizeof(float));
        if (rc != BT_OK) return rc;
        const float *in = A + m->act_off[n->in], *out = A + m->act_off[n->out];
        float *dy = D + G[n->out];
        float *dx = n->in == 0 ? NULL : D + G[n->in];
        switch (n->type) {
        case N_CONV: {
            bt_conv2d_desc d;
            conv_desc(m, n, &d);
            rc = o->conv2d_backward(be, pl, dx, m->g + m->params.t[n->w].offset, NULL, dy, in,
                                    m->p + m->params.t[n->w].offset, &d, dx_set);
            break;
        }
        case N_BN: {
            int c = m->act_c[n->in];
            rc = o->batchnorm_backward_sync(be, pl, dx, m->g + m->params.t[n->w].offset,
                                            m->g + m->params.t[n->b].offset, dy, in,
                                            m->p + m->params.t[n->w].offset, S + n->stat_off,
                                            S + n->stat_off + c, N, c,
                                            m->act_h[n->in] * m->act_w[n->in], m->training[view],
                                            m->comm, dx_set);
            break;
        }
        case N_BN_RELU: { /* dy of the ReLU's output, masked by `out` inside the BN's passes */
            int c = m->act_c[n->in];
            rc = o->batchnorm_relu_backward_sync(be, pl, dx, m->g + m->params.t[n->w].offset,
                                                 m->g + m->params.t[n->b].offset, dy, out, in,
                                                 m->p + m->params.t[n->w].offset,
                                                 S + n->stat_off, S + n->stat_off + c, N, c,
                                                 m->act_h[n->in] * m->act_w[n->in],
                                                 m->training[view], m->comm, dx_set);
            break;
        }
        case N_RELU:
            if (dx == dy) rc = o->relu_backward_inplace(be, dy, out, act_size(m, n->in));
            else rc = o->relu_backward(be, dx, dy, out, act_size(m, n->in));
            break;
        case N_ADD: {
            float *da = dx == dy ? NULL : dx, *db = D + G[n->in2];
            if (db == dy) db = NULL;
            if (da || db) rc = o->add_backward(be, da, db, dy, act_size(m, n->in));
            break;
        }
        case N_ADD_RELU: {
            /* an addend whose gradient shares dy's buffer gets the mask in place (the other,
             * unless it shares it too, then accumulates it); else both accumulate it */
            float *da = dx == dy ? NULL : dx, *db = D + G[n->in2];
            if (db == dy) db = NULL;
            if (!da || !db) rc = o->add_relu_backward_inplace(be, dy, da ? da : db, out, act_size(m, n->in));
            else rc = o->add_relu_backward(be, da, db, dy, out, act_size(m, n->in));
            break;
        }
        case N_MAXPOOL:
            rc = o->maxpool2d_backward(be, pl, dx, dy, (const int32_t *)(S + n->stat_off), N,
                                       m->act_c[n->in], m->act_h[n->in], m->act_w[n->in],
                                       m->act_h[n->out], m->act_w[n->out]);
            break;
        case N_AVGPOOL:
            rc = o->avgpool_backward(be, dx, dy, N, m->act_c[n->in], m->act_h[n->in] * m->act_w[n->in]);
            break;
        case N_LINEAR:
            rc = o->linear_backward(be, pl, dx, m->g + m->params.t[n->w].offset, NULL, dy, in,
                                    m->p + m->params.t[n->w].offset, N, m->act_c[n->in],
                                    m->act_c[n->out]);
            break;
        }
        if (rc != BT_OK) return rc;
        /* Parameters are laid out in node order and the backward runs in reverse, so after
         * node i every gradient from its first parameter on is final for this view. */
        if (m->grad_ready && n->w >= 0 &&
            (rc = m->grad_ready(m->grad_ready_ctx, m->params.t[n->w].offset)) != BT_OK)
            return rc;
    }
    return BT_OK;
}

int bt_model_backward(bt_model *m, int view, const float *dout, int from_features) {
    return backward(m, view, dout, 0, from_features);
}

int bt_model_backward_host(bt_model *m, int view, const float *dout, int from_features) {
    return backward(m, view, dout, 1, from_features);
}
