"""Interop check between barlow's safetensors code and the reference `safetensors` package.

Usage: st_roundtrip.py OURS THEIRS
  1. loads OURS (written by tests/test_safetensors.c) with safetensors.numpy and checks every
     tensor, dtype, shape, value and the __metadata__ against the formulas both sides share;
  2. writes THEIRS with safetensors.torch.save_file (BF16 needs torch), for the C side to read.
Exits 0 and prints "ok" on success; prints the problem and exits 1 otherwise. A missing
`safetensors` package is a failure: install it with
  /usr/bin/python3 -m pip install --break-system-packages safetensors
"""
import sys

import numpy as np

try:
    import safetensors
    from safetensors import safe_open
    from safetensors.numpy import load_file
except ImportError as e:  # the test must fail, not skip
    print(f"cannot import safetensors ({e}); install it with "
          "/usr/bin/python3 -m pip install --break-system-packages safetensors")
    sys.exit(1)


def pattern(n):
    # Exact in float32: both sides compute it without rounding.
    i = np.arange(n, dtype=np.int64)
    return (((i * 37) % 101) - 50) / 16.0


def check_ours(path):
    t = load_file(path)
    want = {
        "conv1.weight": (np.float32, (4, 3, 2, 2), pattern(48).astype(np.float32).reshape(4, 3, 2, 2)),
        "acc": (np.float64, (7,), np.arange(7) / 10.0 - 0.3),
        "step": (np.int64, (), np.array(1234567890123, dtype=np.int64)),
        "ids": (np.int64, (2, 3), (np.arange(6, dtype=np.int64) * 1000000007 - 3000000000).reshape(2, 3)),
        "empty": (np.float32, (0, 5), np.zeros((0, 5), np.float32)),
        "mask": (np.uint8, (5,), np.arange(5, dtype=np.uint8) * 50),
        "half": (np.float16, (4,), np.array([0x3C00, 0xC000, 0x0001, 0x7BFF], np.uint16).view(np.float16)),
    }
    errs = []
    if sorted(t) != sorted(want):
        errs.append(f"tensor names {sorted(t)} != {sorted(want)}")
    for k, (dt, shape, val) in want.items():
        if k not in t:
            continue
        a = t[k]
        if a.dtype != dt or a.shape != shape:
            errs.append(f"{k}: {a.dtype}{a.shape} != {np.dtype(dt)}{shape}")
        elif a.tobytes() != np.asarray(val, dtype=dt).tobytes():
            errs.append(f"{k}: values {a.ravel()[:8]} != {np.asarray(val).ravel()[:8]}")
    with safe_open(path, framework="np") as f:
        meta = f.metadata()
    want_meta = {"format": "barlow", "step": "42", "utf8": "h\u00e9llo \u2713"}
    if meta != want_meta:
        errs.append(f"metadata {meta} != {want_meta}")
    # The reference writer pads the header to a multiple of 8 and puts __metadata__ first.
    raw = open(path, "rb").read()
    hlen = int.from_bytes(raw[:8], "little")
    if (8 + hlen) % 8 != 0 or not raw[8:8 + hlen].startswith(b'{"__metadata__":'):
        errs.append(f"header layout: length {hlen}, starts {raw[8:40]!r}")
    return errs


def write_theirs(path):
    import torch
    torch.set_num_threads(1)
    tensors = {
        "w": torch.tensor(pattern(12), dtype=torch.float32).reshape(4, 3),
        "d": torch.tensor(np.arange(5) / 10.0 - 0.3, dtype=torch.float64),
        "h": torch.tensor([1.0, -2.0, 2.0 ** -24, 65504.0, 0.333251953125, -0.0], dtype=torch.float16),
        "b": torch.tensor([[1.0, -3.140625], [0.5, 256.0]], dtype=torch.bfloat16),
        "i": torch.tensor([-(2 ** 40), 0, 2 ** 40 + 1], dtype=torch.int64),
        "i32": torch.tensor([-7, 0, 7, 2 ** 31 - 1], dtype=torch.int32),
        "u8": torch.tensor([0, 1, 2, 254, 255], dtype=torch.uint8),
        "s": torch.tensor(3.5, dtype=torch.float32),
        "big": torch.tensor(pattern(64 * 33), dtype=torch.float32).reshape(64, 33),
    }
    from safetensors.torch import save_file
    save_file(tensors, path, metadata={"framework": "pt", "epoch": "3", "note": "h\u00e9llo \u2713"})


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 1
    errs = check_ours(sys.argv[1])
    if errs:
        print(f"safetensors {safetensors.__version__} disagrees with {sys.argv[1]}:")
        for e in errs:
            print("  " + e)
        return 1
    write_theirs(sys.argv[2])
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
