"""PyTorch reference for tests/test_conv_linear.c.

Usage:
  parity_conv_linear.py DIR conv N C H W K R S STRIDE PAD HAS_BIAS
  parity_conv_linear.py DIR linear N I O HAS_BIAS
  parity_conv_linear.py --batch FILE    (one "DIR conv|linear ARGS..." per line: one torch
                                         start-up for many cases)
  parity_conv_linear.py --bf16 --batch FILE   (also PyTorch's bf16 autocast results)

Reads raw little-endian float32 files x.bin, w.bin, dy.bin (and b.bin when HAS_BIAS=1) from
DIR, computes F.conv2d / F.linear and its backward with dy as the upstream gradient twice from
those inputs: in float32 (PyTorch's own result: y.bin, dx.bin, dw.bin, db.bin, float32) and in
float64 (the reference: y64.bin, ... as float64). The test judges barlow against float64 by
PyTorch's float32 error (tests/testutil.h, tu_parity_check). With --bf16, also the same under
torch.autocast("cpu", dtype=torch.bfloat16) (PyTorch's mixed precision: the op in bf16, dy
rounded to bf16 as the op's output type asks): yb.bin, dxb.bin, dwb.bin as float32, the peer
that barlow's bf16 products are judged by.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def load(d, name, shape, dt):
    a = np.fromfile(os.path.join(d, name), dtype="<f4")
    if a.size != int(np.prod(shape)):
        sys.exit(f"{name}: expected {int(np.prod(shape))} floats, got {a.size}")
    return torch.from_numpy(a.reshape(shape).copy()).to(dt).requires_grad_(True)


def save(d, name, t):
    if t.dtype == torch.float64:
        t.detach().numpy().astype("<f8").tofile(os.path.join(d, name.replace(".bin", "64.bin")))
    else:
        t.detach().numpy().astype("<f4").tofile(os.path.join(d, name))


def run_case(argv, bf16=False):
    for dt in (torch.float32, torch.float64):
        run_case_dt(argv, dt)
    if bf16:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            run_case_dt(argv, torch.float32, suffix="b")


def run_case_dt(argv, dt, suffix=""):
    d, mode, args = argv[0], argv[1], [int(a) for a in argv[2:]]
    if mode == "conv":
        N, C, H, W, K, R, S, stride, pad, has_bias = args
        x = load(d, "x.bin", (N, C, H, W), dt)
        w = load(d, "w.bin", (K, C, R, S), dt)
        b = load(d, "b.bin", (K,), dt) if has_bias else None
        y = F.conv2d(x, w, b, stride=stride, padding=pad)
    elif mode == "linear":
        N, I, O, has_bias = args
        x = load(d, "x.bin", (N, I), dt)
        w = load(d, "w.bin", (O, I), dt)
        b = load(d, "b.bin", (O,), dt) if has_bias else None
        y = F.linear(x, w, b)
    else:
        sys.exit(f"unknown mode {mode}")
    dy = load(d, "dy.bin", tuple(y.shape), dt).detach().to(y.dtype)
    y.backward(dy)
    save(d, f"y{suffix}.bin", y.float() if suffix else y)
    save(d, f"dx{suffix}.bin", x.grad)
    save(d, f"dw{suffix}.bin", w.grad)
    if b is not None:
        save(d, f"db{suffix}.bin", b.grad)


def main():
    torch.set_num_threads(1)
    bf16 = len(sys.argv) > 1 and sys.argv[1] == "--bf16"
    argv = sys.argv[1:] if bf16 else sys.argv
    if len(argv) == 3 and argv[1] == "--batch":
        with open(argv[2]) as f:
            for line in f:
                if line.strip():
                    run_case(line.split(), bf16)
    elif len(sys.argv) >= 3:
        run_case(sys.argv[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
