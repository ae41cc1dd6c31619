#!/usr/bin/python3
"""Barlow Twins pretraining with the reference recipe of facebookresearch/barlowtwins main.py
(single process, CPU, fp32), on the same data, configuration and augmentation as
`barlow pretrain DATA --preset cifar`, so the two can be compared run for run.

The model, loss, LARS and learning-rate schedule come from tools/bt_reference.py; the data
pipeline is barlow's "cifar" preset written with main.py's torchvision transforms (32x32
RandomResizedCrop, flip, colour jitter, grayscale, no blur, solarization p=0.0 / 0.2 in
views 1 / 2, CIFAR-10 normalisation). The training loop is main.py's: per step
adjust_learning_rate, loss = model(y1, y2), backward, LARS step; a JSON stats line every
--print-freq steps to stdout and CHECKPOINT_DIR/stats.txt (main.py's keys plus on_diag and
off_diag). At the end CHECKPOINT_DIR/backbone.safetensors holds the backbone alone under
torchvision names (float32; no fc, no num_batches_tracked; metadata "arch"), which
`barlow knn DATA --weights FILE` and `barlow ... --init-from FILE` read, and a last line
{"done": true, "time": SECONDS, "steps": N} gives the wall-clock time of the training loop.

Deliberate differences from main.py: the last partial batch of an epoch is dropped (as
barlow does; main.py keeps it), there is no AMP / GradScaler (CPU, fp32) and no
SyncBatchNorm / DDP (one process), and no checkpoint.pth is written (no resume).

Run with Debian's python (torch, torchvision, safetensors):
usage: /usr/bin/python3 tools/ref_pretrain.py DATA --checkpoint-dir DIR [--arch ARCH]
       [--projector MLP] [--batch-size N] [--epochs N] [--warmup-epochs N]
       [--learning-rate-weights X] [--learning-rate-biases X] [--weight-decay X]
       [--lambd X] [--lars-eta X] [--seed N] [--threads N] [--workers N] [--print-freq N]
"""
import argparse
import json
import os
import random
import sys
import time

import torch
import torchvision
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bt_reference import BarlowTwins, Transform, adjust_learning_rate, make_optimizer  # noqa: E402

def positive(kind):
    def parse(s):
        v = kind(s)
        if v <= 0:
            raise argparse.ArgumentTypeError("must be positive: %s" % s)
        return v
    return parse


def nonneg(kind):
    def parse(s):
        v = kind(s)
        if v < 0:
            raise argparse.ArgumentTypeError("must not be negative: %s" % s)
        return v
    return parse


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Barlow Twins pretraining with the reference main.py recipe "
                    "(PyTorch, CPU), barlow's cifar augmentation preset")
    ap.add_argument("data", metavar="DATA", help="ImageFolder root; DATA/train is used")
    ap.add_argument("--arch", default="resnet50",
                    help="resnet18|34|50|101|152[-cifar][:w=WIDTH] (default: resnet50)")
    ap.add_argument("--projector", default="8192-8192-8192",
                    help="projector MLP (default: 8192-8192-8192)")
    ap.add_argument("--batch-size", type=positive(int), default=2048,
                    help="mini-batch size (default: 2048)")
    ap.add_argument("--epochs", type=positive(int), default=1000,
                    help="number of total epochs to run (default: 1000)")
    ap.add_argument("--warmup-epochs", type=nonneg(int), default=10,
                    help="linear warm-up epochs (default: 10)")
    ap.add_argument("--learning-rate-weights", type=float, default=0.2,
                    help="base learning rate for weights (default: 0.2)")
    ap.add_argument("--learning-rate-biases", type=float, default=0.0048,
                    help="base learning rate for biases and batch norm parameters "
                         "(default: 0.0048)")
    ap.add_argument("--weight-decay", type=float, default=1e-6,
                    help="weight decay (default: 1e-6)")
    ap.add_argument("--lambd", type=float, default=0.0051,
                    help="weight on off-diagonal terms (default: 0.0051)")
    ap.add_argument("--lars-eta", type=float, default=0.001,
                    help="LARS trust coefficient (default: 0.001)")
    ap.add_argument("--seed", type=nonneg(int), default=0,
                    help="seed of the initialisation, data order and augmentation (default: 0)")
    ap.add_argument("--threads", type=positive(int), default=2,
                    help="torch compute threads (default: 2)")
    ap.add_argument("--workers", type=nonneg(int), default=2,
                    help="DataLoader worker processes (default: 2)")
    ap.add_argument("--print-freq", type=positive(int), default=100,
                    help="print frequency (steps) (default: 100)")
    ap.add_argument("--checkpoint-dir", required=True,
                    help="output directory (created): stats.txt, backbone.safetensors")
    return ap.parse_args(argv)


