"""The reference's data pipeline (barlowtwins main.py Transform: two views through
torchvision + PIL, ImageFolder, DataLoader with worker processes) timed on the same data as
bench/bench_data.c.  Prints "samples/s X".

  bench_data_torch.py ROOT PRESET WORKERS BATCH BATCHES     PRESET: cifar | imagenet
"""
import random
import sys
import time

import torch
import torchvision.datasets as datasets
import torchvision.transforms as transforms
from PIL import ImageFilter, ImageOps


class GaussianBlur(object):
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            sigma = random.random() * 1.9 + 0.1
            return img.filter(ImageFilter.GaussianBlur(sigma))
        return img


class Solarization(object):
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            return ImageOps.solarize(img)
        return img


class Transform:
    def __init__(self, preset):
        cifar = preset == "cifar"
        size = 32 if cifar else 224
        mode = transforms.InterpolationMode
        interp = mode.BILINEAR if cifar else mode.BICUBIC
        if cifar:
            norm = transforms.Normalize(mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616])
        else:
            norm = transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])

        def view(blur_p, sol_p):
            t = [transforms.RandomResizedCrop(size, interpolation=interp),
                 transforms.RandomHorizontalFlip(p=0.5),
                 transforms.RandomApply([transforms.ColorJitter(brightness=0.4, contrast=0.4,
                                                                saturation=0.2, hue=0.1)], p=0.8),
                 transforms.RandomGrayscale(p=0.2)]
            if not cifar:
                t.append(GaussianBlur(p=blur_p))
            t += [Solarization(p=sol_p), transforms.ToTensor(), norm]
            return transforms.Compose(t)

        self.transform = view(1.0, 0.0)
        self.transform_prime = view(0.1, 0.2)

    def __call__(self, x):
        return self.transform(x), self.transform_prime(x)


def main():
    root, preset, workers, batch, nbatches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(1)
    ds = datasets.ImageFolder(root, Transform(preset))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True,
                                         drop_last=True, persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # worker start-up is not counted
    t0 = time.perf_counter()
    n = 0
    for _ in range(nbatches):
        (y1, y2), _ = next(it)
        n += y1.shape[0]
    dt = time.perf_counter() - t0
    print("samples/s %.1f" % (n / dt))


if __name__ == "__main__":
    main()
