"""The reference's training step (facebookresearch/barlowtwins main.py: adjust_learning_rate,
zero_grad, loss = model(y1, y2), backward, LARS step; fp32 on the CPU, no AMP) timed on random
inputs, for bench/bench_step.c. Prints one JSON line:
  {"sec_per_step": median s, "cpu_per_step": median CPU s (all threads),
   "pairs_per_s": ..., "peak_rss_mb": this process's peak RSS, "loss": last loss,
   "times": [...]}

  bench_step_torch.py --arch resnet18-cifar --projector 2048-2048-2048 --batch 256 --size 32
                      --threads 2 --warmup 1 --iters 3

Run with Debian's /usr/bin/python3 (python3-torch 1.13) or a newer PyTorch's interpreter (the
benchmarks' /opt/torch2/bin/python3); --channels-last puts the model and inputs in NHWC;
--autocast-bf16 runs the forward under torch.autocast("cpu", dtype=torch.bfloat16) (PyTorch's
mixed precision on the CPU: its convolutions and matrix products in bf16, the backward
following the forward's types), the peer of barlow's --precision bf16.
"""
import contextlib
import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))

import torch  # noqa: E402

from bt_reference import BarlowTwins, adjust_learning_rate, make_optimizer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18-cifar")
    ap.add_argument("--projector", default="2048-2048-2048")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--steps-per-epoch", type=int, default=195)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--channels-last", action="store_true",
                    help="model and inputs in torch.channels_last (NHWC) memory format")
    ap.add_argument("--autocast-bf16", action="store_true",
                    help="forward under torch.autocast('cpu', dtype=torch.bfloat16)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = BarlowTwins(a.arch, a.projector, a.batch)
    model.train()
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model)
    g = torch.Generator().manual_seed(1)
    y1 = torch.randn(a.batch, 3, a.size, a.size, generator=g)
    y2 = torch.randn(a.batch, 3, a.size, a.size, generator=g)
    if a.channels_last:
        y1 = y1.contiguous(memory_format=torch.channels_last)
        y2 = y2.contiguous(memory_format=torch.channels_last)

    # Same schedule position as bench_step.c: the end of main.py's 10 warm-up epochs (peak lr).
    step0 = 10 * a.steps_per_epoch
    times, cpus, loss = [], [], float("nan")
    for k in range(a.warmup + a.iters):
        t, c = time.perf_counter(), time.process_time()
        adjust_learning_rate(optimizer, step0 + k, a.steps_per_epoch, a.epochs, a.batch)
        optimizer.zero_grad()
        amp = (torch.autocast("cpu", dtype=torch.bfloat16) if a.autocast_bf16
               else contextlib.nullcontext())
        with amp:
            out = model.forward(y1, y2)
        out.backward()
        optimizer.step()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        loss = out.item()
        if k >= a.warmup:
            times.append(dt)
            cpus.append(dc)
    med = statistics.median(times)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"sec_per_step": med, "cpu_per_step": statistics.median(cpus),
                      "pairs_per_s": a.batch / med,
                      "peak_rss_mb": rss_kb / 1024.0, "loss": loss, "times": times,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
