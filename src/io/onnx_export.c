/* ONNX export of the backbone (format in onnx.h): walks the model's node list up to the
 * features and emits one ONNX node per barlow node (two for a fused node: BatchNormalization or
 * Add, then Relu, as PyTorch exports the modules), with the weights as initializers that
 * point straight into the model's parameter buffer (protobuf-c copies them while packing). */
#include "barlow/onnx.h"
#include "barlow/error.h"
#include "nn/model_internal.h"
#include "onnx.pb-c.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every message and string of the graph is allocated here and freed together. */
typedef struct {
    void **p;
    size_t n, cap;
    int oom;
} pool;

static void *palloc(pool *P, size_t bytes) {
    if (P->oom) return NULL;
    if (P->n == P->cap) {
        size_t cap = P->cap ? 2 * P->cap : 256;
        void **q = realloc(P->p, cap * sizeof *q);
        if (!q) { P->oom = 1; return NULL; }
        P->p = q;
        P->cap = cap;
    }
    void *x = calloc(1, bytes ? bytes : 1);
    if (!x) { P->oom = 1; return NULL; }
    P->p[P->n++] = x;
    return x;
}

static char *pstr(pool *P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *pstr(pool *P, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = palloc(P, (size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void pool_free(pool *P) {
    for (size_t i = 0; i < P->n; i++) free(P->p[i]);
    free(P->p);
}

/* A growable array of message pointers (graph nodes, initializers). */
typedef struct {
    void **v;
    size_t n, cap;
} vec;

static void vpush(pool *P, vec *a, void *x) {
    if (!x) { P->oom = 1; return; }
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        void **q = palloc(P, cap * sizeof *q);
        if (!q) return;
        if (a->n) memcpy(q, a->v, a->n * sizeof *q);
        a->v = q; /* the old array stays in the pool until the end: simpler than tracking it */
        a->cap = cap;
    }
    a->v[a->n++] = x;
}

static Onnx__AttributeProto *attr_int(pool *P, const char *name, int64_t v) {
    Onnx__AttributeProto *a = palloc(P, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
    return a;
}

static Onnx__AttributeProto *attr_float(pool *P, const char *name, float v) {
    Onnx__AttributeProto *a = palloc(P, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
    return a;
}

/* INTS attribute with n copies of v. */
static Onnx__AttributeProto *attr_ints(pool *P, const char *name, int64_t v, size_t n) {
    Onnx__AttributeProto *a = palloc(P, sizeof *a);
    int64_t *x = palloc(P, n * sizeof *x);
    if (!a || !x) return NULL;
    onnx__attribute_proto__init(a);
    for (size_t i = 0; i < n; i++) x[i] = v;
    a->name = (char *)name;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = n;
    a->ints = x;
    return a;
}

/* A node with up to 5 inputs (NULL-terminated list) and one output. */
static Onnx__NodeProto *node(pool *P, const char *op, const char *name, const char *out,
                             const char *const *in, int nin) {
    Onnx__NodeProto *n = palloc(P, sizeof *n);
    char **ins = palloc(P, (size_t)nin * sizeof *ins), **outs = palloc(P, sizeof *outs);
    if (!n || !ins || !outs) return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < nin; i++) ins[i] = (char *)in[i];
    outs[0] = (char *)out;
    n->op_type = (char *)op;
    n->name = (char *)name;
    n->n_input = (size_t)nin;
    n->input = ins;
    n->n_output = 1;
    n->output = outs;
    return n;
}

static void add_attrs(pool *P, Onnx__NodeProto *n, Onnx__AttributeProto **a, int na) {
    if (!n) return;
    Onnx__AttributeProto **v = palloc(P, (size_t)na * sizeof *v);
    if (!v) return;
    for (int i = 0; i < na; i++) {
        if (!a[i]) { P->oom = 1; return; }
        v[i] = a[i];
    }
    n->n_attribute = (size_t)na;
    n->attribute = v;
}

/* A float initializer viewing `data` (no copy). */
static Onnx__TensorProto *init_tensor(pool *P, const char *name, const bt_tensor_info *e,
                                      const float *data) {
    Onnx__TensorProto *t = palloc(P, sizeof *t);
    int64_t *dims = palloc(P, (size_t)(e->ndim ? e->ndim : 1) * sizeof *dims);
    if (!t || !dims) return NULL;
    onnx__tensor_proto__init(t);
    for (int i = 0; i < e->ndim; i++) dims[i] = e->shape[i];
    t->name = (char *)name;
    t->n_dims = (size_t)e->ndim;
    t->dims = dims;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->has_raw_data = 1; /* raw_data is little-endian float32: our layout on every host we build on */
    t->raw_data.len = e->numel * sizeof(float);
    t->raw_data.data = (uint8_t *)data;
    return t;
}

/* A float tensor value (graph input/output) with the given dims: a name or a value each. */
static Onnx__ValueInfoProto *value_info(pool *P, const char *name, int nd, const char *const *sym,
                                        const int64_t *val) {
    Onnx__ValueInfoProto *v = palloc(P, sizeof *v);
    Onnx__TypeProto *tp = palloc(P, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = palloc(P, sizeof *tt);
    Onnx__TensorShapeProto *sh = palloc(P, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dims = palloc(P, (size_t)nd * sizeof *dims);
    if (!v || !tp || !tt || !sh || !dims) return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < nd; i++) {
        Onnx__TensorShapeProto__Dimension *d = palloc(P, sizeof *d);
        if (!d) return NULL;
        onnx__tensor_shape_proto__dimension__init(d);
        if (sym[i]) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = (char *)sym[i];
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = val[i];
        }
        dims[i] = d;
    }
    sh->n_dim = (size_t)nd;
    sh->dim = dims;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->name = (char *)name;
    v->type = tp;
    return v;
}

/* "layer1.0.conv1" from "layer1.0.conv1.weight". */
static char *module_name(pool *P, const bt_model *m, int param) {
    const char *full = m->params.t[param].name;
    const char *dot = strrchr(full, '.');
    return pstr(P, "%.*s", (int)(dot ? dot - full : (long)strlen(full)), full);
}

/* Streams the packed message into a FILE (no second copy of the weights in memory). */
typedef struct {
    ProtobufCBuffer base;
    FILE *f;
    int err;
} file_buffer;

static void file_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
    file_buffer *fb = (file_buffer *)b;
    if (!fb->err && len && fwrite(data, 1, len, fb->f) != len) fb->err = errno ? errno : EIO;
}

static int write_model(const Onnx__ModelProto *mp, const char *path) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return bt_fail(BT_EINVAL, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return bt_fail(BT_EIO, "cannot write %s: %s", path, strerror(errno));
    file_buffer fb = {{file_append}, f, 0};
    protobuf_c_message_pack_to_buffer(&mp->base, &fb.base);
    int err = fb.err;
    if (!err && (fflush(f) != 0 || fsync(fileno(f)) != 0)) err = errno;
    if (fclose(f) != 0 && !err) err = errno;
    if (!err && rename(tmp, path) != 0) err = errno;
    if (err) {
        remove(tmp);
        return bt_fail(BT_EIO, "cannot write %s: %s", path, strerror(err));
    }
    return BT_OK;
}

/* A fused node (batch norm + ReLU, add + ReLU) is exported as the two ONNX nodes PyTorch's
 * modules give: pushes the first (nd, whose output is *out) and returns a Relu on it, named
 * as an unfused ReLU in the same place would be; *out becomes the Relu's output. */
static Onnx__NodeProto *fused_relu(pool *P, vec *nodes, Onnx__NodeProto *nd, char **out,
                                   int *relu_n) {
    vpush(P, nodes, nd);
    const char *in[] = {*out};
    *out = pstr(P, "relu_%d", (*relu_n)++);
    return *out ? node(P, "Relu", *out, *out, in, 1) : NULL;
}

int bt_onnx_export(const bt_model *m, const char *path, int image_size) {
    if (image_size < 0) return bt_fail(BT_EINVAL, "ONNX export: bad image size %d", image_size);
    int rc0 = bt_model_to_host(m, BT_IO_PARAMS | BT_IO_BUFS); /* the initialisers read the image */
    if (rc0 != BT_OK) return rc0;
    pool P = {0};
    vec nodes = {0}, inits = {0};
    /* Activation id -> tensor name; act 0 is the graph input. */
    char **name = palloc(&P, (size_t)m->nacts * sizeof *name);
    if (name) name[0] = "input";
    int relu_n = 0, add_n = 0, done = 0;
    for (int i = 0; i < m->nnodes && name && !P.oom && !done; i++) {
        const bt_node *n = &m->nodes[i];
        const char *x = name[n->in];
        char *mod = NULL, *out = NULL;
        Onnx__NodeProto *nd = NULL;
        switch (n->type) {
        case N_CONV: {
            mod = module_name(&P, m, n->w);
            out = mod;
            const char *wn = m->params.t[n->w].name;
            vpush(&P, &inits, init_tensor(&P, wn, &m->params.t[n->w], m->host.p + m->params.t[n->w].offset));
            const char *in[] = {x, wn};
            nd = node(&P, "Conv", mod, out, in, 2);
            Onnx__AttributeProto *a[] = {attr_ints(&P, "kernel_shape", n->k, 2),
                                         attr_ints(&P, "strides", n->stride, 2),
                                         attr_ints(&P, "pads", n->pad, 4),
                                         attr_ints(&P, "dilations", 1, 2), attr_int(&P, "group", 1)};
            add_attrs(&P, nd, a, 5);
            break;
        }
        case N_BN:
        case N_BN_RELU: {
            mod = module_name(&P, m, n->w);
            out = mod;
            const bt_tensor_info *ti[4] = {&m->params.t[n->w], &m->params.t[n->b], &m->bufs.t[n->rm],
                                           &m->bufs.t[n->rv]};
            const float *base[4] = {m->host.p, m->host.p, m->host.b, m->host.b};
            const char *in[5] = {x};
            for (int k = 0; k < 4; k++) {
                in[k + 1] = ti[k]->name;
                vpush(&P, &inits, init_tensor(&P, ti[k]->name, ti[k], base[k] + ti[k]->offset));
            }
            nd = node(&P, "BatchNormalization", mod, out, in, 5);
            Onnx__AttributeProto *a[] = {attr_float(&P, "epsilon", m->bn_eps),
                                         attr_float(&P, "momentum", 1.0f - m->bn_momentum)};
            add_attrs(&P, nd, a, 2);
            if (n->type == N_BN_RELU) nd = fused_relu(&P, &nodes, nd, &out, &relu_n);
            break;
        }
        case N_RELU: {
            out = pstr(&P, "relu_%d", relu_n++);
            const char *in[] = {x};
            nd = node(&P, "Relu", out, out, in, 1);
            break;
        }
        case N_ADD:
        case N_ADD_RELU: {
            out = pstr(&P, "add_%d", add_n++);
            const char *in[] = {x, name[n->in2]};
            nd = node(&P, "Add", out, out, in, 2);
            if (n->type == N_ADD_RELU) nd = fused_relu(&P, &nodes, nd, &out, &relu_n);
            break;
        }
        case N_MAXPOOL: {
            out = "maxpool";
            const char *in[] = {x};
            nd = node(&P, "MaxPool", out, out, in, 1);
            Onnx__AttributeProto *a[] = {attr_ints(&P, "kernel_shape", n->k, 2),
                                         attr_ints(&P, "strides", n->stride, 2),
                                         attr_ints(&P, "pads", n->pad, 4)};
            add_attrs(&P, nd, a, 3);
            break;
        }
        case N_AVGPOOL: {
            /* (N, C, H, W) -> (N, C, 1, 1) -> (N, C): torchvision's avgpool + flatten. */
            const char *in[] = {x};
            vpush(&P, &nodes, node(&P, "GlobalAveragePool", "avgpool", "avgpool", in, 1));
            const char *in2[] = {"avgpool"};
            out = "features";
            nd = node(&P, "Flatten", "flatten", out, in2, 1);
            Onnx__AttributeProto *a[] = {attr_int(&P, "axis", 1)};
            add_attrs(&P, nd, a, 1);
            break;
        }
        default:
            pool_free(&P);
            return bt_fail(BT_EINVAL, "ONNX export: unexpected node type %d in the backbone", n->type);
        }
        vpush(&P, &nodes, nd);
        if (out) name[n->out] = out;
        if (n->out == m->feat_act) done = 1;
    }
    if (!P.oom && !done) {
        pool_free(&P);
        return bt_fail(BT_EINVAL, "ONNX export: the graph has no feature output");
    }

    const char *in_sym[4] = {"batch", NULL, image_size ? NULL : "height", image_size ? NULL : "width"};
    const int64_t in_val[4] = {0, 3, image_size, image_size};
    const char *out_sym[2] = {"batch", NULL};
    const int64_t out_val[2] = {0, m->cfg.feat_dim};
    Onnx__ValueInfoProto **gin = palloc(&P, sizeof *gin), **gout = palloc(&P, sizeof *gout);
    Onnx__GraphProto *g = palloc(&P, sizeof *g);
    Onnx__ModelProto *mp = palloc(&P, sizeof *mp);
    Onnx__OperatorSetIdProto *ops = palloc(&P, sizeof *ops), **opsv = palloc(&P, sizeof *opsv);
    if (gin) gin[0] = value_info(&P, "input", 4, in_sym, in_val);
    if (gout) gout[0] = value_info(&P, "features", 2, out_sym, out_val);
    int rc = BT_OK;
    if (P.oom || !gin || !gout || !gin[0] || !gout[0] || !g || !mp || !ops || !opsv) {
        rc = bt_fail(BT_ENOMEM, "out of memory building the ONNX graph");
    } else {
        onnx__graph_proto__init(g);
        g->name = pstr(&P, "barlow %s backbone", m->cfg.arch);
        g->n_node = nodes.n;
        g->node = (Onnx__NodeProto **)nodes.v;
        g->n_initializer = inits.n;
        g->initializer = (Onnx__TensorProto **)inits.v;
        g->n_input = 1;
        g->input = gin;
        g->n_output = 1;
        g->output = gout;
        onnx__operator_set_id_proto__init(ops);
        ops->domain = "";
        ops->has_version = 1;
        ops->version = BT_ONNX_OPSET;
        opsv[0] = ops;
        onnx__model_proto__init(mp);
        mp->has_ir_version = 1;
        mp->ir_version = BT_ONNX_IR_VERSION;
        mp->n_opset_import = 1;
        mp->opset_import = opsv;
        mp->graph = g;
        mp->producer_name = "barlow";
        mp->producer_version = "0.1.0";
        mp->doc_string = pstr(&P, "Barlow Twins backbone %s in eval mode: input (batch, 3, H, W) "
                                  "normalised images, output (batch, %d) features",
                              m->cfg.arch, m->cfg.feat_dim);
        if (!g->name || !mp->doc_string) rc = bt_fail(BT_ENOMEM, "out of memory building the ONNX graph");
        else rc = write_model(mp, path);
    }
    pool_free(&P);
    return rc;
}