def backbone_tensors(model):
    """The backbone's state_dict under torchvision names: float32, contiguous, no fc, no
    num_batches_tracked (model.backbone has fc = Identity, so no fc tensors exist anyway)."""
    out = {}
    for k, v in model.backbone.state_dict().items():
        if k.endswith("num_batches_tracked") or k.split(".")[0] == "fc":
            continue
        out[k] = v.detach().to(torch.float32).contiguous().clone()
    return out


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)

    stats_file = open(os.path.join(args.checkpoint_dir, "stats.txt"), "a", buffering=1)
    print(" ".join(sys.argv), file=stats_file)  # as main.py (stdout stays JSON only)

    model = BarlowTwins(args.arch, args.projector, args.batch_size, lambd=args.lambd)
    model.train()
    optimizer = make_optimizer(model, weight_decay=args.weight_decay)
    # bt_reference.make_optimizer builds LARS with its default eta (0.001); main.py's LARS
    # takes eta in its constructor and keeps it per param group, as bt_reference's does.
    for g in optimizer.param_groups:
        g["eta"] = args.lars_eta

    dataset = torchvision.datasets.ImageFolder(os.path.join(args.data, "train"), Transform("cifar"))
    if len(dataset) < args.batch_size:
        sys.exit("ref_pretrain: --batch-size %d is larger than the dataset (%d images)"
                 % (args.batch_size, len(dataset)))
    generator = torch.Generator()
    generator.manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
        num_workers=args.workers, generator=generator)
    steps_per_epoch = len(loader)

    start_time = time.time()
    step = 0
    for epoch in range(args.epochs):
        for step, ((y1, y2), _) in enumerate(loader, start=epoch * steps_per_epoch):
            adjust_learning_rate(optimizer, step, steps_per_epoch, args.epochs,
                                 args.batch_size, lr_weights=args.learning_rate_weights,
                                 lr_biases=args.learning_rate_biases,
                                 warmup_epochs=args.warmup_epochs)
            optimizer.zero_grad()
            loss, on_diag, off_diag = model.forward_parts(y1, y2)
            loss.backward()
            optimizer.step()
            if step % args.print_freq == 0:
                stats = dict(epoch=epoch, step=step,
                             lr_weights=optimizer.param_groups[0]["lr"],
                             lr_biases=optimizer.param_groups[1]["lr"],
                             loss=loss.item(),
                             time=int(time.time() - start_time),
                             on_diag=on_diag.item(), off_diag=off_diag.item())
                print(json.dumps(stats), flush=True)
                print(json.dumps(stats), file=stats_file)
    elapsed = time.time() - start_time
    steps = args.epochs * steps_per_epoch

    path = os.path.join(args.checkpoint_dir, "backbone.safetensors")
    save_file(backbone_tensors(model), path,
              metadata={"format": "torchvision-state-dict", "arch": args.arch,
                        "source": "tools/ref_pretrain.py"})
    done = {"done": True, "time": round(elapsed, 3), "steps": steps}
    print(json.dumps(done), flush=True)
    print(json.dumps(done), file=stats_file)
    stats_file.close()


if __name__ == "__main__":
    main()
