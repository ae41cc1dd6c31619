#!/usr/bin/python3
"""Writes the fuzz seed corpora into fuzz/corpus/<target>/: small valid inputs of each format
(a few KB each) from which libFuzzer mutates. Run with the system python (/usr/bin/python3,
which has PIL); the outputs are committed, so this only needs rerunning when formats change.
Deterministic: the same files every run."""
import io, json, os, struct, tarfile
import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
rng = np.random.default_rng(1234)


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, meta=None):
    """tensors: list of (name, dtype, shape, bytes). Header padded to 8 as the reference does."""
    hdr, off, blob = {}, 0, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, b in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        blob += b
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def small_img(w, h):
    a = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return Image.fromarray(a)


def enc(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


# ---- safetensors ----
f32 = rng.standard_normal(6).astype("<f4").tobytes()
put("safetensors", "basic.safetensors",
    safetensors([("w", "F32", [2, 3], f32), ("b", "F16", [2], np.ones(2, "<f2").tobytes()),
                 ("step", "I64", [], struct.pack("<q", 7)), ("e", "U8", [0], b"")],
                {"format": "pt"}))
put("safetensors", "dtypes.safetensors",
    safetensors([("a", "BF16", [2], b"\x80\x3f\x00\x40"), ("b", "F64", [1], struct.pack("<d", 1.5)),
                 ("c", "I32", [1, 1], struct.pack("<i", -3)), ("d", "BOOL", [3], b"\x00\x01\x01"),
                 ("e", "I8", [2], b"\xff\x01"), ("f", "I16", [1], b"\x01\x80"),
                 ("g", "U64", [1], struct.pack("<Q", 2**63)), ("h", "F8_E4M3", [1], b"\x38")]))
put("safetensors", "checkpoint.safetensors",
    safetensors([("conv1.weight", "F32", [1, 1, 1, 1], struct.pack("<f", 0.5)),
                 ("momentum.conv1.weight", "F32", [1, 1, 1, 1], struct.pack("<f", 0.0))],
                {"format": "barlow-checkpoint", "version": "1", "epoch": "0", "next_batch": "1",
                 "step": "1", "steps_per_epoch": "3", "seed": "42", "num_batches_tracked": "2",
                 "config": "{\"arch\":\"resnet18\"}", "checksum": "0123456789abcdef"}))

# ---- CIFAR-10 batch: flags byte, optional meta text, then records ----
recs = b"".join(bytes([k % 10]) + (rng.random(3072) * 255).astype(np.uint8).tobytes()
                for k in range(3))
put("cifar", "three_records.bin", b"\x00" + recs)
meta = b"cat\ndog\r\n\nbird \n"
put("cifar", "with_meta.bin", b"\x01" + struct.pack("<H", len(meta)) + meta + recs[:2 * 3073])

# ---- tar shards: two samples each (image + class index) ----
def shard(members, fmt=tarfile.USTAR_FORMAT):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 0
            t.addfile(ti, io.BytesIO(data))
    # Keep the archive's end marker (two zero blocks) but not tarfile's 10 KB record padding.
    v = b.getvalue().rstrip(b"\0")
    v += b"\0" * (-len(v) % 512)
    return v + b"\0" * 1024

jpg = enc(small_img(8, 6), "JPEG", quality=75)
png = enc(small_img(5, 4), "PNG")
put("tar", "two_samples.tar",
    shard([("s000.jpg", jpg), ("s000.cls", b"3\n"), ("s001.png", png), ("s001.cls", b"0")]))
put("tar", "long_names.tar",
    shard([("d/" + "k" * 120 + ".jpg", jpg), ("d/" + "k" * 120 + ".cls", b"1")],
          tarfile.GNU_FORMAT))
put("tar", "pax.tar",
    shard([("p/" + "x" * 110 + ".png", png), ("p/" + "x" * 110 + ".cls", b"2")],
          tarfile.PAX_FORMAT))

# ---- images: JPEG (baseline, progressive, gray, CMYK) and PNG (RGB, RGBA, P, L, 16-bit) ----
put("image", "rgb.jpg", jpg)
put("image", "progressive.jpg", enc(small_img(9, 7), "JPEG", progressive=True, quality=60))
put("image", "gray.jpg", enc(small_img(6, 6).convert("L"), "JPEG"))
put("image", "cmyk.jpg", enc(small_img(4, 4).convert("CMYK"), "JPEG"))
put("image", "rgb.png", png)
put("image", "rgba.png", enc(small_img(4, 3).convert("RGBA"), "PNG"))
put("image", "palette.png", enc(small_img(4, 4).convert("P"), "PNG"))
put("image", "gray1.png", enc(small_img(9, 3).convert("1"), "PNG"))
g16 = Image.fromarray((rng.random((3, 4)) * 1000).astype(np.uint16))
put("image", "gray16.png", enc(g16, "PNG"))

# ---- command lines: NUL-separated argv; the first two also feed bt_model_cfg_parse ----
cmds = {
    "tiny.txt": ["resnet18-cifar:w=0.125", "32-32", "--arch", "resnet18-cifar:w=0.125",
                 "--projector", "32-32", "--preset", "cifar", "--batch-size", "16", "data"],
    "defaults.txt": ["resnet50", "8192-8192-8192", "DATA"],
    "eq_forms.txt": ["resnet34:w=2", "", "--epochs=3", "--learning-rate-weights=0.1",
                     "--aug", "jitter=0.4", "--aug=blur:p=0.5", "--loss-form=gram", "--help"],
    "typo.txt": ["resnet101-cifar", "1-2-3-4-5-6-7-8", "--epochz", "3"],
    "bad.txt": ["resnet18:w=", "8192--8192", "--seed", "-1", "--", "--x", "y"],
}
for name, argv in cmds.items():
    put("args", name, b"\0".join(a.encode() for a in argv))
