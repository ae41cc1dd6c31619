"""PIL reference for tests/test_dataset.c: decodes images as Image.open(f).convert('RGB'),
makes test images of every PNG colour type and JPEG colour space, and builds CIFAR-10 binary
batches and WebDataset tar shards from a small ImageFolder so the C readers can be checked
against torchvision's ImageFolder and PIL.

  decode_ref.py decode OUT LIST       LIST: one path per line; OUT: per image int32 w, h, RGB
  decode_ref.py make_images DIR       writes the test images and DIR/list.txt
  decode_ref.py order ROOT OUT        torchvision ImageFolder order: "label path" lines
  decode_ref.py make_small FULL OUT   small folder, CIFAR batches and tar shards from FULL
"""
import io
import os
import shutil
import struct
import sys
import tarfile
import warnings
import zlib

import numpy as np
from PIL import Image

warnings.simplefilter("ignore")


def decode(out, listfile):
    with open(listfile) as f:
        paths = [l.rstrip("\n") for l in f if l.strip()]
    with open(out, "wb") as o:
        for p in paths:
            a = np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8)
            o.write(struct.pack("<ii", a.shape[1], a.shape[0]))
            o.write(a.tobytes())


def png_write(path, samples, depth, ctype, palette=None, trns=None):
    """Minimal PNG writer (PIL cannot write 16-bit RGB or low-depth grayscale)."""
    h, w = samples.shape[:2]
    s = samples.reshape(h, w, -1)
    raw = bytearray()
    for y in range(h):
        raw.append(0)
        row = s[y].reshape(-1)
        if depth == 16:
            raw += row.astype(">u2").tobytes()
        elif depth == 8:
            raw += row.astype(np.uint8).tobytes()
        else:
            per = 8 // depth
            bits = np.zeros(((len(row) + per - 1) // per) * per, dtype=np.int64)
            bits[: len(row)] = row
            bits = bits.reshape(-1, per)
            shifts = np.array([8 - depth * (k + 1) for k in range(per)])
            raw += (bits << shifts).sum(axis=1).astype(np.uint8).tobytes()

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
    if palette is not None:
        png += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def make_images(d):
    rng = np.random.default_rng(7)
    h, w = 23, 37
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1)
    rgb = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    names = []

    def add(n):
        names.append(os.path.join(d, n))

    png_write(os.path.join(d, "rgb8.png"), rgb, 8, 2); add("rgb8.png")
    rgba = np.concatenate([rgb, rng.integers(0, 256, (h, w, 1))], -1)
    png_write(os.path.join(d, "rgba8.png"), rgba, 8, 6); add("rgba8.png")
    gray = rgb[..., 0]
    png_write(os.path.join(d, "gray8.png"), gray, 8, 0); add("gray8.png")
    png_write(os.path.join(d, "gray8_trns.png"), gray, 8, 0, trns=struct.pack(">H", int(gray[0, 0]))); add("gray8_trns.png")
    png_write(os.path.join(d, "graya8.png"), rgba[..., [0, 3]], 8, 4); add("graya8.png")
    for depth in (1, 2, 4):
        png_write(os.path.join(d, "gray%d.png" % depth), rng.integers(0, 1 << depth, (h, w)), depth, 0)
        add("gray%d.png" % depth)
    pal = rng.integers(0, 256, (16, 3))
    idx = rng.integers(0, 16, (h, w))
    png_write(os.path.join(d, "pal8.png"), idx, 8, 3, palette=pal); add("pal8.png")
    png_write(os.path.join(d, "pal4_trns.png"), idx, 4, 3, palette=pal, trns=bytes(range(0, 160, 10))); add("pal4_trns.png")
    png_write(os.path.join(d, "pal2.png"), idx % 4, 2, 3, palette=pal[:4]); add("pal2.png")
    rgb16 = rng.integers(0, 65536, (h, w, 3))
    png_write(os.path.join(d, "rgb16.png"), rgb16, 16, 2); add("rgb16.png")
    png_write(os.path.join(d, "rgba16.png"), rng.integers(0, 65536, (h, w, 4)), 16, 6); add("rgba16.png")
    # 16-bit gray with many values below 256 so PIL's clipping (not scaling) shows
    g16 = np.where(rng.random((h, w)) < 0.5, rng.integers(0, 256, (h, w)), rng.integers(0, 65536, (h, w)))
    png_write(os.path.join(d, "gray16.png"), g16, 16, 0); add("gray16.png")
    png_write(os.path.join(d, "graya16.png"), rng.integers(0, 65536, (h, w, 2)), 16, 4); add("graya16.png")
    # PIL-written PNGs too (palette via quantize)
    Image.fromarray(rgb).quantize(colors=50).save(os.path.join(d, "pil_pal.png")); add("pil_pal.png")
    im = Image.fromarray(rgb)
    im.save(os.path.join(d, "q444.jpg"), quality=90, subsampling=0); add("q444.jpg")
    im.save(os.path.join(d, "q420.jpg"), quality=75, subsampling=2); add("q420.jpg")
    im.save(os.path.join(d, "q422.jpg"), quality=85, subsampling=1); add("q422.jpg")
    im.save(os.path.join(d, "prog.jpg"), quality=80, progressive=True); add("prog.jpg")
    big = Image.fromarray(np.clip(np.kron(rgb, np.ones((9, 7, 1))) + rng.integers(-20, 20, (h * 9, w * 7, 3)), 0, 255).astype(np.uint8))
    big.save(os.path.join(d, "big.jpg"), quality=95); add("big.jpg")
    Image.fromarray(gray).save(os.path.join(d, "gray.jpg"), quality=90); add("gray.jpg")
    Image.fromarray(rgba.astype(np.uint8), "RGBA").convert("CMYK").save(os.path.join(d, "cmyk.jpg"), quality=90); add("cmyk.jpg")
    cm = Image.frombytes("CMYK", (w, h), rng.integers(0, 256, (h, w, 4)).astype(np.uint8).tobytes())
    cm.save(os.path.join(d, "cmyk_rand.jpg"), quality=95); add("cmyk_rand.jpg")
    # a PNG named .jpg: the format must come from the magic bytes
    shutil.copy(os.path.join(d, "rgb8.png"), os.path.join(d, "png_named.jpg")); add("png_named.jpg")
    with open(os.path.join(d, "list.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


def order(root, out):
    from torchvision.datasets import ImageFolder
    ds = ImageFolder(root, loader=lambda p: None, is_valid_file=lambda p: p.lower().endswith((".jpg", ".jpeg", ".png")))
    with open(out, "w") as f:
        f.write(" ".join(ds.classes) + "\n")
        for p, y in ds.samples:
            f.write("%d %s\n" % (y, p))


def make_small(full, out):
    """OUT/folder/{train,test}/<class>/: a few images per class (one class with a nested
    directory, an upper-case .JPG and a stray text file); OUT/cifar/*.bin built from PIL's
    decode of those images in ImageFolder order; OUT/tar/{train-000,train-001,test-000}.tar."""
    from torchvision.datasets import ImageFolder
    per = {"train": 6, "test": 3}
    for split, n in per.items():
        for c in sorted(os.listdir(os.path.join(full, split))):
            src = os.path.join(full, split, c)
            dst = os.path.join(out, "folder", split, c)
            os.makedirs(dst)
            files = sorted(os.listdir(src))[:n]
            for k, fn in enumerate(files):
                name = fn
                if c == "cat" and k == 1:
                    name = fn[:-4] + ".JPG"
                if c == "dog" and k >= n - 2:
                    os.makedirs(os.path.join(dst, "sub"), exist_ok=True)
                    name = os.path.join("sub", fn)
                shutil.copy(os.path.join(src, fn), os.path.join(dst, name))
            if c == "bird":
                with open(os.path.join(dst, "notes.txt"), "w") as f:
                    f.write("not an image\n")
    os.makedirs(os.path.join(out, "cifar"))
    os.makedirs(os.path.join(out, "tar"))
    for split in per:
        ds = ImageFolder(os.path.join(out, "folder", split))
        with open(os.path.join(out, "order_%s.txt" % split), "w") as f:
            for p, y in ds.samples:
                f.write("%d %s\n" % (y, p))
        recs = []
        for p, y in ds.samples:
            a = np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8)
            assert a.shape == (32, 32, 3)
            recs.append(bytes([y]) + a.transpose(2, 0, 1).tobytes())
        if split == "train":
            chunks = np.array_split(np.arange(len(recs)), 5)
            for b, ch in enumerate(chunks):
                with open(os.path.join(out, "cifar", "data_batch_%d.bin" % (b + 1)), "wb") as f:
                    f.write(b"".join(recs[i] for i in ch))
        else:
            with open(os.path.join(out, "cifar", "test_batch.bin"), "wb") as f:
                f.write(b"".join(recs))
        shards = np.array_split(np.arange(len(recs)), 2 if split == "train" else 1)
        for s, ch in enumerate(shards):
            with tarfile.open(os.path.join(out, "tar", "%s-%03d.tar" % (split, s)), "w") as t:
                for i in ch:
                    p, y = ds.samples[i]
                    key = "s%05d" % i
                    t.add(p, arcname=key + ".jpg")
                    cls = str(y).encode()
                    ti = tarfile.TarInfo(key + ".cls")
                    ti.size = len(cls)
                    t.addfile(ti, io.BytesIO(cls))
    with open(os.path.join(out, "cifar", "batches.meta.txt"), "w") as f:
        f.write("\n".join(ImageFolder(os.path.join(out, "folder", "train")).classes) + "\n\n")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "decode":
        decode(sys.argv[2], sys.argv[3])
    elif cmd == "make_images":
        make_images(sys.argv[2])
    elif cmd == "order":
        order(sys.argv[2], sys.argv[3])
    elif cmd == "make_small":
        make_small(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + cmd)
