"""Reference for tests/test_augment.c: applies torchvision.transforms.functional (and PIL's
ImageFilter / ImageOps, as the reference Barlow Twins Transform does) on PIL images with
parameters fixed by the C test, and writes the results as raw bytes.

Usage: aug_ref.py JOBFILE. Each line: OP IN W H OUT ARGS... (IN: raw RGB, W x H). Floats are
C99 hex literals (exact float32 values). Ops and their outputs:
  resized_crop TOP LEFT CH CW SIZE INTERP -> uint8 RGB      flip | gray | solarize -> uint8
  brightness|contrast|saturation|hue F -> uint8             blur SIGMA -> uint8
  pipeline TOP LEFT CH CW SIZE INTERP FLIP JIT O0 O1 O2 O3 B C S H GRAY BLUR SIGMA SOL
           M0 M1 M2 S0 S1 S2 -> float32 (3, SIZE, SIZE)
  eval RESIZE CROP INTERP M0 M1 M2 S0 S1 S2 -> float32 (3, S, S)
  rrc N SMIN SMAX RMIN RMAX SEED (IN unused, W H the shape) -> int32 (N, 4) i j h w
"""
import sys

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
import torchvision.transforms as T
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

torch.set_num_threads(1)
INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def fl(s):
    return float.fromhex(s)


def load(path, w, h):
    with open(path, "rb") as f:
        return Image.frombytes("RGB", (w, h), f.read())


def save_u8(img, path):
    assert img.mode == "RGB", img.mode
    with open(path, "wb") as f:
        f.write(np.asarray(img, dtype=np.uint8).tobytes())


def save_f32(t, path):
    with open(path, "wb") as f:
        f.write(t.contiguous().numpy().astype("<f4").tobytes())


def jitter(img, order, b, c, s, h):
    for fn in order:
        if fn == 0:
            img = F.adjust_brightness(img, b)
        elif fn == 1:
            img = F.adjust_contrast(img, c)
        elif fn == 2:
            img = F.adjust_saturation(img, s)
        else:
            img = F.adjust_hue(img, h)
    return img


def run(line):
    a = line.split()
    op, inp, w, h, out, args = a[0], a[1], int(a[2]), int(a[3]), a[4], a[5:]
    if op == "rrc":
        n, smin, smax, rmin, rmax, seed = int(args[0]), *map(fl, args[1:5]), int(args[5])
        torch.manual_seed(seed)
        img = Image.new("RGB", (w, h))
        res = np.zeros((n, 4), dtype="<i4")
        for k in range(n):
            res[k] = T.RandomResizedCrop.get_params(img, scale=[smin, smax], ratio=[rmin, rmax])
        res.tofile(out)
        return
    img = load(inp, w, h)
    if op == "resized_crop":
        top, left, ch, cw, size = map(int, args[:5])
        img = F.resized_crop(img, top, left, ch, cw, [size, size], interpolation=INTERP[args[5]])
    elif op == "flip":
        img = F.hflip(img)
    elif op == "brightness":
        img = F.adjust_brightness(img, fl(args[0]))
    elif op == "contrast":
        img = F.adjust_contrast(img, fl(args[0]))
    elif op == "saturation":
        img = F.adjust_saturation(img, fl(args[0]))
    elif op == "hue":
        img = F.adjust_hue(img, fl(args[0]))
    elif op == "gray":
        img = F.rgb_to_grayscale(img, num_output_channels=3)
    elif op == "blur":
        img = img.filter(ImageFilter.GaussianBlur(fl(args[0])))
    elif op == "solarize":
        img = ImageOps.solarize(img, 128)
    elif op == "pipeline":
        top, left, ch, cw, size = map(int, args[:5])
        interp = INTERP[args[5]]
        flip, jit = int(args[6]), int(args[7])
        order = [int(x) for x in args[8:12]]
        b, c, s, hue = map(fl, args[12:16])
        gray, blur = int(args[16]), int(args[17])
        sigma = fl(args[18])
        sol = int(args[19])
        mean, std = [fl(x) for x in args[20:23]], [fl(x) for x in args[23:26]]
        img = F.resized_crop(img, top, left, ch, cw, [size, size], interpolation=interp)
        if flip:
            img = F.hflip(img)
        if jit:
            img = jitter(img, order, b, c, s, hue)
        if gray:
            img = F.rgb_to_grayscale(img, num_output_channels=3)
        if blur:
            img = img.filter(ImageFilter.GaussianBlur(sigma))
        if sol:
            img = ImageOps.solarize(img, 128)
        save_f32(F.normalize(F.to_tensor(img), mean, std), out)
        return
    elif op == "eval":
        resize, crop = int(args[0]), int(args[1])
        interp = INTERP[args[2]]
        mean, std = [fl(x) for x in args[3:6]], [fl(x) for x in args[6:9]]
        ts = []
        if resize:
            ts.append(T.Resize(resize, interpolation=interp))
        if crop:
            ts.append(T.CenterCrop(crop))
        ts += [T.ToTensor(), T.Normalize(mean, std)]
        save_f32(T.Compose(ts)(img), out)
        return
    else:
        raise SystemExit(f"aug_ref.py: unknown op {op}")
    save_u8(img, out)


def main():
    with open(sys.argv[1]) as f:
        for line in f:
            if line.strip():
                run(line)


if __name__ == "__main__":
    main()
