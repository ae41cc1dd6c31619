/* The registry of the backends compiled into this build, and what every backend shares. A
 * new backend (src/backend/cuda/) adds one line to the table below, under its build flag. */
#include "barlow/backend.h"
#include "barlow/error.h"
#include <string.h>

void bt_backend_cfg_default(bt_backend_cfg *c) {
    c->threads = 0;
    c->winograd = -1;
    c->gemm_kc = 0;
    c->precision = 0; /* BT_PREC_FP32 */
}

static const struct {
    const char *name;
    int (*make)(bt_backend **, const bt_backend_cfg *);
} backends[] = {
    {"cpu", bt_backend_cpu_new},
};

int bt_backend_count(void) { return (int)(sizeof backends / sizeof *backends); }
const char *bt_backend_name(int i) {
    return i >= 0 && i < bt_backend_count() ? backends[i].name : NULL;
}

int bt_backend_new(bt_backend **be, const char *name, const bt_backend_cfg *cfg) {
    *be = NULL;
    for (int i = 0; i < bt_backend_count(); i++)
        if (name && !strcmp(name, backends[i].name)) return backends[i].make(be, cfg);
    return bt_fail(BT_EINVAL, "unknown backend '%s' (this build has: cpu)", name ? name : "");
}

void bt_backend_free(bt_backend *be) {
    if (be) be->ops->destroy(be);
}

void *bt_backend_host_alloc_hook(void *be, size_t bytes) {
    bt_backend *b = be;
    return b->ops->host_alloc(b, bytes);
}

void bt_backend_host_free_hook(void *be, void *p) {
    bt_backend *b = be;
    b->ops->host_free(b, p);
}
