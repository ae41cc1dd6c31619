"""The reference's data pipeline (barlowtwins main.py Transform: two views through
torchvision + PIL, ImageFolder, DataLoader with worker processes) timed on the same data as
bench/bench_data.c.  Prints "samples/s X" and, where /proc is readable, "samples/cpu_s Y"
(per CPU-second of the main process and its workers).

  bench_data_torch.py ROOT PRESET WORKERS BATCH BATCHES     PRESET: cifar | imagenet
"""
import os
import sys
import time

import torch
import torchvision.datasets as datasets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from bt_reference import Transform  # noqa: E402


def cpu_seconds(it):
    """CPU seconds (user + system) of this process and its DataLoader workers so far, from
    /proc (None where that cannot be read): a rate per CPU-second moves less with the load
    that other jobs put on a shared machine than a wall-clock rate."""
    try:
        pids = [os.getpid()] + [w.pid for w in it._workers]
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in pids:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick
    except (OSError, AttributeError, ValueError, IndexError):
        return None


def main():
    root, preset, workers, batch, nbatches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(1)
    ds = datasets.ImageFolder(root, Transform(preset))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True,
                                         drop_last=True, persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # worker start-up is not counted
    c0 = cpu_seconds(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(nbatches):
        try:
            (y1, y2), _ = next(it)
        except StopIteration:  # the next epoch (a small data set)
            it = iter(loader)
            (y1, y2), _ = next(it)
        n += y1.shape[0]
    dt = time.perf_counter() - t0
    c1 = cpu_seconds(it)
    print("samples/s %.1f" % (n / dt))
    if c0 is not None and c1 is not None and c1 > c0:
        print("samples/cpu_s %.1f" % (n / (c1 - c0)))


if __name__ == "__main__":
    main()
