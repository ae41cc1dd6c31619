"""PyTorch reference for tests/test_ops_norm.c (batch norm, ReLU, batch norm + ReLU, add +
ReLU, max/avg pooling, softmax cross-entropy): reads the test's inputs as raw little-endian float32 (labels int32) .bin files
from DIR, runs torch's forward and backward twice from those inputs, in float32 (written as
t_*.bin, float32; indices int32) and in float64 (r_*.bin, float64): the test judges barlow
against float64 by PyTorch's own float32 error (tests/testutil.h, tu_parity_check).

usage: parity_norm.py DIR bn2d=N,C,H,W bn1d=N,C pool=N,C,H,W relu=n xent=N,K mom=M eps=E
                      addrelu=n
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
D = sys.argv[1]
ARGS = dict(a.split("=", 1) for a in sys.argv[2:])


def dims(key):
    return [int(v) for v in ARGS[key].split(",")]


DT = torch.float32  # the precision of the current pass (see the end)


def rd(name, shape, dtype=np.float32):
    a = np.fromfile(os.path.join(D, name + ".bin"), dtype=dtype)
    if a.size != int(np.prod(shape)):
        raise SystemExit(f"{name}.bin: {a.size} values, expected shape {shape}")
    t = torch.from_numpy(a.reshape(shape).copy())
    return t.to(DT) if dtype == np.float32 else t


def wr(name, t):
    a = t.detach().contiguous().numpy()
    if a.dtype == np.int64:
        a.astype(np.int32).tofile(os.path.join(D, "t_" + name + ".bin"))
    elif DT == torch.float64:
        a.astype(np.float64).tofile(os.path.join(D, "r_" + name + ".bin"))
    else:
        a.astype(np.float32).tofile(os.path.join(D, "t_" + name + ".bin"))


MOM, EPS = float(ARGS["mom"]), float(ARGS["eps"])


def batchnorm(tag, shape, cls):
    C = shape[1]
    x, dy = rd(tag + "_x", shape), rd(tag + "_dy", shape)
    g, b, rm, rv = (rd(f"{tag}_{k}", [C]) for k in ("g", "b", "rm", "rv"))
    # train_na: affine=False, track_running_stats=False (the C side passes NULLs); *_relu: the
    # module followed by nn.ReLU, dy given to the ReLU's output
    for mode in ("train", "eval", "train_na", "train_relu", "eval_relu"):
        affine = mode != "train_na"
        bn = cls(C, eps=EPS, momentum=MOM, affine=affine, track_running_stats=affine).to(DT)
        with torch.no_grad():
            if affine:
                bn.weight.copy_(g)
                bn.bias.copy_(b)
                bn.running_mean.copy_(rm)
                bn.running_var.copy_(rv)
        bn.train(not mode.startswith("eval"))
        xx = x.clone().requires_grad_(True)
        y = bn(xx)
        if mode.endswith("_relu"):
            y = F.relu(y)
        y.backward(dy)
        p = f"{tag}_{mode}_"
        wr(p + "y", y)
        wr(p + "dx", xx.grad)
        if affine:
            wr(p + "dg", bn.weight.grad)
            wr(p + "db", bn.bias.grad)
            wr(p + "rm", bn.running_mean)
            wr(p + "rv", bn.running_var)
        if not mode.startswith("eval"):
            # the batch statistics torch saves for its backward (mean, 1/sqrt(var+eps))
            _, sm, si = torch.native_batch_norm(x, None, None, None, None, True, MOM, EPS)
            wr(p + "mean", sm)
            wr(p + "rstd", si)


def run():
    N, C, H, W = dims("bn2d")
    batchnorm("bn2d", [N, C, H, W], nn.BatchNorm2d)
    N, C = dims("bn1d")
    batchnorm("bn1d", [N, C], nn.BatchNorm1d)

    N, C, H, W = dims("pool")
    OH, OW = (H + 2 - 3) // 2 + 1, (W + 2 - 3) // 2 + 1
    for tag in ("pool", "poolq"):
        x = rd(tag + "_x", [N, C, H, W]).requires_grad_(True)
        y, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True)
        y.backward(rd(tag + "_dy", [N, C, OH, OW]))
        wr(tag + "_y", y)
        wr(tag + "_idx", idx)
        wr(tag + "_dx", x.grad)

    x = rd("pool_x", [N, C, H, W]).requires_grad_(True)
    y = F.adaptive_avg_pool2d(x, 1)
    y.backward(rd("avg_dy", [N, C, 1, 1]))
    wr("avg_y", y)
    wr("avg_dx", x.grad)

    (n,) = dims("relu")
    x = rd("relu_x", [n]).requires_grad_(True)
    y = F.relu(x)
    y.backward(rd("relu_dy", [n]))
    wr("relu_y", y)
    wr("relu_dx", x.grad)

    (n,) = dims("addrelu")
    a = rd("addrelu_a", [n]).requires_grad_(True)
    b = rd("addrelu_b", [n]).requires_grad_(True)
    y = F.relu(a + b)
    y.backward(rd("addrelu_dy", [n]))
    wr("addrelu_y", y)
    wr("addrelu_da", a.grad)
    wr("addrelu_db", b.grad)

    N, K = dims("xent")
    z = rd("xent_z", [N, K]).requires_grad_(True)
    lab = rd("xent_lab", [N], np.int32).long()
    loss = F.cross_entropy(z, lab)
    loss.backward(rd("xent_dloss", [1])[0])
    wr("xent_loss", loss.reshape(1))
    wr("xent_probs", F.softmax(z, dim=1))
    wr("xent_dz", z.grad)


for DT in (torch.float32, torch.float64):
    run()
